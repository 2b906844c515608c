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
    #[error("{}{reason}", file.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Format {
        /// The file, when the bytes were read from one (set by
        /// [`crate::checkpoint::load`]; the parsers see only bytes).
        file: Option<String>,
        /// What is wrong (`pickle truncated at byte 12`).
        reason: String,
    },
    /// A tensor's dtype has no counterpart here.
    #[error("tensor '{name}' has unsupported dtype {dtype}")]
    UnsupportedDType {
        /// Tensor name.
        name: String,
        /// The dtype as the file spells it.
        dtype: String,
    },
}

impl CheckpointError {
    /// A malformed checkpoint, its file not yet known.
    pub(crate) fn format(reason: String) -> Self {
        Self::Format { file: None, reason }
    }
}
