//! cxr-nn's build script: the rpath to libtorch, and the small C++ shims:
//! `csrc/autocast.cpp` switches libtorch's autocast to bfloat16 or on the
//! CPU, which tch cannot; `csrc/system.cpp` reports libtorch's version and
//! CUDA build without tch's panicking calls; `csrc/memory_format.cpp`
//! puts tensors in channels-last order, which tch has no call for;
//! `csrc/optim.cpp` runs libtorch's fused and multi-tensor optimiser
//! kernels, which tch does not bind; `csrc/onednn.cpp` runs oneDNN
//! convolutions on prepacked weights with fused post-ops.

include!("rpath.rs");

fn main() {
    emit_rpath();
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/system.cpp");
    println!("cargo:rerun-if-changed=csrc/memory_format.cpp");
    println!("cargo:rerun-if-changed=csrc/optim.cpp");
    println!("cargo:rerun-if-changed=csrc/onednn.cpp");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .expect("torch-sys exports the libtorch directory (links = \"tch\")");
    let root = std::path::Path::new(&lib)
        .parent()
        .expect("libtorch's lib directory has a parent")
        .to_path_buf();
    cc::Build::new()
        .cpp(true)
        .file("csrc/autocast.cpp")
        .file("csrc/system.cpp")
        .file("csrc/memory_format.cpp")
        .file("csrc/optim.cpp")
        .file("csrc/onednn.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false)
        .compile("cxr_autocast");
}
