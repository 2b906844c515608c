//! Files that are either complete or absent: every write goes to a temporary
//! sibling, is flushed to disk, then renamed over the target, so a kill or a
//! full disk mid-write leaves the previous version intact (the workspace's
//! one implementation, `cxr_data::atomic`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use cxr_nn::checkpoint::{self, RawTensor};

/// Writes `bytes` to `path` atomically.
///
/// # Errors
/// The I/O error; the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    cxr_data::atomic::write_atomic(path, bytes)
}

/// Writes tensors as a safetensors file atomically.
///
/// # Errors
/// A message naming the file.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, RawTensor>,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), String> {
    let bytes = checkpoint::to_safetensors(tensors, metadata)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    write_atomic(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A resumable training state: model tensors, optimiser state and a
/// progress record, stored as `model.*`, `optim.*` and a `progress` byte
/// tensor (JSON) in one safetensors file, written atomically.
#[derive(Debug, Default)]
pub struct TrainState {
    /// Model tensors by name.
    pub model: BTreeMap<String, tch::Tensor>,
    /// Optimiser state by name.
    pub optim: BTreeMap<String, tch::Tensor>,
    /// The loop's progress record, JSON.
    pub progress: Vec<u8>,
}

impl TrainState {
    /// Writes the state to `path`.
    ///
    /// # Errors
    /// A message naming the file or the tensor that cannot be stored.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut tensors = BTreeMap::new();
        for (prefix, map) in [("model.", &self.model), ("optim.", &self.optim)] {
            for (k, v) in map {
                let raw = RawTensor::from_tch(k, &v.to_device(tch::Device::Cpu))
                    .map_err(|e| e.to_string())?;
                tensors.insert(format!("{prefix}{k}"), raw);
            }
        }
        tensors.insert(
            "progress".into(),
            RawTensor {
                dtype: cxr_nn::checkpoint::DType::U8,
                shape: vec![self.progress.len()],
                data: self.progress.clone(),
            },
        );
        write_safetensors(path, &tensors, None)
    }

    /// Reads a state written by [`TrainState::save`], tensors on `device`.
    ///
    /// # Errors
    /// A message naming the file when it is unreadable or has no progress.
    pub fn load(path: &Path, device: tch::Device) -> Result<Self, String> {
        let ck = checkpoint::load(path).map_err(|e| e.to_string())?;
        let mut state = Self::default();
        for (k, v) in ck.tensors {
            if let Some(n) = k.strip_prefix("model.") {
                state
                    .model
                    .insert(n.to_owned(), v.to_tch().to_device(device));
            } else if let Some(n) = k.strip_prefix("optim.") {
                state
                    .optim
                    .insert(n.to_owned(), v.to_tch().to_device(device));
            } else if k == "progress" {
                state.progress = v.data;
            }
        }
        if state.progress.is_empty() {
            return Err(format!("{} holds no progress record", path.display()));
        }
        Ok(state)
    }
}
