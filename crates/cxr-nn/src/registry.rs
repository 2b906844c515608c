//! The model registry: one entry per pretrained model, knowing its
//! architecture, the checkpoint it is released as, how that checkpoint's keys
//! map onto our names, which keys are deliberately left out, what its feature
//! is, how its inputs are preprocessed, and where it comes from.
//!
//! Each entry lives in its own file under `models/`; adding a model is one new
//! file and one line in [`all`], the only list of entries. The entry's types
//! are in [`crate::entry`] (re-exported here), which the model files import.

pub use crate::entry::{
    CLIP, IMAGENET, KeyRule, ModelEntry, Normalization, Preprocessing, strip_any, torchvision_trunk,
};
use crate::error::NnError;
use crate::models;

/// Every registered model, in display order.
pub fn all() -> Vec<ModelEntry> {
    vec![
        models::resnet_imagenet::entry(),
        models::chexzero::entry(),
        models::convirt::entry(),
        models::gloria::entry_resnet50(),
        models::gloria::entry_resnet18(),
        models::medaug::entry_resnet50(),
        models::medaug::entry_resnet18(),
        models::mococxr::entry_resnet50(),
        models::mococxr::entry_resnet18(),
        models::refers::entry(),
        models::s2mts2::entry(),
        models::rad_dino::entry(),
        models::dinov2::entry_small(),
        models::dinov2::entry_base(),
        models::dinov2::entry_large(),
        models::dinov2::entry_giant(),
        models::biomedclip::entry(),
        models::medsiglip::entry(),
        models::xraysiglip::entry(),
    ]
}

/// The names of [`all`], in display order.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|e| e.name).collect()
}

/// The entry called `name`.
///
/// # Errors
/// [`NnError::UnknownModel`], whose message lists the known names.
pub fn find(name: &str) -> Result<ModelEntry, NnError> {
    all()
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| NnError::UnknownModel {
            name: name.to_owned(),
            known: names(),
        })
}
