//! MedAug: MoCo v2 with patient-metadata positive pairs (ResNet-50).

use crate::registry::ModelEntry;

/// Registry entry.
pub fn entry() -> ModelEntry {
    super::moco_resnet50_entry(
        "medaug",
        "MedAug: MoCo v2 with patient-metadata positive pairs, ResNet-50 (MIMIC-CXR)",
        "medaug_mimic-cxr_resnet50.pth.tar (also medaug_chexpert_resnet50.pth.tar)",
        "Vu et al., MedAug: Contrastive learning leveraging patient metadata improves representations for chest X-ray interpretation, MLHC 2021",
    )
}
