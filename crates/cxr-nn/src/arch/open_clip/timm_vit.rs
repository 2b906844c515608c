//! timm's `VisionTransformer` as `timm.create_model(name)` builds the plain
//! ViTs (`vit_base_patch16_224` and its siblings): a biased patch
//! convolution, a class token, a learned position embedding that covers the
//! class token, pre-LN blocks with one fused `qkv` projection, LayerNorm eps
//! 1e-6, exact GELU, a final `norm` and class-token pooling. No registers,
//! no layer scale, no pre-norm, no dropout (timm's defaults are all 0).
//! Parameter names are timm's: `cls_token`, `pos_embed`, `patch_embed.proj`,
//! `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`.

use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use super::super::attention::gelu;

/// Shape of a timm ViT: what `timm.create_model(name)` builds for a name of
/// [`TimmVitConfig::KNOWN`]. Sidecars may store it as a JSON object with
/// these field names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimmVitConfig {
    /// The input side the model is built for (timm's `img_size`, 224):
    /// `pos_embed` holds one entry per patch of this grid, plus the class
    /// token's. Other input sizes resample it (see [`TimmVit::pos_embed_for`]).
    pub image_size: i64,
    /// Patch side (16 for ViT-B/16).
    pub patch_size: i64,
    /// Token width (768).
    pub embed_dim: i64,
    /// Transformer blocks (12).
    pub depth: usize,
    /// Attention heads (12).
    pub num_heads: i64,
    /// MLP width over token width (4): the MLP is `int(embed_dim * mlp_ratio)`
    /// wide, as timm rounds it.
    pub mlp_ratio: f64,
    /// Whether the fused `qkv` projection has a bias (true for every name).
    pub qkv_bias: bool,
    /// Epsilon of every LayerNorm (timm's 1e-6).
    pub layer_norm_eps: f64,
}

/// `(name, image size, patch, width, depth, heads)` of the plain timm ViTs,
/// checked against timm 1.0.31 by `scripts/fixtures/biomedclip.py`
/// (`timm_vits.json`); all have MLP ratio 4 and a `qkv` bias.
const TABLE: [(&str, i64, i64, i64, usize, i64); 13] = [
    ("vit_tiny_patch16_224", 224, 16, 192, 12, 3),
    ("vit_small_patch16_224", 224, 16, 384, 12, 6),
    ("vit_small_patch32_224", 224, 32, 384, 12, 6),
    ("vit_base_patch8_224", 224, 8, 768, 12, 12),
    ("vit_base_patch16_224", 224, 16, 768, 12, 12),
    ("vit_base_patch32_224", 224, 32, 768, 12, 12),
    ("vit_base_patch16_384", 384, 16, 768, 12, 12),
    ("vit_base_patch32_384", 384, 32, 768, 12, 12),
    ("vit_large_patch14_224", 224, 14, 1024, 24, 16),
    ("vit_large_patch16_224", 224, 16, 1024, 24, 16),
    ("vit_large_patch32_224", 224, 32, 1024, 24, 16),
    ("vit_large_patch16_384", 384, 16, 1024, 24, 16),
    ("vit_huge_patch14_224", 224, 14, 1280, 32, 16),
];

impl TimmVitConfig {
    /// The timm model names cxrlearn builds, in the order messages list them.
    pub const KNOWN: [&'static str; 13] = {
        let mut names = [""; 13];
        let mut i = 0;
        while i < TABLE.len() {
            names[i] = TABLE[i].0;
            i += 1;
        }
        names
    };

    /// The shape timm builds for `name`, or `None` for a name outside
    /// [`TimmVitConfig::KNOWN`].
    pub fn timm(name: &str) -> Option<Self> {
        let &(_, image_size, patch_size, embed_dim, depth, num_heads) =
            TABLE.iter().find(|row| row.0 == name)?;
        Some(Self {
            image_size,
            patch_size,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            qkv_bias: true,
            layer_norm_eps: 1e-6,
        })
    }

    /// timm's `vit_base_patch16_224`: BiomedCLIP's image trunk.
    pub fn vit_base_patch16_224() -> Self {
        Self::timm("vit_base_patch16_224").expect("in the table")
    }

    /// Patches per side of the built-for input (the `pos_embed` grid).
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    /// MLP width, `int(embed_dim * mlp_ratio)` as timm computes it.
    pub fn mlp_hidden(&self) -> i64 {
        // Truncation toward zero is Python's int() of a positive float.
        (self.embed_dim as f64 * self.mlp_ratio) as i64
    }
}

/// timm's `resample_abs_pos_embed`: the `prefix` leading entries (class
/// token) kept, the grid part of `pos_embed` `[1, prefix + old_h * old_w, d]`
/// resized to `new` by bicubic interpolation with antialiasing
/// (`F.interpolate(mode="bicubic", antialias=True, align_corners=False)`,
/// in float32), as timm's `set_input_size` does when open_clip is asked for
/// another image size. Returned unchanged when the grids agree.
pub fn resample_abs_pos_embed(
    pos_embed: &Tensor,
    new: [i64; 2],
    old: [i64; 2],
    prefix: i64,
) -> Tensor {
    if new == old {
        return pos_embed.shallow_clone();
    }
    let d = pos_embed.size()[2];
    let kind = pos_embed.kind();
    let grid = pos_embed
        .narrow(1, prefix, old[0] * old[1])
        .to_kind(Kind::Float)
        .reshape([1, old[0], old[1], d])
        .permute([0, 3, 1, 2]);
    // The antialiased kernel is not the plain bicubic one even when
    // upsampling (PIL's a = -0.5, not -0.75): timm asks for it, so must we.
    let grid = grid
        .internal_upsample_bicubic2d_aa(new, false, None, None)
        .permute([0, 2, 3, 1])
        .reshape([1, new[0] * new[1], d])
        .to_kind(kind);
    Tensor::cat(&[pos_embed.narrow(1, 0, prefix), grid], 1)
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

impl Block {
    fn new(p: &nn::Path, c: &TimmVitConfig) -> Self {
        let w = c.embed_dim;
        let lin = |p: nn::Path, i, o, bias| {
            let cfg = nn::LinearConfig {
                bias,
                ..Default::default()
            };
            nn::linear(p, i, o, cfg)
        };
        let a = p / "attn";
        Self {
            norm1: layer_norm(p / "norm1", c),
            qkv: lin(&a / "qkv", w, 3 * w, c.qkv_bias),
            proj: lin(&a / "proj", w, w, true),
            norm2: layer_norm(p / "norm2", c),
            fc1: lin(p / "mlp" / "fc1", w, c.mlp_hidden(), true),
            fc2: lin(p / "mlp" / "fc2", c.mlp_hidden(), w, true),
            heads: c.num_heads,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, w) = x.size3().expect("[batch, tokens, width]");
        // timm: qkv(x).reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4), then
        // F.scaled_dot_product_attention with the default 1/sqrt(d) scale.
        let qkv = self
            .norm1
            .forward(x)
            .apply(&self.qkv)
            .reshape([b, n, 3, self.heads, w / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let a = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<&Tensor>,
            0.0,
            false,
            None::<f64>,
            false,
        )
        .transpose(1, 2)
        .reshape([b, n, w])
        .apply(&self.proj);
        let x = x + a;
        let m = gelu(&self.norm2.forward(&x).apply(&self.fc1)).apply(&self.fc2);
        x + m
    }
}

fn layer_norm(p: nn::Path, c: &TimmVitConfig) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig {
        eps: c.layer_norm_eps,
        ..Default::default()
    };
    nn::layer_norm(p, vec![c.embed_dim], cfg)
}

/// timm's plain `VisionTransformer` with its classifier removed
/// (`reset_classifier(0)`): the class token after the final `norm`.
#[derive(Debug)]
pub struct TimmVit {
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    config: TimmVitConfig,
}

impl TimmVit {
    /// Builds the trunk's variables directly under `p` (open_clip's
    /// `visual / "trunk"`): `cls_token` `[1, 1, d]`, `pos_embed`
    /// `[1, 1 + grid², d]`, `patch_embed.proj`, `blocks.N.*`, `norm`.
    pub fn new(p: &nn::Path, c: &TimmVitConfig) -> Self {
        let d = c.embed_dim;
        let conv = nn::ConvConfig {
            stride: c.patch_size,
            ..Default::default()
        };
        let tokens = c.grid() * c.grid() + 1;
        Self {
            patch_embed: nn::conv2d(p / "patch_embed" / "proj", 3, d, c.patch_size, conv),
            cls_token: p.randn("cls_token", &[1, 1, d], 0.0, 1e-6),
            pos_embed: p.randn("pos_embed", &[1, tokens, d], 0.0, 0.02),
            blocks: (0..c.depth)
                .map(|i| Block::new(&(p / "blocks" / i), c))
                .collect(),
            norm: layer_norm(p / "norm", c),
            config: c.clone(),
        }
    }

    /// The shape this trunk was built with.
    pub fn config(&self) -> &TimmVitConfig {
        &self.config
    }

    /// The position embedding for a `grid_h` x `grid_w` patch grid: the
    /// stored one when that is its grid, else [`resample_abs_pos_embed`] of
    /// it (differentiable, so training at another size trains the stored
    /// embedding). open_clip's `create_model(..., force_image_size=N)` loads
    /// the checkpoint at the stored grid and then resamples once, with this
    /// same function (timm's `set_input_size`), so the numbers agree.
    pub fn pos_embed_for(&self, grid_h: i64, grid_w: i64) -> Tensor {
        let g = self.config.grid();
        resample_abs_pos_embed(&self.pos_embed, [grid_h, grid_w], [g, g], 1)
    }

    /// Every token after the final `norm`, the class token first:
    /// `[n, 1 + patches, d]`. Images `[n, 3, h, w]` of any size of at least
    /// one patch; a remainder short of a whole patch is left out by the
    /// strided convolution (use multiples of the patch).
    pub fn tokens_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let patches = x.apply(&self.patch_embed);
        let (b, _, gh, gw) = patches.size4().expect("[batch, width, grid_h, grid_w]");
        let patches = patches.flatten(2, 3).transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        let mut y = Tensor::cat(&[cls, patches], 1) + self.pos_embed_for(gh, gw);
        for blk in &self.blocks {
            y = blk.forward(&y);
        }
        self.norm.forward(&y)
    }
}

impl ModuleT for TimmVit {
    /// The normalised class token `[n, d]` (timm's `global_pool="token"`).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.tokens_t(x, train).select(1, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn known_names_build_and_others_do_not() {
        for name in TimmVitConfig::KNOWN {
            let c = TimmVitConfig::timm(name).unwrap();
            assert_eq!(c.image_size % c.patch_size, 0, "{name}");
            assert_eq!(c.embed_dim % c.num_heads, 0, "{name}");
        }
        assert_eq!(TimmVitConfig::vit_base_patch16_224().mlp_hidden(), 3072);
        assert!(TimmVitConfig::timm("vit_so400m_patch14_siglip_224").is_none());
    }

    #[test]
    fn resampling_keeps_the_class_entry_and_same_grid_is_identity() {
        let pe = Tensor::randn([1, 1 + 16, 8], (Kind::Float, Device::Cpu));
        let same = resample_abs_pos_embed(&pe, [4, 4], [4, 4], 1);
        assert!(same.equal(&pe));
        let up = resample_abs_pos_embed(&pe, [6, 5], [4, 4], 1);
        assert_eq!(up.size(), [1, 31, 8]);
        assert!(up.narrow(1, 0, 1).equal(&pe.narrow(1, 0, 1)));
    }
}
