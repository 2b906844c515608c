//! MedAug: MoCo v2 query encoder (ResNet-50).

use crate::arch::resnet::ResNetConfig;
use crate::backbone::Architecture;
use crate::registry::{ModelEntry, Normalization, Preprocessing};

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "medaug",
        description: "MedAug: MoCo v2 with patient-metadata positive pairs, ResNet-50 (MIMIC-CXR)",
        architecture: Architecture::ResNet(ResNetConfig::resnet50(None)),
        checkpoint_file: "medaug_mimic-cxr_resnet50.pth.tar (also medaug_chexpert_resnet50.pth.tar)",
        container: "MoCo dict {epoch, arch, state_dict, optimizer}; keys module.encoder_q.*, module.encoder_k.*, module.queue*",
        map_key: super::moco_resnet_key,
        feature: "global-average-pooled layer4 of the query encoder",
        preprocessing: Preprocessing {
            size: 320,
            channels: 3,
            normalization: Normalization {
                mean: [0.5020; 3],
                std: [0.085_585; 3],
            },
            resize: "resize 320 keeping aspect, centre-crop 320",
            internal_resize: None,
        },
        citation: "Vu et al., MedAug: Contrastive learning leveraging patient metadata improves representations for chest X-ray interpretation, MLHC 2021",
    }
}
