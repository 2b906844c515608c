//! SigLIP's shapes as transformers' `SiglipVisionConfig`, `SiglipTextConfig`
//! and `SiglipConfig` hold them (same field names and defaults, transformers
//! 5.25), read from and written to a Hugging Face `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::NnError;

/// The activation of every SigLIP MLP: transformers' `gelu_pytorch_tanh`,
/// GELU with the tanh approximation (the only one built here).
pub const HIDDEN_ACT: &str = "gelu_pytorch_tanh";

/// Shape of SigLIP's image tower (transformers' `SiglipVisionConfig`; the
/// defaults are its defaults, SigLIP base at 224 pixels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipVisionConfig {
    /// Token width (768).
    pub hidden_size: i64,
    /// MLP width (3072).
    pub intermediate_size: i64,
    /// Transformer layers (12).
    pub num_hidden_layers: usize,
    /// Attention heads (12).
    pub num_attention_heads: i64,
    /// Input channels (3).
    pub num_channels: i64,
    /// Side of the square input the position embeddings are for (224).
    pub image_size: i64,
    /// Patch side (16).
    pub patch_size: i64,
    /// MLP activation; only [`HIDDEN_ACT`] is built.
    pub hidden_act: String,
    /// LayerNorm epsilon (1e-6).
    pub layer_norm_eps: f64,
    /// Dropout on attention weights in training (0).
    pub attention_dropout: f64,
    /// Whether the tower ends in the attention-pooling head (true); without
    /// it the image feature is the mean token.
    pub vision_use_head: bool,
}

impl Default for SiglipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 16,
            hidden_act: HIDDEN_ACT.into(),
            layer_norm_eps: 1e-6,
            attention_dropout: 0.0,
            vision_use_head: true,
        }
    }
}

impl SiglipVisionConfig {
    /// Patches along a side of the native input.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    /// Position embeddings (patches of the native input).
    pub fn num_positions(&self) -> i64 {
        self.grid() * self.grid()
    }
}

/// Shape of SigLIP's text tower (transformers' `SiglipTextConfig`; the
/// defaults are its defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipTextConfig {
    /// Vocabulary size (32000).
    pub vocab_size: i64,
    /// Token width (768).
    pub hidden_size: i64,
    /// MLP width (3072).
    pub intermediate_size: i64,
    /// Transformer layers (12).
    pub num_hidden_layers: usize,
    /// Attention heads (12).
    pub num_attention_heads: i64,
    /// Longest token sequence (64): the context length SigLIP pads texts to.
    pub max_position_embeddings: i64,
    /// MLP activation; only [`HIDDEN_ACT`] is built.
    pub hidden_act: String,
    /// LayerNorm epsilon (1e-6).
    pub layer_norm_eps: f64,
    /// Dropout on attention weights in training (0).
    pub attention_dropout: f64,
    /// Padding id as the config records it (1). Not read by the model: the
    /// tokenizer pads (see `crate::text::TextTokenizer::hf_json`).
    pub pad_token_id: Option<i64>,
    /// Start id as the config records it (transformers' default 49406,
    /// copied from CLIP; SigLIP's tokenizer puts no start token).
    pub bos_token_id: Option<i64>,
    /// End id(s) as the config records them (transformers' default 49407;
    /// an integer or a list in `config.json`). Not read by the model.
    pub eos_token_id: Vec<i64>,
    /// Width of the text feature (`head` output); `config.json`'s `null`
    /// means `hidden_size`.
    pub projection_size: i64,
}

impl Default for SiglipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 32000,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 64,
            hidden_act: HIDDEN_ACT.into(),
            layer_norm_eps: 1e-6,
            attention_dropout: 0.0,
            pad_token_id: Some(1),
            bos_token_id: Some(49406),
            eos_token_id: vec![49407],
            projection_size: 768,
        }
    }
}

/// A SigLIP model's shape: the image tower, and the text tower unless the
/// config is a `siglip_vision_model` one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipConfig {
    /// The text tower (`None` for an image tower alone).
    pub text: Option<SiglipTextConfig>,
    /// The image tower.
    pub vision: SiglipVisionConfig,
}

/// A tower of `width`, `mlp` wide, `layers` deep, with `heads` heads.
fn vision(
    width: i64,
    mlp: i64,
    layers: usize,
    heads: i64,
    image: i64,
    patch: i64,
) -> SiglipVisionConfig {
    SiglipVisionConfig {
        hidden_size: width,
        intermediate_size: mlp,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        image_size: image,
        patch_size: patch,
        ..Default::default()
    }
}

/// A text tower of the same shape, SigLIP's 32,000-piece English vocabulary
/// and 64 positions.
fn text_like(v: &SiglipVisionConfig) -> SiglipTextConfig {
    SiglipTextConfig {
        hidden_size: v.hidden_size,
        intermediate_size: v.intermediate_size,
        num_hidden_layers: v.num_hidden_layers,
        num_attention_heads: v.num_attention_heads,
        projection_size: v.hidden_size,
        ..Default::default()
    }
}

impl SiglipConfig {
    /// Both towers of `vision`'s shape (every released English SigLIP pairs
    /// towers of one shape).
    fn matched(vision: SiglipVisionConfig) -> Self {
        Self {
            text: Some(text_like(&vision)),
            vision,
        }
    }

    /// `google/siglip-base-patch16-{224,256,384,512}`: ViT-B/16 towers
    /// (768 wide, 12 layers) at `image_size` pixels.
    pub fn base_patch16(image_size: i64) -> Self {
        Self::matched(vision(768, 3072, 12, 12, image_size, 16))
    }

    /// `google/siglip-large-patch16-384`: ViT-L/16 towers (1024 wide, 24
    /// layers, 16 heads).
    pub fn large_patch16_384() -> Self {
        Self::matched(vision(1024, 4096, 24, 16, 384, 16))
    }

    /// `google/siglip-so400m-patch14-384`: the shape-optimised 400M towers
    /// (1152 wide, MLP 4304, 27 layers, 16 heads), patch 14 at 384 pixels.
    pub fn so400m_patch14_384() -> Self {
        Self::matched(vision(1152, 4304, 27, 16, 384, 14))
    }

    /// `google/medsiglip-448` (MedSigLIP): the so400m image tower at 448
    /// pixels (32 x 32 patches). Its text tower is taken to be so400m's
    /// (1152 wide, 27 layers, 32,000 ids, 64 positions), as the model card
    /// describes a 400M text encoder with 64 tokens; this shape was not
    /// checked against the published `config.json` here (no hub access), so
    /// read a release's `config.json` with [`SiglipConfig::from_hf`] rather
    /// than rely on it.
    pub fn medsiglip_448() -> Self {
        Self::matched(vision(1152, 4304, 27, 16, 448, 14))
    }

    /// Reads a Hugging Face `config.json` (see [`SiglipConfig::from_hf`]).
    ///
    /// # Errors
    /// An unreadable file, one that is not JSON, or one `from_hf` rejects.
    pub fn from_file(path: &Path) -> Result<Self, NnError> {
        let text = std::fs::read_to_string(path).map_err(|source| NnError::Io {
            path: path.to_owned(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| NnError::ModelConfig {
            file: path.to_owned(),
            problem: format!("is not JSON: {e}"),
        })?;
        Self::from_hf(&value, path)
    }

    /// The shape a Hugging Face `config.json` describes: `model_type`
    /// `"siglip"` (a `SiglipModel`: `vision_config` and `text_config`
    /// objects, each defaulting as transformers defaults them) or
    /// `"siglip_vision_model"` (a `SiglipVisionModel`: the image tower's
    /// fields at the top level; `text` is `None`). Fields missing take
    /// transformers' defaults; fields this crate does not read are ignored.
    ///
    /// # Errors
    /// [`NnError::ModelConfig`] naming `file`, the field and its value: another
    /// `model_type` (SigLIP 2's `"siglip2"` embeds patches differently), an
    /// activation other than [`HIDDEN_ACT`], a width not divisible by the
    /// heads, a size that is not a positive integer.
    pub fn from_hf(config: &Value, file: &Path) -> Result<Self, NnError> {
        let bad = |problem: String| NnError::ModelConfig {
            file: file.to_owned(),
            problem,
        };
        let obj = config
            .as_object()
            .ok_or_else(|| bad("is not a JSON object".into()))?;
        let parsed = match obj.get("model_type").and_then(Value::as_str) {
            Some("siglip") => {
                let vision = sub_object(obj, "vision_config", "siglip_vision_model", file)?;
                let text = sub_object(obj, "text_config", "siglip_text_model", file)?;
                Self {
                    vision: read_vision(&Fields::new(&vision, "vision_config.", file))?,
                    text: Some(read_text(&Fields::new(&text, "text_config.", file))?),
                }
            }
            Some("siglip_vision_model") => Self {
                vision: read_vision(&Fields::new(obj, "", file))?,
                text: None,
            },
            Some(other @ ("siglip2" | "siglip2_vision_model")) => {
                return Err(bad(format!(
                    "\"model_type\" is \"{other}\"; SigLIP 2 embeds patches with a linear layer at \
                     variable resolution, which is not built here (only \"siglip\" and \
                     \"siglip_vision_model\")"
                )));
            }
            Some("siglip_text_model") => {
                return Err(bad(
                    "\"model_type\" is \"siglip_text_model\"; a SigLIP text tower is \
                     built only with its image tower (\"siglip\")"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(bad(format!(
                    "\"model_type\" is \"{other}\"; SigLIP's are \"siglip\" and \"siglip_vision_model\""
                )));
            }
            None => {
                return Err(bad(
                    "has no string \"model_type\"; SigLIP's are \"siglip\" and \"siglip_vision_model\""
                        .into(),
                ));
            }
        };
        Ok(parsed)
    }

    /// The `config.json` transformers writes for this shape (model type
    /// `"siglip"`, or `"siglip_vision_model"` without a text tower); both
    /// [`SiglipConfig::from_hf`] and transformers 5.25 read it back.
    pub fn to_hf(&self) -> Value {
        let v = &self.vision;
        let vision = json!({
            "attention_dropout": v.attention_dropout,
            "hidden_act": v.hidden_act,
            "hidden_size": v.hidden_size,
            "image_size": v.image_size,
            "intermediate_size": v.intermediate_size,
            "layer_norm_eps": v.layer_norm_eps,
            "model_type": "siglip_vision_model",
            "num_attention_heads": v.num_attention_heads,
            "num_channels": v.num_channels,
            "num_hidden_layers": v.num_hidden_layers,
            "patch_size": v.patch_size,
            "vision_use_head": v.vision_use_head,
        });
        let Some(t) = &self.text else {
            let mut out = vision;
            out["architectures"] = json!(["SiglipVisionModel"]);
            return out;
        };
        let eos = match t.eos_token_id.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        json!({
            "architectures": ["SiglipModel"],
            "initializer_factor": 1.0,
            "model_type": "siglip",
            "text_config": {
                "attention_dropout": t.attention_dropout,
                "bos_token_id": t.bos_token_id,
                "eos_token_id": eos,
                "hidden_act": t.hidden_act,
                "hidden_size": t.hidden_size,
                "intermediate_size": t.intermediate_size,
                "layer_norm_eps": t.layer_norm_eps,
                "max_position_embeddings": t.max_position_embeddings,
                "model_type": "siglip_text_model",
                "num_attention_heads": t.num_attention_heads,
                "num_hidden_layers": t.num_hidden_layers,
                "pad_token_id": t.pad_token_id,
                "projection_size": t.projection_size,
                "vocab_size": t.vocab_size,
            },
            "vision_config": vision,
        })
    }
}

/// `obj[key]` (an empty object when missing or null, as transformers then
/// uses the defaults), whose own `model_type`, if any, must be `expected`.
fn sub_object(
    obj: &Map<String, Value>,
    key: &str,
    expected: &str,
    file: &Path,
) -> Result<Map<String, Value>, NnError> {
    let bad = |problem: String| NnError::ModelConfig {
        file: file.to_owned(),
        problem,
    };
    let sub = match obj.get(key) {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(bad(format!("\"{key}\" is {other}; expected an object"))),
    };
    match sub.get("model_type") {
        None => {}
        Some(Value::String(t)) if t == expected => {}
        Some(other) => {
            return Err(bad(format!(
                "\"{key}.model_type\" is {other}; a SigLIP model's is \"{expected}\""
            )));
        }
    }
    Ok(sub.clone())
}

/// Typed reads of one config object's fields, errors naming the field with
/// its path (`vision_config.hidden_act`).
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'a str,
    file: &'a Path,
}

impl<'a> Fields<'a> {
    fn new(obj: &'a Map<String, Value>, prefix: &'a str, file: &'a Path) -> Self {
        Self { obj, prefix, file }
    }

    fn bad(&self, key: &str, value: &Value, expected: &str) -> NnError {
        NnError::ModelConfig {
            file: self.file.to_owned(),
            problem: format!("\"{}{key}\" is {value}; {expected}", self.prefix),
        }
    }

    /// A strictly positive integer (a width, a count, a side).
    fn positive(&self, key: &str, default: i64) -> Result<i64, NnError> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(v) => match v.as_i64() {
                Some(n) if n > 0 => Ok(n),
                _ if v.is_array() && matches!(key, "image_size" | "patch_size") => Err(self.bad(
                    key,
                    v,
                    "SigLIP is built here for square inputs and patches (one integer)",
                )),
                _ => Err(self.bad(key, v, "expected a positive integer")),
            },
        }
    }

    fn count(&self, key: &str, default: usize) -> Result<usize, NnError> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| self.bad(key, v, "expected a non-negative integer")),
        }
    }

    fn float(&self, key: &str, default: f64) -> Result<f64, NnError> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.bad(key, v, "expected a number")),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, NnError> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.bad(key, v, "expected true or false")),
        }
    }

    /// An id that may be `null`.
    fn id(&self, key: &str, default: Option<i64>) -> Result<Option<i64>, NnError> {
        match self.obj.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.bad(key, v, "expected an integer or null")),
        }
    }

    /// Ids given as one integer, a list or `null`.
    fn ids(&self, key: &str, default: &[i64]) -> Result<Vec<i64>, NnError> {
        let expected = "expected an integer, a list of integers or null";
        match self.obj.get(key) {
            None => Ok(default.to_vec()),
            Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_i64().ok_or_else(|| self.bad(key, x, expected)))
                .collect(),
            Some(v) => v
                .as_i64()
                .map(|n| vec![n])
                .ok_or_else(|| self.bad(key, v, expected)),
        }
    }

    /// The activation, which must be [`HIDDEN_ACT`].
    fn activation(&self) -> Result<String, NnError> {
        match self.obj.get("hidden_act") {
            None => Ok(HIDDEN_ACT.into()),
            Some(Value::String(s)) if s == HIDDEN_ACT => Ok(s.clone()),
            Some(v) => Err(self.bad(
                "hidden_act",
                v,
                &format!("SigLIP is built with \"{HIDDEN_ACT}\""),
            )),
        }
    }

    /// `hidden_size` and `num_attention_heads`, the first a multiple of the
    /// second (transformers refuses the rest too).
    fn width_and_heads(&self, width: i64, heads: i64) -> Result<(i64, i64), NnError> {
        let w = self.positive("hidden_size", width)?;
        let h = self.positive("num_attention_heads", heads)?;
        if w % h != 0 {
            return Err(self.bad(
                "hidden_size",
                &json!(w),
                &format!("it must be a multiple of \"num_attention_heads\" ({h})"),
            ));
        }
        Ok((w, h))
    }
}

fn read_vision(f: &Fields) -> Result<SiglipVisionConfig, NnError> {
    let d = SiglipVisionConfig::default();
    let (hidden_size, num_attention_heads) =
        f.width_and_heads(d.hidden_size, d.num_attention_heads)?;
    let image_size = f.positive("image_size", d.image_size)?;
    let patch_size = f.positive("patch_size", d.patch_size)?;
    if patch_size > image_size {
        return Err(f.bad(
            "patch_size",
            &json!(patch_size),
            &format!("it must not exceed \"image_size\" ({image_size})"),
        ));
    }
    Ok(SiglipVisionConfig {
        hidden_size,
        intermediate_size: f.positive("intermediate_size", d.intermediate_size)?,
        num_hidden_layers: f.count("num_hidden_layers", d.num_hidden_layers)?,
        num_attention_heads,
        num_channels: f.positive("num_channels", d.num_channels)?,
        image_size,
        patch_size,
        hidden_act: f.activation()?,
        layer_norm_eps: f.float("layer_norm_eps", d.layer_norm_eps)?,
        attention_dropout: f.float("attention_dropout", d.attention_dropout)?,
        vision_use_head: f.boolean("vision_use_head", d.vision_use_head)?,
    })
}

fn read_text(f: &Fields) -> Result<SiglipTextConfig, NnError> {
    let d = SiglipTextConfig::default();
    let (hidden_size, num_attention_heads) =
        f.width_and_heads(d.hidden_size, d.num_attention_heads)?;
    // transformers' `__post_init__`: a missing or null projection is the width.
    let projection_size = match f.obj.get("projection_size") {
        None | Some(Value::Null) => hidden_size,
        Some(_) => f.positive("projection_size", hidden_size)?,
    };
    Ok(SiglipTextConfig {
        vocab_size: f.positive("vocab_size", d.vocab_size)?,
        hidden_size,
        intermediate_size: f.positive("intermediate_size", d.intermediate_size)?,
        num_hidden_layers: f.count("num_hidden_layers", d.num_hidden_layers)?,
        num_attention_heads,
        max_position_embeddings: f
            .positive("max_position_embeddings", d.max_position_embeddings)?,
        hidden_act: f.activation()?,
        layer_norm_eps: f.float("layer_norm_eps", d.layer_norm_eps)?,
        attention_dropout: f.float("attention_dropout", d.attention_dropout)?,
        pad_token_id: f.id("pad_token_id", d.pad_token_id)?,
        bos_token_id: f.id("bos_token_id", d.bos_token_id)?,
        eos_token_id: f.ids("eos_token_id", &d.eos_token_id)?,
        projection_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_round_trip_and_defaults() {
        let file = Path::new("config.json");
        for c in [
            SiglipConfig::base_patch16(256),
            SiglipConfig::so400m_patch14_384(),
            SiglipConfig {
                text: None,
                ..SiglipConfig::medsiglip_448()
            },
        ] {
            assert_eq!(SiglipConfig::from_hf(&c.to_hf(), file).unwrap(), c);
        }
        // An empty "siglip" config is transformers' defaults: base at 224.
        let d = SiglipConfig::from_hf(&json!({"model_type": "siglip"}), file).unwrap();
        assert_eq!(d, SiglipConfig::base_patch16(224));
        assert_eq!(d.vision.num_positions(), 196);
    }

    #[test]
    fn rejects_what_is_not_built() {
        let file = Path::new("config.json");
        let problem = |v: Value| match SiglipConfig::from_hf(&v, file) {
            Err(NnError::ModelConfig { problem, .. }) => problem,
            other => panic!("{other:?}"),
        };
        assert!(problem(json!({"model_type": "siglip2"})).contains("\"siglip2\""));
        assert!(problem(json!({})).contains("model_type"));
        let p = problem(json!({"model_type": "siglip_vision_model", "patch_size": 0}));
        assert!(p.starts_with("\"patch_size\" is 0"), "{p}");
        let p = problem(json!({"model_type": "siglip_vision_model", "image_size": [384, 384]}));
        assert!(p.contains("square"), "{p}");
        let p = problem(json!({"model_type": "siglip", "text_config": {"hidden_size": 100}}));
        assert!(p.starts_with("\"text_config.hidden_size\" is 100"), "{p}");
        let p = problem(json!({"model_type": "siglip", "text_config": {"eos_token_id": "x"}}));
        assert!(p.starts_with("\"text_config.eos_token_id\""), "{p}");
        let p = problem(json!({"model_type": "siglip", "vision_config": {"model_type": "clip"}}));
        assert!(
            p.starts_with("\"vision_config.model_type\" is \"clip\""),
            "{p}"
        );
    }
}
