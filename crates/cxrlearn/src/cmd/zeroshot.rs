//! `cxrlearn zero-shot`: classification from text prompts with an image-text
//! model (CheXzero-style scoring, see `cxr_learn::zeroshot`), written as a
//! run directory (docs/formats.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use cxr_data::labels::{Split, Task};
use cxr_data::store::read::Store;
use cxr_learn::zeroshot::{PromptSet, ZeroShotClassifier};
use cxr_nn::backbone::Architecture;
use cxr_nn::checkpoint;
use cxr_nn::image_text::{ClipModel, ImageTextModel};
use cxr_nn::registry::{self, ModelEntry};
use cxr_nn::tch::Device;
use cxr_nn::text::TextTokenizer;
use serde_json::{Value, json};

use crate::cmd::common_args::{DeviceArgs, StoreArgs};
use crate::run::{RunDir, predictions, with_store_metadata};

/// Arguments of `cxrlearn zero-shot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An image-text registry model (`chexzero`, with --checkpoint and
    /// --tokenizer), or a CLIP safetensors file with its JSON sidecar (as
    /// the library's `ClipModel::save` writes it).
    #[arg(long)]
    pub model: String,
    /// Weights for a registry name (the whole CLIP state dict, text tower
    /// included).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Tokenizer: OpenAI's `bpe_simple_vocab_16e6.txt.gz`, a BERT
    /// `vocab.txt` or a `tokenizer.json` (default: the one the model's
    /// sidecar names).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Run directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Prompts per label (TOML: `[labels."Pleural Effusion"]` with
    /// `positive = [...]`, `negative = [...]`); labels not named keep the
    /// defaults ("{label}" against "no {label}").
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Splits to score: `test` writes predictions for val and test (the run
    /// directory's contract), `all` adds `predictions-train.csv`.
    /// `evaluation.json` is always the test split's.
    #[arg(long, default_value = "test", value_parser = ["test", "all"])]
    pub split: String,
}

/// Registry entries with a CLIP image tower are released as whole CLIP
/// models (CheXzero), text tower included.
fn is_clip(entry: &ModelEntry) -> bool {
    matches!(entry.architecture, Architecture::ClipVisual(_))
}

fn not_image_text(name: &str) -> anyhow::Error {
    let clip: Vec<&str> = registry::all()
        .into_iter()
        .filter(is_clip)
        .map(|e| e.name)
        .collect();
    anyhow!(
        "model '{name}' is not an image-text model; zero-shot needs a CLIP-layout model ({}, or a CLIP safetensors file with its JSON sidecar)",
        clip.join(", ")
    )
}

/// Loads a registry CLIP from `weights` (a released or imported checkpoint).
fn from_registry(entry: &ModelEntry, weights: &Path, device: Device) -> Result<ClipModel> {
    let ck = checkpoint::load(weights)?;
    ClipModel::from_registry(entry, &ck.tensors, device)
        .ok_or_else(|| not_image_text(entry.name))?
        .with_context(|| {
            format!(
                "{} as '{}' (zero-shot needs the whole CLIP state dict, text tower included; an imported file holds only the image tower)",
                weights.display(),
                entry.name
            )
        })
}

/// The model and the tokenizer file the arguments name.
fn resolve(args: &Args, device: Device) -> Result<(ClipModel, Option<PathBuf>, String)> {
    if let Ok(entry) = registry::find(&args.model) {
        if !is_clip(&entry) {
            return Err(not_image_text(entry.name));
        }
        let weights = args.checkpoint.clone().with_context(|| {
            format!(
                "model '{}' needs --checkpoint (its weights, {}; cxrlearn downloads nothing)",
                entry.name, entry.checkpoint_file
            )
        })?;
        let model = from_registry(&entry, &weights, device)?;
        return Ok((model, None, entry.name.to_owned()));
    }
    let file = PathBuf::from(&args.model);
    if !file.exists() {
        bail!("{}", registry::find(&args.model).unwrap_err());
    }
    if ClipModel::is_saved_clip(&file) {
        let (model, tokenizer) = ClipModel::load(&file, device).map_err(|e| anyhow!("{e}"))?;
        return Ok((model, tokenizer, "clip".to_owned()));
    }
    let sidecar = file.with_extension("json");
    let name = std::fs::read_to_string(&sidecar)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["model"].as_str().map(str::to_owned))
        .with_context(|| {
            format!(
                "{} has no sidecar {} naming its model",
                file.display(),
                sidecar.display()
            )
        })?;
    let entry = registry::find(&name).map_err(|_| not_image_text(&name))?;
    if !is_clip(&entry) {
        return Err(not_image_text(entry.name));
    }
    let model = from_registry(&entry, &file, device)?;
    Ok((model, None, entry.name.to_owned()))
}

/// Scores of `indices` `[n, k]`, row-major.
fn score_split(
    store: &Store,
    indices: &[usize],
    model: &ClipModel,
    classifier: &ZeroShotClassifier,
    batch_size: usize,
) -> Result<Vec<f32>> {
    let [h, w] = store.meta.image_size.map(|d| d as usize);
    let mut scores = Vec::with_capacity(indices.len() * store.meta.labels.len());
    for chunk in indices.chunks(batch_size) {
        let mut buf = Vec::with_capacity(chunk.len() * h * w);
        for &i in chunk {
            buf.extend_from_slice(store.image(i).context("store image missing")?);
        }
        let emb = model.encode_images(&buf, chunk.len(), h, w);
        let s = Vec::<f32>::try_from(classifier.score(&emb).flatten(0, -1))?;
        if s.iter().any(|x| !x.is_finite()) {
            bail!("the model produced non-finite scores (check the weights)");
        }
        scores.extend(s);
    }
    Ok(scores)
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let store = Store::open(&args.store.data)
        .with_context(|| format!("cannot open store {}", args.store.data.display()))?;
    store.require_pixels()?;
    let multiclass = store.meta.task == Task::Multiclass;
    // Prompts are checked before the model is loaded: a typo fails fast.
    let prompts_text = match &args.prompts {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read prompts {}", p.display()))?,
        ),
        None => None,
    };
    let prompts = PromptSet::resolve(&store.meta.labels, prompts_text.as_deref(), multiclass)
        .with_context(|| match &args.prompts {
            Some(p) => p.display().to_string(),
            None => "default prompts".into(),
        })?;

    let device = args.device.device.resolve()?;
    let (model, sidecar_tokenizer, model_name) = resolve(args, device)?;
    let tokenizer_path = args.tokenizer.clone().or(sidecar_tokenizer).with_context(|| {
        format!(
            "model '{model_name}' needs --tokenizer (for CheXzero: OpenAI's bpe_simple_vocab_16e6.txt.gz)"
        )
    })?;
    let tokenizer = TextTokenizer::open(&tokenizer_path)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("tokenizer {}", tokenizer_path.display()))?;
    if tokenizer.vocab_size() as i64 != model.config.vocab_size {
        bail!(
            "tokenizer {} has {} ids but the model's text tower has {}",
            tokenizer_path.display(),
            tokenizer.vocab_size(),
            model.config.vocab_size
        );
    }
    if !tokenizer.end_is_largest() {
        bail!(
            "tokenizer {}: its end token is not the largest id, which CLIP's text tower needs to find it",
            tokenizer_path.display()
        );
    }
    let classifier = ZeroShotClassifier::new(&model, &tokenizer, &prompts, multiclass)?;
    if classifier.truncated > 0 {
        eprintln!(
            "warning: {} prompt(s) exceed the model's {} tokens and were cut",
            classifier.truncated,
            model.context_length()
        );
    }
    let [h, w] = store.meta.image_size;
    let size = model.preprocessing().size;
    if (i64::from(h), i64::from(w)) != (size, size) && !quiet {
        eprintln!("note: store images are {h}x{w}; resizing to {size}x{size} for the model");
    }

    let run = RunDir::create(&args.out)?;
    run.write_config(
        "zero-shot",
        &json!({
            "model": args.model,
            "model_kind": model_name,
            "checkpoint": args.checkpoint.as_ref().map(|p| p.display().to_string()),
            "tokenizer": tokenizer_path.display().to_string(),
            "data": args.store.data.display().to_string(),
            "prompts": args.prompts.as_ref().map(|p| p.display().to_string()),
            "device": format!("{device:?}"),
            "batch_size": args.batch_size,
            "split": args.split,
            "task": store.meta.task,
            "scoring": if multiclass {
                "softmax over exp(logit_scale) * cos(image, class prompts)"
            } else {
                "softmax over (cos(image, positive), cos(image, negative)), no temperature (CheXzero)"
            },
            "logit_scale": model.logit_scale(),
            "truncated_prompts": classifier.truncated,
            "seed": 0,
        }),
    )?;
    run.write_file("prompts.toml", prompts.to_toml().as_bytes())?;
    let mut evaluated = None;
    let splits: &[Split] = if args.split == "all" {
        &[Split::Train, Split::Val, Split::Test]
    } else {
        &[Split::Val, Split::Test]
    };
    for &split in splits {
        let started = std::time::Instant::now();
        let indices = store.split_indices(split);
        let scores = score_split(&store, &indices, &model, &classifier, args.batch_size)?;
        let p = with_store_metadata(
            predictions(
                indices.iter().map(|&i| store.rows[i].id.clone()).collect(),
                store.meta.labels.clone(),
                &store.dense_targets(&indices),
                &scores,
            ),
            &store,
            &indices,
        );
        let name = split.as_str();
        run.write_predictions(name, &p)?;
        run.log(&json!({
            "split": name,
            "images": indices.len(),
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
        if !quiet {
            eprintln!("{name}: scored {} images", indices.len());
        }
        if split == Split::Test {
            evaluated = Some(p);
        }
    }
    let p = evaluated.expect("the test split is always scored");
    if p.ids.is_empty() {
        bail!("the test split of {} is empty", args.store.data.display());
    }
    let evaluation = run.write_evaluation(&p, 0)?;
    if !quiet {
        match evaluation.macro_avg.auc {
            Some(auc) => eprintln!(
                "test macro AUC {auc:.4} over {} label(s)",
                evaluation.macro_avg.n_labels
            ),
            None => eprintln!("test macro AUC undefined (no label has both classes)"),
        }
    }
    if !quiet {
        eprintln!("wrote {}", run.path().display());
    }
    run.commit();
    Ok(())
}
