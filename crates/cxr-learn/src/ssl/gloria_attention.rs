//! GLoRIA's local loss (docs/ssl-methods.md (GLoRIA);
//! the reference's `CrossAttentionPool`): every word of a report attends over every region of an
//! image, each word is compared with its attended region context, and the
//! per-word agreements are pooled into one image-report score, for every
//! image-report pair of the batch at once.

use tch::{Kind, Tensor};

/// GLoRIA's three temperatures: attention sharpness γ1, word-aggregation
/// γ2, logit scale γ3 (config `temp1..3` = 4, 5, 10).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gammas {
    /// γ1: scales the attention logits over regions.
    pub attention: f64,
    /// γ2: scales word relevances inside the log-sum-exp.
    pub words: f64,
    /// γ3: scales the image-report scores into logits.
    pub logits: f64,
}

impl Default for Gammas {
    fn default() -> Self {
        Self {
            attention: 4.0,
            words: 5.0,
            logits: 10.0,
        }
    }
}

/// Region context of words and the attention that made it, for every
/// (image j, report i) pair: `regions` `[bj, m, d]`, `words` `[bi, w, d]`,
/// `valid` `[bi, w]` (true for words that take part). Returns the context
/// `[bj, bi, w, d]` and the weights `α` `[bj, bi, w, m]` (each word's
/// distribution over regions).
///
/// `double_softmax` is the reference code's form (AttnGAN/ControlGAN):
/// scores are first normalised over the words of the report, then
/// `softmax over regions of γ1 ×` those; otherwise the paper's single
/// `softmax over regions of γ1 × score`. Scores are plain dot products.
pub fn cross_attention_pool(
    regions: &Tensor,
    words: &Tensor,
    valid: &Tensor,
    gamma1: f64,
    double_softmax: bool,
) -> (Tensor, Tensor) {
    // [bj, bi, m, w]
    let scores = Tensor::einsum("jmd,iwd->jimw", &[regions, words], None::<i64>);
    let alpha = if double_softmax {
        let pad = valid.logical_not().unsqueeze(1).unsqueeze(0);
        let over_words = scores
            .masked_fill(&pad, f64::NEG_INFINITY)
            .softmax(-1, scores.kind());
        (over_words * gamma1).softmax(2, scores.kind())
    } else {
        (scores * gamma1).softmax(2, regions.kind())
    };
    let alpha = alpha.transpose(2, 3);
    let context = Tensor::einsum("jiwm,jmd->jiwd", &[&alpha, regions], None::<i64>);
    (context, alpha)
}

/// The local logits `L[j, i] = γ3 · log Σ_t exp(γ2 · cos(c_t, w_t))` over
/// the valid words t of report i, `c_t` the word's region context in image
/// j (`[bj, bi]`; rows are images).
pub fn local_logits(
    regions: &Tensor,
    words: &Tensor,
    valid: &Tensor,
    gammas: Gammas,
    double_softmax: bool,
) -> Tensor {
    let (context, _) =
        cross_attention_pool(regions, words, valid, gammas.attention, double_softmax);
    let w = words.unsqueeze(0);
    let dot = (&context * &w).sum_dim_intlist(-1, false, context.kind());
    let norms = context.norm_scalaropt_dim(2, [-1], false) * w.norm_scalaropt_dim(2, [-1], false);
    let relevance = dot / norms.clamp_min(1e-8);
    let pad = valid.logical_not().unsqueeze(0);
    (relevance * gammas.words)
        .masked_fill(&pad, f64::NEG_INFINITY)
        .logsumexp([-1], false)
        * gammas.logits
}

/// `CE_rows(L) + CE_cols(L)` with the diagonal as positives: GLoRIA sums
/// both directions rather than averaging them.
pub fn both_directions(logits: &Tensor) -> Tensor {
    let n = logits.size()[0];
    let target = Tensor::arange(n, (Kind::Int64, logits.device()));
    let ce = |l: &Tensor| l.log_softmax(-1, l.kind()).nll_loss(&target);
    ce(logits) + ce(&logits.tr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    type M = Vec<Vec<f64>>;

    fn rand(shape: &[i64], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn(shape, (Kind::Double, Device::Cpu))
    }

    fn rows(t: &Tensor) -> Vec<M> {
        (0..t.size()[0])
            .map(|b| Vec::<Vec<f64>>::try_from(&t.get(b)).unwrap())
            .collect()
    }

    fn softmax(v: &[f64]) -> Vec<f64> {
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// The reference's per-report loop, written out: report i keeps its
    /// first n_i words, every image attends with them, scores pooled.
    fn naive_logits(regions: &[M], words: &[M], n: &[usize], g: Gammas, double: bool) -> M {
        let mut out = vec![vec![0.0; words.len()]; regions.len()];
        for (j, v) in regions.iter().enumerate() {
            for (i, w) in words.iter().enumerate() {
                let w = &w[..n[i]];
                // a[r][t]: region r, word t.
                let a: M = v
                    .iter()
                    .map(|r| w.iter().map(|t| dot(r, t)).collect())
                    .collect();
                let a: M = if double {
                    a.iter().map(|row| softmax(row)).collect()
                } else {
                    a
                };
                let mut z = 0.0;
                for (t, wt) in w.iter().enumerate() {
                    let col: Vec<f64> = a.iter().map(|row| g.attention * row[t]).collect();
                    let alpha = softmax(&col);
                    let mut c = vec![0.0; wt.len()];
                    for (r, vr) in v.iter().enumerate() {
                        for (k, x) in vr.iter().enumerate() {
                            c[k] += alpha[r] * x;
                        }
                    }
                    let cos = dot(&c, wt) / (dot(&c, &c).sqrt() * dot(wt, wt).sqrt()).max(1e-8);
                    z += (g.words * cos).exp();
                }
                out[j][i] = g.logits * z.ln();
            }
        }
        out
    }

    fn valid(n: &[usize], w: i64) -> Tensor {
        let v: Vec<bool> = n
            .iter()
            .flat_map(|&k| (0..w as usize).map(move |t| t < k))
            .collect();
        Tensor::from_slice(&v).view([n.len() as i64, w])
    }

    #[test]
    fn local_logits_match_the_per_pair_loop() {
        let (regions, words) = (rand(&[3, 5, 4], 1), rand(&[3, 4, 4], 2));
        let n = [4, 2, 3];
        for double in [true, false] {
            let g = Gammas::default();
            let got = local_logits(&regions, &words, &valid(&n, 4), g, double);
            let want = naive_logits(&rows(&regions), &rows(&words), &n, g, double);
            let got = Vec::<Vec<f64>>::try_from(&got).unwrap();
            for (a, b) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!((a - b).abs() < 1e-10, "{double}: {a} vs {b}");
            }
        }
        // Padding words change nothing: garbage in the masked slots.
        let mut noisy = Vec::<Vec<Vec<f64>>>::try_from(&words).unwrap();
        noisy[1][3] = vec![9.0; 4];
        let noisy = Tensor::from_slice(&noisy.concat().concat()).view([3, 4, 4]);
        let a = local_logits(&regions, &words, &valid(&n, 4), Gammas::default(), true);
        let b = local_logits(&regions, &noisy, &valid(&n, 4), Gammas::default(), true);
        assert!(f64::try_from((a - b).abs().max()).unwrap() < 1e-12);
    }

    #[test]
    fn loss_sums_both_directions_of_cross_entropy() {
        let l = Tensor::from_slice(&[2.0f64, 0.0, 1.0, 3.0]).view([2, 2]);
        let ce = |x: f64, y: f64| -x + (x.exp() + y.exp()).ln();
        let want = (ce(2.0, 0.0) + ce(3.0, 1.0)) / 2.0 + (ce(2.0, 1.0) + ce(3.0, 0.0)) / 2.0;
        assert!((f64::try_from(both_directions(&l)).unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn attention_rows_are_distributions_over_regions() {
        let (regions, words) = (rand(&[2, 6, 3], 3), rand(&[2, 3, 3], 4));
        let (_, alpha) = cross_attention_pool(&regions, &words, &valid(&[3, 2], 3), 4.0, true);
        assert_eq!(alpha.size(), vec![2, 2, 3, 6]);
        let sums = alpha.sum_dim_intlist(-1, false, Kind::Double);
        assert!(f64::try_from((sums - 1.0).abs().max()).unwrap() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let n = [3, 2];
        let mask = valid(&n, 3);
        let loss = |r: &Tensor, w: &Tensor, double: bool| {
            both_directions(&local_logits(r, w, &mask, Gammas::default(), double))
        };
        for double in [true, false] {
            let regions = (rand(&[2, 4, 3], 5) * 0.5).set_requires_grad(true);
            let words = (rand(&[2, 3, 3], 6) * 0.5).set_requires_grad(true);
            loss(&regions, &words, double).backward();
            for (x, other, is_regions) in [(&regions, &words, true), (&words, &regions, false)] {
                let grad = x.grad().view([-1]);
                let base = x.detach().view([-1]);
                for k in 0..base.size()[0] {
                    let h = 1e-6;
                    let at = |d: f64| {
                        let p = base.copy();
                        let _ = p.get(k).fill_(base.double_value(&[k]) + d);
                        let p = p.view_as(x);
                        let o = other.detach();
                        let (r, w) = if is_regions { (p, o) } else { (o, p) };
                        f64::try_from(loss(&r, &w, double)).unwrap()
                    };
                    let numeric = (at(h) - at(-h)) / (2.0 * h);
                    let analytic = grad.double_value(&[k]);
                    assert!(
                        (numeric - analytic).abs() < 1e-6 * (1.0 + analytic.abs()),
                        "{double} {is_regions} {k}: {numeric} vs {analytic}"
                    );
                }
            }
        }
    }
}
