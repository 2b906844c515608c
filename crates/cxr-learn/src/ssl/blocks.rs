//! Building blocks shared by the self-supervised objectives
//! (docs/ssl-methods.md (Shared blocks)): contrastive losses, the momentum (EMA) update, the
//! projection MLP, the collapse monitors, and checkpoint state of variable
//! stores.

use std::collections::{BTreeMap, HashMap};

use crate::dist::DataParallel;
use crate::error::Error;
use tch::nn::{self, Module, VarStore};
use tch::{Kind, Tensor};

/// Mean cross-entropy of logits rows against class indices, in the logits'
/// own precision (tch's helper computes in f32).
fn cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    logits.log_softmax(-1, logits.kind()).nll_loss(target)
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

/// MoCo's loss: for unit queries `q` and keys `k` (`[b, d]`) and a queue of
/// past unit keys (`[n, d]`), the cross-entropy of `[q·k, q·queue] / t`
/// against index 0, averaged over the batch; also the top-1 accuracy of the
/// positive (its chance is `1 / (n + 1)`).
pub fn queue_info_nce(q: &Tensor, k: &Tensor, queue: &Tensor, temperature: f64) -> (Tensor, f64) {
    let positive = (q * k).sum_dim_intlist(1, true, q.kind());
    queue_info_nce_with_positive(q, &positive, queue, temperature)
}

/// [`queue_info_nce`] with the positive logit given (`[b, 1]`, before the
/// temperature), the hook through which JCL adds its key-covariance term.
pub fn queue_info_nce_with_positive(
    q: &Tensor,
    positive: &Tensor,
    queue: &Tensor,
    temperature: f64,
) -> (Tensor, f64) {
    let positive = positive.shallow_clone();
    let negative = q.matmul(&queue.tr());
    let logits = Tensor::cat(&[positive, negative], 1) / temperature;
    let target = Tensor::zeros([q.size()[0]], (Kind::Int64, q.device()));
    let loss = cross_entropy(&logits, &target);
    let acc = tch::no_grad(|| {
        logits
            .argmax(1, false)
            .eq(0)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[])
    });
    (loss, acc)
}

/// In-batch InfoNCE between paired rows of `a` and `b` (`[b, d]`, unit
/// norm): `w.0 · CE(a bᵀ·scale, diag) + w.1 · CE(b aᵀ·scale, diag)`
/// (ConVIRT's λ and 1 − λ, CLIP's ½ and ½; `scale` is 1/τ).
pub fn info_nce(a: &Tensor, b: &Tensor, scale: &Tensor, weights: (f64, f64)) -> Tensor {
    let logits = a.matmul(&b.tr()) * scale;
    let target = Tensor::arange(a.size()[0], (Kind::Int64, a.device()));
    cross_entropy(&logits, &target) * weights.0 + cross_entropy(&logits.tr(), &target) * weights.1
}

/// [`info_nce`] with the pairs marked in `exclude` (`[b, b]` bool, never the
/// diagonal) left out of both directions' softmax: identical report texts
/// are not treated as negatives of each other (docs/ssl-methods.md (Pitfalls)).
pub fn info_nce_excluding(
    a: &Tensor,
    b: &Tensor,
    scale: &Tensor,
    weights: (f64, f64),
    exclude: &Tensor,
) -> Tensor {
    let logits = (a.matmul(&b.tr()) * scale).masked_fill(exclude, f64::NEG_INFINITY);
    let target = Tensor::arange(a.size()[0], (Kind::Int64, a.device()));
    cross_entropy(&logits, &target) * weights.0 + cross_entropy(&logits.tr(), &target) * weights.1
}

/// `[n, n]` bool: entries `i != j` with equal `keys` (e.g. hashes of their
/// token sequences).
pub fn same_key_pairs(keys: &Tensor) -> Tensor {
    let n = keys.size()[0];
    let same = keys.unsqueeze(1).eq_tensor(&keys.unsqueeze(0));
    let eye = Tensor::eye(n, (Kind::Bool, keys.device()));
    same.logical_and(&eye.logical_not())
}

/// `target ← m·target + (1 − m)·source` for every variable of `source` that
/// is a trainable parameter (MoCo updates parameters only: batch-norm
/// statistics of the key encoder move through its own forward passes).
///
/// One multi-tensor call (`torch._foreach_lerp_`, `target += (1 − m) ·
/// (source − target)`): a single pass over each pair instead of three ops
/// and a temporary per tensor. The same update within float rounding as
/// the reference's `param_k * m + param_q * (1 − m)`
/// (`ema_matches_the_reference_formula` below).
pub fn ema_update(target: &HashMap<String, Tensor>, source: &HashMap<String, Tensor>, m: f64) {
    let (mut targets, mut sources) = (Vec::new(), Vec::new());
    // Name order: the same calls whatever the maps' iteration order.
    let mut names: Vec<&String> = source.keys().collect();
    names.sort();
    for name in names {
        let s = &source[name];
        if !s.requires_grad() {
            continue;
        }
        if let Some(t) = target.get(name) {
            targets.push(t.shallow_clone());
            sources.push(s.detach());
        }
    }
    tch::no_grad(|| cxr_nn::multi_tensor::foreach_lerp_(&targets, &sources, 1.0 - m))
        .unwrap_or_else(|e| panic!("EMA update: {e}"));
}

/// MoCo v2's projection head: `Linear(f, f) → ReLU → Linear(f, d)`.
#[derive(Debug)]
pub struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    /// Builds the head under `p` (`p/0`, `p/2`, as `nn.Sequential` names them).
    pub fn new(p: &nn::Path, input: i64, hidden: i64, output: i64) -> Self {
        Self {
            fc1: nn::linear(p / "0", input, hidden, Default::default()),
            fc2: nn::linear(p / "2", hidden, output, Default::default()),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(x).relu())
    }
}

/// Collapse monitors of a batch of unit embeddings (docs/ssl-methods.md (Collapse monitors)).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Monitors {
    /// Mean per-dimension standard deviation; about `1/√d` when spread on
    /// the sphere, 0 when collapsed.
    pub embedding_std: f64,
    /// `E‖z − z⁺‖²` over positive pairs.
    pub alignment: f64,
    /// `log E exp(−2‖z_i − z_j‖²)` over distinct pairs (lower is more uniform).
    pub uniformity: f64,
}

/// Monitors of unit embeddings `z` and their positives `z_pos` (`[b, d]`).
pub fn monitors(z: &Tensor, z_pos: &Tensor) -> Monitors {
    tch::no_grad(|| {
        let z = z.to_kind(Kind::Double);
        let zp = z_pos.to_kind(Kind::Double);
        let n = z.size()[0];
        let std = z
            .std_dim(0, false, false)
            .mean(Kind::Double)
            .double_value(&[]);
        let alignment = (&z - &zp)
            .square()
            .sum_dim_intlist(1, false, Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
        let sq = (z.matmul(&z.tr()) * -2.0 + 2.0).clamp_min(0.0);
        let off = Tensor::ones([n, n], (Kind::Double, z.device()))
            - Tensor::eye(n, (Kind::Double, z.device()));
        let mean =
            ((sq * -2.0).exp() * &off).sum(Kind::Double) / off.sum(Kind::Double).clamp_min(1.0);
        Monitors {
            embedding_std: std,
            alignment,
            uniformity: mean.log().double_value(&[]),
        }
    })
}

/// The variables of each store under its prefix, for [`super::Objective::state`].
pub(crate) fn state_of(stores: &[(&str, &VarStore)]) -> BTreeMap<String, Tensor> {
    stores
        .iter()
        .flat_map(|(prefix, vs)| {
            vs.variables()
                .into_iter()
                .map(move |(name, t)| (format!("{prefix}{name}"), t))
        })
        .collect()
}

/// Copies `state` into each store's variables named `prefix + name`.
pub(crate) fn load_state_of(
    state: &BTreeMap<String, Tensor>,
    stores: &[(&str, &VarStore)],
) -> Result<(), Error> {
    tch::no_grad(|| {
        for (prefix, vs) in stores {
            for (name, mut t) in vs.variables() {
                let key = format!("{prefix}{name}");
                let src = state
                    .get(&key)
                    .ok_or_else(|| Error::MissingState { key: key.clone() })?;
                if src.size() != t.size() {
                    return Err(Error::StateShape {
                        key,
                        shape: src.size(),
                        expected: t.size(),
                    });
                }
                t.copy_(src);
            }
        }
        Ok(())
    })
}

/// Every rank's rows of `local` (`[n, ...]`, the same `n` on every rank)
/// in rank order, with gradients flowing only into this rank's own rows:
/// a loss over the whole global batch, computed in full on every rank,
/// then gives each rank exactly its own samples' share of the gradient.
///
/// # Errors
/// When the gather fails.
pub fn gather_with_grad(dp: &DataParallel, local: &Tensor) -> Result<Tensor, Error> {
    if dp.world_size() == 1 {
        return Ok(local.shallow_clone());
    }
    let all = dp.all_gather(&local.detach())?;
    let n = local.size()[0];
    let start = dp.rank() as i64 * n;
    let total = all.size()[0];
    Ok(Tensor::cat(
        &[
            all.narrow(0, 0, start),
            local.shallow_clone(),
            all.narrow(0, start + n, total - start - n),
        ],
        0,
    ))
}

/// This rank's share of a loss every rank computed in full over the global
/// batch (through [`gather_with_grad`]): its value is `1/world` of the
/// loss, so the ranks' values add up to it, while its gradient stays whole,
/// since each rank's gradient reaches only its own samples.
pub fn share_of_global(loss: Tensor, world: usize) -> Tensor {
    if world == 1 {
        return loss;
    }
    let correction = loss.detach() * (1.0 / world as f64 - 1.0);
    loss + correction
}

/// `param` where rank 0 uses it, detached elsewhere: a parameter applied
/// after [`gather_with_grad`] (CLIP's logit scale) must receive its
/// gradient from one rank only, or the summed gradient counts it `world`
/// times.
pub fn on_rank_zero(dp: &DataParallel, param: &Tensor) -> Tensor {
    if dp.is_main() {
        param.shallow_clone()
    } else {
        param.detach()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// CLIP's loss over a batch split across two thread ranks, through
    /// `gather_with_grad`, `on_rank_zero` and `share_of_global`: the values
    /// add up to the whole batch's loss, each rank's embedding gradients are
    /// its rows of the whole batch's, and the logit scale's gradients add up
    /// to its whole-batch gradient.
    #[test]
    fn gathered_loss_splits_into_exact_shares() {
        use crate::contrastive::clip_loss;
        use crate::dist::threads::run_ranks;
        let img = Tensor::randn([6, 5], (Kind::Double, Device::Cpu));
        let txt = Tensor::randn([6, 5], (Kind::Double, Device::Cpu));
        let leaf = |t: &Tensor| t.detach().copy().set_requires_grad(true);
        let (fi, ft, fs) = (leaf(&img), leaf(&txt), leaf(&Tensor::from(0.7f64)));
        let full = clip_loss(&fi, &ft, &fs);
        full.backward();
        let grads = |t: &Tensor| Vec::<f64>::try_from(t.grad().flatten(0, -1)).unwrap();
        // Tensors are not Sync: the threads rebuild them from plain values.
        let flat = |t: &Tensor| Vec::<f64>::try_from(t.flatten(0, -1)).unwrap();
        let (img_v, txt_v) = (flat(&img), flat(&txt));
        let shares = run_ranks(2, |g| {
            let dp = DataParallel::new(std::sync::Arc::new(g));
            let rows = |v: &[f64]| {
                let r = dp.rank();
                Tensor::from_slice(&v[r * 15..(r + 1) * 15])
                    .view([3, 5])
                    .set_requires_grad(true)
            };
            let leaf = |t: &Tensor| t.detach().copy().set_requires_grad(true);
            let (li, lt, ls) = (rows(&img_v), rows(&txt_v), leaf(&Tensor::from(0.7f64)));
            let loss = clip_loss(
                &gather_with_grad(&dp, &li).unwrap(),
                &gather_with_grad(&dp, &lt).unwrap(),
                &on_rank_zero(&dp, &ls),
            );
            let loss = share_of_global(loss, dp.world_size());
            loss.backward();
            let scale_grad = if ls.grad().defined() {
                f64::try_from(ls.grad()).unwrap()
            } else {
                0.0
            };
            let grads = |t: &Tensor| Vec::<f64>::try_from(t.grad().flatten(0, -1)).unwrap();
            (loss.double_value(&[]), grads(&li), grads(&lt), scale_grad)
        });
        let total: f64 = shares.iter().map(|s| s.0).sum();
        assert!((total - full.double_value(&[])).abs() < 1e-12);
        let (gi, gt) = (grads(&fi), grads(&ft));
        for (r, s) in shares.iter().enumerate() {
            for (a, b) in s.1.iter().zip(&gi[r * 15..(r + 1) * 15]) {
                assert!((a - b).abs() < 1e-12, "image grad {a} vs {b}");
            }
            for (a, b) in s.2.iter().zip(&gt[r * 15..(r + 1) * 15]) {
                assert!((a - b).abs() < 1e-12, "text grad {a} vs {b}");
            }
        }
        let scale: f64 = shares.iter().map(|s| s.3).sum();
        assert!((scale - f64::try_from(fs.grad()).unwrap()).abs() < 1e-12);
        assert_eq!(shares[1].3, 0.0, "rank 1 must leave the scale to rank 0");
    }

    /// Masking identical texts removes exactly those logits from both
    /// softmaxes (checked against a direct f64 sum), and with nothing to mask
    /// it is plain InfoNCE.
    #[test]
    fn excluded_pairs_leave_both_softmaxes() {
        let a = unit(5, 4, 31);
        let b = unit(5, 4, 32);
        let scale = Tensor::from(10.0f64);
        let keys = Tensor::from_slice(&[7i64, 3, 7, 9, 3]);
        let same = same_key_pairs(&keys);
        let pairs: Vec<(i64, i64)> = (0..5)
            .flat_map(|i| (0..5).map(move |j| (i, j)))
            .filter(|&(i, j)| same.int64_value(&[i, j]) != 0)
            .collect();
        assert_eq!(pairs, [(0, 2), (1, 4), (2, 0), (4, 1)]);
        let none = Tensor::zeros([5, 5], (Kind::Bool, Device::Cpu));
        let plain = info_nce(&a, &b, &scale, (0.75, 0.25)).double_value(&[]);
        let unmasked = info_nce_excluding(&a, &b, &scale, (0.75, 0.25), &none).double_value(&[]);
        assert!((plain - unmasked).abs() < 1e-12);
        let got = info_nce_excluding(&a, &b, &scale, (0.75, 0.25), &same).double_value(&[]);
        let s = Vec::<Vec<f64>>::try_from(a.matmul(&b.tr()) * 10.0).unwrap();
        let keep = |i: usize, j: usize| !pairs.contains(&(i as i64, j as i64));
        let mut rows = 0.0;
        let mut cols = 0.0;
        for (i, row) in s.iter().enumerate() {
            let r: f64 = (0..5).filter(|&j| keep(i, j)).map(|j| row[j].exp()).sum();
            let c: f64 = (0..5).filter(|&j| keep(j, i)).map(|j| s[j][i].exp()).sum();
            rows += r.ln() - row[i];
            cols += c.ln() - row[i];
        }
        let want = 0.75 * rows / 5.0 + 0.25 * cols / 5.0;
        assert!((got - want).abs() < 1e-10, "{got} vs {want}");
        assert!(got < plain, "removing negatives lowers the loss");
    }

    fn unit(n: i64, d: i64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        l2_normalize(&Tensor::randn([n, d], (Kind::Double, Device::Cpu)))
    }

    #[test]
    fn queue_loss_matches_a_per_sample_loop() {
        let (q, k, queue) = (unit(4, 6, 1), unit(4, 6, 2), unit(10, 6, 3));
        let (loss, _) = queue_info_nce(&q, &k, &queue, 0.2);
        let (qv, kv, nv) = (
            Vec::<Vec<f64>>::try_from(&q).unwrap(),
            Vec::<Vec<f64>>::try_from(&k).unwrap(),
            Vec::<Vec<f64>>::try_from(&queue).unwrap(),
        );
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let mut want = 0.0;
        for i in 0..4 {
            let pos = dot(&qv[i], &kv[i]) / 0.2;
            let all: Vec<f64> = std::iter::once(pos)
                .chain(nv.iter().map(|n| dot(&qv[i], n) / 0.2))
                .collect();
            let lse = all.iter().map(|v| v.exp()).sum::<f64>().ln();
            want += lse - pos;
        }
        want /= 4.0;
        assert!((loss.double_value(&[]) - want).abs() < 1e-12);
    }

    #[test]
    fn chance_values() {
        // Zero scale: every logit equal, so the losses are ln(n + 1) and ln b.
        let (q, k, queue) = (unit(8, 16, 4), unit(8, 16, 5), unit(63, 16, 6));
        let (loss, _) = queue_info_nce(&q, &k, &queue, 1e12);
        assert!((loss.double_value(&[]) - 64f64.ln()).abs() < 1e-6);
        let zero = Tensor::from(0.0f64);
        let l = info_nce(&q, &k, &zero, (0.5, 0.5));
        assert!((l.double_value(&[]) - 8f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn in_batch_loss_is_invariant_to_permuting_pairs() {
        let (a, b) = (unit(6, 5, 7), unit(6, 5, 8));
        let scale = Tensor::from(10.0f64);
        let perm = Tensor::from_slice(&[3i64, 0, 5, 1, 4, 2]);
        let l1 = info_nce(&a, &b, &scale, (0.75, 0.25)).double_value(&[]);
        let l2 = info_nce(
            &a.index_select(0, &perm),
            &b.index_select(0, &perm),
            &scale,
            (0.75, 0.25),
        )
        .double_value(&[]);
        assert!((l1 - l2).abs() < 1e-12);
    }

    #[test]
    fn ema_matches_the_reference_formula() {
        tch::manual_seed(1);
        let opts = (Kind::Float, tch::Device::Cpu);
        let q = Tensor::randn([64, 32, 3, 3], opts).set_requires_grad(true);
        let k0 = Tensor::randn([64, 32, 3, 3], opts);
        let source = HashMap::from([("w".to_owned(), q.shallow_clone())]);
        let target = HashMap::from([("w".to_owned(), k0.copy())]);
        for _ in 0..5 {
            ema_update(&target, &source, 0.999);
        }
        let mut reference = k0.copy();
        for _ in 0..5 {
            reference = &reference * 0.999 + q.detach() * (1.0 - 0.999);
        }
        // A few ulps of float32 (about 1e-7 relative each).
        let err = (&target["w"] - &reference).abs().max().double_value(&[])
            / reference.abs().max().double_value(&[]);
        assert!(err < 1e-6, "{err}");
        // And it moved: the comparison is not of two copies of `k0`.
        assert!((&target["w"] - &k0).abs().max().double_value(&[]) > 1e-3);
    }

    #[test]
    fn ema_moves_parameters_only() {
        let p = Tensor::from_slice(&[1.0f64, 2.0]).set_requires_grad(true);
        let stat = Tensor::from_slice(&[5.0f64]);
        let source = HashMap::from([("w".to_owned(), p), ("bn.running_mean".to_owned(), stat)]);
        let target = HashMap::from([
            ("w".to_owned(), Tensor::from_slice(&[0.0f64, 0.0])),
            ("bn.running_mean".to_owned(), Tensor::from_slice(&[0.0f64])),
        ]);
        ema_update(&target, &source, 0.9);
        let w = Vec::<f64>::try_from(&target["w"]).unwrap();
        assert!(
            (w[0] - 0.1).abs() < 1e-15 && (w[1] - 0.2).abs() < 1e-15,
            "{w:?}"
        );
        assert_eq!(
            Vec::<f64>::try_from(&target["bn.running_mean"]).unwrap(),
            vec![0.0]
        );
    }

    #[test]
    fn monitors_tell_spread_from_collapse() {
        let z = unit(256, 16, 9);
        let m = monitors(&z, &z);
        assert!((m.embedding_std - 0.25).abs() < 0.03, "{m:?}");
        assert_eq!(m.alignment, 0.0);
        let collapsed = unit(1, 16, 10).expand([256, 16], false).contiguous();
        let c = monitors(&collapsed, &collapsed);
        assert!(
            c.embedding_std < 1e-6 && c.uniformity > -1e-6 && m.uniformity < -1.0,
            "{c:?} {m:?}"
        );
    }
}
