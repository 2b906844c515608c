//! Learning-rate schedules, evaluated per optimisation step (the original
//! built a cosine scheduler and never stepped it: its rate was constant).

use crate::error::{Error, Result};

/// The schedule's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Half a cosine from the base rate down to `min_lr` over the steps after
    /// warm-up.
    Cosine,
    /// The base rate throughout (after warm-up).
    Constant,
    /// The base rate after warm-up, cut by [`Plateau`] when the validation
    /// loss stops improving (ConVIRT's and GLoRIA's schedule).
    Plateau,
}

/// A per-step learning-rate schedule with linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// Shape after warm-up.
    pub shape: Shape,
    /// Peak learning rate.
    pub base_lr: f64,
    /// Final learning rate of the cosine.
    pub min_lr: f64,
    /// Steps of linear warm-up from `base_lr / warmup_steps`.
    pub warmup_steps: u64,
    /// Total optimisation steps of the run.
    pub total_steps: u64,
}

impl Schedule {
    /// The rate for step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.shape {
            Shape::Constant | Shape::Plateau => self.base_lr,
            Shape::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                self.min_lr
                    + 0.5
                        * (self.base_lr - self.min_lr)
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// PyTorch's `ReduceLROnPlateau` in `min` mode with its defaults
/// otherwise (relative threshold 1e-4, no cooldown, eps 1e-8).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plateau {
    /// Factor of each cut.
    pub factor: f64,
    /// Evaluations without improvement tolerated; the next one cuts.
    pub patience: usize,
    /// Floor of the rate.
    pub min_lr: f64,
}

/// Where a [`Plateau`] stands; saved with the run's progress.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlateauState {
    /// The current peak rate (the base rate until the first cut).
    pub lr: f64,
    /// Best loss so far (`None` before the first evaluation).
    pub best: Option<f64>,
    /// Evaluations since the last improvement or cut.
    pub bad: usize,
}

/// PyTorch's relative threshold of an improvement.
const PLATEAU_THRESHOLD: f64 = 1e-4;
/// Cuts smaller than this are not made (PyTorch's `eps`).
const PLATEAU_EPS: f64 = 1e-8;

impl Plateau {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::PlateauFactor`] for a factor outside (0, 1),
    /// [`Error::MinLr`] for a negative or non-finite floor.
    pub fn validate(&self) -> Result<()> {
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(Error::PlateauFactor {
                factor: self.factor,
            });
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0) {
            return Err(Error::MinLr {
                min_lr: self.min_lr,
            });
        }
        Ok(())
    }

    /// The state at the start of a run with peak rate `lr`.
    pub fn start(&self, lr: f64) -> PlateauState {
        PlateauState {
            lr,
            best: None,
            bad: 0,
        }
    }

    /// Records one validation loss; returns whether the rate was cut.
    pub fn observe(&self, state: &mut PlateauState, loss: f64) -> bool {
        // As PyTorch compares: a NaN loss is never an improvement.
        if loss < state.best.unwrap_or(f64::INFINITY) * (1.0 - PLATEAU_THRESHOLD) {
            state.best = Some(loss);
            state.bad = 0;
        } else {
            state.bad += 1;
        }
        if state.bad <= self.patience {
            return false;
        }
        state.bad = 0;
        let cut = (state.lr * self.factor).max(self.min_lr);
        if state.lr - cut > PLATEAU_EPS {
            state.lr = cut;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rates `torch.optim.lr_scheduler.ReduceLROnPlateau(opt,
    /// factor=0.5, patience=2, min_lr=0.03)` (torch 2.13.0) sets after each
    /// of these losses, starting from lr 0.1.
    #[test]
    fn plateau_matches_pytorch() {
        let losses = [
            1.0,
            0.9,
            0.95,
            0.9,
            0.89995,
            0.7,
            0.7,
            0.71,
            0.72,
            0.69993,
            0.7,
            0.7,
            0.7,
            0.7,
            0.7,
            0.7,
            0.7,
            0.7,
            f64::NAN,
            0.1,
        ];
        let expected = [
            0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03,
            0.03, 0.03, 0.03, 0.03, 0.03,
        ];
        let p = Plateau {
            factor: 0.5,
            patience: 2,
            min_lr: 0.03,
        };
        let mut s = p.start(0.1);
        for (i, (&loss, &lr)) in losses.iter().zip(&expected).enumerate() {
            p.observe(&mut s, loss);
            assert!(
                (s.lr - lr).abs() < 1e-15,
                "after loss {i}: {} vs {lr}",
                s.lr
            );
        }
    }

    #[test]
    fn cosine_with_warmup() {
        let s = Schedule {
            shape: Shape::Cosine,
            base_lr: 0.1,
            min_lr: 0.0,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert!((s.lr(0) - 0.01).abs() < 1e-15);
        assert!((s.lr(9) - 0.1).abs() < 1e-15);
        assert!((s.lr(10) - 0.1).abs() < 1e-15);
        assert!((s.lr(60) - 0.05).abs() < 1e-12);
        assert!(s.lr(109) < 1e-4 && s.lr(109) > 0.0);
        // Strictly decreasing after warm-up.
        assert!((10..109).all(|t| s.lr(t + 1) < s.lr(t)));
    }

    #[test]
    fn constant_stays_put() {
        let s = Schedule {
            shape: Shape::Constant,
            base_lr: 1e-3,
            min_lr: 0.0,
            warmup_steps: 0,
            total_steps: 5,
        };
        assert!((0..5).all(|t| s.lr(t) == 1e-3));
    }
}
