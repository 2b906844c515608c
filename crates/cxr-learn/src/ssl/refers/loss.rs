//! REFERS' two losses (docs/ssl-methods.md (REFERS)): the per-sample image<->report
//! InfoNCE with cosine similarity, and the captioning cross-entropy.

use tch::{Kind, Reduction, Tensor};

use crate::ssl::blocks::l2_normalize;

/// The contrastive term and its image->text top-1 accuracy.
#[derive(Debug)]
pub struct Contrastive {
    /// `(1/B) Σ_i [λ·CE(S_i,:, i) + (1 − λ)·CE(S_:,i, i)]`.
    pub loss: Tensor,
    /// Fraction of images whose most similar report is their own (chance 1/B).
    pub accuracy: f64,
}

/// REFERS' contrastive loss of image vectors `v` and report vectors `u`
/// (`[b, d]`, paired by row): with `S_ik = cos(v_i, u_k) / τ`, λ weighs the
/// image->text cross-entropy and 1 − λ the text->image one. `detach_t2i`
/// reproduces the reference code, which turns the text->image term into a
/// Python float: its value still counts, its gradient does not (docs/ssl-methods.md (Pitfalls)).
pub fn contrastive(v: &Tensor, u: &Tensor, tau: f64, lambda: f64, detach_t2i: bool) -> Contrastive {
    let s = l2_normalize(v).matmul(&l2_normalize(u).tr()) / tau;
    let n = s.size()[0];
    let target = Tensor::arange(n, (Kind::Int64, s.device()));
    let ce = |logits: &Tensor| logits.log_softmax(-1, logits.kind()).nll_loss(&target);
    let i2t = ce(&s);
    let t2i = ce(&s.tr());
    let t2i = if detach_t2i { t2i.detach() } else { t2i };
    let accuracy = tch::no_grad(|| {
        s.argmax(1, false)
            .eq_tensor(&target)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[])
    });
    Contrastive {
        loss: i2t * lambda + t2i * (1.0 - lambda),
        accuracy,
    }
}

/// Mean next-token cross-entropy of `logits` `[n, t, V]` against `targets`
/// `[n, t]`, over the targets that are not `ignore` (REFERS ignores id 0,
/// its padding).
pub fn token_cross_entropy(logits: &Tensor, targets: &Tensor, ignore: i64) -> Tensor {
    token_nll(logits, targets, ignore, Reduction::Mean)
}

/// The summed next-token cross-entropy of [`token_cross_entropy`] (its
/// numerator), for a mean over several ranks' tokens.
pub fn token_cross_entropy_sum(logits: &Tensor, targets: &Tensor, ignore: i64) -> Tensor {
    token_nll(logits, targets, ignore, Reduction::Sum)
}

fn token_nll(logits: &Tensor, targets: &Tensor, ignore: i64, reduction: Reduction) -> Tensor {
    let v = logits.size()[2];
    logits
        .reshape([-1, v])
        .log_softmax(-1, logits.kind())
        .nll_loss_nd::<Tensor>(&targets.reshape([-1]), None, reduction, ignore)
}

/// Frequency of the most common target that is not `ignore`: what always
/// guessing one token would score.
pub fn majority_frequency(targets: &Tensor, ignore: i64) -> f64 {
    tch::no_grad(|| {
        let kept = targets.masked_select(&targets.ne(ignore));
        if kept.numel() == 0 {
            return 0.0;
        }
        let top = kept.bincount::<Tensor>(None, 0).max().double_value(&[]);
        top / kept.numel() as f64
    })
}

/// Teacher-forced next-token accuracy over the targets that are not
/// `ignore`, and their [`majority_frequency`].
pub fn token_accuracy(logits: &Tensor, targets: &Tensor, ignore: i64) -> (f64, f64) {
    tch::no_grad(|| {
        let real = targets.ne(ignore);
        let count = real.sum(Kind::Double).double_value(&[]).max(1.0);
        let hits = logits
            .argmax(-1, false)
            .eq_tensor(targets)
            .logical_and(&real)
            .sum(Kind::Double)
            .double_value(&[]);
        (hits / count, majority_frequency(targets, ignore))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;
    use tch::Device;

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        Vec::<Vec<f64>>::try_from(t).unwrap()
    }

    /// The loss as a per-sample loop over the formula of docs/ssl-methods.md (REFERS).
    fn naive(v: &[Vec<f64>], u: &[Vec<f64>], tau: f64, lambda: f64) -> f64 {
        let cos = |a: &[f64], b: &[f64]| {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
            let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
            dot / (na * nb)
        };
        let b = v.len();
        let mut total = 0.0;
        for i in 0..b {
            let i2t: Vec<f64> = (0..b).map(|k| cos(&v[i], &u[k]) / tau).collect();
            let t2i: Vec<f64> = (0..b).map(|k| cos(&v[k], &u[i]) / tau).collect();
            let nll = |row: &[f64]| row.iter().map(|x| x.exp()).sum::<f64>().ln() - row[i];
            total += lambda * nll(&i2t) + (1.0 - lambda) * nll(&t2i);
        }
        total / b as f64
    }

    #[test]
    fn contrastive_matches_a_per_sample_loop() {
        tch::manual_seed(5);
        let v = Tensor::randn([5, 7], (Kind::Double, Device::Cpu));
        let u = Tensor::randn([5, 7], (Kind::Double, Device::Cpu));
        let want = naive(&rows(&v), &rows(&u), 0.1, 0.75);
        for detach in [false, true] {
            let got = contrastive(&v, &u, 0.1, 0.75, detach)
                .loss
                .double_value(&[]);
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn detaching_drops_only_the_text_to_image_gradient() {
        tch::manual_seed(6);
        let v = Tensor::randn([4, 3], (Kind::Double, Device::Cpu));
        let u = Tensor::randn([4, 3], (Kind::Double, Device::Cpu));
        let grad = |lambda: f64, detach: bool| {
            let u = u.copy().set_requires_grad(true);
            contrastive(&v, &u, 0.1, lambda, detach).loss.backward();
            u.grad()
        };
        // With the text->image term detached, λ = 0.75 trains like λ·image->text alone.
        let detached = grad(0.75, true);
        let i2t_only = grad(1.0, false) * 0.75;
        let diff = (detached - i2t_only).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "{diff}");
        let full = grad(0.75, false);
        assert!((full - grad(0.75, true)).abs().max().double_value(&[]) > 1e-6);
    }

    #[test]
    fn chance_values() {
        // Equal similarities: ln B for the contrastive term; a uniform
        // decoder gives ln V per token.
        let v = Tensor::ones([6, 4], (Kind::Double, Device::Cpu));
        let l = contrastive(&v, &v, 0.1, 0.75, false).loss.double_value(&[]);
        assert!((l - 6f64.ln()).abs() < 1e-12);
        let logits = Tensor::zeros([2, 3, 9], (Kind::Double, Device::Cpu));
        let targets = Tensor::from_slice(&[4i64, 5, 0, 8, 0, 0]).view([2, 3]);
        let ce = token_cross_entropy(&logits, &targets, 0).double_value(&[]);
        assert!((ce - 9f64.ln()).abs() < 1e-12, "{ce}");
    }

    #[test]
    fn token_cross_entropy_ignores_padding() {
        tch::manual_seed(7);
        let logits = Tensor::randn([1, 4, 5], (Kind::Double, Device::Cpu));
        let targets = Tensor::from_slice(&[3i64, 1, 0, 0]).view([1, 4]);
        let lp = rows(&logits.get(0).log_softmax(-1, Kind::Double));
        let want = -(lp[0][3] + lp[1][1]) / 2.0;
        let got = token_cross_entropy(&logits, &targets, 0).double_value(&[]);
        assert!((got - want).abs() < 1e-12);
        let (acc, majority) = token_accuracy(&logits, &targets, 0);
        let hits = [(0usize, 3usize), (1, 1)]
            .iter()
            .filter(|&&(p, t)| (0..5).all(|k| lp[p][k] <= lp[p][t]))
            .count();
        assert!((acc - hits as f64 / 2.0).abs() < 1e-12);
        assert!((majority - 0.5).abs() < 1e-12);
    }

    /// `max |ours − theirs| / max |theirs|` (0 when both are 0).
    fn relative(ours: &Tensor, theirs: &Tensor) -> f64 {
        let diff = (ours - theirs).abs().max().double_value(&[]);
        let scale = theirs.abs().max().double_value(&[]);
        if scale == 0.0 { diff } else { diff / scale }
    }

    /// The objective on a fixture of scripts/fixtures/refers_loss.py, as
    /// the trainer assembles it: captioning cross-entropy (logits of every
    /// position but the last against the tokens shifted by one, padding id 0
    /// ignored) plus the contrastive term at the reference's τ 0.1, λ 0.75.
    /// Returns the fixture, the three losses and the gradients of their sum
    /// with respect to `v`, `u` and the logits.
    fn objective(draw: usize, detach_t2i: bool) -> (BTreeMap<String, Tensor>, [Tensor; 6]) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
            "tests/fixtures/objectives/refers_draw{draw}.safetensors"
        ));
        let f: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .into_iter()
            .collect();
        let v = f["v"].copy().set_requires_grad(true);
        let u = f["u"].copy().set_requires_grad(true);
        let logits = f["logits"].copy().set_requires_grad(true);
        let len = logits.size()[1];
        let caption = token_cross_entropy(
            &logits.narrow(1, 0, len - 1),
            &f["tokens"].narrow(1, 1, len - 1),
            0,
        );
        let con = contrastive(&v, &u, 0.1, 0.75, detach_t2i).loss;
        let total = &caption + &con;
        total.backward();
        let out = [total, con, caption, v.grad(), u.grad(), logits.grad()];
        (f, out)
    }

    const NAMES: [&str; 6] = [
        "loss",
        "loss_contrastive",
        "loss_caption",
        "grad_v",
        "grad_u",
        "grad_logits",
    ];

    /// funnyzhou/REFERS' `CaptioningModel.forward` (its `LossesOfConVIRT`
    /// and padding-ignoring cross-entropy), run on fixed encoder and decoder
    /// outputs by scripts/fixtures/refers_loss.py: with `--refers-detach-t2i`
    /// the same three losses and the same gradients with respect to the class
    /// tokens, the report vectors and the logits. Draw 1 has captions of one
    /// length, draw 2 padded captions of different lengths and two identical
    /// reports.
    #[test]
    fn with_detached_text_to_image_equals_funnyzhou_refers() {
        for draw in 1..=2 {
            let (f, ours) = objective(draw, true);
            let errors: Vec<f64> = NAMES
                .iter()
                .zip(&ours)
                .map(|(name, t)| relative(t, &f[*name]))
                .collect();
            eprintln!("draw {draw}: relative error {NAMES:?} {errors:?}");
            assert!(errors.iter().all(|&e| e <= 1e-5), "draw {draw}: {errors:?}");
        }
    }

    /// The default trains the text->image term too (docs/ssl-methods.md
    /// (Pitfalls)): the same losses and caption gradient as the reference,
    /// other gradients for the class tokens and the report vectors.
    #[test]
    fn default_differs_from_funnyzhou_refers_only_in_contrastive_gradients() {
        for draw in 1..=2 {
            let (f, ours) = objective(draw, false);
            for (name, t) in NAMES.iter().zip(&ours) {
                let e = relative(t, &f[*name]);
                eprintln!("draw {draw}, default: relative error {name} {e}");
                if name.starts_with("loss") || *name == "grad_logits" {
                    assert!(e <= 1e-5, "draw {draw}: {name} {e}");
                } else {
                    assert!(e > 1e-2, "draw {draw}: {name} {e}");
                }
            }
        }
    }
}
