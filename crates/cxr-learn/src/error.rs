//! The crate's one error type: every fallible function of `cxr-learn`
//! returns [`Error`], whose variants carry what failed (the file, the tensor
//! key, the setting and its value, the epoch and step) rather than a
//! preformatted message, so a caller can match on the failure and the CLI's
//! `error:` line still names everything it named before.
//!
//! Inner errors are printed inside the variant's message and deliberately
//! not also returned by `source()`: the CLI prints the whole chain
//! (`{:#}`), which would otherwise repeat them. For that reason no field is
//! named `source` and no `#[from]`/`#[source]` is used.

use std::path::{Path, PathBuf};

use cxr_nn::checkpoint::CheckpointError;
use cxr_nn::load::KeyMismatch;

/// What a training loop's log callback may fail with: the caller's own
/// error (the CLI's names the log file), passed through unchanged.
pub type LogError = Box<dyn std::error::Error + Send + Sync>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation of `cxr-learn` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- Training loops (finetuning and self-supervised pretraining) ---
    /// The loss became NaN or infinite.
    #[error("the training loss became {value} at epoch {epoch}, step {step}; stopped. {kept}")]
    NonFinite {
        /// Epoch (1-based).
        epoch: usize,
        /// Global step (1-based).
        step: u64,
        /// The loss value.
        value: f64,
        /// Which checkpoint survives.
        kept: String,
    },
    /// `--layer-decay` that cannot apply.
    #[error("--layer-decay cannot apply to {architecture}: {problem}")]
    LayerDecay {
        /// The backbone.
        architecture: String,
        /// Why.
        problem: String,
    },
    /// Zero epochs: nothing would be trained or saved.
    #[error("--epochs must be at least 1")]
    NoEpochs,
    /// A batch too small for batch norm.
    #[error("--batch-size must be at least 2 (batch norm)")]
    BatchTooSmall {
        /// The requested batch size.
        batch_size: usize,
    },
    /// The training rows do not fill one batch.
    #[error("the training split has {rows} images, fewer than one batch of {batch_size}")]
    FewerRowsThanBatch {
        /// Training rows.
        rows: usize,
        /// The batch size.
        batch_size: usize,
    },
    /// Each rank's share of a batch is too small for batch norm.
    #[error(
        "each of the {ranks} ranks gets {local_batch} image(s) of a batch of {batch_size}; batch norm needs at least 2"
    )]
    RankBatchTooSmall {
        /// Number of ranks.
        ranks: usize,
        /// Images per rank.
        local_batch: usize,
        /// The global batch size.
        batch_size: usize,
    },
    /// A label without both classes among the known training images.
    #[error(
        "label '{label}' has {positives} positive and {negatives} negative training images: it cannot be trained"
    )]
    UntrainableLabel {
        /// The label.
        label: String,
        /// Known positives.
        positives: usize,
        /// Known negatives.
        negatives: usize,
    },
    /// A multi-class training split with fewer than two classes present.
    #[error("the training split holds fewer than two classes")]
    SingleTrainingClass,
    /// The precision cannot run on the device (`cxr-nn`'s message).
    #[error("{0}")]
    Precision(cxr_nn::NnError),
    /// The log callback failed.
    #[error("{0}")]
    Log(LogError),

    // --- Checkpoints and run files ---
    /// A checkpoint could not be read, or a tensor cannot be stored.
    #[error("{0}")]
    Checkpoint(CheckpointError),
    /// Tensors could not be encoded as the safetensors file `path`.
    #[error("{}: {cause}", path.display())]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// Why.
        cause: CheckpointError,
    },
    /// A file could not be written.
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A training state without its progress record.
    #[error("{} holds no progress record", path.display())]
    NoProgress {
        /// The state file.
        path: PathBuf,
    },
    /// A progress record that does not (de)serialise.
    #[error("{}: {cause}", path.display())]
    Progress {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        cause: serde_json::Error,
    },
    /// Weights that do not match the model.
    #[error("{}: {cause}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Every missing, unexpected or mis-shaped key.
        cause: KeyMismatch,
    },
    /// An error about the contents of the file `path` (an optimiser state
    /// in a training state), named with the file.
    #[error("{}: {cause}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        cause: Box<Error>,
    },

    // --- Optimiser and schedule settings and state ---
    /// An optimiser state without its step count.
    #[error("optimizer state has no 'steps'")]
    NoOptimizerSteps,
    /// An optimiser state tensor for a parameter the optimiser lacks.
    #[error("optimizer state '{key}' names no trainable parameter")]
    UnknownOptimizerKey {
        /// The state tensor's key.
        key: String,
    },
    /// A gradient clip bound that is not positive and finite.
    #[error("a gradient clip bound must be positive and finite, got {bound}")]
    GradClipBound {
        /// The bound.
        bound: f64,
    },
    /// Lookahead settings out of range.
    #[error("lookahead needs k >= 1 and alpha in (0, 1], got k {k} alpha {alpha}")]
    Lookahead {
        /// Inner steps between synchronisations.
        k: u64,
        /// Step size of the slow weights.
        alpha: f64,
    },
    /// A plateau factor outside (0, 1).
    #[error("the plateau factor must lie in (0, 1), got {factor}")]
    PlateauFactor {
        /// The factor.
        factor: f64,
    },
    /// A negative or non-finite rate floor.
    #[error("the minimum rate must be >= 0, got {min_lr}")]
    MinLr {
        /// The floor.
        min_lr: f64,
    },

    // --- Linear probes ---
    /// A probe label with one class only among the known training rows.
    #[error(
        "label '{label}' has {positives} positive and {negatives} negative training rows: a probe needs both"
    )]
    ProbeSingleClass {
        /// The label.
        label: String,
        /// Known positives.
        positives: usize,
        /// Known negatives.
        negatives: usize,
    },
    /// A multinomial probe with fewer than two classes among its rows.
    #[error("a multi-class probe needs training rows of at least two classes")]
    ProbeSingleClassOverall,
    /// Features, targets and label names that do not line up.
    #[error(
        "features have {rows} rows, targets {target_rows} rows x {k} labels, {names} label names"
    )]
    ProbeShape {
        /// Feature rows.
        rows: i64,
        /// Target rows.
        target_rows: i64,
        /// Target columns.
        k: i64,
        /// Label names given.
        names: usize,
    },
    /// A regularisation strength that is not positive and finite.
    #[error("C must be positive, got {c}")]
    ProbeC {
        /// The inverse regularisation strength.
        c: f64,
    },
    /// Features holding NaN or infinite values.
    #[error("features contain NaN or infinite values")]
    NonFiniteFeatures,
    /// An empty grid of C values.
    #[error("the C grid is empty")]
    EmptyCGrid,
    /// libtorch refused an operation (a tensor that is not 2-D, a
    /// conversion to host values).
    #[error("{0}")]
    Torch(tch::TchError),

    // --- Zero-shot prompts ---
    /// The prompts file is not valid TOML of the expected shape.
    #[error("prompts file: {0}")]
    PromptsToml(toml::de::Error),
    /// The prompts file names labels the task does not have.
    #[error("prompts file names unknown label(s): {unknown} (the task's labels: {known})")]
    UnknownPromptLabels {
        /// The unknown names, comma-separated.
        unknown: String,
        /// The task's labels, comma-separated.
        known: String,
    },
    /// A label with an empty prompt list.
    #[error("prompts file: label '{label}' has an empty {side} prompt list")]
    EmptyPrompts {
        /// The label.
        label: String,
        /// `"positive"` or `"negative"`.
        side: &'static str,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(cxr_nn::NnError),

    // --- Data-parallel training ---
    /// A launcher variable that does not parse.
    #[error("data-parallel launch: {name}={value:?} is not {expected}")]
    LaunchVar {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What it must be ("a non-negative integer", "a port number").
        expected: &'static str,
    },
    /// `RANK` without `WORLD_SIZE` or the reverse.
    #[error("data-parallel launch: RANK and WORLD_SIZE must be set together")]
    UnpairedRank,
    /// Slurm without a rendezvous host.
    #[error("data-parallel launch: under Slurm, set MASTER_ADDR or SLURM_JOB_NODELIST")]
    NoSlurmHost,
    /// A rank outside the world (or a world of zero).
    #[error("data-parallel launch: rank {rank} is outside a world of {world} process(es)")]
    RankOutsideWorld {
        /// The rank.
        rank: usize,
        /// The world size.
        world: usize,
    },
    /// A global batch that does not split evenly over the ranks.
    #[error(
        "data-parallel launch: the batch size ({batch_size}) is the global batch and must be a positive multiple of the number of ranks ({world})"
    )]
    UnevenBatch {
        /// The global batch size.
        batch_size: usize,
        /// The number of ranks.
        world: usize,
    },
    /// The rendezvous with the other ranks failed (the message names the
    /// peer, address or port).
    #[error("data-parallel rendezvous: {0}")]
    Rendezvous(String),
    /// NCCL or CUDA reported an error, or is not installed.
    #[error("NCCL: {0}")]
    Nccl(String),
    /// Ranks disagreed on a shape or kind, or another rank went away.
    #[error("collective: {0}")]
    Collective(String),

    // --- Model names and weights (`model`) ---
    /// `scratch:ARCH` given with a weights file.
    #[error("scratch:{arch} is trained from random weights; drop --checkpoint")]
    ScratchWithCheckpoint {
        /// The architecture named.
        arch: String,
    },
    /// `scratch:ARCH` with an unknown architecture or an unusable size.
    #[error("{reason}")]
    Scratch {
        /// The architecture named.
        arch: String,
        /// What is wrong (names the architecture).
        reason: Box<cxr_nn::NnError>,
    },
    /// A registry name without its weights.
    #[error(
        "model '{model}' needs --checkpoint (its weights, {file}; cxrlearn downloads nothing), \
         or use scratch:ARCH to train from random weights"
    )]
    NeedsCheckpoint {
        /// The registry name.
        model: String,
        /// The file the release ships its weights in.
        file: String,
    },
    /// Neither a registry name, `scratch:ARCH` nor an existing file.
    #[error(
        "{reason} (or scratch:ARCH with ARCH one of {}, or a safetensors file written by cxrlearn)",
        cxr_nn::spec::ARCHITECTURES.join(", ")
    )]
    UnknownModel {
        /// The model string.
        model: String,
        /// The registry's answer (names the model and the known ones).
        reason: Box<cxr_nn::NnError>,
    },
    /// A zero-shot model that has no text tower.
    #[error(
        "model '{model}' is not an image-text model; zero-shot needs one of {} (with --checkpoint), hf:DIR (a siglip directory), open_clip:DIR, or a CLIP safetensors file with its JSON sidecar",
        known.join(", ")
    )]
    NotImageText {
        /// The model string.
        model: String,
        /// The registry's image-text entries.
        known: Vec<&'static str>,
    },
    /// A whole image-text state dict that does not load.
    #[error(
        "{} as '{model}' (zero-shot needs the whole state dict, text tower included; an imported file holds only the image tower): {cause}",
        file.display()
    )]
    ImageTextWeights {
        /// The weights file.
        file: PathBuf,
        /// The registry name.
        model: String,
        /// Every mismatched key.
        cause: Box<cxr_nn::load::KeyMismatch>,
    },
    /// No tokenizer given, shipped or named.
    #[error(
        "model '{model}' needs --tokenizer (CheXzero: OpenAI's bpe_simple_vocab_16e6.txt.gz; SigLIP: its tokenizer.json; BiomedCLIP: its vocab.txt)"
    )]
    NeedsTokenizer {
        /// What the model is.
        model: String,
    },
    /// A tokenizer file that cannot be read.
    #[error("tokenizer {}: {cause}", path.display())]
    TokenizerFile {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: Box<cxr_nn::NnError>,
    },
    /// A tokenizer that cannot feed the model's text tower.
    #[error("tokenizer {}: {problem}", path.display())]
    TokenizerMismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        problem: String,
    },
    /// `--pooling` for a model whose feature is not pooled from tokens.
    #[error(
        "--pooling applies to ViT-style encoders that pool tokens (DINOv2, RAD-DINO); '{model}' is a {architecture}"
    )]
    Pooling {
        /// The model string.
        model: String,
        /// Its architecture.
        architecture: String,
    },
    /// A network input side outside `1..=`[`crate::model::MAX_INPUT_SIZE`].
    #[error("{origin} {size} is out of range: the network input side must be 1 to {max} px")]
    InputSize {
        /// Where the size came from (`--input-size`, or a sidecar's
        /// `input_size`).
        origin: String,
        /// The size asked for.
        size: i64,
        /// The largest allowed ([`crate::model::MAX_INPUT_SIZE`]).
        max: i64,
    },
    /// A directory given for an entry released as one file.
    #[error("--checkpoint {} is a directory; '{model}' takes one file ({file})", dir.display())]
    CheckpointIsDir {
        /// The registry name.
        model: String,
        /// The directory given.
        dir: PathBuf,
        /// The file the release ships.
        file: String,
    },
    /// A weights file given twice (as the model and as `--checkpoint`).
    #[error(
        "--checkpoint goes with a registry model name; {} already holds the weights",
        file.display()
    )]
    CheckpointWithFile {
        /// The model file.
        file: PathBuf,
    },
    /// A model file without a readable sidecar.
    #[error("{} has no sidecar {} describing its model: {cause}", file.display(), sidecar.display())]
    NoSidecar {
        /// The model file.
        file: PathBuf,
        /// The sidecar looked for.
        sidecar: PathBuf,
        /// Why it could not be read.
        cause: std::io::Error,
    },
    /// A sidecar that is not JSON.
    #[error("{}: {cause}", sidecar.display())]
    SidecarJson {
        /// The sidecar.
        sidecar: PathBuf,
        /// The parse error.
        cause: serde_json::Error,
    },
    /// A sidecar that does not describe a model.
    #[error("{reason}")]
    Sidecar {
        /// The sidecar.
        sidecar: PathBuf,
        /// What is wrong (names the sidecar).
        reason: Box<cxr_nn::NnError>,
    },
    /// A released checkpoint whose keys do not map onto the architecture.
    #[error("{} as '{model}': {cause}", file.display())]
    Mapping {
        /// The weights file.
        file: PathBuf,
        /// The registry name.
        model: String,
        /// The unmapped keys (boxed: a large error kept off the happy path).
        cause: Box<cxr_nn::import::ImportError>,
    },
    /// Weights that do not fit the model built from the spec.
    #[error("{source_name} as '{model}': {cause}")]
    ModelWeights {
        /// Where the weights came from ([`crate::model::Resolved::source`]).
        source_name: String,
        /// The architecture's name.
        model: String,
        /// The missing or unexpected keys (boxed, as above).
        cause: Box<KeyMismatch>,
    },

    // --- Features files (`features`) ---
    /// A file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A features directory's `meta.json` is not JSON.
    #[error("{}: {cause}", path.display())]
    FeaturesMeta {
        /// The file.
        path: PathBuf,
        /// The parse error.
        cause: serde_json::Error,
    },
    /// A features directory's `meta.json` lacks the label list.
    #[error("{} has no label list: {cause}", path.display())]
    NoLabels {
        /// The file.
        path: PathBuf,
        /// Why the `labels` entry is unusable.
        cause: serde_json::Error,
    },
    /// A split file lacks one of its tensors.
    #[error("{} has no tensor '{name}' (not a features file?)", file.display())]
    MissingTensor {
        /// The split file.
        file: PathBuf,
        /// The tensor looked for.
        name: String,
    },
    /// A split file's tensors disagree with each other or with `meta.json`.
    #[error(
        "{}: features {features:?}, labels {labels:?}, index {index:?} do not fit {k} labels",
        file.display()
    )]
    FeaturesShape {
        /// The split file.
        file: PathBuf,
        /// Shape of `features`.
        features: Vec<usize>,
        /// Shape of `labels`.
        labels: Vec<usize>,
        /// Shape of `index`.
        index: Vec<usize>,
        /// Labels `meta.json` lists.
        k: usize,
    },
    /// The features came from another store than the one given.
    #[error(
        "the features in {} were extracted from a different store than {} \
         (its dataset.json or manifest.csv differ)",
        dir.display(),
        store.display()
    )]
    DifferentStore {
        /// The features directory.
        dir: PathBuf,
        /// The store given.
        store: PathBuf,
    },
    /// The model's output holds NaN or infinity.
    #[error("the model produced non-finite features (check the weights)")]
    NonFiniteModelOutput,

    // --- Pretraining methods: flags (`ssl::method`) ---
    /// No such pretraining method.
    #[error("unknown pretraining method '{name}' (one of {})", crate::ssl::method::names().join(", "))]
    UnknownMethod {
        /// The name given.
        name: String,
    },
    /// A flag that belongs to other methods.
    #[error("--{flag} does not apply to {method}: {owners}")]
    FlagNotRead {
        /// The flag, without dashes.
        flag: String,
        /// The method run.
        method: &'static str,
        /// Who reads it, and what to do.
        owners: String,
    },
    /// A flag's value refused (the message names the flag and the value).
    #[error("{0}")]
    InvalidFlag(String),
    /// A flag naming a file that cannot be used.
    #[error("--{flag} {}: {cause}", path.display())]
    FlagFile {
        /// The flag, without dashes.
        flag: &'static str,
        /// The file given.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The network the flags describe cannot be built.
    #[error("{0}")]
    Network(Box<cxr_nn::NnError>),
    /// `cxr-data` refused: an invalid augmentation, an unreadable image.
    #[error("{0}")]
    Data(Box<cxr_data::error::DataError>),

    // --- Pretraining objectives (`ssl`) ---
    /// An image-text method given a store without reports.
    #[error("{method} is an image-text method, but {cause}")]
    NoReports {
        /// The method.
        method: String,
        /// `cxr-data`'s refusal, naming the store and the `report` column.
        cause: Box<cxr_data::error::DataError>,
    },
    /// No training image of an image-text method has report text.
    #[error(
        "{method}: none of the {images} training images has a report (the '{column}' column is empty there)"
    )]
    NoTrainingReports {
        /// The method.
        method: &'static str,
        /// The training images.
        images: usize,
        /// The store column read.
        column: &'static str,
    },
    /// No training image has a report sentence the method can use.
    #[error(
        "none of the {images} training images has a report sentence {method} can use \
         ({without_report} without a 'report', {without_sentence} with no sentence)"
    )]
    NoReportSentences {
        /// The method.
        method: String,
        /// The training images.
        images: usize,
        /// Images without report text.
        without_report: usize,
        /// Images whose report has no usable sentence.
        without_sentence: usize,
    },
    /// Positive pairs by study in a store without study ids.
    #[error(
        "positive pairs by study need the store's study_id column, which row {row} ({id}) lacks"
    )]
    NoStudyId {
        /// The row.
        row: usize,
        /// Its image id.
        id: String,
    },
    /// A store image that cannot be read.
    #[error("cannot read image {row} of the store")]
    StoreImage {
        /// The row.
        row: usize,
    },
    /// A training state lacking one of the objective's tensors.
    #[error("checkpoint lacks '{key}'")]
    MissingState {
        /// The tensor's key.
        key: String,
    },
    /// A training state tensor of the wrong shape.
    #[error("'{key}' has shape {shape:?}, expected {expected:?}")]
    StateShape {
        /// The tensor's key.
        key: String,
        /// Its shape in the state.
        shape: Vec<i64>,
        /// The shape the objective has.
        expected: Vec<i64>,
    },
    /// A file an objective exports could not be written.
    #[error("{}: {cause}", path.display())]
    Export {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: Box<cxr_nn::NnError>,
    },
    /// A JSON file could not be encoded.
    #[error("{}: {cause}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        cause: serde_json::Error,
    },
    /// A method setting out of range.
    #[error("{method} needs {requirement}, got {value}")]
    MethodSetting {
        /// The method.
        method: &'static str,
        /// What the setting must satisfy.
        requirement: &'static str,
        /// The value(s) given.
        value: String,
    },
    /// A backbone the method cannot train.
    #[error("{method} {requirement}, but the backbone is {backbone}")]
    MethodBackbone {
        /// The method.
        method: &'static str,
        /// What it needs (`"taps a ResNet's layer3"`).
        requirement: &'static str,
        /// The backbone given.
        backbone: String,
    },
    /// A tokenizer whose end token is not its largest id.
    #[error(
        "the tokenizer's end token is not its largest id, which CLIP's text tower needs \
         to find the sequence end"
    )]
    ClipTokenizerEnd,
    /// A text context too short for a sentence.
    #[error("the text context must hold [CLS], a token and [SEP] (it holds {ctx} tokens)")]
    TextContext {
        /// The context length.
        ctx: usize,
    },
    /// An attention map that is not a square grid of regions.
    #[error("GLoRIA's {regions} regions are not a square grid")]
    RegionGrid {
        /// The number of regions.
        regions: i64,
    },
    /// A lesion-mask CSV that cannot be read.
    #[error("{}: {cause}", path.display())]
    LesionCsv {
        /// The CSV file.
        path: PathBuf,
        /// The CSV error.
        cause: csv::Error,
    },
    /// A lesion-mask CSV without a needed column.
    #[error("{}: no '{column}' column (lesion masks need 'path' and 'lesion_mask')", path.display())]
    LesionColumn {
        /// The CSV file.
        path: PathBuf,
        /// The column missing.
        column: String,
    },
    /// A lesion mask image that cannot be decoded.
    #[error("lesion mask: {0}")]
    LesionMask(Box<cxr_data::error::DataError>),
    /// A lesion-mask CSV naming no image of the split.
    #[error("{}: none of its paths is an image of the store's '{split}' split", path.display())]
    LesionPaths {
        /// The CSV file.
        path: PathBuf,
        /// The split.
        split: &'static str,
    },

    // --- Pretraining validation and loop settings ---
    /// A validation fraction outside (0, 0.5].
    #[error("the validation fraction must lie in (0, 0.5], got {fraction}")]
    ValFraction {
        /// The fraction.
        fraction: f64,
    },
    /// Early stopping with a patience of 0.
    #[error("early stopping needs a patience of at least 1 evaluation")]
    EarlyStopPatience,
    /// A hold-out that leaves one side empty.
    #[error(
        "cannot hold out {fraction} of {rows} training rows for validation and keep both sides"
    )]
    HoldOut {
        /// The fraction.
        fraction: f64,
        /// The rows to split.
        rows: usize,
    },
    /// The plateau schedule without validation.
    #[error("the plateau schedule follows a validation loss: hold rows out with --val-fraction")]
    PlateauWithoutValidation,
    /// Fewer held-out rows than one batch.
    #[error(
        "validation holds {rows} rows, fewer than one batch of {batch_size}: raise \
         --val-fraction, lower --batch-size, or train without validation \
         (--schedule cosine; convirt and gloria default to the plateau schedule)"
    )]
    ValidationTooSmall {
        /// Held-out rows.
        rows: usize,
        /// The batch size.
        batch_size: usize,
    },
    /// Not one batch of at least 2 training images.
    #[error("need at least one batch of {batch_size} (>= 2) training images, have {rows}")]
    NoPretrainBatch {
        /// The batch size.
        batch_size: usize,
        /// Training rows.
        rows: usize,
    },
    /// A momentum-contrast queue that does not hold whole batches.
    #[error("the queue ({queue}) must be a multiple of the batch size ({batch_size})")]
    QueueNotMultiple {
        /// The queue length.
        queue: usize,
        /// The batch size.
        batch_size: usize,
    },
    /// A method that cannot train data-parallel.
    #[error(
        "method '{method}' does not train data-parallel: its loss needs features of the whole \
         batch that are not gathered across ranks; run it as one process"
    )]
    NotDataParallel {
        /// The method.
        method: String,
    },
    /// A text encoder rate out of range.
    #[error("--text-lr must be finite and >= 0 (and --lr > 0), got {text_lr} (--lr {lr})")]
    TextLr {
        /// `--text-lr`.
        text_lr: f64,
        /// `--lr`.
        lr: f64,
    },
    /// `--text-lr` for a method without a text encoder.
    #[error("--text-lr: method '{method}' has no trainable text encoder of its own rate")]
    NoTextEncoder {
        /// The method.
        method: String,
    },
}

impl Error {
    /// The divergence error at `step` of `epoch`, naming the checkpoint at
    /// `last` that survives (or saying none was written yet).
    pub fn non_finite(epoch: usize, step: u64, value: f64, last: &Path) -> Self {
        let kept = if last.exists() {
            format!("The last good checkpoint is {}.", last.display())
        } else {
            "No checkpoint had been written yet.".into()
        };
        Self::NonFinite {
            epoch,
            step,
            value,
            kept,
        }
    }

    /// `self` as found in the file `path`.
    pub fn in_file(self, path: &Path) -> Self {
        Self::InFile {
            path: path.to_owned(),
            cause: Box::new(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// The CLI prints `{:#}` (the message, then every source): an inner
    /// error already in the message must not come back as a source.
    #[test]
    fn inner_errors_are_printed_once() {
        let e = Error::Write {
            path: "run/last.safetensors".into(),
            cause: std::io::Error::other("disk full"),
        };
        assert_eq!(
            e.to_string(),
            "cannot write run/last.safetensors: disk full"
        );
        assert!(e.source().is_none());
        let e = Error::UnknownOptimizerKey {
            key: "v.momentum".into(),
        }
        .in_file(Path::new("run/last.safetensors"));
        assert_eq!(
            e.to_string(),
            "run/last.safetensors: optimizer state 'v.momentum' names no trainable parameter"
        );
        assert!(e.source().is_none());
    }
}
