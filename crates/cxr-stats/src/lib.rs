//! Evaluation statistics for cxrlearn: ROC AUC with ties counted one half,
//! weighted AUC for O(n) bootstrap replicates, percentile bootstrap confidence
//! intervals resampling patients (all their images together) or images,
//! single model and paired, DeLong's test and Obuchowski's clustered DeLong,
//! Holm-adjusted p-values and Bonferroni intervals, calibration (Brier, ECE,
//! ACE, Platt scaling) and results per subgroup.
//!
//! Nothing here depends on a deep-learning engine, so the crate builds in
//! seconds and can be used on its own.

pub mod auc;
pub mod bootstrap;
pub mod calibration;
pub mod csv_bound;
pub mod delong;
pub mod error;
pub mod evaluation;
pub mod evaluation_file;
pub mod multiplicity;
pub mod obuchowski;
pub mod predictions;
mod quantile;
pub mod resample;
pub mod subgroups;

pub use auc::{SortedScores, roc_auc, roc_auc_weighted};
pub use bootstrap::BootstrapConfig;
pub use delong::{DelongComparison, delong_test, delong_variance};
pub use error::StatsError;
pub use evaluation::{
    Calibration, Evaluation, LabelComparison, LabelEvaluation, MacroEvaluation, Options, evaluate,
    evaluate_with,
};
pub use evaluation_file::{EvaluationFile, Source, evaluate_request};
pub use predictions::{ImageMetadata, Predictions};
pub use quantile::percentile;
pub use resample::{Resample, Resampler, Unit};
pub use subgroups::{AGE_BINS, SubgroupOptions};
