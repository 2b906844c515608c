//! S2MTS2: self-supervised mean-teacher pretraining of a LeakyReLU
//! DenseNet-121 (CheXpert).

use crate::arch::densenet::{Activation, DenseNetConfig, modernise_key};
use crate::backbone::Architecture;
use crate::entry::{
    KeyRule, ModelEntry, NOT_RECORDED, Preprocessing, Weights, strip_any, torchvision_trunk,
};

fn map_key(name: &str) -> KeyRule {
    let Some(k) = strip_any(name, super::MOCO_QUERY) else {
        if name.contains("encoder_k.") || name.contains("queue") {
            return KeyRule::Ignore("MoCo key encoder or queue");
        }
        if name.starts_with("optimizer.") {
            return KeyRule::Ignore("optimizer state");
        }
        return torchvision_trunk(&modernise_key(name), "classifier");
    };
    torchvision_trunk(&modernise_key(k), "classifier")
}

/// Registry entry.
pub fn entry() -> ModelEntry {
    ModelEntry {
        name: "s2mts2",
        method: "S2MTS2",
        description: "S2MTS2 DenseNet-121 with LeakyReLU(0.1) (CheXpert)",
        architecture: Architecture::DenseNet(DenseNetConfig {
            activation: Activation::LeakyRelu(0.1),
            ..DenseNetConfig::densenet121(None)
        }),
        checkpoint_file: "s2mts2-chexpert.pth.tar",
        container: "MoCo-style dict with state_dict; keys (module.)encoder_q.*",
        map_key,
        feature: "LeakyReLU(0.1) of features.norm5, global-average-pooled (the square classifier and MLP head are left out)",
        preprocessing: Preprocessing::imagenet_224("resize 224"),
        citation: "Liu et al., Self-supervised Mean Teacher for Semi-supervised Chest X-ray Classification, MLMI 2021",
        licence: NOT_RECORDED,
        restricted: false,
        weights: Weights::File,
    }
}
