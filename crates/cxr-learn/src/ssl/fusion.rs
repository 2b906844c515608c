//! REFERS' multi-view fusion (docs/ssl-methods.md (REFERS), `modules/Fusion.py`):
//! at every patch position p the views' tokens are concatenated,
//! `h_p = [P_1,p; ...; P_R,p]`, and each view r gets its own gate
//! `ω_r,p = σ(a_rᵀ h_p + b_r)`. The fused memory is the views' gated
//! tokens side by side, `M = concat_r(ω_r ⊙ P_r)` (R·N tokens). The gates
//! are independent sigmoids, not a softmax across views, so a view can be
//! kept or dropped without taking weight from the others.
//!
//! Parametrisation: the gate computes `σ(a'ᵀ h_p / √(R·d) + b)` with `a'`
//! drawn from U(−1, 1), which is the reference's function at its
//! initialisation (`a = a' / √(R·d)`, PyTorch's default range) but makes an
//! Adam step move the logit √(R·d) times less. Without it every gate of the
//! tiny run (R·d = 288) saturates at 1 within ~50 steps, which makes the
//! fusion a no-op; divide the stored weights by √(R·d) for the reference's.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// One `Linear(R·d, 1)` + sigmoid per view, named `gate.{r}` under its path.
#[derive(Debug)]
pub struct ViewFusion {
    gates: Vec<nn::Linear>,
    /// `1/√(R·d)`, applied to the gates' input.
    scale: f64,
}

/// Output of [`ViewFusion::forward`].
#[derive(Debug)]
pub struct Fused {
    /// Gated tokens of every view, view-major: `[n, R·N, d]`.
    pub memory: Tensor,
    /// The gates `[n, R, N]`.
    pub gates: Tensor,
}

impl ViewFusion {
    /// Gates for `views` views of `dim`-wide tokens under `p`, initialised
    /// as PyTorch's default Linear in the reference's parametrisation.
    pub fn new(p: &nn::Path, views: usize, dim: i64) -> Self {
        let g = p / "gate";
        let fan_in = views as i64 * dim;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let cfg = nn::LinearConfig {
            ws_init: nn::Init::Uniform { lo: -1.0, up: 1.0 },
            bs_init: Some(nn::Init::Uniform {
                lo: -bound,
                up: bound,
            }),
            bias: true,
        };
        Self {
            gates: (0..views)
                .map(|r| nn::linear(&g / r, fan_in, 1, cfg))
                .collect(),
            scale: bound,
        }
    }

    /// Fuses the views' patch tokens, each `[n, N, d]`.
    ///
    /// # Panics
    /// When the number of views differs from the gates'.
    pub fn forward(&self, views: &[Tensor]) -> Fused {
        assert_eq!(views.len(), self.gates.len(), "one token tensor per view");
        let h = Tensor::cat(views, 2) * self.scale;
        let gates: Vec<Tensor> = self.gates.iter().map(|g| g.forward(&h).sigmoid()).collect();
        let gated: Vec<Tensor> = views.iter().zip(&gates).map(|(p, w)| p * w).collect();
        Fused {
            memory: Tensor::cat(&gated, 1),
            gates: Tensor::cat(&gates, 2).transpose(1, 2),
        }
    }
}

/// Gate monitors of a batch (docs/ssl-methods.md (Checks that a method learns), REFERS).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateMonitors {
    /// Mean of every gate.
    pub mean: f64,
    /// Lowest mean gate of a view.
    pub view_min: f64,
    /// Highest mean gate of a view.
    pub view_max: f64,
    /// Standard deviation over the batch of each sample's mean gate,
    /// averaged over views: 0 when the gates ignore the input.
    pub sample_std: f64,
}

/// Monitors of gates `[n, R, N]`.
pub fn gate_monitors(gates: &Tensor) -> GateMonitors {
    tch::no_grad(|| {
        let g = gates.to_kind(Kind::Double);
        let per_view = g.mean_dim([0, 2].as_slice(), false, Kind::Double);
        let per_sample = g.mean_dim([2].as_slice(), false, Kind::Double);
        GateMonitors {
            mean: g.mean(Kind::Double).double_value(&[]),
            view_min: per_view.min().double_value(&[]),
            view_max: per_view.max().double_value(&[]),
            sample_std: per_sample
                .std_dim(0, false, false)
                .mean(Kind::Double)
                .double_value(&[]),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn setup() -> (nn::VarStore, ViewFusion, Vec<Tensor>) {
        tch::manual_seed(11);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let f = ViewFusion::new(&vs.root(), 3, 2);
        vs.double();
        let views = (0..3)
            .map(|_| Tensor::randn([2, 4, 2], (Kind::Double, Device::Cpu)))
            .collect();
        (vs, f, views)
    }

    #[test]
    // The indices spell out ω_{r,p} and M for sample n, as docs/ssl-methods.md (REFERS) writes them.
    #[allow(clippy::needless_range_loop)]
    fn matches_a_direct_computation() {
        let (vs, f, views) = setup();
        let out = f.forward(&views);
        assert_eq!(out.memory.size(), [2, 12, 2]);
        let vars = vs.variables();
        let p: Vec<Vec<Vec<Vec<f64>>>> = views
            .iter()
            .map(|v| Vec::<Vec<Vec<f64>>>::try_from(v).unwrap())
            .collect();
        for r in 0..3 {
            let a = Vec::<f64>::try_from(vars[&format!("gate.{r}.weight")].view([-1])).unwrap();
            let a: Vec<f64> = a.iter().map(|w| w / 6f64.sqrt()).collect();
            let b = vars[&format!("gate.{r}.bias")].double_value(&[0]);
            for n in 0..2 {
                for pos in 0..4 {
                    let h: Vec<f64> = (0..3).flat_map(|v| p[v][n][pos].clone()).collect();
                    let z = b + a.iter().zip(&h).map(|(x, y)| x * y).sum::<f64>();
                    let w = 1.0 / (1.0 + (-z).exp());
                    let got_w = out.gates.double_value(&[n as i64, r as i64, pos as i64]);
                    assert!((got_w - w).abs() < 1e-14);
                    for k in 0..2 {
                        let got =
                            out.memory
                                .double_value(&[n as i64, (r * 4 + pos) as i64, k as i64]);
                        assert!((got - w * p[r][n][pos][k]).abs() < 1e-14);
                    }
                }
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (vs, f, views) = setup();
        let views: Vec<Tensor> = views
            .into_iter()
            .map(|v| v.set_requires_grad(true))
            .collect();
        let probe = Tensor::randn([2, 12, 2], (Kind::Double, Device::Cpu));
        let objective =
            |f: &ViewFusion, views: &[Tensor]| (f.forward(views).memory * &probe).sum(Kind::Double);
        let loss = objective(&f, &views);
        loss.backward();
        let eps = 1e-6;
        let mut checked = 0;
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let mut targets: Vec<Tensor> = params.into_iter().map(|(_, t)| t).collect();
        targets.push(views[1].shallow_clone());
        for t in &targets {
            let grad = t.grad();
            let flat = t.view([-1]);
            for i in 0..flat.size()[0].min(6) {
                let at = |delta: f64| {
                    tch::no_grad(|| {
                        let _ = flat.get(i).g_add_scalar_(delta);
                        let v = objective(&f, &views).double_value(&[]);
                        let _ = flat.get(i).g_add_scalar_(-delta);
                        v
                    })
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                let analytic = grad.view([-1]).double_value(&[i]);
                assert!(
                    (numeric - analytic).abs() < 1e-6 * (1.0 + analytic.abs()),
                    "{numeric} vs {analytic}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 20);
    }

    #[test]
    fn monitors_see_constant_gates() {
        let constant = Tensor::full([4, 3, 5], 0.3, (Kind::Double, Device::Cpu));
        let m = gate_monitors(&constant);
        for v in [m.mean, m.view_min, m.view_max] {
            assert!((v - 0.3).abs() < 1e-12, "{m:?}");
        }
        assert!(m.sample_std.abs() < 1e-12);
        let varied = Tensor::rand([4, 3, 5], (Kind::Double, Device::Cpu));
        assert!(gate_monitors(&varied).sample_std > 0.01);
    }
}
