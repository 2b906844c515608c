fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    // cxrlearn: rebuild when the patched sources change (PATCHED.md).
    println!("cargo:rerun-if-changed=charls/src");

    #[cfg(not(feature = "vcpkg"))]
    {
        let mut config = cmake::Config::new("charls");
        // Rust always links the release MSVC CRT; a Debug CMake build needs the debug CRT (_CrtDbgReport).
        if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("msvc") {
            config.profile("Release");
        }
        let dst = config
            .define("BUILD_SHARED_LIBS", "0")
            .define("CMAKE_LINK_DEPENDS_USE_LINKER", "0")
            .define("CHARLS_BUILD_TESTS", "0")
            .define("CHARLS_BUILD_FUZZ_TEST", "0")
            .define("CHARLS_BUILD_SAMPLES", "0")
            .always_configure(true)
            .build();

        println!("cargo:rustc-link-search=native={}/lib", dst.display());
        println!(
            "cargo:rustc-link-lib={}=charls",
            if cfg!(feature = "static") {
                "static"
            } else {
                "dylib"
            }
        );
    }

    #[cfg(feature = "vcpkg")]
    vcpkg::Config::new()
        .emit_includes(true)
        .find_package("charls")
        .unwrap();
}
