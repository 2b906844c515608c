//! `cxrlearn finetune` training throughput against the equivalent PyTorch
//! loop with its DataLoader (`finetune_torch.py`): same store, architecture,
//! input size, batch, optimiser (SGD 1e-3, momentum 0.9, weight decay 1e-4),
//! no augmentation, same machine, one run.
//!
//! Run with `scripts/bench.sh finetune`, or
//! `CXRLEARN_BENCH_TORCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench finetune`
//! (torch 2.13, torchvision, safetensors, numpy in that Python).
//! `CXRLEARN_BENCH_QUICK=1` runs fewer steps.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, synthetic_store, value};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("CXRLEARN_BENCH_QUICK").is_some();
    let python = std::env::var("CXRLEARN_BENCH_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = std::env::temp_dir().join(format!("cxrlearn-bench-finetune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/finetune_torch.py");
    let cases: [(&str, u32, usize, usize); 2] = if quick {
        [("resnet18", 128, 32, 4), ("resnet50", 224, 8, 3)]
    } else {
        [("resnet18", 128, 32, 20), ("resnet50", 224, 32, 8)]
    };
    let warmup = 2usize;
    let mut rows = Vec::new();
    for (arch, size, batch, steps) in cases {
        // Enough training images for exactly warm-up + timed steps.
        let n = ((warmup + steps) * batch) as f64 / 0.96;
        let store = synthetic_store(&dir, n.ceil() as usize + batch, size, "96,2,2");
        let out = dir.join(format!("run-{arch}"));
        run(
            Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
                .args([
                    "--quiet",
                    "finetune",
                    "--model",
                    &format!("scratch:{arch}"),
                    "--epochs",
                    "1",
                ])
                .args([
                    "--batch-size",
                    &batch.to_string(),
                    "--lr",
                    "1e-3",
                    "--momentum",
                    "0.9",
                ])
                .args([
                    "--weight-decay",
                    "1e-4",
                    "--schedule",
                    "constant",
                    "--augment",
                    "none",
                    "--device",
                    "cpu",
                ])
                .arg("--data")
                .arg(&store)
                .arg("--out")
                .arg(&out),
            "cxrlearn finetune",
        );
        let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
        let mut secs: Vec<f64> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["event"] == "step")
            .map(|v| v["seconds"].as_f64().unwrap())
            .skip(warmup)
            .take(steps)
            .collect();
        let ours_mean = secs.iter().sum::<f64>() / secs.len() as f64;
        let ours_median = median(&mut secs);
        let peer = run(
            Command::new(&python)
                .arg(&script)
                .args(["--store"])
                .arg(&store)
                .args([
                    "--arch",
                    arch,
                    "--size",
                    &size.to_string(),
                    "--batch-size",
                    &batch.to_string(),
                ])
                .args([
                    "--steps",
                    &steps.to_string(),
                    "--warmup",
                    &warmup.to_string(),
                    "--workers",
                    "2",
                ]),
            "PyTorch peer",
        );
        let torch_mean = value(&peer, "torch_seconds_per_step=");
        let torch_median = value(&peer, "torch_seconds_per_step_median=");
        rows.push((
            arch,
            size,
            batch,
            steps,
            ours_mean,
            ours_median,
            torch_mean,
            torch_median,
        ));
    }
    println!(
        "finetune throughput, CPU, SGD momentum, no augmentation, {warmup} warm-up steps untimed"
    );
    println!(
        "| model | px | batch | steps | cxrlearn img/s (mean / median step) | PyTorch img/s (mean / median step) | ratio (mean) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (arch, size, batch, steps, om, omed, tm, tmed) in rows {
        let b = batch as f64;
        println!(
            "| {arch} | {size} | {batch} | {steps} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2}x |",
            b / om,
            b / omed,
            b / tm,
            b / tmed,
            tm / om
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
