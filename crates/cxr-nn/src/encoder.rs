//! A registry model with its weights on a device, turning stored u8 images
//! into features: eval mode, no gradients, preprocessing from the registry.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::backbone::Backbone;
use crate::checkpoint::RawTensor;
use crate::load::{KeyMismatch, load_strict};
use crate::precision::Precision;
use crate::registry::{Normalization, Preprocessing};
use crate::spec::ModelSpec;

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
    _vs: VarStore,
    device: Device,
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
            _vs: vs,
            device,
        }
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
            self.precision
                .autocast(self.device, || self.backbone.features_t(&x, false))
                .to_kind(Kind::Float)
                .to_device(Device::Cpu)
        })
    }
}
