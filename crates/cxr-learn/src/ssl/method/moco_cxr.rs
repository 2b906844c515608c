//! MoCo-CXR (Sowrirajan et al., 2021): MoCo v2 on two augmented views of
//! each image ([`crate::ssl::moco`]).

use super::resolve::scratch_model;
use super::{BACKBONE, Defaults, ENGINE, Method, PositiveRule, VIEWS};
use crate::ssl::Positive;
use crate::ssl::moco::Moco;

/// The flags of the momentum-contrast methods (the engine and the views).
pub(super) const MOCO_READS: &[&[&str]] = &[BACKBONE, ENGINE, VIEWS];

/// The phantom-scale recipe of the momentum-contrast methods: the
/// GroupNorm tiny ResNet (batch-norm statistics would let the objective find
/// its positives without learning anything), a short queue and a faster key
/// encoder for a few hundred steps, and SimCLR-style views (64 px phantom
/// images are too easy to match without crops, jitter and blur).
pub(super) const MOCO_RECIPE: &[(&str, &str)] = &[
    ("backbone", "resnet18-w16-gn"),
    ("batch-size", "32"),
    ("lr", "1e-3"),
    ("queue", "1024"),
    ("key-momentum", "0.99"),
    ("crop-scale", "0.3,1"),
    ("brightness", "0.4"),
    ("contrast", "0.4"),
    ("blur-p", "0.5"),
];

/// A method without flags of its own.
pub(super) fn no_flags(c: clap::Command) -> clap::Command {
    c
}

/// The momentum-contrast objective (MoCo-CXR and MedAug differ only in
/// their positives, which the loop draws).
pub(super) fn build_moco(
    c: &crate::ssl::PretrainConfig,
    spec: &cxr_nn::spec::ModelSpec,
    _store: &cxr_data::store::read::Store,
    device: tch::Device,
) -> crate::Result<Box<dyn crate::ssl::Objective>> {
    Ok(Box::new(Moco::new(
        spec.clone(),
        c.moco.clone(),
        device,
        c.seed,
    )))
}

/// MoCo-CXR.
pub(super) static METHOD: Method = Method {
    name: "moco-cxr",
    title: "MoCo-CXR",
    about: "two views of an image, MoCo v2 (EMA key encoder, queue, MLP head)",
    image_text: false,
    queue: true,
    reads: MOCO_READS,
    own_flags: no_flags,
    defaults: Defaults::IMAGE,
    positive: PositiveRule {
        default: Positive::SameImage,
        accepts: &[Positive::SameImage],
        refusal: "--positive {} is MedAug's; use --method medaug",
    },
    recipe: &[MOCO_RECIPE],
    model: scratch_model,
    configure: |_, _, _| Ok(()),
    build: build_moco,
};
