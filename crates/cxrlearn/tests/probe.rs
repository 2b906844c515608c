//! `cxrlearn probe --features` end to end on synthetic features directories:
//! every run-directory file (docs/formats.md) and its consistency with
//! `cxrlearn evaluate`, the C grid, standardisation, a multi-class task, ids
//! from a real store, and bad inputs (one `error:` line, no run directory).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{run, run_ok};

use cxr_nn::checkpoint::{RawTensor, load, to_safetensors};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

const D: usize = 16;
const LABELS: [&str; 3] = ["Atelectasis", "Cardiomegaly", "Effusion"];

/// One split as the features command writes it (row-major).
struct Split {
    features: Vec<f32>,
    labels: Vec<f32>,
    index: Vec<i64>,
    k: usize,
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    // Box-Muller: rand_distr is not a dependency.
    let u: f64 = rng.random::<f64>().max(1e-12);
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// Multi-label rows: label `j` (prevalence 0.3) shifts features `2j` and
/// `2j + 1`; about 8% of the targets are unknown (NaN).
fn multilabel_split(rng: &mut ChaCha8Rng, n: usize, first_index: i64) -> Split {
    let k = LABELS.len();
    let mut features = Vec::with_capacity(n * D);
    let mut labels = Vec::with_capacity(n * k);
    for _ in 0..n {
        let y: Vec<bool> = (0..k).map(|_| rng.random_bool(0.3)).collect();
        for f in 0..D {
            let shift = if f < 2 * k && y[f / 2] { 1.5 } else { 0.0 };
            features.push(normal(rng) + shift);
        }
        for &t in &y {
            labels.push(if rng.random_bool(0.08) {
                f32::NAN
            } else {
                f32::from(u8::from(t))
            });
        }
    }
    Split {
        features,
        labels,
        index: (first_index..first_index + n as i64).collect(),
        k,
    }
}

/// Multi-class rows: one-hot over three classes, class `c` shifting feature `c`.
fn multiclass_split(rng: &mut ChaCha8Rng, n: usize, first_index: i64) -> Split {
    let k = 3;
    let mut features = Vec::with_capacity(n * D);
    let mut labels = Vec::with_capacity(n * k);
    for _ in 0..n {
        let class = rng.random_range(0..k);
        for f in 0..D {
            features.push(normal(rng) + if f == class { 2.0 } else { 0.0 });
        }
        labels.extend((0..k).map(|c| f32::from(u8::from(c == class))));
    }
    Split {
        features,
        labels,
        index: (first_index..first_index + n as i64).collect(),
        k,
    }
}

fn raw(name: &str, t: &tch::Tensor) -> (String, RawTensor) {
    (name.to_owned(), RawTensor::from_tch(name, t).unwrap())
}

fn write_split(dir: &Path, name: &str, s: &Split, omit: Option<&str>) {
    let n = s.index.len() as i64;
    let mut tensors: BTreeMap<String, RawTensor> = BTreeMap::from([
        raw(
            "features",
            &tch::Tensor::from_slice(&s.features).view([n, D as i64]),
        ),
        raw(
            "labels",
            &tch::Tensor::from_slice(&s.labels).view([n, s.k as i64]),
        ),
        raw("index", &tch::Tensor::from_slice(&s.index)),
    ]);
    if let Some(name) = omit {
        tensors.remove(name);
    }
    std::fs::write(
        dir.join(format!("{name}.safetensors")),
        to_safetensors(&tensors, None).unwrap(),
    )
    .unwrap();
}

fn write_meta(dir: &Path, labels: &[&str], task: &str, store: &Path) {
    let meta = json!({
        "model": "synthetic",
        "labels": labels,
        "task": task,
        "dim": D,
        "store": store.display().to_string(),
    });
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
}

/// A features directory; `store` need not exist (ids then fall back to row
/// numbers).
fn features_dir(
    dir: &Path,
    splits: [&Split; 3],
    labels: &[&str],
    task: &str,
    store: &Path,
) -> PathBuf {
    let out = dir.join("features");
    std::fs::create_dir_all(&out).unwrap();
    for (name, s) in ["train", "val", "test"].into_iter().zip(splits) {
        write_split(&out, name, s, None);
    }
    write_meta(&out, labels, task, store);
    out
}

fn multilabel_dir(dir: &Path, seed: u64) -> (PathBuf, [Split; 3]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let splits = [
        multilabel_split(&mut rng, 300, 0),
        multilabel_split(&mut rng, 100, 300),
        multilabel_split(&mut rng, 100, 400),
    ];
    let path = features_dir(
        dir,
        [&splits[0], &splits[1], &splits[2]],
        &LABELS,
        "multilabel",
        &dir.join("no-such-store"),
    );
    (path, splits)
}

fn probe(features: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--quiet".to_owned(),
        "probe".into(),
        "--features".into(),
        features.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--device".into(),
        "cpu".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

fn probe_ok(features: &Path, out: &Path, extra: &[&str]) -> Output {
    let o = probe(features, out, extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn read_config(run: &Path) -> toml::Table {
    std::fs::read_to_string(run.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap()
}

fn read_log(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Rows of a predictions file (header checked), the four required columns;
/// the per-image columns (patient_id, subgroups) follow when the store has them.
fn read_predictions(path: &Path) -> Vec<[String; 4]> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("id,label,target,score"), "{header}");
    let width = header.split(',').count();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), width, "{l}");
            [f[0], f[1], f[2], f[3]].map(str::to_owned)
        })
        .collect()
}

/// Checks one predictions file against the split it was made from: one row
/// per (image, label) in row order, targets empty where unknown, finite
/// probabilities. Returns the scores, row-major.
fn check_predictions(path: &Path, split: &Split, labels: &[&str], ids: &[String]) -> Vec<f64> {
    let rows = read_predictions(path);
    assert_eq!(
        rows.len(),
        split.index.len() * labels.len(),
        "{}",
        path.display()
    );
    let mut scores = Vec::new();
    for (r, [id, label, target, score]) in rows.iter().enumerate() {
        let (i, j) = (r / labels.len(), r % labels.len());
        assert_eq!(id, &ids[i]);
        assert_eq!(label, labels[j]);
        let t = split.labels[i * labels.len() + j];
        let expected = if t.is_nan() {
            ""
        } else if t > 0.5 {
            "1"
        } else {
            "0"
        };
        assert_eq!(target, expected, "row {r}");
        let s: f64 = score.parse().unwrap();
        assert!((0.0..=1.0).contains(&s), "score {s}");
        scores.push(s);
    }
    scores
}

fn row_ids(split: &Split) -> Vec<String> {
    split.index.iter().map(|i| format!("row-{i}")).collect()
}

fn head(run: &Path) -> BTreeMap<String, RawTensor> {
    load(&run.join("head.safetensors")).unwrap().tensors
}

/// The failure contract: non-zero exit, exactly one `error:` line, no panic,
/// no run directory. Returns that line.
fn assert_clean_failure(o: &Output, out: &Path) -> String {
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!out.exists(), "{} was left behind", out.display());
    errors[0].to_owned()
}

#[test]
fn probe_writes_a_complete_run_directory_consistent_with_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let (features, splits) = multilabel_dir(dir.path(), 1);
    let out = dir.path().join("run");
    let o = probe_ok(&features, &out, &["--seed", "7", "--c", "0.5"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("row numbers"), "{stderr}");

    let config = read_config(&out);
    assert_eq!(config["command"].as_str(), Some("probe"));
    assert!(config["versions"]["cxrlearn"].is_str());
    let p = config["probe"].as_table().unwrap();
    assert_eq!(p["c"].as_float(), Some(0.5));
    assert_eq!(p["seed"].as_integer(), Some(7));
    let labels: Vec<&str> = p["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(labels, LABELS);
    assert_eq!(p["train_rows"].as_integer(), Some(300));
    assert_eq!(p["standardize"].as_bool(), Some(false));
    assert_eq!(p["features"].as_str(), Some(features.to_str().unwrap()));

    check_predictions(
        &out.join("predictions-val.csv"),
        &splits[1],
        &LABELS,
        &row_ids(&splits[1]),
    );
    check_predictions(
        &out.join("predictions-test.csv"),
        &splits[2],
        &LABELS,
        &row_ids(&splits[2]),
    );

    let evaluation = read_json(&out.join("evaluation.json"));
    let auc = evaluation["macro"]["auc"].as_f64().unwrap();
    assert!(auc > 0.75, "macro AUC {auc}");
    assert_eq!(evaluation["seed"], 7);
    assert_eq!(
        evaluation["predictions"]["path"].as_str(),
        Some("predictions-test.csv")
    );
    let again = dir.path().join("evaluate");
    run_ok(&[
        "--quiet",
        "evaluate",
        "--predictions",
        out.join("predictions-test.csv").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--seed",
        "7",
    ]);
    let recomputed = read_json(&again.join("evaluation.json"));
    assert_eq!(recomputed["macro"]["auc"].as_f64(), Some(auc));
    assert_eq!(
        recomputed["predictions"]["sha256"],
        evaluation["predictions"]["sha256"]
    );
    for (a, b) in evaluation["labels"]
        .as_array()
        .unwrap()
        .iter()
        .zip(recomputed["labels"].as_array().unwrap())
    {
        assert_eq!(a["auc"], b["auc"]);
    }

    let h = head(&out);
    assert_eq!(h["coef"].shape, [LABELS.len(), D]);
    assert_eq!(h["intercept"].shape, [LABELS.len()]);
    assert!(!h.contains_key("mean") && !h.contains_key("scale"));
    // Label j lives in features 2j and 2j + 1: its weights there dominate.
    let coef = h["coef"].to_f64();
    for j in 0..LABELS.len() {
        let row = &coef[j * D..(j + 1) * D];
        let signal = row[2 * j].min(row[2 * j + 1]);
        let rest = (0..D)
            .filter(|&f| f / 2 != j)
            .map(|f| row[f].abs())
            .fold(0.0, f64::max);
        assert!(signal > rest, "label {j}: {row:?}");
    }

    let log = read_log(&out);
    let fit: Vec<&Value> = log.iter().filter(|r| r["event"] == "fit").collect();
    assert_eq!(fit.len(), 1);
    assert_eq!(fit[0]["c"], 0.5);
    assert_eq!(fit[0]["objective"].as_array().unwrap().len(), LABELS.len());
    assert!(
        fit[0]["converged"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c == true)
    );
    assert!(log.iter().all(|r| r["event"] != "c_grid"));
}

#[test]
fn c_grid_logs_every_c_and_keeps_the_best_on_validation() {
    let dir = tempfile::tempdir().unwrap();
    let (features, _) = multilabel_dir(dir.path(), 2);
    let out = dir.path().join("run");
    // Given out of order: the grid is sorted before fitting.
    probe_ok(&features, &out, &["--c-grid", "1,0.0001,0.01"]);
    let log = read_log(&out);
    let grid: Vec<(f64, f64)> = log
        .iter()
        .filter(|r| r["event"] == "c_grid")
        .map(|r| {
            assert!(r["iterations"].as_u64().unwrap() > 0);
            (
                r["c"].as_f64().unwrap(),
                r["val_macro_auc"].as_f64().unwrap(),
            )
        })
        .collect();
    let cs: Vec<f64> = grid.iter().map(|g| g.0).collect();
    assert_eq!(cs, [0.0001, 0.01, 1.0]);
    // Ties go to the smaller C: the first strict maximum in ascending order.
    let mut best = grid[0];
    for &g in &grid[1..] {
        if g.1 > best.1 {
            best = g;
        }
    }
    assert!(best.1 > 0.75, "{grid:?}");
    let config = read_config(&out);
    let p = config["probe"].as_table().unwrap();
    assert_eq!(p["c"].as_float(), Some(best.0));
    let recorded: Vec<f64> = p["c_grid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_float().unwrap())
        .collect();
    assert_eq!(recorded, [1.0, 0.0001, 0.01]);
    let fit = log.iter().find(|r| r["event"] == "fit").unwrap();
    assert_eq!(fit["c"].as_f64(), Some(best.0));
}

#[test]
fn standardize_writes_the_scaler() {
    let dir = tempfile::tempdir().unwrap();
    let (features, splits) = multilabel_dir(dir.path(), 3);
    let out = dir.path().join("run");
    probe_ok(&features, &out, &["--standardize"]);
    assert_eq!(
        read_config(&out)["probe"]["standardize"].as_bool(),
        Some(true)
    );
    let h = head(&out);
    assert_eq!(h["mean"].shape, [D]);
    assert_eq!(h["scale"].shape, [D]);
    // The training split's mean and population standard deviation.
    let n = splits[0].index.len();
    let (mean, scale) = (h["mean"].to_f64(), h["scale"].to_f64());
    for f in 0..D {
        let col: Vec<f64> = (0..n)
            .map(|i| f64::from(splits[0].features[i * D + f]))
            .collect();
        let m = col.iter().sum::<f64>() / n as f64;
        let s = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!((mean[f] - m).abs() < 1e-9, "feature {f}");
        assert!((scale[f] - s).abs() < 1e-9, "feature {f}");
    }
    let auc = read_json(&out.join("evaluation.json"))["macro"]["auc"]
        .as_f64()
        .unwrap();
    assert!(auc > 0.75, "macro AUC {auc}");
}

#[test]
fn multiclass_features_fit_a_softmax_probe() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let splits = [
        multiclass_split(&mut rng, 300, 0),
        multiclass_split(&mut rng, 90, 300),
        multiclass_split(&mut rng, 90, 390),
    ];
    let classes = ["normal", "pneumonia", "covid"];
    let features = features_dir(
        dir.path(),
        [&splits[0], &splits[1], &splits[2]],
        &classes,
        "multiclass",
        &dir.path().join("gone"),
    );
    let out = dir.path().join("run");
    probe_ok(&features, &out, &[]);
    let scores = check_predictions(
        &out.join("predictions-test.csv"),
        &splits[2],
        &classes,
        &row_ids(&splits[2]),
    );
    // Class probabilities: each image's scores sum to one.
    for row in scores.chunks(classes.len()) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
    }
    let auc = read_json(&out.join("evaluation.json"))["macro"]["auc"]
        .as_f64()
        .unwrap();
    assert!(auc > 0.75, "macro AUC {auc}");
    let h = head(&out);
    assert_eq!(h["coef"].shape, [classes.len(), D]);
    assert_eq!(h["intercept"].shape, [classes.len()]);
    assert_eq!(
        read_config(&out)["probe"]["task"].as_str(),
        Some("multiclass")
    );
}

/// Nine 40x40 PNGs in a store (three patients, one binary label).
fn make_store(dir: &Path) -> PathBuf {
    let images = dir.join("raw");
    std::fs::create_dir_all(&images).unwrap();
    let mut csv = String::from("file,patient,Finding\n");
    for i in 0..9u32 {
        let img = image::GrayImage::from_fn(40, 40, |x, y| {
            image::Luma([((x * 5 + y * 11 + i * 31) % 256) as u8])
        });
        img.save(images.join(format!("img{i}.png"))).unwrap();
        csv.push_str(&format!("img{i}.png,p{},{}\n", i % 3, i % 2));
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    let store = dir.join("store");
    run_ok(&[
        "--quiet",
        "convert",
        "--csv",
        dir.join("labels.csv").to_str().unwrap(),
        "--image-root",
        images.to_str().unwrap(),
        "--path-column",
        "file",
        "--label-columns",
        "Finding",
        "--task",
        "binary",
        "--patient-column",
        "patient",
        "--size",
        "32",
        "--out",
        store.to_str().unwrap(),
    ]);
    store
}

#[test]
fn ids_come_from_the_store_when_it_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = make_store(dir.path());
    let rows = cxr_data::store::read::Store::open(&store).unwrap().rows;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut splits = [
        multilabel_split(&mut rng, 300, 0),
        multilabel_split(&mut rng, 60, 0),
        multilabel_split(&mut rng, 60, 0),
    ];
    // Val and test point at store rows, the last test row past its end.
    splits[1].index = (0..60).map(|i| i % rows.len() as i64).collect();
    splits[2].index = (0..60).map(|i| (i * 7) % rows.len() as i64).collect();
    splits[2].index[59] = 1000;
    let features = features_dir(
        dir.path(),
        [&splits[0], &splits[1], &splits[2]],
        &LABELS,
        "multilabel",
        &store,
    );
    let out = dir.path().join("run");
    let o = probe_ok(&features, &out, &[]);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for (name, split) in [("val", &splits[1]), ("test", &splits[2])] {
        let ids: Vec<String> = split
            .index
            .iter()
            .map(|&i| {
                rows.get(i as usize)
                    .map_or_else(|| format!("row-{i}"), |r| r.id.clone())
            })
            .collect();
        check_predictions(
            &out.join(format!("predictions-{name}.csv")),
            split,
            &LABELS,
            &ids,
        );
    }
}

#[test]
fn a_label_without_positives_in_train_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (features, mut splits) = multilabel_dir(dir.path(), 6);
    let k = LABELS.len();
    for i in 0..splits[0].index.len() {
        let t = &mut splits[0].labels[i * k + 1];
        if *t == 1.0 {
            *t = 0.0;
        }
    }
    write_split(&features, "train", &splits[0], None);
    let out = dir.path().join("run");
    let line = assert_clean_failure(&probe(&features, &out, &[]), &out);
    assert!(line.contains("'Cardiomegaly'"), "{line}");
    assert!(line.contains("0 positive"), "{line}");
}

#[test]
fn a_features_file_without_labels_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (features, splits) = multilabel_dir(dir.path(), 7);
    write_split(&features, "val", &splits[1], Some("labels"));
    let out = dir.path().join("run");
    let line = assert_clean_failure(&probe(&features, &out, &[]), &out);
    assert!(line.contains("val.safetensors"), "{line}");
    assert!(line.contains("'labels'"), "{line}");
}

#[test]
fn labels_not_matching_meta_json_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (features, _) = multilabel_dir(dir.path(), 8);
    // meta.json names two labels; the tensors carry three.
    write_meta(&features, &LABELS[..2], "multilabel", &dir.path().join("x"));
    let out = dir.path().join("run");
    let line = assert_clean_failure(&probe(&features, &out, &[]), &out);
    assert!(line.contains("train.safetensors"), "{line}");
    assert!(line.contains("2 labels"), "{line}");
}

#[test]
fn a_missing_features_directory_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let line = assert_clean_failure(&probe(&dir.path().join("nothing"), &out, &[]), &out);
    assert!(line.contains("meta.json"), "{line}");
}
