//! CheXagent's XraySigLIP image encoders (Stanford AIMI; SigLIP further
//! trained on chest X-ray image-text pairs, e.g. Hugging Face
//! StanfordAIMI/XraySigLIP__vit-l-16-siglip-384__webli). The entry's shape
//! is the ViT-L/16 at 384 px; a directory's `config.json` decides the size
//! (the CheXagent encoders come in several).

use crate::arch::siglip::SiglipConfig;
use crate::backbone::Architecture;
use crate::entry::{ModelEntry, NOT_RECORDED, Weights};
use crate::model_dir::DirFormat;

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "xraysiglip",
        method: "XraySigLIP",
        description: "CheXagent's XraySigLIP (SigLIP on chest X-rays; e.g. Hugging Face StanfordAIMI/XraySigLIP__vit-l-16-siglip-384__webli; size by config)",
        architecture: Architecture::SiglipVisual(SiglipConfig::large_patch16_384().vision),
        checkpoint_file: super::siglip::FILES,
        container: "safetensors as transformers' save_pretrained writes a SiglipModel",
        map_key: super::siglip::map_key,
        feature: super::siglip::FEATURE,
        preprocessing: super::siglip::preprocessing(384),
        citation: "Chen et al., CheXagent: Towards a Foundation Model for Chest X-Ray Interpretation, arXiv:2401.12208, 2024",
        licence: NOT_RECORDED,
        restricted: false,
        weights: Weights::Dir(DirFormat::HuggingFace),
    }
}
