//! `cxrlearn probe`: L2 logistic regression on frozen features (all labels
//! solved together by L-BFGS), C fixed or chosen on the validation split,
//! predictions and evaluation written as a run directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cxr_data::labels::Split;
use cxr_data::store::read::Store;
use cxr_learn::features::{FeaturesDir, SplitFeatures};
use cxr_learn::metrics::macro_auc;
use cxr_learn::probe::{GridPoint, Probe, ProbeConfig, select_c};
use cxr_nn::checkpoint::{self, RawTensor};
use cxr_nn::tch::{Device, Kind, Tensor};
use serde_json::json;

use crate::cmd::common_args::{
    DeviceArgs, ForceArgs, InferenceArgs, ModelArgs, PrecisionArgs, StoreArgs,
};

use crate::output::Existing;
use crate::run::{RunDir, predictions, with_store_metadata};

/// Arguments of `cxrlearn probe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Features directory written by `cxrlearn features`.
    #[arg(long, conflicts_with = "model", required_unless_present = "model")]
    pub features: Option<PathBuf>,
    /// Extract features with this model first (any form `features --model`
    /// takes: registry name, hf:DIR, open_clip:DIR, scratch:ARCH, a
    /// safetensors file with its sidecar); needs --data.
    #[arg(long, requires = "data")]
    pub model: Option<String>,
    /// Weights for a registry --model.
    #[arg(long, requires = "model")]
    pub checkpoint: Option<PathBuf>,
    /// Token pooling of a ViT-style --model (cls, mean, cls+mean).
    #[arg(long, requires = "model")]
    pub pooling: Option<cxr_nn::arch::pooling::Pooling>,
    /// Dataset store: the one to extract from (with --model), or the one the
    /// --features came from (checked, and its image ids used).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub force: ForceArgs,
    /// Inverse regularisation strength (the original cxrlearn's 0.0327).
    #[arg(long, default_value_t = 0.0327, conflicts_with = "c_grid")]
    pub c: f64,
    /// Comma-separated C values; the best validation macro AUC wins.
    #[arg(long, value_delimiter = ',')]
    pub c_grid: Option<Vec<f64>>,
    /// L-BFGS iterations at most.
    #[arg(long, default_value_t = 500)]
    pub max_iter: usize,
    /// Gradient tolerance (scikit-learn's tol).
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
    /// Standardise features (training mean and standard deviation) first.
    #[arg(long)]
    pub standardize: bool,
    /// Precision of the two matrix products per L-BFGS round: f32 (the
    /// features' own precision, half the memory traffic) or f64 (exact
    /// products, for tolerances much below 1e-7). The solver's state is f64
    /// either way.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f64"])]
    pub precision: String,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Seed of the bootstrap intervals in evaluation.json (and, by default,
    /// of the --train-fraction subset).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub subset: crate::cmd::subsets::SubsetArgs,
}

/// The rows of `split` whose store index is in `rows` (a training subset).
fn subset_of(split: SplitFeatures, rows: &[usize], k: usize) -> Result<SplitFeatures> {
    let keep: std::collections::HashSet<i64> = rows.iter().map(|&r| r as i64).collect();
    let positions: Vec<i64> = (0..split.index.len() as i64)
        .filter(|&p| keep.contains(&split.index[p as usize]))
        .collect();
    if positions.len() != rows.len() {
        bail!(
            "the training subset lists {} images but the features hold {} of them \
             (features of another store?)",
            rows.len(),
            positions.len()
        );
    }
    let labels = positions
        .iter()
        .flat_map(|&p| {
            split.labels[p as usize * k..(p as usize + 1) * k]
                .iter()
                .copied()
        })
        .collect();
    Ok(SplitFeatures {
        features: split
            .features
            .index_select(0, &Tensor::from_slice(&positions)),
        index: positions.iter().map(|&p| split.index[p as usize]).collect(),
        labels,
    })
}

/// The store the features were extracted from (`--data`, else the path
/// the features record), when it can be opened.
fn open_store(features: &FeaturesDir, data: Option<&Path>) -> Option<Store> {
    data.or_else(|| features.store())
        .and_then(|s| Store::open(s).ok())
}

/// Predictions of the store rows `index`: their ids (row numbers for rows
/// the store lacks, or all of them without a readable store), and their
/// patients and subgroup columns when every row is in the store.
fn split_predictions(
    store: Option<&Store>,
    index: &[i64],
    labels: Vec<String>,
    targets: &[f32],
    scores: &[f32],
) -> cxr_stats::Predictions {
    let Some(store) = store else {
        let ids = index.iter().map(|i| format!("row-{i}")).collect();
        return predictions(ids, labels, targets, scores);
    };
    let row = |i: i64| usize::try_from(i).ok().filter(|&i| i < store.rows.len());
    let ids = index
        .iter()
        .map(|&i| row(i).map_or_else(|| format!("row-{i}"), |r| store.rows[r].id.clone()))
        .collect();
    let p = predictions(ids, labels, targets, scores);
    match index
        .iter()
        .map(|&i| row(i))
        .collect::<Option<Vec<usize>>>()
    {
        Some(rows) => with_store_metadata(p, store, &rows),
        None => p,
    }
}

fn extract(args: &Args, quiet: bool) -> Result<PathBuf> {
    let (Some(model), Some(data)) = (&args.model, &args.data) else {
        bail!("give --features DIR, or --model and --data to extract them first");
    };
    let dir = args.out.join("features");
    let fargs = crate::cmd::features::Args {
        model: ModelArgs {
            model: model.clone(),
            checkpoint: args.checkpoint.clone(),
            pooling: args.pooling,
        },
        store: StoreArgs { data: data.clone() },
        out: dir.clone(),
        device: args.device,
        batch_size: 64,
        normalization: "model".into(),
        strict: false,
        // Inside this run's own (claimed, empty) directory.
        force: ForceArgs { force: false },
        // Probes compare models: features in full precision.
        precision: PrecisionArgs {
            precision: cxr_nn::precision::Precision::Fp32,
        },
        inference: InferenceArgs {
            no_fuse: false,
            no_channels_last: false,
        },
    };
    crate::cmd::features::run(&fargs, quiet)?;
    Ok(dir)
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1))?)
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let run = RunDir::create(&args.out, Existing::from_flags(args.force.force, false))?;
    let dir = match &args.features {
        Some(d) => d.clone(),
        None => extract(args, quiet)?,
    };
    let features = FeaturesDir::open(&dir)?;
    if let (Some(_), Some(data)) = (&args.features, &args.data) {
        features.check_store(data)?;
    }
    let meta = &features.meta;
    let labels = features.labels.clone();
    let multinomial = features.multiclass();
    let k = labels.len();
    let device = args.device.device.resolve()?;
    let [train, val, test] =
        [Split::Train, Split::Val, Split::Test].map(|s| features.read_split(s));
    let (train, val, test) = (train?, val?, test?);
    let store = open_store(&features, args.data.as_deref());
    let train = match &store {
        _ if args.subset.train_fraction == 1.0 => train,
        Some(store) => {
            let root = args
                .data
                .clone()
                .or_else(|| features.store().map(Path::to_path_buf))
                .context("the features record no store")?;
            let rows = args
                .subset
                .rows(store, &root, args.seed)?
                .context("a subset below the whole split")?;
            subset_of(train, &rows, k)?
        }
        None => bail!("--train-fraction needs the features' store (give --data STORE)"),
    };
    let to_dev = |t: &Tensor| t.to_device(device).to_kind(Kind::Double);
    // The probe runs its products in the precision of the training features.
    let x_train = if args.precision == "f64" {
        to_dev(&train.features)
    } else {
        train.features.to_device(device).to_kind(Kind::Float)
    };
    let y_train = Tensor::from_slice(&train.labels).view([-1, k as i64]);
    let (x_val, x_test) = (to_dev(&val.features), to_dev(&test.features));
    let base = ProbeConfig {
        c: args.c,
        max_iter: args.max_iter,
        tol: args.tol,
        standardize: args.standardize,
    };
    let started = std::time::Instant::now();
    let (probe, grid): (Probe, Vec<GridPoint>) = match &args.c_grid {
        Some(grid) => {
            if val.index.is_empty() {
                bail!("--c-grid selects C on the validation split, which is empty");
            }
            select_c(
                &x_train,
                &y_train,
                &x_val,
                &val.labels,
                &labels,
                multinomial,
                &base,
                grid,
            )?
        }
        None => {
            let p = Probe::fit(&x_train, &y_train, &labels, multinomial, &base, None)?;
            (p, Vec::new())
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    for point in &grid {
        run.log(&json!({"event": "c_grid", "c": point.c, "val_macro_auc": point.val_macro_auc, "iterations": point.iterations}))?;
    }
    run.log(&json!({
        "event": "fit", "c": probe.config.c, "objective": probe.objective, "max_grad": probe.max_grad,
        "iterations": probe.iterations, "converged": probe.converged, "seconds": seconds,
    }))?;
    for (label, ok) in labels.iter().zip(&probe.converged) {
        if !ok {
            eprintln!(
                "warning: label '{label}' did not reach tol {} within {} iterations",
                args.tol, args.max_iter
            );
        }
    }

    if store.is_none() {
        // Said once, after the fit (a failing fit reports only its error).
        eprintln!(
            "warning: the features' store is not readable; predictions use row numbers as ids \
             and carry no patient ids (evaluate will resample images)"
        );
    }
    let mut split_auc = BTreeMap::new();
    for (name, split, x) in [("val", &val, &x_val), ("test", &test, &x_test)] {
        let scores = flat(&probe.scores(x))?;
        split_auc.insert(name, macro_auc(&split.labels, &scores, k).0);
        let p = split_predictions(
            store.as_ref(),
            &split.index,
            labels.clone(),
            &split.labels,
            &scores,
        );
        run.write_predictions(name, &p)?;
        if name == "test" {
            run.write_evaluation(&p, args.seed)?;
        }
    }
    let tensors: BTreeMap<String, RawTensor> = probe
        .tensors()
        .iter()
        .map(|(k, t)| {
            Ok((
                k.clone(),
                RawTensor::from_tch(k, &t.to_device(Device::Cpu))?,
            ))
        })
        .collect::<Result<_>>()?;
    let head_meta = std::collections::HashMap::from([
        ("labels".to_owned(), serde_json::to_string(&labels)?),
        (
            "task".to_owned(),
            meta["task"].as_str().unwrap_or("").to_owned(),
        ),
        (
            "model".to_owned(),
            meta["model"].as_str().unwrap_or("").to_owned(),
        ),
    ]);
    run.write_file(
        "head.safetensors",
        &checkpoint::to_safetensors(&tensors, Some(head_meta))?,
    )?;
    run.write_config(
        "probe",
        &json!({
            "features": dir.display().to_string(),
            "model": meta["model"],
            "store": meta["store"],
            "labels": labels,
            "task": meta["task"],
            "c": probe.config.c,
            "c_grid": args.c_grid,
            "max_iter": args.max_iter,
            "tol": args.tol,
            "standardize": args.standardize,
            "solver": "batched L-BFGS (memory 10, strong Wolfe), scikit-learn's objective",
            "device": format!("{device:?}"),
            "seed": args.seed,
            "train_subset": args.subset.config(args.seed),
            "train_rows": train.index.len(),
            "val_rows": val.index.len(),
            "test_rows": test.index.len(),
        }),
    )?;
    run.commit();
    if !quiet {
        let fmt = |v: Option<&Option<f64>>| {
            v.copied()
                .flatten()
                .map_or("n/a".into(), |a| format!("{a:.4}"))
        };
        eprintln!(
            "probe C={} fitted in {seconds:.2} s; macro AUC val {} test {}; wrote {}",
            probe.config.c,
            fmt(split_auc.get("val")),
            fmt(split_auc.get("test")),
            args.out.display()
        );
    }
    Ok(())
}
