//! `cxrlearn pretrain`: self-supervised pretraining on a store's training
//! images. The encoder it writes (`RUN/encoder.safetensors`) is accepted by
//! `features`, `probe` and `finetune` like any registry model.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cxr_data::augment::Augment;
use cxr_data::store::read::Store;
use cxr_learn::optim::{GradClip, Lookahead, Rule};
use cxr_learn::ssl::moco::MocoConfig;
use cxr_learn::ssl::{Positive, PretrainConfig, Pretrainer};
use cxr_nn::device::DeviceRequest;
use cxr_nn::precision::Precision;
use cxr_nn::spec::ModelSpec;
use serde_json::json;

use crate::cmd::parallel;
use methods::{
    CHEXZERO, HALF, clip_settings, convirt_augment, convirt_settings, gloria_augment,
    gloria_settings, refers_settings, s2mts2_settings, schedule_and_validation,
};

mod methods;
use crate::run::{RunDir, check_resume, log_sink};

/// Arguments of `cxrlearn pretrain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// moco-cxr (two views of an image), medaug (positives from the same
    /// patient and study), s2mts2 (stage A: MoCo with joint contrastive
    /// learning over --keys views of each image), clip (CheXzero-style
    /// image-impression CLIP; the store needs a report column) or refers
    /// (three views of a study + report generation + image-report InfoNCE;
    /// needs reports, study ids and a ViT backbone such as vit-tiny),
    /// convirt (image + one findings/impression sentence, BERT, asymmetric
    /// bidirectional InfoNCE) or gloria (image regions + impression words,
    /// local attention and global InfoNCE; a ResNet backbone).
    #[arg(long, value_parser = ["moco-cxr", "medaug", "s2mts2", "clip", "refers", "convirt", "gloria"])]
    pub method: String,
    /// Dataset store (its training split is used).
    #[arg(long)]
    pub data: PathBuf,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Backbone architecture (resnet18, resnet50, densenet121, resnet18-w16, ...;
    /// S2MTS2's is densenet121-leaky, its phantom-scale one densenet-tiny).
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
    /// Weight decay (decoupled for AdamW, L2 for SGD).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// adamw, or sgd (with --momentum; REFERS' code: SGD 0.9 in Lookahead).
    #[arg(long, default_value = "adamw", value_parser = ["adamw", "sgd"])]
    pub optimizer: String,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// No weight decay on normalisation parameters and biases (the reference
    /// codes' `.*(norm.*|bias)` rule).
    #[arg(long)]
    pub no_decay_norm_bias: bool,
    /// Wrap the optimiser in Lookahead with K inner steps and slow step
    /// ALPHA, e.g. `5,0.5` (REFERS).
    #[arg(long, value_delimiter = ',', num_args = 1, value_name = "K,ALPHA")]
    pub lookahead: Option<Vec<f64>>,
    /// cosine (warm-up, then half a cosine to 0: also REFERS' cos² decay,
    /// which is the same curve), constant, or plateau (halve the rate when
    /// the validation loss stalls, PyTorch's ReduceLROnPlateau; holds out
    /// --val-fraction). Default: plateau for convirt and gloria (their
    /// papers' schedule), cosine for the rest.
    #[arg(long, value_parser = ["cosine", "constant", "plateau"])]
    pub schedule: Option<String>,
    /// Hold out this share of the training rows (whole patients) to
    /// validate on: the best validation loss picks the exported encoder,
    /// and steers --schedule plateau and --early-stop (default 0.05 when
    /// either asks for validation; none otherwise).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Validate every N steps (default: convirt 5000 as its code, others at
    /// each epoch's end); the run's last step is always validated.
    #[arg(long)]
    pub val_every: Option<u64>,
    /// Plateau schedule: factor of each cut (0.5).
    #[arg(long)]
    pub plateau_factor: Option<f64>,
    /// Plateau schedule: evaluations without improvement before a cut (5).
    #[arg(long)]
    pub plateau_patience: Option<usize>,
    /// Stop after N evaluations without a better validation loss (gloria
    /// with the plateau schedule: 10, as its code).
    #[arg(long)]
    pub early_stop: Option<usize>,
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
    /// refers: one flip of all three views with "left"/"right" swapped in
    /// the caption, decided per sample by the objective.
    #[arg(long, default_value_t = 0.5)]
    pub hflip: f32,
    /// Rotation range of the views in degrees.
    #[arg(long, default_value_t = 10.0)]
    pub rotation: f32,
    /// Area range of the views' random resized crop, as `LO,HI` (MoCo-CXR's
    /// recipe crops nothing from square images: `1,1`).
    #[arg(long, value_delimiter = ',', default_values_t = [1.0f32, 1.0])]
    pub crop_scale: Vec<f32>,
    /// Brightness jitter of the views: a factor in `[1 - b, 1 + b]` (MoCo-CXR
    /// and MedAug use none; S2MTS2's and SimCLR-style recipes 0.4).
    #[arg(long, default_value_t = 0.0)]
    pub brightness: f32,
    /// Contrast jitter of the views, like `--brightness`.
    #[arg(long, default_value_t = 0.0)]
    pub contrast: f32,
    /// Probability of a gaussian blur (sigma 0.1-2 px) on each view.
    #[arg(long, default_value_t = 0.0)]
    pub blur_p: f32,
    /// Seed of initialisation, order, augmentation and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also checkpoint every N steps.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// Peak learning rate of the text encoder's BERT (convirt, gloria,
    /// refers; same schedule); default --lr. REFERS' code trains its BERT at
    /// a tenth of the rest.
    #[arg(long)]
    pub text_lr: Option<f64>,
    /// Scale gradients to this global L2 norm at most before each update
    /// (the reference codes: ConVIRT 5, REFERS 10); the pre-clip norm is
    /// logged per step as `grad_norm`.
    #[arg(long, conflicts_with = "grad_clip_value")]
    pub grad_clip_norm: Option<f64>,
    /// Clamp every gradient element into [-V, V] before each update (GLoRIA's
    /// code: 0.25).
    #[arg(long)]
    pub grad_clip_value: Option<f64>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Arithmetic: fp32, bf16 (autocast; CPU or GPU) or fp16 (autocast,
    /// GPU only).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// s2mts2: key views per query, M (the reference's 2).
    #[arg(long)]
    pub keys: Option<usize>,
    /// s2mts2: JCL weight at the last epoch, ramped linearly from
    /// lambda/epochs (the reference's 2).
    #[arg(long)]
    pub jcl_lambda: Option<f64>,
    /// s2mts2: the reference code's projection head, its `classifier` layer
    /// applied twice (a quirk of the original; default MoCo v2's head).
    #[arg(long)]
    pub reference_head: bool,
    /// clip: a tokenizer file (tokenizer.json, OpenAI's BPE merges) instead
    /// of a BPE trained on the train split's impressions.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// clip: text context in tokens (default 32 tiny, 77 ViT-B/32); longer
    /// impressions are truncated and counted in the log. refers: the
    /// caption length of both tokenizers (48 tiny, 100 for wider ViTs).
    #[arg(long)]
    pub context_length: Option<i64>,
    /// clip: size of the trained tokenizer's vocabulary (400 tiny, 8192 ViT-B/32).
    /// refers: size of the caption decoder's trained BPE (1000 tiny, 10k).
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// clip: joint embedding size (64 tiny, 512 ViT-B/32). convirt: output
    /// of both projection heads (64 tiny, 512).
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
    /// refers: weight λ of the image->report term (1 - λ for report->image).
    #[arg(long)]
    pub refers_lambda: Option<f64>,
    /// refers: temperature of the cosine similarities (0.1).
    #[arg(long)]
    pub refers_temperature: Option<f64>,
    /// refers: the reference code's stop-gradient on the report->image term
    /// (its value counts, its gradient does not); default: both terms train.
    #[arg(long)]
    pub refers_detach_t2i: bool,
    /// refers: dropout of the ViT while pretraining (0.1, REFERS'). From
    /// random weights at small scale 0 lets the contrastive term leave
    /// chance; the scripts' phantom recipes use it.
    #[arg(long)]
    pub vit_dropout: Option<f64>,
    /// convirt, gloria: BERT attention heads (2 tiny, 12); --text-layers,
    /// --text-width, --context-length, --vocab-size and --tokenizer (a
    /// tokenizer.json or BERT vocab.txt) shape the rest of the text tower.
    #[arg(long)]
    pub text_heads: Option<i64>,
    /// convirt, gloria: BERT feed-forward width (512 tiny, 3072).
    #[arg(long)]
    pub text_ffn: Option<i64>,
    /// convirt, gloria: freeze BERT's embeddings and its first N layers
    /// (ConVIRT's paper: 6 of 12; default: nothing frozen below 224 px).
    #[arg(long)]
    pub freeze_text_layers: Option<usize>,
    /// convirt: sentence pooling of the text tower (mean, the code default);
    /// refers: how the report vector is read off BERT (pooler, the paper's).
    #[arg(long, value_parser = ["mean", "cls", "pooler", "max"])]
    pub text_pooling: Option<String>,
    /// convirt: weight λ of the image->text term (1 - λ for text->image; paper 0.75).
    #[arg(long)]
    pub convirt_lambda: Option<f64>,
    /// convirt: temperature τ of both directions (0.1).
    #[arg(long)]
    pub convirt_temperature: Option<f64>,
    /// convirt: the reference code's default without --biloss: the
    /// image->text term alone.
    #[arg(long)]
    pub image_to_text_only: bool,
    /// convirt: leave pairs with identical sentences out of each other's
    /// negatives (off in the paper; the duplicate rate is logged either way).
    #[arg(long)]
    pub mask_duplicate_texts: bool,
    /// gloria: γ1,γ2,γ3 (attention, word aggregation, logit scale; 4,5,10).
    #[arg(long, value_delimiter = ',')]
    pub gloria_gammas: Option<Vec<f64>>,
    /// gloria: the paper's single softmax over regions instead of the
    /// code's softmax over words then over regions.
    #[arg(long)]
    pub single_softmax: bool,
    /// gloria: side the images are resized to inside the model during
    /// pretraining (the reference: 299 from 224; default: 299 above 128 px,
    /// none below).
    #[arg(long)]
    pub gloria_upsample: Option<i64>,
    /// gloria: lesion masks for the attention check at the end of the run:
    /// a CSV with `path` (an image's source path, as in the store) and
    /// `lesion_mask` (a PNG relative to the CSV, empty for none), such as a
    /// phantom's `ground_truth.csv`. For each lesion word ("opacity",
    /// "consolidation", "nodule", "mass", ...) of the validation split's
    /// impressions, is the region it attends to most on its lesion? Logged
    /// and written to `localisation.json` with the chance rate.
    #[arg(long, value_name = "CSV")]
    pub lesion_masks: Option<PathBuf>,
    /// Adam β1 (default 0.9; gloria 0.5, as its config).
    #[arg(long)]
    pub adam_beta1: Option<f64>,
    /// convirt, gloria: train on the images as stored instead of the
    /// method's augmentation (tiny from-scratch runs learn sooner).
    #[arg(long)]
    pub no_augment: bool,
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
        None if args.method == "gloria" => {
            ModelSpec::scratch(&args.backbone, size, Some(HALF)).map_err(anyhow::Error::msg)?
        }
        None => ModelSpec::scratch(&args.backbone, size, None).map_err(anyhow::Error::msg)?,
    };
    let positive = match (args.method.as_str(), args.positive.as_deref()) {
        ("moco-cxr", None | Some("same-image")) => Positive::SameImage,
        ("moco-cxr", Some(p)) => bail!("--positive {p} is MedAug's; use --method medaug"),
        ("s2mts2", None | Some("same-image")) => Positive::SameImage,
        ("refers", None | Some("same-study")) => Positive::SameStudy,
        ("refers", Some(p)) => bail!(
            "REFERS draws its three views from the query's study; --positive {p} does not apply"
        ),
        ("s2mts2", Some(p)) => {
            bail!("S2MTS2's keys are views of the query image; --positive {p} is MedAug's")
        }
        (_, Some("same-patient")) => Positive::SamePatient,
        (_, Some("same-image")) => Positive::SameImage,
        _ => Positive::SameStudy,
    };
    // CheXzero trains without augmentation.
    let unaugmented = args.no_augment && ["convirt", "gloria"].contains(&args.method.as_str());
    let augment = if clip.is_some() || unaugmented {
        Augment::none(size as usize, size as usize)
    } else if args.method == "convirt" {
        convirt_augment(size as usize)
    } else if args.method == "gloria" {
        gloria_augment(size as usize)
    } else {
        Augment {
            // REFERS flips in the objective, where the caption can follow.
            hflip: if args.method == "refers" {
                0.0
            } else {
                args.hflip
            },
            rotation_deg: args.rotation,
            crop_scale: match args.crop_scale[..] {
                [lo, hi] => (lo, hi),
                _ => bail!("--crop-scale takes two values, LO,HI"),
            },
            brightness: args.brightness,
            contrast: args.contrast,
            blur_p: args.blur_p,
            ..Augment::none(size as usize, size as usize)
        }
    };
    augment.validate().map_err(anyhow::Error::msg)?;
    let (schedule, validation) = schedule_and_validation(args)?;
    let config = PretrainConfig {
        method: args.method.clone(),
        epochs: args.epochs,
        batch_size: args.batch_size,
        rule: if args.optimizer == "sgd" {
            if args.adam_beta1.is_some() {
                bail!("--adam-beta1 goes with --optimizer adamw");
            }
            Rule::Sgd {
                momentum: args.momentum,
                weight_decay: args.weight_decay,
            }
        } else {
            Rule::AdamW {
                beta1: args
                    .adam_beta1
                    .unwrap_or(if args.method == "gloria" { 0.5 } else { 0.9 }),
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: args.weight_decay,
            }
        },
        no_decay_norm_bias: args.no_decay_norm_bias,
        lookahead: match args.lookahead.as_deref() {
            None => None,
            // alpha is checked with the other settings when training starts.
            Some(&[k, alpha]) if k >= 1.0 && k.fract() == 0.0 => {
                Some(Lookahead { k: k as u64, alpha })
            }
            Some(v) => bail!("--lookahead takes K,ALPHA with K a whole number >= 1, got {v:?}"),
        },
        lr: args.lr,
        schedule,
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
        precision: args.precision,
        text_lr: args.text_lr,
        grad_clip: match (args.grad_clip_norm, args.grad_clip_value) {
            (Some(n), _) => Some(GradClip::Norm(n)),
            (None, Some(v)) => Some(GradClip::Value(v)),
            (None, None) => None,
        },
        clip,
        s2mts2: s2mts2_settings(args)?,
        refers: refers_settings(args, &spec)?,
        convirt: convirt_settings(args, size)?,
        gloria: gloria_settings(args, size)?,
        validation,
    };
    let resolved = json!({
        "store": args.data.display().to_string(),
        "backbone": if args.method == "clip" { "clip-visual" } else { args.backbone.as_str() },
        "input_size": size,
        "split": "train",
        "training": serde_json::to_value(&config)?,
    });
    check_resume(&args.out, "pretrain", &resolved, args.resume)?;
    let (parallel, device) = parallel::join(args.device)?;
    let run = RunDir::for_rank(
        &args.out,
        parallel.is_main(),
        "pretrain",
        &resolved,
        args.resume,
    )?;
    let mut log = log_sink(run.as_ref());
    let mut trainer = Pretrainer {
        store,
        spec,
        config,
        dir: args.out.clone(),
        device,
        log: &mut log,
        verbose: !quiet && parallel.is_main(),
        parallel,
    };
    let outcome = trainer.run(args.resume);
    drop(trainer);
    drop(log);
    let Some(run) = run else {
        return outcome.map_err(Into::into);
    };
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
