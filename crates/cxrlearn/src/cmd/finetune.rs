//! `cxrlearn finetune`: trains a backbone and a linear head on a store, keeps
//! the epoch with the best validation macro AUC, and writes predictions and
//! the evaluation of that model. Killed runs continue with `--resume`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cxr_data::augment::Augment;
use cxr_data::labels::Split;
use cxr_data::store::read::Store;
use cxr_learn::classifier::Classifier;
use cxr_learn::finetune::{self, FinetuneConfig, Trainer};
use cxr_learn::model;
use cxr_learn::optim::Rule;
use cxr_learn::schedule::Shape;
use serde_json::json;

use crate::cmd::common_args::{DeviceArgs, ForceArgs, ModelArgs, PrecisionArgs, StoreArgs};
use crate::cmd::parallel;
use crate::output::Existing;
use crate::run::{RunDir, check_resume, log_sink, predictions, with_store_metadata};

/// Arguments of `cxrlearn finetune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Passes over the training split.
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// sgd or adamw.
    #[arg(long, default_value = "sgd", value_parser = ["sgd", "adamw"])]
    pub optimizer: String,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay (L2 for SGD, decoupled for AdamW).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// cosine (stepped every iteration) or constant.
    #[arg(long, default_value = "cosine", value_parser = ["cosine", "constant"])]
    pub schedule: String,
    /// Linear warm-up, in epochs (fractions allowed).
    #[arg(long, default_value_t = 0.0)]
    pub warmup_epochs: f64,
    /// Final learning rate of the cosine.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f64,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// finetune (random resized crop, rotation, brightness/contrast) or none.
    #[arg(long, default_value = "finetune", value_parser = ["finetune", "none"])]
    pub augment: String,
    /// Horizontal-flip probability (off by default: laterality matters).
    #[arg(long, default_value_t = 0.0)]
    pub hflip: f32,
    /// Weight the loss by inverse class frequency.
    #[arg(long)]
    pub class_balanced: bool,
    /// Stop after this many epochs without a better validation AUC.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Train only the linear head on the frozen backbone.
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Layer-wise learning-rate decay for transformer backbones (the usual
    /// ViT finetuning recipe, e.g. 0.65-0.75): block i of L trains at
    /// decay^(L-i) of --lr, the embeddings at decay^(L+1), the head at --lr.
    #[arg(long)]
    pub layer_decay: Option<f64>,
    /// Network input side (default: the model's, or the store's for scratch:).
    #[arg(long)]
    pub input_size: Option<i64>,
    /// Seed of initialisation, order, augmentation and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also checkpoint every N steps (default: at epoch ends only).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Train convolutional backbones in the default (NCHW) order instead of
    /// channels-last.
    #[arg(long)]
    pub no_channels_last: bool,
    /// Update AdamW and SGD with momentum through libtorch's fused kernels
    /// (`torch.optim.AdamW(fused=True)`'s): one pass per tensor instead of
    /// a dozen ops; the same updates within float rounding, another
    /// trajectory.
    #[arg(long)]
    pub fused_optimizer: bool,
    /// Continue the run in --out from its last checkpoint (same settings).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    #[command(flatten)]
    pub force: ForceArgs,
    #[command(flatten)]
    pub subset: crate::cmd::subsets::SubsetArgs,
}

fn training_config(args: &Args, size: usize) -> Result<FinetuneConfig> {
    let rule = match args.optimizer.as_str() {
        "adamw" => Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: args.weight_decay,
        },
        _ => Rule::Sgd {
            momentum: args.momentum,
            weight_decay: args.weight_decay,
        },
    };
    let augment = (args.augment == "finetune").then(|| Augment {
        hflip: args.hflip,
        ..Augment::finetune(size, size)
    });
    if let Some(a) = &augment {
        a.validate().map_err(anyhow::Error::msg)?;
    }
    if !(args.lr > 0.0 && args.lr.is_finite()) {
        bail!("--lr must be positive");
    }
    let config = FinetuneConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        rule,
        lr: args.lr,
        schedule: if args.schedule == "constant" {
            Shape::Constant
        } else {
            Shape::Cosine
        },
        warmup_epochs: args.warmup_epochs,
        min_lr: args.min_lr,
        grad_clip: args.grad_clip,
        augment,
        class_balanced: args.class_balanced,
        patience: args.patience,
        freeze_backbone: args.freeze_backbone,
        layer_decay: args.layer_decay,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        precision: args.precision.precision,
        channels_last: !args.no_channels_last,
        fused_optimizer: args.fused_optimizer,
    };
    // Refused here, before the run directory exists, so a rerun is not
    // blocked by an empty run.
    config.validate()?;
    Ok(config)
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let store = Arc::new(
        Store::open(&args.store.data)
            .with_context(|| format!("cannot open store {}", args.store.data.display()))?,
    );
    store.require_pixels()?;
    let store_size = i64::from(store.meta.image_size[0]);
    let resolved = model::resolve(
        &args.model.model,
        args.model.checkpoint.as_deref(),
        store_size,
        args.input_size,
        args.model.pooling,
    )?;
    for note in &resolved.notes {
        eprintln!("note: {note}");
    }
    let size = resolved.spec.preprocessing.size as usize;
    let config = training_config(args, size)?;
    let train_rows = args.subset.rows(&store, &args.store.data, args.seed)?;
    let (parallel, device) = parallel::join(args.device.device)?;
    let mut resolved_config = json!({
        "model": args.model.model,
        "architecture": resolved.spec.name,
        "weights": resolved.source,
        "input_size": size,
        "normalization": {"mean": resolved.spec.preprocessing.normalization.mean, "std": resolved.spec.preprocessing.normalization.std},
        "store": args.store.data.display().to_string(),
        "store_name": store.meta.name,
        "task": store.meta.task,
        "labels": store.meta.labels,
        "store_preprocessing": store.meta.preprocessing,
        "store_image_size": store.meta.image_size,
        "training": serde_json::to_value(&config)?,
    });
    // Only models with a choice of pooling record it, so runs of the
    // others still resume against their recorded configuration.
    if let Some(p) = resolved.spec.architecture.pooling() {
        resolved_config["pooling"] = json!(p.to_string());
    }
    let subset = args.subset.config(args.seed);
    if !subset.is_null() {
        resolved_config["train_subset"] = subset;
    }

    if args.resume {
        // Before any model work: a run that cannot continue fails at once.
        check_resume(&args.out, "finetune", &resolved_config)?;
    }

    let run = RunDir::for_rank(
        &args.out,
        parallel.is_main(),
        "finetune",
        &resolved_config,
        Existing::from_flags(args.force.force, args.resume),
    )?;
    let k = store.meta.labels.len() as i64;
    let model = Classifier::new(
        resolved.spec.clone(),
        k,
        device,
        resolved.load()?.as_ref(),
        config.seed,
        config.freeze_backbone,
    )
    .with_context(|| format!("loading {} as {}", resolved.source, resolved.spec.name))?;
    let mut sidecar = resolved.spec.sidecar();
    sidecar["labels"] = json!(store.meta.labels);
    sidecar["task"] = json!(store.meta.task);
    sidecar["store_preprocessing"] = serde_json::to_value(&store.meta.preprocessing)?;
    sidecar["store_image_size"] = json!(store.meta.image_size);
    if let Some(run) = &run {
        run.write_file(
            "model.json",
            (serde_json::to_string_pretty(&sidecar)? + "\n").as_bytes(),
        )?;
    }

    let run_ref = run.as_ref();
    let mut log = log_sink(run_ref);
    let mut trainer = Trainer {
        store: store.clone(),
        model,
        config: config.clone(),
        dir: args.out.clone(),
        log: &mut log,
        verbose: !quiet && parallel.is_main(),
        parallel,
        train_rows,
    };
    let outcome = trainer.run(args.resume);
    let outcome = match run_ref {
        Some(_) => outcome.and_then(|s| trainer.restore_best().map(|()| s)),
        None => outcome,
    };
    let model = trainer.model;
    drop(log);
    // Other ranks are done: rank 0 scores, evaluates and writes.
    let Some(run) = run else {
        return outcome.map(|_| ()).map_err(Into::into);
    };
    let summary = match outcome {
        Ok(s) => s,
        Err(e) => {
            // Keep what a later --resume (or the user) needs.
            if args.out.join("last.safetensors").exists() {
                run.commit();
            }
            return Err(e.into());
        }
    };
    let mut test_eval = None;
    for (name, split) in [("val", Split::Val), ("test", Split::Test)] {
        let idx = store.split_indices(split);
        let scores = finetune::score(&model, &store, &idx, config.batch_size);
        let ids = idx.iter().map(|&i| store.rows[i].id.clone()).collect();
        let p = with_store_metadata(
            predictions(
                ids,
                store.meta.labels.clone(),
                &store.dense_targets(&idx),
                &scores,
            ),
            &store,
            &idx,
        );
        run.write_predictions(name, &p)?;
        if name == "test" {
            test_eval = Some(run.write_evaluation(&p, config.seed)?);
        }
    }
    run.log(&json!({"event": "done", "summary": summary}))?;
    run.commit();
    if !quiet {
        let auc = test_eval
            .and_then(|e| e.macro_avg.auc)
            .map_or("n/a".into(), |a| format!("{a:.4}"));
        eprintln!(
            "kept epoch {} of {} (val macro AUC {}); test macro AUC {auc}; wrote {}",
            summary.best_epoch,
            summary.epochs_run,
            summary
                .best_val_auc
                .map_or("n/a".into(), |a| format!("{a:.4}")),
            args.out.display()
        );
    }
    Ok(())
}
