//! Running cells: each is this binary's own subcommands in child processes
//! (`features` then `probe` for linear cells, `finetune` for finetune cells),
//! their output appended to the cell's `benchmark.log`, their outcome and
//! the cell's configuration hash recorded in `cell.json`.
//!
//! A cell whose `cell.json` has the current hash and status `ok` is up to
//! date and skipped; anything else (no record, another hash, a failure) is
//! cleared and run again. The hash covers the store path, the model (its
//! name, weights file hash or pretraining recipe), the strategy, seed and
//! the settings the cell uses, and the cxrlearn version, so changing a probe
//! setting reruns exactly the linear cells.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::grid::{CellSpec, Grid, Model, flags, pretrain_args};
use super::lock::{Lock, lock_path};
use crate::output::write_atomic;

/// The record of a cell (`cell.json`) or of a pretraining run
/// (`benchmark.json` in its run directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// `running`, `ok` or `failed`.
    pub(crate) status: String,
    /// Hash of everything the result depends on.
    pub(crate) hash: String,
    /// The last lines the failing command wrote, for failed runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Wall time of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) seconds: Option<f64>,
    /// Which invocation wrote the record (a Slurm array job, or a process).
    pub(crate) batch: String,
    /// The resolved configuration the hash was taken of.
    pub(crate) config: Value,
    /// The commands run, as argument lists.
    #[serde(default)]
    pub(crate) commands: Vec<Vec<String>>,
}

impl Record {
    /// Reads a record; `None` when absent or unreadable (treated as never run).
    pub(crate) fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, path: &Path) -> Result<()> {
        write_atomic(
            path,
            (serde_json::to_string_pretty(self)? + "\n").as_bytes(),
        )
    }
}

/// What happened to a cell.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Its results match the current configuration: nothing ran.
    UpToDate,
    /// It ran and succeeded, in this many seconds.
    Ran(f64),
    /// It failed; the message says why.
    Failed(String),
}

/// Runs cells and pretraining recipes of one grid into one benchmark directory.
pub(crate) struct Runner<'a> {
    grid: &'a Grid,
    out: PathBuf,
    exe: PathBuf,
    quiet: bool,
    /// Identifies this invocation: a pretraining that failed in the same
    /// batch is not retried by every cell that needs it.
    batch: String,
    /// `OMP_NUM_THREADS` for children, when several run at once.
    threads: Option<usize>,
    /// Weights-file hashes, computed once per model.
    weights: Mutex<HashMap<usize, String>>,
}

impl<'a> Runner<'a> {
    /// A runner writing into `out` (absolute) with `jobs` cells at a time.
    pub(crate) fn new(grid: &'a Grid, out: &Path, jobs: usize, quiet: bool) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot locate the cxrlearn binary")?;
        let batch = match std::env::var("SLURM_ARRAY_JOB_ID") {
            Ok(id) => format!("slurm-{id}"),
            Err(_) => format!(
                "pid-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default()
            ),
        };
        // Children share the cores: without this each libtorch would start
        // one thread per core and N of them would thrash.
        let threads = (jobs > 1 && std::env::var_os("OMP_NUM_THREADS").is_none()).then(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / jobs).max(1)
        });
        Ok(Self {
            grid,
            out: out.to_owned(),
            exe,
            quiet,
            batch,
            threads,
            weights: Mutex::new(HashMap::new()),
        })
    }

    /// `DIR/cells/<dataset>/<model>/<strategy>/seed-<n>`.
    pub(crate) fn cell_dir(&self, cell: &CellSpec) -> PathBuf {
        cell_dir(&self.out, self.grid, cell)
    }

    fn pretrain_dir(&self, model: &Model) -> PathBuf {
        self.out.join("pretrain").join(&model.name)
    }

    /// The configuration a cell's hash is taken of.
    fn cell_config(&self, cell: &CellSpec) -> Result<Value> {
        let d = &self.grid.dataset[cell.dataset];
        let mut config = json!({
            "dataset": d.name,
            "store": d.store,
            "model": self.model_identity(cell.model)?,
            "strategy": cell.strategy,
            "seed": cell.seed,
            "settings": self.grid.cell_settings(cell),
            "cxrlearn": env!("CARGO_PKG_VERSION"),
        });
        // Only below 1, so whole-split cells keep the hash they always had.
        if cell.fraction < 1.0 {
            config["train_fraction"] = json!(cell.fraction);
        }
        Ok(config)
    }

    /// What a model's results depend on: the recipe of a pretrained model,
    /// else the `--model` value with the hash of its weights file (absent
    /// files hash as `missing`: the cell fails, and reruns once it exists).
    fn model_identity(&self, index: usize) -> Result<Value> {
        let m = &self.grid.model[index];
        if let Some(r) = &m.pretrain {
            return Ok(json!({ "name": m.name, "pretrain": r }));
        }
        let sha = {
            let mut cache = self.weights.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(&index) {
                Some(s) => s.clone(),
                None => {
                    // The features cache key's own hash: one definition. A
                    // model that does not resolve yet (its files missing)
                    // hashes as `missing`: the cell fails, and reruns once
                    // the files exist.
                    let resolved = m.model.as_deref().map(|model| {
                        cxr_learn::model::resolve(model, m.checkpoint.as_deref(), 224, None, None)
                    });
                    let s = match resolved {
                        Some(Ok(r)) => r.weights_sha256()?.unwrap_or_else(|| "random".into()),
                        _ => "missing".to_owned(),
                    };
                    cache.insert(index, s.clone());
                    s
                }
            }
        };
        let mut identity = json!({
            "name": m.name,
            "model": m.model,
            "checkpoint": m.checkpoint,
            "weights_sha256": sha,
        });
        // Only when chosen, so cells of models without a pooling keep the
        // hash they always had (finished benchmarks are not rerun).
        if let Some(p) = m.pooling {
            identity["pooling"] = json!(p.to_string());
        }
        Ok(identity)
    }

    /// The cell's hash, and whether its recorded run is up to date.
    pub(crate) fn status(&self, cell: &CellSpec) -> Result<(String, Value, bool)> {
        let config = self.cell_config(cell)?;
        let hash = hash_of(&config);
        let dir = self.cell_dir(cell);
        let done = Record::read(&dir.join("cell.json"))
            .is_some_and(|r| r.status == "ok" && r.hash == hash)
            && dir.join(cxr_report::PREDICTIONS_FILE).is_file();
        Ok((hash, config, done))
    }

    /// Runs one cell unless it is up to date. Never panics on a failing
    /// child: the failure is recorded and returned.
    pub(crate) fn run_cell(&self, cell: &CellSpec) -> Outcome {
        match self.try_run_cell(cell) {
            Ok(o) => o,
            Err(e) => Outcome::Failed(format!("{e:#}")),
        }
    }

    fn try_run_cell(&self, cell: &CellSpec) -> Result<Outcome> {
        let dir = self.cell_dir(cell);
        // Two invocations over the same directory must not run a cell twice.
        let _lock = Lock::acquire(&lock_path(&dir), self.quiet)?;
        let (hash, config, done) = self.status(cell)?;
        if done {
            return Ok(Outcome::UpToDate);
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut record = Record {
            status: "running".into(),
            hash,
            error: None,
            seconds: None,
            batch: self.batch.clone(),
            config,
            commands: Vec::new(),
        };
        let path = dir.join("cell.json");
        record.write(&path)?;
        let started = Instant::now();
        let result = self.execute(cell, &dir, &mut record.commands);
        let seconds = started.elapsed().as_secs_f64();
        record.seconds = Some(seconds);
        let outcome = match result {
            Ok(()) => {
                record.status = "ok".into();
                Outcome::Ran(seconds)
            }
            Err(e) => {
                record.status = "failed".into();
                record.error = Some(format!("{e:#}"));
                Outcome::Failed(format!("{e:#}"))
            }
        };
        record.write(&path)?;
        Ok(outcome)
    }

    fn execute(&self, cell: &CellSpec, dir: &Path, commands: &mut Vec<Vec<String>>) -> Result<()> {
        let d = &self.grid.dataset[cell.dataset];
        let m = &self.grid.model[cell.model];
        let log = dir.join("benchmark.log");
        let model = self.model_args(cell.model)?;
        let store = d.store.display().to_string();
        let seed = cell.seed.to_string();
        // A label-efficiency cell trains on its subset's list, written into
        // the store first (idempotent; every cell of one seed shares it).
        let mut subset = Vec::new();
        if cell.fraction < 1.0 {
            let _lock = Lock::acquire(&lock_path(&d.store.join("subsets")), self.quiet)?;
            let opened = cxr_data::store::read::Store::open(&d.store)
                .with_context(|| format!("cannot open store {}", d.store.display()))?;
            crate::cmd::subsets::write(&opened, &d.store, &[cell.fraction], &[cell.seed])?;
            subset = vec![
                "--train-fraction".to_owned(),
                cell.fraction.to_string(),
                "--subset-seed".into(),
                seed.clone(),
            ];
        }
        let (mut a, settings) = if cell.strategy == "linear" {
            let features = self.out.join("features").join(&d.name).join(&m.name);
            let mut a = vec!["features".to_owned()];
            a.extend(model);
            a.extend([
                "--data".into(),
                store.clone(),
                "--out".into(),
                path_arg(&features),
            ]);
            // Seeds and reruns share the cache: the features command
            // waits for another writer of it, reuses the files when they
            // still fit and otherwise replaces them (--force).
            a.push("--force".into());
            a.extend(flags(&self.grid.features)?);
            commands.push(a.clone());
            self.child(&a, &log)?;
            (
                vec!["probe".to_owned(), "--features".into(), path_arg(&features)],
                &self.grid.probe,
            )
        } else {
            let mut a = vec!["finetune".to_owned()];
            a.extend(model);
            (a, &self.grid.finetune)
        };
        // The training run of either strategy: its store, output, seed,
        // subset and the grid's settings for the command, in that order.
        a.extend([
            "--data".into(),
            store,
            "--out".into(),
            path_arg(dir),
            "--seed".into(),
            seed,
        ]);
        a.extend(subset);
        a.extend(flags(settings)?);
        commands.push(a.clone());
        self.child(&a, &log)
    }

    /// `--model ...` (and `--checkpoint ...`) for a model, pretraining it
    /// first when it is a recipe.
    fn model_args(&self, index: usize) -> Result<Vec<String>> {
        let m = &self.grid.model[index];
        if m.pretrain.is_some() {
            let encoder = self.ensure_pretrained(index)?;
            return Ok(vec!["--model".into(), path_arg(&encoder)]);
        }
        let mut a = vec!["--model".to_owned(), m.model.clone().unwrap_or_default()];
        if let Some(c) = &m.checkpoint {
            a.extend(["--checkpoint".into(), path_arg(c)]);
        }
        if let Some(p) = m.pooling {
            a.extend(["--pooling".into(), p.to_string()]);
        }
        Ok(a)
    }

    /// Whether model `index` is a recipe whose pretraining is not done yet.
    pub(crate) fn needs_pretraining(&self, index: usize) -> bool {
        let m = &self.grid.model[index];
        let Some(r) = &m.pretrain else { return false };
        let dir = self.pretrain_dir(m);
        !Record::read(&dir.join("benchmark.json"))
            .is_some_and(|rec| rec.status == "ok" && rec.hash == hash_of(&recipe_config(r)))
            || !dir.join("encoder.safetensors").is_file()
    }

    /// Runs model `index`'s pretraining recipe into `DIR/pretrain/<model>`
    /// unless done, under a lock so concurrent cells and array tasks run it
    /// once; returns the encoder. An interrupted run of the same recipe is
    /// resumed from its last checkpoint; a failure in this same batch is
    /// returned without retrying.
    pub(crate) fn ensure_pretrained(&self, index: usize) -> Result<PathBuf> {
        let m = &self.grid.model[index];
        let recipe = m.pretrain.as_ref().context("not a pretraining recipe")?;
        let dir = self.pretrain_dir(m);
        let encoder = dir.join("encoder.safetensors");
        let _lock = Lock::acquire(&lock_path(&dir), self.quiet)?;
        let config = recipe_config(recipe);
        let hash = hash_of(&config);
        let path = dir.join("benchmark.json");
        let old = Record::read(&path).filter(|r| r.hash == hash);
        match &old {
            Some(r) if r.status == "ok" && encoder.is_file() => return Ok(encoder),
            Some(r) if r.status == "failed" && r.batch == self.batch => {
                bail!(
                    "pretraining of model '{}' failed: {}",
                    m.name,
                    r.error.as_deref().unwrap_or("see its benchmark.log")
                )
            }
            _ => {}
        }
        let resume = old.is_some()
            && dir.join("last.safetensors").is_file()
            && dir.join("config.toml").is_file();
        if !resume && dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut args = vec!["pretrain".to_owned()];
        args.extend(pretrain_args(recipe, &dir)?);
        if resume {
            args.push("--resume".into());
        }
        let mut record = Record {
            status: "running".into(),
            hash,
            error: None,
            seconds: None,
            batch: self.batch.clone(),
            config,
            commands: vec![args.clone()],
        };
        record.write(&path)?;
        if !self.quiet {
            let how = if resume { "resuming" } else { "running" };
            eprintln!(
                "{how} pretraining of model '{}' in {}",
                m.name,
                dir.display()
            );
        }
        let started = Instant::now();
        let result = self.child(&args, &dir.join("benchmark.log"));
        record.seconds = Some(started.elapsed().as_secs_f64());
        match result {
            Ok(()) if encoder.is_file() => {
                record.status = "ok".into();
                record.write(&path)?;
                Ok(encoder)
            }
            other => {
                let e = other
                    .err()
                    .unwrap_or_else(|| anyhow!("pretraining wrote no {}", encoder.display()));
                record.status = "failed".into();
                record.error = Some(format!("{e:#}"));
                record.write(&path)?;
                Err(e.context(format!("pretraining of model '{}' failed", m.name)))
            }
        }
    }

    /// Runs `cxrlearn ARGS`, appending its output to `log`; on failure the
    /// error carries the command's last lines.
    fn child(&self, args: &[String], log: &Path) -> Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        writeln!(file, "$ cxrlearn {}", args.join(" "))?;
        let start = file.seek(SeekFrom::End(0))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file.try_clone()?);
        if let Some(n) = self.threads {
            cmd.env("OMP_NUM_THREADS", n.to_string());
        }
        let status = cmd
            .status()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        if status.success() {
            return Ok(());
        }
        let tail = tail_from(log, start).unwrap_or_default();
        bail!(
            "`cxrlearn {}` failed ({status}){}{}",
            args[0],
            if tail.is_empty() { "" } else { ": " },
            tail
        )
    }
}

/// `DIR/cells/<dataset>/<model>/<strategy>/seed-<n>`, with
/// `-fraction-<f>` for a label-efficiency cell.
pub(crate) fn cell_dir(out: &Path, grid: &Grid, cell: &CellSpec) -> PathBuf {
    let leaf = if cell.fraction < 1.0 {
        format!("seed-{}-fraction-{}", cell.seed, cell.fraction)
    } else {
        format!("seed-{}", cell.seed)
    };
    out.join("cells")
        .join(&grid.dataset[cell.dataset].name)
        .join(&grid.model[cell.model].name)
        .join(&cell.strategy)
        .join(leaf)
}

fn recipe_config(recipe: &super::grid::Recipe) -> Value {
    json!({ "pretrain": recipe, "cxrlearn": env!("CARGO_PKG_VERSION") })
}

/// SHA-256 of a JSON value's canonical text (object keys sorted at every
/// level, whatever map the JSON library was built with).
fn hash_of(v: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(x, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut text = String::new();
    canonical(v, &mut text);
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// The last lines a command wrote to `log` after byte `start`: its `error:`
/// line and what led to it, at most 20 lines and 2000 characters.
fn tail_from(log: &Path, start: u64) -> Result<String> {
    let mut f = File::open(log)?;
    f.seek(SeekFrom::Start(start))?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut tail = lines[lines.len().saturating_sub(20)..].join("\n");
    if tail.len() > 2000 {
        let cut = tail.len() - 2000;
        let cut = (cut..tail.len())
            .find(|&i| tail.is_char_boundary(i))
            .unwrap_or(cut);
        tail = format!("...{}", &tail[cut..]);
    }
    Ok(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_of_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let before = "earlier command\n".repeat(3);
        let after: String = (0..30).map(|i| format!("line {i}\n\n")).collect();
        std::fs::write(&log, format!("{before}{after}error: boom\n")).unwrap();
        let tail = tail_from(&log, before.len() as u64).unwrap();
        let lines: Vec<&str> = tail.lines().collect();
        assert_eq!(lines.len(), 20);
        assert_eq!(lines[0], "line 11");
        assert_eq!(lines[19], "error: boom");
        assert!(!tail.contains("earlier"));
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "s"}});
        let b = json!({"b": {"y": "s", "x": [1, 2]}, "a": 1});
        let c = json!({"a": 1, "b": {"x": [1, 3], "y": "s"}});
        assert_eq!(hash_of(&a), hash_of(&b));
        assert_ne!(hash_of(&a), hash_of(&c));
        assert_eq!(hash_of(&a).len(), 64);
    }
}
