//! The phantom is a pure function of its configuration: same seed, same
//! bytes, on any thread count; and its output directory obeys the contract.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use cxr_data::error::DataError;
use cxr_data::phantom::{Finding, Phantom, PhantomConfig, Prevalence};

fn config(seed: u64) -> PhantomConfig {
    PhantomConfig {
        seed,
        patients: 12,
        size: 48,
        sites: 3,
        prevalence: Prevalence::balanced(),
        ..PhantomConfig::default()
    }
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn write_with_threads(cfg: PhantomConfig, out: &Path, threads: usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        Phantom::new(cfg)
            .unwrap()
            .write(out, false, &|_, _| {})
            .unwrap()
    });
}

#[test]
fn same_seed_same_bytes_on_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    write_with_threads(config(5), &a, 1);
    write_with_threads(config(5), &b, 3);
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    for (k, v) in &sa {
        assert!(v == &sb[k], "{k} differs between thread counts");
    }
    let c = tmp.path().join("c");
    write_with_threads(config(6), &c, 2);
    assert_ne!(snapshot(&c)["labels.csv"], sa["labels.csv"]);
}

#[test]
fn layout_matches_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ph");
    let ph = Phantom::new(config(1)).unwrap();
    ph.write(&out, false, &|_, _| {}).unwrap();
    let labels = fs::read_to_string(out.join("labels.csv")).unwrap();
    let mut lines = labels.lines();
    let header = lines.next().unwrap();
    let mut expected = String::from("path,patient_id,study_id,site,view");
    for f in Finding::ALL {
        expected.push(',');
        expected.push_str(f.name());
    }
    assert_eq!(header, expected);
    let mut rows = 0;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 5 + Finding::ALL.len(), "{line}");
        assert!(cells[0].starts_with("images/") && cells[0].ends_with(".png"));
        assert!(out.join(cells[0]).is_file(), "missing {}", cells[0]);
        assert!(
            cells[2].starts_with(cells[1]),
            "study {} of {}",
            cells[2],
            cells[1]
        );
        assert!(["PA", "AP", "LATERAL"].contains(&cells[4]));
        assert!(cells[5..].iter().all(|c| *c == "0" || *c == "1"));
        let img = image::open(out.join(cells[0])).unwrap();
        assert_eq!(img.color(), image::ColorType::L8);
        assert_eq!((img.width(), img.height()), (48, 48));
        rows += 1;
    }
    assert_eq!(rows, ph.images.len());
    let reports = fs::read_to_string(out.join("reports.csv")).unwrap();
    assert!(reports.starts_with("study_id,findings,impression\n"));
    let gt = fs::read_to_string(out.join("ground_truth.csv")).unwrap();
    assert_eq!(gt.lines().count(), rows + 1);
    assert!(gt.contains("MONOCHROME1") && gt.contains("MONOCHROME2"));
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("phantom.json")).unwrap()).unwrap();
    assert_eq!(meta["seed"], 1);
    assert_eq!(meta["sites"].as_array().unwrap().len(), 3);
    assert_eq!(meta["images"], rows);
}

#[test]
fn refuses_non_empty_out_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ph");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("keep.txt"), "x").unwrap();
    let ph = Phantom::new(config(2)).unwrap();
    let err = ph.write(&out, false, &|_, _| {}).unwrap_err();
    assert!(matches!(err, DataError::PhantomOutputExists(_)), "{err}");
    assert!(out.join("keep.txt").exists());
    // --force replaces a phantom, never a directory of someone else's.
    let err = ph.write(&out, true, &|_, _| {}).unwrap_err();
    assert!(matches!(err, DataError::NotOurs { .. }), "{err}");
    assert!(out.join("keep.txt").exists());
    fs::remove_file(out.join("keep.txt")).unwrap();
    ph.write(&out, false, &|_, _| {}).unwrap();
    fs::write(out.join("keep.txt"), "x").unwrap();
    ph.write(&out, true, &|_, _| {}).unwrap();
    assert!(!out.join("keep.txt").exists());
    assert!(out.join("labels.csv").exists());
    // No temporary directories left behind.
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_configuration_is_an_error_not_a_panic() {
    for cfg in [
        PhantomConfig {
            patients: 0,
            ..config(0)
        },
        PhantomConfig {
            size: 8,
            ..config(0)
        },
        PhantomConfig {
            sites: 0,
            ..config(0)
        },
        PhantomConfig {
            cooccurrence: 2.0,
            ..config(0)
        },
    ] {
        assert!(matches!(
            Phantom::new(cfg),
            Err(DataError::PhantomConfig(_))
        ));
    }
    let mut p = Prevalence::nih();
    p.set(Finding::Edema, 1.5);
    let cfg = PhantomConfig {
        prevalence: p,
        ..config(0)
    };
    assert!(Phantom::new(cfg).is_err());
}

#[test]
fn first_site_draws_one_site_on_its_own() {
    // The held-out site of the demo: site preset 1 alone, every patient there,
    // with the same acquisition settings as site 1 of a two-site world.
    let alone = Phantom::new(PhantomConfig {
        sites: 1,
        first_site: 1,
        ..config(4)
    })
    .unwrap();
    let both = Phantom::new(PhantomConfig {
        sites: 2,
        ..config(4)
    })
    .unwrap();
    assert_eq!(alone.sites.len(), 1);
    assert_eq!(alone.sites[0].name, "site1");
    assert!(alone.sites[0].monochrome1);
    assert_eq!(alone.sites[0].noise, both.sites[1].noise);
    assert!(alone.patients.iter().all(|p| p.site == 0));
    let bad = PhantomConfig {
        first_site: 16,
        ..config(0)
    };
    assert!(matches!(
        Phantom::new(bad),
        Err(DataError::PhantomConfig(_))
    ));
}

/// The lesion masks lie on the lesions: rendering each masked image again
/// without its consolidation, nodule and mass changes it almost only on the
/// mask (widened by the detector blur and edge enhancement), on the side
/// `ground_truth.csv` names; the files and the column agree.
#[test]
fn lesion_masks_cover_the_rendered_lesions() {
    let cfg = PhantomConfig {
        seed: 3,
        patients: 40,
        size: 64,
        sites: 2,
        prevalence: Prevalence::balanced(),
        ..PhantomConfig::default()
    };
    let ph = Phantom::new(cfg).unwrap();
    let n = 64usize;
    let (mut checked, mut sided) = (0, 0);
    for img in &ph.images {
        let study = &ph.patients[img.patient].studies[img.study];
        let f = &study.findings;
        let lesion = f.consolidation.or(f.nodule).or(f.mass);
        let mask = ph.lesion_mask(img);
        assert_eq!(mask.is_some(), lesion.is_some(), "{}", img.path);
        let Some(mask) = mask else { continue };
        assert_eq!(mask.len(), n * n);
        assert!(mask.iter().all(|&v| v == 0 || v == 255));
        let mut bare = ph.clone();
        let g = &mut bare.patients[img.patient].studies[img.study].findings;
        (g.consolidation, g.nodule, g.mass) = (None, None, None);
        let (with, without) = (ph.render(img), bare.render(img));
        let diff: Vec<f64> = with
            .iter()
            .zip(&without)
            .map(|(&a, &b)| f64::from(a.abs_diff(b)))
            .collect();
        let total: f64 = diff.iter().sum();
        if total < 200.0 {
            // A faint lesion (or one under the heart) barely shows.
            continue;
        }
        // Within 4 px of the mask.
        let near = |k: usize| {
            let (y, x) = ((k / n) as i64, (k % n) as i64);
            (-4..=4).any(|dy: i64| {
                (-4..=4).any(|dx: i64| {
                    let (yy, xx) = (y + dy, x + dx);
                    (0..n as i64).contains(&yy)
                        && (0..n as i64).contains(&xx)
                        && mask[(yy as usize) * n + xx as usize] > 0
                })
            })
        };
        let inside: f64 = diff
            .iter()
            .enumerate()
            .filter(|(k, _)| near(*k))
            .map(|(_, d)| d)
            .sum();
        assert!(
            inside > 0.8 * total,
            "{}: {inside} of {total} near the mask",
            img.path
        );
        checked += 1;
        // One lesion on a frontal film: its mask sits on that side (the
        // patient's right is the image's left).
        let count = [f.consolidation, f.nodule, f.mass].iter().flatten().count();
        if count == 1 && img.view != cxr_data::phantom::View::Lateral {
            let side = lesion.unwrap().side.word();
            let xs: Vec<usize> = (0..n * n).filter(|&k| mask[k] > 0).map(|k| k % n).collect();
            if xs.is_empty() {
                continue;
            }
            let cx = xs.iter().sum::<usize>() as f64 / xs.len() as f64;
            match side {
                "right" => assert!(cx < n as f64 / 2.0, "{}: right lesion at x {cx}", img.path),
                "left" => assert!(cx > n as f64 / 2.0, "{}: left lesion at x {cx}", img.path),
                _ => {}
            }
            sided += 1;
        }
    }
    assert!(
        checked >= 10 && sided >= 5,
        "checked {checked}, sided {sided}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ph");
    ph.write(&out, false, &|_, _| {}).unwrap();
    let gt = fs::read_to_string(out.join("ground_truth.csv")).unwrap();
    let header: Vec<&str> = gt.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "lesion_mask").unwrap();
    let mut listed = 0;
    for line in gt.lines().skip(1) {
        let cell = line.split(',').nth(col).unwrap();
        if !cell.is_empty() {
            let m = image::open(out.join(cell)).unwrap();
            assert_eq!((m.width(), m.height()), (64, 64));
            listed += 1;
        }
    }
    let masked = ph
        .images
        .iter()
        .filter(|i| ph.lesion_mask(i).is_some())
        .count();
    assert_eq!(listed, masked);
}
