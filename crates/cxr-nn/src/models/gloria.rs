//! GLoRIA: global-local image-report contrastive pretraining (CheXpert), with
//! ResNet-50 or ResNet-18 image encoders.

use crate::arch::resnet::ResNetConfig;
use crate::backbone::Architecture;
use crate::entry::{
    KeyRule, ModelEntry, NOT_RECORDED, Normalization, Preprocessing, Weights, torchvision_trunk,
};

fn map_key(name: &str) -> KeyRule {
    let Some(rest) = name.strip_prefix("state_dict.") else {
        return KeyRule::Ignore("Lightning training state (optimizer, callbacks)");
    };
    // The original keeps what follows the last "gloria." (the Lightning module prefix).
    let rest = rest.rsplit_once("gloria.").map_or(rest, |(_, r)| r);
    if let Some(k) = rest.strip_prefix("img_encoder.model.") {
        torchvision_trunk(k, "fc.")
    } else if rest.starts_with("img_encoder.") {
        KeyRule::Ignore("GLoRIA global/local embedders (not applied to the features)")
    } else if rest.starts_with("text_encoder.") {
        KeyRule::Ignore("text encoder (Bio_ClinicalBERT)")
    } else {
        KeyRule::Keep(rest.to_owned())
    }
}

fn entry(name: &'static str, config: ResNetConfig, file: &'static str) -> ModelEntry {
    ModelEntry {
        name,
        method: "GLoRIA",
        description: "GLoRIA image encoder (CheXpert images and reports)",
        architecture: Architecture::ResNet(config),
        checkpoint_file: file,
        container: "PyTorch Lightning .ckpt: state_dict with gloria.img_encoder.model.*, hyper_parameters (OmegaConf)",
        map_key,
        feature: "global-average-pooled layer4 of the 299 px input (embedders not applied)",
        preprocessing: Preprocessing {
            size: 224,
            channels: 3,
            normalization: Normalization {
                mean: [0.5; 3],
                std: [0.5; 3],
            },
            resize: "longest side 256 keeping aspect, zero-pad, centre-crop 224",
            internal_resize: Some(299),
            crop_from: None,
        },
        citation: "Huang et al., GLoRIA: A Multimodal Global-Local Representation Learning Framework, ICCV 2021",
        licence: NOT_RECORDED,
        restricted: false,
        weights: Weights::File,
    }
}

/// Registry entry, ResNet-50 encoder.
pub fn entry_resnet50() -> ModelEntry {
    entry(
        "gloria",
        ResNetConfig::resnet50(None),
        "gloria_chexpert_resnet50.ckpt",
    )
}

/// Registry entry, ResNet-18 encoder.
pub fn entry_resnet18() -> ModelEntry {
    entry(
        "gloria-resnet18",
        ResNetConfig::resnet18(None),
        "gloria_chexpert_resnet18.ckpt",
    )
}
