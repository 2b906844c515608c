//! MedAug: MoCo v2 with patient-metadata positive pairs, with ResNet-50 or
//! ResNet-18 encoders (the original's `arch`).

use crate::arch::resnet::ResNetConfig;
use crate::entry::ModelEntry;

const CITATION: &str = "Vu et al., MedAug: Contrastive learning leveraging patient metadata improves representations for chest X-ray interpretation, MLHC 2021";

/// Registry entry, ResNet-50 encoder.
pub fn entry_resnet50() -> ModelEntry {
    super::moco_resnet_entry(
        "medaug",
        "MedAug",
        "MedAug: MoCo v2 with patient-metadata positive pairs, ResNet-50 (MIMIC-CXR)",
        ResNetConfig::resnet50(None),
        "medaug_mimic-cxr_resnet50.pth.tar (also medaug_chexpert_resnet50.pth.tar)",
        CITATION,
    )
}

/// Registry entry, ResNet-18 encoder.
pub fn entry_resnet18() -> ModelEntry {
    super::moco_resnet_entry(
        "medaug-resnet18",
        "MedAug",
        "MedAug: MoCo v2 with patient-metadata positive pairs, ResNet-18 (MIMIC-CXR)",
        ResNetConfig::resnet18(None),
        "medaug_mimic-cxr_resnet18.pth.tar (also medaug_chexpert_resnet18.pth.tar)",
        CITATION,
    )
}
