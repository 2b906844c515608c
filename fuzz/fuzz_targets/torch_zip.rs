//! `torch.save` zip archives: the zip directory reader and the tensors it
//! locates through `data.pkl`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cxr_nn::checkpoint::torch::read_zip(data);
});
