//! The flags of `cxrlearn pretrain`, as typed values: those every method
//! reads ([`Flags`]), the groups several methods share ([`MocoFlags`],
//! [`ViewFlags`], [`TextFlags`]), and, flattened in, each method's own
//! group from its file. Which method may be given which flag is decided by
//! the descriptors ([`super::Method::reads`] and its own group), not here.

use std::path::PathBuf;

use cxr_nn::precision::Precision;

use super::clip::ClipFlags;
use super::convirt::ConvirtFlags;
use super::gloria::GloriaFlags;
use super::refers::RefersFlags;
use super::s2mts2::S2mts2Flags;

/// Every pretraining flag but the run's place (`--data`, `--out`,
/// `--device`, `--resume`), which the front end owns.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// The pretraining method (`cxrlearn methods` lists them).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(super::names()), long_help = super::method_help())]
    pub method: String,
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
    /// Adam β1 (default 0.9; gloria 0.5, as its config).
    #[arg(long)]
    pub adam_beta1: Option<f64>,
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
    /// Seed of initialisation, order, augmentation and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also checkpoint every N steps.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// Scale gradients to this global L2 norm at most before each update
    /// (the reference codes: ConVIRT 5, REFERS 10); the pre-clip norm is
    /// logged per step as `grad_norm`.
    #[arg(long, conflicts_with = "grad_clip_value")]
    pub grad_clip_norm: Option<f64>,
    /// Clamp every gradient element into [-V, V] before each update (GLoRIA's
    /// code: 0.25).
    #[arg(long)]
    pub grad_clip_value: Option<f64>,
    /// Arithmetic: fp32, bf16 (autocast; CPU or GPU) or fp16 (autocast,
    /// GPU only).
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// Train convolutional backbones in channels-last order (faster
    /// convolutions on oneDNN and cuDNN; the same gradients within float
    /// rounding, but another trajectory: off until measured over seeds).
    #[arg(long)]
    pub channels_last: bool,
    /// Update AdamW and SGD with momentum through libtorch's fused kernels
    /// (`torch.optim.AdamW(fused=True)`'s): one pass per tensor instead of
    /// a dozen ops; the same updates within float rounding, but another
    /// trajectory: off until measured over seeds.
    #[arg(long)]
    pub fused_optimizer: bool,
    /// The momentum-contrast engine's flags.
    #[command(flatten)]
    pub moco: MocoFlags,
    /// The image views' flags.
    #[command(flatten)]
    pub views: ViewFlags,
    /// The text tower's flags.
    #[command(flatten)]
    pub text: TextFlags,
    /// S2MTS2's own flags.
    #[command(flatten)]
    pub s2mts2: S2mts2Flags,
    /// CLIP's own flags.
    #[command(flatten)]
    pub clip: ClipFlags,
    /// REFERS' own flags.
    #[command(flatten)]
    pub refers: RefersFlags,
    /// ConVIRT's own flags.
    #[command(flatten)]
    pub convirt: ConvirtFlags,
    /// GLoRIA's own flags.
    #[command(flatten)]
    pub gloria: GloriaFlags,
}

/// The momentum-contrast engine (moco-cxr, medaug, s2mts2).
#[derive(Debug, Clone, clap::Args)]
pub struct MocoFlags {
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
}

/// How the views of an image are drawn (the methods that augment from
/// flags: moco-cxr, medaug, s2mts2, refers).
#[derive(Debug, Clone, clap::Args)]
pub struct ViewFlags {
    /// Where a query's positives come from: same-image (MoCo-CXR), or
    /// MedAug's same-study (its paper's best) or same-patient.
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
}

/// The text tower (the image-text methods; each reads the ones its
/// descriptor lists).
#[derive(Debug, Clone, clap::Args)]
pub struct TextFlags {
    /// Peak learning rate of the text encoder's BERT (convirt, gloria,
    /// refers; same schedule); default --lr. REFERS' code trains its BERT at
    /// a tenth of the rest.
    #[arg(long)]
    pub text_lr: Option<f64>,
    /// clip: a tokenizer file (tokenizer.json, OpenAI's BPE merges) instead
    /// of a BPE trained on the train split's impressions. convirt, gloria:
    /// a tokenizer.json or BERT vocab.txt.
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
    /// clip: text transformer layers (2 tiny, 12). convirt, gloria: BERT layers.
    #[arg(long)]
    pub text_layers: Option<usize>,
    /// clip: text token width (128 tiny, 512). convirt, gloria: BERT width.
    #[arg(long)]
    pub text_width: Option<i64>,
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
    /// convirt, gloria: train on the images as stored instead of the
    /// method's augmentation (tiny from-scratch runs learn sooner).
    #[arg(long)]
    pub no_augment: bool,
}
