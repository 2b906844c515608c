//! `cxrlearn finetune` training throughput against the equivalent PyTorch
//! loop with its DataLoader (`finetune_torch.py`): same store, architecture,
//! input size, batch, optimiser (SGD 1e-3, momentum 0.9, weight decay 1e-4),
//! no augmentation, same machine, one run; and against PyTorch's best effort
//! for CPU training (channels-last model and batches, `foreach` SGD), also
//! under the allocator setting cxrlearn applies to itself. Ours runs at its
//! defaults and with `--fused-optimizer`.
//!
//! Run with `scripts/bench.sh finetune`, or
//! `CXRLEARN_BENCH_TORCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench finetune`
//! (torch 2.13, torchvision, safetensors, numpy in that Python).
//! `CXRLEARN_BENCH_QUICK=1` runs fewer steps.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, synthetic_store, tuned_allocator, value};

/// One case's seconds per step, (mean, median), for each side.
struct Row {
    arch: &'static str,
    label: &'static str,
    size: u32,
    batch: usize,
    steps: usize,
    ours: (f64, f64),
    eager: (f64, f64),
    best: (f64, f64),
    tuned: (f64, f64),
}

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
        // Ours at its defaults, then with the fused optimiser kernels.
        let ours = |label: &str, extra: &[&str]| {
            let out = dir.join(format!("run-{arch}-{label}"));
            run(
                Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
                    .args(["--quiet", "finetune", "--model", &format!("scratch:{arch}")])
                    .args(["--epochs", "1", "--batch-size", &batch.to_string()])
                    .args([
                        "--lr",
                        "1e-3",
                        "--momentum",
                        "0.9",
                        "--weight-decay",
                        "1e-4",
                    ])
                    .args([
                        "--schedule",
                        "constant",
                        "--augment",
                        "none",
                        "--device",
                        "cpu",
                    ])
                    .args(extra)
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
            let mean = secs.iter().sum::<f64>() / secs.len() as f64;
            (mean, median(&mut secs))
        };
        let mine = [
            ("default", ours("default", &[])),
            ("--fused-optimizer", ours("fused", &["--fused-optimizer"])),
        ];
        // PyTorch eager as the original trains, then its best effort
        // (channels-last, foreach SGD), then that under the allocator
        // setting cxrlearn applies to itself (cxr_nn::allocator), on the
        // same store in the same run.
        let peer = |best: bool, tuned: bool| {
            let mut cmd = Command::new(&python);
            cmd.arg(&script)
                .arg("--store")
                .arg(&store)
                .args(["--arch", arch, "--size", &size.to_string()])
                .args(["--batch-size", &batch.to_string()])
                .args(["--steps", &steps.to_string()])
                .args(["--warmup", &warmup.to_string(), "--workers", "2"]);
            if best {
                cmd.arg("--best");
            }
            let out = run(tuned_allocator(&mut cmd, tuned), "PyTorch peer");
            (
                value(&out, "torch_seconds_per_step="),
                value(&out, "torch_seconds_per_step_median="),
            )
        };
        let (eager, best, tuned) = (peer(false, false), peer(true, false), peer(true, true));
        for (label, ours) in mine {
            rows.push(Row {
                arch,
                label,
                size,
                batch,
                steps,
                ours,
                eager,
                best,
                tuned,
            });
        }
    }
    println!(
        "finetune throughput, CPU, SGD momentum, no augmentation, {warmup} warm-up steps untimed; \
         PyTorch eager = the plain loop, best = channels-last + foreach SGD, best+alloc = best under our allocator setting; \
         ratio = PyTorch mean step / ours"
    );
    println!(
        "| model | cxrlearn | px | batch | steps | cxrlearn img/s (mean / median) | PyTorch eager img/s (mean / median) | PyTorch best img/s (mean / median) | PyTorch best+alloc img/s (mean / median) | ratio eager | ratio best | ratio best+alloc |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let b = r.batch as f64;
        let ips = |(mean, median): (f64, f64)| format!("{:.2} / {:.2}", b / mean, b / median);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x | {:.2}x |",
            r.arch,
            r.label,
            r.size,
            r.batch,
            r.steps,
            ips(r.ours),
            ips(r.eager),
            ips(r.best),
            ips(r.tuned),
            r.eager.0 / r.ours.0,
            r.best.0 / r.ours.0,
            r.tuned.0 / r.ours.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
