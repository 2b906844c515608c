//! Evaluation statistics for cxrlearn: ROC AUC with ties counted one half,
//! weighted AUC for O(n) bootstrap replicates, percentile bootstrap confidence
//! intervals (single model and paired), and DeLong's test for two correlated AUCs.
//!
//! Nothing here depends on a deep-learning engine, so the crate builds in
//! seconds and can be used on its own.

pub mod auc;
pub mod bootstrap;
pub mod delong;
pub mod error;
pub mod predictions;
mod quantile;

pub use auc::{SortedScores, roc_auc, roc_auc_weighted};
pub use bootstrap::{BootstrapConfig, Evaluation, LabelEvaluation, MacroEvaluation, evaluate};
pub use delong::{DelongComparison, delong_test, delong_variance};
pub use error::StatsError;
pub use predictions::Predictions;
pub use quantile::percentile;
