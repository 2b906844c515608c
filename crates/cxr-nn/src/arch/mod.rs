//! Backbone architectures on tch. Parameter names follow the source
//! implementation (torchvision for ResNet and DenseNet, jeonsworld's ViT-pytorch for
//! REFERS' ViT, OpenAI for CLIP, Hugging Face for BERT), so weights move between cxrlearn
//! and PyTorch by name alone.

pub mod attention;
pub mod bert;
pub mod clip;
pub mod densenet;
pub mod resnet;
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
