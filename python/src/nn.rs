//! Models, weights and compute from Python: the registry, the
//! non-executing checkpoint reader, key mapping onto the source
//! implementations' names, frozen features (with the CLI's cache), and the
//! batched logistic probe. Tensors cross as `torch.Tensor` without copies
//! (pyo3-tch; the extension runs in the libtorch `import torch` loaded).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cxr_data::claim::{Claim, Wait};
use cxr_data::labels::Split;
use cxr_learn::features::{FeaturesDir, Request, is_cached};
use cxr_learn::model;
use cxr_learn::probe::{Probe, ProbeConfig};
use cxr_nn::arch::pooling::Pooling;
use cxr_nn::checkpoint;
use cxr_nn::device::DeviceRequest;
use cxr_nn::precision::Precision;
use cxr_nn::{import, registry};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_tch::PyTensor;
use tch::{Kind, Tensor};

use crate::data::{NativeStore, parse_split};
use crate::errors::{CxrError, OrPy, guard, value_error};

/// Every registry entry as JSON text (`cxrlearn models --json`).
#[pyfunction]
pub fn models_json() -> PyResult<String> {
    guard(|| {
        let list: Vec<_> = registry::all().iter().map(|e| e.summary()).collect();
        serde_json::to_string(&list).py()
    })
}

fn tensor_dict<'py>(
    py: Python<'py>,
    tensors: impl IntoIterator<Item = (String, checkpoint::RawTensor)>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, raw) in tensors {
        d.set_item(name, PyTensor(raw.to_tch()))?;
    }
    Ok(d)
}

/// Every tensor of a checkpoint file (torch zip, legacy pickle, Lightning,
/// safetensors), read without executing anything.
#[pyfunction]
pub fn load_checkpoint<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    guard(|| {
        let ckpt = py.allow_threads(|| checkpoint::load(&path)).py()?;
        tensor_dict(py, ckpt.tensors)
    })
}

/// Tensors by name, and `(checkpoint key, reason)` for each key left out.
type Imported<'py> = (Bound<'py, PyDict>, Vec<(String, String)>);

/// A release's checkpoint mapped onto the registry model's names (those
/// of its source implementation: torchvision, OpenAI CLIP, Hugging Face),
/// validated by a strict load into the architecture, with batch-norm
/// counters added, as `cxrlearn import` writes them. Returns the
/// tensors and `(checkpoint name, reason)` for each one left out.
#[pyfunction]
pub fn import_weights<'py>(py: Python<'py>, model: &str, path: PathBuf) -> PyResult<Imported<'py>> {
    guard(|| {
        let entry = registry::find(model).py()?;
        let imported = py
            .allow_threads(|| -> anyhow::Result<_> {
                let ckpt = checkpoint::load(&path)?;
                let mut imported = import::import(&entry, &ckpt)?;
                // torchvision's batch norms also hold a counter; with it the
                // dict loads with strict=True.
                imported.tensors = import::with_batch_counters(&imported.tensors, &ckpt);
                Ok(imported)
            })
            .map_err(crate::errors::to_py)?;
        let ignored = imported
            .ignored
            .iter()
            .map(|(k, why)| (k.clone(), (*why).to_owned()))
            .collect();
        Ok((tensor_dict(py, imported.tensors)?, ignored))
    })
}

fn parse_pooling(pooling: Option<&str>) -> PyResult<Option<Pooling>> {
    pooling
        .map(|p| match p {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            "cls+mean" => Ok(Pooling::ClsMean),
            other => Err(value_error(format!(
                "unknown pooling {other:?} (expected 'cls', 'mean' or 'cls+mean')"
            ))),
        })
        .transpose()
}

/// Features of a cached split, the rows of `split` (or of every split, in
/// store order) as one `[n, dim]` tensor.
fn read_cached(dir: &Path, split: Option<Split>, store_len: usize) -> anyhow::Result<Tensor> {
    let features = FeaturesDir::open(dir)?;
    match split {
        Some(s) => Ok(features.read_split(s)?.features),
        None => {
            let parts = [Split::Train, Split::Val, Split::Test]
                .into_iter()
                .map(|s| features.read_split(s))
                .collect::<Result<Vec<_>, _>>()?;
            let dim = parts.first().map_or(0, |p| p.features.size()[1]);
            let mut out = Tensor::zeros([store_len as i64, dim], (Kind::Float, tch::Device::Cpu));
            for p in &parts {
                let index = Tensor::from_slice(&p.index);
                let _ = out.index_copy_(0, &index, &p.features);
            }
            Ok(out)
        }
    }
}

/// Frozen features `[n, dim]` of the rows of `split` (every row, in store
/// order, for `None`), as `cxrlearn features` computes them. With `cache`,
/// a features directory in the CLI's format: reused when it holds these
/// features, filled (every split) when it is absent or empty.
#[pyfunction]
#[pyo3(signature = (
    model, store, split=None, *, checkpoint=None, batch_size=64, device="cpu",
    normalization="model", precision="fp32", pooling=None, cache=None
))]
#[allow(clippy::too_many_arguments)]
pub fn features(
    py: Python<'_>,
    model: &str,
    store: &NativeStore,
    split: Option<&str>,
    checkpoint: Option<PathBuf>,
    batch_size: usize,
    device: &str,
    normalization: &str,
    precision: &str,
    pooling: Option<&str>,
    cache: Option<PathBuf>,
) -> PyResult<PyTensor> {
    guard(|| {
        if batch_size == 0 {
            return Err(value_error("batch_size must be at least 1"));
        }
        let clip_normalization = match normalization {
            "model" => false,
            "clip" => true,
            other => {
                return Err(value_error(format!(
                    "unknown normalization {other:?} (expected 'model' or 'clip')"
                )));
            }
        };
        let device = device.parse::<DeviceRequest>().py()?.resolve().py()?;
        let precision: Precision = precision.parse().py()?;
        precision.check(device).py()?;
        let pooling = parse_pooling(pooling)?;
        let split = split.map(parse_split).transpose()?;
        let rows = store.rows(split.map(|s| s.as_str()))?;
        let data: &Arc<_> = &store.store;
        data.require_pixels().py()?;
        let [h, _] = data.meta.image_size.map(|d| d as usize);
        let result = py.allow_threads(|| -> anyhow::Result<Tensor> {
            let resolved = model::resolve(model, checkpoint.as_deref(), h as i64, None, pooling)?;
            let request = Request {
                model,
                resolved: &resolved,
                store: data,
                store_root: data.root(),
                clip_normalization,
                precision,
                // The CLI's default arrangement (folded, channels-last).
                inference: Default::default(),
                batch_size,
            };
            let Some(dir) = cache else {
                let encoder = request.encoder(device)?;
                let dim = resolved.spec.feature_dim();
                let v = request.features_of(&encoder, &rows, dim as usize)?;
                return Ok(Tensor::from_slice(&v).view([rows.len() as i64, dim]));
            };
            let key = request.cache_key()?;
            // A cache, as for the CLI: a second extraction into the same
            // directory waits for the first and then reads its features.
            let _claim = Claim::acquire(&dir, Wait::Yes, |_| {})?;
            if !is_cached(&dir, &key) {
                let empty = match std::fs::read_dir(&dir) {
                    Ok(mut entries) => entries.next().is_none(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) => anyhow::bail!("cannot read {}: {e}", dir.display()),
                };
                if !empty {
                    anyhow::bail!(
                        "{} holds other files or features of another model, store or \
                         setting; give another cache directory or remove it",
                        dir.display()
                    );
                }
                std::fs::create_dir_all(&dir)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
                let encoder = request.encoder(device)?;
                request.extract(&encoder, &key, device, &dir, |_, _, _| {})?;
            }
            read_cached(&dir, split, data.len())
        });
        result.map(PyTensor).map_err(crate::errors::to_py)
    })
}

/// A fitted logistic probe (`cxrlearn.LogisticProbe` wraps it).
#[pyclass(module = "cxrlearn._native")]
pub struct NativeProbe {
    // A Mutex because a pyclass must be Sync and tch tensors are only Send.
    probe: std::sync::Mutex<Probe>,
}

impl NativeProbe {
    fn probe(&self) -> std::sync::MutexGuard<'_, Probe> {
        // Nothing panics while holding the lock (guard catches panics
        // outside it), but a poisoned lock still holds a fitted probe.
        self.probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[pymethods]
impl NativeProbe {
    /// Fits on `x` `[n, d]` (float32 or float64) and `y` `[n, k]` (NaN where
    /// unknown; one-hot rows for a multinomial probe).
    #[staticmethod]
    #[pyo3(signature = (x, y, labels, multinomial, c, max_iter, tol, standardize))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        py: Python<'_>,
        x: PyTensor,
        y: PyTensor,
        labels: Vec<String>,
        multinomial: bool,
        c: f64,
        max_iter: usize,
        tol: f64,
        standardize: bool,
    ) -> PyResult<Self> {
        guard(|| {
            if !matches!(x.kind(), Kind::Float | Kind::Double) || x.dim() != 2 {
                return Err(value_error(format!(
                    "X must be a 2-D float32 or float64 array, got {:?} of shape {:?}",
                    x.kind(),
                    x.size()
                )));
            }
            if y.dim() != 2 {
                return Err(value_error(format!(
                    "Y must be 2-D (samples x labels), got shape {:?}",
                    y.size()
                )));
            }
            if tol.is_nan() || tol <= 0.0 || max_iter == 0 {
                return Err(value_error("max_iter must be at least 1 and tol positive"));
            }
            let config = ProbeConfig {
                c,
                max_iter,
                tol,
                standardize,
            };
            let (x, y) = (x.0, y.0);
            let probe = py
                .allow_threads(move || Probe::fit(&x, &y, &labels, multinomial, &config, None))
                .py()?;
            Ok(Self {
                probe: std::sync::Mutex::new(probe),
            })
        })
    }

    /// Probabilities `[n, k]` (float64).
    fn predict_proba(&self, py: Python<'_>, x: PyTensor) -> PyResult<PyTensor> {
        guard(|| {
            let d = self.probe().coef.size()[1];
            if x.dim() != 2 || x.size()[1] != d || !x.is_floating_point() {
                return Err(value_error(format!(
                    "X must be a 2-D float array with {d} columns, got {:?} of shape {:?}",
                    x.kind(),
                    x.size()
                )));
            }
            let x = x.0;
            Ok(PyTensor(py.allow_threads(move || self.probe().scores(&x))))
        })
    }

    /// The fitted tensors: `coef` `[k, d]`, `intercept` `[k]`, and `mean`,
    /// `scale` `[d]` when standardising.
    fn tensors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, t) in self.probe().tensors() {
            d.set_item(name, PyTensor(t))?;
        }
        Ok(d)
    }

    /// Iterations and convergence per label.
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let probe = self.probe();
        d.set_item("iterations", probe.iterations.clone())?;
        d.set_item("converged", probe.converged.clone())?;
        d.set_item("objective", probe.objective.clone())?;
        d.set_item("max_grad", probe.max_grad.clone())?;
        Ok(d)
    }
}

/// Raised by the tests: a libtorch failure inside tch (which panics)
/// reaches Python as `CxrError`.
#[pyfunction]
pub fn _torch_error_for_test() -> PyResult<()> {
    guard(|| {
        let a = Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::zeros([4, 5], (Kind::Float, tch::Device::Cpu));
        let _ = a.matmul(&b);
        Err(CxrError::new_err(
            "unreachable: the shapes cannot be multiplied",
        ))
    })
}
