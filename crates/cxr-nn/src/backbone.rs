//! One type over every architecture, so the registry, feature extraction and
//! training see a single "images in, features out" interface.

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use crate::arch::clip::{ClipConfig, ClipVisual};
use crate::arch::densenet::{DenseNet, DenseNetConfig};
use crate::arch::dinov2::{Dinov2, Dinov2Config};
use crate::arch::open_clip::{OpenClipVisionConfig, OpenClipVisual};
use crate::arch::pooling::Pooling;
use crate::arch::resnet::{ResNet, ResNetConfig};
use crate::arch::siglip::{SiglipVision, SiglipVisionConfig};
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
    /// A DINOv2 ViT (Hugging Face `Dinov2Model` names at the root), with
    /// the token pooling that makes its feature.
    Dinov2 {
        /// The shape, as its `config.json` gives it.
        config: Dinov2Config,
        /// How tokens become the feature.
        pooling: Pooling,
    },
    /// The image tower of an open_clip model with a timm ViT trunk
    /// (BiomedCLIP), built under `visual.`: its projected embedding is the
    /// feature, what `encode_image` returns.
    OpenClipVisual {
        /// `vision_cfg` of `open_clip_config.json`.
        vision: OpenClipVisionConfig,
        /// Width of the shared embedding (`embed_dim`).
        embed_dim: i64,
    },
    /// The image tower of SigLIP (MedSigLIP, CheXagent's XraySigLIP),
    /// built under `vision_model.`: the attention-pooling head's output is
    /// the feature, what `get_image_features` returns.
    SiglipVisual(SiglipVisionConfig),
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
            Self::Dinov2 { config: c, pooling } => {
                let size = match (c.hidden_size, c.num_hidden_layers) {
                    (384, 12) => "S".to_owned(),
                    (768, 12) => "B".to_owned(),
                    (1024, 24) => "L".to_owned(),
                    (1536, 40) => "g".to_owned(),
                    (w, l) => format!("{w}x{l}"),
                };
                let registers = match c.registers() {
                    0 => String::new(),
                    r => format!(", {r} registers"),
                };
                format!("DINOv2 ViT-{size}/{}{registers} ({pooling})", c.patch_size)
            }
            Self::OpenClipVisual { vision, .. } => {
                format!("open_clip timm {} image tower", vision.timm_model_name)
            }
            Self::SiglipVisual(c) => format!(
                "SigLIP ViT/{} {}x{} image tower",
                c.patch_size, c.hidden_size, c.num_hidden_layers
            ),
        }
    }

    /// The token pooling, for architectures whose feature is pooled from
    /// tokens in a choice of ways (`--pooling`).
    pub fn pooling(&self) -> Option<Pooling> {
        match self {
            Self::Dinov2 { pooling, .. } => Some(*pooling),
            _ => None,
        }
    }

    /// The same architecture pooling its tokens with `pooling`; `None`
    /// when its feature is not pooled from tokens in a choice of ways.
    pub fn with_pooling(&self, pooling: Pooling) -> Option<Self> {
        match self {
            Self::Dinov2 { config, .. } => Some(Self::Dinov2 {
                config: config.clone(),
                pooling,
            }),
            _ => None,
        }
    }

    /// The fixed input side of architectures that take one size only;
    /// `None` for those that take any size (convolutional trunks, and
    /// ViTs that interpolate their position embeddings).
    pub fn fixed_input_size(&self) -> Option<i64> {
        match self {
            Self::Vit(c) => Some(c.image_size),
            Self::ClipVisual(c) => Some(c.image_resolution),
            _ => None,
        }
    }

    /// Dimension of the feature vector.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Self::ResNet(c) => c.feature_dim(),
            Self::DenseNet(c) => c.feature_dim(),
            Self::Vit(c) => c.hidden,
            Self::ClipVisual(c) => c.embed_dim,
            Self::Dinov2 { config, pooling } => pooling.dim(config.hidden_size),
            Self::OpenClipVisual { embed_dim, .. } => *embed_dim,
            Self::SiglipVisual(c) => c.hidden_size,
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
    /// See [`Architecture::Dinov2`].
    Dinov2(Dinov2, Pooling),
    /// See [`Architecture::OpenClipVisual`].
    OpenClipVisual(OpenClipVisual),
    /// See [`Architecture::SiglipVisual`].
    SiglipVisual(SiglipVision),
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
            Architecture::Dinov2 { config, pooling } => {
                Self::Dinov2(Dinov2::new(p, config), *pooling)
            }
            Architecture::OpenClipVisual { vision, embed_dim } => {
                Self::OpenClipVisual(OpenClipVisual::new(&(p / "visual"), vision, *embed_dim))
            }
            Architecture::SiglipVisual(c) => {
                Self::SiglipVisual(SiglipVision::new(&(p / "vision_model"), c))
            }
        }
    }

    /// Whether it is a convolutional trunk (ResNet, DenseNet), whose
    /// convolutions run fastest in channels-last order.
    pub fn is_convolutional(&self) -> bool {
        matches!(self, Self::ResNet(_) | Self::DenseNet(_))
    }

    /// Features `[n, dim]` of normalised images `[n, 3, h, w]`.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Self::ResNet(m) => m.features_t(x, train),
            Self::DenseNet(m) => m.features_t(x, train),
            Self::Vit(m) => m.forward_t(x, train),
            Self::ClipVisual(m) => m.forward(&x.to_kind(Kind::Float)),
            Self::Dinov2(m, pooling) => m.features_t(x, *pooling, train),
            Self::OpenClipVisual(m) => m.forward_t(x, train),
            Self::SiglipVisual(m) => m.forward_t(x, train),
        }
    }
}
