//! `cxrlearn pretrain`: self-supervised pretraining on a store's training
//! images. The encoder it writes (`RUN/encoder.safetensors`) is accepted by
//! `features`, `probe` and `finetune` like any registry model.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cxr_data::augment::Augment;
use cxr_data::store::read::Store;
use cxr_learn::optim::Rule;
use cxr_learn::schedule::Shape;
use cxr_learn::ssl::clip::ClipSettings;
use cxr_learn::ssl::moco::MocoConfig;
use cxr_learn::ssl::{Positive, PretrainConfig, Pretrainer};
use cxr_nn::device::DeviceRequest;
use cxr_nn::registry::Normalization;
use cxr_nn::spec::ModelSpec;
use serde_json::{Value, json};

use crate::run::{RunDir, check_resume};

/// Arguments of `cxrlearn pretrain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// moco-cxr (two views of an image), medaug (positives from the same
    /// patient and study) or clip (CheXzero-style image-impression CLIP; the
    /// store needs a report column).
    #[arg(long, value_parser = ["moco-cxr", "medaug", "clip"])]
    pub method: String,
    /// Dataset store (its training split is used).
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Backbone architecture (resnet18, resnet50, densenet121, resnet18-w16, ...).
    #[arg(long, default_value = "resnet18")]
    pub backbone: String,
    /// Network input side (default: the store's image size).
    #[arg(long)]
    pub input_size: Option<i64>,
    /// Passes over the training images.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// AdamW learning rate (MoCo-CXR: 1e-4 from ImageNet weights, 5x that from
    /// scratch; clip: CheXzero's 1e-4, 5e-4 to 1e-3 for a tiny CLIP from scratch).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Adam weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// cosine or constant.
    #[arg(long, default_value = "cosine", value_parser = ["cosine", "constant"])]
    pub schedule: String,
    /// Warm-up steps.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u64,
    /// Queue length (a multiple of the batch size).
    #[arg(long, default_value_t = 24_576)]
    pub queue: usize,
    /// Softmax temperature.
    #[arg(long, default_value_t = 0.2)]
    pub temperature: f64,
    /// EMA momentum of the key encoder.
    #[arg(long, default_value_t = 0.999)]
    pub key_momentum: f64,
    /// Projection dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: i64,
    /// Key batch-norm groups (the single-device stand-in for shuffle BN).
    #[arg(long, default_value_t = 2)]
    pub ghost_batches: usize,
    /// MedAug's positives: same-study (the paper's best), same-patient.
    #[arg(long, value_parser = ["same-study", "same-patient", "same-image"])]
    pub positive: Option<String>,
    /// Horizontal-flip probability of the views (MoCo-CXR's "chexpert" recipe: 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub hflip: f32,
    /// Rotation range of the views in degrees.
    #[arg(long, default_value_t = 10.0)]
    pub rotation: f32,
    /// Area range of the views' random resized crop, as `LO,HI` (MoCo-CXR's
    /// recipe crops nothing from square images: `1,1`).
    #[arg(long, value_delimiter = ',', default_values_t = [1.0f32, 1.0])]
    pub crop_scale: Vec<f32>,
    /// Seed of initialisation, order, augmentation and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also checkpoint every N steps.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// clip: a tokenizer file (tokenizer.json, OpenAI's BPE merges) instead
    /// of a BPE trained on the train split's impressions.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// clip: text context in tokens (default 32 tiny, 77 ViT-B/32); longer
    /// impressions are truncated and counted in the log.
    #[arg(long)]
    pub context_length: Option<i64>,
    /// clip: size of the trained tokenizer's vocabulary (400 tiny, 8192 ViT-B/32).
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// clip: joint embedding size (64 tiny, 512 ViT-B/32).
    #[arg(long)]
    pub embed_dim: Option<i64>,
    /// clip: image transformer layers (4 tiny, 12 ViT-B/32).
    #[arg(long)]
    pub vision_layers: Option<usize>,
    /// clip: image token width, a multiple of 64 for more than one head (96 tiny, 768).
    #[arg(long)]
    pub vision_width: Option<i64>,
    /// clip: patch side (8 tiny, 32).
    #[arg(long)]
    pub patch_size: Option<i64>,
    /// clip: text transformer layers (2 tiny, 12).
    #[arg(long)]
    pub text_layers: Option<usize>,
    /// clip: text token width (128 tiny, 512).
    #[arg(long)]
    pub text_width: Option<i64>,
}

/// CheXzero's pixel statistics (101.48761 and 83.43944 on the 0-255 scale).
const CHEXZERO: Normalization = Normalization {
    mean: [101.487_61 / 255.0; 3],
    std: [83.439_44 / 255.0; 3],
};

/// The CLIP settings: the default for the input size (tiny up to 128 px,
/// ViT-B/32 above) with the flags' overrides.
fn clip_settings(args: &Args, size: i64) -> ClipSettings {
    let d = ClipSettings::for_size(size);
    ClipSettings {
        embed_dim: args.embed_dim.unwrap_or(d.embed_dim),
        vision_layers: args.vision_layers.unwrap_or(d.vision_layers),
        vision_width: args.vision_width.unwrap_or(d.vision_width),
        vision_patch_size: args.patch_size.unwrap_or(d.vision_patch_size),
        context_length: args.context_length.unwrap_or(d.context_length),
        transformer_width: args.text_width.unwrap_or(d.transformer_width),
        transformer_layers: args.text_layers.unwrap_or(d.transformer_layers),
        vocab_size: args.vocab_size.unwrap_or(d.vocab_size),
        tokenizer: args.tokenizer.clone(),
        init_logit_scale: d.init_logit_scale,
    }
}

/// Runs the subcommand.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let store = Arc::new(
        Store::open(&args.data)
            .with_context(|| format!("cannot open store {}", args.data.display()))?,
    );
    if store.meta.labels_only {
        bail!(
            "{} is a labels-only store: it holds no pixels",
            args.data.display()
        );
    }
    let size = args
        .input_size
        .unwrap_or(i64::from(store.meta.image_size[0]));
    let clip = (args.method == "clip").then(|| clip_settings(args, size));
    let spec = match &clip {
        Some(c) => {
            if size % c.vision_patch_size != 0 {
                bail!(
                    "the input size {size} is not a multiple of the patch size {}",
                    c.vision_patch_size
                );
            }
            // The text vocabulary does not shape the image tower; the exported
            // clip.json records the tokenizer's real size.
            ModelSpec::clip_visual(c.config(size, c.vocab_size as i64), CHEXZERO)
        }
        None => ModelSpec::scratch(&args.backbone, size, None).map_err(anyhow::Error::msg)?,
    };
    let positive = match (args.method.as_str(), args.positive.as_deref()) {
        ("moco-cxr", None | Some("same-image")) => Positive::SameImage,
        ("moco-cxr", Some(p)) => bail!("--positive {p} is MedAug's; use --method medaug"),
        (_, Some("same-patient")) => Positive::SamePatient,
        (_, Some("same-image")) => Positive::SameImage,
        _ => Positive::SameStudy,
    };
    // CheXzero trains without augmentation.
    let augment = if clip.is_some() {
        Augment::none(size as usize, size as usize)
    } else {
        Augment {
            hflip: args.hflip,
            rotation_deg: args.rotation,
            crop_scale: match args.crop_scale[..] {
                [lo, hi] => (lo, hi),
                _ => bail!("--crop-scale takes two values, LO,HI"),
            },
            ..Augment::none(size as usize, size as usize)
        }
    };
    augment.validate().map_err(anyhow::Error::msg)?;
    let config = PretrainConfig {
        method: args.method.clone(),
        epochs: args.epochs,
        batch_size: args.batch_size,
        rule: Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: args.weight_decay,
        },
        lr: args.lr,
        schedule: if args.schedule == "constant" {
            Shape::Constant
        } else {
            Shape::Cosine
        },
        warmup_steps: args.warmup_steps,
        augment,
        positive,
        moco: MocoConfig {
            temperature: args.temperature,
            queue: args.queue,
            momentum: args.key_momentum,
            dim: args.dim,
            ghost_batches: args.ghost_batches,
        },
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        clip,
    };
    let resolved = json!({
        "store": args.data.display().to_string(),
        "backbone": if args.method == "clip" { "clip-visual" } else { args.backbone.as_str() },
        "input_size": size,
        "split": "train",
        "training": serde_json::to_value(&config)?,
    });
    check_resume(&args.out, "pretrain", &resolved, args.resume)?;
    let device = args.device.resolve()?;
    let run = RunDir::create(&args.out)?;
    if !args.resume {
        run.write_config("pretrain", &resolved)?;
    }
    let mut log = |v: &Value| run.log(v).map_err(|e| format!("{e:#}"));
    let mut trainer = Pretrainer {
        store,
        spec,
        config,
        dir: args.out.clone(),
        device,
        log: &mut log,
        verbose: !quiet,
    };
    let outcome = trainer.run(args.resume);
    drop(trainer);
    if let Err(e) = outcome {
        if args.out.join("last.safetensors").exists() {
            run.commit();
        }
        return Err(e.into());
    }
    run.log(&json!({"event": "done"}))?;
    run.commit();
    if !quiet {
        eprintln!("wrote {}/encoder.safetensors", args.out.display());
    }
    Ok(())
}
