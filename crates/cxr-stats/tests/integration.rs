//! The integration tests of cxr-stats in one binary: each file of this
//! directory is a module here, so the suite is linked once (with libtorch,
//! hundreds of MB a binary) rather than once per file. One file's tests:
//! `cargo test -p cxr-stats --test integration <file>::`.

mod bootstrap;
mod fuzz_regressions;
mod predictions_input;
mod review;
mod sklearn;

/// A test file that is not a module here would never be compiled or run.
#[test]
fn every_test_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = include_str!("integration.rs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".rs").filter(|s| *s != "integration") {
            assert!(
                this.contains(&format!("\nmod {stem};\n")),
                "tests/{name} is not declared in tests/integration.rs"
            );
        }
    }
}
