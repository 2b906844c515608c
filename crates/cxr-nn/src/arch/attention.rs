//! Multi-head self-attention shared by the transformer backbones: they differ
//! only in how the projections are stored (separate q/k/v layers in REFERS'
//! ViT and BERT, one stacked `in_proj` in OpenAI CLIP).

use tch::{Kind, Tensor};

/// Scaled dot-product attention over `[batch, tokens, width]` projections
/// split into `heads` heads. `mask`, when given, is added to the scores
/// (`-inf` where attention is forbidden) and broadcast over batch and heads.
pub fn multi_head(q: &Tensor, k: &Tensor, v: &Tensor, heads: i64, mask: Option<&Tensor>) -> Tensor {
    let (b, n, w) = q.size3().expect("[batch, tokens, width]");
    let d = w / heads;
    let split = |t: &Tensor| t.view([b, -1, heads, d]).transpose(1, 2);
    let (q, k, v) = (split(q), split(k), split(v));
    let mut scores = q.matmul(&k.transpose(-2, -1)) / (d as f64).sqrt();
    if let Some(m) = mask {
        scores += m;
    }
    scores
        .softmax(-1, Kind::Float)
        .to_kind(v.kind())
        .matmul(&v)
        .transpose(1, 2)
        .contiguous()
        .view([b, n, w])
}

/// Exact (erf) GELU.
pub fn gelu(x: &Tensor) -> Tensor {
    x.gelu("none")
}

/// OpenAI CLIP's approximation `x * sigmoid(1.702 x)`.
pub fn quick_gelu(x: &Tensor) -> Tensor {
    x * (x * 1.702).sigmoid()
}
