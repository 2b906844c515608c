//! End-to-end checks of the benchmark report on a small synthetic grid
//! whose scores are known, against direct computations with `cxr_stats`
//! (the grid itself is in `common`).

use crate::common;

use common::*;
use cxr_report::{BaselineStrategy, CellStatus, Report, ReportConfig, Resample, TaskKind, Unit};
use cxr_stats::bootstrap::replicate_counts;
use cxr_stats::evaluation::Options;
use cxr_stats::{BootstrapConfig, evaluate_with, percentile, roc_auc_weighted};

/// Every single-seed model of `datasets` in `r` against
/// `cxr_stats::evaluate_with` with the same settings and unit: the same
/// point estimates, and bit for bit the same intervals, paired differences,
/// p-values and (per label, whose family is the evaluation's) Holm values.
fn check_against_evaluate(r: &Report, datasets: &[Dataset], resample: Resample) {
    for d in datasets {
        for s in ["linear", "finetune"] {
            let sr = strategy(r, d.name, s);
            let base = predictions(d, "imagenet", s, 0);
            for m in ["imagenet", "moco"] {
                let p = predictions(d, m, s, 0);
                let got = sr.models.iter().find(|x| x.model == m).unwrap();
                let auc = got.macro_avg.auc.unwrap();
                assert!((auc - direct_macro(&p)).abs() < 1e-12, "{m} {s} {}", d.name);
                let options = Options {
                    bootstrap: BootstrapConfig {
                        n_replicates: B,
                        seed: 7,
                        confidence: 0.95,
                    },
                    resample,
                    ..Options::default()
                };
                let e = evaluate_with(&p, (m != "imagenet").then_some(&base), &options).unwrap();
                let dataset = r.datasets.iter().find(|x| x.name == d.name).unwrap();
                assert_eq!(dataset.resample, e.resample);
                assert_eq!(dataset.n_clusters, e.n_clusters);
                assert_eq!(dataset.mean_cluster_size, e.mean_cluster_size);
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
                    assert_eq!(mine.significant, mine.p_value_holm.unwrap() < 0.05);
                    for (l, el) in got.labels.iter().zip(&e.labels) {
                        let (lc, ec) = (
                            l.vs_baseline.as_ref().unwrap(),
                            el.comparison.as_ref().unwrap(),
                        );
                        assert_eq!((lc.delta, lc.delta_ci), (ec.delta, ec.delta_ci));
                        assert_eq!(lc.p_value, ec.p_value_bootstrap);
                        assert_eq!(lc.p_value_holm, ec.p_value_holm);
                        assert_eq!(lc.significant, ec.p_value_holm.is_some_and(|p| p < 0.05));
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
}

#[test]
fn macro_aucs_match_direct_computation_and_evaluate() {
    let g = grid();
    let r = Report::from_predictions(g.inputs, &config()).unwrap();
    check_against_evaluate(&r, &[binary(), multilabel()], Resample::Auto);
    // Without patient ids, images are the unit.
    for d in &r.datasets {
        assert_eq!((d.resample, d.n_clusters), (Unit::Image, d.n_images));
        assert_eq!(d.mean_cluster_size, 1.0);
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
fn patient_level_intervals_match_evaluate_for_both_units() {
    let g = grid_of(vec![clinical(), binary()]);
    // Auto: patients where the files carry them (Clinical), images elsewhere.
    let auto = report(&g, &config());
    check_against_evaluate(&auto, &[clinical(), binary()], Resample::Auto);
    let d = &auto.datasets[0];
    assert_eq!(
        (d.resample, d.n_clusters, d.n_images),
        (Unit::Patient, 60, 150)
    );
    assert!((d.mean_cluster_size - 2.5).abs() < 1e-15);
    assert_eq!(auto.datasets[1].resample, Unit::Image);
    // Images on request, on the same files.
    let image = report(
        &g,
        &ReportConfig {
            resample: Resample::Image,
            ..config()
        },
    );
    check_against_evaluate(&image, &[clinical()], Resample::Image);
    assert_eq!(image.datasets[0].resample, Unit::Image);
    // Clustered draws give other (here wider) intervals than image draws.
    let width = |r: &Report| {
        let m = &strategy(r, "Clinical", "linear").models[0];
        let [lo, hi] = m.macro_avg.ci.unwrap();
        hi - lo
    };
    assert_ne!(width(&auto), width(&image));
    // The unit is stated per dataset in the notes and the Markdown.
    let md = auto.to_markdown();
    assert!(md.contains("Clinical: patients (60 patients, 2.500 images per patient)"));
    assert!(md.contains("Pneumothorax: images (60 images, no patient clustering)"));
    assert!(
        md.contains("| Clinical | multi-label | 3 | 150 | patient | 60 | 2.500 |"),
        "{md}"
    );
    // Only patient draws claim to keep a patient's films together; image
    // draws say what they cost.
    let clustered = "a patient is drawn with all of its images";
    assert!(md.contains(clustered), "{md}");
    let md_image = image.to_markdown();
    assert!(!md_image.contains(clustered), "{md_image}");
    assert!(
        md_image.contains("films of one patient are drawn separately"),
        "{md_image}"
    );
    // Rebuilt from the files (patient ids and attributes read back), the
    // report is identical.
    let files = Report::from_cells(&g.cells, &config()).unwrap();
    assert_eq!(files, auto);
    let out = tempfile::tempdir().unwrap();
    let w = files.write(out.path()).unwrap();
    assert_eq!(Report::rebuild(&w.json).unwrap(), files);
}

#[test]
fn patient_ids_must_agree_and_patients_need_ids() {
    let mut g = grid_of(vec![clinical()]);
    let d = clinical();
    // A cell whose file moves image x000 to another patient.
    let mut p = predictions(&d, "medaug", "linear", 0);
    p.patients.as_mut().unwrap()[0] = "pt99".into();
    let cell = cxr_report::Cell {
        dataset: d.name.into(),
        model: "medaug".into(),
        strategy: "linear".into(),
        seed: 0,
        fraction: None,
        run_dir: g.dir.path().join("medaug"),
        error: None,
    };
    add_cell(&mut g, cell, p);
    let r = report(&g, &config());
    let medaug = r.cells.iter().find(|c| c.cell.model == "medaug").unwrap();
    assert_eq!(medaug.status, CellStatus::Unusable);
    let why = medaug.message.as_deref().unwrap();
    assert!(
        why.contains("id 'x000' has patient_id 'pt00'") && why.contains("'pt99'"),
        "{why}"
    );
    // Patients asked for on a dataset without ids: a clear error.
    let e = Report::from_predictions(
        grid().inputs,
        &ReportConfig {
            resample: Resample::Patient,
            ..config()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Pneumothorax") && e.contains("patient_id"),
        "{e}"
    );
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
        "reliability-1-pneumothorax.png",
        "reliability-2-chest-multi.svg",
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
            let name = path.file_name().unwrap().to_string_lossy();
            if name.starts_with("reliability") {
                // One per dataset; only models with probability scores
                // (moco's are raw decision values) have a curve.
                let dataset = if name.contains("pneumothorax") {
                    "Pneumothorax"
                } else {
                    "Chest Multi"
                };
                assert!(svg.contains(dataset), "{name}");
                assert!(svg.contains("convirt") && svg.contains("imagenet (baseline)"));
                assert!(!svg.contains("moco"), "{name}");
                continue;
            }
            assert!(name.starts_with("figure"), "unexpected figure {name}");
            let is_fig1 = name.contains("figure1");
            assert!(svg.contains("Chest Multi"), "{}", path.display());
            assert_eq!(svg.contains("Pneumothorax"), !is_fig1, "{}", path.display());
            if is_fig1 {
                assert!(svg.contains("Enlarged Cardiomediastinum"));
            } else {
                assert!(svg.contains("convirt") && svg.contains("imagenet (baseline)"));
            }
        }
    }
    // Figures 1 (two strategies), 2, 3 and a reliability diagram per dataset;
    // no subgroup or label-efficiency figures without their data.
    assert_eq!(w.figures.len(), 2 * 6);
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert_eq!(html.matches("<svg").count(), 6);
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

/// Removes `keys` everywhere in `v`.
fn strip(v: &mut serde_json::Value, keys: &[&str]) {
    match v {
        serde_json::Value::Object(o) => {
            for k in keys {
                o.remove(*k);
            }
            o.values_mut().for_each(|x| strip(x, keys));
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| strip(x, keys)),
        _ => {}
    }
}

#[test]
fn reports_without_the_new_fields_are_still_read() {
    // Full-data cells only: a report from before fractions has none.
    let g = grid_of(vec![clinical()]);
    let r = Report::from_cells(&g.cells, &config()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let w = r.write(out.path()).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w.json).unwrap()).unwrap();
    let new_fields = [
        "p_value_holm",
        "resample",
        "n_clusters",
        "mean_cluster_size",
        "calibration",
        "subgroups",
        "label_efficiency",
        "fraction",
    ];
    strip(&mut json, &new_fields);
    let text = serde_json::to_string_pretty(&json).unwrap();
    for f in new_fields {
        assert!(!text.contains(&format!("\"{f}\"")), "{f}");
    }
    let old = out.path().join("old-report.json");
    std::fs::write(&old, text).unwrap();
    let read = Report::read(&old).unwrap();
    assert_eq!(read.settings.resample, cxr_report::Resample::Auto);
    for d in &read.datasets {
        // Old reports resampled images.
        assert_eq!(
            (d.resample, d.n_clusters, d.mean_cluster_size),
            (Unit::Image, d.n_images, 1.0)
        );
        for s in &d.strategies {
            assert!(s.subgroups.is_empty());
            let c = s.best_ssl.as_ref().unwrap().vs_baseline.as_ref().unwrap();
            assert_eq!(c.p_value_holm, None);
            assert!(s.models.iter().all(|m| m.calibration.is_none()));
        }
    }
    assert!(read.cells.iter().all(|c| c.cell.fraction.is_none()));
    // Rendering an old report works, and a rebuild recomputes everything.
    assert!(read.to_markdown().contains("## Table 2"));
    let rebuilt = Report::rebuild(&old).unwrap();
    assert_eq!(rebuilt.datasets[0].resample, Unit::Patient);
}

/// The unescaped `|` of a Markdown table row: one more than its cells.
fn pipes(row: &str) -> usize {
    let b = row.as_bytes();
    (0..b.len())
        .filter(|&k| b[k] == b'|' && (k == 0 || b[k - 1] != b'\\'))
        .count()
}

/// Every table of `md` has as many cells in each row as in its header.
fn assert_tables_well_formed(md: &str) {
    let mut header: Option<usize> = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let n = pipes(line);
            let want = *header.get_or_insert(n);
            assert_eq!(n, want, "row with another number of cells: {line}\n{md}");
        } else {
            header = None;
        }
    }
}

/// A label, a dataset name and a model name with HTML, a pipe and a newline
/// come out of `report.md` escaped: no raw HTML, no broken table (#22).
#[test]
fn report_md_escapes_user_strings() {
    const LABEL: &str = "<script>alert(1)</script> a|b\nc & d";
    let d = Dataset {
        name: "site|<b>x</b>\r\ny",
        labels: vec![LABEL],
        ..binary()
    };
    let mut g = grid_of(vec![d]);
    let d = Dataset {
        name: "site|<b>x</b>\r\ny",
        labels: vec![LABEL],
        ..binary()
    };
    let model = "evil<img src=x>|m\nodel";
    let run = g.dir.path().join("evil");
    let cell = cxr_report::Cell {
        dataset: d.name.into(),
        model: model.into(),
        strategy: "linear".into(),
        seed: 0,
        fraction: None,
        run_dir: run,
        error: None,
    };
    add_cell(&mut g, cell, predictions(&d, model, "linear", 0));
    let md = report(&g, &config()).to_markdown();
    for raw in [
        "<script>",
        "</script>",
        "<b>",
        "<img",
        "a|b",
        "\nc & d",
        "m\nodel",
    ] {
        assert!(!md.contains(raw), "{raw:?} unescaped in report.md:\n{md}");
    }
    for escaped in [
        "&lt;script&gt;alert(1)&lt;/script&gt; a\\|b c &amp; d",
        "site\\|&lt;b&gt;x&lt;/b&gt;  y",
        "evil&lt;img src=x&gt;\\|m odel",
    ] {
        assert!(md.contains(escaped), "{escaped:?} not in report.md:\n{md}");
    }
    assert_tables_well_formed(&md);
    // Fixed text around the names is Markdown already and stays as it was.
    assert!(md.contains("Holm-adjusted p < 0.05"));
}
