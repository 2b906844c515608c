//! `cxrlearn evaluate`: AUC with bootstrap confidence intervals (patients
//! resampled whenever they are known), optionally paired against a
//! baseline, with calibration and subgroup results, written as JSON, CSV and
//! Markdown.

mod render;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cxr_data::store::read::Store;
use cxr_stats::subgroups::AGE_BINS;
use cxr_stats::{BootstrapConfig, Options, Predictions, Resample, SubgroupOptions, evaluate_with};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use render::{render_csv, render_markdown};

use crate::cmd::common_args::ForceArgs;
use crate::output::{Existing, OutputDir};

/// Arguments of `cxrlearn evaluate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Predictions file (CSV with columns id,label,target,score; optional
    /// per-image columns patient_id, sex, age, view, site).
    #[arg(long)]
    pub predictions: PathBuf,
    /// Baseline predictions on the same ids and labels, for a paired comparison.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Number of bootstrap replicates (0 skips the intervals; at most
    /// 100000, cxr_stats::bootstrap::MAX_REPLICATES).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Coverage of the confidence intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// What a bootstrap replicate resamples: patient (all images of a drawn
    /// patient together; needs patient ids), image (as if images were
    /// independent, the paper's choice), or auto (patient whenever the
    /// predictions or --data give patient ids).
    #[arg(long, default_value = "auto")]
    pub resample: Resample,
    /// A dataset store whose manifest supplies each image's patient_id and
    /// subgroup columns (sex, age, view, site), joined on id.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Results per subgroup of these per-image columns (e.g. sex,age,view,site).
    #[arg(long, value_delimiter = ',')]
    pub subgroups: Vec<String>,
    /// Age band edges in years for --subgroups age.
    #[arg(long, value_delimiter = ',', default_values_t = AGE_BINS)]
    pub age_bins: Vec<f64>,
    /// Fewest positive and negative images a subgroup needs for an AUC.
    #[arg(long, default_value_t = 5)]
    pub subgroup_min: usize,
    /// Validation predictions: thresholds for the subgroups' true and false
    /// positive rates (each label's Youden point). Without it, the test set's
    /// own Youden point is used, and said to be optimistic.
    #[arg(long)]
    pub threshold_from: Option<PathBuf>,
    /// Validation predictions to fit Platt scaling on (per label); the test
    /// predictions' calibration is reported before and after it.
    #[arg(long)]
    pub calibrate_on: Option<PathBuf>,
    /// Bonferroni intervals over the labels, holding simultaneously at
    /// --confidence.
    #[arg(long)]
    pub simultaneous: bool,
    /// Output directory for evaluation.json, evaluation.csv and evaluation.md.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub force: ForceArgs,
}

/// A file an evaluation was computed from.
#[derive(Serialize)]
pub(crate) struct Input {
    pub(crate) path: String,
    pub(crate) sha256: String,
}

/// `evaluation.json`: the evaluation and the files behind it.
#[derive(Serialize)]
pub(crate) struct Report<'a> {
    #[serde(flatten)]
    pub(crate) evaluation: &'a cxr_stats::Evaluation,
    pub(crate) predictions: Input,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) baseline: Option<Input>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) calibrate_on: Option<Input>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) threshold_from: Option<Input>,
    pub(crate) cxrlearn_version: &'static str,
}

/// Hashes the bytes read through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn read(path: &Path, extra: &[&str]) -> Result<(Predictions, Input)> {
    // Parsed as it is read, not read whole first: the parser's bound on a
    // record (MAX_CSV_RECORD_BYTES) then stops a file without line breaks
    // (/dev/zero) after a megabyte rather than after reading gigabytes.
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hashing = Hashing {
        inner: std::io::BufReader::new(file),
        hash: Sha256::new(),
    };
    let name = path.display().to_string();
    let predictions = Predictions::from_reader_with(&mut hashing, &name, extra)?;
    // The parser has read to the end; anything left would be left out of the hash.
    std::io::copy(&mut hashing, &mut std::io::sink())
        .with_context(|| format!("cannot read {}", path.display()))?;
    let sha256 = format!("{:x}", hashing.hash.finalize());
    Ok((predictions, Input { path: name, sha256 }))
}

/// What the library cannot check: the flags' relations and the age bands'
/// order (the confidence is checked where it is used, in `evaluate_with`).
fn check(args: &Args) -> Result<()> {
    if args.age_bins.is_empty()
        || args.age_bins.iter().any(|a| !a.is_finite())
        || args.age_bins.windows(2).any(|w| w[0] >= w[1])
    {
        bail!("--age-bins must be finite ages in increasing order, e.g. 40,60,80");
    }
    if args.threshold_from.is_some() && args.subgroups.is_empty() {
        bail!("--threshold-from sets the subgroups' thresholds: give --subgroups too");
    }
    Ok(())
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    check(args)?;
    let extra: Vec<&str> = args.subgroups.iter().map(String::as_str).collect();
    // The two files are independent: parse them on both cores.
    let (model, baseline) = rayon::join(
        || read(&args.predictions, &extra),
        || {
            args.baseline
                .as_deref()
                .map(|b| read(b, &extra))
                .transpose()
        },
    );
    let (mut model, model_input) = model?;
    if let Some(store) = &args.data {
        let name = store.display().to_string();
        let meta = Store::open(store)?.image_metadata(&name);
        model
            .join(&meta)
            .with_context(|| format!("{}", args.predictions.display()))?;
    }
    let baseline = match baseline? {
        Some((b, input)) => Some((model.align(&b)?, input)),
        None => None,
    };
    let validation = |path: &Option<PathBuf>| path.as_deref().map(|p| read(p, &[])).transpose();
    let calibrate_on = validation(&args.calibrate_on)?;
    let threshold_from = validation(&args.threshold_from)?;
    let options = Options {
        bootstrap: BootstrapConfig {
            n_replicates: args.bootstrap,
            seed: args.seed,
            confidence: args.confidence,
        },
        resample: args.resample,
        simultaneous: args.simultaneous,
        calibrate_on: calibrate_on.as_ref().map(|(p, i)| (p, i.path.clone())),
        subgroups: (!args.subgroups.is_empty()).then(|| SubgroupOptions {
            columns: args.subgroups.clone(),
            age_bins: args.age_bins.clone(),
            thresholds_from: threshold_from.as_ref().map(|(p, i)| (p, i.path.clone())),
            min_count: args.subgroup_min,
        }),
    };
    let evaluation = evaluate_with(&model, baseline.as_ref().map(|b| &b.0), &options)
        .with_context(|| format!("{}", args.predictions.display()))?;
    let report = Report {
        evaluation: &evaluation,
        predictions: model_input,
        baseline: baseline.map(|b| b.1),
        data: args.data.as_ref().map(|d| d.display().to_string()),
        calibrate_on: calibrate_on.map(|c| c.1),
        threshold_from: threshold_from.map(|t| t.1),
        cxrlearn_version: env!("CARGO_PKG_VERSION"),
    };
    let json = serde_json::to_string_pretty(&report)? + "\n";
    let csv = render_csv(&evaluation)?;
    let markdown = render_markdown(&evaluation);

    let out = OutputDir::create(&args.out, Existing::from_flags(args.force.force, false), "")?;
    out.write("evaluation.json", json.as_bytes())?;
    out.write("evaluation.csv", csv.as_bytes())?;
    out.write("evaluation.md", markdown.as_bytes())?;
    out.commit();
    if !quiet {
        print!("{markdown}");
        eprintln!("wrote {}/evaluation.{{json,csv,md}}", args.out.display());
    }
    Ok(())
}
