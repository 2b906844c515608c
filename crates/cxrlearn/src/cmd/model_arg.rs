//! What `--model` (with `--checkpoint`) names for the training commands: a
//! registry release, a bare architecture to train from scratch
//! (`scratch:NAME`), or a safetensors file this project wrote (an import, a
//! pretraining encoder, a finetuned model) with its JSON sidecar.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cxr_nn::checkpoint::{self, RawTensor};
use cxr_nn::registry;
use cxr_nn::spec::ModelSpec;
use serde_json::Value;

/// A resolved model: what to build, and where its weights are (read by
/// [`Resolved::load`], so cheap checks can come first).
pub(crate) struct Resolved {
    pub(crate) spec: ModelSpec,
    /// The weights file, `None` for random weights.
    pub(crate) file: Option<PathBuf>,
    /// Where the weights come from, for the config.
    pub(crate) source: String,
}

impl Resolved {
    /// The backbone weights in the architecture's names (`None`: random).
    pub(crate) fn load(&self) -> Result<Option<BTreeMap<String, RawTensor>>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let ck = checkpoint::load(file)?;
        match &self.spec.entry {
            // A released checkpoint: the registry's key mapping applies.
            Some(entry) if !is_ours(file) => {
                let mapped = cxr_nn::import::map_keys(entry, &ck)
                    .with_context(|| format!("{} as '{}'", file.display(), entry.name))?;
                Ok(Some(mapped.tensors))
            }
            _ => Ok(Some(ck.tensors)),
        }
    }
}

/// Files cxrlearn wrote carry a sidecar and are already in our names.
fn is_ours(file: &Path) -> bool {
    file.with_extension("json").exists() && file.extension().is_some_and(|e| e == "safetensors")
}

/// Resolves `model` for a store of `store_size`-pixel images. Bare
/// architectures take the store's size unless `input_size` is given.
pub(crate) fn resolve(
    model: &str,
    checkpoint_file: Option<&Path>,
    store_size: i64,
    input_size: Option<i64>,
) -> Result<Resolved> {
    if let Some(arch) = model.strip_prefix("scratch:") {
        if checkpoint_file.is_some() {
            bail!("scratch:{arch} is trained from random weights; drop --checkpoint");
        }
        let spec = ModelSpec::scratch(arch, input_size.unwrap_or(store_size), None)
            .map_err(anyhow::Error::msg)?;
        return Ok(Resolved {
            spec,
            file: None,
            source: "random initialisation".into(),
        });
    }
    if let Ok(entry) = registry::find(model) {
        let file = checkpoint_file.with_context(|| {
            format!(
                "model '{}' needs --checkpoint (its weights, {}; cxrlearn downloads nothing), \
                 or use scratch:ARCH to train from random weights",
                entry.name, entry.checkpoint_file
            )
        })?;
        let mut spec = ModelSpec::from_entry(&entry);
        if let Some(s) = input_size {
            spec.preprocessing.size = s;
        }
        return Ok(Resolved {
            spec,
            file: Some(file.to_owned()),
            source: file.display().to_string(),
        });
    }
    let file = Path::new(model);
    if !file.exists() {
        bail!(
            "{} (or scratch:ARCH with ARCH one of {}, or a safetensors file written by cxrlearn)",
            registry::find(model)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            cxr_nn::spec::ARCHITECTURES.join(", ")
        );
    }
    if checkpoint_file.is_some() {
        bail!(
            "--checkpoint goes with a registry model name; {} already holds the weights",
            file.display()
        );
    }
    let sidecar = file.with_extension("json");
    let text = std::fs::read_to_string(&sidecar).with_context(|| {
        format!(
            "{} has no sidecar {} describing its model",
            file.display(),
            sidecar.display()
        )
    })?;
    let meta: Value =
        serde_json::from_str(&text).with_context(|| format!("{}", sidecar.display()))?;
    let mut spec = ModelSpec::from_sidecar(&meta, &sidecar).map_err(anyhow::Error::msg)?;
    if let Some(s) = input_size {
        spec.preprocessing.size = s;
    }
    Ok(Resolved {
        spec,
        file: Some(file.to_owned()),
        source: file.display().to_string(),
    })
}
