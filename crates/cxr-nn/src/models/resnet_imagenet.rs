//! The ImageNet-supervised ResNet-50 baseline (torchvision weights).

use crate::arch::resnet::ResNetConfig;
use crate::backbone::Architecture;
use crate::entry::{KeyRule, ModelEntry, Preprocessing, Weights, torchvision_trunk};

fn map_key(name: &str) -> KeyRule {
    torchvision_trunk(name.strip_prefix("state_dict.").unwrap_or(name), "fc.")
}

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "resnet50-imagenet",
        method: "ImageNet supervised",
        description: "ImageNet-supervised ResNet-50, the paper's baseline",
        architecture: Architecture::ResNet(ResNetConfig::resnet50(None)),
        checkpoint_file: "resnet50-11ad3fa6.pth (torchvision IMAGENET1K_V2) or resnet50-0676ba61.pth (V1)",
        container: "plain torchvision state_dict",
        map_key,
        feature: "global-average-pooled layer4",
        preprocessing: Preprocessing::imagenet_224("resize 224"),
        citation: "He et al., Deep Residual Learning for Image Recognition, CVPR 2016",
        licence: "BSD-3-Clause (torchvision weights)",
        restricted: false,
        weights: Weights::File,
    }
}
