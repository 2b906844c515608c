// libtorch's multi-tensor optimiser kernels, which tch does not bind (its
// generator skips `_fused_*` and `_foreach_*`): one call updates a whole
// parameter group, in one vectorised pass per tensor over parameter,
// gradient and state, instead of a dozen small ops (and temporaries) per
// tensor. Each returns 0, or 1 with libtorch's message in `err`.
#include <ATen/ATen.h>

#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {
std::vector<at::Tensor> list(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}

// The fused kernels walk each tensor's memory, not its indices: a state
// tensor in another layout than its parameter (NCHW against channels-last)
// would pair the wrong elements without a word. Refused instead.
void same_layout(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& other,
                 const char* what) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].strides() != other[i].strides() || params[i].sizes() != other[i].sizes()) {
      throw std::runtime_error(std::string(what) + " " + std::to_string(i) +
                               " is not laid out as its parameter");
    }
  }
}

int fail(const std::exception& e, char* err, size_t err_len) {
  std::strncpy(err, e.what(), err_len - 1);
  err[err_len - 1] = '\0';
  return 1;
}
}  // namespace

// torch.optim.AdamW(fused=True)'s step over `n` tensors: decoupled weight
// decay, moments, bias correction from each `steps[i]` (a float scalar
// tensor holding the step number, already counted), no amsgrad.
extern "C" int cxr_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs,
                               at::Tensor** exp_avg_sqs, at::Tensor** steps, size_t n, double lr,
                               double beta1, double beta2, double weight_decay, double eps,
                               char* err, size_t err_len) {
  try {
    auto p = list(params, n), g = list(grads, n), m = list(exp_avgs, n), v = list(exp_avg_sqs, n);
    same_layout(p, g, "gradient");
    same_layout(p, m, "first moment");
    same_layout(p, v, "second moment");
    at::_fused_adamw_(p, g, m, v, {}, list(steps, n), lr, beta1, beta2, weight_decay, eps, false,
                      false, std::nullopt, std::nullopt);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// torch.optim.SGD(fused=True)'s step: coupled L2 decay, heavy-ball momentum
// (no dampening, no Nesterov); `first` seeds the buffers with the gradient.
extern "C" int cxr_fused_sgd(at::Tensor** params, at::Tensor** grads, at::Tensor** momentum_buffers,
                             size_t n, double lr, double momentum, double weight_decay, int first,
                             char* err, size_t err_len) {
  try {
    auto p = list(params, n), g = list(grads, n), b = list(momentum_buffers, n);
    same_layout(p, g, "gradient");
    same_layout(p, b, "momentum buffer");
    at::_fused_sgd_(p, g, b, weight_decay, momentum, lr, 0.0, false, false, first != 0,
                    std::nullopt, std::nullopt);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

// targets[i] += weight * (sources[i] - targets[i]) for all i in one call
// (torch._foreach_lerp_): an exponential moving average of weights.
extern "C" int cxr_foreach_lerp(at::Tensor** targets, at::Tensor** sources, size_t n,
                                double weight, char* err, size_t err_len) {
  try {
    auto t = list(targets, n);
    at::_foreach_lerp_(t, list(sources, n), weight);  // stride-aware (per-tensor ops on the CPU)
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}
