//! Model directories as their publishers lay them out: a Hugging Face
//! directory (`config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, optionally `preprocessor_config.json` and
//! tokenizer files) and an open_clip directory (`open_clip_config.json`,
//! `open_clip_pytorch_model.bin` or `open_clip_model.safetensors`).
//!
//! Reading is strict: a shard the index names but the directory lacks, a
//! tensor the index places in a shard that does not hold it, a tensor held
//! by two shards, and a shard name that leaves the directory are all errors
//! naming the file. The architecture is built from the configuration
//! (see `crate::hf_config`); this module only finds and reads the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::checkpoint::{self, RawTensor};
use crate::entry::{Normalization, Preprocessing};
use crate::error::NnError;

/// How a model directory is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirFormat {
    /// Hugging Face `save_pretrained`: `config.json` and weights.
    HuggingFace,
    /// open_clip's hub layout: `open_clip_config.json` and weights.
    OpenClip,
}

impl DirFormat {
    /// The `--model` prefix of the format (`hf:`, `open_clip:`).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::HuggingFace => "hf",
            Self::OpenClip => "open_clip",
        }
    }

    /// The publisher's name of the layout.
    pub fn title(self) -> &'static str {
        match self {
            Self::HuggingFace => "Hugging Face",
            Self::OpenClip => "open_clip",
        }
    }

    fn config_name(self) -> &'static str {
        match self {
            Self::HuggingFace => "config.json",
            Self::OpenClip => "open_clip_config.json",
        }
    }

    /// Weight files in the order they are looked for: single files, then
    /// sharded indexes.
    fn weight_names(self) -> &'static [&'static str] {
        match self {
            Self::HuggingFace => &[
                "model.safetensors",
                "model.safetensors.index.json",
                "pytorch_model.bin",
                "pytorch_model.bin.index.json",
            ],
            Self::OpenClip => &crate::arch::open_clip::WEIGHT_FILES,
        }
    }
}

/// A model directory whose configuration has been read and whose weight
/// files have been found (not yet read: [`ModelDir::tensors`]).
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory.
    pub dir: PathBuf,
    /// Its layout.
    pub format: DirFormat,
    /// The configuration file (`config.json`, `open_clip_config.json`).
    pub config_file: PathBuf,
    /// Its content.
    pub config: Value,
    /// The weight files, in shard order (one unless sharded).
    pub weights: Vec<PathBuf>,
    /// The sharded index, when the weights are sharded.
    pub index: Option<PathBuf>,
    /// `preprocessor_config.json` and its content, when present.
    pub preprocessor: Option<(PathBuf, Value)>,
}

/// Reads and parses a JSON file, naming it in the error.
pub fn read_json(path: &Path) -> Result<Value, NnError> {
    let text = std::fs::read_to_string(path).map_err(|e| NnError::ModelConfig {
        file: path.to_owned(),
        problem: format!("cannot be read: {e}"),
    })?;
    serde_json::from_str(&text).map_err(|e| NnError::ModelConfig {
        file: path.to_owned(),
        problem: format!("is not valid JSON: {e}"),
    })
}

/// A `weight_map` shard name that stays inside the directory: a plain
/// file name, no separators, not `.` or `..`.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.contains('\0')
}

impl ModelDir {
    /// Opens `dir` as `format`: reads the configuration and finds the
    /// weights (a sharded index is read and its shards checked to exist).
    ///
    /// # Errors
    /// [`NnError::ModelConfig`] naming the missing or malformed file.
    pub fn open(dir: &Path, format: DirFormat) -> Result<Self, NnError> {
        let problem = |file: PathBuf, problem: String| NnError::ModelConfig { file, problem };
        if !dir.is_dir() {
            return Err(problem(
                dir.to_owned(),
                format!(
                    "is not a directory ({}:DIR takes a model directory holding {})",
                    format.prefix(),
                    format.config_name()
                ),
            ));
        }
        let config_file = dir.join(format.config_name());
        if !config_file.is_file() {
            return Err(problem(
                dir.to_owned(),
                format!(
                    "has no {} (not a {} model directory)",
                    format.config_name(),
                    format.prefix()
                ),
            ));
        }
        let config = read_json(&config_file)?;
        if !config.is_object() {
            return Err(problem(config_file, "is not a JSON object".into()));
        }
        let Some(found) = format
            .weight_names()
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
        else {
            return Err(problem(
                dir.to_owned(),
                format!(
                    "has no weights (looked for {})",
                    format.weight_names().join(", ")
                ),
            ));
        };
        let (weights, index) = if found.to_string_lossy().ends_with(".index.json") {
            (Self::shards(dir, &found)?, Some(found))
        } else {
            (vec![found], None)
        };
        let pre = dir.join("preprocessor_config.json");
        let preprocessor = if pre.is_file() {
            let v = read_json(&pre)?;
            Some((pre, v))
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_owned(),
            format,
            config_file,
            config,
            weights,
            index,
            preprocessor,
        })
    }

    /// The weight map of a sharded index: `{tensor: shard file}`.
    fn weight_map(index: &Path) -> Result<BTreeMap<String, String>, NnError> {
        let v = read_json(index)?;
        let map = v["weight_map"]
            .as_object()
            .ok_or_else(|| NnError::ModelConfig {
                file: index.to_owned(),
                problem: "has no \"weight_map\" object".into(),
            })?;
        map.iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) if plain_file_name(s) => Ok((k.clone(), s.to_owned())),
                _ => Err(NnError::ModelConfig {
                    file: index.to_owned(),
                    problem: format!(
                        "places '{k}' in {v}, which is not a file name in this directory"
                    ),
                }),
            })
            .collect()
    }

    /// The shards an index names, each checked to exist.
    fn shards(dir: &Path, index: &Path) -> Result<Vec<PathBuf>, NnError> {
        let map = Self::weight_map(index)?;
        let mut names: Vec<&String> = map.values().collect();
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(NnError::ModelConfig {
                    file: index.to_owned(),
                    problem: format!(
                        "names shard {name}, which is missing from {}",
                        dir.display()
                    ),
                });
            }
            out.push(path);
        }
        Ok(out)
    }

    /// Every tensor of the weights under its checkpoint name. Sharded
    /// weights must agree with their index exactly.
    ///
    /// # Errors
    /// An unreadable weight file, or shards that disagree with the index.
    pub fn tensors(&self) -> Result<BTreeMap<String, RawTensor>, NnError> {
        let map = match &self.index {
            Some(index) => Some((index, Self::weight_map(index)?)),
            None => None,
        };
        let mut out: BTreeMap<String, RawTensor> = BTreeMap::new();
        for file in &self.weights {
            let ck = checkpoint::load(file).map_err(|e| NnError::ModelConfig {
                file: file.clone(),
                problem: e.to_string(),
            })?;
            let shard = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            for (name, t) in ck.tensors {
                if let Some((index, map)) = &map
                    && map.get(&name).map(String::as_str) != Some(shard)
                {
                    return Err(NnError::ModelConfig {
                        file: (*index).clone(),
                        problem: format!("does not place '{name}' in {shard}, which holds it"),
                    });
                }
                if out.insert(name.clone(), t).is_some() {
                    return Err(NnError::ModelConfig {
                        file: file.clone(),
                        problem: format!("holds '{name}', which another shard also holds"),
                    });
                }
            }
        }
        if let Some((index, map)) = &map
            && let Some((name, shard)) = map.iter().find(|(k, _)| !out.contains_key(*k))
        {
            return Err(NnError::ModelConfig {
                file: (*index).clone(),
                problem: format!("places '{name}' in {shard}, which does not hold it"),
            });
        }
        Ok(out)
    }

    /// The files the model's numbers depend on (configuration, image
    /// preprocessing, weights), in a fixed order: what a cache key hashes.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = vec![self.config_file.clone()];
        if let Some((p, _)) = &self.preprocessor {
            out.push(p.clone());
        }
        if let Some(i) = &self.index {
            out.push(i.clone());
        }
        out.extend(self.weights.iter().cloned());
        out
    }

    /// The image preprocessing the directory describes, over `base` (the
    /// registry's or the architecture's): Hugging Face's
    /// `preprocessor_config.json` when present, open_clip's
    /// `preprocess_cfg`; `base` otherwise.
    ///
    /// # Errors
    /// [`NnError::ModelConfig`] for a preprocessing cxrlearn does not apply
    /// (a non-square input, a rescale other than 1/255), naming the field.
    pub fn preprocessing(&self, base: Preprocessing) -> Result<Preprocessing, NnError> {
        match (self.format, &self.preprocessor) {
            (DirFormat::HuggingFace, Some((file, v))) => hf_preprocessing(v, file, base),
            (DirFormat::HuggingFace, None) => Ok(base),
            (DirFormat::OpenClip, _) => {
                open_clip_preprocessing(&self.config["preprocess_cfg"], &self.config_file, base)
            }
        }
    }
}

/// Per-channel statistics: one number (every channel) or three.
fn stats(v: &Value, field: &str, file: &Path) -> Result<Option<[f64; 3]>, NnError> {
    let bad = || NnError::ModelConfig {
        file: file.to_owned(),
        problem: format!("\"{field}\" is {v}; expected one number or three"),
    };
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(Some([n.as_f64().ok_or_else(bad)?; 3])),
        Value::Array(a) => {
            let xs: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
            match xs[..] {
                [x] if a.len() == 1 => Ok(Some([x; 3])),
                [x, y, z] if a.len() == 3 => Ok(Some([x, y, z])),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// A side from a Hugging Face size object: an integer, `{"shortest_edge": n}`
/// or a square `{"height": n, "width": n}`.
fn side(v: &Value, field: &str, file: &Path) -> Result<Option<i64>, NnError> {
    let bad = |why: &str| NnError::ModelConfig {
        file: file.to_owned(),
        problem: format!("\"{field}\" is {v}: {why}"),
    };
    let positive = |x: Option<i64>| x.filter(|&x| x > 0 && x <= 8192);
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => positive(n.as_i64())
            .map(Some)
            .ok_or_else(|| bad("not a side in pixels")),
        Value::Object(o) => {
            if let Some(s) = o.get("shortest_edge") {
                return positive(s.as_i64())
                    .map(Some)
                    .ok_or_else(|| bad("not a side in pixels"));
            }
            let (h, w) = (
                positive(o.get("height").and_then(Value::as_i64)),
                positive(o.get("width").and_then(Value::as_i64)),
            );
            match (h, w) {
                (Some(h), Some(w)) if h == w => Ok(Some(h)),
                (Some(_), Some(_)) => Err(bad("cxrlearn feeds square images only")),
                _ => Err(bad("expected shortest_edge, or height and width")),
            }
        }
        _ => Err(bad("expected a number or an object")),
    }
}

/// Hugging Face image-processor settings (`BitImageProcessor` of DINOv2 and
/// RAD-DINO, `SiglipImageProcessor`): resize, optional centre crop, rescale
/// by 1/255, normalise.
fn hf_preprocessing(v: &Value, file: &Path, base: Preprocessing) -> Result<Preprocessing, NnError> {
    let flag = |k: &str, default: bool| v[k].as_bool().unwrap_or(default);
    if flag("do_rescale", true) {
        let f = v["rescale_factor"].as_f64().unwrap_or(1.0 / 255.0);
        if (f * 255.0 - 1.0).abs() > 1e-6 {
            return Err(NnError::ModelConfig {
                file: file.to_owned(),
                problem: format!(
                    "\"rescale_factor\" is {f}; cxrlearn rescales 8-bit pixels by 1/255"
                ),
            });
        }
    } else {
        return Err(NnError::ModelConfig {
            file: file.to_owned(),
            problem: "\"do_rescale\" is false; cxrlearn feeds pixels rescaled to 0-1".into(),
        });
    }
    let resize = if flag("do_resize", true) {
        side(&v["size"], "size", file)?
    } else {
        None
    };
    let crop = if flag("do_center_crop", v.get("crop_size").is_some()) {
        side(&v["crop_size"], "crop_size", file)?
    } else {
        None
    };
    let normalization = if flag("do_normalize", true) {
        let mean = stats(&v["image_mean"], "image_mean", file)?;
        let std = stats(&v["image_std"], "image_std", file)?;
        Normalization {
            mean: mean.unwrap_or(base.normalization.mean),
            std: std.unwrap_or(base.normalization.std),
        }
    } else {
        Normalization {
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    };
    if normalization
        .std
        .iter()
        .any(|&s| s <= 0.0 || !s.is_finite())
    {
        return Err(NnError::ModelConfig {
            file: file.to_owned(),
            problem: format!(
                "\"image_std\" {:?} has a value that is not positive",
                normalization.std
            ),
        });
    }
    let (size, crop_from) = match (resize, crop) {
        (Some(r), Some(c)) if r > c => (c, Some(r)),
        (Some(_), Some(c)) | (None, Some(c)) => (c, None),
        (Some(r), None) => (r, None),
        (None, None) => (base.size, base.crop_from),
    };
    Ok(Preprocessing {
        size,
        crop_from,
        normalization,
        resize: "as preprocessor_config.json: the store's square images resampled bilinearly (to the resize side, then centre-cropped when it crops)",
        ..base
    })
}

/// open_clip's `preprocess_cfg` (mean, std) with the vision tower's
/// `image_size`: shortest-edge resize and centre crop to that size, which on
/// square images is a resize.
fn open_clip_preprocessing(
    v: &Value,
    file: &Path,
    base: Preprocessing,
) -> Result<Preprocessing, NnError> {
    let mean = stats(&v["mean"], "preprocess_cfg.mean", file)?;
    let std = stats(&v["std"], "preprocess_cfg.std", file)?;
    Ok(Preprocessing {
        normalization: Normalization {
            mean: mean.unwrap_or(base.normalization.mean),
            std: std.unwrap_or(base.normalization.std),
        },
        ..base
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::IMAGENET;
    use serde_json::json;

    fn base() -> Preprocessing {
        Preprocessing::imagenet_224("base")
    }

    #[test]
    fn dinov2_and_rad_dino_processors() {
        let f = Path::new("preprocessor_config.json");
        // facebook/dinov2-base: shortest edge 256, centre crop 224.
        let dinov2 = json!({"crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}});
        let p = hf_preprocessing(&dinov2, f, base()).unwrap();
        assert_eq!((p.size, p.crop_from), (224, Some(256)));
        assert_eq!(p.normalization, IMAGENET);
        // microsoft/rad-dino: 518, one statistic for every channel.
        let rad = json!({"crop_size": {"height": 518, "width": 518}, "image_mean": [0.5307],
            "image_std": [0.2583], "size": {"shortest_edge": 518}});
        let p = hf_preprocessing(&rad, f, base()).unwrap();
        assert_eq!((p.size, p.crop_from), (518, None));
        assert_eq!(p.normalization.mean, [0.5307; 3]);
        // SigLIP: a square size and no crop.
        let siglip = json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
            "size": {"height": 448, "width": 448}});
        assert_eq!(hf_preprocessing(&siglip, f, base()).unwrap().size, 448);
    }

    #[test]
    fn processors_we_do_not_apply_are_named() {
        let f = Path::new("p.json");
        let e = |v: Value| hf_preprocessing(&v, f, base()).unwrap_err().to_string();
        assert!(e(json!({"size": {"height": 224, "width": 256}})).contains("square"));
        assert!(e(json!({"rescale_factor": 1.0})).contains("rescale_factor"));
        assert!(e(json!({"image_std": [0.0]})).contains("image_std"));
        assert!(e(json!({"image_mean": [1, 2]})).contains("image_mean"));
    }

    #[test]
    fn shard_names_stay_in_the_directory() {
        assert!(plain_file_name("model-00001-of-00002.safetensors"));
        for bad in ["../x", "/etc/passwd", "a/b", "..", ""] {
            assert!(!plain_file_name(bad), "{bad}");
        }
    }
}
