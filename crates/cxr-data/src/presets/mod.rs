//! One module per public dataset: each reads the publisher's own layout and
//! file names and states the paper's task (labels, split rule) as its default.

pub mod brax;
pub mod chexpert;
pub mod edema;
pub mod indiana;
pub mod jsrt;
pub mod mimic;
pub mod nih;
pub mod padchest;
pub mod pediatric;
pub mod phantom;
pub mod ranzcr;
pub mod reflacx;
pub mod siim;
pub mod tb;
pub mod vindr;

use std::path::Path;

use crate::error::{DataError, Result};
use crate::labels::LabelTable;

/// Preset names accepted by `convert --preset`.
pub const NAMES: &[&str] = &[
    "nih",
    "chexpert",
    "mimic",
    "padchest",
    "vindr",
    "siim",
    "ranzcr",
    "pediatric",
    "shenzhen",
    "montgomery",
    "shenzhen-montgomery",
    "jsrt",
    "indiana",
    "brax",
    "reflacx",
    "edema",
    "phantom",
];

/// Reads the dataset `name` laid out as its publisher distributes it under `root`.
pub fn load(name: &str, root: &Path) -> Result<LabelTable> {
    if !root.is_dir() {
        return Err(DataError::layout(root, "dataset root is not a directory"));
    }
    match name {
        "nih" => nih::load(root),
        "chexpert" => chexpert::load(root),
        "mimic" => mimic::load(root),
        "padchest" => padchest::load(root),
        "vindr" => vindr::load(root),
        "siim" => siim::load(root),
        "ranzcr" => ranzcr::load(root),
        "brax" => brax::load(root),
        "reflacx" => reflacx::load(root),
        "edema" => edema::load(root),
        "pediatric" => pediatric::load(root),
        "shenzhen" => tb::load(root, tb::Sets::Shenzhen),
        "montgomery" => tb::load(root, tb::Sets::Montgomery),
        "shenzhen-montgomery" => tb::load(root, tb::Sets::Both),
        "jsrt" => jsrt::load(root),
        "indiana" => indiana::load(root),
        "phantom" => phantom::load(root),
        other => Err(DataError::Config(format!(
            "unknown preset {other:?}; available: {}",
            NAMES.join(", ")
        ))),
    }
}

/// Walks `dir` recursively and returns every file whose extension (lower-case)
/// is in `exts`, sorted, skipping `__MACOSX` and hidden entries.
pub fn walk(dir: &Path, exts: &[&str]) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| DataError::io(&d, e))? {
            let p = e.map_err(|e| DataError::io(&d, e))?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') || name == "__MACOSX" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Some(ext) = p.extension()
                && exts.contains(&ext.to_string_lossy().to_ascii_lowercase().as_str())
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `path` relative to `root`, with forward slashes.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}
