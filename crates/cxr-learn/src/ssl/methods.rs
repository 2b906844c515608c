//! The method registry: which objective a `--method` name builds, with its
//! settings or their defaults for the input size.

use cxr_data::labels::Split;
use cxr_data::store::read::Store;
use cxr_nn::spec::ModelSpec;
use tch::Device;

use super::clip::{ClipObjective, ClipSettings};
use super::convirt::{Convirt, ConvirtSettings};
use super::gloria::{Gloria, GloriaSettings};
use super::moco::Moco;
use super::refers::{RefersObjective, RefersSettings};
use super::s2mts2::S2mts2;
use super::{Objective, PretrainConfig};

/// The objective `config.method` names, built from `config.seed`.
///
/// # Errors
/// An unknown method, or the objective's own refusal (a backbone it cannot
/// train, a store without reports, a tokenizer failure).
pub fn build(
    c: &PretrainConfig,
    spec: &ModelSpec,
    store: &Store,
    device: Device,
) -> Result<Box<dyn Objective>, String> {
    let size = spec.preprocessing.size;
    // The image-text objectives read their training rows' reports.
    let train = || store.split_indices(Split::Train);
    Ok(match c.method.as_str() {
        "s2mts2" => Box::new(S2mts2::new(
            spec.clone(),
            c.moco.clone(),
            c.s2mts2.clone().unwrap_or_default(),
            device,
            c.seed,
        )?),
        "moco-cxr" | "medaug" => Box::new(Moco::new(spec.clone(), c.moco.clone(), device, c.seed)),
        "clip" => Box::new(ClipObjective::new(
            store,
            &train(),
            spec.preprocessing,
            &c.clip
                .clone()
                .unwrap_or_else(|| ClipSettings::for_size(size)),
            device,
            c.seed,
        )?),
        "refers" => Box::new(RefersObjective::new(
            store,
            &train(),
            spec,
            &c.refers
                .clone()
                .unwrap_or_else(|| RefersSettings::for_width(spec.feature_dim())),
            device,
            c.seed,
        )?),
        "convirt" => Box::new(Convirt::new(
            store,
            &train(),
            spec,
            &c.convirt
                .clone()
                .unwrap_or_else(|| ConvirtSettings::for_size(size)),
            device,
            c.seed,
        )?),
        "gloria" => Box::new(Gloria::new(
            store,
            &train(),
            spec,
            &c.gloria
                .clone()
                .unwrap_or_else(|| GloriaSettings::for_size(size)),
            device,
            c.seed,
        )?),
        other => return Err(format!("unknown pretraining method '{other}'")),
    })
}
