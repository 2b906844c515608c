//! `cxrlearn pretrain --method s2mts2` on phantom data with the tiny
//! LeakyReLU DenseNet: the JCL loss falls once the queue is full, pretext
//! accuracy clears chance, the embeddings do not collapse, λ ramps per epoch
//! and the JCL term is logged, the encoder loads into `features`, and
//! MedAug-only or malformed settings fail cleanly.

use crate::common;

use std::path::Path;

use common::{events, log, mean, phantom_store, run, run_ok as cxrlearn};
use serde_json::Value;

const BATCH: usize = 32;
const QUEUE: usize = 128;
const EPOCHS: usize = 8;

fn args<'a>(store: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let a = vec![
        "--quiet",
        "pretrain",
        "--method",
        "s2mts2",
        "--data",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backbone",
        "densenet-tiny",
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
        "--dim",
        "64",
        "--device",
        "cpu",
    ];
    common::with_flags(a, extra, &["--resume", "--reference-head"])
}

#[test]
fn s2mts2_learns_with_a_ramped_jcl_term() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 200, 96, 1, 0);
    let a = dir.path().join("a");
    cxrlearn(&args(&store, &a, &[]));
    let log_a = log(&a);
    let s = events(&log_a, "step");
    assert!(s.iter().all(|v| v["loss"].as_f64().unwrap().is_finite()));
    assert!(
        s.iter().all(|v| v["distinct_positives"] == 0),
        "S2MTS2's keys are views of the query image"
    );
    // λ_e = 2(e + 1)/E with e from 0, i.e. 2·epoch/E for the logged epoch.
    for v in &s {
        let epoch = v["epoch"].as_f64().unwrap();
        let lambda = v["lambda"].as_f64().unwrap();
        assert!((lambda - 2.0 * epoch / EPOCHS as f64).abs() < 1e-12, "{v}");
        let term = v["jcl_term"].as_f64().unwrap();
        assert!(term.is_finite() && term >= 0.0, "{v}");
        assert!(v["key_spread"].as_f64().unwrap() >= 0.0, "{v}");
    }
    // Judge the trend only once real keys have replaced the random queue.
    let post = &s[QUEUE / BATCH..];
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
    // Spread on the sphere: about 1/sqrt(64) = 0.125 per dimension; collapse -> 0.
    let std = mean(&post[post.len() - window..], "embedding_std");
    assert!(std > 0.04, "embedding std {std}");

    // The encoder is the tiny LeakyReLU DenseNet, a model like any other.
    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(a.join("encoder.json")).unwrap()).unwrap();
    assert_eq!(sidecar["architecture"], "densenet-tiny");
    assert_eq!(sidecar["method"], "s2mts2");
    let feats = dir.path().join("feats");
    let meta = common::features(&a.join("encoder.safetensors"), &store, &feats);
    assert_eq!(meta["dim"], 32);

    // Settings that do not belong to S2MTS2, or to its neighbours, fail
    // before anything is written.
    let bad = dir.path().join("bad");
    let moco_with_keys = {
        let mut x = args(&store, &bad, &["--keys", "3"]);
        x[3] = "moco-cxr";
        x
    };
    for (a, needle) in [
        (
            args(&store, &bad, &["--keys", "0"]),
            "at least one key view",
        ),
        (
            args(&store, &bad, &["--positive", "same-study"]),
            "views of the query image",
        ),
        (moco_with_keys, "are S2MTS2's"),
    ] {
        let o = run(&a);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{err}");
        assert!(!bad.exists(), "left {}", bad.display());
    }
}
