//! Learning-rate schedules, evaluated per optimisation step (the original
//! built a cosine scheduler and never stepped it: its rate was constant).

/// The schedule's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Half a cosine from the base rate down to `min_lr` over the steps after
    /// warm-up.
    Cosine,
    /// The base rate throughout (after warm-up).
    Constant,
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
            Shape::Constant => self.base_lr,
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

#[cfg(test)]
mod tests {
    use super::*;

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
