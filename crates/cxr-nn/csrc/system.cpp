// What libtorch knows about its own build: the version of the headers it was
// built from and, when its CUDA support (libtorch_cuda.so) is loaded, the CUDA
// runtime and cuDNN versions it was compiled against. tch exposes the latter
// only through calls that panic when CUDA support is absent; these return a
// status instead. None of this touches a GPU or the driver.
#include <ATen/Context.h>
#include <torch/version.h>

// The libtorch version of the headers (e.g. "2.13.0"), NUL-terminated.
extern "C" const char* cxr_torch_version() { return TORCH_VERSION; }

// 1 when libtorch's CUDA support is registered, writing CUDART_VERSION to
// `cudart` (e.g. 13000) and CUDNN_VERSION to `cudnn` (-1 when built without
// cuDNN); 0 without CUDA support; -1 when libtorch raised.
extern "C" int cxr_cuda_build(long* cudart, long* cudnn) {
  try {
    auto& ctx = at::globalContext();
    if (!ctx.hasCUDART()) {
      return 0;
    }
    *cudart = ctx.versionCUDART();
    *cudnn = ctx.hasCuDNN() ? ctx.versionCuDNN() : -1;
    return 1;
  } catch (...) {
    return -1;
  }
}
