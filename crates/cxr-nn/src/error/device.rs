//! Device selection's errors ([`crate::device`]).

use crate::system::CudaStatus;

/// A `--device` value that is none of `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device '{0}' (expected auto, cpu, cuda or cuda:N)")]
pub struct ParseDeviceError(pub(crate) String);

/// Why a requested device cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cuda:{requested} requested but {}", self.reason())]
pub struct DeviceUnavailable {
    /// The CUDA index asked for.
    pub requested: usize,
    /// CUDA devices visible to libtorch.
    pub available: usize,
    /// With no device at all, what is missing (no CUDA build, CUDA support
    /// not loaded, no driver, no device).
    pub status: Option<CudaStatus>,
}

impl DeviceUnavailable {
    /// With no device at all, what is missing; else how many there are.
    fn reason(&self) -> String {
        match &self.status {
            Some(status) if self.available == 0 => status.to_string(),
            _ => format!("libtorch sees {} CUDA device(s)", self.available),
        }
    }
}
