//! The CUDA test subset, run by `scripts/gpu-check.sh` on a machine with a
//! GPU (`cargo test -p cxrlearn --test integration gpu:: -- --ignored`). Each test needs a
//! CUDA device, so they are ignored in the default (CPU) test run.
//!
//! - `features` on the GPU equals the CPU's to float32 rounding, and bf16 /
//!   fp16 autocast stays within reduced-precision rounding of it;
//! - `finetune` on the GPU follows the CPU's first steps (same seed, same
//!   data) and trains at bf16 and fp16 (loss scaling logged) to finite,
//!   falling losses.

use crate::common;

use std::path::Path;

use common::{events, log, phantom_store, run_ok};

fn features(store: &Path, out: &Path, device: &str, precision: &str) -> Vec<f32> {
    run_ok(&[
        "--quiet",
        "features",
        "--model",
        "scratch:resnet18-w16",
        "--data",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        device,
        "--precision",
        precision,
    ]);
    let ck = cxr_nn::checkpoint::load(&out.join("test.safetensors")).unwrap();
    Vec::<f32>::try_from(ck.tensors["features"].to_tch().flatten(0, -1)).unwrap()
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let norm = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    diff / norm
}

#[test]
#[ignore = "needs a CUDA device; run by scripts/gpu-check.sh"]
fn features_on_the_gpu_match_the_cpu() {
    assert!(tch::Cuda::is_available(), "no CUDA device");
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 60, 96, 1, 2);
    let cpu = features(&store, &dir.path().join("cpu"), "cpu", "fp32");
    let gpu = features(&store, &dir.path().join("gpu"), "cuda", "fp32");
    // TF32 may be on for cuDNN convolutions: allow its 10-bit mantissa.
    let d = rel_diff(&cpu, &gpu);
    assert!(d < 5e-3, "fp32 GPU vs CPU: relative difference {d}");
    for precision in ["bf16", "fp16"] {
        let reduced = features(&store, &dir.path().join(precision), "cuda", precision);
        let d = rel_diff(&gpu, &reduced);
        assert!(
            d > 0.0 && d < 5e-2,
            "{precision} vs fp32: relative difference {d}"
        );
    }
}

#[test]
#[ignore = "needs a CUDA device; run by scripts/gpu-check.sh"]
fn finetune_on_the_gpu_follows_the_cpu_and_trains_in_reduced_precision() {
    assert!(tch::Cuda::is_available(), "no CUDA device");
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 120, 96, 1, 3);
    let train = |name: &str, device: &str, precision: &str| -> Vec<serde_json::Value> {
        let out = dir.path().join(name);
        run_ok(&[
            "--quiet",
            "finetune",
            "--model",
            "scratch:resnet18-w16-gn",
            "--data",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--optimizer",
            "adamw",
            "--lr",
            "1e-3",
            "--augment",
            "none",
            "--device",
            device,
            "--precision",
            precision,
            "--seed",
            "4",
        ]);
        events(&log(&out), "step").into_iter().cloned().collect()
    };
    let loss = |steps: &[serde_json::Value]| -> Vec<f64> {
        steps.iter().map(|s| s["loss"].as_f64().unwrap()).collect()
    };
    let cpu = loss(&train("cpu", "cpu", "fp32"));
    let gpu = loss(&train("gpu", "cuda", "fp32"));
    assert!(
        (cpu[0] - gpu[0]).abs() < 1e-3 * cpu[0],
        "first loss {} vs {}",
        cpu[0],
        gpu[0]
    );
    for precision in ["bf16", "fp16"] {
        let steps = train(precision, "cuda", precision);
        let l = loss(&steps);
        assert!(l.iter().all(|x| x.is_finite()));
        let tail = l[l.len() - 3..].iter().sum::<f64>() / 3.0;
        assert!(tail < l[0], "{precision}: loss {} -> {tail}", l[0]);
        let scaled = steps.iter().all(|s| s["loss_scale"].as_f64().is_some());
        assert_eq!(
            scaled,
            precision == "fp16",
            "{precision}: loss_scale logged only at fp16"
        );
    }
}
