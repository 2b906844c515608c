//! safetensors checkpoints through `checkpoint::parse` (the header reader is
//! private to it; inputs whose ninth byte is `{` take that path).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cxr_nn::checkpoint::parse(data);
});
