//! The update through libtorch's fused kernels ([`Optimizer::set_fused`]):
//! parameters are grouped by learning-rate scale and decay (and, for SGD,
//! by whether their momentum buffer is new), and each group is one call.
//! The state keeps the per-tensor rule's names, so checkpoints written by
//! either path resume under the other.

use std::collections::BTreeMap;

use cxr_nn::multi_tensor::{self, AdamW};
use tch::Tensor;

use super::{Optimizer, Rule};

/// `t` in `like`'s layout: the kernels walk memory, so a gradient or state
/// tensor must have its parameter's strides (state restored from a
/// checkpoint is NCHW, a channels-last parameter's is not). The shim
/// refuses mismatches; this lines them up.
fn laid_out_as(t: Tensor, like: &Tensor) -> Tensor {
    if t.stride() == like.stride() {
        return t;
    }
    let mut same = like.empty_like();
    same.copy_(&t);
    same
}

/// One group's tensors, in parameter order.
#[derive(Default)]
struct Group {
    params: Vec<Tensor>,
    grads: Vec<Tensor>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
}

impl Optimizer {
    /// The rule through the fused kernels: AdamW, or SGD with momentum.
    pub(super) fn step_fused(&mut self, lr: f64, t: i64) {
        // (lr scale bits, decay, new SGD buffers) -> group; a BTreeMap keeps
        // the call order fixed.
        let mut groups: BTreeMap<(u64, bool, bool), Group> = BTreeMap::new();
        let sgd = matches!(self.rule, Rule::Sgd { .. });
        for (i, (name, p)) in self.params.iter().enumerate() {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let g = laid_out_as(g, p);
            let fresh = sgd && !self.state.contains_key(&format!("{name}.momentum"));
            // A state tensor, created in the parameter's layout or moved to
            // it once (kept so, later steps copy nothing).
            let mut state = |suffix: &str| {
                let key = format!("{name}.{suffix}");
                let t = match self.state.remove(&key) {
                    Some(t) => laid_out_as(t, p),
                    None => p.zeros_like(),
                };
                self.state.insert(key, t.shallow_clone());
                t
            };
            let (first, second) = if sgd {
                (state("momentum"), None)
            } else {
                (state("exp_avg"), Some(state("exp_avg_sq")))
            };
            let group = groups
                .entry((self.lr_scale[i].to_bits(), self.decay[i], fresh))
                .or_default();
            group.params.push(p.shallow_clone());
            group.grads.push(g);
            group.first.push(first);
            group.second.extend(second);
        }
        for ((scale, decay, fresh), group) in groups {
            let lr = lr * f64::from_bits(scale);
            let rule = if decay {
                self.rule
            } else {
                self.rule.without_decay()
            };
            let done = match rule {
                Rule::Sgd {
                    momentum,
                    weight_decay,
                } => multi_tensor::fused_sgd_(
                    &group.params,
                    &group.grads,
                    &group.first,
                    lr,
                    momentum,
                    weight_decay,
                    fresh,
                ),
                Rule::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    // The kernel reads each tensor's step count from a float
                    // scalar on its device (PyTorch's `state_steps`).
                    let steps: Vec<Tensor> = group
                        .params
                        .iter()
                        .map(|p| Tensor::from(t as f32).to_device(p.device()))
                        .collect();
                    multi_tensor::fused_adamw_(
                        &group.params,
                        &group.grads,
                        &group.first,
                        &group.second,
                        &steps,
                        AdamW {
                            lr,
                            beta1,
                            beta2,
                            weight_decay,
                            eps,
                        },
                    )
                }
            };
            // As tch's own ops do on a libtorch error (mixed devices or
            // types within a group, which one model's parameters never are).
            done.unwrap_or_else(|e| panic!("fused optimiser step: {e}"));
        }
    }
}
