//! `cxrlearn models`: the model registry as a table (or JSON).

use anyhow::Result;
use cxr_nn::entry::Weights;
use cxr_nn::registry::{self, ModelEntry};
use serde_json::json;

/// Arguments of `cxrlearn models`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn to_json(e: &ModelEntry) -> serde_json::Value {
    let p = &e.preprocessing;
    json!({
        "name": e.name,
        "description": e.description,
        "architecture": e.architecture.describe(),
        "feature": e.feature,
        "feature_dim": e.feature_dim(),
        "checkpoint_file": e.checkpoint_file,
        "container": e.container,
        "preprocessing": {
            "size": p.size,
            "channels": p.channels,
            "mean": p.normalization.mean,
            "std": p.normalization.std,
            "resize": p.resize,
            "internal_resize": p.internal_resize,
        },
        "citation": e.citation,
        "licence": e.licence,
        "restricted": e.restricted,
        "weights": match e.weights {
            Weights::File => "file".to_owned(),
            Weights::Dir(f) => format!("{} directory", f.prefix()),
        },
    })
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<()> {
    let entries = registry::all();
    if args.json {
        let list: Vec<_> = entries.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<40} {:>5}  {:<9} {:<28} checkpoint",
        "name", "architecture", "dim", "input", "mean / std"
    );
    for e in &entries {
        let p = &e.preprocessing;
        let stats = format!(
            "{:.3} / {:.3}",
            p.normalization.mean[0], p.normalization.std[0]
        );
        println!(
            "{:<18} {:<40} {:>5}  {:<9} {:<28} {}",
            e.name,
            e.architecture.describe(),
            e.feature_dim(),
            format!("{}x{}", p.size, p.size),
            stats,
            e.checkpoint_file
        );
    }
    // Licences that restrict use are said next to the table, not buried in
    // the JSON: a user must read them before running the model.
    for e in entries.iter().filter(|e| e.restricted) {
        println!(
            "note: {}: {} (restricted use; read it before running the model)",
            e.name, e.licence
        );
    }
    Ok(())
}
