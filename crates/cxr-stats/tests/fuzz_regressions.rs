//! The predictions fuzz target's committed inputs (fuzz/regressions/,
//! docs/fuzzing.md): each is read as the target reads it and must return (Ok
//! or Err) without panicking, quickly.

use cxr_stats::predictions::Predictions;

#[path = "../../../fuzz/harness/inputs.rs"]
mod inputs;

#[test]
fn predictions() {
    inputs::each_input(env!("CARGO_MANIFEST_DIR"), "predictions", |b| {
        let _ = Predictions::from_reader(b, "fuzz.csv");
        let _ = Predictions::from_reader_with(b, "fuzz.csv", &["extra"]);
    });
}
