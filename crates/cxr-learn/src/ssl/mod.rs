//! Self-supervised pretraining on a store's training images (never its
//! validation or test images, so downstream numbers on the same store stay
//! clean).
//!
//! Implemented: `moco-cxr` and `medaug` on the momentum-contrast engine
//! ([`moco`]) with the shared [`blocks`] and the [`positive`] sampler; `s2mts2` (stage A: MoCo with
//! joint contrastive learning over several key views, [`s2mts2`]); `clip`
//! (CheXzero-style image-text CLIP, [`clip`]), which also writes the whole model as `clip.safetensors`
//! with its `tokenizer.json` for `zero-shot`; `convirt` and `gloria`
//! (image + report sentence with a BERT text tower, [`convirt`],
//! [`gloria`], sharing [`text_side`]), which export the image backbone and
//! the text `tokenizer.json`; `refers` (three views of a study, gated
//! fusion, report generation + image-report InfoNCE, [`refers`] with
//! [`fusion`]), which exports its ViT. The run directory holds
//! `last.safetensors` (everything needed to resume bit for bit),
//! `encoder.safetensors` + `encoder.json` (the query backbone, loadable by
//! `features`, `probe` and `finetune`), and `log.jsonl` (loss, pretext
//! accuracy and collapse monitors per step).

pub mod blocks;
pub mod clip;
pub mod convirt;
pub mod fusion;
pub mod gloria;
pub mod gloria_attention;
pub mod moco;
pub mod positive;
pub mod refers;
pub mod s2mts2;
pub mod text_side;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cxr_data::augment::Augment;
use cxr_data::labels::Split;
use cxr_data::store::read::Store;
use cxr_nn::checkpoint::RawTensor;
use cxr_nn::spec::ModelSpec;
use serde_json::{Value, json};
use tch::{Device, Tensor};

use crate::data;
use crate::dist::{DataParallel, shard};
use crate::finetune::TrainError;
use crate::io::{TrainState, write_safetensors};
use crate::optim::{GradClip, Lookahead, Optimizer, Rule, is_norm_or_bias};
use crate::scaler::{self, GradScaler};
use crate::schedule::{Schedule, Shape};
use clip::{ClipObjective, ClipSettings};
use convirt::{Convirt, ConvirtSettings};
use cxr_nn::precision::Precision;
use gloria::{Gloria, GloriaSettings};
use moco::{Moco, MocoConfig};
pub use positive::{Positive, PositiveSampler};
use refers::{RefersObjective, RefersSettings};
use s2mts2::{S2mts2, S2mts2Settings};

/// Settings of a pretraining run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PretrainConfig {
    /// Method name (`moco-cxr`, `medaug`).
    pub method: String,
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Optimiser.
    pub rule: Rule,
    /// Peak learning rate.
    pub lr: f64,
    /// Schedule over all steps.
    pub schedule: Shape,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Views' augmentation.
    pub augment: Augment,
    /// Positive pairs.
    pub positive: Positive,
    /// The MoCo engine.
    pub moco: MocoConfig,
    /// Seed of initialisation, order, augmentation and sampling.
    pub seed: u64,
    /// Also checkpoint every this many steps (0: at epoch ends only).
    pub checkpoint_every: u64,
    /// Arithmetic of the objective's forward pass (autocast; float16 adds
    /// dynamic loss scaling).
    #[serde(default, skip_serializing_if = "crate::finetune::is_fp32")]
    pub precision: Precision,
    /// No weight decay on normalisation parameters and biases
    /// ([`crate::optim::is_norm_or_bias`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_decay_norm_bias: bool,
    /// Lookahead around the optimiser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookahead: Option<Lookahead>,
    /// Peak learning rate of the text encoder (same schedule), when it
    /// differs from `lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_lr: Option<f64>,
    /// Gradient clipping before each update (ConVIRT's code: norm 5; GLoRIA:
    /// value 0.25; REFERS: norm 10); `None` leaves gradients as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<GradClip>,
    /// CLIP's shape and text settings (method `clip` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<ClipSettings>,
    /// S2MTS2's key views, λ ramp and head (method `s2mts2` only; absent:
    /// [`S2mts2Settings::default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s2mts2: Option<S2mts2Settings>,
    /// REFERS' loss weights, flip and text shapes (method `refers` only;
    /// absent: [`RefersSettings::for_width`] of the ViT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers: Option<RefersSettings>,
    /// ConVIRT's text tower and loss (method `convirt` only; absent:
    /// [`ConvirtSettings::for_size`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convirt: Option<ConvirtSettings>,
    /// GLoRIA's text tower, temperatures and attention form (method
    /// `gloria` only; absent: [`GloriaSettings::for_size`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gloria: Option<GloriaSettings>,
}

/// Progress saved with `last.safetensors`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Progress {
    epoch: usize,
    batch: usize,
    step: u64,
    /// The float16 loss scaler's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scaler: Option<GradScaler>,
}

/// One batch as an objective sees it: store rows and normalised inputs per
/// view. View 0 is the query; views 1.. are its positives, drawn by the
/// run's positive rule (the same image for MoCo-CXR).
#[derive(Debug)]
pub struct Views {
    /// Store rows of each view.
    pub rows: Vec<Vec<usize>>,
    /// Inputs `[n, c, s, s]` of each view.
    pub x: Vec<Tensor>,
}

impl Views {
    /// Query rows.
    pub fn queries(&self) -> &[usize] {
        &self.rows[0]
    }

    /// Query inputs.
    pub fn xq(&self) -> &Tensor {
        &self.x[0]
    }
}

/// A self-supervised objective: what the loop trains, checkpoints and exports.
pub trait Objective {
    /// Views per batch entry: the query and its positives.
    fn views(&self) -> usize {
        2
    }
    /// The training rows it can use, of the split's `train` (image-text
    /// objectives drop rows without a report).
    fn rows(&self, train: Vec<usize>) -> Vec<usize> {
        train
    }
    /// A record logged once before training (e.g. text truncations).
    fn summary(&self) -> Option<Value> {
        None
    }
    /// Trainable variables by name, in a stable order.
    fn trainable(&self) -> Vec<(String, Tensor)>;
    /// Whether trainable variable `name` belongs to the pretrained text
    /// encoder, which `--text-lr` trains at its own rate (ConVIRT's
    /// `bert_lr`, REFERS' BERT branch); `false` for methods without one.
    fn is_text_encoder(&self, name: &str) -> bool {
        let _ = name;
        false
    }
    /// Takes part in the data-parallel run `dp`; `false` when the method
    /// cannot (every method runs in a single process).
    fn join(&mut self, dp: &DataParallel) -> bool {
        dp.world_size() == 1
    }
    /// The loss of this rank's slice of the batch and the fields it adds to
    /// the step's log line. In a data-parallel run the returned loss is the
    /// rank's share: summed over ranks, both the values and the gradients
    /// are the global batch's.
    ///
    /// # Errors
    /// When a collective fails.
    fn loss(
        &mut self,
        views: &Views,
        step_seed: u64,
    ) -> Result<(Tensor, serde_json::Map<String, Value>), String>;
    /// Called once the optimiser has stepped (MoCo enqueues its keys here).
    ///
    /// # Errors
    /// When a collective fails.
    fn after_step(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Called before each epoch, `epoch` counted from 0 of `epochs`, also
    /// when a run resumes mid-epoch (S2MTS2 ramps its JCL weight by epoch).
    fn start_epoch(&mut self, _epoch: usize, _epochs: usize) {}
    /// Every tensor a bit-for-bit resume needs.
    fn state(&self) -> BTreeMap<String, Tensor>;
    /// Restores [`Objective::state`] output.
    ///
    /// # Errors
    /// A message naming a missing or mis-shaped tensor.
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), String>;
    /// The image encoder downstream tasks use, in the backbone's own names.
    fn encoder(&self) -> BTreeMap<String, Tensor>;
    /// Files written next to the encoder (e.g. a whole image-text model).
    ///
    /// # Errors
    /// A message naming the file that could not be written.
    fn export_extra(&self, _dir: &std::path::Path) -> Result<(), String> {
        Ok(())
    }
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
    pub log: &'a mut dyn FnMut(&Value) -> Result<(), String>,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// The process group: each rank takes its slice of every global batch of
    /// `config.batch_size`; only rank 0 writes checkpoints and the encoder.
    pub parallel: DataParallel,
}

fn raw(name: &str, t: &Tensor) -> Result<RawTensor, String> {
    RawTensor::from_tch(name, &t.to_device(Device::Cpu)).map_err(|e| e.to_string())
}

impl Pretrainer<'_> {
    fn input(&self, images: &[u8], n: usize) -> Tensor {
        let s = self.spec.preprocessing.size as usize;
        self.spec.preprocessing.input(images, n, s, s, self.device)
    }

    fn save_last(
        &self,
        model: &dyn Objective,
        opt: &Optimizer,
        p: &Progress,
    ) -> Result<(), String> {
        if !self.parallel.is_main() {
            return Ok(());
        }
        TrainState {
            model: model.state(),
            optim: opt.state(),
            progress: serde_json::to_vec(p).map_err(|e| e.to_string())?,
        }
        .save(&self.dir.join("last.safetensors"))
    }

    fn load_last(
        &self,
        model: &mut dyn Objective,
        opt: &mut Optimizer,
    ) -> Result<Progress, String> {
        let path = self.dir.join("last.safetensors");
        let state = TrainState::load(&path, self.device)?;
        model
            .load_state(&state.model)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        opt.load_state(state.optim)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&state.progress).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn export(&self, model: &dyn Objective) -> Result<(), String> {
        if !self.parallel.is_main() {
            return Ok(());
        }
        model.export_extra(&self.dir)?;
        let tensors: BTreeMap<String, RawTensor> = model
            .encoder()
            .iter()
            .map(|(k, v)| Ok((k.clone(), raw(k, v)?)))
            .collect::<Result<_, String>>()?;
        write_safetensors(&self.dir.join("encoder.safetensors"), &tensors, None)?;
        let mut sidecar = self.spec.sidecar();
        sidecar["method"] = json!(self.config.method);
        let text = serde_json::to_string_pretty(&sidecar).map_err(|e| e.to_string())? + "\n";
        crate::io::write_atomic(&self.dir.join("encoder.json"), text.as_bytes())
            .map_err(|e| e.to_string())
    }

    /// The objective `config.method` names.
    fn objective(&self) -> Result<Box<dyn Objective>, String> {
        let (c, spec, device) = (&self.config, &self.spec, self.device);
        let size = spec.preprocessing.size;
        // The image-text objectives read their training rows' reports.
        let train = || self.store.split_indices(Split::Train);
        Ok(match c.method.as_str() {
            "s2mts2" => Box::new(S2mts2::new(
                spec.clone(),
                c.moco.clone(),
                c.s2mts2.clone().unwrap_or_default(),
                device,
                c.seed,
            )?),
            "moco-cxr" | "medaug" => {
                Box::new(Moco::new(spec.clone(), c.moco.clone(), device, c.seed))
            }
            "clip" => Box::new(ClipObjective::new(
                &self.store,
                &train(),
                spec.preprocessing,
                &c.clip
                    .clone()
                    .unwrap_or_else(|| ClipSettings::for_size(size)),
                device,
                c.seed,
            )?),
            "refers" => Box::new(RefersObjective::new(
                &self.store,
                &train(),
                spec,
                &c.refers
                    .clone()
                    .unwrap_or_else(|| RefersSettings::for_width(spec.feature_dim())),
                device,
                c.seed,
            )?),
            "convirt" => Box::new(Convirt::new(
                &self.store,
                &train(),
                spec,
                &c.convirt
                    .clone()
                    .unwrap_or_else(|| ConvirtSettings::for_size(size)),
                device,
                c.seed,
            )?),
            "gloria" => Box::new(Gloria::new(
                &self.store,
                &train(),
                spec,
                &c.gloria
                    .clone()
                    .unwrap_or_else(|| GloriaSettings::for_size(size)),
                device,
                c.seed,
            )?),
            other => return Err(format!("unknown pretraining method '{other}'")),
        })
    }

    /// Trains, resuming from `last.safetensors` when `resume` is set and it
    /// exists; writes the encoder at every epoch end.
    ///
    /// # Errors
    /// [`TrainError::NonFinite`] on divergence (the last checkpoint kept);
    /// messages for data and I/O problems.
    pub fn run(&mut self, resume: bool) -> Result<(), TrainError> {
        let c = self.config.clone();
        let mut objective = {
            let _init = crate::init_lock();
            self.objective()?
        };
        let model = objective.as_mut();
        if let Some(summary) = model.summary() {
            (self.log)(&summary)?;
        }
        let train = model.rows(self.store.split_indices(Split::Train));
        let batches = train.len() / c.batch_size.max(1);
        if c.batch_size < 2 || batches == 0 {
            return Err(format!(
                "need at least one batch of {} (>= 2) training images, have {}",
                c.batch_size,
                train.len()
            )
            .into());
        }
        if !["clip", "refers", "convirt", "gloria"].contains(&c.method.as_str())
            && !c.moco.queue.is_multiple_of(c.batch_size)
        {
            return Err(format!(
                "the queue ({}) must be a multiple of the batch size ({})",
                c.moco.queue, c.batch_size
            )
            .into());
        }
        c.precision.check(self.device)?;
        let dp = self.parallel.clone();
        shard::local_batch(c.batch_size, dp.world_size()).map_err(String::from)?;
        if !model.join(&dp) {
            return Err(format!(
                "method '{}' does not train data-parallel: its loss needs features of the whole \
                 batch that are not gathered across ranks; run it as one process",
                c.method
            )
            .into());
        }
        let sampler = PositiveSampler::new(&self.store, &train, c.positive, c.seed)?;
        let mut opt = Optimizer::new(c.rule, model.trainable());
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
                return Err(format!(
                    "--text-lr must be finite and >= 0 (and --lr > 0), got {text_lr}"
                )
                .into());
            }
            let n = opt.set_lr_scale(|n| model.is_text_encoder(n), text_lr / c.lr);
            if n == 0 {
                return Err(format!(
                    "--text-lr: method '{}' has no trainable text encoder of its own rate",
                    c.method
                )
                .into());
            }
            (self.log)(&json!({"event": "groups", "text_encoder_tensors": n, "text_lr": text_lr}))?;
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
            (self.log)(
                &json!({"event": "resume", "epoch": p.epoch, "batch": p.batch, "step": p.step}),
            )?;
            p
        } else {
            Progress {
                scaler: c.precision.needs_loss_scaling().then(GradScaler::default),
                ..Progress::default()
            }
        };
        // Every rank starts from rank 0's state, whatever its initialisation.
        let state: Vec<Tensor> = model.state().into_values().collect();
        dp.broadcast_params(&state).map_err(String::from)?;
        let params: Vec<Tensor> = opt
            .params()
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .collect();
        while p.epoch < c.epochs {
            model.start_epoch(p.epoch, c.epochs);
            let epoch = p.epoch + 1;
            let started = Instant::now();
            let order = data::epoch_order(&train, c.seed, epoch as u64);
            let n_views = model.views().max(1);
            let chunks: Vec<Vec<Vec<usize>>> =
                shard::shard_batches(&order, c.batch_size, dp.rank(), dp.world_size(), p.batch)
                    .map_err(String::from)?
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
            for batch in rx {
                let lr = schedule.lr(p.step);
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
                    .autocast(self.device, || model.loss(&views, step_seed))?;
                let loss = loss.to_kind(tch::Kind::Float);
                let totals = dp
                    .sum(&[loss.double_value(&[]), distinct as f64])
                    .map_err(String::from)?;
                let (value, distinct) = (totals[0], totals[1] as usize);
                if !value.is_finite() {
                    drop(handle);
                    return Err(TrainError::non_finite(epoch, p.step + 1, value, &last));
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
                (self.log)(&record)?;
                if c.checkpoint_every > 0 && p.step % c.checkpoint_every == 0 && p.batch < batches {
                    self.save_last(model, &opt, &p)?;
                    (self.log)(&json!({"event": "checkpoint", "epoch": epoch, "step": p.step}))?;
                }
                step_started = Instant::now();
            }
            let _ = handle.join();
            p.epoch = epoch;
            p.batch = 0;
            self.save_last(model, &opt, &p)?;
            self.export(model)?;
            let mean = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
            let secs = started.elapsed().as_secs_f64();
            (self.log)(
                &json!({"event": "epoch", "epoch": epoch, "loss": mean, "seconds": secs, "images_per_second": (losses.len() * c.batch_size) as f64 / secs}),
            )?;
            if self.verbose {
                eprintln!(
                    "epoch {epoch}/{}: loss {mean:.4} ({:.1} images/s)",
                    c.epochs,
                    (losses.len() * c.batch_size) as f64 / secs
                );
            }
        }
        Ok(())
    }
}
