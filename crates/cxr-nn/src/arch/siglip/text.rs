//! SigLIP's text tower (transformers' `SiglipTextModel`): token and position
//! embeddings, the encoder without causal mask, `final_layer_norm`, and the
//! `head` read at the last position.

use tch::nn;
use tch::{Kind, Tensor};

use super::config::SiglipTextConfig;
use super::{EncoderLayer, LayerShape, encoder, layer_norm, lecun_linear};

/// The text tower, built under `root / "text_model"`.
#[derive(Debug)]
pub struct SiglipText {
    token_embedding: nn::Embedding,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: nn::LayerNorm,
    head: nn::Linear,
    config: SiglipTextConfig,
}

impl SiglipText {
    /// Builds the tower's variables under `p`.
    pub fn new(p: &nn::Path, c: &SiglipTextConfig) -> Self {
        let w = c.hidden_size;
        let e = p / "embeddings";
        // transformers' `default_flax_embed_init_`: normal, variance 1/width.
        let embed_init = nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0 / (w as f64).sqrt(),
        };
        let shape = LayerShape {
            width: w,
            mlp: c.intermediate_size,
            heads: c.num_attention_heads,
            eps: c.layer_norm_eps,
            attention_dropout: c.attention_dropout,
        };
        Self {
            token_embedding: nn::embedding(
                &e / "token_embedding",
                c.vocab_size,
                w,
                nn::EmbeddingConfig {
                    ws_init: embed_init,
                    ..Default::default()
                },
            ),
            position_embedding: (&e / "position_embedding").var(
                "weight",
                &[c.max_position_embeddings, w],
                embed_init,
            ),
            layers: encoder(&(p / "encoder"), &shape, c.num_hidden_layers),
            final_layer_norm: layer_norm(p / "final_layer_norm", w, c.layer_norm_eps),
            head: lecun_linear(p / "head", w, c.projection_size),
            config: c.clone(),
        }
    }

    /// The shape this tower was built with.
    pub fn config(&self) -> &SiglipTextConfig {
        &self.config
    }

    /// The longest id sequence the tower reads (`max_position_embeddings`,
    /// 64 for released models): the context length to tokenise to.
    pub fn context_length(&self) -> i64 {
        self.config.max_position_embeddings
    }

    /// Token states after `final_layer_norm` (`last_hidden_state`), `[n, t,
    /// hidden]`, of ids `[n, t]` (i64). Without `attention_mask` every
    /// position attends to every other, padding included, as SigLIP was
    /// trained and as transformers runs it when no mask is passed; with one
    /// (`[n, t]`, 0 at padding) padded keys are masked, as transformers 5.25
    /// does with the mask its tokenizer returns.
    ///
    /// # Panics
    /// If `t` exceeds [`SiglipText::context_length`] (transformers raises).
    pub fn tokens_t(&self, ids: &Tensor, attention_mask: Option<&Tensor>, train: bool) -> Tensor {
        let (n, t) = ids.size2().expect("token ids [n, t]");
        assert!(
            t <= self.context_length(),
            "{t} token positions, but the SigLIP text tower has {}",
            self.context_length()
        );
        let mut y = ids.apply(&self.token_embedding) + self.position_embedding.narrow(0, 0, t);
        // Boolean, true where a key may be attended to, broadcast over heads
        // and queries.
        let mask = attention_mask.map(|m| m.ne(0).to_kind(Kind::Bool).view([n, 1, 1, t]));
        for l in &self.layers {
            y = l.forward_t(&y, mask.as_ref(), train);
        }
        y.apply(&self.final_layer_norm)
    }

    /// The text feature `[n, projection_size]` of [`SiglipText::tokens_t`]'s
    /// states: `head` of the last position, whatever token it holds (the
    /// end token of a text that fills the context, else padding, which for
    /// SigLIP's tokenizer is the end token too).
    pub fn pool(&self, tokens: &Tensor) -> Tensor {
        tokens.select(1, -1).apply(&self.head)
    }

    /// Text features `[n, projection_size]` of ids `[n, t]` without attention
    /// mask: `get_text_features(input_ids).pooler_output`.
    ///
    /// # Panics
    /// As [`SiglipText::tokens_t`].
    pub fn forward_t(&self, ids: &Tensor, train: bool) -> Tensor {
        self.pool(&self.tokens_t(ids, None, train))
    }

    /// Text features with padded keys masked:
    /// `get_text_features(input_ids, attention_mask).pooler_output`.
    ///
    /// # Panics
    /// As [`SiglipText::tokens_t`].
    pub fn forward_masked_t(&self, ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.pool(&self.tokens_t(ids, Some(attention_mask), train))
    }
}
