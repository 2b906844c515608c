//! Calibration of probability scores: the Brier score, the expected
//! calibration error over 15 equal-width bins (ECE), its adaptive variant
//! over 15 equal-mass bins (ACE), the reliability diagram's bins, and Platt
//! scaling fitted on validation predictions.
//!
//! Definitions, over the `n` images with a known target (`y` in {0, 1},
//! score `s` in [0, 1]):
//!
//! - Brier: `mean((s - y)^2)`.
//! - ECE: `sum_b (n_b / n) |mean_b(y) - mean_b(s)|`, bin `b = min(floor(15 s), 14)`:
//!   `[0, 1/15), [1/15, 2/15), ..., [14/15, 1]`.
//! - ACE: the same sum over 15 bins of (nearly) equal count: the images sorted
//!   by score (ties in input order), bin `k` holding sorted positions
//!   `floor(k n / 15) .. floor((k + 1) n / 15)`.
//!
//! Scores outside [0, 1] are not probabilities: they are reported as not
//! calibrated, with the reason, and never squashed into [0, 1].

use serde::Serialize;

use crate::StatsError;

/// Number of bins of the ECE, the ACE and the reliability diagram.
pub const BINS: usize = 15;

/// How Platt scaling read the validation scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlattInput {
    /// Scores were probabilities: the regression is on `logit(s)`.
    Logit,
    /// Scores were not probabilities: the regression is on the raw score
    /// (Platt's original use, on decision values).
    Score,
}

/// A fitted Platt scaling, `p = 1 / (1 + exp(-(a x + b)))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Platt {
    /// Slope.
    pub a: f64,
    /// Intercept.
    pub b: f64,
    /// What `x` is.
    pub input: PlattInput,
    /// Validation images it was fitted on.
    pub n: usize,
}

/// Scores are clipped this far inside (0, 1) before the logit, so 0 and 1
/// map to finite values.
const LOGIT_EPS: f64 = 1e-12;

fn logit(s: f64) -> f64 {
    let s = s.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS);
    (s / (1.0 - s)).ln()
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Platt {
    /// The calibrated probability of score `s`.
    pub fn apply(&self, s: f64) -> f64 {
        let x = match self.input {
            PlattInput::Logit => logit(s),
            PlattInput::Score => s,
        };
        sigmoid(self.a * x + self.b)
    }
}

/// # Errors
/// [`StatsError::NoKnownTargets`] without scores,
/// [`StatsError::NotProbabilities`] unless every score lies in [0, 1].
pub fn check_probabilities(scores: &[f64]) -> Result<(), StatsError> {
    let (lo, hi) = scores
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| {
            (lo.min(s), hi.max(s))
        });
    if scores.is_empty() {
        return Err(StatsError::NoKnownTargets);
    }
    if lo < 0.0 || hi > 1.0 {
        return Err(StatsError::NotProbabilities { lo, hi });
    }
    Ok(())
}

/// Negative log-likelihood of `(a, b)`.
fn nll(x: &[f64], y: &[bool], a: f64, b: f64) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&x, &y)| {
            let z = a * x + b;
            // log(1 + exp(-z)) for y = 1, log(1 + exp(z)) for y = 0, stably.
            let t = if y { -z } else { z };
            t.max(0.0) + (-t.abs()).exp().ln_1p()
        })
        .sum()
}

/// Fits Platt scaling to validation targets and scores: the unpenalised
/// one-dimensional logistic regression of the target on `logit(score)`
/// (on the raw score when the scores are not probabilities), by Newton's
/// method with step halving.
///
/// # Errors
/// [`StatsError::OneClass`] when a class is missing,
/// [`StatsError::Separated`] when the scores separate the classes (so the
/// maximum-likelihood slope is infinite), [`StatsError::NoConvergence`].
pub fn fit_platt(targets: &[bool], scores: &[f64]) -> Result<Platt, StatsError> {
    let n_pos = targets.iter().filter(|&&t| t).count();
    if n_pos == 0 || n_pos == targets.len() {
        return Err(StatsError::OneClass);
    }
    let input = if check_probabilities(scores).is_ok() {
        PlattInput::Logit
    } else {
        PlattInput::Score
    };
    let x: Vec<f64> = match input {
        PlattInput::Logit => scores.iter().map(|&s| logit(s)).collect(),
        PlattInput::Score => scores.to_vec(),
    };
    // In one dimension the maximum-likelihood fit exists exactly when the
    // classes overlap: with a cut `c` that has every positive at or above
    // it and every negative at or below it (or the reverse), the likelihood
    // keeps rising as the slope grows.
    let range = |class: bool| {
        x.iter()
            .zip(targets)
            .filter(|(_, t)| **t == class)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (&v, _)| {
                (lo.min(v), hi.max(v))
            })
    };
    let ((pos_lo, pos_hi), (neg_lo, neg_hi)) = (range(true), range(false));
    if neg_hi <= pos_lo || pos_hi <= neg_lo {
        return Err(StatsError::Separated);
    }
    let prior = n_pos as f64 / targets.len() as f64;
    let (mut a, mut b) = (0.0, (prior / (1.0 - prior)).ln());
    let mut f = nll(&x, targets, a, b);
    for _ in 0..200 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&xi, &yi) in x.iter().zip(targets) {
            let p = sigmoid(a * xi + b);
            let r = p - f64::from(u8::from(yi));
            let w = p * (1.0 - p);
            ga += r * xi;
            gb += r;
            haa += w * xi * xi;
            hab += w * xi;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if !(det.is_finite() && det > 0.0) {
            break;
        }
        // Newton direction: H^-1 g.
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-12 {
            let (na, nb) = (a - step * da, b - step * db);
            let nf = nll(&x, targets, na, nb);
            if nf <= f {
                let done = (a - na).abs() <= 1e-12 * (1.0 + a.abs())
                    && (b - nb).abs() <= 1e-12 * (1.0 + b.abs());
                (a, b, f) = (na, nb, nf);
                improved = true;
                if done {
                    return finish(a, b, input, targets.len());
                }
                break;
            }
            step /= 2.0;
        }
        if !improved {
            // No decrease along the Newton direction: at the optimum to
            // rounding, unless the gradient says otherwise.
            let scale = x.iter().map(|v| v.abs()).fold(1.0, f64::max) * targets.len() as f64;
            if ga.abs().max(gb.abs()) <= 1e-8 * scale {
                return finish(a, b, input, targets.len());
            }
            break;
        }
        if a.abs() > 1e6 {
            break;
        }
    }
    Err(StatsError::NoConvergence)
}

fn finish(a: f64, b: f64, input: PlattInput, n: usize) -> Result<Platt, StatsError> {
    Ok(Platt { a, b, input, n })
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReliabilityBin {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Images in the bin.
    pub n: usize,
    /// Mean score of the bin's images (`None` when empty).
    pub mean_score: Option<f64>,
    /// Fraction of positives among them.
    pub fraction_positive: Option<f64>,
}

/// One label's probability scores prepared for the calibration statistics,
/// weighted or not: each image keeps its index into the test set, so a
/// bootstrap replicate's multiplicities apply directly.
#[derive(Debug, Clone)]
pub struct CalibrationData {
    index: Vec<u32>,
    targets: Vec<bool>,
    scores: Vec<f64>,
    bin: Vec<u8>,
}

impl CalibrationData {
    /// `samples` are (test-set index, target, score) of the images with a
    /// known target.
    ///
    /// # Errors
    /// As [`check_probabilities`]: no samples, or scores that are not probabilities.
    pub fn new(samples: impl IntoIterator<Item = (u32, bool, f64)>) -> Result<Self, StatsError> {
        let (mut index, mut targets, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        for (i, t, s) in samples {
            index.push(i);
            targets.push(t);
            scores.push(s);
        }
        check_probabilities(&scores)?;
        let bin = scores
            .iter()
            .map(|&s| ((s * BINS as f64).floor() as usize).min(BINS - 1) as u8)
            .collect();
        Ok(Self {
            index,
            targets,
            scores,
            bin,
        })
    }

    fn weight(&self, k: usize, counts: Option<&[u32]>) -> f64 {
        counts.map_or(1.0, |c| f64::from(c[self.index[k] as usize]))
    }

    /// The Brier score, each image weighted by `counts` (its test-set
    /// multiplicity) when given; `None` with zero total weight.
    pub fn brier(&self, counts: Option<&[u32]>) -> Option<f64> {
        let (mut sum, mut total) = (0.0, 0.0);
        for k in 0..self.scores.len() {
            let w = self.weight(k, counts);
            let d = self.scores[k] - f64::from(u8::from(self.targets[k]));
            sum += w * d * d;
            total += w;
        }
        (total > 0.0).then(|| sum / total)
    }

    /// The ECE over 15 equal-width bins, weighted as [`CalibrationData::brier`].
    pub fn ece(&self, counts: Option<&[u32]>) -> Option<f64> {
        let mut gap = [0.0f64; BINS];
        let mut total = 0.0;
        for k in 0..self.scores.len() {
            let w = self.weight(k, counts);
            gap[self.bin[k] as usize] +=
                w * (f64::from(u8::from(self.targets[k])) - self.scores[k]);
            total += w;
        }
        (total > 0.0).then(|| gap.iter().map(|g| g.abs()).sum::<f64>() / total)
    }

    /// The adaptive ECE over 15 equal-mass bins (unweighted).
    pub fn ace(&self) -> Option<f64> {
        let n = self.scores.len();
        if n == 0 {
            return None;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| self.scores[a].total_cmp(&self.scores[b]));
        let mut sum = 0.0;
        for k in 0..BINS {
            let (lo, hi) = (k * n / BINS, (k + 1) * n / BINS);
            let gap: f64 = order[lo..hi]
                .iter()
                .map(|&i| f64::from(u8::from(self.targets[i])) - self.scores[i])
                .sum();
            sum += gap.abs();
        }
        Some(sum / n as f64)
    }

    /// The reliability diagram's 15 equal-width bins.
    pub fn reliability(&self) -> Vec<ReliabilityBin> {
        let mut bins: Vec<(usize, f64, f64)> = vec![(0, 0.0, 0.0); BINS];
        for k in 0..self.scores.len() {
            let b = &mut bins[self.bin[k] as usize];
            b.0 += 1;
            b.1 += self.scores[k];
            b.2 += f64::from(u8::from(self.targets[k]));
        }
        bins.iter()
            .enumerate()
            .map(|(k, &(n, s, y))| ReliabilityBin {
                lo: k as f64 / BINS as f64,
                hi: (k + 1) as f64 / BINS as f64,
                n,
                mean_score: (n > 0).then(|| s / n as f64),
                fraction_positive: (n > 0).then(|| y / n as f64),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(t: &[bool], s: &[f64]) -> CalibrationData {
        CalibrationData::new((0..t.len()).map(|i| (i as u32, t[i], s[i]))).unwrap()
    }

    /// The definitions written out directly, on a case small enough to check
    /// by hand.
    #[test]
    fn direct_formulas() {
        let t = [true, false, true, true, false, false];
        let s = [0.9, 0.1, 0.55, 0.6, 0.5, 0.0];
        let d = data(&t, &s);
        // Brier: (0.01 + 0.01 + 0.2025 + 0.16 + 0.25 + 0) / 6.
        let brier = (0.01 + 0.01 + 0.2025 + 0.16 + 0.25) / 6.0;
        assert!((d.brier(None).unwrap() - brier).abs() < 1e-15);
        // Bins (width 1/15): 0.9 -> 13, 0.1 -> 1, 0.55 -> 8, 0.6 -> 9 (0.6 * 15 = 9 exactly), 0.5 -> 7, 0.0 -> 0.
        // Every bin has one image: ECE = mean |y - s|.
        let ece = (0.1 + 0.1 + 0.45 + 0.4 + 0.5 + 0.0) / 6.0;
        assert!((d.ece(None).unwrap() - ece).abs() < 1e-15);
        // ACE with 6 images: bins of floor(k*6/15)..floor((k+1)*6/15): sizes 0,1,0,1,...
        // one image each again, so ACE = ECE here.
        assert!((d.ace().unwrap() - ece).abs() < 1e-15);
        // Counts act as repetition.
        let counts = [2u32, 0, 1, 1, 3, 0];
        let (mut tr, mut sr) = (vec![], vec![]);
        for i in 0..6 {
            for _ in 0..counts[i] {
                tr.push(t[i]);
                sr.push(s[i]);
            }
        }
        let rep = data(&tr, &sr);
        assert!((d.brier(Some(&counts)).unwrap() - rep.brier(None).unwrap()).abs() < 1e-15);
        assert!((d.ece(Some(&counts)).unwrap() - rep.ece(None).unwrap()).abs() < 1e-15);
    }

    #[test]
    fn ece_pools_within_a_bin_and_ace_uses_equal_mass() {
        // Two images in bin 0 (0.0 and 0.05), one positive: |0.5 - 0.025| * 2/4;
        // two in bin 14 (0.95, 1.0), both positive: |1 - 0.975| * 2/4.
        let d = data(&[true, false, true, true], &[0.0, 0.05, 0.95, 1.0]);
        let ece = 0.5 * 0.475 + 0.5 * 0.025;
        assert!((d.ece(None).unwrap() - ece).abs() < 1e-15);
        // 30 images, scores i/30: ACE bins of exactly two sorted images.
        let s: Vec<f64> = (0..30).map(|i| f64::from(i) / 30.0).collect();
        let t: Vec<bool> = (0..30).map(|i| i % 3 == 0).collect();
        let d = data(&t, &s);
        let mut ace = 0.0;
        for k in 0..15 {
            let y = f64::from(u8::from(t[2 * k])) + f64::from(u8::from(t[2 * k + 1]));
            ace += (y - s[2 * k] - s[2 * k + 1]).abs();
        }
        assert!((d.ace().unwrap() - ace / 30.0).abs() < 1e-15);
        let bins = d.reliability();
        assert_eq!(bins.len(), 15);
        assert_eq!(bins.iter().map(|b| b.n).sum::<usize>(), 30);
    }

    #[test]
    fn non_probabilities_are_refused_with_the_reason() {
        let e = CalibrationData::new([(0, true, 1.5), (1, false, -0.2)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not probabilities") && e.contains("-0.2") && e.contains("1.5"),
            "{e}"
        );
        assert!(CalibrationData::new([]).is_err());
    }

    #[test]
    fn platt_recovers_a_known_logistic_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        // True model on the logit: p = sigmoid(0.5 x - 1), x = logit(s).
        let (mut t, mut s) = (Vec::new(), Vec::new());
        for _ in 0..20_000 {
            let x: f64 = rng.random_range(-4.0..4.0);
            s.push(sigmoid(x));
            t.push(rng.random_bool(sigmoid(0.5 * x - 1.0)));
        }
        let p = fit_platt(&t, &s).unwrap();
        assert_eq!(p.input, PlattInput::Logit);
        assert!(
            (p.a - 0.5).abs() < 0.05 && (p.b + 1.0).abs() < 0.05,
            "{p:?}"
        );
        // Separable data has no finite fit; one class none at all.
        let e = fit_platt(&[false, false, true, true], &[0.1, 0.2, 0.8, 0.9])
            .unwrap_err()
            .to_string();
        assert!(e.contains("separate"), "{e}");
        assert!(fit_platt(&[true, true], &[0.1, 0.2]).is_err());
        // Raw scores: regression on the score itself.
        let raw: Vec<f64> = s.iter().map(|&v| logit(v) * 3.0).collect();
        let q = fit_platt(&t, &raw).unwrap();
        assert_eq!(q.input, PlattInput::Score);
        assert!((q.a - 0.5 / 3.0).abs() < 0.02, "{q:?}");
        assert!((q.apply(raw[7]) - p.apply(s[7])).abs() < 1e-9);
    }
}
