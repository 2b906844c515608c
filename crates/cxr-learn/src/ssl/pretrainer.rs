//! The pretraining loop every objective shares: sharded batches of views,
//! mixed precision and loss scaling, clipping, checkpoints, `--resume`,
//! validation and the encoder's export.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cxr_data::augment::Augment;
use cxr_data::labels::Split;
use cxr_data::store::read::Store;
use cxr_nn::backbone::Architecture;
use cxr_nn::checkpoint::RawTensor;
use cxr_nn::memory_format::{channels_last, is_channels_last};
use cxr_nn::spec::ModelSpec;
use serde_json::{Value, json};
use tch::{Device, Tensor};

use super::localisation::LesionMasks;
use super::method;
use super::validation::{Tracker, Validation, hold_out, patient_of};
use super::{Objective, PositiveSampler, PretrainConfig, Progress, Views};
use crate::data;
use crate::dist::{DataParallel, shard};
use crate::error::{Error, LogError};
use crate::io::{TrainState, write_safetensors};
use crate::optim::{Optimizer, is_norm_or_bias};
use crate::scaler::{self, GradScaler};
use crate::schedule::{Schedule, Shape};

/// Seeds validation's views and sampling apart from training's.
const VALIDATION_SALT: u64 = 0x5641_4c49_4441_5445;

/// The held-out rows of a validating run, their positives and what the
/// run does with their loss.
struct HeldOut {
    settings: Validation,
    rows: Vec<usize>,
    sampler: PositiveSampler,
}

/// A pretraining run.
pub struct Pretrainer<'a> {
    /// The store.
    pub store: Arc<Store>,
    /// The backbone to train.
    pub spec: ModelSpec,
    /// Settings.
    pub config: PretrainConfig,
    /// Run directory.
    pub dir: PathBuf,
    /// Device.
    pub device: Device,
    /// Receives every log record.
    pub log: &'a mut dyn FnMut(&Value) -> Result<(), LogError>,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// The process group: each rank takes its slice of every global batch of
    /// `config.batch_size`; only rank 0 writes checkpoints and the encoder.
    pub parallel: DataParallel,
}

fn raw(name: &str, t: &Tensor) -> Result<RawTensor, Error> {
    RawTensor::from_tch(name, &t.to_device(Device::Cpu)).map_err(Error::Checkpoint)
}

impl Pretrainer<'_> {
    /// Passes `record` to the log callback.
    fn log(&mut self, record: &Value) -> Result<(), Error> {
        (self.log)(record).map_err(Error::Log)
    }

    /// Whether the backbone is convolutional and trains in channels-last
    /// order (`channels_last`, `--channels-last`).
    fn nhwc(&self) -> bool {
        self.config.channels_last
            && matches!(
                self.spec.architecture,
                Architecture::ResNet(_) | Architecture::DenseNet(_)
            )
    }

    fn input(&self, images: &[u8], n: usize) -> Tensor {
        let s = self.spec.preprocessing.size as usize;
        let x = self.spec.preprocessing.input(images, n, s, s, self.device);
        if self.nhwc() { channels_last(&x) } else { x }
    }

    fn save_last(&self, model: &dyn Objective, opt: &Optimizer, p: &Progress) -> Result<(), Error> {
        if !self.parallel.is_main() {
            return Ok(());
        }
        let path = self.dir.join("last.safetensors");
        TrainState {
            model: model.state(),
            optim: opt.state(),
            progress: serde_json::to_vec(p).map_err(|cause| Error::Progress {
                path: path.clone(),
                cause,
            })?,
        }
        .save(&path)
    }

    fn load_last(&self, model: &mut dyn Objective, opt: &mut Optimizer) -> Result<Progress, Error> {
        let path = self.dir.join("last.safetensors");
        let state = TrainState::load(&path, self.device)?;
        model
            .load_state(&state.model)
            .map_err(|e| e.in_file(&path))?;
        opt.load_state(state.optim).map_err(|e| e.in_file(&path))?;
        serde_json::from_slice(&state.progress).map_err(|cause| Error::Progress { path, cause })
    }

    /// Writes the encoder; `validation` (loss and step) goes into
    /// `encoder.json` when validation chose it.
    fn export(&self, model: &dyn Objective, validation: Option<(f64, u64)>) -> Result<(), Error> {
        if !self.parallel.is_main() {
            return Ok(());
        }
        model.export_extra(&self.dir)?;
        let tensors: BTreeMap<String, RawTensor> = model
            .encoder()
            .iter()
            .map(|(k, v)| Ok((k.clone(), raw(k, v)?)))
            .collect::<Result<_, Error>>()?;
        write_safetensors(&self.dir.join("encoder.safetensors"), &tensors, None)?;
        let mut sidecar = self.spec.sidecar();
        sidecar["method"] = json!(self.config.method);
        if let Some((loss, step)) = validation {
            sidecar["validation"] = json!({"loss": loss, "step": step});
        }
        let path = self.dir.join("encoder.json");
        write_json(&path, &sidecar)
    }

    /// The mean loss (and pretext accuracy, when the objective logs one)
    /// over the full batches of `val`, in its fixed order, without
    /// gradient and in evaluation mode. Image-only methods compare views
    /// drawn with the training augmentation (fixed seeds, so every
    /// evaluation sees the same views); image-text ones see images as
    /// stored, as ConVIRT validates.
    fn validate(
        &self,
        model: &mut dyn Objective,
        val: &[usize],
        sampler: &PositiveSampler,
    ) -> Result<(f64, Option<f64>), Error> {
        let c = &self.config;
        let dp = &self.parallel;
        let n_views = model.views().max(1);
        let chunks: Vec<Vec<Vec<usize>>> =
            shard::shard_batches(val, c.batch_size, dp.rank(), dp.world_size(), 0)?
                .into_iter()
                .map(|q| {
                    let mut rows = vec![q.to_vec()];
                    rows.extend((1..n_views).map(|v| {
                        q.iter()
                            .map(|&i| sampler.positive_of_view(i, 0, v))
                            .collect()
                    }));
                    rows
                })
                .collect();
        let augment = if n_views == 1 {
            let (h, w) = c.augment.out_size;
            Augment::none(h, w)
        } else {
            c.augment.clone()
        };
        let (rx, handle) = data::spawn_views(
            self.store.clone(),
            chunks,
            augment,
            c.seed ^ VALIDATION_SALT,
            0,
        );
        let (mut loss_sum, mut accuracy_sum, mut batches, mut with_accuracy) = (0.0, 0.0, 0, 0);
        for batch in rx {
            let n = batch.rows[0].len();
            let x = batch.images.iter().map(|im| self.input(im, n)).collect();
            let views = Views {
                rows: batch.rows,
                x,
            };
            let seed = c.seed ^ VALIDATION_SALT ^ batches as u64;
            tch::manual_seed(seed as i64);
            let (loss, fields) = tch::no_grad(|| {
                c.precision
                    .autocast(self.device, || model.loss(&views, seed, false))
            })?;
            loss_sum += loss.to_kind(tch::Kind::Double).double_value(&[]);
            if let Some(a) = fields.get("accuracy").and_then(Value::as_f64) {
                accuracy_sum += a;
                with_accuracy += 1;
            }
            batches += 1;
        }
        let _ = handle.join();
        // Each rank's loss is its share of the global batch's: they add up.
        let totals = dp.sum(&[loss_sum, accuracy_sum, with_accuracy as f64])?;
        let accuracy = (totals[2] > 0.0).then(|| totals[1] / totals[2]);
        Ok((totals[0] / batches.max(1) as f64, accuracy))
    }

    /// Trains, resuming from `last.safetensors` when `resume` is set and it
    /// exists; writes the encoder at every epoch end.
    ///
    /// # Errors
    /// [`Error::NonFinite`] on divergence (the last checkpoint kept); the
    /// method's, the data's, the settings' and I/O problems, each naming
    /// what failed.
    pub fn run(&mut self, resume: bool) -> Result<(), Error> {
        let c = self.config.clone();
        let mut objective = {
            let _init = crate::init_lock();
            let m = method::lookup(&self.config.method)?;
            (m.build)(&self.config, &self.spec, &self.store, self.device)?
        };
        let model = objective.as_mut();
        if self.nhwc() {
            // Every 4-D tensor of the objective (the encoders' convolutions;
            // a key encoder too): `state` hands out the live tensors.
            tch::no_grad(|| {
                for (_, mut t) in model.state() {
                    if t.dim() == 4 && !is_channels_last(&t) {
                        let nhwc = channels_last(&t);
                        t.set_data(&nhwc);
                    }
                }
            });
        }
        if let Some(summary) = model.summary() {
            self.log(&summary)?;
        }
        let masks = match c.gloria.as_ref().and_then(|g| g.lesion_masks.as_deref()) {
            Some(csv) => Some(LesionMasks::read(csv, &self.store, Split::Val)?),
            None => None,
        };
        let usable = model.rows(self.store.split_indices(Split::Train));
        let store = self.store.clone();
        let patient = patient_of(&store);
        let (train, val) = match &c.validation {
            None if c.schedule == Shape::Plateau => {
                return Err(Error::PlateauWithoutValidation);
            }
            None => (usable, Vec::new()),
            Some(v) => {
                v.validate()?;
                hold_out(&usable, &patient, v.fraction, c.seed)?
            }
        };
        if c.validation.is_some() {
            if val.len() < c.batch_size {
                return Err(Error::ValidationTooSmall {
                    rows: val.len(),
                    batch_size: c.batch_size,
                });
            }
            let patients: std::collections::HashSet<&str> =
                val.iter().map(|&i| patient(i)).collect();
            self.log(&json!({
                "event": "validation_split", "train_rows": train.len(),
                "validation_rows": val.len(), "validation_patients": patients.len(),
            }))?;
        }
        let batches = train.len() / c.batch_size.max(1);
        if c.batch_size < 2 || batches == 0 {
            return Err(Error::NoPretrainBatch {
                batch_size: c.batch_size,
                rows: train.len(),
            });
        }
        if method::lookup(&c.method).is_ok_and(|m| m.queue)
            && !c.moco.queue.is_multiple_of(c.batch_size)
        {
            return Err(Error::QueueNotMultiple {
                queue: c.moco.queue,
                batch_size: c.batch_size,
            });
        }
        c.precision.check(self.device).map_err(Error::Precision)?;
        let dp = self.parallel.clone();
        shard::local_batch(c.batch_size, dp.world_size())?;
        if !model.join(&dp) {
            return Err(Error::NotDataParallel {
                method: c.method.clone(),
            });
        }
        let sampler = PositiveSampler::new(&self.store, &train, c.positive, c.seed)?;
        let held = match c.validation {
            Some(settings) => Some(HeldOut {
                settings,
                sampler: PositiveSampler::new(
                    &self.store,
                    &val,
                    c.positive,
                    c.seed ^ VALIDATION_SALT,
                )?,
                rows: val,
            }),
            None => None,
        };
        let mut opt = Optimizer::new(c.rule, model.trainable());
        opt.set_fused(c.fused_optimizer);
        if c.no_decay_norm_bias {
            opt.set_no_decay(is_norm_or_bias);
        }
        if let Some(la) = c.lookahead {
            opt.set_lookahead(la.validate()?);
        }
        if let Some(clip) = c.grad_clip {
            clip.validate()?;
        }
        if let Some(text_lr) = c.text_lr {
            if !(text_lr.is_finite() && text_lr >= 0.0 && c.lr > 0.0) {
                return Err(Error::TextLr { text_lr, lr: c.lr });
            }
            let n = opt.set_lr_scale(|n| model.is_text_encoder(n), text_lr / c.lr);
            if n == 0 {
                return Err(Error::NoTextEncoder {
                    method: c.method.clone(),
                });
            }
            self.log(&json!({"event": "groups", "text_encoder_tensors": n, "text_lr": text_lr}))?;
        }
        let schedule = Schedule {
            shape: c.schedule,
            base_lr: c.lr,
            min_lr: 0.0,
            warmup_steps: c.warmup_steps,
            total_steps: (batches * c.epochs) as u64,
        };
        let last = self.dir.join("last.safetensors");
        let mut p = if resume && last.exists() {
            let p = self.load_last(model, &mut opt)?;
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
        let stopped = match &c.validation {
            Some(v) => {
                p.validation
                    .get_or_insert_with(|| Tracker::new(v, c.lr))
                    .stopped
            }
            None => false,
        };
        if stopped {
            self.log(&json!({"event": "early_stop", "step": p.step, "already": true}))?;
        }
        // Every rank starts from rank 0's state, whatever its initialisation.
        let state: Vec<Tensor> = model.state().into_values().collect();
        dp.broadcast_params(&state)?;
        let params: Vec<Tensor> = opt
            .params()
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .collect();
        while p.epoch < c.epochs && !stopped {
            model.start_epoch(p.epoch, c.epochs);
            let epoch = p.epoch + 1;
            let started = Instant::now();
            let order = data::epoch_order(&train, c.seed, epoch as u64);
            let n_views = model.views().max(1);
            let chunks: Vec<Vec<Vec<usize>>> =
                shard::shard_batches(&order, c.batch_size, dp.rank(), dp.world_size(), p.batch)?
                    .into_iter()
                    .map(|q| {
                        let mut rows = vec![q.to_vec()];
                        rows.extend((1..n_views).map(|v| {
                            q.iter()
                                .map(|&i| sampler.positive_of_view(i, epoch as u64, v))
                                .collect()
                        }));
                        rows
                    })
                    .collect();
            let (rx, handle) = data::spawn_views(
                self.store.clone(),
                chunks,
                c.augment.clone(),
                c.seed,
                epoch as u64,
            );
            let mut losses = Vec::new();
            let mut step_started = Instant::now();
            let mut stop = false;
            for batch in rx {
                let lr =
                    schedule.lr(p.step) * p.validation.as_ref().map_or(1.0, |t| t.lr_factor(c.lr));
                let step_seed = c.seed ^ p.step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                tch::manual_seed(step_seed as i64);
                let n = batch.rows[0].len();
                let distinct = batch.rows.get(1).map_or(0, |keys| {
                    batch.rows[0]
                        .iter()
                        .zip(keys)
                        .filter(|(q, k)| q != k)
                        .count()
                });
                let x = batch.images.iter().map(|im| self.input(im, n)).collect();
                let views = Views {
                    rows: batch.rows,
                    x,
                };
                let (loss, fields) = c
                    .precision
                    .autocast(self.device, || model.loss(&views, step_seed, true))?;
                let loss = loss.to_kind(tch::Kind::Float);
                let totals = dp.sum(&[loss.double_value(&[]), distinct as f64])?;
                let (value, distinct) = (totals[0], totals[1] as usize);
                if !value.is_finite() {
                    drop(handle);
                    return Err(Error::non_finite(epoch, p.step + 1, value, &last));
                }
                opt.zero_grad();
                let overflowed = scaler::backward(&loss, p.scaler.as_mut(), &dp, &params)?;
                let mut grad_norm = None;
                if !overflowed {
                    grad_norm = c.grad_clip.map(|g| g.apply(&mut opt));
                    opt.step(lr);
                }
                model.after_step()?;
                p.step += 1;
                p.batch += 1;
                losses.push(value);
                // Wall time since the previous step ended: waiting for data counts.
                let seconds = step_started.elapsed().as_secs_f64();
                let mut record = json!({
                    "event": "step", "epoch": epoch, "step": p.step, "lr": lr, "loss": value,
                    "distinct_positives": distinct, "seconds": seconds,
                    // Before clipping (null without): how often the bound bites.
                    "grad_norm": grad_norm,
                    "loss_scale": p.scaler.as_ref().map(|s| s.scale),
                    "skipped": overflowed,
                });
                if let Value::Object(m) = &mut record {
                    m.extend(fields);
                }
                self.log(&record)?;
                if let Some(h) = &held {
                    let (every, run_ends) =
                        (h.settings.every, epoch == c.epochs && p.batch == batches);
                    if every > 0 && (p.step.is_multiple_of(every) || run_ends) {
                        stop = self.evaluate(model, h, &mut p, epoch)?;
                        if stop {
                            break;
                        }
                    }
                }
                if c.checkpoint_every > 0 && p.step % c.checkpoint_every == 0 && p.batch < batches {
                    self.save_last(model, &opt, &p)?;
                    self.log(&json!({"event": "checkpoint", "epoch": epoch, "step": p.step}))?;
                }
                step_started = Instant::now();
            }
            let _ = handle.join();
            if stop {
                self.save_last(model, &opt, &p)?;
                break;
            }
            p.epoch = epoch;
            p.batch = 0;
            match &held {
                Some(h) => {
                    if h.settings.every == 0 {
                        stop = self.evaluate(model, h, &mut p, epoch)?;
                    }
                    self.save_last(model, &opt, &p)?;
                }
                None => {
                    self.save_last(model, &opt, &p)?;
                    self.export(model, None)?;
                }
            }
            let mean = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
            let secs = started.elapsed().as_secs_f64();
            self.log(
                &json!({"event": "epoch", "epoch": epoch, "loss": mean, "seconds": secs, "images_per_second": (losses.len() * c.batch_size) as f64 / secs}),
            )?;
            if self.verbose {
                eprintln!(
                    "epoch {epoch}/{}: loss {mean:.4} ({:.1} images/s)",
                    c.epochs,
                    (losses.len() * c.batch_size) as f64 / secs
                );
            }
            if stop {
                break;
            }
        }
        // No finite validation loss ever chose an encoder: export the last.
        if p.validation.as_ref().is_some_and(|t| t.best.is_none()) {
            self.export(model, None)?;
            self.log(
                &json!({"event": "export", "step": p.step, "reason": "no finite validation loss"}),
            )?;
        }
        if let Some(masks) = &masks {
            self.localise(model, masks, p.step)?;
        }
        Ok(())
    }

    /// The objective's attention check on the validation split's lesion
    /// masks with the final weights: logged, and written to
    /// `localisation.json`.
    fn localise(
        &mut self,
        model: &dyn Objective,
        masks: &LesionMasks,
        step: u64,
    ) -> Result<(), Error> {
        let found = {
            let input = |pixels: &[u8], n: usize| self.input(pixels, n);
            model.localise(&self.store, &input, masks)?
        };
        let Some((tally, grid)) = found else {
            return Ok(());
        };
        let record = tally.to_json(grid, step);
        self.log(&record)?;
        if self.verbose {
            eprintln!("{}", tally.describe());
        }
        if self.parallel.is_main() {
            write_json(&self.dir.join("localisation.json"), &record)?;
        }
        Ok(())
    }

    /// Validates after step `p.step`, records the verdict in `p`, exports
    /// the encoder when the loss is the best so far, and logs it all;
    /// returns whether early stopping ends the run.
    fn evaluate(
        &mut self,
        model: &mut dyn Objective,
        held: &HeldOut,
        p: &mut Progress,
        epoch: usize,
    ) -> Result<bool, Error> {
        let (v, lr) = (&held.settings, self.config.lr);
        let started = Instant::now();
        let (loss, accuracy) = self.validate(model, &held.rows, &held.sampler)?;
        let t = p.validation.get_or_insert_with(|| Tracker::new(v, lr));
        let verdict = t.observe(v, loss, p.step);
        let (best, next_lr) = (t.best, lr * t.lr_factor(lr));
        if verdict.improved {
            self.export(model, best)?;
        }
        self.log(&json!({
            "event": "validation", "epoch": epoch, "step": p.step, "loss": loss,
            "accuracy": accuracy, "best_loss": best.map(|b| b.0), "best_step": best.map(|b| b.1),
            "improved": verdict.improved, "lr_cut": verdict.cut, "next_lr": next_lr,
            "early_stop": verdict.stop, "seconds": started.elapsed().as_secs_f64(),
        }))?;
        if self.verbose {
            eprintln!(
                "step {}: validation loss {loss:.4}{}{}{}",
                p.step,
                if verdict.improved { " (best)" } else { "" },
                if verdict.cut {
                    format!(", rate cut to {next_lr:.3e}")
                } else {
                    String::new()
                },
                if verdict.stop { ", early stop" } else { "" },
            );
        }
        Ok(verdict.stop)
    }
}

/// Writes `value` as pretty JSON to `path` atomically.
fn write_json(path: &std::path::Path, value: &Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|cause| Error::Json {
        path: path.to_owned(),
        cause,
    })? + "\n";
    crate::io::write_atomic(path, text.as_bytes()).map_err(|cause| Error::Write {
        path: path.to_owned(),
        cause,
    })
}
