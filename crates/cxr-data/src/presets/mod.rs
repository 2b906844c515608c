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

/// A preset: its name and the reader of its publisher's layout.
type PresetDef = (&'static str, fn(&Path) -> Result<LabelTable>);

/// Every preset, in the order help and errors list them: the one table both
/// [`load`] and [`NAMES`] come from.
const TABLE: [PresetDef; 17] = [
    ("nih", nih::load),
    ("chexpert", chexpert::load),
    ("mimic", mimic::load),
    ("padchest", padchest::load),
    ("vindr", vindr::load),
    ("siim", siim::load),
    ("ranzcr", ranzcr::load),
    ("pediatric", pediatric::load),
    ("shenzhen", |root| tb::load(root, tb::Sets::Shenzhen)),
    ("montgomery", |root| tb::load(root, tb::Sets::Montgomery)),
    ("shenzhen-montgomery", |root| tb::load(root, tb::Sets::Both)),
    ("jsrt", jsrt::load),
    ("indiana", indiana::load),
    ("brax", brax::load),
    ("reflacx", reflacx::load),
    ("edema", edema::load),
    ("phantom", phantom::load),
];

/// The names of [`TABLE`], computed at compile time so the public list is
/// still a constant.
const fn table_names<const N: usize>(table: &[PresetDef; N]) -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = table[i].0;
        i += 1;
    }
    names
}

/// Preset names accepted by `convert --preset`.
pub const NAMES: [&str; TABLE.len()] = table_names(&TABLE);

/// Reads the dataset `name` laid out as its publisher distributes it under `root`.
///
/// # Errors
/// A root that is no directory, an unknown name (the message lists
/// [`NAMES`]), or the preset's own errors.
pub fn load(name: &str, root: &Path) -> Result<LabelTable> {
    if !root.is_dir() {
        return Err(DataError::layout(root, "dataset root is not a directory"));
    }
    let Some((_, read)) = TABLE.iter().find(|(n, _)| *n == name) else {
        return Err(DataError::UnknownPreset {
            name: name.to_owned(),
            known: &NAMES,
        });
    };
    read(root)
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
