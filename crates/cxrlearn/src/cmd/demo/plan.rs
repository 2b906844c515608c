//! What the demo runs: its phantom worlds, the pretraining recipes, the
//! supervised out-of-domain baseline and the benchmark grid, resolved from
//! the flags into one [`Plan`] that `DIR/demo.toml` records.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// The full demo's methods: all but REFERS, whose three views, ViT and
/// report decoder take about as long at phantom scale as the six others
/// together (`--methods` adds it).
const FULL_METHODS: [&str; 6] = ["moco-cxr", "medaug", "s2mts2", "convirt", "gloria", "clip"];

/// The quick demo's methods: one image-only, one image-text.
const QUICK_METHODS: [&str; 2] = ["moco-cxr", "gloria"];

/// The CNN every CNN method, the baseline and the random reference share: a
/// GroupNorm ResNet-18 of width 16 (batch-norm statistics would let the
/// MoCo-style objectives find their positives without learning anything;
/// docs/ssl-methods.md (Phantom-scale configurations)).
pub(crate) const CNN: &str = "resnet18-w16-gn";

/// Training fractions of the full demo's label-efficiency probes.
const LABEL_FRACTIONS: [f64; 2] = [0.1, 0.3];

/// Name of the baseline model in the grid and the report.
pub(crate) const BASELINE: &str = "supervised-ood";

/// One phantom world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct World {
    /// Folder name under `DIR/data/`.
    pub(crate) name: String,
    /// What it stands for, for the demo's own record.
    pub(crate) role: String,
    /// Site preset (`phantom --first-site`).
    pub(crate) site: usize,
    /// Patients drawn.
    pub(crate) patients: usize,
    /// Phantom seed.
    pub(crate) seed: u64,
    /// Train/val/test percentages of its store.
    pub(crate) splits: [u32; 3],
}

/// The resolved demo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// `--quick`.
    pub(crate) quick: bool,
    /// Master seed.
    pub(crate) seed: u64,
    /// Side of the rendered phantom images.
    pub(crate) render_size: usize,
    /// Side of the stored (and trained) images.
    pub(crate) store_size: usize,
    /// Pretraining, the two downstream sites, the out-of-domain set.
    pub(crate) worlds: Vec<World>,
    /// Pretraining methods run.
    pub(crate) methods: Vec<String>,
    /// Pretraining epochs of every method.
    pub(crate) pretrain_epochs: u32,
    /// Epochs of the supervised out-of-domain baseline.
    pub(crate) baseline_epochs: u32,
    /// Epochs of every finetune cell.
    pub(crate) finetune_epochs: u32,
}

/// The flags that shape a plan.
pub(crate) struct Choices<'a> {
    pub(crate) quick: bool,
    pub(crate) seed: u64,
    pub(crate) scale: f64,
    pub(crate) methods: Option<&'a [String]>,
    pub(crate) pretrain_epochs: Option<u32>,
    pub(crate) finetune_epochs: Option<u32>,
}

impl Plan {
    /// Resolves the flags; unknown methods and empty worlds are errors.
    pub(crate) fn new(c: &Choices) -> Result<Self> {
        if !(c.scale.is_finite() && c.scale > 0.0 && c.scale <= 20.0) {
            bail!("--scale must be in (0, 20], got {}", c.scale);
        }
        let methods: Vec<String> = match c.methods {
            Some(m) => m.to_vec(),
            None if c.quick => QUICK_METHODS.iter().map(|s| s.to_string()).collect(),
            None => FULL_METHODS.iter().map(|s| s.to_string()).collect(),
        };
        for m in &methods {
            cxr_learn::ssl::method::lookup(m).map_err(|e| anyhow!("--methods: {e}"))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(m) = methods.iter().find(|m| !seen.insert(m.as_str())) {
            bail!("--methods names '{m}' twice");
        }
        // Patients per world (pretraining, site0, site1, out-of-domain).
        let patients: [usize; 4] = if c.quick {
            [600, 300, 300, 400]
        } else {
            [1500, 500, 500, 800]
        };
        let n = |k: usize| ((patients[k] as f64 * c.scale).round() as usize).max(12);
        // Neighbouring seeds are independent worlds: the phantom hashes its
        // seed into every stream. Small values keep demo.toml readable.
        let seed = |k: u64| c.seed + k;
        let world = |k: usize, name: &str, role: &str, site: usize, splits: [u32; 3]| World {
            name: name.into(),
            role: role.into(),
            site,
            patients: n(k),
            seed: seed(k as u64),
            splits,
        };
        Ok(Plan {
            quick: c.quick,
            seed: c.seed,
            render_size: 128,
            store_size: 64,
            worlds: vec![
                world(
                    0,
                    "pretrain",
                    "unlabeled images and reports of site0 for pretraining (90% train)",
                    0,
                    [90, 5, 5],
                ),
                world(
                    1,
                    "site0",
                    "downstream, the pretraining site (other patients)",
                    0,
                    [60, 20, 20],
                ),
                world(
                    2,
                    "site1-shifted",
                    "downstream, held out: a site the pretraining never saw (portable ICU, noisier, MONOCHROME1)",
                    1,
                    [60, 20, 20],
                ),
                world(
                    3,
                    "ood",
                    "out-of-domain supervised set: a third site labelled only with acquisition metadata",
                    2,
                    [70, 15, 15],
                ),
            ],
            methods,
            pretrain_epochs: c.pretrain_epochs.unwrap_or(if c.quick { 8 } else { 12 }),
            baseline_epochs: if c.quick { 8 } else { 15 },
            finetune_epochs: c.finetune_epochs.unwrap_or(if c.quick { 25 } else { 30 }),
        })
    }

    /// The world named `name`.
    #[cfg(test)]
    pub(crate) fn world(&self, name: &str) -> &World {
        self.worlds
            .iter()
            .find(|w| w.name == name)
            .expect("the plan has the four worlds")
    }

    /// The benchmark grid (`DIR/grid.toml`): both downstream sites, the
    /// baseline, the random reference and every method's recipe.
    pub(crate) fn grid(&self, dir: &Path, baseline_weights: &Path) -> Result<String> {
        let store = |name: &str| dir.join("data").join(name).display().to_string();
        let mut grid = Table::new();
        grid.insert("baseline".into(), BASELINE.into());
        grid.insert(
            "strategies".into(),
            Value::Array(vec!["linear".into(), "finetune".into()]),
        );
        grid.insert(
            "seeds".into(),
            Value::Array(vec![Value::Integer(self.seed as i64)]),
        );
        if !self.quick {
            // Label efficiency at the demo's scale: linear probes on 10% and
            // 30% of each site's training patients (a few seconds each, on
            // cached features); finetuning them too would double the run.
            grid.insert("fractions".into(), floats(&LABEL_FRACTIONS));
            grid.insert(
                "fraction_strategies".into(),
                Value::Array(vec!["linear".into()]),
            );
        }
        let datasets = ["site0", "site1-shifted"]
            .iter()
            .map(|name| {
                table([
                    ("name", (*name).into()),
                    ("store", store(&format!("store-{name}")).into()),
                ])
            })
            .collect();
        grid.insert("dataset".into(), Value::Array(datasets));
        let mut models = vec![
            table([
                ("name", BASELINE.into()),
                ("model", baseline_weights.display().to_string().into()),
            ]),
            table([
                ("name", "random-init".into()),
                ("model", format!("scratch:{CNN}").into()),
                ("reference", true.into()),
            ]),
        ];
        for method in &self.methods {
            let mut recipe = recipe(method)?;
            recipe.insert("method".into(), method.as_str().into());
            recipe.insert("data".into(), store("store-pretrain").into());
            recipe.insert("epochs".into(), i64::from(self.pretrain_epochs).into());
            recipe.insert("seed".into(), (self.seed as i64).into());
            models.push(table([
                ("name", method.as_str().into()),
                ("pretrain", Value::Table(recipe)),
            ]));
        }
        grid.insert("model".into(), Value::Array(models));
        grid.insert(
            "probe".into(),
            table([
                ("standardize", true.into()),
                ("c_grid", floats(&[0.001, 0.01, 0.1, 1.0])),
            ]),
        );
        grid.insert(
            "finetune".into(),
            table([
                ("epochs", i64::from(self.finetune_epochs).into()),
                ("batch_size", 32.into()),
                ("optimizer", "adamw".into()),
                ("lr", 1e-3.into()),
            ]),
        );
        let header =
            "# Written by `cxrlearn demo`: the benchmark grid it runs (docs/benchmark.md).\n";
        Ok(format!("{header}{}", toml::to_string(&grid)?))
    }
}

/// A method's phantom-scale recipe ([`cxr_learn::ssl::method::Method::recipe`],
/// the one `scripts/ssl-check.sh` and the tests train with) as a grid
/// settings table: numbers as numbers, `LO,HI` lists as arrays, switches
/// as `true`.
fn recipe(method: &str) -> Result<Table> {
    let m = cxr_learn::ssl::method::lookup(method)?;
    let value = |v: &str| -> Value {
        if v.is_empty() {
            true.into()
        } else if let Ok(i) = v.parse::<i64>() {
            i.into()
        } else if v.contains(',') {
            floats(
                &v.split(',')
                    .filter_map(|x| x.parse().ok())
                    .collect::<Vec<_>>(),
            )
        } else if let Ok(f) = v.parse::<f64>() {
            f.into()
        } else {
            v.into()
        }
    };
    Ok(m.recipe_settings()
        .map(|(k, v)| (k.replace('-', "_"), value(v)))
        .collect())
}

fn fields<const N: usize>(items: [(&str, Value); N]) -> Table {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn table<const N: usize>(items: [(&str, Value); N]) -> Value {
    Value::Table(fields(items))
}

fn floats(values: &[f64]) -> Value {
    Value::Array(values.iter().map(|&v| Value::Float(v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(quick: bool) -> Choices<'static> {
        Choices {
            quick,
            seed: 0,
            scale: 1.0,
            methods: None,
            pretrain_epochs: None,
            finetune_epochs: None,
        }
    }

    #[test]
    fn quick_and_full_differ_in_size_and_methods() {
        let q = Plan::new(&choices(true)).unwrap();
        let f = Plan::new(&choices(false)).unwrap();
        assert_eq!(q.methods, ["moco-cxr", "gloria"]);
        assert_eq!(f.methods.len(), 6);
        assert!(q.world("pretrain").patients < f.world("pretrain").patients);
        // The held-out site is another site preset than the pretraining one.
        assert_ne!(f.world("site1-shifted").site, f.world("pretrain").site);
        assert_eq!(f.world("site0").site, f.world("pretrain").site);
    }

    #[test]
    fn bad_choices_are_named() {
        let bad = vec!["moco".to_string()];
        let c = Choices {
            methods: Some(&bad),
            ..choices(true)
        };
        assert!(Plan::new(&c).unwrap_err().to_string().contains("'moco'"));
        let c = Choices {
            scale: 0.0,
            ..choices(true)
        };
        assert!(Plan::new(&c).is_err());
    }

    #[test]
    fn grid_names_every_method_and_the_reference() {
        let p = Plan::new(&choices(false)).unwrap();
        let text = p
            .grid(Path::new("/d"), Path::new("/d/baseline/model.safetensors"))
            .unwrap();
        let grid: Table = toml::from_str(&text).unwrap();
        let models = grid["model"].as_array().unwrap();
        assert_eq!(models.len(), 8);
        assert_eq!(grid["baseline"].as_str(), Some(BASELINE));
        assert_eq!(models[1]["reference"].as_bool(), Some(true));
        let medaug = &models[3]["pretrain"];
        assert_eq!(medaug["positive"].as_str(), Some("same-patient"));
        assert_eq!(medaug["data"].as_str(), Some("/d/data/store-pretrain"));
    }
}
