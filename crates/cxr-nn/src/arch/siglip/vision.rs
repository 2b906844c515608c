//! SigLIP's image tower (transformers' `SiglipVisionModel`): patch and
//! position embeddings, the encoder, `post_layernorm` and the
//! attention-pooling head.

use tch::Tensor;
use tch::nn::{self, ModuleT};

use super::config::SiglipVisionConfig;
use super::{EncoderLayer, LayerShape, Mlp, attention, encoder, layer_norm};

/// `SiglipMultiheadAttentionPoolingHead`: a learned probe token attends over
/// the tower's tokens (a `torch.nn.MultiheadAttention`, stacked
/// `in_proj_weight`), then a residual pre-LN MLP; the probe's state is the
/// image feature.
#[derive(Debug)]
struct PoolingHead {
    probe: Tensor,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    layernorm: nn::LayerNorm,
    mlp: Mlp,
    heads: i64,
}

impl PoolingHead {
    fn new(p: &nn::Path, c: &SiglipVisionConfig) -> Self {
        let w = c.hidden_size;
        let a = p / "attention";
        // Xavier-uniform bounds of `_init_weights` (the probe's fans are
        // both `w`; the stacked projection's `w` and `3w`).
        let uniform = |fans: i64| {
            let bound = (6.0 / fans as f64).sqrt();
            nn::Init::Uniform {
                lo: -bound,
                up: bound,
            }
        };
        Self {
            probe: p.var("probe", &[1, 1, w], uniform(2 * w)),
            in_proj_weight: a.var("in_proj_weight", &[3 * w, w], uniform(4 * w)),
            in_proj_bias: a.zeros("in_proj_bias", &[3 * w]),
            out_proj: super::lecun_linear(&a / "out_proj", w, w),
            layernorm: layer_norm(p / "layernorm", w, c.layer_norm_eps),
            mlp: Mlp::new(&(p / "mlp"), w, c.intermediate_size),
            heads: c.num_attention_heads,
        }
    }

    /// The pooled feature `[n, w]` of tokens `[n, t, w]`.
    fn forward(&self, tokens: &Tensor) -> Tensor {
        let b = tokens.size()[0];
        // Query, key and value rows of the stacked projection.
        let w = self.in_proj_weight.chunk(3, 0);
        let bias = self.in_proj_bias.chunk(3, 0);
        let probe = self.probe.expand([b, -1, -1], false);
        let h = attention(
            &probe.linear(&w[0], Some(&bias[0])),
            &tokens.linear(&w[1], Some(&bias[1])),
            &tokens.linear(&w[2], Some(&bias[2])),
            self.heads,
            None,
            0.0,
        )
        .apply(&self.out_proj);
        let h = &h + h.apply(&self.layernorm).apply(&self.mlp);
        h.select(1, 0)
    }
}

/// The image tower, built under the path its checkpoint names it by
/// (`root / "vision_model"` in a `SiglipModel`; transformers 5.25 saves a
/// `SiglipVisionModel` at the root, earlier versions under `vision_model.`).
#[derive(Debug)]
pub struct SiglipVision {
    patch_embedding: nn::Conv2D,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    post_layernorm: nn::LayerNorm,
    head: Option<PoolingHead>,
    config: SiglipVisionConfig,
}

impl SiglipVision {
    /// Builds the tower's variables under `p`.
    pub fn new(p: &nn::Path, c: &SiglipVisionConfig) -> Self {
        let w = c.hidden_size;
        let e = p / "embeddings";
        let fan_in = c.num_channels * c.patch_size * c.patch_size;
        let conv = nn::ConvConfig {
            stride: c.patch_size,
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: (1.0 / fan_in as f64).sqrt(),
            },
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let shape = LayerShape {
            width: w,
            mlp: c.intermediate_size,
            heads: c.num_attention_heads,
            eps: c.layer_norm_eps,
            attention_dropout: c.attention_dropout,
        };
        Self {
            patch_embedding: nn::conv2d(
                &e / "patch_embedding",
                c.num_channels,
                w,
                c.patch_size,
                conv,
            ),
            position_embedding: (&e / "position_embedding").var(
                "weight",
                &[c.num_positions(), w],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0 / (w as f64).sqrt(),
                },
            ),
            layers: encoder(&(p / "encoder"), &shape, c.num_hidden_layers),
            post_layernorm: layer_norm(p / "post_layernorm", w, c.layer_norm_eps),
            head: c
                .vision_use_head
                .then(|| PoolingHead::new(&(p / "head"), c)),
            config: c.clone(),
        }
    }

    /// The shape this tower was built with.
    pub fn config(&self) -> &SiglipVisionConfig {
        &self.config
    }

    /// Position embeddings `[1, patches, hidden]` for an input of `height x
    /// width` pixels: the learned ones at the native square size, else
    /// resampled to the patch grid as transformers'
    /// `SiglipVisionEmbeddings.interpolate_pos_encoding` does (bicubic,
    /// `align_corners=False`, no antialiasing).
    pub fn position_embeddings(&self, height: i64, width: i64) -> Tensor {
        let p = self.config.patch_size;
        let (rows, cols) = (height / p, width / p);
        let (num_positions, dim) = self.position_embedding.size2().expect("[positions, width]");
        if rows * cols == num_positions && height == width {
            return self.position_embedding.unsqueeze(0);
        }
        // `torch_int(num_positions ** 0.5)`: the native grid's side.
        let side = (num_positions as f64).sqrt() as i64;
        self.position_embedding
            .reshape([1, side, side, dim])
            .permute([0, 3, 1, 2])
            .upsample_bicubic2d([rows, cols], false, None, None)
            .permute([0, 2, 3, 1])
            .reshape([1, -1, dim])
    }

    /// Every patch token after `post_layernorm` (`last_hidden_state`):
    /// `[n, patches, hidden]` for images `[n, channels, h, w]`, row-major
    /// over the patch grid. Sizes other than the native one use resampled
    /// position embeddings (as `interpolate_pos_encoding=True`).
    pub fn tokens_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (_, _, h, w) = x.size4().expect("images [n, channels, height, width]");
        // As transformers: the pixels take the patch embedding's dtype.
        let x = x.to_kind(self.patch_embedding.ws.kind());
        let patches = x.apply(&self.patch_embedding).flatten(2, 3).transpose(1, 2);
        let mut y = patches + self.position_embeddings(h, w);
        for l in &self.layers {
            y = l.forward_t(&y, None, train);
        }
        y.apply(&self.post_layernorm)
    }

    /// The image feature `[n, hidden]` of [`SiglipVision::tokens_t`]'s
    /// tokens: the attention-pooling head's output (`pooler_output`), or,
    /// for a tower built without head (`vision_use_head: false`), the mean
    /// token (as `SiglipForImageClassification` pools).
    pub fn pool(&self, tokens: &Tensor) -> Tensor {
        match &self.head {
            Some(head) => head.forward(tokens),
            None => tokens.mean_dim(1, false, None),
        }
    }
}

impl ModuleT for SiglipVision {
    /// The image feature `[n, hidden]` (`pooler_output`, what
    /// `SiglipModel.get_image_features` returns as its pooled output) of
    /// images `[n, channels, h, w]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.pool(&self.tokens_t(x, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn native_size_keeps_the_learned_positions_and_others_resample() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let c = SiglipVisionConfig {
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            image_size: 16,
            patch_size: 4,
            ..Default::default()
        };
        let v = SiglipVision::new(&vs.root(), &c);
        assert_eq!(v.position_embeddings(16, 16).size(), [1, 16, 8]);
        assert!(
            v.position_embeddings(16, 16)
                .equal(&v.position_embedding.unsqueeze(0))
        );
        // A non-square input of as many patches is resampled all the same.
        assert_eq!(v.position_embeddings(8, 32).size(), [1, 16, 8]);
        assert!(
            !v.position_embeddings(8, 32)
                .equal(&v.position_embedding.unsqueeze(0))
        );
        let x = Tensor::randn([2, 3, 24, 20], (Kind::Float, Device::Cpu));
        assert_eq!(v.tokens_t(&x, false).size(), [2, 30, 8]);
        assert_eq!(v.forward_t(&x, false).size(), [2, 8]);
    }
}
