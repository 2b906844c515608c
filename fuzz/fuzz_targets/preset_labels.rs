//! Each dataset preset's label-file reader (harness/preset_labels.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/preset_labels.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::run(data));
