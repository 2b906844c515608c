//! `cxrlearn features`: frozen features of every split of a store, cached by
//! (weights, store, preprocessing). The extraction, its cache key and the
//! directory format are `cxr_learn::features`; this parses, calls, prints.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cxr_data::claim::{Claim, Wait};
use cxr_data::store::read::Store;
use cxr_learn::features::{self, Request};
use cxr_learn::model;
use cxr_nn::tch;

use crate::cmd::common_args::{
    DeviceArgs, ForceArgs, InferenceArgs, ModelArgs, PrecisionArgs, StoreArgs,
};
use crate::output::{Existing, OutputDir};

/// Arguments of `cxrlearn features`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output directory (train/val/test.safetensors and meta.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace features of another model, store or setting in --out (a
    /// directory holding these features already is reused without it).
    #[command(flatten)]
    pub force: ForceArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    #[command(flatten)]
    pub inference: InferenceArgs,
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

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let data = &args.store.data;
    let store = Arc::new(
        Store::open(data).with_context(|| format!("cannot open store {}", data.display()))?,
    );
    store.require_pixels()?;
    let [h, w] = store.meta.image_size.map(|d| d as usize);
    let resolved = model::resolve(
        &args.model.model,
        args.model.checkpoint.as_deref(),
        h as i64,
        None,
        args.model.pooling,
    )?;
    for note in &resolved.notes {
        eprintln!("note: {note}");
    }
    let spec = &resolved.spec;
    let size = spec.preprocessing.size as usize;
    if (h, w) != (size, size) && args.strict {
        bail!(
            "store images are {h}x{w} but '{}' takes {size}x{size} (--strict)",
            spec.name
        );
    }
    // Said once the model has loaded, so a model that fails to load gives
    // its one error line alone.
    let resize_warning = ((h, w) != (size, size)).then(|| {
        format!(
            "warning: store images are {h}x{w}; resizing to {size}x{size} for '{}'",
            spec.name
        )
    });

    let precision = args.precision.precision;
    let request = Request {
        model: &args.model.model,
        resolved: &resolved,
        store: &store,
        store_root: data,
        clip_normalization: args.normalization == "clip",
        precision,
        inference: args.inference.inference(),
        batch_size: args.batch_size,
    };
    let key = request.cache_key()?;
    // A cache: a second extraction into the same directory waits for the
    // first and then finds its features, instead of failing or extracting
    // them twice.
    let claim = Claim::acquire(&args.out, Wait::Yes, |pid| {
        if !quiet {
            eprintln!(
                "waiting for {} (being written by another cxrlearn process{})",
                args.out.display(),
                pid.map(|p| format!(", pid {p}")).unwrap_or_default()
            );
        }
    })?;
    if features::is_cached(&args.out, &key) {
        if !quiet {
            eprintln!(
                "features for this model and store are cached in {}",
                args.out.display()
            );
        }
        return Ok(());
    }

    let device = args.device.device.resolve()?;
    precision.check(device).map_err(anyhow::Error::msg)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let encoder = request.encoder(device)?;
    if let Some(w) = resize_warning {
        eprintln!("{w}");
    }
    let out = OutputDir::with_claim(
        claim,
        &args.out,
        Existing::from_flags(args.force.force, false),
        "",
    )?;
    let started = std::time::Instant::now();
    let extracted = request.extract(&encoder, &key, device, &args.out, |split, n, dim| {
        if !quiet {
            eprintln!("{}: {n} images -> {n} x {dim} features", split.as_str());
        }
    })?;
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
