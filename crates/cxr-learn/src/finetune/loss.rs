//! Training losses with unknown labels left out: binary cross-entropy per
//! label (masked) for binary and multi-label tasks, cross-entropy over
//! classes (unknown rows ignored) for multi-class ones.

use cxr_data::labels::Task;
use cxr_data::store::read::Store;
use tch::{Device, Kind, Reduction, Tensor};

use crate::error::{Error, Result};

/// The training targets of a store, on the training device.
#[derive(Debug)]
pub struct Targets {
    /// Multi-class (cross-entropy) or per-label binary.
    multiclass: bool,
    /// Per store row: `[k]` targets (NaN unknown) or `[1]` class (NaN unknown).
    rows: Vec<Vec<f32>>,
    /// Binary: positive weights `[k]`; multi-class: class weights `[k]`.
    weights: Option<Tensor>,
    k: usize,
    device: Device,
}

impl Targets {
    /// Targets of every store row; class weights from the `train` rows when
    /// `balanced`.
    ///
    /// # Errors
    /// [`Error::UntrainableLabel`] naming a label (binary) without both
    /// classes among the known training rows; [`Error::SingleTrainingClass`]
    /// for a multi-class task with fewer than two.
    pub fn new(store: &Store, train: &[usize], balanced: bool, device: Device) -> Result<Self> {
        let multiclass = store.meta.task == Task::Multiclass;
        let k = store.meta.labels.len();
        let rows: Vec<Vec<f32>> = store
            .rows
            .iter()
            .map(|r| r.targets.iter().map(|t| t.unwrap_or(f32::NAN)).collect())
            .collect();
        let mut pos = vec![0usize; k];
        let mut neg = vec![0usize; k];
        for &i in train {
            if multiclass {
                if let Some(c) = rows[i].first().filter(|c| !c.is_nan()) {
                    pos[*c as usize] += 1;
                }
            } else {
                for (j, t) in rows[i].iter().enumerate() {
                    if *t == 1.0 {
                        pos[j] += 1;
                    } else if *t == 0.0 {
                        neg[j] += 1;
                    }
                }
            }
        }
        if multiclass {
            if pos.iter().filter(|&&p| p > 0).count() < 2 {
                return Err(Error::SingleTrainingClass);
            }
        } else if let Some(j) = (0..k).find(|&j| pos[j] == 0 || neg[j] == 0) {
            return Err(Error::UntrainableLabel {
                label: store.meta.labels[j].clone(),
                positives: pos[j],
                negatives: neg[j],
            });
        }
        let weights = balanced.then(|| {
            let w: Vec<f32> = if multiclass {
                let n: usize = pos.iter().sum();
                pos.iter()
                    .map(|&p| n as f32 / (k as f32 * p.max(1) as f32))
                    .collect()
            } else {
                (0..k).map(|j| neg[j] as f32 / pos[j] as f32).collect()
            };
            Tensor::from_slice(&w).to_device(device)
        });
        Ok(Self {
            multiclass,
            rows,
            weights,
            k,
            device,
        })
    }

    /// Mean loss of `logits` (`[n, k]`) against the rows `indices`; 0 when
    /// the batch has no known target.
    pub fn loss(&self, logits: &Tensor, indices: &[usize]) -> Tensor {
        let (sum, count) = self.loss_parts(logits, indices);
        sum / count.clamp_min(1.0)
    }

    /// The loss as a sum over known targets and the count it is divided by
    /// (the weight of the known targets when classes are weighted). Data
    /// parallelism divides each rank's sum by the count summed over ranks,
    /// which makes the ranks' gradients add up to the single-process one.
    pub fn loss_parts(&self, logits: &Tensor, indices: &[usize]) -> (Tensor, Tensor) {
        let n = indices.len() as i64;
        let zero = || Tensor::zeros([], (Kind::Float, self.device));
        if self.multiclass {
            let classes: Vec<i64> = indices
                .iter()
                .map(|&i| {
                    self.rows[i]
                        .first()
                        .filter(|c| !c.is_nan())
                        .map_or(-100, |c| *c as i64)
                })
                .collect();
            let known: Vec<i64> = classes.iter().copied().filter(|&c| c >= 0).collect();
            if known.is_empty() {
                return (logits.sum(Kind::Float) * 0.0, zero());
            }
            let target = Tensor::from_slice(&classes).to_device(self.device);
            let sum = logits.cross_entropy_loss(
                &target,
                self.weights.as_ref(),
                Reduction::Sum,
                -100,
                0.0,
            );
            // Cross-entropy's weighted mean divides by the targets' weights.
            let count = match &self.weights {
                Some(w) => w
                    .index_select(0, &Tensor::from_slice(&known).to_device(self.device))
                    .sum(Kind::Float),
                None => Tensor::from(known.len() as f32).to_device(self.device),
            };
            return (sum, count);
        }
        let flat: Vec<f32> = indices
            .iter()
            .flat_map(|&i| self.rows[i].iter().copied())
            .collect();
        let y = Tensor::from_slice(&flat)
            .view([n, self.k as i64])
            .to_device(self.device);
        let mask = y.isnan().logical_not().to_kind(Kind::Float);
        let y0 = y.nan_to_num(0.0, None, None);
        let per = logits.binary_cross_entropy_with_logits(
            &y0,
            None::<&Tensor>,
            self.weights.as_ref(),
            Reduction::None,
        );
        ((per * &mask).sum(Kind::Float), mask.sum(Kind::Float))
    }
}

/// Mean validation loss from probabilities (binary cross-entropy over known
/// entries, or the negative log-probability of the true class).
pub fn val_loss(targets: &[f32], probs: &[f32], multiclass: bool) -> f64 {
    let eps = 1e-7f64;
    let mut sum = 0.0;
    let mut count = 0usize;
    for (t, p) in targets.iter().zip(probs) {
        if t.is_nan() {
            continue;
        }
        let p = f64::from(*p).clamp(eps, 1.0 - eps);
        if multiclass {
            if *t == 1.0 {
                sum -= p.ln();
                count += 1;
            }
        } else {
            sum -= if *t == 1.0 { p.ln() } else { (1.0 - p).ln() };
            count += 1;
        }
    }
    sum / count.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_loss_by_hand() {
        let l = val_loss(&[1.0, 0.0, f32::NAN], &[0.8, 0.4, 0.9], false);
        let want = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        assert!((l - want).abs() < 1e-6);
        let l = val_loss(&[0.0, 1.0, 0.0], &[0.2, 0.5, 0.3], true);
        assert!((l - 2.0f64.ln()).abs() < 1e-6);
    }
}
