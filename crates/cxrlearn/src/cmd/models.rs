//! `cxrlearn models`: the model registry as a table (or JSON).

use anyhow::Result;
use cxr_nn::registry::{self, ModelEntry};

/// Arguments of `cxrlearn models`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A licence's name without its commentary (up to the first `:`, `,` or
/// ` (`), for the table; `--json` has it whole.
fn short_licence(licence: &str) -> &str {
    let end = [": ", ", ", " ("]
        .iter()
        .filter_map(|sep| licence.find(sep))
        .min()
        .unwrap_or(licence.len());
    &licence[..end]
}

/// Runs the subcommand.
pub fn run(args: &Args) -> Result<()> {
    let entries = registry::all();
    if args.json {
        let list: Vec<_> = entries.iter().map(ModelEntry::summary).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let p = &e.preprocessing;
            [
                e.name.to_owned(),
                e.architecture.describe(),
                e.feature_dim().to_string(),
                format!("{}x{}", p.size, p.size),
                format!(
                    "{:.3} / {:.3}",
                    p.normalization.mean[0], p.normalization.std[0]
                ),
                short_licence(e.licence).to_owned(),
                e.checkpoint_file.to_owned(),
            ]
        })
        .collect();
    let header = [
        "name",
        "architecture",
        "dim",
        "input",
        "mean / std",
        "licence",
        "checkpoint",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..6).map(width).collect();
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate().take(6) {
            // Numbers right-aligned, text left-aligned.
            if i == 2 {
                out += &format!("{cell:>w$}  ", w = widths[i]);
            } else {
                out += &format!("{cell:<w$}  ", w = widths[i]);
            }
        }
        out + cells[6]
    };
    println!("{}", line(header));
    for r in &rows {
        println!("{}", line(r.each_ref().map(String::as_str)));
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
