//! `cxrlearn pretrain --method gloria` on phantom (image, impression
//! sentence) pairs: local + global InfoNCE fall, image->sentence accuracy
//! clears chance, the embeddings do not collapse, the ResNet loads into
//! `features`, the single-softmax variant trains, the attention check on
//! the phantom's lesion masks adds up, and a non-ResNet backbone, a store
//! without reports or a mask CSV without its columns fails cleanly.

use crate::common;

use std::path::Path;

use common::{events, log, mean, phantom_store, run, run_ok as cxrlearn};
use serde_json::Value;

const BATCH: usize = 32;

/// The tiny recipe of docs/ssl-methods.md (Phantom-scale configurations) (BERT 2 layers, width 128, 2
/// heads, FFN 512, context 48; γ 4, 5, 10; Adam β1 0.5) on the narrow
/// ResNet (its layer3 is 4x4 = 16 regions at 64 px); the images are used as
/// stored so the short run learns.
fn args<'a>(store: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let a = vec![
        "--quiet",
        "pretrain",
        "--method",
        "gloria",
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
        "--lr",
        "1e-3",
        "--no-augment",
        "--device",
        "cpu",
    ];
    common::with_flags(a, extra, &["--resume", "--no-augment", "--single-softmax"])
}

#[test]
fn gloria_learns_and_exports_the_resnet() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 250, 96, 1, 0);
    let a = dir.path().join("a");
    // The paper's schedule (the default): plateau on a held-out share,
    // validated each epoch, early stopping after 10 evaluations.
    let masks = dir.path().join("raw/ground_truth.csv");
    cxrlearn(&args(
        &store,
        &a,
        &[
            "--val-fraction",
            "0.15",
            "--lesion-masks",
            masks.to_str().unwrap(),
        ],
    ));
    let l = log(&a);
    let vals = events(&l, "validation");
    assert_eq!(vals.len(), 8, "one evaluation per epoch");
    for v in &vals {
        assert!(v["loss"].as_f64().unwrap().is_finite(), "{v}");
    }
    let text = events(&l, "text")[0];
    assert_eq!(text["skipped_without_report"], 0, "{text}");
    assert_eq!(text["truncated_sentences"], 0, "{text}");
    // A 2-layer BERT has 3 hidden states to sum.
    assert_eq!(text["summed_hidden_states"], 3, "{text}");
    let s = events(&l, "step");
    assert!(s.iter().all(|v| v["loss"].as_f64().unwrap().is_finite()));
    assert!(s.iter().all(|v| v["regions"] == 16));
    // Four InfoNCE terms, each about ln B or above at the start.
    let first = s[0]["loss"].as_f64().unwrap();
    assert!(
        first > 0.9 * 4.0 * (BATCH as f64).ln(),
        "first loss {first}"
    );
    let q = s.len() / 4;
    for key in ["loss", "loss_local", "loss_global"] {
        let (early, late) = (mean(&s[..q], key), mean(&s[s.len() - q..], key));
        eprintln!("{key} {early:.3} -> {late:.3} over {} steps", s.len());
        if key == "loss" {
            assert!(late < 0.95 * early, "{key} {early} -> {late}");
        }
    }
    let chance = 1.0 / BATCH as f64;
    for key in ["accuracy", "local_accuracy"] {
        let acc = mean(&s[s.len() - q..], key);
        eprintln!("{key} {acc:.3} (chance {chance:.3})");
    }
    // About 2x chance after 30 steps at this seed (duplicate normal
    // impressions cap it well below 1).
    let acc = mean(&s[s.len() - q..], "accuracy");
    assert!(acc > 1.6 * chance, "accuracy {acc} vs chance {chance}");
    // Spread on the sphere: about 1/sqrt(128) = 0.088 per dimension.
    let std = mean(&s[s.len() - q..], "embedding_std");
    assert!(std > 0.02, "embedding std {std}");

    // The attention check: every lesion word of the validation split's
    // impressions, scored on the 4x4 region grid.
    let check: Value =
        serde_json::from_slice(&std::fs::read(a.join("localisation.json")).unwrap()).unwrap();
    assert_eq!(events(&l, "localisation")[0], &check);
    assert_eq!(check["grid"], serde_json::json!([4, 4]));
    assert_eq!(check["step"], s.last().unwrap()["step"]);
    let (words, hits) = (
        check["words"].as_u64().unwrap() as f64,
        check["hits"].as_f64().unwrap(),
    );
    assert!(words >= 10.0 && hits <= words, "{check}");
    let per_word = check["per_word"].as_object().unwrap();
    let sum = |k: &str| {
        per_word
            .values()
            .map(|v| v[k].as_f64().unwrap())
            .sum::<f64>()
    };
    assert_eq!(sum("words"), words, "{check}");
    assert!((sum("hits") - hits).abs() < 1e-9, "{check}");
    assert!(per_word.contains_key("consolidation") || per_word.contains_key("pneumonia"));
    let (hit, chance) = (
        check["hit_rate"].as_f64().unwrap(),
        check["chance"].as_f64().unwrap(),
    );
    assert!((hit - hits / words).abs() < 1e-12, "{check}");
    // Where the words look: one (shared on ties) most-attended region each.
    let top = check["top_regions"].as_array().unwrap();
    assert_eq!(top.len(), 16);
    let looked: f64 = top.iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((looked - words).abs() < 1e-9, "{check}");
    // A lesion covers a few of the 16 regions.
    assert!(chance > 1.0 / 16.0 && chance < 0.6, "{check}");
    assert!((check["ratio"].as_f64().unwrap() - hit / chance).abs() < 1e-9);
    eprintln!("attention check at test scale: {check}");

    let feats = dir.path().join("feats");
    let meta = common::features(&a.join("encoder.safetensors"), &store, &feats);
    assert_eq!(meta["dim"], 128);
}

#[test]
fn gloria_variants_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = phantom_store(d, 60, 64, 1, 1);
    // The paper's single softmax trains too.
    let single = d.join("single");
    cxrlearn(&args(
        &store,
        &single,
        &[
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--single-softmax",
            "--schedule",
            "cosine",
        ],
    ));
    let l = log(&single);
    assert!(
        events(&l, "step")
            .iter()
            .all(|v| v["loss"].as_f64().unwrap().is_finite())
    );
    // GLoRIA taps a ResNet's layer3: a DenseNet is refused by name.
    let bad = d.join("bad");
    let o = run(&args(&store, &bad, &["--backbone", "densenet121"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("layer3") && err.contains("DenseNet"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!bad.exists(), "left {}", bad.display());

    // A mask CSV without its columns: refused before training, by name.
    let wrong = d.join("raw/labels.csv");
    let o = run(&args(
        &store,
        &bad,
        &["--lesion-masks", wrong.to_str().unwrap()],
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("'lesion_mask'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!bad.exists(), "left {}", bad.display());
    // Only GLoRIA has word-region attention to check.
    let o = run(&[
        "--quiet",
        "pretrain",
        "--method",
        "convirt",
        "--data",
        store.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--lesion-masks",
        wrong.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--lesion-masks"),
        "{err}"
    );

    let bare = common::store_without_reports(d, "bare");
    let bad = d.join("bad");
    let o = run(&args(&bare, &bad, &["--batch-size", "4"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("'report'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!bad.exists(), "left {}", bad.display());
}
