//! The grid configuration (`grid.toml`): datasets, models, strategies, seeds
//! and the settings handed to the subcommands, resolved (absolute paths,
//! normalised setting names) and checked before anything runs, and the cells
//! it spans in their stable order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(crate) use super::settings::{flags, pretrain_args};
use super::settings::{validate, validate_table};
use super::slurm::SlurmSettings;
use crate::cmd::{features, finetune, pretrain, probe};

/// Strategies a cell can use.
pub(crate) const STRATEGIES: [&str; 2] = ["linear", "finetune"];

/// Flags of a subcommand the benchmark sets itself for every cell; a settings
/// table naming one would silently fight the grid, so it is refused.
/// `pooling` belongs to a model (`[[model]] pooling`), not to every model.
const RESERVED_FEATURES: [&str; 5] = ["model", "checkpoint", "pooling", "data", "out"];
const RESERVED_PROBE: [&str; 8] = [
    "features",
    "model",
    "checkpoint",
    "data",
    "out",
    "seed",
    "train-fraction",
    "subset-seed",
];
const RESERVED_FINETUNE: [&str; 9] = [
    "model",
    "checkpoint",
    "pooling",
    "data",
    "out",
    "seed",
    "resume",
    "train-fraction",
    "subset-seed",
];
pub(super) const RESERVED_PRETRAIN: [&str; 2] = ["out", "resume"];

/// Settings passed through to a subcommand: `key = value` becomes
/// `--key value` (underscores written as dashes, arrays comma-joined, `true`
/// a bare flag, `false` left out).
pub(crate) type Settings = BTreeMap<String, toml::Value>;

/// The whole grid file. After [`Grid::load`] every path is absolute and every
/// setting name uses dashes; that resolved form is what `DIR/config.toml`
/// holds and what `benchmark report` reads back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Grid {
    /// The model every other model is compared against.
    pub(crate) baseline: String,
    /// Adaptation strategies, each run for every dataset, model and seed.
    #[serde(default = "default_strategies")]
    pub(crate) strategies: Vec<String>,
    /// Seeds of every (dataset, model, strategy).
    #[serde(default = "default_seeds")]
    pub(crate) seeds: Vec<u64>,
    /// Label efficiency: fractions of each training split's patients, every
    /// cell also run on each (nested, seeded by the cell's seed, listed in
    /// the store by `cxrlearn subsets`); 1 (the whole split) is always run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) fractions: Vec<f64>,
    /// The strategies the fractions below 1 apply to (default: every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fraction_strategies: Option<Vec<String>>,
    /// Datasets (`[[dataset]]`).
    #[serde(default)]
    pub(crate) dataset: Vec<Dataset>,
    /// Models (`[[model]]`).
    #[serde(default)]
    pub(crate) model: Vec<Model>,
    /// `cxrlearn features` settings of the linear cells.
    #[serde(default)]
    pub(crate) features: Settings,
    /// `cxrlearn probe` settings of the linear cells.
    #[serde(default)]
    pub(crate) probe: Settings,
    /// `cxrlearn finetune` settings of the finetune cells.
    #[serde(default)]
    pub(crate) finetune: Settings,
    /// Resources of the Slurm array (`--emit-slurm`).
    #[serde(default)]
    pub(crate) slurm: SlurmSettings,
    /// Report settings.
    #[serde(default)]
    pub(crate) report: ReportSettings,
}

fn default_strategies() -> Vec<String> {
    STRATEGIES.iter().map(|s| s.to_string()).collect()
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One `[[dataset]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Dataset {
    /// Name in the report and in run directories.
    pub(crate) name: String,
    /// Dataset store written by `cxrlearn convert` (relative to the grid file).
    pub(crate) store: PathBuf,
}

/// One `[[model]]`: exactly one of `model` and `pretrain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Model {
    /// Name in the report and in run directories.
    pub(crate) name: String,
    /// What `--model` accepts: registry name, `scratch:ARCH`, `hf:DIR`,
    /// `open_clip:DIR`, or a safetensors file written by cxrlearn (paths
    /// relative to the grid file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) model: Option<String>,
    /// Weights of a registry model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Token pooling of a ViT-style model (`--pooling`: cls, mean,
    /// cls+mean), for its features and finetuning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pooling: Option<cxr_nn::arch::pooling::Pooling>,
    /// A pretraining recipe run once before the model's cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pretrain: Option<Recipe>,
    /// A reference (random initialisation, say): in every table and figure,
    /// but never the best SSL model of Table 2 and Figure 1.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) reference: bool,
}

/// `pretrain = { method, data, ... }`: `cxrlearn pretrain` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Recipe {
    /// Pretraining method (`--method`).
    pub(crate) method: String,
    /// A dataset name of the grid, or a store path (relative to the grid file).
    pub(crate) data: String,
    /// Every other `cxrlearn pretrain` flag (backbone, epochs, batch_size, ...).
    #[serde(flatten)]
    pub(crate) settings: Settings,
}

/// `[report]`: how the report compares and bootstraps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportSettings {
    /// `same` (each strategy against the baseline's same strategy) or a
    /// strategy name; default `finetune` when the grid finetunes (the
    /// paper's Table 2 compares both columns with the finetuned baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) baseline_strategy: Option<String>,
    /// Bootstrap replicates (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) n_bootstrap: Option<usize>,
    /// Seed of the bootstrap draws (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) seed: Option<u64>,
    /// Interval coverage (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) confidence: Option<f64>,
    /// Significance level (default 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) alpha: Option<f64>,
    /// What a bootstrap replicate resamples: `patient`, `image` or `auto`
    /// (default: patients whenever the predictions carry patient ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resample: Option<cxr_stats::Resample>,
}

/// One cell: (dataset, model, strategy, seed), by position in the grid.
#[derive(Debug, Clone)]
pub(crate) struct CellSpec {
    /// Index into [`Grid::dataset`].
    pub(crate) dataset: usize,
    /// Index into [`Grid::model`].
    pub(crate) model: usize,
    /// `linear` or `finetune`.
    pub(crate) strategy: String,
    /// Seed of the adaptation run (and of its training subset's draw).
    pub(crate) seed: u64,
    /// Fraction of the training split's patients (1: all).
    pub(crate) fraction: f64,
}

impl Grid {
    /// Reads, resolves and checks a grid file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read grid config {}", path.display()))?;
        let mut grid: Grid = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let base = std::path::absolute(path)?
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        grid.resolve(&base);
        grid.check()
            .with_context(|| format!("grid config {}", path.display()))?;
        for d in &grid.dataset {
            if !d.store.exists() {
                eprintln!(
                    "warning: dataset '{}': store {} does not exist (its cells will fail)",
                    d.name,
                    d.store.display()
                );
            }
        }
        Ok(grid)
    }

    /// Reads the resolved grid a benchmark wrote into `DIR/config.toml`.
    pub(crate) fn from_run_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "{} not found: {} holds no benchmark",
                path.display(),
                path.parent().unwrap_or(Path::new(".")).display()
            )
        })?;
        let mut doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let command = doc.get("command").and_then(|c| c.as_str()).unwrap_or("");
        if command != "benchmark" {
            bail!(
                "{} belongs to a `{command}` run, not a benchmark",
                path.display()
            );
        }
        let grid: Grid = doc
            .remove("benchmark")
            .with_context(|| format!("{} has no [benchmark] table", path.display()))?
            .try_into()
            .with_context(|| format!("{}", path.display()))?;
        grid.check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(grid)
    }

    /// Makes paths absolute (relative to `base`, the grid file's folder) and
    /// setting names dashed, so equal grids hash equally.
    fn resolve(&mut self, base: &Path) {
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        for d in &mut self.dataset {
            d.store = abs(&d.store);
        }
        let stores: BTreeMap<String, PathBuf> = self
            .dataset
            .iter()
            .map(|d| (d.name.clone(), d.store.clone()))
            .collect();
        for m in &mut self.model {
            if let Some(model) = &m.model
                && !model.starts_with("scratch:")
                && cxr_nn::registry::find(model).is_err()
            {
                // hf:DIR and open_clip:DIR keep their prefix; the directory
                // is relative to the grid file like any other path.
                let (prefix, path) = match model.split_once(':') {
                    Some((p @ ("hf" | "open_clip"), d)) => (format!("{p}:"), d),
                    _ => (String::new(), model.as_str()),
                };
                m.model = Some(format!("{prefix}{}", abs(Path::new(path)).display()));
            }
            if let Some(c) = &m.checkpoint {
                m.checkpoint = Some(abs(c));
            }
            if let Some(r) = &mut m.pretrain {
                r.data = match stores.get(&r.data) {
                    Some(store) => store.display().to_string(),
                    None => abs(Path::new(&r.data)).display().to_string(),
                };
                r.settings = dashed(std::mem::take(&mut r.settings));
            }
        }
        for s in [&mut self.features, &mut self.probe, &mut self.finetune] {
            *s = dashed(std::mem::take(s));
        }
    }

    /// Every rule a grid must follow, each broken one named.
    fn check(&self) -> Result<()> {
        if self.dataset.is_empty() {
            bail!("no [[dataset]] (each needs name and store)");
        }
        if self.model.is_empty() {
            bail!("no [[model]] (each needs name and model or pretrain)");
        }
        unique_names("dataset", self.dataset.iter().map(|d| d.name.as_str()))?;
        unique_names("model", self.model.iter().map(|m| m.name.as_str()))?;
        if !self.model.iter().any(|m| m.name == self.baseline) {
            bail!(
                "baseline = '{}' is not the name of a [[model]] ({})",
                self.baseline,
                self.model
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(m) = self
            .model
            .iter()
            .find(|m| m.reference && m.name == self.baseline)
        {
            bail!(
                "model '{}' is the baseline; it cannot also be a reference",
                m.name
            );
        }
        if self.strategies.is_empty() {
            bail!(
                "strategies is empty (use some of {})",
                STRATEGIES.join(", ")
            );
        }
        for s in &self.strategies {
            if !STRATEGIES.contains(&s.as_str()) {
                bail!(
                    "strategies: unknown strategy '{s}' (expected {})",
                    STRATEGIES.join(", ")
                );
            }
        }
        if self.strategies.iter().collect::<BTreeSet<_>>().len() != self.strategies.len() {
            bail!("strategies lists a strategy twice");
        }
        if self.seeds.is_empty() {
            bail!("seeds is empty");
        }
        if let Some(f) = self.fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
            bail!("fractions: {f} is not in (0, 1]");
        }
        let mut sorted = self.fractions.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        if sorted.len() != self.fractions.len() {
            bail!("fractions lists a fraction twice");
        }
        for s in self.fraction_strategies.iter().flatten() {
            if !self.strategies.contains(s) {
                bail!("fraction_strategies: '{s}' is not one of the grid's strategies");
            }
        }
        if self.seeds.iter().collect::<BTreeSet<_>>().len() != self.seeds.len() {
            bail!("seeds lists a seed twice");
        }
        for m in &self.model {
            match (&m.model, &m.pretrain) {
                (Some(_), None) => {}
                (None, Some(r)) => {
                    pretrain_args(r, Path::new("out"))
                        .and_then(|a| {
                            validate(pretrain::Args::augment_args, "pretrain", &[], &a)?;
                            // The method reads every flag of its recipe.
                            pretrain::check(&a)
                        })
                        .with_context(|| format!("model '{}': pretrain", m.name))?;
                }
                (Some(_), Some(_)) => bail!("model '{}': give model or pretrain, not both", m.name),
                (None, None) => bail!(
                    "model '{}': needs model = \"...\" or pretrain = {{ ... }}",
                    m.name
                ),
            }
            if m.checkpoint.is_some() && m.model.is_none() {
                bail!(
                    "model '{}': checkpoint goes with model = \"<registry name>\"",
                    m.name
                );
            }
        }
        let fixed_features = ["--model", "m", "--data", "d", "--out", "o"];
        let fixed_probe = ["--features", "f", "--data", "d", "--out", "o"];
        let fixed_finetune = ["--model", "m", "--data", "d", "--out", "o"];
        validate_table(
            features::Args::augment_args,
            "features",
            &fixed_features,
            &RESERVED_FEATURES,
            &self.features,
        )?;
        validate_table(
            probe::Args::augment_args,
            "probe",
            &fixed_probe,
            &RESERVED_PROBE,
            &self.probe,
        )?;
        validate_table(
            finetune::Args::augment_args,
            "finetune",
            &fixed_finetune,
            &RESERVED_FINETUNE,
            &self.finetune,
        )?;
        self.slurm.check()?;
        for (key, v) in [
            ("confidence", self.report.confidence),
            ("alpha", self.report.alpha),
        ] {
            if let Some(v) = v
                && !(v > 0.0 && v < 1.0)
            {
                bail!("[report] {key} = {v}: must be strictly between 0 and 1");
            }
        }
        if let Some(s) = &self.report.baseline_strategy
            && s != "same"
            && !self.strategies.contains(s)
        {
            bail!(
                "[report] baseline_strategy = '{s}' is neither 'same' nor one of the grid's strategies"
            );
        }
        Ok(())
    }

    /// The training fractions of `strategy`'s cells, ascending, 1 last.
    pub(crate) fn fractions_of(&self, strategy: &str) -> Vec<f64> {
        let applies = self
            .fraction_strategies
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == strategy));
        let mut out: Vec<f64> = if applies {
            self.fractions
                .iter()
                .copied()
                .filter(|&f| f < 1.0)
                .collect()
        } else {
            Vec::new()
        };
        out.sort_by(f64::total_cmp);
        out.push(1.0);
        out
    }

    /// Every cell, ordered by dataset, model, strategy, seed, fraction (grid
    /// order; the whole-split cell last).
    pub(crate) fn cells(&self) -> Vec<CellSpec> {
        let mut out = Vec::new();
        for dataset in 0..self.dataset.len() {
            for model in 0..self.model.len() {
                for strategy in &self.strategies {
                    for &seed in &self.seeds {
                        for fraction in self.fractions_of(strategy) {
                            out.push(CellSpec {
                                dataset,
                                model,
                                strategy: strategy.clone(),
                                seed,
                                fraction,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The settings a cell's result depends on, besides its model and store.
    pub(crate) fn cell_settings(&self, cell: &CellSpec) -> Value {
        if cell.strategy == "linear" {
            json!({ "features": self.features, "probe": self.probe })
        } else {
            json!({ "finetune": self.finetune })
        }
    }

    /// `cell`'s name, `dataset / model / strategy / seed N`, for messages.
    pub(crate) fn describe(&self, cell: &CellSpec) -> String {
        format!(
            "{} / {} / {} / seed {}",
            self.dataset[cell.dataset].name, self.model[cell.model].name, cell.strategy, cell.seed
        ) + &if cell.fraction < 1.0 {
            format!(" / fraction {}", cell.fraction)
        } else {
            String::new()
        }
    }
}

/// Settings names written with dashes, as the flags are.
fn dashed(settings: Settings) -> Settings {
    settings
        .into_iter()
        .map(|(k, v)| (k.replace('_', "-"), v))
        .collect()
}

fn unique_names<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        // Names become directory names: keep them to one path component.
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\'])
            || name.chars().any(char::is_control)
        {
            bail!("{what} name '{name}' cannot be a directory name (no slashes, not empty)");
        }
        if !seen.insert(name) {
            bail!("two [[{what}]] entries are named '{name}'");
        }
    }
    Ok(())
}

// The grid fuzz target's harness and committed inputs (fuzz/regressions/,
// docs/fuzzing.md), so CI reads each input as the fuzzer did.
#[cfg(test)]
#[path = "../../../../../fuzz/harness/benchmark_grid.rs"]
mod fuzz_harness;
#[cfg(test)]
#[path = "../../../../../fuzz/harness/inputs.rs"]
mod fuzz_inputs;

#[cfg(test)]
mod fuzz_regressions {
    #[test]
    fn benchmark_grid() {
        super::fuzz_inputs::each_input(
            env!("CARGO_MANIFEST_DIR"),
            "benchmark_grid",
            super::fuzz_harness::run,
        );
    }
}
