//! Reading label CSVs (plain or gzip) with row-numbered errors, and the generic
//! `--csv` conversion source.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use cxr_stats::csv_bound::{BoundedCsv, record_too_long};

use crate::error::{DataError, Result};
use crate::labels::{GroupLevel, LabelState, LabelTable, Record, Split, Task};

/// A parsed CSV: header and records, each with its 1-based line number.
#[derive(Debug, Clone)]
pub struct Csv {
    /// The file.
    pub path: PathBuf,
    /// Column names (trimmed of a UTF-8 BOM only; spaces kept).
    pub headers: Vec<String>,
    /// Data rows.
    pub rows: Vec<csv::StringRecord>,
    /// Line of each row.
    pub lines: Vec<u64>,
}

/// A CSV reader of `path` (gzip when it ends in `.gz`) with `delimiter`,
/// whose records are bounded at [`MAX_CSV_RECORD_BYTES`](cxr_stats::csv_bound::MAX_CSV_RECORD_BYTES): a file without
/// line breaks fails after a megabyte instead of being read whole.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be opened.
pub fn open_bounded(path: &Path, delimiter: u8) -> Result<csv::Reader<impl Read>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    Ok(csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(BoundedCsv::new(reader, delimiter)))
}

/// The error of reading a record of `path`: [`DataError::RecordTooLong`]
/// past the bound, else `other` of the `csv` crate's error.
pub fn csv_error(
    path: &Path,
    e: csv::Error,
    other: impl FnOnce(csv::Error) -> DataError,
) -> DataError {
    match record_too_long(&e) {
        Some(t) => DataError::RecordTooLong {
            path: path.to_path_buf(),
            line: t.line,
            limit: t.limit,
        },
        None => other(e),
    }
}

impl Csv {
    /// Reads `path` (gzip when it ends in `.gz`) with `delimiter`.
    ///
    /// # Errors
    /// [`DataError::RecordTooLong`] for a record longer than
    /// [`MAX_CSV_RECORD_BYTES`](cxr_stats::csv_bound::MAX_CSV_RECORD_BYTES); [`DataError::Row`] for a malformed row.
    pub fn read_with(path: &Path, delimiter: u8) -> Result<Csv> {
        let mut rdr = open_bounded(path, delimiter)?;
        let headers: Vec<String> = rdr
            .headers()
            .map_err(|e| csv_error(path, e, |e| DataError::layout(path, e)))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_string())
            .collect();
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| {
                csv_error(path, e, |e| {
                    let line = e.position().map_or(0, |p| p.line());
                    DataError::row(path, line, e)
                })
            })?;
            lines.push(rec.position().map_or(0, |p| p.line()));
            rows.push(rec);
        }
        Ok(Csv {
            path: path.to_path_buf(),
            headers,
            rows,
            lines,
        })
    }

    /// Reads a comma-separated file.
    pub fn read(path: &Path) -> Result<Csv> {
        Self::read_with(path, b',')
    }

    /// Index of column `name` (exact match, else match ignoring surrounding spaces).
    ///
    /// # Errors
    /// [`DataError::Layout`] when the column is missing;
    /// [`DataError::DuplicateColumn`] when the header names it twice.
    pub fn col(&self, name: &str) -> Result<usize> {
        self.opt_col(name)?.ok_or_else(|| {
            DataError::layout(
                &self.path,
                format!(
                    "missing column {name:?} (columns: {})",
                    self.headers.join(", ")
                ),
            )
        })
    }

    /// Index of column `name` as [`Csv::col`], or `None` when the file has no
    /// such column (optional columns).
    ///
    /// # Errors
    /// [`DataError::DuplicateColumn`] when the header names it twice.
    pub fn opt_col(&self, name: &str) -> Result<Option<usize>> {
        // A column the reader uses must be named once: with two, taking the
        // first silently reads whichever the publisher (or an edit) put first.
        // Names are compared ignoring surrounding spaces, as the fallback
        // lookup below matches them. Repeats of columns no reader asks for
        // are left alone, as publishers' files may carry such columns.
        let matches: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.trim() == name.trim())
            .map(|(i, _)| i)
            .collect();
        if matches.len() > 1 {
            return Err(DataError::DuplicateColumn {
                path: self.path.clone(),
                column: name.to_string(),
                positions: matches.iter().map(|i| i + 1).collect(),
            });
        }
        Ok(self
            .headers
            .iter()
            .position(|h| h == name)
            .or_else(|| matches.first().copied()))
    }

    /// A row-numbered error for row `i`.
    pub fn err(&self, i: usize, reason: impl ToString) -> DataError {
        DataError::row(&self.path, self.lines[i], reason)
    }

    /// `path`, the image of row `i`, when it stays under the image root.
    ///
    /// # Errors
    /// [`DataError::Row`] naming the row when [`leaves_root`] says it leaves.
    pub fn image_path(&self, i: usize, path: String) -> Result<String> {
        match leaves_root(&path) {
            Some(why) => Err(self.err(i, outside_root(&path, why))),
            None => Ok(path),
        }
    }
}

/// Why `path`, an image path read from a label file, leaves the image root
/// it is joined to: it is absolute (`Path::join` would drop the root), or a
/// `..` climbs above where it started. `None` when it stays inside. The check
/// is on the text alone: a symbolic link under the root may point anywhere,
/// as a dataset laid out with links needs. No publisher's layout (the
/// presets) lists such paths, so one in a label file is an error or an
/// attempt to read files outside the dataset.
pub fn leaves_root(path: &str) -> Option<&'static str> {
    let mut depth = 0usize;
    for part in Path::new(path).components() {
        match part {
            Component::Prefix(_) | Component::RootDir => return Some("is absolute"),
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return Some("climbs out of the image root with '..'"),
            },
            Component::Normal(_) => depth += 1,
        }
    }
    None
}

/// The message of an image path that [`leaves_root`].
pub fn outside_root(path: &str, why: &str) -> String {
    format!(
        "image path {path:?} {why}; image paths must be relative to the image root and stay under it"
    )
}

/// Finds the first file in `dir` whose name starts with `prefix` and ends with
/// one of `suffixes` (publishers' versioned names, plus `.gz` copies).
pub fn find_file(dir: &Path, prefix: &str, suffixes: &[&str]) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with(prefix) && suffixes.iter().any(|s| name.ends_with(s))
        })
        .collect();
    found.sort();
    found.into_iter().next_back().ok_or_else(|| {
        DataError::layout(
            dir,
            format!(
                "no file named {prefix}*{} found",
                suffixes.first().copied().unwrap_or("")
            ),
        )
    })
}

/// Settings of a generic CSV conversion.
#[derive(Debug, Clone)]
pub struct CsvSpec {
    /// The CSV.
    pub csv: PathBuf,
    /// Column holding image paths (relative to the image root).
    pub path_column: String,
    /// Label columns (one for multiclass).
    pub label_columns: Vec<String>,
    /// Task type.
    pub task: Task,
    /// Column with patient ids, for patient-disjoint splits.
    pub patient_column: Option<String>,
    /// Column with a fixed split (`train`, `val`/`valid`/`validate`, `test`).
    pub split_column: Option<String>,
}

/// Parses a split cell.
pub fn parse_split(s: &str) -> Option<Split> {
    match s.trim().to_ascii_lowercase().as_str() {
        "train" | "training" => Some(Split::Train),
        "val" | "valid" | "validate" | "validation" => Some(Split::Val),
        "test" | "testing" => Some(Split::Test),
        _ => None,
    }
}

/// Reads a generic label CSV into a table.
pub fn read_generic(spec: &CsvSpec) -> Result<LabelTable> {
    let csv = Csv::read(&spec.csv)?;
    if spec.label_columns.is_empty() {
        return Err(DataError::Config(
            "--label-columns needs at least one column".into(),
        ));
    }
    if spec.task == Task::Multiclass && spec.label_columns.len() != 1 {
        return Err(DataError::Config(
            "a multiclass task takes exactly one label column".into(),
        ));
    }
    if spec.task == Task::Binary && spec.label_columns.len() != 1 {
        return Err(DataError::Config(
            "a binary task takes exactly one label column (use multilabel)".into(),
        ));
    }
    let pc = csv.col(&spec.path_column)?;
    let lcs: Vec<usize> = spec
        .label_columns
        .iter()
        .map(|c| csv.col(c))
        .collect::<Result<_>>()?;
    let patient = spec
        .patient_column
        .as_deref()
        .map(|c| csv.col(c))
        .transpose()?;
    let split = spec
        .split_column
        .as_deref()
        .map(|c| csv.col(c))
        .transpose()?;
    let level = if patient.is_some() {
        GroupLevel::Patient
    } else {
        GroupLevel::Image
    };
    let name = spec
        .csv
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "csv".into());

    let classes: Vec<String> = if spec.task == Task::Multiclass {
        let set: BTreeSet<String> = csv
            .rows
            .iter()
            .map(|r| r[lcs[0]].trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let mut v: Vec<String> = set.into_iter().collect();
        if v.iter().all(|x| x.parse::<f64>().is_ok()) {
            v.sort_by(|a, b| {
                a.parse::<f64>()
                    .unwrap_or(0.0)
                    .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
            });
        }
        v
    } else {
        spec.label_columns.clone()
    };
    let class_index: HashMap<&str, u32> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let mut t = LabelTable::new(&name, spec.task, classes.clone(), level);
    t.sources.push(spec.csv.clone());
    if level == GroupLevel::Image {
        t.notes
            .push("no --patient-column: splits are image-level".into());
    }
    for (i, r) in csv.rows.iter().enumerate() {
        let path = r[pc].trim().to_string();
        if path.is_empty() {
            return Err(csv.err(i, format!("empty {}", spec.path_column)));
        }
        let path = csv.image_path(i, path)?;
        let mut rec = Record {
            id: path.clone(),
            source_path: path.clone(),
            ..Default::default()
        };
        rec.group = patient.map_or_else(|| path.clone(), |c| r[c].trim().to_string());
        if let Some(c) = split {
            rec.fixed_split = Some(
                parse_split(&r[c])
                    .ok_or_else(|| csv.err(i, format!("unknown split {:?}", &r[c])))?,
            );
        }
        if spec.task == Task::Multiclass {
            let v = r[lcs[0]].trim();
            rec.class = if v.is_empty() {
                None
            } else {
                Some(class_index[v])
            };
        } else {
            for (&c, name) in lcs.iter().zip(&spec.label_columns) {
                let s = LabelState::parse(&r[c]).ok_or_else(|| {
                    csv.err(
                        i,
                        format!(
                            "column {name:?}: label value {:?} is not 1, 0, -1 or empty",
                            &r[c]
                        ),
                    )
                })?;
                rec.labels.push(s);
            }
        }
        t.records.push(rec);
    }
    Ok(t)
}
