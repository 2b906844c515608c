//! A registry model with its weights on a device, turning stored u8 images
//! into features: eval mode, no gradients, preprocessing from the registry.
//!
//! Because an encoder only ever runs in evaluation mode, its forward pass
//! can be rearranged once weights are loaded ([`Encoder::prepare`],
//! [`Inference`]): batch norm folded into convolutions, channels-last
//! order, weights stored in the reduced type. Each is switchable, and the
//! equivalence tests hold the features to the plain path's.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::arch::resnet_folded::FoldedResNet;
use crate::backbone::Backbone;
use crate::checkpoint::RawTensor;
use crate::load::{KeyMismatch, load_strict};
use crate::memory_format::{channels_last, vars_to_channels_last};
use crate::precision::Precision;
use crate::registry::{Normalization, Preprocessing};
use crate::spec::ModelSpec;

/// How an encoder's forward pass is arranged (`--no-fuse`,
/// `--no-channels-last`). Both on by default; the features agree with the
/// plain path's within float rounding (tests/inference_graph.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inference {
    /// Fold each batch norm into the convolution before it, and store the
    /// weights in the forward pass's type (batch-normalised ResNets).
    pub fold_batch_norm: bool,
    /// Convolutional trunks (ResNet, DenseNet) in channels-last order.
    pub channels_last: bool,
}

impl Default for Inference {
    fn default() -> Self {
        Self {
            fold_batch_norm: true,
            channels_last: true,
        }
    }
}

impl Inference {
    /// The plain path: the training graph in evaluation mode.
    pub const PLAIN: Self = Self {
        fold_batch_norm: false,
        channels_last: false,
    };
}

/// A frozen feature extractor.
#[derive(Debug)]
pub struct Encoder {
    /// What was built.
    pub spec: ModelSpec,
    /// Statistics inputs are normalised with (the entry's by default).
    pub normalization: Normalization,
    /// Arithmetic of the forward pass (autocast below fp32).
    pub precision: Precision,
    backbone: Backbone,
    vs: VarStore,
    device: Device,
    /// Set by [`Encoder::prepare`].
    folded: Option<FoldedResNet>,
    nhwc: bool,
}

impl Encoder {
    /// Builds `spec` on `device` and loads `tensors` (already in the
    /// architecture's names, as [`crate::import::map_keys`] returns them)
    /// strictly.
    ///
    /// # Errors
    /// [`KeyMismatch`] naming every mismatched key.
    pub fn new(
        spec: ModelSpec,
        tensors: &BTreeMap<String, RawTensor>,
        device: Device,
    ) -> Result<Self, KeyMismatch> {
        let mut vs = VarStore::new(device);
        let backbone = Backbone::new(&vs.root(), &spec.architecture);
        // Weights written by finetuning carry a linear head: not part of the
        // feature extractor.
        load_strict(&mut vs, tensors, |name| name.starts_with("head."))?;
        Ok(Self::assemble(spec, backbone, vs, device))
    }

    /// Builds `spec` with random weights drawn from `seed` (the random-init
    /// baseline of the paper's comparisons).
    pub fn random(spec: ModelSpec, device: Device, seed: u64) -> Self {
        tch::manual_seed(seed as i64);
        let vs = VarStore::new(device);
        let backbone = Backbone::new(&vs.root(), &spec.architecture);
        Self::assemble(spec, backbone, vs, device)
    }

    fn assemble(spec: ModelSpec, backbone: Backbone, vs: VarStore, device: Device) -> Self {
        Self {
            normalization: spec.preprocessing.normalization,
            precision: Precision::Fp32,
            spec,
            backbone,
            vs,
            device,
            folded: None,
            nhwc: false,
        }
    }

    /// Rearranges the forward pass for inference as `inference` asks, for
    /// the current [`Encoder::precision`] (call it after setting that; a
    /// later change of precision falls back to the plain graph for
    /// folding). Channels-last converts the weights in place, once.
    pub fn prepare(&mut self, inference: Inference) {
        self.nhwc = inference.channels_last && self.backbone.is_convolutional();
        if self.nhwc {
            vars_to_channels_last(&self.vs);
        }
        self.folded = if inference.fold_batch_norm {
            FoldedResNet::of(&self.backbone, self.forward_kind(), self.nhwc)
        } else {
            None
        };
    }

    /// The type of the forward pass's activations.
    fn forward_kind(&self) -> Kind {
        self.precision.kind().unwrap_or(Kind::Float)
    }

    /// Whether the folded graph runs on oneDNN-prepacked weights with fused
    /// post-ops (CPU, channels-last; [`crate::onednn`]).
    pub fn is_prepacked(&self) -> bool {
        self.is_folded() && self.folded.as_ref().is_some_and(FoldedResNet::is_prepacked)
    }

    /// Whether the forward pass runs the folded graph (see
    /// [`Encoder::prepare`]).
    pub fn is_folded(&self) -> bool {
        self.folded
            .as_ref()
            .is_some_and(|f| f.kind() == self.forward_kind())
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Turns `n` grayscale u8 images of `h x w` (row-major, concatenated) into
    /// the network's input: scaled to 0-1, resized bilinearly to the entry's
    /// size when they differ, replicated to its channels, normalised.
    pub fn preprocess(&self, images: &[u8], n: usize, h: usize, w: usize) -> Tensor {
        Preprocessing {
            normalization: self.normalization,
            ..self.spec.preprocessing
        }
        .input(images, n, h, w, self.device)
    }

    /// Features `[n, dim]` (f32, on the CPU) of `n` u8 images of `h x w`.
    pub fn features(&self, images: &[u8], n: usize, h: usize, w: usize) -> Tensor {
        tch::no_grad(|| {
            let x = self.preprocess(images, n, h, w);
            let features = match &self.folded {
                Some(folded) if folded.kind() == self.forward_kind() => folded.features(&x),
                _ => {
                    let x = if self.nhwc { channels_last(&x) } else { x };
                    self.precision
                        .autocast(self.device, || self.backbone.features_t(&x, false))
                }
            };
            features.to_kind(Kind::Float).to_device(Device::Cpu)
        })
    }
}
