// libtorch's autocast state for any device type and dtype. tch only
// switches CUDA autocast at its default dtype (float16); bfloat16, and
// autocast on the CPU, need these two calls.
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_of(int device) { return device == 1 ? at::kCUDA : at::kCPU; }
}

// Enables autocast on `device` (0 CPU, 1 CUDA) at `bf16` ? bfloat16 : float16,
// writing the previous state to `prev_enabled`/`prev_bf16`. 0 on success.
extern "C" int cxr_autocast_enter(int device, int bf16, int* prev_enabled, int* prev_bf16) {
  try {
    auto d = device_of(device);
    *prev_enabled = at::autocast::is_autocast_enabled(d) ? 1 : 0;
    *prev_bf16 = at::autocast::get_autocast_dtype(d) == at::kBFloat16 ? 1 : 0;
    at::autocast::set_autocast_dtype(d, bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::increment_nesting();
    return 0;
  } catch (...) {
    return 1;
  }
}

// Restores the state `cxr_autocast_enter` saved; clears the cast cache when
// the outermost region ends. 0 on success.
extern "C" int cxr_autocast_exit(int device, int prev_enabled, int prev_bf16) {
  try {
    auto d = device_of(device);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(d, prev_enabled != 0);
    at::autocast::set_autocast_dtype(d, prev_bf16 ? at::kBFloat16 : at::kHalf);
    return 0;
  } catch (...) {
    return 1;
  }
}
