// Shared by the build scripts of the crates that link libtorch.

/// Embeds the libtorch library directory as an rpath, so binaries and tests
/// that link tch run without `LD_LIBRARY_PATH`.
fn emit_rpath() {
    // torch-sys declares `links = "tch"` and prints `cargo:libtorch_lib=...`.
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
