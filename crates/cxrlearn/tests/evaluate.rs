//! `cxrlearn evaluate` end to end: outputs, numbers, and every bad-input case
//! (one `error:` line, no panic, no partial output directory).

use crate::common;

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
    // Issue #22: a replicate count this large used to grow memory until the
    // process aborted; it is refused, naming the maximum.
    let o = evaluate(dir.path(), &p, None, &["--bootstrap", "100000000"]);
    assert_clean_failure(&o, dir.path(), "at most 100000");
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
    // The --bootstrap maximum is stated where the flag is described.
    assert!(text.contains("at most 100000"), "{text}");
}

/// Predictions of 40 patients with 1 to 4 films each: patient_id, sex, age
/// and view columns, scores that are probabilities.
fn clustered_file(dir: &Path, name: &str, shift: f64) -> PathBuf {
    let mut s = String::from("id,label,target,score,patient_id,sex,age,view\n");
    let mut img = 0;
    for p in 0..40u32 {
        let sex = if p % 2 == 0 { "F" } else { "M" };
        let age = 25 + (p * 37) % 70;
        for f in 0..(1 + p % 4) {
            let y = (p * 7 + f) % 3 == 0;
            let z = f64::from((p * 13 + f * 5) % 17) / 17.0 - 0.5 + if y { shift } else { 0.0 };
            let score = 1.0 / (1.0 + (-2.0 * z).exp());
            for (label, t) in [("X", y), ("Y", (p + f) % 2 == 0)] {
                let view = if f == 0 { "PA" } else { "AP" };
                s += &format!(
                    "img{img},{label},{},{score:.4},p{p},{sex},{age},{view}\n",
                    u8::from(t)
                );
            }
            img += 1;
        }
    }
    write(dir, name, &s)
}

#[test]
fn patient_ids_make_the_bootstrap_resample_patients() {
    let dir = tempfile::tempdir().unwrap();
    let m = clustered_file(dir.path(), "m.csv", 0.6);
    let b = clustered_file(dir.path(), "b.csv", 0.2);
    let o = evaluate(dir.path(), &m, Some(&b), &["--bootstrap", "200"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = read_json(&dir.path().join("out/evaluation.json"));
    assert_eq!(json["resample"], "patient");
    assert_eq!(json["n_clusters"], 40);
    assert_eq!(json["n_images"], 100);
    assert!((json["mean_cluster_size"].as_f64().unwrap() - 2.5).abs() < 1e-12);
    assert_eq!(json["multiplicity"]["method"], "holm");
    let x = &json["labels"][0];
    for key in [
        "p_value_delong",
        "p_value_delong_clustered",
        "p_value_bootstrap",
        "p_value_holm",
    ] {
        assert!(x[key].as_f64().is_some(), "{key}");
    }
    assert!(x["calibration"]["brier"].as_f64().is_some());
    assert_eq!(x["calibration"]["bins"], 15);
    let md = std::fs::read_to_string(dir.path().join("out/evaluation.md")).unwrap();
    assert!(
        md.contains(
            "resampling patients with all their images (40 patients, 2.50 images per patient)"
        ),
        "{md}"
    );
    assert!(
        md.contains("p clustered") && md.contains("## Calibration"),
        "{md}"
    );
    let patient_width = x["ci"][1].as_f64().unwrap() - x["ci"][0].as_f64().unwrap();

    // The image-level bootstrap stays available, and says so.
    let again = tempfile::tempdir().unwrap();
    let o = evaluate(
        again.path(),
        &m,
        Some(&b),
        &["--bootstrap", "200", "--resample", "image"],
    );
    assert!(o.status.success());
    let json = read_json(&again.path().join("out/evaluation.json"));
    assert_eq!(json["resample"], "image");
    assert_eq!(json["n_clusters"], 100);
    assert!(json["labels"][0].get("p_value_delong_clustered").is_none());
    let image_width =
        json["labels"][0]["ci"][1].as_f64().unwrap() - json["labels"][0]["ci"][0].as_f64().unwrap();
    assert!(
        patient_width > image_width,
        "{patient_width} vs {image_width}"
    );
}

#[test]
fn subgroups_calibration_and_simultaneous_intervals_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = clustered_file(dir.path(), "m.csv", 0.6);
    let val = clustered_file(dir.path(), "val.csv", 0.5);
    let o = evaluate(
        dir.path(),
        &m,
        None,
        &[
            "--bootstrap",
            "100",
            "--subgroups",
            "sex,age,view",
            "--age-bins",
            "50",
            "--subgroup-min",
            "2",
            "--threshold-from",
            val.to_str().unwrap(),
            "--calibrate-on",
            val.to_str().unwrap(),
            "--simultaneous",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = read_json(&dir.path().join("out/evaluation.json"));
    assert_eq!(json["simultaneous"], true);
    assert!((json["interval_confidence"].as_f64().unwrap() - 0.975).abs() < 1e-12);
    let values: Vec<&str> = json["subgroup_columns"][1]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(values, ["<50", ">=50"]);
    let subgroups = json["subgroups"].as_array().unwrap();
    // 2 sexes + 2 age bands + 2 views, 2 labels each.
    assert_eq!(subgroups.len(), 12);
    let f = subgroups
        .iter()
        .find(|r| r["column"] == "sex" && r["value"] == "F" && r["label"] == "X")
        .unwrap();
    assert!(f["tpr"].as_f64().is_some() && f["threshold"].as_f64().is_some());
    assert!(
        json["threshold_source"]
            .as_str()
            .unwrap()
            .contains("val.csv")
    );
    assert!(!json["subgroup_gaps"].as_array().unwrap().is_empty());
    let after = &json["labels"][0]["calibration_after"];
    assert!(after["platt"]["a"].as_f64().is_some(), "{after}");
    assert_eq!(json["calibrate_on"]["path"], val.to_str().unwrap());
    let md = std::fs::read_to_string(dir.path().join("out/evaluation.md")).unwrap();
    assert!(
        md.contains("## Subgroups") && md.contains("Bonferroni"),
        "{md}"
    );
}

#[test]
fn bad_patient_subgroup_and_validation_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = clustered_file(dir.path(), "m.csv", 0.6);
    // A patient_id that differs between two rows of one image.
    let bad = write(
        dir.path(),
        "bad.csv",
        "id,label,target,score,patient_id\na,X,1,0.9,p1\na,Y,0,0.1,p2\n",
    );
    let o = evaluate(dir.path(), &bad, None, &[]);
    assert_clean_failure(
        &o,
        dir.path(),
        "bad.csv: line 3: id 'a' has patient_id 'p2' but line 2 gave 'p1'",
    );
    // Patients asked for but unknown.
    let plain = write(dir.path(), "plain.csv", GOOD);
    let o = evaluate(dir.path(), &plain, None, &["--resample", "patient"]);
    assert_clean_failure(&o, dir.path(), "needs patient ids");
    // A subgroup column neither the file nor a store has.
    let o = evaluate(dir.path(), &m, None, &["--subgroups", "site"]);
    assert_clean_failure(
        &o,
        dir.path(),
        "subgroup column 'site' is not in the predictions",
    );
    // A validation file with other labels.
    let other = write(
        dir.path(),
        "other.csv",
        "id,label,target,score\na,Z,1,0.9\nb,Z,0,0.2\n",
    );
    let o = evaluate(
        dir.path(),
        &m,
        None,
        &["--calibrate-on", other.to_str().unwrap()],
    );
    assert_clean_failure(
        &o,
        dir.path(),
        "other.csv: lacks label(s) X, Y; has label(s) Z",
    );
    let o = evaluate(
        dir.path(),
        &m,
        None,
        &[
            "--subgroups",
            "sex",
            "--threshold-from",
            other.to_str().unwrap(),
        ],
    );
    assert_clean_failure(&o, dir.path(), "other.csv: lacks label(s) X, Y");
    let o = evaluate(dir.path(), &m, None, &["--age-bins", "60,40"]);
    assert_clean_failure(
        &o,
        dir.path(),
        "age bins must be finite ages in increasing order",
    );
}

/// `--data STORE`: patients and subgroup columns joined from a store's
/// manifest (an NIH-layout label file converted labels-only), and ids the
/// store lacks named.
#[test]
fn data_store_supplies_patients_and_subgroups() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nih");
    std::fs::create_dir_all(&root).unwrap();
    let mut entry = String::from(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n",
    );
    for p in 0..60u32 {
        for f in 0..(1 + p % 3) {
            let finding = if (p + f) % 3 == 0 {
                "Effusion"
            } else {
                "No Finding"
            };
            let sex = if p % 2 == 0 { "F" } else { "M" };
            let view = if f == 0 { "PA" } else { "AP" };
            entry += &format!(
                "{p:08}_{f:03}.png,{finding},{f},{p},{},{sex},{view}\n",
                30 + p % 50
            );
        }
    }
    std::fs::write(root.join("Data_Entry_2017.csv"), entry).unwrap();
    let store = dir.path().join("store");
    let o = cxrlearn(&[
        "--quiet",
        "convert",
        "--preset",
        "nih",
        "--root",
        root.to_str().unwrap(),
        "--labels-only",
        "--out",
        store.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Predictions for every image, without patient or subgroup columns.
    let mut preds = String::from("id,label,target,score\n");
    for p in 0..60u32 {
        for f in 0..(1 + p % 3) {
            let y = u8::from((p + f) % 3 == 0);
            let score = f64::from((p * 31 + f * 7) % 100) / 100.0 * 0.7 + f64::from(y) * 0.3;
            preds += &format!("{p:08}_{f:03}.png,Effusion,{y},{score:.3}\n");
        }
    }
    let p = write(dir.path(), "p.csv", &preds);
    let o = evaluate(
        dir.path(),
        &p,
        None,
        &[
            "--bootstrap",
            "100",
            "--data",
            store.to_str().unwrap(),
            "--subgroups",
            "sex,view",
            "--subgroup-min",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = read_json(&dir.path().join("out/evaluation.json"));
    assert_eq!(json["resample"], "patient");
    assert_eq!(json["n_clusters"], 60);
    assert_eq!(json["n_images"], 120);
    assert_eq!(json["data"], store.to_str().unwrap());
    let values = |k: usize| -> Vec<String> {
        json["subgroup_columns"][k]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(values(0), ["F", "M"]);
    assert_eq!(values(1), ["AP", "PA"]);
    let pa = json["subgroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["value"] == "PA")
        .unwrap();
    assert_eq!(pa["n"], 60);
    // An id the store does not have: named, nothing written.
    let extra = write(
        dir.path(),
        "extra.csv",
        &format!("{preds}ghost.png,Effusion,1,0.5\n"),
    );
    let again = tempfile::tempdir().unwrap();
    let o = evaluate(
        again.path(),
        &extra,
        None,
        &["--data", store.to_str().unwrap()],
    );
    assert_clean_failure(&o, again.path(), "1 id(s) of the predictions are not in");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("ghost.png") && stderr.contains("extra.csv"),
        "{stderr}"
    );
}

/// The cells of a Markdown table row: its unescaped `|`, less one.
fn md_cells(row: &str) -> usize {
    let b = row.as_bytes();
    let pipes = (0..b.len())
        .filter(|&k| b[k] == b'|' && (k == 0 || b[k - 1] != b'\\'))
        .count();
    pipes - 1
}

/// A label with HTML, a pipe and a newline comes out of `evaluation.md`
/// escaped, in every table, with every row as wide as its header (#22).
#[test]
fn markdown_escapes_labels() {
    let dir = tempfile::tempdir().unwrap();
    let label = "\"<script>alert(1)</script> a|b\nc & d\"";
    let mut text = String::from("id,label,target,score,sex\n");
    let mut base = String::from("id,label,target,score,sex\n");
    for i in 0..24u32 {
        let sex = if i.is_multiple_of(2) { "F|<i>" } else { "M" };
        for (k, l) in ["X", label].into_iter().enumerate() {
            let y = (i + k as u32).is_multiple_of(3);
            let score = f64::from((i * 7 + 3 * k as u32) % 11) / 11.0 + if y { 0.4 } else { 0.0 };
            text += &format!("img{i},{l},{},{:.4},{sex}\n", u8::from(y), score / 1.4);
            base += &format!(
                "img{i},{l},{},{:.4},{sex}\n",
                u8::from(y),
                (1.0 - score / 1.4)
            );
        }
    }
    let m = write(dir.path(), "m.csv", &text);
    let b = write(dir.path(), "b.csv", &base);
    let o = evaluate(
        dir.path(),
        &m,
        Some(&b),
        &[
            "--bootstrap",
            "50",
            "--subgroups",
            "sex",
            "--subgroup-min",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(dir.path().join("out/evaluation.md")).unwrap();
    for raw in ["<script>", "</script>", "<i>", "a|b", "\nc & d"] {
        assert!(
            !md.contains(raw),
            "{raw:?} unescaped in evaluation.md:\n{md}"
        );
    }
    let escaped = "| &lt;script&gt;alert(1)&lt;/script&gt; a\\|b c &amp; d |";
    assert!(md.contains(escaped), "{escaped:?} not in:\n{md}");
    assert!(md.contains("| sex | F\\|&lt;i&gt; |"), "{md}");
    let mut header: Option<usize> = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let want = *header.get_or_insert(md_cells(line));
            assert_eq!(md_cells(line), want, "row of another width: {line}\n{md}");
        } else {
            header = None;
        }
    }
}
