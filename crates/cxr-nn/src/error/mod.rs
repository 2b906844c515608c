//! The one error type of the network crate. Each variant names what the user
//! can act on: the file, the architecture or model name, the key or field.
//! The narrower errors of checkpoint reading, key mapping, strict loading and
//! device selection keep their own types (callers match on their fields) and
//! are reachable from [`NnError`] through `From`.
//!
//! They are defined here, in submodules, and re-exported where they are raised
//! (`crate::checkpoint::CheckpointError`, `crate::import::ImportError`,
//! `crate::load::KeyMismatch`, `crate::device::{ParseDeviceError,
//! DeviceUnavailable}`): this module then depends on no module that depends
//! back on it (only on `crate::system`, for a device error's CUDA status).
//!
//! [`NnError`] is returned all over the crate and wrapped by its callers'
//! errors, so it is kept small: the payloads that are large (the key lists of
//! a mismatch, an import error) are boxed inside it, and callers need not box
//! it again to satisfy clippy's `result_large_err`.

mod checkpoint;
mod device;
mod import;

use std::path::PathBuf;

use thiserror::Error;

pub use checkpoint::CheckpointError;
pub use device::{DeviceUnavailable, ParseDeviceError};
pub use import::{ImportError, KeyMismatch};

/// Why a model could not be described, built, loaded or saved, or a text
/// could not be tokenised.
#[derive(Debug, Error)]
pub enum NnError {
    /// An architecture name that [`crate::spec::architecture`] does not know.
    #[error("unknown architecture '{name}' (known: {})", known.join(", "))]
    UnknownArchitecture {
        /// The name asked for.
        name: String,
        /// The names there are (carried, so this module imports no table).
        known: &'static [&'static str],
    },
    /// A model name that the registry does not know.
    #[error("unknown model '{name}' (known: {})", known.join(", "))]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The registry's names, in display order.
        known: Vec<&'static str>,
    },
    /// An architecture with a fixed input size asked for another size.
    #[error("{architecture} takes {expected}-pixel inputs, not {size}")]
    InputSize {
        /// The architecture name.
        architecture: String,
        /// The only size it takes.
        expected: i64,
        /// The size asked for.
        size: i64,
    },
    /// A model sidecar without a `"model"` or `"architecture"` field.
    #[error("{} names neither a \"model\" nor an \"architecture\"", file.display())]
    SidecarUnnamed {
        /// The sidecar file.
        file: PathBuf,
    },
    /// A model sidecar without a required field.
    #[error("{} has no \"{field}\"", file.display())]
    SidecarField {
        /// The sidecar file.
        file: PathBuf,
        /// The missing field.
        field: &'static str,
    },
    /// A sidecar's CLIP shape with a field missing or not an integer.
    #[error("{}: \"{object}\" {problem}", file.display())]
    ClipConfig {
        /// The sidecar file.
        file: PathBuf,
        /// The object holding the shape (`clip` or `clip_config`).
        object: &'static str,
        /// What is wrong (`has no integer "embed_dim"`).
        problem: String,
    },
    /// A sidecar's CLIP image tower and its input size disagree.
    #[error("{}: the CLIP image tower takes {expected}-pixel inputs, not {size}", file.display())]
    ClipInputSize {
        /// The sidecar file.
        file: PathBuf,
        /// The tower's input side.
        expected: i64,
        /// The sidecar's `input_size`.
        size: i64,
    },
    /// A state dict without a key OpenAI's `build_model` reads.
    #[error("not an OpenAI CLIP (ViT) state dict: no '{key}'")]
    NotClipStateDict {
        /// The missing key.
        key: String,
    },
    /// A file that is not a sidecar written by `ClipModel::save`.
    #[error("{} is not a CLIP sidecar (format is not \"{format}\")", file.display())]
    NotClipSidecar {
        /// The sidecar file.
        file: PathBuf,
        /// The `format` value CLIP sidecars have.
        format: &'static str,
    },
    /// A CLIP sidecar whose preprocessing statistics are missing or malformed.
    #[error("{}: preprocessing {problem}", file.display())]
    ClipPreprocessing {
        /// The sidecar file.
        file: PathBuf,
        /// What is wrong (`has no 'mean' list`).
        problem: String,
    },
    /// A model configuration file (a Hugging Face `config.json`, an
    /// open_clip `open_clip_config.json`, a `preprocessor_config.json`) that
    /// describes something cxrlearn does not build, or is malformed.
    #[error("{}: {problem}", file.display())]
    ModelConfig {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong, naming the field and value (`"hidden_act" is
        /// "relu"; DINOv2 is built with "gelu"`).
        problem: String,
    },
    /// A sidecar that could not be read.
    #[error("cannot read sidecar {}: {source}", file.display())]
    ReadSidecar {
        /// The sidecar file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A sidecar that is not JSON, or a sidecar that could not be written as JSON.
    #[error("sidecar {}: {source}", file.display())]
    SidecarJson {
        /// The sidecar file.
        file: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Weights that do not match the shape their file declares.
    #[error("{}: {mismatch}", file.display())]
    WeightsMismatch {
        /// The weights file.
        file: PathBuf,
        /// The keys that did not line up (boxed: three name lists).
        mismatch: Box<KeyMismatch>,
    },
    /// A file that could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// fp16 asked for on the CPU.
    #[error("--precision fp16 is for CUDA devices; on the CPU use bf16 (or fp32)")]
    Fp16OnCpu,
    /// A `--precision` value that is none of fp32, bf16 or fp16.
    #[error("unknown precision '{value}' (expected fp32, bf16 or fp16)")]
    UnknownPrecision {
        /// The value given.
        value: String,
    },
    /// A tokenizer file that could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    ReadTokenizer {
        /// `tokenizer` or `CLIP vocabulary`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `tokenizer.json` the `tokenizers` crate rejects.
    #[error("cannot load tokenizer {}: {source}", path.display())]
    LoadTokenizer {
        /// The file.
        path: PathBuf,
        /// The `tokenizers` crate's error.
        source: tokenizers::Error,
    },
    /// A tokenizer that could not be written.
    #[error("cannot write tokenizer {}: {source}", path.display())]
    SaveTokenizer {
        /// The file.
        path: PathBuf,
        /// The `tokenizers` crate's error.
        source: tokenizers::Error,
    },
    /// A tokenizer file whose content is malformed.
    #[error("{} {problem}", path.display())]
    TokenizerFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, as a predicate of the file (`holds no BPE merges`).
        problem: String,
    },
    /// A tokenizer without one of its special tokens.
    #[error("tokenizer has no {token} token")]
    NoSpecialToken {
        /// The token.
        token: String,
    },
    /// A vocabulary size below the special tokens and the alphabet.
    #[error("vocabulary size {size} is below the {needed} special tokens and characters")]
    VocabularyTooSmall {
        /// The size asked for.
        size: usize,
        /// The ids the special tokens and characters take.
        needed: usize,
    },
    /// A context length with no room for the start and end tokens.
    #[error("context length must hold at least the start and end tokens")]
    ContextTooShort,
    /// The `tokenizers` crate's failure (building a model, normalising or
    /// encoding a text).
    #[error(transparent)]
    Tokenizers(tokenizers::Error),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A checkpoint does not fit a registry entry (boxed: the largest
    /// payload; `?` on an [`ImportError`] boxes it).
    #[error(transparent)]
    Import(Box<ImportError>),
    /// Named tensors do not line up with an architecture (boxed: three name
    /// lists; `?` on a [`KeyMismatch`] boxes it).
    #[error(transparent)]
    Keys(Box<KeyMismatch>),
    /// A `--device` value that does not parse.
    #[error(transparent)]
    ParseDevice(#[from] ParseDeviceError),
    /// A requested device that does not exist.
    #[error(transparent)]
    DeviceUnavailable(#[from] DeviceUnavailable),
}

/// `?` on an import error, boxed to keep [`NnError`] small.
impl From<ImportError> for NnError {
    fn from(e: ImportError) -> Self {
        Self::Import(Box::new(e))
    }
}

/// `?` on a strict load's mismatch, boxed to keep [`NnError`] small.
impl From<KeyMismatch> for NnError {
    fn from(e: KeyMismatch) -> Self {
        Self::Keys(Box::new(e))
    }
}

/// `?` on the `tokenizers` crate's boxed errors.
impl From<tokenizers::Error> for NnError {
    fn from(e: tokenizers::Error) -> Self {
        Self::Tokenizers(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers wrap `NnError` unboxed (clippy's `result_large_err` warns from
    /// 128 bytes); it was 104 bytes before its large payloads were boxed.
    #[test]
    fn nn_error_is_small() {
        assert!(std::mem::size_of::<NnError>() <= 64);
    }
}
