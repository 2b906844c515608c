//! One file per registered model: its architecture, key mapping and
//! preprocessing, next to each other.

pub mod chexzero;
pub mod convirt;
pub mod gloria;
pub mod medaug;
pub mod mococxr;
pub mod refers;
pub mod resnet_imagenet;
pub mod s2mts2;

use crate::registry::{KeyRule, strip_any, torchvision_trunk};

/// MoCo dicts (MoCo-CXR, MedAug): the query encoder is the model; the key
/// encoder, queue, projection head and optimizer state are training-only.
pub(crate) fn moco_resnet_key(name: &str) -> KeyRule {
    if name.starts_with("optimizer.") {
        return KeyRule::Ignore("optimizer state");
    }
    let Some(k) = strip_any(
        name,
        &[
            "state_dict.module.encoder_q.",
            "state_dict.encoder_q.",
            "module.encoder_q.",
            "encoder_q.",
        ],
    ) else {
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
