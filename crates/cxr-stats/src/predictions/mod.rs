//! The predictions file: long-format CSV with one row per (image, label),
//! columns `id,label,target,score`, read into a dense label x image matrix.
//!
//! Optional per-image columns: `patient_id` (the unit a patient-level
//! bootstrap resamples) and the subgroup columns `sex`, `age`, `view`,
//! `site` (or any other column asked for by name). Each must hold the same
//! value on every row of an image; an empty cell is unknown. Other columns
//! are ignored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;

use crate::StatsError;
use crate::csv_bound::{BoundedCsv, record_too_long};

/// Predictions of one model: for every label, a target (or unknown) and a
/// score per image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Predictions {
    /// Image identifiers, in order of first appearance.
    pub ids: Vec<String>,
    /// Label names, in order of first appearance.
    pub labels: Vec<String>,
    /// `targets[label][image]`; `None` when unknown or when no row was given.
    pub targets: Vec<Vec<Option<bool>>>,
    /// `scores[label][image]`; NaN exactly where no row was given.
    pub scores: Vec<Vec<f64>>,
    /// The patient of every image, when known (a `patient_id` column, or
    /// joined from a store with [`Predictions::join`]).
    pub patients: Option<Vec<String>>,
    /// Per-image attributes by column name (`sex`, `age`, `view`, `site`,
    /// ...), `None` where unknown.
    pub attributes: BTreeMap<String, Vec<Option<String>>>,
}

/// The subgroup columns read whenever a predictions file has them.
pub const SUBGROUP_COLUMNS: [&str; 4] = ["sex", "age", "view", "site"];

/// The column holding each image's patient.
pub const PATIENT_COLUMN: &str = "patient_id";

/// Per-image metadata from another source (a store's manifest), joined on
/// the image id by [`Predictions::join`].
#[derive(Debug, Clone, Default)]
pub struct ImageMetadata {
    /// The source, for messages (e.g. the store's directory).
    pub source: String,
    /// Image id -> patient id.
    pub patients: HashMap<String, String>,
    /// Column -> (image id -> value); images without a value are unknown.
    pub attributes: BTreeMap<String, HashMap<String, String>>,
}

const REQUIRED: [&str; 4] = ["id", "label", "target", "score"];

fn parse_target(field: &str) -> Option<Option<bool>> {
    match field.trim() {
        "" => Some(None),
        "1" | "1.0" => Some(Some(true)),
        "0" | "0.0" => Some(Some(false)),
        t if t.eq_ignore_ascii_case("nan") => Some(None),
        _ => None,
    }
}

/// Position of `key` in `names`, appending it on first sight (no allocation
/// for keys already seen: this runs once per CSV row).
fn intern(index: &mut HashMap<String, usize>, names: &mut Vec<String>, key: &str) -> usize {
    if let Some(&i) = index.get(key) {
        return i;
    }
    names.push(key.to_owned());
    index.insert(key.to_owned(), names.len() - 1);
    names.len() - 1
}

impl Predictions {
    /// Reads a predictions file. `name` is used in error messages.
    ///
    /// # Errors
    /// [`StatsError::Parse`] naming the file and line for a missing header or
    /// column, a bad target, a non-numeric or non-finite score, a duplicate
    /// (id, label) pair, or an empty file.
    pub fn from_reader<R: Read>(reader: R, name: &str) -> Result<Self, StatsError> {
        Self::from_reader_with(reader, name, &[])
    }

    /// Reads a predictions file, keeping the per-image columns
    /// `patient_id`, [`SUBGROUP_COLUMNS`] and `extra` when present.
    ///
    /// # Errors
    /// As [`Predictions::from_reader`], and naming the line and image when a
    /// per-image column differs between two rows of the same image or
    /// `patient_id` is empty.
    pub fn from_reader_with<R: Read>(
        reader: R,
        name: &str,
        extra: &[&str],
    ) -> Result<Self, StatsError> {
        let err = |reason: String| StatsError::Parse {
            file: name.to_owned(),
            line: None,
            reason,
        };
        let at_line = |line: u64, reason: String| StatsError::Parse {
            file: name.to_owned(),
            line: Some(line),
            reason,
        };
        // A record past MAX_CSV_RECORD_BYTES (a file without line breaks,
        // /dev/zero) fails there, naming its line, instead of being read in full.
        let too_long = |e: &csv::Error| {
            record_too_long(e).map(|t| {
                at_line(
                    t.line,
                    format!(
                        "line longer than {} bytes (MAX_CSV_RECORD_BYTES): not a predictions CSV",
                        t.limit
                    ),
                )
            })
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(BoundedCsv::new(reader, b','));
        let header = rdr
            .headers()
            .map_err(|e| too_long(&e).unwrap_or_else(|| err(format!("cannot read header: {e}"))))?
            .clone();
        if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
            return Err(err(
                "file is empty (expected a header id,label,target,score)".into(),
            ));
        }
        // A column read here must be named once: with two, the first was
        // taken silently, whichever of them the writer meant.
        let find = |want: &str| -> Result<Option<usize>, StatsError> {
            let at: Vec<usize> = (0..header.len())
                .filter(|&i| header[i].trim() == want)
                .collect();
            if at.len() > 1 {
                return Err(err(format!(
                    "column '{want}' appears {} times in the header (columns {}); \
                     rename or remove the extra ones",
                    at.len(),
                    at.iter()
                        .map(|i| (i + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(at.first().copied())
        };
        let mut col = [0usize; 4];
        let mut missing = Vec::new();
        for (k, want) in REQUIRED.iter().enumerate() {
            match find(want)? {
                Some(i) => col[k] = i,
                None => missing.push(*want),
            }
        }
        if !missing.is_empty() {
            return Err(err(format!(
                "missing column(s) {} (header is: {})",
                missing.join(", "),
                header.iter().collect::<Vec<_>>().join(",")
            )));
        }

        // Per-image columns: patient_id first, then the attributes.
        let mut per_image: Vec<(String, usize)> = Vec::new();
        for want in std::iter::once(PATIENT_COLUMN)
            .chain(SUBGROUP_COLUMNS)
            .chain(extra.iter().copied())
        {
            if per_image.iter().any(|(n, _)| n == want) {
                continue;
            }
            if let Some(i) = find(want)? {
                per_image.push((want.to_owned(), i));
            }
        }
        // values[c][image] and the line that first set it.
        let mut values: Vec<Vec<(Option<String>, u64)>> = vec![Vec::new(); per_image.len()];

        let mut id_index: HashMap<String, usize> = HashMap::new();
        let mut label_index: HashMap<String, usize> = HashMap::new();
        let mut rows: Vec<(usize, usize, Option<bool>, f64)> = Vec::new();
        let mut seen: HashSet<(usize, usize)> = HashSet::new();
        let mut p = Self::default();
        let mut record = csv::StringRecord::new();
        while rdr
            .read_record(&mut record)
            .map_err(|e| too_long(&e).unwrap_or_else(|| err(format!("malformed CSV: {e}"))))?
        {
            let line = record.position().map_or(0, |pos| pos.line());
            let id = record[col[0]].trim();
            let label = record[col[1]].trim();
            if id.is_empty() || label.is_empty() {
                return Err(at_line(line, "empty id or label".into()));
            }
            let target = parse_target(&record[col[2]]).ok_or_else(|| {
                at_line(
                    line,
                    format!("target '{}' is not 1, 0, empty or nan", &record[col[2]]),
                )
            })?;
            let raw_score = record[col[3]].trim();
            let score: f64 = raw_score
                .parse()
                .map_err(|_| at_line(line, format!("score '{raw_score}' is not a number")))?;
            if !score.is_finite() {
                return Err(at_line(
                    line,
                    format!("score '{raw_score}' is not finite (scores must be real numbers)"),
                ));
            }
            let i = intern(&mut id_index, &mut p.ids, id);
            let j = intern(&mut label_index, &mut p.labels, label);
            for (c, (column, at)) in per_image.iter().enumerate() {
                let cell = record[*at].trim();
                let value = (!cell.is_empty()).then(|| cell.to_owned());
                if value.is_none() && column == PATIENT_COLUMN {
                    return Err(at_line(
                        line,
                        format!("empty {PATIENT_COLUMN} for id '{id}'"),
                    ));
                }
                let column_values = &mut values[c];
                if i == column_values.len() {
                    column_values.push((value, line));
                } else if column_values[i].0 != value {
                    return Err(at_line(
                        line,
                        format!(
                            "id '{id}' has {column} '{}' but line {} gave '{}'",
                            value.as_deref().unwrap_or(""),
                            column_values[i].1,
                            column_values[i].0.as_deref().unwrap_or("")
                        ),
                    ));
                }
            }
            if !seen.insert((i, j)) {
                return Err(at_line(
                    line,
                    format!("duplicate row for id '{id}', label '{label}'"),
                ));
            }
            rows.push((i, j, target, score));
        }
        if rows.is_empty() {
            return Err(err("no prediction rows after the header".into()));
        }
        p.targets = vec![vec![None; p.ids.len()]; p.labels.len()];
        p.scores = vec![vec![f64::NAN; p.ids.len()]; p.labels.len()];
        for ((column, _), column_values) in per_image.into_iter().zip(values) {
            let column_values: Vec<Option<String>> =
                column_values.into_iter().map(|(v, _)| v).collect();
            if column == PATIENT_COLUMN {
                p.patients = Some(column_values.into_iter().flatten().collect());
            } else {
                p.attributes.insert(column, column_values);
            }
        }
        for (i, j, t, s) in rows {
            p.targets[j][i] = t;
            p.scores[j][i] = s;
        }
        Ok(p)
    }

    /// Reads a predictions file from disk.
    ///
    /// # Errors
    /// As [`Predictions::from_reader`], or when the file cannot be opened.
    pub fn from_path(path: &Path) -> Result<Self, StatsError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| StatsError::Parse {
            file: name.clone(),
            line: None,
            reason: format!("cannot open: {e}"),
        })?;
        Self::from_reader(std::io::BufReader::new(file), &name)
    }

    /// Writes the long format (rows without a score are omitted), with
    /// `patient_id` and the attribute columns when known.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write_to<W: Write>(&self, writer: W) -> std::io::Result<()> {
        let mut w = csv::Writer::from_writer(writer);
        let mut header: Vec<&str> = REQUIRED.to_vec();
        if self.patients.is_some() {
            header.push(PATIENT_COLUMN);
        }
        header.extend(self.attributes.keys().map(String::as_str));
        w.write_record(&header)?;
        let mut row: Vec<String> = Vec::with_capacity(header.len());
        for i in 0..self.ids.len() {
            for j in 0..self.labels.len() {
                let s = self.scores[j][i];
                if s.is_nan() {
                    continue;
                }
                let t = match self.targets[j][i] {
                    Some(true) => "1",
                    Some(false) => "0",
                    None => "",
                };
                row.clear();
                row.extend([self.ids[i].clone(), self.labels[j].clone(), t.into()]);
                row.push(format!("{s}"));
                if let Some(patients) = &self.patients {
                    row.push(patients[i].clone());
                }
                for values in self.attributes.values() {
                    row.push(values[i].clone().unwrap_or_default());
                }
                w.write_record(&row)?;
            }
        }
        w.flush()
    }

    /// Takes each image's patient and attributes from `meta`, joined on the
    /// id. Values the file already has must agree with `meta`'s.
    ///
    /// # Errors
    /// [`StatsError::Mismatch`] naming `meta.source` and (up to five of) the
    /// ids it lacks, or an id whose patient differs.
    pub fn join(&mut self, meta: &ImageMetadata) -> Result<(), StatsError> {
        let missing: Vec<String> = self
            .ids
            .iter()
            .filter(|id| !meta.patients.contains_key(*id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(StatsError::Mismatch(format!(
                "{} id(s) of the predictions are not in {}: {}",
                missing.len(),
                meta.source,
                show(&missing)
            )));
        }
        let joined: Vec<String> = self
            .ids
            .iter()
            .map(|id| meta.patients[id].clone())
            .collect();
        if let Some(own) = &self.patients
            && let Some(i) = (0..own.len()).find(|&i| own[i] != joined[i])
        {
            return Err(StatsError::Mismatch(format!(
                "id '{}' has patient_id '{}' in the predictions but '{}' in {}",
                self.ids[i], own[i], joined[i], meta.source
            )));
        }
        self.patients = Some(joined);
        for (column, map) in &meta.attributes {
            let joined: Vec<Option<String>> =
                self.ids.iter().map(|id| map.get(id).cloned()).collect();
            if let Some(own) = self.attributes.get(column)
                && let Some(i) = (0..own.len()).find(|&i| own[i].is_some() && own[i] != joined[i])
            {
                return Err(StatsError::Mismatch(format!(
                    "id '{}' has {column} '{}' in the predictions but '{}' in {}",
                    self.ids[i],
                    own[i].as_deref().unwrap_or(""),
                    joined[i].as_deref().unwrap_or(""),
                    meta.source
                )));
            }
            self.attributes.insert(column.clone(), joined);
        }
        Ok(())
    }

    /// Refuses a second predictions file of the same model (validation
    /// predictions, named `name`) whose labels are not this file's.
    ///
    /// # Errors
    /// [`StatsError::Mismatch`] naming `name` and the labels it lacks or adds.
    pub fn check_same_labels(&self, other: &Predictions, name: &str) -> Result<(), StatsError> {
        let missing: Vec<&str> = self
            .labels
            .iter()
            .filter(|l| !other.labels.contains(l))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = other
            .labels
            .iter()
            .filter(|l| !self.labels.contains(l))
            .map(String::as_str)
            .collect();
        if missing.is_empty() && extra.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("lacks label(s) {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            parts.push(format!(
                "has label(s) {} not in the test predictions",
                extra.join(", ")
            ));
        }
        Err(StatsError::Mismatch(format!(
            "{name}: {}",
            parts.join("; ")
        )))
    }

    /// Returns `other` reordered to this file's image and label order, after
    /// checking that both cover the same ids and labels with the same targets.
    ///
    /// # Errors
    /// [`StatsError::Mismatch`] naming (up to five of) the ids, labels or
    /// targets that differ.
    pub fn align(&self, other: &Predictions) -> Result<Predictions, StatsError> {
        let diff = |a: &[String], b: &[String]| -> Vec<String> {
            let set: HashSet<&String> = b.iter().collect();
            a.iter().filter(|x| !set.contains(x)).cloned().collect()
        };
        let mut problems = Vec::new();
        for (what, mine, theirs) in [
            ("label", &self.labels, &other.labels),
            ("id", &self.ids, &other.ids),
        ] {
            let only_mine = diff(mine, theirs);
            let only_theirs = diff(theirs, mine);
            if !only_mine.is_empty() {
                problems.push(format!(
                    "{} {what}(s) only in the model file: {}",
                    only_mine.len(),
                    show(&only_mine)
                ));
            }
            if !only_theirs.is_empty() {
                problems.push(format!(
                    "{} {what}(s) only in the baseline file: {}",
                    only_theirs.len(),
                    show(&only_theirs)
                ));
            }
        }
        if !problems.is_empty() {
            return Err(StatsError::Mismatch(format!(
                "model and baseline predictions differ: {}",
                problems.join("; ")
            )));
        }
        let id_pos: HashMap<&String, usize> =
            other.ids.iter().enumerate().map(|(i, x)| (x, i)).collect();
        let label_pos: HashMap<&String, usize> = other
            .labels
            .iter()
            .enumerate()
            .map(|(j, x)| (x, j))
            .collect();
        let order: Vec<usize> = self.ids.iter().map(|id| id_pos[id]).collect();
        // The per-image columns follow the images; where both files know a
        // patient they must agree (the model file's order and values win).
        let patients = match (&self.patients, &other.patients) {
            (Some(mine), Some(theirs)) => {
                if let Some(i) = (0..mine.len()).find(|&i| mine[i] != theirs[order[i]]) {
                    return Err(StatsError::Mismatch(format!(
                        "id '{}' has patient_id '{}' in the model file but '{}' in the baseline file",
                        self.ids[i], mine[i], theirs[order[i]]
                    )));
                }
                Some(mine.clone())
            }
            (Some(mine), None) => Some(mine.clone()),
            (None, Some(theirs)) => Some(order.iter().map(|&o| theirs[o].clone()).collect()),
            (None, None) => None,
        };
        let mut attributes = self.attributes.clone();
        for (column, theirs) in &other.attributes {
            attributes
                .entry(column.clone())
                .or_insert_with(|| order.iter().map(|&o| theirs[o].clone()).collect());
        }
        let mut aligned = Predictions {
            ids: self.ids.clone(),
            labels: self.labels.clone(),
            targets: vec![vec![None; self.ids.len()]; self.labels.len()],
            scores: vec![vec![f64::NAN; self.ids.len()]; self.labels.len()],
            patients,
            attributes,
        };
        let mut conflicts = Vec::new();
        for (j, label) in self.labels.iter().enumerate() {
            let oj = label_pos[label];
            for (i, id) in self.ids.iter().enumerate() {
                let oi = id_pos[id];
                let (t, s) = (other.targets[oj][oi], other.scores[oj][oi]);
                let present_mine = !self.scores[j][i].is_nan();
                let present_theirs = !s.is_nan();
                if t != self.targets[j][i] || present_mine != present_theirs {
                    conflicts.push(format!("{id}/{label}"));
                }
                aligned.targets[j][i] = t;
                aligned.scores[j][i] = s;
            }
        }
        if !conflicts.is_empty() {
            return Err(StatsError::Mismatch(format!(
                "model and baseline disagree on the targets (or presence) of {} (id/label) pair(s): {}",
                conflicts.len(),
                show(&conflicts)
            )));
        }
        Ok(aligned)
    }
}

/// Up to five items, then how many more.
fn show(v: &[String]) -> String {
    let head: Vec<&str> = v.iter().take(5).map(String::as_str).collect();
    let more = if v.len() > 5 {
        format!(" and {} more", v.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", head.join(", "))
}

#[cfg(test)]
mod tests;
