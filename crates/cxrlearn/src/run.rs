//! The run directory every adaptation command writes (docs/formats.md):
//! `config.toml`, `predictions-{val,test}.csv`, `evaluation.json`,
//! `log.jsonl` and the trained weights. Reports are rebuilt from these files
//! alone, so everything a number depends on is written here.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cxr_learn::error::LogError;
use cxr_stats::evaluation_file::{EvaluationFile, Input};
use cxr_stats::{BootstrapConfig, Evaluation, Predictions, evaluate};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::output::{Existing, OutputDir};

/// Bootstrap replicates behind the confidence intervals in `evaluation.json`.
pub const BOOTSTRAP_REPLICATES: usize = 1000;

/// An open run directory.
pub struct RunDir {
    out: OutputDir,
    path: PathBuf,
}

/// Added to the refusal of a non-empty `--out` by the commands that resume.
pub const RESUME_HINT: &str = ", continue it with --resume";

impl RunDir {
    /// Claims `path` for this run (see [`OutputDir::create`]). A directory
    /// this call created is removed again when the run is dropped without
    /// [`RunDir::commit`].
    pub fn create(path: &Path, existing: Existing) -> Result<Self> {
        Ok(Self {
            out: OutputDir::create(path, existing, "")?,
            path: path.to_owned(),
        })
    }

    /// The run directory of a training command that may run data-parallel:
    /// on rank 0 (`is_main`) it is claimed and, unless resuming, its
    /// `config.toml` written; the other ranks write nothing and get `None`.
    /// With `--resume` every rank checks the run against `config` first
    /// ([`check_resume`]).
    pub fn for_rank(
        path: &Path,
        is_main: bool,
        command: &str,
        config: &Value,
        existing: Existing,
    ) -> Result<Option<Self>> {
        if !is_main {
            if existing == Existing::Resume {
                check_resume(path, command, config)?;
            }
            return Ok(None);
        }
        let run = Self {
            out: OutputDir::create(path, existing, RESUME_HINT)?,
            path: path.to_owned(),
        };
        if existing == Existing::Resume {
            check_resume(path, command, config)?;
        } else {
            run.write_config(command, config)?;
        }
        Ok(Some(run))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `config.toml`: `config` (every resolved setting) under the
    /// command's name, plus the versions of cxrlearn and libtorch.
    pub fn write_config(&self, command: &str, config: &Value) -> Result<()> {
        let doc = json!({
            "command": command,
            "versions": versions(),
            command: config,
        });
        self.write_file("config.toml", to_toml(&doc)?.as_bytes())
    }

    /// Writes one file atomically.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.out.write(name, bytes)
    }

    /// Writes `predictions-{split}.csv` (docs/formats.md).
    pub fn write_predictions(&self, split: &str, p: &Predictions) -> Result<()> {
        let mut bytes = Vec::new();
        p.write_to(&mut bytes)?;
        self.write_file(&format!("predictions-{split}.csv"), &bytes)
    }

    /// Evaluates `test` (AUC, bootstrap intervals seeded with `seed`) and
    /// writes `evaluation.json` in `cxrlearn evaluate`'s format, naming
    /// `predictions-test.csv` and its hash.
    pub fn write_evaluation(&self, test: &Predictions, seed: u64) -> Result<Evaluation> {
        let config = BootstrapConfig {
            n_replicates: BOOTSTRAP_REPLICATES,
            seed,
            confidence: 0.95,
        };
        let evaluation = evaluate(test, None, &config)?;
        let mut csv = Vec::new();
        test.write_to(&mut csv)?;
        let report = EvaluationFile {
            evaluation: evaluation.clone(),
            predictions: Input {
                path: "predictions-test.csv".into(),
                sha256: Some(format!("{:x}", Sha256::digest(&csv))),
            },
            baseline: None,
            data: None,
            calibrate_on: None,
            threshold_from: None,
            cxrlearn_version: env!("CARGO_PKG_VERSION"),
        };
        let text = serde_json::to_string_pretty(&report)? + "\n";
        self.write_file("evaluation.json", text.as_bytes())?;
        Ok(evaluation)
    }

    /// Appends one record to `log.jsonl` (flushed, so a killed run keeps
    /// every line it logged).
    pub fn log(&self, record: &Value) -> Result<()> {
        let path = self.path.join("log.jsonl");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(record)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Marks the run complete: the directory is kept.
    pub fn commit(self) {
        self.out.commit();
    }
}

/// The training loops' log sink: `run`'s `log.jsonl`, or nothing on the
/// ranks that write no run directory. Its error is the whole chain (the
/// file and the I/O error), since the loops print it as one message.
pub fn log_sink(run: Option<&RunDir>) -> impl FnMut(&Value) -> Result<(), LogError> + '_ {
    move |v| run.map_or(Ok(()), |r| r.log(v).map_err(|e| format!("{e:#}").into()))
}

/// Checks that `out` holds a run of `command` that `--resume` can continue:
/// its `config.toml` must hold the same settings as `config` (otherwise the
/// error lists each difference, old -> new), and its last checkpoint
/// (`last.safetensors`) must be there to continue from.
pub fn check_resume(out: &Path, command: &str, config: &Value) -> Result<()> {
    let path = out.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("--resume: {} not found (nothing to resume)", path.display()))?;
    let old: toml::Value = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    // Compare through TOML on both sides, so values read back compare equal
    // to values written (TOML has no null, integers stay integers).
    let new: toml::Value = toml::from_str(&to_toml(&json!({ command: config }))?)?;
    let (old, new) = (serde_json::to_value(&old)?, serde_json::to_value(&new)?);
    let mut diff = Vec::new();
    differences(&old[command], &new[command], "", &mut diff);
    if !diff.is_empty() {
        anyhow::bail!(
            "--resume with different settings than the run in {} (old -> new):\n{}",
            out.display(),
            diff.join("\n")
        );
    }
    // Without it the run would start again from the beginning, appending a
    // second history to the first one's log.
    let last = out.join("last.safetensors");
    if !last.is_file() {
        anyhow::bail!(
            "--resume: {} not found (the run stopped before its first checkpoint); \
             start it again with --force",
            last.display()
        );
    }
    Ok(())
}

/// One line per differing leaf of two JSON values, named by its dotted path.
fn differences(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let null = Value::Null;
                differences(
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                    &p,
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("  {path}: {a} -> {b}")),
        _ => {}
    }
}

/// Versions recorded with every run.
pub fn versions() -> Value {
    json!({
        "cxrlearn": env!("CARGO_PKG_VERSION"),
        "libtorch": "2.13.0",
        "tch": "0.26.0",
    })
}

/// TOML text of a JSON object; `null`s are left out (TOML has none).
pub fn to_toml(value: &Value) -> Result<String> {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    toml::to_string(&strip(value)).context("cannot render the configuration as TOML")
}

/// `p` with each image's patient and subgroup columns (sex, age, view,
/// site) from `store`'s rows `indices` (in `p`'s image order), so that the
/// predictions file alone supports a patient-level bootstrap and subgroup
/// results.
pub fn with_store_metadata(
    mut p: Predictions,
    store: &cxr_data::store::read::Store,
    indices: &[usize],
) -> Predictions {
    assert_eq!(indices.len(), p.ids.len(), "one store row per image");
    let (patients, attributes) = store.metadata_of(indices);
    p.patients = Some(patients);
    p.attributes = attributes;
    p
}

/// Long-format predictions from dense `[n, k]` row-major targets (NaN where
/// unknown) and scores.
pub fn predictions(
    ids: Vec<String>,
    labels: Vec<String>,
    targets: &[f32],
    scores: &[f32],
) -> Predictions {
    let (n, k) = (ids.len(), labels.len());
    assert_eq!(targets.len(), n * k, "targets are not n x k");
    assert_eq!(scores.len(), n * k, "scores are not n x k");
    fn column(m: &[f32], j: usize, n: usize, k: usize) -> impl Iterator<Item = f32> + '_ {
        (0..n).map(move |i| m[i * k + j])
    }
    Predictions {
        patients: None,
        attributes: Default::default(),
        targets: (0..k)
            .map(|j| {
                column(targets, j, n, k)
                    .map(|t| (!t.is_nan()).then_some(t > 0.5))
                    .collect()
            })
            .collect(),
        scores: (0..k)
            .map(|j| column(scores, j, n, k).map(f64::from).collect())
            .collect(),
        ids,
        labels,
    }
}
