//! The integration tests of cxrlearn in one binary: each file of this
//! directory is a module here, so the suite is linked once (with libtorch,
//! hundreds of MB a binary) rather than once per file. One file's tests:
//! `cargo test -p cxrlearn --test integration <file>::`.

mod benchmark;
mod common;
mod convert_cli;
mod data_parallel;
mod demo;
mod evaluate;
mod features;
mod finetune;
mod foundation;
mod gpu;
mod hostile;
mod hostile_checkpoints;
mod hostile_images;
mod hostile_misc;
mod hostile_outputs;
mod import;
mod phantom_convert;
mod pretrain;
mod pretrain_clip;
mod pretrain_convirt;
mod pretrain_gloria;
mod pretrain_probe;
mod pretrain_refers;
mod pretrain_s2mts2;
mod probe;
mod ssl_common;
mod zeroshot;
mod zeroshot_support;

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
