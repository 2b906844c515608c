//! An open_clip model directory read as `open_clip.create_model("local-dir:DIR")`
//! reads it: `open_clip_config.json`, the weights file it prefers, and the
//! state dict as its `load_checkpoint` massages it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::OpenClipConfig;
use super::hf_bert::HfBertConfig;
use crate::checkpoint::RawTensor;
use crate::error::NnError;
use crate::model_dir::{DirFormat, ModelDir, read_json};

/// The weights files open_clip looks for beside `open_clip_config.json`, in
/// its order of preference (its `_find_checkpoint_in_dir`).
pub const WEIGHT_FILES: [&str; 4] = [
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
];

/// Hugging Face configs beside the weights that give the text tower's BERT
/// shape, in the order tried. BiomedCLIP's release has neither (open_clip
/// fetches the config by `hf_model_name`); the shape then comes from the
/// weights.
const BERT_CONFIG_FILES: [&str; 2] = ["bert_config.json", "config.json"];

/// Where the text tower's BERT lives in the state dict.
pub(super) const TEXT_PREFIX: &str = "text.transformer.";

/// What [`read_dir`] found.
#[derive(Debug)]
pub struct OpenClipDir {
    /// `open_clip_config.json`.
    pub config: OpenClipConfig,
    /// The text tower's BERT.
    pub bert: HfBertConfig,
    /// The state dict, ready for a strict load into [`super::OpenClip`]
    /// built at the root (see [`state_dict`]).
    pub tensors: BTreeMap<String, RawTensor>,
    /// The weights file read.
    pub weights: PathBuf,
}

/// Reads the open_clip model in `dir`: [`OpenClipConfig::from_json`] of its
/// `open_clip_config.json`, the first of [`WEIGHT_FILES`] there, and the BERT
/// from `bert_config.json` or `config.json` beside them when present, else
/// from the weights ([`HfBertConfig::read`]).
///
/// # Errors
/// An unreadable or refused config, no weights file, unreadable weights, or
/// weights without a BERT text tower.
pub fn read_dir(dir: &Path) -> Result<OpenClipDir, NnError> {
    read(&ModelDir::open(dir, DirFormat::OpenClip)?)
}

/// As [`read_dir`], for a directory already opened.
///
/// # Errors
/// As [`read_dir`].
pub fn read(dir: &ModelDir) -> Result<OpenClipDir, NnError> {
    let config = OpenClipConfig::from_json(&dir.config, &dir.config_file)?;
    let tensors = state_dict(dir.tensors()?);
    let weights = dir.weights.first().cloned().unwrap_or_default();
    let hf_file = BERT_CONFIG_FILES
        .iter()
        .map(|name| dir.dir.join(name))
        .find(|path| path.is_file());
    let hf_json = hf_file.as_deref().map(read_json).transpose()?;
    let hf = hf_json.as_ref().zip(hf_file.as_deref());
    let bert = HfBertConfig::read(&tensors, TEXT_PREFIX, &weights, hf)?;
    Ok(OpenClipDir {
        config,
        bert,
        tensors,
        weights,
    })
}

/// A checkpoint's tensors as open_clip's `load_checkpoint` hands them to
/// `load_state_dict`: a training checkpoint's `state_dict` unwrapped,
/// DataParallel's `module.` stripped, `text.transformer.embeddings.position_ids`
/// dropped (transformers < 4.31 saved that buffer; it is arange, not a
/// weight), and a one-element `logit_scale` made a scalar.
pub fn state_dict(tensors: BTreeMap<String, RawTensor>) -> BTreeMap<String, RawTensor> {
    let nested = tensors.keys().any(|k| k.starts_with("state_dict."));
    tensors
        .into_iter()
        .filter_map(|(name, t)| {
            let name = if nested {
                name.strip_prefix("state_dict.")?.to_owned()
            } else {
                name
            };
            let name = name
                .strip_prefix("module.")
                .map_or(name.clone(), str::to_owned);
            Some((name, t))
        })
        .filter(|(name, _)| *name != format!("{TEXT_PREFIX}embeddings.position_ids"))
        .map(|(name, mut t)| {
            if name == "logit_scale" && t.numel() == 1 {
                t.shape.clear();
            }
            (name, t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::DType;

    fn scalar(shape: Vec<usize>) -> RawTensor {
        RawTensor {
            dtype: DType::F32,
            shape,
            data: vec![0; 4],
        }
    }

    #[test]
    fn state_dict_is_massaged_as_open_clip_does() {
        let tensors = BTreeMap::from([
            ("state_dict.module.logit_scale".to_owned(), scalar(vec![1])),
            (
                "state_dict.module.text.transformer.embeddings.position_ids".to_owned(),
                scalar(vec![1]),
            ),
            ("optimizer.state.0.exp_avg".to_owned(), scalar(vec![1])),
        ]);
        let out = state_dict(tensors);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["logit_scale"]);
        assert!(out["logit_scale"].shape.is_empty());
    }
}
