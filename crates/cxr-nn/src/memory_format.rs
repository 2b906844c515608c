//! Channels-last (NHWC) order for 4-D tensors, through a small C++ shim
//! (`csrc/memory_format.cpp`): tch has no call for libtorch's memory
//! formats. oneDNN's CPU convolutions run fastest on NHWC activations and
//! weights, and the ops after a convolution keep its order.
#![allow(unsafe_code)] // Two calls into the shim, which catches every C++ exception.

use std::ffi::{c_char, c_int};

use tch::nn::VarStore;
use tch::{TchError, Tensor};

use crate::shim::{self, CTensor};

unsafe extern "C" {
    fn cxr_channels_last(t: *const CTensor, err: *mut c_char, err_len: usize) -> *mut CTensor;
    fn cxr_is_channels_last(t: *const CTensor) -> c_int;
}

/// `t` in channels-last order (a new tensor, or `t`'s storage when it is
/// already so).
///
/// # Errors
/// libtorch's message: `t` is not 4-D, or the copy could not be allocated.
pub fn f_channels_last(t: &Tensor) -> Result<Tensor, TchError> {
    // SAFETY: `t` is a live tensor for the call; the shim returns a new one
    // or NULL with its message.
    shim::tensor(|err, len| unsafe { cxr_channels_last(t.as_ptr(), err, len) })
}

/// `t` in channels-last order.
///
/// # Panics
/// As tch's own ops do, on a libtorch error (see [`f_channels_last`]).
pub fn channels_last(t: &Tensor) -> Tensor {
    f_channels_last(t).unwrap_or_else(|e| panic!("channels-last copy: {e}"))
}

/// Whether `t` is contiguous in channels-last order.
pub fn is_channels_last(t: &Tensor) -> bool {
    // SAFETY: `t.as_ptr()` is a live `at::Tensor*` for the call.
    unsafe { cxr_is_channels_last(t.as_ptr()) != 0 }
}

/// Puts every 4-D variable of `vs` (convolution weights) in channels-last
/// order, in place: modules and optimisers holding them see the new order,
/// and autograd gives their gradients the same. Saved weights are unchanged
/// (writers copy to the default order). Returns how many it converted.
pub fn vars_to_channels_last(vs: &VarStore) -> usize {
    tch::no_grad(|| {
        let mut n = 0;
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 && !is_channels_last(&v) {
                let nhwc = channels_last(&v);
                v.set_data(&nhwc);
                n += 1;
            }
        }
        n
    })
}
