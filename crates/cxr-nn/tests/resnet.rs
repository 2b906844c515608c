//! ResNet outputs against torchvision (fixtures from `scripts/fixtures/resnet.py`),
//! strict loading errors, and torchvision's names at full size.

use crate::common;

use std::collections::BTreeMap;

use common::{fixture, ignore_counters as ignore, max_rel_err, reference_shapes, shapes};
use cxr_nn::arch::resnet::{Block, ResNet, ResNetConfig};
use cxr_nn::checkpoint::load;
use cxr_nn::load::load_strict;
use tch::Device;
use tch::nn::{ModuleT, VarStore};

fn tiny(block: Block) -> ResNetConfig {
    ResNetConfig {
        block,
        layers: if block == Block::Basic {
            [1, 1, 1, 1]
        } else {
            [1, 2, 1, 1]
        },
        width: 8,
        in_channels: 3,
        num_classes: Some(5),
        norm: cxr_nn::arch::Norm::Batch,
    }
}

#[test]
fn tiny_resnets_match_torchvision() {
    for (name, block) in [("basic", Block::Basic), ("bottleneck", Block::Bottleneck)] {
        let weights = load(&fixture("resnet", &format!("tiny_{name}.pt"))).unwrap();
        let io = load(&fixture("resnet", &format!("tiny_{name}_io.pt"))).unwrap();
        let mut vs = VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), &tiny(block));
        load_strict(&mut vs, &weights.tensors, ignore).unwrap();
        let x = io.tensors["input"].to_tch();
        tch::no_grad(|| {
            let logits = net.forward_t(&x, false);
            let err = max_rel_err(&logits, &io.tensors["logits"].to_tch());
            assert!(err < 1e-4, "{name} eval logits rel err {err}");
            let feats = net.features_t(&x, false);
            let err = max_rel_err(&feats, &io.tensors["features"].to_tch());
            assert!(err < 1e-4, "{name} features rel err {err}");
            let train = net.forward_t(&x, true);
            let err = max_rel_err(&train, &io.tensors["logits_train"].to_tch());
            assert!(err < 1e-4, "{name} train-mode logits rel err {err}");
        });
        // The in-place ReLUs and residual adds leave autograd intact.
        net.forward_t(&x, true).sum(tch::Kind::Float).backward();
        let grad = vs.variables()["conv1.weight"].grad();
        assert!(
            grad.abs().sum(tch::Kind::Float).double_value(&[]) > 0.0,
            "{name}"
        );
    }
}

#[test]
fn renamed_or_reshaped_keys_are_named() {
    let weights = load(&fixture("resnet", "tiny_basic.pt")).unwrap().tensors;
    let build = || {
        let vs = VarStore::new(Device::Cpu);
        let _net = ResNet::new(&vs.root(), &tiny(Block::Basic));
        vs
    };

    let mut renamed: BTreeMap<_, _> = weights.clone();
    let t = renamed.remove("layer2.0.conv1.weight").unwrap();
    renamed.insert("layer2.0.conv_1.weight".into(), t);
    let err = load_strict(&mut build(), &renamed, ignore).unwrap_err();
    assert_eq!(err.missing, ["layer2.0.conv1.weight"]);
    assert_eq!(err.unexpected, ["layer2.0.conv_1.weight"]);
    let msg = err.to_string();
    assert!(msg.contains("missing keys: layer2.0.conv1.weight"), "{msg}");
    assert!(
        msg.contains("unexpected keys: layer2.0.conv_1.weight"),
        "{msg}"
    );

    let mut reshaped = weights.clone();
    let fc = reshaped.get_mut("fc.weight").unwrap();
    fc.shape = vec![fc.shape[1], fc.shape[0]];
    let err = load_strict(&mut build(), &reshaped, ignore).unwrap_err();
    assert_eq!(
        err.wrong_shape,
        [("fc.weight".to_owned(), vec![64, 5], vec![5, 64])]
    );

    // A DDP-style prefix leaves every key unmatched, not silently random.
    let prefixed: BTreeMap<_, _> = weights
        .iter()
        .map(|(k, v)| (format!("module.{k}"), v.clone()))
        .collect();
    let err = load_strict(&mut build(), &prefixed, ignore).unwrap_err();
    assert!(err.missing.len() > 20 && err.unexpected.len() == err.missing.len());

    // A failed load leaves the variables untouched.
    let mut vs = build();
    let before = vs.variables()["conv1.weight"].copy();
    let _ = load_strict(&mut vs, &reshaped, ignore);
    assert!(vs.variables()["conv1.weight"].equal(&before));
}

#[test]
fn full_size_names_and_shapes_equal_torchvision() {
    for (arch, config, dim) in [
        ("resnet18", ResNetConfig::resnet18(Some(1000)), 512),
        ("resnet50", ResNetConfig::resnet50(Some(1000)), 2048),
    ] {
        assert_eq!(config.feature_dim(), dim);
        let vs = VarStore::new(Device::Cpu);
        let _net = ResNet::new(&vs.root(), &config);
        assert_eq!(shapes(&vs), reference_shapes("resnet", arch), "{arch}");
    }
}
