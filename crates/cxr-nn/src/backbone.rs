//! One type over every architecture, so the registry, feature extraction and
//! training see a single "images in, features out" interface.

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use crate::arch::clip::{ClipConfig, ClipVisual};
use crate::arch::densenet::{DenseNet, DenseNetConfig};
use crate::arch::resnet::{ResNet, ResNetConfig};
use crate::arch::vit::{Vit, VitConfig};

/// An architecture and its shape, without weights.
#[derive(Debug, Clone, PartialEq)]
pub enum Architecture {
    /// A torchvision ResNet trunk (no `fc`).
    ResNet(ResNetConfig),
    /// A torchvision DenseNet trunk (no `classifier`).
    DenseNet(DenseNetConfig),
    /// REFERS' ViT encoder (no `head`).
    Vit(VitConfig),
    /// The image tower of OpenAI CLIP, built under `visual.`.
    ClipVisual(ClipConfig),
}

impl Architecture {
    /// A short human-readable name.
    pub fn describe(&self) -> String {
        match self {
            Self::ResNet(c) => {
                let depth = if c.layers == [2, 2, 2, 2] {
                    "18"
                } else if c.layers == [3, 4, 6, 3] {
                    "50"
                } else {
                    ""
                };
                format!("ResNet-{depth} (torchvision)")
            }
            Self::DenseNet(c) => match c.activation {
                crate::arch::densenet::Activation::Relu => "DenseNet-121 (torchvision)".into(),
                crate::arch::densenet::Activation::LeakyRelu(_) => {
                    "DenseNet-121, LeakyReLU(0.1) (S2MTS2)".into()
                }
            },
            Self::Vit(c) => format!("ViT-B/{} (REFERS)", c.patch_size),
            Self::ClipVisual(c) => format!("CLIP ViT-B/{} image tower", c.vision_patch_size),
        }
    }

    /// Dimension of the feature vector.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Self::ResNet(c) => c.feature_dim(),
            Self::DenseNet(c) => c.feature_dim(),
            Self::Vit(c) => c.hidden,
            Self::ClipVisual(c) => c.embed_dim,
        }
    }
}

/// A built network with variables in a [`nn::VarStore`].
#[derive(Debug)]
pub enum Backbone {
    /// See [`Architecture::ResNet`].
    ResNet(ResNet),
    /// See [`Architecture::DenseNet`].
    DenseNet(DenseNet),
    /// See [`Architecture::Vit`].
    Vit(Vit),
    /// See [`Architecture::ClipVisual`].
    ClipVisual(ClipVisual),
}

impl Backbone {
    /// Builds `arch` under `p` (randomly initialised until loaded).
    pub fn new(p: &nn::Path, arch: &Architecture) -> Self {
        match arch {
            Architecture::ResNet(c) => Self::ResNet(ResNet::new(
                p,
                &ResNetConfig {
                    num_classes: None,
                    ..c.clone()
                },
            )),
            Architecture::DenseNet(c) => Self::DenseNet(DenseNet::new(
                p,
                &DenseNetConfig {
                    num_classes: None,
                    ..c.clone()
                },
            )),
            Architecture::Vit(c) => Self::Vit(Vit::new(
                p,
                &VitConfig {
                    num_classes: None,
                    ..c.clone()
                },
            )),
            Architecture::ClipVisual(c) => Self::ClipVisual(ClipVisual::new(&(p / "visual"), c)),
        }
    }

    /// Features `[n, dim]` of normalised images `[n, 3, h, w]`.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Self::ResNet(m) => m.features_t(x, train),
            Self::DenseNet(m) => m.features_t(x, train),
            Self::Vit(m) => m.forward_t(x, train),
            Self::ClipVisual(m) => m.forward(&x.to_kind(Kind::Float)),
        }
    }
}
