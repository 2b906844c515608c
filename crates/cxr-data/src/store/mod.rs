//! The dataset store (docs/formats.md): `dataset.json`, `manifest.csv`,
//! `images-NNNNN.safetensors` shards of u8 `[n, H, W]`, plus `labels-raw.csv`
//! (the four raw label states) and `skipped.csv` (unreadable images).

mod counts;
pub mod metadata;
pub mod read;
pub mod subsets;
pub mod summary;
pub mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::{GroupLevel, LabelPolicy, Task};
use crate::preprocess::Preprocessing;

/// Version of the store format written by this crate.
pub const FORMAT_VERSION: u32 = 1;

/// Images per shard: about 50 MB at 224 px, so writing holds one shard at most.
pub const DEFAULT_SHARD_LEN: usize = 1000;

/// Where the data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Preset name, or `csv`.
    pub kind: String,
    /// The raw dataset root (or CSV file).
    pub path: String,
    /// SHA-256 over the label files read, in order.
    pub label_sha256: String,
    /// The label files read.
    pub label_files: Vec<String>,
}

/// `dataset.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// Dataset name.
    pub name: String,
    /// Task type.
    pub task: Task,
    /// Label or class names.
    pub labels: Vec<String>,
    /// `[H, W]`.
    pub image_size: [u32; 2],
    /// Always 1.
    pub channels: u32,
    /// Always `u8`.
    pub dtype: String,
    /// How pixels were produced.
    pub preprocessing: Preprocessing,
    /// Images per split.
    pub splits: BTreeMap<String, usize>,
    /// Where the data came from.
    pub source: Source,
    /// Store format version.
    pub version: u32,
    /// True when no pixels were read (`--labels-only`): there are no shards.
    pub labels_only: bool,
    /// Number of shards.
    pub shards: usize,
    /// Images per shard (the last may hold fewer).
    pub shard_len: usize,
    /// The split rule: group level, fractions, seed, stratification.
    pub split_rule: SplitRule,
    /// How uncertain/missing label cells were collapsed in `manifest.csv`.
    pub label_policy: LabelPolicy,
    /// Images left out because they could not be read (listed in `skipped.csv`).
    pub skipped: usize,
    /// Few-shot subset of the training split, images per class, if any.
    pub few_shot: Option<usize>,
    /// Positives per label and split (multiclass: images per class).
    pub positives: BTreeMap<String, Vec<usize>>,
    /// Decisions recorded by the preset (filters, aggregation rules, deviations).
    pub notes: Vec<String>,
}

/// How splits were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRule {
    /// What the split key is.
    pub group_level: GroupLevel,
    /// Train/val/test fractions requested.
    pub fractions: [f64; 3],
    /// RNG seed.
    pub seed: u64,
    /// Description.
    pub description: String,
}
