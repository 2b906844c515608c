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
//! `features`, `probe` and `finetune`; with [`validation`], the one of the
//! best validation loss), and `log.jsonl` (loss, pretext accuracy and
//! collapse monitors per step, validation verdicts). The loop is
//! [`Pretrainer`].

pub mod blocks;
pub mod clip;
pub mod convirt;
pub mod fusion;
pub mod gloria;
pub mod gloria_attention;
pub mod localisation;
pub mod method;
pub mod moco;
pub mod positive;
mod pretrainer;
pub mod refers;
pub mod s2mts2;
pub mod text_side;
pub mod validation;

use std::collections::BTreeMap;

use cxr_data::augment::Augment;
use serde_json::Value;
use tch::Tensor;

use crate::dist::DataParallel;
use crate::error::Error;
use crate::optim::{GradClip, Lookahead, Rule};
use crate::scaler::GradScaler;
use crate::schedule::Shape;
use clip::ClipSettings;
use convirt::ConvirtSettings;
use cxr_nn::precision::Precision;
use gloria::GloriaSettings;
use moco::MocoConfig;
pub use positive::{Positive, PositiveSampler};
pub use pretrainer::Pretrainer;
use refers::RefersSettings;
use s2mts2::S2mts2Settings;
use validation::{Tracker, Validation};

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
    /// Convolutional backbones (and the objective's other 4-D weights) train
    /// in channels-last order (`--channels-last`). Off by default: the same
    /// gradients within float rounding, but short phantom pretraining runs
    /// end elsewhere (S2MTS2's probe gain in `tests/pretrain_probe.rs` lost
    /// its significance), so the default waits for a comparison over seeds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub channels_last: bool,
    /// AdamW and SGD with momentum update through libtorch's fused kernels
    /// (`--fused-optimizer`, [`crate::optim::Optimizer::set_fused`]). Off by
    /// default for the same reason as `channels_last`: another trajectory
    /// at the level of float rounding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fused_optimizer: bool,
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
    /// A held-out validation share and what its loss steers (the plateau
    /// schedule, the exported encoder, early stopping); `None`: no
    /// validation, the encoder of the last epoch is exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
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
    /// Validation's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    validation: Option<Tracker>,
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
    /// The rows of `candidates` it can use, in their order (image-text
    /// objectives drop rows without a usable report).
    fn rows(&self, candidates: Vec<usize>) -> Vec<usize> {
        candidates
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
    /// cannot (by default: only in a single process; all seven methods
    /// override it).
    fn join(&mut self, dp: &DataParallel) -> bool {
        dp.world_size() == 1
    }
    /// The loss of this rank's slice of the batch and the fields it adds to
    /// the step's log line. In a data-parallel run the returned loss is the
    /// rank's share: summed over ranks, both the values and the gradients
    /// are the global batch's.
    ///
    /// `train` is false for a validation pass (run without gradient): the
    /// networks in evaluation mode (dropout off, batch norm on its running
    /// statistics) and no state changed (no momentum update, no keys kept
    /// for the queue), so validating never moves training.
    ///
    /// # Errors
    /// When a collective fails.
    fn loss(
        &mut self,
        views: &Views,
        step_seed: u64,
        train: bool,
    ) -> Result<(Tensor, serde_json::Map<String, Value>), Error>;
    /// Called once the optimiser has stepped (MoCo enqueues its keys here).
    ///
    /// # Errors
    /// When a collective fails.
    fn after_step(&mut self) -> Result<(), Error> {
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
    /// [`Error::MissingState`] or [`Error::StateShape`], naming the tensor.
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<(), Error>;
    /// The image encoder downstream tasks use, in the backbone's own names.
    fn encoder(&self) -> BTreeMap<String, Tensor>;
    /// Files written next to the encoder (e.g. a whole image-text model).
    ///
    /// # Errors
    /// [`Error::Export`], naming the file that could not be written.
    fn export_extra(&self, _dir: &std::path::Path) -> Result<(), Error> {
        Ok(())
    }
    /// Where the lesion words of the reports of `masks`' rows attend in
    /// their images, against the masks ([`localisation`]; `input` turns
    /// `n` stored images into the network's input): the tally and the side
    /// of the square region grid. `None` for objectives without word-region
    /// attention.
    ///
    /// # Errors
    /// [`Error::StoreImage`] for an unreadable image, [`Error::Tokenizer`].
    fn localise(
        &self,
        _store: &cxr_data::store::read::Store,
        _input: &dyn Fn(&[u8], usize) -> tch::Tensor,
        _masks: &localisation::LesionMasks,
    ) -> Result<Option<(localisation::Tally, usize)>, Error> {
        Ok(None)
    }
}
