//! DINOv2 Vision Transformer as Hugging Face transformers 5.25 builds it
//! (`Dinov2Model`, `Dinov2WithRegistersModel`), with the parameter names its
//! checkpoints carry on disk: `embeddings.{cls_token, mask_token,
//! position_embeddings, register_tokens, patch_embeddings.projection}`,
//! `encoder.layer.N.{norm1, attention.attention.{query,key,value},
//! attention.output.dense, layer_scale1.lambda1, norm2, mlp.{fc1,fc2} or
//! mlp.{weights_in,weights_out}, layer_scale2.lambda1}`, `layernorm`.
//! (transformers 5 renames these to `q_proj`, `o_proj`, `gate_proj`... in
//! memory and back when it saves; a `save_pretrained` file and every released
//! checkpoint use the names above.)
//!
//! Pre-LN blocks with layer scale; exact GELU MLPs or SwiGLU MLPs whose fused
//! `weights_in` holds the gate's rows then the up projection's; attention
//! through libtorch's scaled dot-product attention, as transformers' default
//! (`sdpa`) runs it. Inputs of any size: the position embeddings are
//! interpolated as transformers does it (see [`Dinov2::position_embeddings_for`]).
//! In training, the embeddings' and attention probabilities' dropout and the
//! per-sample stochastic depth of the configuration act.

mod config;

pub use config::{Dinov2Config, Dinov2ModelType};

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::attention::gelu;
use super::pooling::Pooling;

#[derive(Debug)]
enum Mlp {
    /// `fc2(gelu(fc1(x)))`.
    Gelu { fc1: nn::Linear, fc2: nn::Linear },
    /// `weights_out(silu(a) * b)` where `[a, b] = weights_in(x)` split in halves.
    SwiGlu {
        weights_in: nn::Linear,
        weights_out: nn::Linear,
    },
}

impl Mlp {
    /// The MLP of `x`. When autograd does not track the first projection's
    /// output (no gradient mode, or frozen weights and input) the activation
    /// overwrites it instead of allocating another hidden-sized tensor: the
    /// same arithmetic, one fresh 4x-width buffer fewer per layer.
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::Gelu { fc1, fc2 } => {
                let mut h = x.apply(fc1);
                if h.requires_grad() {
                    gelu(&h).apply(fc2)
                } else {
                    let _ = h.gelu_("none");
                    h.apply(fc2)
                }
            }
            Self::SwiGlu {
                weights_in,
                weights_out,
            } => {
                let mut h = x.apply(weights_in).chunk(2, -1);
                if h[0].requires_grad() {
                    (h[0].silu() * &h[1]).apply(weights_out)
                } else {
                    let up = h.pop().expect("two halves");
                    let mut gate = h.pop().expect("two halves");
                    let _ = gate.silu_();
                    let _ = gate.g_mul_(&up);
                    gate.apply(weights_out)
                }
            }
        }
    }
}

#[derive(Debug)]
struct Layer {
    norm1: nn::LayerNorm,
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    dense: nn::Linear,
    lambda1: Tensor,
    norm2: nn::LayerNorm,
    mlp: Mlp,
    lambda2: Tensor,
}

/// Stochastic depth per sample (transformers' `Dinov2DropPath`): in
/// training, each sample's residual branch is zeroed with probability `p`
/// and the kept ones scaled by `1 / (1 - p)`.
fn drop_path(x: Tensor, p: f64, train: bool) -> Tensor {
    if p == 0.0 || !train {
        return x;
    }
    let keep = 1.0 - p;
    let mut shape = vec![1; x.dim()];
    shape[0] = x.size()[0];
    let mask = (Tensor::rand(&shape, (x.kind(), x.device())) + keep).floor();
    x / keep * mask
}

/// The DINOv2 encoder (see the module documentation).
#[derive(Debug)]
pub struct Dinov2 {
    cls_token: Tensor,
    /// Never read: masked image modelling is a pretraining input.
    #[allow(dead_code)]
    mask_token: Option<Tensor>,
    position_embeddings: Tensor,
    register_tokens: Option<Tensor>,
    projection: nn::Conv2D,
    layers: Vec<Layer>,
    layernorm: nn::LayerNorm,
    config: Dinov2Config,
}

impl Dinov2 {
    /// Builds the network's variables under `p` with transformers' names at
    /// that root, initialised as transformers initialises them (normal
    /// weights of standard deviation `initializer_range`, zero biases, mask
    /// and register tokens, unit norms, layer scales at `layerscale_value`).
    pub fn new(p: &nn::Path, config: &Dinov2Config) -> Self {
        let c = config;
        let h = c.hidden_size;
        let std = c.initializer_range;
        let normal = nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        let lin = |p: nn::Path, i: i64, o: i64, bias: bool| {
            let cfg = nn::LinearConfig {
                ws_init: normal,
                bs_init: Some(nn::Init::Const(0.0)),
                bias,
            };
            nn::linear(p, i, o, cfg)
        };
        let ln = |p: nn::Path| {
            let cfg = nn::LayerNormConfig {
                eps: c.layer_norm_eps,
                ..Default::default()
            };
            nn::layer_norm(p, vec![h], cfg)
        };
        let e = p / "embeddings";
        let conv = nn::ConvConfig {
            stride: c.patch_size,
            ws_init: normal,
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let projection = nn::conv2d(
            &e / "patch_embeddings" / "projection",
            c.num_channels,
            h,
            c.patch_size,
            conv,
        );
        let cls_token = e.var("cls_token", &[1, 1, h], normal);
        // Not trained (it never gets a gradient here), but a variable, so strict
        // loading accounts for the checkpoint's key.
        let mask_token = c
            .has_mask_token()
            .then(|| e.zeros_no_train("mask_token", &[1, h]));
        let position_embeddings = e.var("position_embeddings", &[1, c.num_positions(), h], normal);
        let register_tokens = (c.model_type == Dinov2ModelType::Dinov2WithRegisters)
            .then(|| e.zeros("register_tokens", &[1, c.num_register_tokens, h]));
        let scale = nn::Init::Const(c.layerscale_value);
        let (w, m) = (c.attention_width(), c.mlp_hidden());
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = p / "encoder" / "layer" / i;
                let a = &l / "attention";
                let mp = &l / "mlp";
                let mlp = if c.use_swiglu_ffn {
                    Mlp::SwiGlu {
                        weights_in: lin(&mp / "weights_in", h, 2 * m, true),
                        weights_out: lin(&mp / "weights_out", m, h, true),
                    }
                } else {
                    Mlp::Gelu {
                        fc1: lin(&mp / "fc1", h, m, true),
                        fc2: lin(&mp / "fc2", m, h, true),
                    }
                };
                Layer {
                    norm1: ln(&l / "norm1"),
                    query: lin(&a / "attention" / "query", h, w, c.qkv_bias),
                    key: lin(&a / "attention" / "key", h, w, c.qkv_bias),
                    value: lin(&a / "attention" / "value", h, w, c.qkv_bias),
                    dense: lin(&a / "output" / "dense", w, h, true),
                    lambda1: (&l / "layer_scale1").var("lambda1", &[h], scale),
                    norm2: ln(&l / "norm2"),
                    mlp,
                    lambda2: (&l / "layer_scale2").var("lambda1", &[h], scale),
                }
            })
            .collect();
        Self {
            cls_token,
            mask_token,
            position_embeddings,
            register_tokens,
            projection,
            layers,
            layernorm: ln(p / "layernorm"),
            config: config.clone(),
        }
    }

    /// The shape this network was built with.
    pub fn config(&self) -> &Dinov2Config {
        &self.config
    }

    /// Tokens before the patch tokens: the class token and the registers.
    pub fn num_prefix_tokens(&self) -> i64 {
        self.config.num_prefix_tokens()
    }

    /// The position embeddings of an input `height` x `width` pixels
    /// (`[1, 1 + patches, hidden]`), as transformers 5.25's
    /// `interpolate_pos_encoding`:
    /// - the stored ones, untouched, when the input has as many patches as
    ///   the native grid and `height == width` (in pixels);
    /// - otherwise the class token's row unchanged, and the patch rows laid
    ///   out on their square grid (`int(sqrt(n))` a side), cast to float32,
    ///   resized with `interpolate(size=(height // patch, width // patch),
    ///   mode="bicubic", align_corners=False)` (no scale factor, no offset),
    ///   with `antialias=True` for `dinov2_with_registers` only, and cast
    ///   back to the embeddings' type.
    pub fn position_embeddings_for(&self, height: i64, width: i64) -> Tensor {
        let c = &self.config;
        let pos = &self.position_embeddings;
        let num_positions = pos.size()[1] - 1;
        let (gh, gw) = (height / c.patch_size, width / c.patch_size);
        if gh * gw == num_positions && height == width {
            return pos.shallow_clone();
        }
        let dim = pos.size()[2];
        let side = (num_positions as f64).sqrt() as i64;
        let kind = pos.kind();
        let grid = pos
            .narrow(1, 1, num_positions)
            .reshape([1, side, side, dim])
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float);
        let resized = match c.model_type {
            Dinov2ModelType::Dinov2 => grid.upsample_bicubic2d([gh, gw], false, None, None),
            Dinov2ModelType::Dinov2WithRegisters => {
                grid.internal_upsample_bicubic2d_aa([gh, gw], false, None, None)
            }
        };
        let patches = resized
            .to_kind(kind)
            .permute([0, 2, 3, 1])
            .reshape([1, -1, dim]);
        Tensor::cat(&[pos.narrow(1, 0, 1), patches], 1)
    }

    /// The embedded tokens `[n, 1 + registers + patches, hidden]`: class
    /// token and patch embeddings plus position embeddings, then the register
    /// tokens inserted after the class token (they have no position), then
    /// dropout in training.
    fn embed(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, _, height, width) = x.size4().expect("images [n, channels, height, width]");
        let x = x.to_kind(self.projection.ws.kind());
        let patches = x.apply(&self.projection).flatten(2, 3).transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        let y = Tensor::cat(&[cls, patches], 1) + self.position_embeddings_for(height, width);
        let y = match &self.register_tokens {
            Some(r) => {
                let n = y.size()[1];
                Tensor::cat(
                    &[
                        y.narrow(1, 0, 1),
                        r.expand([b, -1, -1], false),
                        y.narrow(1, 1, n - 1),
                    ],
                    1,
                )
            }
            None => y,
        };
        dropout(y, self.config.hidden_dropout_prob, train)
    }

    fn attention(&self, l: &Layer, x: &Tensor, train: bool) -> Tensor {
        let c = &self.config;
        let (b, n, _) = x.size3().expect("[batch, tokens, width]");
        let (heads, d) = (c.num_attention_heads, c.head_dim());
        let split = |t: Tensor| t.view([b, n, heads, d]).transpose(1, 2);
        let (q, k, v) = (
            split(x.apply(&l.query)),
            split(x.apply(&l.key)),
            split(x.apply(&l.value)),
        );
        let p = if train {
            c.attention_probs_dropout_prob
        } else {
            0.0
        };
        // transformers' `head_dim ** -0.5`.
        let scale = (d as f64).powf(-0.5);
        Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, p, false, scale, false)
            .transpose(1, 2)
            .reshape([b, n, heads * d])
            .apply(&l.dense)
    }

    /// The last hidden state after the final `layernorm`:
    /// `[n, 1 + registers + patches, hidden]`, the class token first, then
    /// the register tokens, then the patches row by row.
    pub fn tokens_t(&self, x: &Tensor, train: bool) -> Tensor {
        // Outside autograd (feature extraction, a frozen backbone) the
        // residual stream and the MLP's hidden activations are updated in
        // place: fewer fresh multi-megabyte buffers, whose first touch (page
        // faults) cost several percent of a CPU forward.
        let mut y = self.embed(x, train);
        for l in &self.layers {
            let a = self.attention(l, &y.apply(&l.norm1), train);
            y = self.residual(y, &a, &l.lambda1, train);
            let m = l.mlp.forward(&y.apply(&l.norm2));
            y = self.residual(y, &m, &l.lambda2, train);
        }
        y.apply(&self.layernorm)
    }

    /// `y + drop_path(branch * scale)`: the layer-scaled residual update.
    /// Without stochastic depth it is one `addcmul` (the same rounding as
    /// the multiply then the add, one pass and one temporary fewer), into
    /// `y` itself when autograd tracks none of the three: then no recorded
    /// operation has saved `y` (any that did would have made `branch`
    /// require a gradient), so overwriting it is safe.
    fn residual(&self, mut y: Tensor, branch: &Tensor, scale: &Tensor, train: bool) -> Tensor {
        let rate = self.config.drop_path_rate;
        if train && rate > 0.0 {
            return drop_path(branch * scale, rate, train) + y;
        }
        if y.requires_grad() || branch.requires_grad() || scale.requires_grad() {
            y.addcmul(branch, scale)
        } else {
            let _ = y.addcmul_(branch, scale);
            y
        }
    }

    /// One feature per image from [`Dinov2::tokens_t`]: the class token
    /// (transformers' `pooler_output`), the mean of the patch tokens (class
    /// and register tokens excluded), or both concatenated.
    pub fn features_t(&self, x: &Tensor, pooling: Pooling, train: bool) -> Tensor {
        pooling.pool(&self.tokens_t(x, train), self.config.registers())
    }
}

/// Dropout that leaves the tensor as is at probability 0.
fn dropout(x: Tensor, p: f64, train: bool) -> Tensor {
    if p > 0.0 && train {
        x.dropout(p, true)
    } else {
        x
    }
}

impl ModuleT for Dinov2 {
    /// The class token after `layernorm` (`pooler_output`): `[n, hidden]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.features_t(x, Pooling::Cls, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn drop_path_drops_whole_samples() {
        tch::manual_seed(1);
        let x = Tensor::ones([64, 3, 5], (Kind::Float, Device::Cpu));
        let y = drop_path(x.shallow_clone(), 0.25, true);
        let per_sample = y.amax([1, 2], false);
        let min = y.amin([1, 2], false);
        // Every sample all zero or all 1 / 0.75.
        assert!(per_sample.equal(&min));
        let kept = per_sample.gt(0.0).sum(Kind::Float).double_value(&[]);
        assert!(kept > 32.0 && kept < 64.0, "{kept}");
        let v: Vec<f32> = Vec::try_from(per_sample).unwrap();
        assert!(v.iter().all(|&s| s == 0.0 || (s - 1.0 / 0.75).abs() < 1e-6));
        // Evaluation and rate 0 leave the input alone.
        assert!(drop_path(x.shallow_clone(), 0.25, false).equal(&x));
        assert!(drop_path(x.shallow_clone(), 0.0, true).equal(&x));
    }

    #[test]
    fn native_size_takes_the_stored_embeddings() {
        let vs = nn::VarStore::new(Device::Cpu);
        let c = Dinov2Config {
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            image_size: 28,
            ..Dinov2Config::default()
        };
        let m = Dinov2::new(&vs.root(), &c);
        assert!(
            m.position_embeddings_for(28, 28)
                .equal(&m.position_embeddings)
        );
        // Same patch count on a square input not a multiple of the patch.
        assert!(
            m.position_embeddings_for(41, 41)
                .equal(&m.position_embeddings)
        );
        assert_eq!(m.position_embeddings_for(28, 56).size(), [1, 9, 8]);
        let x = Tensor::randn([2, 3, 28, 42], (Kind::Float, Device::Cpu));
        assert_eq!(m.tokens_t(&x, false).size(), [2, 7, 8]);
        assert_eq!(m.features_t(&x, Pooling::ClsMean, false).size(), [2, 16]);
        assert_eq!(m.num_prefix_tokens(), 1);
    }
}
