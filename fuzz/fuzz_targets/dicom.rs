//! DICOM decoding (Part 10 files and raw data sets) through cxr-data's wrapper.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The `.dcm` name makes the wrapper take a raw data set (no preamble) as
    // DICOM too, as conversion does for such files.
    let _ = cxr_data::decode::decode_bytes(Path::new("fuzz.dcm"), data);
});
