// Shared by the build scripts of the crates that link libtorch.

/// Embeds the libtorch library directory as an rpath, so binaries and tests
/// that link tch run without `LD_LIBRARY_PATH`, and makes them load
/// libtorch's CUDA support whenever that libtorch has it.
///
/// Why the CUDA part: torch-sys asks for `-ltorch_cuda`, but nothing in our
/// code (or tch's) calls a symbol of it, so the linker's default
/// `--as-needed` drops it from the binary's dynamic section. libtorch's CUDA
/// backend registers itself from `libtorch_cuda.so`'s static initialisers,
/// so without the library loaded `tch::Cuda::is_available()` is false on
/// every GPU machine. `--no-as-needed` around `-ltorch_cuda` keeps it
/// needed. Linking (rather than `dlopen` at start-up) covers every binary,
/// test and bench, and any cdylib, with no call anyone could forget; the
/// loader then finds it through the rpath above, in the same directory as
/// `libtorch_cpu.so`, so the two can never be of different builds. A
/// CPU-only libtorch has no `libtorch_cuda.so` and gets no flag.
/// `rustc-link-arg` reaches only the package's own binaries, tests, benches
/// and cdylibs, which is why every crate with such targets runs this.
fn emit_rpath() {
    // torch-sys declares `links = "tch"` and prints `cargo:libtorch_lib=...`.
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        let cuda = std::path::Path::new(&dir).join("libtorch_cuda.so");
        if cuda.exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
        // The directory, not the file: a path that does not exist would
        // rerun this script (and rebuild the shim) on every build.
        println!("cargo:rerun-if-changed={dir}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
}
