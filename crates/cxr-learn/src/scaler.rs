//! Dynamic loss scaling for float16 training, as PyTorch's `GradScaler`
//! does it: the loss is multiplied by a large factor before the backward
//! pass so small gradients survive float16's narrow range; the gradients
//! are divided by it before the update; a step whose gradients overflowed is
//! skipped and the factor halved, and after `growth_interval` clean steps in
//! a row the factor doubles.

use tch::{Kind, Tensor};

use crate::dist::DataParallel;
use crate::error::Result;

/// The scaler's settings and state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GradScaler {
    /// The current factor.
    pub scale: f64,
    /// Factor applied after `growth_interval` clean steps (2).
    pub growth_factor: f64,
    /// Factor applied after an overflow (0.5).
    pub backoff_factor: f64,
    /// Clean steps before growing (2000).
    pub growth_interval: u64,
    /// Clean steps since the last change.
    pub good_steps: u64,
}

impl Default for GradScaler {
    /// PyTorch's defaults: 2^16, ×2 every 2000 clean steps, ×0.5 on overflow.
    fn default() -> Self {
        Self {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            good_steps: 0,
        }
    }
}

impl GradScaler {
    /// `loss` times the current factor (backpropagate this one).
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// Divides the gradients of `params` by the factor, in place; returns
    /// whether any gradient holds an infinity or a NaN (then the step must
    /// be skipped). One host synchronisation for all gradients.
    pub fn unscale(&self, params: &[Tensor]) -> bool {
        let inverse = 1.0 / self.scale;
        tch::no_grad(|| {
            let mut bad: Option<Tensor> = None;
            for p in params {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = g.g_mul_scalar_(inverse);
                let here = g.isfinite().logical_not().any();
                bad = Some(match bad {
                    None => here,
                    Some(b) => b.logical_or(&here),
                });
            }
            bad.is_some_and(|b| b.to_kind(Kind::Int64).int64_value(&[]) != 0)
        })
    }

    /// Adjusts the factor after a step: halves it after an overflow, grows
    /// it after `growth_interval` clean steps.
    pub fn update(&mut self, overflowed: bool) {
        if overflowed {
            self.scale *= self.backoff_factor;
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= self.growth_factor;
                self.good_steps = 0;
            }
        }
    }
}

/// One step's backward pass as both training loops take it: backpropagates
/// `loss` (scaled first when training in float16), sums the gradients of
/// `params` across `dp`'s ranks, then unscales them and updates the scaler.
/// Returns whether the optimiser step must be skipped (a float16 overflow;
/// the summed gradients are the same on every rank, so is the verdict).
///
/// # Errors
/// The collective's error when the gradient reduction fails.
pub fn backward(
    loss: &Tensor,
    scaler: Option<&mut GradScaler>,
    dp: &DataParallel,
    params: &[Tensor],
) -> Result<bool> {
    match &scaler {
        Some(s) => s.scale(loss).backward(),
        None => loss.backward(),
    }
    dp.sync_grads(params, 1.0)?;
    Ok(scaler.is_some_and(|s| {
        let overflowed = s.unscale(params);
        s.update(overflowed);
        overflowed
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn param_with_grad(values: &[f32]) -> Tensor {
        let p = Tensor::zeros([values.len() as i64], (Kind::Float, Device::Cpu))
            .set_requires_grad(true);
        (&p * Tensor::from_slice(values))
            .sum(Kind::Float)
            .backward();
        p
    }

    #[test]
    fn unscales_and_detects_overflow() {
        let s = GradScaler {
            scale: 8.0,
            ..GradScaler::default()
        };
        let a = param_with_grad(&[8.0, -16.0]);
        let b = param_with_grad(&[4.0]);
        assert!(!s.unscale(&[a.shallow_clone(), b.shallow_clone()]));
        assert_eq!(Vec::<f32>::try_from(a.grad()).unwrap(), [1.0, -2.0]);
        assert_eq!(Vec::<f32>::try_from(b.grad()).unwrap(), [0.5]);
        let c = param_with_grad(&[f32::INFINITY, 1.0]);
        assert!(s.unscale(&[b, c]));
        let d = param_with_grad(&[f32::NAN]);
        assert!(s.unscale(&[d]));
        assert!(
            !s.unscale(&[Tensor::zeros([2], (Kind::Float, Device::Cpu))]),
            "no gradient, no overflow"
        );
    }

    #[test]
    fn backs_off_on_overflow_and_grows_after_clean_runs() {
        let mut s = GradScaler {
            growth_interval: 3,
            ..GradScaler::default()
        };
        s.update(true);
        assert_eq!(s.scale, 32768.0);
        for _ in 0..2 {
            s.update(false);
        }
        assert_eq!((s.scale, s.good_steps), (32768.0, 2));
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (16384.0, 0));
        for _ in 0..3 {
            s.update(false);
        }
        assert_eq!((s.scale, s.good_steps), (32768.0, 0));
    }

    /// The point of scaling: a float16 gradient that underflows to zero
    /// unscaled survives when the loss is scaled first.
    #[test]
    fn scaling_keeps_small_half_gradients() {
        let grad_of = |factor: f64| {
            let half = |v: f32| Tensor::from_slice(&[v]).to_kind(Kind::Half);
            let p = half(1.0).set_requires_grad(true);
            // d/dp = 1e-4 * 1e-4 * factor, computed in float16.
            let y = (&p * half(1e-4)) * half(1e-4);
            (y.sum(Kind::Half) * factor).backward();
            p.grad().to_kind(Kind::Double).double_value(&[0]) / factor
        };
        assert_eq!(grad_of(1.0), 0.0, "1e-8 underflows float16");
        let scaled = grad_of(1024.0);
        assert!((scaled / 1e-8 - 1.0).abs() < 0.05, "{scaled}");
    }
}
