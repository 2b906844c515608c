//! `cxrlearn pretrain --method clip` on phantom (image, impression) pairs:
//! the symmetric InfoNCE falls, image->text accuracy clears chance, the
//! embeddings do not collapse, the image tower loads into `features`, the
//! whole CLIP into `zero-shot`, and a store without reports fails cleanly.

use crate::common;

use std::path::Path;

use common::{log, mean, phantom_store, run, run_ok as cxrlearn};
use serde_json::Value;

const BATCH: usize = 32;

/// A smaller CLIP than the docs/ssl-methods.md (Phantom-scale configurations) tiny default (one layer per tower, patch 16),
/// the shape the zero-shot test trains, so the run fits a debug build.
fn pretrain_args<'a>(store: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "--quiet",
        "pretrain",
        "--method",
        "clip",
        "--data",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "30",
        "--batch-size",
        "32",
        "--lr",
        "1e-3",
        "--weight-decay",
        "0.01",
        "--embed-dim",
        "32",
        "--vision-layers",
        "1",
        "--vision-width",
        "64",
        "--patch-size",
        "16",
        "--text-layers",
        "1",
        "--text-width",
        "64",
        "--device",
        "cpu",
    ]
}

#[test]
fn clip_learns_and_exports_both_models() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 300, 64, 1, 0);
    let out = dir.path().join("run");
    cxrlearn(&pretrain_args(&store, &out));
    let l = log(&out);
    let text = l.iter().find(|v| v["event"] == "text").unwrap();
    assert_eq!(text["skipped_without_report"], 0, "{text}");
    assert!(text["pairs"].as_u64().unwrap() >= 300, "{text}");
    let s: Vec<&Value> = l.iter().filter(|v| v["event"] == "step").collect();
    assert!(s.iter().all(|v| v["loss"].as_f64().unwrap().is_finite()));
    assert!(
        s.iter()
            .all(|v| v["logit_scale"].as_f64().unwrap() <= 100f64.ln() + 1e-6)
    );
    let q = s.len() / 4;
    let (early, late) = (mean(&s[..q], "loss"), mean(&s[s.len() - q..], "loss"));
    eprintln!("loss {early:.3} -> {late:.3}");
    assert!(late < 0.9 * early, "loss {early} -> {late}");
    let acc = mean(&s[s.len() - q..], "accuracy");
    let chance = 1.0 / BATCH as f64;
    eprintln!("image->text accuracy {acc:.3} (chance {chance:.3})");
    assert!(acc > 2.5 * chance, "accuracy {acc} vs chance {chance}");
    // Spread on the sphere: about 1/sqrt(32) = 0.18 per dimension; collapse -> 0.
    for key in ["embedding_std", "text_embedding_std"] {
        let std = mean(&s[s.len() - q..], key);
        assert!(std > 0.05, "{key} {std}");
    }

    let feats = dir.path().join("feats");
    let meta = common::features(&out.join("encoder.safetensors"), &store, &feats);
    assert_eq!(meta["dim"], 32);

    // Zero-shot AUC is near chance at this scale (about 0.54 macro at this
    // seed), so only that it runs end to end is checked.
    let zs = dir.path().join("zs");
    cxrlearn(&[
        "--quiet",
        "zero-shot",
        "--model",
        out.join("clip.safetensors").to_str().unwrap(),
        "--data",
        store.to_str().unwrap(),
        "--out",
        zs.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let e: Value =
        serde_json::from_slice(&std::fs::read(zs.join("evaluation.json")).unwrap()).unwrap();
    assert!(!e["labels"].as_array().unwrap().is_empty());
}

#[test]
fn clip_on_a_store_without_reports_names_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = common::store_without_reports(d, "store");
    let bad = d.join("bad");
    let mut a = pretrain_args(&store, &bad);
    // clap refuses repeated flags: replace the value instead.
    let i = a.iter().position(|x| *x == "--batch-size").unwrap();
    a[i + 1] = "4";
    let o = run(&a);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("'report'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!bad.exists(), "left {}", bad.display());
}
