//! SigLIP (Zhai et al. 2023) as Hugging Face transformers 5.25 builds it
//! (`SiglipModel`, `SiglipVisionModel`), with its parameter names, so a
//! `model.safetensors` loads by name:
//!
//! - image tower under `vision_model.`: `embeddings.patch_embedding`,
//!   `embeddings.position_embedding.weight`, `encoder.layers.N.{layer_norm1,
//!   self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}`,
//!   `post_layernorm`, and the attention-pooling `head.{probe,
//!   attention.in_proj_weight, attention.in_proj_bias, attention.out_proj,
//!   layernorm, mlp.fc1, mlp.fc2}`;
//! - text tower under `text_model.`: `embeddings.{token,position}_embedding`,
//!   the same `encoder.layers.N`, `final_layer_norm`, `head`;
//! - `logit_scale` and `logit_bias` (shape `[1]`) at the root.
//!
//! Both towers are pre-LN transformers with LayerNorm eps 1e-6, biased
//! projections, no causal mask and GELU with the tanh approximation. The
//! image feature is the attention-pooling head's output (`pooler_output` of
//! what `get_image_features` returns, which in transformers 5.25 is a
//! `BaseModelOutputWithPooling`, not a tensor), the text feature the `head` of the
//! last position's state (the last position whatever it holds: SigLIP pads
//! texts to 64 tokens with its end token).
//!
//! The text tower attends over padding: SigLIP was trained so, and
//! `get_text_features(input_ids)` runs so (Google's MedSigLIP server passes
//! the ids alone). transformers 5.25's SigLIP tokenizer also returns an
//! attention mask, which `model(**inputs)` would apply, giving other
//! features; [`SiglipText::forward_masked_t`] reproduces that call.

mod config;
mod text;
mod vision;

pub use config::{HIDDEN_ACT, SiglipConfig, SiglipTextConfig, SiglipVisionConfig};
pub use text::SiglipText;
pub use vision::SiglipVision;

use tch::Tensor;
use tch::nn::{self, Module};

/// SigLIP's LayerNorm over the last dimension.
fn layer_norm(p: nn::Path, width: i64, eps: f64) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig {
        eps,
        ..Default::default()
    };
    nn::layer_norm(p, vec![width], cfg)
}

/// A biased linear layer initialised as transformers' `_init_weights`
/// initialises SigLIP's attention and MLP projections (Xavier-uniform weight,
/// zero bias); weights are normally loaded over it.
fn xavier_linear(p: nn::Path, inputs: i64, outputs: i64) -> nn::Linear {
    let bound = (6.0 / (inputs + outputs) as f64).sqrt();
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Uniform {
            lo: -bound,
            up: bound,
        },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, inputs, outputs, cfg)
}

/// A biased linear layer with transformers' LeCun-normal initialisation.
fn lecun_linear(p: nn::Path, inputs: i64, outputs: i64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn {
            mean: 0.0,
            stdev: (1.0 / inputs as f64).sqrt(),
        },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, inputs, outputs, cfg)
}

/// Multi-head attention of projected queries `[n, q, w]` over keys and values
/// `[n, k, w]`, through libtorch's scaled-dot-product attention (what
/// transformers' default `sdpa` implementation calls), scale `1/sqrt(w /
/// heads)`. `mask`, when given, is boolean and broadcasts to `[n, heads, q,
/// k]` (true where attention is allowed).
fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: i64,
    mask: Option<&Tensor>,
    dropout: f64,
) -> Tensor {
    let (b, n, w) = q.size3().expect("[batch, tokens, width]");
    let split = |t: &Tensor| t.view([b, -1, heads, w / heads]).transpose(1, 2);
    Tensor::scaled_dot_product_attention(
        &split(q),
        &split(k),
        &split(v),
        mask,
        dropout,
        false,
        None::<f64>,
        false,
    )
    .transpose(1, 2)
    .reshape([b, n, w])
}

/// `SiglipMLP`: `fc2(gelu_tanh(fc1(x)))`.
#[derive(Debug)]
struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    fn new(p: &nn::Path, width: i64, hidden: i64) -> Self {
        Self {
            fc1: xavier_linear(p / "fc1", width, hidden),
            fc2: xavier_linear(p / "fc2", hidden, width),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc1).gelu("tanh").apply(&self.fc2)
    }
}

/// `SiglipEncoderLayer`: pre-LN self-attention and MLP, each residual.
#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: nn::LayerNorm,
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    layer_norm2: nn::LayerNorm,
    mlp: Mlp,
    heads: i64,
    attention_dropout: f64,
}

/// The shape an encoder layer needs (both towers' configs provide it).
struct LayerShape {
    width: i64,
    mlp: i64,
    heads: i64,
    eps: f64,
    attention_dropout: f64,
}

impl EncoderLayer {
    fn new(p: &nn::Path, s: &LayerShape) -> Self {
        let a = p / "self_attn";
        let w = s.width;
        Self {
            layer_norm1: layer_norm(p / "layer_norm1", w, s.eps),
            q_proj: xavier_linear(&a / "q_proj", w, w),
            k_proj: xavier_linear(&a / "k_proj", w, w),
            v_proj: xavier_linear(&a / "v_proj", w, w),
            out_proj: xavier_linear(&a / "out_proj", w, w),
            layer_norm2: layer_norm(p / "layer_norm2", w, s.eps),
            mlp: Mlp::new(&(p / "mlp"), w, s.mlp),
            heads: s.heads,
            attention_dropout: s.attention_dropout,
        }
    }

    fn forward_t(&self, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let n = x.apply(&self.layer_norm1);
        let dropout = if train { self.attention_dropout } else { 0.0 };
        let a = attention(
            &n.apply(&self.q_proj),
            &n.apply(&self.k_proj),
            &n.apply(&self.v_proj),
            self.heads,
            mask,
            dropout,
        )
        .apply(&self.out_proj);
        let x = x + a;
        let m = x.apply(&self.layer_norm2).apply(&self.mlp);
        x + m
    }
}

/// `SiglipEncoder`: `layers` encoder layers under `p / "layers" / N`.
fn encoder(p: &nn::Path, s: &LayerShape, layers: usize) -> Vec<EncoderLayer> {
    let l = p / "layers";
    (0..layers)
        .map(|i| EncoderLayer::new(&(&l / i), s))
        .collect()
}

/// The whole `SiglipModel`: both towers and the learned logit scale and bias.
#[derive(Debug)]
pub struct Siglip {
    /// The image tower (`vision_model.*`).
    pub vision: SiglipVision,
    /// The text tower (`text_model.*`).
    pub text: SiglipText,
    logit_scale: Tensor,
    logit_bias: Tensor,
}

impl Siglip {
    /// Builds both towers and the logit parameters under `p` (the model
    /// root), or `None` when `c` has no text tower (a `siglip_vision_model`
    /// config: build [`SiglipVision`] alone). The logit scale and bias start
    /// at the paper's `log 10` and `-10` (transformers zeroes them; loaded
    /// weights replace either).
    pub fn new(p: &nn::Path, c: &SiglipConfig) -> Option<Self> {
        let text = c.text.as_ref()?;
        Some(Self {
            vision: SiglipVision::new(&(p / "vision_model"), &c.vision),
            text: SiglipText::new(&(p / "text_model"), text),
            logit_scale: p.var("logit_scale", &[1], nn::Init::Const(10f64.ln())),
            logit_bias: p.var("logit_bias", &[1], nn::Init::Const(-10.0)),
        })
    }

    /// Image features `[n, vision hidden]` of images `[n, channels, h, w]`
    /// (`get_image_features(..., interpolate_pos_encoding=True).pooler_output`),
    /// in evaluation mode.
    pub fn image_features(&self, images: &Tensor) -> Tensor {
        nn::ModuleT::forward_t(&self.vision, images, false)
    }

    /// Text features `[n, projection_size]` of token ids `[n, ctx]`
    /// (`get_text_features(input_ids).pooler_output`, no attention mask), in
    /// evaluation mode.
    pub fn text_features(&self, ids: &Tensor) -> Tensor {
        self.text.forward_t(ids, false)
    }

    /// The learned logit scale as stored (`logit_scale`, a logarithm: the
    /// similarities are multiplied by its exponential).
    pub fn logit_scale(&self) -> f64 {
        self.logit_scale.double_value(&[0])
    }

    /// The learned logit bias as stored (`logit_bias`), added after scaling.
    pub fn logit_bias(&self) -> f64 {
        self.logit_bias.double_value(&[0])
    }

    /// Logits `[n_images, n_texts]` of features as `SiglipModel.forward`
    /// computes them: both L2-normalised, cosine similarity times
    /// `exp(logit_scale)` plus `logit_bias` (a sigmoid gives the probability
    /// that a text matches an image).
    pub fn logits(&self, image_features: &Tensor, text_features: &Tensor) -> Tensor {
        let unit = |t: &Tensor| t / t.norm_scalaropt_dim(2, [-1], true);
        let per_text = unit(text_features).matmul(&unit(image_features).tr());
        (per_text * self.logit_scale.exp() + &self.logit_bias).tr()
    }

    /// `SiglipModel(input_ids=ids, pixel_values=images).logits_per_image`:
    /// `[n_images, n_texts]`, in evaluation mode.
    pub fn logits_per_image(&self, images: &Tensor, ids: &Tensor) -> Tensor {
        self.logits(&self.image_features(images), &self.text_features(ids))
    }
}
