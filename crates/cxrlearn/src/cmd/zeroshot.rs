//! `cxrlearn zero-shot`: classification from text prompts with an image-text
//! model (CheXzero-style scoring, see `cxr_learn::zeroshot`), written as a
//! run directory (docs/formats.md).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cxr_data::labels::{Split, Task};
use cxr_data::store::read::Store;
use cxr_learn::image_text;
use cxr_learn::zeroshot::{PromptSet, ZeroShotClassifier};
use cxr_nn::image_text::{ImageTextModel, Scoring};
use serde_json::json;

use crate::cmd::common_args::{DeviceArgs, ForceArgs, StoreArgs};
use crate::output::Existing;
use crate::run::{RunDir, predictions, with_store_metadata};

/// Arguments of `cxrlearn zero-shot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An image-text model: a registry entry with --checkpoint (chexzero's
    /// state dict; biomedclip's, medsiglip-448's or xraysiglip's
    /// directory), hf:DIR (a SigLIP directory), open_clip:DIR, or a CLIP
    /// safetensors file with its JSON sidecar (as the library's
    /// `ClipModel::save` writes it).
    #[arg(long)]
    pub model: String,
    /// Weights for a registry name (the whole state dict, text tower
    /// included, or the publisher's directory).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Tokenizer: OpenAI's `bpe_simple_vocab_16e6.txt.gz`, a BERT
    /// `vocab.txt` or a `tokenizer.json` (default: the one the model's
    /// directory ships or its sidecar names).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Run directory to write.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub force: ForceArgs,
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

/// Scores of `indices` `[n, k]`, row-major.
fn score_split(
    store: &Store,
    indices: &[usize],
    model: &dyn ImageTextModel,
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
    let loaded = image_text::load(&args.model, args.checkpoint.as_deref(), device)?;
    let (tokenizer, tokenizer_path) = image_text::tokenizer(&loaded, args.tokenizer.as_deref())?;
    let model = loaded.model.as_ref();
    let classifier = ZeroShotClassifier::new(model, &tokenizer, &prompts, multiclass)?;
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

    let run = RunDir::create(&args.out, Existing::from_flags(args.force.force, false))?;
    run.write_config(
        "zero-shot",
        &json!({
            "model": args.model,
            "model_kind": loaded.kind,
            "checkpoint": args.checkpoint.as_ref().map(|p| p.display().to_string()),
            "tokenizer": tokenizer_path.display().to_string(),
            "data": args.store.data.display().to_string(),
            "prompts": args.prompts.as_ref().map(|p| p.display().to_string()),
            "device": format!("{device:?}"),
            "batch_size": args.batch_size,
            "split": args.split,
            "task": store.meta.task,
            "scoring": classifier.describe(),
            "logit_scale": model.logit_scale(),
            "logit_bias": match model.scoring() {
                Scoring::Sigmoid { bias, .. } => Some(bias),
                Scoring::Softmax { .. } => None,
            },
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
        let scores = score_split(&store, &indices, model, &classifier, args.batch_size)?;
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
