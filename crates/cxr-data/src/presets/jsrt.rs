//! JSRT: `All247images/JPC{LN,NN}nnn.IMG` (raw 2048x2048 12-bit) with
//! `Clinical_Information/CLNDAT_EN.txt` (nodule cases, degree of subtlety) and
//! `CNNDAT_EN.TXT` (non-nodule cases).

use std::path::{Path, PathBuf};

use crate::csv_source::{leaves_root, outside_root};
use crate::error::{DataError, Result};
use crate::labels::{GroupLevel, LabelTable, Record, Task};

fn find_ci(dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(name))
        })
}

/// Paper task: 6 classes, 0 = non-nodule and 1-5 = degree of subtlety;
/// one image per case, image-level 60/20/20.
pub fn load(root: &Path) -> Result<LabelTable> {
    let info = find_ci(root, "Clinical_Information").unwrap_or_else(|| root.to_path_buf());
    let cl = find_ci(&info, "CLNDAT_EN.txt")
        .ok_or_else(|| DataError::layout(root, "Clinical_Information/CLNDAT_EN.txt not found"))?;
    let cn = find_ci(&info, "CNNDAT_EN.TXT")
        .ok_or_else(|| DataError::layout(root, "Clinical_Information/CNNDAT_EN.TXT not found"))?;
    let images = find_ci(root, "All247images").map_or_else(String::new, |p| {
        format!("{}/", p.file_name().unwrap_or_default().to_string_lossy())
    });
    let classes = [
        "non-nodule",
        "subtlety 1",
        "subtlety 2",
        "subtlety 3",
        "subtlety 4",
        "subtlety 5",
    ];
    let mut t = LabelTable::new(
        "jsrt",
        Task::Multiclass,
        classes.map(String::from).to_vec(),
        GroupLevel::Image,
    );
    for (path, nodule) in [(&cl, true), (&cn, false)] {
        let text = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let text = String::from_utf8_lossy(&text);
        for (n, line) in text.lines().enumerate() {
            // Fields are tab-separated but irregular; the first two tokens are stable.
            let tokens: Vec<&str> = line
                .split(['\t', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let Some(file) = tokens.first() else { continue };
            if !file.to_ascii_uppercase().ends_with(".IMG") {
                continue;
            }
            let class = if nodule {
                match tokens.get(1).and_then(|s| s.parse::<u32>().ok()) {
                    Some(d @ 1..=5) => d,
                    _ => {
                        return Err(DataError::row(
                            path,
                            n as u64 + 1,
                            format!("degree of subtlety must be 1-5: {line:?}"),
                        ));
                    }
                }
            } else {
                0
            };
            let stem = file
                .trim_end_matches(".IMG")
                .trim_end_matches(".img")
                .to_string();
            let source_path = format!("{images}{file}");
            if let Some(why) = leaves_root(&source_path) {
                return Err(DataError::row(
                    path,
                    n as u64 + 1,
                    outside_root(&source_path, why),
                ));
            }
            t.records.push(Record {
                id: stem.clone(),
                group: stem,
                source_path,
                class: Some(class),
                view: Some("PA".into()),
                ..Default::default()
            });
        }
    }
    t.sources = vec![cl, cn];
    t.notes.push(
        "JSRT raw pixels are film densities: inverted like MONOCHROME1, then per-image min-max"
            .into(),
    );
    Ok(t)
}
