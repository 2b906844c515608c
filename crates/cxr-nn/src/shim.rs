//! What the calls into the C++ shims (`csrc/`) share: an error buffer the
//! shim fills with libtorch's message, and the wrapping of a returned
//! tensor. Every shim function catches its C++ exceptions.
#![allow(unsafe_code)] // Reads the shim's NUL-terminated message; wraps its tensors.

use std::ffi::{CStr, c_char, c_int};

use tch::{TchError, Tensor};

/// A libtorch tensor handle as the shims take and return it (`at::Tensor*`).
pub(crate) type CTensor = torch_sys::C_tensor;

/// The size of the message buffer handed to a shim.
const ERR_LEN: usize = 1024;

fn message(err: &[c_char; ERR_LEN]) -> TchError {
    // SAFETY: the shims NUL-terminate `err` within its length on failure.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
    TchError::Torch(msg.to_string_lossy().into_owned())
}

/// Runs a shim call returning a status (0 on success).
pub(crate) fn status(f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), TchError> {
    let mut err = [0 as c_char; ERR_LEN];
    if f(err.as_mut_ptr(), ERR_LEN) == 0 {
        Ok(())
    } else {
        Err(message(&err))
    }
}

/// Runs a shim call returning a new tensor (NULL on failure).
pub(crate) fn tensor(
    f: impl FnOnce(*mut c_char, usize) -> *mut CTensor,
) -> Result<Tensor, TchError> {
    let mut err = [0 as c_char; ERR_LEN];
    let ptr = f(err.as_mut_ptr(), ERR_LEN);
    if ptr.is_null() {
        return Err(message(&err));
    }
    // SAFETY: a tensor the shim allocated with `new` for the caller; the
    // returned `Tensor` owns and frees it.
    Ok(unsafe { Tensor::from_ptr(ptr) })
}

/// The handle of `t` for a shim, which reads it (or copies the handle, a
/// reference count) during the call only.
pub(crate) fn handle(t: &Tensor) -> *mut CTensor {
    t.as_ptr().cast_mut()
}
