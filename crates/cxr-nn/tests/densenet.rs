//! DenseNet (and the S2MTS2 LeakyReLU variant) against torchvision
//! (fixtures from `scripts/fixtures/densenet.py`).

use crate::common;

use common::{fixture, ignore_counters, max_rel_err, reference_shapes, shapes};
use cxr_nn::arch::densenet::{Activation, DenseNet, DenseNetConfig, modernise_key};
use cxr_nn::checkpoint::load;
use cxr_nn::load::load_strict;
use tch::Device;
use tch::nn::{ModuleT, VarStore};

#[test]
fn tiny_densenets_match_torchvision() {
    for (name, activation) in [
        ("relu", Activation::Relu),
        ("leaky", Activation::LeakyRelu(0.1)),
    ] {
        let config = DenseNetConfig {
            growth_rate: 4,
            block_config: [2, 2, 2, 2],
            num_init_features: 8,
            bn_size: 2,
            in_channels: 3,
            activation,
            num_classes: Some(5),
        };
        let weights = load(&fixture("densenet", &format!("tiny_{name}.pt"))).unwrap();
        let io = load(&fixture("densenet", &format!("tiny_{name}_io.pt"))).unwrap();
        let mut vs = VarStore::new(Device::Cpu);
        let net = DenseNet::new(&vs.root(), &config);
        load_strict(&mut vs, &weights.tensors, ignore_counters).unwrap();
        let x = io.tensors["input"].to_tch();
        tch::no_grad(|| {
            let feats = net.features_t(&x, false);
            assert_eq!(feats.size(), [2, config.feature_dim()]);
            let err = max_rel_err(&feats, &io.tensors["features"].to_tch());
            assert!(err < 1e-4, "{name} features rel err {err}");
            let err = max_rel_err(&net.forward_t(&x, false), &io.tensors["logits"].to_tch());
            assert!(err < 1e-4, "{name} logits rel err {err}");
        });
    }
}

#[test]
fn densenet121_names_and_shapes_equal_torchvision() {
    let config = DenseNetConfig::densenet121(Some(1000));
    assert_eq!(config.feature_dim(), 1024);
    let vs = VarStore::new(Device::Cpu);
    let _net = DenseNet::new(&vs.root(), &config);
    assert_eq!(shapes(&vs), reference_shapes("densenet", "densenet121"));
}

#[test]
fn legacy_names_are_modernised() {
    assert_eq!(
        modernise_key("features.denseblock1.denselayer1.norm.1.weight"),
        "features.denseblock1.denselayer1.norm1.weight"
    );
    assert_eq!(
        modernise_key("features.denseblock4.denselayer16.conv.2.weight"),
        "features.denseblock4.denselayer16.conv2.weight"
    );
    assert_eq!(modernise_key("features.norm5.bias"), "features.norm5.bias");
    assert_eq!(
        modernise_key("features.transition1.norm.weight"),
        "features.transition1.norm.weight"
    );
}
