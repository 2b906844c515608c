//! Running the `cxrlearn` binary from the end-to-end tests.

// Each test binary compiles this module and uses a subset of it.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `cxrlearn` with `args` and returns its output, whatever the exit status.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(args)
        .output()
        .expect("run cxrlearn")
}

/// Runs `cxrlearn` with `args` and fails the test unless it succeeds.
pub fn run_ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}
