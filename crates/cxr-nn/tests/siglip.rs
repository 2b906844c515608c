//! SigLIP against Hugging Face transformers 5.25 (`SiglipModel`,
//! `SiglipVisionModel`, the SentencePiece `SiglipTokenizer`), with fixtures
//! from `scripts/fixtures/siglip.py`: tiny random models, their outputs, the
//! slow tokenizer's ids, and every parameter shape of four released sizes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::{fixture, max_rel_err};
use cxr_nn::arch::siglip::{
    Siglip, SiglipConfig, SiglipTextConfig, SiglipVision, SiglipVisionConfig,
};
use cxr_nn::checkpoint::load;
use cxr_nn::error::NnError;
use cxr_nn::load::load_strict;
use cxr_nn::text::{SIGLIP_TOKENIZER_JSON_COMMAND, TextTokenizer, TokenizerKind};
use serde_json::{Value, json};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn dir(name: &str) -> PathBuf {
    fixture("siglip", name)
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_close(ours: &Tensor, reference: &Tensor, what: &str) {
    assert_eq!(ours.size(), reference.size(), "{what} shape");
    let err = max_rel_err(ours, reference);
    assert!(err < 1e-4, "{what}: max relative error {err}");
}

/// A fresh scratch directory.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cxr-nn-siglip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn siglip_model_matches_transformers() {
    let config = SiglipConfig::from_file(&dir("tiny/config.json")).unwrap();
    let weights = load(&dir("tiny/model.safetensors")).unwrap();
    let io = load(&dir("tiny/reference.safetensors")).unwrap();
    let r = |k: &str| io.tensors[k].to_tch();
    let mut vs = VarStore::new(Device::Cpu);
    let model = Siglip::new(&vs.root(), &config).unwrap();
    load_strict(&mut vs, &weights.tensors, |_| false).unwrap();
    tch::no_grad(|| {
        // Native size, then sizes whose position embeddings are resampled
        // (16x64 has the native patch count but is not square).
        for size in ["32", "48", "32x48", "16x64"] {
            let x = r(&format!("images_{size}"));
            assert_close(
                &model.image_features(&x),
                &r(&format!("image_features_{size}")),
                &format!("image features {size}"),
            );
            assert_close(
                &model.vision.tokens_t(&x, false),
                &r(&format!("image_tokens_{size}")),
                &format!("image tokens {size}"),
            );
        }
        let ids = r("input_ids");
        assert_close(
            &model.text_features(&ids),
            &r("text_features"),
            "text features",
        );
        assert_close(
            &model.text.tokens_t(&ids, None, false),
            &r("text_tokens"),
            "text tokens",
        );
        assert_close(
            &model
                .text
                .forward_masked_t(&ids, &r("attention_mask"), false),
            &r("text_features_masked"),
            "masked text features",
        );
        assert_close(
            &model.logits_per_image(&r("images_32"), &ids),
            &r("logits_per_image"),
            "logits per image",
        );
    });
    assert!((model.logit_scale() - 2.0).abs() < 1e-6);
    assert!((model.logit_bias() + 1.5).abs() < 1e-6);
    assert_eq!(model.text.context_length(), 16);
    // Training back-propagates into the patch embedding.
    model
        .vision
        .forward_t(&r("images_32"), true)
        .sum(Kind::Float)
        .backward();
    let grad = vs.variables()["vision_model.embeddings.patch_embedding.weight"].grad();
    assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn siglip_vision_model_matches_transformers() {
    let config = SiglipConfig::from_file(&dir("tiny_vision/config.json")).unwrap();
    assert!(config.text.is_none());
    let mut vs = VarStore::new(Device::Cpu);
    assert!(Siglip::new(&vs.root(), &config).is_none());
    // transformers 5.25 saves a SiglipVisionModel at the root.
    let vision = SiglipVision::new(&vs.root(), &config.vision);
    let weights = load(&dir("tiny_vision/model.safetensors")).unwrap();
    load_strict(&mut vs, &weights.tensors, |_| false).unwrap();
    let io = load(&dir("tiny_vision/reference.safetensors")).unwrap();
    let r = |k: &str| io.tensors[k].to_tch();
    tch::no_grad(|| {
        let x = r("images");
        assert_close(&vision.forward_t(&x, false), &r("pooled"), "pooled");
        assert_close(&vision.tokens_t(&x, false), &r("tokens"), "tokens");
        assert_close(
            &vision.forward_t(&r("images_42x35"), false),
            &r("pooled_42x35"),
            "pooled 42x35",
        );
    });
}

#[test]
fn config_json_round_trips_through_transformers_names() {
    for name in ["tiny", "tiny_vision"] {
        let file = dir(&format!("{name}/config.json"));
        let written = json_file(&file);
        let config = SiglipConfig::from_file(&file).unwrap();
        let ours = config.to_hf();
        // Every field written is transformers' own, with its value.
        subset(&ours, &written, name);
        assert_eq!(SiglipConfig::from_hf(&ours, &file).unwrap(), config);
    }
    let tiny = SiglipConfig::from_file(&dir("tiny/config.json")).unwrap();
    let text = tiny.text.unwrap();
    assert_eq!(
        (text.projection_size, text.hidden_size, text.pad_token_id),
        (32, 48, Some(1))
    );
    assert_eq!(text.eos_token_id, vec![49407]);
}

fn subset(ours: &Value, theirs: &Value, at: &str) {
    match ours {
        Value::Object(m) => {
            for (k, v) in m {
                subset(v, &theirs[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(ours, theirs, "{at}"),
    }
}

#[test]
fn config_errors_name_the_field() {
    let file = dir("tiny/config.json");
    let base = json_file(&file);
    let problem = |edit: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        edit(&mut v);
        match SiglipConfig::from_hf(&v, &file) {
            Err(e @ NnError::ModelConfig { .. }) => {
                let text = e.to_string();
                assert!(text.starts_with(&file.display().to_string()), "{text}");
                text
            }
            other => panic!("{other:?}"),
        }
    };
    let p = problem(&|v| v["model_type"] = json!("siglip2"));
    assert!(p.contains("\"model_type\" is \"siglip2\""), "{p}");
    let p = problem(&|v| v["model_type"] = json!("clip"));
    assert!(p.contains("\"model_type\" is \"clip\""), "{p}");
    let p = problem(&|v| v["vision_config"]["hidden_act"] = json!("relu"));
    assert!(
        p.contains(
            "\"vision_config.hidden_act\" is \"relu\"; SigLIP is built with \"gelu_pytorch_tanh\""
        ),
        "{p}"
    );
    let p = problem(&|v| v["text_config"]["hidden_act"] = json!("quick_gelu"));
    assert!(
        p.contains("\"text_config.hidden_act\" is \"quick_gelu\""),
        "{p}"
    );
    let p = problem(&|v| v["vision_config"]["num_attention_heads"] = json!(5));
    assert!(p.contains("\"vision_config.hidden_size\" is 32"), "{p}");
    let p = problem(&|v| v["text_config"]["vocab_size"] = json!("many"));
    assert!(p.contains("\"text_config.vocab_size\" is \"many\""), "{p}");
}

/// Each released size builds exactly transformers' parameters. The towers
/// are built one layer deep (the full so400m is 3.5 GB in f32); every
/// `layers.N` entry of the reference must have layer 0's shape, and `N`
/// must run over the configured depth.
#[test]
fn full_sizes_have_transformers_names_and_shapes() {
    let file = dir("full_size_shapes.json");
    let all = json_file(&file);
    let constructors: [(&str, SiglipConfig); 4] = [
        ("so400m_patch14_384", SiglipConfig::so400m_patch14_384()),
        ("medsiglip_448", SiglipConfig::medsiglip_448()),
        ("base_patch16_224", SiglipConfig::base_patch16(224)),
        ("large_patch16_384", SiglipConfig::large_patch16_384()),
    ];
    assert_eq!(all.as_object().unwrap().len(), constructors.len());
    for (name, config) in constructors {
        let entry = &all[name];
        assert_eq!(
            SiglipConfig::from_hf(&entry["config"], &file).unwrap(),
            config,
            "{name}"
        );
        let text = config.text.clone().unwrap();
        let shallow = SiglipConfig {
            vision: SiglipVisionConfig {
                num_hidden_layers: 1,
                ..config.vision.clone()
            },
            text: Some(SiglipTextConfig {
                num_hidden_layers: 1,
                ..text.clone()
            }),
        };
        let vs = VarStore::new(Device::Cpu);
        let _model = Siglip::new(&vs.root(), &shallow).unwrap();
        let built: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, v.size()))
            .collect();
        // Reference names with `layers.N` read as `layers.0`, and the depths.
        let mut mapped: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut depth: BTreeMap<String, usize> = BTreeMap::new();
        for (key, shape) in entry["shapes"].as_object().unwrap() {
            let shape: Vec<i64> = shape
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            let layer0 = match key.split_once(".encoder.layers.") {
                Some((tower, rest)) => {
                    let (n, tail) = rest.split_once('.').unwrap();
                    let d = depth.entry(tower.to_owned()).or_default();
                    *d = (*d).max(n.parse::<usize>().unwrap() + 1);
                    format!("{tower}.encoder.layers.0.{tail}")
                }
                None => key.clone(),
            };
            if let Some(first) = mapped.insert(layer0, shape.clone()) {
                assert_eq!(first, shape, "{name}: {key}");
            }
        }
        assert_eq!(mapped, built, "{name}");
        assert_eq!(
            depth["vision_model"], config.vision.num_hidden_layers,
            "{name}"
        );
        assert_eq!(depth["text_model"], text.num_hidden_layers, "{name}");
    }
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn tokenizer_json_matches_siglip_tokenizer() {
    let cases = json_file(&dir("tokenizer_cases.json"));
    for path in [dir("tiny"), dir("tiny/tokenizer.json")] {
        let tok = TextTokenizer::hf_json(&path).unwrap();
        assert_eq!(tok.kind, TokenizerKind::HfJson);
        assert_eq!(i64::from(tok.pad_id), cases["pad_id"].as_i64().unwrap());
        // No start token: the template is the text then </s>.
        assert_eq!(i64::from(tok.end_id), cases["eos_id"].as_i64().unwrap());
        assert_eq!(tok.start_id, tok.end_id);
        assert_eq!(
            tok.vocab_size() as i64,
            cases["vocab_size"].as_i64().unwrap()
        );
        for case in cases["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ctx = case["context_length"].as_u64().unwrap() as usize;
            let (got, truncated) = tok.encode_batch(&[text], ctx).unwrap();
            assert_eq!(got, ids(&case["ids"]), "{text:?} at {ctx}");
            assert_eq!(
                truncated == 1,
                case["truncated"].as_bool().unwrap(),
                "{text:?}"
            );
        }
        assert!(matches!(
            tok.encode_batch(&["x"], 1),
            Err(NnError::ContextTooShort)
        ));
    }
    // `load` (and so `open`) reads a tokenizer.json without CLIP's or BERT's
    // specials the same way.
    let loaded = TextTokenizer::open(&dir("tiny/tokenizer.json")).unwrap();
    assert_eq!(loaded.kind, TokenizerKind::HfJson);
}

/// The tokenizer's ids for the prompts are the ids the reference features
/// were computed from: text in, transformers' text features out.
#[test]
fn tokenizer_feeds_the_text_tower() {
    let cases = json_file(&dir("tokenizer_cases.json"));
    let prompts: Vec<&str> = cases["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let tok = TextTokenizer::hf_json(&dir("tiny")).unwrap();
    let (flat, truncated) = tok.encode_batch(&prompts, 16).unwrap();
    assert_eq!(truncated, 2);
    let io = load(&dir("tiny/reference.safetensors")).unwrap();
    let reference = io.tensors["input_ids"].to_tch();
    let ours = Tensor::from_slice(&flat).view([prompts.len() as i64, 16]);
    assert!(ours.equal(&reference), "{ours} vs {reference}");
}

#[test]
fn pad_token_and_sides_come_from_tokenizer_config() {
    let d = scratch("sidecar");
    let mut file = json_file(&dir("tiny/tokenizer.json"));
    file["padding"] = Value::Null;
    std::fs::write(d.join("tokenizer.json"), file.to_string()).unwrap();
    match TextTokenizer::hf_json(&d) {
        Err(e @ NnError::TokenizerFile { .. }) => {
            assert!(e.to_string().contains("no pad token"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(
        d.join("tokenizer_config.json"),
        json!({"pad_token": {"content": "<pad>"}, "padding_side": "left"}).to_string(),
    )
    .unwrap();
    let tok = TextTokenizer::hf_json(&d).unwrap();
    assert_eq!((tok.pad_id, tok.end_id), (0, 1));
    let reference = TextTokenizer::hf_json(&dir("tiny")).unwrap();
    let (right, _) = reference.encode_batch(&["no pneumothorax"], 10).unwrap();
    let (left, _) = tok.encode_batch(&["no pneumothorax"], 10).unwrap();
    let real: Vec<i64> = right.iter().copied().filter(|&i| i != 1).collect();
    let n = real.len() + 1; // and the end token
    assert_eq!(&left[10 - n..10 - 1], &real[..]);
    assert_eq!(left[9], 1);
    assert!(left[..10 - n].iter().all(|&i| i == 0), "{left:?}");
    // Saved, the pad token and side are in the file itself.
    let saved = scratch("saved");
    tok.save(&saved.join("tokenizer.json")).unwrap();
    let back = TextTokenizer::hf_json(&saved).unwrap();
    assert_eq!(back.encode_batch(&["no pneumothorax"], 10).unwrap().0, left);
    std::fs::remove_dir_all(d).unwrap();
    std::fs::remove_dir_all(saved).unwrap();
}

#[test]
fn spiece_model_alone_is_refused_with_the_conversion_command() {
    // The script ran this very command to write tiny/tokenizer.json.
    let ran = std::fs::read_to_string(dir("convert_command.txt")).unwrap();
    assert_eq!(ran.trim_end(), SIGLIP_TOKENIZER_JSON_COMMAND);
    let spiece = dir("spiece_only");
    for path in [spiece.clone(), spiece.join("spiece.model")] {
        match TextTokenizer::hf_json(&path) {
            Err(e @ NnError::TokenizerFile { .. }) => {
                let message = e.to_string();
                let command =
                    SIGLIP_TOKENIZER_JSON_COMMAND.replace("DIR", &spiece.display().to_string());
                assert!(message.contains(&command), "{message}");
                assert!(message.contains("spiece.model"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    let empty = scratch("empty");
    match TextTokenizer::hf_json(&empty) {
        Err(e) => assert!(e.to_string().contains("has no tokenizer.json"), "{e}"),
        Ok(_) => panic!("an empty directory loaded"),
    }
    std::fs::remove_dir_all(empty).unwrap();
}
