//! Indiana University / OpenI: XML reports (`NLMCXR_reports.tgz` or its
//! extracted `ecgen-radiology/<n>.xml`) with MeSH terms and the ids of each
//! report's images; PNGs named `<image id>.png` (from `NLMCXR_png.tgz`).

use std::io::Read;
use std::path::Path;

use crate::csv_source::{leaves_root, outside_root};
use crate::error::{DataError, Result};
use crate::labels::{GroupLevel, LabelState, LabelTable, Record, Task};

/// The 20 labels: the 20 most frequent first terms of the curated MeSH `major`
/// strings after `normal` (the paper's own list is unpublished).
pub const LABELS: [&str; 20] = [
    "Lung",
    "Opacity",
    "Cardiomegaly",
    "Pulmonary Atelectasis",
    "Calcinosis",
    "Calcified Granuloma",
    "Thoracic Vertebrae",
    "Cicatrix",
    "Spine",
    "Markings",
    "Aorta",
    "Pleural Effusion",
    "Diaphragm",
    "Atherosclerosis",
    "Airspace Disease",
    "Catheters, Indwelling",
    "Density",
    "Deformity",
    "Granulomatous Disease",
    "Nodule",
];

/// One parsed report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// `CXR<n>`.
    pub id: String,
    /// FINDINGS text.
    pub findings: String,
    /// IMPRESSION text.
    pub impression: String,
    /// MeSH `major` strings.
    pub major: Vec<String>,
    /// Image ids.
    pub images: Vec<String>,
}

/// Parses one report XML.
pub fn parse_report(name: &str, xml: &str) -> Result<Report> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts)
        .map_err(|e| DataError::layout(name, format!("bad XML: {e}")))?;
    let mut r = Report::default();
    for n in doc.descendants().filter(|n| n.is_element()) {
        match n.tag_name().name() {
            "uId" => r.id = n.attribute("id").unwrap_or_default().to_string(),
            "AbstractText" => {
                let text = n.text().unwrap_or_default().trim().to_string();
                match n.attribute("Label") {
                    Some("FINDINGS") => r.findings = text,
                    Some("IMPRESSION") => r.impression = text,
                    _ => {}
                }
            }
            "major" if n.parent().is_some_and(|p| p.tag_name().name() == "MeSH") => {
                r.major
                    .push(n.text().unwrap_or_default().trim().to_string());
            }
            "parentImage" => r
                .images
                .push(n.attribute("id").unwrap_or_default().to_string()),
            _ => {}
        }
    }
    if r.id.is_empty() {
        return Err(DataError::layout(name, "report has no uId"));
    }
    Ok(r)
}

fn read_reports(root: &Path) -> Result<(Vec<Report>, std::path::PathBuf)> {
    let tgz = root.join("NLMCXR_reports.tgz");
    let mut out = Vec::new();
    if tgz.is_file() {
        let f = std::fs::File::open(&tgz).map_err(|e| DataError::io(&tgz, e))?;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for entry in ar.entries().map_err(|e| DataError::io(&tgz, e))? {
            let mut entry = entry.map_err(|e| DataError::io(&tgz, e))?;
            let name = entry
                .path()
                .map_err(|e| DataError::io(&tgz, e))?
                .to_string_lossy()
                .into_owned();
            if !name.ends_with(".xml") {
                continue;
            }
            let mut s = String::new();
            entry
                .read_to_string(&mut s)
                .map_err(|e| DataError::io(&tgz, e))?;
            out.push(parse_report(&format!("{}:{name}", tgz.display()), &s)?);
        }
        return Ok((out, tgz));
    }
    let dir = root.join("ecgen-radiology");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| DataError::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    for f in &files {
        let s = std::fs::read_to_string(f).map_err(|e| DataError::io(f, e))?;
        out.push(parse_report(&f.display().to_string(), &s)?);
    }
    Ok((out, dir))
}

/// Paper task: 20 report-level MeSH labels applied to every image of the
/// report; grouped by report (the only key); all views kept.
pub fn load(root: &Path) -> Result<LabelTable> {
    let (mut reports, source) = read_reports(root)?;
    // Numeric report order, whatever the archive order.
    reports.sort_by_key(|r| {
        r.id.trim_start_matches("CXR")
            .parse::<u64>()
            .unwrap_or(u64::MAX)
    });
    let prefix = if root.join("NLMCXR_png").is_dir() {
        "NLMCXR_png/"
    } else {
        ""
    };
    let mut t = LabelTable::new(
        "indiana",
        Task::Multilabel,
        LABELS.map(String::from).to_vec(),
        GroupLevel::Report,
    );
    if source.is_file() {
        t.sources.push(source.clone());
    }
    let mut without_images = 0;
    for r in &reports {
        if r.images.is_empty() {
            without_images += 1;
            continue;
        }
        let mut labels = vec![LabelState::Negative; LABELS.len()];
        for m in &r.major {
            let first = m.split('/').next().unwrap_or("").trim();
            if let Some(k) = LABELS.iter().position(|l| l.eq_ignore_ascii_case(first)) {
                labels[k] = LabelState::Positive;
            }
        }
        let report = format!("FINDINGS: {} IMPRESSION: {}", r.findings, r.impression);
        for img in &r.images {
            let source_path = format!("{prefix}{img}.png");
            if let Some(why) = leaves_root(&source_path) {
                return Err(DataError::layout(
                    &source,
                    format!("report {}: {}", r.id, outside_root(&source_path, why)),
                ));
            }
            t.records.push(Record {
                id: img.clone(),
                group: r.id.clone(),
                source_path,
                labels: labels.clone(),
                study_id: Some(r.id.clone()),
                report: Some(report.clone()),
                ..Default::default()
            });
        }
    }
    t.notes.push(format!("{} reports read, {without_images} without images; labels = first term of MeSH major strings", reports.len()));
    t.notes
        .push("splits grouped by report id (no patient id exists); all views kept".into());
    Ok(t)
}
