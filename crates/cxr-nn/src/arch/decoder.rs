//! REFERS' report-generation head (virtex's `transformer_postnorm` textual
//! head, docs/ssl-methods.md (REFERS)): word + learned positional embeddings with a
//! LayerNorm, a post-norm transformer decoder over a projected visual
//! memory, and an output layer tied to the word embedding. Parameter names
//! follow virtex / PyTorch (`embedding.words`, `embedding.positions`,
//! `embedding.layer_norm`, `visual_projection`,
//! `transformer.layers.N.{self_attn, multihead_attn, linear1, linear2,
//! norm1, norm2, norm3}`, `output.bias`). Every weight starts from BERT's
//! N(0, 0.02), biases at zero, the padding row of the embedding at zero.

use tch::nn::{self, Init, Module};
use tch::{Kind, Tensor};

use super::attention::{gelu, multi_head};

/// Shape of a caption decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Vocabulary size (the output layer's width).
    pub vocab_size: i64,
    /// Token width (1024 in REFERS).
    pub hidden: i64,
    /// Decoder layers (1).
    pub layers: usize,
    /// Attention heads (16).
    pub heads: i64,
    /// Feed-forward width (4096).
    pub ffn: i64,
    /// Longest caption, start and end tokens included (100).
    pub max_len: i64,
    /// Width of the visual memory before its projection (the ViT's width).
    pub memory_dim: i64,
    /// The padding id: zeroed in the input, masked as a key.
    pub pad_id: i64,
}

const DROPOUT: f64 = 0.1;
/// Initial standard deviation of every weight (BERT's).
const INIT_STD: f64 = 0.02;
/// Added to attention scores that are forbidden; finite, so a row that
/// only sees masked keys could not turn into NaN.
const MASKED: f64 = -1e9;

fn lin(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        },
        bs_init: Some(Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, i, o, cfg)
}

/// PyTorch's `nn.MultiheadAttention` parameters: one stacked `in_proj`
/// for query, key and value, and `out_proj`.
#[derive(Debug)]
struct Attention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    heads: i64,
}

impl Attention {
    fn new(p: &nn::Path, w: i64, heads: i64) -> Self {
        Self {
            in_proj_weight: p.randn("in_proj_weight", &[3 * w, w], 0.0, INIT_STD),
            in_proj_bias: p.zeros("in_proj_bias", &[3 * w]),
            out_proj: lin(p / "out_proj", w, w),
            heads,
        }
    }

    /// Attention of `x`'s tokens over `memory`'s; `mask` is added to the
    /// scores `[.., x tokens, memory tokens]`.
    fn forward(&self, x: &Tensor, memory: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let w = self.in_proj_weight.chunk(3, 0);
        let b = self.in_proj_bias.chunk(3, 0);
        let q = x.linear(&w[0], Some(&b[0]));
        let k = memory.linear(&w[1], Some(&b[1]));
        let v = memory.linear(&w[2], Some(&b[2]));
        multi_head(&q, &k, &v, self.heads, mask).apply(&self.out_proj)
    }
}

#[derive(Debug)]
struct Layer {
    self_attn: Attention,
    multihead_attn: Attention,
    linear1: nn::Linear,
    linear2: nn::Linear,
    norm1: nn::LayerNorm,
    norm2: nn::LayerNorm,
    norm3: nn::LayerNorm,
}

impl Layer {
    fn new(p: &nn::Path, c: &DecoderConfig) -> Self {
        let h = c.hidden;
        let ln = |name: &str| nn::layer_norm(p / name, vec![h], Default::default());
        Self {
            self_attn: Attention::new(&(p / "self_attn"), h, c.heads),
            multihead_attn: Attention::new(&(p / "multihead_attn"), h, c.heads),
            linear1: lin(p / "linear1", h, c.ffn),
            linear2: lin(p / "linear2", c.ffn, h),
            norm1: ln("norm1"),
            norm2: ln("norm2"),
            norm3: ln("norm3"),
        }
    }

    /// Post-norm: each sub-layer's residual sum is normalised.
    fn forward(&self, x: &Tensor, memory: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let a = self
            .self_attn
            .forward(x, x, Some(mask))
            .dropout(DROPOUT, train);
        let x = self.norm1.forward(&(x + a));
        let c = self
            .multihead_attn
            .forward(&x, memory, None)
            .dropout(DROPOUT, train);
        let x = self.norm2.forward(&(x + c));
        let f = gelu(&x.apply(&self.linear1))
            .dropout(DROPOUT, train)
            .apply(&self.linear2)
            .dropout(DROPOUT, train);
        self.norm3.forward(&(x + f))
    }
}

/// The caption decoder.
#[derive(Debug)]
pub struct CaptionDecoder {
    words: Tensor,
    positions: Tensor,
    layer_norm: nn::LayerNorm,
    visual_projection: nn::Linear,
    layers: Vec<Layer>,
    output_bias: Tensor,
    config: DecoderConfig,
}

impl CaptionDecoder {
    /// Builds the decoder's variables under `p`.
    pub fn new(p: &nn::Path, c: &DecoderConfig) -> Self {
        let e = p / "embedding";
        let words = (&e / "words").randn("weight", &[c.vocab_size, c.hidden], 0.0, INIT_STD);
        if (0..c.vocab_size).contains(&c.pad_id) {
            tch::no_grad(|| {
                let _ = words.get(c.pad_id).zero_();
            });
        }
        let positions = (&e / "positions").randn("weight", &[c.max_len, c.hidden], 0.0, INIT_STD);
        // virtex's embedding LayerNorm uses eps 1e-8.
        let ln_cfg = nn::LayerNormConfig {
            eps: 1e-8,
            ..Default::default()
        };
        let t = p / "transformer" / "layers";
        Self {
            words,
            positions,
            layer_norm: nn::layer_norm(&e / "layer_norm", vec![c.hidden], ln_cfg),
            visual_projection: lin(p / "visual_projection", c.memory_dim, c.hidden),
            layers: (0..c.layers).map(|i| Layer::new(&(&t / i), c)).collect(),
            output_bias: (p / "output").zeros("bias", &[c.vocab_size]),
            config: c.clone(),
        }
    }

    /// The shape this decoder was built with.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Next-token logits `[n, tokens, vocab]` of token ids `[n, tokens]`
    /// (i64, at most `max_len`) given visual tokens `[n, m, memory_dim]`.
    /// Position t sees tokens 0..=t that are not padding; padded inputs are
    /// zeroed after the embedding LayerNorm, as virtex does.
    pub fn forward_t(&self, ids: &Tensor, memory: &Tensor, train: bool) -> Tensor {
        let t = ids.size()[1];
        let device = ids.device();
        let kind = self.words.kind();
        let pos = self.positions.narrow(0, 0, t).unsqueeze(0);
        let real = ids.ne(self.config.pad_id);
        let x = self
            .layer_norm
            .forward(&(Tensor::embedding(&self.words, ids, self.config.pad_id, false, false) + pos))
            .dropout(DROPOUT, train)
            * real.unsqueeze(-1).to_kind(kind);
        let causal = Tensor::ones([t, t], (Kind::Bool, device)).triu(1);
        let blocked = causal
            .view([1, 1, t, t])
            .logical_or(&real.logical_not().view([-1, 1, 1, t]));
        let mask = blocked.to_kind(kind) * MASKED;
        let memory = memory.apply(&self.visual_projection);
        let mut x = x;
        for l in &self.layers {
            x = l.forward(&x, &memory, &mask, train);
        }
        x.linear(&self.words, Some(&self.output_bias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn config() -> DecoderConfig {
        DecoderConfig {
            vocab_size: 11,
            hidden: 8,
            layers: 1,
            heads: 2,
            ffn: 16,
            max_len: 6,
            memory_dim: 5,
            pad_id: 0,
        }
    }

    fn build() -> (nn::VarStore, CaptionDecoder) {
        tch::manual_seed(3);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let d = CaptionDecoder::new(&vs.root(), &config());
        vs.double();
        (vs, d)
    }

    #[test]
    fn later_tokens_do_not_change_earlier_outputs() {
        let (_vs, d) = build();
        let memory = Tensor::randn([1, 4, 5], (Kind::Double, Device::Cpu));
        let a = Tensor::from_slice(&[2i64, 5, 7, 3, 9, 4]).view([1, 6]);
        let b = Tensor::from_slice(&[2i64, 5, 7, 8, 1, 0]).view([1, 6]);
        let (ya, yb) = (
            d.forward_t(&a, &memory, false),
            d.forward_t(&b, &memory, false),
        );
        let early = (ya.narrow(1, 0, 3) - yb.narrow(1, 0, 3))
            .abs()
            .max()
            .double_value(&[]);
        assert!(early < 1e-12, "positions 0-2 moved by {early}");
        let later = (ya.narrow(1, 3, 1) - yb.narrow(1, 3, 1))
            .abs()
            .max()
            .double_value(&[]);
        assert!(later > 1e-6, "position 3 should see its own token");
        // The memory reaches every position. A shifted copy rather than a
        // second draw: tests on other threads reseed libtorch's one
        // generator, which once made both draws the same tensor.
        let other = &memory + 1.0;
        let moved = (d.forward_t(&a, &other, false) - &ya)
            .abs()
            .max()
            .double_value(&[]);
        assert!(moved > 1e-6);
    }

    #[test]
    fn padding_does_not_change_real_positions() {
        // A padded caption and the same caption cut short agree where both exist.
        let (_vs, d) = build();
        let memory = Tensor::randn([1, 3, 5], (Kind::Double, Device::Cpu));
        let padded = Tensor::from_slice(&[2i64, 6, 3, 0, 0]).view([1, 5]);
        let short = Tensor::from_slice(&[2i64, 6, 3]).view([1, 3]);
        let diff = (d.forward_t(&padded, &memory, false).narrow(1, 0, 3)
            - d.forward_t(&short, &memory, false))
        .abs()
        .max()
        .double_value(&[]);
        assert!(diff < 1e-12, "{diff}");
    }

    #[test]
    fn output_is_tied_and_uniform_without_word_vectors() {
        let (vs, d) = build();
        let vars = vs.variables();
        assert!(vars.contains_key("embedding.words.weight"));
        assert!(vars.contains_key("transformer.layers.0.multihead_attn.in_proj_weight"));
        assert!(vars.contains_key("output.bias"));
        assert!(
            !vars.contains_key("output.weight"),
            "the output reuses the word embedding"
        );
        let pad_row = vars["embedding.words.weight"]
            .get(0)
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(pad_row, 0.0);
        // With zero word vectors every logit is the (zero) bias: cross-entropy ln V.
        tch::no_grad(|| {
            let _ = vars["embedding.words.weight"].shallow_clone().zero_();
        });
        let ids = Tensor::from_slice(&[2i64, 4, 5, 6]).view([1, 4]);
        let memory = Tensor::randn([1, 2, 5], (Kind::Double, Device::Cpu));
        let logits = d.forward_t(&ids, &memory, false);
        let ce = logits
            .view([-1, 11])
            .log_softmax(-1, Kind::Double)
            .neg()
            .mean(Kind::Double)
            .double_value(&[]);
        assert!((ce - 11f64.ln()).abs() < 1e-12, "{ce}");
    }
}
