//! The synthetic grid shared by the report tests: datasets whose targets,
//! patients and attributes are known, and models whose scores follow a
//! known signal strength, so every number can be checked against a direct
//! computation with `cxr_stats`.

// Each test file uses a different part of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use cxr_report::{Cell, CellInput, Report, ReportConfig, StrategyReport};
use cxr_stats::{Predictions, roc_auc};

pub const B: usize = 200;

/// Deterministic noise in [0, 1) (SplitMix64), so the test needs no RNG crate.
pub fn noise(key: u64) -> f64 {
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

pub fn hash(s: &str) -> u64 {
    s.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    })
}

/// Test targets of a dataset: `targets[label][image]`.
pub struct Dataset {
    pub name: &'static str,
    pub labels: Vec<&'static str>,
    pub ids: Vec<String>,
    pub targets: Vec<Vec<Option<bool>>>,
    /// Each image's patient, when the predictions files carry them.
    pub patients: Option<Vec<String>>,
    /// Per-image attribute columns (sex, age, view).
    pub attributes: BTreeMap<String, Vec<Option<String>>>,
}

pub fn binary() -> Dataset {
    let n = 60;
    Dataset {
        name: "Pneumothorax",
        labels: vec!["Pneumothorax"],
        ids: (0..n).map(|i| format!("p{i:03}")).collect(),
        targets: vec![(0..n).map(|i| Some(i % 3 == 0)).collect()],
        patients: None,
        attributes: BTreeMap::new(),
    }
}

pub fn multilabel() -> Dataset {
    let n = 80;
    let labels = vec!["Cardiomegaly", "Effusion", "Enlarged Cardiomediastinum"];
    let targets = (0..labels.len())
        .map(|j| {
            (0..n)
                .map(|i| {
                    // Label 2 has unknown targets on some images.
                    if j == 2 && i % 7 == 0 {
                        None
                    } else {
                        Some(noise(hash("t") + (i * 10 + j) as u64) < 0.35)
                    }
                })
                .collect()
        })
        .collect();
    Dataset {
        name: "Chest Multi",
        labels,
        ids: (0..n).map(|i| format!("c{i:03}")).collect(),
        targets,
        patients: None,
        attributes: BTreeMap::new(),
    }
}

/// A multi-label test set with patients (3 images each for the first 30
/// patients, 2 for the next 30: 60 patients, 2.5 images per patient) and
/// the attribute columns sex, age and view. One patient is 85 years old,
/// so the `>=80` band has 3 images and too few positives for an AUC; one
/// patient's age is unknown.
pub fn clinical() -> Dataset {
    let n = 150;
    let patient = |i: usize| if i < 90 { i / 3 } else { 30 + (i - 90) / 2 };
    let labels = vec!["Atelectasis", "Edema", "Nodule"];
    let targets = (0..labels.len())
        .map(|j| {
            (0..n)
                .map(|i| {
                    if j == 2 && i % 11 == 0 {
                        None
                    } else {
                        Some(noise(hash("clinical") + (i * 10 + j) as u64) < 0.35)
                    }
                })
                .collect()
        })
        .collect();
    let per_patient = |column: &str, i: usize| -> Option<String> {
        let p = patient(i);
        let u = noise(hash(column) + p as u64);
        match column {
            "sex" => Some(if u < 0.5 { "F" } else { "M" }.to_owned()),
            "age" if p == 7 => Some("85".to_owned()),
            "age" if p == 8 => None,
            "age" => Some(format!("{}", 20 + (u * 59.0) as u32)),
            _ => Some(if i.is_multiple_of(4) { "AP" } else { "PA" }.to_owned()),
        }
    };
    let attributes = ["sex", "age", "view"]
        .iter()
        .map(|c| ((*c).to_owned(), (0..n).map(|i| per_patient(c, i)).collect()))
        .collect();
    Dataset {
        name: "Clinical",
        labels,
        ids: (0..n).map(|i| format!("x{i:03}")).collect(),
        targets,
        patients: Some((0..n).map(|i| format!("pt{:02}", patient(i))).collect()),
        attributes,
    }
}

/// Signal strength of each model: convirt > moco > imagenet.
pub fn strength(model: &str, strategy: &str) -> f64 {
    let base = match model {
        "imagenet" => 0.6,
        "moco" => 1.0,
        _ => 1.6,
    };
    if strategy == "finetune" {
        base * 1.2
    } else {
        base
    }
}

/// Whether a model's scores are probabilities: moco's are raw decision
/// values (up to about 3.9), the others' the same values divided by 4.
pub fn probabilities(model: &str) -> bool {
    model != "moco"
}

pub fn predictions(d: &Dataset, model: &str, strategy: &str, seed: u64) -> Predictions {
    predictions_at(d, model, strategy, seed, None)
}

/// Predictions of a model adapted on `fraction` of the training set: the
/// signal shrinks with the fraction, and the noise differs.
pub fn predictions_at(
    d: &Dataset,
    model: &str,
    strategy: &str,
    seed: u64,
    fraction: Option<f64>,
) -> Predictions {
    let f = fraction.unwrap_or(1.0);
    let s = strength(model, strategy) * f.powf(0.5);
    let mut key =
        hash(model) ^ hash(strategy).rotate_left(7) ^ seed.wrapping_mul(7919) ^ hash(d.name);
    if let Some(f) = fraction {
        key ^= f.to_bits().rotate_left(13);
    }
    let scale = if probabilities(model) { 0.25 } else { 1.0 };
    let scores = d
        .targets
        .iter()
        .enumerate()
        .map(|(j, t)| {
            t.iter()
                .enumerate()
                .map(|(i, t)| {
                    let signal = if *t == Some(true) { s } else { 0.0 };
                    // Rounded so some scores tie.
                    ((signal + 2.0 * noise(key + (i * 31 + j) as u64)) * 20.0).round() / 20.0
                        * scale
                })
                .collect()
        })
        .collect();
    Predictions {
        ids: d.ids.clone(),
        labels: d.labels.iter().map(|l| l.to_string()).collect(),
        targets: d.targets.clone(),
        scores,
        patients: d.patients.clone(),
        attributes: d.attributes.clone(),
    }
}

pub fn write_run(dir: &Path, p: &Predictions) {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = Vec::new();
    p.write_to(&mut bytes).unwrap();
    std::fs::write(dir.join("predictions-test.csv"), bytes).unwrap();
}

pub struct Grid {
    pub cells: Vec<Cell>,
    pub inputs: Vec<CellInput>,
    pub dir: tempfile::TempDir,
}

/// Two datasets x {imagenet, moco, convirt} x {linear, finetune}; convirt
/// finetune has two seeds; plus one missing, one failed and one unusable cell.
pub fn grid() -> Grid {
    let mut g = grid_of(vec![binary(), multilabel()]);
    let dir = g.dir.path().to_owned();
    let extra = |model: &str, run: PathBuf, error: Option<String>| Cell {
        dataset: "Pneumothorax".into(),
        model: model.into(),
        strategy: "linear".into(),
        seed: 0,
        fraction: None,
        run_dir: run,
        error,
    };
    // A run that never wrote predictions.
    let missing = extra("gloria", dir.join("gloria"), None);
    std::fs::create_dir_all(&missing.run_dir).unwrap();
    // A run the runner knows failed.
    let failed = extra("refers", dir.join("refers"), Some("out of memory".into()));
    // A run on other images.
    let other = dir.join("medaug");
    let mut wrong = predictions(&binary(), "medaug", "linear", 0);
    wrong.ids[0] = "zzz".into();
    write_run(&other, &wrong);
    let unusable = extra("medaug", other, None);
    for c in [missing, failed, unusable] {
        g.inputs.push(CellInput::read(&c));
        g.cells.push(c);
    }
    g
}

/// Adds the cell of `p` (written to its own run directory) to `g`.
pub fn add_cell(g: &mut Grid, cell: Cell, p: Predictions) {
    write_run(&cell.run_dir, &p);
    g.inputs.push(CellInput {
        cell: cell.clone(),
        source: cxr_report::CellSource::Loaded(p),
    });
    g.cells.push(cell);
}

/// `datasets` x {imagenet, moco, convirt} x {linear, finetune}; convirt
/// finetune has two seeds.
pub fn grid_of(datasets: Vec<Dataset>) -> Grid {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Grid {
        cells: Vec::new(),
        inputs: Vec::new(),
        dir,
    };
    for d in datasets {
        for strategy in ["linear", "finetune"] {
            for model in ["imagenet", "moco", "convirt"] {
                let seeds: &[u64] = if model == "convirt" && strategy == "finetune" {
                    &[0, 1]
                } else {
                    &[0]
                };
                for &seed in seeds {
                    let run = g
                        .dir
                        .path()
                        .join(format!("{}-{model}-{strategy}-{seed}", d.name));
                    let cell = Cell {
                        dataset: d.name.into(),
                        model: model.into(),
                        strategy: strategy.into(),
                        seed,
                        fraction: None,
                        run_dir: run,
                        error: None,
                    };
                    add_cell(&mut g, cell, predictions(&d, model, strategy, seed));
                }
            }
        }
    }
    g
}

pub fn config() -> ReportConfig {
    ReportConfig {
        n_bootstrap: B,
        seed: 7,
        ..ReportConfig::new("imagenet")
    }
}

pub fn strategy<'a>(r: &'a Report, dataset: &str, s: &str) -> &'a StrategyReport {
    r.datasets
        .iter()
        .find(|d| d.name == dataset)
        .unwrap()
        .strategies
        .iter()
        .find(|x| x.strategy == s)
        .unwrap()
}

pub fn direct_macro(p: &Predictions) -> f64 {
    let aucs: Vec<f64> = (0..p.labels.len())
        .filter_map(|j| {
            let (t, s): (Vec<bool>, Vec<f64>) = p.targets[j]
                .iter()
                .zip(&p.scores[j])
                .filter_map(|(t, s)| t.map(|t| (t, *s)))
                .unzip();
            roc_auc(&t, &s).unwrap()
        })
        .collect();
    aucs.iter().sum::<f64>() / aucs.len() as f64
}

/// Every number `x.yyy` in `text` (sign ignored for `+`) that is not
/// among the 3-decimal roundings of `json`'s numbers.
pub fn untraceable(text: &str, json: &serde_json::Value) -> Vec<String> {
    fn collect(v: &serde_json::Value, out: &mut HashSet<String>) {
        match v {
            serde_json::Value::Number(n) => {
                out.insert(format!("{:.3}", n.as_f64().unwrap()));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut known = HashSet::new();
    collect(json, &mut known);
    let bytes = text.as_bytes();
    let mut bad = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = if i > 0 && bytes[i - 1] == b'-' {
                i - 1
            } else {
                i
            };
            let mut k = i;
            while k < bytes.len() && (bytes[k].is_ascii_digit() || bytes[k] == b'.') {
                k += 1;
            }
            let token = &text[start..k];
            if token.contains('.') {
                let v: f64 = token.trim_end_matches('.').parse().unwrap();
                if !known.contains(&format!("{v:.3}")) {
                    bad.push(token.to_owned());
                }
            }
            i = k;
        } else {
            i += 1;
        }
    }
    bad
}

/// The macro AUC of `p` on the images `members` alone: the mean over the
/// labels with both classes among them, by `roc_auc`.
pub fn direct_macro_on(p: &Predictions, members: &[usize]) -> Option<f64> {
    let aucs: Vec<f64> = (0..p.labels.len())
        .filter_map(|j| {
            let (t, s): (Vec<bool>, Vec<f64>) = members
                .iter()
                .filter_map(|&i| p.targets[j][i].map(|t| (t, p.scores[j][i])))
                .unzip();
            roc_auc(&t, &s).unwrap()
        })
        .collect();
    (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
}

/// The images of `d` whose `column` value is `value`.
pub fn members(d: &Dataset, column: &str, value: &str) -> Vec<usize> {
    let values = &d.attributes[column];
    (0..d.ids.len())
        .filter(|&i| values[i].as_deref() == Some(value))
        .collect()
}

/// The distinct patients among `members`.
pub fn patients_of(d: &Dataset, members: &[usize]) -> usize {
    let p = d.patients.as_ref().unwrap();
    members
        .iter()
        .map(|&i| p[i].as_str())
        .collect::<HashSet<_>>()
        .len()
}

/// The report of `g` with `config`.
pub fn report(g: &Grid, config: &ReportConfig) -> Report {
    Report::from_predictions(g.inputs.clone(), config).unwrap()
}
