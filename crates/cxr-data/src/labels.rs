//! The label table every preset and the generic CSV reader produce: one record
//! per image with four-state labels, patient/group keys and optional metadata.

use serde::{Deserialize, Serialize};

/// The task type of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One binary label.
    Binary,
    /// Several binary labels.
    Multilabel,
    /// One class index among `labels`.
    Multiclass,
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "binary" => Ok(Self::Binary),
            "multilabel" => Ok(Self::Multilabel),
            "multiclass" => Ok(Self::Multiclass),
            _ => Err(format!(
                "unknown task {s:?} (expected binary, multilabel or multiclass)"
            )),
        }
    }
}

/// The raw state of one label cell: CheXpert-style sources distinguish
/// "uncertain" (-1) from "not mentioned" (blank), and both differ from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelState {
    /// Present.
    Positive,
    /// Absent.
    Negative,
    /// Mentioned with uncertainty.
    Uncertain,
    /// Not mentioned / unknown.
    Missing,
}

impl LabelState {
    /// Parses the usual encodings: `1`, `1.0`, `0`, `0.0`, `-1`, `-1.0`, empty.
    pub fn parse(cell: &str) -> Option<LabelState> {
        match cell.trim() {
            "" | "nan" | "NaN" => Some(LabelState::Missing),
            "1" | "1.0" | "True" | "true" => Some(LabelState::Positive),
            "0" | "0.0" | "False" | "false" => Some(LabelState::Negative),
            "-1" | "-1.0" => Some(LabelState::Uncertain),
            _ => None,
        }
    }

    /// The raw encoding written to `labels-raw.csv`.
    pub fn raw(self) -> &'static str {
        match self {
            LabelState::Positive => "1",
            LabelState::Negative => "0",
            LabelState::Uncertain => "-1",
            LabelState::Missing => "",
        }
    }
}

/// What an uncertain or missing cell becomes in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collapse {
    /// Written as `1`.
    Positive,
    /// Written as `0`.
    Negative,
    /// Written empty (unknown; left out of that label's metrics).
    Unknown,
}

/// The explicit policy that turns four label states into the manifest's three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelPolicy {
    /// Target of `Uncertain` cells.
    pub uncertain: Collapse,
    /// Target of `Missing` cells.
    pub missing: Collapse,
}

impl Default for LabelPolicy {
    fn default() -> Self {
        Self {
            uncertain: Collapse::Unknown,
            missing: Collapse::Unknown,
        }
    }
}

impl LabelPolicy {
    /// The manifest cell of `state` under this policy.
    pub fn cell(self, state: LabelState) -> &'static str {
        let c = match state {
            LabelState::Positive => return "1",
            LabelState::Negative => return "0",
            LabelState::Uncertain => self.uncertain,
            LabelState::Missing => self.missing,
        };
        match c {
            Collapse::Positive => "1",
            Collapse::Negative => "0",
            Collapse::Unknown => "",
        }
    }
}

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training.
    Train,
    /// Validation.
    Val,
    /// Test.
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// One image with its labels and keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// Unique image id.
    pub id: String,
    /// Grouping key for splits (patient id, else report id, else the image id).
    pub group: String,
    /// Path of the image relative to the dataset root.
    pub source_path: String,
    /// One state per label (binary/multilabel).
    pub labels: Vec<LabelState>,
    /// Class index (multiclass); `None` = unknown.
    pub class: Option<u32>,
    /// A split the publisher fixed (official test set), kept over the random split.
    pub fixed_split: Option<Split>,
    /// Study id, when the source has one.
    pub study_id: Option<String>,
    /// Normalised view (`PA`, `AP`, `LATERAL`, `UNKNOWN`).
    pub view: Option<String>,
    /// Acquisition site.
    pub site: Option<String>,
    /// Report text.
    pub report: Option<String>,
    /// The file stores the image with inverted polarity (a MONOCHROME1
    /// acquisition exported as PNG); conversion maps it back (255 - v).
    pub inverted: bool,
}

/// What the split group key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupLevel {
    /// Patient ids: splits are patient-disjoint.
    Patient,
    /// Report ids (no patient key exists).
    Report,
    /// Each image alone (no patient key exists).
    Image,
}

/// A parsed dataset: what a preset or the generic CSV reader hands to conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelTable {
    /// Dataset name.
    pub name: String,
    /// Task type.
    pub task: Task,
    /// Label (or class) names, in column order.
    pub labels: Vec<String>,
    /// The images.
    pub records: Vec<Record>,
    /// The level of the split key.
    pub group_level: GroupLevel,
    /// How uncertain/missing cells are collapsed in the manifest.
    pub policy: LabelPolicy,
    /// Human-readable decisions recorded in `dataset.json` (filters, aggregation rules...).
    pub notes: Vec<String>,
    /// Label files read, for the content hash.
    pub sources: Vec<std::path::PathBuf>,
    /// Split fractions the paper uses for this dataset, when not the default 60/20/20.
    pub default_fractions: Option<[f64; 3]>,
}

impl LabelTable {
    /// An empty table.
    pub fn new(name: &str, task: Task, labels: Vec<String>, group_level: GroupLevel) -> Self {
        Self {
            name: name.into(),
            task,
            labels,
            records: Vec::new(),
            group_level,
            policy: LabelPolicy::default(),
            notes: Vec::new(),
            sources: Vec::new(),
            default_fractions: None,
        }
    }

    /// Number of positive cells per label (multiclass: images per class).
    pub fn positives(&self) -> Vec<usize> {
        let mut n = vec![0; self.labels.len()];
        for r in &self.records {
            if self.task == Task::Multiclass {
                if let Some(c) = r.class {
                    n[c as usize] += 1;
                }
            } else {
                for (k, s) in r.labels.iter().enumerate() {
                    if *s == LabelState::Positive {
                        n[k] += 1;
                    }
                }
            }
        }
        n
    }

    /// Indices of the labels that are positive for `r` (multiclass: its class).
    pub fn positive_labels(&self, r: &Record) -> Vec<usize> {
        if self.task == Task::Multiclass {
            r.class.map(|c| vec![c as usize]).unwrap_or_default()
        } else {
            r.labels
                .iter()
                .enumerate()
                .filter(|(_, s)| **s == LabelState::Positive)
                .map(|(k, _)| k)
                .collect()
        }
    }
}

/// Normalises a view string to `PA`, `AP`, `LATERAL` or `UNKNOWN`.
pub fn normalise_view(raw: &str) -> String {
    let v = raw.trim().to_ascii_uppercase();
    match v.as_str() {
        "PA" | "POSTEROANTERIOR" => "PA",
        "AP" | "AP_HORIZONTAL" | "ANTEROPOSTERIOR" | "AP AXIAL" => "AP",
        "L" | "LL" | "RL" | "LATERAL" | "LARGE LATERAL" | "LAT" => "LATERAL",
        _ => "UNKNOWN",
    }
    .to_string()
}
