//! S2MTS2 stage A (docs/ssl-methods.md (S2MTS2)): MoCo v2 with Joint Contrastive
//! Learning. Each query image gets M further augmented views as keys; their
//! mean `μ` and per-sample covariance `Σ` (no gradient) model the positive as
//! a Gaussian, and the loss is JCL's closed-form bound
//!
//! `L = CE([q·μ + λ/(2T)·qᵀΣq, q·Q] / T, 0) + λ/(2T²)·mean(qᵀΣq)`,
//!
//! with `λ` ramped per epoch to its maximum (`λ_e = λ·(e+1)/E`, λ = 2 in the
//! reference). The queue, key shuffle and momentum update are the MoCo
//! engine's ([`super::moco`]); the queue receives `μ` as it is (not
//! renormalised, as the reference does).

use std::collections::BTreeMap;

use cxr_nn::spec::ModelSpec;
use serde_json::{Map, Value, json};
use tch::nn::{self, Module};
use tch::{Device, Tensor};

use super::blocks::{monitors, queue_info_nce_with_positive};
use super::moco::{HeadBuilder, Moco, MocoConfig, mocov2_head};
use super::{Objective, Views};
use crate::dist::DataParallel;
use crate::error::Error;

/// S2MTS2's settings beyond the MoCo engine's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct S2mts2Settings {
    /// Key views per query, M (the reference's `k_crop = 2`).
    pub keys: usize,
    /// The JCL weight reached at the last epoch (the reference hard-codes 2).
    pub lambda: f64,
    /// The reference code's head, whose `classifier` layer is applied twice
    /// (a quirk, docs/ssl-methods.md (Pitfalls)); off: MoCo v2's head.
    pub reference_head: bool,
}

impl Default for S2mts2Settings {
    /// The reference's M = 2 and λ ramp to 2, with MoCo v2's head.
    fn default() -> Self {
        Self {
            keys: 2,
            lambda: 2.0,
            reference_head: false,
        }
    }
}

/// The JCL weight of epoch `epoch` (from 0) of `epochs`: a linear ramp
/// from `max / epochs` to `max`.
pub fn lambda_at(max: f64, epoch: usize, epochs: usize) -> f64 {
    max * (epoch + 1) as f64 / epochs.max(1) as f64
}

/// The head of the S2MTS2 code (`utils/model_se.py`): `classifier`
/// (`f → f`) applied twice, ReLU, then `classifier_group` =
/// `Linear(f, f) → ReLU → Linear(f, dim)`; the upstream names are kept.
#[derive(Debug)]
pub struct ReferenceHead {
    classifier: nn::Linear,
    group0: nn::Linear,
    group2: nn::Linear,
}

impl ReferenceHead {
    /// Builds the head under `p` (`p/classifier`, `p/classifier_group/{0,2}`).
    pub fn new(p: &nn::Path, f: i64, dim: i64) -> Self {
        let g = p / "classifier_group";
        Self {
            classifier: nn::linear(p / "classifier", f, f, Default::default()),
            group0: nn::linear(&g / "0", f, f, Default::default()),
            group2: nn::linear(&g / "2", f, dim, Default::default()),
        }
    }
}

impl Module for ReferenceHead {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = x.apply(&self.classifier).apply(&self.classifier).relu();
        h.apply(&self.group0).relu().apply(&self.group2)
    }
}

fn reference_head(p: &nn::Path, f: i64, dim: i64) -> Box<dyn Module> {
    Box::new(ReferenceHead::new(p, f, dim))
}

/// The JCL loss of a batch, its parts, and the key mean it was built on.
#[derive(Debug)]
pub struct Jcl {
    /// `CE + extra`, with gradient through `q`.
    pub loss: Tensor,
    /// The additive term `λ/(2T²)·mean(qᵀΣq)`; ≥ 0 since `Σ` is a covariance.
    pub extra: Tensor,
    /// Per-sample `qᵀΣq` (`[b]`), the keys' spread along the query.
    pub spread: Tensor,
    /// Mean of the keys (`[b, d]`, no gradient), what the queue receives.
    pub mu: Tensor,
    /// Top-1 accuracy of the positive among `1 + queue` logits.
    pub accuracy: f64,
}

/// JCL for queries `q` (`[b, d]`) against `keys` (M tensors `[b, d]`, unit
/// rows) and a queue (`[n, d]`), at temperature `t` and weight `lambda`.
/// `qᵀΣq` is computed as `(1/M)·Σ_m (q·(k_m − μ))²`, which equals it for the
/// biased covariance without forming the `d × d` matrices.
///
/// # Panics
/// When `keys` is empty.
pub fn jcl_loss(q: &Tensor, keys: &[Tensor], queue: &Tensor, t: f64, lambda: f64) -> Jcl {
    assert!(!keys.is_empty(), "JCL needs at least one key view");
    let stacked = Tensor::stack(&keys.iter().map(Tensor::detach).collect::<Vec<_>>(), 0);
    let mu = stacked.mean_dim(0, false, stacked.kind());
    let along = (&stacked - &mu) * q.unsqueeze(0);
    let spread = along
        .sum_dim_intlist(2, false, q.kind())
        .square()
        .mean_dim(0, false, q.kind());
    let positive =
        (q * &mu).sum_dim_intlist(1, true, q.kind()) + spread.unsqueeze(1) * (lambda / (2.0 * t));
    let (ce, accuracy) = queue_info_nce_with_positive(q, &positive, queue, t);
    let extra = spread.mean(q.kind()) * (lambda / (2.0 * t * t));
    Jcl {
        loss: ce + &extra,
        extra,
        spread,
        mu,
        accuracy,
    }
}

/// The S2MTS2 stage-A objective: the MoCo engine with M key views and JCL.
#[derive(Debug)]
pub struct S2mts2 {
    engine: Moco,
    settings: S2mts2Settings,
    lambda: f64,
}

impl S2mts2 {
    /// Builds the engine (query and key encoders with the chosen head, a
    /// random unit queue) from `seed`. λ is 0 until [`Objective::start_epoch`]
    /// sets the epoch's value.
    ///
    /// # Errors
    /// No key views, or a negative or non-finite λ.
    pub fn new(
        spec: ModelSpec,
        config: MocoConfig,
        settings: S2mts2Settings,
        device: Device,
        seed: u64,
    ) -> Result<Self, Error> {
        if settings.keys == 0 {
            return Err(Error::MethodSetting {
                method: "S2MTS2",
                requirement: "at least one key view (--keys >= 1)",
                value: settings.keys.to_string(),
            });
        }
        if !settings.lambda.is_finite() || settings.lambda < 0.0 {
            return Err(Error::MethodSetting {
                method: "S2MTS2",
                requirement: "the JCL weight finite and >= 0",
                value: settings.lambda.to_string(),
            });
        }
        let head: HeadBuilder = if settings.reference_head {
            reference_head
        } else {
            mocov2_head
        };
        Ok(Self {
            engine: Moco::with_head(spec, config, device, seed, head),
            settings,
            lambda: 0.0,
        })
    }

    /// The JCL weight in force.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }
}

/// The key-shuffle seed of key view `view` (from 1): view 1 uses the step's
/// seed, as MoCo's single key view does.
fn key_seed(step_seed: u64, view: usize) -> u64 {
    step_seed ^ (view as u64 - 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

impl Objective for S2mts2 {
    fn views(&self) -> usize {
        1 + self.settings.keys
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        self.engine.trainable()
    }

    /// The momentum update, then the query and the M key views (each in
    /// its own shuffled ghost batches), then JCL; `μ` is enqueued after the
    /// optimiser step.
    fn join(&mut self, dp: &DataParallel) -> bool {
        self.engine.join(dp);
        true
    }

    fn loss(
        &mut self,
        views: &Views,
        step_seed: u64,
        train: bool,
    ) -> Result<(Tensor, Map<String, Value>), Error> {
        if train {
            self.engine.momentum_update();
        }
        let q = self.engine.embed_query(views.xq(), train);
        let keys: Vec<Tensor> = tch::no_grad(|| {
            (1..views.x.len())
                .map(|v| self.engine.keys(&views.x[v], key_seed(step_seed, v), train))
                .collect()
        });
        let t = self.engine.config().temperature;
        let jcl = jcl_loss(&q, &keys, self.engine.queue(), t, self.lambda);
        let m = monitors(&q.detach(), &keys[0]);
        let fields = json!({
            "accuracy": jcl.accuracy, "embedding_std": m.embedding_std,
            "alignment": m.alignment, "uniformity": m.uniformity,
            "jcl_term": jcl.extra.double_value(&[]), "lambda": self.lambda,
            "key_spread": jcl.spread.mean(jcl.spread.kind()).double_value(&[]),
        });
        if train {
            self.engine.defer_enqueue(jcl.mu);
        }
        Ok((
            self.engine.share(jcl.loss),
            fields.as_object().cloned().unwrap_or_default(),
        ))
    }

    fn after_step(&mut self) -> Result<(), Error> {
        self.engine.flush()
    }

    fn start_epoch(&mut self, epoch: usize, epochs: usize) {
        self.lambda = lambda_at(self.settings.lambda, epoch, epochs);
    }

    /// The engine's state: λ follows from the epoch, so it is not saved.
    fn state(&self) -> BTreeMap<String, Tensor> {
        self.engine.state()
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), Error> {
        self.engine.load_state(state)
    }

    fn encoder(&self) -> BTreeMap<String, Tensor> {
        self.engine.encoder()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssl::blocks::{l2_normalize, queue_info_nce};
    use std::path::Path;
    use tch::Kind;

    fn unit(n: i64, d: i64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        l2_normalize(&Tensor::randn([n, d], (Kind::Double, Device::Cpu)))
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        Vec::<Vec<f64>>::try_from(t).unwrap()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// The bound per sample with an explicit d×d covariance, averaged.
    fn naive(q: &Tensor, keys: &[Tensor], queue: &Tensor, t: f64, lambda: f64) -> f64 {
        let (qv, nv) = (rows(q), rows(queue));
        let kv: Vec<Vec<Vec<f64>>> = keys.iter().map(rows).collect();
        let (b, d, m) = (qv.len(), qv[0].len(), keys.len() as f64);
        let mut total = 0.0;
        for i in 0..b {
            let mu: Vec<f64> = (0..d)
                .map(|j| kv.iter().map(|k| k[i][j]).sum::<f64>() / m)
                .collect();
            let mut sigma = vec![vec![0.0; d]; d];
            for k in &kv {
                for r in 0..d {
                    for c in 0..d {
                        sigma[r][c] += (k[i][r] - mu[r]) * (k[i][c] - mu[c]) / m;
                    }
                }
            }
            let qsq: f64 = (0..d).map(|r| qv[i][r] * dot(&sigma[r], &qv[i])).sum();
            let pos = dot(&qv[i], &mu) + lambda / (2.0 * t) * qsq;
            let lse = std::iter::once(pos / t)
                .chain(nv.iter().map(|n| dot(&qv[i], n) / t))
                .map(f64::exp)
                .sum::<f64>()
                .ln();
            total += lse - pos / t + lambda / (2.0 * t * t) * qsq;
        }
        total / b as f64
    }

    #[test]
    fn jcl_matches_a_per_sample_loop() {
        let (q, queue) = (unit(5, 6, 1), unit(12, 6, 2));
        let keys = [unit(5, 6, 3), unit(5, 6, 4), unit(5, 6, 5)];
        for lambda in [0.0, 0.7, 2.0] {
            let got = jcl_loss(&q, &keys, &queue, 0.2, lambda);
            let want = naive(&q, &keys, &queue, 0.2, lambda);
            assert!(
                (got.loss.double_value(&[]) - want).abs() < 1e-12,
                "λ {lambda}: {} vs {want}",
                got.loss.double_value(&[])
            );
        }
    }

    #[test]
    fn reduces_to_queue_info_nce_on_the_key_mean() {
        let (q, queue) = (unit(4, 8, 6), unit(16, 8, 7));
        let keys = [unit(4, 8, 8), unit(4, 8, 9)];
        // λ = 0: MoCo with μ (not unit) as the positive key.
        let jcl = jcl_loss(&q, &keys, &queue, 0.2, 0.0);
        let mu = (&keys[0] + &keys[1]) / 2.0;
        let (moco, acc) = queue_info_nce(&q, &mu, &queue, 0.2);
        assert!((jcl.loss.double_value(&[]) - moco.double_value(&[])).abs() < 1e-12);
        assert_eq!(jcl.accuracy, acc);
        assert_eq!(jcl.extra.double_value(&[]), 0.0);
        assert!((&jcl.mu - &mu).abs().max().double_value(&[]) < 1e-15);
        // M = 1: Σ = 0, so λ changes nothing.
        for lambda in [0.0, 1.0, 2.0] {
            let jcl = jcl_loss(&q, &keys[..1], &queue, 0.2, lambda);
            let (moco, _) = queue_info_nce(&q, &keys[0], &queue, 0.2);
            assert!((jcl.loss.double_value(&[]) - moco.double_value(&[])).abs() < 1e-12);
            assert_eq!(jcl.spread.abs().max().double_value(&[]), 0.0);
        }
    }

    #[test]
    fn extra_term_is_non_negative_and_grows_with_lambda() {
        let (q, queue) = (unit(6, 5, 10), unit(12, 5, 11));
        let keys = [unit(6, 5, 12), unit(6, 5, 13)];
        let (mut last_extra, mut last_loss) = (-1.0, f64::NEG_INFINITY);
        for lambda in [0.0, 0.5, 1.0, 1.5, 2.0] {
            let jcl = jcl_loss(&q, &keys, &queue, 0.2, lambda);
            let spread = Vec::<f64>::try_from(&jcl.spread).unwrap();
            assert!(spread.iter().all(|&s| s >= 0.0), "{spread:?}");
            let (extra, loss) = (jcl.extra.double_value(&[]), jcl.loss.double_value(&[]));
            assert!(extra >= 0.0 && extra > last_extra, "λ {lambda}: {extra}");
            // The whole bound is log-sum-exp increasing in its positive logit.
            assert!(loss > last_loss, "λ {lambda}: {loss} after {last_loss}");
            let linear = lambda / (2.0 * 0.04) * spread.iter().sum::<f64>() / 6.0;
            assert!((extra - linear).abs() < 1e-12);
            (last_extra, last_loss) = (extra, loss);
        }
    }

    #[test]
    fn gradient_wrt_the_query_matches_finite_differences() {
        let queue = unit(10, 4, 14);
        let keys = [unit(3, 4, 15), unit(3, 4, 16)];
        let q0 = unit(3, 4, 17);
        let q = q0.copy().set_requires_grad(true);
        let loss = jcl_loss(&q, &keys, &queue, 0.2, 1.5).loss;
        loss.backward();
        let grad = rows(&q.grad());
        let base = rows(&q0);
        let h = 1e-6;
        let at = |i: usize, j: usize, delta: f64| {
            let mut v = base.clone();
            v[i][j] += delta;
            let flat: Vec<f64> = v.concat();
            let t = Tensor::from_slice(&flat).view([3, 4]);
            jcl_loss(&t, &keys, &queue, 0.2, 1.5).loss.double_value(&[])
        };
        for (i, row) in grad.iter().enumerate() {
            for (j, &g) in row.iter().enumerate() {
                let fd = (at(i, j, h) - at(i, j, -h)) / (2.0 * h);
                assert!(
                    (fd - g).abs() < 1e-6 * (1.0 + fd.abs()),
                    "[{i},{j}]: {fd} vs {g}"
                );
            }
        }
    }

    /// `max |ours − theirs| / max |theirs|` (0 when both are 0).
    fn relative(ours: &Tensor, theirs: &Tensor) -> f64 {
        let diff = (ours - theirs).abs().max().double_value(&[]);
        let scale = theirs.abs().max().double_value(&[]);
        if scale == 0.0 { diff } else { diff / scale }
    }

    /// The S2MTS2 authors' `builder_fa.MoCo.forward` (FBLADL/semi-chest,
    /// a copy of the JCL authors' forward) with pretrain.py's
    /// `CrossEntropyLoss + jcl_loss`, run on fixed inputs by
    /// scripts/fixtures/s2mts2_loss.py: the same loss, the same gradient with
    /// respect to the raw query (through the normalisation the encoder
    /// applies; the keys get none), the same rows enqueued (the raw key
    /// mean), and the same λ ramp. Draw 2 has identical and collinear key
    /// views (Σ = 0), duplicated queue rows, and queries equal to their keys.
    #[test]
    fn equals_the_s2mts2_reference_code() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objectives");
        for draw in 1..=2 {
            let path = dir.join(format!("s2mts2_{draw}.safetensors"));
            let f: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .into_iter()
                .collect();
            let q_raw = f["q"].copy().set_requires_grad(true);
            let views = f["keys"].size()[0];
            // What the engine's embed_query and keys end with.
            let keys: Vec<Tensor> = (0..views)
                .map(|m| l2_normalize(&f["keys"].get(m)))
                .collect();
            let (t, ratio) = (
                f["temperature"].double_value(&[0]),
                f["ratio"].double_value(&[0]),
            );
            let jcl = jcl_loss(&l2_normalize(&q_raw), &keys, &f["queue"], t, ratio);
            jcl.loss.backward();
            let errors = [
                relative(&jcl.loss, &f["loss"]),
                relative(&q_raw.grad(), &f["grad_q"]),
                relative(&jcl.mu, &f["enqueued"]),
            ];
            eprintln!("draw {draw}: relative error loss, grad q, enqueued {errors:?}");
            assert!(errors.iter().all(|&e| e <= 1e-5), "draw {draw}: {errors:?}");
        }
        // pretrain.py: ratio = 2.0 * ((epoch + 1) / args.epochs).
        for (epoch, epochs) in [(2, 5), (4, 5), (0, 100)] {
            let theirs = 2.0 * ((epoch + 1) as f64 / epochs as f64);
            assert!((lambda_at(2.0, epoch, epochs) - theirs).abs() < 1e-15);
        }
    }

    #[test]
    fn lambda_ramps_linearly_to_its_maximum() {
        assert_eq!(lambda_at(2.0, 0, 4), 0.5);
        assert_eq!(lambda_at(2.0, 3, 4), 2.0);
        assert_eq!(lambda_at(2.0, 0, 1), 2.0);
    }

    #[test]
    fn reference_head_applies_its_classifier_twice() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let head = ReferenceHead::new(&(vs.root() / "fc"), 3, 2);
        vs.set_kind(Kind::Double);
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "fc.classifier.bias",
                "fc.classifier.weight",
                "fc.classifier_group.0.bias",
                "fc.classifier_group.0.weight",
                "fc.classifier_group.2.bias",
                "fc.classifier_group.2.weight",
            ]
        );
        let v = vs.variables();
        let lin = |x: &Tensor, n: &str| {
            x.matmul(&v[&format!("fc.{n}.weight")].tr()) + &v[&format!("fc.{n}.bias")]
        };
        let x = unit(4, 3, 18);
        let once = lin(&x, "classifier");
        let want = lin(
            &lin(&lin(&once, "classifier").relu(), "classifier_group.0").relu(),
            "classifier_group.2",
        );
        let got = head.forward(&x);
        assert!((got - want).abs().max().double_value(&[]) < 1e-12);
    }

    fn tiny(keys: usize, reference_head: bool) -> S2mts2 {
        let spec = ModelSpec::scratch("densenet-tiny", 32, None).unwrap();
        let config = MocoConfig {
            temperature: 0.2,
            queue: 8,
            momentum: 0.99,
            dim: 16,
            ghost_batches: 2,
        };
        let settings = S2mts2Settings {
            keys,
            lambda: 2.0,
            reference_head,
        };
        S2mts2::new(spec, config, settings, Device::Cpu, 3).unwrap()
    }

    fn views(n_views: usize) -> Views {
        tch::manual_seed(19);
        Views {
            rows: vec![(0..4).collect(); n_views],
            x: (0..n_views)
                .map(|_| Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu)))
                .collect(),
        }
    }

    #[test]
    fn one_key_view_is_moco() {
        let v = views(2);
        let mut s = tiny(1, false);
        s.start_epoch(1, 2);
        assert_eq!((s.views(), s.lambda()), (2, 2.0));
        let mut moco = Moco::new(
            s.engine.spec.clone(),
            s.engine.config().clone(),
            Device::Cpu,
            3,
        );
        // Same weights and queue whatever other tests did to libtorch's
        // global generator meanwhile.
        moco.load_state(&s.state()).unwrap();
        let (a, fields) = s.loss(&v, 5, true).unwrap();
        let (b, _) = moco.loss(&v, 5, true).unwrap();
        assert!((a.double_value(&[]) - b.double_value(&[])).abs() < 1e-6);
        assert_eq!(fields["jcl_term"], 0.0);
    }

    #[test]
    fn enqueues_the_raw_key_mean_and_exports_the_backbone() {
        let v = views(3);
        let mut s = tiny(2, true);
        s.start_epoch(0, 2);
        let (loss, fields) = s.loss(&v, 7, true).unwrap();
        assert!(loss.double_value(&[]).is_finite());
        assert_eq!(fields["lambda"], 1.0);
        assert!(fields["jcl_term"].as_f64().unwrap() >= 0.0);
        let mu = s.engine.state()["queue"].narrow(0, 0, 4).copy();
        s.after_step().unwrap();
        let queued = s.engine.queue().narrow(0, 0, 4);
        assert!((&queued - &mu).abs().max().double_value(&[]) > 0.0);
        let norms = Vec::<f64>::try_from(
            &queued
                .norm_scalaropt_dim(2, [1], false)
                .to_kind(Kind::Double),
        )
        .unwrap();
        // Two distinct unit keys average to a vector shorter than 1.
        assert!(
            norms.iter().all(|&n| n < 1.0 - 1e-6 && n > 0.0),
            "{norms:?}"
        );
        let enc = s.encoder();
        assert!(enc.keys().all(|k| !k.starts_with("fc.")));
        assert!(enc.contains_key("features.denseblock1.denselayer1.conv1.weight"));
        assert!(s.state().contains_key("q.fc.classifier.weight"));
    }

    #[test]
    fn bad_settings_are_refused() {
        let spec = ModelSpec::scratch("densenet-tiny", 32, None).unwrap();
        let config = tiny(1, false).engine.config().clone();
        for (keys, lambda, needle) in [(0, 2.0, "key view"), (2, f64::NAN, "JCL weight")] {
            let settings = S2mts2Settings {
                keys,
                lambda,
                reference_head: false,
            };
            let err =
                S2mts2::new(spec.clone(), config.clone(), settings, Device::Cpu, 0).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
