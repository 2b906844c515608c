//! The fused passes of the probe's L-BFGS over the rows: the data loss of
//! every column and its slope along a search line in one pass, in parallel
//! over row chunks, on host copies of the logits (see [`super::lbfgs`]).

// The per-column loops index several parallel per-column arrays at once.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;
use tch::{Kind, Tensor};

/// Rows per parallel chunk of the fused passes: big enough to amortise the
/// task overhead, small enough to balance over a few threads.
pub(super) const CHUNK_ROWS: usize = 2048;

/// `a` where `cond` holds, else `b`.
pub(crate) fn select(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    a.where_self(cond, b)
}

/// The data term of the objective.
#[derive(Debug)]
pub enum DataLoss {
    /// Independent binary log-losses, one per column. `y` and `mask` are
    /// `[n, k]`; a zero in `mask` leaves that (row, column) out.
    Binary {
        /// Targets, 0 or 1 (anything where `mask` is 0).
        y: Tensor,
        /// 1 where the target is known.
        mask: Tensor,
    },
    /// One multinomial (softmax) log-loss over all columns. `y` is one-hot
    /// `[n, k]`, `mask` is `[n, 1]`.
    Multinomial {
        /// One-hot targets.
        y: Tensor,
        /// 1 for rows with a known class.
        mask: Tensor,
    },
}

pub(super) fn host(t: &Tensor) -> Vec<f64> {
    let t = t
        .to_kind(Kind::Double)
        .to_device(tch::Device::Cpu)
        .contiguous();
    let len = t.numel();
    let mut out = vec![0.0; len];
    t.copy_data(&mut out, len);
    out
}

impl DataLoss {
    pub(super) fn multinomial(&self) -> bool {
        matches!(self, Self::Multinomial { .. })
    }

    /// Per-problem sums of `a` (`[r, k]` -> `[k]`): column sums for
    /// independent problems, the total (repeated) for the joint one.
    pub(super) fn reduce(&self, a: &Tensor) -> Tensor {
        match self {
            Self::Binary { .. } => a.sum_dim_intlist(0, false, Kind::Double),
            Self::Multinomial { .. } => {
                let k = a.size()[1];
                a.sum(Kind::Double).expand([k], false)
            }
        }
    }

    /// Known rows per problem, `[k]`.
    pub(super) fn counts(&self, k: i64) -> Tensor {
        match self {
            Self::Binary { mask, .. } => mask.sum_dim_intlist(0, false, Kind::Double),
            Self::Multinomial { mask, .. } => mask.sum(Kind::Double).expand([k], false),
        }
    }

    pub(super) fn targets(&self) -> (Vec<f64>, Vec<f64>) {
        match self {
            Self::Binary { y, mask } | Self::Multinomial { y, mask } => (host(y), host(mask)),
        }
    }
}

/// Row-major `[n, k]` host state of the fused passes.
pub(super) struct Rows {
    pub(super) k: usize,
    pub(super) multinomial: bool,
    pub(super) y: Vec<f64>,
    /// `[n, k]` (binary) or `[n]` (multinomial).
    pub(super) mask: Vec<f64>,
}

/// Per-column sums from one fused pass.
pub(super) struct Sums {
    /// Data loss.
    pub(super) loss: Vec<f64>,
    /// Trial: `Σ residual · u` (the slope along the line); after a step:
    /// `Σ residual` (the intercept's gradient).
    pub(super) other: Vec<f64>,
    /// Trial: `Σ residual`.
    pub(super) rsum: Vec<f64>,
}

impl Sums {
    pub(super) fn zeros(k: usize) -> Self {
        Self {
            loss: vec![0.0; k],
            other: vec![0.0; k],
            rsum: vec![0.0; k],
        }
    }

    pub(super) fn add(mut self, b: &Self) -> Self {
        for (a, b) in self.loss.iter_mut().zip(&b.loss) {
            *a += b;
        }
        for (a, b) in self.other.iter_mut().zip(&b.other) {
            *a += b;
        }
        for (a, b) in self.rsum.iter_mut().zip(&b.rsum) {
            *a += b;
        }
        self
    }

    /// The joint problem's totals repeated in every column (the residual
    /// sums stay per column: each class's intercept has its own entry).
    pub(super) fn joint(mut self) -> Self {
        let (l, o) = (self.loss.iter().sum(), self.other.iter().sum());
        self.loss.fill(l);
        self.other.fill(o);
        self
    }
}

/// Log-loss `softplus(z) - y z` and residual `sigmoid(z) - y` of one logit,
/// stable for any z.
#[inline]
pub(super) fn binary_term(z: f64, y: f64) -> (f64, f64) {
    let e = (-z.abs()).exp();
    let softplus = z.max(0.0) + e.ln_1p();
    let sigmoid = if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (softplus - y * z, sigmoid - y)
}

impl Rows {
    pub(super) fn chunk(&self) -> usize {
        CHUNK_ROWS * self.k
    }

    /// Data loss, `Σ residual · u` and `Σ residual` per column at `z + t u`,
    /// only for the columns in `cols` (zero elsewhere), writing their
    /// residual into `r` so that an accepted trial needs no second pass.
    pub(super) fn trial(
        &self,
        z: &[f64],
        u: &[f64],
        t: &[f64],
        cols: &[bool],
        r: &mut [f64],
    ) -> Sums {
        let k = self.k;
        let c = self.chunk();
        let parts: Vec<Sums> = r
            .par_chunks_mut(c)
            .zip(z.par_chunks(c).zip(u.par_chunks(c)))
            .enumerate()
            .map(|(ci, (r, (z, u)))| {
                let row0 = ci * CHUNK_ROWS;
                let mut s = Sums::zeros(k);
                let mut zt = vec![0.0; k];
                let rows = r
                    .chunks_exact_mut(k)
                    .zip(z.chunks_exact(k).zip(u.chunks_exact(k)));
                for (row, (r, (z, u))) in rows.enumerate() {
                    let i = row0 + row;
                    let y = &self.y[i * k..(i + 1) * k];
                    if self.multinomial {
                        let m = self.mask[i];
                        for j in 0..k {
                            zt[j] = z[j] + t[j] * u[j];
                        }
                        let lse = log_sum_exp(&zt);
                        for j in 0..k {
                            r[j] = m * ((zt[j] - lse).exp() - y[j]);
                            if m != 0.0 {
                                s.loss[0] += m * y[j] * (lse - zt[j]);
                            }
                            s.other[0] += r[j] * u[j];
                            s.rsum[j] += r[j];
                        }
                    } else {
                        let mask = &self.mask[i * k..(i + 1) * k];
                        for j in 0..k {
                            if !cols[j] {
                                continue;
                            }
                            let m = mask[j];
                            if m == 0.0 {
                                r[j] = 0.0;
                                continue;
                            }
                            let (l, res) = binary_term(z[j] + t[j] * u[j], y[j]);
                            r[j] = m * res;
                            s.loss[j] += m * l;
                            s.other[j] += r[j] * u[j];
                            s.rsum[j] += r[j];
                        }
                    }
                }
                s
            })
            .collect();
        let sums = parts.iter().fold(Sums::zeros(k), Sums::add);
        if self.multinomial { sums.joint() } else { sums }
    }

    /// Moves `z` by `t u` in the columns `cols`, without the loss.
    pub(super) fn advance(&self, z: &mut [f64], u: &[f64], t: &[f64], cols: &[bool]) {
        let k = self.k;
        z.par_chunks_mut(self.chunk())
            .zip(u.par_chunks(self.chunk()))
            .for_each(|(z, u)| {
                for (z, u) in z.chunks_exact_mut(k).zip(u.chunks_exact(k)) {
                    for j in 0..k {
                        if cols[j] {
                            z[j] += t[j] * u[j];
                        }
                    }
                }
            });
    }

    /// Moves `z` by `t u` (when given) in the columns `cols`, writes the
    /// residual there into `r`, and returns their data loss and residual sums.
    pub(super) fn step(
        &self,
        z: &mut [f64],
        u: Option<&[f64]>,
        t: &[f64],
        cols: &[bool],
        r: &mut [f64],
    ) -> Sums {
        let k = self.k;
        let c = self.chunk();
        let empty: &[f64] = &[];
        let parts: Vec<Sums> = z
            .par_chunks_mut(c)
            .zip(r.par_chunks_mut(c))
            .enumerate()
            .map(|(ci, (z, r))| {
                let row0 = ci * CHUNK_ROWS;
                let u = u.map_or(empty, |u| &u[row0 * k..row0 * k + z.len()]);
                let mut s = Sums::zeros(k);
                for (rr, (z, r)) in z.chunks_exact_mut(k).zip(r.chunks_exact_mut(k)).enumerate() {
                    let i = row0 + rr;
                    if !u.is_empty() {
                        let u = &u[rr * k..(rr + 1) * k];
                        for j in 0..k {
                            if cols[j] {
                                z[j] += t[j] * u[j];
                            }
                        }
                    }
                    let y = &self.y[i * k..(i + 1) * k];
                    if self.multinomial {
                        let m = self.mask[i];
                        let lse = log_sum_exp(z);
                        for j in 0..k {
                            let p = (z[j] - lse).exp();
                            r[j] = m * (p - y[j]);
                            s.loss[0] += if m == 0.0 {
                                0.0
                            } else {
                                m * y[j] * (lse - z[j])
                            };
                            s.other[j] += r[j];
                        }
                    } else {
                        let mask = &self.mask[i * k..(i + 1) * k];
                        for j in 0..k {
                            if !cols[j] {
                                continue;
                            }
                            let m = mask[j];
                            if m == 0.0 {
                                r[j] = 0.0;
                                continue;
                            }
                            let (l, res) = binary_term(z[j], y[j]);
                            s.loss[j] += m * l;
                            r[j] = m * res;
                            s.other[j] += r[j];
                        }
                    }
                }
                s
            })
            .collect();
        let mut sums = parts.iter().fold(Sums::zeros(k), Sums::add);
        if self.multinomial {
            // The loss is the joint total; the residual sums stay per column
            // (each class's intercept has its own gradient entry).
            let l = sums.loss.iter().sum();
            sums.loss.fill(l);
        }
        sums
    }
}

pub(super) fn log_sum_exp(z: &[f64]) -> f64 {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}
