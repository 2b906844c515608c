//! MoCo-CXR: MoCo v2 pretraining on CheXpert (ResNet-50).

use crate::registry::ModelEntry;

/// Registry entry.
pub fn entry() -> ModelEntry {
    super::moco_resnet50_entry(
        "mococxr",
        "MoCo-CXR: MoCo v2 pretraining on CheXpert, ResNet-50",
        "moco-cxr_resnet50.pth.tar",
        "Sowrirajan et al., MoCo-CXR: MoCo Pretraining Improves Representation and Transferability of Chest X-ray Models, MIDL 2021",
    )
}
