//! BRAX: `master_spreadsheet_update.csv` with the 14 CheXpert-labeller columns,
//! `PngPath` (starting with `images/`), `PatientID`, `AccessionNumber`, `ViewPosition`,
//! `PatientSex`.

use std::path::Path;

use super::chexpert::{LABELS, chexpert_policy};
use crate::csv_source::{Csv, find_file};
use crate::error::Result;
use crate::labels::{
    GroupLevel, LabelState, LabelTable, Record, Task, normalise_sex, normalise_view,
};

/// Paper task: 14 labels (uncertain -1 kept as a state; manifest policy as
/// CheXpert), all views, thin strips (aspect ratio > 10) dropped, patient-level 60/20/20.
pub fn load(root: &Path) -> Result<LabelTable> {
    let path = find_file(root, "master_spreadsheet", &[".csv", ".csv.gz"])?;
    let csv = Csv::read(&path)?;
    let (cpng, cpat, cacc, cview) = (
        csv.col("PngPath")?,
        csv.col("PatientID")?,
        csv.col("AccessionNumber")?,
        csv.col("ViewPosition")?,
    );
    let dims = csv.opt_col("Rows")?.zip(csv.opt_col("Columns")?);
    let csex = csv.opt_col("PatientSex")?;
    let cols: Vec<usize> = LABELS.iter().map(|l| csv.col(l)).collect::<Result<_>>()?;
    let mut t = LabelTable::new(
        "brax",
        Task::Multilabel,
        LABELS.map(String::from).to_vec(),
        GroupLevel::Patient,
    );
    t.policy = chexpert_policy();
    t.sources.push(path.clone());
    let mut strips = 0;
    for (i, r) in csv.rows.iter().enumerate() {
        if let Some((cr, cc)) = dims {
            let (h, w) = (
                r[cr].trim().parse::<f64>().unwrap_or(0.0),
                r[cc].trim().parse::<f64>().unwrap_or(0.0),
            );
            if h > 0.0 && w > 0.0 && h.max(w) / h.min(w) > 10.0 {
                strips += 1;
                continue;
            }
        }
        let mut labels = Vec::with_capacity(LABELS.len());
        for (&c, name) in cols.iter().zip(LABELS) {
            labels.push(LabelState::parse(&r[c]).ok_or_else(|| {
                csv.err(i, format!("column {name:?}: unexpected value {:?}", &r[c]))
            })?);
        }
        let png = csv.image_path(i, r[cpng].trim().to_string())?;
        t.records.push(Record {
            id: png.clone(),
            source_path: png,
            group: r[cpat].trim().to_string(),
            labels,
            study_id: Some(r[cacc].trim().to_string()),
            view: Some(normalise_view(&r[cview])),
            sex: csex.and_then(|c| normalise_sex(&r[c])),
            ..Default::default()
        });
    }
    t.notes.push(format!(
        "{strips} thin-strip images (aspect ratio > 10) dropped; all views kept"
    ));
    t.notes.push(
        "label policy: -1 (uncertain) -> unknown, blank -> 0; raw states in labels-raw.csv".into(),
    );
    t.notes.push(
        "sex from `PatientSex`, view from `ViewPosition`; `PatientAge` not used: it is not a plain \
         number of years for every patient (e.g. \"85 or more\")"
            .into(),
    );
    Ok(t)
}
