//! A ResNet's inference graph: each batch norm folded into the convolution
//! before it, weights and activations in channels-last order, the
//! activations and residual additions in place, weights in the forward
//! pass's type once (bf16 without a per-call cast). On the CPU, in
//! channels-last order, the folded weights are prepacked for oneDNN and
//! each ReLU, and each residual addition with its ReLU, runs inside its
//! convolution ([`crate::onednn`]), as `torch.compile` arranges it.
//!
//! In evaluation mode a batch norm is an affine map per channel,
//! `y = (x - mean) * gamma / sqrt(var + eps) + beta`, so after a
//! convolution it folds into that convolution's weight (scaled per output
//! channel) and a bias: one op instead of two, and one pass over the
//! activations fewer. The fold is computed in float64 and rounded once.
//! Only batch-normalised ResNets fold (group norm depends on the input).

use tch::{Kind, Tensor};

use super::NormLayer;
use super::resnet::{ConvNorm, ResNet};
use crate::backbone::Backbone;
use crate::memory_format::channels_last;
use crate::onednn::{self, PackedConv};

/// torchvision's `BatchNorm2d` epsilon, which `nn::batch_norm2d`'s default
/// configuration also uses.
const BATCH_NORM_EPS: f64 = 1e-5;

/// A convolution with its batch norm folded in.
#[derive(Debug)]
struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
    /// The same weight prepacked for oneDNN (CPU, channels-last).
    packed: Option<PackedConv>,
}

impl FoldedConv {
    /// `None` when the layer's normalisation is not a batch norm.
    fn new(c: &ConvNorm, kind: Kind, nhwc: bool) -> Option<Self> {
        let NormLayer::Batch(bn) = &c.norm else {
            return None;
        };
        let f64_of = |t: &Tensor| t.detach().to_kind(Kind::Double);
        let out = c.conv.ws.size()[0];
        let ones = Tensor::ones([out], (Kind::Double, c.conv.ws.device()));
        let gamma = bn.ws.as_ref().map_or_else(|| ones.shallow_clone(), f64_of);
        let beta = bn.bs.as_ref().map_or_else(|| ones.zeros_like(), f64_of);
        let scale = gamma / (f64_of(&bn.running_var) + BATCH_NORM_EPS).sqrt();
        let conv_bias = c.conv.bs.as_ref().map_or_else(|| ones.zeros_like(), f64_of);
        let bias = beta + (conv_bias - f64_of(&bn.running_mean)) * &scale;
        let weight = (f64_of(&c.conv.ws) * scale.view([-1, 1, 1, 1])).to_kind(kind);
        let weight = if nhwc { channels_last(&weight) } else { weight };
        let bias = bias.to_kind(kind);
        // oneDNN takes float32 and bfloat16 on the CPU; a weight it cannot
        // pack runs through `conv2d` as before.
        let packed = (nhwc
            && weight.device() == tch::Device::Cpu
            && matches!(kind, Kind::Float | Kind::BFloat16)
            && onednn::available())
        .then(|| PackedConv::new(&weight, &bias, c.stride, c.padding).ok())
        .flatten();
        Some(Self {
            weight,
            bias,
            stride: c.stride,
            padding: c.padding,
            packed,
        })
    }

    fn conv(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            Some(&self.bias),
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }

    /// `conv(x)`, then ReLU when `relu`.
    fn forward(&self, x: &Tensor, relu: bool) -> Tensor {
        match &self.packed {
            // As tch's own ops do on a libtorch error.
            Some(p) => p
                .forward(x, relu)
                .unwrap_or_else(|e| panic!("oneDNN convolution: {e}")),
            None => {
                let mut y = self.conv(x);
                if relu {
                    let _ = y.relu_();
                }
                y
            }
        }
    }

    /// `ReLU(conv(x) + other)`.
    fn forward_add_relu(&self, x: &Tensor, other: &Tensor) -> Tensor {
        match &self.packed {
            Some(p) => p
                .forward_add_relu(x, other)
                .unwrap_or_else(|e| panic!("oneDNN convolution: {e}")),
            None => {
                let mut y = self.conv(x);
                y += other;
                let _ = y.relu_();
                y
            }
        }
    }
}

#[derive(Debug)]
struct FoldedBlock {
    convs: Vec<FoldedConv>,
    downsample: Option<FoldedConv>,
}

/// A batch-normalised ResNet trunk folded for inference (see the module
/// documentation). It holds its own weights: built once, after loading.
#[derive(Debug)]
pub struct FoldedResNet {
    stem: FoldedConv,
    stages: Vec<Vec<FoldedBlock>>,
    kind: Kind,
    nhwc: bool,
}

impl FoldedResNet {
    /// `backbone` folded as [`FoldedResNet::new`] does, when it is a ResNet
    /// (`None` otherwise, or when its normalisation is not batch norm): what
    /// an encoder's and a classifier's inference graph run.
    pub fn of(backbone: &Backbone, kind: Kind, nhwc: bool) -> Option<Self> {
        match backbone {
            Backbone::ResNet(net) => tch::no_grad(|| Self::new(net, kind, nhwc)),
            _ => None,
        }
    }

    /// Folds `net` for inputs of type `kind` (Float, or BFloat16/Half for
    /// reduced precision), in channels-last order when `nhwc`; `None` when
    /// its normalisation is not batch norm.
    pub fn new(net: &ResNet, kind: Kind, nhwc: bool) -> Option<Self> {
        let fold = |c: &ConvNorm| FoldedConv::new(c, kind, nhwc);
        let stages = net
            .stages
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .map(|b| {
                        Some(FoldedBlock {
                            convs: b.convs.iter().map(fold).collect::<Option<_>>()?,
                            downsample: match &b.downsample {
                                Some(d) => Some(fold(d)?),
                                None => None,
                            },
                        })
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            stem: fold(&net.stem)?,
            stages,
            kind,
            nhwc,
        })
    }

    /// The type its weights and activations are in.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether its convolutions run on oneDNN-prepacked weights.
    pub fn is_prepacked(&self) -> bool {
        self.stem.packed.is_some()
    }

    /// Pooled features `[n, feature_dim]`, float32, of normalised images
    /// `[n, in_channels, h, w]` (any type and order): what
    /// [`ResNet::features_t`] returns in evaluation mode. Call it under
    /// `no_grad`.
    pub fn features(&self, x: &Tensor) -> Tensor {
        let x = x.to_kind(self.kind);
        let x = if self.nhwc { channels_last(&x) } else { x };
        let y = self.stem.forward(&x, true);
        let mut y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for stage in &self.stages {
            for block in stage {
                let identity = match &block.downsample {
                    Some(d) => d.forward(&y, false),
                    None => y.shallow_clone(),
                };
                let (last, inner) = block.convs.split_last().expect("a block has convolutions");
                let z = inner.iter().fold(y, |z, c| c.forward(&z, true));
                y = last.forward_add_relu(&z, &identity);
            }
        }
        // The mean in float32: a bf16 sum over 49 positions loses digits.
        y.to_kind(Kind::Float)
            .mean_dim([2, 3].as_slice(), false, Kind::Float)
    }
}
