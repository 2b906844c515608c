//! Writing the report directory: every file goes to a temporary sibling and
//! is persisted (renamed) into place, so a reader never sees a half-written file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::report::Report;
use crate::{ReportError, figures, tables};

/// Writes `bytes` to `path` through a temporary sibling persisted over it
/// (`tempfile`, as `cxr_data::atomic`, which this crate does not depend
/// on), with the mode a plain `File::create` gives rather than 0600.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".").suffix(".tmp");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let result = builder.tempfile_in(dir).and_then(|mut file| {
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        file.persist(path).map(drop).map_err(|e| e.error)
    });
    result.map_err(|e| ReportError::io(path, e))
}

/// The files a written report consists of.
#[derive(Debug, Clone)]
pub struct Written {
    /// `report.json`.
    pub json: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Every figure file (PNG and SVG).
    pub figures: Vec<PathBuf>,
}

impl Report {
    /// The report as pretty-printed JSON (the content of `report.json`).
    ///
    /// # Errors
    /// Only if serialisation fails, which a valid report never does.
    pub fn to_json(&self) -> Result<String, ReportError> {
        serde_json::to_string_pretty(self)
            .map(|s| s + "\n")
            .map_err(|source| ReportError::Json {
                context: "cannot serialise the report".into(),
                source,
            })
    }

    /// The report as Markdown (the content of `report.md`): the method
    /// notes, test sets and resampling units, Table 2, Tables 4/5,
    /// per-label tables, calibration, subgroups and label efficiency (when
    /// the report has them), and the missing and failed cells.
    pub fn to_markdown(&self) -> String {
        tables::markdown(&tables::document(self, &figures::plan(self)))
    }

    /// Writes `report.json`, `report.md`, `report.html` and
    /// `figures/*.{png,svg}` into `dir` (created if needed), each atomically.
    ///
    /// # Errors
    /// When a directory or file cannot be written or a figure cannot be drawn.
    pub fn write(&self, dir: &Path) -> Result<Written, ReportError> {
        let fig_dir = dir.join("figures");
        fs::create_dir_all(&fig_dir).map_err(|e| ReportError::io(&fig_dir, e))?;
        let specs = figures::plan(self);
        let mut svgs = Vec::new();
        let mut figure_files = Vec::new();
        for spec in &specs {
            let (svg, png) = figures::render(self, spec)?;
            let svg_path = fig_dir.join(format!("{}.svg", spec.stem));
            let png_path = fig_dir.join(format!("{}.png", spec.stem));
            write_atomic(&svg_path, svg.as_bytes())?;
            write_atomic(&png_path, &png)?;
            figure_files.extend([png_path, svg_path]);
            svgs.push((spec.stem.clone(), svg));
        }
        let doc = tables::document(self, &specs);
        let html = tables::html(&doc, |stem| {
            svgs.iter()
                .find(|(s, _)| s == stem)
                .map(|(_, svg)| svg.clone())
        });
        let written = Written {
            json: dir.join("report.json"),
            markdown: dir.join("report.md"),
            html: dir.join("report.html"),
            figures: figure_files,
        };
        write_atomic(&written.json, self.to_json()?.as_bytes())?;
        write_atomic(&written.markdown, tables::markdown(&doc).as_bytes())?;
        write_atomic(&written.html, html.as_bytes())?;
        Ok(written)
    }
}
