//! Image-text models for zero-shot classification: images and tokenised
//! texts into one embedding space, with the model's own image preprocessing
//! and its own way of turning similarities into probabilities.
//!
//! - [`ClipModel`]: OpenAI's CLIP layout (CheXzero, models trained here);
//!   a softmax over similarities.
//! - [`SiglipModel`]: SigLIP (MedSigLIP, XraySigLIP, any `siglip`
//!   `config.json`); each prompt scored by its own sigmoid,
//!   `sigmoid(scale * cos + bias)`, as the sigmoid loss trained it.
//! - [`OpenClipModel`]: open_clip with a timm image tower and a Hugging Face
//!   BERT text tower (BiomedCLIP); a softmax, as CLIP.

mod clip;
mod open_clip;
mod siglip;

pub use clip::{ClipModel, SIDECAR_FORMAT, clip_key, config_from_state_dict};
pub use open_clip::OpenClipModel;
pub use siglip::SiglipModel;

use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use crate::entry::Preprocessing;
use crate::error::NnError;
use crate::model_dir::{DirFormat, ModelDir};
use crate::text::TextTokenizer;

/// How a model turns image-text similarities into probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scoring {
    /// Contrastive softmax (CLIP, BiomedCLIP): binary labels compare a
    /// positive with a negative prompt; classes compete through a softmax
    /// over `scale * cos`.
    Softmax {
        /// The learned temperature as a multiplier (`exp(logit_scale)`).
        scale: f64,
    },
    /// Sigmoid (SigLIP): every prompt is its own binary decision,
    /// `sigmoid(scale * cos + bias)`.
    Sigmoid {
        /// `exp(logit_scale)`.
        scale: f64,
        /// `logit_bias`.
        bias: f64,
    },
}

/// A model embedding images and texts into one space.
pub trait ImageTextModel {
    /// How images are prepared (size, channels, statistics).
    fn preprocessing(&self) -> &Preprocessing;
    /// Token positions the text tower reads.
    fn context_length(&self) -> usize;
    /// The learned temperature as a multiplier (`exp(logit_scale)`).
    fn logit_scale(&self) -> f64;
    /// How similarities become probabilities.
    fn scoring(&self) -> Scoring;
    /// Why `tokenizer` cannot feed the text tower (`Err` with a reason
    /// naming what differs), or `Ok`.
    ///
    /// # Errors
    /// The reason.
    fn check_tokenizer(&self, tokenizer: &TextTokenizer) -> Result<(), String>;
    /// Unnormalised embeddings `[n, e]` (f32, CPU, no gradients) of `n`
    /// grayscale u8 images of `h x w`, concatenated row-major.
    fn encode_images(&self, images: &[u8], n: usize, h: usize, w: usize) -> Tensor;
    /// Unnormalised embeddings `[n, e]` (f32, CPU, no gradients) of token ids
    /// `[n * context_length]`, as [`crate::text::TextTokenizer::encode_batch`]
    /// returns them.
    fn encode_texts(&self, ids: &[i64], n: usize) -> Tensor;
}

/// A whole image-text model from a publisher's directory, with the tokenizer
/// file the directory ships (`tokenizer.json`, else `vocab.txt`), when it
/// ships one. `preprocessing` is the image preparation to use (the
/// registry's or the directory's, as the caller resolved it).
///
/// # Errors
/// [`NnError::ModelConfig`] for a directory that is not an image-text model
/// cxrlearn builds (a DINOv2, a SigLIP image tower alone), or weights that
/// do not load strictly.
pub fn from_dir(
    dir: &ModelDir,
    preprocessing: Preprocessing,
    device: Device,
) -> Result<(Box<dyn ImageTextModel>, Option<PathBuf>), NnError> {
    let model: Box<dyn ImageTextModel> = match dir.format {
        DirFormat::HuggingFace => match dir.config["model_type"].as_str() {
            Some("siglip") => Box::new(SiglipModel::from_dir(dir, preprocessing, device)?),
            other => {
                return Err(NnError::ModelConfig {
                    file: dir.config_file.clone(),
                    problem: format!(
                        "\"model_type\" is {}; zero-shot needs both towers of an image-text model \
                         (\"siglip\"; or an open_clip directory)",
                        other.map_or("missing".to_owned(), |t| format!("\"{t}\""))
                    ),
                });
            }
        },
        DirFormat::OpenClip => Box::new(OpenClipModel::from_dir(dir, preprocessing, device)?),
    };
    Ok((model, shipped_tokenizer(&dir.dir)))
}

/// What `f` computes, without gradients, as f32 on the CPU: what every
/// [`ImageTextModel`] encoder returns.
pub(crate) fn on_cpu(f: impl FnOnce() -> Tensor) -> Tensor {
    tch::no_grad(|| f().to_kind(tch::Kind::Float).to_device(Device::Cpu))
}

/// Token ids `[n * context]`, row-major, as `[n, context]` on `device`.
pub(crate) fn ids_on(ids: &[i64], n: usize, device: Device) -> Tensor {
    Tensor::from_slice(ids)
        .view([n as i64, -1])
        .to_device(device)
}

/// The tokenizer file a model directory ships.
fn shipped_tokenizer(dir: &Path) -> Option<PathBuf> {
    ["tokenizer.json", "vocab.txt"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}
