//! Optimisers whose state is plain named tensors, so a checkpoint holds it
//! and `--resume` continues bit for bit (libtorch's C++ optimisers behind
//! `tch::nn::Optimizer` do not expose their momentum buffers).
//!
//! The update rules are PyTorch's `torch.optim.SGD` and `torch.optim.AdamW`
//! (defaults `dampening = 0`, `nesterov = False`, `amsgrad = False`).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// Which rule, with its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Rule {
    /// SGD with (heavy-ball) momentum and coupled L2 weight decay.
    Sgd {
        /// Momentum factor.
        momentum: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// Adam with decoupled weight decay.
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator guard.
        eps: f64,
        /// Decoupled decay rate (multiplied by the learning rate).
        weight_decay: f64,
    },
}

impl Rule {
    /// The same rule without weight decay (a no-decay parameter group).
    fn without_decay(self) -> Self {
        match self {
            Rule::Sgd { momentum, .. } => Rule::Sgd {
                momentum,
                weight_decay: 0.0,
            },
            Rule::AdamW {
                beta1, beta2, eps, ..
            } => Rule::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay: 0.0,
            },
        }
    }
}

/// Sets `slots[i] = value` for each parameter `i` whose name satisfies
/// `which`; returns how many matched.
fn set_where<T: Copy>(
    params: &[(String, Tensor)],
    slots: &mut [T],
    which: impl Fn(&str) -> bool,
    value: T,
) -> usize {
    let mut n = 0;
    for ((name, _), slot) in params.iter().zip(slots) {
        if which(name) {
            *slot = value;
            n += 1;
        }
    }
    n
}

/// Gradient clipping before each update.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradClip {
    /// Scale all gradients so their global L2 norm is at most this
    /// (`torch.nn.utils.clip_grad_norm_`).
    Norm(f64),
    /// Clamp every gradient element into `[-v, v]`
    /// (`torch.nn.utils.clip_grad_value_`).
    Value(f64),
}

impl GradClip {
    /// Checks that the bound is positive and finite.
    ///
    /// # Errors
    /// [`Error::GradClipBound`] with the bad bound.
    pub fn validate(self) -> Result<Self> {
        let (GradClip::Norm(v) | GradClip::Value(v)) = self;
        if v.is_finite() && v > 0.0 {
            Ok(self)
        } else {
            Err(Error::GradClipBound { bound: v })
        }
    }

    /// Clips `opt`'s gradients; returns their global norm before clipping.
    pub fn apply(self, opt: &mut Optimizer) -> f64 {
        match self {
            GradClip::Norm(max) => opt.clip_grad_norm(max),
            GradClip::Value(v) => {
                let norm = opt.grad_norm();
                opt.clip_grad_value(v);
                norm
            }
        }
    }
}

/// Lookahead (Zhang et al., 2019) around the inner rule: slow weights start
/// at the parameters' values before the first update; every `k` updates
/// they move `alpha` of the way to the fast weights, which are then reset
/// to them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lookahead {
    /// Inner steps between synchronisations.
    pub k: u64,
    /// Step size of the slow weights.
    pub alpha: f64,
}

impl Lookahead {
    /// Checks `k >= 1` and `alpha` in (0, 1].
    ///
    /// # Errors
    /// [`Error::Lookahead`] with both values.
    pub fn validate(self) -> Result<Self> {
        if self.k == 0 || !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(Error::Lookahead {
                k: self.k,
                alpha: self.alpha,
            });
        }
        Ok(self)
    }
}

/// PyTorch codes' no-decay rule `re.match(".*(norm.*|bias)", name)`: every
/// normalisation parameter and every bias.
pub fn is_norm_or_bias(name: &str) -> bool {
    name.contains("norm") || name.contains("bias")
}

/// An optimiser over a fixed list of named parameters.
#[derive(Debug)]
pub struct Optimizer {
    rule: Rule,
    params: Vec<(String, Tensor)>,
    /// `name.momentum` (SGD) or `name.exp_avg` / `name.exp_avg_sq` (AdamW).
    state: BTreeMap<String, Tensor>,
    /// Per parameter, the factor on the step's learning rate (parameter
    /// groups: a text tower at its own rate).
    lr_scale: Vec<f64>,
    /// Per parameter, whether weight decay applies.
    decay: Vec<bool>,
    /// Slow weights around the rule, when set.
    lookahead: Option<Lookahead>,
    /// Updates taken (AdamW's bias correction needs it).
    pub steps: i64,
}

impl Optimizer {
    /// An optimiser for `params` (trainable variables, by name).
    pub fn new(rule: Rule, params: Vec<(String, Tensor)>) -> Self {
        Self {
            rule,
            lr_scale: vec![1.0; params.len()],
            decay: vec![true; params.len()],
            lookahead: None,
            params,
            state: BTreeMap::new(),
            steps: 0,
        }
    }

    /// Gives the parameters whose name satisfies `which` the learning rate
    /// `scale` times the step's (decoupled weight decay scales with it, as
    /// in a PyTorch parameter group); returns how many it matched.
    pub fn set_lr_scale(&mut self, which: impl Fn(&str) -> bool, scale: f64) -> usize {
        set_where(&self.params, &mut self.lr_scale, which, scale)
    }

    /// The parameters, by name, in the order the optimiser holds them.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Global L2 norm of the gradients.
    pub fn grad_norm(&self) -> f64 {
        let sq: f64 = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .map(|g| {
                g.to_kind(Kind::Double)
                    .square()
                    .sum(Kind::Double)
                    .double_value(&[])
            })
            .sum();
        sq.sqrt()
    }

    /// Scales gradients so their global norm is at most `max_norm`, as
    /// `torch.nn.utils.clip_grad_norm_` does; returns the norm before.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.grad_norm();
        let scale = max_norm / (norm + 1e-6);
        if scale < 1.0 {
            tch::no_grad(|| {
                for (_, p) in &self.params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(scale);
                    }
                }
            });
        }
        norm
    }

    /// Exempts the parameters whose name satisfies `which` from weight decay;
    /// returns how many it matched.
    pub fn set_no_decay(&mut self, which: impl Fn(&str) -> bool) -> usize {
        set_where(&self.params, &mut self.decay, which, false)
    }

    /// Wraps the rule in Lookahead (`name.slow` state tensors).
    pub fn set_lookahead(&mut self, lookahead: Lookahead) {
        self.lookahead = Some(lookahead);
    }

    /// Clamps every gradient element into `[-clip, clip]`.
    pub fn clip_grad_value(&mut self, clip: f64) {
        tch::no_grad(|| {
            for (_, p) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.clamp_(-clip, clip);
                }
            }
        });
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps;
        tch::no_grad(|| {
            let groups = self.lr_scale.iter().zip(&self.decay);
            for ((name, p), (&scale, &decay)) in self.params.iter_mut().zip(groups) {
                let lr = lr * scale;
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.lookahead.is_some() {
                    self.state
                        .entry(format!("{name}.slow"))
                        .or_insert_with(|| p.detach().copy());
                }
                let rule = if decay {
                    self.rule
                } else {
                    self.rule.without_decay()
                };
                match rule {
                    Rule::Sgd {
                        momentum,
                        weight_decay,
                    } => {
                        let d = if weight_decay != 0.0 {
                            &g + &*p * weight_decay
                        } else {
                            g
                        };
                        let d = if momentum != 0.0 {
                            match self.state.entry(format!("{name}.momentum")) {
                                // PyTorch seeds the buffer with the first gradient.
                                Entry::Vacant(e) => e.insert(d.detach().copy()).shallow_clone(),
                                // In place, as AdamW's moments below.
                                Entry::Occupied(e) => {
                                    let mut buf = e.get().shallow_clone();
                                    let _ = buf.g_mul_scalar_(momentum);
                                    let _ = buf.g_add_(&d);
                                    buf
                                }
                            }
                        } else {
                            d
                        };
                        let _ = p.g_add_(&(d * -lr));
                    }
                    Rule::AdamW {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    } => {
                        let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
                        // In place on zero-initialised moments: the same
                        // values as out-of-place arithmetic (0·β + x = x),
                        // with four temporaries per tensor instead of a
                        // dozen (each a fresh, page-faulted allocation on
                        // the CPU for large tensors).
                        let mut moment = |suffix: &str| {
                            self.state
                                .entry(format!("{name}.{suffix}"))
                                .or_insert_with(|| g.zeros_like())
                                .shallow_clone()
                        };
                        let (mut m, mut v) = (moment("exp_avg"), moment("exp_avg_sq"));
                        let _ = m.g_mul_scalar_(beta1);
                        let _ = m.g_add_(&(&g * (1.0 - beta1)));
                        let _ = v.g_mul_scalar_(beta2);
                        let _ = v.g_add_(&g.square().g_mul_scalar_(1.0 - beta2));
                        let bc1 = 1.0 - beta1.powi(t as i32);
                        let bc2 = 1.0 - beta2.powi(t as i32);
                        let mut denom = v.sqrt();
                        let _ = denom.g_div_scalar_(bc2.sqrt());
                        let _ = denom.g_add_scalar_(eps);
                        let mut update = &m / &denom;
                        let _ = update.g_mul_scalar_(-lr / bc1);
                        let _ = p.g_add_(&update);
                    }
                }
            }
            if let Some(la) = self.lookahead
                && (t as u64).is_multiple_of(la.k)
            {
                for (name, p) in &mut self.params {
                    if let Some(slow) = self.state.get_mut(&format!("{name}.slow")) {
                        let _ = slow.g_add_(&((&*p - &*slow) * la.alpha));
                        p.copy_(slow);
                    }
                }
            }
        });
    }

    /// The state tensors by name (for a checkpoint), plus `steps`.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out: BTreeMap<String, Tensor> = self
            .state
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect();
        out.insert("steps".into(), Tensor::from(self.steps));
        out
    }

    /// Restores [`Optimizer::state`] output.
    ///
    /// # Errors
    /// [`Error::NoOptimizerSteps`], or [`Error::UnknownOptimizerKey`]
    /// naming a state tensor for an unknown parameter.
    pub fn load_state(&mut self, mut state: BTreeMap<String, Tensor>) -> Result<()> {
        self.steps = state
            .remove("steps")
            .map(|t| t.int64_value(&[]))
            .ok_or(Error::NoOptimizerSteps)?;
        for key in state.keys() {
            let param = key.rsplit_once('.').map_or(key.as_str(), |(p, _)| p);
            if !self.params.iter().any(|(n, _)| n == param) {
                return Err(Error::UnknownOptimizerKey { key: key.clone() });
            }
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_grads(grads: &[f64]) -> (Optimizer, Tensor) {
        let w = Tensor::zeros([grads.len() as i64], (Kind::Double, tch::Device::Cpu))
            .set_requires_grad(true);
        let target = Tensor::from_slice(grads);
        // d/dw sum(w * target) = target.
        (&w * &target).sum(Kind::Double).backward();
        (
            Optimizer::new(
                Rule::Sgd {
                    momentum: 0.0,
                    weight_decay: 0.0,
                },
                vec![("w".into(), w.shallow_clone())],
            ),
            w,
        )
    }

    #[test]
    fn parameter_groups_scale_the_learning_rate() {
        // Two parameters with the same gradient; SGD without momentum moves
        // each by its own lr * g, AdamW's first step by its own lr (sign(g)).
        for rule in [
            Rule::Sgd {
                momentum: 0.0,
                weight_decay: 0.0,
            },
            Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-12,
                weight_decay: 0.0,
            },
        ] {
            let a = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
            let b = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
            let mut opt = Optimizer::new(
                rule,
                vec![
                    ("image.w".into(), a.shallow_clone()),
                    ("text.bert.w".into(), b.shallow_clone()),
                ],
            );
            assert_eq!(opt.set_lr_scale(|n| n.starts_with("text.bert."), 0.1), 1);
            (&a * 2.0 + &b * 2.0).sum(Kind::Double).backward();
            opt.step(0.5);
            let moved = |t: &Tensor| 1.0 - t.double_value(&[0]);
            let expect = if matches!(rule, Rule::Sgd { .. }) {
                1.0
            } else {
                0.5
            };
            assert!((moved(&a) - expect).abs() < 1e-9, "{rule:?}");
            assert!((moved(&b) - expect * 0.1).abs() < 1e-9, "{rule:?}");
        }
    }

    #[test]
    fn lookahead_and_no_decay_follow_their_definitions() {
        // f(w) = (w - 3)^2 by plain SGD (lr 0.1) in Lookahead(k 2, alpha 0.5);
        // by hand: two fast steps, then slow += 0.5 (fast - slow), fast = slow.
        let w = Tensor::from_slice(&[0.0f64]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            Rule::Sgd {
                momentum: 0.0,
                weight_decay: 0.0,
            },
            vec![("w".into(), w.shallow_clone())],
        );
        opt.set_lookahead(Lookahead { k: 2, alpha: 0.5 });
        let (mut fast, mut slow) = (0.0f64, 0.0f64);
        for step in 1..=6 {
            opt.zero_grad();
            (&w - 3.0).square().sum(Kind::Double).backward();
            opt.step(0.1);
            fast -= 0.1 * 2.0 * (fast - 3.0);
            if step % 2 == 0 {
                slow += 0.5 * (fast - slow);
                fast = slow;
            }
            assert!((w.double_value(&[0]) - fast).abs() < 1e-12, "step {step}");
        }
        assert!(opt.state().contains_key("w.slow"));

        // Weight decay 0.1 on `a`, none on the bias: zero gradients, one
        // AdamW step of lr 1 shrinks only `a`.
        let a = Tensor::from_slice(&[2.0f64]).set_requires_grad(true);
        let b = Tensor::from_slice(&[2.0f64]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            Rule::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            vec![
                ("fc.weight".into(), a.shallow_clone()),
                ("fc.bias".into(), b.shallow_clone()),
            ],
        );
        assert_eq!(opt.set_no_decay(is_norm_or_bias), 1);
        ((&a + &b) * 0.0).sum(Kind::Double).backward();
        opt.step(1.0);
        assert!((a.double_value(&[0]) - 1.8).abs() < 1e-12);
        assert_eq!(b.double_value(&[0]), 2.0);
        assert!(is_norm_or_bias("blocks.0.norm1.weight") && !is_norm_or_bias("fc.weight"));
        assert!(Lookahead { k: 0, alpha: 0.5 }.validate().is_err());
    }

    #[test]
    fn clipping_by_value_and_by_norm() {
        let (mut opt, w) = with_grads(&[3.0, -0.1, -4.0]);
        let before = GradClip::Value(0.25).apply(&mut opt);
        assert!((before - (9.0f64 + 0.01 + 16.0).sqrt()).abs() < 1e-12);
        let g = Vec::<f64>::try_from(w.grad()).unwrap();
        assert_eq!(g, [0.25, -0.1, -0.25]);

        let (mut opt, w) = with_grads(&[3.0, 0.0, -4.0]);
        assert!((GradClip::Norm(1.0).apply(&mut opt) - 5.0).abs() < 1e-12);
        let g = Vec::<f64>::try_from(w.grad()).unwrap();
        // PyTorch's factor max_norm / (norm + 1e-6).
        let f = 1.0 / (5.0 + 1e-6);
        for (a, b) in g.iter().zip([3.0 * f, 0.0, -4.0 * f]) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        // Below the bound nothing changes.
        let (mut opt, w) = with_grads(&[0.3, 0.4]);
        GradClip::Norm(1.0).apply(&mut opt);
        assert_eq!(Vec::<f64>::try_from(w.grad()).unwrap(), [0.3, 0.4]);
        assert!(GradClip::Value(0.0).validate().is_err());
        assert!(GradClip::Norm(f64::NAN).validate().is_err());
    }

    fn quadratic_run(rule: Rule, steps: usize) -> Vec<f64> {
        // f(w) = sum((w - 3)^2), gradient 2(w - 3).
        let w = Tensor::from_slice(&[0.0f64, 1.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
        for _ in 0..steps {
            opt.zero_grad();
            let loss = (&w - 3.0).square().sum(Kind::Double);
            loss.backward();
            opt.step(0.1);
        }
        Vec::<f64>::try_from(w.detach()).unwrap()
    }

    #[test]
    fn sgd_momentum_matches_the_pytorch_recurrence() {
        // By hand: buf1 = g0; w1 = w0 - lr buf1; buf2 = 0.9 buf1 + g1; ...
        let (mut w, mut buf) = (0.0f64, None::<f64>);
        for _ in 0..3 {
            let g = 2.0 * (w - 3.0) + 0.01 * w;
            let b = buf.map_or(g, |b| 0.9 * b + g);
            buf = Some(b);
            w -= 0.1 * b;
        }
        let got = quadratic_run(
            Rule::Sgd {
                momentum: 0.9,
                weight_decay: 0.01,
            },
            3,
        );
        assert!((got[0] - w).abs() < 1e-12, "{} vs {w}", got[0]);
    }

    #[test]
    fn adamw_matches_the_pytorch_recurrence() {
        let (b1, b2, eps, wd) = (0.9f64, 0.999f64, 1e-8, 0.01);
        let (mut w, mut m, mut v) = (0.0f64, 0.0f64, 0.0f64);
        for t in 1..=4 {
            let g = 2.0 * (w - 3.0);
            w *= 1.0 - 0.1 * wd;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let mh = m / (1.0 - b1.powi(t));
            let denom = v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            w -= 0.1 * mh / denom * 1.0;
            let _ = mh;
        }
        let got = quadratic_run(
            Rule::AdamW {
                beta1: b1,
                beta2: b2,
                eps,
                weight_decay: wd,
            },
            4,
        );
        assert!((got[0] - w).abs() < 1e-12, "{} vs {w}", got[0]);
    }

    #[test]
    fn state_round_trips_and_resumes_identically() {
        let rule = Rule::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let straight = quadratic_run(rule, 4);
        let w = Tensor::from_slice(&[0.0f64, 1.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
        let step = |opt: &mut Optimizer| {
            opt.zero_grad();
            (&w - 3.0).square().sum(Kind::Double).backward();
            opt.step(0.1);
        };
        step(&mut opt);
        step(&mut opt);
        let saved: BTreeMap<String, Tensor> = opt
            .state()
            .into_iter()
            .map(|(k, v)| (k, v.copy()))
            .collect();
        let mut fresh = Optimizer::new(rule, vec![("w".into(), w.shallow_clone())]);
        fresh.load_state(saved).unwrap();
        step(&mut fresh);
        step(&mut fresh);
        assert_eq!(Vec::<f64>::try_from(w.detach()).unwrap(), straight);
        let bad = BTreeMap::from([
            ("steps".to_owned(), Tensor::from(1i64)),
            ("v.momentum".to_owned(), Tensor::from(0.0)),
        ]);
        let e = fresh.load_state(bad).unwrap_err();
        assert!(
            matches!(&e, Error::UnknownOptimizerKey { key } if key == "v.momentum"),
            "{e}"
        );
        assert!(e.to_string().contains("'v.momentum'"), "{e}");
    }
}
