//! NLM tuberculosis sets: Shenzhen `CXR_png/CHNCXR_<4d>_<L>.png` and Montgomery
//! `CXR_png/MCUCXR_<4d>_<L>.png`, the label being the last character of the stem.

use std::path::Path;

use super::{relative, walk};
use crate::error::{DataError, Result};
use crate::labels::{GroupLevel, LabelState, LabelTable, Record, Task};

/// Which set(s) to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sets {
    /// Shenzhen (China set) only.
    Shenzhen,
    /// Montgomery only.
    Montgomery,
    /// Both, pooled (the paper's task).
    Both,
}

/// Binary TB from the file-name suffix; each file is one case, so the split is
/// image-level (= patient-level).
pub fn load(root: &Path, sets: Sets) -> Result<LabelTable> {
    let prefixes: &[&str] = match sets {
        Sets::Shenzhen => &["CHNCXR_"],
        Sets::Montgomery => &["MCUCXR_"],
        Sets::Both => &["CHNCXR_", "MCUCXR_"],
    };
    let name = match sets {
        Sets::Shenzhen => "shenzhen",
        Sets::Montgomery => "montgomery",
        Sets::Both => "shenzhen-montgomery",
    };
    let mut t = LabelTable::new(
        name,
        Task::Binary,
        vec!["Tuberculosis".into()],
        GroupLevel::Image,
    );
    for f in walk(root, &["png"])? {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !prefixes.iter().any(|p| stem.starts_with(p))
            || !f.parent().is_some_and(|p| p.ends_with("CXR_png"))
        {
            continue;
        }
        let label = match stem.rsplit('_').next() {
            Some("0") => LabelState::Negative,
            Some("1") => LabelState::Positive,
            _ => {
                return Err(DataError::layout(
                    &f,
                    "file name must end in _0 (normal) or _1 (TB)",
                ));
            }
        };
        let rel = relative(root, &f);
        t.records.push(Record {
            id: stem.clone(),
            group: stem,
            source_path: rel,
            labels: vec![label],
            view: Some("PA".into()),
            ..Default::default()
        });
    }
    if t.records.is_empty() {
        return Err(DataError::layout(
            root,
            format!("no CXR_png/{}*_<0|1>.png files found", prefixes.join("|")),
        ));
    }
    t.notes.push(
        "label = last character of the file stem; one image per case, so splits are image-level"
            .into(),
    );
    Ok(t)
}
