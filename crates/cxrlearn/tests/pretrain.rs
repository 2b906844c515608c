//! `cxrlearn pretrain` on phantom data: MoCo-CXR's loss falls once the queue
//! is full, pretext accuracy clears chance, the embeddings do not collapse,
//! the encoder loads into `features`, a killed run resumes bit for bit, and
//! MedAug pairs images of one patient.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run, run_ok as cxrlearn};
use serde_json::Value;

const BATCH: usize = 32;
const QUEUE: usize = 128;

fn make_store(dir: &Path) -> PathBuf {
    let raw = dir.join("raw");
    let store = dir.join("store");
    cxrlearn(&[
        "--quiet",
        "phantom",
        "--out",
        raw.to_str().unwrap(),
        "--patients",
        "200",
        "--prevalence",
        "balanced",
        "--size",
        "96",
        "--sites",
        "1",
    ]);
    cxrlearn(&[
        "--quiet",
        "convert",
        "--preset",
        "phantom",
        "--root",
        raw.to_str().unwrap(),
        "--size",
        "64",
        "--out",
        store.to_str().unwrap(),
    ]);
    store
}

fn args<'a>(method: &'a str, store: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
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
    // clap refuses repeated flags: an extra flag replaces the default's value.
    let mut rest = extra.iter();
    while let Some(&flag) = rest.next() {
        let takes_value = !matches!(flag, "--resume");
        match a.iter().position(|x| *x == flag) {
            Some(i) if takes_value => a[i + 1] = rest.next().copied().unwrap(),
            _ => {
                a.push(flag);
                if takes_value {
                    a.push(rest.next().copied().unwrap());
                }
            }
        }
    }
    a
}

fn log(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn steps(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|v| v["event"] == "step").collect()
}

fn mean(v: &[&Value], key: &str) -> f64 {
    v.iter().map(|s| s[key].as_f64().unwrap()).sum::<f64>() / v.len() as f64
}

#[test]
fn moco_learns_without_collapse_and_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let store = make_store(dir.path());
    let a = dir.path().join("a");
    cxrlearn(&args("moco-cxr", &store, &a, &[]));
    let log_a = log(&a);
    let s = steps(&log_a);
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
    cxrlearn(&[
        "--quiet",
        "features",
        "--model",
        a.join("encoder.safetensors").to_str().unwrap(),
        "--data",
        store.to_str().unwrap(),
        "--out",
        feats.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let meta: Value =
        serde_json::from_slice(&std::fs::read(feats.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["dim"], 128);

    // Kill a second run after a mid-epoch checkpoint, resume, compare.
    let b = dir.path().join("b");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cxrlearn"))
        .args(args("moco-cxr", &store, &b, &["--checkpoint-every", "4"]))
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let l = log(&b);
        if l.iter()
            .any(|v| v["event"] == "checkpoint" && v["epoch"].as_u64() >= Some(3))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "run b finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "run b made no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
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
    let store = make_store(dir.path());
    let out = dir.path().join("medaug");
    cxrlearn(&args(
        "medaug",
        &store,
        &out,
        &["--positive", "same-patient", "--epochs", "2"],
    ));
    assert!(out.join("encoder.safetensors").exists());
    let l = log(&out);
    let s = steps(&l);
    assert!(s.len() >= 2);
    // Phantom patients have several studies: some positives are other images.
    let distinct: u64 = s
        .iter()
        .map(|v| v["distinct_positives"].as_u64().unwrap())
        .sum();
    assert!(distinct > 0, "MedAug never paired two different images");

    // A queue that is not a multiple of the batch, an unknown backbone.
    for (extra, needle) in [
        (vec!["--queue", "100"], "multiple of the batch size"),
        (
            vec!["--backbone", "resnet7"],
            "unknown architecture 'resnet7'",
        ),
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
