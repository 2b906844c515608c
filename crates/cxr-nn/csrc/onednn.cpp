// oneDNN convolutions with prepacked weights and fused post-ops, the kernels
// torch.compile's CPU backend emits for a convolutional network in eval
// mode: the weight is reordered once into oneDNN's blocked layout
// (`mkldnn_reorder_conv2d_weight`) instead of on every call, and the ReLU or
// the residual addition and ReLU run inside the convolution
// (`mkldnn::_convolution_pointwise`, reached through the dispatcher: tch
// binds neither). Each returns a new tensor, or NULL with libtorch's message
// in `err`.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <cstring>
#include <string>
#include <vector>

namespace {
at::Tensor* fail(const std::exception& e, char* err, size_t err_len) {
  std::strncpy(err, e.what(), err_len - 1);
  err[err_len - 1] = '\0';
  return nullptr;
}

std::vector<int64_t> pair(int64_t v) { return {v, v}; }

// The arguments both forms of `_convolution_pointwise` take after their
// inputs: weight, bias, padding, stride, dilation 1, one group.
void push_conv(torch::jit::Stack& stack, const at::Tensor* packed, const at::Tensor* bias,
               int64_t stride, int64_t padding) {
  stack.emplace_back(*packed);
  stack.emplace_back(*bias);
  stack.emplace_back(pair(padding));
  stack.emplace_back(pair(stride));
  stack.emplace_back(pair(1));
  stack.emplace_back(int64_t{1});
}
}  // namespace

// 1 when libtorch was built with oneDNN (mkldnn) and it is usable.
extern "C" int cxr_onednn_available() { return at::hasMKLDNN() ? 1 : 0; }

// `weight` ([out, in, k, k], float or bfloat16) reordered for a convolution
// with this stride and padding (dilation 1, one group): an opaque oneDNN
// tensor that only the calls below accept.
extern "C" at::Tensor* cxr_onednn_prepack(const at::Tensor* weight, int64_t stride,
                                          int64_t padding, char* err, size_t err_len) {
  try {
    auto w = weight->contiguous().to_mkldnn();
    return new at::Tensor(
        at::mkldnn_reorder_conv2d_weight(w, pair(padding), pair(stride), pair(1), 1));
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// conv(x) + bias, then ReLU when `relu`; `x` channels-last, `packed` from
// cxr_onednn_prepack.
extern "C" at::Tensor* cxr_onednn_conv(const at::Tensor* x, const at::Tensor* packed,
                                       const at::Tensor* bias, int64_t stride, int64_t padding,
                                       int relu, char* err, size_t err_len) {
  try {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow(
        "mkldnn::_convolution_pointwise", "");
    torch::jit::Stack stack;
    stack.emplace_back(*x);
    push_conv(stack, packed, bias, stride, padding);
    stack.emplace_back(std::string(relu ? "relu" : "none"));
    stack.emplace_back(c10::List<std::optional<at::Scalar>>());
    stack.emplace_back(c10::IValue());
    op.callBoxed(&stack);
    return new at::Tensor(stack.at(0).toTensor());
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// ReLU(conv(x) + bias + other): a residual block's last convolution, its
// addition and activation in one kernel.
extern "C" at::Tensor* cxr_onednn_conv_add_relu(const at::Tensor* x, const at::Tensor* other,
                                                const at::Tensor* packed, const at::Tensor* bias,
                                                int64_t stride, int64_t padding, char* err,
                                                size_t err_len) {
  try {
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow(
        "mkldnn::_convolution_pointwise", "binary");
    torch::jit::Stack stack;
    stack.emplace_back(*x);
    stack.emplace_back(*other);
    push_conv(stack, packed, bias, stride, padding);
    stack.emplace_back(std::string("add"));
    stack.emplace_back(at::Scalar(1.0));
    stack.emplace_back(std::string("relu"));
    stack.emplace_back(c10::List<std::optional<at::Scalar>>());
    stack.emplace_back(c10::IValue());
    op.callBoxed(&stack);
    return new at::Tensor(stack.at(0).toTensor());
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}
