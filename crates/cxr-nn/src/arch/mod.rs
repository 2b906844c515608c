//! Backbone architectures on tch. Parameter names follow the source
//! implementation (torchvision for ResNet and DenseNet, jeonsworld's ViT-pytorch for
//! REFERS' ViT, OpenAI for CLIP, Hugging Face for BERT and DINOv2), so weights move between cxrlearn
//! and PyTorch by name alone.

pub mod attention;
pub mod bert;
pub mod clip;
pub mod decoder;
pub mod densenet;
pub mod dinov2;
pub mod open_clip;
pub mod pooling;
pub mod resnet;
pub mod resnet_folded;
pub mod siglip;
pub mod vit;

use tch::nn;

/// A bias-free 2-D convolution, as every torchvision CNN trunk uses.
pub(crate) fn conv(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    stride: i64,
    padding: i64,
) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// Batch norm with PyTorch's defaults (eps 1e-5, momentum 0.1).
pub(crate) fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// The normalisation layers of a convolutional backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Norm {
    /// Batch normalisation (torchvision's; `weight`, `bias`, running statistics).
    #[default]
    Batch,
    /// Group normalisation with this many groups (`weight`, `bias`): no batch
    /// statistics, so contrastive pretraining cannot identify positives through
    /// them (docs/ssl-methods.md (Pitfalls)) and train and eval modes agree.
    Group(i64),
}

/// A built normalisation layer (see [`Norm`]).
#[derive(Debug)]
pub(crate) enum NormLayer {
    Batch(nn::BatchNorm),
    Group(nn::GroupNorm),
}

impl nn::ModuleT for NormLayer {
    fn forward_t(&self, x: &tch::Tensor, train: bool) -> tch::Tensor {
        match self {
            Self::Batch(b) => x.apply_t(b, train),
            Self::Group(g) => x.apply(g),
        }
    }
}

/// A normalisation layer of `c` channels under `p`; groups are capped at `c`.
pub(crate) fn norm(p: nn::Path, c: i64, kind: Norm) -> NormLayer {
    match kind {
        Norm::Batch => NormLayer::Batch(bn(p, c)),
        Norm::Group(g) => NormLayer::Group(nn::group_norm(p, g.min(c), c, Default::default())),
    }
}
