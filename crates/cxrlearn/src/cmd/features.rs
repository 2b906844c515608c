//! `cxrlearn features`: frozen features of every split of a store, cached by
//! (weights, store, preprocessing).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{Context, Result, bail};
use cxr_data::labels::Split;
use cxr_data::store::read::Store;
use cxr_nn::checkpoint::{self, DType, RawTensor};
use cxr_nn::device::DeviceRequest;
use cxr_nn::encoder::Encoder;
use cxr_nn::precision::Precision;
use cxr_nn::registry::CLIP;
use cxr_nn::tch;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cmd::model_arg;
use crate::output::{OutputDir, write_atomic};

/// Arguments of `cxrlearn features`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry name (see `cxrlearn models`, with --checkpoint), scratch:ARCH
    /// (random weights, seed 0: the random-init baseline), or a safetensors
    /// file written by cxrlearn (import, pretrain, finetune) with its sidecar.
    #[arg(long)]
    pub model: String,
    /// Weights for a registry name: a released checkpoint in any supported
    /// container, or an imported safetensors file.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Dataset store written by `cxrlearn convert`.
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory (train/val/test.safetensors and meta.json).
    #[arg(long)]
    pub out: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Arithmetic: fp32, bf16 (autocast; CPU or GPU) or fp16 (autocast,
    /// GPU only).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// `model`: the statistics each model was pretrained with; `clip`: OpenAI
    /// CLIP statistics for every model, as the original cxrlearn did.
    #[arg(long, default_value = "model", value_parser = ["model", "clip"])]
    pub normalization: String,
    /// Fail when the store's image size differs from the model's input size
    /// (default: resize on the fly with a warning).
    #[arg(long)]
    pub strict: bool,
}

/// The hashes identifying a store's labels and images.
pub(crate) fn store_hash(store: &Path) -> Result<[String; 2]> {
    Ok([
        sha256_file(&store.join("dataset.json"))?,
        sha256_file(&store.join("manifest.csv"))?,
    ])
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

fn raw_f32(shape: Vec<usize>, values: &[f32]) -> RawTensor {
    RawTensor {
        dtype: DType::F32,
        shape,
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let store = Store::open(&args.data)
        .with_context(|| format!("cannot open store {}", args.data.display()))?;
    if store.meta.labels_only {
        bail!(
            "{} is a labels-only store: it holds no pixels",
            args.data.display()
        );
    }
    let [h, w] = store.meta.image_size.map(|d| d as usize);
    let resolved = model_arg::resolve(&args.model, args.checkpoint.as_deref(), h as i64, None)?;
    let spec = resolved.spec.clone();
    let size = spec.preprocessing.size as usize;
    if (h, w) != (size, size) {
        if args.strict {
            bail!(
                "store images are {h}x{w} but '{}' takes {size}x{size} (--strict)",
                spec.name
            );
        }
        eprintln!(
            "warning: store images are {h}x{w}; resizing to {size}x{size} for '{}'",
            spec.name
        );
    }

    let weights_key = match &resolved.file {
        Some(file) => sha256_file(file)?,
        None => format!("{} seed 0", resolved.source),
    };
    let key = json!({
        "model": args.model,
        "weights_sha256": weights_key,
        "store_sha256": store_hash(&args.data)?,
        "normalization": args.normalization,
        // Reduced precision gives other numbers: its own cache entry.
        "precision": (args.precision != Precision::Fp32).then(|| args.precision.to_string()),
    });
    let meta_path = args.out.join("meta.json");
    let splits = [Split::Train, Split::Val, Split::Test];
    if let Ok(text) = std::fs::read_to_string(&meta_path)
        && serde_json::from_str::<Value>(&text).is_ok_and(|m| m["cache_key"] == key)
        && splits.iter().all(|s| {
            args.out
                .join(format!("{}.safetensors", s.as_str()))
                .exists()
        })
    {
        if !quiet {
            eprintln!(
                "features for this model and store are cached in {}",
                args.out.display()
            );
        }
        return Ok(());
    }

    let device = args.device.resolve()?;
    args.precision.check(device).map_err(anyhow::Error::msg)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let mut encoder = match &resolved.load()? {
        Some(tensors) => Encoder::new(spec.clone(), tensors, device)
            .with_context(|| format!("{} as '{}'", resolved.source, spec.name))?,
        None => Encoder::random(spec.clone(), device, 0),
    };
    if args.normalization == "clip" {
        encoder.normalization = CLIP;
    }
    encoder.precision = args.precision;

    let out = OutputDir::create(&args.out)?;
    let started = std::time::Instant::now();
    let mut extracted = 0usize;
    let dim = spec.feature_dim() as usize;
    let mut counts = BTreeMap::new();
    for split in splits {
        let indices = store.split_indices(split);
        let mut features: Vec<f32> = Vec::with_capacity(indices.len() * dim);
        // A reader thread copies the next batch out of the memory map while
        // the model computes on the current one.
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(2);
            let store = &store;
            let chunks: Vec<&[usize]> = indices.chunks(args.batch_size).collect();
            scope.spawn(move || {
                for chunk in chunks {
                    let mut buf = Vec::with_capacity(chunk.len() * h * w);
                    for &i in chunk {
                        buf.extend_from_slice(store.image(i).expect("store opened with pixels"));
                    }
                    if tx.send((chunk.len(), buf)).is_err() {
                        break;
                    }
                }
            });
            for (n, buf) in rx {
                let f = encoder.features(&buf, n, h, w);
                let v = Vec::<f32>::try_from(f.flatten(0, -1))?;
                if v.iter().any(|x| !x.is_finite()) {
                    bail!("the model produced non-finite features (check the weights)");
                }
                features.extend(v);
            }
            Ok(())
        })?;
        let n = indices.len();
        extracted += n;
        let tensors = BTreeMap::from([
            ("features".to_owned(), raw_f32(vec![n, dim], &features)),
            (
                "labels".to_owned(),
                raw_f32(
                    vec![n, store.meta.labels.len()],
                    &store.dense_targets(&indices),
                ),
            ),
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
        let meta = HashMap::from([("model".to_owned(), spec.name.clone())]);
        out.write(
            &format!("{}.safetensors", split.as_str()),
            &checkpoint::to_safetensors(&tensors, Some(meta))?,
        )?;
        counts.insert(split.as_str(), n);
        if !quiet {
            eprintln!("{}: {n} images -> {n} x {dim} features", split.as_str());
        }
    }
    let meta = json!({
        "model": spec.name,
        "labels": store.meta.labels,
        "task": store.meta.task,
        "dim": dim,
        "splits": counts,
        "store": args.data.display().to_string(),
        "weights": resolved.source,
        "device": format!("{device:?}"),
        "precision": args.precision,
        "normalization": {"name": args.normalization, "mean": encoder.normalization.mean, "std": encoder.normalization.std},
        "cache_key": key,
        "cxrlearn_version": env!("CARGO_PKG_VERSION"),
    });
    write_atomic(
        &meta_path,
        (serde_json::to_string_pretty(&meta)? + "\n").as_bytes(),
    )?;
    out.commit();
    if !quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "extracted {extracted} images in {secs:.2} s ({:.1} images/s)",
            extracted as f64 / secs
        );
    }
    Ok(())
}
