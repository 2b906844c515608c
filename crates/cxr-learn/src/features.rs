//! Frozen features of every split of a store, and the features directory
//! they are kept in (docs/formats.md): `train.safetensors`, `val.safetensors`
//! and `test.safetensors` (tensors `features` `[n, dim]` f32, `labels`
//! `[n, k]` f32, `index` `[n]` i64 store rows) and `meta.json` (model,
//! labels, task, the cache key).
//!
//! The cache key is what the numbers depend on: the model string, the hash
//! of its weights file, the hashes of the store's labels and manifest, the
//! normalisation and a reduced precision. A directory whose `meta.json`
//! holds the same key is reused as it is.
//!
//! Writing ([`Request::extract`]) and reading ([`FeaturesDir`]) live here
//! together so the format has one definition.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cxr_data::labels::Split;
use cxr_data::store::read::Store;
use cxr_nn::checkpoint::{self, CheckpointError, DType, RawTensor};
use cxr_nn::encoder::{Encoder, Inference};
use cxr_nn::precision::Precision;
use cxr_nn::registry::CLIP;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tch::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::Resolved;

/// The splits a features directory holds, in the order they are written.
pub const SPLITS: [Split; 3] = [Split::Train, Split::Val, Split::Test];

/// SHA-256 of a file's bytes, lowercase hex (read in pieces: weights files
/// run to gigabytes).
///
/// # Errors
/// The file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let read = |cause| Error::Read {
        path: path.to_owned(),
        cause,
    };
    let mut f = std::fs::File::open(path).map_err(read)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(read)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// The hashes identifying a store's labels and images: its `dataset.json`
/// and `manifest.csv`.
///
/// # Errors
/// Either file cannot be read.
pub fn store_hash(store: &Path) -> Result<[String; 2], Error> {
    Ok([
        sha256_file(&store.join("dataset.json"))?,
        sha256_file(&store.join("manifest.csv"))?,
    ])
}

/// One extraction: the model, the store and the settings the numbers
/// depend on.
#[derive(Debug)]
pub struct Request<'a> {
    /// The model string as given (part of the cache key).
    pub model: &'a str,
    /// What it resolved to.
    pub resolved: &'a Resolved,
    /// The store, with pixels.
    pub store: &'a Arc<Store>,
    /// Where the store lives (hashed into the key, recorded in `meta.json`).
    pub store_root: &'a Path,
    /// OpenAI CLIP statistics for every model (as the original cxrlearn
    /// did) instead of the model's own.
    pub clip_normalization: bool,
    /// Arithmetic of the forward pass.
    pub precision: Precision,
    /// How the forward pass is arranged (not part of the cache key: the
    /// features agree within float rounding).
    pub inference: Inference,
    /// Images per forward pass (at least 1).
    pub batch_size: usize,
}

impl Request<'_> {
    fn normalization_name(&self) -> &'static str {
        if self.clip_normalization {
            "clip"
        } else {
            "model"
        }
    }

    /// The cache key (`meta.json`'s `cache_key`).
    ///
    /// # Errors
    /// The weights file or the store's files cannot be read.
    pub fn cache_key(&self) -> Result<Value, Error> {
        let weights_key = match self.resolved.weights_sha256()? {
            Some(sha) => sha,
            None => format!("{} seed 0", self.resolved.source),
        };
        let mut key = json!({
            "model": self.model,
            "weights_sha256": weights_key,
            "store_sha256": store_hash(self.store_root)?,
            "normalization": self.normalization_name(),
            // Reduced precision gives other numbers: its own cache entry.
            "precision": (self.precision != Precision::Fp32).then(|| self.precision.to_string()),
        });
        // Another pooling is another feature (absent for models without a
        // choice, so their earlier cache entries stay valid).
        if let Some(p) = self.resolved.spec.architecture.pooling() {
            key["pooling"] = json!(p.to_string());
        }
        Ok(key)
    }

    /// The encoder on `device` (random weights from seed 0 for `scratch:`),
    /// with the request's normalisation, precision and inference graph.
    ///
    /// # Errors
    /// The weights cannot be read or do not fit the model.
    pub fn encoder(&self, device: Device) -> Result<Encoder, Error> {
        let mut encoder = self.resolved.encoder(device, 0)?;
        if self.clip_normalization {
            encoder.normalization = CLIP;
        }
        encoder.precision = self.precision;
        encoder.prepare(self.inference);
        Ok(encoder)
    }

    /// Extracts every split with `encoder` into `dir` (which must exist),
    /// each file written atomically, `meta.json` (with `key`) last, so a
    /// directory with a matching `meta.json` is complete. Calls
    /// `on_split(split, images, dim)` after each split. Returns the number
    /// of images.
    ///
    /// # Errors
    /// Non-finite features, a libtorch failure, or a file not written.
    pub fn extract(
        &self,
        encoder: &Encoder,
        key: &Value,
        device: Device,
        dir: &Path,
        mut on_split: impl FnMut(Split, usize, usize),
    ) -> Result<usize, Error> {
        let spec = &self.resolved.spec;
        let dim = spec.feature_dim() as usize;
        let mut counts = BTreeMap::new();
        let mut extracted = 0;
        for split in SPLITS {
            let indices = self.store.split_indices(split);
            let features = self.features_of(encoder, &indices, dim)?;
            let n = indices.len();
            extracted += n;
            let file = dir.join(format!("{}.safetensors", split.as_str()));
            let bytes = split_file(
                &spec.name,
                &features,
                &self.store.dense_targets(&indices),
                &indices,
                dim,
                self.store.meta.labels.len(),
            )
            .map_err(Error::Checkpoint)?;
            write(&file, &bytes)?;
            counts.insert(split.as_str(), n);
            on_split(split, n, dim);
        }
        let meta = json!({
            "model": spec.name,
            "labels": self.store.meta.labels,
            "task": self.store.meta.task,
            "dim": dim,
            "splits": counts,
            "store": self.store_root.display().to_string(),
            "weights": self.resolved.source,
            "device": format!("{device:?}"),
            "precision": self.precision,
            "normalization": {
                "name": self.normalization_name(),
                "mean": encoder.normalization.mean,
                "std": encoder.normalization.std,
            },
            "cache_key": key,
            "cxrlearn_version": env!("CARGO_PKG_VERSION"),
        });
        let text = serde_json::to_string_pretty(&meta).expect("JSON values serialise") + "\n";
        write(&dir.join("meta.json"), text.as_bytes())?;
        Ok(extracted)
    }

    /// Features `[n, dim]` of store rows `indices`, row-major. The store
    /// prefetcher copies the next batch while the model computes on this one.
    ///
    /// # Errors
    /// Non-finite features, or a libtorch failure.
    pub fn features_of(
        &self,
        encoder: &Encoder,
        indices: &[usize],
        dim: usize,
    ) -> Result<Vec<f32>, Error> {
        let [h, w] = self.store.meta.image_size.map(|d| d as usize);
        let chunks = indices
            .chunks(self.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        let (rx, handle) = crate::data::spawn_raw(self.store.clone(), chunks);
        let mut features = Vec::with_capacity(indices.len() * dim);
        // Dropping the receiver on an error stops the prefetcher.
        let result = rx.iter().try_for_each(|batch| {
            let f = encoder.features(&batch.images, batch.indices.len(), h, w);
            let v = Vec::<f32>::try_from(f.flatten(0, -1)).map_err(Error::Torch)?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::NonFiniteModelOutput);
            }
            features.extend(v);
            Ok(())
        });
        drop(rx);
        let _ = handle.join();
        result.map(|()| features)
    }
}

/// Whether `dir` holds a complete extraction with cache key `key`.
pub fn is_cached(dir: &Path, key: &Value) -> bool {
    std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|m| m["cache_key"] == *key)
        && SPLITS.iter().all(|s| split_path(dir, *s).exists())
}

fn split_path(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("{}.safetensors", split.as_str()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    crate::io::write_atomic(path, bytes).map_err(|cause| Error::Write {
        path: path.to_owned(),
        cause,
    })
}

fn raw_f32(shape: Vec<usize>, values: &[f32]) -> RawTensor {
    RawTensor {
        dtype: DType::F32,
        shape,
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The bytes of one split file: `features`, `labels` and `index`, with the
/// model's name in the safetensors metadata.
fn split_file(
    model: &str,
    features: &[f32],
    labels: &[f32],
    indices: &[usize],
    dim: usize,
    k: usize,
) -> Result<Vec<u8>, CheckpointError> {
    let n = indices.len();
    let tensors = BTreeMap::from([
        ("features".to_owned(), raw_f32(vec![n, dim], features)),
        ("labels".to_owned(), raw_f32(vec![n, k], labels)),
        (
            "index".to_owned(),
            RawTensor {
                dtype: DType::I64,
                shape: vec![n],
                data: indices
                    .iter()
                    .flat_map(|&i| (i as i64).to_le_bytes())
                    .collect(),
            },
        ),
    ]);
    let meta = HashMap::from([("model".to_owned(), model.to_owned())]);
    checkpoint::to_safetensors(&tensors, Some(meta))
}

/// One split of a features directory.
#[derive(Debug)]
pub struct SplitFeatures {
    /// `[n, dim]` features.
    pub features: Tensor,
    /// `[n, k]` targets, row-major (NaN unknown).
    pub labels: Vec<f32>,
    /// Store rows.
    pub index: Vec<i64>,
}

/// A features directory opened for reading: its `meta.json` parsed.
#[derive(Debug)]
pub struct FeaturesDir {
    /// The directory.
    pub dir: PathBuf,
    /// `meta.json`.
    pub meta: Value,
    /// The labels (`meta.json`'s `labels`).
    pub labels: Vec<String>,
}

impl FeaturesDir {
    /// Reads `dir/meta.json`.
    ///
    /// # Errors
    /// `meta.json` is missing, not JSON, or has no label list.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("meta.json");
        let bytes = std::fs::read(&path).map_err(|cause| Error::Read {
            path: path.clone(),
            cause,
        })?;
        let meta: Value = serde_json::from_slice(&bytes).map_err(|cause| Error::FeaturesMeta {
            path: path.clone(),
            cause,
        })?;
        let labels = serde_json::from_value(meta["labels"].clone())
            .map_err(|cause| Error::NoLabels { path, cause })?;
        Ok(Self {
            dir: dir.to_owned(),
            meta,
            labels,
        })
    }

    /// Whether the features are of a multi-class task (one-hot labels).
    pub fn multiclass(&self) -> bool {
        self.meta["task"] == "multiclass"
    }

    /// The store the features record they came from.
    pub fn store(&self) -> Option<&Path> {
        self.meta["store"].as_str().map(Path::new)
    }

    /// Checks the features came from the store at `store` (same
    /// `dataset.json` and `manifest.csv`).
    ///
    /// # Errors
    /// Another store, or the store's files cannot be read.
    pub fn check_store(&self, store: &Path) -> Result<(), Error> {
        if self.meta["cache_key"]["store_sha256"] != json!(store_hash(store)?) {
            return Err(Error::DifferentStore {
                dir: self.dir.clone(),
                store: store.to_owned(),
            });
        }
        Ok(())
    }

    /// Reads one split, checked against the label count.
    ///
    /// # Errors
    /// An unreadable file, a missing tensor, or shapes that do not fit.
    pub fn read_split(&self, split: Split) -> Result<SplitFeatures, Error> {
        let file = split_path(&self.dir, split);
        let ck = checkpoint::load(&file).map_err(Error::Checkpoint)?;
        let tensor = |name: &str| {
            ck.tensors.get(name).ok_or_else(|| Error::MissingTensor {
                file: file.clone(),
                name: name.to_owned(),
            })
        };
        let (f, labels, index) = (tensor("features")?, tensor("labels")?, tensor("index")?);
        let k = self.labels.len();
        let n = f.shape.first().copied().unwrap_or(0);
        if f.shape.len() != 2 || labels.shape != [n, k] || index.shape != [n] {
            return Err(Error::FeaturesShape {
                file,
                features: f.shape.clone(),
                labels: labels.shape.clone(),
                index: index.shape.clone(),
                k,
            });
        }
        Ok(SplitFeatures {
            features: f.to_tch(),
            labels: labels.to_f64().into_iter().map(|v| v as f32).collect(),
            index: index.to_f64().into_iter().map(|v| v as i64).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_file_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = split_file("m", &[1.0, 2.0, 3.0, 4.0], &[0.0, 1.0], &[5, 7], 2, 1).unwrap();
        std::fs::write(dir.path().join("val.safetensors"), bytes).unwrap();
        let fd = FeaturesDir {
            dir: dir.path().to_owned(),
            meta: json!({"labels": ["a"]}),
            labels: vec!["a".into()],
        };
        let s = fd.read_split(Split::Val).unwrap();
        assert_eq!((s.labels, s.index), (vec![0.0, 1.0], vec![5, 7]));
        assert_eq!(s.features.size(), [2, 2]);
        let two = FeaturesDir {
            labels: vec!["a".into(), "b".into()],
            ..fd
        };
        let e = two.read_split(Split::Val).unwrap_err();
        assert!(e.to_string().contains("do not fit 2 labels"), "{e}");
        let e = two.read_split(Split::Test).unwrap_err();
        assert!(e.to_string().contains("test.safetensors"), "{e}");
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = sha256_file(&dir.path().join("none")).unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
    }
}
