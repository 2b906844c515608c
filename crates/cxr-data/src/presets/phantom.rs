//! The synthetic phantom layout written by `cxrlearn phantom`:
//! `images/*.png`, `labels.csv` (`path,patient_id,study_id,site,view,` + 0/1
//! findings), `reports.csv` (`study_id,findings,impression`) and
//! `ground_truth.csv` (per image: photometric, and the patient's sex and age).

use std::collections::HashMap;
use std::path::Path;

use crate::csv_source::Csv;
use crate::error::Result;
use crate::labels::{
    GroupLevel, LabelState, LabelTable, Record, Task, normalise_sex, normalise_view, parse_age,
};

const FIXED: [&str; 5] = ["path", "patient_id", "study_id", "site", "view"];

/// Reads a phantom dataset: all findings as a multilabel task, frontal views
/// only, reports joined by study, patient-level splits.
pub fn load(root: &Path) -> Result<LabelTable> {
    let labels_path = root.join("labels.csv");
    let csv = Csv::read(&labels_path)?;
    let cols: Vec<usize> = FIXED.iter().map(|c| csv.col(c)).collect::<Result<_>>()?;
    let findings: Vec<(usize, String)> = csv
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| !FIXED.contains(&h.as_str()))
        .map(|(i, h)| (i, h.clone()))
        .collect();
    // Every finding column is read: a repeated one is refused like any used column.
    for (_, h) in &findings {
        csv.col(h)?;
    }
    let reports_path = root.join("reports.csv");
    let mut reports = HashMap::new();
    let mut sources = vec![labels_path.clone()];
    if reports_path.is_file() {
        let rc = Csv::read(&reports_path)?;
        let (s, f, i) = (
            rc.col("study_id")?,
            rc.col("findings")?,
            rc.col("impression")?,
        );
        for r in &rc.rows {
            let text = format!("FINDINGS: {} IMPRESSION: {}", r[f].trim(), r[i].trim());
            reports.insert(r[s].to_string(), text);
        }
        sources.push(reports_path);
    }
    // Sites exporting MONOCHROME1 store inverted PNGs; ground_truth.csv says
    // which images, and conversion flips them back. It also holds each
    // patient's sex and age (labels.csv does not).
    let truth_path = root.join("ground_truth.csv");
    let mut inverted = std::collections::HashSet::new();
    let mut demographics: HashMap<String, (Option<String>, Option<f32>)> = HashMap::new();
    if truth_path.is_file() {
        let gt = Csv::read(&truth_path)?;
        let (p, ph) = (gt.col("path")?, gt.col("photometric")?);
        let (sex, age) = (gt.opt_col("sex")?, gt.opt_col("age")?);
        for r in &gt.rows {
            if r[ph].trim() == "MONOCHROME1" {
                inverted.insert(r[p].to_string());
            }
            demographics.insert(
                r[p].to_string(),
                (
                    sex.and_then(|c| normalise_sex(&r[c])),
                    age.and_then(|c| parse_age(&r[c]).years()),
                ),
            );
        }
        sources.push(truth_path);
    }
    let mut t = LabelTable::new(
        "phantom",
        Task::Multilabel,
        findings.iter().map(|(_, h)| h.clone()).collect(),
        GroupLevel::Patient,
    );
    t.sources = sources;
    let mut laterals = 0;
    for (i, r) in csv.rows.iter().enumerate() {
        let view = normalise_view(&r[cols[4]]);
        if view == "LATERAL" {
            laterals += 1;
            continue;
        }
        let mut labels = Vec::with_capacity(findings.len());
        for (c, name) in &findings {
            match r[*c].trim() {
                "1" => labels.push(LabelState::Positive),
                "0" => labels.push(LabelState::Negative),
                v => {
                    return Err(
                        csv.err(i, format!("column {name:?}: expected 0 or 1, found {v:?}"))
                    );
                }
            }
        }
        let study = r[cols[2]].to_string();
        let (sex, age) = demographics.get(&r[cols[0]]).cloned().unwrap_or_default();
        t.records.push(Record {
            id: r[cols[0]]
                .trim_start_matches("images/")
                .trim_end_matches(".png")
                .to_string(),
            group: r[cols[1]].to_string(),
            source_path: csv.image_path(i, r[cols[0]].to_string())?,
            labels,
            report: reports.get(&study).cloned(),
            study_id: Some(study),
            view: Some(view),
            site: Some(r[cols[3]].to_string()),
            inverted: inverted.contains(&r[cols[0]]),
            sex,
            age,
            ..Default::default()
        });
    }
    t.notes.push(format!(
        "frontal views only (PA/AP): {laterals} lateral images left out"
    ));
    t.notes
        .push("report = FINDINGS + IMPRESSION from reports.csv, joined on study_id".into());
    t.notes.push(if demographics.is_empty() {
        "site and view from labels.csv; no ground_truth.csv, so no sex or age".into()
    } else {
        "site and view from labels.csv; sex and age (whole years) from ground_truth.csv".into()
    });
    t.notes.push(format!(
        "{} images of MONOCHROME1 sites (per ground_truth.csv) inverted back to MONOCHROME2",
        t.records.iter().filter(|r| r.inverted).count()
    ));
    Ok(t)
}
