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
    #[error("{0}")]
    Parse(String),
    /// Model and baseline predictions do not describe the same images and labels.
    #[error("{0}")]
    Mismatch(String),
    /// A bootstrap setting is out of range.
    #[error("{0}")]
    Config(String),
}
