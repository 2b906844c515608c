// Channels-last (NHWC) memory format, which tch has no call for: oneDNN's
// convolutions on the CPU (and cuDNN's tensor-core kernels) run fastest on
// NHWC activations and weights, and every later op keeps the format.
#include <ATen/ATen.h>

#include <cstring>

// A new tensor holding `t` in channels-last order (a 4-D tensor; `t` itself
// when already so). NULL on failure, with libtorch's message in `err`
// (`err_len` bytes, NUL-terminated).
extern "C" at::Tensor* cxr_channels_last(const at::Tensor* t, char* err, size_t err_len) {
  try {
    return new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast));
  } catch (const std::exception& e) {
    std::strncpy(err, e.what(), err_len - 1);
    err[err_len - 1] = '\0';
    return nullptr;
  }
}

// 1 when `t` is contiguous in channels-last order, 0 when not.
extern "C" int cxr_is_channels_last(const at::Tensor* t) {
  return t->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
}
