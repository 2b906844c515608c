//! The `store` fuzz harness, shared by the fuzz target and cxr-data's
//! regression test (`tests/fuzz_regressions.rs`) so both run the same code.
//!
//! A store is a folder, so the input is split at its first two NUL bytes into
//! `dataset.json`, `manifest.csv` and the first image shard (the rest, which
//! may hold NULs itself). A missing part leaves its file out.

use cxr_data::labels::Split;
use cxr_data::store::read::Store;

/// Writes the store and opens it; errors are expected, panics are findings.
/// An opened store is read the way training reads it: every split, every
/// image, the dense targets.
pub fn run(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut parts = bytes.splitn(3, |&b| b == 0);
    for name in ["dataset.json", "manifest.csv", "images-00000.safetensors"] {
        if let Some(part) = parts.next() {
            std::fs::write(dir.path().join(name), part).expect("writing the input");
        }
    }
    let Ok(store) = Store::open(dir.path()) else {
        return;
    };
    for split in [Split::Train, Split::Val, Split::Test] {
        let indices = store.split_indices(split);
        let _ = store.dense_targets(&indices);
    }
    for i in 0..store.len() {
        let _ = store.image(i);
    }
}
