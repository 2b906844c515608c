//! The checkpoint reader's and writer's error ([`crate::checkpoint`]).

use thiserror::Error;

/// Why a checkpoint could not be read or written.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a checkpoint this reader understands.
    #[error("{0}")]
    Format(String),
    /// A tensor's dtype has no counterpart here.
    #[error("tensor '{name}' has unsupported dtype {dtype}")]
    UnsupportedDType {
        /// Tensor name.
        name: String,
        /// The dtype as the file spells it.
        dtype: String,
    },
}
