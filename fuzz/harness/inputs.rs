//! Runs every committed input of one fuzz target (fuzz/regressions/TARGET/)
//! through that target's code, for the owning crate's regression test: the
//! findings stay fixed, and CI exercises each parser without the fuzzer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest one input may take. The fuzzer's bound is one second on its
/// optimised build; tests run unoptimised crates on shared CI machines.
const LIMIT: Duration = Duration::from_secs(10);

/// Calls `run` on each file of `fuzz/regressions/<target>/` under the
/// repository holding `manifest_dir` (a crate's `CARGO_MANIFEST_DIR`),
/// failing on a panic or an input slower than [`LIMIT`], naming the file.
pub fn each_input(manifest_dir: &str, target: &str, run: impl Fn(&[u8])) {
    let dir = Path::new(manifest_dir)
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&bytes)));
        assert!(outcome.is_ok(), "{} panicked", file.display());
        let took = start.elapsed();
        assert!(took < LIMIT, "{} took {took:?}", file.display());
    }
}
