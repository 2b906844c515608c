//! libtorch's fused and multi-tensor optimiser kernels (`torch.optim.AdamW`
//! and `SGD` with `fused=True`, `torch._foreach_lerp_`), through a small
//! C++ shim (`csrc/optim.cpp`): tch does not bind them. One call updates a
//! whole parameter group in one vectorised pass per tensor, where the
//! per-tensor rule takes a dozen ops and their temporaries.
#![allow(unsafe_code)] // Three calls into the shim, which catches every C++ exception.

use std::ffi::{c_char, c_int};

use tch::{TchError, Tensor};

use crate::shim::{self, CTensor};

unsafe extern "C" {
    fn cxr_fused_adamw(
        params: *const *mut CTensor,
        grads: *const *mut CTensor,
        exp_avgs: *const *mut CTensor,
        exp_avg_sqs: *const *mut CTensor,
        steps: *const *mut CTensor,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn cxr_fused_sgd(
        params: *const *mut CTensor,
        grads: *const *mut CTensor,
        momentum_buffers: *const *mut CTensor,
        n: usize,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
        first: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn cxr_foreach_lerp(
        targets: *const *mut CTensor,
        sources: *const *mut CTensor,
        n: usize,
        weight: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// The handles of `ts` for the shim, which copies each `at::Tensor`
/// handle (a reference count) and mutates only the storage behind it.
fn handles(ts: &[Tensor]) -> Vec<*mut CTensor> {
    ts.iter().map(shim::handle).collect()
}

fn same_lengths(lists: &[usize]) -> Result<usize, TchError> {
    let n = lists[0];
    if lists.iter().any(|&m| m != n) {
        return Err(TchError::Torch(format!(
            "tensor lists of different lengths: {lists:?}"
        )));
    }
    Ok(n)
}

/// AdamW's hyperparameters for one group.
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    /// Learning rate of the group.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Decoupled decay rate.
    pub weight_decay: f64,
    /// Denominator guard.
    pub eps: f64,
}

/// One AdamW update of a group, in place: `params`, their `grads`, first
/// and second moments, and per tensor a float scalar holding the step
/// number (already counted) for the bias correction.
///
/// # Errors
/// Lists of different lengths, or libtorch's message (mixed devices or
/// types).
pub fn fused_adamw_(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    steps: &[Tensor],
    h: AdamW,
) -> Result<(), TchError> {
    let n = same_lengths(&[
        params.len(),
        grads.len(),
        exp_avgs.len(),
        exp_avg_sqs.len(),
        steps.len(),
    ])?;
    let (p, g, m, v, s) = (
        handles(params),
        handles(grads),
        handles(exp_avgs),
        handles(exp_avg_sqs),
        handles(steps),
    );
    shim::status(|err, len| {
        // SAFETY: five arrays of `n` live tensor handles, held by the slices
        // for the call.
        unsafe {
            cxr_fused_adamw(
                p.as_ptr(),
                g.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                s.as_ptr(),
                n,
                h.lr,
                h.beta1,
                h.beta2,
                h.weight_decay,
                h.eps,
                err,
                len,
            )
        }
    })
}

/// One SGD update of a group with heavy-ball momentum and coupled L2
/// decay, in place; `first` seeds the (zeroed) buffers with the gradient,
/// as PyTorch does on a buffer's first step.
///
/// # Errors
/// As [`fused_adamw_`].
pub fn fused_sgd_(
    params: &[Tensor],
    grads: &[Tensor],
    momentum_buffers: &[Tensor],
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    first: bool,
) -> Result<(), TchError> {
    let n = same_lengths(&[params.len(), grads.len(), momentum_buffers.len()])?;
    let (p, g, b) = (handles(params), handles(grads), handles(momentum_buffers));
    shim::status(|err, len| {
        // SAFETY: three arrays of `n` live tensor handles.
        unsafe {
            cxr_fused_sgd(
                p.as_ptr(),
                g.as_ptr(),
                b.as_ptr(),
                n,
                lr,
                momentum,
                weight_decay,
                c_int::from(first),
                err,
                len,
            )
        }
    })
}

/// `targets[i] += weight * (sources[i] - targets[i])` for every `i`, in
/// one call: an exponential moving average of weights (MoCo's key
/// encoder).
///
/// # Errors
/// As [`fused_adamw_`].
pub fn foreach_lerp_(targets: &[Tensor], sources: &[Tensor], weight: f64) -> Result<(), TchError> {
    let n = same_lengths(&[targets.len(), sources.len()])?;
    let (t, s) = (handles(targets), handles(sources));
    shim::status(|err, len| {
        // SAFETY: two arrays of `n` live tensor handles.
        unsafe { cxr_foreach_lerp(t.as_ptr(), s.as_ptr(), n, weight, err, len) }
    })
}
