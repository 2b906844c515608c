//! The label table every preset and the generic CSV reader produce: one record
//! per image with four-state labels, patient/group keys and optional metadata.

use serde::{Deserialize, Serialize};

use crate::error::DataError;

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
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "binary" => Ok(Self::Binary),
            "multilabel" => Ok(Self::Multilabel),
            "multiclass" => Ok(Self::Multiclass),
            _ => Err(DataError::UnknownTask {
                value: s.to_owned(),
            }),
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
    /// Sex, `F` or `M` (see [`normalise_sex`]); `None` when unknown.
    pub sex: Option<String>,
    /// Age in years at the study (see [`parse_age`]); `None` when unknown.
    pub age: Option<f32>,
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

// Subgroup metadata (sex, age, view): every preset and the DICOM header reader
// go through the helpers below, so one vocabulary reaches the manifest.

/// Normalises a sex cell to `F` or `M`; anything else (`Unknown`, `O`, empty) is `None`.
pub fn normalise_sex(raw: &str) -> Option<String> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "F" | "FEMALE" => Some("F".into()),
        "M" | "MALE" => Some("M".into()),
        _ => None,
    }
}

/// Ages above this many years are data errors (NIH's 2017 file lists a few
/// patients aged 412) and count as unknown.
pub const MAX_AGE_YEARS: f64 = 120.0;

/// One parsed age cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Age {
    /// The cell is empty (or `nan`/`None`).
    Missing,
    /// A plausible age in years (0 to [`MAX_AGE_YEARS`]).
    Years(f32),
    /// A value was there but is unparsable, negative or above [`MAX_AGE_YEARS`];
    /// presets count these in their notes.
    Rejected,
}

impl Age {
    /// A computed age in years, range-checked.
    pub fn from_years(years: f64) -> Age {
        if years.is_finite() && (0.0..=MAX_AGE_YEARS).contains(&years) {
            Age::Years(years as f32)
        } else {
            Age::Rejected
        }
    }

    /// The age in years, `None` when missing or rejected.
    pub fn years(self) -> Option<f32> {
        match self {
            Age::Years(y) => Some(y),
            _ => None,
        }
    }
}

/// Parses an age cell: plain years (`57`, `57.0`, `45.5`) or a DICOM age string
/// (`045Y`, `006M`, `010W`, `003D`; months are twelfths of a year, weeks and
/// days are converted with 365.25 days a year).
pub fn parse_age(raw: &str) -> Age {
    let s = raw.trim();
    if s.is_empty() || matches!(s, "nan" | "NaN" | "None") {
        return Age::Missing;
    }
    let unit = s.as_bytes()[s.len() - 1].to_ascii_uppercase();
    let (number, to_years): (&str, fn(f64) -> f64) = match unit {
        b'Y' => (&s[..s.len() - 1], |v| v),
        b'M' => (&s[..s.len() - 1], |v| v / 12.0),
        b'W' => (&s[..s.len() - 1], |v| v * 7.0 / 365.25),
        b'D' => (&s[..s.len() - 1], |v| v / 365.25),
        _ => (s, |v| v),
    };
    match number.trim().parse::<f64>() {
        Ok(v) => Age::from_years(to_years(v)),
        Err(_) => Age::Rejected,
    }
}

/// The year of a `YYYYMMDD` date (DICOM `DA`, also with a `.0` suffix a
/// spreadsheet may add); `None` when the cell is not such a date.
pub fn year_of_date(raw: &str) -> Option<i32> {
    let s = raw.trim();
    let s = s.strip_suffix(".0").unwrap_or(s);
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s[..4].parse().ok()
}

/// A year cell (`1930`, `1930.0`); `None` when empty, `None`, or not a whole year.
pub fn parse_year(raw: &str) -> Option<i32> {
    let v: f64 = raw.trim().parse().ok()?;
    (v.is_finite() && v.fract() == 0.0 && (1000.0..=9999.0).contains(&v)).then_some(v as i32)
}

/// The note a preset records about its age column: how many present values
/// were unusable and became unknown.
pub fn rejected_ages_note(what: &str, rejected: usize) -> String {
    format!(
        "age from {what}: {rejected} values unparsable, negative or above {MAX_AGE_YEARS} years treated as unknown"
    )
}

/// The subgroup attributes of one image that can come from a label file or
/// from the image's own header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subgroups {
    /// `F` or `M`.
    pub sex: Option<String>,
    /// Years.
    pub age: Option<f32>,
    /// `PA`, `AP`, `LATERAL` or `UNKNOWN`.
    pub view: Option<String>,
}

impl Subgroups {
    /// `self`, with what it lacks taken from `fallback` (the label file's
    /// values win over the image header's).
    pub fn or(self, fallback: &Subgroups) -> Subgroups {
        Subgroups {
            sex: self.sex.or_else(|| fallback.sex.clone()),
            age: self.age.or(fallback.age),
            view: self.view.or_else(|| fallback.view.clone()),
        }
    }
}

impl Record {
    /// The record's own sex, age and view.
    pub fn subgroups(&self) -> Subgroups {
        Subgroups {
            sex: self.sex.clone(),
            age: self.age,
            view: self.view.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sex_vocabulary() {
        for (raw, want) in [
            ("M", Some("M")),
            (" f ", Some("F")),
            ("Male", Some("M")),
            ("Female", Some("F")),
            ("Unknown", None),
            ("O", None),
            ("", None),
            ("nan", None),
        ] {
            assert_eq!(normalise_sex(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn ages_plain_and_dicom() {
        assert_eq!(parse_age("57"), Age::Years(57.0));
        assert_eq!(parse_age("45.5"), Age::Years(45.5));
        assert_eq!(parse_age(" 0 "), Age::Years(0.0));
        assert_eq!(parse_age("120"), Age::Years(120.0));
        assert_eq!(parse_age("045Y"), Age::Years(45.0));
        assert_eq!(parse_age("006M"), Age::Years(0.5));
        assert_eq!(parse_age("010W"), Age::Years((70.0 / 365.25) as f32));
        assert_eq!(parse_age("003D"), Age::Years((3.0 / 365.25) as f32));
        for missing in ["", "  ", "nan", "None"] {
            assert_eq!(parse_age(missing), Age::Missing, "{missing:?}");
        }
        for bad in ["412", "-1", "121Y", "abc", "Y", "45X", "inf"] {
            assert_eq!(parse_age(bad), Age::Rejected, "{bad:?}");
        }
        assert_eq!(parse_age("412").years(), None);
        assert_eq!(Age::from_years(2015.0 - 1930.0), Age::Years(85.0));
        assert_eq!(Age::from_years(-2.0), Age::Rejected);
    }

    #[test]
    fn dates_and_years() {
        assert_eq!(year_of_date("20140915"), Some(2014));
        assert_eq!(year_of_date("21800506.0"), Some(2180));
        assert_eq!(year_of_date("2014-09-15"), None);
        assert_eq!(year_of_date(""), None);
        assert_eq!(parse_year("1930.0"), Some(1930));
        assert_eq!(parse_year("1930"), Some(1930));
        assert_eq!(parse_year("None"), None);
        assert_eq!(parse_year(""), None);
        assert_eq!(parse_year("1930.5"), None);
    }

    #[test]
    fn label_values_win_over_header_values() {
        let label = Subgroups {
            sex: Some("F".into()),
            age: None,
            view: Some("UNKNOWN".into()),
        };
        let header = Subgroups {
            sex: Some("M".into()),
            age: Some(45.0),
            view: Some("PA".into()),
        };
        assert_eq!(
            label.or(&header),
            Subgroups {
                sex: Some("F".into()),
                age: Some(45.0),
                view: Some("UNKNOWN".into()),
            }
        );
        assert_eq!(Subgroups::default().or(&header), header);
    }
}
