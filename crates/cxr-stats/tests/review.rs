//! The statistics a reviewer asks for, against independent references:
//! the patient-level bootstrap against an explicit resample-patients-and-
//! recompute loop and in a coverage simulation, Obuchowski's clustered
//! variance, subgroup AUCs against scikit-learn, and calibration against
//! direct formulas and scikit-learn's logistic regression (fixtures from
//! `scripts/fixtures/stats_review.py`).

use std::collections::HashMap;

use cxr_stats::obuchowski::{
    clustered_components, clustered_covariance, clustered_test, clustered_variance,
};
use cxr_stats::subgroups::SubgroupOptions;
use cxr_stats::{
    BootstrapConfig, Options, Predictions, Resample, Unit, evaluate_with, percentile, roc_auc,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use statrs::distribution::{ContinuousCDF, Normal};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/stats_review.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() == 1)
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

fn one_label(targets: &[bool], scores: &[f64]) -> Predictions {
    Predictions {
        ids: (0..targets.len()).map(|i| format!("img{i}")).collect(),
        labels: vec!["finding".into()],
        targets: vec![targets.iter().map(|&t| Some(t)).collect()],
        scores: vec![scores.to_vec()],
        ..Default::default()
    }
}

fn config(n: usize, seed: u64, confidence: f64) -> BootstrapConfig {
    BootstrapConfig {
        n_replicates: n,
        seed,
        confidence,
    }
}

#[test]
fn obuchowski_matches_the_pair_sum_reference() {
    for case in fixture()["clustered"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let t = bools(&case["targets"]);
        let (a, b) = (floats(&case["model"]), floats(&case["baseline"]));
        let patients = strings(&case["patients"]);
        let mut number: HashMap<&str, u32> = HashMap::new();
        let cluster: Vec<u32> = patients
            .iter()
            .map(|p| {
                let next = number.len() as u32;
                *number.entry(p.as_str()).or_insert(next)
            })
            .collect();
        let ca = clustered_components(&t, &a, &cluster, number.len()).unwrap();
        let cb = clustered_components(&t, &b, &cluster, number.len()).unwrap();
        let close = |x: f64, want: &Value, what: &str| {
            let w = want.as_f64().unwrap();
            assert!(
                (x - w).abs() <= 1e-12 + 1e-10 * w.abs(),
                "{name} {what}: {x} vs {w}"
            );
        };
        close(ca.auc, &case["auc1"], "auc1");
        close(cb.auc, &case["auc2"], "auc2");
        close(clustered_variance(&ca), &case["var1"], "var1");
        close(clustered_variance(&cb), &case["var2"], "var2");
        close(clustered_covariance(&ca, &cb), &case["cov"], "cov");
        let (z, p) = clustered_test(&ca, &cb);
        close(z, &case["z"], "z");
        close(p, &case["p"], "p");

        // Through the evaluation: the same p-value, beside the image-level DeLong.
        let mut model = one_label(&t, &a);
        model.patients = Some(patients.clone());
        let baseline = one_label(&t, &b);
        let e = evaluate_with(
            &model,
            Some(&baseline),
            &Options {
                bootstrap: config(50, 0, 0.95),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(e.resample, Unit::Patient);
        assert_eq!(e.n_clusters, number.len());
        let c = e.labels[0].comparison.as_ref().unwrap();
        close(
            c.p_value_delong_clustered.unwrap(),
            &case["p"],
            "evaluate p",
        );
        assert!(c.p_value_delong.is_some());
    }
}

/// Replicate `b` reproduced from its definition: draw as many patients as
/// there are (ChaCha8, stream `b`, patients numbered by first appearance),
/// concatenate the films of every drawn patient, and recompute the AUC on
/// that explicit resample.
#[test]
fn patient_bootstrap_equals_explicit_resampling() {
    let case = &fixture()["clustered"][1];
    let t = bools(&case["targets"]);
    let s = floats(&case["model"]);
    let patients = strings(&case["patients"]);
    let mut order: Vec<&str> = Vec::new();
    for p in &patients {
        if !order.contains(&p.as_str()) {
            order.push(p);
        }
    }
    let films: Vec<Vec<usize>> = order
        .iter()
        .map(|p| (0..t.len()).filter(|&i| patients[i] == *p).collect())
        .collect();
    let (seed, replicates) = (17u64, 80u64);
    let mut reference = Vec::new();
    for b in 0..replicates {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(b);
        let (mut rt, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..order.len() {
            let k = rng.random_range(0..order.len() as u32) as usize;
            for &i in &films[k] {
                rt.push(t[i]);
                rs.push(s[i]);
            }
        }
        reference.extend(roc_auc(&rt, &rs).unwrap());
    }
    reference.sort_by(f64::total_cmp);
    let mut p = one_label(&t, &s);
    p.patients = Some(patients);
    let e = evaluate_with(
        &p,
        None,
        &Options {
            bootstrap: config(replicates as usize, seed, 0.9),
            resample: Resample::Patient,
            ..Default::default()
        },
    )
    .unwrap();
    let [lo, hi] = e.labels[0].ci.unwrap();
    assert_eq!(e.labels[0].n_valid_replicates, reference.len());
    assert!((lo - percentile(&reference, 0.05)).abs() < 1e-12);
    assert!((hi - percentile(&reference, 0.95)).abs() < 1e-12);
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Clustered data with a known AUC: every patient's films share its disease
/// status and a random effect `u ~ N(0, 1)`; a film's score is
/// `d y + u + e`, `e ~ N(0, 0.5^2)`. Positives and negatives never share a
/// patient, so the AUC is `Phi(d / sqrt(2 (1 + 0.25)))`. Four films per
/// patient with intra-patient correlation 0.8: images are far from
/// independent, and only the patient-level interval keeps its coverage.
#[test]
fn patient_intervals_cover_clustered_truth_and_image_intervals_do_not() {
    let d = 1.2;
    let truth = Normal::standard().cdf(d / (2.0f64 * 1.25).sqrt());
    let (sims, patients, films) = (200, 150, 4);
    let (mut patient_hits, mut image_hits) = (0, 0);
    for sim in 0..sims {
        let mut rng = ChaCha8Rng::seed_from_u64(5000 + sim);
        let (mut t, mut s, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for p in 0..patients {
            let y = rng.random_bool(0.3);
            let u = normal(&mut rng);
            for _ in 0..films {
                t.push(y);
                s.push(if y { d } else { 0.0 } + u + 0.5 * normal(&mut rng));
                ids.push(format!("p{p}"));
            }
        }
        let mut pred = one_label(&t, &s);
        pred.patients = Some(ids);
        for (unit, hits) in [
            (Resample::Patient, &mut patient_hits),
            (Resample::Image, &mut image_hits),
        ] {
            let e = evaluate_with(
                &pred,
                None,
                &Options {
                    bootstrap: config(300, sim, 0.95),
                    resample: unit,
                    ..Default::default()
                },
            )
            .unwrap();
            let [lo, hi] = e.labels[0].ci.unwrap();
            if lo <= truth && truth <= hi {
                *hits += 1;
            }
        }
    }
    let patient = f64::from(patient_hits) / f64::from(sims as u32);
    let image = f64::from(image_hits) / f64::from(sims as u32);
    eprintln!("coverage of the true AUC {truth:.4}: patient-level {patient}, image-level {image}");
    assert!(
        (0.90..=0.99).contains(&patient),
        "patient-level coverage {patient}"
    );
    assert!(
        image < 0.85,
        "image-level coverage {image} (patient-level {patient})"
    );
}

#[test]
fn subgroup_aucs_match_scikit_learn() {
    let f = fixture();
    let case = &f["subgroups"];
    let t = bools(&case["targets"]);
    let s = floats(&case["scores"]);
    let mut p = one_label(&t, &s);
    for column in ["sex", "age", "view"] {
        let values = strings(&case[column])
            .into_iter()
            .map(|v| (!v.is_empty()).then_some(v))
            .collect();
        p.attributes.insert(column.into(), values);
    }
    let e = evaluate_with(
        &p,
        None,
        &Options {
            bootstrap: config(100, 1, 0.95),
            resample: Resample::Image,
            subgroups: Some(SubgroupOptions {
                columns: vec!["sex".into(), "age".into(), "view".into()],
                age_bins: cxr_stats::AGE_BINS.to_vec(),
                thresholds_from: None,
                min_count: 1,
            }),
            ..Default::default()
        },
    )
    .unwrap();
    let results = e.subgroups.as_ref().unwrap();
    let want = case["aucs"].as_array().unwrap();
    assert_eq!(results.len(), want.len());
    for w in want {
        let r = results
            .iter()
            .find(|r| r.column == w["column"] && r.value == w["value"])
            .unwrap_or_else(|| panic!("no result for {w}"));
        assert_eq!(r.n as u64, w["n"].as_u64().unwrap(), "{w}");
        assert_eq!(r.n_pos as u64, w["n_pos"].as_u64().unwrap(), "{w}");
        assert!(
            (r.auc.unwrap() - w["auc"].as_f64().unwrap()).abs() < 1e-12,
            "{w}"
        );
        let [lo, hi] = r.ci.unwrap();
        assert!(lo <= r.auc.unwrap() && r.auc.unwrap() <= hi);
    }
    let columns = e.subgroup_columns.as_ref().unwrap();
    assert_eq!(columns[0].values, ["F", "M"]);
    assert_eq!(columns[1].values, ["<40", "40-60", "60-80", ">=80"]);
    assert!(columns[0].n_unknown > 0 && columns[1].n_unknown == 0);
    // The sex gap is F minus M (the data were made so), with its interval.
    let gap = e
        .subgroup_gaps
        .as_ref()
        .unwrap()
        .iter()
        .find(|g| g.column == "sex")
        .unwrap();
    assert_eq!((gap.best.as_str(), gap.worst.as_str()), ("F", "M"));
    let f_auc = results
        .iter()
        .find(|r| r.value == "F")
        .unwrap()
        .auc
        .unwrap();
    let m_auc = results
        .iter()
        .find(|r| r.value == "M")
        .unwrap()
        .auc
        .unwrap();
    assert!((gap.gap - (f_auc - m_auc)).abs() < 1e-15);
    let [lo, hi] = gap.gap_ci.unwrap();
    assert!(lo > 0.0 && hi > lo, "{lo} {hi}");
    // Without validation predictions, the thresholds are the test set's Youden point.
    assert!(e.threshold_source.as_ref().unwrap().contains("optimistic"));
}

#[test]
fn calibration_matches_direct_formulas_and_scikit_learn() {
    let f = fixture();
    let case = &f["calibration"];
    let t = bools(&case["targets"]);
    let s = floats(&case["scores"]);
    let p = one_label(&t, &s);
    let val = one_label(&bools(&case["val_targets"]), &floats(&case["val_scores"]));
    let e = evaluate_with(
        &p,
        None,
        &Options {
            bootstrap: config(200, 2, 0.95),
            calibrate_on: Some((&val, "val.csv".into())),
            ..Default::default()
        },
    )
    .unwrap();
    let c = e.labels[0].calibration.as_ref().unwrap();
    let close = |x: f64, key: &str, tol: f64| {
        let w = case[key].as_f64().unwrap();
        assert!((x - w).abs() <= tol, "{key}: {x} vs {w}");
    };
    close(c.brier, "brier", 1e-12);
    close(c.ece, "ece", 1e-12);
    close(c.ace, "ace", 1e-12);
    assert_eq!(c.bins, 15);
    for (v, ci) in [(c.brier, c.brier_ci), (c.ece, c.ece_ci)] {
        let [lo, hi] = ci.unwrap();
        assert!(lo < hi && lo <= v * 1.2 && v <= hi * 1.2, "{v} {lo} {hi}");
    }
    let after = e.labels[0].calibration_after.as_ref().unwrap();
    let platt = after.platt.unwrap();
    close(platt.a, "platt_a", 1e-6);
    close(platt.b, "platt_b", 1e-6);
    close(after.brier, "brier_after", 1e-8);
    // The overconfident scores are better calibrated after Platt scaling.
    assert!(after.ece < c.ece);
    // Scores that are not probabilities: no calibration, and the reason.
    let raw = one_label(&t, &s.iter().map(|v| v * 4.0 - 2.0).collect::<Vec<_>>());
    let e = evaluate_with(&raw, None, &Options::default()).unwrap();
    assert!(e.labels[0].calibration.is_none());
    assert!(
        e.labels[0]
            .calibration_reason
            .as_ref()
            .unwrap()
            .contains("not probabilities")
    );
    let json = serde_json::to_value(&e).unwrap();
    assert!(json["labels"][0]["calibration"].is_null());
}

#[test]
fn holm_and_simultaneous_intervals_in_an_evaluation() {
    let f = fixture();
    let case = &f["clustered"][0];
    let t = bools(&case["targets"]);
    let (a, b) = (floats(&case["model"]), floats(&case["baseline"]));
    // Three labels: the same finding three times, shifted, so p-values differ.
    let mut model = one_label(&t, &a);
    let mut baseline = one_label(&t, &b);
    for k in 1..3 {
        model.labels.push(format!("copy{k}"));
        model.targets.push(model.targets[0].clone());
        model.scores.push(
            a.iter()
                .zip(&b)
                .map(|(x, y)| x * (3 - k) as f64 + y * k as f64)
                .collect(),
        );
        baseline.labels.push(format!("copy{k}"));
        baseline.targets.push(baseline.targets[0].clone());
        baseline.scores.push(b.clone());
    }
    let options = |simultaneous| Options {
        bootstrap: config(300, 4, 0.95),
        resample: Resample::Image,
        simultaneous,
        ..Default::default()
    };
    let e = evaluate_with(&model, Some(&baseline), &options(false)).unwrap();
    let raw: Vec<Option<f64>> = e
        .labels
        .iter()
        .map(|l| l.comparison.as_ref().unwrap().p_value_bootstrap)
        .collect();
    let adjusted = cxr_stats::multiplicity::holm(&raw);
    for (l, adj) in e.labels.iter().zip(adjusted) {
        let c = l.comparison.as_ref().unwrap();
        assert_eq!(c.p_value_holm, adj);
        assert!(c.p_value_holm >= c.p_value_bootstrap);
    }
    assert_eq!(e.multiplicity.as_ref().unwrap().method, "holm");
    let wide = evaluate_with(&model, Some(&baseline), &options(true)).unwrap();
    assert!((wide.interval_confidence - (1.0 - 0.05 / 3.0)).abs() < 1e-15);
    for (n, w) in e.labels.iter().zip(&wide.labels) {
        let ([nl, nh], [wl, wh]) = (n.ci.unwrap(), w.ci.unwrap());
        assert!(wl <= nl && nh <= wh);
    }
    // The macro interval keeps the nominal level.
    assert_eq!(e.macro_avg.ci, wide.macro_avg.ci);
}
