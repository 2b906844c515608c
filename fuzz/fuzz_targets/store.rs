//! The dataset store reader: dataset.json, manifest.csv and an image shard.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/store.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::run(data));
