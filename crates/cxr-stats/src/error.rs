//! Errors raised by the statistics routines.

use thiserror::Error;

/// Why a statistic could not be computed or an input was rejected.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum StatsError {
    /// Scores and targets differ in length.
    #[error("length mismatch: {scores} scores but {targets} targets")]
    LengthMismatch {
        /// Number of scores given.
        scores: usize,
        /// Number of targets given.
        targets: usize,
    },
    /// A score was NaN or infinite.
    #[error("score at position {index} is not finite ({value})")]
    NonFiniteScore {
        /// Position of the offending score.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A sample weight was negative or not finite.
    #[error("sample weight at position {index} is negative or not finite ({value})")]
    BadWeight {
        /// Position of the offending weight.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// The predictions file could not be parsed.
    #[error(
        "{file}: {}{reason}",
        line.map(|l| format!("line {l}: ")).unwrap_or_default()
    )]
    Parse {
        /// The file (as given, or the name a reader was opened under).
        file: String,
        /// The 1-based line, for an error in one row.
        line: Option<u64>,
        /// What is wrong (`score 'x' is not a number`).
        reason: String,
    },
    /// Model and baseline predictions do not describe the same images and labels.
    #[error("{0}")]
    Mismatch(String),
    /// More bootstrap replicates than [`crate::bootstrap::MAX_REPLICATES`].
    #[error(
        "{requested} bootstrap replicates is too many: at most {max} (their statistics are kept in memory)"
    )]
    TooManyReplicates {
        /// The count asked for.
        requested: usize,
        /// The largest allowed ([`crate::bootstrap::MAX_REPLICATES`]).
        max: usize,
    },
    /// A bootstrap setting is out of range.
    #[error("{0}")]
    Config(String),
    /// A subgroup column the predictions do not have.
    #[error(
        "subgroup column '{column}' is not in the predictions (give it as a column \
         of the predictions file, or --data STORE whose manifest has it)"
    )]
    NoSubgroupColumn {
        /// The column asked for.
        column: String,
    },
    /// A resampling unit that is none of patient, image or auto.
    #[error("unknown resampling unit '{value}' (expected patient, image or auto)")]
    UnknownResample {
        /// The value given.
        value: String,
    },
    /// Calibration of a label without an image of known target.
    #[error("no images with a known target")]
    NoKnownTargets,
    /// Calibration statistics of scores outside [0, 1].
    #[error(
        "scores are not probabilities (they range from {lo} to {hi}, outside [0, 1]); \
         calibration is undefined (Platt scaling with --calibrate-on maps them to probabilities)"
    )]
    NotProbabilities {
        /// The smallest score.
        lo: f64,
        /// The largest score.
        hi: f64,
    },
    /// Platt scaling fitted to validation predictions of one class.
    #[error("the validation predictions need both classes")]
    OneClass,
    /// Platt scaling fitted to validation scores that separate the classes.
    #[error(
        "Platt scaling has no finite fit: the validation scores separate the \
         classes, so the unpenalised slope is unbounded"
    )]
    Separated,
    /// Platt scaling's Newton iterations did not converge.
    #[error("Platt scaling did not converge")]
    NoConvergence,
    /// An input file could not be read.
    #[error("cannot read {file}: {reason}")]
    Io {
        /// The file as given.
        file: String,
        /// What kind of failure (not found, permission, ...).
        kind: std::io::ErrorKind,
        /// The system's message.
        reason: String,
    },
    /// A failure while evaluating one file's predictions, with the file
    /// named first (the message, not a separate cause, so it is printed once).
    #[error("{file}: {error}")]
    InFile {
        /// The predictions file.
        file: String,
        /// What went wrong.
        error: Box<StatsError>,
    },
}
