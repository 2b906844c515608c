//! open_clip's `CustomTextCLIP` with a timm ViT image tower and a Hugging
//! Face BERT text tower, BiomedCLIP's architecture
//! (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224), with
//! open_clip's parameter names so its `open_clip_pytorch_model.bin` loads by
//! name:
//!
//! - `visual.trunk.*`: timm's ViT ([`TimmVit`]); `visual.head.proj`: a
//!   bias-free linear projection of its class token ([`OpenClipVisual`]);
//! - `text.transformer.*`: Hugging Face's `BertModel` names
//!   ([`crate::arch::bert::Bert`], with `pooler.dense` only when the weights
//!   have it); `text.proj.0`, `text.proj.2`: the bias-free MLP projection
//!   (`Linear`, exact GELU, `Linear`) of the `[CLS]` token's last state
//!   ([`HfTextTower`]);
//! - `logit_scale` ([`OpenClip`]).
//!
//! The shapes come from `open_clip_config.json` ([`OpenClipConfig`]) and,
//! for the BERT, which that file leaves to the hub, from the weights or a
//! Hugging Face `config.json` ([`HfBertConfig`]); [`read_dir`] does both as
//! open_clip's `local-dir:` loading does.

mod config;
mod files;
mod hf_bert;
mod timm_vit;

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::attention::gelu;
use super::bert::Bert;

pub use config::{
    OPENAI_MEAN, OPENAI_STD, OpenClipConfig, OpenClipPreprocess, OpenClipTextConfig,
    OpenClipVisionConfig, biomedclip,
};
pub use files::{OpenClipDir, WEIGHT_FILES, read, read_dir, state_dict};
pub use hf_bert::HfBertConfig;
pub use timm_vit::{TimmVit, TimmVitConfig, resample_abs_pos_embed};

fn linear(p: nn::Path, i: i64, o: i64, bias: bool) -> nn::Linear {
    let cfg = nn::LinearConfig {
        bias,
        ..Default::default()
    };
    nn::linear(p, i, o, cfg)
}

/// open_clip's `TimmModel` image tower: the trunk's class token, dropout
/// (`timm_drop`, training only), then `head.proj`.
#[derive(Debug)]
pub struct OpenClipVisual {
    trunk: TimmVit,
    proj: nn::Linear,
    head_drop: f64,
    image_size: [i64; 2],
}

impl OpenClipVisual {
    /// Builds the tower under `p` (normally `root / "visual"`): `trunk.*` and
    /// `head.proj` (`[embed_dim, width]`, a bias with `proj_bias`).
    pub fn new(p: &nn::Path, c: &OpenClipVisionConfig, embed_dim: i64) -> Self {
        Self {
            trunk: TimmVit::new(&(p / "trunk"), &c.trunk),
            proj: linear(
                p / "head" / "proj",
                c.trunk.embed_dim,
                embed_dim,
                c.proj_bias,
            ),
            head_drop: c.head_drop,
            image_size: c.image_size,
        }
    }

    /// The timm trunk.
    pub fn trunk(&self) -> &TimmVit {
        &self.trunk
    }

    /// The configured input size `[height, width]` (the size preprocessing
    /// produces). The tower takes other sizes too, resampling `pos_embed`.
    pub fn image_size(&self) -> [i64; 2] {
        self.image_size
    }
}

impl ModuleT for OpenClipVisual {
    /// What open_clip's `model.encode_image(x)` returns (not normalised):
    /// `[n, embed_dim]` for images `[n, 3, h, w]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.trunk
            .forward_t(x, train)
            .dropout(self.head_drop, train)
            .apply(&self.proj)
    }
}

/// open_clip's `HFTextEncoder` over a BERT with
/// `cls_last_hidden_state_pooler` and the `mlp` projection
/// (`[CLS]` → `proj.0` → GELU → `proj.2`, widths hidden → (hidden +
/// embed_dim) / 2 → embed_dim).
#[derive(Debug)]
pub struct HfTextTower {
    transformer: Bert,
    proj_in: nn::Linear,
    proj_out: nn::Linear,
    pad_token_id: i64,
}

impl HfTextTower {
    /// Builds the tower under `p` (normally `root / "text"`): `transformer.*`
    /// (with `pooler.dense` when `bert.pooler`), `proj.0`, `proj.2`.
    pub fn new(p: &nn::Path, bert: &HfBertConfig, embed_dim: i64) -> Self {
        let t = p / "transformer";
        let transformer = if bert.pooler {
            Bert::new(&t, &bert.bert)
        } else {
            Bert::without_pooler(&t, &bert.bert)
        };
        let h = bert.bert.hidden;
        // open_clip: hidden_size = (d_model + output_dim) // 2.
        let mid = (h + embed_dim) / 2;
        Self {
            transformer,
            proj_in: linear(p / "proj" / 0, h, mid, false),
            proj_out: linear(p / "proj" / 2, mid, embed_dim, false),
            pad_token_id: bert.pad_token_id,
        }
    }

    /// The BERT.
    pub fn transformer(&self) -> &Bert {
        &self.transformer
    }

    /// Text embeddings `[n, embed_dim]` (not normalised) of token ids
    /// `[n, tokens]` (i64, at most the BERT's positions): the attention mask
    /// is `ids != pad_token_id`, as `HFTextEncoder` computes it; dropout acts
    /// in training.
    pub fn forward_t(&self, ids: &Tensor, train: bool) -> Tensor {
        let mask = ids.ne(self.pad_token_id).to_kind(Kind::Int64);
        let out = self.transformer.forward_t(ids, &mask, train);
        gelu(&out.last_hidden.select(1, 0).apply(&self.proj_in)).apply(&self.proj_out)
    }

    /// What open_clip's `model.encode_text(ids)` returns in eval mode.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        self.forward_t(ids, false)
    }
}

/// The whole model: `visual`, `text` and `logit_scale`.
#[derive(Debug)]
pub struct OpenClip {
    /// The image tower.
    pub visual: OpenClipVisual,
    /// The text tower.
    pub text: HfTextTower,
    logit_scale: Tensor,
}

impl OpenClip {
    /// Builds the model under `p` with the text tower's BERT `bert` (see
    /// [`HfBertConfig`]; [`HfBertConfig::biomedbert`] for BiomedCLIP).
    /// `logit_scale` starts at ln(1 / 0.07), open_clip's init.
    pub fn new(p: &nn::Path, c: &OpenClipConfig, bert: &HfBertConfig) -> Self {
        Self {
            visual: OpenClipVisual::new(&(p / "visual"), &c.vision, c.embed_dim),
            text: HfTextTower::new(&(p / "text"), bert, c.embed_dim),
            logit_scale: p.var("logit_scale", &[], nn::Init::Const((1.0f64 / 0.07).ln())),
        }
    }

    /// `model.encode_image(x)` (not normalised), `[n, embed_dim]`.
    pub fn encode_image_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.visual.forward_t(x, train)
    }

    /// `model.encode_text(ids)` (not normalised), `[n, embed_dim]`.
    pub fn encode_text_t(&self, ids: &Tensor, train: bool) -> Tensor {
        self.text.forward_t(ids, train)
    }

    /// The log temperature as a number.
    pub fn logit_scale(&self) -> f64 {
        self.logit_scale.double_value(&[])
    }

    /// The log temperature variable (trainable).
    pub fn logit_scale_var(&self) -> &Tensor {
        &self.logit_scale
    }

    /// open_clip's `get_logits` image side: `exp(logit_scale)` times the
    /// cosine similarities of the images `[n, 3, h, w]` and texts `[m, tokens]`,
    /// `[n, m]` (its transpose is the text side). Eval mode.
    pub fn logits_per_image(&self, images: &Tensor, ids: &Tensor) -> Tensor {
        let normalize = |t: Tensor| {
            let norm = t.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12);
            t / norm
        };
        let img = normalize(self.encode_image_t(images, false));
        let txt = normalize(self.encode_text_t(ids, false));
        img.matmul(&txt.transpose(0, 1)) * self.logit_scale.exp()
    }
}
