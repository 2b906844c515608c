//! `cxrlearn evaluate`: AUC with bootstrap confidence intervals, optionally
//! paired against a baseline, written as JSON, CSV and Markdown.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cxr_stats::{BootstrapConfig, Evaluation, Predictions, evaluate};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::output::OutputDir;

/// Arguments of `cxrlearn evaluate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Predictions file (CSV with columns id,label,target,score).
    #[arg(long)]
    pub predictions: PathBuf,
    /// Baseline predictions on the same ids and labels, for a paired comparison.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Number of bootstrap replicates (0 skips the intervals).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Coverage of the confidence intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Output directory for evaluation.json, evaluation.csv and evaluation.md.
    #[arg(long)]
    pub out: PathBuf,
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
    pub(crate) evaluation: &'a Evaluation,
    pub(crate) predictions: Input,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) baseline: Option<Input>,
    pub(crate) cxrlearn_version: &'static str,
}

fn read(path: &Path) -> Result<(Predictions, Input)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.display().to_string();
    let predictions = Predictions::from_reader(bytes.as_slice(), &name)?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    Ok((predictions, Input { path: name, sha256 }))
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let config = BootstrapConfig {
        n_replicates: args.bootstrap,
        seed: args.seed,
        confidence: args.confidence,
    };
    // The two files are independent: parse them on both cores.
    let (model, baseline) = rayon::join(
        || read(&args.predictions),
        || args.baseline.as_deref().map(read).transpose(),
    );
    let (model, model_input) = model?;
    let baseline = match baseline? {
        Some((b, input)) => Some((model.align(&b)?, input)),
        None => None,
    };
    let evaluation = evaluate(&model, baseline.as_ref().map(|b| &b.0), &config)?;
    let report = Report {
        evaluation: &evaluation,
        predictions: model_input,
        baseline: baseline.map(|b| b.1),
        cxrlearn_version: env!("CARGO_PKG_VERSION"),
    };
    let json = serde_json::to_string_pretty(&report)? + "\n";
    let csv = render_csv(&evaluation)?;
    let markdown = render_markdown(&evaluation);

    let out = OutputDir::create(&args.out)?;
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

fn num(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| format!("{v}"))
}

/// One row per label plus a `macro` row; empty cells where not applicable.
pub fn render_csv(e: &Evaluation) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "label",
        "n_pos",
        "n_neg",
        "auc",
        "ci_low",
        "ci_high",
        "baseline_auc",
        "delta",
        "delta_ci_low",
        "delta_ci_high",
        "p_value_delong",
        "p_value_bootstrap",
        "reason",
    ])?;
    let ci = |c: Option<[f64; 2]>, k: usize| num(c.map(|c| c[k]));
    for l in &e.labels {
        let c = l.comparison.as_ref();
        w.write_record([
            l.label.clone(),
            l.n_pos.to_string(),
            l.n_neg.to_string(),
            num(l.auc),
            ci(l.ci, 0),
            ci(l.ci, 1),
            num(c.and_then(|c| c.baseline_auc)),
            num(c.and_then(|c| c.delta)),
            ci(c.and_then(|c| c.delta_ci), 0),
            ci(c.and_then(|c| c.delta_ci), 1),
            num(c.and_then(|c| c.p_value_delong)),
            num(c.and_then(|c| c.p_value_bootstrap)),
            l.reason.clone().unwrap_or_default(),
        ])?;
    }
    let m = &e.macro_avg;
    let c = m.comparison.as_ref();
    w.write_record([
        "macro".to_owned(),
        String::new(),
        String::new(),
        num(m.auc),
        ci(m.ci, 0),
        ci(m.ci, 1),
        num(c.and_then(|c| c.baseline_auc)),
        num(c.and_then(|c| c.delta)),
        ci(c.and_then(|c| c.delta_ci), 0),
        ci(c.and_then(|c| c.delta_ci), 1),
        String::new(),
        num(c.and_then(|c| c.p_value_bootstrap)),
        String::new(),
    ])?;
    Ok(String::from_utf8(w.into_inner()?)?)
}

fn auc_cell(auc: Option<f64>, ci: Option<[f64; 2]>) -> String {
    match (auc, ci) {
        (Some(a), Some([lo, hi])) => format!("{a:.4} ({lo:.4}-{hi:.4})"),
        (Some(a), None) => format!("{a:.4}"),
        (None, _) => "n/a".to_owned(),
    }
}

fn delta_cell(delta: Option<f64>, ci: Option<[f64; 2]>) -> String {
    match (delta, ci) {
        (Some(d), Some([lo, hi])) => format!("{d:+.4} ({lo:+.4} to {hi:+.4})"),
        (Some(d), None) => format!("{d:+.4}"),
        (None, _) => "n/a".to_owned(),
    }
}

fn p_cell(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => "<0.001".to_owned(),
        Some(p) => format!("{p:.3}"),
        None => "n/a".to_owned(),
    }
}

/// A Markdown table: AUC with CI per label and macro, plus the paired columns
/// when a baseline was given.
pub fn render_markdown(e: &Evaluation) -> String {
    let pct = e.confidence * 100.0;
    let paired = e.macro_avg.comparison.is_some();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Evaluation\n\n{} images; AUC with {pct}% percentile bootstrap CI over {} replicates (seed {}).\n",
        e.n_images, e.n_bootstrap, e.seed
    );
    if paired {
        s.push_str(
            "| label | n+ | n- | AUC (CI) | baseline AUC | delta (CI) | p DeLong | p bootstrap |\n",
        );
        s.push_str("|---|---:|---:|---|---|---|---:|---:|\n");
    } else {
        s.push_str("| label | n+ | n- | AUC (CI) |\n|---|---:|---:|---|\n");
    }
    for l in &e.labels {
        let mut auc = auc_cell(l.auc, l.ci);
        if let Some(reason) = &l.reason {
            let _ = write!(auc, " ({reason})");
        }
        let _ = write!(s, "| {} | {} | {} | {auc} |", l.label, l.n_pos, l.n_neg);
        if let Some(c) = &l.comparison {
            let _ = write!(
                s,
                " {} | {} | {} | {} |",
                auc_cell(c.baseline_auc, None),
                delta_cell(c.delta, c.delta_ci),
                p_cell(c.p_value_delong),
                p_cell(c.p_value_bootstrap)
            );
        }
        s.push('\n');
    }
    let m = &e.macro_avg;
    let _ = write!(
        s,
        "| **macro ({} labels)** | | | {} |",
        m.n_labels,
        auc_cell(m.auc, m.ci)
    );
    if let Some(c) = &m.comparison {
        let _ = write!(
            s,
            " {} | {} | | {} |",
            auc_cell(c.baseline_auc, None),
            delta_cell(c.delta, c.delta_ci),
            p_cell(c.p_value_bootstrap)
        );
    }
    s.push('\n');
    s
}
