//! The image encoder a publisher's model directory describes: its
//! architecture from the configuration file, its preprocessing from the
//! directory's processor settings (else the registry's), and the key rules
//! that pick the image tower out of the checkpoint.
//!
//! Supported configurations: `model_type` `dinov2`,
//! `dinov2_with_registers`, `siglip` and `siglip_vision_model` of a Hugging
//! Face `config.json`; open_clip's
//! `open_clip_config.json` with a timm ViT image tower (BiomedCLIP's
//! layout). Anything else is refused, naming what the file says and what
//! cxrlearn builds.

use std::mem::discriminant;

use crate::arch::dinov2::Dinov2Config;
use crate::arch::open_clip::OpenClipConfig;
use crate::arch::pooling::Pooling;
use crate::arch::siglip::SiglipConfig;
use crate::backbone::Architecture;
use crate::entry::{KeyRule, ModelEntry, Preprocessing};
use crate::error::NnError;
use crate::model_dir::{DirFormat, ModelDir};
use crate::models;
use crate::spec::ModelSpec;

/// The `model_type`s of a Hugging Face `config.json` that cxrlearn builds.
pub const HF_MODEL_TYPES: &[&str] = &[
    "dinov2",
    "dinov2_with_registers",
    "siglip",
    "siglip_vision_model",
];

/// The image encoder of `dir`, with its default pooling and the
/// preprocessing its family uses when the directory does not say.
fn architecture(dir: &ModelDir) -> Result<(Architecture, Preprocessing), NnError> {
    let unsupported = |problem: String| NnError::ModelConfig {
        file: dir.config_file.clone(),
        problem,
    };
    match dir.format {
        DirFormat::HuggingFace => {
            let model_type = dir.config["model_type"].as_str().unwrap_or("");
            match model_type {
                "dinov2" | "dinov2_with_registers" => Ok((
                    Architecture::Dinov2 {
                        config: Dinov2Config::from_hf(&dir.config, &dir.config_file)?,
                        pooling: Pooling::Cls,
                    },
                    models::dinov2::default_preprocessing(),
                )),
                "siglip" | "siglip_vision_model" => {
                    let c = SiglipConfig::from_hf(&dir.config, &dir.config_file)?;
                    let size = c.vision.image_size;
                    Ok((
                        Architecture::SiglipVisual(c.vision),
                        models::siglip::preprocessing(size),
                    ))
                }
                "" => Err(unsupported(
                    "has no \"model_type\" (not a Hugging Face model configuration)".into(),
                )),
                other => Err(unsupported(format!(
                    "\"model_type\" is \"{other}\"; cxrlearn builds {}",
                    HF_MODEL_TYPES.join(", ")
                ))),
            }
        }
        DirFormat::OpenClip => {
            let c = OpenClipConfig::from_json(&dir.config, &dir.config_file)?;
            let [h, w] = c.vision.image_size;
            if h != w {
                return Err(unsupported(format!(
                    "\"image_size\" is {h}x{w}; cxrlearn feeds square images only"
                )));
            }
            let preprocessing = Preprocessing {
                size: h,
                ..models::biomedclip::entry().preprocessing
            };
            Ok((
                Architecture::OpenClipVisual {
                    vision: c.vision,
                    embed_dim: c.embed_dim,
                },
                preprocessing,
            ))
        }
    }
}

/// A lower bound of the parameters an architecture holds: the attention
/// projections of every block, the patch embedding and the position
/// embeddings (the MLPs and norms left out, so no released model is ever
/// under it). Saturating arithmetic: an absurd configuration gives a huge
/// bound, not an overflow.
pub fn min_parameters(architecture: &Architecture) -> u128 {
    let u = |x: i64| u128::try_from(x).unwrap_or(0);
    // Blocks of width h: four h x h projections each.
    let vit = |layers: u128, h: u128, channels: u128, patch: u128, positions: u128| {
        layers
            .saturating_mul(4)
            .saturating_mul(h.saturating_mul(h))
            .saturating_add(
                channels
                    .saturating_mul(patch.saturating_mul(patch))
                    .saturating_mul(h),
            )
            .saturating_add(positions.saturating_mul(h))
    };
    match architecture {
        Architecture::Dinov2 { config: c, .. } => vit(
            c.num_hidden_layers as u128,
            u(c.hidden_size),
            u(c.num_channels),
            u(c.patch_size),
            u(c.grid()).saturating_mul(u(c.grid())),
        ),
        Architecture::SiglipVisual(c) => vit(
            c.num_hidden_layers as u128,
            u(c.hidden_size),
            u(c.num_channels),
            u(c.patch_size),
            u(c.grid()).saturating_mul(u(c.grid())),
        ),
        Architecture::OpenClipVisual { vision, .. } => {
            let t = &vision.trunk;
            vit(
                t.depth as u128,
                u(t.embed_dim),
                3,
                u(t.patch_size),
                u(t.grid()).saturating_mul(u(t.grid())),
            )
        }
        _ => 0,
    }
}

/// A lower bound of a text tower's parameters, as [`min_parameters`] takes
/// one of an image tower: the token embedding and every block's four
/// attention projections.
pub fn min_text_parameters(vocab: i64, hidden: i64, layers: usize) -> u128 {
    let u = |x: i64| u128::try_from(x).unwrap_or(0);
    let h = u(hidden);
    u(vocab).saturating_mul(h).saturating_add(
        (layers as u128)
            .saturating_mul(4)
            .saturating_mul(h.saturating_mul(h)),
    )
}

/// Refuses a configuration that cannot match its weights by size alone
/// (more parameters than the weight files have bytes) before anything is
/// allocated: a hostile or mistaken `config.json` must fail with a line,
/// not exhaust memory building a network its weights could never fill.
///
/// # Errors
/// [`NnError::ModelConfig`] naming the configuration file and both sizes.
pub fn check_size(dir: &ModelDir, what: &str, min_parameters: u128) -> Result<(), NnError> {
    let bytes: u128 = dir
        .weights
        .iter()
        .filter_map(|w| std::fs::metadata(w).ok())
        .map(|m| u128::from(m.len()))
        .sum();
    // One byte per parameter is below any dtype a checkpoint uses.
    if min_parameters > bytes {
        return Err(NnError::ModelConfig {
            file: dir.config_file.clone(),
            problem: format!(
                "describes {what} of at least {min_parameters} parameters, but the weights hold {bytes} bytes: the configuration does not match its weights"
            ),
        });
    }
    Ok(())
}

/// The key rules of the family an architecture belongs to, for a directory
/// loaded without a registry entry (`hf:DIR`).
pub fn key_map(architecture: &Architecture) -> Option<fn(&str) -> KeyRule> {
    match architecture {
        Architecture::Dinov2 { .. } => Some(models::dinov2::map_key),
        Architecture::OpenClipVisual { .. } => Some(models::biomedclip::map_key),
        Architecture::SiglipVisual(_) => Some(models::siglip::map_key),
        _ => None,
    }
}

/// The spec of the image encoder in `dir`: under `entry` (whose family the
/// configuration must belong to, in any size) or on its own (`hf:DIR`,
/// `open_clip:DIR`).
///
/// # Errors
/// [`NnError::ModelConfig`] for a configuration cxrlearn does not build, or
/// one of another family than `entry`'s, naming the file.
pub fn image_spec(dir: &ModelDir, entry: Option<&ModelEntry>) -> Result<ModelSpec, NnError> {
    let (mut architecture, family_preprocessing) = architecture(dir)?;
    check_size(dir, "an image encoder", min_parameters(&architecture))?;
    if let Some(e) = entry {
        if discriminant(&architecture) != discriminant(&e.architecture) {
            return Err(NnError::ModelConfig {
                file: dir.config_file.clone(),
                problem: format!(
                    "describes a {}, not a {} ('{}' is a {})",
                    architecture.describe(),
                    e.method,
                    e.name,
                    e.architecture.describe()
                ),
            });
        }
        if let Some(p) = e.architecture.pooling() {
            architecture = architecture.with_pooling(p).unwrap_or(architecture);
        }
    }
    // The entry's statistics and resize; the input side from the
    // configuration where the tower is trained at its configured size
    // (SigLIP, open_clip). DINOv2's configured size is its position grid
    // (518), not its processor's crop (224), so its entry's size stands.
    let base = match entry {
        None => family_preprocessing,
        Some(e) if matches!(architecture, Architecture::Dinov2 { .. }) => e.preprocessing,
        Some(e) => Preprocessing {
            size: family_preprocessing.size,
            ..e.preprocessing
        },
    };
    let preprocessing = dir.preprocessing(base)?;
    Ok(ModelSpec {
        name: entry.map_or_else(
            || format!("{}:{}", dir.format.prefix(), dir.dir.display()),
            |e| e.name.to_owned(),
        ),
        architecture,
        preprocessing,
        entry: entry.cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn the_lower_bound_stays_below_every_released_size() {
        // Published parameter counts of the image towers.
        for (name, params) in [
            ("dinov2-small", 22_000_000u128),
            ("dinov2-base", 86_000_000),
            ("dinov2-large", 304_000_000),
            ("dinov2-giant", 1_100_000_000),
            ("rad-dino", 86_000_000),
            ("medsiglip-448", 400_000_000),
            ("xraysiglip", 303_000_000),
            ("biomedclip", 86_000_000),
        ] {
            let bound = min_parameters(&registry::find(name).unwrap().architecture);
            assert!(bound <= params, "{name}: {bound} > {params}");
            // The MLPs (two thirds of a block) are left out: within 4x.
            assert!(
                bound * 4 >= params,
                "{name}: {bound} is a loose bound of {params}"
            );
        }
    }
}
