//! DINOv2 against Hugging Face transformers 5.25's `Dinov2Model` and
//! `Dinov2WithRegistersModel` (fixtures from `scripts/fixtures/dinov2.py`):
//! tiny checkpoints as `save_pretrained` writes them, loaded strictly, at the
//! native size and at sizes whose position embeddings are interpolated; the
//! released shapes' parameter names; config errors; a training step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common;

use common::{fixture, max_rel_err, shapes};
use cxr_nn::NnError;
use cxr_nn::arch::dinov2::{Dinov2, Dinov2Config};
use cxr_nn::arch::pooling::Pooling;
use cxr_nn::checkpoint::{Checkpoint, load};
use cxr_nn::load::load_strict;
use serde_json::Value;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A tiny fixture built from its config.json, its model.safetensors loaded
/// with no key ignored.
fn load_fixture(name: &str) -> (VarStore, Dinov2, Checkpoint) {
    let dir: PathBuf = fixture("dinov2", name);
    let file = dir.join("config.json");
    let config = Dinov2Config::from_hf(&read_json(&file), &file).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let model = Dinov2::new(&vs.root(), &config);
    let weights = load(&dir.join("model.safetensors")).unwrap();
    load_strict(&mut vs, &weights.tensors, |_| false).unwrap();
    let io = load(&fixture("dinov2", &format!("{name}_io.safetensors"))).unwrap();
    (vs, model, io)
}

/// The input sizes a fixture holds (`<size>.pixel_values`).
fn sizes(io: &Checkpoint) -> Vec<String> {
    io.tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".pixel_values").map(str::to_owned))
        .collect()
}

fn matches_transformers(name: &str, expected_sizes: &[&str]) {
    let (_vs, model, io) = load_fixture(name);
    let sizes = sizes(&io);
    assert_eq!(sizes, expected_sizes, "{name}");
    let prefix = model.num_prefix_tokens();
    for size in &sizes {
        let t = |k: &str| io.tensors[&format!("{size}.{k}")].to_tch();
        let x = t("pixel_values");
        let (tokens, cls, mean, both) = tch::no_grad(|| {
            (
                model.tokens_t(&x, false),
                model.features_t(&x, Pooling::Cls, false),
                model.features_t(&x, Pooling::Mean, false),
                model.features_t(&x, Pooling::ClsMean, false),
            )
        });
        let reference = t("last_hidden_state");
        assert_eq!(tokens.size(), reference.size(), "{name} {size}");
        let (h, w) = (x.size()[2], x.size()[3]);
        assert_eq!(
            tokens.size()[1],
            prefix + (h / 14) * (w / 14),
            "{name} {size}"
        );
        // SDPA (transformers' default) and eager attention references.
        for attn in ["", "eager."] {
            let r = |k: &str| t(&format!("{attn}{k}"));
            for (what, ours, theirs) in [
                ("last_hidden_state", &tokens, r("last_hidden_state")),
                ("pooler_output", &cls, r("pooler_output")),
                ("mean patch token", &mean, r("mean_patch")),
            ] {
                let err = max_rel_err(ours, &theirs);
                assert!(err < 1e-4, "{name} {size} {attn}{what}: rel err {err}");
            }
        }
        let err = max_rel_err(
            &both,
            &Tensor::cat(&[t("pooler_output"), t("mean_patch")], 1),
        );
        assert!(err < 1e-4, "{name} {size} cls+mean: rel err {err}");
    }
}

#[test]
fn gelu_mlp_matches_transformers() {
    matches_transformers("mlp", &["native", "small", "wide"]);
}

#[test]
fn swiglu_matches_transformers() {
    matches_transformers("swiglu", &["native", "same", "wide"]);
}

#[test]
fn registers_match_transformers() {
    matches_transformers("registers", &["native", "small", "wide"]);
}

#[test]
fn fixture_configs_parse_as_written() {
    let parse = |name: &str| {
        let file = fixture("dinov2", name).join("config.json");
        (
            Dinov2Config::from_hf(&read_json(&file), &file).unwrap(),
            read_json(&file),
        )
    };
    let (mlp, _) = parse("mlp");
    assert_eq!(
        (mlp.image_size, mlp.layer_norm_eps, mlp.drop_path_rate),
        (42, 1e-5, 0.1)
    );
    let (swiglu, _) = parse("swiglu");
    assert!(swiglu.use_swiglu_ffn && !swiglu.qkv_bias && !swiglu.has_mask_token());
    let (registers, _) = parse("registers");
    assert_eq!(
        (registers.registers(), registers.num_prefix_tokens()),
        (4, 5)
    );
    // What to_hf writes, transformers wrote the same way.
    for name in ["mlp", "swiglu", "registers"] {
        let (c, written) = parse(name);
        let ours = c.to_hf();
        for (k, v) in ours.as_object().unwrap() {
            assert_eq!(Some(v), written.get(k), "{name}: \"{k}\"");
        }
    }
}

#[test]
fn released_shapes_have_transformers_names() {
    let names = read_json(&fixture("dinov2", "full_size_names.json"));
    let configs = read_json(&fixture("dinov2", "full_size_configs.json"));
    let ours = [
        ("small", Dinov2Config::small()),
        ("base", Dinov2Config::base()),
        ("large", Dinov2Config::large()),
        ("giant", Dinov2Config::giant()),
        ("rad_dino", Dinov2Config::rad_dino()),
        ("base_registers", Dinov2Config::base().with_registers(4)),
    ];
    assert_eq!(names.as_object().unwrap().len(), ours.len());
    for (name, config) in ours {
        let file = Path::new("full_size_configs.json");
        assert_eq!(
            Dinov2Config::from_hf(&configs[name], file).unwrap(),
            config,
            "{name}"
        );
        let expected: BTreeMap<String, Vec<i64>> =
            serde_json::from_value(names[name].clone()).unwrap();
        assert_eq!(built_shapes(&config), expected, "{name}");
    }
}

/// Names and shapes of the variables `Dinov2::new` makes for `config`. Up to
/// base size the whole network is built; larger ones (1.2 GB of float32 for
/// large, 4.4 GB for giant) are built with two layers, whose names and shapes
/// must agree, and layer 0's are repeated for every layer.
fn built_shapes(config: &Dinov2Config) -> BTreeMap<String, Vec<i64>> {
    let build = |c: &Dinov2Config| {
        let vs = VarStore::new(Device::Cpu);
        let _ = Dinov2::new(&vs.root(), c);
        shapes(&vs)
    };
    if config.hidden_size <= 768 {
        return build(config);
    }
    let two = build(&Dinov2Config {
        num_hidden_layers: 2,
        ..config.clone()
    });
    let layer = |i: usize| -> BTreeMap<String, Vec<i64>> {
        let prefix = format!("encoder.layer.{i}.");
        two.iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
            .collect()
    };
    let first = layer(0);
    assert_eq!(first, layer(1));
    let mut all: BTreeMap<String, Vec<i64>> = two
        .into_iter()
        .filter(|(k, _)| !k.starts_with("encoder.layer."))
        .collect();
    for i in 0..config.num_hidden_layers {
        for (k, v) in &first {
            all.insert(format!("encoder.layer.{i}.{k}"), v.clone());
        }
    }
    all
}

#[test]
fn config_errors_name_the_problem() {
    let file = Path::new("some/config.json");
    let err =
        Dinov2Config::from_hf(&serde_json::json!({"model_type": "vit_mae"}), file).unwrap_err();
    assert!(matches!(err, NnError::ModelConfig { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("some/config.json") && msg.contains("\"model_type\" is \"vit_mae\""),
        "{msg}"
    );
    // A mis-shaped config: a patch larger than the image.
    let mut c = read_json(&fixture("dinov2", "mlp").join("config.json"));
    c["patch_size"] = 56.into();
    let msg = Dinov2Config::from_hf(&c, file).unwrap_err().to_string();
    assert!(
        msg.contains("\"image_size\"") && msg.contains("\"patch_size\""),
        "{msg}"
    );
    // A config whose shape disagrees with the weights fails strict loading.
    let mut c = read_json(&fixture("dinov2", "mlp").join("config.json"));
    c["mlp_ratio"] = 2.into();
    let config = Dinov2Config::from_hf(&c, file).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let _model = Dinov2::new(&vs.root(), &config);
    let weights = load(&fixture("dinov2", "mlp").join("model.safetensors")).unwrap();
    let mismatch = load_strict(&mut vs, &weights.tensors, |_| false).unwrap_err();
    assert!(mismatch.missing.is_empty() && mismatch.unexpected.is_empty());
    assert_eq!(mismatch.wrong_shape.len(), 6, "{mismatch}");
    assert!(
        mismatch
            .to_string()
            .contains("encoder.layer.0.mlp.fc1.weight")
    );
}

#[test]
fn training_step_back_propagates() {
    tch::manual_seed(0);
    let (vs, model, io) = load_fixture("registers");
    let x = io.tensors["wide.pixel_values"].to_tch();
    // Dropout and drop path 0 in this config: training is deterministic and
    // equals evaluation.
    let eval = tch::no_grad(|| model.forward_t(&x, false));
    let train = model.forward_t(&x, true);
    assert!(train.allclose(&eval, 1e-6, 1e-6, false));
    // Evaluation outside no_grad records a graph, so it takes the
    // out-of-place path; no_grad's in-place path computes the same values.
    let recorded = model.forward_t(&x, false);
    assert!(recorded.requires_grad());
    assert!(recorded.equal(&eval));
    train.square().sum(Kind::Float).backward();
    let vars = vs.variables();
    for name in [
        "embeddings.patch_embeddings.projection.weight",
        "embeddings.position_embeddings",
        "embeddings.register_tokens",
        "encoder.layer.0.attention.attention.query.weight",
        "encoder.layer.1.layer_scale2.lambda1",
    ] {
        let g = vars[name].grad();
        assert!(
            g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "no gradient for {name}"
        );
    }
    // The mask token exists (for strict loading) and takes no part.
    assert!(!vars["embeddings.mask_token"].grad().defined());

    // Only the last layer trains: the frozen first layer runs in place
    // (autograd tracks nothing there), the second out of place, and the
    // backward pass finds every saved tensor as it was.
    let (vs, model, _io) = load_fixture("registers");
    for (name, var) in vs.variables() {
        if !name.starts_with("encoder.layer.1.") {
            let _ = var.set_requires_grad(false);
        }
    }
    let partial = model.forward_t(&x, true);
    assert!(partial.equal(&eval));
    partial.square().sum(Kind::Float).backward();
    let vars = vs.variables();
    let g = vars["encoder.layer.1.attention.attention.query.weight"].grad();
    assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(!vars["encoder.layer.0.mlp.fc1.weight"].grad().defined());

    // The mlp fixture's dropout and drop path (0.1 each) act in training only.
    let (_vs, model, io) = load_fixture("mlp");
    let x = io.tensors["native.pixel_values"].to_tch();
    tch::no_grad(|| {
        let a = model.tokens_t(&x, true);
        let b = model.tokens_t(&x, true);
        assert!(!a.allclose(&b, 1e-6, 1e-6, false));
        let e = model.tokens_t(&x, false);
        let err = max_rel_err(&e, &io.tensors["native.last_hidden_state"].to_tch());
        assert!(err < 1e-4, "{err}");
    });
}
