//! The crate's one error type: every fallible function of `cxr-learn`
//! returns [`Error`], whose variants carry what failed (the file, the tensor
//! key, the setting and its value, the epoch and step) rather than a
//! preformatted message, so a caller can match on the failure and the CLI's
//! `error:` line still names everything it named before.
//!
//! Inner errors are printed inside the variant's message and deliberately
//! not also returned by `source()`: the CLI prints the whole chain
//! (`{:#}`), which would otherwise repeat them. For that reason no field is
//! named `source` and no `#[from]`/`#[source]` is used.

use std::path::{Path, PathBuf};

use cxr_nn::checkpoint::CheckpointError;
use cxr_nn::load::KeyMismatch;

/// What a training loop's log callback may fail with: the caller's own
/// error (the CLI's names the log file), passed through unchanged.
pub type LogError = Box<dyn std::error::Error + Send + Sync>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation of `cxr-learn` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- Training loops (finetuning and self-supervised pretraining) ---
    /// The loss became NaN or infinite.
    #[error("the training loss became {value} at epoch {epoch}, step {step}; stopped. {kept}")]
    NonFinite {
        /// Epoch (1-based).
        epoch: usize,
        /// Global step (1-based).
        step: u64,
        /// The loss value.
        value: f64,
        /// Which checkpoint survives.
        kept: String,
    },
    /// A batch too small for batch norm.
    #[error("--batch-size must be at least 2 (batch norm)")]
    BatchTooSmall {
        /// The requested batch size.
        batch_size: usize,
    },
    /// The training rows do not fill one batch.
    #[error("the training split has {rows} images, fewer than one batch of {batch_size}")]
    FewerRowsThanBatch {
        /// Training rows.
        rows: usize,
        /// The batch size.
        batch_size: usize,
    },
    /// Each rank's share of a batch is too small for batch norm.
    #[error(
        "each of the {ranks} ranks gets {local_batch} image(s) of a batch of {batch_size}; batch norm needs at least 2"
    )]
    RankBatchTooSmall {
        /// Number of ranks.
        ranks: usize,
        /// Images per rank.
        local_batch: usize,
        /// The global batch size.
        batch_size: usize,
    },
    /// A label without both classes among the known training images.
    #[error(
        "label '{label}' has {positives} positive and {negatives} negative training images: it cannot be trained"
    )]
    UntrainableLabel {
        /// The label.
        label: String,
        /// Known positives.
        positives: usize,
        /// Known negatives.
        negatives: usize,
    },
    /// A multi-class training split with fewer than two classes present.
    #[error("the training split holds fewer than two classes")]
    SingleTrainingClass,
    /// The precision cannot run on the device (`cxr-nn`'s message).
    #[error("{0}")]
    Precision(String),
    /// The log callback failed.
    #[error("{0}")]
    Log(LogError),

    // --- Checkpoints and run files ---
    /// A checkpoint could not be read, or a tensor cannot be stored.
    #[error("{0}")]
    Checkpoint(CheckpointError),
    /// Tensors could not be encoded as the safetensors file `path`.
    #[error("{}: {cause}", path.display())]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// Why.
        cause: CheckpointError,
    },
    /// A file could not be written.
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A training state without its progress record.
    #[error("{} holds no progress record", path.display())]
    NoProgress {
        /// The state file.
        path: PathBuf,
    },
    /// A progress record that does not (de)serialise.
    #[error("{}: {cause}", path.display())]
    Progress {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        cause: serde_json::Error,
    },
    /// Weights that do not match the model.
    #[error("{}: {cause}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Every missing, unexpected or mis-shaped key.
        cause: KeyMismatch,
    },
    /// An error about the contents of the file `path` (an optimiser state
    /// in a training state), named with the file.
    #[error("{}: {cause}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        cause: Box<Error>,
    },

    // --- Optimiser and schedule settings and state ---
    /// An optimiser state without its step count.
    #[error("optimizer state has no 'steps'")]
    NoOptimizerSteps,
    /// An optimiser state tensor for a parameter the optimiser lacks.
    #[error("optimizer state '{key}' names no trainable parameter")]
    UnknownOptimizerKey {
        /// The state tensor's key.
        key: String,
    },
    /// A gradient clip bound that is not positive and finite.
    #[error("a gradient clip bound must be positive and finite, got {bound}")]
    GradClipBound {
        /// The bound.
        bound: f64,
    },
    /// Lookahead settings out of range.
    #[error("lookahead needs k >= 1 and alpha in (0, 1], got k {k} alpha {alpha}")]
    Lookahead {
        /// Inner steps between synchronisations.
        k: u64,
        /// Step size of the slow weights.
        alpha: f64,
    },
    /// A plateau factor outside (0, 1).
    #[error("the plateau factor must lie in (0, 1), got {factor}")]
    PlateauFactor {
        /// The factor.
        factor: f64,
    },
    /// A negative or non-finite rate floor.
    #[error("the minimum rate must be >= 0, got {min_lr}")]
    MinLr {
        /// The floor.
        min_lr: f64,
    },

    // --- Linear probes ---
    /// A probe label with one class only among the known training rows.
    #[error(
        "label '{label}' has {positives} positive and {negatives} negative training rows: a probe needs both"
    )]
    ProbeSingleClass {
        /// The label.
        label: String,
        /// Known positives.
        positives: usize,
        /// Known negatives.
        negatives: usize,
    },
    /// A multinomial probe with fewer than two classes among its rows.
    #[error("a multi-class probe needs training rows of at least two classes")]
    ProbeSingleClassOverall,
    /// Features, targets and label names that do not line up.
    #[error(
        "features have {rows} rows, targets {target_rows} rows x {k} labels, {names} label names"
    )]
    ProbeShape {
        /// Feature rows.
        rows: i64,
        /// Target rows.
        target_rows: i64,
        /// Target columns.
        k: i64,
        /// Label names given.
        names: usize,
    },
    /// A regularisation strength that is not positive and finite.
    #[error("C must be positive, got {c}")]
    ProbeC {
        /// The inverse regularisation strength.
        c: f64,
    },
    /// Features holding NaN or infinite values.
    #[error("features contain NaN or infinite values")]
    NonFiniteFeatures,
    /// An empty grid of C values.
    #[error("the C grid is empty")]
    EmptyCGrid,
    /// libtorch refused an operation (a tensor that is not 2-D, a
    /// conversion to host values).
    #[error("{0}")]
    Torch(tch::TchError),

    // --- Zero-shot prompts ---
    /// The prompts file is not valid TOML of the expected shape.
    #[error("prompts file: {0}")]
    PromptsToml(toml::de::Error),
    /// The prompts file names labels the task does not have.
    #[error("prompts file names unknown label(s): {unknown} (the task's labels: {known})")]
    UnknownPromptLabels {
        /// The unknown names, comma-separated.
        unknown: String,
        /// The task's labels, comma-separated.
        known: String,
    },
    /// A label with an empty prompt list.
    #[error("prompts file: label '{label}' has an empty {side} prompt list")]
    EmptyPrompts {
        /// The label.
        label: String,
        /// `"positive"` or `"negative"`.
        side: &'static str,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(cxr_nn::NnError),

    // --- Data-parallel training ---
    /// A launcher variable that does not parse.
    #[error("data-parallel launch: {name}={value:?} is not {expected}")]
    LaunchVar {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What it must be ("a non-negative integer", "a port number").
        expected: &'static str,
    },
    /// `RANK` without `WORLD_SIZE` or the reverse.
    #[error("data-parallel launch: RANK and WORLD_SIZE must be set together")]
    UnpairedRank,
    /// Slurm without a rendezvous host.
    #[error("data-parallel launch: under Slurm, set MASTER_ADDR or SLURM_JOB_NODELIST")]
    NoSlurmHost,
    /// A rank outside the world (or a world of zero).
    #[error("data-parallel launch: rank {rank} is outside a world of {world} process(es)")]
    RankOutsideWorld {
        /// The rank.
        rank: usize,
        /// The world size.
        world: usize,
    },
    /// A global batch that does not split evenly over the ranks.
    #[error(
        "data-parallel launch: the batch size ({batch_size}) is the global batch and must be a positive multiple of the number of ranks ({world})"
    )]
    UnevenBatch {
        /// The global batch size.
        batch_size: usize,
        /// The number of ranks.
        world: usize,
    },
    /// The rendezvous with the other ranks failed (the message names the
    /// peer, address or port).
    #[error("data-parallel rendezvous: {0}")]
    Rendezvous(String),
    /// NCCL or CUDA reported an error, or is not installed.
    #[error("NCCL: {0}")]
    Nccl(String),
    /// Ranks disagreed on a shape or kind, or another rank went away.
    #[error("collective: {0}")]
    Collective(String),

    // --- Transitional ---
    /// Transitional: a message from the `ssl` module, whose functions still
    /// return `String` errors that its training loop passes on through `?`.
    /// To be removed once `ssl` returns this type.
    #[error("{0}")]
    Ssl(String),
}

/// Transitional, with [`Error::Ssl`]: lets `ssl`'s training loop `?` its
/// `String` errors. Nothing outside `ssl` relies on it.
impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Ssl(message)
    }
}

impl Error {
    /// The divergence error at `step` of `epoch`, naming the checkpoint at
    /// `last` that survives (or saying none was written yet).
    pub fn non_finite(epoch: usize, step: u64, value: f64, last: &Path) -> Self {
        let kept = if last.exists() {
            format!("The last good checkpoint is {}.", last.display())
        } else {
            "No checkpoint had been written yet.".into()
        };
        Self::NonFinite {
            epoch,
            step,
            value,
            kept,
        }
    }

    /// `self` as found in the file `path`.
    pub fn in_file(self, path: &Path) -> Self {
        Self::InFile {
            path: path.to_owned(),
            cause: Box::new(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// The CLI prints `{:#}` (the message, then every source): an inner
    /// error already in the message must not come back as a source.
    #[test]
    fn inner_errors_are_printed_once() {
        let e = Error::Write {
            path: "run/last.safetensors".into(),
            cause: std::io::Error::other("disk full"),
        };
        assert_eq!(
            e.to_string(),
            "cannot write run/last.safetensors: disk full"
        );
        assert!(e.source().is_none());
        let e = Error::UnknownOptimizerKey {
            key: "v.momentum".into(),
        }
        .in_file(Path::new("run/last.safetensors"));
        assert_eq!(
            e.to_string(),
            "run/last.safetensors: optimizer state 'v.momentum' names no trainable parameter"
        );
        assert!(e.source().is_none());
    }
}
