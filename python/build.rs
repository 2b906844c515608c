//! The extension's rpath to libtorch: the `torch` package beside it in
//! site-packages (`$ORIGIN/../torch/lib`, as torchvision's compiled ops find
//! it), then the libtorch it was built against (for `maturin develop`).
//! `import cxrlearn` imports torch first, so the loader finds libtorch
//! already loaded in any case; the rpath covers a direct import.

fn main() {
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../torch/lib");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
