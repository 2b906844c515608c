//! The benchmark grid TOML (`cxrlearn benchmark --config`).
//!
//! The grid's parser and its checks live in the CLI binary, which has no
//! library target; splitting one out for the fuzzer alone would move half of
//! the CLI. The binary's module tree is compiled here instead (its `main.rs`
//! declares exactly these three modules), so the fuzzed code is the CLI's own.
#![no_main]
// The CLI's commands are compiled only to reach the grid.
#![allow(dead_code, unused_imports, missing_docs)]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/cxrlearn/src/cmd/mod.rs"]
mod cmd;
#[path = "../../crates/cxrlearn/src/output.rs"]
mod output;
#[path = "../../crates/cxrlearn/src/run.rs"]
mod run;

#[path = "../harness/benchmark_grid.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::run(data));
