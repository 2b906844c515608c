//! A registry model with its weights on a device, turning stored u8 images
//! into features: eval mode, no gradients, preprocessing from the registry.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::backbone::Backbone;
use crate::checkpoint::RawTensor;
use crate::import::ImportError;
use crate::load::load_strict;
use crate::registry::{ModelEntry, Normalization};

/// A frozen feature extractor.
#[derive(Debug)]
pub struct Encoder {
    /// The registry entry.
    pub entry: ModelEntry,
    /// Statistics inputs are normalised with (the entry's by default).
    pub normalization: Normalization,
    backbone: Backbone,
    _vs: VarStore,
    device: Device,
}

impl Encoder {
    /// Builds `entry` on `device` and loads `tensors` (already mapped to the
    /// entry's names, as [`crate::import::map_keys`] returns them) strictly.
    ///
    /// # Errors
    /// [`ImportError::Keys`] naming every mismatched key.
    pub fn new(
        entry: ModelEntry,
        tensors: &BTreeMap<String, RawTensor>,
        device: Device,
    ) -> Result<Self, ImportError> {
        let mut vs = VarStore::new(device);
        let backbone = Backbone::new(&vs.root(), &entry.architecture);
        load_strict(&mut vs, tensors, |_| false).map_err(|mismatch| ImportError::Keys {
            model: entry.name,
            mismatch,
            ignored: 0,
        })?;
        Ok(Self {
            normalization: entry.preprocessing.normalization,
            entry,
            backbone,
            _vs: vs,
            device,
        })
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
        let p = &self.entry.preprocessing;
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
