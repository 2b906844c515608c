//! End-to-end checks of the benchmark report on a small synthetic grid
//! whose scores are known, against direct computations with `cxr_stats`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cxr_report::{
    BaselineStrategy, Cell, CellInput, CellStatus, Report, ReportConfig, StrategyReport, TaskKind,
};
use cxr_stats::bootstrap::replicate_counts;
use cxr_stats::{BootstrapConfig, Predictions, evaluate, percentile, roc_auc, roc_auc_weighted};

const B: usize = 200;

/// Deterministic noise in [0, 1) (SplitMix64), so the test needs no RNG crate.
fn noise(key: u64) -> f64 {
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    })
}

/// Test targets of a dataset: `targets[label][image]`.
struct Dataset {
    name: &'static str,
    labels: Vec<&'static str>,
    ids: Vec<String>,
    targets: Vec<Vec<Option<bool>>>,
}

fn binary() -> Dataset {
    let n = 60;
    Dataset {
        name: "Pneumothorax",
        labels: vec!["Pneumothorax"],
        ids: (0..n).map(|i| format!("p{i:03}")).collect(),
        targets: vec![(0..n).map(|i| Some(i % 3 == 0)).collect()],
    }
}

fn multilabel() -> Dataset {
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
    }
}

/// Signal strength of each model: convirt > moco > imagenet.
fn strength(model: &str, strategy: &str) -> f64 {
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

fn predictions(d: &Dataset, model: &str, strategy: &str, seed: u64) -> Predictions {
    let s = strength(model, strategy);
    let key = hash(model) ^ hash(strategy).rotate_left(7) ^ seed.wrapping_mul(7919) ^ hash(d.name);
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
                })
                .collect()
        })
        .collect();
    Predictions {
        ids: d.ids.clone(),
        labels: d.labels.iter().map(|l| l.to_string()).collect(),
        targets: d.targets.clone(),
        scores,
    }
}

fn write_run(dir: &Path, p: &Predictions) {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = Vec::new();
    p.write_to(&mut bytes).unwrap();
    std::fs::write(dir.join("predictions-test.csv"), bytes).unwrap();
}

struct Grid {
    cells: Vec<Cell>,
    inputs: Vec<CellInput>,
    _dir: tempfile::TempDir,
}

/// Two datasets x {imagenet, moco, convirt} x {linear, finetune}; convirt
/// finetune has two seeds; plus one missing, one failed and one unusable cell.
fn grid() -> Grid {
    let dir = tempfile::tempdir().unwrap();
    let mut cells = Vec::new();
    let mut inputs = Vec::new();
    for d in [binary(), multilabel()] {
        for strategy in ["linear", "finetune"] {
            for model in ["imagenet", "moco", "convirt"] {
                let seeds: &[u64] = if model == "convirt" && strategy == "finetune" {
                    &[0, 1]
                } else {
                    &[0]
                };
                for &seed in seeds {
                    let run = dir
                        .path()
                        .join(format!("{}-{model}-{strategy}-{seed}", d.name));
                    let p = predictions(&d, model, strategy, seed);
                    write_run(&run, &p);
                    let cell = Cell {
                        dataset: d.name.into(),
                        model: model.into(),
                        strategy: strategy.into(),
                        seed,
                        run_dir: run,
                        error: None,
                    };
                    inputs.push(CellInput {
                        cell: cell.clone(),
                        source: cxr_report::CellSource::Loaded(p),
                    });
                    cells.push(cell);
                }
            }
        }
    }
    let extra = |model: &str, run: PathBuf, error: Option<String>| Cell {
        dataset: "Pneumothorax".into(),
        model: model.into(),
        strategy: "linear".into(),
        seed: 0,
        run_dir: run,
        error,
    };
    // A run that never wrote predictions.
    let missing = extra("gloria", dir.path().join("gloria"), None);
    std::fs::create_dir_all(&missing.run_dir).unwrap();
    // A run the runner knows failed.
    let failed = extra(
        "refers",
        dir.path().join("refers"),
        Some("out of memory".into()),
    );
    // A run on other images.
    let other = dir.path().join("medaug");
    let mut wrong = predictions(&binary(), "medaug", "linear", 0);
    wrong.ids[0] = "zzz".into();
    write_run(&other, &wrong);
    let unusable = extra("medaug", other, None);
    for c in [missing, failed, unusable] {
        inputs.push(CellInput::read(&c));
        cells.push(c);
    }
    Grid {
        cells,
        inputs,
        _dir: dir,
    }
}

fn config() -> ReportConfig {
    ReportConfig {
        n_bootstrap: B,
        seed: 7,
        ..ReportConfig::new("imagenet")
    }
}

fn strategy<'a>(r: &'a Report, dataset: &str, s: &str) -> &'a StrategyReport {
    r.datasets
        .iter()
        .find(|d| d.name == dataset)
        .unwrap()
        .strategies
        .iter()
        .find(|x| x.strategy == s)
        .unwrap()
}

fn direct_macro(p: &Predictions) -> f64 {
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

#[test]
fn macro_aucs_match_direct_computation_and_evaluate() {
    let g = grid();
    let r = Report::from_predictions(g.inputs, &config()).unwrap();
    for d in [binary(), multilabel()] {
        for s in ["linear", "finetune"] {
            let sr = strategy(&r, d.name, s);
            let base = predictions(&d, "imagenet", s, 0);
            for m in ["imagenet", "moco"] {
                let p = predictions(&d, m, s, 0);
                let got = sr.models.iter().find(|x| x.model == m).unwrap();
                let auc = got.macro_avg.auc.unwrap();
                assert!((auc - direct_macro(&p)).abs() < 1e-12, "{m} {s} {}", d.name);
                // Single-seed cells reproduce `cxrlearn evaluate` exactly.
                let bc = BootstrapConfig {
                    n_replicates: B,
                    seed: 7,
                    confidence: 0.95,
                };
                let e = evaluate(&p, (m != "imagenet").then_some(&base), &bc).unwrap();
                assert_eq!(got.macro_avg.ci, e.macro_avg.ci);
                for (l, el) in got.labels.iter().zip(&e.labels) {
                    assert_eq!((l.auc, l.ci), (el.auc, el.ci), "{}", l.label);
                    assert_eq!(l.n_valid_replicates, el.n_valid_replicates);
                }
                if let Some(c) = &e.macro_avg.comparison {
                    let mine = got.vs_baseline.as_ref().unwrap();
                    assert_eq!(mine.delta, c.delta);
                    assert_eq!(mine.delta_ci, c.delta_ci);
                    assert_eq!(mine.p_value, c.p_value_bootstrap);
                    assert_eq!(mine.significant, c.p_value_bootstrap.unwrap() < 0.05);
                    for (l, el) in got.labels.iter().zip(&e.labels) {
                        let (lc, ec) = (
                            l.vs_baseline.as_ref().unwrap(),
                            el.comparison.as_ref().unwrap(),
                        );
                        assert_eq!((lc.delta, lc.delta_ci), (ec.delta, ec.delta_ci));
                        assert_eq!(lc.p_value, ec.p_value_bootstrap);
                    }
                } else {
                    assert!(
                        got.vs_baseline.is_none(),
                        "the comparator has no comparison"
                    );
                }
            }
        }
    }
    let chest = r.datasets.iter().find(|d| d.name == "Chest Multi").unwrap();
    assert_eq!(chest.task, TaskKind::MultiLabel);
    assert_eq!(r.datasets[0].task, TaskKind::Binary);
    let label2 = &strategy(&r, "Chest Multi", "linear").models[0].labels[2];
    let known = multilabel().targets[2].iter().flatten().count();
    assert_eq!(label2.n_pos + label2.n_neg, known);
    assert!(known < 80);
}

#[test]
fn seeds_are_averaged_on_shared_replicates() {
    let g = grid();
    let r = Report::from_predictions(g.inputs, &config()).unwrap();
    let d = binary();
    let sr = strategy(&r, d.name, "finetune");
    let convirt = sr.models.iter().find(|m| m.model == "convirt").unwrap();
    assert_eq!(convirt.seeds, [0, 1]);
    let ps = [0, 1].map(|s| predictions(&d, "convirt", "finetune", s));
    let per_seed = ps.clone().map(|p| direct_macro(&p));
    assert_eq!(convirt.seed_macro_aucs, per_seed.map(Some));
    let mean = (per_seed[0] + per_seed[1]) / 2.0;
    assert!((convirt.macro_avg.auc.unwrap() - mean).abs() < 1e-12);
    assert!(
        (per_seed[0] - per_seed[1]).abs() > 1e-3,
        "seeds should differ"
    );
    // Interval: seed-averaged AUC in each replicate, replicate draws as evaluate's.
    let targets: Vec<bool> = d.targets[0].iter().map(|t| t.unwrap()).collect();
    let mut counts = Vec::new();
    let mut reps: Vec<f64> = (0..B as u64)
        .filter_map(|b| {
            replicate_counts(7, b, targets.len(), &mut counts);
            let w: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
            let a = roc_auc_weighted(&targets, &ps[0].scores[0], &w).unwrap()?;
            let c = roc_auc_weighted(&targets, &ps[1].scores[0], &w).unwrap()?;
            Some((a + c) / 2.0)
        })
        .collect();
    reps.sort_by(f64::total_cmp);
    let [lo, hi] = convirt.macro_avg.ci.unwrap();
    assert!((lo - percentile(&reps, 0.025)).abs() < 1e-12);
    assert!((hi - percentile(&reps, 0.975)).abs() < 1e-12);
}

#[test]
fn reference_models_are_never_best() {
    // convirt is built strongest; as a reference it stays in the tables but
    // the best SSL model becomes the next one.
    let with_ref = ReportConfig {
        reference_models: vec!["convirt".into()],
        ..config()
    };
    let r = Report::from_predictions(grid().inputs, &with_ref).unwrap();
    for d in ["Pneumothorax", "Chest Multi"] {
        for s in ["linear", "finetune"] {
            let sr = strategy(&r, d, s);
            assert_eq!(sr.best_ssl.as_ref().unwrap().model, "moco", "{d} {s}");
            assert!(sr.models.iter().any(|m| m.model == "convirt"));
        }
    }
    assert!(
        r.method
            .iter()
            .any(|m| m.contains("never chosen as best: convirt"))
    );
}

#[test]
fn best_ssl_and_paired_delta() {
    let g = grid();
    let r = Report::from_predictions(g.inputs, &config()).unwrap();
    for d in ["Pneumothorax", "Chest Multi"] {
        for s in ["linear", "finetune"] {
            let sr = strategy(&r, d, s);
            let best = sr.best_ssl.as_ref().unwrap();
            let top = sr
                .models
                .iter()
                .filter(|m| !m.is_baseline)
                .map(|m| m.macro_avg.auc.unwrap())
                .fold(f64::MIN, f64::max);
            assert_eq!(best.macro_avg.auc, Some(top));
            assert_eq!(best.model, "convirt", "{d} {s}");
            let base = sr.baseline.as_ref().unwrap();
            assert_eq!(base.model, "imagenet");
            let c = best.vs_baseline.as_ref().unwrap();
            let delta = top - base.macro_avg.auc.unwrap();
            assert!((c.delta.unwrap() - delta).abs() < 1e-12);
            assert!(delta > 0.05, "convirt is built stronger: {delta}");
            let [lo, hi] = c.delta_ci.unwrap();
            assert!(lo <= delta && delta <= hi);
            assert!(c.significant && c.p_value.unwrap() < 0.05);
            assert_eq!(c.baseline_strategy, s);
            // Figure 1 data: the best model's labels against the baseline's.
            assert_eq!(sr.per_label.len(), if d == "Chest Multi" { 3 } else { 1 });
            for (k, l) in sr.per_label.iter().enumerate() {
                let m = sr.models.iter().find(|m| m.model == "convirt").unwrap();
                assert_eq!(l.best_ssl.auc, m.labels[k].auc);
                assert_eq!(l.baseline.auc, base.labels[k].auc);
            }
        }
    }
    // Fixed comparator: linear probes against the finetuned baseline (paper's Table 2).
    let fixed = ReportConfig {
        baseline_strategy: BaselineStrategy::Fixed("finetune".into()),
        ..config()
    };
    let g = grid();
    let r2 = Report::from_predictions(g.inputs, &fixed).unwrap();
    let lin = strategy(&r2, "Pneumothorax", "linear");
    let ft_base = strategy(&r, "Pneumothorax", "finetune")
        .baseline
        .as_ref()
        .unwrap();
    let c = lin.best_ssl.as_ref().unwrap().vs_baseline.as_ref().unwrap();
    assert_eq!(c.baseline_strategy, "finetune");
    assert_eq!(c.baseline_auc, ft_base.macro_avg.auc);
    let lin_base = lin.models.iter().find(|m| m.is_baseline).unwrap();
    assert!(
        lin_base.vs_baseline.is_some(),
        "linear baseline is compared to finetuned"
    );
}

#[test]
fn missing_failed_and_unusable_cells_are_listed() {
    let g = grid();
    let r = Report::from_cells(&g.cells, &config()).unwrap();
    let status = |m: &str| r.cells.iter().find(|c| c.cell.model == m).unwrap();
    assert_eq!(status("gloria").status, CellStatus::Missing);
    assert_eq!(status("refers").status, CellStatus::Failed);
    assert_eq!(status("refers").message.as_deref(), Some("out of memory"));
    assert_eq!(status("medaug").status, CellStatus::Unusable);
    assert!(status("medaug").message.as_ref().unwrap().contains("zzz"));
    assert_eq!(r.cells_with(CellStatus::Ok).count(), 14);
    let md = r.to_markdown();
    for m in [
        "gloria",
        "refers",
        "medaug",
        "out of memory",
        "| missing |",
        "| unusable |",
    ] {
        assert!(md.contains(m), "{m} not in report.md");
    }
    let sr = strategy(&r, "Pneumothorax", "linear");
    assert!(
        !sr.models
            .iter()
            .any(|m| ["gloria", "refers", "medaug"].contains(&m.model.as_str()))
    );
}

#[test]
fn files_and_memory_give_the_same_report() {
    let g = grid();
    let memory = Report::from_predictions(g.inputs, &config()).unwrap();
    let files = Report::from_cells(&g.cells, &config()).unwrap();
    assert_eq!(memory.to_json().unwrap(), files.to_json().unwrap());
    let out = tempfile::tempdir().unwrap();
    let written = files.write(out.path()).unwrap();
    let rebuilt = Report::rebuild(&written.json).unwrap();
    assert_eq!(rebuilt, files);
    assert_eq!(Report::read(&written.json).unwrap(), files);
}

/// Every number `x.yyy` in `text` (sign ignored for `+`) that is not
/// among the 3-decimal roundings of `json`'s numbers.
fn untraceable(text: &str, json: &serde_json::Value) -> Vec<String> {
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

#[test]
fn report_md_numbers_trace_to_report_json() {
    let g = grid();
    let r = Report::from_cells(&g.cells, &config()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let w = r.write(out.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w.json).unwrap()).unwrap();
    let md = std::fs::read_to_string(&w.markdown).unwrap();
    let bad = untraceable(&md, &json);
    assert!(
        bad.is_empty(),
        "numbers in report.md not in report.json: {bad:?}"
    );
    // The check is not vacuous: Table 2 shows the best delta, and a stray number is caught.
    let c = strategy(&r, "Chest Multi", "finetune")
        .best_ssl
        .as_ref()
        .unwrap();
    let shown = format!("{:+.3}", c.vs_baseline.as_ref().unwrap().delta.unwrap());
    assert!(md.contains(&format!("{shown} [")), "{shown}");
    assert!(md.contains("* |"), "significance mark");
    assert_eq!(untraceable("AUC 77.125 and 12.5", &json).len(), 2);
}

#[test]
fn figures_are_valid_png_and_svg_and_html_is_offline() {
    let g = grid();
    let r = Report::from_cells(&g.cells, &config()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let w = r.write(out.path()).unwrap();
    let names: Vec<String> = w
        .figures
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "figure1-per-task-linear.png",
        "figure1-per-task-finetune.svg",
        "figure2-per-dataset-finetune.png",
        "figure3-per-dataset-linear.svg",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for path in &w.figures {
        let bytes = std::fs::read(path).unwrap();
        if path.extension().unwrap() == "png" {
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let mut reader = decoder.read_info().unwrap();
            let (width, height) = (reader.info().width, reader.info().height);
            assert!(
                width >= 1000 && height >= 200,
                "{}: {width}x{height}",
                path.display()
            );
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let frame = reader.next_frame(&mut buf).unwrap();
            // Text and markers are drawn: many non-white pixels, several colours.
            let px = &buf[..frame.buffer_size()];
            let dark = px.chunks(3).filter(|c| c.iter().all(|&v| v < 100)).count();
            assert!(dark > 2000, "{}: {dark} dark pixels", path.display());
        } else {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.contains("<svg"));
            let is_fig1 = path.to_string_lossy().contains("figure1");
            assert!(svg.contains("Chest Multi"), "{}", path.display());
            assert_eq!(svg.contains("Pneumothorax"), !is_fig1, "{}", path.display());
            if is_fig1 {
                assert!(svg.contains("Enlarged Cardiomediastinum"));
            } else {
                assert!(svg.contains("convirt") && svg.contains("imagenet (baseline)"));
            }
        }
    }
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("@import"));
    assert!(html.contains("<table>") && html.contains("Table 2"));
}

#[test]
fn bad_input_gives_clear_errors() {
    let g = grid();
    let mut cells = g.cells.clone();
    cells.push(cells[0].clone());
    let e = Report::from_cells(&cells, &config())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("given twice") && e.contains("Pneumothorax / linear / imagenet / seed 0"),
        "{e}"
    );
    let bad = ReportConfig {
        confidence: 1.5,
        ..config()
    };
    assert!(
        Report::from_cells(&g.cells, &bad)
            .unwrap_err()
            .to_string()
            .contains("confidence")
    );
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("report.json");
    std::fs::write(&path, "{\"format\": \"other\"}").unwrap();
    assert!(Report::rebuild(&path).is_err());
    // Without the baseline there is no comparison, but the models are still reported.
    let r = Report::from_cells(&g.cells, &ReportConfig::new("absent")).unwrap();
    let sr = strategy(&r, "Pneumothorax", "linear");
    assert!(sr.baseline.is_none() && sr.per_label.is_empty());
    assert!(sr.best_ssl.as_ref().unwrap().vs_baseline.is_none());
    assert!(r.to_markdown().contains("n/a"));
}
