//! Pediatric pneumonia (Kermany): `chest_xray/{train,test[,val]}/{NORMAL,PNEUMONIA}/*.jpeg`.

use std::path::Path;

use super::{relative, walk};
use crate::error::{DataError, Result};
use crate::labels::{GroupLevel, LabelState, LabelTable, Record, Split, Task};

/// The patient key from a file name: `person<N>` for pneumonia files, the
/// `IM-<series>` part (namespaced by a `NORMAL2-` prefix) for normals, the
/// middle id of the later `<CLASS>-<patient>-<n>` naming.
pub fn patient_key(stem: &str) -> String {
    if let Some(p) = stem.split('_').next().filter(|p| p.starts_with("person")) {
        return p.to_string();
    }
    let (prefix, rest) = match stem.strip_prefix("NORMAL2-") {
        Some(r) => ("NORMAL2-", r),
        None => ("", stem),
    };
    if let Some(r) = rest.strip_prefix("IM-") {
        return format!("{prefix}IM-{}", r.split('-').next().unwrap_or(r));
    }
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() == 3 && ["NORMAL", "BACTERIA", "VIRUS"].contains(&parts[0]) {
        return format!("id-{}", parts[1]);
    }
    stem.to_string()
}

/// Paper task: binary pneumonia from the folder name; the official 624-image
/// test set kept, val carved from the official train (+ Kaggle val) by patient:
/// 80/10/10 overall.
pub fn load(root: &Path) -> Result<LabelTable> {
    let base = if root.join("chest_xray").join("train").is_dir() {
        root.join("chest_xray")
    } else {
        root.to_path_buf()
    };
    if !base.join("train").is_dir() || !base.join("test").is_dir() {
        return Err(DataError::layout(
            root,
            "expected chest_xray/train and chest_xray/test folders",
        ));
    }
    let mut t = LabelTable::new(
        "pediatric",
        Task::Binary,
        vec!["Pneumonia".into()],
        GroupLevel::Patient,
    );
    for (dir, fixed) in [("train", None), ("val", None), ("test", Some(Split::Test))] {
        for (class, state) in [
            ("NORMAL", LabelState::Negative),
            ("PNEUMONIA", LabelState::Positive),
        ] {
            let d = base.join(dir).join(class);
            if !d.is_dir() {
                continue;
            }
            for f in walk(&d, &["jpeg", "jpg", "png"])? {
                let stem = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let rel = relative(root, &f);
                t.records.push(Record {
                    id: rel.clone(),
                    group: format!("{dir}:{}", patient_key(&stem)),
                    source_path: rel,
                    labels: vec![state],
                    fixed_split: fixed,
                    view: Some("AP".into()),
                    ..Default::default()
                });
            }
        }
    }
    // The official train/test are independent patients; a key is only unique within its folder.
    t.default_fractions = Some([0.8, 0.1, 0.1]);
    t.notes.push("official test split kept; val carved from train (+ Kaggle val) grouped by patient key from the file \
                  name (person<N>; IM-<series> for normals, an assumption)"
        .into());
    Ok(t)
}
