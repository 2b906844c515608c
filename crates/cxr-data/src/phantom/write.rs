//! The on-disk layout (docs/phantom.md):
//!
//! - `images/<study>_{frontal,lateral}.png`: 8-bit grayscale.
//! - `labels.csv`: `path,patient_id,study_id,site,view,` then one 0/1 column
//!   per finding in [`Finding::ALL`] order.
//! - `reports.csv`: `study_id,findings,impression`.
//! - `ground_truth.csv`: per image, severities, laterality, device positions,
//!   `photometric` (`MONOCHROME1` PNGs are stored inverted) and the path of
//!   its lesion mask.
//! - `masks/<study>_{frontal,lateral}.png`: 0/255 lesion masks (consolidation,
//!   nodule, mass) of the images whose study has one.
//! - `phantom.json`: the resolved configuration and counts.
//!
//! Everything is written into a temporary sibling directory that is renamed
//! into place at the end.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use rayon::prelude::*;
use serde_json::json;

use super::findings::{Finding, Lesion};
use super::{Phantom, VERSION};
use crate::claim::{Claim, Wait};
use crate::error::DataError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |error| DataError::io(path, error)
}

fn sibling(out: &Path, tag: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "phantom".into());
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join(format!(".{name}.{tag}-{}", std::process::id()))
}

pub(super) fn write(
    ph: &Phantom,
    out: &Path,
    force: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), DataError> {
    // Held to the end: a second phantom into the same --out fails at once
    // instead of removing this one's temporary directory.
    let _claim = Claim::acquire(out, Wait::No, |_| {})?;
    if out.exists() {
        if !out.is_dir() {
            return Err(DataError::PhantomOutputExists(out.to_owned()));
        }
        let non_empty = fs::read_dir(out).map_err(io(out))?.next().is_some();
        if non_empty && !force {
            return Err(DataError::PhantomOutputExists(out.to_owned()));
        }
        // A mistyped --out (a home directory) is refused, not emptied.
        if non_empty && !out.join("phantom.json").is_file() {
            return Err(DataError::NotOurs {
                path: out.to_owned(),
                marker: "phantom.json",
            });
        }
    }
    let tmp = sibling(out, "phantom-tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let result = fill(ph, &tmp, progress).and_then(|()| swap(&tmp, out));
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn swap(tmp: &Path, out: &Path) -> Result<(), DataError> {
    if out.exists() {
        let old = sibling(out, "phantom-old");
        fs::rename(out, &old).map_err(io(out))?;
        fs::rename(tmp, out).map_err(io(out))?;
        fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::rename(tmp, out).map_err(io(out))?;
    }
    Ok(())
}

fn fill(
    ph: &Phantom,
    dir: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), DataError> {
    for sub in ["images", "masks"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).map_err(io(&d))?;
    }
    let n = ph.config.size as u32;
    let total = ph.images.len();
    let done = AtomicUsize::new(0);
    let png = |pixels: &[u8], path: PathBuf| {
        let mut bytes = Vec::with_capacity(pixels.len() / 2);
        PngEncoder::new_with_quality(&mut bytes, CompressionType::Fast, FilterType::Adaptive)
            .write_image(pixels, n, n, image::ExtendedColorType::L8)
            .map_err(|source| DataError::EncodePng {
                path: path.clone(),
                source: Box::new(source),
            })?;
        fs::write(&path, &bytes).map_err(io(&path))
    };
    ph.images.par_iter().try_for_each(|img| {
        png(&ph.render(img), dir.join(&img.path))?;
        if let Some(mask) = ph.lesion_mask(img) {
            png(&mask, dir.join(mask_path(img)))?;
        }
        let k = done.fetch_add(1, Ordering::Relaxed) + 1;
        progress(k, total);
        Ok::<(), DataError>(())
    })?;

    let mut labels = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["path", "patient_id", "study_id", "site", "view"];
    header.extend(Finding::ALL.iter().map(|f| f.name()));
    labels.write_record(&header)?;
    let mut gt = csv::Writer::from_writer(Vec::new());
    gt.write_record(GT_COLUMNS)?;
    let mut positives = [0usize; super::NUM_FINDINGS];
    for img in &ph.images {
        let p = &ph.patients[img.patient];
        let s = &p.studies[img.study];
        let site = &ph.sites[p.site];
        let mut row = vec![
            img.path.clone(),
            p.id.clone(),
            s.id.clone(),
            site.name.clone(),
            img.view.name().to_string(),
        ];
        for (k, &v) in s.findings.labels().iter().enumerate() {
            positives[k] += usize::from(v);
            row.push(if v { "1" } else { "0" }.into());
        }
        labels.write_record(&row)?;
        gt.write_record(ground_truth_row(ph, img))?;
    }
    let mut reports = csv::Writer::from_writer(Vec::new());
    reports.write_record(["study_id", "findings", "impression"])?;
    let mut nstudies = 0;
    for p in &ph.patients {
        for s in &p.studies {
            nstudies += 1;
            reports.write_record([&s.id, &s.findings_text, &s.impression])?;
        }
    }
    let put = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(name);
        fs::write(&path, bytes).map_err(io(&path))
    };
    let finish = |w: csv::Writer<Vec<u8>>| {
        w.into_inner()
            .map_err(|e| DataError::WriteCsv(e.into_error().into()))
    };
    put("labels.csv", finish(labels)?)?;
    put("ground_truth.csv", finish(gt)?)?;
    put("reports.csv", finish(reports)?)?;

    let cfg = &ph.config;
    let prevalence: serde_json::Map<String, serde_json::Value> = Finding::ALL
        .iter()
        .map(|f| (f.name().to_string(), json!(cfg.prevalence.get(*f))))
        .collect();
    let counts: serde_json::Map<String, serde_json::Value> = Finding::ALL
        .iter()
        .zip(positives)
        .map(|(f, c)| (f.name().to_string(), json!(c)))
        .collect();
    let sites: Vec<_> = ph
        .sites
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["photometric"] = json!(s.photometric());
            v
        })
        .collect();
    let meta = json!({
        "generator": "cxrlearn phantom",
        "version": VERSION,
        "seed": cfg.seed,
        "patients": cfg.patients,
        "size": cfg.size,
        "sites": sites,
        "prevalence": prevalence,
        "cooccurrence": cfg.cooccurrence,
        "max_studies": cfg.max_studies,
        "findings": Finding::ALL.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "images": total,
        "studies": nstudies,
        "positive_images": counts,
        "photometric_note": "PNGs of sites with photometric MONOCHROME1 are stored inverted (bright = air); invert them (255 - v) before use. Per image in ground_truth.csv.",
        "units": "one thorax unit is about 15 cm",
    });
    put("phantom.json", serde_json::to_vec_pretty(&meta)?)?;
    Ok(())
}

/// Where the lesion mask of `img` goes (`images/` → `masks/`).
fn mask_path(img: &super::ImageRef) -> String {
    img.path.replacen("images/", "masks/", 1)
}

/// Columns of `ground_truth.csv`.
pub const GT_COLUMNS: [&str; 29] = [
    "path",
    "study_id",
    "photometric",
    "portable",
    "sex",
    "age",
    "ctr",
    "edema_grade",
    "effusion_side",
    "effusion_volume",
    "pneumothorax_side",
    "pneumothorax_size",
    "consolidation_side",
    "consolidation_zone",
    "consolidation_density",
    "nodule_side",
    "nodule_zone",
    "nodule_cm",
    "mass_side",
    "mass_zone",
    "mass_cm",
    "atelectasis_side",
    "atelectasis_kind",
    "atelectasis_severity",
    "ett_position",
    "ngt_position",
    "cvc_position",
    "ecg_leads",
    "lesion_mask",
];

fn lesion_cols(l: Option<&Lesion>, third: impl Fn(&Lesion) -> f32) -> [String; 3] {
    match l {
        Some(l) => [
            l.side.word().into(),
            l.zone().into(),
            format!("{:.2}", third(l)),
        ],
        None => [String::new(), String::new(), String::new()],
    }
}

fn ground_truth_row(ph: &Phantom, img: &super::ImageRef) -> Vec<String> {
    let p = &ph.patients[img.patient];
    let s = &p.studies[img.study];
    let f = &s.findings;
    let site = &ph.sites[p.site];
    let tip =
        |t: Option<super::findings::TipPosition>| t.map_or(String::new(), |t| t.word().into());
    let mut row = vec![
        img.path.clone(),
        s.id.clone(),
        site.photometric().into(),
        u8::from(s.portable).to_string(),
        if p.anatomy.female { "F" } else { "M" }.into(),
        p.anatomy.age.to_string(),
        format!("{:.3}", f.ctr),
        f.edema_grade.to_string(),
    ];
    match f.effusion {
        Some(e) => row.extend([e.side.word().into(), format!("{:.2}", e.volume)]),
        None => row.extend([String::new(), String::new()]),
    }
    match f.pneumothorax {
        Some(e) => row.extend([e.side.word().into(), format!("{:.2}", e.size)]),
        None => row.extend([String::new(), String::new()]),
    }
    row.extend(lesion_cols(f.consolidation.as_ref(), |l| l.density));
    row.extend(lesion_cols(f.nodule.as_ref(), Lesion::diameter_cm));
    row.extend(lesion_cols(f.mass.as_ref(), Lesion::diameter_cm));
    match f.atelectasis {
        Some(a) => row.extend([
            a.side.word().into(),
            format!("{:?}", a.kind).to_lowercase(),
            format!("{:.2}", a.severity),
        ]),
        None => row.extend([String::new(), String::new(), String::new()]),
    }
    row.extend([tip(f.ett), tip(f.ngt), tip(f.cvc)]);
    row.push(u8::from(f.ecg_leads).to_string());
    let lesion = f.consolidation.is_some() || f.nodule.is_some() || f.mass.is_some();
    row.push(if lesion {
        mask_path(img)
    } else {
        String::new()
    });
    row
}
