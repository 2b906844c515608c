//! The `preset_labels` fuzz harness, shared by the fuzz target and cxr-data's
//! regression test (`tests/fuzz_regressions.rs`) so both run the same code.
//!
//! The first byte picks a preset (modulo the table below); the rest is split
//! at NUL bytes into that preset's label files, in the table's order, each
//! written under the name its publisher uses. Missing parts leave the file
//! out, which is how the optional files (CheXpert's `valid.csv`, the phantom's
//! reports) are reached both ways. The presets that read no label file
//! (Shenzhen/Montgomery, pediatric: labels are in file names) are not here.

use std::path::Path;

use cxr_data::presets;

/// Preset name and the files its reader opens.
const PRESETS: [(&str, &[&str]); 14] = [
    ("nih", &["Data_Entry_2017.csv"]),
    ("chexpert", &["train.csv", "valid.csv"]),
    (
        "mimic",
        &[
            "mimic-cxr-2.0.0-chexpert.csv",
            "mimic-cxr-2.0.0-metadata.csv",
            "patients.csv",
        ],
    ),
    (
        "padchest",
        &["PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"],
    ),
    ("vindr", &["train.csv"]),
    (
        "vindr",
        &[
            "annotations/image_labels_train.csv",
            "annotations/image_labels_test.csv",
        ],
    ),
    ("siim", &["train-rle.csv"]),
    ("ranzcr", &["train.csv"]),
    ("brax", &["master_spreadsheet_update.csv"]),
    (
        "reflacx",
        &[
            "main_data/metadata_phase_2.csv",
            "main_data/metadata_phase_3.csv",
        ],
    ),
    (
        "edema",
        &[
            "regex_report_edema_severity.csv",
            "mimic-cxr-2.0.0-metadata.csv",
        ],
    ),
    (
        "phantom",
        &["labels.csv", "reports.csv", "ground_truth.csv"],
    ),
    (
        "jsrt",
        &[
            "Clinical_Information/CLNDAT_EN.txt",
            "Clinical_Information/CNNDAT_EN.TXT",
        ],
    ),
    (
        "indiana",
        &["ecgen-radiology/1.xml", "ecgen-radiology/2.xml"],
    ),
];

/// Lays `bytes` out as described above and loads the preset; errors are
/// expected, panics are findings.
pub fn run(bytes: &[u8]) {
    let Some((&which, body)) = bytes.split_first() else {
        return;
    };
    let (name, files) = PRESETS[usize::from(which) % PRESETS.len()];
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (file, part) in files.iter().zip(body.split(|&b| b == 0)) {
        write(dir.path(), file, part);
    }
    if name == "indiana" {
        // The report parser is public on its own (conversion of single reports).
        let first = body.split(|&b| b == 0).next().unwrap_or_default();
        let _ = presets::indiana::parse_report("fuzz.xml", &String::from_utf8_lossy(first));
    }
    let _ = presets::load(name, dir.path());
}

fn write(root: &Path, file: &str, contents: &[u8]) {
    let path = root.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("creating the input's folder");
    }
    std::fs::write(&path, contents).expect("writing the input");
}
