//! MedSigLIP (Google; SigLIP-400M adapted to medical images, chest X-rays
//! among them; Hugging Face google/medsiglip-448).

use crate::arch::siglip::SiglipConfig;
use crate::backbone::Architecture;
use crate::entry::{ModelEntry, Weights};
use crate::model_dir::DirFormat;

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "medsiglip-448",
        method: "MedSigLIP",
        description: "MedSigLIP so400m/14 at 448 px (medical images and text; Hugging Face google/medsiglip-448)",
        architecture: Architecture::SiglipVisual(SiglipConfig::medsiglip_448().vision),
        checkpoint_file: super::siglip::FILES,
        container: "safetensors as transformers' save_pretrained writes a SiglipModel",
        map_key: super::siglip::map_key,
        feature: super::siglip::FEATURE,
        preprocessing: super::siglip::preprocessing(448),
        citation: "Sellergren et al., MedGemma Technical Report, arXiv:2507.05201, 2025",
        licence: "Health AI Developer Foundations Terms of Use, as its model card states (accepted on download)",
        restricted: true,
        weights: Weights::Dir(DirFormat::HuggingFace),
    }
}
