//! `cxrlearn pretrain` on phantom data: MoCo-CXR's loss falls once the queue
//! is full, pretext accuracy clears chance, the embeddings do not collapse,
//! the encoder loads into `features`, a killed run resumes bit for bit, and
//! MedAug pairs images of one patient.

use crate::common;

use std::path::Path;

use common::{events, kill_after_checkpoint, log, mean, phantom_store, run, run_ok as cxrlearn};
use serde_json::Value;

const BATCH: usize = 32;
const QUEUE: usize = 128;

fn args<'a>(method: &'a str, store: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let a = vec![
        "--quiet",
        "pretrain",
        "--method",
        method,
        "--data",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backbone",
        "resnet18-w16",
        "--epochs",
        "8",
        "--batch-size",
        "32",
        "--queue",
        "128",
        "--lr",
        "1e-3",
        "--key-momentum",
        "0.99",
        "--device",
        "cpu",
    ];
    common::with_flags(a, extra, &["--resume", "--no-decay-norm-bias"])
}

#[test]
fn moco_learns_without_collapse_and_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 200, 96, 1, 0);
    let a = dir.path().join("a");
    cxrlearn(&args("moco-cxr", &store, &a, &[]));
    let log_a = log(&a);
    let s = events(&log_a, "step");
    assert!(s.iter().all(|v| v["loss"].as_f64().unwrap().is_finite()));
    assert!(
        s.iter().all(|v| v["distinct_positives"] == 0),
        "MoCo-CXR pairs two views of one image"
    );
    // Judge the trend only once real keys have replaced the random queue.
    let filled = QUEUE / BATCH;
    let post = &s[filled..];
    let window = post.len() / 4;
    let (early, late) = (
        mean(&post[..window], "loss"),
        mean(&post[post.len() - window..], "loss"),
    );
    assert!(
        late < 0.95 * early,
        "loss after the queue filled: {early} -> {late}"
    );
    assert!(late < ((QUEUE + 1) as f64).ln() + 0.5);
    let chance = 1.0 / (QUEUE + 1) as f64;
    let acc = mean(&post[post.len() - window..], "accuracy");
    assert!(
        acc > 5.0 * chance,
        "pretext accuracy {acc} vs chance {chance}"
    );
    // Spread on the sphere: about 1/sqrt(128) = 0.088 per dimension; collapse -> 0.
    let std = mean(&post[post.len() - window..], "embedding_std");
    assert!(std > 0.03, "embedding std {std}");

    // The encoder is a model like any other.
    let feats = dir.path().join("feats");
    let meta = common::features(&a.join("encoder.safetensors"), &store, &feats);
    assert_eq!(meta["dim"], 128);

    // Kill a second run after a mid-epoch checkpoint, resume, compare.
    let b = dir.path().join("b");
    kill_after_checkpoint(
        &args("moco-cxr", &store, &b, &["--checkpoint-every", "4"]),
        &b,
        3,
    );
    cxrlearn(&args(
        "moco-cxr",
        &store,
        &b,
        &["--checkpoint-every", "4", "--resume"],
    ));
    assert!(log(&b).iter().any(|v| v["event"] == "resume"));
    assert!(
        std::fs::read(a.join("encoder.safetensors")).unwrap()
            == std::fs::read(b.join("encoder.safetensors")).unwrap(),
        "the resumed encoder differs from the uninterrupted one"
    );
}

#[test]
fn medaug_pairs_within_patients_and_bad_input_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 200, 96, 1, 0);
    let out = dir.path().join("medaug");
    cxrlearn(&args(
        "medaug",
        &store,
        &out,
        &[
            "--positive",
            "same-patient",
            "--epochs",
            "2",
            "--grad-clip-norm",
            "0.5",
        ],
    ));
    assert!(out.join("encoder.safetensors").exists());
    let l = log(&out);
    let s = events(&l, "step");
    assert!(s.len() >= 2);
    // Phantom patients have several studies: some positives are other images.
    let distinct: u64 = s
        .iter()
        .map(|v| v["distinct_positives"].as_u64().unwrap())
        .sum();
    assert!(distinct > 0, "MedAug never paired two different images");
    // Clipping logs the norm before clipping at every step.
    for v in &s {
        let norm = v["grad_norm"].as_f64().expect("grad_norm logged");
        assert!(norm.is_finite() && norm > 0.0, "{v}");
    }

    // A queue that is not a multiple of the batch, an unknown backbone.
    for (extra, needle) in [
        (vec!["--queue", "100"], "multiple of the batch size"),
        (
            vec!["--backbone", "resnet7"],
            "unknown architecture 'resnet7'",
        ),
        (vec!["--grad-clip-value", "0"], "positive and finite"),
    ] {
        let bad = dir.path().join("bad");
        let a = args("moco-cxr", &store, &bad, &extra);
        let o = run(&a);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(!bad.exists(), "left {}", bad.display());
    }
}

#[test]
fn sgd_in_lookahead_resumes_bit_for_bit() {
    // REFERS' optimiser path: SGD with momentum in Lookahead, no decay on
    // norms and biases. A checkpoint every 3 steps falls inside Lookahead's
    // 5-step cycles, so the slow weights must travel in the checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 200, 96, 1, 5);
    let extra = [
        "--optimizer",
        "sgd",
        "--lr",
        "0.03",
        "--lookahead",
        "5,0.5",
        "--no-decay-norm-bias",
        "--epochs",
        "4",
        "--checkpoint-every",
        "3",
    ];
    let a = dir.path().join("a");
    cxrlearn(&args("moco-cxr", &store, &a, &extra));
    let s = events(&log(&a), "step").len();
    assert!(s > 5, "{s} steps: Lookahead never synchronised");
    let b = dir.path().join("b");
    kill_after_checkpoint(&args("moco-cxr", &store, &b, &extra), &b, 2);
    let mut resume = extra.to_vec();
    resume.push("--resume");
    cxrlearn(&args("moco-cxr", &store, &b, &resume));
    assert!(log(&b).iter().any(|v| v["event"] == "resume"));
    assert!(
        std::fs::read(a.join("encoder.safetensors")).unwrap()
            == std::fs::read(b.join("encoder.safetensors")).unwrap(),
        "the resumed encoder differs from the uninterrupted one"
    );
    let config = std::fs::read_to_string(a.join("config.toml")).unwrap();
    // The resolved settings record the optimiser path.
    assert!(
        config.contains("lookahead") && config.contains("alpha = 0.5"),
        "{config}"
    );
}

/// Validation on a held-out share of whole patients: its passes never move
/// training, each verdict follows the losses (best so far, a plateau cut on
/// every evaluation without a better loss at patience 0, early stopping
/// after 3), the cuts reach the optimiser, `encoder.json` names the best
/// evaluation, and a killed run resumes to the same decisions and encoder.
#[test]
fn validation_steers_the_rate_the_export_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 200, 96, 1, 0);
    let plateau = [
        "--val-fraction",
        "0.2",
        "--schedule",
        "plateau",
        "--plateau-patience",
        "0",
        "--early-stop",
        "3",
        "--epochs",
        "10",
    ];
    let a = dir.path().join("a");
    cxrlearn(&args("moco-cxr", &store, &a, &plateau));
    let la = log(&a);
    let split = events(&la, "validation_split")[0];
    assert!(
        split["validation_rows"].as_u64().unwrap() >= BATCH as u64,
        "{split}"
    );
    assert!(
        split["validation_patients"].as_u64().unwrap() >= 10,
        "{split}"
    );
    let vals = events(&la, "validation");
    let steps = events(&la, "step");
    assert!(vals.len() >= 3, "{} evaluations", vals.len());
    let (mut best, mut since_best, mut lr) = (f64::INFINITY, 0, 1e-3);
    for v in &vals {
        let loss = v["loss"].as_f64().unwrap();
        assert!(loss.is_finite(), "{v}");
        let improved = loss < best;
        assert_eq!(v["improved"], improved, "{v}");
        // Patience 0: an evaluation that is not better cuts; a better one
        // cuts only when it is better by less than PyTorch's relative 1e-4.
        if v["lr_cut"] == true {
            assert!(!improved || loss > best * (1.0 - 2e-4), "{v}");
            lr *= 0.5;
        } else {
            assert!(improved, "{v}");
        }
        if improved {
            (best, since_best) = (loss, 0);
        } else {
            since_best += 1;
        }
        assert_eq!(v["best_loss"].as_f64().unwrap(), best, "{v}");
        assert_eq!(v["next_lr"].as_f64().unwrap(), lr, "{v}");
        assert_eq!(v["early_stop"], since_best >= 3, "{v}");
        // Steps after this evaluation train at its rate.
        let step = v["step"].as_u64().unwrap();
        if let Some(next) = steps
            .iter()
            .find(|s| s["step"].as_u64().unwrap() == step + 1)
        {
            assert_eq!(next["lr"].as_f64().unwrap(), lr, "{next}");
        }
    }
    assert!(
        vals.iter().any(|v| v["improved"] == false),
        "no cut exercised"
    );
    let last = vals.last().unwrap();
    if last["early_stop"] == true {
        assert_eq!(
            steps.last().unwrap()["step"],
            last["step"],
            "steps after the stop"
        );
    } else {
        assert_eq!(vals.len(), 10);
    }
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(a.join("encoder.json")).unwrap()).unwrap();
    assert_eq!(sidecar["validation"]["loss"].as_f64().unwrap(), best);
    assert_eq!(sidecar["validation"]["step"], last["best_step"]);

    // The same run validating only at its end trains identically up to A's
    // first cut: validating changes nothing.
    let b = dir.path().join("b");
    cxrlearn(&args(
        "moco-cxr",
        &store,
        &b,
        &[&plateau[..], &["--val-every", "100000"]].concat(),
    ));
    let lb = log(&b);
    let first_cut = vals
        .iter()
        .find(|v| v["lr_cut"] == true)
        .map_or(u64::MAX, |v| v["step"].as_u64().unwrap());
    let same: Vec<_> = steps
        .iter()
        .take_while(|s| s["step"].as_u64().unwrap() <= first_cut)
        .collect();
    assert!(
        same.len() >= 2 * 4,
        "{} steps before the first cut",
        same.len()
    );
    for (sa, sb) in same.iter().zip(events(&lb, "step")) {
        assert_eq!(sa["loss"], sb["loss"], "step {}", sa["step"]);
    }
    assert_eq!(events(&lb, "validation").len(), 1);

    // Killed mid-run and resumed: the same evaluations and encoder.
    let c = dir.path().join("c");
    let with_checkpoints = [&plateau[..], &["--checkpoint-every", "3"]].concat();
    kill_after_checkpoint(&args("moco-cxr", &store, &c, &with_checkpoints), &c, 3);
    cxrlearn(&args(
        "moco-cxr",
        &store,
        &c,
        &[&with_checkpoints[..], &["--resume"]].concat(),
    ));
    let lc = log(&c);
    let vc = events(&lc, "validation");
    let key = |v: &&Value| (v["step"].clone(), v["loss"].clone(), v["next_lr"].clone());
    let tail: Vec<_> = vals.iter().rev().take(3).map(key).collect();
    let tail_c: Vec<_> = vc.iter().rev().take(3).map(key).collect();
    assert_eq!(tail, tail_c);
    assert!(
        std::fs::read(a.join("encoder.safetensors")).unwrap()
            == std::fs::read(c.join("encoder.safetensors")).unwrap(),
        "the resumed run exported another encoder"
    );

    // The plateau schedule without validation rows is refused up front.
    let d = dir.path().join("d");
    let out = run(&args(
        "moco-cxr",
        &store,
        &d,
        &["--schedule", "plateau", "--val-fraction", "0.01"],
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fewer than one batch"), "{err}");
}
