//! CheXzero / CXR-RePaiR: OpenAI CLIP ViT-B/32 trained on MIMIC-CXR
//! image-report pairs.

use crate::arch::clip::ClipConfig;
use crate::backbone::Architecture;
use crate::entry::{KeyRule, ModelEntry, NOT_RECORDED, Normalization, Preprocessing, Weights};

fn map_key(name: &str) -> KeyRule {
    let name = name.strip_prefix("state_dict.").unwrap_or(name);
    if name.starts_with("visual.") {
        KeyRule::Keep(name.to_owned())
    } else {
        KeyRule::Ignore("text tower (the image tower gives the features)")
    }
}

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "chexzero",
        method: "CheXzero",
        description: "CheXzero / CXR-RePaiR CLIP ViT-B/32 (MIMIC-CXR images and reports)",
        architecture: Architecture::ClipVisual(ClipConfig::vit_b32()),
        checkpoint_file: "chexzero.pt",
        container: "plain state_dict of the whole OpenAI CLIP model (visual.* and text keys)",
        map_key,
        feature: "ln_post(class token) @ proj: the projected, unnormalised image embedding",
        preprocessing: Preprocessing {
            size: 224,
            channels: 3,
            // 101.48761 / 83.43944 on the 0-255 scale (MIMIC-CXR statistics).
            normalization: Normalization {
                mean: [0.397_990_6; 3],
                std: [0.327_213_5; 3],
            },
            resize: "bicubic resize to 224 (images stored at 320)",
            internal_resize: None,
            crop_from: None,
        },
        citation: "Tiu et al., Expert-level detection of pathologies from unannotated chest X-ray images via self-supervised learning, Nat. Biomed. Eng. 2022",
        licence: NOT_RECORDED,
        restricted: false,
        weights: Weights::File,
    }
}
