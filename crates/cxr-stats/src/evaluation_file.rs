//! An evaluation from its inputs as files (or bytes): what `cxrlearn
//! evaluate` writes as `evaluation.json` and what the Python package's
//! `cxrlearn.evaluate` returns, computed in one place so the two agree.
//!
//! The inputs are hashed as they are parsed (each record bounded, so a file
//! without line breaks fails after a megabyte rather than after gigabytes),
//! and their paths and SHA-256s are recorded beside the numbers.

use std::io::Read;
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    BootstrapConfig, Evaluation, ImageMetadata, Options, Predictions, Resample, StatsError,
    SubgroupOptions, evaluate_with,
};

/// Where a predictions table comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A CSV file.
    Path(PathBuf),
    /// CSV bytes already in memory, with the name messages and
    /// `evaluation.json` give them (a Python DataFrame: `<DataFrame>`).
    Bytes {
        /// Shown as the file's path.
        name: String,
        /// The CSV.
        bytes: Vec<u8>,
    },
    /// Predictions already parsed (arrays from Python), with the name
    /// recorded as their path; they have no file, so no SHA-256.
    Memory {
        /// Shown as the file's path.
        name: String,
        /// The predictions.
        predictions: Box<Predictions>,
    },
}

impl Source {
    fn name(&self) -> String {
        match self {
            Self::Path(p) => p.display().to_string(),
            Self::Bytes { name, .. } | Self::Memory { name, .. } => name.clone(),
        }
    }
}

/// A file an evaluation was computed from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Input {
    /// Its path as given (or its name, for bytes).
    pub path: String,
    /// SHA-256 of its bytes (none for predictions given as arrays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `evaluation.json`: the evaluation and the inputs behind it.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationFile {
    /// The numbers.
    #[serde(flatten)]
    pub evaluation: Evaluation,
    /// The model's predictions.
    pub predictions: Input,
    /// The baseline's, for a paired comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Input>,
    /// The store whose manifest supplied patients and subgroup columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Validation predictions Platt scaling was fitted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibrate_on: Option<Input>,
    /// Validation predictions the subgroups' thresholds came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_from: Option<Input>,
    /// The version that computed it.
    pub cxrlearn_version: &'static str,
}

/// Every setting of an evaluation (`cxrlearn evaluate`'s flags).
#[derive(Debug, Clone)]
pub struct Request {
    /// The model's predictions.
    pub predictions: Source,
    /// A baseline's, on the same ids and labels.
    pub baseline: Option<Source>,
    /// Replicates, seed, coverage.
    pub bootstrap: BootstrapConfig,
    /// The unit replicates resample.
    pub resample: Resample,
    /// Per-image patients and subgroup columns joined on id (a store's
    /// manifest), with the name recorded as `data`.
    pub metadata: Option<(ImageMetadata, String)>,
    /// Subgroup columns.
    pub subgroups: Vec<String>,
    /// Age band edges in years, increasing.
    pub age_bins: Vec<f64>,
    /// Fewest positives and negatives a subgroup needs for an AUC.
    pub subgroup_min: usize,
    /// Validation predictions for the subgroups' thresholds.
    pub threshold_from: Option<Source>,
    /// Validation predictions to fit Platt scaling on.
    pub calibrate_on: Option<Source>,
    /// Bonferroni intervals over the labels.
    pub simultaneous: bool,
}

impl Request {
    /// The defaults of `cxrlearn evaluate` for `predictions`: 1000
    /// replicates, seed 0, 95% intervals, patients resampled when known,
    /// default age bands, subgroups of at least 5 positives and negatives.
    pub fn new(predictions: Source) -> Self {
        Self {
            predictions,
            baseline: None,
            bootstrap: BootstrapConfig {
                n_replicates: 1000,
                seed: 0,
                confidence: 0.95,
            },
            resample: Resample::Auto,
            metadata: None,
            subgroups: Vec::new(),
            age_bins: crate::AGE_BINS.to_vec(),
            subgroup_min: 5,
            threshold_from: None,
            calibrate_on: None,
            simultaneous: false,
        }
    }

    /// What [`evaluate_with`] does not check: the settings' relations and the
    /// age bands' order.
    ///
    /// # Errors
    /// [`StatsError::Config`] naming the setting.
    pub fn check(&self) -> Result<(), StatsError> {
        if self.age_bins.is_empty()
            || self.age_bins.iter().any(|a| !a.is_finite())
            || self.age_bins.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(StatsError::Config(
                "age bins must be finite ages in increasing order, e.g. 40,60,80".into(),
            ));
        }
        if self.threshold_from.is_some() && self.subgroups.is_empty() {
            return Err(StatsError::Config(
                "threshold_from sets the subgroups' thresholds: give subgroups too".into(),
            ));
        }
        Ok(())
    }
}

/// Hashes the bytes read through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn io_error(name: &str, e: &std::io::Error) -> StatsError {
    StatsError::Io {
        file: name.to_owned(),
        kind: e.kind(),
        reason: e.to_string(),
    }
}

/// Parses `source` (keeping the per-image columns `extra`) and hashes it.
///
/// # Errors
/// [`StatsError::Io`] when the file cannot be read; as
/// [`Predictions::from_reader_with`].
pub fn read(source: &Source, extra: &[&str]) -> Result<(Predictions, Input), StatsError> {
    let name = source.name();
    let reader: Box<dyn Read> = match source {
        Source::Memory { predictions, .. } => {
            let input = Input {
                path: name,
                sha256: None,
            };
            return Ok((predictions.as_ref().clone(), input));
        }
        Source::Path(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(|e| io_error(&name, &e))?,
        )),
        Source::Bytes { bytes, .. } => Box::new(bytes.as_slice()),
    };
    // Parsed as it is read, not read whole first: the parser's bound on a
    // record (MAX_CSV_RECORD_BYTES) then stops a file without line breaks
    // (/dev/zero) after a megabyte rather than after reading gigabytes.
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
    };
    let predictions = Predictions::from_reader_with(&mut hashing, &name, extra)?;
    // The parser has read to the end; anything left would be left out of the hash.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| io_error(&name, &e))?;
    let sha256 = Some(format!("{:x}", hashing.hash.finalize()));
    Ok((predictions, Input { path: name, sha256 }))
}

/// Evaluates `request`: reads its inputs (the model's and the baseline's on
/// both cores), joins the metadata, aligns the baseline, and runs
/// [`evaluate_with`].
///
/// # Errors
/// As [`Request::check`], [`read`], [`Predictions::join`],
/// [`Predictions::align`] and [`evaluate_with`]; a failure in the
/// evaluation proper is prefixed with the predictions' name.
pub fn evaluate_request(request: &Request) -> Result<EvaluationFile, StatsError> {
    request.check()?;
    let extra: Vec<&str> = request.subgroups.iter().map(String::as_str).collect();
    let (model, baseline) = rayon::join(
        || read(&request.predictions, &extra),
        || {
            request
                .baseline
                .as_ref()
                .map(|b| read(b, &extra))
                .transpose()
        },
    );
    let (mut model, model_input) = model?;
    let name = model_input.path.clone();
    let in_file = |e: StatsError| StatsError::InFile {
        file: name.clone(),
        error: Box::new(e),
    };
    if let Some((meta, _)) = &request.metadata {
        model.join(meta).map_err(in_file)?;
    }
    let baseline = match baseline? {
        Some((b, input)) => Some((model.align(&b)?, input)),
        None => None,
    };
    let validation = |s: &Option<Source>| s.as_ref().map(|s| read(s, &[])).transpose();
    let calibrate_on = validation(&request.calibrate_on)?;
    let threshold_from = validation(&request.threshold_from)?;
    let options = Options {
        bootstrap: request.bootstrap,
        resample: request.resample,
        simultaneous: request.simultaneous,
        calibrate_on: calibrate_on.as_ref().map(|(p, i)| (p, i.path.clone())),
        subgroups: (!request.subgroups.is_empty()).then(|| SubgroupOptions {
            columns: request.subgroups.clone(),
            age_bins: request.age_bins.clone(),
            thresholds_from: threshold_from.as_ref().map(|(p, i)| (p, i.path.clone())),
            min_count: request.subgroup_min,
        }),
    };
    let evaluation =
        evaluate_with(&model, baseline.as_ref().map(|b| &b.0), &options).map_err(in_file)?;
    Ok(EvaluationFile {
        evaluation,
        predictions: model_input,
        baseline: baseline.map(|b| b.1),
        data: request.metadata.as_ref().map(|(_, name)| name.clone()),
        calibrate_on: calibrate_on.map(|c| c.1),
        threshold_from: threshold_from.map(|t| t.1),
        cxrlearn_version: env!("CARGO_PKG_VERSION"),
    })
}
