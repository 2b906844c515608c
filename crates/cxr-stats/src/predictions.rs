//! The predictions file: long-format CSV with one row per (image, label),
//! columns `id,label,target,score` (extra columns ignored), read into a dense
//! label x image matrix.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;

use crate::StatsError;

/// Predictions of one model: for every label, a target (or unknown) and a
/// score per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Image identifiers, in order of first appearance.
    pub ids: Vec<String>,
    /// Label names, in order of first appearance.
    pub labels: Vec<String>,
    /// `targets[label][image]`; `None` when unknown or when no row was given.
    pub targets: Vec<Vec<Option<bool>>>,
    /// `scores[label][image]`; NaN exactly where no row was given.
    pub scores: Vec<Vec<f64>>,
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
        let err = |msg: String| StatsError::Parse(format!("{name}: {msg}"));
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(reader);
        let header = rdr
            .headers()
            .map_err(|e| err(format!("cannot read header: {e}")))?
            .clone();
        if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
            return Err(err(
                "file is empty (expected a header id,label,target,score)".into(),
            ));
        }
        let mut col = [0usize; 4];
        let mut missing = Vec::new();
        for (k, want) in REQUIRED.iter().enumerate() {
            match header.iter().position(|h| h.trim() == *want) {
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

        let mut id_index: HashMap<String, usize> = HashMap::new();
        let mut label_index: HashMap<String, usize> = HashMap::new();
        let mut rows: Vec<(usize, usize, Option<bool>, f64)> = Vec::new();
        let mut seen: HashSet<(usize, usize)> = HashSet::new();
        let mut p = Self {
            ids: vec![],
            labels: vec![],
            targets: vec![],
            scores: vec![],
        };
        let mut record = csv::StringRecord::new();
        while rdr
            .read_record(&mut record)
            .map_err(|e| err(format!("malformed CSV: {e}")))?
        {
            let line = record.position().map_or(0, |pos| pos.line());
            let id = record[col[0]].trim();
            let label = record[col[1]].trim();
            if id.is_empty() || label.is_empty() {
                return Err(err(format!("line {line}: empty id or label")));
            }
            let target = parse_target(&record[col[2]]).ok_or_else(|| {
                err(format!(
                    "line {line}: target '{}' is not 1, 0, empty or nan",
                    &record[col[2]]
                ))
            })?;
            let raw_score = record[col[3]].trim();
            let score: f64 = raw_score
                .parse()
                .map_err(|_| err(format!("line {line}: score '{raw_score}' is not a number")))?;
            if !score.is_finite() {
                return Err(err(format!(
                    "line {line}: score '{raw_score}' is not finite (scores must be real numbers)"
                )));
            }
            let i = intern(&mut id_index, &mut p.ids, id);
            let j = intern(&mut label_index, &mut p.labels, label);
            if !seen.insert((i, j)) {
                return Err(err(format!(
                    "line {line}: duplicate row for id '{id}', label '{label}'"
                )));
            }
            rows.push((i, j, target, score));
        }
        if rows.is_empty() {
            return Err(err("no prediction rows after the header".into()));
        }
        p.targets = vec![vec![None; p.ids.len()]; p.labels.len()];
        p.scores = vec![vec![f64::NAN; p.ids.len()]; p.labels.len()];
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
        let file = std::fs::File::open(path)
            .map_err(|e| StatsError::Parse(format!("{name}: cannot open: {e}")))?;
        Self::from_reader(std::io::BufReader::new(file), &name)
    }

    /// Writes the long format (rows without a score are omitted).
    ///
    /// # Errors
    /// On I/O failure.
    pub fn write_to<W: Write>(&self, writer: W) -> std::io::Result<()> {
        let mut w = csv::Writer::from_writer(writer);
        w.write_record(REQUIRED)?;
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
                w.write_record([&self.ids[i], &self.labels[j], t, &format!("{s}")])?;
            }
        }
        w.flush()
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
        let show = |v: &[String]| {
            let head: Vec<&str> = v.iter().take(5).map(String::as_str).collect();
            let more = if v.len() > 5 {
                format!(" and {} more", v.len() - 5)
            } else {
                String::new()
            };
            format!("{}{more}", head.join(", "))
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
        let mut aligned = Predictions {
            ids: self.ids.clone(),
            labels: self.labels.clone(),
            targets: vec![vec![None; self.ids.len()]; self.labels.len()],
            scores: vec![vec![f64::NAN; self.ids.len()]; self.labels.len()],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Predictions, StatsError> {
        Predictions::from_reader(text.as_bytes(), "p.csv")
    }

    #[test]
    fn reads_long_format() {
        let p = parse(
            "id,label,target,score,extra\n\
             a,X,1,0.8,z\n a,Y,0,0.1,z\n b,X,,0.4,z\n b,Y,nan,-3,z\n",
        )
        .unwrap();
        assert_eq!(p.ids, ["a", "b"]);
        assert_eq!(p.labels, ["X", "Y"]);
        assert_eq!(p.targets[0], [Some(true), None]);
        assert_eq!(p.targets[1], [Some(false), None]);
        assert_eq!(p.scores[1], [0.1, -3.0]);
        let mut out = Vec::new();
        p.write_to(&mut out).unwrap();
        assert_eq!(parse(std::str::from_utf8(&out).unwrap()).unwrap(), p);
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_input_is_named() {
        assert!(error_of("").contains("empty"));
        assert!(error_of("id,label,target,score\n").contains("no prediction rows"));
        assert!(error_of("id,label,score\na,X,1\n").contains("missing column(s) target"));
        assert!(error_of("id,label,target,score\na,X,1,high\n").contains("line 2: score 'high'"));
        assert!(error_of("id,label,target,score\na,X,1,NaN\n").contains("not finite"));
        assert!(error_of("id,label,target,score\na,X,1,inf\n").contains("not finite"));
        assert!(error_of("id,label,target,score\na,X,2,0.1\n").contains("target '2'"));
        assert!(
            error_of("id,label,target,score\na,X,1,0.1\na,X,0,0.2\n")
                .contains("line 3: duplicate row for id 'a', label 'X'")
        );
        assert!(error_of("id,label,target,score\na,X,1\n").contains("malformed"));
    }

    #[test]
    fn align_reorders_and_names_differences() {
        let a = parse("id,label,target,score\na,X,1,0.9\nb,X,0,0.1\n").unwrap();
        let b = parse("id,label,target,score\nb,X,0,0.3\na,X,1,0.2\n").unwrap();
        let al = a.align(&b).unwrap();
        assert_eq!(al.scores[0], [0.2, 0.3]);
        let c = parse("id,label,target,score\na,X,1,0.9\nc,X,0,0.1\n").unwrap();
        let e = a.align(&c).unwrap_err().to_string();
        assert!(e.contains("only in the model file: b"), "{e}");
        assert!(e.contains("only in the baseline file: c"), "{e}");
        let d = parse("id,label,target,score\na,X,0,0.9\nb,X,0,0.1\n").unwrap();
        assert!(a.align(&d).unwrap_err().to_string().contains("a/X"));
        let f = parse("id,label,target,score\na,Y,1,0.9\nb,Y,0,0.1\n").unwrap();
        assert!(
            a.align(&f)
                .unwrap_err()
                .to_string()
                .contains("label(s) only")
        );
    }
}
