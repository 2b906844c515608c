//! Turning a released checkpoint into the project's tensors for a registry
//! entry: map every key, drop what the entry deliberately ignores, and prove
//! the rest loads strictly into the architecture.

use std::collections::BTreeMap;
use std::fmt;

use tch::Device;
use tch::nn::VarStore;

use crate::backbone::Backbone;
use crate::checkpoint::{Checkpoint, RawTensor};
use crate::load::{KeyMismatch, load_strict};
use crate::registry::{KeyRule, ModelEntry};

/// A checkpoint validated against a registry entry.
#[derive(Debug)]
pub struct Imported {
    /// The architecture's tensors under the project's (source-compatible) names.
    pub tensors: BTreeMap<String, RawTensor>,
    /// Checkpoint tensors left out on purpose, with the reason.
    pub ignored: Vec<(String, &'static str)>,
    /// Checkpoint tensors renamed on the way in: (checkpoint name, our name).
    pub renamed: Vec<(String, String)>,
}

/// Why a checkpoint does not fit a registry entry.
#[derive(Debug)]
pub enum ImportError {
    /// Keys missing, unexpected or wrongly shaped.
    Keys {
        /// The entry's name.
        model: &'static str,
        /// The mismatch.
        mismatch: KeyMismatch,
        /// How many tensors the entry ignored on purpose.
        ignored: usize,
    },
    /// Two checkpoint tensors map onto the same name.
    Duplicate {
        /// The name both map onto.
        name: String,
        /// The two source names.
        sources: (String, String),
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keys {
                model,
                mismatch,
                ignored,
            } => write!(
                f,
                "{mismatch} (model '{model}'; {ignored} tensor(s) ignored on purpose; is this the right model or file?)"
            ),
            Self::Duplicate { name, sources } => write!(
                f,
                "checkpoint tensors '{}' and '{}' both map onto '{name}'",
                sources.0, sources.1
            ),
        }
    }
}

impl std::error::Error for ImportError {}

/// Applies `entry`'s key rules to every tensor of `checkpoint`, without
/// validating against the architecture.
///
/// # Errors
/// [`ImportError::Duplicate`] when two tensors map onto one name.
pub fn map_keys(entry: &ModelEntry, checkpoint: &Checkpoint) -> Result<Imported, ImportError> {
    let mut tensors = BTreeMap::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut renamed = Vec::new();
    for (name, t) in &checkpoint.tensors {
        match (entry.map_key)(name) {
            KeyRule::Ignore(reason) => ignored.push((name.clone(), reason)),
            KeyRule::Keep(ours) => {
                if let Some(first) = origin.get(&ours) {
                    return Err(ImportError::Duplicate {
                        name: ours,
                        sources: (first.clone(), name.clone()),
                    });
                }
                if &ours != name {
                    renamed.push((name.clone(), ours.clone()));
                }
                origin.insert(ours.clone(), name.clone());
                tensors.insert(ours, t.clone());
            }
        }
    }
    Ok(Imported {
        tensors,
        ignored,
        renamed,
    })
}

/// Adds a `num_batches_tracked` counter beside every batch-norm's running
/// statistics, as torchvision's modules hold them, so exported weights load
/// into PyTorch with `strict=True`. The counter's value comes from the
/// checkpoint when it has one under the same layer suffix, else 0.
pub fn with_batch_counters(
    tensors: &BTreeMap<String, RawTensor>,
    checkpoint: &Checkpoint,
) -> BTreeMap<String, RawTensor> {
    let mut out = tensors.clone();
    for name in tensors.keys() {
        let Some(layer) = name.strip_suffix(".running_mean") else {
            continue;
        };
        let counter = format!("{layer}.num_batches_tracked");
        let from_source = checkpoint
            .tensors
            .iter()
            .find(|(k, t)| {
                t.numel() == 1 && (k.as_str() == counter || k.ends_with(&format!(".{counter}")))
            })
            .map(|(_, t)| t.clone());
        let value = from_source.unwrap_or(RawTensor {
            dtype: crate::checkpoint::DType::I64,
            shape: vec![],
            data: 0i64.to_le_bytes().to_vec(),
        });
        out.insert(counter, value);
    }
    out
}

/// Maps and validates `checkpoint` for `entry`. The architecture is built on
/// the CPU and loaded strictly, so success means every weight is accounted for.
///
/// # Errors
/// [`ImportError`] naming every missing, unexpected or wrongly shaped key.
pub fn import(entry: &ModelEntry, checkpoint: &Checkpoint) -> Result<Imported, ImportError> {
    let imported = map_keys(entry, checkpoint)?;
    let mut vs = VarStore::new(Device::Cpu);
    let _backbone = Backbone::new(&vs.root(), &entry.architecture);
    load_strict(&mut vs, &imported.tensors, |_| false).map_err(|mismatch| ImportError::Keys {
        model: entry.name,
        mismatch,
        ignored: imported.ignored.len(),
    })?;
    Ok(imported)
}
