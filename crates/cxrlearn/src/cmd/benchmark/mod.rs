//! `cxrlearn benchmark`: a grid of datasets x models x strategies x seeds
//! (docs/benchmark.md), run locally with `--jobs N` cells at a time, one cell
//! per call with `--task-index I` (what Slurm array tasks do), or emitted as
//! a Slurm job array with `--emit-slurm FILE`; then the report (Table 2,
//! Tables 4/5, figures). `benchmark report --out DIR` rebuilds the report
//! from whatever cells have finished.
//!
//! Layout of `DIR`: `config.toml` (the resolved grid), `cells/<dataset>/
//! <model>/<strategy>/seed-<n>/` (a probe or finetune run directory plus
//! `cell.json` and `benchmark.log`), `features/<dataset>/<model>/` (frozen
//! features shared by seeds), `pretrain/<model>/` (pretraining recipes),
//! `slurm/` (array task logs) and the report files. See `docs/benchmark.md`.

// Crate-visible for the grid's fuzz target (fuzz/fuzz_targets/benchmark_grid.rs),
// which compiles this crate's modules to reach the parser, and its regression test.
pub(crate) mod grid;
mod lock;
mod report;
mod runner;
mod settings;
mod slurm;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::output::write_atomic;
use crate::run::{to_toml, versions};
use grid::{CellSpec, Grid};
use runner::{Outcome, Runner};

/// Arguments of `cxrlearn benchmark`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// `report`: rebuild the report only.
    #[command(subcommand)]
    pub action: Option<Action>,
    /// The grid (TOML): [[dataset]] name/store, [[model]] name/model or
    /// name/pretrain, baseline, strategies, seeds, [features], [probe],
    /// [finetune], [slurm], [report]. See docs/benchmark.md.
    #[arg(long, required = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Benchmark directory: cells, cached features, pretraining runs, report.
    #[arg(long, required = true, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Cells run at once (each a child process; they share the cores).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub jobs: usize,
    /// Write a Slurm job array script (one task per cell) instead of running.
    #[arg(long, conflicts_with = "task_index", value_name = "FILE")]
    pub emit_slurm: Option<PathBuf>,
    /// Run only cell I (0-based; order: dataset, model, strategy, seed), no report.
    #[arg(long, value_name = "I")]
    pub task_index: Option<usize>,
}

/// What `cxrlearn benchmark` can do besides running the grid.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Rebuilds the report from whatever cells have finished (missing ones listed).
    Report(ReportArgs),
}

/// Arguments of `cxrlearn benchmark report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Benchmark directory written by `cxrlearn benchmark`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    if let Some(Action::Report(r)) = &args.action {
        let out = std::path::absolute(&r.out)?;
        let grid = Grid::from_run_config(&out.join("config.toml"))?;
        report::write(&grid, &out, quiet, true)?;
        return Ok(());
    }
    let (Some(config), Some(out)) = (&args.config, &args.out) else {
        bail!("benchmark needs --config and --out (or: benchmark report --out DIR)");
    };
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let grid = Grid::load(config)?;
    let out = std::path::absolute(out)?;
    let cells = grid.cells();
    write_run_config(&out, &grid)?;
    if let Some(file) = &args.emit_slurm {
        return emit_slurm(
            &grid,
            &std::path::absolute(config)?,
            &out,
            cells.len(),
            file,
            quiet,
        );
    }
    let runner = Runner::new(&grid, &out, args.jobs, quiet)?;
    if let Some(i) = args.task_index {
        return run_one(&grid, &runner, &cells, i, quiet);
    }
    run_all(&grid, &runner, &cells, &out, args.jobs, quiet)
}

/// Writes `DIR/config.toml` (the resolved grid, as every run directory
/// records its settings) unless it already holds exactly this; refuses a
/// directory holding another command's run.
fn write_run_config(out: &Path, grid: &Grid) -> Result<()> {
    let path = out.join("config.toml");
    let text = to_toml(&json!({
        "command": "benchmark",
        "versions": versions(),
        "benchmark": serde_json::to_value(grid)?,
    }))?;
    if let Ok(old) = std::fs::read_to_string(&path) {
        let command = toml::from_str::<toml::Table>(&old)
            .ok()
            .and_then(|t| t.get("command").and_then(|c| c.as_str()).map(str::to_owned));
        if command.as_deref() != Some("benchmark") {
            bail!(
                "{} holds a `{}` run, not a benchmark; choose another --out",
                out.display(),
                command.unwrap_or_else(|| "unknown".into())
            );
        }
        if old == text {
            return Ok(());
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(&path, text.as_bytes())
}

fn emit_slurm(
    grid: &Grid,
    config: &Path,
    out: &Path,
    n: usize,
    file: &Path,
    quiet: bool,
) -> Result<()> {
    // Slurm does not create the --output directory: a missing one loses every log.
    let logs = out.join("slurm");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let exe = std::env::current_exe().context("cannot locate the cxrlearn binary")?;
    let text = slurm::script(
        &slurm::Script {
            exe: &exe,
            config,
            out,
            n_cells: n,
            libtorch: slurm::libtorch_dir(),
        },
        &grid.slurm,
    );
    write_atomic(file, text.as_bytes())?;
    if !quiet {
        eprintln!(
            "wrote {}: a job array of {n} tasks (0-{}); submit with `sbatch {}`, \
             then `cxrlearn benchmark report --out {}`",
            file.display(),
            n - 1,
            file.display(),
            out.display()
        );
    }
    Ok(())
}

fn run_one(grid: &Grid, runner: &Runner, cells: &[CellSpec], i: usize, quiet: bool) -> Result<()> {
    let cell = cells.get(i).with_context(|| {
        format!(
            "--task-index {i}: the grid has {} cells (0 to {})",
            cells.len(),
            cells.len() - 1
        )
    })?;
    let name = grid.describe(cell);
    match runner.run_cell(cell) {
        Outcome::UpToDate => {
            if !quiet {
                eprintln!("cell {i} ({name}): up to date");
            }
            Ok(())
        }
        Outcome::Ran(s) => {
            if !quiet {
                eprintln!("cell {i} ({name}): ok ({s:.1} s)");
            }
            Ok(())
        }
        Outcome::Failed(e) => bail!(
            "cell {i} ({name}) failed, see {}: {}",
            runner.cell_dir(cell).join("cell.json").display(),
            last_line(&e)
        ),
    }
}

fn run_all(
    grid: &Grid,
    runner: &Runner,
    cells: &[CellSpec],
    out: &Path,
    jobs: usize,
    quiet: bool,
) -> Result<()> {
    let started = Instant::now();
    // Recipes first, side by side, so no cell thread idles on a pretraining
    // lock; cells of a failed recipe then fail with its error.
    let recipes: Vec<usize> = (0..grid.model.len())
        .filter(|&m| runner.needs_pretraining(m))
        .filter(|&m| {
            cells
                .iter()
                .any(|c| c.model == m && !runner.status(c).is_ok_and(|s| s.2))
        })
        .collect();
    parallel(jobs, &recipes, |&m| {
        if let Err(e) = runner.ensure_pretrained(m) {
            eprintln!("{}", last_line(&format!("{e:#}")));
        }
    });
    let done = AtomicUsize::new(0);
    let outcomes = parallel(jobs, cells, |cell| {
        let o = runner.run_cell(cell);
        let k = done.fetch_add(1, Ordering::SeqCst) + 1;
        let what = match &o {
            Outcome::UpToDate => "up to date".to_owned(),
            Outcome::Ran(s) => format!("ok ({s:.1} s)"),
            Outcome::Failed(e) => format!("FAILED: {}", last_line(e)),
        };
        if !quiet || matches!(o, Outcome::Failed(_)) {
            eprintln!("[{k}/{}] {}: {what}", cells.len(), grid.describe(cell));
        }
        o
    });
    let ran = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Ran(_)))
        .count();
    let fresh = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::UpToDate))
        .count();
    let failed: Vec<(&CellSpec, &String)> = cells
        .iter()
        .zip(&outcomes)
        .filter_map(|(c, o)| match o {
            Outcome::Failed(e) => Some((c, e)),
            _ => None,
        })
        .collect();
    if !quiet || !failed.is_empty() {
        eprintln!(
            "benchmark: {} cells: {ran} ran, {fresh} up to date, {} failed ({:.1} s)",
            cells.len(),
            failed.len(),
            started.elapsed().as_secs_f64()
        );
    }
    report::write(grid, out, quiet, false)?;
    if !failed.is_empty() {
        eprintln!("failed cells:");
        for (c, e) in &failed {
            eprintln!("  {}: {}", grid.describe(c), last_line(e));
        }
        bail!(
            "{} of {} cells failed (listed above; each cell.json holds the error)",
            failed.len(),
            cells.len()
        );
    }
    Ok(())
}

/// `f` over `items` on `jobs` threads; results in item order.
fn parallel<T: Sync, R: Send>(jobs: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}

/// The last non-empty line of a message: a child's `error:` line.
fn last_line(e: &str) -> &str {
    e.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(e)
        .trim()
}
