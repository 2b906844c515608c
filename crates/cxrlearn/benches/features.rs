//! `cxrlearn features` (ResNet-50, 224 px, CPU) against the original's path
//! (a PyTorch DataLoader over the in-memory tensor dataset), bare PyTorch
//! eager forward, and PyTorch's best effort (channels-last under
//! `torch.compile`, fp32 and bf16 autocast), same weights, same images, same
//! machine, one run. Ours runs three ways: the default inference graph
//! (batch norm folded, channels-last), the plain graph (`--no-fuse
//! --no-channels-last`), and bf16.
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

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // The default graph (batch norm folded, channels-last), the plain one,
    // and bf16 on the default graph.
    let arrangements: [(&str, &[&str]); 3] = [
        ("fp32", &[]),
        ("fp32-plain", &["--no-fuse", "--no-channels-last"]),
        ("bf16", &["--precision", "bf16"]),
    ];
    let mut ours = Vec::new();
    for (name, extra) in arrangements {
        let out = run(
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
                .args(extra)
                .arg("--checkpoint")
                .arg(&weights)
                .arg("--data")
                .arg(&store)
                .arg("--out")
                .arg(dir.join(format!("features-{name}"))),
            "cxrlearn features",
        );
        let line = out
            .lines()
            .find(|l| l.starts_with("extracted"))
            .expect("extracted line")
            .to_owned();
        let ips: f64 = line
            .split('(')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("images/s");
        ours.push((name, ips, line));
    }
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
    let compiled = value(&peer, "compile_ips=");
    let compiled_bf16 = value(&peer, "compile_bf16_ips=");
    println!(
        "{n} images, ResNet-50 at 224 px, batch 64, CPU ({}); load average before: {}",
        peer.lines().next().unwrap_or(""),
        load.trim()
    );
    for (name, ips, line) in &ours {
        println!("cxrlearn features {name:<11} {ips:7.2} images/s ({line})");
    }
    println!("PyTorch DataLoader (original)  {dataloader:7.2} images/s");
    println!("PyTorch eager forward          {forward:7.2} images/s");
    println!(
        "PyTorch channels-last + torch.compile, fp32 {compiled:7.2} images/s (compile {} s, rel err {})",
        value(&peer, "compile_compile_s="),
        value(&peer, "compile_rel_err=")
    );
    println!(
        "PyTorch channels-last + torch.compile, bf16 autocast {compiled_bf16:7.2} images/s (compile {} s, rel err {})",
        value(&peer, "compile_bf16_compile_s="),
        value(&peer, "compile_bf16_rel_err=")
    );
    let (fp32, plain, bf16) = (ours[0].1, ours[1].1, ours[2].1);
    println!(
        "ratio fp32: {:.2}x PyTorch eager, {:.2}x PyTorch best effort (compile), {:.2}x the original's DataLoader path; \
         {:.2}x our plain graph",
        fp32 / forward,
        fp32 / compiled,
        fp32 / dataloader,
        fp32 / plain
    );
    println!(
        "ratio bf16: {:.2}x PyTorch eager fp32, {:.2}x PyTorch best effort bf16 (compile + autocast)",
        bf16 / forward,
        bf16 / compiled_bf16
    );
    let _ = std::fs::remove_dir_all(&dir);
}
