//! REFERS' ViT, OpenAI CLIP and Hugging Face BERT against reference modules that follow the
//! upstream code (fixtures from `scripts/fixtures/vit_clip.py` and `bert.py`).

use crate::common;

use common::{fixture, max_rel_err};
use cxr_nn::arch::bert::{Bert, BertConfig};
use cxr_nn::arch::clip::{Clip, ClipConfig};
use cxr_nn::arch::vit::{Vit, VitConfig};
use cxr_nn::checkpoint::load;
use cxr_nn::load::load_strict;
use tch::Device;
use tch::nn::{ModuleT, VarStore};

#[test]
fn refers_vit_matches_reference() {
    let config = VitConfig {
        image_size: 32,
        patch_size: 8,
        hidden: 32,
        layers: 2,
        heads: 4,
        mlp: 64,
        in_channels: 3,
        num_classes: Some(5),
    };
    let weights = load(&fixture("transformers", "vit_tiny.pt")).unwrap();
    let io = load(&fixture("transformers", "vit_tiny_io.pt")).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let vit = Vit::new(&vs.root(), &config);
    load_strict(&mut vs, &weights.tensors, |_| false).unwrap();
    let x = io.tensors["input"].to_tch();
    tch::no_grad(|| {
        let err = max_rel_err(&vit.features_t(&x, false), &io.tensors["features"].to_tch());
        assert!(err < 1e-4, "features rel err {err}");
        let err = max_rel_err(&vit.forward_t(&x, false), &io.tensors["logits"].to_tch());
        assert!(err < 1e-4, "logits rel err {err}");
        // Dropout acts only in training.
        assert!(
            !vit.forward_t(&x, true)
                .allclose(&vit.forward_t(&x, true), 1e-6, 1e-6, false)
        );
    });
    // A training step back-propagates into the first layer.
    vit.forward_t(&x, true).sum(tch::Kind::Float).backward();
    let grad = vs.variables()["transformer.embeddings.patch_embeddings.weight"].grad();
    assert!(grad.abs().sum(tch::Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn refers_vit_b16_has_the_documented_keys() {
    let vs = VarStore::new(Device::Cpu);
    let _vit = Vit::new(&vs.root(), &VitConfig::vit_b16(Some(5)));
    let vars = vs.variables();
    assert_eq!(vars.len(), 4 + 12 * 16 + 2 + 2);
    assert_eq!(
        vars["transformer.embeddings.position_embeddings"].size(),
        [1, 197, 768]
    );
    assert_eq!(
        vars["transformer.embeddings.patch_embeddings.weight"].size(),
        [768, 3, 16, 16]
    );
    assert_eq!(
        vars["transformer.encoder.layer.11.attn.query.weight"].size(),
        [768, 768]
    );
    assert_eq!(
        vars["transformer.encoder.layer.0.ffn.fc1.weight"].size(),
        [3072, 768]
    );
    assert!(vars.contains_key("transformer.encoder.encoder_norm.bias"));
}

#[test]
fn clip_towers_match_reference() {
    let config = ClipConfig {
        embed_dim: 16,
        image_resolution: 32,
        vision_layers: 1,
        vision_width: 128,
        vision_patch_size: 8,
        context_length: 12,
        vocab_size: 50,
        transformer_width: 64,
        transformer_layers: 2,
    };
    let weights = load(&fixture("transformers", "clip_tiny.pt")).unwrap();
    let io = load(&fixture("transformers", "clip_tiny_io.pt")).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let clip = Clip::new(&vs.root(), &config);
    load_strict(&mut vs, &weights.tensors, |_| false).unwrap();
    tch::no_grad(|| {
        let img = clip.visual.forward(&io.tensors["image"].to_tch());
        let err = max_rel_err(&img, &io.tensors["image_embedding"].to_tch());
        assert!(err < 1e-4, "image embedding rel err {err}");
        let txt = clip.text.forward(&io.tensors["text"].to_tch());
        let err = max_rel_err(&txt, &io.tensors["text_embedding"].to_tch());
        assert!(err < 1e-4, "text embedding rel err {err}");
    });
}

#[test]
fn clip_vit_b32_has_openai_shapes() {
    let vs = VarStore::new(Device::Cpu);
    let _clip = Clip::new(&vs.root(), &ClipConfig::vit_b32());
    let vars = vs.variables();
    for (name, shape) in [
        ("visual.class_embedding", vec![768]),
        ("visual.positional_embedding", vec![50, 768]),
        ("visual.proj", vec![768, 512]),
        ("visual.conv1.weight", vec![768, 3, 32, 32]),
        (
            "visual.transformer.resblocks.11.attn.in_proj_weight",
            vec![2304, 768],
        ),
        (
            "visual.transformer.resblocks.0.mlp.c_fc.weight",
            vec![3072, 768],
        ),
        ("token_embedding.weight", vec![49408, 512]),
        ("positional_embedding", vec![77, 512]),
        ("text_projection", vec![512, 512]),
        ("logit_scale", vec![]),
    ] {
        assert_eq!(vars[name].size(), shape, "{name}");
    }
}

#[test]
fn bert_matches_hugging_face() {
    let config = BertConfig {
        vocab_size: 100,
        hidden: 32,
        layers: 2,
        heads: 4,
        intermediate: 64,
        max_positions: 24,
        type_vocab_size: 2,
    };
    let weights = load(&fixture("transformers", "bert_tiny.pt")).unwrap();
    let io = load(&fixture("transformers", "bert_tiny_io.pt")).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let bert = Bert::new(&vs.root(), &config);
    load_strict(&mut vs, &weights.tensors, |_| false).unwrap();
    let (ids, mask) = (io.tensors["ids"].to_tch(), io.tensors["mask"].to_tch());
    let out = tch::no_grad(|| bert.forward_t(&ids, &mask, false));
    // Padded positions carry no meaning; compare the real tokens of row 0 and all of row 1.
    let keep = mask.to_kind(tch::Kind::Float).unsqueeze(-1);
    let err = max_rel_err(
        &(&out.last_hidden * &keep),
        &(io.tensors["last_hidden"].to_tch() * &keep),
    );
    assert!(err < 1e-4, "last hidden rel err {err}");
    assert_eq!(out.hidden_states.len(), 3);
    for (i, h) in out.hidden_states.iter().enumerate() {
        let reference = io.tensors[&format!("hidden_{i}")].to_tch();
        let err = max_rel_err(&(h * &keep), &(reference * &keep));
        assert!(err < 1e-4, "hidden state {i} rel err {err}");
    }
    let err = max_rel_err(&out.pooled, &io.tensors["pooled"].to_tch());
    assert!(err < 1e-4, "pooled rel err {err}");
}
