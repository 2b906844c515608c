//! Pulmonary edema severity (PhysioNet `mimic-cxr-pe-severity`): study-level
//! `regex_report_edema_severity.csv` (`subject_id`, `study_id`, `edema_severity`
//! 0-3) mapped to frontal images through MIMIC-CXR's
//! `mimic-cxr-2.0.0-metadata.csv`; images `files/p<2>/p<subject>/s<study>/<dicom_id>.jpg`.

use std::collections::HashMap;
use std::path::Path;

use crate::csv_source::{Csv, find_file};
use crate::error::Result;
use crate::labels::{GroupLevel, LabelTable, Record, Task, normalise_view};

/// Paper task: 4 ordinal classes as one multiclass column (0 none, 1 vascular
/// congestion, 2 interstitial, 3 alveolar), frontal images of the regex-labelled
/// studies, patient-level 60/20/20 on `subject_id`.
pub fn load(root: &Path) -> Result<LabelTable> {
    let lpath = find_file(root, "regex_report_edema_severity", &[".csv", ".csv.gz"])?;
    let mpath = find_file(root, "mimic-cxr-2.0.0-metadata", &[".csv", ".csv.gz"])?;
    let labels = Csv::read(&lpath)?;
    let (ls, lst, lg) = (
        labels.col("subject_id")?,
        labels.col("study_id")?,
        labels.col("edema_severity")?,
    );
    let mut grade: HashMap<String, (String, u32)> = HashMap::new();
    for (i, r) in labels.rows.iter().enumerate() {
        let g: u32 = match r[lg].trim().parse() {
            Ok(g @ 0..=3) => g,
            _ => {
                return Err(
                    labels.err(i, format!("edema_severity must be 0-3, found {:?}", &r[lg]))
                );
            }
        };
        if grade
            .insert(r[lst].trim().to_string(), (r[ls].trim().to_string(), g))
            .is_some()
        {
            return Err(labels.err(i, format!("duplicate study_id {}", &r[lst])));
        }
    }
    let meta = Csv::read(&mpath)?;
    let (md, mst, mv) = (
        meta.col("dicom_id")?,
        meta.col("study_id")?,
        meta.col("ViewPosition")?,
    );
    let classes = [
        "0 none",
        "1 vascular congestion",
        "2 interstitial edema",
        "3 alveolar edema",
    ];
    let mut t = LabelTable::new(
        "edema",
        Task::Multiclass,
        classes.map(String::from).to_vec(),
        GroupLevel::Patient,
    );
    t.sources = vec![lpath, mpath];
    let mut non_frontal = 0;
    for (i, r) in meta.rows.iter().enumerate() {
        let Some((subject, g)) = grade.get(r[mst].trim()) else {
            continue;
        };
        let view = normalise_view(&r[mv]);
        if view != "PA" && view != "AP" {
            non_frontal += 1;
            continue;
        }
        let (dicom, study) = (r[md].trim(), r[mst].trim());
        let prefix = format!("files/p{}/p{subject}", subject.get(..2).unwrap_or(subject));
        t.records.push(Record {
            id: dicom.to_string(),
            group: subject.clone(),
            source_path: meta.image_path(i, format!("{prefix}/s{study}/{dicom}.jpg"))?,
            class: Some(*g),
            study_id: Some(study.to_string()),
            view: Some(view),
            ..Default::default()
        });
    }
    t.notes.push(format!(
        "regex report labels (study-level) copied to the study's frontal images; {non_frontal} non-frontal images left out"
    ));
    Ok(t)
}
