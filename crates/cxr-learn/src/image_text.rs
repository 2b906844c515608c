//! What a zero-shot model name means, resolved by the library so every front
//! end (the CLI's `zero-shot`, the Python package) gets the same forms and
//! errors:
//!
//! - a registry image-text entry with `checkpoint`: CheXzero (the whole
//!   OpenAI CLIP state dict), or an entry released as a directory whose
//!   configuration is an image-text model (biomedclip, medsiglip-448,
//!   xraysiglip);
//! - `hf:DIR` (a Hugging Face `siglip` directory) or `open_clip:DIR`;
//! - a CLIP safetensors file with the sidecar `ClipModel::save` writes.
//!
//! The tokenizer is the one given, else the one the model ships or names,
//! and is checked against the text tower before any image is scored.

use std::path::{Path, PathBuf};

use cxr_nn::backbone::Architecture;
use cxr_nn::checkpoint;
use cxr_nn::entry::{ModelEntry, Weights};
use cxr_nn::image_text::{ClipModel, ImageTextModel};
use cxr_nn::model_dir::{DirFormat, ModelDir};
use cxr_nn::registry;
use cxr_nn::text::TextTokenizer;
use tch::Device;

use crate::error::Error;

/// An image-text model ready to score, and the tokenizer it ships or names.
pub struct Loaded {
    /// Both towers on their device.
    pub model: Box<dyn ImageTextModel>,
    /// The tokenizer file the model's directory ships or its sidecar names.
    pub tokenizer: Option<PathBuf>,
    /// What the model is, for the run's configuration (a registry name,
    /// `clip`, `hf`, `open_clip`).
    pub kind: String,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("tokenizer", &self.tokenizer)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Registry entries that are image-text models: CLIP image towers (released
/// whole) and the directory releases whose configuration has a text tower.
fn is_image_text(entry: &ModelEntry) -> bool {
    matches!(
        entry.architecture,
        Architecture::ClipVisual(_)
            | Architecture::SiglipVisual(_)
            | Architecture::OpenClipVisual { .. }
    )
}

fn not_image_text(model: &str) -> Error {
    Error::NotImageText {
        model: model.to_owned(),
        known: registry::all()
            .into_iter()
            .filter(is_image_text)
            .map(|e| e.name)
            .collect(),
    }
}

fn network(e: cxr_nn::NnError) -> Error {
    Error::Network(Box::new(e))
}

/// A publisher's directory as a whole image-text model, with the
/// preprocessing its registry entry or its own files give.
fn from_dir(
    path: &Path,
    format: DirFormat,
    entry: Option<&ModelEntry>,
    device: Device,
) -> Result<Loaded, Error> {
    let dir = ModelDir::open(path, format).map_err(network)?;
    let spec = cxr_nn::hf_config::image_spec(&dir, entry).map_err(network)?;
    let (model, tokenizer) =
        cxr_nn::image_text::from_dir(&dir, spec.preprocessing, device).map_err(network)?;
    Ok(Loaded {
        model,
        tokenizer,
        kind: entry.map_or(format.prefix(), |e| e.name).to_owned(),
    })
}

/// A registry CLIP from `weights` (the whole released state dict).
fn clip_from_registry(entry: &ModelEntry, weights: &Path, device: Device) -> Result<Loaded, Error> {
    let ck = checkpoint::load(weights).map_err(Error::Checkpoint)?;
    let model = ClipModel::from_registry(entry, &ck.tensors, device)
        .ok_or_else(|| not_image_text(entry.name))?
        .map_err(|cause| Error::ImageTextWeights {
            file: weights.to_owned(),
            model: entry.name.to_owned(),
            cause: Box::new(cause),
        })?;
    Ok(Loaded {
        model: Box::new(model),
        tokenizer: None,
        kind: entry.name.to_owned(),
    })
}

/// Loads the image-text model `model` names (see the module's forms).
///
/// # Errors
/// A model that is not image-text (the image-text entries listed), missing
/// weights, a directory whose configuration has no text tower, or weights
/// that do not load strictly.
pub fn load(model: &str, checkpoint: Option<&Path>, device: Device) -> Result<Loaded, Error> {
    for format in [DirFormat::HuggingFace, DirFormat::OpenClip] {
        if let Some(d) = model
            .strip_prefix(format.prefix())
            .and_then(|r| r.strip_prefix(':'))
        {
            if checkpoint.is_some() {
                return Err(Error::CheckpointWithFile { file: d.into() });
            }
            return from_dir(Path::new(d), format, None, device);
        }
    }
    if let Ok(entry) = registry::find(model) {
        if !is_image_text(&entry) {
            return Err(not_image_text(entry.name));
        }
        let weights = checkpoint.ok_or_else(|| Error::NeedsCheckpoint {
            model: entry.name.to_owned(),
            file: entry.checkpoint_file.to_owned(),
        })?;
        return match entry.weights {
            Weights::Dir(format) => from_dir(weights, format, Some(&entry), device),
            Weights::File => clip_from_registry(&entry, weights, device),
        };
    }
    let file = Path::new(model);
    if !file.exists() {
        return Err(Error::UnknownModel {
            model: model.to_owned(),
            reason: Box::new(registry::find(model).unwrap_err()),
        });
    }
    if checkpoint.is_some() {
        return Err(Error::CheckpointWithFile { file: file.into() });
    }
    if ClipModel::is_saved_clip(file) {
        let (model, tokenizer) = ClipModel::load(file, device).map_err(network)?;
        return Ok(Loaded {
            model: Box::new(model),
            tokenizer,
            kind: "clip".to_owned(),
        });
    }
    // An imported release: its sidecar names the registry entry.
    let sidecar = file.with_extension("json");
    let name = std::fs::read_to_string(&sidecar)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["model"].as_str().map(str::to_owned))
        .ok_or_else(|| not_image_text(model))?;
    let entry = registry::find(&name).map_err(|_| not_image_text(&name))?;
    if !matches!(entry.architecture, Architecture::ClipVisual(_)) {
        // An imported directory release holds the image tower only.
        return Err(not_image_text(model));
    }
    clip_from_registry(&entry, file, device)
}

/// The tokenizer to use: `given`, else the one the model ships or names;
/// checked against the text tower.
///
/// # Errors
/// No tokenizer anywhere (with what the model needs), an unreadable file, or
/// one that cannot feed this text tower.
pub fn tokenizer(loaded: &Loaded, given: Option<&Path>) -> Result<(TextTokenizer, PathBuf), Error> {
    let path = given
        .map(Path::to_owned)
        .or_else(|| loaded.tokenizer.clone())
        .ok_or_else(|| Error::NeedsTokenizer {
            model: loaded.kind.clone(),
        })?;
    let tokenizer = TextTokenizer::open(&path).map_err(|cause| Error::TokenizerFile {
        path: path.clone(),
        cause: Box::new(cause),
    })?;
    loaded
        .model
        .check_tokenizer(&tokenizer)
        .map_err(|problem| Error::TokenizerMismatch {
            path: path.clone(),
            problem,
        })?;
    Ok((tokenizer, path))
}
