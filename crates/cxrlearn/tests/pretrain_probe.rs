//! Issue 7's criterion per method: each of the seven methods pretrains on a
//! 1,000-patient phantom (1,134 training images at 64 px, 12 epochs, the
//! recipes of `scripts/ssl-check.sh`), and a linear probe on its frozen
//! features beats the same architecture at random weights, paired on the
//! same 378 test images: some finding's bootstrap 95% CI of the AUC delta
//! lies above zero. The macro delta is printed too.
//!
//! The interval is per finding and uncorrected for the nine findings (a
//! method with no effect at all would pass by luck with a probability of up
//! to about 1 - 0.975^9 = 0.2); `ssl-check.sh` at 1,500 patients reports the
//! macro deltas, and the closing notes of issue 7 record both.
//!
//! The methods run one after another in a single test: libtorch's threads
//! in two pretraining processes at once on two cores slow both tenfold.

use crate::common;

use std::path::Path;

use common::run_ok as cxrlearn;
use cxr_learn::ssl::method::METHODS;
use serde_json::Value;

/// Features and a standardised probe (C chosen on the validation split);
/// the test predictions' path.
fn probe(store: &Path, model: &str, dir: &Path) -> String {
    let feats = dir.with_extension("features");
    common::features_of(model, store, &feats);
    cxrlearn(&[
        "--quiet",
        "probe",
        "--features",
        feats.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--standardize",
        "--c-grid",
        "0.001,0.01,0.1,1",
        "--data",
        store.to_str().unwrap(),
    ]);
    dir.join("predictions-test.csv")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_method_beats_random_weights_on_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = common::phantom_store(d, 1000, 96, 1, 9);
    let random_cnn = probe(&store, "scratch:resnet18-w16-gn", &d.join("random-cnn"));
    let random_vit = probe(&store, "scratch:vit-tiny", &d.join("random-vit"));
    // Each method's phantom-scale recipe, the one the demo and
    // scripts/ssl-check.sh train with; the CNN methods are compared with the
    // same CNN at random weights, CLIP's and REFERS' ViTs with the tiny ViT.
    let methods: Vec<(&str, Vec<String>, &str)> = METHODS
        .iter()
        .map(|m| {
            let recipe = m.recipe_args();
            let cnn = recipe.iter().any(|w| w == "resnet18-w16-gn");
            (
                m.name,
                recipe,
                if cnn { &random_cnn } else { &random_vit }.as_str(),
            )
        })
        .collect();
    let mut failed = Vec::new();
    for (method, recipe, baseline) in methods {
        let run = d.join(method);
        let started = std::time::Instant::now();
        let mut args = vec![
            "--quiet",
            "pretrain",
            "--method",
            method,
            "--data",
            store.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--device",
            "cpu",
        ];
        // REFERS' three views and decoder take about as long as the six
        // others together: half the epochs keep the test's time.
        args.extend(["--epochs", if method == "refers" { "6" } else { "12" }]);
        args.extend(recipe.iter().map(String::as_str));
        cxrlearn(&args);
        let seconds = started.elapsed().as_secs();
        let predictions = probe(
            &store,
            run.join("encoder.safetensors").to_str().unwrap(),
            &d.join(format!("probe-{method}")),
        );
        let eval = d.join(format!("eval-{method}"));
        cxrlearn(&[
            "--quiet",
            "evaluate",
            "--predictions",
            &predictions,
            "--baseline",
            baseline,
            "--out",
            eval.to_str().unwrap(),
        ]);
        let e: Value =
            serde_json::from_slice(&std::fs::read(eval.join("evaluation.json")).unwrap()).unwrap();
        let labels = e["labels"].as_array().unwrap();
        let lower = |l: &Value| l["delta_ci"][0].as_f64().unwrap();
        let best = labels
            .iter()
            .max_by(|a, b| lower(a).total_cmp(&lower(b)))
            .unwrap();
        let m = &e["macro"];
        eprintln!(
            "{method} ({seconds} s pretraining): macro delta {:+.4} [{:+.4}, {:+.4}]; best finding {} {:+.3} [{:+.3}, {:+.3}]",
            m["delta"].as_f64().unwrap(),
            m["delta_ci"][0].as_f64().unwrap(),
            m["delta_ci"][1].as_f64().unwrap(),
            best["label"].as_str().unwrap(),
            best["delta"].as_f64().unwrap(),
            lower(best),
            best["delta_ci"][1].as_f64().unwrap(),
        );
        if lower(best) <= 0.0 {
            failed.push(method);
        }
    }
    assert!(
        failed.is_empty(),
        "no finding's delta CI above zero for {failed:?}"
    );
}
