//! `cxrlearn features` (ResNet-50, 224 px, CPU) against the original's path
//! (a PyTorch DataLoader over the in-memory tensor dataset), bare PyTorch
//! eager forward, and PyTorch's best effort (channels-last under
//! `torch.compile`, fp32 and bf16 autocast), same weights, same images, same
//! machine, one run. Ours runs three ways: the default inference graph
//! (batch norm folded, channels-last), the plain graph (`--no-fuse
//! --no-channels-last`), and bf16. Then CheXzero's CLIP ViT-B/32 image
//! tower against OpenAI CLIP's model.py, eager (`features_clip_torch.py`).
//!
//! Run with `scripts/bench.sh features` (sets up the Python peer), or
//! `CXRLEARN_BENCH_TORCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench features`
//! with torch 2.13, torchvision, safetensors and numpy in that Python.
//! `CXRLEARN_BENCH_IMAGES` sets the image count (default 256).

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, synthetic_store, tuned_allocator, value};

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
        let (ips, line) = extracted(&out);
        ours.push((name, ips, line));
    }
    // PyTorch as users run it, then under the allocator setting our binary
    // applies to itself (cxr_nn::allocator), to show what that part is worth.
    let peer_run = |tuned: bool| {
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg("run")
            .arg(&store)
            .arg(&weights)
            .arg("64");
        run(tuned_allocator(&mut cmd, tuned), "PyTorch peer")
    };
    let (peer, tuned) = (peer_run(false), peer_run(true));
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
    for (label, p) in [("", &peer), (" [allocator as ours]", &tuned)] {
        println!(
            "PyTorch DataLoader (original){label}  {:7.2} images/s",
            value(p, "dataloader_ips=")
        );
        println!(
            "PyTorch eager forward{label}          {:7.2} images/s",
            value(p, "forward_ips=")
        );
        println!(
            "PyTorch channels-last + torch.compile, fp32{label} {:7.2} images/s (compile {} s, rel err {})",
            value(p, "compile_ips="),
            value(p, "compile_compile_s="),
            value(p, "compile_rel_err=")
        );
        println!(
            "PyTorch channels-last + torch.compile, bf16 autocast{label} {:7.2} images/s (compile {} s, rel err {})",
            value(p, "compile_bf16_ips="),
            value(p, "compile_bf16_compile_s="),
            value(p, "compile_bf16_rel_err=")
        );
    }
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
    println!(
        "ratio against PyTorch with our allocator setting: fp32 {:.2}x eager, {:.2}x compile; bf16 {:.2}x compile bf16",
        fp32 / value(&tuned, "forward_ips="),
        fp32 / value(&tuned, "compile_ips="),
        bf16 / value(&tuned, "compile_bf16_ips=")
    );
    clip(&python, &store, &dir, n);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Images/s and the line `cxrlearn features` ends with.
fn extracted(out: &str) -> (f64, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with("extracted"))
        .expect("extracted line")
        .to_owned();
    let ips = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("images/s");
    (ips, line)
}

/// CheXzero's CLIP ViT-B/32 image tower against OpenAI CLIP's model.py in
/// PyTorch eager (`features_clip_torch.py`), same seeded weights and images;
/// the peer also checks that the features agree.
fn clip(python: &str, store: &Path, dir: &Path, n: u32) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/features_clip_torch.py");
    let weights = dir.join("clip.pt");
    run(
        Command::new(python)
            .arg(&script)
            .arg("save-weights")
            .arg(&weights),
        "save CLIP weights",
    );
    let out = dir.join("features-clip");
    let (ours, line) = extracted(&run(
        Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
            .args(["features", "--model", "chexzero", "--device", "cpu"])
            .args(["--batch-size", "64", "--checkpoint"])
            .arg(&weights)
            .arg("--data")
            .arg(store)
            .arg("--out")
            .arg(&out),
        "cxrlearn features (chexzero)",
    ));
    let peer_run = |tuned: bool| {
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .arg("run")
            .arg(store)
            .arg(&weights)
            .arg("64")
            .arg(out.join("train.safetensors"));
        run(tuned_allocator(&mut cmd, tuned), "PyTorch CLIP peer")
    };
    let (peer, tuned) = (peer_run(false), peer_run(true));
    let eager = value(&peer, "forward_ips=");
    println!(
        "{n} images, CheXzero CLIP ViT-B/32 at 224 px, batch 64, CPU ({})",
        peer.lines().next().unwrap_or("")
    );
    println!("cxrlearn features chexzero {ours:7.2} images/s ({line})");
    println!(
        "PyTorch eager (OpenAI CLIP model.py) {eager:7.2} images/s; features agree: max |ours - PyTorch| / max |PyTorch| = {}",
        value(&peer, "rel_err=")
    );
    let eager_tuned = value(&tuned, "forward_ips=");
    println!("PyTorch eager [allocator as ours] {eager_tuned:7.2} images/s");
    println!(
        "ratio ViT-B/32: {:.2}x PyTorch eager, {:.2}x PyTorch eager with our allocator setting",
        ours / eager,
        ours / eager_tuned
    );
}
