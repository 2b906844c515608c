//! One file per registered model: its architecture, key mapping and
//! preprocessing, next to each other.

pub mod biomedclip;
pub mod chexzero;
pub mod convirt;
pub mod dinov2;
pub mod gloria;
pub mod medaug;
pub mod medsiglip;
pub mod mococxr;
pub mod rad_dino;
pub mod refers;
pub mod resnet_imagenet;
pub mod s2mts2;
pub mod siglip;
pub mod xraysiglip;

use crate::arch::resnet::ResNetConfig;
use crate::backbone::Architecture;
use crate::entry::{
    KeyRule, ModelEntry, NOT_RECORDED, Normalization, Preprocessing, Weights, strip_any,
    torchvision_trunk,
};

/// Where MoCo-style trainers put the query encoder, with and without the
/// DDP `module.` wrapper and the `state_dict` level.
pub(crate) const MOCO_QUERY: &[&str] = &[
    "state_dict.module.encoder_q.",
    "state_dict.encoder_q.",
    "module.encoder_q.",
    "encoder_q.",
];

/// MoCo dicts (MoCo-CXR, MedAug): the query encoder is the model; the key
/// encoder, queue, projection head and optimizer state are training-only.
pub(crate) fn moco_resnet_key(name: &str) -> KeyRule {
    if name.starts_with("optimizer.") {
        return KeyRule::Ignore("optimizer state");
    }
    let Some(k) = strip_any(name, MOCO_QUERY) else {
        if name.contains("encoder_k.") {
            return KeyRule::Ignore("MoCo key (momentum) encoder");
        }
        if name.contains("queue") {
            return KeyRule::Ignore("MoCo negative queue");
        }
        return torchvision_trunk(name, "fc.");
    };
    torchvision_trunk(k, "fc.")
}

/// A MoCo v2 release (ResNet-50 or ResNet-18, the original's `arch`) with the
/// CheXpert-era preprocessing the MoCo-CXR and MedAug repositories share
/// (`aihc_utils/image_transform.py`).
pub(crate) fn moco_resnet_entry(
    name: &'static str,
    method: &'static str,
    description: &'static str,
    config: ResNetConfig,
    checkpoint_file: &'static str,
    citation: &'static str,
) -> ModelEntry {
    ModelEntry {
        name,
        method,
        description,
        architecture: Architecture::ResNet(config),
        checkpoint_file,
        container: "MoCo dict {epoch, arch, state_dict, optimizer}; keys module.encoder_q.*, module.encoder_k.*, module.queue*",
        map_key: moco_resnet_key,
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
            crop_from: None,
        },
        citation,
        licence: NOT_RECORDED,
        restricted: false,
        weights: Weights::File,
    }
}
