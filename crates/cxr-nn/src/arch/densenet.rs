//! DenseNet-BC with torchvision's parameter names (`features.conv0`,
//! `features.denseblock1.denselayer1.norm1`, `features.transition1.conv`,
//! `features.norm5`, `classifier`), and the S2MTS2 variant whose every
//! activation is LeakyReLU(0.1).

use tch::Tensor;
use tch::nn::{self, ModuleT};

use super::{bn, conv};

/// The non-linearity used throughout the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// ReLU (torchvision).
    Relu,
    /// LeakyReLU with the given negative slope (S2MTS2 uses 0.1).
    LeakyRelu(f64),
}

impl Activation {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Self::Relu => x.relu(),
            Self::LeakyRelu(slope) => x.maximum(&(x * slope)),
        }
    }
}

/// Shape of a DenseNet.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseNetConfig {
    /// Channels each dense layer adds (32 for DenseNet-121).
    pub growth_rate: i64,
    /// Dense layers per block ((6, 12, 24, 16) for DenseNet-121).
    pub block_config: [usize; 4],
    /// Channels of the stem (64).
    pub num_init_features: i64,
    /// Bottleneck width multiplier (4).
    pub bn_size: i64,
    /// Input channels (3).
    pub in_channels: i64,
    /// Activation inside and after `features`.
    pub activation: Activation,
    /// Size of the `classifier`; `None` builds the trunk only.
    pub num_classes: Option<i64>,
}

impl DenseNetConfig {
    /// torchvision `densenet121`.
    pub fn densenet121(num_classes: Option<i64>) -> Self {
        Self {
            growth_rate: 32,
            block_config: [6, 12, 24, 16],
            num_init_features: 64,
            bn_size: 4,
            in_channels: 3,
            activation: Activation::Relu,
            num_classes,
        }
    }

    /// Channels of the pooled feature vector (1024 for DenseNet-121).
    pub fn feature_dim(&self) -> i64 {
        let mut c = self.num_init_features;
        for (i, &n) in self.block_config.iter().enumerate() {
            c += n as i64 * self.growth_rate;
            if i != 3 {
                c /= 2;
            }
        }
        c
    }
}

#[derive(Debug)]
struct DenseLayer {
    norm1: nn::BatchNorm,
    conv1: nn::Conv2D,
    norm2: nn::BatchNorm,
    conv2: nn::Conv2D,
}

#[derive(Debug)]
struct Transition {
    norm: nn::BatchNorm,
    conv: nn::Conv2D,
}

/// A DenseNet: stem, four dense blocks with transitions, final norm, pool,
/// optional `classifier`.
#[derive(Debug)]
pub struct DenseNet {
    conv0: nn::Conv2D,
    norm0: nn::BatchNorm,
    blocks: Vec<Vec<DenseLayer>>,
    transitions: Vec<Transition>,
    norm5: nn::BatchNorm,
    classifier: Option<nn::Linear>,
    config: DenseNetConfig,
}

impl DenseNet {
    /// Builds the network's variables under `p`.
    pub fn new(p: &nn::Path, config: &DenseNetConfig) -> Self {
        let f = p / "features";
        let mut c = config.num_init_features;
        let conv0 = conv(&f / "conv0", config.in_channels, c, 7, 2, 3);
        let norm0 = bn(&f / "norm0", c);
        let (mut blocks, mut transitions) = (Vec::new(), Vec::new());
        let inner = config.bn_size * config.growth_rate;
        for (b, &n) in config.block_config.iter().enumerate() {
            let bp = &f / format!("denseblock{}", b + 1);
            let layers = (0..n)
                .map(|l| {
                    let lp = &bp / format!("denselayer{}", l + 1);
                    let layer = DenseLayer {
                        norm1: bn(&lp / "norm1", c),
                        conv1: conv(&lp / "conv1", c, inner, 1, 1, 0),
                        norm2: bn(&lp / "norm2", inner),
                        conv2: conv(&lp / "conv2", inner, config.growth_rate, 3, 1, 1),
                    };
                    c += config.growth_rate;
                    layer
                })
                .collect();
            blocks.push(layers);
            if b != 3 {
                let tp = &f / format!("transition{}", b + 1);
                transitions.push(Transition {
                    norm: bn(&tp / "norm", c),
                    conv: conv(&tp / "conv", c, c / 2, 1, 1, 0),
                });
                c /= 2;
            }
        }
        let norm5 = bn(&f / "norm5", c);
        let classifier = config
            .num_classes
            .map(|k| nn::linear(p / "classifier", c, k, Default::default()));
        Self {
            conv0,
            norm0,
            blocks,
            transitions,
            norm5,
            classifier,
            config: config.clone(),
        }
    }

    /// The shape this network was built with.
    pub fn config(&self) -> &DenseNetConfig {
        &self.config
    }

    /// Pooled features `[n, feature_dim]`: `features`, activation, global
    /// average pool.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        let act = self.config.activation;
        let mut y = act
            .apply(&x.apply(&self.conv0).apply_t(&self.norm0, train))
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for (b, layers) in self.blocks.iter().enumerate() {
            for l in layers {
                let h = act.apply(&y.apply_t(&l.norm1, train)).apply(&l.conv1);
                let h = act.apply(&h.apply_t(&l.norm2, train)).apply(&l.conv2);
                y = Tensor::cat(&[y, h], 1);
            }
            if let Some(t) = self.transitions.get(b) {
                y = act
                    .apply(&y.apply_t(&t.norm, train))
                    .apply(&t.conv)
                    .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
            }
        }
        act.apply(&y.apply_t(&self.norm5, train))
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    }
}

impl ModuleT for DenseNet {
    /// Logits when the network has a `classifier`, pooled features otherwise.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let f = self.features_t(x, train);
        match &self.classifier {
            Some(c) => f.apply(c),
            None => f,
        }
    }
}

/// Maps torchvision's pre-0.4 DenseNet names (`denselayer1.norm.1.weight`)
/// onto the current ones (`denselayer1.norm1.weight`), as torchvision's own
/// loader does; other names pass through.
pub fn modernise_key(name: &str) -> String {
    for part in ["norm", "relu", "conv"] {
        for k in ["1", "2"] {
            let old = format!(".{part}.{k}.");
            if let Some(at) = name.find(&old)
                && name[..at].contains("denselayer")
            {
                return format!("{}.{part}{k}.{}", &name[..at], &name[at + old.len()..]);
            }
        }
    }
    name.to_owned()
}
