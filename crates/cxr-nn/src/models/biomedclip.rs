//! BiomedCLIP (Microsoft): CLIP on 15M PubMed Central figure-caption pairs,
//! a timm ViT-B/16 image tower and a BiomedBERT text tower (Hugging Face
//! microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224, an open_clip
//! directory). Features are the image tower's projected embedding, what
//! open_clip's `encode_image` returns; zero-shot uses both towers.

use crate::arch::open_clip::{OPENAI_MEAN, OPENAI_STD, biomedclip};
use crate::backbone::Architecture;
use crate::entry::{KeyRule, ModelEntry, Normalization, Preprocessing, Weights};
use crate::model_dir::DirFormat;

/// Checkpoint names onto the image tower's: the text tower and the
/// temperature are the zero-shot half of the model.
pub(crate) fn map_key(name: &str) -> KeyRule {
    let name = name.strip_prefix("state_dict.").unwrap_or(name);
    let name = name.strip_prefix("module.").unwrap_or(name);
    if name.starts_with("visual.") {
        KeyRule::Keep(name.to_owned())
    } else if name.starts_with("text.") {
        KeyRule::Ignore("text tower (the image tower gives the features)")
    } else if name == "logit_scale" || name == "logit_bias" {
        KeyRule::Ignore("contrastive temperature")
    } else {
        KeyRule::Keep(name.to_owned())
    }
}

/// Registry entry.
pub fn entry() -> ModelEntry {
    let config = biomedclip();
    ModelEntry {
        name: "biomedclip",
        method: "BiomedCLIP",
        description: "BiomedCLIP ViT-B/16 + BiomedBERT (PubMed figures; Hugging Face microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224)",
        architecture: Architecture::OpenClipVisual {
            vision: config.vision,
            embed_dim: config.embed_dim,
        },
        checkpoint_file: "open_clip directory: open_clip_config.json, open_clip_pytorch_model.bin (and vocab.txt for zero-shot)",
        container: "torch.save state dict of the whole open_clip model (visual.trunk.*, visual.head.proj, text.*, logit_scale)",
        map_key,
        feature: "image embedding: class token after the trunk's norm, through head.proj (encode_image, unnormalised)",
        preprocessing: Preprocessing {
            size: 224,
            channels: 3,
            normalization: Normalization {
                mean: OPENAI_MEAN,
                std: OPENAI_STD,
            },
            resize: "bicubic shortest edge 224, centre crop 224 (open_clip)",
            internal_resize: None,
            crop_from: None,
        },
        citation: "Zhang et al., A Multimodal Biomedical Foundation Model Trained from Fifteen Million Image-Text Pairs, NEJM AI 2025",
        licence: "MIT, as its model card states",
        restricted: false,
        weights: Weights::Dir(DirFormat::OpenClip),
    }
}
