//! Validation during pretraining: a patient-disjoint share of the training
//! rows held out of the gradient, its loss measured periodically, and what
//! the loss steers: the plateau schedule (ConVIRT, GLoRIA), the exported
//! encoder (the best validation loss, as ConVIRT keeps it) and early
//! stopping (GLoRIA).
//!
//! The held-out rows still belong to the store's training split, so
//! downstream validation and test numbers stay as clean as without them.
//! Image-text objectives tokenise their reports with the rest (a trained
//! vocabulary sees their text; no gradient ever does).

use std::collections::BTreeMap;

use cxr_data::store::read::Store;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::Error;
use crate::schedule::{Plateau, PlateauState};

/// What a pretraining run validates and how the result is used.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Validation {
    /// Share of the training rows held out, whole patients at a time.
    pub fraction: f64,
    /// Validate every this many steps (0: at each epoch's end).
    pub every: u64,
    /// Cut the rate when the loss stops improving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plateau: Option<Plateau>,
    /// Stop after this many evaluations without a new best loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<usize>,
}

impl Validation {
    /// Checks the settings.
    ///
    /// # Errors
    /// A fraction outside (0, 0.5], a bad plateau, or a patience of 0.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.fraction > 0.0 && self.fraction <= 0.5) {
            return Err(Error::ValFraction {
                fraction: self.fraction,
            });
        }
        if let Some(p) = &self.plateau {
            p.validate()?;
        }
        if self.early_stop == Some(0) {
            return Err(Error::EarlyStopPatience);
        }
        Ok(())
    }
}

/// Where validation stands; saved with the run's progress so `--resume`
/// continues the same decisions.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tracker {
    /// Evaluations so far.
    pub evaluations: u64,
    /// Lowest loss so far and the step it was measured after.
    pub best: Option<(f64, u64)>,
    /// Evaluations since the best one.
    pub since_best: usize,
    /// The plateau schedule's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plateau: Option<PlateauState>,
    /// Early stopping has ended the run.
    #[serde(default)]
    pub stopped: bool,
}

/// What one evaluation decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// A new lowest loss: the encoder is exported.
    pub improved: bool,
    /// The plateau schedule cut the rate.
    pub cut: bool,
    /// Early stopping ends the run.
    pub stop: bool,
}

impl Tracker {
    /// A fresh tracker for `v` at peak rate `lr`.
    pub fn new(v: &Validation, lr: f64) -> Self {
        Self {
            plateau: v.plateau.map(|p| p.start(lr)),
            ..Self::default()
        }
    }

    /// Records the loss measured after `step`. A non-finite loss is never
    /// an improvement.
    pub fn observe(&mut self, v: &Validation, loss: f64, step: u64) -> Verdict {
        self.evaluations += 1;
        let improved = loss.is_finite() && self.best.is_none_or(|(b, _)| loss < b);
        if improved {
            self.best = Some((loss, step));
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        let cut = match (&v.plateau, &mut self.plateau) {
            (Some(p), Some(s)) => p.observe(s, loss),
            _ => false,
        };
        let stop = v.early_stop.is_some_and(|n| self.since_best >= n);
        self.stopped |= stop;
        Verdict {
            improved,
            cut,
            stop,
        }
    }

    /// The factor on the schedule's rate (below 1 after plateau cuts).
    pub fn lr_factor(&self, base_lr: f64) -> f64 {
        match &self.plateau {
            Some(s) if base_lr > 0.0 => s.lr / base_lr,
            _ => 1.0,
        }
    }
}

/// The patient id of each store row, for [`hold_out`].
pub fn patient_of<'a>(store: &'a Store) -> impl Fn(usize) -> &'a str {
    |i| store.rows[i].patient_id.as_str()
}

/// Splits `rows` into training and validation rows: whole patients (rows
/// without a patient id count as their own) in a seeded order until the
/// validation side holds `fraction` of the rows. Both keep the order of
/// `rows`.
///
/// # Errors
/// When either side would be empty.
pub fn hold_out<'a>(
    rows: &[usize],
    patient: impl Fn(usize) -> &'a str,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), Error> {
    let mut patients: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut alone = Vec::new();
    for &i in rows {
        match patient(i) {
            "" => alone.push(i),
            p => patients.entry(p).or_default().push(i),
        }
    }
    let mut groups: Vec<Vec<usize>> = patients.into_values().collect();
    groups.extend(alone.into_iter().map(|i| vec![i]));
    groups.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7661_6c69_6461_7465));
    let want = (fraction * rows.len() as f64).ceil() as usize;
    let mut held = std::collections::HashSet::new();
    for g in groups {
        if held.len() >= want {
            break;
        }
        held.extend(g);
    }
    let (val, train): (Vec<usize>, Vec<usize>) = rows.iter().partition(|i| held.contains(i));
    if val.is_empty() || train.is_empty() {
        return Err(Error::HoldOut {
            fraction,
            rows: rows.len(),
        });
    }
    Ok((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(plateau: bool, early_stop: Option<usize>) -> Validation {
        Validation {
            fraction: 0.1,
            every: 0,
            plateau: plateau.then_some(Plateau {
                factor: 0.5,
                patience: 1,
                min_lr: 0.0,
            }),
            early_stop,
        }
    }

    #[test]
    fn best_plateau_and_early_stop() {
        let cfg = v(true, Some(3));
        let mut t = Tracker::new(&cfg, 0.1);
        let verdicts: Vec<Verdict> = [3.0, 2.0, 2.5, 2.4, 2.1, 2.2]
            .iter()
            .enumerate()
            .map(|(i, &l)| t.observe(&cfg, l, 10 * (i as u64 + 1)))
            .collect();
        let improved: Vec<bool> = verdicts.iter().map(|v| v.improved).collect();
        assert_eq!(improved, [true, true, false, false, false, false]);
        // Patience 1: the second evaluation without improvement cuts.
        let cut: Vec<bool> = verdicts.iter().map(|v| v.cut).collect();
        assert_eq!(cut, [false, false, false, true, false, true]);
        assert!((t.lr_factor(0.1) - 0.25).abs() < 1e-15);
        let stop: Vec<bool> = verdicts.iter().map(|v| v.stop).collect();
        assert_eq!(stop, [false, false, false, false, true, true]);
        assert_eq!(t.best, Some((2.0, 20)));
        assert!(t.stopped);
    }

    #[test]
    fn nan_is_never_best() {
        let cfg = v(false, None);
        let mut t = Tracker::new(&cfg, 0.1);
        assert!(!t.observe(&cfg, f64::NAN, 1).improved);
        assert!(t.observe(&cfg, 5.0, 2).improved);
        assert!(!t.observe(&cfg, f64::NAN, 3).improved);
        assert_eq!(t.best, Some((5.0, 2)));
        assert_eq!(t.lr_factor(0.1), 1.0);
    }

    #[test]
    fn hold_out_keeps_patients_whole_and_is_seeded() {
        // 60 rows of 20 patients (3 rows each) and 10 rows without an id.
        let ids: Vec<String> = (0..70)
            .map(|i| {
                if i < 60 {
                    format!("p{}", i % 20)
                } else {
                    String::new()
                }
            })
            .collect();
        let rows: Vec<usize> = (0..70).rev().collect();
        let patient = |i: usize| ids[i].as_str();
        let (train, val) = hold_out(&rows, patient, 0.2, 7).unwrap();
        assert_eq!(train.len() + val.len(), 70);
        assert!((14..14 + 3).contains(&val.len()), "{}", val.len());
        for &i in &val {
            assert!(!train.contains(&i));
            if !ids[i].is_empty() {
                assert!(
                    train.iter().all(|&j| ids[j] != ids[i]),
                    "patient {} split",
                    ids[i]
                );
            }
        }
        // Input order kept on both sides.
        assert!(train.windows(2).all(|w| w[0] > w[1]));
        assert!(val.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(hold_out(&rows, patient, 0.2, 7).unwrap().1, val);
        assert_ne!(hold_out(&rows, patient, 0.2, 8).unwrap().1, val);
        assert!(hold_out(&[3], patient, 0.5, 0).is_err());
    }

    #[test]
    fn settings_are_checked() {
        assert!(v(true, Some(2)).validate().is_ok());
        let bad = [
            Validation {
                fraction: 0.0,
                ..v(false, None)
            },
            Validation {
                fraction: 0.6,
                ..v(false, None)
            },
            v(false, Some(0)),
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }
}
