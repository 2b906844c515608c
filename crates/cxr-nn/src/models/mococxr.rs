//! MoCo-CXR: MoCo v2 pretraining on CheXpert, with ResNet-50 or ResNet-18
//! encoders (the original's `arch`).

use crate::arch::resnet::ResNetConfig;
use crate::entry::ModelEntry;

const CITATION: &str = "Sowrirajan et al., MoCo-CXR: MoCo Pretraining Improves Representation and Transferability of Chest X-ray Models, MIDL 2021";

/// Registry entry, ResNet-50 encoder.
pub fn entry_resnet50() -> ModelEntry {
    super::moco_resnet_entry(
        "mococxr",
        "MoCo-CXR",
        "MoCo-CXR: MoCo v2 pretraining on CheXpert, ResNet-50",
        ResNetConfig::resnet50(None),
        "moco-cxr_resnet50.pth.tar",
        CITATION,
    )
}

/// Registry entry, ResNet-18 encoder.
pub fn entry_resnet18() -> ModelEntry {
    super::moco_resnet_entry(
        "mococxr-resnet18",
        "MoCo-CXR",
        "MoCo-CXR: MoCo v2 pretraining on CheXpert, ResNet-18",
        ResNetConfig::resnet18(None),
        "moco-cxr_resnet18.pth.tar",
        CITATION,
    )
}
