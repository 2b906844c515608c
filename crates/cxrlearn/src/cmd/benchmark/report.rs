//! The benchmark report (`DIR/report.{json,md,html}`, `DIR/figures/`) from
//! whatever cells have finished, built with `cxr-report`.

use std::path::Path;

use anyhow::Result;
use cxr_report::{BaselineStrategy, Cell, CellInput, CellSource, CellStatus, Report, ReportConfig};

use super::grid::Grid;
use super::runner::{Record, Runner};

/// The report settings of a grid: the paper's (1000 replicates, 95%
/// intervals, p < 0.05), compared with the finetuned baseline when the grid
/// finetunes (Table 2), each overridable in `[report]`.
pub(crate) fn config(grid: &Grid) -> ReportConfig {
    let mut c = ReportConfig::new(grid.baseline.clone());
    c.baseline_strategy = match grid.report.baseline_strategy.as_deref() {
        Some("same") => BaselineStrategy::SameStrategy,
        Some(s) => BaselineStrategy::Fixed(s.to_owned()),
        None if grid.strategies.iter().any(|s| s == "finetune") => {
            BaselineStrategy::Fixed("finetune".into())
        }
        None => BaselineStrategy::SameStrategy,
    };
    c.reference_models = grid
        .model
        .iter()
        .filter(|m| m.reference)
        .map(|m| m.name.clone())
        .collect();
    if let Some(n) = grid.report.n_bootstrap {
        c.n_bootstrap = n;
    }
    if let Some(s) = grid.report.seed {
        c.seed = s;
    }
    if let Some(x) = grid.report.confidence {
        c.confidence = x;
    }
    if let Some(a) = grid.report.alpha {
        c.alpha = a;
    }
    if let Some(r) = grid.report.resample {
        c.resample = r;
    }
    c
}

/// Builds and writes the report of the grid's cells in `out`: cells whose
/// record is current and ok are read, failed ones carry their error, and
/// cells not run (or run with other settings) are listed as missing.
/// With `list`, prints each missing and failed cell.
pub(crate) fn write(grid: &Grid, out: &Path, quiet: bool, list: bool) -> Result<Report> {
    let runner = Runner::new(grid, out, 1, quiet)?;
    let mut inputs = Vec::new();
    for spec in grid.cells() {
        let dir = runner.cell_dir(&spec);
        let (hash, _, _) = runner.status(&spec)?;
        let record = Record::read(&dir.join("cell.json")).filter(|r| r.hash == hash);
        let cell = Cell {
            dataset: grid.dataset[spec.dataset].name.clone(),
            model: grid.model[spec.model].name.clone(),
            strategy: spec.strategy.clone(),
            seed: spec.seed,
            run_dir: dir,
            error: None,
            fraction: (spec.fraction < 1.0).then_some(spec.fraction),
        };
        let input = match record {
            Some(r) if r.status == "ok" => CellInput::read(&cell),
            Some(r) if r.status == "failed" => {
                let e = r.error.unwrap_or_else(|| "failed".into());
                CellInput {
                    cell: Cell {
                        error: Some(e.clone()),
                        ..cell
                    },
                    source: CellSource::Failed(e),
                }
            }
            // Not run, running, or results of other settings.
            _ => CellInput {
                cell,
                source: CellSource::Missing,
            },
        };
        inputs.push(input);
    }
    let report = Report::from_predictions(inputs, &config(grid))?;
    report.write(out)?;
    if list {
        for (status, name) in [
            (CellStatus::Missing, "missing"),
            (CellStatus::Failed, "failed"),
            (CellStatus::Unusable, "unusable"),
        ] {
            for c in report.cells_with(status) {
                // The last line of a failure is the child's `error:` line.
                let why = c.message.as_deref().and_then(|m| m.lines().last());
                match why {
                    Some(w) => eprintln!("{name}: {}: {w}", c.cell.describe()),
                    None => eprintln!("{name}: {}", c.cell.describe()),
                }
            }
        }
    }
    if !quiet {
        let count = |s| report.cells_with(s).count();
        eprintln!(
            "report: {} ({} cells: {} ok, {} missing, {} failed, {} unusable)",
            out.join("report.md").display(),
            report.cells.len(),
            count(CellStatus::Ok),
            count(CellStatus::Missing),
            count(CellStatus::Failed),
            count(CellStatus::Unusable),
        );
    }
    Ok(report)
}
