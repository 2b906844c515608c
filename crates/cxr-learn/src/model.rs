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

use cxr_nn::checkpoint::{self, RawTensor};
use cxr_nn::encoder::Encoder;
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
    /// The weights file, `None` for random weights.
    pub file: Option<PathBuf>,
    /// Where the weights come from, for configs and messages.
    pub source: String,
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

/// Files cxrlearn wrote carry a sidecar and are already in our names.
fn is_ours(file: &Path) -> bool {
    file.with_extension("json").exists() && file.extension().is_some_and(|e| e == "safetensors")
}

/// Resolves `model` for a store of `store_size`-pixel images. Bare
/// architectures take the store's size unless `input_size` is given.
///
/// # Errors
/// An unknown name, a missing or superfluous `checkpoint`, or a model file
/// without a usable sidecar (see [`Error`]).
pub fn resolve(
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
            source: "random initialisation".into(),
        });
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
    let mut spec = ModelSpec::from_entry(&entry);
    if let Some(s) = input_size {
        spec.preprocessing.size = s;
    }
    Ok(Resolved {
        spec,
        file: Some(file.to_owned()),
        source: file.display().to_string(),
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
        source: file.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_model_and_the_flag() {
        let e = resolve("gloria-resnet18", None, 32, None).unwrap_err();
        assert!(matches!(e, Error::NeedsCheckpoint { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("'gloria-resnet18' needs --checkpoint")
        );
        let e = resolve("scratch:resnet18", Some(Path::new("w")), 32, None).unwrap_err();
        assert!(e.to_string().contains("drop --checkpoint"), "{e}");
        let e = resolve("no-such-model", None, 32, None).unwrap_err();
        assert!(e.to_string().contains("'no-such-model'"), "{e}");
        assert!(e.to_string().contains("scratch:ARCH"), "{e}");
    }

    #[test]
    fn scratch_takes_the_store_size_unless_told() {
        let r = resolve("scratch:resnet18", None, 32, None).unwrap();
        assert_eq!((r.spec.preprocessing.size, r.file), (32, None));
        let r = resolve("scratch:resnet18", None, 32, Some(64)).unwrap();
        assert_eq!(r.spec.preprocessing.size, 64);
    }
}
