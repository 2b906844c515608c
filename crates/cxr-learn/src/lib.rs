//! Learning side of cxrlearn: everything that trains or fits on top of the
//! backbones in `cxr-nn`.
//!
//! - [`model`]: what a `--model` string names (registry release,
//!   `scratch:ARCH`, `hf:DIR`, `open_clip:DIR`, a file this project wrote),
//!   resolved and loaded.
//! - [`image_text`]: the same for zero-shot's image-text models (both
//!   towers, the tokenizer).
//! - [`features`]: frozen features of a store's splits, their cache key and
//!   the features directory format (written and read).
//! - [`probe`]: L2-regularised logistic regression on frozen features, all
//!   labels solved together by a batched L-BFGS ([`lbfgs`]).
//! - [`metrics`]: the selection metric, macro AUC as `evaluate` reports it.
//! - [`zeroshot`]: zero-shot scoring from text prompts (CheXzero's softmax,
//!   SigLIP's sigmoid).
//! - [`contrastive`]: CLIP's symmetric InfoNCE.
//! - [`finetune`]: the training loop (backbone + head, [`optim`],
//!   [`schedule`], resumable checkpoints written through [`io`]) over a
//!   [`classifier::Classifier`].
//! - [`ssl`]: the seven self-supervised objectives and their loop.
//! - [`dist`]: data-parallel training (launcher variables, rendezvous,
//!   sampler, gradient buckets, NCCL); [`scaler`]: float16 loss scaling.
//! - [`error`]: the crate's one error type, [`Error`].

pub mod contrastive;
pub mod features;
pub mod image_text;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod zeroshot;

pub mod classifier;
pub mod data;
pub mod dist;
pub mod error;
pub mod finetune;
pub mod io;
pub mod optim;
pub mod scaler;
pub mod schedule;
pub mod ssl;

pub use error::{Error, Result};

/// Held while a model is seeded and initialised, so no other thread of
/// this process initialises one at the same time. libtorch has one random
/// generator per process: two models seeded and built at once on two
/// threads (thread ranks in tests, trainers run side by side) would
/// interleave their draws, and neither would get the weights its seed gives.
pub fn init_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    /// This crate's test binaries link libtorch through the same build
    /// script as the command line: CUDA support is loaded whenever the
    /// libtorch in use has it (see `crates/cxr-nn/rpath.rs`).
    #[test]
    fn cuda_support_is_loaded_whenever_libtorch_has_it() {
        let s = cxr_nn::system::SystemInfo::probe();
        assert_eq!(s.cuda_library_loaded, s.cuda_library_present, "{s:?}");
        assert_eq!(s.cuda_support, s.cuda_library_present, "{s:?}");
    }
}
