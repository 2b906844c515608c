//! The one error type of the data crate: every variant names the file (and row,
//! where there is one) so a user can find the bad input.

use std::path::PathBuf;

/// Errors raised while decoding images, reading label files or writing stores.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened, read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error (not a `#[source]`: the message already includes it).
        error: std::io::Error,
    },
    /// An image file could not be decoded.
    #[error("{path}: cannot decode image: {reason}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An image that declares more pixels than the decoder's limit
    /// ([`crate::decode::DecodeLimits`]), refused before it is decoded.
    #[error(
        "{}: cannot decode image: {what} = {pixels} pixels, more than the limit of {limit} (--max-pixels)",
        path.display()
    )]
    TooManyPixels {
        /// The image file.
        path: PathBuf,
        /// The declared dimensions, in words (`100000 x 100000`).
        what: String,
        /// Their product.
        pixels: u64,
        /// The limit.
        limit: u64,
    },
    /// A label file is malformed at a given row (1-based, header = row 1).
    #[error("{path}, row {row}: {reason}")]
    Row {
        /// The label file.
        path: PathBuf,
        /// The 1-based line/record number (header is 1).
        row: u64,
        /// What went wrong.
        reason: String,
    },
    /// A label file or directory is malformed as a whole (missing column, no
    /// rows...), or an output path names no directory.
    #[error("{path}: {reason}")]
    Layout {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A CSV record (a line, or several inside quotes) longer than
    /// [`cxr_stats::csv_bound::MAX_CSV_RECORD_BYTES`]: no label file has
    /// such rows, so the file is not a CSV (a binary file, `/dev/zero`).
    #[error(
        "{}, line {line}: a record longer than {limit} bytes (MAX_CSV_RECORD_BYTES) without a line break: not a CSV file",
        path.display()
    )]
    RecordTooLong {
        /// The CSV file.
        path: PathBuf,
        /// The 1-based line on which the record starts.
        line: u64,
        /// The bound.
        limit: usize,
    },
    /// A label or metadata CSV whose header names a column the reader uses
    /// more than once: which one is meant cannot be told.
    #[error(
        "{}: column {column:?} appears {} times in the header (columns {}); rename or remove the extra ones",
        path.display(),
        positions.len(),
        positions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    DuplicateColumn {
        /// The CSV file.
        path: PathBuf,
        /// The repeated column name.
        column: String,
        /// The 1-based positions of its occurrences in the header.
        positions: Vec<usize>,
    },
    /// The requested configuration is impossible (bad split fractions, a
    /// training fraction out of range...). Free text: these name a command-line
    /// option or a count, not a file, row, column or key.
    #[error("{0}")]
    Config(String),
    /// A command-line option's value outside what it accepts (`--splits`
    /// that do not sum to 100, `--few-shot 0`, `--size` above
    /// [`crate::convert::MAX_IMAGE_SIZE`]...): names the flag and the value.
    #[error("{flag} {value}: {reason}")]
    InvalidOption {
        /// The option, as spelled on the command line (`--splits`).
        flag: &'static str,
        /// The value given, as given.
        value: String,
        /// What it must be instead.
        reason: String,
    },
    /// A preset name that is not in the preset table.
    #[error("unknown preset {name:?}; available: {}", known.join(", "))]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The preset names (carried, so this module imports no table).
        known: &'static [&'static str],
    },
    /// A resize policy that is none of squash, letterbox or center-crop.
    #[error("unknown resize policy {value:?} (expected squash, letterbox or center-crop)")]
    UnknownResizePolicy {
        /// The value given.
        value: String,
    },
    /// A task that is none of binary, multilabel or multiclass.
    #[error("unknown task {value:?} (expected binary, multilabel or multiclass)")]
    UnknownTask {
        /// The value given.
        value: String,
    },
    /// An augmentation setting out of its range.
    #[error("invalid augmentation {field}: {config}")]
    InvalidAugmentation {
        /// The first bad field.
        field: &'static str,
        /// The whole configuration (`Debug`), to show the value in context.
        config: String,
    },
    /// Another process is writing the output (see [`crate::claim`]).
    #[error(transparent)]
    Claim(#[from] crate::claim::ClaimError),
    /// `--force` on a non-empty output that is not what the command writes:
    /// it replaces only its own kind of output.
    #[error(
        "{path} holds files cxrlearn did not write (no {marker}): --force replaces only a previous output of this command; choose another --out"
    )]
    NotOurs {
        /// The output.
        path: PathBuf,
        /// The file by which the command recognises its own output.
        marker: &'static str,
    },
    /// The output directory exists and is not empty.
    #[error("{0}: output exists and is not empty (use --force to replace it)")]
    OutputExists(PathBuf),
    /// A phantom configuration value out of range.
    #[error("invalid phantom configuration: {0}")]
    PhantomConfig(String),
    /// The phantom's output directory exists and is not empty. (Worded
    /// apart from [`DataError::OutputExists`], as the phantom has always
    /// worded it.)
    #[error("output directory {0} exists and is not empty (use --force to replace it)")]
    PhantomOutputExists(PathBuf),
    /// An image could not be encoded as PNG.
    #[error("cannot encode {path}: {source}")]
    EncodePng {
        /// The image path.
        path: PathBuf,
        /// The encoder's error (boxed: it is large, and this enum is in
        /// every `Result` of the crate).
        source: Box<image::ImageError>,
    },
    /// A CSV file could not be written (into memory, before it is saved).
    #[error("cannot write CSV: {0}")]
    WriteCsv(#[from] csv::Error),
    /// A JSON file could not be written (into memory, before it is saved).
    #[error("cannot write JSON: {0}")]
    WriteJson(#[from] serde_json::Error),
    /// A store is malformed.
    #[error("{path}: invalid dataset store: {reason}")]
    Store {
        /// The store directory or file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A count recorded in a store's `dataset.json` (images of a split,
    /// positives of a label) that its `manifest.csv` contradicts: the store
    /// was damaged or edited after conversion wrote both.
    #[error(
        "{}: {what}: dataset.json records {recorded} but manifest.csv has {actual}; \
         the store is damaged or was edited (convert the dataset again)",
        path.display()
    )]
    StoreCount {
        /// The store's `dataset.json`.
        path: PathBuf,
        /// What is counted (`split "train": images`).
        what: String,
        /// The count in `dataset.json`.
        recorded: usize,
        /// The count in `manifest.csv`.
        actual: usize,
    },
    /// A store's `manifest.csv` holds a label cell outside the format's
    /// states (`1`, `0` or empty; multi-class: a class index), which would
    /// otherwise change the ground truth that probe and evaluation use.
    #[error("{}, row {row}, column {column:?}: label {value:?} is not one of {allowed}", path.display())]
    StoreLabel {
        /// The manifest file.
        path: PathBuf,
        /// The 1-based record number (header is 1).
        row: u64,
        /// The label column.
        column: String,
        /// The cell as written.
        value: String,
        /// The states the format allows, in words.
        allowed: String,
    },
    /// A labels-only store given to a command that reads images.
    #[error("{} is a labels-only store: it holds no pixels", store.display())]
    NoPixels {
        /// The store directory.
        store: PathBuf,
    },
    /// A store without report text, given to a method that needs it.
    #[error(
        "store {} has no 'report' column (convert the dataset with its report text in a column named 'report')",
        store.display()
    )]
    NoReports {
        /// The store directory.
        store: PathBuf,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }

    /// A decoding failure for `path`.
    pub fn decode(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::Decode {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// A malformed row of a label file.
    pub fn row(path: impl Into<PathBuf>, row: u64, reason: impl ToString) -> Self {
        Self::Row {
            path: path.into(),
            row,
            reason: reason.to_string(),
        }
    }

    /// A malformed label file or dataset directory.
    pub fn layout(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::Layout {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Result alias of the data crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
