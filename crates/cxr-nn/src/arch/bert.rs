//! BERT with Hugging Face's parameter names (`embeddings.word_embeddings`,
//! `encoder.layer.N.attention.self.query`, `...attention.output.LayerNorm`,
//! `pooler.dense`), for ClinicalBERT-style report encoders (GLoRIA, ConVIRT).
//! Post-LN blocks, LayerNorm eps 1e-12, exact GELU, dropout 0.1 in training.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use super::attention::{gelu, multi_head};

/// Shape of a BERT encoder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BertConfig {
    /// Vocabulary size (28996 for Bio_ClinicalBERT's cased vocabulary).
    pub vocab_size: i64,
    /// Token width (768).
    pub hidden: i64,
    /// Layers (12).
    pub layers: usize,
    /// Attention heads (12).
    pub heads: i64,
    /// Feed-forward width (3072).
    pub intermediate: i64,
    /// Longest sequence (512).
    pub max_positions: i64,
    /// Token types (2).
    pub type_vocab_size: i64,
}

impl BertConfig {
    /// BERT-base with Bio_ClinicalBERT's vocabulary.
    pub fn clinical_bert_base() -> Self {
        Self {
            vocab_size: 28996,
            hidden: 768,
            layers: 12,
            heads: 12,
            intermediate: 3072,
            max_positions: 512,
            type_vocab_size: 2,
        }
    }
}

const DROPOUT: f64 = 0.1;

fn ln(p: nn::Path, w: i64) -> nn::LayerNorm {
    let cfg = nn::LayerNormConfig {
        eps: 1e-12,
        ..Default::default()
    };
    nn::layer_norm(p, vec![w], cfg)
}

fn lin(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    nn::linear(p, i, o, Default::default())
}

#[derive(Debug)]
struct Layer {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attn_out: nn::Linear,
    attn_norm: nn::LayerNorm,
    intermediate: nn::Linear,
    output: nn::Linear,
    output_norm: nn::LayerNorm,
}

/// Outputs of [`Bert::forward_t`].
#[derive(Debug)]
pub struct BertOutput {
    /// Last layer's token states `[n, tokens, hidden]`.
    pub last_hidden: Tensor,
    /// Every layer's token states, embeddings first (`layers + 1` entries);
    /// GLoRIA averages the last four.
    pub hidden_states: Vec<Tensor>,
    /// `tanh(pooler.dense(first token))`, `[n, hidden]`; for an encoder
    /// built [`Bert::without_pooler`], the first token's last state (what
    /// open_clip's `ClsPooler` falls back to when there is no pooler output).
    pub pooled: Tensor,
}

/// The BERT encoder.
#[derive(Debug)]
pub struct Bert {
    word: nn::Embedding,
    position: nn::Embedding,
    token_type: nn::Embedding,
    emb_norm: nn::LayerNorm,
    layers: Vec<Layer>,
    pooler: Option<nn::Linear>,
    config: BertConfig,
}

impl Bert {
    /// Builds the encoder's variables under `p`.
    pub fn new(p: &nn::Path, c: &BertConfig) -> Self {
        Self::build(p, c, true)
    }

    /// Builds the encoder without `pooler.dense`, as Hugging Face's
    /// `BertModel(config, add_pooling_layer=False)`: open_clip's text towers
    /// that do not pool with it (BiomedCLIP's) have no such weights.
    pub fn without_pooler(p: &nn::Path, c: &BertConfig) -> Self {
        Self::build(p, c, false)
    }

    fn build(p: &nn::Path, c: &BertConfig, pooler: bool) -> Self {
        let e = p / "embeddings";
        let emb = |p: nn::Path, n, w| nn::embedding(p, n, w, Default::default());
        let h = c.hidden;
        let layers = (0..c.layers)
            .map(|i| {
                let l = p / "encoder" / "layer" / i;
                let a = &l / "attention";
                Layer {
                    query: lin(&a / "self" / "query", h, h),
                    key: lin(&a / "self" / "key", h, h),
                    value: lin(&a / "self" / "value", h, h),
                    attn_out: lin(&a / "output" / "dense", h, h),
                    attn_norm: ln(&a / "output" / "LayerNorm", h),
                    intermediate: lin(&l / "intermediate" / "dense", h, c.intermediate),
                    output: lin(&l / "output" / "dense", c.intermediate, h),
                    output_norm: ln(&l / "output" / "LayerNorm", h),
                }
            })
            .collect();
        Self {
            word: emb(&e / "word_embeddings", c.vocab_size, h),
            position: emb(&e / "position_embeddings", c.max_positions, h),
            token_type: emb(&e / "token_type_embeddings", c.type_vocab_size, h),
            emb_norm: ln(&e / "LayerNorm", h),
            layers,
            pooler: pooler.then(|| lin(p / "pooler" / "dense", h, h)),
            config: c.clone(),
        }
    }

    /// The shape this encoder was built with.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Encodes token ids `[n, tokens]` (i64) with an attention mask of the
    /// same shape (1 for real tokens, 0 for padding); token types are all 0.
    pub fn forward_t(&self, ids: &Tensor, mask: &Tensor, train: bool) -> BertOutput {
        let (_, t) = ids.size2().expect("[batch, tokens]");
        let positions = Tensor::arange(t, (Kind::Int64, ids.device())).unsqueeze(0);
        let x = ids.apply(&self.word)
            + positions.apply(&self.position)
            + ids.zeros_like().apply(&self.token_type);
        let mut x = self.emb_norm.forward(&x).dropout(DROPOUT, train);
        // Padding gets the most negative score, as Hugging Face does.
        let additive: Tensor =
            (mask.to_kind(Kind::Float) * -1.0 + 1.0).view([-1, 1, 1, t]) * f64::from(f32::MIN);
        let mut hidden_states = vec![x.shallow_clone()];
        for l in &self.layers {
            let a = multi_head(
                &x.apply(&l.query),
                &x.apply(&l.key),
                &x.apply(&l.value),
                self.config.heads,
                Some(&additive),
            );
            let a = a.apply(&l.attn_out).dropout(DROPOUT, train);
            let y = l.attn_norm.forward(&(a + &x));
            let f = gelu(&y.apply(&l.intermediate))
                .apply(&l.output)
                .dropout(DROPOUT, train);
            x = l.output_norm.forward(&(f + &y));
            hidden_states.push(x.shallow_clone());
        }
        let pooled = match &self.pooler {
            Some(pooler) => x.select(1, 0).apply(pooler).tanh(),
            None => x.select(1, 0),
        };
        BertOutput {
            last_hidden: x,
            hidden_states,
            pooled,
        }
    }
}
