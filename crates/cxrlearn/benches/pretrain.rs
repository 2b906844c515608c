//! One pretraining step of `cxrlearn pretrain` against the reference PyTorch
//! step (`pretrain_torch.py`), same machine, one run: MoCo-CXR with a
//! ResNet-50 at 224 px, batch 32; CheXzero-style CLIP ViT-B/32 at 224 px with
//! its text tower (context 77), batch 16.
//!
//! Our steps run on phantom images through the whole loop (loader thread,
//! views without augmentation, loss, backward, AdamW, EMA and queue); the peer
//! steps on random tensors held in memory, so data loading counts only
//! against us. The peer runs three ways: as written, as PyTorch's best
//! effort (foreach AdamW; for MoCo also channels-last and a foreach EMA),
//! and that under the allocator setting cxrlearn applies to itself. Ours
//! runs at its defaults and with its opt-in speed settings
//! (`--channels-last` for MoCo, `--fused-optimizer`).
//!
//! Run with `scripts/bench.sh pretrain`, or
//! `CXRLEARN_BENCH_TORCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench pretrain`
//! (torch 2.13 and torchvision in that Python). `CXRLEARN_BENCH_QUICK=1`
//! runs fewer steps.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, tuned_allocator, value};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A 224-px phantom store with reports whose train split holds at least
/// `images` frontal images.
fn phantom(dir: &Path, images: usize) -> PathBuf {
    let bin = env!("CARGO_BIN_EXE_cxrlearn");
    let raw = dir.join("raw");
    // About 1.15 frontal images per patient, 60 % of them in train.
    let patients = (images as f64 / 0.6 / 1.1).ceil() as usize + 8;
    run(
        Command::new(bin)
            .args(["--quiet", "phantom", "--sites", "1", "--size", "256"])
            .args(["--patients", &patients.to_string(), "--max-studies", "1"])
            .arg("--out")
            .arg(&raw),
        "cxrlearn phantom",
    );
    let store = dir.join("store");
    run(
        Command::new(bin)
            .args(["--quiet", "convert", "--preset", "phantom", "--size", "224"])
            .arg("--root")
            .arg(&raw)
            .arg("--out")
            .arg(&store),
        "cxrlearn convert",
    );
    store
}

/// Seconds per step of our run in `out`, after `warmup` steps.
fn our_steps(out: &Path, warmup: usize) -> (f64, f64, usize) {
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let mut secs: Vec<f64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "step")
        .map(|v| v["seconds"].as_f64().unwrap())
        .skip(warmup)
        .collect();
    let n = secs.len();
    assert!(n > 0, "no timed steps in {}", out.display());
    let mean = secs.iter().sum::<f64>() / n as f64;
    (mean, median(&mut secs), n)
}

fn main() {
    let quick = std::env::var_os("CXRLEARN_BENCH_QUICK").is_some();
    let python = std::env::var("CXRLEARN_BENCH_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = std::env::temp_dir().join(format!("cxrlearn-bench-pretrain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pretrain_torch.py");
    let warmup = 2usize;
    let steps = if quick { 3 } else { 8 };
    let store = phantom(&dir, (warmup + steps + 1) * 32);
    let no_augment = ["--rotation", "0", "--hflip", "0", "--crop-scale", "1,1"];
    // (name, our arguments, peer arguments, batch)
    let cases: [(&str, Vec<&str>, Vec<&str>, usize); 2] = [
        (
            "MoCo-CXR ResNet-50 224 px",
            [
                &[
                    "--method",
                    "moco-cxr",
                    "--backbone",
                    "resnet50",
                    "--batch-size",
                    "32",
                ][..],
                &["--queue", "4096", "--ghost-batches", "2"],
                &no_augment,
            ]
            .concat(),
            vec![
                "moco",
                "--arch",
                "resnet50",
                "--batch-size",
                "32",
                "--queue",
                "4096",
            ],
            32,
        ),
        (
            "CLIP ViT-B/32 224 px + text",
            vec![
                "--method",
                "clip",
                "--batch-size",
                "16",
                "--context-length",
                "77",
            ],
            vec![
                "clip",
                "--batch-size",
                "16",
                "--context",
                "77",
                "--vocab",
                "8192",
            ],
            16,
        ),
    ];
    // Our runs of a case: its default, then the opt-in speed settings
    // (`--channels-last` for MoCo, `--fused-optimizer`; docs/design.md
    // "Speed").
    let mut rows = Vec::new();
    for (case, (name, ours, peer_args, batch)) in cases.into_iter().enumerate() {
        let variants: &[(&str, &[&str])] = if case == 0 {
            &[
                ("default", &[]),
                ("--channels-last", &["--channels-last"]),
                (
                    "--channels-last --fused-optimizer",
                    &["--channels-last", "--fused-optimizer"],
                ),
            ]
        } else {
            &[
                ("default", &[]),
                ("--fused-optimizer", &["--fused-optimizer"]),
            ]
        };
        let mut mine = Vec::new();
        let mut timed = usize::MAX;
        for (v, (label, extra)) in variants.iter().enumerate() {
            let out = dir.join(format!("run-{case}-{v}"));
            run(
                Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
                    .args(["--quiet", "pretrain", "--epochs", "1", "--device", "cpu"])
                    .args(&ours)
                    .args(*extra)
                    .arg("--data")
                    .arg(&store)
                    .arg("--out")
                    .arg(&out),
                "cxrlearn pretrain",
            );
            let (mean, median, n) = our_steps(&out, warmup);
            timed = timed.min(n);
            mine.push((*label, mean, median));
        }
        // PyTorch's reference step as written, then its best effort
        // (foreach AdamW; MoCo also channels-last and a foreach EMA).
        let peer = |best: bool, tuned: bool| {
            let mut cmd = Command::new(&python);
            cmd.arg(&script)
                .args(&peer_args)
                .args(["--steps", &timed.min(steps).to_string()])
                .args(["--warmup", &warmup.to_string()]);
            if best {
                cmd.arg("--best");
            }
            // The allocator setting cxrlearn applies to itself
            // (cxr_nn::allocator), for what that part is worth.
            let out = run(tuned_allocator(&mut cmd, tuned), "PyTorch peer");
            (
                value(&out, "torch_seconds_per_step="),
                value(&out, "torch_seconds_per_step_median="),
            )
        };
        let (eager, best, tuned) = (peer(false, false), peer(true, false), peer(true, true));
        for (label, mean, median) in mine {
            rows.push((
                name,
                label,
                batch,
                timed,
                (mean, median),
                eager,
                best,
                tuned,
            ));
        }
    }
    println!(
        "pretraining step, same machine, one run (seconds per step, mean / median; \
         ratio = PyTorch median / ours; best = foreach AdamW, MoCo also channels-last and foreach EMA; \
         best+alloc = best under our allocator setting)"
    );
    println!(
        "| case | cxrlearn | batch | steps | cxrlearn | PyTorch eager | PyTorch best | PyTorch best+alloc | ratio eager | ratio best | ratio best+alloc |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let secs = |(mean, median): (f64, f64)| format!("{mean:.3} / {median:.3}");
    for (name, label, batch, n, ours, eager, best, tuned) in rows {
        println!(
            "| {name} | {label} | {batch} | {n} | {} | {} | {} | {} | {:.2}x | {:.2}x | {:.2}x |",
            secs(ours),
            secs(eager),
            secs(best),
            secs(tuned),
            eager.1 / ours.1,
            best.1 / ours.1,
            tuned.1 / ours.1
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
