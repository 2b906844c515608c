//! The cells of a benchmark grid and where their test predictions come from.

use std::path::PathBuf;

use cxr_stats::Predictions;
use serde::{Deserialize, Serialize};

/// Name of the test predictions file inside a run directory (interfaces.md §8).
pub const PREDICTIONS_FILE: &str = "predictions-test.csv";

/// One run of the grid: a model adapted to a dataset with one strategy and
/// one seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Dataset name as it should appear in the tables.
    pub dataset: String,
    /// Model name as it should appear in the tables.
    pub model: String,
    /// Adaptation strategy, e.g. `linear` or `finetune`.
    pub strategy: String,
    /// Seed of the run; several seeds of one (dataset, model, strategy) are averaged.
    pub seed: u64,
    /// The run directory written by `cxrlearn probe` or `finetune`.
    pub run_dir: PathBuf,
    /// Why the run failed, when the runner knows it did; such a cell is
    /// listed as failed and its directory is not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Cell {
    /// The predictions file this cell is read from.
    pub fn predictions_path(&self) -> PathBuf {
        self.run_dir.join(PREDICTIONS_FILE)
    }

    /// `dataset / strategy / model / seed`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} / {} / {} / seed {}",
            self.dataset, self.strategy, self.model, self.seed
        )
    }
}

/// Where a cell's test predictions come from.
#[derive(Debug, Clone)]
pub enum CellSource {
    /// Predictions already in memory (e.g. just produced by the runner).
    Loaded(Predictions),
    /// The run left no predictions file.
    Missing,
    /// The run failed or its predictions could not be read; the message says why.
    Failed(String),
}

/// A cell together with its predictions.
#[derive(Debug, Clone)]
pub struct CellInput {
    /// The cell.
    pub cell: Cell,
    /// Its test predictions (or why there are none).
    pub source: CellSource,
}

impl CellInput {
    /// Reads the cell's `predictions-test.csv`. A failed cell is not read;
    /// a missing file makes a missing cell; an unreadable one a failed cell
    /// carrying the parser's message.
    pub fn read(cell: &Cell) -> Self {
        let source = if let Some(e) = &cell.error {
            CellSource::Failed(e.clone())
        } else {
            let path = cell.predictions_path();
            if !path.is_file() {
                CellSource::Missing
            } else {
                match Predictions::from_path(&path) {
                    Ok(p) => CellSource::Loaded(p),
                    Err(e) => CellSource::Failed(e.to_string()),
                }
            }
        };
        Self {
            cell: cell.clone(),
            source,
        }
    }
}
