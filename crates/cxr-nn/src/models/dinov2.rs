//! DINOv2 (Meta; self-distillation on 142M curated natural images): the
//! generic ViT baseline that replaced ImageNet ResNet-50 in recent chest
//! X-ray comparisons. Released as Hugging Face directories
//! (facebook/dinov2-{small,base,large,giant}); `--checkpoint DIR` reads the
//! shape from its `config.json`, so any DINOv2 size loads under any of these
//! entries' names, and `hf:DIR` loads one without naming an entry.

use crate::arch::dinov2::Dinov2Config;
use crate::arch::pooling::Pooling;
use crate::backbone::Architecture;
use crate::entry::{KeyRule, ModelEntry, Preprocessing, Weights};
use crate::model_dir::DirFormat;

/// Checkpoint names onto `Dinov2Model`'s: a model saved from
/// `Dinov2ForImageClassification` nests the encoder under `dinov2.` and adds
/// a classifier.
pub(crate) fn map_key(name: &str) -> KeyRule {
    if name.starts_with("classifier.") {
        return KeyRule::Ignore("classification head (features are taken before it)");
    }
    KeyRule::Keep(name.strip_prefix("dinov2.").unwrap_or(name).to_owned())
}

/// What the feature is, for every DINOv2-style entry.
pub(crate) const FEATURE: &str = "class token after the final layernorm (pooler_output); --pooling mean: the mean patch token; cls+mean: both, DINOv2's linear evaluation";

/// The Hugging Face directory layout, for every DINOv2-style entry.
pub(crate) const FILES: &str = "Hugging Face directory: config.json, model.safetensors (or a sharded index), preprocessor_config.json";

const CITATION: &str =
    "Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024";

fn entry(name: &'static str, description: &'static str, config: Dinov2Config) -> ModelEntry {
    ModelEntry {
        name,
        method: "DINOv2",
        description,
        architecture: Architecture::Dinov2 {
            config,
            pooling: Pooling::Cls,
        },
        checkpoint_file: FILES,
        container: "safetensors as transformers' save_pretrained writes them",
        map_key,
        feature: FEATURE,
        // facebook/dinov2-*'s BitImageProcessor: bicubic shortest edge 256,
        // centre crop 224, ImageNet statistics.
        preprocessing: Preprocessing {
            crop_from: Some(256),
            ..Preprocessing::imagenet_224("shortest edge 256, centre crop 224 (BitImageProcessor)")
        },
        citation: CITATION,
        licence: "Apache-2.0",
        restricted: false,
        weights: Weights::Dir(DirFormat::HuggingFace),
    }
}

/// facebook/dinov2-small (ViT-S/14, 384 wide).
pub fn entry_small() -> ModelEntry {
    entry(
        "dinov2-small",
        "DINOv2 ViT-S/14 (natural images; Hugging Face facebook/dinov2-small)",
        Dinov2Config::small(),
    )
}

/// facebook/dinov2-base (ViT-B/14, 768 wide).
pub fn entry_base() -> ModelEntry {
    entry(
        "dinov2-base",
        "DINOv2 ViT-B/14 (natural images; Hugging Face facebook/dinov2-base)",
        Dinov2Config::base(),
    )
}

/// facebook/dinov2-large (ViT-L/14, 1024 wide).
pub fn entry_large() -> ModelEntry {
    entry(
        "dinov2-large",
        "DINOv2 ViT-L/14 (natural images; Hugging Face facebook/dinov2-large)",
        Dinov2Config::large(),
    )
}

/// facebook/dinov2-giant (ViT-g/14, 1536 wide, SwiGLU).
pub fn entry_giant() -> ModelEntry {
    entry(
        "dinov2-giant",
        "DINOv2 ViT-g/14 (natural images; Hugging Face facebook/dinov2-giant)",
        Dinov2Config::giant(),
    )
}

/// The default preprocessing of a DINOv2 directory without a
/// `preprocessor_config.json`: the base entry's.
pub(crate) fn default_preprocessing() -> Preprocessing {
    entry_base().preprocessing
}
