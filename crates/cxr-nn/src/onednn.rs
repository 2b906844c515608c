//! oneDNN convolutions on prepacked weights with fused post-ops, through a
//! small C++ shim (`csrc/onednn.cpp`): what `torch.compile` emits for a
//! convolutional network in evaluation mode on the CPU. A weight is
//! reordered into oneDNN's blocked layout once, where a plain `conv2d`
//! reorders it on every call (for bf16 on AMX that reorder costs about as
//! much as the arithmetic), and a ReLU, or a residual addition and ReLU,
//! run inside the convolution. Inputs are channels-last.
#![allow(unsafe_code)] // Calls into the shim, which catches every C++ exception.

use std::ffi::{c_char, c_int};

use tch::{TchError, Tensor};

use crate::shim::{self, CTensor, handle};

unsafe extern "C" {
    fn cxr_onednn_available() -> c_int;
    fn cxr_onednn_prepack(
        weight: *const CTensor,
        stride: i64,
        padding: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut CTensor;
    fn cxr_onednn_conv(
        x: *const CTensor,
        packed: *const CTensor,
        bias: *const CTensor,
        stride: i64,
        padding: i64,
        relu: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut CTensor;
    fn cxr_onednn_conv_add_relu(
        x: *const CTensor,
        other: *const CTensor,
        packed: *const CTensor,
        bias: *const CTensor,
        stride: i64,
        padding: i64,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut CTensor;
}

/// Whether the libtorch in use was built with oneDNN.
pub fn available() -> bool {
    // SAFETY: no arguments; reads libtorch's build flags.
    unsafe { cxr_onednn_available() != 0 }
}

/// A convolution weight `[out, in, k, k]` (float32 or bfloat16, on the
/// CPU) prepacked for this stride and padding (dilation 1, one group).
#[derive(Debug)]
pub struct PackedConv {
    packed: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl PackedConv {
    /// Reorders `weight` once; `bias` is kept as is (same type).
    ///
    /// # Errors
    /// libtorch's message (no oneDNN, an unsupported type).
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: i64,
        padding: i64,
    ) -> Result<Self, TchError> {
        // SAFETY: `weight` is live for the call; the shim returns a new
        // tensor or NULL with its message.
        let packed = shim::tensor(|err, len| unsafe {
            cxr_onednn_prepack(handle(weight), stride, padding, err, len)
        })?;
        Ok(Self {
            packed,
            bias: bias.shallow_clone(),
            stride,
            padding,
        })
    }

    /// `conv(x) + bias`, then ReLU when `relu`.
    ///
    /// # Errors
    /// libtorch's message (an input of another type or device).
    pub fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor, TchError> {
        // SAFETY: every tensor is live for the call.
        shim::tensor(|err, len| unsafe {
            cxr_onednn_conv(
                handle(x),
                handle(&self.packed),
                handle(&self.bias),
                self.stride,
                self.padding,
                c_int::from(relu),
                err,
                len,
            )
        })
    }

    /// `ReLU(conv(x) + bias + other)` in one kernel.
    ///
    /// # Errors
    /// As [`PackedConv::forward`]; also `other` of another shape.
    pub fn forward_add_relu(&self, x: &Tensor, other: &Tensor) -> Result<Tensor, TchError> {
        // SAFETY: every tensor is live for the call.
        shim::tensor(|err, len| unsafe {
            cxr_onednn_conv_add_relu(
                handle(x),
                handle(other),
                handle(&self.packed),
                handle(&self.bias),
                self.stride,
                self.padding,
                err,
                len,
            )
        })
    }
}
