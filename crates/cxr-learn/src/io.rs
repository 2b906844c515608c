//! Files that are either complete or absent: every write goes to a temporary
//! sibling, is flushed to disk, then renamed over the target, so a kill or a
//! full disk mid-write leaves the previous version intact (the workspace's
//! one implementation, `cxr_data::atomic`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use cxr_nn::checkpoint::{self, RawTensor};

use crate::error::{Error, Result};

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
/// [`Error::Encode`] or [`Error::Write`], naming the file.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, RawTensor>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes = checkpoint::to_safetensors(tensors, metadata).map_err(|cause| Error::Encode {
        path: path.to_owned(),
        cause,
    })?;
    write_atomic(path, &bytes).map_err(|cause| Error::Write {
        path: path.to_owned(),
        cause,
    })
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
    /// [`Error::Checkpoint`] naming a tensor that cannot be stored; as
    /// [`write_safetensors`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = BTreeMap::new();
        for (prefix, map) in [("model.", &self.model), ("optim.", &self.optim)] {
            for (k, v) in map {
                let raw = RawTensor::from_tch(k, &v.to_device(tch::Device::Cpu))
                    .map_err(Error::Checkpoint)?;
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
    /// [`Error::Checkpoint`] (naming the file) when it is unreadable,
    /// [`Error::NoProgress`] when it has no progress record.
    pub fn load(path: &Path, device: tch::Device) -> Result<Self> {
        let ck = checkpoint::load(path).map_err(Error::Checkpoint)?;
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
            return Err(Error::NoProgress {
                path: path.to_owned(),
            });
        }
        Ok(state)
    }
}
