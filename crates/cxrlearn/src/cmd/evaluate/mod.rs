//! `cxrlearn evaluate`: AUC with bootstrap confidence intervals (patients
//! resampled whenever they are known), optionally paired against a
//! baseline, with calibration and subgroup results, written as JSON, CSV and
//! Markdown.

mod render;

use std::path::PathBuf;

use anyhow::Result;
use cxr_data::store::read::Store;
use cxr_stats::evaluation_file::Request;
use cxr_stats::subgroups::AGE_BINS;
use cxr_stats::{BootstrapConfig, Resample, Source, evaluate_request};

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

/// The library's request for these flags (defaults and checks live there).
fn request(args: &Args) -> Result<Request> {
    let source = |p: &PathBuf| Source::Path(p.clone());
    let metadata = match &args.data {
        Some(store) => {
            let name = store.display().to_string();
            Some((Store::open(store)?.image_metadata(&name), name))
        }
        None => None,
    };
    Ok(Request {
        baseline: args.baseline.as_ref().map(source),
        bootstrap: BootstrapConfig {
            n_replicates: args.bootstrap,
            seed: args.seed,
            confidence: args.confidence,
        },
        resample: args.resample,
        metadata,
        subgroups: args.subgroups.clone(),
        age_bins: args.age_bins.clone(),
        subgroup_min: args.subgroup_min,
        threshold_from: args.threshold_from.as_ref().map(source),
        calibrate_on: args.calibrate_on.as_ref().map(source),
        simultaneous: args.simultaneous,
        ..Request::new(source(&args.predictions))
    })
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let request = request(args)?;
    let report = evaluate_request(&request)?;
    let evaluation = &report.evaluation;
    let json = serde_json::to_string_pretty(&report)? + "\n";
    let csv = render_csv(evaluation)?;
    let markdown = render_markdown(evaluation);

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
