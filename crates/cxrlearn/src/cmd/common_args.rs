//! Flags several commands share, declared once and flattened into each
//! command's `Args` (`#[command(flatten)]`), so a flag's name, default and
//! help cannot drift between commands.

use std::path::PathBuf;

use cxr_data::decode::{DecodeLimits, MAX_PIXELS};
use cxr_nn::arch::pooling::Pooling;
use cxr_nn::device::DeviceRequest;
use cxr_nn::precision::Precision;

/// `--model` and `--checkpoint`, resolved by `cxr_learn::model::resolve`
/// (features, finetune).
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Registry name (see `cxrlearn models`, with --checkpoint), scratch:ARCH
    /// (random weights; seed 0 for features: the random-init baseline),
    /// hf:DIR (a Hugging Face model directory: config.json and weights),
    /// open_clip:DIR, or a safetensors file written by cxrlearn (import,
    /// pretrain, finetune) with its sidecar.
    #[arg(long)]
    pub model: String,
    /// Weights for a registry name: a released checkpoint in any supported
    /// container, an imported safetensors file, or the publisher's
    /// directory for models released as one (rad-dino, dinov2-*).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// How a ViT-style encoder's tokens become its feature: cls (the class
    /// token, the default), mean (the mean patch token) or cls+mean (both,
    /// DINOv2's linear evaluation). DINOv2-style models only.
    #[arg(long)]
    pub pooling: Option<Pooling>,
}

/// `--data`: the store a command reads (features, finetune, zero-shot).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Dataset store written by `cxrlearn convert`.
    #[arg(long)]
    pub data: PathBuf,
}

/// `--device` (every command that runs a model).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DeviceArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
}

/// `--precision` of a network's forward pass (features, finetune). The
/// probe's `--precision` (f32/f64 matrix products) is another flag.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PrecisionArgs {
    /// Arithmetic: fp32, bf16 (autocast; CPU or GPU) or fp16 (autocast,
    /// GPU only).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
}

/// How the forward pass of a frozen model is arranged (`features`, `probe`,
/// `predict`); both rearrangements are on by default and give the same
/// outputs within float rounding. The switches are for debugging and
/// measurement.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct InferenceArgs {
    /// Run batch norm as its own op instead of folding it into the
    /// convolution before it (ResNets).
    #[arg(long)]
    pub no_fuse: bool,
    /// Keep convolutional trunks in the default (NCHW) order instead of
    /// channels-last.
    #[arg(long)]
    pub no_channels_last: bool,
}

impl InferenceArgs {
    /// The typed setting.
    pub fn inference(self) -> cxr_nn::encoder::Inference {
        cxr_nn::encoder::Inference {
            fold_batch_norm: !self.no_fuse,
            channels_last: !self.no_channels_last,
        }
    }
}

/// `--force` of the commands that write results into `--out`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ForceArgs {
    /// Replace what a previous cxrlearn command wrote in --out (moved
    /// aside, deleted once this one finishes, put back if it fails). Without
    /// it an --out that holds files is refused.
    #[arg(long)]
    pub force: bool,
}

/// `--max-pixels`'s help: the default comes from the data crate's constant.
fn max_pixels_help() -> String {
    format!(
        "The most pixels (rows x columns x frames) an image file may declare; \
         larger ones are refused before they are decoded (the default is \
         MAX_PIXELS, 2^27 = {MAX_PIXELS})."
    )
}

/// `--max-pixels` (every command that decodes image files the user names:
/// convert, predict).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DecodeArgs {
    /// The most pixels an image file may declare (the default comes from
    /// the data crate).
    #[arg(long, default_value_t = MAX_PIXELS, help = max_pixels_help())]
    pub max_pixels: u64,
}

impl DecodeArgs {
    /// The decoder's limits, checked (`--max-pixels 0` is refused).
    pub fn limits(&self) -> cxr_data::error::Result<DecodeLimits> {
        let limits = DecodeLimits {
            max_pixels: self.max_pixels,
        };
        limits.validate()?;
        Ok(limits)
    }
}
