//! `cxrlearn predict`: scores raw PNG/JPEG/DICOM files with a finetuned
//! model, preparing each image exactly as the training store prepared its
//! images (decoding, windowing, resize policy and size recorded in the run's
//! `model.json`), then as the model's input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cxr_data::augment::{Augment, rng_for};
use cxr_data::decode::decode_file_with;
use cxr_data::labels::Task;
use cxr_data::preprocess::{Preprocessing as StorePreprocessing, to_store_image};
use cxr_learn::classifier::Classifier;
use cxr_nn::checkpoint;
use cxr_nn::spec::ModelSpec;
use cxr_nn::tch::{Device, Kind};
use rayon::prelude::*;
use serde_json::Value;

use crate::cmd::common_args::{DecodeArgs, DeviceArgs, InferenceArgs};
use crate::output::{claim_file, write_atomic};

/// Arguments of `cxrlearn predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A finetune run directory, or its model.safetensors (with model.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Output CSV (id,label,target,score; target left empty; patient_id when
    /// every file is a DICOM naming its patient, sex/age/view from the headers).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Images to score (PNG, JPEG, DICOM).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    #[command(flatten)]
    pub inference: InferenceArgs,
}

/// The weights and sidecar a `--model` argument names.
fn files(model: &Path) -> (PathBuf, PathBuf) {
    if model.is_dir() {
        (model.join("model.safetensors"), model.join("model.json"))
    } else {
        (model.to_owned(), model.with_extension("json"))
    }
}

/// Refuses a file given twice (by the same path, or by two paths to one
/// file): its rows would be written twice, which `evaluate` then refuses.
fn refuse_repeats(images: &[PathBuf]) -> Result<()> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    for path in images {
        // A path that does not resolve is compared as given; reading it
        // reports it.
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if let Some(first) = seen.insert(file, path) {
            bail!(
                "{} is given twice (also as {}): give each image once",
                path.display(),
                first.display()
            );
        }
    }
    Ok(())
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    // Before any model work: an existing --out, or one another run is
    // writing, fails at once, and so does an image given twice.
    let _claim = claim_file(&args.out, args.force)?;
    refuse_repeats(&args.images)?;
    let (weights, sidecar) = files(&args.model);
    let meta: Value = serde_json::from_slice(&std::fs::read(&sidecar).with_context(|| {
        format!(
            "cannot read {} (is --model a finetune run?)",
            sidecar.display()
        )
    })?)
    .with_context(|| format!("{}", sidecar.display()))?;
    let spec = ModelSpec::from_sidecar(&meta, &sidecar).map_err(anyhow::Error::msg)?;
    // A hand-edited or corrupt size would abort the process when the first
    // batch is allocated; refuse it before anything is loaded.
    cxr_learn::model::check_input_size(
        spec.preprocessing.size,
        &format!("{}: input_size", sidecar.display()),
    )?;
    let labels: Vec<String> = serde_json::from_value(meta["labels"].clone())
        .with_context(|| format!("{} has no \"labels\" list", sidecar.display()))?;
    let task: Task = serde_json::from_value(meta["task"].clone())
        .with_context(|| format!("{} has no \"task\"", sidecar.display()))?;
    let store_pre: StorePreprocessing = serde_json::from_value(meta["store_preprocessing"].clone())
        .with_context(|| format!("{} has no \"store_preprocessing\"", sidecar.display()))?;
    let store_size = meta["store_image_size"][0]
        .as_u64()
        .with_context(|| format!("{} has no \"store_image_size\"", sidecar.display()))?
        as u32;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }

    let limits = args.decode.limits()?;

    // Decode and prepare every image first, before the weights are loaded:
    // a bad file stops the command before anything is written, and an
    // unreadable or hostile one costs no model load.
    let s = spec.preprocessing.size as usize;
    let resample = Augment::none(s, s);
    // Each file's pixels as the model takes them, and what its own header
    // says of the patient (DICOM PatientID, PatientSex, PatientAge, ViewPosition).
    type Prepared = (Vec<u8>, Option<String>, cxr_data::labels::Subgroups);
    let prepared: Vec<Prepared> = args
        .images
        .par_iter()
        .map(|path| -> Result<Prepared> {
            let mut img = decode_file_with(path, &limits)
                .with_context(|| format!("cannot read image {}", path.display()))?;
            let (patient, header) = (img.patient_id.take(), std::mem::take(&mut img.header));
            let stored = to_store_image(img, store_size, store_pre.resize);
            let mut out = vec![0u8; s * s];
            // The same resampler training and validation batches went through.
            let side = store_size as usize;
            resample.apply(&stored, side, side, &mut rng_for(0, 0), &mut out);
            Ok((out, patient, header))
        })
        .collect::<Result<_>>()?;

    let device = args.device.device.resolve()?;
    let ck = checkpoint::load(&weights)?;
    let mut model = Classifier::new(spec, labels.len() as i64, device, None, 0, false)?;
    model
        .load_weights(&ck.tensors)
        .with_context(|| format!("{} does not match its model.json", weights.display()))?;
    // The inference graph `features` runs (batch norm folded, channels-last).
    model.prepare(args.inference.inference());

    let n = args.images.len();
    let mut p = cxr_stats::Predictions {
        ids: args
            .images
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        labels: labels.clone(),
        targets: vec![vec![None; n]; labels.len()],
        scores: vec![vec![f64::NAN; n]; labels.len()],
        ..Default::default()
    };
    for (c, chunk) in prepared.chunks(args.batch_size).enumerate() {
        let pixels: Vec<u8> = chunk
            .iter()
            .flat_map(|(px, _, _)| px.iter().copied())
            .collect();
        let logits = model.predict(&model.input(&pixels, chunk.len()));
        let scores = if task == Task::Multiclass {
            logits.softmax(1, Kind::Float)
        } else {
            logits.sigmoid()
        };
        let scores = Vec::<f32>::try_from(scores.to_device(Device::Cpu).flatten(0, -1))?;
        for i in 0..chunk.len() {
            for j in 0..labels.len() {
                p.scores[j][c * args.batch_size + i] = f64::from(scores[i * labels.len() + j]);
            }
        }
    }
    // A patient column only when every file names its patient (an evaluation
    // resamples whole patients); subgroup columns whenever some file has one.
    p.patients = prepared
        .iter()
        .map(|(_, patient, _)| patient.clone())
        .collect::<Option<Vec<String>>>();
    let headers: Vec<&cxr_data::labels::Subgroups> = prepared.iter().map(|(_, _, h)| h).collect();
    for (column, values) in [
        (
            "sex",
            headers.iter().map(|h| h.sex.clone()).collect::<Vec<_>>(),
        ),
        (
            "age",
            headers
                .iter()
                .map(|h| h.age.map(|a| a.to_string()))
                .collect(),
        ),
        ("view", headers.iter().map(|h| h.view.clone()).collect()),
    ] {
        if values.iter().any(Option::is_some) {
            p.attributes.insert(column.to_owned(), values);
        }
    }
    let mut csv = Vec::new();
    p.write_to(&mut csv)?;
    write_atomic(&args.out, &csv)?;
    if !quiet {
        eprintln!(
            "scored {} images x {} labels; wrote {}",
            args.images.len(),
            labels.len(),
            args.out.display()
        );
    }
    Ok(())
}
