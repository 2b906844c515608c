//! RANZCR, BRAX, edema and REFLACX on fixtures in their publishers' layouts.

use std::path::Path;

use cxr_data::labels::{LabelState, Task};
use cxr_data::presets;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn ranzcr_eleven_columns() {
    let dir = tempfile::tempdir().unwrap();
    let cols = presets::ranzcr::LABELS;
    let mut csv = format!("StudyInstanceUID,{},PatientID\n", cols.join(","));
    for i in 0..5 {
        let cells: Vec<&str> = (0..11)
            .map(|k| if k == i || k == 9 { "1" } else { "0" })
            .collect();
        csv += &format!("1.2.826.{i},{},pat{}\n", cells.join(","), i % 2);
    }
    write(&dir.path().join("train.csv"), &csv);
    let t = presets::load("ranzcr", dir.path()).unwrap();
    assert_eq!(t.labels.len(), 11);
    assert_eq!(t.records.len(), 5);
    assert_eq!(t.records[2].source_path, "train/1.2.826.2.jpg");
    assert_eq!(t.positives(), vec![1, 1, 1, 1, 1, 0, 0, 0, 0, 5, 0]);
    assert_eq!(t.records[3].group, "pat1");
    write(
        &dir.path().join("train.csv"),
        &csv.replace("1.2.826.4,0", "1.2.826.4,x"),
    );
    let e = presets::load("ranzcr", dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("train.csv, row 6") && e.contains("ETT - Abnormal"),
        "{e}"
    );
}

#[test]
fn brax_uncertain_and_strips() {
    let dir = tempfile::tempdir().unwrap();
    let labels = presets::chexpert::LABELS;
    let mut csv = format!(
        "PatientID,PatientSex,PatientAge,AccessionNumber,ViewPosition,Rows,Columns,PngPath,{}\n",
        labels.join(",")
    );
    for i in 0..4 {
        let cells: Vec<&str> = (0..14)
            .map(|k| ["1.0", "0.0", "-1.0", ""][(k + i) % 4])
            .collect();
        let (rows, cols) = if i == 3 { (2000, 100) } else { (2000, 1800) };
        csv += &format!(
            "P{i},M,85 or more,A{i},PA,{rows},{cols},images/P{i}/A{i}/i{i}.png,{}\n",
            cells.join(",")
        );
    }
    write(&dir.path().join("master_spreadsheet_update.csv"), &csv);
    let t = presets::load("brax", dir.path()).unwrap();
    assert_eq!(t.records.len(), 3);
    assert!(t.notes[0].starts_with("1 thin-strip"));
    // Sex from `PatientSex`; the binned `PatientAge` is not read.
    assert!(
        t.records
            .iter()
            .all(|r| r.sex.as_deref() == Some("M") && r.age.is_none())
    );
    assert_eq!(
        t.records[1].labels[..4],
        [
            LabelState::Negative,
            LabelState::Uncertain,
            LabelState::Missing,
            LabelState::Positive
        ]
    );
    assert_eq!(t.policy.cell(LabelState::Uncertain), "");
    assert_eq!(t.policy.cell(LabelState::Missing), "0");
}

#[test]
fn edema_frontal_images_of_labelled_studies() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("regex_report_edema_severity.csv"),
        "subject_id,study_id,edema_severity\n10000980,54577367,0\n10040025,56874940,2\n",
    );
    write(
        &dir.path().join("mimic-cxr-2.0.0-metadata.csv"),
        "dicom_id,subject_id,study_id,ViewPosition\na,10000980,54577367,PA\nb,10000980,54577367,LATERAL\nc,10040025,56874940,AP\nd,1,9,PA\n",
    );
    let t = presets::load("edema", dir.path()).unwrap();
    assert_eq!(t.task, Task::Multiclass);
    assert_eq!(
        t.records
            .iter()
            .map(|r| (r.id.as_str(), r.class.unwrap()))
            .collect::<Vec<_>>(),
        vec![("a", 0), ("c", 2)]
    );
    assert_eq!(
        t.records[1].source_path,
        "files/p10/p10040025/s56874940/c.jpg"
    );
    write(
        &dir.path().join("regex_report_edema_severity.csv"),
        "subject_id,study_id,edema_severity\n1,2,7\n",
    );
    assert!(
        presets::load("edema", dir.path())
            .unwrap_err()
            .to_string()
            .contains("row 2")
    );
}

#[test]
fn reflacx_readers_max_certainty() {
    let dir = tempfile::tempdir().unwrap();
    let labels = presets::reflacx::LABELS;
    let others = "Abnormal mediastinal contour,Acute fracture,Enlarged hilum,Hiatal hernia,High lung volume / emphysema,Interstitial lung disease";
    let mut csv = format!(
        "id,split,eye_tracking_data_discarded,image,dicom_id,subject_id,image_size_x,image_size_y,{},{others},Other\n",
        labels.join(",")
    );
    let row = |id: &str, dicom: &str, cert: [u8; 8], devices: &str| {
        let c: Vec<String> = cert.iter().map(|v| v.to_string()).collect();
        format!(
            "{id},train,False,physionet.org/files/mimic-cxr/2.0.0/files/p10/p100/s200/{dicom}.dcm,{dicom},100,2000,2000,{},{devices},0,0,0,0,0,0,\n",
            c.join(",")
        )
    };
    csv += &row("P102R1", "d1", [0, 4, 0, 0, 0, 0, 0, 0], "False");
    csv += &row("P103R1", "d1", [2, 1, 0, 0, 5, 0, 0, 0], "True");
    csv += &row("P104R1", "d2", [0, 0, 0, 0, 0, 0, 0, 0], "False");
    write(&dir.path().join("main_data/metadata_phase_2.csv"), &csv);
    let t = presets::load("reflacx", dir.path()).unwrap();
    assert_eq!(t.records.len(), 2);
    assert_eq!(t.records[0].source_path, "files/p10/p100/s200/d1.dcm");
    assert_eq!(
        t.records[0].labels,
        vec![
            LabelState::Uncertain,
            LabelState::Positive,
            LabelState::Negative,
            LabelState::Negative,
            LabelState::Positive,
            LabelState::Negative,
            LabelState::Negative,
            LabelState::Negative,
            LabelState::Positive
        ]
    );
    assert_eq!(t.policy.cell(LabelState::Uncertain), "0");
}

#[test]
fn siim_rle_rows_and_dicom_tree() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("train-rle.csv"),
        "ImageId, EncodedPixels\n1.2.4.1, -1\n1.2.4.2, 557374 2 1015 8\n1.2.4.2, 10 5\n1.2.4.3, -1\n",
    );
    write(
        &dir.path()
            .join("dicom-images-train/1.2.2.9/1.2.3.9/1.2.4.2.dcm"),
        "",
    );
    let t = presets::load("siim", dir.path()).unwrap();
    assert_eq!(t.records.len(), 3);
    assert_eq!(t.positives(), vec![1]);
    assert_eq!(
        t.records[1].source_path,
        "dicom-images-train/1.2.2.9/1.2.3.9/1.2.4.2.dcm"
    );
    assert_eq!(t.records[0].source_path, "dicom-images-train/1.2.4.1.dcm");
    write(
        &dir.path().join("train-rle.csv"),
        "ImageId, EncodedPixels\n1.2.4.1, -1\n1.2.4.1, 5 5\n",
    );
    let e = presets::load("siim", dir.path()).unwrap_err().to_string();
    assert!(e.contains("row 3") && e.contains("both"), "{e}");
}

#[test]
fn duplicate_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("l.csv"),
        "p,y\na.png,1\nb.png,0\na.png,1\n",
    );
    let spec = cxr_data::csv_source::CsvSpec {
        csv: dir.path().join("l.csv"),
        path_column: "p".into(),
        label_columns: vec!["y".into()],
        task: Task::Binary,
        patient_column: None,
        split_column: None,
    };
    let t = cxr_data::csv_source::read_generic(&spec).unwrap();
    let opts = cxr_data::convert::ConvertOptions::new(dir.path().join("out"));
    let e = cxr_data::convert::convert(&t, dir.path(), "csv", &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate image id \"a.png\""), "{e}");
    assert!(!dir.path().join("out").exists());
}
