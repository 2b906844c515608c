//! Statistics from Python: `roc_auc`, `delong`, and `evaluate` (through
//! `cxr_stats::evaluate_request`, the function behind `cxrlearn evaluate`,
//! so both return the same `evaluation.json` for the same input). Large
//! arrays cross as little-endian float64 bytes (one `memcpy` on the Python
//! side, no per-element objects).

use std::collections::BTreeMap;
use std::path::PathBuf;

use cxr_data::store::read::Store;
use cxr_stats::evaluation_file::Request;
use cxr_stats::{BootstrapConfig, Predictions, Resample, Source, evaluate_request};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{OrPy, guard, value_error};

/// `bytes` as float64 values (little-endian, as numpy writes them).
fn f64s(bytes: &[u8], what: &str) -> PyResult<Vec<f64>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(value_error(format!("{what}: not float64 data")));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")))
        .collect())
}

/// Binary targets (0 or 1) from float64 values.
fn targets_of(values: &[f64]) -> PyResult<Vec<bool>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| match v {
            0.0 => Ok(false),
            1.0 => Ok(true),
            _ => Err(value_error(format!(
                "y_true[{i}] is {v}: targets must be 0 or 1"
            ))),
        })
        .collect()
}

/// ROC AUC (ties count one half), optionally with per-sample weights.
#[pyfunction]
#[pyo3(signature = (y_true, y_score, sample_weight=None))]
pub fn roc_auc(y_true: &[u8], y_score: &[u8], sample_weight: Option<&[u8]>) -> PyResult<f64> {
    guard(|| {
        let targets = targets_of(&f64s(y_true, "y_true")?)?;
        let scores = f64s(y_score, "y_score")?;
        let auc = match sample_weight {
            Some(w) => {
                cxr_stats::roc_auc_weighted(&targets, &scores, &f64s(w, "sample_weight")?).py()?
            }
            None => cxr_stats::roc_auc(&targets, &scores).py()?,
        };
        auc.ok_or_else(|| {
            value_error(
                "only one class present in y_true: the ROC AUC is not defined (it needs \
                 positives and negatives)",
            )
        })
    })
}

/// DeLong's test of two scores on the same targets: a dict with `auc_a`,
/// `auc_b`, `variance`, `z`, `p_value`.
#[pyfunction]
pub fn delong<'py>(
    py: Python<'py>,
    y_true: &[u8],
    score_a: &[u8],
    score_b: &[u8],
) -> PyResult<Bound<'py, PyDict>> {
    guard(|| {
        let targets = targets_of(&f64s(y_true, "y_true")?)?;
        let c = cxr_stats::delong_test(
            &targets,
            &f64s(score_a, "score_a")?,
            &f64s(score_b, "score_b")?,
        )
        .py()?;
        let d = PyDict::new(py);
        d.set_item("auc_a", c.auc_a)?;
        d.set_item("auc_b", c.auc_b)?;
        d.set_item("variance", c.variance)?;
        d.set_item("z", c.z)?;
        d.set_item("p_value", c.p_value)?;
        Ok(d)
    })
}

/// Where an evaluation's predictions come from (built by `cxrlearn.evaluate`).
#[pyclass(frozen, module = "cxrlearn._native")]
#[derive(Clone)]
pub struct NativeSource(Source);

#[pymethods]
impl NativeSource {
    /// A predictions CSV file.
    #[staticmethod]
    fn path(path: PathBuf) -> Self {
        Self(Source::Path(path))
    }

    /// A predictions CSV in memory (a DataFrame written as CSV).
    #[staticmethod]
    fn csv(name: String, bytes: Vec<u8>) -> Self {
        Self(Source::Bytes { name, bytes })
    }

    /// Wide arrays: `targets` and `scores` `[n, k]` float64 bytes (target
    /// NaN where unknown), image `ids`, `labels`, optional `patients` and
    /// per-image attribute columns.
    #[staticmethod]
    #[pyo3(signature = (name, ids, labels, targets, scores, patients=None, attributes=None))]
    fn arrays(
        name: String,
        ids: Vec<String>,
        labels: Vec<String>,
        targets: &[u8],
        scores: &[u8],
        patients: Option<Vec<String>>,
        attributes: Option<BTreeMap<String, Vec<Option<String>>>>,
    ) -> PyResult<Self> {
        guard(|| {
            let (n, k) = (ids.len(), labels.len());
            let t = f64s(targets, "targets")?;
            let s = f64s(scores, "scores")?;
            if t.len() != n * k || s.len() != n * k {
                return Err(value_error(format!(
                    "targets and scores must be [{n}, {k}] (images x labels)"
                )));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
                return Err(value_error(format!("image id {dup:?} appears twice")));
            }
            let column =
                |data: &[f64], j: usize| -> Vec<f64> { (0..n).map(|i| data[i * k + j]).collect() };
            let mut target_rows = Vec::with_capacity(k);
            for (j, label) in labels.iter().enumerate() {
                let col: PyResult<Vec<Option<bool>>> = column(&t, j)
                    .into_iter()
                    .map(|v| match v {
                        v if v.is_nan() => Ok(None),
                        0.0 => Ok(Some(false)),
                        1.0 => Ok(Some(true)),
                        v => Err(value_error(format!(
                            "label {label:?}: target {v} is not 0, 1 or NaN"
                        ))),
                    })
                    .collect();
                target_rows.push(col?);
            }
            if patients.as_ref().is_some_and(|c| c.len() != n) {
                return Err(value_error("patients must have one entry per image"));
            }
            let attributes = attributes.unwrap_or_default();
            if let Some((c, _)) = attributes.iter().find(|(_, v)| v.len() != n) {
                return Err(value_error(format!(
                    "column {c:?} must have one entry per image"
                )));
            }
            let predictions = Predictions {
                ids,
                labels,
                targets: target_rows,
                scores: (0..k).map(|j| column(&s, j)).collect(),
                patients,
                attributes,
            };
            Ok(Self(Source::Memory {
                name,
                predictions: Box::new(predictions),
            }))
        })
    }
}

/// `cxrlearn evaluate`, returning `evaluation.json` as JSON text.
#[pyfunction]
#[pyo3(signature = (
    predictions, *, baseline=None, bootstrap=1000, seed=0, confidence=0.95, resample="auto",
    data=None, subgroups=None, age_bins=None, subgroup_min=5, threshold_from=None,
    calibrate_on=None, simultaneous=false
))]
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    py: Python<'_>,
    predictions: NativeSource,
    baseline: Option<NativeSource>,
    bootstrap: usize,
    seed: u64,
    confidence: f64,
    resample: &str,
    data: Option<PathBuf>,
    subgroups: Option<Vec<String>>,
    age_bins: Option<Vec<f64>>,
    subgroup_min: usize,
    threshold_from: Option<NativeSource>,
    calibrate_on: Option<NativeSource>,
    simultaneous: bool,
) -> PyResult<String> {
    guard(|| {
        let resample: Resample = resample.parse().py()?;
        py.allow_threads(|| -> anyhow::Result<String> {
            let metadata = match &data {
                Some(store) => {
                    let name = store.display().to_string();
                    Some((Store::open(store)?.image_metadata(&name), name))
                }
                None => None,
            };
            let defaults = Request::new(predictions.0);
            let request = Request {
                baseline: baseline.map(|b| b.0),
                bootstrap: BootstrapConfig {
                    n_replicates: bootstrap,
                    seed,
                    confidence,
                },
                resample,
                metadata,
                subgroups: subgroups.unwrap_or_default(),
                age_bins: age_bins.unwrap_or(defaults.age_bins.clone()),
                subgroup_min,
                threshold_from: threshold_from.map(|s| s.0),
                calibrate_on: calibrate_on.map(|s| s.0),
                simultaneous,
                ..defaults
            };
            let report = evaluate_request(&request)?;
            Ok(serde_json::to_string(&report)?)
        })
        .map_err(crate::errors::to_py)
    })
}
