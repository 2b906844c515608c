//! Hostile inputs of several commands, each ending in one `error:` line:
//! a predictions or label file without line breaks, a header naming a read
//! column twice, image paths that leave `--image-root`, a store whose
//! `dataset.json` counts disagree with its manifest, an image given twice
//! to `predict`.

use std::path::Path;

use crate::common::{refused_within_limits, run, run_ok};

/// Asserts `args` fail with exactly one `error:` line containing each of `says`.
fn refused(args: &[&str], says: &[&str]) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for s in says {
        assert!(err.contains(s), "{args:?}: no {s:?} in {err}");
    }
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const PREDICTIONS: &str = "id,label,target,score\na,x,1,0.9\nb,x,0,0.2\nc,x,1,0.7\nd,x,0,0.4\n";

#[test]
fn evaluate_stops_reading_a_file_without_line_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    refused_within_limits(
        &["evaluate", "--predictions", "/dev/zero", "--out", s(&out)],
        "/dev/zero: line 1: line longer than 1048576 bytes (MAX_CSV_RECORD_BYTES)",
    );
    // The baseline goes through the same reader.
    let model = dir.path().join("model.csv");
    std::fs::write(&model, PREDICTIONS).unwrap();
    refused_within_limits(
        &[
            "evaluate",
            "--predictions",
            s(&model),
            "--baseline",
            "/dev/zero",
            "--out",
            s(&out),
        ],
        "MAX_CSV_RECORD_BYTES",
    );
    assert!(!out.exists());
}

#[test]
fn evaluate_refuses_a_header_naming_a_read_column_twice() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let model = dir.path().join("model.csv");
    std::fs::write(&model, PREDICTIONS).unwrap();
    let twice = dir.path().join("twice.csv");
    std::fs::write(
        &twice,
        "id,label,target,score,target\na,x,1,0.9,0\nb,x,0,0.2,1\n",
    )
    .unwrap();
    let (m, t) = (s(&model), s(&twice));
    for args in [
        vec!["evaluate", "--predictions", t, "--out", s(&out)],
        vec![
            "evaluate",
            "--predictions",
            m,
            "--baseline",
            t,
            "--out",
            s(&out),
        ],
    ] {
        refused(
            &args,
            &[t, "column 'target' appears 2 times", "columns 3, 5"],
        );
    }
    assert!(!out.exists());
}

/// A label CSV with `rows` under `file,a`, and a PNG `img/a.png`, in `dir`.
fn label_csv(dir: &Path, rows: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([90]))
        .save(dir.join("img/a.png"))
        .unwrap();
    let path = dir.join("labels.csv");
    std::fs::write(&path, format!("file,a\n{rows}")).unwrap();
    path
}

fn convert_args<'a>(csv: &'a str, root: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "convert",
        "--quiet",
        "--csv",
        csv,
        "--image-root",
        root,
        "--path-column",
        "file",
        "--label-columns",
        "a",
        "--task",
        "binary",
        "--size",
        "8",
        "--out",
        out,
    ]
}

#[test]
fn convert_refuses_image_paths_that_leave_the_image_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = dir.path().join("store");
    // A file beside the root that a `..` row would have read.
    image::GrayImage::from_pixel(8, 8, image::Luma([1]))
        .save(dir.path().join("outside.png"))
        .unwrap();
    for (bad, why) in [
        ("../outside.png", "climbs out of the image root with '..'"),
        ("/etc/hostname", "is absolute"),
    ] {
        let csv = label_csv(&root, &format!("img/a.png,1\n{bad},0\n"));
        refused(
            &convert_args(s(&csv), s(&root), s(&out)),
            &["labels.csv, row 3", bad, why],
        );
        assert!(!out.exists());
    }
}

#[test]
fn convert_stops_reading_a_label_file_without_line_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("store");
    refused_within_limits(
        &convert_args("/dev/zero", s(dir.path()), s(&out)),
        "/dev/zero, line 1: a record longer than 1048576 bytes (MAX_CSV_RECORD_BYTES)",
    );
}

#[test]
fn info_refuses_counts_that_disagree_with_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let rows: String = (0..10)
        .map(|i| format!("img/a{i}.png,{}\n", i % 2))
        .collect();
    let csv = label_csv(&root, &rows);
    let store = dir.path().join("store");
    let mut args = convert_args(s(&csv), s(&root), s(&store));
    args.push("--labels-only");
    run_ok(&args);
    run_ok(&["info", s(&store)]);
    let path = store.join("dataset.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let val = meta["splits"]["val"].as_u64().unwrap();
    meta["splits"]["val"] = (val + 100).into();
    std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    refused(
        &["info", s(&store)],
        &[
            "dataset.json",
            "split \"val\": images",
            &format!("records {} but manifest.csv has {val}", val + 100),
        ],
    );
}

/// The same file twice (here by two spellings) is refused before the model
/// is looked at: the model named does not even exist.
#[test]
fn predict_refuses_an_image_given_twice() {
    let dir = tempfile::tempdir().unwrap();
    label_csv(dir.path(), "");
    let once = dir.path().join("img/a.png");
    let again = dir.path().join("img/../img/./a.png");
    let out = dir.path().join("scores.csv");
    let model = dir.path().join("no-model");
    refused(
        &[
            "predict",
            "--model",
            s(&model),
            "--out",
            s(&out),
            s(&once),
            s(&again),
        ],
        &[s(&again), "is given twice", s(&once)],
    );
    assert!(!out.exists());
}

/// `pretrain --epochs 0` used to succeed, writing an encoder of initial
/// weights as if pretrained; it is refused as `finetune --epochs 0` is
/// (finetune.rs), before the run directory is made. (`--input-size 0`,
/// `--splits 50,50,50` and `--few-shot 0` are covered in finetune.rs and
/// convert_cli.rs.)
#[test]
fn pretrain_refuses_zero_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let csv = label_csv(&root, "");
    let mut rows = String::from("file,a\n");
    for i in 0..20u8 {
        image::GrayImage::from_pixel(8, 8, image::Luma([i * 10]))
            .save(root.join(format!("img/{i}.png")))
            .unwrap();
        rows += &format!("img/{i}.png,{}\n", i % 2);
    }
    std::fs::write(&csv, rows).unwrap();
    let store = dir.path().join("store");
    run_ok(&convert_args(s(&csv), s(&root), s(&store)));
    let out = dir.path().join("run");
    refused(
        &[
            "pretrain",
            "--data",
            s(&store),
            "--out",
            s(&out),
            "--method",
            "moco-cxr",
            "--batch-size",
            "4",
            "--epochs",
            "0",
        ],
        &["--epochs must be at least 1"],
    );
    assert!(!out.exists());
}
