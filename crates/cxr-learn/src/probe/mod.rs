//! Linear probing: L2-regularised logistic regression on frozen features,
//! the objective of scikit-learn's `LogisticRegression(C, solver="lbfgs")`
//! with an unpenalised intercept. Binary and multi-label tasks fit one binary
//! problem per label (rows with an unknown label left out of that label's
//! problem); multi-class tasks fit one multinomial problem. All labels are
//! solved together ([`lbfgs`]).

pub mod lbfgs;
mod rows;

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use crate::error::Error;
use crate::metrics::macro_auc;
use lbfgs::{DataLoss, Problem, Profile, Settings, select};

/// Curvature pairs the L-BFGS keeps. scipy (and so scikit-learn) keeps 10;
/// on probe-sized problems (thousands of correlated features) a longer memory
/// cuts the rounds by half or more (20,000 x 1,024, 14 labels, tol 1e-5: 147
/// rounds with 10 pairs, 76 with 40, 67 with 80) for little cost, since the
/// pairs are `[d + 1, k]` and the rounds' time is in the passes over `X`.
const MEMORY: usize = 64;

/// Probe settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProbeConfig {
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f64,
    /// L-BFGS iterations at most.
    pub max_iter: usize,
    /// Gradient tolerance (scikit-learn's `tol`).
    pub tol: f64,
    /// Standardise features with the training mean and (population) standard
    /// deviation first, as `StandardScaler` does; constant features are left
    /// unscaled.
    pub standardize: bool,
}

impl Default for ProbeConfig {
    /// The original cxrlearn's probe: C = 0.0327, 500 iterations, tol 1e-4,
    /// raw features.
    fn default() -> Self {
        Self {
            c: 0.0327,
            max_iter: 500,
            tol: 1e-4,
            standardize: false,
        }
    }
}

/// A fitted probe.
#[derive(Debug)]
pub struct Probe {
    /// Multinomial (multi-class) or one binary problem per label.
    pub multinomial: bool,
    /// `[k, d]` coefficients, on standardised features when standardising.
    pub coef: Tensor,
    /// `[k]` intercepts.
    pub intercept: Tensor,
    /// `[d]` training means and standard deviations when standardising.
    pub scaler: Option<(Tensor, Tensor)>,
    /// The settings it was fitted with.
    pub config: ProbeConfig,
    /// Objective per label (one value, repeated, for multinomial).
    pub objective: Vec<f64>,
    /// Largest absolute gradient entry per label at the solution.
    pub max_grad: Vec<f64>,
    /// L-BFGS iterations per label.
    pub iterations: Vec<usize>,
    /// Whether each label met the tolerance.
    pub converged: Vec<bool>,
    /// Where the fit's time went.
    pub profile: Profile,
}

/// Mean and scale of `x` (f64) the way `StandardScaler` computes them.
fn scaler_of(x: &Tensor) -> (Tensor, Tensor) {
    let mean = x.mean_dim(0, false, Kind::Double);
    let std = x.var_dim(0, false, false).sqrt();
    // StandardScaler treats (near-)zero variance as scale 1.
    let scale = select(
        &std.gt_tensor(&((mean.abs() + 1.0) * 1e-12)),
        &std,
        &std.ones_like(),
    );
    (mean, scale)
}

/// `x` (standardised in f64 when asked), in f32 when `x` is f32, else f64.
fn prepared(x: &Tensor, scaler: Option<&(Tensor, Tensor)>) -> Tensor {
    let kind = if x.kind() == Kind::Float {
        Kind::Float
    } else {
        Kind::Double
    };
    match scaler {
        Some((mean, scale)) => ((x.to_kind(Kind::Double) - mean) / scale).to_kind(kind),
        None => x.to_kind(kind),
    }
}

impl Probe {
    /// Fits on features `x` (`[n, d]`) and targets `y` (`[n, k]`, NaN where
    /// unknown; multi-class: one-hot rows). `labels` names the columns for
    /// error messages. `warm` starts from an earlier solution (a C grid).
    ///
    /// Precision follows `x`: f64 features are solved in f64 throughout
    /// (what the scikit-learn agreement tests use, down to tol 1e-10); f32
    /// features keep `X` in f32 for the two matrix products of each round
    /// (half the memory traffic; f32 features are represented exactly, while
    /// standardised ones are rounded to f32 after scaling in f64) with
    /// parameters, logits, objective and line search in f64. The f32
    /// products carry relative errors around 1e-7, so a tolerance much
    /// below about 1e-7 may stop on a stalled line search (reported as not
    /// converged) instead of reaching it; pass f64 features for those.
    ///
    /// # Errors
    /// [`Error::ProbeSingleClass`] naming a label without both classes
    /// among its known training rows ([`Error::ProbeSingleClassOverall`]
    /// for a multinomial probe); [`Error::ProbeShape`] on mismatched
    /// shapes, [`Error::ProbeC`] on a bad C, [`Error::NonFiniteFeatures`].
    pub fn fit(
        x: &Tensor,
        y: &Tensor,
        labels: &[String],
        multinomial: bool,
        config: &ProbeConfig,
        warm: Option<&Probe>,
    ) -> Result<Self, Error> {
        let (n, d) = x.size2().map_err(Error::Torch)?;
        let (ny, k) = y.size2().map_err(Error::Torch)?;
        if n != ny || k as usize != labels.len() {
            return Err(Error::ProbeShape {
                rows: n,
                target_rows: ny,
                k,
                names: labels.len(),
            });
        }
        if !(config.c > 0.0 && config.c.is_finite()) {
            return Err(Error::ProbeC { c: config.c });
        }
        tch::no_grad(|| {
            let y = y.to_kind(Kind::Double).to_device(x.device());
            let known = y.isnan().logical_not();
            Self::check_classes(&y, &known, labels, multinomial)?;
            let scaler = config
                .standardize
                .then(|| scaler_of(&x.to_kind(Kind::Double)));
            let xs = prepared(x, scaler.as_ref());
            if !bool::try_from(xs.isfinite().all()).unwrap_or(false) {
                return Err(Error::NonFiniteFeatures);
            }
            let mask = known.to_kind(Kind::Double);
            let y0 = y.nan_to_num(0.0, None, None);
            let loss = if multinomial {
                let row_known = known.all_dim(1, true).to_kind(Kind::Double);
                DataLoss::Multinomial {
                    y: y0 * &row_known,
                    mask: row_known,
                }
            } else {
                DataLoss::Binary { y: y0, mask }
            };
            let start = match warm {
                Some(w) if w.coef.size() == [k, d] => {
                    Tensor::cat(&[w.coef.tr(), w.intercept.view([1, k])], 0).to_device(x.device())
                }
                _ => Tensor::zeros([d + 1, k], (Kind::Double, x.device())),
            };
            let problem = Problem {
                x: &xs,
                loss: &loss,
                c: config.c,
            };
            let settings = Settings {
                max_iter: config.max_iter,
                tol: config.tol,
                memory: MEMORY,
            };
            let out = problem.solve(&start, &settings);
            let to_cpu = |t: Tensor| t.to_device(Device::Cpu);
            Ok(Self {
                multinomial,
                coef: to_cpu(out.params.narrow(0, 0, d).tr().contiguous()),
                intercept: to_cpu(out.params.narrow(0, d, 1).view([k])),
                scaler: scaler.map(|(m, s)| (to_cpu(m), to_cpu(s))),
                config: *config,
                objective: out.objective,
                max_grad: out.max_grad,
                iterations: out.iterations,
                converged: out.converged,
                profile: out.profile,
            })
        })
    }

    fn check_classes(
        y: &Tensor,
        known: &Tensor,
        labels: &[String],
        multinomial: bool,
    ) -> Result<(), Error> {
        let count = |t: Tensor| Vec::<i64>::try_from(t.sum_dim_intlist(0, false, Kind::Int64));
        let pos = count(y.eq(1.0)).unwrap_or_default();
        let neg = count(y.eq(0.0).logical_and(known)).unwrap_or_default();
        if multinomial {
            // A class with no training rows is fine for softmax (it just gets
            // a low score); a single class overall is not.
            if pos.iter().filter(|&&p| p > 0).count() < 2 {
                return Err(Error::ProbeSingleClassOverall);
            }
            return Ok(());
        }
        for (j, label) in labels.iter().enumerate() {
            if pos[j] == 0 || neg[j] == 0 {
                return Err(Error::ProbeSingleClass {
                    label: label.clone(),
                    positives: pos[j] as usize,
                    negatives: neg[j] as usize,
                });
            }
        }
        Ok(())
    }

    /// Scores `[n, k]` (f64): per-label positive probabilities, or class
    /// probabilities for a multinomial probe.
    pub fn scores(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let dev = x.device();
            let scaler = self
                .scaler
                .as_ref()
                .map(|(m, s)| (m.to_device(dev), s.to_device(dev)));
            let z = prepared(x, scaler.as_ref())
                .to_kind(Kind::Double)
                .matmul(&self.coef.to_device(dev).tr())
                + self.intercept.to_device(dev);
            if self.multinomial {
                z.softmax(1, Kind::Double)
            } else {
                z.sigmoid()
            }
            .to_device(Device::Cpu)
        })
    }

    /// An independent copy (tensors copied, not shared).
    pub fn deep_copy(&self) -> Self {
        Self {
            multinomial: self.multinomial,
            coef: self.coef.copy(),
            intercept: self.intercept.copy(),
            scaler: self.scaler.as_ref().map(|(m, s)| (m.copy(), s.copy())),
            config: self.config,
            objective: self.objective.clone(),
            max_grad: self.max_grad.clone(),
            iterations: self.iterations.clone(),
            converged: self.converged.clone(),
            profile: self.profile.clone(),
        }
    }

    /// The probe's tensors for a safetensors file: `coef`, `intercept` and,
    /// when standardising, `mean` and `scale` (all f64).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::from([
            ("coef".to_owned(), self.coef.shallow_clone()),
            ("intercept".to_owned(), self.intercept.shallow_clone()),
        ]);
        if let Some((m, s)) = &self.scaler {
            out.insert("mean".into(), m.shallow_clone());
            out.insert("scale".into(), s.shallow_clone());
        }
        out
    }
}

/// One point of a C grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GridPoint {
    /// The C tried.
    pub c: f64,
    /// Validation macro AUC (`None` when no label has both classes).
    pub val_macro_auc: Option<f64>,
    /// L-BFGS iterations, largest over labels.
    pub iterations: usize,
}

/// Fits every C in `grid` (ascending, each warm-started from the previous
/// solution) and keeps the one with the best validation macro AUC; ties go to
/// the smaller C (the stronger regularisation).
///
/// # Errors
/// As [`Probe::fit`]; also when `grid` is empty.
#[allow(clippy::too_many_arguments)]
pub fn select_c(
    x_train: &Tensor,
    y_train: &Tensor,
    x_val: &Tensor,
    y_val: &[f32],
    labels: &[String],
    multinomial: bool,
    base: &ProbeConfig,
    grid: &[f64],
) -> Result<(Probe, Vec<GridPoint>), Error> {
    let mut grid = grid.to_vec();
    grid.sort_by(f64::total_cmp);
    let mut best: Option<(f64, Probe)> = None;
    let mut points = Vec::new();
    let mut previous: Option<Probe> = None;
    for &c in &grid {
        let config = ProbeConfig { c, ..*base };
        let probe = Probe::fit(
            x_train,
            y_train,
            labels,
            multinomial,
            &config,
            previous.as_ref(),
        )?;
        let scores = Vec::<f32>::try_from(probe.scores(x_val).to_kind(Kind::Float).flatten(0, -1))
            .map_err(Error::Torch)?;
        let (auc, _) = macro_auc(y_val, &scores, labels.len());
        points.push(GridPoint {
            c,
            val_macro_auc: auc,
            iterations: probe.iterations.iter().copied().max().unwrap_or(0),
        });
        let score = auc.unwrap_or(f64::NEG_INFINITY);
        let better = best.as_ref().is_none_or(|(b, _)| score > *b);
        if better {
            best = Some((score, probe.deep_copy()));
        }
        previous = Some(probe);
    }
    let (_, probe) = best.ok_or(Error::EmptyCGrid)?;
    Ok((probe, points))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> serde_json::Value {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/logreg")
            .join(format!("{name}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn matrix(v: &serde_json::Value) -> Tensor {
        let rows = v.as_array().unwrap();
        let data: Vec<f64> = rows
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(f64::NAN))
            })
            .collect();
        Tensor::from_slice(&data).view([rows.len() as i64, -1])
    }

    /// f32 products reach the objective of an exact f64 solve of the same
    /// (f32-rounded) features, and scikit-learn's on the f64 ones up to that
    /// rounding, at a tolerance well below the default.
    #[test]
    fn f32_products_reach_the_f64_objective() {
        for name in [
            "multilabel_raw",
            "multilabel_standardized",
            "multiclass_raw",
        ] {
            let case = fixture(name);
            let x = matrix(&case["x_train"]).to_kind(Kind::Float);
            let y = matrix(&case["y_train"]);
            let k = y.size()[1] as usize;
            let labels: Vec<String> = (0..k).map(|j| format!("l{j}")).collect();
            let multinomial = case["task"] == "multiclass";
            let config = ProbeConfig {
                c: case["c"].as_f64().unwrap(),
                max_iter: 10_000,
                tol: 1e-6,
                standardize: case["standardize"].as_bool().unwrap(),
            };
            let fast = Probe::fit(&x, &y, &labels, multinomial, &config, None).unwrap();
            let exact_config = ProbeConfig {
                tol: 1e-10,
                ..config
            };
            let exact = Probe::fit(
                &x.to_kind(Kind::Double),
                &y,
                &labels,
                multinomial,
                &exact_config,
                None,
            )
            .unwrap();
            assert!(
                fast.converged.iter().all(|c| *c),
                "{name}: {:?}",
                fast.max_grad
            );
            let sklearn = case["objective"].as_array().unwrap();
            for j in 0..fast.objective.len() {
                let (a, b) = (fast.objective[j], exact.objective[j]);
                // What stopping at tol 1e-6 instead of 1e-10 leaves, not more.
                assert!((a - b).abs() <= 1e-7 * b, "{name}[{j}]: {a} vs exact {b}");
                let s = sklearn[j.min(sklearn.len() - 1)].as_f64().unwrap();
                assert!((a - s).abs() <= 1e-6 * s, "{name}[{j}]: {a} vs sklearn {s}");
            }
        }
    }
}
