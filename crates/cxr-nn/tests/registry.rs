//! The model registry: every entry builds with its documented feature size,
//! and importing maps each release container onto the architecture strictly.

use std::collections::BTreeMap;

use cxr_nn::backbone::{Architecture, Backbone};
use cxr_nn::checkpoint::{Checkpoint, Container, RawTensor};
use cxr_nn::import::{ImportError, import};
use cxr_nn::registry::{self, KeyRule};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[test]
fn every_entry_builds_and_gives_its_feature_dimension() {
    let expected = [
        ("resnet50-imagenet", 2048),
        ("chexzero", 512),
        ("convirt", 2048),
        ("gloria", 2048),
        ("gloria-resnet18", 512),
        ("medaug", 2048),
        ("medaug-resnet18", 512),
        ("mococxr", 2048),
        ("mococxr-resnet18", 512),
        ("refers", 768),
        ("s2mts2", 1024),
        ("rad-dino", 768),
        ("dinov2-small", 384),
        ("dinov2-base", 768),
        ("dinov2-large", 1024),
        ("dinov2-giant", 1536),
        ("biomedclip", 512),
        ("medsiglip-448", 1152),
        ("xraysiglip", 1024),
    ];
    let names: Vec<&str> = registry::all().iter().map(|e| e.name).collect();
    assert_eq!(names, expected.map(|e| e.0));
    for (name, dim) in expected {
        let entry = registry::find(name).unwrap();
        assert_eq!(entry.feature_dim(), dim, "{name}");
        // DINOv2-L and -g (0.3 and 1.1 billion parameters) and the SigLIP
        // towers (0.3-0.4 billion) are too large to build in a unit test;
        // their names and shapes are checked against transformers in
        // tests/dinov2.rs and tests/siglip.rs.
        if matches!(
            name,
            "dinov2-large" | "dinov2-giant" | "medsiglip-448" | "xraysiglip"
        ) {
            continue;
        }
        let vs = VarStore::new(Device::Cpu);
        let net = Backbone::new(&vs.root(), &entry.architecture);
        // Convolutional trunks pool adaptively, so a small input keeps this
        // quick; the transformers need their trained token count.
        // DINOv2 interpolates its position embeddings to any size.
        let size = match entry.architecture {
            Architecture::ResNet(_) | Architecture::DenseNet(_) => 64,
            Architecture::Dinov2 { .. } => 56,
            _ => entry.preprocessing.size,
        };
        let x = Tensor::zeros([1, 3, size, size], (Kind::Float, Device::Cpu));
        let f = tch::no_grad(|| net.features_t(&x, false));
        assert_eq!(f.size(), [1, dim], "{name}");
    }
    assert!(
        registry::find("nope")
            .unwrap_err()
            .to_string()
            .contains("known: resnet50-imagenet, chexzero")
    );
}

/// The variables of a freshly built entry, as a checkpoint would hold them.
fn weights_of(name: &str) -> BTreeMap<String, RawTensor> {
    let entry = registry::find(name).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _net = Backbone::new(&vs.root(), &entry.architecture);
    vs.variables()
        .iter()
        .map(|(k, v)| (k.clone(), RawTensor::from_tch(k, v).unwrap()))
        .collect()
}

fn small(shape: &[usize]) -> RawTensor {
    let n: usize = shape.iter().product();
    RawTensor {
        dtype: cxr_nn::checkpoint::DType::F32,
        shape: shape.to_vec(),
        data: vec![0; n * 4],
    }
}

fn checkpoint(tensors: BTreeMap<String, RawTensor>) -> Checkpoint {
    Checkpoint {
        container: Container::TorchZip,
        tensors,
    }
}

fn moco_release() -> (BTreeMap<String, RawTensor>, BTreeMap<String, RawTensor>) {
    let weights = weights_of("mococxr");
    let mut file: BTreeMap<String, RawTensor> = weights
        .iter()
        .map(|(k, v)| (format!("state_dict.module.encoder_q.{k}"), v.clone()))
        .collect();
    for (k, shape) in [
        (
            "state_dict.module.encoder_q.fc.0.weight",
            &[8usize, 2048][..],
        ),
        ("state_dict.module.encoder_q.fc.2.weight", &[4, 8]),
        ("state_dict.module.encoder_q.bn1.num_batches_tracked", &[]),
        ("state_dict.module.encoder_k.conv1.weight", &[64, 3, 7, 7]),
        ("state_dict.module.queue", &[4, 16]),
        ("state_dict.module.queue_ptr", &[1]),
        ("optimizer.state.0.momentum_buffer", &[64, 3, 7, 7]),
    ] {
        file.insert(k.to_owned(), small(shape));
    }
    (weights, file)
}

#[test]
fn moco_release_imports_exactly() {
    let (weights, file) = moco_release();
    let imported = import(&registry::find("mococxr").unwrap(), &checkpoint(file)).unwrap();
    assert_eq!(imported.tensors, weights);
    assert_eq!(imported.ignored.len(), 7);
    assert_eq!(imported.renamed.len(), weights.len());
    let reasons: Vec<&str> = imported.ignored.iter().map(|i| i.1).collect();
    assert!(reasons.contains(&"MoCo negative queue"));
    assert!(reasons.contains(&"MoCo key (momentum) encoder"));
}

#[test]
fn renamed_key_or_wrong_architecture_fails_naming_keys() {
    let (_, mut file) = moco_release();
    let t = file
        .remove("state_dict.module.encoder_q.layer3.0.conv2.weight")
        .unwrap();
    file.insert(
        "state_dict.module.encoder_q.layer3.0.conv_2.weight".into(),
        t,
    );
    let err = import(
        &registry::find("mococxr").unwrap(),
        &checkpoint(file.clone()),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("missing keys: layer3.0.conv2.weight"), "{msg}");
    assert!(
        msg.contains("unexpected keys: layer3.0.conv_2.weight"),
        "{msg}"
    );
    assert!(msg.contains("model 'mococxr'"), "{msg}");

    // A ResNet checkpoint offered as the DenseNet of S2MTS2.
    let err = import(&registry::find("s2mts2").unwrap(), &checkpoint(file)).unwrap_err();
    let ImportError::Keys { mismatch, .. } = err else {
        panic!("expected a key mismatch")
    };
    assert!(
        mismatch
            .missing
            .iter()
            .any(|k| k == "features.norm5.weight")
    );
    assert!(
        mismatch
            .unexpected
            .iter()
            .any(|k| k == "layer1.0.conv1.weight")
    );
}

#[test]
fn other_variant_of_the_method_names_its_entry() {
    // The ResNet-50 MoCo-CXR release offered as its ResNet-18 entry.
    let (_, file) = moco_release();
    let err = import(
        &registry::find("mococxr-resnet18").unwrap(),
        &checkpoint(file),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint holds a ResNet-50, but model 'mococxr-resnet18' is the ResNet-18 variant of \
         MoCo-CXR: use --model mococxr"
    );
    // GLoRIA's two encoders, both ways.
    for (have, ask, want) in [
        ("gloria-resnet18", "gloria", "gloria-resnet18"),
        ("gloria", "gloria-resnet18", "gloria"),
    ] {
        let file = weights_of(have)
            .into_iter()
            .map(|(k, v)| (format!("state_dict.gloria.img_encoder.model.{k}"), v))
            .collect();
        let err = import(&registry::find(ask).unwrap(), &checkpoint(file)).unwrap_err();
        let ImportError::WrongVariant { use_instead, .. } = err else {
            panic!("{have} as {ask}: {err}")
        };
        assert_eq!(use_instead, want);
    }
    // No ResNet-18 entry of the method: the strict load names the shapes.
    let file = weights_of("mococxr-resnet18");
    let err = import(&registry::find("convirt").unwrap(), &checkpoint(file)).unwrap_err();
    let ImportError::Keys { mismatch, .. } = err else {
        panic!("expected a key mismatch")
    };
    assert!(
        mismatch
            .missing
            .iter()
            .any(|k| k == "layer1.0.conv3.weight")
    );
}

#[test]
fn container_layouts_map_onto_the_architecture() {
    let rule = |model: &str, key: &str| (registry::find(model).unwrap().map_key)(key);
    let keep = |k: &str| KeyRule::Keep(k.to_owned());
    // GLoRIA Lightning checkpoint.
    assert_eq!(
        rule(
            "gloria",
            "state_dict.gloria.img_encoder.model.layer4.2.bn3.weight"
        ),
        keep("layer4.2.bn3.weight")
    );
    assert!(matches!(
        rule(
            "gloria",
            "state_dict.gloria.img_encoder.global_embedder.weight"
        ),
        KeyRule::Ignore(_)
    ));
    assert!(matches!(
        rule(
            "gloria",
            "state_dict.gloria.text_encoder.model.embeddings.word_embeddings.weight"
        ),
        KeyRule::Ignore(_)
    ));
    assert!(matches!(
        rule("gloria", "optimizer_states.0.state.3.exp_avg"),
        KeyRule::Ignore(_)
    ));
    // CheXzero: the whole CLIP model, image tower kept.
    assert_eq!(
        rule(
            "chexzero",
            "visual.transformer.resblocks.3.attn.in_proj_weight"
        ),
        keep("visual.transformer.resblocks.3.attn.in_proj_weight")
    );
    assert!(matches!(
        rule("chexzero", "transformer.resblocks.3.attn.in_proj_weight"),
        KeyRule::Ignore(_)
    ));
    assert!(matches!(
        rule("chexzero", "logit_scale"),
        KeyRule::Ignore(_)
    ));
    // ConVIRT: bare torchvision names or the trainer's dict.
    assert_eq!(
        rule("convirt", "layer1.0.conv1.weight"),
        keep("layer1.0.conv1.weight")
    );
    assert_eq!(
        rule("convirt", "image_encoder.layer1.0.conv1.weight"),
        keep("layer1.0.conv1.weight")
    );
    assert!(matches!(
        rule("convirt", "text_proj.0.weight"),
        KeyRule::Ignore(_)
    ));
    // S2MTS2: DDP prefix, legacy DenseNet names, heads dropped.
    assert_eq!(
        rule(
            "s2mts2",
            "state_dict.module.encoder_q.features.denseblock2.denselayer3.norm.1.weight"
        ),
        keep("features.denseblock2.denselayer3.norm1.weight")
    );
    assert!(matches!(
        rule(
            "s2mts2",
            "state_dict.module.encoder_q.classifier_group.0.weight"
        ),
        KeyRule::Ignore(_)
    ));
    assert!(matches!(
        rule("s2mts2", "state_dict.encoder_q.classifier.weight"),
        KeyRule::Ignore(_)
    ));
    // REFERS: the ViT's own names; its head left out.
    assert_eq!(
        rule("refers", "transformer.encoder.layer.0.attn.query.weight"),
        keep("transformer.encoder.layer.0.attn.query.weight")
    );
    assert!(matches!(rule("refers", "head.weight"), KeyRule::Ignore(_)));
    // The ImageNet baseline drops its classifier.
    assert!(matches!(
        rule("resnet50-imagenet", "fc.weight"),
        KeyRule::Ignore(_)
    ));
}

#[test]
fn duplicate_targets_are_refused() {
    let mut file = weights_of("convirt");
    let t = file["conv1.weight"].clone();
    file.insert("image_encoder.conv1.weight".into(), t);
    let err = import(&registry::find("convirt").unwrap(), &checkpoint(file)).unwrap_err();
    assert!(
        err.to_string().contains("both map onto 'conv1.weight'"),
        "{err}"
    );
}
