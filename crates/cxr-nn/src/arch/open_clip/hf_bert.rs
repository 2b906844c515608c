//! The BERT of an open_clip Hugging Face text tower, which
//! `open_clip_config.json` leaves to the hub (`hf_model_name`): read from a
//! Hugging Face `config.json` or inferred from the weights.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::config::Fields;
use crate::arch::bert::BertConfig;
use crate::checkpoint::RawTensor;
use crate::error::NnError;

/// The BERT of a Hugging Face text tower: its shape, its padding id (the
/// attention mask is `ids != pad_token_id`, as open_clip's `HFTextEncoder`
/// computes it) and whether `pooler.dense` is in the weights.
///
/// open_clip takes the BERT's config from the hub by `hf_model_name`; it is
/// not in `open_clip_config.json`. cxrlearn reads it from a Hugging Face
/// `config.json` when one is at hand ([`HfBertConfig::from_hf_config`]),
/// else from the weights' shapes ([`HfBertConfig::from_weights`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HfBertConfig {
    /// The encoder's shape.
    pub bert: BertConfig,
    /// `pad_token_id` (0, BERT's `[PAD]`).
    pub pad_token_id: i64,
    /// Whether the model has `pooler.dense`. open_clip 3.3 builds none for
    /// `cls_last_hidden_state_pooler` (`add_pooling_layer=False`); weights
    /// that carry one load it, unused.
    pub pooler: bool,
}

/// Width of every attention head of the BERT releases (base, large and
/// Google's miniatures alike), how the head count follows from the weights.
const BERT_HEAD_DIM: i64 = 64;

impl HfBertConfig {
    /// BiomedBERT-base (microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract,
    /// formerly PubMedBERT): BERT-base with its own 30522-entry uncased
    /// vocabulary, as open_clip 3.3 builds it for BiomedCLIP (no pooler).
    pub fn biomedbert() -> Self {
        Self {
            bert: BertConfig {
                vocab_size: 30522,
                hidden: 768,
                layers: 12,
                heads: 12,
                intermediate: 3072,
                max_positions: 512,
                type_vocab_size: 2,
            },
            pad_token_id: 0,
            pooler: false,
        }
    }

    /// Reads a Hugging Face BERT `config.json`, with transformers'
    /// `BertConfig` defaults for missing fields; `pooler` is false (a
    /// config does not say; [`HfBertConfig::read`] looks at the weights).
    ///
    /// # Errors
    /// [`NnError::ModelConfig`] for another `model_type`, an activation other
    /// than exact GELU, a LayerNorm eps other than 1e-12, relative position
    /// embeddings, a width the heads do not divide, or a malformed field.
    pub fn from_hf_config(v: &Value, file: &Path) -> Result<Self, NnError> {
        let c = Fields::new(v, file, "")?;
        c.only("model_type", "bert", &["bert"], "\"bert\"")?;
        c.only("hidden_act", "gelu", &["gelu"], "\"gelu\" (exact)")?;
        c.only(
            "position_embedding_type",
            "absolute",
            &["absolute"],
            "\"absolute\"",
        )?;
        let eps = c.f64_or("layer_norm_eps", 1e-12)?;
        if eps != 1e-12 {
            return Err(c.err(format!(
                "{} is {eps}; cxrlearn builds BERT with 1e-12",
                c.name("layer_norm_eps")
            )));
        }
        let bert = BertConfig {
            vocab_size: c.int_or("vocab_size", 30522)?,
            hidden: c.int_or("hidden_size", 768)?,
            layers: c.int_or("num_hidden_layers", 12)? as usize,
            heads: c.int_or("num_attention_heads", 12)?,
            intermediate: c.int_or("intermediate_size", 3072)?,
            max_positions: c.int_or("max_position_embeddings", 512)?,
            type_vocab_size: c.int_or("type_vocab_size", 2)?,
        };
        if bert.hidden % bert.heads != 0 {
            return Err(c.err(format!(
                "{} {} is not a multiple of {} {}",
                c.name("hidden_size"),
                bert.hidden,
                c.name("num_attention_heads"),
                bert.heads
            )));
        }
        let pad_token_id = match c.get("pad_token_id") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_i64().filter(|&n| n >= 0).ok_or_else(|| {
                c.err(format!("{} is {v}, not a token id", c.name("pad_token_id")))
            })?,
        };
        Ok(Self {
            bert,
            pad_token_id,
            pooler: false,
        })
    }

    /// Infers the shape from the weights under `prefix` (`text.transformer.`):
    /// vocabulary, width, positions and token types from the embeddings,
    /// layers from the `encoder.layer.N` present, the feed-forward width from
    /// layer 0, `pooler` from `pooler.dense.weight`. Heads are width / 64,
    /// the head width of every BERT release; `pad_token_id` is 0.
    ///
    /// # Errors
    /// [`NnError::ModelConfig`] naming `file` when a tensor is missing or
    /// misshapen, the layers are not numbered 0..n, or the width is not a
    /// multiple of 64 (then the head count needs the model's `config.json`).
    pub fn from_weights(
        tensors: &BTreeMap<String, RawTensor>,
        prefix: &str,
        file: &Path,
    ) -> Result<Self, NnError> {
        let err = |problem: String| NnError::ModelConfig {
            file: file.to_owned(),
            problem,
        };
        let matrix = |key: &str| -> Result<[i64; 2], NnError> {
            let name = format!("{prefix}{key}");
            match tensors.get(&name).map(|t| t.shape.as_slice()) {
                Some(&[a, b]) => Ok([a as i64, b as i64]),
                Some(s) => Err(err(format!("\"{name}\" has shape {s:?}, not a matrix"))),
                None => Err(err(format!(
                    "has no \"{name}\": not a Hugging Face BERT under \"{prefix}\""
                ))),
            }
        };
        let [vocab_size, hidden] = matrix("embeddings.word_embeddings.weight")?;
        let [max_positions, _] = matrix("embeddings.position_embeddings.weight")?;
        let [type_vocab_size, _] = matrix("embeddings.token_type_embeddings.weight")?;
        let [intermediate, _] = matrix("encoder.layer.0.intermediate.dense.weight")?;
        let layer_prefix = format!("{prefix}encoder.layer.");
        let mut layers = std::collections::BTreeSet::new();
        for name in tensors.keys() {
            if let Some(rest) = name.strip_prefix(&layer_prefix) {
                let index = rest.split('.').next().and_then(|i| i.parse::<usize>().ok());
                layers.insert(index.ok_or_else(|| err(format!("\"{name}\" has no layer number")))?);
            }
        }
        if layers.last().is_some_and(|&last| last + 1 != layers.len()) {
            return Err(err(format!(
                "the layers under \"{layer_prefix}\" are {layers:?}, not 0 to n - 1"
            )));
        }
        if hidden % BERT_HEAD_DIM != 0 {
            return Err(err(format!(
                "\"{prefix}embeddings.word_embeddings.weight\" is {hidden} wide, not a multiple \
                 of {BERT_HEAD_DIM}: the head count is not in the weights; put the BERT's \
                 Hugging Face config.json beside them"
            )));
        }
        Ok(Self {
            bert: BertConfig {
                vocab_size,
                hidden,
                layers: layers.len(),
                heads: hidden / BERT_HEAD_DIM,
                intermediate,
                max_positions,
                type_vocab_size,
            },
            pad_token_id: 0,
            pooler: tensors.contains_key(&format!("{prefix}pooler.dense.weight")),
        })
    }

    /// The BERT of weights `tensors` (from `weights`) under `prefix`: from
    /// `hf_config` (a Hugging Face `config.json` and its path) when given,
    /// else from the weights' shapes; `pooler` from the weights either way.
    /// A config that disagrees with the weights' shapes fails the strict
    /// load that follows, naming the tensors.
    ///
    /// # Errors
    /// As [`HfBertConfig::from_hf_config`] or [`HfBertConfig::from_weights`].
    pub fn read(
        tensors: &BTreeMap<String, RawTensor>,
        prefix: &str,
        weights: &Path,
        hf_config: Option<(&Value, &Path)>,
    ) -> Result<Self, NnError> {
        match hf_config {
            None => Self::from_weights(tensors, prefix, weights),
            Some((v, file)) => Ok(Self {
                pooler: tensors.contains_key(&format!("{prefix}pooler.dense.weight")),
                ..Self::from_hf_config(v, file)?
            }),
        }
    }
}
