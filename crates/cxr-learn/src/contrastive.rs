//! Contrastive image-text objectives.

use tch::{Kind, Reduction, Tensor};

/// `ln 100`: open_clip's ceiling for the learned logit scale. CheXzero leaves
/// it unclamped, which can run away at small batches; callers clamp the
/// parameter to this after each step when they want open_clip's behaviour.
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_091;

/// CLIP's symmetric InfoNCE (CheXzero `run_train.py`): with
/// `S = exp(logit_scale) * N(img) N(txt)^T` over a batch of matching pairs
/// (row i of `image` belongs with row i of `text`), the mean of the
/// cross-entropy over rows and over columns, each against the diagonal.
/// `logit_scale` is the log of the multiplier (a scalar tensor, learnable).
pub fn clip_loss(image: &Tensor, text: &Tensor, logit_scale: &Tensor) -> Tensor {
    let n = image.size()[0];
    let norm = |x: &Tensor| x / x.norm_scalaropt_dim(2, [-1], true);
    let logits = norm(image).matmul(&norm(text).tr()) * logit_scale.exp();
    let target = Tensor::arange(n, (Kind::Int64, image.device()));
    let rows = logits.cross_entropy_loss::<Tensor>(&target, None, Reduction::Mean, -100, 0.0);
    let cols = logits
        .tr()
        .cross_entropy_loss::<Tensor>(&target, None, Reduction::Mean, -100, 0.0);
    (rows + cols) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss computed directly in f64.
    fn reference(img: &[Vec<f64>], txt: &[Vec<f64>], s: f64) -> f64 {
        let unit = |v: &Vec<f64>| {
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| x / n).collect::<Vec<f64>>()
        };
        let (a, b): (Vec<_>, Vec<_>) = (
            img.iter().map(unit).collect(),
            txt.iter().map(unit).collect(),
        );
        let n = a.len();
        let l: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| s.exp() * a[i].iter().zip(&b[j]).map(|(x, y)| x * y).sum::<f64>())
                    .collect()
            })
            .collect();
        let ce = |row: &dyn Fn(usize) -> f64, i: usize| {
            let lse = (0..n).map(row).map(f64::exp).sum::<f64>().ln();
            lse - row(i)
        };
        let rows: f64 = (0..n).map(|i| ce(&|j| l[i][j], i)).sum::<f64>() / n as f64;
        let cols: f64 = (0..n).map(|i| ce(&|j| l[j][i], i)).sum::<f64>() / n as f64;
        (rows + cols) / 2.0
    }

    #[test]
    fn matches_a_direct_computation() {
        let img = vec![
            vec![1.0, 0.5, -0.2],
            vec![0.1, 2.0, 0.3],
            vec![-1.0, 0.2, 0.9],
            vec![0.4, 0.4, 0.4],
        ];
        let txt = vec![
            vec![0.8, 0.1, 0.0],
            vec![0.3, 1.5, -0.2],
            vec![-0.5, -0.1, 1.2],
            vec![1.0, -1.0, 0.5],
        ];
        let flat = |m: &Vec<Vec<f64>>| {
            Tensor::from_slice(&m.concat())
                .view([4, 3])
                .to_kind(Kind::Float)
        };
        let s = 1.7f64;
        let loss = clip_loss(&flat(&img), &flat(&txt), &Tensor::from(s as f32)).double_value(&[]);
        let want = reference(&img, &txt, s);
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
    }

    /// Largest elementwise difference over the largest magnitude of `want`:
    /// elementwise ratios would blow up on gradient entries near zero.
    fn relative_error(got: &Tensor, want: &Tensor) -> f64 {
        let diff = (got.to_kind(Kind::Double) - want.to_kind(Kind::Double)).abs();
        diff.max().double_value(&[]) / want.abs().max().to_kind(Kind::Double).double_value(&[])
    }

    /// Issue #25: CheXzero's own train step (`run_train.train_batch` on their
    /// `CLIP.forward`, towers replaced by the fixed embeddings; see
    /// scripts/fixtures/clip_loss.py for the pinned commit) gives these losses
    /// and gradients; draw 2 has two identical texts and two identical images.
    #[test]
    fn matches_chexzero_train_step() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objectives");
        for draw in ["clip_draw1", "clip_draw2"] {
            let fixture: std::collections::HashMap<String, Tensor> =
                Tensor::read_safetensors(dir.join(format!("{draw}.safetensors")))
                    .expect("fixture")
                    .into_iter()
                    .collect();
            let input = |k: &str| fixture[k].copy().set_requires_grad(true);
            let (img, txt, scale) = (input("image"), input("text"), input("logit_scale"));
            let loss = clip_loss(&img, &txt, &scale);
            loss.backward();
            for (name, got, want) in [
                ("loss", loss.detach(), &fixture["loss"]),
                ("grad_image", img.grad(), &fixture["grad_image"]),
                ("grad_text", txt.grad(), &fixture["grad_text"]),
                (
                    "grad_logit_scale",
                    scale.grad(),
                    &fixture["grad_logit_scale"],
                ),
            ] {
                assert_eq!(got.size(), want.size(), "{draw} {name}");
                let e = relative_error(&got, want);
                eprintln!("{draw} {name}: max relative error {e:.3e}");
                assert!(e < 1e-5, "{draw} {name}: relative error {e}");
            }
        }
    }

    #[test]
    fn is_ln_batch_at_zero_scale_and_has_gradients() {
        let img = Tensor::randn([8, 5], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let txt = Tensor::randn([8, 5], (Kind::Float, tch::Device::Cpu));
        // exp(-inf) = 0: every logit equal, so the loss is ln 8.
        let l = clip_loss(&img, &txt, &Tensor::from(f32::NEG_INFINITY));
        assert!((l.double_value(&[]) - 8f64.ln()).abs() < 1e-6);
        let l = clip_loss(&img, &txt, &Tensor::from(2.0f32));
        l.backward();
        assert!(img.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
