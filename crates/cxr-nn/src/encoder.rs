//! A registry model with its weights on a device, turning stored u8 images
//! into features: eval mode, no gradients, preprocessing from the registry.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::backbone::Backbone;
use crate::checkpoint::RawTensor;
use crate::load::{KeyMismatch, load_strict};
use crate::registry::Normalization;
use crate::spec::ModelSpec;

/// A frozen feature extractor.
#[derive(Debug)]
pub struct Encoder {
    /// What was built.
    pub spec: ModelSpec,
    /// Statistics inputs are normalised with (the entry's by default).
    pub normalization: Normalization,
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
        assert_eq!(
            images.len(),
            n * h * w,
            "batch bytes do not match n x h x w"
        );
        let p = &self.spec.preprocessing;
        let mut x = Tensor::from_slice(images)
            .view([n as i64, 1, h as i64, w as i64])
            .to_device(self.device)
            .to_kind(Kind::Float)
            / 255.0;
        if (h as i64, w as i64) != (p.size, p.size) {
            x = x.upsample_bilinear2d([p.size, p.size], false, None, None);
        }
        let x = x.expand([n as i64, p.channels, p.size, p.size], false);
        let stats = |v: [f64; 3]| {
            Tensor::from_slice(&v[..p.channels as usize])
                .to_kind(Kind::Float)
                .view([1, p.channels, 1, 1])
                .to_device(self.device)
        };
        let mut x = (x - stats(self.normalization.mean)) / stats(self.normalization.std);
        if let Some(side) = p.internal_resize {
            // GLoRIA's image encoder upsamples inside the model.
            x = x.upsample_bilinear2d([side, side], true, None, None);
        }
        x
    }

    /// Features `[n, dim]` (f32, on the CPU) of `n` u8 images of `h x w`.
    pub fn features(&self, images: &[u8], n: usize, h: usize, w: usize) -> Tensor {
        tch::no_grad(|| {
            let x = self.preprocess(images, n, h, w);
            self.backbone
                .features_t(&x, false)
                .to_kind(Kind::Float)
                .to_device(Device::Cpu)
        })
    }
}
