//! Hostile label files and stores: image paths that leave the image root,
//! CSV records without an end, `dataset.json` counts the manifest
//! contradicts.

use std::path::Path;

use cxr_data::convert::{ConvertOptions, convert};
use cxr_data::csv_source::{CsvSpec, read_generic};
use cxr_data::error::DataError;
use cxr_data::labels::{GroupLevel, LabelTable, Record, Task};
use cxr_data::store::read::Store;

fn spec(csv: &Path) -> CsvSpec {
    CsvSpec {
        csv: csv.to_path_buf(),
        path_column: "file".into(),
        label_columns: vec!["a".into()],
        task: Task::Binary,
        patient_column: None,
        split_column: None,
    }
}

/// A generic label CSV holding `rows` under the header `file,a`.
fn label_csv(dir: &Path, rows: &str) -> std::path::PathBuf {
    let path = dir.join("labels.csv");
    std::fs::write(&path, format!("file,a\n{rows}")).unwrap();
    path
}

#[test]
fn image_paths_that_leave_the_root_are_refused_naming_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, why) in [
        ("../secret.png", "climbs out of the image root"),
        ("img/../../secret.png", "climbs out of the image root"),
        ("/etc/hostname", "is absolute"),
    ] {
        let csv = label_csv(dir.path(), &format!("img/a.png,1\n{bad},0\n"));
        let e = read_generic(&spec(&csv)).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, DataError::Row { row: 3, .. })
                && msg.contains("labels.csv, row 3")
                && msg.contains(&format!("{bad:?}"))
                && msg.contains(why),
            "{bad}: {msg}"
        );
    }
    // A `..` that stays inside, and `.`, are paths under the root.
    let csv = label_csv(dir.path(), "img/../a.png,1\n./b.png,0\n");
    assert_eq!(read_generic(&spec(&csv)).unwrap().records.len(), 2);
}

#[test]
fn a_preset_refuses_an_image_path_that_leaves_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let header = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n";
    std::fs::write(
        dir.path().join("Data_Entry_2017.csv"),
        format!("{header}a.png,No Finding,0,1,50,M,PA\n../../b.png,No Finding,0,2,50,F,PA\n"),
    )
    .unwrap();
    let e = cxr_data::presets::load("nih", dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("Data_Entry_2017.csv, row 3") && msg.contains("climbs out of the image root"),
        "{msg}"
    );
}

#[test]
fn convert_refuses_a_table_whose_path_leaves_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = LabelTable::new("t", Task::Binary, vec!["a".into()], GroupLevel::Image);
    t.records.push(Record {
        id: "x".into(),
        group: "x".into(),
        source_path: "/etc/hostname".into(),
        labels: vec![cxr_data::labels::LabelState::Positive],
        ..Default::default()
    });
    let e = convert(
        &t,
        dir.path(),
        "csv",
        &ConvertOptions::new(dir.path().join("s")),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("image \"x\"") && msg.contains("is absolute"),
        "{msg}"
    );
    assert!(!dir.path().join("s").exists());
}

/// Symbolic links under the root may point anywhere: datasets are often
/// laid out with links to where the images are stored.
#[test]
fn a_symlink_under_the_root_is_followed() {
    let images = tempfile::tempdir().unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([90]))
        .save(images.path().join("a.png"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(images.path(), dir.path().join("img")).unwrap();
    let csv = label_csv(dir.path(), "img/a.png,1\n");
    let table = read_generic(&spec(&csv)).unwrap();
    let mut opts = ConvertOptions::new(dir.path().join("s"));
    opts.size = 8;
    let s = convert(&table, dir.path(), "csv", &opts).unwrap();
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);
}

#[test]
fn a_label_file_without_line_breaks_stops_at_the_record_bound() {
    let limit = cxr_stats::csv_bound::MAX_CSV_RECORD_BYTES;
    let dir = tempfile::tempdir().unwrap();
    // A header, then a line past the bound.
    let csv = label_csv(dir.path(), &"x".repeat(limit + 10));
    let e = read_generic(&spec(&csv)).unwrap_err();
    assert!(
        matches!(e, DataError::RecordTooLong { line: 2, .. })
            && e.to_string().contains("labels.csv, line 2")
            && e.to_string().contains("MAX_CSV_RECORD_BYTES"),
        "{e}"
    );
    // /dev/zero never ends: the header fails at the bound.
    let e = read_generic(&spec(Path::new("/dev/zero"))).unwrap_err();
    assert!(matches!(e, DataError::RecordTooLong { line: 1, .. }), "{e}");
}

/// A store converted from `rows` (labels only), and its `dataset.json`.
fn store(dir: &Path, rows: &str) -> (std::path::PathBuf, serde_json::Value) {
    let csv = label_csv(dir, rows);
    let table = read_generic(&spec(&csv)).unwrap();
    let out = dir.join("store");
    let mut opts = ConvertOptions::new(&out);
    opts.labels_only = true;
    convert(&table, dir, "csv", &opts).unwrap();
    let meta = serde_json::from_slice(&std::fs::read(out.join("dataset.json")).unwrap()).unwrap();
    (out, meta)
}

fn open_with(out: &Path, meta: &serde_json::Value) -> Result<Store, DataError> {
    std::fs::write(out.join("dataset.json"), serde_json::to_vec(meta).unwrap()).unwrap();
    Store::open(out)
}

#[test]
fn dataset_json_counts_the_manifest_contradicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..10).map(|i| format!("{i}.png,{}\n", i % 2)).collect();
    let (out, meta) = store(dir.path(), &rows);
    Store::open(&out).unwrap();

    let train = meta["splits"]["train"].as_u64().unwrap();
    let mut m = meta.clone();
    m["splits"]["train"] = (train + 5).into();
    let e = open_with(&out, &m).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::StoreCount { .. })
            && msg.contains("dataset.json")
            && msg.contains("split \"train\"")
            && msg.contains(&format!(
                "records {} but manifest.csv has {train}",
                train + 5
            )),
        "{msg}"
    );

    let mut m = meta.clone();
    m["splits"]["holdout"] = 3.into();
    let msg = open_with(&out, &m).unwrap_err().to_string();
    assert!(msg.contains("unknown split \"holdout\""), "{msg}");

    let test_pos = meta["positives"]["test"][0].as_u64().unwrap();
    let mut m = meta.clone();
    m["positives"]["test"][0] = (test_pos + 1).into();
    let msg = open_with(&out, &m).unwrap_err().to_string();
    assert!(
        msg.contains("split \"test\", label \"a\": positives")
            && msg.contains(&format!(
                "records {} but manifest.csv has {test_pos}",
                test_pos + 1
            )),
        "{msg}"
    );

    let mut m = meta.clone();
    m["positives"]["val"] = serde_json::json!([1, 2]);
    let msg = open_with(&out, &m).unwrap_err().to_string();
    assert!(
        msg.contains("positives of split \"val\" has 2 counts for 1 labels"),
        "{msg}"
    );

    // As written, the store opens again.
    open_with(&out, &meta).unwrap();
}
