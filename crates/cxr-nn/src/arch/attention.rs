//! Multi-head self-attention shared by the transformer backbones: they differ
//! only in how the projections are stored (separate q/k/v layers in REFERS'
//! ViT and BERT, one stacked `in_proj` in OpenAI CLIP).

use tch::Tensor;

/// Scaled dot-product attention over `[batch, tokens, width]` projections
/// split into `heads` heads. `mask`, when given, is added to the scores
/// (`-inf` where attention is forbidden) and broadcast over batch and heads.
///
/// Through libtorch's fused `scaled_dot_product_attention` (a flash-style
/// kernel on the CPU: the `[tokens, tokens]` score matrix is never held
/// whole, the softmax accumulates in float32 under bf16), as
/// `torch.nn.functional.multi_head_attention_forward` does; the same values
/// as `softmax(q k^T / sqrt(d) + mask) v` within float rounding
/// (`sdpa_matches_the_explicit_formula` below).
pub fn multi_head(q: &Tensor, k: &Tensor, v: &Tensor, heads: i64, mask: Option<&Tensor>) -> Tensor {
    let (b, n, w) = q.size3().expect("[batch, tokens, width]");
    let d = w / heads;
    let split = |t: &Tensor| t.view([b, -1, heads, d]).transpose(1, 2);
    let (q, k, v) = (split(q), split(k), split(v));
    // An additive mask must be in the query's type (bf16 under autocast).
    let mask = mask.map(|m| m.to_kind(q.kind()));
    Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, false, None, false)
        .transpose(1, 2)
        .contiguous()
        .view([b, n, w])
}

/// Exact (erf) GELU.
pub fn gelu(x: &Tensor) -> Tensor {
    x.gelu("none")
}

/// The factor of OpenAI CLIP's GELU approximation, [`quick_gelu`].
pub const QUICK_GELU: f64 = 1.702;

/// OpenAI CLIP's approximation `x * sigmoid(1.702 x)`.
pub fn quick_gelu(x: &Tensor) -> Tensor {
    x * (x * QUICK_GELU).sigmoid()
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::multi_head;

    /// The explicit formula the fused kernel replaced.
    fn explicit(q: &Tensor, k: &Tensor, v: &Tensor, heads: i64, mask: Option<&Tensor>) -> Tensor {
        let (b, n, w) = q.size3().unwrap();
        let d = w / heads;
        let split = |t: &Tensor| t.view([b, -1, heads, d]).transpose(1, 2);
        let (q, k, v) = (split(q), split(k), split(v));
        let mut scores = q.matmul(&k.transpose(-2, -1)) / (d as f64).sqrt();
        if let Some(m) = mask {
            scores += m;
        }
        scores
            .softmax(-1, Kind::Float)
            .matmul(&v)
            .transpose(1, 2)
            .contiguous()
            .view([b, n, w])
    }

    #[test]
    fn sdpa_matches_the_explicit_formula() {
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let (q, k, v) = (
            Tensor::randn([2, 9, 24], opts),
            Tensor::randn([2, 9, 24], opts),
            Tensor::randn([2, 9, 24], opts),
        );
        // A causal mask, as CLIP's text tower uses.
        let causal = Tensor::full([9, 9], f64::NEG_INFINITY, opts).triu(1);
        for mask in [None, Some(&causal)] {
            let ours = multi_head(&q, &k, &v, 3, mask);
            let reference = explicit(&q, &k, &v, 3, mask);
            let err = (&ours - &reference).abs().max().double_value(&[]);
            assert!(err < 1e-5, "{err}");
        }
    }
}
