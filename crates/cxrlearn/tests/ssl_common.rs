//! The checks every self-supervised method passes, run over the method
//! list itself (scikit-learn's common estimator checks, for pretraining).
//! With its phantom-scale recipe on a small phantom:
//!
//! - the loss stays finite, and over the last quarter of the steps it lies
//!   below the same run's at a learning rate of 0 (same batches, views and
//!   queue: what the loss does without learning);
//! - a run killed after a mid-run checkpoint resumes to the same encoder
//!   bit for bit (the objective's whole state round-trips through
//!   `last.safetensors`);
//! - bad input (a batch of one; for the image-text methods, a store
//!   without reports) fails with one `error:` line that names it, leaving
//!   no run directory.
//!
//! A method added to `cxr_learn::ssl::method::METHODS` is checked here
//! without a line of test code. One test, methods in turn: two libtorch
//! processes at once on two cores slow each other about tenfold.

use crate::common;

use std::path::Path;

use common::{events, kill_after_checkpoint, log, mean, phantom_store, run, run_ok};
use cxr_learn::ssl::method::{METHODS, Method};

/// Smaller batches than the recipes' 32, for more steps on a small store.
const BATCH: &str = "16";
/// Two batches: the momentum-contrast methods' queue holds real keys from
/// the third step on.
const QUEUE: &str = "32";

/// `pretrain` of `m` writing into `out`: its recipe with `set` replacing or
/// adding settings (flag without dashes, value; "" for a switch).
fn args(m: &Method, store: &Path, out: &Path, set: &[(&str, &str)]) -> Vec<String> {
    let mut a: Vec<String> = ["--quiet", "pretrain", "--method", m.name, "--device", "cpu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--data".into(), store.display().to_string()]);
    a.extend(["--out".into(), out.display().to_string()]);
    let mut settings: Vec<(&str, &str)> = vec![("epochs", "8"), ("batch-size", BATCH)];
    if m.reads("queue") {
        settings.push(("queue", QUEUE));
    }
    for &(k, v) in set {
        settings.retain(|(s, _)| *s != k);
        settings.push((k, v));
    }
    let recipe = m
        .recipe_settings()
        .filter(|(k, _)| !settings.iter().any(|(s, _)| s == k));
    let owned = |&(k, v): &(&str, &str)| (k.to_owned(), v.to_owned());
    for (k, v) in recipe.map(owned).chain(settings.iter().map(owned)) {
        a.push(format!("--{k}"));
        if !v.is_empty() {
            a.push(v);
        }
    }
    a
}

fn refs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

/// Mean loss over the last quarter of a run's steps, after checking every
/// step's loss is finite.
fn late_loss(m: &Method, run: &Path) -> f64 {
    let l = log(run);
    let steps = events(&l, "step");
    assert!(steps.len() >= 8, "{}: {} steps", m.name, steps.len());
    assert!(
        steps
            .iter()
            .all(|s| s["loss"].as_f64().unwrap().is_finite()),
        "{}: a loss is not finite",
        m.name
    );
    mean(&steps[steps.len() - steps.len() / 4..], "loss")
}

#[test]
fn every_method_learns_resumes_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = phantom_store(d, 160, 96, 1, 3);
    let no_reports = common::store_without_reports(d, "no-reports");
    for m in METHODS {
        // Learns: lower loss than the same run without learning.
        let a = d.join(format!("{}-a", m.name));
        run_ok(&refs(&args(m, &store, &a, &[])));
        let frozen = d.join(format!("{}-frozen", m.name));
        run_ok(&refs(&args(m, &store, &frozen, &[("lr", "0")])));
        let (trained, still) = (late_loss(m, &a), late_loss(m, &frozen));
        eprintln!("{}: late loss {trained:.4}, at lr 0 {still:.4}", m.name);
        assert!(
            trained < still,
            "{}: late loss {trained} trained, {still} at lr 0",
            m.name
        );

        // Resumes bit for bit after a kill past a mid-run checkpoint.
        let b = d.join(format!("{}-b", m.name));
        let every = ("checkpoint-every", "2");
        kill_after_checkpoint(&refs(&args(m, &store, &b, &[every])), &b, 2);
        run_ok(&refs(&args(m, &store, &b, &[every, ("resume", "")])));
        assert_eq!(events(&log(&b), "resume").len(), 1, "{}", m.name);
        assert!(
            std::fs::read(a.join("encoder.safetensors")).unwrap()
                == std::fs::read(b.join("encoder.safetensors")).unwrap(),
            "{}: the resumed encoder differs from the uninterrupted one",
            m.name
        );

        // Bad input: one error line naming it, no run directory left.
        let bad = d.join(format!("{}-bad", m.name));
        let mut cases = vec![(
            args(m, &store, &bad, &[("batch-size", "1")]),
            "at least one batch",
        )];
        if m.image_text {
            cases.push((args(m, &no_reports, &bad, &[]), "report"));
        }
        for (a, needle) in cases {
            let o = run(&refs(&a));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{}: {a:?} succeeded", m.name);
            assert!(
                err.starts_with("error: ") && err.contains(needle),
                "{}: {err}",
                m.name
            );
            assert!(!bad.exists(), "{}: left {}", m.name, bad.display());
        }
    }
}
