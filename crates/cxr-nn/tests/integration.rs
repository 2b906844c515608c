//! The integration tests of cxr-nn in one binary: each file of this
//! directory is a module here, so the suite is linked once (with libtorch,
//! hundreds of MB a binary) rather than once per file. One file's tests:
//! `cargo test -p cxr-nn --test integration <file>::`.

mod biomedclip;
mod checkpoint;
mod common;
mod densenet;
mod dinov2;
mod fuzz_regressions;
mod inference_graph;
mod moco_resnet18;
mod registry;
mod resnet;
mod siglip;
mod text;
mod transformers;

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
