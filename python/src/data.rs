//! Stores from Python: opening and validating a store (the Rust reader, so
//! a hostile store is refused exactly as the CLI refuses it), its
//! manifest, targets and shard layout (Python maps the shards itself with
//! numpy, without copying), the network input of store images prepared by
//! the very function `cxrlearn features` uses, and `convert` / `phantom`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cxr_data::convert::{ConvertOptions, convert as convert_store};
use cxr_data::csv_source::{CsvSpec, read_generic};
use cxr_data::decode::DecodeLimits;
use cxr_data::labels::{Split, Task};
use cxr_data::phantom::{Finding, Phantom, PhantomConfig, Prevalence};
use cxr_data::preprocess::ResizePolicy;
use cxr_data::store::read::Store;
use cxr_data::{presets, splits};
use cxr_nn::registry::{CLIP, IMAGENET, Normalization, Preprocessing};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3_tch::PyTensor;

use crate::errors::{OrPy, guard, value_error};

/// `"train"`, `"val"` or `"test"`.
pub fn parse_split(split: &str) -> PyResult<Split> {
    match split {
        "train" => Ok(Split::Train),
        "val" => Ok(Split::Val),
        "test" => Ok(Split::Test),
        other => Err(value_error(format!(
            "unknown split {other:?} (expected 'train', 'val' or 'test')"
        ))),
    }
}

/// A store opened by the Rust reader (`cxrlearn.Store` wraps it).
#[pyclass(frozen, module = "cxrlearn._native")]
pub struct NativeStore {
    pub(crate) store: Arc<Store>,
}

impl NativeStore {
    /// Store rows of `split` (all rows, in store order, for `None`).
    pub(crate) fn rows(&self, split: Option<&str>) -> PyResult<Vec<usize>> {
        Ok(match split {
            Some(s) => self.store.split_indices(parse_split(s)?),
            None => (0..self.store.len()).collect(),
        })
    }
}

#[pymethods]
impl NativeStore {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        guard(|| {
            let store = py.allow_threads(|| Store::open(&path)).py()?;
            Ok(Self {
                store: Arc::new(store),
            })
        })
    }

    /// `dataset.json` as JSON text.
    fn meta_json(&self) -> PyResult<String> {
        guard(|| serde_json::to_string(&self.store.meta).py())
    }

    /// Number of images.
    fn __len__(&self) -> usize {
        self.store.len()
    }

    /// `(file, byte offset, images)` per shard.
    fn shard_layout(&self) -> Vec<(PathBuf, usize, usize)> {
        self.store.shard_layout()
    }

    /// Store rows of a split, or of the whole store.
    #[pyo3(signature = (split=None))]
    fn indices(&self, split: Option<&str>) -> PyResult<Vec<usize>> {
        self.rows(split)
    }

    /// Targets `[n, k]` as little-endian float32 bytes (NaN unknown,
    /// multi-class one-hot), the rows of `split` in store order.
    #[pyo3(signature = (split=None))]
    fn targets<'py>(&self, py: Python<'py>, split: Option<&str>) -> PyResult<Bound<'py, PyBytes>> {
        guard(|| {
            let rows = self.rows(split)?;
            let dense = self.store.dense_targets(&rows);
            let bytes: Vec<u8> = dense.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok(PyBytes::new(py, &bytes))
        })
    }

    /// The manifest's columns for the rows of `split`: `index`, `id`,
    /// `patient_id`, `split`, `source_path`, one per label (float, NaN
    /// unknown; multi-class: `class`), then the optional columns the store
    /// has.
    #[pyo3(signature = (split=None))]
    fn columns<'py>(&self, py: Python<'py>, split: Option<&str>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let rows = self.rows(split)?;
            let all = &self.store.rows;
            let out = PyDict::new(py);
            let pick = |f: &dyn Fn(usize) -> String| rows.iter().map(|&i| f(i)).collect::<Vec<_>>();
            out.set_item("index", rows.clone())?;
            out.set_item("id", pick(&|i| all[i].id.clone()))?;
            out.set_item("patient_id", pick(&|i| all[i].patient_id.clone()))?;
            out.set_item("split", pick(&|i| all[i].split.as_str().to_owned()))?;
            out.set_item("source_path", pick(&|i| all[i].source_path.clone()))?;
            let meta = &self.store.meta;
            let label_columns: Vec<String> = if meta.task == Task::Multiclass {
                vec!["class".into()]
            } else {
                meta.labels.clone()
            };
            for (c, name) in label_columns.iter().enumerate() {
                let values: Vec<f32> = rows
                    .iter()
                    .map(|&i| all[i].targets[c].unwrap_or(f32::NAN))
                    .collect();
                out.set_item(name, values)?;
            }
            type Get = fn(&cxr_data::store::read::ManifestRow) -> Option<String>;
            let optional: [(&str, Get); 5] = [
                ("study_id", |r| r.study_id.clone()),
                ("view", |r| r.view.clone()),
                ("site", |r| r.site.clone()),
                ("sex", |r| r.sex.clone()),
                ("report", |r| r.report.clone()),
            ];
            for (name, get) in optional {
                if all.iter().any(|r| get(r).is_some()) {
                    let values: Vec<Option<String>> = rows.iter().map(|&i| get(&all[i])).collect();
                    out.set_item(name, values)?;
                }
            }
            if all.iter().any(|r| r.age.is_some()) {
                let ages: Vec<f32> = rows
                    .iter()
                    .map(|&i| all[i].age.unwrap_or(f32::NAN))
                    .collect();
                out.set_item("age", ages)?;
            }
            Ok(out)
        })
    }

    /// The network input `[n, channels, size, size]` (float32) of store rows
    /// `rows`, prepared by `Preprocessing::input`, the function `cxrlearn
    /// features` prepares every batch with.
    #[pyo3(signature = (rows, size, channels, mean, std, crop_from=None, internal_resize=None))]
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &self,
        py: Python<'_>,
        rows: Vec<usize>,
        size: i64,
        channels: i64,
        mean: [f64; 3],
        std: [f64; 3],
        crop_from: Option<i64>,
        internal_resize: Option<i64>,
    ) -> PyResult<PyTensor> {
        guard(|| {
            self.store.require_pixels().py()?;
            if !(1..=3).contains(&channels) {
                return Err(value_error(format!(
                    "channels must be 1 to 3, got {channels}"
                )));
            }
            cxr_learn::model::check_input_size(size, "size").py()?;
            let [h, w] = self.store.meta.image_size.map(|d| d as usize);
            let mut bytes = Vec::with_capacity(rows.len() * h * w);
            for &r in &rows {
                let image = self.store.image(r).ok_or_else(|| {
                    value_error(format!(
                        "row {r} is out of range (the store has {} images)",
                        self.store.len()
                    ))
                })?;
                bytes.extend_from_slice(image);
            }
            let preprocessing = Preprocessing {
                size,
                channels,
                normalization: Normalization { mean, std },
                resize: "bilinear",
                internal_resize,
                crop_from,
            };
            let x = py.allow_threads(|| {
                tch::no_grad(|| preprocessing.input(&bytes, rows.len(), h, w, tch::Device::Cpu))
            });
            Ok(PyTensor(x))
        })
    }
}

/// The preprocessing of a registry model (`None`: ImageNet's at 224 px),
/// with `normalization` `"model"` (its own statistics), `"clip"` or
/// `"imagenet"`, as a dict for `torch_dataset`.
#[pyfunction]
#[pyo3(signature = (model=None, normalization="model"))]
pub fn preprocessing<'py>(
    py: Python<'py>,
    model: Option<&str>,
    normalization: &str,
) -> PyResult<Bound<'py, PyDict>> {
    guard(|| {
        let mut p = match model {
            Some(name) => cxr_nn::registry::find(name).py()?.preprocessing,
            None => Preprocessing::imagenet_224("bilinear"),
        };
        p.normalization = match normalization {
            "model" => p.normalization,
            "clip" => CLIP,
            "imagenet" => IMAGENET,
            other => {
                return Err(value_error(format!(
                    "unknown normalization {other:?} (expected 'model', 'clip' or 'imagenet')"
                )));
            }
        };
        let d = PyDict::new(py);
        d.set_item("size", p.size)?;
        d.set_item("channels", p.channels)?;
        d.set_item("mean", p.normalization.mean)?;
        d.set_item("std", p.normalization.std)?;
        d.set_item("crop_from", p.crop_from)?;
        d.set_item("internal_resize", p.internal_resize)?;
        Ok(d)
    })
}

/// `cxrlearn convert`: a preset (`preset`, `root`) or a generic CSV into a
/// store at `out`; returns the store's path.
#[pyfunction]
#[pyo3(signature = (
    out, *, preset=None, root=None, csv=None, image_root=None, path_column=None,
    label_columns=None, task=None, patient_column=None, split_column=None, force=false,
    labels_only=false, size=224, resize="squash", seed=0, splits=None, few_shot=None,
    threads=None, max_pixels=None, quiet=true
))]
#[allow(clippy::too_many_arguments)]
pub fn convert(
    py: Python<'_>,
    out: PathBuf,
    preset: Option<String>,
    root: Option<PathBuf>,
    csv: Option<PathBuf>,
    image_root: Option<PathBuf>,
    path_column: Option<String>,
    label_columns: Option<Vec<String>>,
    task: Option<String>,
    patient_column: Option<String>,
    split_column: Option<String>,
    force: bool,
    labels_only: bool,
    size: u32,
    resize: &str,
    seed: u64,
    splits: Option<String>,
    few_shot: Option<usize>,
    threads: Option<usize>,
    max_pixels: Option<u64>,
    quiet: bool,
) -> PyResult<PathBuf> {
    guard(|| {
        let mut opts = ConvertOptions::new(&out);
        opts.force = force;
        opts.size = size;
        opts.resize = resize.parse::<ResizePolicy>().py()?;
        opts.seed = seed;
        opts.fractions = splits
            .as_deref()
            .map(splits::parse_fractions)
            .transpose()
            .py()?;
        opts.labels_only = labels_only;
        opts.few_shot = few_shot;
        opts.quiet = quiet;
        if let Some(m) = max_pixels {
            opts.limits = DecodeLimits { max_pixels: m };
        }
        opts.validate().py()?;
        let summary = py.allow_threads(|| -> anyhow::Result<_> {
            let (table, root, kind) = match (preset, csv) {
                (Some(name), None) => {
                    let root = root.ok_or_else(|| anyhow::anyhow!("preset needs root"))?;
                    (presets::load(&name, &root)?, root, name)
                }
                (None, Some(csv)) => {
                    let task = match task {
                        Some(t) => t.parse::<Task>()?,
                        None => Task::Multilabel,
                    };
                    let spec = CsvSpec {
                        csv,
                        path_column: path_column.unwrap_or_default(),
                        label_columns: label_columns.unwrap_or_default(),
                        task,
                        patient_column,
                        split_column,
                    };
                    (
                        read_generic(&spec)?,
                        image_root.unwrap_or_default(),
                        "csv".to_owned(),
                    )
                }
                _ => anyhow::bail!(
                    "give either preset= and root=, or csv= (see help(cxrlearn.convert))"
                ),
            };
            let run = || convert_store(&table, &root, &kind, &opts);
            Ok(match threads {
                Some(n) => rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .build()?
                    .install(run)?,
                None => run()?,
            })
        });
        let summary = summary.map_err(crate::errors::to_py)?;
        Ok(summary.out)
    })
}

/// `cxrlearn phantom`: writes a synthetic data set in the raw layout
/// `convert(preset="phantom")` reads; returns the number of images.
#[pyfunction]
#[pyo3(signature = (
    out, *, patients=200, size=256, sites=2, first_site=0, seed=0, prevalence="nih",
    set=None, cooccurrence=1.0, max_studies=4, force=false
))]
#[allow(clippy::too_many_arguments)]
pub fn phantom(
    py: Python<'_>,
    out: PathBuf,
    patients: usize,
    size: usize,
    sites: usize,
    first_site: usize,
    seed: u64,
    prevalence: &str,
    set: Option<BTreeMap<String, f64>>,
    cooccurrence: f64,
    max_studies: u32,
    force: bool,
) -> PyResult<usize> {
    guard(|| {
        let mut p = match prevalence {
            "nih" => Prevalence::nih(),
            "balanced" => Prevalence::balanced(),
            other => {
                return Err(value_error(format!(
                    "unknown prevalence {other:?} (expected 'nih' or 'balanced')"
                )));
            }
        };
        for (name, value) in set.unwrap_or_default() {
            let f = Finding::from_name(&name).ok_or_else(|| {
                let names: Vec<_> = Finding::ALL.iter().map(|f| f.name()).collect();
                value_error(format!(
                    "set: unknown finding {name:?} (one of {})",
                    names.join(", ")
                ))
            })?;
            p.set(f, value);
        }
        let config = PhantomConfig {
            seed,
            patients,
            size,
            sites,
            first_site,
            prevalence: p,
            cooccurrence,
            max_studies,
        };
        py.allow_threads(|| -> Result<usize, cxr_data::error::DataError> {
            let phantom = Phantom::new(config)?;
            phantom.write(&out, force, &|_, _| {})?;
            Ok(phantom
                .patients
                .iter()
                .flat_map(|p| &p.studies)
                .map(|s| s.views.len())
                .sum())
        })
        .py()
    })
}
