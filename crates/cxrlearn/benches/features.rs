//! `cxrlearn features` (ResNet-50, 224 px, CPU) against the original's path
//! (a PyTorch DataLoader over the in-memory tensor dataset) and bare PyTorch
//! forward, same weights, same images, same machine, one run.
//!
//! Run with `scripts/bench.sh features` (sets up the Python peer), or
//! `CXRLEARN_BENCH_TORCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench features`
//! with torch 2.13, torchvision, safetensors and numpy in that Python.
//! `CXRLEARN_BENCH_IMAGES` sets the image count (default 256).

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, synthetic_store, value};

fn main() {
    let n: u32 = std::env::var("CXRLEARN_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let python = std::env::var("CXRLEARN_BENCH_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let exe = env!("CARGO_BIN_EXE_cxrlearn");
    let dir = std::env::temp_dir().join(format!("cxrlearn-bench-features-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One split holding every image keeps both sides on the same tensor.
    let store = synthetic_store(&dir, n as usize, 224, "100,0,0");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/features_torch.py");
    let weights = dir.join("resnet50.pt");
    run(
        Command::new(&python)
            .arg(&script)
            .arg("save-weights")
            .arg(&weights),
        "save weights",
    );

    let ours = run(
        Command::new(exe)
            .args([
                "features",
                "--model",
                "resnet50-imagenet",
                "--device",
                "cpu",
                "--batch-size",
                "64",
                "--normalization",
                "clip",
            ])
            .arg("--checkpoint")
            .arg(&weights)
            .arg("--data")
            .arg(&store)
            .arg("--out")
            .arg(dir.join("features")),
        "cxrlearn features",
    );
    let ips_line = ours
        .lines()
        .find(|l| l.starts_with("extracted"))
        .expect("extracted line")
        .to_owned();
    let ours_ips: f64 = ips_line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("images/s");
    let peer = run(
        Command::new(&python)
            .arg(&script)
            .arg("run")
            .arg(&store)
            .arg(&weights)
            .arg("64"),
        "PyTorch peer",
    );
    let dataloader = value(&peer, "dataloader_ips=");
    let forward = value(&peer, "forward_ips=");
    println!(
        "{n} images, ResNet-50 at 224 px, batch 64, CPU ({})",
        peer.lines().next().unwrap_or("")
    );
    println!("cxrlearn features:            {ours_ips:.2} images/s ({ips_line})");
    println!("PyTorch DataLoader (original): {dataloader:.2} images/s");
    println!("PyTorch bare forward:          {forward:.2} images/s");
    println!(
        "ratio: {:.2}x the original's DataLoader path, {:.2}x bare PyTorch forward",
        ours_ips / dataloader,
        ours_ips / forward
    );
    let _ = std::fs::remove_dir_all(&dir);
}
