//! Contact sheet of the phantom: one column per finding (first column
//! normal), rows for an upright PA film (site 0), a supine portable AP film
//! (site 1, shown re-inverted from its MONOCHROME1 storage) and a lateral
//! film (site 0). Set `PHANTOM_WRITE_SHEET=1` to refresh
//! `docs/phantom-contact-sheet.png`.

use std::path::PathBuf;

use cxr_data::phantom::findings::{
    Atelectasis, AtelectasisKind, Effusion, Lesion, Pneumothorax, Side, TipPosition,
};
use cxr_data::phantom::{Anatomy, Findings, Site, View, render_image};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Adds one finding to a normal study.
type Add = Box<dyn Fn(&mut Findings)>;

/// The columns of the sheet: a name and a way to add the finding.
pub fn conditions() -> Vec<(&'static str, Add)> {
    let les = |side, pos: [f32; 3], radius, density| Lesion {
        side,
        position: pos,
        radius,
        density,
        shape_seed: 7,
    };
    vec![
        ("normal", Box::new(|_: &mut Findings| {})),
        (
            "cardiomegaly",
            Box::new(|f: &mut Findings| {
                f.ctr = 0.62;
                f.cardiomegaly = true;
            }),
        ),
        (
            "effusion R",
            Box::new(|f: &mut Findings| {
                f.effusion = Some(Effusion {
                    side: Side::Right,
                    volume: 0.55,
                })
            }),
        ),
        (
            "pneumothorax L",
            Box::new(|f: &mut Findings| {
                f.pneumothorax = Some(Pneumothorax {
                    side: Side::Left,
                    size: 0.3,
                })
            }),
        ),
        (
            "consolidation R",
            Box::new(move |f: &mut Findings| {
                f.consolidation = Some(les(Side::Right, [0.2, 0.45, 0.0], 0.24, 0.8))
            }),
        ),
        (
            "nodule L",
            Box::new(move |f: &mut Findings| {
                f.nodule = Some(les(Side::Left, [0.3, -0.35, 0.0], 0.06, 0.9))
            }),
        ),
        (
            "mass R",
            Box::new(move |f: &mut Findings| {
                f.mass = Some(les(Side::Right, [0.1, -0.3, 0.0], 0.17, 0.9))
            }),
        ),
        (
            "atelectasis L lobar",
            Box::new(|f: &mut Findings| {
                f.atelectasis = Some(Atelectasis {
                    side: Side::Left,
                    kind: AtelectasisKind::Lobar,
                    severity: 0.9,
                })
            }),
        ),
        (
            "atelectasis R plate",
            Box::new(|f: &mut Findings| {
                f.atelectasis = Some(Atelectasis {
                    side: Side::Right,
                    kind: AtelectasisKind::Plate,
                    severity: 0.9,
                })
            }),
        ),
        ("edema 2", Box::new(|f: &mut Findings| f.edema_grade = 2)),
        ("edema 3", Box::new(|f: &mut Findings| f.edema_grade = 3)),
        (
            "devices",
            Box::new(|f: &mut Findings| {
                f.ett = Some(TipPosition::Normal);
                f.ngt = Some(TipPosition::Normal);
                f.cvc = Some(TipPosition::Normal);
                f.ecg_leads = true;
            }),
        ),
    ]
}

#[test]
fn contact_sheet() {
    // PHANTOM_SHEET_COLS=0,2 and PHANTOM_SHEET_SIZE=320 zoom in while tuning.
    let size: usize = std::env::var("PHANTOM_SHEET_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(160);
    let mut cols = conditions();
    if let Ok(sel) = std::env::var("PHANTOM_SHEET_COLS") {
        let keep: Vec<usize> = sel.split(',').filter_map(|s| s.parse().ok()).collect();
        let mut k = 0;
        cols.retain(|_| {
            k += 1;
            keep.contains(&(k - 1))
        });
    }
    let rows = [
        (View::Pa, 0usize, 3u64),
        (View::Ap, 1, 11),
        (View::Lateral, 0, 5),
    ];
    let (w, h) = (size * cols.len(), size * rows.len());
    let mut sheet = vec![0u8; w * h];
    for (r, &(view, site_idx, pseed)) in rows.iter().enumerate() {
        let site = Site::preset(site_idx, 0);
        let an = Anatomy::sample(&mut ChaCha8Rng::seed_from_u64(pseed));
        for (c, (_, add)) in cols.iter().enumerate() {
            let mut f = Findings::normal(an.ctr);
            add(&mut f);
            let img = render_image(&an, &f, view, &site, size, 42, 7);
            assert_eq!(img.len(), size * size);
            for y in 0..size {
                for x in 0..size {
                    let v = img[y * size + x];
                    let v = if site.monochrome1 { 255 - v } else { v };
                    sheet[(r * size + y) * w + c * size + x] = v;
                }
            }
        }
    }
    let out = if let Some(p) = std::env::var_os("PHANTOM_SHEET_OUT") {
        PathBuf::from(p)
    } else if std::env::var_os("PHANTOM_WRITE_SHEET").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/phantom-contact-sheet.png")
    } else {
        std::env::temp_dir().join(format!("phantom-contact-sheet-{}.png", std::process::id()))
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    image::save_buffer(
        &out,
        &sheet,
        w as u32,
        h as u32,
        image::ExtendedColorType::L8,
    )
    .unwrap();
    assert!(out.exists());
}
