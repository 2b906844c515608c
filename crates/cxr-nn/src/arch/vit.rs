//! Vision Transformer in the naming of jeonsworld's ViT-pytorch, which the
//! REFERS checkpoint uses (`transformer.embeddings.patch_embeddings`,
//! `transformer.encoder.layer.N.attn.query`, `...encoder_norm`, `head`).
//! Pre-LN blocks, LayerNorm eps 1e-6, exact GELU, dropout 0.1 in training.

use tch::Tensor;
use tch::nn::{self, Module, ModuleT};

use super::attention::{gelu, multi_head};

/// Shape of a ViT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VitConfig {
    /// Input side in pixels (224).
    pub image_size: i64,
    /// Patch side (16 for ViT-B/16).
    pub patch_size: i64,
    /// Token width (768).
    pub hidden: i64,
    /// Transformer layers (12).
    pub layers: usize,
    /// Attention heads (12).
    pub heads: i64,
    /// MLP width (3072).
    pub mlp: i64,
    /// Input channels (3).
    pub in_channels: i64,
    /// Size of the `head`; `None` builds the encoder only.
    pub num_classes: Option<i64>,
}

impl VitConfig {
    /// ViT-B/16 at 224 pixels, as REFERS.
    pub fn vit_b16(num_classes: Option<i64>) -> Self {
        Self {
            image_size: 224,
            patch_size: 16,
            hidden: 768,
            layers: 12,
            heads: 12,
            mlp: 3072,
            in_channels: 3,
            num_classes,
        }
    }

    fn tokens(&self) -> i64 {
        (self.image_size / self.patch_size).pow(2) + 1
    }
}

/// Dropout of the embeddings and the MLP outputs (ViT-pytorch's
/// `dropout_rate`; attention dropout is 0).
pub const DROPOUT: f64 = 0.1;

fn ln(p: nn::Path, w: i64) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig {
        eps: 1e-6,
        ..Default::default()
    };
    nn::layer_norm(p, vec![w], cfg)
}

#[derive(Debug)]
struct Layer {
    attention_norm: nn::LayerNorm,
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    out: nn::Linear,
    ffn_norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

/// The REFERS-style Vision Transformer.
#[derive(Debug)]
pub struct Vit {
    patch_embeddings: nn::Conv2D,
    position_embeddings: Tensor,
    cls_token: Tensor,
    layers: Vec<Layer>,
    encoder_norm: nn::LayerNorm,
    head: Option<nn::Linear>,
    config: VitConfig,
    dropout: f64,
}

impl Vit {
    /// The same network training with dropout `p` instead of [`DROPOUT`]
    /// (REFERS from random weights trains without, `--vit-dropout`).
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// Builds the network's variables under `p`.
    pub fn new(p: &nn::Path, config: &VitConfig) -> Self {
        let h = config.hidden;
        let t = p / "transformer";
        let e = &t / "embeddings";
        let conv = nn::ConvConfig {
            stride: config.patch_size,
            ..Default::default()
        };
        let patch_embeddings = nn::conv2d(
            &e / "patch_embeddings",
            config.in_channels,
            h,
            config.patch_size,
            conv,
        );
        let position_embeddings = e.zeros("position_embeddings", &[1, config.tokens(), h]);
        let cls_token = e.zeros("cls_token", &[1, 1, h]);
        let enc = &t / "encoder";
        let lin = |p: nn::Path, a, b| nn::linear(p, a, b, Default::default());
        let layers = (0..config.layers)
            .map(|i| {
                let lp = &enc / "layer" / i;
                let a = &lp / "attn";
                Layer {
                    attention_norm: ln(&lp / "attention_norm", h),
                    query: lin(&a / "query", h, h),
                    key: lin(&a / "key", h, h),
                    value: lin(&a / "value", h, h),
                    out: lin(&a / "out", h, h),
                    ffn_norm: ln(&lp / "ffn_norm", h),
                    fc1: lin(&lp / "ffn" / "fc1", h, config.mlp),
                    fc2: lin(&lp / "ffn" / "fc2", config.mlp, h),
                }
            })
            .collect();
        let encoder_norm = ln(&enc / "encoder_norm", h);
        let head = config.num_classes.map(|k| lin(p / "head", h, k));
        Self {
            patch_embeddings,
            position_embeddings,
            cls_token,
            layers,
            encoder_norm,
            head,
            config: config.clone(),
            dropout: DROPOUT,
        }
    }

    /// The shape this network was built with.
    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// The class token after `encoder_norm`: `[n, hidden]`.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        // Outside training (no dropout draws to keep in step) the last
        // layer computes the class token's row alone.
        self.encoder_norm
            .forward(&self.encode(x, train, !train).select(1, 0))
    }

    /// Every token after `encoder_norm`, the class token first:
    /// `[n, 1 + patches, hidden]` (REFERS' fusion and decoder read the
    /// patch tokens; [`Vit::features_t`] is this tensor's first token).
    pub fn tokens_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.encoder_norm.forward(&self.encode(x, train, false))
    }

    /// The encoder's token states before `encoder_norm`; with
    /// `first_only`, the class token's alone, `[n, 1, hidden]`: the last
    /// layer's queries, attention output and MLP for that row only (keys
    /// and values still from every token), the same values within float
    /// rounding.
    // `y += ...` would add in place into a tensor LayerNorm saved for backward.
    #[allow(clippy::assign_op_pattern)]
    fn encode(&self, x: &Tensor, train: bool, first_only: bool) -> Tensor {
        let b = x.size()[0];
        let patches = x
            .apply(&self.patch_embeddings)
            .flatten(2, 3)
            .transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        let mut y = (Tensor::cat(&[cls, patches], 1) + &self.position_embeddings)
            .dropout(self.dropout, train);
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            let n = y.apply(&l.attention_norm);
            let rows = if first_only && i == last {
                y = y.narrow(1, 0, 1);
                n.narrow(1, 0, 1)
            } else {
                n.shallow_clone()
            };
            let a = multi_head(
                &rows.apply(&l.query),
                &n.apply(&l.key),
                &n.apply(&l.value),
                self.config.heads,
                None,
            );
            y = y + a.apply(&l.out);
            let mut h = y.apply(&l.ffn_norm).apply(&l.fc1);
            let m = if h.requires_grad() || train {
                gelu(&h).dropout(self.dropout, train)
            } else {
                // Untracked and no dropout: the activation overwrites its
                // input (one hidden-sized buffer fewer per layer).
                let _ = h.gelu_("none");
                h
            };
            y = y + m.apply(&l.fc2).dropout(self.dropout, train);
        }
        y
    }
}

impl ModuleT for Vit {
    /// Logits when the network has a `head`, the normalised class token otherwise.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let f = self.features_t(x, train);
        match &self.head {
            Some(h) => f.apply(h),
            None => f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn tokens_start_with_the_class_feature() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let config = VitConfig {
            image_size: 16,
            patch_size: 8,
            hidden: 12,
            layers: 2,
            heads: 3,
            mlp: 24,
            ..VitConfig::vit_b16(None)
        };
        let vit = Vit::new(&vs.root(), &config);
        let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        // Every token, tracked by autograd (the variables require it).
        let tokens = vit.tokens_t(&x, false);
        assert_eq!(tokens.size(), [2, 5, 12]);
        // The class token alone through the last layer, tracked, and
        // untracked (GELU in place).
        for features in [
            vit.features_t(&x, false),
            tch::no_grad(|| vit.features_t(&x, false)),
        ] {
            let diff = (tokens.select(1, 0) - features)
                .abs()
                .max()
                .double_value(&[]);
            assert!(diff < 1e-6, "{diff}");
        }
    }
}
