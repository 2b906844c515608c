//! RAD-DINO (Microsoft): DINOv2 ViT-B/14 trained on chest X-rays
//! (Hugging Face microsoft/rad-dino). Same architecture and checkpoint
//! names as DINOv2 ([`super::dinov2`]); its own input size and statistics.

use crate::arch::dinov2::Dinov2Config;
use crate::arch::pooling::Pooling;
use crate::backbone::Architecture;
use crate::entry::{ModelEntry, Normalization, Preprocessing, Weights};
use crate::model_dir::DirFormat;

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "rad-dino",
        method: "RAD-DINO",
        description: "RAD-DINO ViT-B/14 (DINOv2 on chest X-rays; Hugging Face microsoft/rad-dino)",
        architecture: Architecture::Dinov2 {
            config: Dinov2Config::rad_dino(),
            pooling: Pooling::Cls,
        },
        checkpoint_file: super::dinov2::FILES,
        container: "safetensors as transformers' save_pretrained writes them",
        map_key: super::dinov2::map_key,
        feature: super::dinov2::FEATURE,
        // Its published preprocessor_config.json: shortest edge 518, centre
        // crop 518, one statistic for the grey channel replicated three
        // times. A directory's own preprocessor_config.json takes precedence.
        preprocessing: Preprocessing {
            size: 518,
            channels: 3,
            normalization: Normalization {
                mean: [0.5307; 3],
                std: [0.2583; 3],
            },
            resize: "shortest edge 518, centre crop 518 (BitImageProcessor)",
            internal_resize: None,
            crop_from: None,
        },
        citation: "Pérez-García et al., Exploring scalable medical image encoders beyond text supervision, Nat. Mach. Intell. 2025",
        licence: "Microsoft Research License Agreement (MSRLA): research use only, as its model card states",
        restricted: true,
        weights: Weights::Dir(DirFormat::HuggingFace),
    }
}
