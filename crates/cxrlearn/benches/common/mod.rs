//! Pieces the benchmarks share: running a command, reading a printed value,
//! and a store of synthetic images both sides of a comparison read.

// Each bench compiles this module and uses a subset of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd`, exiting with its stderr when it fails; returns stdout and
/// stderr together.
pub fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    if !o.status.success() {
        eprintln!("{what} failed:\n{}", String::from_utf8_lossy(&o.stderr));
        std::process::exit(1);
    }
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The number printed after `key` on some line of `text`.
pub fn value(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no '{key}' in:\n{text}"))
}

/// `n` synthetic 256 px grayscale PNGs (one patient each, a binary label
/// alternating) converted to a `size`-pixel store with train/val/test
/// percentages `splits`, under `dir`.
pub fn synthetic_store(dir: &Path, n: usize, size: u32, splits: &str) -> PathBuf {
    let raw = dir.join(format!("raw{size}"));
    std::fs::create_dir_all(&raw).unwrap();
    let mut csv = String::from("file,patient,label\n");
    for i in 0..n as u32 {
        let img = image::GrayImage::from_fn(256, 256, |x, y| {
            image::Luma([((x * x / 64 + y * 3 + i * 37) % 251) as u8])
        });
        img.save(raw.join(format!("{i}.png"))).unwrap();
        csv.push_str(&format!("{i}.png,p{i},{}\n", i % 2));
    }
    let labels = dir.join(format!("labels{size}.csv"));
    std::fs::write(&labels, csv).unwrap();
    let store = dir.join(format!("store{size}"));
    run(
        Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
            .args([
                "--quiet",
                "convert",
                "--task",
                "binary",
                "--path-column",
                "file",
            ])
            .args(["--label-columns", "label", "--patient-column", "patient"])
            .args(["--splits", splits, "--size", &size.to_string()])
            .arg("--csv")
            .arg(&labels)
            .arg("--image-root")
            .arg(&raw)
            .arg("--out")
            .arg(&store),
        "cxrlearn convert",
    );
    store
}

/// `cmd` under glibc's variables for the allocator policy cxrlearn sets on
/// itself (`cxr_nn::allocator`: no mmap for large blocks, 1 GiB kept before
/// trimming) when `tuned`; as it is otherwise.
pub fn tuned_allocator(cmd: &mut Command, tuned: bool) -> &mut Command {
    if tuned {
        cmd.env("MALLOC_MMAP_MAX_", "0")
            .env("MALLOC_TRIM_THRESHOLD_", (1u64 << 30).to_string());
    }
    cmd
}
