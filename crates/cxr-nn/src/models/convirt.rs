//! ConVIRT: contrastive image-report pretraining of a ResNet-50.

use crate::arch::resnet::ResNetConfig;
use crate::backbone::Architecture;
use crate::entry::{
    KeyRule, ModelEntry, NOT_RECORDED, Preprocessing, Weights, strip_any, torchvision_trunk,
};

fn map_key(name: &str) -> KeyRule {
    let name = name.strip_prefix("state_dict.").unwrap_or(name);
    if let Some(k) = strip_any(name, &["image_encoder."]) {
        return torchvision_trunk(k, "fc.");
    }
    if strip_any(name, &["text_encoder.", "image_proj.", "text_proj."]).is_some() {
        return KeyRule::Ignore("ConVIRT text encoder or projection head");
    }
    torchvision_trunk(name, "fc.")
}

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "convirt",
        method: "ConVIRT",
        description: "ConVIRT ResNet-50 (MIMIC-CXR images and reports)",
        architecture: Architecture::ResNet(ResNetConfig::resnet50(None)),
        checkpoint_file: "convirt_chest_mimic.pt",
        container: "torchvision ResNet-50 state_dict without fc, or the trainer's {image_encoder, text_encoder, image_proj, text_proj} dict",
        map_key,
        feature: "global-average-pooled layer4",
        preprocessing: Preprocessing::imagenet_224("zero-pad to square, resize 224"),
        citation: "Zhang et al., Contrastive Learning of Medical Visual Representations from Paired Images and Text, MLHC 2022",
        licence: NOT_RECORDED,
        restricted: false,
        weights: Weights::File,
    }
}
