//! The fuzz targets' committed inputs (fuzz/regressions/, docs/fuzzing.md):
//! each runs through the same code as its fuzz target and must return (Ok or
//! Err) without panicking, quickly.

use std::path::Path;

#[path = "../../../fuzz/harness/csv_source.rs"]
mod csv_source;
#[path = "../../../fuzz/harness/inputs.rs"]
mod inputs;
#[path = "../../../fuzz/harness/preset_labels.rs"]
mod preset_labels;
#[path = "../../../fuzz/harness/store.rs"]
mod store;

use inputs::each_input;

const HERE: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn dicom() {
    each_input(HERE, "dicom", |b| {
        let _ = cxr_data::decode::decode_bytes(Path::new("fuzz.dcm"), b);
    });
}

#[test]
fn image_png_jpeg() {
    each_input(HERE, "image_png_jpeg", |b| {
        let _ = cxr_data::decode::decode_bytes(Path::new("fuzz.png"), b);
    });
}

#[test]
fn csv_source() {
    each_input(HERE, "csv_source", csv_source::run);
}

#[test]
fn preset_labels() {
    each_input(HERE, "preset_labels", preset_labels::run);
}

#[test]
fn store() {
    each_input(HERE, "store", store::run);
}
