//! OpenAI CLIP (ViT image tower and text transformer) with OpenAI's parameter
//! names (`visual.conv1`, `visual.transformer.resblocks.N.attn.in_proj_weight`,
//! `token_embedding`, `ln_final`, `text_projection`, `logit_scale`), so a
//! CheXzero / CXR-RePaiR state dict loads by name.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use super::attention::{QUICK_GELU, multi_head, quick_gelu};

/// Shape of a CLIP model (the fields of OpenAI's `build_model`). Sidecars
/// store it as a JSON object with these field names, in this order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClipConfig {
    /// Joint embedding size (512).
    pub embed_dim: i64,
    /// Input side in pixels (224).
    pub image_resolution: i64,
    /// Image transformer layers (12).
    pub vision_layers: usize,
    /// Image token width (768); heads are width / 64.
    pub vision_width: i64,
    /// Patch side (32 for ViT-B/32).
    pub vision_patch_size: i64,
    /// Text context length (77).
    pub context_length: i64,
    /// Vocabulary size (49408).
    pub vocab_size: i64,
    /// Text token width (512); heads are width / 64.
    pub transformer_width: i64,
    /// Text transformer layers (12).
    pub transformer_layers: usize,
}

impl ClipConfig {
    /// OpenAI ViT-B/32.
    pub fn vit_b32() -> Self {
        Self {
            embed_dim: 512,
            image_resolution: 224,
            vision_layers: 12,
            vision_width: 768,
            vision_patch_size: 32,
            context_length: 77,
            vocab_size: 49408,
            transformer_width: 512,
            transformer_layers: 12,
        }
    }
}

/// Head width of every CLIP attention layer.
const HEAD_DIM: i64 = 64;

#[derive(Debug)]
struct ResBlock {
    ln_1: nn::LayerNorm,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    ln_2: nn::LayerNorm,
    c_fc: nn::Linear,
    c_proj: nn::Linear,
    heads: i64,
}

impl ResBlock {
    fn new(p: &nn::Path, w: i64) -> Self {
        let a = p / "attn";
        let lin = |p: nn::Path, i, o| nn::linear(p, i, o, Default::default());
        Self {
            ln_1: nn::layer_norm(p / "ln_1", vec![w], Default::default()),
            in_proj_weight: a.randn("in_proj_weight", &[3 * w, w], 0.0, 0.02),
            in_proj_bias: a.zeros("in_proj_bias", &[3 * w]),
            out_proj: lin(&a / "out_proj", w, w),
            ln_2: nn::layer_norm(p / "ln_2", vec![w], Default::default()),
            c_fc: lin(p / "mlp" / "c_fc", w, 4 * w),
            c_proj: lin(p / "mlp" / "c_proj", 4 * w, w),
            heads: w / HEAD_DIM,
        }
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let n = self.ln_1.forward(x);
        let qkv = n
            .linear(&self.in_proj_weight, Some(&self.in_proj_bias))
            .chunk(3, -1);
        let a = multi_head(&qkv[0], &qkv[1], &qkv[2], self.heads, mask).apply(&self.out_proj);
        self.mlp(x + a)
    }

    /// The block's output for the first token only, `[n, 1, w]`: the same
    /// rows `forward(x).narrow(1, 0, 1)` holds, without the other tokens'
    /// queries, attention outputs and MLP (keys and values still come from
    /// every token). The image tower's last block, whose other outputs
    /// nothing reads.
    fn forward_first_token(&self, x: &Tensor) -> Tensor {
        let w = x.size()[2];
        let n = self.ln_1.forward(x);
        let (wq, wkv) = (
            self.in_proj_weight.narrow(0, 0, w),
            self.in_proj_weight.narrow(0, w, 2 * w),
        );
        let (bq, bkv) = (
            self.in_proj_bias.narrow(0, 0, w),
            self.in_proj_bias.narrow(0, w, 2 * w),
        );
        let q = n.narrow(1, 0, 1).linear(&wq, Some(&bq));
        let kv = n.linear(&wkv, Some(&bkv)).chunk(2, -1);
        let a = multi_head(&q, &kv[0], &kv[1], self.heads, None).apply(&self.out_proj);
        self.mlp(x.narrow(1, 0, 1) + a)
    }

    /// `x + mlp(ln_2(x))`. Without autograd (feature extraction, frozen
    /// towers) nothing is allocated beyond the two products' outputs:
    /// `h * sigmoid(1.702 h)` is `silu(1.702 h) / 1.702`, so the hidden
    /// layer is scaled and activated in place (two passes, where the formula
    /// takes three and a hidden-sized temporary) and the division is applied
    /// to the 4x narrower output of `c_proj`, before its bias. The same
    /// values within float rounding (`the_first_token_path_and_the_untracked_mlp_match_the_whole_block`).
    fn mlp(&self, x: Tensor) -> Tensor {
        let mut h = self.ln_2.forward(&x).apply(&self.c_fc);
        if h.requires_grad() || x.requires_grad() {
            return x + quick_gelu(&h).apply(&self.c_proj);
        }
        let _ = h.g_mul_scalar_(QUICK_GELU);
        let _ = h.silu_();
        let mut out = h.matmul(&self.c_proj.ws.tr());
        let _ = out.g_mul_scalar_(1.0 / QUICK_GELU);
        if let Some(b) = &self.c_proj.bs {
            out += b;
        }
        out += &x;
        out
    }
}

fn resblocks(p: &nn::Path, w: i64, layers: usize) -> Vec<ResBlock> {
    let r = p / "transformer" / "resblocks";
    (0..layers).map(|i| ResBlock::new(&(&r / i), w)).collect()
}

/// The image tower (`visual.*`).
#[derive(Debug)]
pub struct ClipVisual {
    conv1: nn::Conv2D,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: nn::LayerNorm,
    blocks: Vec<ResBlock>,
    ln_post: nn::LayerNorm,
    proj: Tensor,
}

impl ClipVisual {
    /// Builds the tower's variables under `p` (normally `root / "visual"`).
    pub fn new(p: &nn::Path, c: &ClipConfig) -> Self {
        let w = c.vision_width;
        let grid = c.image_resolution / c.vision_patch_size;
        let conv = nn::ConvConfig {
            stride: c.vision_patch_size,
            bias: false,
            ..Default::default()
        };
        Self {
            conv1: nn::conv2d(p / "conv1", 3, w, c.vision_patch_size, conv),
            class_embedding: p.randn("class_embedding", &[w], 0.0, 0.02),
            positional_embedding: p.randn("positional_embedding", &[grid * grid + 1, w], 0.0, 0.02),
            ln_pre: nn::layer_norm(p / "ln_pre", vec![w], Default::default()),
            blocks: resblocks(p, w, c.vision_layers),
            ln_post: nn::layer_norm(p / "ln_post", vec![w], Default::default()),
            proj: p.randn("proj", &[w, c.embed_dim], 0.0, 0.02),
        }
    }

    /// The projected (not normalised) image embedding `[n, embed_dim]`:
    /// `ln_post` of the class token times `proj`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let b = x.size()[0];
        let patches = x.apply(&self.conv1).flatten(2, 3).transpose(1, 2);
        let cls = self
            .class_embedding
            .view([1, 1, -1])
            .expand([b, 1, -1], false);
        let mut y = self
            .ln_pre
            .forward(&(Tensor::cat(&[cls, patches], 1) + &self.positional_embedding));
        // Only the class token leaves the tower: the last block computes
        // its row alone.
        let (last, inner) = self.blocks.split_last().expect("a tower has blocks");
        for blk in inner {
            y = blk.forward(&y, None);
        }
        let cls = last.forward_first_token(&y).select(1, 0);
        self.ln_post.forward(&cls).matmul(&self.proj)
    }
}

/// The text tower (top-level `token_embedding`, `transformer`, `ln_final`,
/// `text_projection`) and the `logit_scale`.
#[derive(Debug)]
pub struct ClipText {
    token_embedding: nn::Embedding,
    positional_embedding: Tensor,
    blocks: Vec<ResBlock>,
    ln_final: nn::LayerNorm,
    text_projection: Tensor,
    /// Log of the temperature that scales image-text similarities.
    pub logit_scale: Tensor,
    context_length: i64,
}

impl ClipText {
    /// Builds the tower's variables under `p` (normally the model root).
    pub fn new(p: &nn::Path, c: &ClipConfig) -> Self {
        let w = c.transformer_width;
        Self {
            token_embedding: nn::embedding(
                p / "token_embedding",
                c.vocab_size,
                w,
                Default::default(),
            ),
            positional_embedding: p.randn(
                "positional_embedding",
                &[c.context_length, w],
                0.0,
                0.01,
            ),
            blocks: resblocks(p, w, c.transformer_layers),
            ln_final: nn::layer_norm(p / "ln_final", vec![w], Default::default()),
            text_projection: p.randn("text_projection", &[w, c.embed_dim], 0.0, 0.02),
            logit_scale: p.var("logit_scale", &[], nn::Init::Const((1.0f64 / 0.07).ln())),
            context_length: c.context_length,
        }
    }

    /// Text embeddings `[n, embed_dim]` of token ids `[n, context_length]`,
    /// read at each sequence's end-of-text token (its largest id, as OpenAI's
    /// tokenizer numbers it last).
    pub fn forward(&self, tokens: &Tensor) -> Tensor {
        let n = self.context_length;
        let mask = Tensor::full([n, n], f64::NEG_INFINITY, (Kind::Float, tokens.device())).triu(1);
        let mut y = tokens.apply(&self.token_embedding) + &self.positional_embedding;
        for blk in &self.blocks {
            y = blk.forward(&y, Some(&mask));
        }
        let y = self.ln_final.forward(&y);
        let rows = Tensor::arange(tokens.size()[0], (Kind::Int64, tokens.device()));
        let eot = tokens.argmax(-1, false);
        y.index(&[Some(rows), Some(eot)])
            .matmul(&self.text_projection)
    }
}

/// Both towers, built under one root with OpenAI's names.
#[derive(Debug)]
pub struct Clip {
    /// The image tower.
    pub visual: ClipVisual,
    /// The text tower.
    pub text: ClipText,
}

impl Clip {
    /// Builds the whole model under `p`.
    pub fn new(p: &nn::Path, c: &ClipConfig) -> Self {
        Self {
            visual: ClipVisual::new(&(p / "visual"), c),
            text: ClipText::new(p, c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sidecars written before the derive spelt the object out by hand;
    /// the derive writes the same bytes, so those files still load.
    #[test]
    fn json_layout_is_the_hand_written_one() {
        let c = ClipConfig::vit_b32();
        let by_hand = serde_json::json!({
            "embed_dim": c.embed_dim,
            "image_resolution": c.image_resolution,
            "vision_layers": c.vision_layers,
            "vision_width": c.vision_width,
            "vision_patch_size": c.vision_patch_size,
            "context_length": c.context_length,
            "vocab_size": c.vocab_size,
            "transformer_width": c.transformer_width,
            "transformer_layers": c.transformer_layers,
        });
        let derived = serde_json::json!(c);
        assert_eq!(
            serde_json::to_string_pretty(&derived).unwrap(),
            serde_json::to_string_pretty(&by_hand).unwrap()
        );
    }

    /// The image tower's last block on the class token alone gives the
    /// class-token row of the whole block, and the untracked MLP (silu,
    /// scaled) gives the tracked formula's values, both within float
    /// rounding.
    #[test]
    fn the_first_token_path_and_the_untracked_mlp_match_the_whole_block() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let blk = ResBlock::new(&(vs.root() / "b"), 128);
        tch::no_grad(|| {
            // Biases away from their zero initialisation.
            for (_, mut v) in vs.variables() {
                let _ = v.g_add_(&(v.randn_like() * 0.1));
            }
        });
        let x = Tensor::randn([3, 17, 128], (tch::Kind::Float, tch::Device::Cpu)) * 2.0;
        // The weights are variables: autograd tracks this one, which runs
        // the formula as written.
        let reference = blk.forward(&x, None);
        assert!(reference.requires_grad());
        let rel = |a: &Tensor, b: &Tensor| {
            f64::try_from((a - b).abs().max()).unwrap() / f64::try_from(b.abs().max()).unwrap()
        };
        let untracked = tch::no_grad(|| blk.forward(&x, None));
        assert!(!untracked.requires_grad());
        let e = rel(&untracked, &reference);
        assert!(e < 1e-6 && e > 0.0, "untracked MLP: {e}");
        let first = reference.narrow(1, 0, 1);
        for tracked in [false, true] {
            let got = if tracked {
                blk.forward_first_token(&x)
            } else {
                tch::no_grad(|| blk.forward_first_token(&x))
            };
            assert_eq!(got.requires_grad(), tracked);
            assert_eq!(got.size(), [3, 1, 128]);
            let e = rel(&got, &first);
            assert!(e < 1e-5, "tracked={tracked}: {e}");
        }
    }
}
