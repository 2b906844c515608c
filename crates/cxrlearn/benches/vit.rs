//! DINOv2 at RAD-DINO's shape (ViT-B/14 at 518 px: 1,369 patches and the
//! class token, 1,370 tokens per image) through cxrlearn's library against
//! Hugging Face transformers' `Dinov2Model` (`vit_transformers.py`): feature
//! extraction and finetuning steps, same weights, same input, same thread
//! count, one run.
//!
//! The peer builds a seeded random `Dinov2Model` and `save_pretrained`s it
//! into a temporary directory; both sides load that directory. cxrlearn
//! resolves it as `hf:DIR` (`cxr_learn::model::resolve`) and runs:
//! - features: `Encoder::features` on `B` u8 images of 518 x 518 (its
//!   preprocessing included; the peer gets the preprocessed tensor), eval
//!   mode, class token after the final layer norm (`pooler_output`);
//! - training: `Classifier` (backbone + linear head), mean BCE with logits,
//!   `Optimizer` AdamW step, as `cxrlearn finetune` steps (without its
//!   loader: both sides train on one batch held in memory).
//!
//! The two sides' features of the same input are compared (max relative
//! error) and so are their first training losses (same head weights), so the
//! ratio compares the same work.
//!
//! Run with `scripts/bench.sh vit`, or
//! `CXRLEARN_BENCH_TORCH_PYTHON=/path/to/python cargo bench -p cxrlearn --bench vit`
//! with torch 2.13, transformers 5.25 and safetensors in that Python.
//! `CXRLEARN_BENCH_VIT_BATCH` (default 2), `CXRLEARN_BENCH_VIT_STEPS` (timed
//! training steps and feature batches, default 3) size the run;
//! `CXRLEARN_BENCH_VIT_DIR` reuses a directory an earlier run's peer saved;
//! `CXRLEARN_BENCH_VIT_OURS_ONLY=1` skips the peer's timings (profiling).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{run, value};
use cxr_learn::classifier::Classifier;
use cxr_learn::optim::{Optimizer, Rule};
use tch::{Device, Kind, Reduction, Tensor};

/// RAD-DINO's input side.
const SIZE: usize = 518;
/// Labels of the finetuning head (NIH's 14).
const LABELS: i64 = 14;
const LR: f64 = 1e-5;
const WEIGHT_DECAY: f64 = 0.05;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `n` deterministic 518 x 518 u8 images, film-like gradients that differ
/// per image.
fn images(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * SIZE * SIZE);
    for i in 0..n {
        for y in 0..SIZE {
            for x in 0..SIZE {
                out.push(((x * x / 512 + y * 3 + i * 37) % 251) as u8);
            }
        }
    }
    out
}

fn main() {
    let batch = env_usize("CXRLEARN_BENCH_VIT_BATCH", 2);
    let steps = env_usize("CXRLEARN_BENCH_VIT_STEPS", 3).max(1);
    let ours_only = std::env::var_os("CXRLEARN_BENCH_VIT_OURS_ONLY").is_some();
    let python = std::env::var("CXRLEARN_BENCH_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/vit_transformers.py");
    let tmp = std::env::temp_dir().join(format!("cxrlearn-bench-vit-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let model_dir = match std::env::var_os("CXRLEARN_BENCH_VIT_DIR") {
        Some(d) => d.into(),
        None => {
            let d = tmp.join("model");
            run(
                Command::new(&python).arg(&script).arg("save").arg(&d),
                "save the transformers model",
            );
            d
        }
    };
    let threads = tch::get_num_threads();
    let side = SIZE as i64;
    let resolved = cxr_learn::model::resolve(
        &format!("hf:{}", model_dir.display()),
        None,
        side,
        Some(side),
        None,
    )
    .expect("resolve the saved directory");
    let u8_images = images(batch);

    // Features: the encoder as `cxrlearn features` runs it.
    let encoder = resolved.encoder(Device::Cpu, 0).expect("load the encoder");
    let x = tch::no_grad(|| encoder.preprocess(&u8_images, batch, SIZE, SIZE));
    let ours_features = encoder.features(&u8_images, batch, SIZE, SIZE);
    let mut feature_secs = Vec::new();
    for _ in 0..steps {
        let t = Instant::now();
        let _ = encoder.features(&u8_images, batch, SIZE, SIZE);
        feature_secs.push(t.elapsed().as_secs_f64());
    }
    drop(encoder);

    // Training: the finetuning model and optimiser, one batch in memory.
    let weights = resolved.load().expect("read the weights");
    let model = Classifier::new(
        resolved.spec.clone(),
        LABELS,
        Device::Cpu,
        weights.as_ref(),
        0,
        false,
    )
    .expect("load the classifier");
    drop(weights);
    let targets = Tensor::rand([batch as i64, LABELS], (Kind::Float, Device::Cpu))
        .ge(0.5)
        .to_kind(Kind::Float);
    let vars = model.vs.variables();
    let inputs = tmp.join("inputs.safetensors");
    Tensor::write_safetensors(
        &[
            ("pixel_values", &x),
            ("targets", &targets),
            ("head.weight", &vars["head.weight"]),
            ("head.bias", &vars["head.bias"]),
        ],
        &inputs,
    )
    .expect("write the inputs");
    let rule = Rule::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: WEIGHT_DECAY,
    };
    let mut opt = Optimizer::new(rule, model.trainable());
    let mut step = || {
        let x = model.input(&u8_images, batch);
        let logits = model.forward_t(&x, true);
        let loss = logits.binary_cross_entropy_with_logits::<Tensor>(
            &targets,
            None,
            None,
            Reduction::Mean,
        );
        opt.zero_grad();
        loss.backward();
        opt.step(LR);
        loss.double_value(&[])
    };
    let ours_first_loss = step();
    let mut train_secs = Vec::new();
    for _ in 0..steps {
        let t = Instant::now();
        step();
        train_secs.push(t.elapsed().as_secs_f64());
    }
    drop(model);

    let b = batch as f64;
    let ours_features_ips = b * steps as f64 / feature_secs.iter().sum::<f64>();
    let ours_train_mean = train_secs.iter().sum::<f64>() / steps as f64;
    println!(
        "DINOv2 ViT-B/14 at {SIZE} px (RAD-DINO's shape, 1,370 tokens), batch {batch}, CPU, {threads} threads, \
         1 warm-up + {steps} timed batches / steps, AdamW lr {LR} wd {WEIGHT_DECAY}, {LABELS}-label BCE head"
    );
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "cxrlearn features: {ours_features_ips:.3} images/s (batches: {} s)",
        fmt(&feature_secs)
    );
    println!(
        "cxrlearn training: {:.3} images/s (mean step {ours_train_mean:.2} s, median {:.2} s; steps: {} s)",
        b / ours_train_mean,
        median(&train_secs),
        fmt(&train_secs)
    );
    let out = tmp.join("peer_features.safetensors");
    let mut peer_cmd = Command::new(&python);
    peer_cmd
        .arg(&script)
        .arg("run")
        .arg(&model_dir)
        .arg(&inputs)
        .arg(&out)
        .args(["--threads", &threads.to_string()])
        .args(["--lr", &LR.to_string()])
        .args(["--weight-decay", &WEIGHT_DECAY.to_string()]);
    if ours_only {
        peer_cmd.args(["--feature-batches", "0", "--warmup", "1", "--steps", "0"]);
    } else {
        let s = steps.to_string();
        peer_cmd.args(["--feature-batches", &s, "--warmup", "1", "--steps", &s]);
    }
    let peer = run(&mut peer_cmd, "transformers peer");
    println!("{}", peer.lines().next().unwrap_or(""));

    // Same work: the features of the same input, and the first loss from the
    // same weights, head included.
    let theirs: Vec<(String, Tensor)> = Tensor::read_safetensors(&out).expect("peer features");
    let theirs = &theirs[0].1;
    let rel = ((&ours_features - theirs).abs().max() / theirs.abs().max()).double_value(&[]);
    let peer_first_loss = value(&peer, "first_loss=");
    println!(
        "agreement: features max |ours - transformers| / max |transformers| = {rel:.2e}; \
         first training loss {ours_first_loss:.6} vs {peer_first_loss:.6}"
    );
    assert!(rel < 1e-3, "the two sides' features differ: {rel:.2e}");
    assert!(
        (ours_first_loss - peer_first_loss).abs() < 1e-4,
        "the two sides' first losses differ"
    );
    if !ours_only {
        let peer_features = value(&peer, "features_ips=");
        let peer_train = value(&peer, "train_ips=");
        println!(
            "transformers features: {peer_features:.3} images/s ({})",
            peer.lines()
                .find(|l| l.starts_with("features_seconds_per_batch="))
                .unwrap_or("")
        );
        println!(
            "transformers training: {peer_train:.3} images/s (mean step {:.2} s, median {:.2} s)",
            value(&peer, "train_seconds_per_step="),
            value(&peer, "train_seconds_per_step_median=")
        );
        println!(
            "ratio (cxrlearn / transformers): features {:.2}x, training {:.2}x",
            ours_features_ips / peer_features,
            (b / ours_train_mean) / peer_train
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
