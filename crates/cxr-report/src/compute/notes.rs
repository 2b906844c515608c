//! The method notes: a plain-language description of every kind of number
//! in the report, stored in `report.json` and shown at the top of the
//! Markdown and HTML. Numbers in them are copies of `report.json` numbers
//! (counts, or values printed to 3 decimals), so each can be traced.

use cxr_stats::{Resample, Unit};

use crate::compute::MIN_POSITIVES;
use crate::report::{BaselineStrategy, DatasetReport, ReportConfig};

/// Table 2's multiplicity family, in words (also printed under the table).
pub(crate) const FAMILY_TABLE2: &str = "Table 2's family is every best-SSL-vs-comparator \
    comparison of the table (all datasets and strategies together)";
/// The per-model family (Tables 4/5).
pub(crate) const FAMILY_MODELS: &str = "the family of a model comparison is the models compared \
    with the comparator within one dataset and strategy";
/// The per-label family.
pub(crate) const FAMILY_LABELS: &str = "the family of a per-label comparison is the labels of one \
    dataset, strategy and model";

/// The unit of one dataset's replicates, in words, e.g. `patients (120
/// patients, 2.500 images per patient)`.
pub(crate) fn unit_phrase(d: &DatasetReport) -> String {
    match d.resample {
        Unit::Patient => format!(
            "patients ({} patients, {:.3} images per patient)",
            d.n_clusters, d.mean_cluster_size
        ),
        Unit::Image => format!("images ({} images, no patient clustering)", d.n_images),
    }
}

pub(crate) fn method_notes(config: &ReportConfig, datasets: &[DatasetReport]) -> Vec<String> {
    let pct = config.confidence * 100.0;
    let alpha = config.alpha;
    let comparator = match &config.baseline_strategy {
        BaselineStrategy::SameStrategy => format!(
            "the baseline model '{}' adapted with the same strategy",
            config.baseline_model
        ),
        BaselineStrategy::Fixed(s) => format!(
            "the baseline model '{}' adapted with strategy '{s}', for every strategy",
            config.baseline_model
        ),
    };
    let references = if config.reference_models.is_empty() {
        String::new()
    } else {
        format!(
            " Reference models, shown but never chosen as best: {}.",
            config.reference_models.join(", ")
        )
    };
    // What a drawn unit carries: a whole patient, unless the settings ask
    // for images, which then count as independent even when they are not.
    let request = match config.resample {
        Resample::Auto => {
            "patients whenever the predictions carry patient ids, else images: a patient is drawn with all of its images, so films of one patient are not treated as independent"
        }
        Resample::Patient => {
            "patients (as set in the report settings): a patient is drawn with all of its images, so films of one patient are not treated as independent"
        }
        Resample::Image => {
            "images, as if independent (as set in the report settings): films of one patient are drawn separately, which understates the uncertainty where patients have several"
        }
    };
    let units: Vec<String> = datasets
        .iter()
        .map(|d| format!("{}: {}", d.name, unit_phrase(d)))
        .collect();
    let units = if units.is_empty() {
        String::new()
    } else {
        format!(" Resampled unit per dataset: {}.", units.join("; "))
    };
    let mut notes = vec![
        "AUC: area under the ROC curve on the test split, ties counted one half; macro AUC: unweighted mean over the labels with both classes.".into(),
        format!(
            "Intervals: {pct}% percentile bootstrap ({} replicates, seed {}). A replicate draws {request}; all labels of an image are drawn together, and every model, strategy, seed and training fraction of a dataset is scored on the same replicates.{units}",
            config.n_bootstrap, config.seed
        ),
        "Seeds: a cell with several seeds reports the mean over seeds of the AUC, both for the point estimate and within each replicate; a single-seed cell matches `cxrlearn evaluate` with the same settings exactly.".into(),
        format!("Comparator: {comparator}."),
        format!(
            "Best SSL model: the non-baseline model with the highest macro AUC on the dataset and strategy (chosen on the test split, as in the paper); delta = best minus comparator, with the percentile interval of the paired replicate differences and a two-sided bootstrap p-value.{references}"
        ),
        format!(
            "Multiple comparisons: bootstrap p-values are Holm-adjusted within families, controlling the family-wise error rate at {alpha}: {FAMILY_TABLE2}; {FAMILY_MODELS} (Tables 4/5); {FAMILY_LABELS} (per-label tables). A difference is marked * when its Holm-adjusted p < {alpha}; raw and adjusted p-values are printed side by side."
        ),
        "Calibration: Brier score and expected calibration error (ECE, 15 equal-width bins) of each label on the test images with a known target, averaged over the labels whose scores are probabilities (and over seeds); point estimates without intervals. Scores outside [0, 1] are not squashed into it: such labels are left out and listed. The reliability diagrams pool the 15 bins over the averaged labels.".into(),
    ];
    let subgroups = datasets
        .iter()
        .flat_map(|d| &d.strategies)
        .any(|s| !s.subgroups.is_empty());
    if subgroups {
        notes.push(format!(
            "Subgroups (sex, age in bands <40, 40-60, 60-80, >=80, view, site, as the predictions carry them): macro AUC of the best SSL model and the comparator on each subgroup's images (mean over the labels with both classes in the subgroup, seeds averaged), with the interval of the same replicates restricted to the subgroup; a subgroup with fewer than {MIN_POSITIVES} positive images for every label is listed without an AUC. Gap: best minus worst subgroup, chosen on the point estimates, with the percentile interval of the paired replicate differences."
        ));
    }
    if datasets.iter().any(|d| !d.label_efficiency.is_empty()) {
        notes.push(
            "Label efficiency: cells adapted on a fraction of the training set appear only in the label-efficiency section (macro AUC against the fraction, same replicates); every other table and figure uses the full training set.".into(),
        );
    }
    notes
}
