//! Finetuning: a backbone and a linear head trained on a store's training
//! split, validated every epoch, the best epoch by validation macro AUC (the
//! metric reported, not a support-weighted stand-in) kept as the model.
//!
//! A run directory holds `last.safetensors` (weights, optimiser state and
//! progress, written at every epoch end and every `checkpoint_every` steps)
//! and `model.safetensors` (the best weights). Resuming restarts exactly
//! where `last.safetensors` left off; since every random draw is a function
//! of the seed and the position in the run, the result is bit for bit the
//! uninterrupted run's.

pub mod layer_decay;
mod loss;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cxr_data::augment::Augment;
use cxr_data::labels::{Split, Task};
use cxr_data::store::read::Store;
use cxr_nn::checkpoint::{self, RawTensor};
use serde_json::{Value, json};
use tch::{Device, Kind};

use crate::classifier::Classifier;
use crate::data;
use crate::dist::{DataParallel, shard};
use crate::error::{Error, LogError, Result};
use crate::io::{TrainState, write_safetensors};
use crate::metrics::macro_auc;
use crate::optim::{Optimizer, Rule};
use crate::scaler::{self, GradScaler};
use crate::schedule::{Schedule, Shape};
use cxr_nn::precision::Precision;
pub use loss::Targets;

/// Everything that shapes a finetuning run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FinetuneConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per step (the last partial batch of an epoch is dropped, as
    /// batch norm needs more than one image).
    pub batch_size: usize,
    /// Optimiser and its hyperparameters.
    pub rule: Rule,
    /// Peak learning rate.
    pub lr: f64,
    /// Schedule shape, stepped every iteration.
    pub schedule: Shape,
    /// Linear warm-up, in epochs.
    pub warmup_epochs: f64,
    /// Final rate of the cosine.
    pub min_lr: f64,
    /// Clip the global gradient norm to this.
    pub grad_clip: Option<f64>,
    /// Training augmentation (`None`: images only resampled to the input size).
    pub augment: Option<Augment>,
    /// Weight positives by negatives/positives per label (binary), classes
    /// by inverse frequency (multi-class).
    pub class_balanced: bool,
    /// Stop after this many epochs without a better validation AUC.
    pub patience: Option<usize>,
    /// Train only the head; the backbone stays frozen in eval mode.
    pub freeze_backbone: bool,
    /// Layer-wise learning-rate decay ([`layer_decay`]): block `i` of `L`
    /// trains at `decay^(L - i)` of the rate, the embeddings at
    /// `decay^(L + 1)`, the head at the full rate. Transformer backbones only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_decay: Option<f64>,
    /// Seed of initialisation, order, augmentation and dropout.
    pub seed: u64,
    /// Also checkpoint every this many steps (0: at epoch ends only).
    pub checkpoint_every: u64,
    /// Arithmetic of the training forward pass (autocast; float16 adds
    /// dynamic loss scaling). Validation scores in float32.
    #[serde(default, skip_serializing_if = "is_fp32")]
    pub precision: Precision,
    /// Convolutional backbones train in channels-last order (the same
    /// updates within float rounding; `--no-channels-last` turns it off).
    /// Absent in configs written before the option: on.
    #[serde(default = "yes")]
    pub channels_last: bool,
    /// AdamW and SGD with momentum update through libtorch's fused kernels
    /// (`--fused-optimizer`, [`crate::optim::Optimizer::set_fused`]): the same
    /// updates within float rounding, another trajectory. Off by default,
    /// and in configs written before the option.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fused_optimizer: bool,
}

/// `true`, the serde default of options that are on unless a config says
/// otherwise.
pub(crate) fn yes() -> bool {
    true
}

impl FinetuneConfig {
    /// Checks the settings that can be judged without the store, so a front
    /// end can refuse them before it creates the run directory.
    ///
    /// # Errors
    /// [`Error::NoEpochs`] for `epochs == 0` (nothing would be trained or
    /// written, and the run would end looking for a model that was never
    /// saved).
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::NoEpochs);
        }
        Ok(())
    }
}

/// Whether `p` is the default float32 (kept out of recorded configs, so
/// runs written before the option existed still resume).
pub fn is_fp32(p: &Precision) -> bool {
    *p == Precision::Fp32
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Its validation macro AUC.
    pub best_val_auc: Option<f64>,
    /// Epochs completed.
    pub epochs_run: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}

/// Progress saved with `last.safetensors`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// Completed epochs.
    epoch: usize,
    /// Batches of the current epoch already taken.
    batch: usize,
    /// Global steps taken.
    step: u64,
    best_val_auc: Option<f64>,
    best_epoch: usize,
    since_best: usize,
    loss_sum: f64,
    loss_count: u64,
    /// The float16 loss scaler's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scaler: Option<GradScaler>,
}

/// The training loop over a store.
pub struct Trainer<'a> {
    /// The store.
    pub store: Arc<Store>,
    /// The model.
    pub model: Classifier,
    /// The settings.
    pub config: FinetuneConfig,
    /// Run directory for checkpoints.
    pub dir: PathBuf,
    /// Receives every log record (one per step and per epoch).
    pub log: &'a mut dyn FnMut(&Value) -> Result<(), LogError>,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// The process group: each rank trains on its slice of every global
    /// batch of `config.batch_size`; only rank 0 writes checkpoints.
    pub parallel: DataParallel,
    /// The training rows when not the whole training split (a
    /// label-efficiency subset, `Store::read_train_subset`).
    pub train_rows: Option<Vec<usize>>,
}

/// Scores `[n, k]` of store rows `indices`: sigmoid per label, or softmax
/// over classes; eval mode, no gradients.
pub fn score(
    model: &Classifier,
    store: &Arc<Store>,
    indices: &[usize],
    batch_size: usize,
) -> Vec<f32> {
    let s = model.spec.preprocessing.size as usize;
    let chunks: Vec<Vec<usize>> = indices
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let (rx, handle) = data::spawn(store.clone(), chunks, Augment::none(s, s), 0, 0);
    let mut out = Vec::with_capacity(indices.len() * model.k as usize);
    let multiclass = store.meta.task == Task::Multiclass;
    for batch in rx {
        let probs = tch::no_grad(|| {
            let logits = model.forward_t(&model.input(&batch.images, batch.indices.len()), false);
            if multiclass {
                logits.softmax(1, Kind::Float)
            } else {
                logits.sigmoid()
            }
        });
        out.extend(
            Vec::<f32>::try_from(probs.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default(),
        );
    }
    let _ = handle.join();
    out
}

impl Trainer<'_> {
    fn last_path(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }

    /// Passes `record` to the log callback.
    fn log(&mut self, record: &Value) -> Result<()> {
        (self.log)(record).map_err(Error::Log)
    }

    fn save_last(&self, opt: &Optimizer, progress: &Progress) -> Result<()> {
        if !self.parallel.is_main() {
            return Ok(());
        }
        let path = self.last_path();
        TrainState {
            model: self.model.vs.variables().into_iter().collect(),
            optim: opt.state(),
            progress: serde_json::to_vec(progress).map_err(|cause| Error::Progress {
                path: path.clone(),
                cause,
            })?,
        }
        .save(&path)
    }

    fn load_last(&mut self, opt: &mut Optimizer) -> Result<Progress> {
        let path = self.last_path();
        let state = TrainState::load(&path, self.model.vs.device())?;
        let model: BTreeMap<String, RawTensor> = state
            .model
            .iter()
            .map(|(k, v)| {
                RawTensor::from_tch(k, v)
                    .map(|r| (k.clone(), r))
                    .map_err(Error::Checkpoint)
            })
            .collect::<Result<_>>()?;
        self.model
            .load_weights(&model)
            .map_err(|cause| Error::Weights {
                path: path.clone(),
                cause,
            })?;
        opt.load_state(state.optim).map_err(|e| e.in_file(&path))?;
        serde_json::from_slice(&state.progress).map_err(|cause| Error::Progress { path, cause })
    }

    /// Trains, resuming from `last.safetensors` when `resume` is set and the
    /// file exists.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when the loss diverges (the last checkpoint is
    /// left as it was); settings that cannot train ([`Error::NoEpochs`],
    /// [`Error::BatchTooSmall`],
    /// [`Error::FewerRowsThanBatch`], [`Error::RankBatchTooSmall`],
    /// [`Error::UntrainableLabel`], [`Error::Precision`]); checkpoint, log
    /// and collective errors.
    pub fn run(&mut self, resume: bool) -> Result<Summary> {
        let c = self.config.clone();
        c.validate()?;
        if c.batch_size < 2 {
            return Err(Error::BatchTooSmall {
                batch_size: c.batch_size,
            });
        }
        let train = self
            .train_rows
            .clone()
            .unwrap_or_else(|| self.store.split_indices(Split::Train));
        let val = self.store.split_indices(Split::Val);
        let batches_per_epoch = train.len() / c.batch_size;
        if batches_per_epoch == 0 {
            return Err(Error::FewerRowsThanBatch {
                rows: train.len(),
                batch_size: c.batch_size,
            });
        }
        let targets = Targets::new(
            &self.store,
            &train,
            c.class_balanced,
            self.model.vs.device(),
        )?;
        let total_steps = (batches_per_epoch * c.epochs) as u64;
        let schedule = Schedule {
            shape: c.schedule,
            base_lr: c.lr,
            min_lr: c.min_lr,
            warmup_steps: (c.warmup_epochs * batches_per_epoch as f64).round() as u64,
            total_steps,
        };
        let device = self.model.vs.device();
        c.precision.check(device).map_err(Error::Precision)?;
        let dp = self.parallel.clone();
        let local_batch = shard::local_batch(c.batch_size, dp.world_size())?;
        if local_batch < 2 && !self.config.freeze_backbone {
            return Err(Error::RankBatchTooSmall {
                ranks: dp.world_size(),
                local_batch,
                batch_size: c.batch_size,
            });
        }
        if c.channels_last {
            self.model.set_channels_last();
        }
        let mut opt = Optimizer::new(c.rule, self.model.trainable());
        opt.set_fused(c.fused_optimizer);
        if let Some(decay) = c.layer_decay {
            let names: Vec<String> = opt.params().iter().map(|(n, _)| n.clone()).collect();
            let scales = layer_decay::scales(
                names.iter().map(String::as_str),
                decay,
                &self.model.spec.name,
            )?;
            let mut distinct: Vec<f64> = scales.values().copied().collect();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            for s in distinct {
                opt.set_lr_scale(|n| scales.get(n) == Some(&s), s);
            }
        }
        let params: Vec<tch::Tensor> = opt
            .params()
            .iter()
            .map(|(_, p)| p.shallow_clone())
            .collect();
        let buffers = self.buffers();
        let mut p = if resume && self.last_path().exists() {
            let p = self.load_last(&mut opt)?;
            self.log(
                &json!({"event": "resume", "epoch": p.epoch, "batch": p.batch, "step": p.step}),
            )?;
            p
        } else {
            Progress {
                scaler: c.precision.needs_loss_scaling().then(GradScaler::default),
                ..Progress::default()
            }
        };
        // Every rank starts from rank 0's weights, whatever its initialisation.
        let mut all: Vec<(String, tch::Tensor)> = self.model.vs.variables().into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let all: Vec<tch::Tensor> = all.into_iter().map(|(_, t)| t).collect();
        dp.broadcast_params(&all)?;
        let s = self.model.spec.preprocessing.size as usize;
        let augment = c.augment.clone().unwrap_or_else(|| Augment::none(s, s));
        let k = self.model.k as usize;
        let mut stopped_early = false;
        while p.epoch < c.epochs {
            let epoch = p.epoch + 1;
            let started = Instant::now();
            let order = data::epoch_order(&train, c.seed, epoch as u64);
            let chunks =
                shard::shard_batches(&order, c.batch_size, dp.rank(), dp.world_size(), p.batch)?;
            let images = chunks.len() * c.batch_size;
            let (rx, handle) = data::spawn(
                self.store.clone(),
                chunks,
                augment.clone(),
                c.seed,
                epoch as u64,
            );
            let mut step_started = Instant::now();
            for batch in rx {
                let lr = schedule.lr(p.step);
                // Dropout draws depend on the step alone, wherever a run resumed.
                tch::manual_seed((c.seed ^ p.step.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64);
                // Batch-norm statistics follow rank 0's, as DDP's broadcast_buffers does.
                dp.broadcast_params(&buffers)?;
                let x = self.model.input(&batch.images, batch.indices.len());
                let logits = c
                    .precision
                    .autocast(device, || self.model.forward_t(&x, true))
                    .to_kind(Kind::Float);
                let (sum, count) = targets.loss_parts(&logits, &batch.indices);
                let count = dp.sum(&[count.double_value(&[])])?[0];
                let loss = sum / count.max(1.0);
                let value = dp.sum(&[loss.double_value(&[])])?[0];
                if !value.is_finite() {
                    drop(handle);
                    return Err(Error::non_finite(
                        epoch,
                        p.step + 1,
                        value,
                        &self.last_path(),
                    ));
                }
                opt.zero_grad();
                // Each rank's loss is its share of the global one: the sum of
                // the ranks' gradients is the single-process gradient.
                let overflowed = scaler::backward(&loss, p.scaler.as_mut(), &dp, &params)?;
                let mut grad_norm = None;
                if !overflowed {
                    grad_norm = c.grad_clip.map(|m| opt.clip_grad_norm(m));
                    opt.step(lr);
                }
                p.step += 1;
                p.batch += 1;
                p.loss_sum += value;
                p.loss_count += 1;
                // Wall time since the previous step ended: waiting for data counts.
                let seconds = step_started.elapsed().as_secs_f64();
                self.log(&json!({
                    "event": "step", "epoch": epoch, "step": p.step, "lr": lr, "loss": value,
                    "grad_norm": grad_norm, "seconds": seconds,
                    "loss_scale": p.scaler.as_ref().map(|s| s.scale),
                    "skipped": overflowed,
                }))?;
                if c.checkpoint_every > 0
                    && p.step % c.checkpoint_every == 0
                    && p.batch < batches_per_epoch
                {
                    self.save_last(&opt, &p)?;
                    self.log(&json!({"event": "checkpoint", "epoch": epoch, "step": p.step}))?;
                }
                step_started = Instant::now();
            }
            let _ = handle.join();
            let train_loss = p.loss_sum / p.loss_count.max(1) as f64;
            let (val_auc, val_loss) = if val.is_empty() {
                (None, None)
            } else {
                dp.broadcast_params(&buffers)?;
                let scores = self.score_shared(&val, c.batch_size)?;
                let y = self.store.dense_targets(&val);
                (
                    macro_auc(&y, &scores, k).0,
                    Some(loss::val_loss(
                        &y,
                        &scores,
                        self.store.meta.task == Task::Multiclass,
                    )),
                )
            };
            let better = match (val_auc, p.best_val_auc) {
                (Some(a), Some(b)) => a > b,
                (Some(_), None) => true,
                (None, _) => val.is_empty() || p.best_epoch == 0,
            };
            if better {
                p.best_val_auc = val_auc.or(p.best_val_auc);
                p.best_epoch = epoch;
                p.since_best = 0;
                self.save_best(epoch, val_auc)?;
            } else {
                p.since_best += 1;
            }
            p.epoch = epoch;
            p.batch = 0;
            p.loss_sum = 0.0;
            p.loss_count = 0;
            self.save_last(&opt, &p)?;
            let secs = started.elapsed().as_secs_f64();
            self.log(&json!({
                "event": "epoch", "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                "val_macro_auc": val_auc, "best_epoch": p.best_epoch, "improved": better,
                "seconds": secs, "images_per_second": images as f64 / secs,
            }))?;
            if self.verbose {
                let auc = val_auc.map_or("n/a".into(), |a| format!("{a:.4}"));
                eprintln!(
                    "epoch {epoch}/{}: train loss {train_loss:.4}, val macro AUC {auc}{} ({:.1} images/s)",
                    c.epochs,
                    if better { " (best)" } else { "" },
                    images as f64 / secs
                );
            }
            if c.patience.is_some_and(|pat| p.since_best >= pat) {
                stopped_early = true;
                self.log(
                    &json!({"event": "early_stop", "epoch": epoch, "best_epoch": p.best_epoch}),
                )?;
                break;
            }
        }
        Ok(Summary {
            best_epoch: p.best_epoch,
            best_val_auc: p.best_val_auc,
            epochs_run: p.epoch,
            stopped_early,
        })
    }

    fn save_best(&self, epoch: usize, auc: Option<f64>) -> Result<()> {
        if !self.parallel.is_main() {
            return Ok(());
        }
        let meta = HashMap::from([
            ("epoch".to_owned(), epoch.to_string()),
            (
                "val_macro_auc".to_owned(),
                auc.map_or("null".into(), |a| a.to_string()),
            ),
        ]);
        write_safetensors(
            &self.dir.join("model.safetensors"),
            &self.model.weights()?,
            Some(meta),
        )
    }

    /// Variables the optimiser does not train but the forward pass updates
    /// (batch-norm statistics); empty when the backbone is frozen in eval
    /// mode.
    fn buffers(&self) -> Vec<tch::Tensor> {
        if self.config.freeze_backbone {
            return Vec::new();
        }
        let mut vars: Vec<(String, tch::Tensor)> = self
            .model
            .vs
            .variables()
            .into_iter()
            .filter(|(_, v)| !v.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars.into_iter().map(|(_, v)| v).collect()
    }

    /// [`score`] of `rows`, each rank scoring a contiguous part and the
    /// parts summed into the whole on every rank.
    fn score_shared(&self, rows: &[usize], batch_size: usize) -> Result<Vec<f32>> {
        let dp = &self.parallel;
        if dp.world_size() == 1 {
            return Ok(score(&self.model, &self.store, rows, batch_size));
        }
        let k = self.model.k as usize;
        let part = rows.len().div_ceil(dp.world_size());
        let start = (dp.rank() * part).min(rows.len());
        let end = (start + part).min(rows.len());
        let mine = score(&self.model, &self.store, &rows[start..end], batch_size);
        let mut all = vec![0.0f64; rows.len() * k];
        for (dst, src) in all[start * k..end * k].iter_mut().zip(&mine) {
            *dst = f64::from(*src);
        }
        let summed = dp.sum(&all)?;
        Ok(summed.into_iter().map(|v| v as f32).collect())
    }

    /// Loads the best weights (`model.safetensors`) into the model.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the file is missing or unreadable,
    /// [`Error::Weights`] when it does not match.
    pub fn restore_best(&mut self) -> Result<()> {
        let path = self.dir.join("model.safetensors");
        let ck = checkpoint::load(&path).map_err(Error::Checkpoint)?;
        self.model
            .load_weights(&ck.tensors)
            .map_err(|cause| Error::Weights { path, cause })
    }
}

/// Path of the best weights inside a run directory.
pub fn model_path(dir: &Path) -> PathBuf {
    dir.join("model.safetensors")
}
