//! The checkpoint fuzz targets' committed inputs (fuzz/regressions/,
//! docs/fuzzing.md): each runs through the same calls as its fuzz target and
//! must return (Ok or Err) without panicking, quickly.

use cxr_nn::checkpoint;

#[path = "../../../fuzz/harness/inputs.rs"]
mod inputs;

use inputs::each_input;

const HERE: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn torch_zip() {
    each_input(HERE, "torch_zip", |b| {
        let _ = checkpoint::torch::read_zip(b);
    });
}

#[test]
fn pickle() {
    each_input(HERE, "pickle", |b| {
        let _ = checkpoint::pickle::unpickle(b);
        let _ = checkpoint::torch::read_legacy(b);
    });
}

#[test]
fn safetensors_header() {
    each_input(HERE, "safetensors_header", |b| {
        let _ = checkpoint::parse(b);
    });
}
