//! The probe against scikit-learn's `LogisticRegression(solver="lbfgs")` on
//! committed fixtures (`scripts/fixtures/sklearn_logreg.py`): the same C and
//! data give the same coefficients, objective, scores and test AUC.

use std::path::PathBuf;

use cxr_learn::metrics::macro_auc;
use cxr_learn::probe::{Probe, ProbeConfig, select_c};
use serde_json::Value;
use tch::{Kind, Tensor};

fn fixture(case: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logreg")
        .join(format!("{case}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn matrix(v: &Value) -> (Vec<f64>, i64, i64) {
    let rows = v.as_array().unwrap();
    let cols = rows[0].as_array().unwrap().len();
    let data = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN))
        })
        .collect();
    (data, rows.len() as i64, cols as i64)
}

fn tensor(v: &Value) -> Tensor {
    let (data, n, d) = matrix(v);
    Tensor::from_slice(&data).view([n, d])
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn fit(case: &Value, config: ProbeConfig) -> Probe {
    let y = tensor(&case["y_train"]);
    let k = y.size()[1] as usize;
    let labels: Vec<String> = (0..k).map(|j| format!("label{j}")).collect();
    let multinomial = case["task"] == "multiclass";
    Probe::fit(
        &tensor(&case["x_train"]),
        &y,
        &labels,
        multinomial,
        &config,
        None,
    )
    .unwrap()
}

fn tight(case: &Value) -> ProbeConfig {
    ProbeConfig {
        c: case["c"].as_f64().unwrap(),
        max_iter: 10_000,
        tol: 1e-10,
        standardize: case["standardize"].as_bool().unwrap(),
    }
}

fn check(name: &str) {
    let case = fixture(name);
    let probe = fit(&case, tight(&case));
    assert!(
        probe.converged.iter().all(|c| *c),
        "{name}: not converged: {:?}",
        probe.max_grad
    );

    let coef = Vec::<f64>::try_from(probe.coef.flatten(0, -1)).unwrap();
    let (want, _, _) = matrix(&case["coef"]);
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in coef.iter().zip(&want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3 * b.abs() + 1e-6 * scale,
            "{name}: coef[{i}] {a} vs scikit-learn {b}"
        );
    }
    // Multinomial intercepts are only defined up to a common shift.
    let centred = |v: Vec<f64>| {
        if case["task"] == "multiclass" {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.into_iter().map(|x| x - m).collect()
        } else {
            v
        }
    };
    let got = centred(Vec::<f64>::try_from(&probe.intercept).unwrap());
    for (a, b) in got.iter().zip(centred(floats(&case["intercept"]))) {
        assert!(
            (a - b).abs() <= 1e-3 * b.abs() + 1e-6,
            "{name}: intercept {a} vs {b}"
        );
    }
    for (a, b) in probe.objective.iter().zip(floats(&case["objective"])) {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs(),
            "{name}: objective {a} vs {b}"
        );
    }

    let x_test = tensor(&case["x_test"]);
    let scores = probe.scores(&x_test);
    let (want_scores, _, k) = matrix(&case["test_scores"]);
    let got_scores = Vec::<f64>::try_from(scores.flatten(0, -1)).unwrap();
    for (a, b) in got_scores.iter().zip(&want_scores) {
        assert!((a - b).abs() < 1e-6, "{name}: score {a} vs {b}");
    }
    let (y_test, _, _) = matrix(&case["y_test"]);
    let y32: Vec<f32> = y_test.iter().map(|v| *v as f32).collect();
    let s32: Vec<f32> = got_scores.iter().map(|v| *v as f32).collect();
    let (_, per_label) = macro_auc(&y32, &s32, k as usize);
    for (a, b) in per_label.iter().zip(floats(&case["test_auc"])) {
        assert!(
            (a.unwrap() - b).abs() < 1e-4,
            "{name}: test AUC {a:?} vs {b}"
        );
    }
}

#[test]
fn multilabel_raw_matches_sklearn() {
    check("multilabel_raw");
}

#[test]
fn multilabel_standardized_matches_sklearn() {
    check("multilabel_standardized");
}

#[test]
fn nearly_separable_large_c_matches_sklearn() {
    check("nearly_separable_c100");
}

#[test]
fn multiclass_raw_matches_sklearn() {
    check("multiclass_raw");
}

#[test]
fn multiclass_standardized_matches_sklearn() {
    check("multiclass_standardized");
}

#[test]
fn constant_column_is_left_unscaled() {
    check("constant_column_standardized");
}

#[test]
fn default_tolerance_reaches_the_same_objective() {
    // scikit-learn's default tol stops early; so do we, at the same value.
    let case = fixture("multilabel_raw");
    let probe = fit(
        &case,
        ProbeConfig {
            tol: 1e-4,
            ..tight(&case)
        },
    );
    for (a, b) in probe.objective.iter().zip(floats(&case["objective"])) {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "objective {a} vs {b}");
    }
}

#[test]
fn batched_solution_equals_label_by_label() {
    let case = fixture("multilabel_raw");
    let x = tensor(&case["x_train"]);
    let y = tensor(&case["y_train"]);
    let config = tight(&case);
    let all = fit(&case, config);
    for j in 0..y.size()[1] {
        let one = Probe::fit(&x, &y.narrow(1, j, 1), &["l".into()], false, &config, None).unwrap();
        let diff = (one.coef.get(0) - all.coef.get(j))
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            diff < 1e-9,
            "label {j}: batched and single fits differ by {diff}"
        );
    }
}

#[test]
fn single_class_label_is_named() {
    let x = Tensor::randn([20, 3], (Kind::Double, tch::Device::Cpu));
    let y = Tensor::cat(
        &[
            Tensor::ones([20, 1], (Kind::Double, tch::Device::Cpu)),
            Tensor::zeros([20, 1], (Kind::Double, tch::Device::Cpu)),
        ],
        1,
    );
    let labels = vec!["Edema".to_owned(), "Mass".to_owned()];
    let err = Probe::fit(&x, &y, &labels, false, &ProbeConfig::default(), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("'Edema' has 20 positive and 0 negative"),
        "{err}"
    );
}

#[test]
fn grid_picks_the_best_validation_auc() {
    let case = fixture("multilabel_raw");
    let x = tensor(&case["x_train"]);
    let y = tensor(&case["y_train"]);
    let xv = tensor(&case["x_test"]);
    let (yv, _, k) = matrix(&case["y_test"]);
    let yv: Vec<f32> = yv.iter().map(|v| *v as f32).collect();
    let labels: Vec<String> = (0..k).map(|j| format!("l{j}")).collect();
    let grid = [1e-4, 1e-2, 1.0, 100.0];
    let (best, points) = select_c(
        &x,
        &y,
        &xv,
        &yv,
        &labels,
        false,
        &ProbeConfig::default(),
        &grid,
    )
    .unwrap();
    assert_eq!(points.len(), 4);
    let top = points
        .iter()
        .map(|p| p.val_macro_auc.unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    let chosen = points.iter().find(|p| p.c == best.config.c).unwrap();
    assert_eq!(chosen.val_macro_auc.unwrap(), top);
    // The kept model is the one fitted at that C: its validation AUC matches.
    let s = Vec::<f32>::try_from(best.scores(&xv).to_kind(Kind::Float).flatten(0, -1)).unwrap();
    assert_eq!(macro_auc(&yv, &s, k as usize).0.unwrap(), top);
}
