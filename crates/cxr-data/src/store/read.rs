//! Reading a store: shards are memory-mapped, so images are paged in on demand
//! and a reader of any size costs only its manifest in RAM.

use std::fs;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

use super::DatasetMeta;
use crate::csv_source::{csv_error, open_bounded};
use crate::error::{DataError, Result};
use crate::labels::Split;

/// One manifest row.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// Store index.
    pub index: usize,
    /// Image id.
    pub id: String,
    /// Patient (group) id.
    pub patient_id: String,
    /// Split.
    pub split: Split,
    /// Raw path.
    pub source_path: String,
    /// Label cells: `Some(1.0)`, `Some(0.0)` or `None` (multiclass: the class index).
    pub targets: Vec<Option<f32>>,
    /// Study id, when the manifest has the optional `study_id` column.
    pub study_id: Option<String>,
    /// View (PA, AP, LATERAL, ...), from the optional `view` column.
    pub view: Option<String>,
    /// Acquisition site, from the optional `site` column.
    pub site: Option<String>,
    /// Sex (`F` or `M`), from the optional `sex` column.
    pub sex: Option<String>,
    /// Age in years, from the optional `age` column.
    pub age: Option<f32>,
    /// Radiology report text, from the optional `report` column.
    pub report: Option<String>,
}

struct Shard {
    map: Mmap,
    start: usize,
    len: usize,
}

/// A read-only, memory-mapped store.
pub struct Store {
    root: PathBuf,
    /// `dataset.json`.
    pub meta: DatasetMeta,
    /// `manifest.csv`, in store order.
    pub rows: Vec<ManifestRow>,
    shards: Vec<Shard>,
    pixels: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("images", &self.rows.len())
            .finish()
    }
}

fn bad(path: &Path, reason: impl ToString) -> DataError {
    DataError::Store {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<Mmap> {
    let file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    // SAFETY: store shards are written once, renamed into place and never
    // modified afterwards; the mapping is read-only.
    unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))
}

impl Store {
    /// Targets of rows `indices` as a dense row-major `[n, k]` matrix: NaN
    /// where unknown; multi-class rows one-hot over the classes (the layout
    /// of features files and predictions).
    pub fn dense_targets(&self, indices: &[usize]) -> Vec<f32> {
        let k = self.meta.labels.len();
        let mut out = Vec::with_capacity(indices.len() * k);
        for &i in indices {
            let targets = &self.rows[i].targets;
            if self.meta.task == crate::labels::Task::Multiclass {
                let class = targets.first().copied().flatten();
                out.extend((0..k).map(|c| match class {
                    Some(v) => f32::from(u8::from(v as usize == c)),
                    None => f32::NAN,
                }));
            } else {
                out.extend(targets.iter().map(|t| t.unwrap_or(f32::NAN)));
            }
        }
        out
    }

    /// The directory the store was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks the store carries report text (the optional `report` column
    /// has a value somewhere), which the image-text methods train on.
    ///
    /// # Errors
    /// [`DataError::NoReports`] naming the store.
    pub fn require_reports(&self) -> Result<()> {
        if self.rows.iter().all(|r| r.report.is_none()) {
            return Err(DataError::NoReports {
                store: self.root.clone(),
            });
        }
        Ok(())
    }

    /// Checks the store holds pixels (it was not converted `--labels-only`),
    /// which every command that reads images needs.
    ///
    /// # Errors
    /// [`DataError::NoPixels`] naming the store.
    pub fn require_pixels(&self) -> Result<()> {
        if self.meta.labels_only {
            return Err(DataError::NoPixels {
                store: self.root.clone(),
            });
        }
        Ok(())
    }

    /// Opens the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let meta_path = root.join("dataset.json");
        let text = fs::read(&meta_path).map_err(|e| DataError::io(&meta_path, e))?;
        let meta: DatasetMeta = serde_json::from_slice(&text).map_err(|e| bad(&meta_path, e))?;
        let rows = read_manifest(&root.join("manifest.csv"), &meta)?;
        super::counts::check(&meta_path, &meta, &rows)?;
        let pixels = meta.image_size[0] as usize * meta.image_size[1] as usize;
        let mut shards = Vec::new();
        if !meta.labels_only {
            let mut total = 0;
            for s in 0..meta.shards {
                let path = root.join(format!("images-{s:05}.safetensors"));
                let map = map_file(&path)?;
                let (header, metadata) =
                    SafeTensors::read_metadata(&map).map_err(|e| bad(&path, e))?;
                let info = metadata
                    .info("images")
                    .ok_or_else(|| bad(&path, "no tensor named images"))?;
                let want = [
                    info.shape.first().copied().unwrap_or(0),
                    meta.image_size[0] as usize,
                    meta.image_size[1] as usize,
                ];
                if info.dtype != Dtype::U8 || info.shape != want {
                    return Err(bad(
                        &path,
                        format!(
                            "images is {:?} {:?}, expected U8 {want:?}",
                            info.dtype, info.shape
                        ),
                    ));
                }
                let start = 8 + header + info.data_offsets.0;
                let len = info.shape[0];
                if start + len * pixels > map.len() {
                    return Err(bad(&path, "shard is truncated"));
                }
                total += len;
                shards.push(Shard { map, start, len });
            }
            if total != rows.len() {
                return Err(bad(
                    root,
                    format!("shards hold {total} images, manifest lists {}", rows.len()),
                ));
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            meta,
            rows,
            shards,
            pixels,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True for an empty store.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The `H*W` bytes of image `index`, borrowed from the mapping; `None` in a
    /// labels-only store or out of range.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let mut i = index;
        for s in &self.shards {
            if i < s.len {
                let a = s.start + i * self.pixels;
                return Some(&s.map[a..a + self.pixels]);
            }
            i -= s.len;
        }
        None
    }

    /// Where the images lie in the shard files: `(file, byte offset, images)`
    /// per shard, in store order; each shard's images are one row-major
    /// `u8 [images, H, W]` block at that offset (what the Python package maps
    /// as numpy arrays without copying). Empty for a labels-only store.
    pub fn shard_layout(&self) -> Vec<(PathBuf, usize, usize)> {
        self.shards
            .iter()
            .enumerate()
            .map(|(s, shard)| {
                let file = self.root.join(format!("images-{s:05}.safetensors"));
                (file, shard.start, shard.len)
            })
            .collect()
    }

    /// Store indices of one split, in store order.
    pub fn split_indices(&self, split: Split) -> Vec<usize> {
        self.rows
            .iter()
            .filter(|r| r.split == split)
            .map(|r| r.index)
            .collect()
    }

    /// Batches of `(indices, images [n*H*W])` of one split; only one batch is
    /// resident at a time.
    pub fn batches(
        &self,
        split: Split,
        batch: usize,
    ) -> impl Iterator<Item = (Vec<usize>, Vec<u8>)> + '_ {
        let idx = self.split_indices(split);
        let chunks: Vec<Vec<usize>> = idx.chunks(batch.max(1)).map(<[usize]>::to_vec).collect();
        chunks.into_iter().map(move |c| {
            let mut buf = Vec::with_capacity(c.len() * self.pixels);
            for &i in &c {
                buf.extend_from_slice(self.image(i).unwrap_or(&[]));
            }
            (c, buf)
        })
    }
}

fn read_manifest(path: &Path, meta: &DatasetMeta) -> Result<Vec<ManifestRow>> {
    // Bounded like every CSV read here: a store directory is user input too.
    let mut rdr = open_bounded(path, b',')?;
    let headers = rdr
        .headers()
        .map_err(|e| csv_error(path, e, |e| bad(path, e)))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(path, format!("missing column {name}")))
    };
    let (ci, cid, cp, cs, csp) = (
        col("index")?,
        col("id")?,
        col("patient_id")?,
        col("split")?,
        col("source_path")?,
    );
    let optional = |name: &str| headers.iter().position(|h| h == name);
    // Optional columns: stores written before a column existed open unchanged.
    let (cstudy, cview, creport) = (optional("study_id"), optional("view"), optional("report"));
    let (csite, csex, cage) = (optional("site"), optional("sex"), optional("age"));
    let multiclass = meta.task == crate::labels::Task::Multiclass;
    let label_cols: Vec<usize> = if multiclass {
        vec![col("class")?]
    } else {
        meta.labels.iter().map(|l| col(l)).collect::<Result<_>>()?
    };
    // The states the format allows (docs/formats.md): anything else (a 7, a
    // -3, a 0.5) is refused rather than read as a truthy or falsy target,
    // which would silently change the ground truth of probe and evaluation.
    let n_classes = meta.labels.len();
    let allowed = if multiclass {
        format!("a class index 0..={} or empty", n_classes.saturating_sub(1))
    } else {
        "1, 0 or empty".to_string()
    };
    let in_format = |v: f32| {
        if multiclass {
            v.fract() == 0.0 && v >= 0.0 && (v as usize) < n_classes
        } else {
            v == 0.0 || v == 1.0
        }
    };
    let mut rows = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let row = n as u64 + 2;
        let rec = rec.map_err(|e| csv_error(path, e, |e| DataError::row(path, row, e)))?;
        let split = match &rec[cs] {
            "train" => Split::Train,
            "val" => Split::Val,
            "test" => Split::Test,
            other => {
                return Err(DataError::row(
                    path,
                    row,
                    format!("unknown split {other:?}"),
                ));
            }
        };
        let targets = label_cols
            .iter()
            .map(|&c| match rec[c].trim() {
                "" => Ok(None),
                v => match v.parse::<f32>() {
                    Ok(x) if in_format(x) => Ok(Some(x)),
                    _ => Err(DataError::StoreLabel {
                        path: path.to_path_buf(),
                        row,
                        column: headers[c].to_string(),
                        value: v.to_string(),
                        allowed: allowed.clone(),
                    }),
                },
            })
            .collect::<Result<_>>()?;
        let index = rec[ci]
            .parse()
            .map_err(|_| DataError::row(path, row, "bad index"))?;
        if index != rows.len() {
            return Err(DataError::row(
                path,
                row,
                format!("index {index} out of order"),
            ));
        }
        let text = |c: Option<usize>| c.map(|c| rec[c].to_string()).filter(|s| !s.is_empty());
        let age = match cage.map(|c| rec[c].trim()) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse::<f32>()
                    .map_err(|_| DataError::row(path, row, format!("bad age {v:?}")))?,
            ),
        };
        rows.push(ManifestRow {
            index,
            id: rec[cid].to_string(),
            patient_id: rec[cp].to_string(),
            split,
            source_path: rec[csp].to_string(),
            targets,
            study_id: text(cstudy),
            view: text(cview),
            site: text(csite),
            sex: text(csex),
            age,
            report: text(creport),
        });
    }
    Ok(rows)
}
