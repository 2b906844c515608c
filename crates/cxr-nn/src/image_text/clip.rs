//! [`ClipModel`] is OpenAI's CLIP layout at any [`ClipConfig`] size: the
//! released CheXzero state dict (loaded whole and strictly) or a small model
//! trained here, saved as safetensors with a JSON sidecar
//! ([`ClipModel::save`]) that records its shape, preprocessing and tokenizer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::arch::clip::{Clip, ClipConfig};
use crate::backbone::Architecture;
use crate::checkpoint::{self, RawTensor};
use crate::error::NnError;
use crate::load::{KeyMismatch, load_strict};
use crate::registry::{ModelEntry, Normalization, Preprocessing};
use crate::text::TextTokenizer;

use super::{ImageTextModel, Scoring, ids_on, on_cpu};

/// The `format` value of a CLIP sidecar written by [`ClipModel::save`].
pub const SIDECAR_FORMAT: &str = "cxrlearn-clip";

/// Checkpoint entries OpenAI's `build_model` deletes before loading: shape
/// metadata, not parameters.
const NON_PARAMETERS: &[&str] = &["input_resolution", "context_length", "vocab_size"];

/// The CLIP state-dict name of a checkpoint key (a `state_dict.` or
/// `module.` wrapper stripped), or `None` for OpenAI's non-parameter entries.
pub fn clip_key(name: &str) -> Option<&str> {
    let name = name.strip_prefix("state_dict.").unwrap_or(name);
    let name = name.strip_prefix("module.").unwrap_or(name);
    (!NON_PARAMETERS.contains(&name)).then_some(name)
}

/// The shape of the CLIP model a state dict holds, as OpenAI's `build_model`
/// derives it (ViT image tower only).
///
/// # Errors
/// [`NnError::NotClipStateDict`]: a state dict without a key `build_model` reads.
pub fn config_from_state_dict(
    tensors: &BTreeMap<String, RawTensor>,
) -> Result<ClipConfig, NnError> {
    let by_name: BTreeMap<&str, &RawTensor> = tensors
        .iter()
        .filter_map(|(k, t)| clip_key(k).map(|k| (k, t)))
        .collect();
    let shape = |k: &str| -> Result<Vec<i64>, NnError> {
        by_name
            .get(k)
            .map(|t| t.shape.iter().map(|&d| d as i64).collect())
            .ok_or_else(|| NnError::NotClipStateDict { key: k.to_owned() })
    };
    let layers = |prefix: &str| {
        by_name
            .keys()
            .filter_map(|k| {
                k.strip_prefix(prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1)
    };
    let conv = shape("visual.conv1.weight")?;
    let pos = shape("visual.positional_embedding")?;
    let grid = ((pos[0] - 1) as f64).sqrt().round() as i64;
    Ok(ClipConfig {
        embed_dim: shape("text_projection")?[1],
        image_resolution: conv[3] * grid,
        vision_layers: layers("visual.transformer.resblocks."),
        vision_width: conv[0],
        vision_patch_size: conv[3],
        context_length: shape("positional_embedding")?[0],
        vocab_size: shape("token_embedding.weight")?[0],
        transformer_width: shape("ln_final.weight")?[0],
        transformer_layers: layers("transformer.resblocks."),
    })
}

/// OpenAI CLIP (both towers) with its variables and preprocessing.
#[derive(Debug)]
pub struct ClipModel {
    /// The model's shape.
    pub config: ClipConfig,
    /// How images are prepared.
    pub preprocessing: Preprocessing,
    /// The network.
    pub clip: Clip,
    vs: VarStore,
}

/// The `key` statistics (one number for every channel, or three) of the
/// `preprocessing` object of the sidecar `file`.
fn stats_from_json(v: &Value, key: &str, file: &Path) -> Result<[f64; 3], NnError> {
    let problem = |problem: String| NnError::ClipPreprocessing {
        file: file.to_owned(),
        problem,
    };
    let a: Vec<f64> = v[key]
        .as_array()
        .ok_or_else(|| problem(format!("has no '{key}' list")))?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    match a[..] {
        [x] => Ok([x; 3]),
        [x, y, z] => Ok([x, y, z]),
        _ => Err(problem(format!("'{key}' needs 1 or 3 numbers"))),
    }
}

impl ClipModel {
    /// A randomly initialised model (for training).
    pub fn new(config: ClipConfig, preprocessing: Preprocessing, device: Device) -> Self {
        let vs = VarStore::new(device);
        let clip = Clip::new(&vs.root(), &config);
        Self {
            config,
            preprocessing,
            clip,
            vs,
        }
    }

    /// A model with `tensors` (OpenAI state-dict names, optionally under
    /// `state_dict.` or `module.`) loaded strictly: every parameter of both
    /// towers and `logit_scale` must be there with its shape, and nothing
    /// else but OpenAI's non-parameter entries.
    ///
    /// # Errors
    /// [`KeyMismatch`] naming every missing, unexpected or wrongly shaped key.
    pub fn from_tensors(
        config: ClipConfig,
        preprocessing: Preprocessing,
        tensors: &BTreeMap<String, RawTensor>,
        device: Device,
    ) -> Result<Self, KeyMismatch> {
        let mut model = Self::new(config, preprocessing, device);
        let renamed: BTreeMap<String, RawTensor> = tensors
            .iter()
            .filter_map(|(k, t)| clip_key(k).map(|k| (k.to_owned(), t.clone())))
            .collect();
        load_strict(&mut model.vs, &renamed, |_| false)?;
        Ok(model)
    }

    /// The CLIP model of a registry entry whose architecture is a CLIP image
    /// tower (CheXzero): the whole checkpoint, text tower included, with the
    /// entry's preprocessing. `None` for entries without a text tower.
    ///
    /// # Errors
    /// Inner: [`KeyMismatch`] as [`from_tensors`](Self::from_tensors).
    pub fn from_registry(
        entry: &ModelEntry,
        tensors: &BTreeMap<String, RawTensor>,
        device: Device,
    ) -> Option<Result<Self, KeyMismatch>> {
        match &entry.architecture {
            Architecture::ClipVisual(c) => Some(Self::from_tensors(
                c.clone(),
                entry.preprocessing,
                tensors,
                device,
            )),
            _ => None,
        }
    }

    /// The variables (for an optimiser).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Network input from u8 images (see [`Preprocessing::input`]).
    pub fn preprocess(&self, images: &[u8], n: usize, h: usize, w: usize) -> Tensor {
        self.preprocessing.input(images, n, h, w, self.device())
    }

    /// Image embeddings of preprocessed images, with gradients (training).
    pub fn image_embeddings(&self, x: &Tensor) -> Tensor {
        self.clip.visual.forward(x)
    }

    /// Text embeddings of token ids `[n, context_length]` on the model's
    /// device, with gradients (training).
    pub fn text_embeddings(&self, ids: &Tensor) -> Tensor {
        self.clip.text.forward(ids)
    }

    /// Writes the weights to `path` (safetensors, OpenAI names) and the
    /// sidecar `path.with_extension("json")` with the config, preprocessing
    /// and `tokenizer` (stored relative to the sidecar's folder when inside
    /// it).
    ///
    /// # Errors
    /// Unwritable files (named) or untransferable tensors.
    pub fn save(&self, path: &Path, tokenizer: Option<&Path>) -> Result<(), NnError> {
        let tensors: BTreeMap<String, RawTensor> = self
            .vs
            .variables()
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    RawTensor::from_tch(k, &v.to_device(Device::Cpu))?,
                ))
            })
            .collect::<Result<_, NnError>>()?;
        let meta = HashMap::from([("format".to_owned(), SIDECAR_FORMAT.to_owned())]);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| NnError::Io { path, source }
        };
        std::fs::write(path, checkpoint::to_safetensors(&tensors, Some(meta))?)
            .map_err(io(path))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let tokenizer = tokenizer.map(|t| {
            t.strip_prefix(dir)
                .unwrap_or(t)
                .to_string_lossy()
                .into_owned()
        });
        let p = &self.preprocessing;
        let sidecar = json!({
            "model": "clip",
            "format": SIDECAR_FORMAT,
            "clip_config": self.config,
            "preprocessing": {
                "size": p.size,
                "channels": p.channels,
                "mean": p.normalization.mean,
                "std": p.normalization.std,
            },
            "tokenizer": tokenizer,
        });
        let side = path.with_extension("json");
        let text =
            serde_json::to_string_pretty(&sidecar).map_err(|source| NnError::SidecarJson {
                file: side.clone(),
                source,
            })?;
        std::fs::write(&side, text + "\n").map_err(io(&side))?;
        Ok(())
    }

    /// Whether `path` has a sidecar written by [`save`](Self::save).
    pub fn is_saved_clip(path: &Path) -> bool {
        std::fs::read_to_string(path.with_extension("json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["format"] == SIDECAR_FORMAT)
    }

    /// Loads a model written by [`save`](Self::save), strictly, with the
    /// tokenizer path its sidecar names (resolved against the sidecar's
    /// folder).
    ///
    /// # Errors
    /// A missing or malformed sidecar, or weights that do not match it (each
    /// naming its file).
    pub fn load(path: &Path, device: Device) -> Result<(Self, Option<PathBuf>), NnError> {
        let side = path.with_extension("json");
        let text = std::fs::read_to_string(&side).map_err(|source| NnError::ReadSidecar {
            file: side.clone(),
            source,
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|source| NnError::SidecarJson {
            file: side.clone(),
            source,
        })?;
        if v["format"] != SIDECAR_FORMAT {
            return Err(NnError::NotClipSidecar {
                file: side,
                format: SIDECAR_FORMAT,
            });
        }
        let config = crate::spec::clip_config_from_json(&v["clip_config"], &side, "clip_config")?;
        let p = &v["preprocessing"];
        let preprocessing = Preprocessing {
            size: p["size"].as_i64().unwrap_or(config.image_resolution),
            channels: p["channels"].as_i64().unwrap_or(3),
            normalization: Normalization {
                mean: stats_from_json(p, "mean", &side)?,
                std: stats_from_json(p, "std", &side)?,
            },
            resize: "bilinear resize to the model's input size",
            internal_resize: None,
            crop_from: None,
        };
        let ck = checkpoint::load(path)?;
        let model =
            Self::from_tensors(config, preprocessing, &ck.tensors, device).map_err(|mismatch| {
                NnError::WeightsMismatch {
                    file: path.to_owned(),
                    mismatch: Box::new(mismatch),
                }
            })?;
        let dir = side.parent().unwrap_or(Path::new("."));
        let tokenizer = v["tokenizer"].as_str().map(|t| dir.join(t));
        Ok((model, tokenizer))
    }
}

impl ImageTextModel for ClipModel {
    fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    fn scoring(&self) -> Scoring {
        Scoring::Softmax {
            scale: self.logit_scale(),
        }
    }

    fn check_tokenizer(&self, tokenizer: &TextTokenizer) -> Result<(), String> {
        if tokenizer.vocab_size() as i64 != self.config.vocab_size {
            return Err(format!(
                "it has {} ids but the model's text tower has {}",
                tokenizer.vocab_size(),
                self.config.vocab_size
            ));
        }
        // CLIP's text tower pools at the position of the largest id.
        if !tokenizer.end_is_largest() {
            return Err(
                "its end token is not the largest id, which CLIP's text tower needs to find it"
                    .into(),
            );
        }
        Ok(())
    }

    fn context_length(&self) -> usize {
        self.config.context_length as usize
    }

    fn logit_scale(&self) -> f64 {
        self.clip.text.logit_scale.double_value(&[]).exp()
    }

    fn encode_images(&self, images: &[u8], n: usize, h: usize, w: usize) -> Tensor {
        let x = self.preprocess(images, n, h, w);
        on_cpu(|| self.image_embeddings(&x))
    }

    fn encode_texts(&self, ids: &[i64], n: usize) -> Tensor {
        on_cpu(|| self.text_embeddings(&ids_on(ids, n, self.device())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::CLIP;

    fn tiny() -> ClipConfig {
        ClipConfig {
            embed_dim: 8,
            image_resolution: 16,
            vision_layers: 1,
            vision_width: 64,
            vision_patch_size: 8,
            context_length: 6,
            vocab_size: 20,
            transformer_width: 64,
            transformer_layers: 2,
        }
    }

    fn pre() -> Preprocessing {
        Preprocessing {
            size: 16,
            channels: 3,
            normalization: CLIP,
            resize: "test",
            internal_resize: None,
            crop_from: None,
        }
    }

    fn state_dict(m: &ClipModel) -> BTreeMap<String, RawTensor> {
        m.var_store()
            .variables()
            .iter()
            .map(|(k, v)| (k.clone(), RawTensor::from_tch(k, v).unwrap()))
            .collect()
    }

    #[test]
    fn config_is_derived_from_the_state_dict() {
        tch::manual_seed(0);
        let m = ClipModel::new(tiny(), pre(), Device::Cpu);
        assert_eq!(config_from_state_dict(&state_dict(&m)).unwrap(), tiny());
    }

    #[test]
    fn strict_load_names_keys_and_ignores_openai_metadata() {
        tch::manual_seed(0);
        let m = ClipModel::new(tiny(), pre(), Device::Cpu);
        let mut sd: BTreeMap<String, RawTensor> = state_dict(&m)
            .into_iter()
            .map(|(k, v)| (format!("state_dict.{k}"), v))
            .collect();
        let scalar = RawTensor::from_tch("x", &Tensor::from(77i64)).unwrap();
        sd.insert("context_length".into(), scalar.clone());
        let loaded = ClipModel::from_tensors(tiny(), pre(), &sd, Device::Cpu).unwrap();
        let ids: Vec<i64> = vec![2, 5, 19, 0, 0, 0];
        let a = m.encode_texts(&ids, 1);
        let b = loaded.encode_texts(&ids, 1);
        assert!(a.allclose(&b, 1e-6, 1e-6, false));
        sd.remove("state_dict.logit_scale");
        sd.insert("extra.weight".into(), scalar);
        let e = ClipModel::from_tensors(tiny(), pre(), &sd, Device::Cpu).unwrap_err();
        assert_eq!(e.missing, vec!["logit_scale".to_owned()]);
        assert_eq!(e.unexpected, vec!["extra.weight".to_owned()]);
    }

    #[test]
    fn save_and_load_round_trip() {
        tch::manual_seed(1);
        let m = ClipModel::new(tiny(), pre(), Device::Cpu);
        let dir = std::env::temp_dir().join(format!("cxr-nn-clip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clip.safetensors");
        m.save(&path, Some(&dir.join("tokenizer.json"))).unwrap();
        assert!(ClipModel::is_saved_clip(&path));
        let (l, tok) = ClipModel::load(&path, Device::Cpu).unwrap();
        assert_eq!(tok.unwrap(), dir.join("tokenizer.json"));
        assert_eq!(l.config, tiny());
        let img: Vec<u8> = (0..2 * 20 * 20).map(|i| (i * 7 % 256) as u8).collect();
        let a = m.encode_images(&img, 2, 20, 20);
        let b = l.encode_images(&img, 2, 20, 20);
        assert_eq!(a.size(), vec![2, 8]);
        assert!(a.allclose(&b, 1e-6, 1e-6, false));
        assert!((m.logit_scale() - 1.0 / 0.07).abs() < 1e-3);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
