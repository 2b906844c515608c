//! `cxrlearn demo --quick` end to end on an even smaller setting: the report
//! has its tables and figures, every number in it comes from the run
//! directories (rebuilt from the files it is identical, and each model's
//! macro AUC is its cell's `evaluation.json`), a rerun reuses every stage,
//! and a directory holding another demo is refused.

use crate::common;

use std::path::Path;
use std::time::Instant;

use common::{run, run_ok as cxrlearn};
use serde_json::Value;

const SMALL: [&str; 12] = [
    "--scale",
    "0.25",
    "--pretrain-epochs",
    "1",
    "--finetune-epochs",
    "2",
    "--methods",
    "moco-cxr",
    "--jobs",
    "2",
    "--seed",
    "3",
];

fn demo(out: &Path) -> String {
    let mut args = vec!["demo", "--quick", "--out", out.to_str().unwrap()];
    args.extend(SMALL);
    String::from_utf8(cxrlearn(&args).stdout).unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn quick_demo_report_comes_from_its_run_directories() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let stdout = demo(&out);
    assert!(
        stdout.contains(&format!("report {}", out.join("report.html").display())),
        "{stdout}"
    );
    assert!(stdout.contains("## Table 2"), "{stdout}");

    // Structure: the stages' outputs, the report and its figures.
    for f in [
        "demo.toml",
        "grid.toml",
        "data/store-pretrain/dataset.json",
        "data/store-site0/dataset.json",
        "data/store-site1-shifted/dataset.json",
        "data/store-ood/dataset.json",
        "baseline-ood/model.safetensors",
        "pretrain/moco-cxr/encoder.safetensors",
        "report.md",
        "report.json",
        "report.html",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    for fig in [
        "figure1-per-task-linear",
        "figure1-per-task-finetune",
        "figure2-per-dataset-finetune",
        "figure3-per-dataset-linear",
    ] {
        for ext in ["png", "svg"] {
            let f = out.join("figures").join(format!("{fig}.{ext}"));
            assert!(std::fs::metadata(&f).unwrap().len() > 1000, "{fig}.{ext}");
        }
    }
    // The out-of-domain set is labeled with acquisition metadata only.
    let ood = json(&out.join("data/store-ood/dataset.json"));
    assert_eq!(
        ood["labels"],
        serde_json::json!(["AP portable", "Lateral view", "Female"])
    );
    // The held-out site is not the pretraining site.
    let site = |w: &str| {
        let j = json(&out.join(format!("data/raw-{w}/phantom.json")));
        j["sites"][0]["name"].as_str().unwrap().to_owned()
    };
    assert_eq!(site("pretrain"), "site0");
    assert_eq!(site("site0"), "site0");
    assert_eq!(site("site1-shifted"), "site1");
    assert_eq!(site("ood"), "site2");

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## Table 2",
        "## Table 4",
        "## Table 5",
        "| site0 |",
        "| site1-shifted |",
        "supervised-ood",
        "random-init",
        "moco-cxr",
        "never chosen as best: random-init",
        "None: every cell is in the report.",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
    }

    // Every model's macro AUC is its cell's own evaluation, and the
    // reference is never the best SSL model.
    let report = json(&out.join("report.json"));
    let datasets = report["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 2);
    let mut checked = 0;
    for d in datasets {
        for s in d["strategies"].as_array().unwrap() {
            let strategy = s["strategy"].as_str().unwrap();
            if let Some(best) = s["best_ssl"].as_object() {
                assert_eq!(best["model"], "moco-cxr");
            }
            for m in s["models"].as_array().unwrap() {
                let cell = out
                    .join("cells")
                    .join(d["name"].as_str().unwrap())
                    .join(m["model"].as_str().unwrap())
                    .join(strategy)
                    .join("seed-3");
                let eval = json(&cell.join("evaluation.json"));
                let (a, b) = (&m["macro"]["auc"], &eval["macro"]["auc"]);
                match (a.as_f64(), b.as_f64()) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{a} vs {b}"),
                    _ => assert_eq!(a, b),
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 2 * 3);

    // Rebuilt from the files alone, the report is the same, byte for byte.
    let before: Vec<Vec<u8>> = ["report.md", "report.json", "report.html"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    std::fs::remove_file(out.join("report.md")).unwrap();
    cxrlearn(&["benchmark", "report", "--out", out.to_str().unwrap()]);
    for (f, old) in ["report.md", "report.json", "report.html"]
        .iter()
        .zip(&before)
    {
        assert!(
            std::fs::read(out.join(f)).unwrap() == *old,
            "{f} differs when rebuilt"
        );
    }

    // A rerun reuses every stage and cell.
    let t = Instant::now();
    let again = demo(&out);
    assert!(again.contains("## Table 2"));
    let log = std::fs::read_to_string(out.join("demo.log")).unwrap();
    assert_eq!(log.matches("$ cxrlearn --quiet finetune").count(), 1);
    assert_eq!(std::fs::read(out.join("report.md")).unwrap(), before[0]);
    assert!(t.elapsed().as_secs() < 60, "rerun took {:?}", t.elapsed());

    // Other settings (the full demo's) in the same directory: refused,
    // nothing touched.
    let mut args = vec!["demo", "--out", out.to_str().unwrap()];
    args.extend(SMALL);
    let refused = run(&args);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("demo.toml"), "{err}");
    assert_eq!(std::fs::read(out.join("report.md")).unwrap(), before[0]);
}
