//! BiomedCLIP's architecture (open_clip `CustomTextCLIP`: timm ViT image
//! tower, Hugging Face BERT text tower) against open_clip_torch 3.3, timm
//! 1.0.31 and transformers 5.25 (fixtures from `scripts/fixtures/biomedclip.py`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::common;

use common::{fixture, max_rel_err, shapes};
use cxr_nn::NnError;
use cxr_nn::arch::open_clip::{
    HfBertConfig, OpenClip, OpenClipConfig, OpenClipDir, TimmVitConfig, biomedclip, read_dir,
};
use cxr_nn::checkpoint::{DType, RawTensor, load};
use cxr_nn::load::load_strict;
use cxr_nn::text::TextTokenizer;
use serde_json::{Value, json};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn tiny_dir() -> std::path::PathBuf {
    fixture("biomedclip", "tiny")
}

fn io() -> BTreeMap<String, RawTensor> {
    load(&fixture("biomedclip", "io.safetensors"))
        .unwrap()
        .tensors
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's image trunk: the script makes `timm.create_model` build
/// `vit_base_patch16_224` tiny, while the config keeps naming it, as the
/// release does.
fn tiny_trunk() -> TimmVitConfig {
    TimmVitConfig {
        image_size: 32,
        patch_size: 8,
        embed_dim: 32,
        depth: 2,
        num_heads: 4,
        ..TimmVitConfig::vit_base_patch16_224()
    }
}

/// The fixture directory read as open_clip's `local-dir:`, with the tiny trunk.
fn tiny_dir_read() -> OpenClipDir {
    let mut dir = read_dir(&tiny_dir()).unwrap();
    assert_eq!(dir.config.vision.timm_model_name, "vit_base_patch16_224");
    dir.config.vision.trunk = tiny_trunk();
    dir
}

/// The tiny model loaded strictly, every tensor of the .bin used.
fn tiny() -> (VarStore, OpenClip, OpenClipDir) {
    let dir = tiny_dir_read();
    let mut vs = VarStore::new(Device::Cpu);
    let model = OpenClip::new(&vs.root(), &dir.config, &dir.bert);
    load_strict(&mut vs, &dir.tensors, |_| false).unwrap();
    (vs, model, dir)
}

fn assert_close(ours: &Tensor, reference: &RawTensor, what: &str) {
    let reference = reference.to_tch();
    assert_eq!(ours.size(), reference.size(), "{what} shape");
    let err = max_rel_err(ours, &reference);
    assert!(err < 1e-4, "{what} rel err {err}");
}

#[test]
fn tiny_model_matches_open_clip() {
    let (_vs, model, dir) = tiny();
    // The .bin carries transformers' old position_ids buffer; open_clip drops it, as do we.
    let raw = load(&dir.weights).unwrap().tensors;
    assert!(raw.contains_key("text.transformer.embeddings.position_ids"));
    assert!(
        !dir.tensors
            .contains_key("text.transformer.embeddings.position_ids")
    );
    assert_eq!(raw.len(), dir.tensors.len() + 1);
    assert!(
        !dir.bert.pooler,
        "open_clip 3.3 builds no pooler for BiomedCLIP's"
    );
    let io = io();
    tch::no_grad(|| {
        let image = io["image"].to_tch();
        let ids = io["ids"].to_tch();
        assert_close(
            &model.encode_image_t(&image, false),
            &io["image_embedding"],
            "image embedding",
        );
        assert_close(
            &model.encode_text_t(&ids, false),
            &io["text_embedding"],
            "text embedding",
        );
        assert_close(
            &model.logits_per_image(&image, &ids),
            &io["logits_per_image"],
            "logits",
        );
    });
    let scale = io["logit_scale"].to_tch().double_value(&[]);
    assert_eq!(model.logit_scale(), scale);
}

/// open_clip's `force_image_size`: the checkpoint loads at its own grid, then
/// timm resamples `pos_embed` (bicubic, antialiased) to the new one.
#[test]
fn other_image_sizes_match_force_image_size() {
    let (_vs, model, _) = tiny();
    let io = io();
    let trunk = model.visual.trunk();
    assert_eq!(trunk.config().grid(), 4);
    for (name, [h, w]) in [("48", [48, 48]), ("24x40", [24, 40])] {
        let patch = trunk.config().patch_size;
        tch::no_grad(|| {
            assert_close(
                &trunk.pos_embed_for(h / patch, w / patch),
                &io[&format!("pos_embed_{name}")],
                &format!("pos_embed at {name}"),
            );
            let x = io[&format!("image_{name}")].to_tch();
            assert_eq!(x.size(), [2, 3, h, w]);
            assert_close(
                &model.encode_image_t(&x, false),
                &io[&format!("image_embedding_{name}")],
                &format!("image embedding at {name}"),
            );
        });
    }
}

#[test]
fn tokenizer_gives_open_clips_ids() {
    let text = read_json(&fixture("biomedclip", "text.json"));
    let texts: Vec<&str> = text["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let context = text["context_length"].as_u64().unwrap() as usize;
    let dir = read_dir(&tiny_dir()).unwrap();
    assert_eq!(dir.config.text.context_length as usize, context);
    let tokenizer = TextTokenizer::bert_wordpiece(&tiny_dir().join("vocab.txt"), true).unwrap();
    let (ids, truncated) = tokenizer.encode_batch(&texts, context).unwrap();
    assert_eq!(truncated, 1, "the long prompt is cut");
    let reference: Vec<i64> = io()["ids"].to_tch().flatten(0, -1).try_into().unwrap();
    assert_eq!(ids, reference);
}

#[test]
fn released_config_is_biomedclip() {
    let file = fixture("biomedclip", "released_open_clip_config.json");
    let config = OpenClipConfig::from_json(&read_json(&file), &file).unwrap();
    assert_eq!(config, biomedclip());
    assert_eq!(config.vision.trunk, TimmVitConfig::vit_base_patch16_224());
    // The tiny fixture's config reads the same way, at its own sizes.
    let tiny = read_dir(&tiny_dir()).unwrap().config;
    assert_eq!(tiny.embed_dim, 24);
    assert_eq!(tiny.vision.image_size, [32, 32]);
    assert_eq!(tiny.preprocess, config.preprocess);
}

/// Full-size BiomedCLIP as open_clip 3.3 builds it from the released config.
#[test]
fn biomedclip_has_open_clips_names_and_shapes() {
    let names = read_json(&fixture("biomedclip", "biomedclip_names.json"));
    let reference: BTreeMap<String, Vec<i64>> = names
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let dims = v.as_array().unwrap().iter().map(|d| d.as_i64().unwrap());
            (k.clone(), dims.collect())
        })
        .collect();
    // Shapes alone give the BERT back (heads: 768 / 64).
    let shapes_only: BTreeMap<String, RawTensor> = reference
        .iter()
        .map(|(k, s)| {
            let shape = s.iter().map(|&d| d as usize).collect();
            let t = RawTensor {
                dtype: DType::F32,
                shape,
                data: Vec::new(),
            };
            (k.clone(), t)
        })
        .collect();
    let bert = HfBertConfig::from_weights(&shapes_only, "text.transformer.", Path::new("x.bin"));
    assert_eq!(bert.unwrap(), HfBertConfig::biomedbert());
    let vs = VarStore::new(Device::Cpu);
    let _model = OpenClip::new(&vs.root(), &biomedclip(), &HfBertConfig::biomedbert());
    assert_eq!(shapes(&vs), reference);
}

/// The table's shapes are what timm 1.0.31 builds for each name.
#[test]
fn timm_table_is_timms() {
    let timm = read_json(&fixture("biomedclip", "timm_vits.json"));
    let timm = timm.as_object().unwrap();
    assert_eq!(
        timm.keys().collect::<Vec<_>>().len(),
        TimmVitConfig::KNOWN.len()
    );
    for name in TimmVitConfig::KNOWN {
        let c = TimmVitConfig::timm(name).unwrap();
        let t = &timm[name];
        let got = json!({
            "image_size": c.image_size, "patch_size": c.patch_size, "embed_dim": c.embed_dim,
            "depth": c.depth, "num_heads": c.num_heads, "mlp_hidden": c.mlp_hidden(),
            "qkv_bias": c.qkv_bias, "layer_norm_eps": c.layer_norm_eps,
        });
        assert_eq!(&got, t, "{name}");
    }
}

#[test]
fn bert_shape_needs_the_config_when_heads_are_not_64_wide() {
    let dir = read_dir(&tiny_dir()).unwrap();
    let err = HfBertConfig::from_weights(&dir.tensors, "text.transformer.", &dir.weights)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("32 wide") && err.contains("config.json"),
        "{err}"
    );
    let config = tiny_dir().join("config.json");
    let from_config = HfBertConfig::from_hf_config(&read_json(&config), &config).unwrap();
    assert_eq!(dir.bert, from_config);
    assert_eq!(dir.bert.bert.heads, 4);
    assert_eq!(dir.bert.bert.layers, 2);
    assert_eq!(dir.bert.bert.vocab_size, 155);
    let mut other = read_json(&config);
    other["hidden_act"] = json!("relu");
    let err = HfBertConfig::from_hf_config(&other, &config).unwrap_err();
    assert!(
        err.to_string().contains("\"hidden_act\" is \"relu\""),
        "{err}"
    );
    other["model_type"] = json!("roberta");
    let err = HfBertConfig::from_hf_config(&other, &config).unwrap_err();
    assert!(
        err.to_string().contains("\"model_type\" is \"roberta\""),
        "{err}"
    );
}

/// Weights that carry `pooler.dense` (BertModel's default) load it, unused.
#[test]
fn pooler_weights_load_unused() {
    let mut dir = tiny_dir_read();
    let w = Tensor::randn([32, 32], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([32], (Kind::Float, Device::Cpu));
    for (name, t) in [("weight", &w), ("bias", &b)] {
        let key = format!("text.transformer.pooler.dense.{name}");
        dir.tensors
            .insert(key.clone(), RawTensor::from_tch(&key, t).unwrap());
    }
    let config = tiny_dir().join("config.json");
    let hf = read_json(&config);
    let bert = HfBertConfig::read(
        &dir.tensors,
        "text.transformer.",
        &dir.weights,
        Some((&hf, &config)),
    )
    .unwrap();
    assert!(bert.pooler);
    let mut vs = VarStore::new(Device::Cpu);
    let model = OpenClip::new(&vs.root(), &dir.config, &bert);
    load_strict(&mut vs, &dir.tensors, |_| false).unwrap();
    let io = io();
    let txt = tch::no_grad(|| model.encode_text_t(&io["ids"].to_tch(), false));
    assert_close(&txt, &io["text_embedding"], "text embedding with a pooler");
}

fn refusal(edit: impl FnOnce(&mut Value)) -> String {
    let file = fixture("biomedclip", "released_open_clip_config.json");
    let mut v = read_json(&file);
    edit(&mut v);
    match OpenClipConfig::from_json(&v, &file) {
        Err(e @ NnError::ModelConfig { .. }) => e.to_string(),
        other => panic!("expected a ModelConfig error, got {other:?}"),
    }
}

#[test]
fn configs_we_do_not_build_are_refused() {
    for (edit, expected) in [
        (
            Box::new(|v: &mut Value| {
                v["model_cfg"]["vision_cfg"]["timm_model_name"] =
                    json!("vit_so400m_patch14_siglip_224")
            }) as Box<dyn FnOnce(&mut Value)>,
            "\"vision_cfg.timm_model_name\" is \"vit_so400m_patch14_siglip_224\"; cxrlearn builds vit_tiny_patch16_224,",
        ),
        (
            Box::new(|v: &mut Value| v["model_cfg"]["vision_cfg"]["timm_pool"] = json!("avg")),
            "\"vision_cfg.timm_pool\" is \"avg\"; cxrlearn builds \"\"",
        ),
        (
            Box::new(|v: &mut Value| {
                v["model_cfg"]["vision_cfg"]
                    .as_object_mut()
                    .unwrap()
                    .remove("timm_pool");
            }),
            "\"vision_cfg.timm_pool\" is \"avg\" (open_clip's default)",
        ),
        (
            Box::new(|v: &mut Value| v["model_cfg"]["vision_cfg"]["timm_proj"] = json!("mlp")),
            "\"vision_cfg.timm_proj\" is \"mlp\"; cxrlearn builds \"linear\"",
        ),
        (
            Box::new(|v: &mut Value| v["model_cfg"]["vision_cfg"]["timm_drop_path"] = json!(0.1)),
            "\"vision_cfg.timm_drop_path\" is 0.1",
        ),
        (
            Box::new(|v: &mut Value| {
                let vision = v["model_cfg"]["vision_cfg"].as_object_mut().unwrap();
                vision.remove("timm_model_name");
                vision.insert("layers".into(), json!(12));
            }),
            "names no \"vision_cfg.timm_model_name\"",
        ),
        (
            Box::new(|v: &mut Value| v["model_cfg"]["vision_cfg"]["image_size"] = json!([224])),
            "\"vision_cfg.image_size\" is [224], not a size or [height, width]",
        ),
        (
            Box::new(|v: &mut Value| {
                v["model_cfg"]["text_cfg"]["hf_pooler_type"] = json!("mean_pooler")
            }),
            "\"text_cfg.hf_pooler_type\" is \"mean_pooler\"; cxrlearn builds \"cls_last_hidden_state_pooler\"",
        ),
        (
            Box::new(|v: &mut Value| {
                v["model_cfg"]["text_cfg"]
                    .as_object_mut()
                    .unwrap()
                    .remove("hf_pooler_type");
            }),
            "\"text_cfg.hf_pooler_type\" is \"mean_pooler\" (open_clip's default)",
        ),
        (
            Box::new(|v: &mut Value| v["model_cfg"]["text_cfg"]["hf_proj_type"] = json!("linear")),
            "\"text_cfg.hf_proj_type\" is \"linear\"; cxrlearn builds \"mlp\"",
        ),
        (
            Box::new(|v: &mut Value| {
                v["model_cfg"]["text_cfg"]
                    .as_object_mut()
                    .unwrap()
                    .remove("hf_model_name");
            }),
            "names no \"text_cfg.hf_model_name\"",
        ),
        (
            Box::new(|v: &mut Value| v["model_cfg"]["multimodal_cfg"] = json!({})),
            "a CoCa model",
        ),
        (
            Box::new(|v: &mut Value| v["model_cfg"]["init_logit_bias"] = json!(-10)),
            "\"init_logit_bias\" is -10",
        ),
        (
            Box::new(|v: &mut Value| {
                v["model_cfg"].as_object_mut().unwrap().remove("embed_dim");
            }),
            "has no \"embed_dim\"",
        ),
        (
            Box::new(|v: &mut Value| v["preprocess_cfg"]["mean"] = json!([0.5, 0.5])),
            "\"preprocess_cfg.mean\" is [0.5,0.5], not three numbers",
        ),
        (
            Box::new(|v: &mut Value| *v = json!([])),
            "is not a JSON object",
        ),
    ] {
        let message = refusal(edit);
        assert!(message.contains(expected), "{message}\n  lacks: {expected}");
        assert!(
            message.contains("released_open_clip_config.json"),
            "{message}"
        );
    }
}

/// A contrastive step at another input size reaches the image trunk's first
/// layer and its (stored-grid) position embedding.
#[test]
fn training_step_reaches_the_image_tower() {
    let (vs, model, _) = tiny();
    let io = io();
    let images = io["image_48"].to_tch();
    let ids = io["ids"].to_tch().narrow(0, 0, 2);
    let img = model.encode_image_t(&images, true);
    let txt = model.encode_text_t(&ids, true);
    let logits = img.matmul(&txt.transpose(0, 1)) * model.logit_scale_var().exp();
    let labels = Tensor::arange(2, (Kind::Int64, Device::Cpu));
    let loss = logits.cross_entropy_for_logits(&labels);
    loss.backward();
    let vars = vs.variables();
    for name in [
        "visual.trunk.patch_embed.proj.weight",
        "visual.trunk.pos_embed",
        "visual.trunk.cls_token",
        "visual.head.proj.weight",
        "text.proj.0.weight",
        "logit_scale",
    ] {
        let g = vars[name].grad();
        assert!(g.defined(), "{name} has no gradient");
        assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name}");
    }
    // The image tower has no dropout (timm's defaults): training mode is eval mode.
    let x = io["image"].to_tch();
    let train = model.visual.forward_t(&x, true);
    assert!(train.allclose(&model.visual.forward_t(&x, false), 1e-6, 1e-6, false));
}
