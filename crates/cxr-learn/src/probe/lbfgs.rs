//! L-BFGS for L2-regularised linear models, many problems at once.
//!
//! The parameters of `k` problems sit side by side as the columns of one
//! `[d + 1, k]` matrix (weights, then the intercept row), so the two matrix
//! products of an iteration (`X D` for the search direction and `Xᵀ R` for the
//! gradient) serve every label in one BLAS call instead of `k` matrix-vector
//! products. Each column keeps its own curvature pairs, step length and
//! convergence state: the result equals solving the problems one by one.
//! Columns that have converged drop out of both products.
//!
//! The line search needs no further products: along a direction the logits
//! move as `Z + t U` with `U = X D` computed once, and the objective along
//! that line is convex, so a safeguarded secant on its derivative finds a step
//! satisfying the strong Wolfe conditions. Each trial step is one fused pass
//! over the rows (value and slope of every column at once, in parallel over
//! row chunks) on host copies of `Z`, `U` and the targets, rather than a
//! chain of allocating tensor operations; the pass that takes the accepted
//! step also produces the residual for the gradient.
//!
//! The products run in the precision of `X`: f64 features give f64 products
//! throughout; f32 features give f32 products (`D` and `R` rounded to f32 on
//! the way in, the result widened), which halves the memory traffic of the
//! two passes over `X` that dominate a round. Parameters, logits, objective,
//! line search and curvature pairs stay f64 either way.

// The per-column loops index several parallel per-column arrays at once.
#![allow(clippy::needless_range_loop)]

use std::time::Instant;

use tch::{Kind, Tensor};

pub use super::rows::DataLoss;
pub(crate) use super::rows::select;
use super::rows::*;

/// Stopping rules and memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Iterations at most.
    pub max_iter: usize,
    /// Stop a problem when the largest absolute gradient entry (of the
    /// objective scaled per known row, as scikit-learn scales it) is below
    /// this: scipy's `pgtol`, which scikit-learn sets to its `tol`.
    pub tol: f64,
    /// Curvature pairs kept (scipy's default 10).
    pub memory: usize,
}

/// Where a fit's time went (wall clock, seconds), for benchmarks.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Profile {
    /// L-BFGS rounds (iterations of the slowest problem).
    pub rounds: usize,
    /// Sum over rounds of the problems still active (the products' width).
    pub column_rounds: usize,
    /// `X D`: the logits' direction, active columns only.
    pub direction_product_s: f64,
    /// `Xᵀ R`: the gradient, moved columns only.
    pub gradient_product_s: f64,
    /// Trial steps of the line search (fused passes).
    pub line_search_s: f64,
    /// Taking the step: logits, residual and loss in one pass.
    pub step_s: f64,
    /// Two-loop recursion, curvature pairs, host copies and the rest.
    pub other_s: f64,
    /// Trial steps over all rounds (each one pass over the rows).
    pub trials: usize,
    /// Most trial steps in one round.
    pub max_trials: usize,
}

/// Where a fit ended.
#[derive(Debug)]
pub struct Outcome {
    /// `[d + 1, k]` parameters: weights then the intercept row.
    pub params: Tensor,
    /// Objective per problem at the solution (mean loss over known rows plus
    /// `|w|² / (2 C n)`, scikit-learn's scaling).
    pub objective: Vec<f64>,
    /// Largest absolute gradient entry per problem.
    pub max_grad: Vec<f64>,
    /// Iterations each problem took.
    pub iterations: Vec<usize>,
    /// Whether each problem met `tol` within `max_iter`.
    pub converged: Vec<bool>,
    /// Time per phase.
    pub profile: Profile,
}

/// A linear model `Z = X W + b` under a [`DataLoss`] plus `|W|² / (2C)`,
/// everything divided by the known rows of each problem.
#[derive(Debug)]
pub struct Problem<'a> {
    /// Features `[n, d]`: f64, or f32 for f32 matrix products.
    pub x: &'a Tensor,
    /// The data term.
    pub loss: &'a DataLoss,
    /// Inverse regularisation strength.
    pub c: f64,
}

struct Point {
    params: Tensor,
    value: Vec<f64>,
    grad: Tensor,
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap_or_default()
}

fn indices(cols: &[bool], dev: tch::Device) -> Tensor {
    let idx: Vec<i64> = (0..cols.len() as i64)
        .filter(|&j| cols[j as usize])
        .collect();
    Tensor::from_slice(&idx).to_device(dev)
}

impl Problem<'_> {
    fn weights(p: &Tensor) -> Tensor {
        let d = p.size()[0] - 1;
        p.narrow(0, 0, d)
    }

    /// `X P_w + P_b` for the columns `idx` of `p`, in `X`'s precision,
    /// widened to f64 `[n, |idx|]`.
    fn linear(&self, p: &Tensor, idx: &Tensor) -> Tensor {
        let d = p.size()[0] - 1;
        let p = p.index_select(1, idx).to_kind(self.x.kind());
        (self.x.matmul(&p.narrow(0, 0, d)) + p.narrow(0, d, 1)).to_kind(Kind::Double)
    }

    /// `[n, k]` f64 tensor -> row-major host vector (into `out`).
    fn scatter_host(full: &Tensor, out: &mut [f64]) {
        let len = out.len();
        full.to_device(tch::Device::Cpu)
            .contiguous()
            .copy_data(out, len);
    }

    /// Minimises from `start` (`[d + 1, k]`, f64).
    pub fn solve(&self, start: &Tensor, settings: &Settings) -> Outcome {
        tch::no_grad(|| self.solve_inner(start, settings))
    }

    /// Per-column maxima of `|g|` (the joint maximum for the multinomial).
    fn max_abs(&self, g: &Tensor) -> Vec<f64> {
        let k = g.size()[1];
        let m = if self.loss.multinomial() {
            g.abs().max().expand([k], false)
        } else {
            g.abs().amax([0], false)
        };
        to_vec(&m)
    }

    /// Objective `[k]` from data losses and the weights' penalty.
    fn value(&self, data: &[f64], params: &Tensor, n: &[f64]) -> Vec<f64> {
        let ww = to_vec(&self.loss.reduce(&Self::weights(params).square()));
        (0..n.len())
            .map(|j| (data[j] + ww[j] / (2.0 * self.c)) / n[j])
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    /// Gradient `[d + 1, k]` from the residual `r`: recomputed for the
    /// columns `cols`, taken from `old` elsewhere.
    fn gradient(
        &self,
        params: &Tensor,
        r: &[f64],
        rsum: &[f64],
        cols: &[bool],
        n: &Tensor,
        old: Option<&Tensor>,
        profile: &mut Profile,
    ) -> Tensor {
        let k = cols.len() as i64;
        let dev = params.device();
        let idx = indices(cols, dev);
        let rows = r.len() as i64 / k;
        let started = Instant::now();
        let ra = Tensor::from_slice(r)
            .view([rows, k])
            .to_device(dev)
            .index_select(1, &idx)
            .to_kind(self.x.kind());
        // Rᵀ X (then transposed) rather than Xᵀ R: the same product, but
        // MKL streams the row-major X about twice as fast in this orientation.
        let gw = ra.tr().matmul(self.x).tr().to_kind(Kind::Double);
        profile.gradient_product_s += started.elapsed().as_secs_f64();
        let w = Self::weights(params).index_select(1, &idx);
        let gb = Tensor::from_slice(rsum)
            .to_device(dev)
            .index_select(0, &idx)
            .view([1, -1]);
        let g = Tensor::cat(&[gw + w / self.c, gb], 0) / n.index_select(0, &idx);
        match old {
            Some(old) if (idx.size()[0]) < k => old.index_copy(1, &idx, &g),
            _ => g,
        }
    }

    fn solve_inner(&self, start: &Tensor, settings: &Settings) -> Outcome {
        let solve_started = Instant::now();
        let k = start.size()[1];
        let ku = k as usize;
        let dev = start.device();
        let n_t = self.loss.counts(k);
        let n = to_vec(&n_t);
        let mut profile = Profile::default();
        let (y, mask) = self.loss.targets();
        let rows = Rows {
            k: ku,
            multinomial: self.loss.multinomial(),
            y,
            mask,
        };
        let nr = self.x.size()[0] as usize;
        let start = start.to_kind(Kind::Double);
        let all = vec![true; ku];
        let mut z = vec![0.0; nr * ku];
        Self::scatter_host(&self.linear(&start, &indices(&all, dev)), &mut z);
        let mut r = vec![0.0; nr * ku];
        let sums = rows.step(&mut z, None, &vec![0.0; ku], &all, &mut r);
        let value = self.value(&sums.loss, &start, &n);
        let grad = self.gradient(&start, &r, &sums.other, &all, &n_t, None, &mut profile);
        let mut at = Point {
            params: start,
            value,
            grad,
        };
        let mut u = vec![0.0; nr * ku];
        let mut scratch = vec![0.0; nr * ku];
        let mut history: Vec<(Tensor, Tensor, Tensor)> = Vec::new();
        let tol = settings.tol;
        let mut active: Vec<bool> = self.max_abs(&at.grad).iter().map(|g| *g > tol).collect();
        let mut iterations = vec![0usize; ku];
        for it in 0..settings.max_iter {
            if !active.iter().any(|a| *a) {
                break;
            }
            profile.rounds += 1;
            profile.column_rounds += active.iter().filter(|a| **a).count();
            let active_t = Tensor::from_slice(&active).to_device(dev);
            let direction = self.direction(&at.grad, &history, &active_t);
            let slope0 = to_vec(&self.loss.reduce(&(&direction * &at.grad)));
            let started = Instant::now();
            let ua = self.linear(&direction, &indices(&active, dev));
            let full = if ua.size()[1] == k {
                ua
            } else {
                Tensor::zeros([nr as i64, k], (Kind::Double, dev)).index_copy(
                    1,
                    &indices(&active, dev),
                    &ua,
                )
            };
            Self::scatter_host(&full, &mut u);
            profile.direction_product_s += started.elapsed().as_secs_f64();
            // scipy's first step is 1/|g|; afterwards the quasi-Newton step 1.
            let t0 = if it == 0 {
                to_vec(&self.loss.reduce(&at.grad.square()))
                    .iter()
                    .map(|g2| 1.0 / (g2.sqrt() + 1e-300))
                    .collect()
            } else {
                vec![1.0; ku]
            };
            let w = Self::weights(&at.params);
            let dw = Self::weights(&direction);
            let line = Line {
                ww: to_vec(&self.loss.reduce(&w.square())),
                wd: to_vec(&self.loss.reduce(&(&w * &dw))),
                dd: to_vec(&self.loss.reduce(&dw.square())),
                c: self.c,
                n: &n,
                value0: &at.value,
                slope0: &slope0,
            };
            let started = Instant::now();
            let (step, trials, hit) = line.search(&rows, &z, &u, t0, &active, &mut scratch);
            profile.line_search_s += started.elapsed().as_secs_f64();
            profile.trials += trials;
            profile.max_trials = profile.max_trials.max(trials);
            let moved: Vec<bool> = (0..ku).map(|j| active[j] && step[j] > 0.0).collect();
            let t: Vec<f64> = (0..ku)
                .map(|j| if moved[j] { step[j] } else { 0.0 })
                .collect();
            let moved_t = Tensor::from_slice(&moved)
                .to_device(dev)
                .to_kind(Kind::Double);
            let params = &at.params + &direction * Tensor::from_slice(&t).to_device(dev);
            let started = Instant::now();
            // The accepted trials left their residuals in `scratch`; columns
            // that kept a fallback step (and the joint problem) get a pass
            // of their own. `r` is only read for moved columns.
            std::mem::swap(&mut r, &mut scratch);
            let exact: Vec<bool> = (0..ku)
                .map(|j| moved[j] && hit[j].is_some() && !rows.multinomial)
                .collect();
            let redo: Vec<bool> = (0..ku).map(|j| moved[j] && !exact[j]).collect();
            rows.advance(&mut z, &u, &t, &exact);
            let mut sums = rows.step(&mut z, Some(&u), &t, &redo, &mut r);
            for j in 0..ku {
                if let (true, Some((loss, rsum))) = (exact[j], hit[j]) {
                    sums.loss[j] = loss;
                    sums.other[j] = rsum;
                }
            }
            profile.step_s += started.elapsed().as_secs_f64();
            let fresh = self.value(&sums.loss, &params, &n);
            let value = (0..ku)
                .map(|j| if moved[j] { fresh[j] } else { at.value[j] })
                .collect();
            let grad = if moved.iter().any(|m| *m) {
                self.gradient(
                    &params,
                    &r,
                    &sums.other,
                    &moved,
                    &n_t,
                    Some(&at.grad),
                    &mut profile,
                )
            } else {
                at.grad.shallow_clone()
            };
            let next = Point {
                params,
                value,
                grad,
            };
            let s = &next.params - &at.params;
            let y = (&next.grad - &at.grad) * &moved_t;
            let sy = self.loss.reduce(&(&s * &y));
            // A pair without positive curvature (or a frozen column) is left
            // out of that column's two-loop recursion.
            let rho = select(
                &sy.gt(1e-300),
                &sy.clamp_min(1e-300).reciprocal(),
                &sy.zeros_like(),
            );
            history.push((s, y, rho));
            if history.len() > settings.memory {
                drop(history.remove(0));
            }
            for j in 0..ku {
                if active[j] {
                    iterations[j] += 1;
                }
            }
            at = next;
            let max_grad = self.max_abs(&at.grad);
            for j in 0..ku {
                // A column whose line search found no decrease is stuck.
                active[j] = active[j] && moved[j] && max_grad[j] > tol;
            }
        }
        let total = solve_started.elapsed().as_secs_f64();
        profile.other_s = (total
            - profile.direction_product_s
            - profile.gradient_product_s
            - profile.line_search_s
            - profile.step_s)
            .max(0.0);
        let max_grad = self.max_abs(&at.grad);
        Outcome {
            objective: at.value,
            converged: max_grad.iter().map(|g| *g <= settings.tol).collect(),
            max_grad,
            iterations,
            params: at.params,
            profile,
        }
    }

    /// The two-loop recursion, column by column; zero on inactive columns.
    fn direction(
        &self,
        grad: &Tensor,
        history: &[(Tensor, Tensor, Tensor)],
        active: &Tensor,
    ) -> Tensor {
        // A copy: the in-place updates below must not reach the caller's gradient.
        let mut q = grad.copy();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let alpha = rho * self.loss.reduce(&(s * &q));
            q -= y * &alpha;
            alphas.push(alpha);
        }
        if let Some((s, y, _)) = history.last() {
            let sy = self.loss.reduce(&(s * y));
            let yy = self.loss.reduce(&y.square());
            let curved = yy.gt(1e-300).logical_and(&sy.gt(1e-300));
            let gamma = select(&curved, &(&sy / yy.clamp_min(1e-300)), &sy.ones_like());
            q *= gamma;
        }
        for ((s, y, rho), alpha) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * self.loss.reduce(&(y * &q));
            q += s * (alpha - beta);
        }
        let mut direction = -q * active;
        // Guard against a non-descent direction from round-off: fall back to
        // steepest descent in that column.
        let slope = self.loss.reduce(&(&direction * grad));
        let bad = slope.ge(0.0).logical_and(active);
        if bool::try_from(bad.any()).unwrap_or(false) {
            direction = select(&bad, &(-grad), &direction);
        }
        direction
    }
}

/// The objective along one search direction, per column: the data term from
/// a fused pass, the penalty `|w + t dw|²` from three scalars.
struct Line<'a> {
    ww: Vec<f64>,
    wd: Vec<f64>,
    dd: Vec<f64>,
    c: f64,
    n: &'a [f64],
    value0: &'a [f64],
    slope0: &'a [f64],
}

impl Line<'_> {
    /// Per-column steps meeting the strong Wolfe conditions (c1 = 1e-4,
    /// c2 = 0.9), 0 where none was found; the trial passes it took; and per
    /// column, where the step was an accepted trial, that trial's data loss
    /// and residual sum (its residual is then in `r`).
    #[allow(clippy::type_complexity)]
    fn search(
        &self,
        rows: &Rows,
        z: &[f64],
        u: &[f64],
        t0: Vec<f64>,
        active: &[bool],
        r: &mut [f64],
    ) -> (Vec<f64>, usize, Vec<Option<(f64, f64)>>) {
        const C1: f64 = 1e-4;
        const C2: f64 = 0.9;
        const VALUE_NOISE: f64 = 1e-13;
        let k = active.len();
        let mut t = t0;
        let mut lo = vec![0.0; k];
        let mut slope_lo = self.slope0.to_vec();
        let mut hi = vec![f64::INFINITY; k];
        let mut slope_hi = vec![0.0; k];
        let mut done: Vec<bool> = active.iter().map(|a| !a).collect();
        let mut accepted = vec![0.0; k];
        let mut hit = vec![None; k];
        let mut trials = 0;
        for _ in 0..40 {
            let open: Vec<bool> = done.iter().map(|d| !d).collect();
            let sums = rows.trial(z, u, &t, &open, r);
            trials += 1;
            for j in 0..k {
                if done[j] {
                    continue;
                }
                let tj = t[j];
                let value = (sums.loss[j]
                    + (self.ww[j] + 2.0 * tj * self.wd[j] + tj * tj * self.dd[j]) / (2.0 * self.c))
                    / self.n[j];
                let slope = (sums.other[j] + (self.wd[j] + tj * self.dd[j]) / self.c) / self.n[j];
                // Near the optimum the decrease Armijo asks for drops below
                // the round-off of the value itself, so a step whose value is
                // within that round-off also passes (Hager and Zhang's
                // approximate Wolfe conditions); the slope stays accurate.
                let noise = VALUE_NOISE * self.value0[j].abs();
                let armijo = value <= self.value0[j] + self.slope0[j] * tj * C1
                    || (value <= self.value0[j] + noise && slope <= 0.0);
                let curvature = slope.abs() <= self.slope0[j].abs() * C2;
                if armijo && curvature {
                    accepted[j] = tj;
                    hit[j] = Some((sums.loss[j], sums.rsum[j]));
                    done[j] = true;
                    continue;
                }
                // The minimum lies before t when the slope turned positive or
                // the value rose; after it otherwise.
                if slope > 0.0 || value > self.value0[j] + noise {
                    hi[j] = tj;
                    slope_hi[j] = slope;
                } else {
                    lo[j] = tj;
                    slope_lo[j] = slope;
                }
                // Secant on the slope inside the bracket, kept away from its
                // ends; expansion while no upper end is known.
                t[j] = if hi[j].is_finite() {
                    let width = hi[j] - lo[j];
                    let secant = lo[j] - slope_lo[j] * width / (slope_hi[j] - slope_lo[j]);
                    if secant.is_nan() {
                        (lo[j] + hi[j]) * 0.5
                    } else {
                        secant.max(lo[j] + width * 0.1).min(hi[j] - width * 0.1)
                    }
                } else {
                    tj * 4.0
                };
            }
            if done.iter().all(|d| *d) {
                break;
            }
        }
        // Columns without a Wolfe step keep the best decrease seen (lo).
        let step = (0..k)
            .map(|j| {
                if !done[j] && lo[j] > 0.0 {
                    lo[j]
                } else {
                    accepted[j]
                }
            })
            .collect();
        (step, trials, hit)
    }
}
