//! What a model name means: a registry release (its weights given apart, as
//! `checkpoint`), a bare architecture to train from scratch (`scratch:NAME`),
//! or a safetensors file this project wrote (an import, a pretraining
//! encoder, a finetuned model) with its JSON sidecar.
//!
//! The library resolves names, not each front end: every command that takes
//! `--model` (features, probe, finetune, pretrain) gets the same meaning and
//! the same errors from [`resolve`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cxr_nn::arch::pooling::Pooling;
use cxr_nn::checkpoint::{self, RawTensor};
use cxr_nn::encoder::Encoder;
use cxr_nn::entry::Weights;
use cxr_nn::model_dir::{DirFormat, ModelDir};
use cxr_nn::registry;
use cxr_nn::spec::ModelSpec;
use tch::Device;

use crate::error::{Error, Result};

/// A resolved model: what to build, and where its weights are (read by
/// [`Resolved::load`], so cheap checks can come first).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The architecture and its preprocessing.
    pub spec: ModelSpec,
    /// The weights file or directory, `None` for random weights.
    pub file: Option<PathBuf>,
    /// The publisher's directory, when the weights are one (`hf:DIR`,
    /// `open_clip:DIR`, or a directory given as `--checkpoint`).
    pub dir: Option<ModelDir>,
    /// Where the weights come from, for configs and messages.
    pub source: String,
    /// What a front end should tell the user: where a directory's own
    /// preprocessing differs from its registry entry's (the directory's is
    /// used).
    pub notes: Vec<String>,
}

impl Resolved {
    /// The backbone weights in the architecture's names (`None`: random).
    ///
    /// # Errors
    /// An unreadable weights file, or a release whose keys do not map.
    pub fn load(&self) -> Result<Option<BTreeMap<String, RawTensor>>, Error> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        if let Some(dir) = &self.dir {
            let tensors = dir.tensors().map_err(|e| Error::Network(Box::new(e)))?;
            let map_key = match &self.spec.entry {
                Some(entry) => Some(entry.map_key),
                None => cxr_nn::hf_config::key_map(&self.spec.architecture),
            };
            let Some(map_key) = map_key else {
                return Ok(Some(tensors));
            };
            let mapped =
                cxr_nn::import::map_with(map_key, &tensors).map_err(|cause| Error::Mapping {
                    file: file.clone(),
                    model: self.spec.name.clone(),
                    cause: Box::new(cause),
                })?;
            return Ok(Some(mapped.tensors));
        }
        let ck = checkpoint::load(file).map_err(Error::Checkpoint)?;
        match &self.spec.entry {
            // A released checkpoint: the registry's key mapping applies.
            Some(entry) if !is_ours(file) => {
                let mapped =
                    cxr_nn::import::map_keys(entry, &ck).map_err(|cause| Error::Mapping {
                        file: file.clone(),
                        model: entry.name.to_owned(),
                        cause: Box::new(cause),
                    })?;
                Ok(Some(mapped.tensors))
            }
            _ => Ok(Some(ck.tensors)),
        }
    }

    /// The SHA-256 of the weights (`None`: random weights): of the file, or
    /// for a publisher's directory of every file the numbers depend on
    /// ([`ModelDir::files`]) in a fixed order. The one definition the
    /// features cache key and the benchmark's cell identity share.
    ///
    /// # Errors
    /// A file that cannot be read.
    pub fn weights_sha256(&self) -> Result<Option<String>, Error> {
        use sha2::{Digest, Sha256};
        match (&self.dir, &self.file) {
            (Some(dir), _) => {
                let mut h = Sha256::new();
                for f in dir.files() {
                    h.update(crate::features::sha256_file(&f)?.as_bytes());
                }
                Ok(Some(format!("{:x}", h.finalize())))
            }
            (None, Some(file)) => crate::features::sha256_file(file).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// The encoder on `device`: the loaded weights, or random weights drawn
    /// from `seed` when the model has none.
    ///
    /// # Errors
    /// As [`Resolved::load`], or weights that do not fit the architecture.
    pub fn encoder(&self, device: Device, seed: u64) -> Result<Encoder, Error> {
        match self.load()? {
            Some(tensors) => Encoder::new(self.spec.clone(), &tensors, device).map_err(|cause| {
                Error::ModelWeights {
                    source_name: self.source.clone(),
                    model: self.spec.name.clone(),
                    cause: Box::new(cause),
                }
            }),
            None => Ok(Encoder::random(self.spec.clone(), device, seed)),
        }
    }
}

/// The largest network input side any command accepts, in pixels.
///
/// Chest X-ray models run at 224 to 1024 px; 4096 leaves room for
/// high-resolution work while refusing sizes whose activations could never
/// be allocated (a typo such as `--input-size 100000` would otherwise abort
/// the process deep inside libtorch, after the run directory exists).
pub const MAX_INPUT_SIZE: i64 = 4096;

/// Checks a network input side against `1..=`[`MAX_INPUT_SIZE`]; `origin`
/// names where it came from for the error (`--input-size`, a sidecar file).
///
/// # Errors
/// [`Error::InputSize`] when `size` is out of range.
pub fn check_input_size(size: i64, origin: &str) -> Result<(), Error> {
    if (1..=MAX_INPUT_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(Error::InputSize {
            origin: origin.to_owned(),
            size,
            max: MAX_INPUT_SIZE,
        })
    }
}

/// Files cxrlearn wrote carry a sidecar and are already in our names.
fn is_ours(file: &Path) -> bool {
    file.with_extension("json").exists() && file.extension().is_some_and(|e| e == "safetensors")
}

/// Resolves `model` for a store of `store_size`-pixel images. Bare
/// architectures take the store's size unless `input_size` is given;
/// `pooling` chooses how a ViT-style encoder's tokens become its feature.
///
/// The forms: a registry name with `checkpoint` (a file, or the publisher's
/// directory for entries released as one); `scratch:ARCH`; `hf:DIR` and
/// `open_clip:DIR` (a publisher's directory, its configuration deciding the
/// architecture); a safetensors file this project wrote, with its sidecar.
///
/// # Errors
/// An unknown name, a missing or superfluous `checkpoint`, a directory whose
/// configuration cxrlearn does not build, a pooling the model has no choice
/// of, a model file without a usable sidecar, or an input size outside
/// `1..=`[`MAX_INPUT_SIZE`] (see [`Error`]).
pub fn resolve(
    model: &str,
    checkpoint_file: Option<&Path>,
    store_size: i64,
    input_size: Option<i64>,
    pooling: Option<Pooling>,
) -> Result<Resolved, Error> {
    // Before anything is built or written: an absurd size would abort the
    // process when the first batch is allocated.
    if let Some(s) = input_size {
        check_input_size(s, "--input-size")?;
    }
    let mut resolved = resolve_weights(model, checkpoint_file, store_size, input_size)?;
    // A sidecar (or a publisher's configuration) may carry its own size.
    check_input_size(
        resolved.spec.preprocessing.size,
        &format!("{}: input size", resolved.source),
    )?;
    if let Some(p) = pooling {
        resolved.spec.architecture =
            resolved
                .spec
                .architecture
                .with_pooling(p)
                .ok_or_else(|| Error::Pooling {
                    model: model.to_owned(),
                    architecture: resolved.spec.architecture.describe(),
                })?;
    }
    Ok(resolved)
}

fn resolve_weights(
    model: &str,
    checkpoint_file: Option<&Path>,
    store_size: i64,
    input_size: Option<i64>,
) -> Result<Resolved, Error> {
    if let Some(arch) = model.strip_prefix("scratch:") {
        if checkpoint_file.is_some() {
            return Err(Error::ScratchWithCheckpoint { arch: arch.into() });
        }
        let spec =
            ModelSpec::scratch(arch, input_size.unwrap_or(store_size), None).map_err(|reason| {
                Error::Scratch {
                    arch: arch.into(),
                    reason: Box::new(reason),
                }
            })?;
        return Ok(Resolved {
            spec,
            file: None,
            dir: None,
            source: "random initialisation".into(),
            notes: Vec::new(),
        });
    }
    for format in [DirFormat::HuggingFace, DirFormat::OpenClip] {
        if let Some(d) = model
            .strip_prefix(format.prefix())
            .and_then(|r| r.strip_prefix(':'))
        {
            if checkpoint_file.is_some() {
                return Err(Error::CheckpointWithFile { file: d.into() });
            }
            return from_dir(Path::new(d), format, None, input_size);
        }
    }
    let entry = match registry::find(model) {
        Ok(entry) => entry,
        Err(reason) => {
            return resolve_file(model, Box::new(reason), checkpoint_file, input_size);
        }
    };
    let file = checkpoint_file.ok_or_else(|| Error::NeedsCheckpoint {
        model: entry.name.to_owned(),
        file: entry.checkpoint_file.to_owned(),
    })?;
    if file.is_dir() {
        return match entry.weights {
            Weights::Dir(format) => from_dir(file, format, Some(&entry), input_size),
            Weights::File => Err(Error::CheckpointIsDir {
                model: entry.name.to_owned(),
                dir: file.to_owned(),
                file: entry.checkpoint_file.to_owned(),
            }),
        };
    }
    let mut spec = ModelSpec::from_entry(&entry);
    if let Some(s) = input_size {
        spec.preprocessing.size = s;
    }
    Ok(Resolved {
        spec,
        file: Some(file.to_owned()),
        dir: None,
        source: file.display().to_string(),
        notes: Vec::new(),
    })
}

/// A publisher's directory, under `entry` or on its own.
fn from_dir(
    path: &Path,
    format: DirFormat,
    entry: Option<&cxr_nn::entry::ModelEntry>,
    input_size: Option<i64>,
) -> Result<Resolved, Error> {
    let network = |e| Error::Network(Box::new(e));
    let dir = ModelDir::open(path, format).map_err(network)?;
    let mut spec = cxr_nn::hf_config::image_spec(&dir, entry).map_err(network)?;
    let mut notes = Vec::new();
    if let (Some(e), Some((file, _))) = (entry, &dir.preprocessor) {
        let (ours, theirs) = (&e.preprocessing, &spec.preprocessing);
        if (ours.size, ours.normalization) != (theirs.size, theirs.normalization) {
            notes.push(format!(
                "{} gives {}x{} px, mean {:?}, std {:?}; the registry's '{}' has {}x{} px, mean {:?}, std {:?}; using the file's",
                file.display(),
                theirs.size,
                theirs.size,
                theirs.normalization.mean,
                theirs.normalization.std,
                e.name,
                ours.size,
                ours.size,
                ours.normalization.mean,
                ours.normalization.std,
            ));
        }
    }
    if let Some(s) = input_size {
        spec.preprocessing.size = s;
        spec.preprocessing.crop_from = None;
    }
    Ok(Resolved {
        spec,
        file: Some(path.to_owned()),
        dir: Some(dir),
        source: path.display().to_string(),
        notes,
    })
}

/// A model string that is not a registry name: a file with its sidecar.
/// `reason` is the registry's answer, reported when no such file exists.
fn resolve_file(
    model: &str,
    reason: Box<cxr_nn::NnError>,
    checkpoint_file: Option<&Path>,
    input_size: Option<i64>,
) -> Result<Resolved, Error> {
    let file = Path::new(model);
    if !file.exists() {
        return Err(Error::UnknownModel {
            model: model.into(),
            reason,
        });
    }
    if checkpoint_file.is_some() {
        return Err(Error::CheckpointWithFile { file: file.into() });
    }
    let sidecar = file.with_extension("json");
    let text = std::fs::read_to_string(&sidecar).map_err(|cause| Error::NoSidecar {
        file: file.into(),
        sidecar: sidecar.clone(),
        cause,
    })?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|cause| Error::SidecarJson {
            sidecar: sidecar.clone(),
            cause,
        })?;
    let mut spec = ModelSpec::from_sidecar(&meta, &sidecar).map_err(|reason| Error::Sidecar {
        sidecar,
        reason: Box::new(reason),
    })?;
    if let Some(s) = input_size {
        spec.preprocessing.size = s;
    }
    Ok(Resolved {
        spec,
        file: Some(file.to_owned()),
        dir: None,
        source: file.display().to_string(),
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #22: sizes outside 1..=MAX_INPUT_SIZE are refused by `resolve`
    /// itself (so every command gets the check), from the flag and from a
    /// model file's sidecar alike.
    #[test]
    fn input_sizes_outside_the_range_are_refused() {
        for size in [0, -3, MAX_INPUT_SIZE + 1, 100_000] {
            let e = resolve("scratch:resnet18-w16", None, 32, Some(size), None).unwrap_err();
            assert!(
                matches!(e, Error::InputSize { size: s, max: MAX_INPUT_SIZE, .. } if s == size),
                "{e}"
            );
            assert!(e.to_string().contains("1 to 4096"), "{e}");
        }
        assert!(resolve("scratch:resnet18-w16", None, 32, Some(MAX_INPUT_SIZE), None).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.safetensors");
        std::fs::write(&file, b"").unwrap();
        std::fs::write(
            file.with_extension("json"),
            r#"{"architecture": "resnet18-w16", "input_size": 100000}"#,
        )
        .unwrap();
        let e = resolve(file.to_str().unwrap(), None, 32, None, None).unwrap_err();
        assert!(matches!(e, Error::InputSize { size: 100_000, .. }), "{e}");
    }

    #[test]
    fn errors_name_the_model_and_the_flag() {
        let e = resolve("gloria-resnet18", None, 32, None, None).unwrap_err();
        assert!(matches!(e, Error::NeedsCheckpoint { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("'gloria-resnet18' needs --checkpoint")
        );
        let e = resolve("scratch:resnet18", Some(Path::new("w")), 32, None, None).unwrap_err();
        assert!(e.to_string().contains("drop --checkpoint"), "{e}");
        let e = resolve("no-such-model", None, 32, None, None).unwrap_err();
        assert!(e.to_string().contains("'no-such-model'"), "{e}");
        assert!(e.to_string().contains("scratch:ARCH"), "{e}");
    }

    #[test]
    fn scratch_takes_the_store_size_unless_told() {
        let r = resolve("scratch:resnet18", None, 32, None, None).unwrap();
        assert_eq!((r.spec.preprocessing.size, r.file), (32, None));
        let r = resolve("scratch:resnet18", None, 32, Some(64), None).unwrap();
        assert_eq!(r.spec.preprocessing.size, 64);
    }
}
