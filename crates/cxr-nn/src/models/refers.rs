//! REFERS: cross-supervised ViT-B/16 pretraining from radiology reports.

use crate::arch::vit::VitConfig;
use crate::backbone::Architecture;
use crate::entry::{KeyRule, ModelEntry, NOT_RECORDED, Preprocessing, Weights};

fn map_key(name: &str) -> KeyRule {
    let name = name.strip_prefix("state_dict.").unwrap_or(name);
    if name.starts_with("transformer.") {
        KeyRule::Keep(name.to_owned())
    } else if name.starts_with("head.") {
        KeyRule::Ignore("classification head")
    } else {
        // REFERS' loader keeps only the ViT's own names; the rest is its
        // report-supervision branch.
        KeyRule::Ignore("not part of the ViT image encoder (report branch)")
    }
}

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "refers",
        method: "REFERS",
        description: "REFERS ViT-B/16 (MIMIC-CXR images, report supervision)",
        architecture: Architecture::Vit(VitConfig::vit_b16(None)),
        checkpoint_file: "refers_checkpoint.pth",
        container: "flat {name: tensor} dict in jeonsworld ViT-pytorch naming",
        map_key,
        feature: "class token after encoder_norm",
        preprocessing: Preprocessing::imagenet_224("resize 224, centre-crop 224"),
        citation: "Zhou et al., Generalized radiograph representation learning via cross-supervision between images and free-text radiology reports, Nat. Mach. Intell. 2022",
        licence: NOT_RECORDED,
        restricted: false,
        weights: Weights::File,
    }
}
