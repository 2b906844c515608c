//! AUC against scikit-learn's `roc_auc_score`, reference values computed once by
//! `scripts/fixtures/sklearn_auc.py` and committed.

use cxr_stats::{BootstrapConfig, Predictions, SortedScores, evaluate, roc_auc, roc_auc_weighted};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let text = include_str!("fixtures/sklearn_auc.json");
    let v: Value = serde_json::from_str(text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

struct Case {
    name: String,
    targets: Vec<Option<bool>>,
    scores: Vec<f64>,
    weights: Option<Vec<f64>>,
    auc: f64,
}

fn parse(c: &Value) -> Case {
    Case {
        name: c["name"].as_str().unwrap().to_owned(),
        targets: c["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().map(|t| t == 1))
            .collect(),
        scores: c["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect(),
        weights: c["weights"]
            .as_array()
            .map(|w| w.iter().map(|x| x.as_f64().unwrap()).collect()),
        auc: c["auc"].as_f64().unwrap(),
    }
}

#[test]
fn auc_matches_sklearn_to_1e12() {
    let all = cases();
    assert!(all.len() >= 18);
    let mut tied = 0;
    for c in all.iter().map(parse) {
        let known: Vec<usize> = (0..c.targets.len())
            .filter(|&i| c.targets[i].is_some())
            .collect();
        let t: Vec<bool> = known.iter().map(|&i| c.targets[i].unwrap()).collect();
        let s: Vec<f64> = known.iter().map(|&i| c.scores[i]).collect();
        let ours = match &c.weights {
            None => roc_auc(&t, &s).unwrap().unwrap(),
            Some(w) => {
                let w: Vec<f64> = known.iter().map(|&i| w[i]).collect();
                roc_auc_weighted(&t, &s, &w).unwrap().unwrap()
            }
        };
        assert!(
            (ours - c.auc).abs() < 1e-12,
            "{}: ours {ours} vs sklearn {}",
            c.name,
            c.auc
        );
        if s.len()
            > s.iter()
                .map(|x| x.to_bits())
                .collect::<std::collections::HashSet<_>>()
                .len()
        {
            tied += 1;
        }
    }
    assert!(tied >= 10, "the fixtures must exercise ties");
}

/// Integer bootstrap multiplicities (the replicate path) equal sklearn's
/// `sample_weight` result.
#[test]
fn bootstrap_counts_match_sklearn_sample_weight() {
    for c in cases().iter().map(parse) {
        let Some(w) = &c.weights else { continue };
        if !c.name.contains("bootstrap_counts") || c.name.contains("missing") {
            continue;
        }
        let t: Vec<bool> = c.targets.iter().map(|t| t.unwrap()).collect();
        let sorted = SortedScores::from_slices(&t, &c.scores).unwrap();
        let counts: Vec<u32> = w.iter().map(|&x| x as u32).collect();
        let ours = sorted.auc_counts(&counts).unwrap();
        assert!((ours - c.auc).abs() < 1e-12, "{}", c.name);
    }
}

/// Missing targets are left out of a label's AUC in the full evaluation path.
#[test]
fn evaluate_skips_missing_targets_like_sklearn() {
    for c in cases().iter().map(parse) {
        if !c.name.ends_with("_missing") {
            continue;
        }
        let p = Predictions {
            ids: (0..c.scores.len()).map(|i| format!("i{i}")).collect(),
            labels: vec!["L".into()],
            targets: vec![c.targets.clone()],
            scores: vec![c.scores.clone()],
            ..Default::default()
        };
        let config = BootstrapConfig {
            n_replicates: 0,
            ..Default::default()
        };
        let e = evaluate(&p, None, &config).unwrap();
        let ours = e.labels[0].auc.unwrap();
        assert!((ours - c.auc).abs() < 1e-12, "{}", c.name);
        assert_eq!(
            e.labels[0].n_pos + e.labels[0].n_neg,
            c.targets.iter().flatten().count()
        );
    }
}
