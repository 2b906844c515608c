//! Layer-wise learning-rate decay, the usual recipe for finetuning a Vision
//! Transformer (BEiT; timm's `param_groups_layer_decay`; DINOv2's and
//! RAD-DINO's evaluations): the head and the final norm train at the full
//! rate, block `i` of `L` at `decay^(L - i)`, the embeddings at
//! `decay^(L + 1)`.
//!
//! A parameter's depth is read from its name, which is the source
//! implementation's (see `cxr_nn::arch`): blocks are numbered
//! `layer.N` (DINOv2, BERT, REFERS' ViT), `layers.N` (SigLIP), `blocks.N`
//! (timm, open_clip) or `resblocks.N` (OpenAI CLIP).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Segments that number a transformer's blocks.
const BLOCK_LISTS: [&str; 4] = ["layer", "layers", "blocks", "resblocks"];

/// Names of what comes before the first block: patch, position, class,
/// register and token embeddings, and CLIP's pre-norm.
fn is_embedding(name: &str) -> bool {
    name.split('.').any(|s| {
        s.contains("embed")
            || matches!(
                s,
                "cls_token" | "mask_token" | "register_tokens" | "conv1" | "ln_pre"
            )
    })
}

/// The block a parameter belongs to, when its name numbers one.
fn block(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').collect();
    parts
        .windows(2)
        .find(|w| BLOCK_LISTS.contains(&w[0]))
        .and_then(|w| w[1].parse().ok())
}

/// The learning-rate multiplier of every name in `names` under `decay`.
///
/// # Errors
/// [`Error::LayerDecay`] when `decay` is not in (0, 1] or the names number no
/// transformer blocks (a convolutional backbone).
pub fn scales<'a>(
    names: impl IntoIterator<Item = &'a str>,
    decay: f64,
    architecture: &str,
) -> Result<BTreeMap<String, f64>> {
    if !(decay > 0.0 && decay <= 1.0) {
        return Err(Error::LayerDecay {
            architecture: architecture.to_owned(),
            problem: format!("--layer-decay {decay} is not in (0, 1]"),
        });
    }
    let names: Vec<&str> = names.into_iter().collect();
    let blocks = names.iter().filter_map(|n| block(n)).max().map(|m| m + 1);
    let Some(blocks) = blocks else {
        return Err(Error::LayerDecay {
            architecture: architecture.to_owned(),
            problem: "it has no numbered transformer blocks (layer-wise decay is for ViT-style backbones)".into(),
        });
    };
    let depth = |name: &str| match block(name) {
        Some(i) => i + 1,
        None if is_embedding(name) => 0,
        // Final norm, attention-pooling head, classifier head.
        None => blocks + 1,
    };
    Ok(names
        .into_iter()
        .map(|n| (n.to_owned(), decay.powi((blocks + 1 - depth(n)) as i32)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dinov2_names_decay_by_depth() {
        let names = [
            "embeddings.cls_token",
            "embeddings.patch_embeddings.projection.weight",
            "encoder.layer.0.norm1.weight",
            "encoder.layer.1.mlp.fc2.bias",
            "layernorm.weight",
            "head.weight",
        ];
        let s = scales(names, 0.5, "dinov2").unwrap();
        // Two blocks: embeddings 0.5^3, block 0 0.5^2, block 1 0.5, head 1.
        assert_eq!(s["embeddings.cls_token"], 0.125);
        assert_eq!(s["embeddings.patch_embeddings.projection.weight"], 0.125);
        assert_eq!(s["encoder.layer.0.norm1.weight"], 0.25);
        assert_eq!(s["encoder.layer.1.mlp.fc2.bias"], 0.5);
        assert_eq!(s["layernorm.weight"], 1.0);
        assert_eq!(s["head.weight"], 1.0);
    }

    #[test]
    fn other_namings_and_refusals() {
        let timm = scales(
            [
                "visual.trunk.pos_embed",
                "visual.trunk.blocks.3.attn.qkv.weight",
            ],
            0.9,
            "x",
        )
        .unwrap();
        assert!((timm["visual.trunk.pos_embed"] - 0.9f64.powi(5)).abs() < 1e-15);
        assert!((timm["visual.trunk.blocks.3.attn.qkv.weight"] - 0.9).abs() < 1e-15);
        let siglip = scales(
            [
                "vision_model.encoder.layers.0.mlp.fc1.weight",
                "vision_model.head.probe",
            ],
            0.5,
            "x",
        )
        .unwrap();
        assert_eq!(siglip["vision_model.head.probe"], 1.0);
        let e = scales(
            ["conv1.weight", "layer1.0.conv1.weight", "fc.weight"],
            0.5,
            "resnet50",
        )
        .unwrap_err();
        assert!(e.to_string().contains("resnet50"), "{e}");
        assert!(scales(["encoder.layer.0.x"], 1.5, "x").is_err());
        assert!(scales(["encoder.layer.0.x"], 0.0, "x").is_err());
    }
}
