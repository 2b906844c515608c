//! Helpers shared by the architecture parity tests.

// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::Tensor;
use tch::nn::VarStore;

/// Path of a committed fixture.
pub fn fixture(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name)
}

/// torchvision keeps a batch counter that has no role at inference.
pub fn ignore_counters(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// Largest absolute difference relative to the largest reference magnitude.
pub fn max_rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    let diff = (ours - reference).abs().max().double_value(&[]);
    diff / reference.abs().max().double_value(&[]).max(1e-12)
}

/// Names and shapes of a variable store, sorted.
pub fn shapes(vs: &VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect()
}

/// Names and shapes from a `torchvision_names.json` fixture, counters left out.
pub fn reference_shapes(dir: &str, arch: &str) -> BTreeMap<String, Vec<i64>> {
    let text = std::fs::read_to_string(fixture(dir, "torchvision_names.json")).unwrap();
    let names: Value = serde_json::from_str(&text).unwrap();
    names[arch]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !ignore_counters(k))
        .map(|(k, v)| {
            let dims = v.as_array().unwrap().iter().map(|d| d.as_i64().unwrap());
            (k.clone(), dims.collect())
        })
        .collect()
}
