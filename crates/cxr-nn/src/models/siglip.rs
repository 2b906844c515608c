//! What the SigLIP-family entries share ([`super::medsiglip`],
//! [`super::xraysiglip`], and `hf:DIR` SigLIP directories): the key rules
//! that pick the image tower out of a whole `SiglipModel`, the files, and the
//! preprocessing a directory without `preprocessor_config.json` gets.

use crate::entry::{KeyRule, Normalization, Preprocessing};

/// Checkpoint names onto the image tower's (`vision_model.*`): the text
/// tower, temperature and bias are the zero-shot half of the model. A
/// `SiglipVisionModel` saved by transformers 5 has no `vision_model.`
/// prefix (transformers 4 wrote one); both load.
pub(crate) fn map_key(name: &str) -> KeyRule {
    if name.starts_with("text_model.") {
        KeyRule::Ignore("text tower (the image tower gives the features)")
    } else if name == "logit_scale" || name == "logit_bias" {
        KeyRule::Ignore("sigmoid loss temperature and bias")
    } else if name.starts_with("vision_model.") {
        KeyRule::Keep(name.to_owned())
    } else {
        KeyRule::Keep(format!("vision_model.{name}"))
    }
}

/// The Hugging Face directory layout of every SigLIP entry.
pub(crate) const FILES: &str = "Hugging Face directory: config.json, model.safetensors (or a sharded index), preprocessor_config.json, tokenizer.json for zero-shot";

/// What the feature is.
pub(crate) const FEATURE: &str =
    "image embedding: the attention-pooling head's output (get_image_features, unnormalised)";

/// SigLIP's image processor: resize to the square input, rescale, mean and
/// std 0.5 (pixels to -1..1).
pub(crate) fn preprocessing(size: i64) -> Preprocessing {
    Preprocessing {
        size,
        channels: 3,
        normalization: Normalization {
            mean: [0.5; 3],
            std: [0.5; 3],
        },
        resize: "bicubic resize to the square input (SiglipImageProcessor)",
        internal_resize: None,
        crop_from: None,
    }
}
