//! A backbone with a linear head: the model finetuning trains and `predict`
//! runs. Backbone variables keep their source names (torchvision, OpenAI
//! CLIP, ...); the head is `head.weight` / `head.bias`, so a saved classifier
//! is also a loadable backbone checkpoint.

use std::collections::BTreeMap;

use cxr_nn::arch::resnet_folded::FoldedResNet;
use cxr_nn::backbone::Backbone;
use cxr_nn::checkpoint::RawTensor;
use cxr_nn::encoder::Inference;
use cxr_nn::load::{KeyMismatch, load_strict};
use cxr_nn::spec::ModelSpec;
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// Prefix of the head's variables.
pub const HEAD: &str = "head.";

/// A backbone and a `k`-output linear head on one device.
#[derive(Debug)]
pub struct Classifier {
    /// Variables of backbone and head.
    pub vs: VarStore,
    backbone: Backbone,
    head: nn::Linear,
    /// What was built.
    pub spec: ModelSpec,
    /// Outputs (labels or classes).
    pub k: i64,
    /// When set only the head trains and the backbone stays in eval mode.
    pub freeze_backbone: bool,
    /// Inputs in channels-last order ([`Classifier::set_channels_last`]).
    nhwc: bool,
    /// The backbone folded for inference ([`Classifier::prepare`]).
    folded: Option<FoldedResNet>,
}

impl Classifier {
    /// Builds `spec` with a `k`-output head, initialised from `seed`; when
    /// `backbone_weights` is given (already in the backbone's names) they are
    /// loaded strictly.
    ///
    /// # Errors
    /// [`KeyMismatch`] naming every missing, unexpected or mis-shaped key.
    pub fn new(
        spec: ModelSpec,
        k: i64,
        device: Device,
        backbone_weights: Option<&BTreeMap<String, RawTensor>>,
        seed: u64,
        freeze_backbone: bool,
    ) -> Result<Self, KeyMismatch> {
        let _init = crate::init_lock();
        tch::manual_seed(seed as i64);
        let mut vs = VarStore::new(device);
        let backbone = Backbone::new(&vs.root(), &spec.architecture);
        let head = nn::linear(
            vs.root() / "head",
            spec.feature_dim(),
            k,
            Default::default(),
        );
        if let Some(weights) = backbone_weights {
            // The head is new: only the backbone has to match the file.
            let mut all: BTreeMap<String, RawTensor> = weights
                .iter()
                .filter(|(name, _)| !name.starts_with(HEAD))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            for (name, var) in vs.variables() {
                if name.starts_with(HEAD) {
                    all.insert(
                        name.clone(),
                        RawTensor::from_tch(&name, &var).expect("an f32 head variable converts"),
                    );
                }
            }
            load_strict(&mut vs, &all, |_| false)?;
        }
        if freeze_backbone {
            for (name, var) in vs.variables() {
                if !name.starts_with(HEAD) {
                    let _ = var.set_requires_grad(false);
                }
            }
        }
        Ok(Self {
            vs,
            backbone,
            head,
            spec,
            k,
            freeze_backbone,
            nhwc: false,
            folded: None,
        })
    }

    /// Puts a convolutional backbone's weights, and from then on its
    /// inputs, in channels-last order (oneDNN's and cuDNN's fastest layout
    /// for convolutions, forward and backward); nothing for transformers.
    /// The same numbers within float rounding; saved weights are unchanged.
    pub fn set_channels_last(&mut self) {
        if self.backbone.is_convolutional() {
            cxr_nn::memory_format::vars_to_channels_last(&self.vs);
            self.nhwc = true;
        }
    }

    /// Arranges [`Classifier::predict`]'s forward pass as `features` arranges
    /// an encoder's ([`cxr_nn::encoder::Encoder::prepare`]): channels-last
    /// order and batch norm folded into the convolutions, each as asked. Call
    /// it once the weights are loaded and training is over: the folded
    /// weights are a copy, which later training would leave behind (the
    /// training forward, [`Classifier::forward_t`], never uses them).
    pub fn prepare(&mut self, inference: Inference) {
        if inference.channels_last {
            self.set_channels_last();
        }
        self.folded = if inference.fold_batch_norm {
            FoldedResNet::of(&self.backbone, Kind::Float, self.nhwc)
        } else {
            None
        };
    }

    /// Whether [`Classifier::predict`] runs the folded backbone.
    pub fn is_folded(&self) -> bool {
        self.folded.is_some()
    }

    /// Logits `[n, k]` in evaluation mode, without gradients, through the
    /// graph [`Classifier::prepare`] arranged (the plain one without it).
    pub fn predict(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| match &self.folded {
            Some(folded) => self
                .head
                .forward(&folded.features(x).to_kind(self.head.ws.kind())),
            None => self.forward_t(x, false),
        })
    }

    /// Trainable variables by name, in a stable order.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(n, v)| v.requires_grad() && (!self.freeze_backbone || n.starts_with(HEAD)))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Normalised network input `[n, c, s, s]` from `n` u8 images already
    /// at the model's input size `s`.
    pub fn input(&self, images: &[u8], n: usize) -> Tensor {
        let s = self.spec.preprocessing.size as usize;
        let x = self
            .spec
            .preprocessing
            .input(images, n, s, s, self.vs.device());
        if self.nhwc {
            cxr_nn::memory_format::channels_last(&x)
        } else {
            x
        }
    }

    /// Logits `[n, k]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let features = self.backbone.features_t(x, train && !self.freeze_backbone);
        // The head's type: float32 after a reduced-precision backbone (float64
        // in the accuracy tests).
        self.head.forward(&features.to_kind(self.head.ws.kind()))
    }

    /// Every variable (backbone and head) for a safetensors file.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming a variable whose dtype safetensors
    /// cannot hold.
    pub fn weights(&self) -> Result<BTreeMap<String, RawTensor>> {
        self.vs
            .variables()
            .iter()
            .map(|(n, v)| {
                RawTensor::from_tch(n, &v.to_device(Device::Cpu))
                    .map(|t| (n.clone(), t))
                    .map_err(Error::Checkpoint)
            })
            .collect()
    }

    /// Loads a whole classifier (backbone and head) strictly.
    ///
    /// # Errors
    /// [`KeyMismatch`] naming every mismatched key.
    pub fn load_weights(
        &mut self,
        tensors: &BTreeMap<String, RawTensor>,
    ) -> Result<(), KeyMismatch> {
        load_strict(&mut self.vs, tensors, |_| false)
    }
}

#[cfg(test)]
mod tests {
    use cxr_nn::arch::Norm;
    use cxr_nn::arch::resnet::{Block, ResNetConfig};
    use cxr_nn::backbone::Architecture;

    use super::*;

    /// A two-output classifier on a narrow ResNet whose batch-norm
    /// statistics and affine parameters are far from their initial 0/1
    /// (which would fold to nothing).
    fn classifier(block: Block) -> Classifier {
        let mut spec = ModelSpec::scratch("resnet50", 48, None).unwrap();
        spec.architecture = Architecture::ResNet(ResNetConfig {
            block,
            layers: [1, 2, 1, 1],
            width: 8,
            in_channels: 3,
            num_classes: None,
            norm: Norm::Batch,
        });
        let c = Classifier::new(spec, 2, Device::Cpu, None, 7, false).unwrap();
        tch::manual_seed(11);
        tch::no_grad(|| {
            for (name, mut v) in c.vs.variables() {
                if name.ends_with("running_var")
                    || (name.contains("bn") && name.ends_with("weight"))
                {
                    let _ = v.uniform_(0.5, 1.5);
                } else if name.ends_with("running_mean") || name.ends_with("bias") {
                    let _ = v.uniform_(-0.2, 0.2);
                }
            }
        });
        c
    }

    /// `predict` on every arrangement gives the plain training graph's
    /// evaluation-mode logits within float rounding (the bound `features`
    /// is held to: 1e-4 relative).
    #[test]
    fn prepared_predictions_match_the_plain_forward() {
        for block in [Block::Basic, Block::Bottleneck] {
            let pixels: Vec<u8> = (0..3 * 48 * 48).map(|i| (i * 37 % 251) as u8).collect();
            let plain = classifier(block);
            // Each arrangement gets the same weights whatever other tests
            // draw from libtorch's global generator meanwhile.
            let weights = plain.weights().unwrap();
            let x = plain.input(&pixels, 3);
            let want = tch::no_grad(|| plain.forward_t(&x, false));
            for (fold, nhwc) in [(true, true), (true, false), (false, true)] {
                let mut c = classifier(block);
                c.load_weights(&weights).unwrap();
                c.prepare(Inference {
                    fold_batch_norm: fold,
                    channels_last: nhwc,
                });
                assert_eq!(c.is_folded(), fold);
                let got = c.predict(&c.input(&pixels, 3));
                let err = f64::try_from((&got - &want).abs().max()).unwrap()
                    / f64::try_from(want.abs().max()).unwrap();
                assert!(err < 1e-4, "{block:?} fold={fold} nhwc={nhwc}: {err}");
                assert!(
                    f64::try_from(want.abs().max()).unwrap() > 1e-3,
                    "the logits must not vanish"
                );
            }
        }
    }
}
