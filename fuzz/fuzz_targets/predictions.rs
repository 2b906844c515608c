//! The predictions CSV reader of `evaluate` (cxr-stats).
#![no_main]

use libfuzzer_sys::fuzz_target;

use cxr_stats::predictions::Predictions;

fuzz_target!(|data: &[u8]| {
    // With per-image columns asked for, as `evaluate --subgroups` reads it.
    let _ = Predictions::from_reader(data, "fuzz.csv");
    let _ = Predictions::from_reader_with(data, "fuzz.csv", &["extra"]);
});
