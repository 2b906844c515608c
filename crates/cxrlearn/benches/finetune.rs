//! `cxrlearn finetune` training throughput against the equivalent PyTorch
//! loop with its DataLoader (`finetune_torch.py`): same store, architecture,
//! input size, batch, optimiser (SGD 1e-3, momentum 0.9, weight decay 1e-4),
//! no augmentation, same machine, one run.
//!
//! Run with `scripts/bench.sh finetune`, or
//! `CXRLEARN_BENCH_TORCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench finetune`
//! (torch 2.13, torchvision, safetensors, numpy in that Python).
//! `CXRLEARN_BENCH_QUICK=1` runs fewer steps.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command, what: &str) -> String {
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

fn value(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no '{key}' in:\n{text}"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A store of `n` synthetic 256 px images resized to `size`, almost all in
/// the training split.
fn make_store(dir: &Path, n: usize, size: u32) -> std::path::PathBuf {
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
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
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
                "--label-columns",
                "label",
            ])
            .args([
                "--patient-column",
                "patient",
                "--splits",
                "96,2,2",
                "--size",
                &size.to_string(),
            ])
            .arg("--csv")
            .arg(dir.join("labels.csv"))
            .arg("--image-root")
            .arg(&raw)
            .arg("--out")
            .arg(&store),
        "cxrlearn convert",
    );
    store
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
        let store = make_store(&dir, n.ceil() as usize + batch, size);
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
