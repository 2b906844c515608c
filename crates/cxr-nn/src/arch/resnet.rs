//! ResNet-18/50 with torchvision's parameter names (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer1.0.downsample.0`, `fc`), constructible at any
//! width and depth so tests and the phantom can use tiny versions.

use tch::Tensor;
use tch::nn::{self, ModuleT};

use super::{Norm, NormLayer, conv, norm};

/// The residual block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Two 3x3 convolutions (ResNet-18/34), expansion 1.
    Basic,
    /// 1x1, 3x3, 1x1 convolutions (ResNet-50 and up), expansion 4.
    Bottleneck,
}

impl Block {
    fn expansion(self) -> i64 {
        match self {
            Self::Basic => 1,
            Self::Bottleneck => 4,
        }
    }
}

/// Shape of a ResNet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Block type.
    pub block: Block,
    /// Blocks per stage (torchvision: `[2, 2, 2, 2]` for 18, `[3, 4, 6, 3]` for 50).
    pub layers: [usize; 4],
    /// Channels of the stem and the first stage (64 in torchvision).
    pub width: i64,
    /// Input channels (3 for ImageNet weights).
    pub in_channels: i64,
    /// Size of the `fc` classifier; `None` builds the trunk only.
    pub num_classes: Option<i64>,
    /// Normalisation layers (batch norm in torchvision; the layers keep the
    /// `bn` names either way).
    pub norm: Norm,
}

impl ResNetConfig {
    /// torchvision `resnet18`.
    pub fn resnet18(num_classes: Option<i64>) -> Self {
        Self {
            block: Block::Basic,
            layers: [2, 2, 2, 2],
            width: 64,
            in_channels: 3,
            num_classes,
            norm: Norm::Batch,
        }
    }

    /// torchvision `resnet50`.
    pub fn resnet50(num_classes: Option<i64>) -> Self {
        Self {
            block: Block::Bottleneck,
            layers: [3, 4, 6, 3],
            width: 64,
            in_channels: 3,
            num_classes,
            norm: Norm::Batch,
        }
    }

    /// Dimension of the pooled feature vector (512 for ResNet-18, 2048 for 50).
    pub fn feature_dim(&self) -> i64 {
        self.width * 8 * self.block.expansion()
    }
}

/// A convolution, its stride and padding (which `nn::Conv2D` keeps
/// private, and the folded graph needs), and the normalisation after it.
#[derive(Debug)]
pub(super) struct ConvNorm {
    pub(super) conv: nn::Conv2D,
    pub(super) norm: NormLayer,
    pub(super) stride: i64,
    pub(super) padding: i64,
}

impl ConvNorm {
    fn new(p: &nn::Path, name: &str, shape: (i64, i64, i64, i64, i64), kind: Norm) -> Self {
        let (cin, cout, k, stride, padding) = shape;
        let (conv_name, norm_name) = match name {
            "downsample" => ("downsample/0".to_owned(), "downsample/1".to_owned()),
            n => (format!("conv{n}"), format!("bn{n}")),
        };
        let sub = |path: &str| path.split('/').fold(p.clone(), |q, part| &q / part);
        Self {
            conv: conv(sub(&conv_name), cin, cout, k, stride, padding),
            norm: norm(sub(&norm_name), cout, kind),
            stride,
            padding,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.norm, train)
    }
}

#[derive(Debug)]
pub(super) struct ResidualBlock {
    pub(super) convs: Vec<ConvNorm>,
    pub(super) downsample: Option<ConvNorm>,
}

impl ResidualBlock {
    fn new(p: &nn::Path, block: Block, cin: i64, planes: i64, stride: i64, kind: Norm) -> Self {
        let out = planes * block.expansion();
        // torchvision (v1.5) puts the stride on the 3x3 convolution.
        let shapes: Vec<(i64, i64, i64, i64, i64)> = match block {
            Block::Basic => vec![(cin, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
            Block::Bottleneck => vec![
                (cin, planes, 1, 1, 0),
                (planes, planes, 3, stride, 1),
                (planes, out, 1, 1, 0),
            ],
        };
        let convs = shapes
            .into_iter()
            .enumerate()
            .map(|(i, shape)| ConvNorm::new(p, &(i + 1).to_string(), shape, kind))
            .collect();
        let downsample = (stride != 1 || cin != out)
            .then(|| ConvNorm::new(p, "downsample", (cin, out, 1, stride, 0), kind));
        Self { convs, downsample }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        let last = self.convs.len() - 1;
        // In-place ReLU and residual add, as torchvision does: fewer
        // allocations, and autograd-safe because batch norm's backward needs
        // its input, not its output.
        for (i, c) in self.convs.iter().enumerate() {
            y = c.forward_t(&y, train);
            if i != last {
                let _ = y.relu_();
            }
        }
        match &self.downsample {
            Some(d) => y += d.forward_t(x, train),
            None => y += x,
        }
        let _ = y.relu_();
        y
    }
}

/// A ResNet: stem, four stages, global average pool, optional `fc`.
#[derive(Debug)]
pub struct ResNet {
    pub(super) stem: ConvNorm,
    pub(super) stages: Vec<Vec<ResidualBlock>>,
    fc: Option<nn::Linear>,
    config: ResNetConfig,
}

impl ResNet {
    /// Builds the network's variables under `p`.
    pub fn new(p: &nn::Path, config: &ResNetConfig) -> Self {
        let w = config.width;
        let stem = ConvNorm::new(p, "1", (config.in_channels, w, 7, 2, 3), config.norm);
        let mut cin = w;
        let mut stages = Vec::new();
        for (s, &n) in config.layers.iter().enumerate() {
            let planes = w << s;
            let stride = if s == 0 { 1 } else { 2 };
            let lp = p / format!("layer{}", s + 1);
            let blocks = (0..n)
                .map(|i| {
                    let b = ResidualBlock::new(
                        &(&lp / i),
                        config.block,
                        cin,
                        planes,
                        if i == 0 { stride } else { 1 },
                        config.norm,
                    );
                    cin = planes * config.block.expansion();
                    b
                })
                .collect();
            stages.push(blocks);
        }
        let fc = config
            .num_classes
            .map(|k| nn::linear(p / "fc", cin, k, Default::default()));
        Self {
            stem,
            stages,
            fc,
            config: config.clone(),
        }
    }

    /// The shape this network was built with.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Pooled features `[n, feature_dim]` of images `[n, in_channels, h, w]`.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = self.stem.forward_t(x, train);
        let _ = y.relu_();
        let mut y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for stage in &self.stages {
            for block in stage {
                y = block.forward_t(&y, train);
            }
        }
        y.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// Channels of the `layer3` map (256 for ResNet-18, 1024 for ResNet-50).
    pub fn layer3_channels(&self) -> i64 {
        self.config.width * 4 * self.config.block.expansion()
    }

    /// The `layer3` map `[n, layer3_channels, h/16, w/16]` and the pooled
    /// `layer4` features `[n, feature_dim]` of one forward pass: GLoRIA's
    /// local (regions) and global image features.
    pub fn layer3_and_features_t(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut y = self.stem.forward_t(x, train);
        let _ = y.relu_();
        let mut y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        let mut layer3 = None;
        for (s, stage) in self.stages.iter().enumerate() {
            for block in stage {
                y = block.forward_t(&y, train);
            }
            if s == 2 {
                // The next stage's in-place ReLU writes a new tensor, not
                // this one, so a shallow clone stays valid.
                layer3 = Some(y.shallow_clone());
            }
        }
        let pooled = y.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        (layer3.expect("four stages"), pooled)
    }
}

impl ModuleT for ResNet {
    /// Logits when the network has an `fc`, pooled features otherwise.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let f = self.features_t(x, train);
        match &self.fc {
            Some(fc) => f.apply(fc),
            None => f,
        }
    }
}
