//! The inference graph of `Encoder::prepare` (batch norm folded into the
//! convolutions, channels-last order, weights in the forward pass's type)
//! against the plain graph in evaluation mode, on the same weights and
//! images: the features must agree within float rounding.

use std::collections::BTreeMap;

use cxr_nn::arch::Norm;
use cxr_nn::arch::resnet::{Block, ResNetConfig};
use cxr_nn::backbone::{Architecture, Backbone};
use cxr_nn::checkpoint::RawTensor;
use cxr_nn::encoder::{Encoder, Inference};
use cxr_nn::precision::Precision;
use cxr_nn::spec::ModelSpec;
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::common::max_rel_err;

/// Weights for `spec` with batch-norm statistics and affine parameters far
/// from their initial 0/1 (which would fold to nothing), seeded.
fn weights(spec: &ModelSpec, seed: i64) -> BTreeMap<String, RawTensor> {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let _net = Backbone::new(&vs.root(), &spec.architecture);
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            if name.ends_with("running_var") || (name.contains("bn") && name.ends_with("weight")) {
                let _ = v.uniform_(0.5, 1.5);
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                let _ = v.uniform_(-0.2, 0.2);
            }
        }
    });
    vs.variables()
        .iter()
        .map(|(k, v)| (k.clone(), RawTensor::from_tch(k, v).unwrap()))
        .collect()
}

fn images(n: usize, side: usize, seed: u64) -> Vec<u8> {
    (0..n * side * side)
        .map(|i| ((i as u64 * 2_654_435_761 + seed * 97) >> 7) as u8)
        .collect()
}

fn encoder(
    spec: &ModelSpec,
    w: &BTreeMap<String, RawTensor>,
    p: Precision,
    i: Inference,
) -> Encoder {
    let mut e = Encoder::new(spec.clone(), w, Device::Cpu).unwrap();
    e.precision = p;
    e.prepare(i);
    e
}

fn spec_with(arch: Architecture, size: i64) -> ModelSpec {
    let mut spec = ModelSpec::scratch("resnet50", size, None).unwrap();
    spec.architecture = arch;
    spec
}

fn tiny(block: Block, norm: Norm) -> Architecture {
    Architecture::ResNet(ResNetConfig {
        block,
        layers: [1, 2, 1, 1],
        width: 8,
        in_channels: 3,
        num_classes: None,
        norm,
    })
}

const ARRANGEMENTS: [Inference; 3] = [
    Inference {
        fold_batch_norm: true,
        channels_last: true,
    },
    Inference {
        fold_batch_norm: true,
        channels_last: false,
    },
    Inference {
        fold_batch_norm: false,
        channels_last: true,
    },
];

/// Features of `spec` under every arrangement against the plain graph.
fn check(spec: &ModelSpec, side: usize, n: usize, tol: f64, folds: bool) {
    let w = weights(spec, 7);
    let x = images(n, side, 3);
    let plain = encoder(spec, &w, Precision::Fp32, Inference::PLAIN);
    assert!(!plain.is_folded());
    let reference = plain.features(&x, n, side, side);
    for arrangement in ARRANGEMENTS {
        let e = encoder(spec, &w, Precision::Fp32, arrangement);
        assert_eq!(
            e.is_folded(),
            folds && arrangement.fold_batch_norm,
            "{arrangement:?}"
        );
        let ours = e.features(&x, n, side, side);
        assert_eq!(ours.size(), reference.size());
        let err = max_rel_err(&ours, &reference);
        eprintln!(
            "{} {arrangement:?}: max relative difference {err:.2e}",
            spec.architecture.describe()
        );
        assert!(err < tol, "{arrangement:?}: {err}");
    }
}

#[test]
fn tiny_resnets_fold_and_go_channels_last_without_changing_features() {
    check(
        &spec_with(tiny(Block::Basic, Norm::Batch), 64),
        64,
        3,
        1e-5,
        true,
    );
    check(
        &spec_with(tiny(Block::Bottleneck, Norm::Batch), 64),
        48,
        2,
        1e-5,
        true,
    );
}

/// Group norm depends on the input: nothing to fold, channels-last only.
#[test]
fn a_group_norm_resnet_is_not_folded() {
    check(
        &spec_with(tiny(Block::Bottleneck, Norm::Group(4)), 64),
        64,
        2,
        1e-5,
        false,
    );
}

/// The bound: ResNet-50 at 224 px within 1e-4 relative.
#[test]
fn resnet50_at_224_px_folded_matches_within_1e_4() {
    check(
        &ModelSpec::scratch("resnet50", 224, None).unwrap(),
        224,
        2,
        1e-4,
        true,
    );
}

#[test]
fn densenet121_channels_last_matches() {
    check(
        &ModelSpec::scratch("densenet121", 64, None).unwrap(),
        64,
        2,
        1e-5,
        false,
    );
}

/// bf16 with weights folded and cast once against bf16 autocast on the
/// plain graph: both within bf16's rounding of fp32.
#[test]
fn bf16_folded_features_stay_within_bf16_rounding_of_fp32() {
    let spec = spec_with(tiny(Block::Bottleneck, Norm::Batch), 64);
    let w = weights(&spec, 11);
    let x = images(4, 64, 5);
    let fp32 = encoder(&spec, &w, Precision::Fp32, Inference::PLAIN).features(&x, 4, 64, 64);
    let autocast = encoder(&spec, &w, Precision::Bf16, Inference::PLAIN).features(&x, 4, 64, 64);
    let folded = encoder(&spec, &w, Precision::Bf16, Inference::default());
    assert!(folded.is_folded());
    assert_eq!(folded.is_prepacked(), cxr_nn::onednn::available());
    let folded = folded.features(&x, 4, 64, 64);
    assert_eq!(folded.kind(), tch::Kind::Float);
    let (a, f) = (max_rel_err(&autocast, &fp32), max_rel_err(&folded, &fp32));
    eprintln!("bf16 against fp32: autocast {a:.2e}, folded {f:.2e}");
    assert!(a < 3e-2 && f < 3e-2, "autocast {a}, folded {f}");
    // Not the fp32 path by accident.
    assert!(f > 1e-5, "{f}");
}

/// A precision set after `prepare` falls back to the plain graph.
#[test]
fn a_precision_changed_after_prepare_runs_the_plain_graph() {
    let spec = spec_with(tiny(Block::Basic, Norm::Batch), 32);
    let w = weights(&spec, 1);
    let mut e = encoder(&spec, &w, Precision::Fp32, Inference::default());
    assert!(e.is_folded());
    e.precision = Precision::Bf16;
    assert!(!e.is_folded());
    let f = e.features(&images(1, 32, 1), 1, 32, 32);
    assert_eq!(f.size(), [1, 64]);
    let _ = Tensor::zeros([1], (tch::Kind::Float, Device::Cpu));
}
