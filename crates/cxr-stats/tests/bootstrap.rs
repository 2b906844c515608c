//! Bootstrap intervals: coverage on simulated data with a known AUC, paired
//! differences, determinism across thread counts, and degenerate labels.

use cxr_stats::bootstrap::replicate_counts;
use cxr_stats::{BootstrapConfig, Predictions, evaluate, percentile, roc_auc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, Normal};

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; the tests need only a faithful N(0, 1).
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// One label, binormal scores: positives N(d, 1), negatives N(0, 1), so the
/// true AUC is Phi(d / sqrt 2).
fn binormal(seed: u64, n: usize, prevalence: f64, d: f64) -> Predictions {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut targets = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    for _ in 0..n {
        let y = rng.random_bool(prevalence);
        targets.push(Some(y));
        scores.push(normal(&mut rng) + if y { d } else { 0.0 });
    }
    Predictions {
        ids: (0..n).map(|i| format!("img{i}")).collect(),
        labels: vec!["finding".into()],
        targets: vec![targets],
        scores: vec![scores],
        ..Default::default()
    }
}

#[test]
fn ci_covers_true_auc_about_95_percent() {
    let d = 1.0;
    let truth = Normal::standard().cdf(d / 2f64.sqrt());
    let config = BootstrapConfig {
        n_replicates: 400,
        seed: 7,
        confidence: 0.95,
    };
    let sims = 200;
    let mut covered = 0;
    for sim in 0..sims {
        let p = binormal(1000 + sim, 400, 0.3, d);
        let e = evaluate(&p, None, &config).unwrap();
        let [lo, hi] = e.labels[0].ci.unwrap();
        assert!(lo <= e.labels[0].auc.unwrap() && e.labels[0].auc.unwrap() <= hi);
        if lo <= truth && truth <= hi {
            covered += 1;
        }
    }
    let rate = f64::from(covered) / sims as f64;
    // Binomial(200, 0.95) has sd 1.5%; the percentile bootstrap runs slightly
    // narrow at this size, so allow 90%..99%.
    assert!((0.90..=0.99).contains(&rate), "coverage {rate}");
}

#[test]
fn replicate_path_equals_resampled_reference() {
    let p = binormal(5, 150, 0.4, 0.7);
    // Coarse scores so ties occur within and across replicates.
    let mut p = p;
    for s in &mut p.scores[0] {
        *s = (*s * 3.0).round() / 3.0;
    }
    let config = BootstrapConfig {
        n_replicates: 60,
        seed: 11,
        confidence: 0.9,
    };
    let e = evaluate(&p, None, &config).unwrap();
    // Reference: expand each replicate into an explicit resample and re-sort.
    let mut values = Vec::new();
    let mut counts = Vec::new();
    for b in 0..60 {
        replicate_counts(11, b, 150, &mut counts);
        let (mut t, mut s) = (vec![], vec![]);
        for (i, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                t.push(p.targets[0][i].unwrap());
                s.push(p.scores[0][i]);
            }
        }
        assert_eq!(t.len(), 150);
        values.extend(roc_auc(&t, &s).unwrap());
    }
    values.sort_by(f64::total_cmp);
    let [lo, hi] = e.labels[0].ci.unwrap();
    assert!((lo - percentile(&values, 0.05)).abs() < 1e-12);
    assert!((hi - percentile(&values, 0.95)).abs() < 1e-12);
    assert_eq!(e.labels[0].n_valid_replicates, values.len());
}

fn two_labels(seed: u64, d_model: f64) -> Predictions {
    let a = binormal(seed, 600, 0.2, d_model);
    let b = binormal(seed + 1, 600, 0.35, d_model * 0.8);
    Predictions {
        ids: a.ids.clone(),
        labels: vec!["A".into(), "B".into()],
        targets: vec![a.targets[0].clone(), b.targets[0].clone()],
        scores: vec![a.scores[0].clone(), b.scores[0].clone()],
        ..Default::default()
    }
}

#[test]
fn paired_identical_models_have_zero_delta() {
    let model = two_labels(3, 1.0);
    let config = BootstrapConfig::default();
    let e = evaluate(&model, Some(&model.clone()), &config).unwrap();
    for l in &e.labels {
        let c = l.comparison.as_ref().unwrap();
        assert_eq!(c.delta, Some(0.0));
        let [lo, hi] = c.delta_ci.unwrap();
        assert!(lo <= 0.0 && 0.0 <= hi);
        assert_eq!(c.p_value_delong, Some(1.0));
        assert_eq!(c.p_value_bootstrap, Some(1.0));
    }
    let m = e.macro_avg.comparison.as_ref().unwrap();
    let [lo, hi] = m.delta_ci.unwrap();
    assert!(lo <= 0.0 && 0.0 <= hi);
}

#[test]
fn paired_clearly_better_model_excludes_zero() {
    let model = two_labels(3, 1.5);
    let mut baseline = model.clone();
    // Same targets, noisier scores: a clearly weaker model.
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for scores in &mut baseline.scores {
        for s in scores.iter_mut() {
            *s += 2.0 * normal(&mut rng);
        }
    }
    let e = evaluate(&model, Some(&baseline), &BootstrapConfig::default()).unwrap();
    for l in &e.labels {
        let c = l.comparison.as_ref().unwrap();
        assert!(c.delta.unwrap() > 0.05, "{:?}", c);
        assert!(c.delta_ci.unwrap()[0] > 0.0, "{:?}", c);
        assert!(c.p_value_delong.unwrap() < 0.001);
        assert!(c.p_value_bootstrap.unwrap() <= 2.0 / 1001.0 + 1e-12);
    }
    let m = e.macro_avg.comparison.as_ref().unwrap();
    assert!(m.delta_ci.unwrap()[0] > 0.0);
    // The macro delta is the mean of the per-label deltas.
    let mean_delta = e
        .labels
        .iter()
        .map(|l| l.comparison.as_ref().unwrap().delta.unwrap())
        .sum::<f64>()
        / 2.0;
    assert!((m.delta.unwrap() - mean_delta).abs() < 1e-12);
}

#[test]
fn same_seed_same_numbers_on_any_thread_count() {
    let model = two_labels(8, 0.8);
    let baseline = two_labels(8, 0.5);
    let baseline = Predictions {
        targets: model.targets.clone(),
        ..baseline
    };
    let config = BootstrapConfig {
        n_replicates: 300,
        seed: 42,
        confidence: 0.95,
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| evaluate(&model, Some(&baseline), &config).unwrap())
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(5));
    // The same with patients resampled (three films per patient), with
    // probability scores so calibration intervals are drawn too.
    let mut by_patient = model.clone();
    by_patient.patients = Some(
        (0..model.ids.len())
            .map(|i| format!("p{}", i / 3))
            .collect(),
    );
    for scores in &mut by_patient.scores {
        for s in scores.iter_mut() {
            *s = 1.0 / (1.0 + (-*s).exp());
        }
    }
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| evaluate(&by_patient, Some(&baseline), &config).unwrap())
    };
    let patients = run(1);
    assert_eq!(patients.resample, cxr_stats::Unit::Patient);
    assert!(
        patients.labels[0]
            .calibration
            .as_ref()
            .unwrap()
            .ece_ci
            .is_some()
    );
    assert_eq!(patients, run(2));
    assert_eq!(patients, run(5));
    let other_seed = evaluate(
        &model,
        Some(&baseline),
        &BootstrapConfig { seed: 43, ..config },
    )
    .unwrap();
    assert_ne!(one.labels[0].ci, other_seed.labels[0].ci);
}

#[test]
fn single_class_and_rare_labels() {
    let mut p = two_labels(4, 1.0);
    p.labels.push("never".into());
    p.targets.push(vec![Some(false); 600]);
    p.scores.push(vec![0.5; 600]);
    p.labels.push("rare".into());
    let mut rare = vec![Some(false); 600];
    rare[17] = Some(true);
    p.targets.push(rare);
    p.scores.push((0..600).map(|i| i as f64).collect());
    let config = BootstrapConfig {
        n_replicates: 200,
        ..Default::default()
    };
    let e = evaluate(&p, None, &config).unwrap();
    let never = &e.labels[2];
    assert_eq!(never.auc, None);
    assert_eq!(never.reason.as_deref(), Some("no positive targets"));
    assert_eq!(never.ci, None);
    let rare = &e.labels[3];
    assert!(rare.auc.is_some());
    // P(image 17 drawn at least once) = 1 - (1 - 1/600)^600, about 63%.
    assert!(
        (90..180).contains(&rare.n_valid_replicates),
        "{}",
        rare.n_valid_replicates
    );
    assert_eq!(e.macro_avg.n_labels, 3);
    let expected = (e.labels[0].auc.unwrap() + e.labels[1].auc.unwrap() + rare.auc.unwrap()) / 3.0;
    assert!((e.macro_avg.auc.unwrap() - expected).abs() < 1e-12);
    let json = serde_json::to_value(&e).unwrap();
    assert!(json["labels"][2]["auc"].is_null());
    assert!(json["labels"][0].get("baseline_auc").is_none());
}

#[test]
fn rejects_bad_confidence_and_unaligned_baseline() {
    let p = two_labels(1, 1.0);
    for c in [0.0, 1.0, 1.5, f64::NAN] {
        let config = BootstrapConfig {
            confidence: c,
            ..Default::default()
        };
        assert!(evaluate(&p, None, &config).is_err());
    }
    let mut q = p.clone();
    q.ids.swap(0, 1);
    assert!(evaluate(&p, Some(&q), &BootstrapConfig::default()).is_err());
}

/// A replicate count beyond the documented maximum is refused before any
/// replicate is drawn (issue #22: 100,000,000 grew memory until it aborted);
/// the maximum itself is still accepted.
#[test]
fn replicates_beyond_the_maximum_are_refused() {
    use cxr_stats::StatsError;
    use cxr_stats::bootstrap::MAX_REPLICATES;
    let p = binormal(5, 20, 0.5, 1.0);
    let config = |n_replicates| BootstrapConfig {
        n_replicates,
        seed: 0,
        confidence: 0.95,
    };
    let e = evaluate(&p, None, &config(MAX_REPLICATES + 1)).unwrap_err();
    assert_eq!(
        e,
        StatsError::TooManyReplicates {
            requested: MAX_REPLICATES + 1,
            max: MAX_REPLICATES,
        }
    );
    assert!(e.to_string().contains("at most 100000"), "{e}");
    let e = evaluate(&p, None, &config(100_000_000)).unwrap_err();
    assert!(matches!(e, StatsError::TooManyReplicates { .. }), "{e}");
}
