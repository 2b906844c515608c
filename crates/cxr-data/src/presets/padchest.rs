//! PadChest: `PADCHEST_chest_x_ray_images_labels_160K*.csv` whose `Labels` cell
//! is a Python list literal of finding strings (items may carry a leading space).
//! Images at `<ImageDir>/<ImageID>` (one folder per zip part) or flattened.

use std::path::Path;

use crate::csv_source::{Csv, find_file};
use crate::error::Result;
use crate::labels::{
    Age, GroupLevel, LabelState, LabelTable, Record, Task, normalise_sex, normalise_view,
    parse_year, rejected_ages_note, year_of_date,
};

/// The nine labels and the exact PadChest finding strings each one covers
/// (exact matches: substring search would make `nodule` hit `pseudonodule`).
pub const LABELS: [(&str, &[&str]); 9] = [
    (
        "Atelectasis",
        &[
            "atelectasis",
            "atelectasis basal",
            "laminar atelectasis",
            "lobar atelectasis",
            "round atelectasis",
            "segmental atelectasis",
            "total atelectasis",
        ],
    ),
    ("Cardiomegaly", &["cardiomegaly"]),
    ("Consolidation", &["consolidation"]),
    ("Edema", &["pulmonary edema"]),
    (
        "Effusion",
        &[
            "pleural effusion",
            "loculated pleural effusion",
            "loculated fissural effusion",
        ],
    ),
    (
        "Fracture",
        &[
            "fracture",
            "rib fracture",
            "callus rib fracture",
            "clavicle fracture",
            "humeral fracture",
            "vertebral fracture",
        ],
    ),
    ("Nodule", &["nodule", "multiple nodules"]),
    ("Pneumonia", &["pneumonia", "atypical pneumonia"]),
    ("Pneumothorax", &["pneumothorax", "hydropneumothorax"]),
];

/// Files missing or truncated in the public release (the list torchxrayvision keeps).
pub const BROKEN: [&str; 21] = [
    "216840111366964012819207061112010307142602253_04-014-084.png",
    "216840111366964012989926673512011074122523403_00-163-058.png",
    "216840111366964012959786098432011033083840143_00-176-115.png",
    "216840111366964012558082906712009327122220177_00-102-064.png",
    "216840111366964012339356563862009072111404053_00-043-192.png",
    "216840111366964013076187734852011291090445391_00-196-188.png",
    "216840111366964012373310883942009117084022290_00-064-025.png",
    "216840111366964012283393834152009033102258826_00-059-087.png",
    "216840111366964012373310883942009170084120009_00-097-074.png",
    "216840111366964012819207061112010315104455352_04-024-184.png",
    "216840111366964012819207061112010306085429121_04-020-102.png",
    "216840111366964012989926673512011083134050913_00-168-009.png",
    "216840111366964012373310883942009152114636712_00-102-045.png",
    "216840111366964012819207061112010281134410801_00-129-131.png",
    "216840111366964012487858717522009280135853083_00-075-001.png",
    "216840111366964012989926673512011151082430686_00-157-045.png",
    "216840111366964013686042548532013208193054515_02-026-007.png",
    "216840111366964013590140476722013058110301622_02-056-111.png",
    "216840111366964013590140476722013043111952381_02-065-198.png",
    "216840111366964013829543166512013353113303615_02-092-190.png",
    "216840111366964013962490064942014134093945580_01-178-104.png",
];

/// Parses a Python list literal of strings (`['a', ' b']`); `None` if malformed.
pub fn parse_list(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut items = Vec::new();
    let mut chars = inner.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == ',' || c.is_whitespace() {
            continue;
        }
        if c != '\'' && c != '"' {
            return None;
        }
        let mut item = String::new();
        loop {
            let (_, d) = chars.next()?;
            if d == c {
                // A closing quote is followed by a separator or the end.
                let rest = chars.peek().map(|&(i, _)| inner[i..].trim_start());
                if rest.is_none_or(|r| r.is_empty() || r.starts_with(',')) {
                    break;
                }
            }
            item.push(d);
        }
        items.push(item);
    }
    Some(items)
}

/// Paper task: 9 labels (the CheXpert-style findings, exact-match synonym sets
/// above; the paper's exact list is unpublished), frontal projections only
/// (`PA`, `AP`, `AP_horizontal`), unlabeled rows and the 21 broken files
/// dropped, patient-level 60/20/20 on `PatientID`.
pub fn load(root: &Path) -> Result<LabelTable> {
    let path = find_file(
        root,
        "PADCHEST_chest_x_ray_images_labels",
        &[".csv", ".csv.gz"],
    )?;
    let csv = Csv::read(&path)?;
    let c = |n: &str| csv.col(n);
    let (cid, cdir, cpat, cstudy, cproj, clab, crep) = (
        c("ImageID")?,
        c("ImageDir")?,
        c("PatientID")?,
        c("StudyID")?,
        c("Projection")?,
        c("Labels")?,
        c("Report")?,
    );
    let (csex, cbirth, cdate) = (
        c("PatientSex_DICOM")?,
        c("PatientBirth")?,
        c("StudyDate_DICOM")?,
    );
    let names: Vec<String> = LABELS.iter().map(|(n, _)| n.to_string()).collect();
    let mut t = LabelTable::new("padchest", Task::Multilabel, names, GroupLevel::Patient);
    t.sources.push(path.clone());
    let (mut unlabeled, mut lateral, mut broken, mut rejected_ages) = (0, 0, 0, 0);
    for (i, r) in csv.rows.iter().enumerate() {
        let id = r[cid].trim().to_string();
        if BROKEN.contains(&id.as_str()) {
            broken += 1;
            continue;
        }
        let projection = r[cproj].trim();
        if !matches!(projection, "PA" | "AP" | "AP_horizontal") {
            lateral += 1;
            continue;
        }
        let raw = r[clab].trim();
        if raw.is_empty() || raw == "nan" || raw == "None" {
            unlabeled += 1;
            continue;
        }
        let items = parse_list(raw)
            .ok_or_else(|| csv.err(i, format!("Labels is not a list literal: {raw:?}")))?;
        let mut labels = vec![LabelState::Negative; LABELS.len()];
        for item in &items {
            if let Some(k) = LABELS
                .iter()
                .position(|(_, set)| set.contains(&item.trim()))
            {
                labels[k] = LabelState::Positive;
            }
        }
        let dir = r[cdir].trim();
        // An empty ImageDir would make `/{id}`, an absolute path.
        let source_path = if !dir.is_empty() && root.join(dir).is_dir() {
            format!("{dir}/{id}")
        } else {
            id.clone()
        };
        let source_path = csv.image_path(i, source_path)?;
        let age = age_at_study(&r[cbirth], &r[cdate]);
        rejected_ages += usize::from(age == Age::Rejected);
        t.records.push(Record {
            id,
            group: r[cpat].trim().to_string(),
            source_path,
            labels,
            study_id: Some(r[cstudy].trim().to_string()),
            view: Some(normalise_view(projection)),
            report: Some(r[crep].trim().to_string()),
            sex: normalise_sex(&r[csex]),
            age: age.years(),
            ..Default::default()
        });
    }
    t.notes.push(format!(
        "frontal projections only (PA, AP, AP_horizontal): {lateral} other rows left out; {unlabeled} rows without Labels \
         dropped; {broken} known-broken files dropped"
    ));
    t.notes.push("labels: exact-match synonym sets over the stripped Labels items (see presets/padchest.rs); the paper's \
                  9-label list is unpublished, these are the CheXpert-style findings PadChest's labels cover"
        .into());
    t.notes.push(format!(
        "sex from `PatientSex_DICOM` (O -> unknown); view from `Projection`; age = year of `StudyDate_DICOM` minus \
         `PatientBirth` (a year), so whole years at the study year, +-1; {}",
        rejected_ages_note("the birth and study years", rejected_ages)
    ));
    Ok(t)
}

/// Age at the study from a birth-year cell and a `YYYYMMDD` study date; only
/// years are published, so it is exact to within one year.
fn age_at_study(birth: &str, date: &str) -> Age {
    let (birth, date) = (birth.trim(), date.trim());
    if matches!(birth, "" | "None" | "nan") || date.is_empty() {
        return Age::Missing;
    }
    match (parse_year(birth), year_of_date(date)) {
        (Some(b), Some(s)) => Age::from_years(f64::from(s - b)),
        _ => Age::Rejected,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn age_from_birth_and_study_years() {
        use crate::labels::Age;
        assert_eq!(super::age_at_study("1930.0", "20140915"), Age::Years(84.0));
        assert_eq!(super::age_at_study("None", "20140915"), Age::Missing);
        assert_eq!(super::age_at_study("", "20140915"), Age::Missing);
        assert_eq!(super::age_at_study("2017", "20150101"), Age::Rejected);
        assert_eq!(super::age_at_study("19x0", "20150101"), Age::Rejected);
    }

    #[test]
    fn list_literals() {
        assert_eq!(super::parse_list("['normal']").unwrap(), vec!["normal"]);
        assert_eq!(
            super::parse_list("['a b', ' pneumonia', '']").unwrap(),
            vec!["a b", " pneumonia", ""]
        );
        assert_eq!(super::parse_list("[\"it's\"]").unwrap(), vec!["it's"]);
        assert!(super::parse_list("normal").is_none());
    }
}
