//! The benchmark report of cxrlearn: from a grid of finished runs (models x
//! datasets x adaptation strategies, possibly several seeds and training
//! fractions each) to the paper's Table 2 (best SSL model against the
//! ImageNet baseline), Tables 4 and 5 (macro AUC of every model) and
//! Figures 1-3, plus calibration, results per subgroup and label
//! efficiency, written as `report.json`, `report.md`, `report.html` and
//! `figures/*.{png,svg}`.
//!
//! Every number comes from one percentile bootstrap per dataset, drawn with
//! `cxr_stats`'s [`cxr_stats::Resampler`]: patients with all their images
//! when the predictions carry patient ids (else images), and replicate `b`
//! draws the same units for every model, strategy, seed and fraction of a
//! dataset, so all paired differences are paired on identical draws, and a
//! single-seed cell gets exactly the intervals `cxrlearn evaluate` writes
//! for it. P-values are Holm-adjusted within stated families.
//!
//! Seeds are averaged, not pooled: a cell's AUC (per label and per replicate)
//! is the mean over its seeds, so its interval describes test-set sampling of
//! the seed-averaged model and is comparable with single-seed cells.
//!
//! The usual entry points are [`Report::from_cells`] (reads each run's
//! `predictions-test.csv`), [`Report::from_predictions`] (predictions already
//! in memory), [`Report::rebuild`] (recomputes from a written `report.json`'s
//! cell list) and [`Report::write`].

mod compute;
mod error;
mod figures;
mod input;
mod markdown;
mod output;
mod report;
mod sections;
mod tables;

pub use cxr_stats::{Resample, Unit};
pub use error::ReportError;
pub use input::{Cell, CellInput, CellSource, PREDICTIONS_FILE};
pub use markdown::{MdContext, md_escape};
pub use output::Written;
pub use report::{
    BaselineStrategy, BestSsl, CellStatus, CellSummary, Comparison, DatasetReport, Estimate,
    FORMAT, LabelResult, LabelVsBaseline, ModelMean, ModelResult, Report, ReportConfig,
    StrategyReport, TaskKind,
};
pub use sections::{
    EfficiencyCurve, EfficiencyPoint, ExcludedLabel, ModelCalibration, ReliabilityPoint, Subgroup,
    SubgroupAttribute, SubgroupAuc, SubgroupGap, SubgroupModel,
};
pub use tables::{fmt_delta, fmt_p, fmt3};
