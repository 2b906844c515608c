//! Each image's patient and subgroup attributes (`sex`, `age`, `view`,
//! `site`) in the form the evaluation statistics take them: joined on the
//! image id by `cxrlearn evaluate --data`, and written beside every score by
//! the commands that produce predictions, so a patient-level bootstrap and
//! subgroup results need nothing but the predictions file.

use std::collections::BTreeMap;

use cxr_stats::predictions::{ImageMetadata, SUBGROUP_COLUMNS};

use super::read::{ManifestRow, Store};

/// An attribute of a manifest row as text; ages in their shortest exact form.
fn attribute(row: &ManifestRow, column: &str) -> Option<String> {
    match column {
        "sex" => row.sex.clone(),
        "age" => row.age.map(|a| a.to_string()),
        "view" => row.view.clone(),
        "site" => row.site.clone(),
        _ => None,
    }
}

impl Store {
    /// Patients and attributes of every image, keyed by id; `source` names
    /// the store in messages. Attributes no image has are left out.
    pub fn image_metadata(&self, source: &str) -> ImageMetadata {
        let mut attributes = BTreeMap::new();
        for column in SUBGROUP_COLUMNS {
            let values: std::collections::HashMap<String, String> = self
                .rows
                .iter()
                .filter_map(|r| attribute(r, column).map(|v| (r.id.clone(), v)))
                .collect();
            if !values.is_empty() {
                attributes.insert(column.to_owned(), values);
            }
        }
        ImageMetadata {
            source: source.to_owned(),
            patients: self
                .rows
                .iter()
                .map(|r| (r.id.clone(), r.patient_id.clone()))
                .collect(),
            attributes,
        }
    }

    /// Patients and attribute columns of the rows `indices`, in that order
    /// (the per-image columns of a predictions file). Attributes none of
    /// these rows has are left out.
    pub fn metadata_of(
        &self,
        indices: &[usize],
    ) -> (Vec<String>, BTreeMap<String, Vec<Option<String>>>) {
        let patients = indices
            .iter()
            .map(|&i| self.rows[i].patient_id.clone())
            .collect();
        let mut attributes = BTreeMap::new();
        for column in SUBGROUP_COLUMNS {
            let values: Vec<Option<String>> = indices
                .iter()
                .map(|&i| attribute(&self.rows[i], column))
                .collect();
            if values.iter().any(Option::is_some) {
                attributes.insert(column.to_owned(), values);
            }
        }
        (patients, attributes)
    }
}
