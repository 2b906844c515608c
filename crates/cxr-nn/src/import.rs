//! Turning a released checkpoint into the project's tensors for a registry
//! entry: map every key, drop what the entry deliberately ignores, and prove
//! the rest loads strictly into the architecture.

use std::collections::BTreeMap;

use tch::Device;
use tch::nn::VarStore;

use crate::arch::resnet::{Block, ResNetConfig};
use crate::backbone::{Architecture, Backbone};
use crate::checkpoint::{Checkpoint, RawTensor};
use crate::load::load_strict;
use crate::registry::{self, KeyRule, ModelEntry};

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

// Defined with the crate's other errors so that `crate::error` (which
// `registry`, imported here, depends on) depends on no module that depends
// back on it; re-exported so the path stays.
pub use crate::error::ImportError;

/// Applies `entry`'s key rules to every tensor of `checkpoint`, without
/// loading them into the architecture; a checkpoint of another registered
/// variant of the entry's method is recognised here, so every command that
/// reads a release (import, features, probe, finetune) names the entry to use.
///
/// # Errors
/// [`ImportError::Duplicate`] when two tensors map onto one name;
/// [`ImportError::WrongVariant`] when the tensors are another ResNet depth
/// that the registry has an entry of the same method for.
pub fn map_keys(entry: &ModelEntry, checkpoint: &Checkpoint) -> Result<Imported, ImportError> {
    let imported = map_with(entry.map_key, &checkpoint.tensors)?;
    if let Some(err) = other_variant(entry, &imported.tensors) {
        return Err(err);
    }
    Ok(imported)
}

/// Applies `map_key` to every tensor of `tensors` (the rules of a registry
/// entry, or of a family for a directory loaded without one).
///
/// # Errors
/// [`ImportError::Duplicate`] when two tensors map onto one name.
pub fn map_with(
    map_key: fn(&str) -> KeyRule,
    tensors: &BTreeMap<String, RawTensor>,
) -> Result<Imported, ImportError> {
    let mut out = BTreeMap::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut renamed = Vec::new();
    for (name, t) in tensors {
        match map_key(name) {
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
                out.insert(ours, t.clone());
            }
        }
    }
    Ok(Imported {
        tensors: out,
        ignored,
        renamed,
    })
}

/// A ResNet's shape as its tensors (in torchvision's names) show it: block
/// type, blocks per stage and stem width; `None` when they are no ResNet.
fn resnet_shape(tensors: &BTreeMap<String, RawTensor>) -> Option<(Block, [usize; 4], i64)> {
    let width = i64::try_from(*tensors.get("conv1.weight")?.shape.first()?).ok()?;
    let mut layers = [0usize; 4];
    for (stage, blocks) in layers.iter_mut().enumerate() {
        // torchvision numbers a stage's blocks from 0 without gaps.
        while tensors.contains_key(&format!("layer{}.{blocks}.conv1.weight", stage + 1)) {
            *blocks += 1;
        }
    }
    if layers.contains(&0) {
        return None;
    }
    // Only bottleneck blocks have a third convolution.
    let block = if tensors.contains_key("layer1.0.conv3.weight") {
        Block::Bottleneck
    } else {
        Block::Basic
    };
    Some((block, layers, width))
}

/// `ResNet-18`, `ResNet-50`: the depth torchvision names a shape by.
fn resnet_name(block: Block, layers: [usize; 4]) -> String {
    let convs_per_block = match block {
        Block::Basic => 2,
        Block::Bottleneck => 3,
    };
    format!(
        "ResNet-{}",
        convs_per_block * layers.iter().sum::<usize>() + 2
    )
}

/// [`ImportError::WrongVariant`] when `tensors` are a ResNet of another shape
/// than `entry`'s and an entry of the same method has that shape. Anything
/// else is left to the strict load, which names every mismatched key.
fn other_variant(entry: &ModelEntry, tensors: &BTreeMap<String, RawTensor>) -> Option<ImportError> {
    let Architecture::ResNet(config) = &entry.architecture else {
        return None;
    };
    let found = resnet_shape(tensors)?;
    let fits = |c: &ResNetConfig| (c.block, c.layers, c.width) == found;
    if fits(config) {
        return None;
    }
    let sibling = registry::all().into_iter().find(|e| {
        e.method == entry.method && matches!(&e.architecture, Architecture::ResNet(c) if fits(c))
    })?;
    Some(ImportError::WrongVariant {
        model: entry.name,
        method: entry.method,
        found: resnet_name(found.0, found.1),
        expected: resnet_name(config.block, config.layers),
        use_instead: sibling.name,
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
