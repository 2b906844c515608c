//! MoCo-CXR: MoCo v2 query encoder (ResNet-50).

use crate::arch::resnet::ResNetConfig;
use crate::backbone::Architecture;
use crate::registry::{ModelEntry, Normalization, Preprocessing};

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "mococxr",
        description: "MoCo-CXR: MoCo v2 pretraining on CheXpert, ResNet-50",
        architecture: Architecture::ResNet(ResNetConfig::resnet50(None)),
        checkpoint_file: "moco-cxr_resnet50.pth.tar",
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
        citation: "Sowrirajan et al., MoCo-CXR: MoCo Pretraining Improves Representation and Transferability of Chest X-ray Models, MIDL 2021",
    }
}
