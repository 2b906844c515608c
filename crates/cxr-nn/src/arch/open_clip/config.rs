//! open_clip's `open_clip_config.json` (`model_cfg` and `preprocess_cfg`),
//! as far as cxrlearn builds it.
//!
//! A field the file leaves out takes open_clip's dataclass default
//! (`CLIPVisionCfg`, `CLIPTextCfg`, `PreprocessCfg` of open_clip 3.3), and is
//! then refused like a written one when cxrlearn does not build it: a missing
//! `hf_pooler_type` is open_clip's `"mean_pooler"`, not BiomedCLIP's.

use std::path::Path;

use serde_json::{Map, Value};

use super::timm_vit::TimmVitConfig;
use crate::error::NnError;

/// OpenAI CLIP's per-channel mean, open_clip's default `preprocess_cfg.mean`.
pub const OPENAI_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI CLIP's per-channel std, open_clip's default `preprocess_cfg.std`.
pub const OPENAI_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// The image tower of an open_clip `CustomTextCLIP` with a timm trunk
/// (`vision_cfg`): `timm_pool` "" (the trunk's class token) and
/// `timm_proj` "linear".
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenClipVisionConfig {
    /// `timm_model_name` (`vit_base_patch16_224`).
    pub timm_model_name: String,
    /// What timm builds for that name. open_clip builds the trunk at timm's
    /// own input size whatever `image_size` says, so `pos_embed` has this
    /// shape's grid in the checkpoint.
    pub trunk: TimmVitConfig,
    /// `image_size` as `[height, width]`: the size preprocessing produces and
    /// the tower takes. When it is not the trunk's, the trunk resamples
    /// `pos_embed` to it, as open_clip's `force_image_size` does.
    pub image_size: [i64; 2],
    /// `timm_proj_bias`: whether `head.proj` has a bias (false).
    pub proj_bias: bool,
    /// `timm_drop`: dropout before `head.proj` in training (0).
    pub head_drop: f64,
}

/// The Hugging Face text tower of an open_clip `CustomTextCLIP`
/// (`text_cfg`): `hf_pooler_type` "cls_last_hidden_state_pooler" and
/// `hf_proj_type` "mlp". Its BERT shape is an
/// [`super::HfBertConfig`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenClipTextConfig {
    /// `hf_model_name`: where open_clip reads the BERT's config
    /// (`microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract`).
    pub hf_model_name: String,
    /// `hf_tokenizer_name`, when given.
    pub hf_tokenizer_name: Option<String>,
    /// `context_length`: tokens per text (256). open_clip's tokenizer pads or
    /// cuts to it; the tower itself takes up to the BERT's positions.
    pub context_length: i64,
}

/// `preprocess_cfg`: how images are prepared.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenClipPreprocess {
    /// Per-channel mean (OpenAI CLIP's by default).
    pub mean: [f64; 3],
    /// Per-channel std (OpenAI CLIP's by default).
    pub std: [f64; 3],
    /// `interpolation` ("bicubic").
    pub interpolation: String,
    /// `resize_mode` ("shortest").
    pub resize_mode: String,
}

impl Default for OpenClipPreprocess {
    fn default() -> Self {
        Self {
            mean: OPENAI_MEAN,
            std: OPENAI_STD,
            interpolation: "bicubic".to_owned(),
            resize_mode: "shortest".to_owned(),
        }
    }
}

/// An open_clip `CustomTextCLIP` with a timm ViT image tower and a Hugging
/// Face BERT text tower, as its `open_clip_config.json` describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenClipConfig {
    /// Joint embedding size (512).
    pub embed_dim: i64,
    /// The image tower.
    pub vision: OpenClipVisionConfig,
    /// The text tower (its BERT shape apart, see [`super::HfBertConfig`]).
    pub text: OpenClipTextConfig,
    /// Image preprocessing.
    pub preprocess: OpenClipPreprocess,
}

/// BiomedCLIP's text tower name in its released config.
const BIOMEDBERT: &str = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract";

/// BiomedCLIP (microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224) as
/// its released `open_clip_config.json` describes it; its BERT is
/// [`super::HfBertConfig::biomedbert`].
pub fn biomedclip() -> OpenClipConfig {
    OpenClipConfig {
        embed_dim: 512,
        vision: OpenClipVisionConfig {
            timm_model_name: "vit_base_patch16_224".to_owned(),
            trunk: TimmVitConfig::vit_base_patch16_224(),
            image_size: [224, 224],
            proj_bias: false,
            head_drop: 0.0,
        },
        text: OpenClipTextConfig {
            hf_model_name: BIOMEDBERT.to_owned(),
            hf_tokenizer_name: Some(BIOMEDBERT.to_owned()),
            context_length: 256,
        },
        preprocess: OpenClipPreprocess::default(),
    }
}

/// The fields of one JSON object, read with open_clip's defaults; errors
/// name the file and the field's path.
pub(super) struct Fields<'a> {
    file: &'a Path,
    at: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(v: &'a Value, file: &'a Path, at: &'static str) -> Result<Self, NnError> {
        let map = v.as_object().ok_or_else(|| NnError::ModelConfig {
            file: file.to_owned(),
            problem: match at {
                "" => "is not a JSON object".to_owned(),
                _ => format!("\"{at}\" is not a JSON object"),
            },
        })?;
        Ok(Self { file, at, map })
    }

    fn child(&self, key: &'static str) -> Result<Option<Fields<'a>>, NnError> {
        self.map
            .get(key)
            .map(|v| Fields::new(v, self.file, key))
            .transpose()
    }

    pub(super) fn name(&self, key: &str) -> String {
        match self.at {
            "" => format!("\"{key}\""),
            at => format!("\"{at}.{key}\""),
        }
    }

    pub(super) fn err(&self, problem: String) -> NnError {
        NnError::ModelConfig {
            file: self.file.to_owned(),
            problem,
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// A string, open_clip's `default` when absent.
    pub(super) fn str_or(&self, key: &str, default: &str) -> Result<String, NnError> {
        match self.get(key) {
            None => Ok(default.to_owned()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.err(format!("{} is {v}, not a string", self.name(key)))),
        }
    }

    pub(super) fn int_or(&self, key: &str, default: i64) -> Result<i64, NnError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_i64().filter(|&n| n > 0).ok_or_else(|| {
                self.err(format!("{} is {v}, not a positive integer", self.name(key)))
            }),
        }
    }

    pub(super) fn f64_or(&self, key: &str, default: f64) -> Result<f64, NnError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(format!("{} is {v}, not a number", self.name(key)))),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool, NnError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(format!("{} is {v}, not true or false", self.name(key)))),
        }
    }

    fn triple_or(&self, key: &str, default: [f64; 3]) -> Result<[f64; 3], NnError> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        let values: Option<Vec<f64>> = v
            .as_array()
            .map(|a| a.iter().map(Value::as_f64).collect())
            .unwrap_or(None);
        values
            .and_then(|x| <[f64; 3]>::try_from(x).ok())
            .ok_or_else(|| self.err(format!("{} is {v}, not three numbers", self.name(key))))
    }

    /// Refuses a string field whose value (or open_clip's default) is not
    /// one of `accepted`; `builds` says what cxrlearn builds instead.
    pub(super) fn only(
        &self,
        key: &str,
        default: &str,
        accepted: &[&str],
        builds: &str,
    ) -> Result<(), NnError> {
        let value = self.str_or(key, default)?;
        if accepted.contains(&value.as_str()) {
            return Ok(());
        }
        let given = match self.get(key) {
            None => format!("is \"{value}\" (open_clip's default)"),
            Some(_) => format!("is \"{value}\""),
        };
        Err(self.err(format!(
            "{} {given}; cxrlearn builds {builds}",
            self.name(key)
        )))
    }
}

impl OpenClipConfig {
    /// Reads an `open_clip_config.json` (`{"model_cfg": ..., "preprocess_cfg": ...}`,
    /// or a bare model config as in open_clip's `model_configs/`).
    ///
    /// # Errors
    /// [`NnError::ModelConfig`] naming the field and value when the file
    /// describes what cxrlearn does not build: an image tower that is not a
    /// timm ViT of [`TimmVitConfig::KNOWN`], a timm pool other than the class
    /// token or a projection other than linear, stochastic depth or patch
    /// dropout, a text tower that is not a Hugging Face model, a pooler other
    /// than `cls_last_hidden_state_pooler`, a projection other than `mlp`, a
    /// CoCa decoder or a SigLIP logit bias; or when a field is malformed.
    pub fn from_json(v: &Value, file: &Path) -> Result<Self, NnError> {
        let root = Fields::new(v, file, "")?;
        // Messages name model fields as `vision_cfg.timm_pool`, without the
        // `model_cfg.` every one of them would share.
        let model = match root.get("model_cfg") {
            Some(m) if !m.is_object() => {
                return Err(root.err(format!("{} is not a JSON object", root.name("model_cfg"))));
            }
            Some(m) => Fields::new(m, file, "")?,
            None => Fields::new(v, file, "")?,
        };
        if model.get("multimodal_cfg").is_some() {
            return Err(model.err(format!(
                "has {}: a CoCa model; cxrlearn builds open_clip's CustomTextCLIP",
                model.name("multimodal_cfg")
            )));
        }
        if let Some(b) = model.get("init_logit_bias").filter(|b| !b.is_null()) {
            return Err(model.err(format!(
                "{} is {b}: a SigLIP logit bias; cxrlearn builds CLIP's logit scale only",
                model.name("init_logit_bias")
            )));
        }
        let embed_dim = match model.get("embed_dim") {
            None => return Err(model.err(format!("has no {}", model.name("embed_dim")))),
            Some(_) => model.int_or("embed_dim", 0)?,
        };
        let vision = model
            .child("vision_cfg")?
            .ok_or_else(|| model.err(format!("has no {}", model.name("vision_cfg"))))?;
        let text = model
            .child("text_cfg")?
            .ok_or_else(|| model.err(format!("has no {}", model.name("text_cfg"))))?;
        let preprocess = match root.child("preprocess_cfg")? {
            None => OpenClipPreprocess::default(),
            Some(p) => OpenClipPreprocess {
                mean: p.triple_or("mean", OPENAI_MEAN)?,
                std: p.triple_or("std", OPENAI_STD)?,
                interpolation: p.str_or("interpolation", "bicubic")?,
                resize_mode: p.str_or("resize_mode", "shortest")?,
            },
        };
        Ok(Self {
            embed_dim,
            vision: vision_config(&vision)?,
            text: text_config(&text)?,
            preprocess,
        })
    }
}

fn vision_config(v: &Fields) -> Result<OpenClipVisionConfig, NnError> {
    let name = match v.get("timm_model_name") {
        None | Some(Value::Null) => {
            return Err(v.err(
                "names no \"vision_cfg.timm_model_name\": open_clip's own ViT or ResNet image \
                 tower; cxrlearn builds timm image towers"
                    .to_owned(),
            ));
        }
        Some(_) => v.str_or("timm_model_name", "")?,
    };
    let trunk = TimmVitConfig::timm(&name).ok_or_else(|| {
        v.err(format!(
            "{} is \"{name}\"; cxrlearn builds {}",
            v.name("timm_model_name"),
            TimmVitConfig::KNOWN.join(", ")
        ))
    })?;
    // timm_pool "" (or null) keeps the trunk's own pooling, the class token
    // for these ViTs; "token" asks for it by name.
    if v.get("timm_pool") != Some(&Value::Null) {
        v.only(
            "timm_pool",
            "avg",
            &["", "token"],
            "\"\" (the trunk's class token)",
        )?;
    }
    v.only("timm_proj", "linear", &["linear"], "\"linear\"")?;
    let head_drop = v.f64_or("timm_drop", 0.0)?;
    if !(0.0..1.0).contains(&head_drop) {
        return Err(v.err(format!(
            "{} is {head_drop}, not a dropout rate",
            v.name("timm_drop")
        )));
    }
    for key in ["timm_drop_path", "patch_dropout"] {
        let rate = v.f64_or(key, 0.0)?;
        if rate != 0.0 {
            return Err(v.err(format!(
                "{} is {rate}; cxrlearn builds timm towers without stochastic depth or patch dropout",
                v.name(key)
            )));
        }
    }
    let image_size = match v.get("image_size") {
        Some(Value::Array(a)) => {
            let hw: Option<Vec<i64>> = a.iter().map(|x| x.as_i64().filter(|&n| n > 0)).collect();
            hw.and_then(|x| <[i64; 2]>::try_from(x).ok())
                .ok_or_else(|| {
                    v.err(format!(
                        "{} is {}, not a size or [height, width]",
                        v.name("image_size"),
                        Value::Array(a.clone())
                    ))
                })?
        }
        _ => {
            let side = v.int_or("image_size", 224)?;
            [side, side]
        }
    };
    Ok(OpenClipVisionConfig {
        timm_model_name: name,
        trunk,
        image_size,
        proj_bias: v.bool_or("timm_proj_bias", false)?,
        head_drop,
    })
}

fn text_config(t: &Fields) -> Result<OpenClipTextConfig, NnError> {
    let hf_model_name = match t.get("hf_model_name") {
        None | Some(Value::Null) => {
            return Err(t.err(
                "names no \"text_cfg.hf_model_name\": open_clip's own text transformer; cxrlearn \
                 builds Hugging Face BERT text towers"
                    .to_owned(),
            ));
        }
        Some(_) => t.str_or("hf_model_name", "")?,
    };
    t.only(
        "hf_pooler_type",
        "mean_pooler",
        &["cls_last_hidden_state_pooler"],
        "\"cls_last_hidden_state_pooler\" (the [CLS] token's last state)",
    )?;
    t.only("hf_proj_type", "mlp", &["mlp"], "\"mlp\"")?;
    let hf_tokenizer_name = match t.get("hf_tokenizer_name") {
        None | Some(Value::Null) => None,
        Some(_) => Some(t.str_or("hf_tokenizer_name", "")?),
    };
    Ok(OpenClipTextConfig {
        hf_model_name,
        hf_tokenizer_name,
        context_length: t.int_or("context_length", 77)?,
    })
}
