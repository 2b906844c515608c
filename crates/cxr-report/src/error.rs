//! Errors of report building and writing.

use std::path::PathBuf;

use thiserror::Error;

/// Why a report could not be built or written. Problems with single cells
/// (a missing or unreadable predictions file) are not errors: they are
/// listed in the report.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The cell list or the settings are inconsistent.
    #[error("{0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `report.json` could not be parsed or serialised.
    #[error("{context}: {source}")]
    Json {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A figure could not be drawn or encoded.
    #[error("figure {name}: {message}")]
    Figure {
        /// The figure's file stem.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A statistic could not be computed.
    #[error(transparent)]
    Stats(#[from] cxr_stats::StatsError),
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
