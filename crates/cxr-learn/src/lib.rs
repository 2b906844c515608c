//! Learning side of cxrlearn: everything that trains or fits on top of the
//! backbones in `cxr-nn`.
//!
//! - [`probe`]: L2-regularised logistic regression on frozen features, all
//!   labels solved together by a batched L-BFGS ([`lbfgs`]).
//! - [`metrics`]: the selection metric, macro AUC as `evaluate` reports it.
//! - [`zeroshot`]: CheXzero-style zero-shot scoring from text prompts.
//! - [`contrastive`]: CLIP's symmetric InfoNCE.
//! - [`finetune`]: the training loop (backbone + head, [`optim`],
//!   [`schedule`], resumable checkpoints written through [`io`]) over a
//!   [`classifier::Classifier`].

pub mod contrastive;
pub mod metrics;
pub mod probe;
pub mod zeroshot;

pub mod classifier;
pub mod data;
pub mod finetune;
pub mod io;
pub mod optim;
pub mod schedule;
pub mod ssl;
