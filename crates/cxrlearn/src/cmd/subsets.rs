//! `cxrlearn subsets`: writes the label-efficiency training subsets into a
//! store (nested, seeded, patient-level lists; see
//! `cxr_data::store::subsets`), and the `--train-fraction` flags probe and
//! finetune share to train on one of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cxr_data::store::read::Store;
use serde_json::{Value, json};

/// Arguments of `cxrlearn subsets`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset store; the lists go to STORE/subsets/seed-S/fraction-F.csv.
    #[arg(long)]
    pub data: PathBuf,
    /// Fractions of the training split's patients, each in (0, 1].
    #[arg(long, value_delimiter = ',', required = true)]
    pub fractions: Vec<f64>,
    /// Seeds of the patient draws (one nested family of subsets per seed).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let store = Store::open(&args.data)
        .with_context(|| format!("cannot open store {}", args.data.display()))?;
    write(&store, &args.data, &args.fractions, &args.seeds)?;
    if !quiet {
        for &seed in &args.seeds {
            for &f in &args.fractions {
                let rows = store.train_subset(f, seed)?;
                eprintln!(
                    "seed {seed}, fraction {f}: {} training images ({})",
                    rows.len(),
                    cxr_data::store::subsets::subset_path(&args.data, f, seed).display()
                );
            }
        }
    }
    Ok(())
}

/// Writes the lists of every (fraction, seed) into the store at `root`.
pub(crate) fn write(store: &Store, root: &Path, fractions: &[f64], seeds: &[u64]) -> Result<()> {
    for &f in fractions {
        cxr_data::store::subsets::check_fraction(f)?;
    }
    for &seed in seeds {
        store.write_train_subsets(root, fractions, seed)?;
    }
    Ok(())
}

/// `--train-fraction` and `--subset-seed`, shared by probe and finetune.
#[derive(Debug, Clone, clap::Args)]
pub struct SubsetArgs {
    /// Train on this fraction of the training split's patients: a nested,
    /// seeded, patient-level subset listed in the store (write the lists
    /// with `cxrlearn subsets`). 1 trains on the whole split.
    #[arg(long, default_value_t = 1.0)]
    pub train_fraction: f64,
    /// Seed of the subset's patient draw (default: --seed).
    #[arg(long)]
    pub subset_seed: Option<u64>,
}

impl SubsetArgs {
    fn seed(&self, seed: u64) -> u64 {
        self.subset_seed.unwrap_or(seed)
    }

    /// The setting for the run's config: `null` (left out of config.toml)
    /// on the whole training split, so runs without a subset record what
    /// they always did.
    pub(crate) fn config(&self, seed: u64) -> Value {
        if self.train_fraction == 1.0 {
            Value::Null
        } else {
            json!({"fraction": self.train_fraction, "seed": self.seed(seed)})
        }
    }

    /// The training rows of the subset (`None`: the whole training split).
    pub(crate) fn rows(&self, store: &Store, root: &Path, seed: u64) -> Result<Option<Vec<usize>>> {
        if !(self.train_fraction > 0.0 && self.train_fraction <= 1.0) {
            bail!(
                "--train-fraction must be in (0, 1], got {}",
                self.train_fraction
            );
        }
        if self.train_fraction == 1.0 {
            return Ok(None);
        }
        Ok(Some(store.read_train_subset(
            root,
            self.train_fraction,
            self.seed(seed),
        )?))
    }
}
