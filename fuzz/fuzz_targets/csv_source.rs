//! The generic label CSV reader (`Csv::read_with`, `read_generic`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/csv_source.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::run(data));
