//! REFLACX: `main_data/metadata_phase_{1,2,3}.csv`, one row per reading with
//! certainty 0-5 per label, several readings for some images; images are
//! MIMIC-CXR DICOMs (`image` column, used from its `files/` part on).

use std::collections::BTreeMap;
use std::path::Path;

use crate::csv_source::Csv;
use crate::error::{DataError, Result};
use crate::labels::{Collapse, GroupLevel, LabelPolicy, LabelState, LabelTable, Record, Task};

/// Nine labels of phases 2-3 (hypothesis: the paper's nine are unpublished).
pub const LABELS: [&str; 9] = [
    "Atelectasis",
    "Consolidation",
    "Enlarged cardiac silhouette",
    "Groundglass opacity",
    "Lung nodule or mass",
    "Pleural abnormality",
    "Pneumothorax",
    "Pulmonary edema",
    "Support devices",
];

/// Readings of phases 2 and 3 (phase 1 uses another label set), aggregated per
/// image by the maximum certainty over readers: >= 3 positive, 1-2 uncertain,
/// 0 negative (manifest: uncertain -> 0); patient-level 60/20/20 on `subject_id`.
pub fn load(root: &Path) -> Result<LabelTable> {
    let mut t = LabelTable::new(
        "reflacx",
        Task::Multilabel,
        LABELS.map(String::from).to_vec(),
        GroupLevel::Patient,
    );
    t.policy = LabelPolicy {
        uncertain: Collapse::Negative,
        missing: Collapse::Unknown,
    };
    let mut images: BTreeMap<String, (String, String, Vec<u8>)> = BTreeMap::new();
    for phase in [2, 3] {
        let path = root.join(format!("main_data/metadata_phase_{phase}.csv"));
        if !path.is_file() {
            continue;
        }
        let csv = Csv::read(&path)?;
        let (cd, cs, ci) = (
            csv.col("dicom_id")?,
            csv.col("subject_id")?,
            csv.col("image")?,
        );
        let cols: Vec<usize> = LABELS.iter().map(|l| csv.col(l)).collect::<Result<_>>()?;
        for (i, r) in csv.rows.iter().enumerate() {
            let image = r[ci].trim();
            let rel = image
                .rfind("files/")
                .map(|k| &image[k..])
                .unwrap_or(image)
                .to_string();
            let rel = csv.image_path(i, rel)?;
            let entry = images
                .entry(r[cd].trim().to_string())
                .or_insert_with(|| (r[cs].trim().to_string(), rel, vec![0; LABELS.len()]));
            for (k, &c) in cols.iter().enumerate() {
                let v = match r[c].trim() {
                    "True" | "true" => 5,
                    "False" | "false" | "" => 0,
                    s => match s.parse::<f64>() {
                        Ok(x) if (0.0..=5.0).contains(&x) => x as u8,
                        _ => {
                            return Err(csv.err(
                                i,
                                format!(
                                    "column {:?}: certainty must be 0-5, found {s:?}",
                                    LABELS[k]
                                ),
                            ));
                        }
                    },
                };
                entry.2[k] = entry.2[k].max(v);
            }
        }
        t.sources.push(path);
    }
    if t.sources.is_empty() {
        return Err(DataError::layout(
            root,
            "main_data/metadata_phase_2.csv or metadata_phase_3.csv not found",
        ));
    }
    for (dicom, (subject, rel, cert)) in images {
        let labels = cert
            .iter()
            .map(|&c| match c {
                0 => LabelState::Negative,
                1 | 2 => LabelState::Uncertain,
                _ => LabelState::Positive,
            })
            .collect();
        t.records.push(Record {
            id: dicom,
            group: subject,
            source_path: rel,
            labels,
            ..Default::default()
        });
    }
    t.notes.push("readings aggregated per image by maximum certainty; >= 3 (possibly) positive, 1-2 uncertain -> 0".into());
    Ok(t)
}
