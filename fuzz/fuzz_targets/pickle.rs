//! The restricted unpickler, alone and as the legacy (pre-1.6) torch format
//! reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cxr_nn::checkpoint::pickle::unpickle(data);
    let _ = cxr_nn::checkpoint::torch::read_legacy(data);
});
