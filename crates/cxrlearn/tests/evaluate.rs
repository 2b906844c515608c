//! `cxrlearn evaluate` end to end: outputs, numbers, and every bad-input case
//! (one `error:` line, no panic, no partial output directory).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::run as cxrlearn;

use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn evaluate(dir: &Path, model: &Path, baseline: Option<&Path>, extra: &[&str]) -> Output {
    let out = dir.join("out");
    let mut args = vec![
        "--quiet".to_owned(),
        "evaluate".into(),
        "--predictions".into(),
        model.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(b) = baseline {
        args.extend(["--baseline".into(), b.display().to_string()]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cxrlearn(&args)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn paired_evaluation_writes_three_files_with_consistent_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let model = examples().join("predictions-ssl.csv");
    let baseline = examples().join("predictions-imagenet.csv");
    let o = evaluate(dir.path(), &model, Some(&baseline), &["--bootstrap", "200"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("out");
    let json = read_json(&out.join("evaluation.json"));
    assert_eq!(json["n_bootstrap"], 200);
    assert_eq!(json["seed"], 0);
    assert_eq!(json["confidence"], 0.95);
    let labels = json["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 5);
    // scikit-learn's roc_auc_score on the same files (computed once).
    let sklearn = [
        ("Atelectasis", 0.7266596417281349, 0.631822971548999),
        ("Cardiomegaly", 0.8297785772409952, 0.6736262794980513),
        ("Effusion", 0.8399390243902439, 0.7010388437217706),
        ("Pneumothorax", 0.7767889669529014, 0.6832682799895915),
        ("Edema", 0.8664449585502216, 0.793859649122807),
    ];
    for (l, (name, auc, base)) in labels.iter().zip(sklearn) {
        assert_eq!(l["label"], name);
        assert!((l["auc"].as_f64().unwrap() - auc).abs() < 1e-12);
        assert!((l["baseline_auc"].as_f64().unwrap() - base).abs() < 1e-12);
        let ci = l["ci"].as_array().unwrap();
        assert!(ci[0].as_f64().unwrap() < auc && auc < ci[1].as_f64().unwrap());
        assert!(l["delta_ci"][0].as_f64().unwrap() > 0.0, "{name}");
        assert!(l["p_value_delong"].as_f64().unwrap() < 0.05);
    }
    let m = &json["macro"];
    let mean: f64 = sklearn.iter().map(|s| s.1).sum::<f64>() / 5.0;
    assert!((m["auc"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(m["delta_ci"][0].as_f64().unwrap() > 0.0);
    assert_eq!(json["predictions"]["sha256"].as_str().unwrap().len(), 64);

    let csv = std::fs::read_to_string(out.join("evaluation.csv")).unwrap();
    assert!(csv.starts_with("label,n_pos,n_neg,auc,ci_low,ci_high,baseline_auc,delta"));
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.lines().last().unwrap().starts_with("macro,"));
    let md = std::fs::read_to_string(out.join("evaluation.md")).unwrap();
    assert!(md.contains("| Atelectasis | 65 | 511 | 0.7267"));
    assert!(md.contains("macro (5 labels)"));

    // Same seed, same bytes.
    let again = tempfile::tempdir().unwrap();
    let o = evaluate(
        again.path(),
        &model,
        Some(&baseline),
        &["--bootstrap", "200"],
    );
    assert!(o.status.success());
    for f in ["evaluation.json", "evaluation.csv", "evaluation.md"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(again.path().join("out").join(f)).unwrap()
        );
    }
}

/// A failing run: non-zero exit, a single `error:` line naming the problem,
/// no panic, and no output directory left behind.
fn assert_clean_failure(o: &Output, dir: &Path, expect: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure for {expect}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(expect), "wanted '{expect}' in: {stderr}");
    assert!(!stderr.contains("panicked"));
    assert!(
        !dir.join("out").exists(),
        "partial output left for {expect}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = "id,label,target,score\na,X,1,0.9\nb,X,0,0.2\nc,X,1,0.4\nd,X,0,0.5\n";

#[test]
fn bad_inputs_fail_cleanly() {
    let cases = [
        ("", "file is empty"),
        ("id,label,target,score\n", "no prediction rows"),
        ("id,label,score\na,X,0.1\n", "missing column(s) target"),
        (
            "id,label,target,score\na,X,1,high\n",
            "line 2: score 'high' is not a number",
        ),
        ("id,label,target,score\na,X,1,nan\n", "not finite"),
        ("id,label,target,score\na,X,1,-inf\n", "not finite"),
        ("id,label,target,score\na,X,yes,0.3\n", "target 'yes'"),
        (
            "id,label,target,score\na,X,1,0.3\na,X,1,0.3\n",
            "duplicate row",
        ),
        ("id,label,target,score\na,X,1\n", "malformed CSV"),
    ];
    for (text, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "p.csv", text);
        let o = evaluate(dir.path(), &p, None, &[]);
        assert_clean_failure(&o, dir.path(), expect);
    }
    let dir = tempfile::tempdir().unwrap();
    let o = evaluate(dir.path(), &dir.path().join("absent.csv"), None, &[]);
    assert_clean_failure(&o, dir.path(), "absent.csv");
    let p = write(dir.path(), "p.csv", GOOD);
    let o = evaluate(dir.path(), &p, None, &["--confidence", "1.5"]);
    assert_clean_failure(
        &o,
        dir.path(),
        "confidence must be strictly between 0 and 1",
    );
}

#[test]
fn baseline_mismatches_are_named() {
    let cases = [
        (
            "id,label,target,score\na,X,1,0.9\nb,X,0,0.2\nc,X,1,0.4\ne,X,0,0.5\n",
            "1 id(s) only in the model file: d; 1 id(s) only in the baseline file: e",
        ),
        (
            "id,label,target,score\na,Y,1,0.9\nb,Y,0,0.2\nc,Y,1,0.4\nd,Y,0,0.5\n",
            "label(s) only in the model file: X",
        ),
        (
            "id,label,target,score\na,X,1,0.9\nb,X,1,0.2\nc,X,1,0.4\nd,X,0,0.5\n",
            "disagree on the targets (or presence) of 1 (id/label) pair(s): b/X",
        ),
    ];
    for (baseline, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        let m = write(dir.path(), "m.csv", GOOD);
        let b = write(dir.path(), "b.csv", baseline);
        let o = evaluate(dir.path(), &m, Some(&b), &[]);
        assert_clean_failure(&o, dir.path(), expect);
    }
}

#[test]
fn single_class_label_is_reported_null_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.csv",
        "id,label,target,score\na,X,1,0.9\na,Y,0,0.1\nb,X,0,0.2\nb,Y,0,0.3\nc,X,,0.4\nc,Y,,0.4\n",
    );
    let o = evaluate(dir.path(), &p, None, &["--bootstrap", "50"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = read_json(&dir.path().join("out/evaluation.json"));
    let y = &json["labels"][1];
    assert_eq!(y["label"], "Y");
    assert!(y["auc"].is_null());
    assert_eq!(y["reason"], "no positive targets");
    assert_eq!(y["n_neg"], 2);
    assert_eq!(json["labels"][0]["auc"], 1.0);
    assert_eq!(json["labels"][0]["n_pos"], 1);
    assert_eq!(json["macro"]["auc"], 1.0);
    assert_eq!(json["macro"]["n_labels"], 1);
    assert!(json["labels"][0].get("baseline_auc").is_none());
}

#[test]
fn failure_keeps_existing_directory_and_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let bad = write(dir.path(), "p.csv", "id,label,target,score\na,X,1,oops\n");
    let o = evaluate(dir.path(), &bad, None, &[]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "x");
    assert!(!out.join("evaluation.json").exists());
}

#[test]
fn help_lists_evaluate_options() {
    let o = cxrlearn(&["evaluate", "--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--predictions",
        "--baseline",
        "--bootstrap",
        "--seed",
        "--confidence",
        "--out",
    ] {
        assert!(text.contains(flag), "{flag} missing from help");
    }
}
