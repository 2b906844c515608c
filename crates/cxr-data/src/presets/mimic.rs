//! MIMIC-CXR-JPG: study-level `mimic-cxr-2.0.0-chexpert.csv` joined to images
//! through `mimic-cxr-2.0.0-metadata.csv`; images at
//! `files/p<2 digits>/p<subject>/s<study>/<dicom_id>.jpg`; reports, when present,
//! at `files/p<2>/p<subject>/s<study>.txt`. Sex and age come from MIMIC-IV's
//! `patients.csv[.gz]` when it is in the root or its `hosp/` (MIMIC-IV 2.x) or
//! `core/` (1.0) folder: MIMIC-CXR itself carries neither.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::chexpert::{LABELS, chexpert_policy};
use crate::csv_source::{Csv, find_file};
use crate::error::Result;
use crate::labels::{
    Age, GroupLevel, LabelState, LabelTable, Record, Task, normalise_sex, normalise_view,
    parse_age, parse_year, rejected_ages_note, year_of_date,
};

/// Where MIMIC-IV's patients table is looked for, relative to the root.
pub const PATIENT_DIRS: [&str; 3] = ["", "hosp", "core"];

/// One row of MIMIC-IV's patients table.
struct Patient {
    sex: Option<String>,
    /// `anchor_age` (years) in `anchor_year` (shifted like the study dates).
    anchor: Option<(f32, i32)>,
}

fn find_patients(root: &Path) -> Option<PathBuf> {
    PATIENT_DIRS.iter().find_map(|d| {
        ["patients.csv.gz", "patients.csv"]
            .iter()
            .map(|f| root.join(d).join(f))
            .find(|p| p.is_file())
    })
}

fn read_patients(path: &Path) -> Result<HashMap<String, Patient>> {
    let csv = Csv::read(path)?;
    let (cs, cg, ca, cy) = (
        csv.col("subject_id")?,
        csv.col("gender")?,
        csv.col("anchor_age")?,
        csv.col("anchor_year")?,
    );
    let mut out = HashMap::with_capacity(csv.rows.len());
    for (i, r) in csv.rows.iter().enumerate() {
        let anchor = parse_age(&r[ca]).years().zip(parse_year(&r[cy]));
        let p = Patient {
            sex: normalise_sex(&r[cg]),
            anchor,
        };
        if out.insert(r[cs].trim().to_string(), p).is_some() {
            return Err(csv.err(i, format!("duplicate subject_id {}", &r[cs])));
        }
    }
    Ok(out)
}

/// Age at the study: the patient's anchor age plus the years from the anchor
/// year to the study (MIMIC shifts every date of a patient by the same offset,
/// so the difference is real).
fn age_at_study(p: &Patient, study_date: Option<&str>) -> Age {
    let Some(date) = study_date.map(str::trim).filter(|d| !d.is_empty()) else {
        return Age::Missing;
    };
    match (p.anchor, year_of_date(date)) {
        (Some((age, year)), Some(study)) => {
            Age::from_years(f64::from(age) + f64::from(study - year))
        }
        _ => Age::Rejected,
    }
}

/// Pretraining corpus: 14 CheXpert-labeller labels (four states kept), every
/// image of every labelled study, patient-level 60/20/20 on `subject_id`.
pub fn load(root: &Path) -> Result<LabelTable> {
    let lpath = find_file(root, "mimic-cxr-2.0.0-chexpert", &[".csv", ".csv.gz"])?;
    let mpath = find_file(root, "mimic-cxr-2.0.0-metadata", &[".csv", ".csv.gz"])?;
    let labels_csv = Csv::read(&lpath)?;
    let lst = labels_csv.col("study_id")?;
    let cols: Vec<usize> = LABELS
        .iter()
        .map(|l| labels_csv.col(l))
        .collect::<Result<_>>()?;
    let mut by_study: HashMap<String, Vec<LabelState>> = HashMap::new();
    for (i, r) in labels_csv.rows.iter().enumerate() {
        let mut v = Vec::with_capacity(LABELS.len());
        for (&c, name) in cols.iter().zip(LABELS) {
            v.push(LabelState::parse(&r[c]).ok_or_else(|| {
                labels_csv.err(i, format!("column {name:?}: unexpected value {:?}", &r[c]))
            })?);
        }
        if by_study.insert(r[lst].trim().to_string(), v).is_some() {
            return Err(labels_csv.err(i, format!("duplicate study_id {}", &r[lst])));
        }
    }
    let meta = Csv::read(&mpath)?;
    let (md, ms, mst, mv) = (
        meta.col("dicom_id")?,
        meta.col("subject_id")?,
        meta.col("study_id")?,
        meta.col("ViewPosition")?,
    );
    let mdate = meta.opt_col("StudyDate")?;
    let ppath = find_patients(root);
    let patients = ppath.as_deref().map(read_patients).transpose()?;
    let mut t = LabelTable::new(
        "mimic",
        Task::Multilabel,
        LABELS.map(String::from).to_vec(),
        GroupLevel::Patient,
    );
    t.policy = chexpert_policy();
    t.sources = vec![lpath, mpath];
    t.sources.extend(ppath);
    let (mut unlabeled, mut unmatched, mut rejected_ages) = (0, 0, 0);
    for (i, r) in meta.rows.iter().enumerate() {
        let (dicom, subject, study) = (r[md].trim(), r[ms].trim(), r[mst].trim());
        let Some(labels) = by_study.get(study) else {
            unlabeled += 1;
            continue;
        };
        let prefix = format!("files/p{}/p{subject}", subject.get(..2).unwrap_or(subject));
        // Checked before the report beside it is looked for: ids that climb
        // out of the root would read that file from anywhere. The report's
        // path is the image's folder with `.txt`, so it stays inside too.
        let source_path = meta.image_path(i, format!("{prefix}/s{study}/{dicom}.jpg"))?;
        let report = std::fs::read_to_string(root.join(format!("{prefix}/s{study}.txt"))).ok();
        let (sex, age) = match patients.as_ref().map(|p| p.get(subject)) {
            Some(Some(p)) => (p.sex.clone(), age_at_study(p, mdate.map(|c| &r[c]))),
            Some(None) => {
                unmatched += 1;
                (None, Age::Missing)
            }
            None => (None, Age::Missing),
        };
        rejected_ages += usize::from(age == Age::Rejected);
        t.records.push(Record {
            id: dicom.to_string(),
            group: subject.to_string(),
            source_path,
            labels: labels.clone(),
            study_id: Some(study.to_string()),
            view: Some(normalise_view(&r[mv])),
            report: report.map(|s| s.trim().to_string()),
            sex,
            age: age.years(),
            ..Default::default()
        });
    }
    t.notes.push(format!("labels are study-level, copied to each image of the study; {unlabeled} images without a labelled study left out"));
    t.notes.push("label policy: -1 (uncertain) -> unknown, blank -> 0; all views kept; official split file not used".into());
    t.notes.push(if patients.is_some() {
        format!(
            "view from the metadata's `ViewPosition`; sex (`gender`) and age from MIMIC-IV's patients table: age = \
             anchor_age + (year of `StudyDate` - anchor_year), whole years, +-1 (anchor ages over 89 are published as \
             91); {unmatched} images of subjects not in the table have neither{}; {}",
            if mdate.is_some() { "" } else { "; the metadata has no StudyDate, so no ages" },
            rejected_ages_note("the anchor and study years", rejected_ages)
        )
    } else {
        "view from the metadata's `ViewPosition`; no sex or age: MIMIC-CXR carries neither. To add them, put MIMIC-IV's \
         `patients.csv.gz` (PhysioNet, module hosp) in the dataset root or its `hosp/` folder"
            .into()
    });
    Ok(t)
}
