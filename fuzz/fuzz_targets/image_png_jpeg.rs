//! PNG and JPEG decoding through cxr-data's wrapper (`decode::decode_bytes`,
//! which recognises them by signature, as conversion and `predict` do).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cxr_data::decode::decode_bytes(Path::new("fuzz.png"), data);
});
