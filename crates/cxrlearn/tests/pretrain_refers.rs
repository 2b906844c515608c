//! `cxrlearn pretrain --method refers` on phantom studies (docs/ssl-methods.md,
//! Checks that a method learns): captioning starts near ln V, the total loss falls, teacher-forced
//! caption accuracy clears the majority-token frequency, the fusion gates
//! stay inside (0.05, 0.95) and vary across samples, about half the samples
//! are flipped, the ViT loads into `features`, and a store without study
//! ids or a CNN backbone fails cleanly.
//!
//! Image->report retrieval is printed, not asserted: at this scale it stays
//! near 1/B (0.064 against 0.0625 after 162 steps on 400 patients).

use crate::common;

use std::path::Path;

use common::{events, log, mean, phantom_store, run, run_ok as cxrlearn};
use serde_json::Value;

const BATCH: usize = 16;

/// The tiny REFERS of docs/ssl-methods.md (Phantom-scale configurations) (ViT patch 8 width 96 depth 4 on 64 px, decoder
/// width 128, BERT 2 layers of 128, captions of 48 tokens, λ 0.75, τ 0.1),
/// AdamW at a constant 1e-3 so the 60 steps of the test move it.
fn pretrain_args<'a>(store: &'a Path, out: &'a Path, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "--quiet",
        "pretrain",
        "--method",
        "refers",
        "--backbone",
        "vit-tiny",
        "--data",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        epochs,
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--schedule",
        "constant",
        "--weight-decay",
        "0.01",
        "--warmup-steps",
        "5",
        "--device",
        "cpu",
    ]
}

#[test]
fn refers_learns_and_exports_its_vit() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 160, 64, 1, 0);
    let out = dir.path().join("run");
    cxrlearn(&pretrain_args(&store, &out, "6"));
    let l = log(&out);
    let text = events(&l, "text")[0];
    eprintln!("{text}");
    assert_eq!(text["skipped_without_report"], 0, "{text}");
    assert!(text["pairs"].as_u64().unwrap() >= 150, "{text}");
    assert!(text["truncated_captions"].is_u64(), "{text}");
    let s = events(&l, "step");
    for v in &s {
        for key in ["loss", "loss_caption", "loss_contrastive"] {
            assert!(v[key].as_f64().unwrap().is_finite(), "{v}");
        }
        // Gates inside (0.05, 0.95) and not constant across samples.
        let mean = v["gate_mean"].as_f64().unwrap();
        assert!(mean > 0.05 && mean < 0.95, "{v}");
        assert!(v["gate_view_min"].as_f64().unwrap() > 0.05, "{v}");
        assert!(v["gate_view_max"].as_f64().unwrap() < 0.95, "{v}");
        assert!(v["gate_sample_std"].as_f64().unwrap() > 1e-4, "{v}");
    }
    // Captioning starts near ln V (small tied embeddings: near-uniform).
    let ln_v = (text["caption_vocab_size"].as_f64().unwrap()).ln();
    let first = s[0]["loss_caption"].as_f64().unwrap();
    assert!((first - ln_v).abs() < 0.1 * ln_v, "{first} vs ln V {ln_v}");
    let q = s.len() / 4;
    let (early, late) = (mean(&s[..q], "loss"), mean(&s[s.len() - q..], "loss"));
    eprintln!("loss {early:.3} -> {late:.3} over {} steps", s.len());
    assert!(late < 0.95 * early, "loss {early} -> {late}");
    let tail = &s[s.len() - q..];
    let (acc, majority) = (
        mean(tail, "caption_accuracy"),
        mean(tail, "majority_token_frequency"),
    );
    let retrieval = mean(tail, "accuracy");
    let chance = 1.0 / BATCH as f64;
    eprintln!("caption accuracy {acc:.3} (majority token {majority:.3})");
    eprintln!("image->report accuracy {retrieval:.3} (chance {chance:.3})");
    assert!(
        acc > majority + 0.05,
        "caption accuracy {acc} vs {majority}"
    );
    assert!((0.0..=1.0).contains(&retrieval));
    let flipped: f64 = s.iter().map(|v| v["flipped"].as_f64().unwrap()).sum();
    let share = flipped / (s.len() * BATCH) as f64;
    assert!((share - 0.5).abs() < 0.1, "flipped share {share}");

    let sidecar: Value =
        serde_json::from_slice(&std::fs::read(out.join("encoder.json")).unwrap()).unwrap();
    assert_eq!(sidecar["architecture"], "vit-tiny", "{sidecar}");
    assert_eq!(sidecar["method"], "refers", "{sidecar}");
    let feats = dir.path().join("feats");
    let meta = common::features(&out.join("encoder.safetensors"), &store, &feats);
    assert_eq!(meta["dim"], 96);

    // Without study ids there are no study views to draw.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    for entry in std::fs::read_dir(&store).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap();
        if p.is_file() {
            std::fs::copy(&p, bare.join(name)).unwrap();
        }
    }
    let manifest = bare.join("manifest.csv");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    assert!(header.contains("study_id"), "{header}");
    let renamed = header.replace("study_id", "study_ref");
    std::fs::write(&manifest, format!("{renamed}\n{body}")).unwrap();
    let bad = dir.path().join("bad");
    let o = run(&pretrain_args(&bare, &bad, "1"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("study_id"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn refers_refuses_a_cnn_and_other_positives() {
    let dir = tempfile::tempdir().unwrap();
    let store = phantom_store(dir.path(), 20, 64, 1, 1);
    let out = dir.path().join("run");
    let mut args = pretrain_args(&store, &out, "1");
    let i = args.iter().position(|x| *x == "vit-tiny").unwrap();
    args[i] = "resnet18-w16";
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("ViT"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let mut args = pretrain_args(&store, &out, "1");
    args.extend(["--positive", "same-patient"]);
    let o = run(&args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("study"));
}
