//! `cxrlearn phantom` then `cxrlearn convert --preset phantom`: a store with
//! patient-level splits, labels, reports and sites, the MONOCHROME1 site
//! turned back to MONOCHROME2.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use common::run_ok as cxrlearn;

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn phantom_converts_to_a_store_with_sites_reports_and_patient_splits() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let store = dir.path().join("store");
    let phantom = cxrlearn(&[
        "--quiet",
        "phantom",
        "--out",
        raw.to_str().unwrap(),
        "--patients",
        "40",
        "--size",
        "64",
        "--sites",
        "2",
    ]);
    let convert = cxrlearn(&[
        "--quiet",
        "convert",
        "--preset",
        "phantom",
        "--root",
        raw.to_str().unwrap(),
        "--size",
        "64",
        "--out",
        store.to_str().unwrap(),
    ]);
    // --quiet silences the closing "wrote ..." summaries (issue #22).
    for (name, o) in [("phantom", &phantom), ("convert", &convert)] {
        for stream in [&o.stdout, &o.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(!text.contains("wrote"), "{name} --quiet printed: {text}");
        }
    }

    let mut rdr = csv::Reader::from_path(store.join("manifest.csv")).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    };
    let (split, patient, site, report, path) = (
        col("split"),
        col("patient_id"),
        col("site"),
        col("report"),
        col("source_path"),
    );
    col("Cardiomegaly");
    col("Support Devices");
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert!(rows.len() > 40);
    let mut patients_by_split: HashMap<String, HashSet<String>> = HashMap::new();
    for r in &rows {
        patients_by_split
            .entry(r[split].to_owned())
            .or_default()
            .insert(r[patient].to_owned());
        assert!(
            r[report].contains("IMPRESSION"),
            "report missing: {:?}",
            &r[report]
        );
    }
    let sets: Vec<&HashSet<String>> = ["train", "val", "test"]
        .iter()
        .map(|s| &patients_by_split[*s])
        .collect();
    assert!(
        sets[0].is_disjoint(sets[1])
            && sets[0].is_disjoint(sets[2])
            && sets[1].is_disjoint(sets[2])
    );
    let sites: HashSet<&str> = rows.iter().map(|r| &r[site]).collect();
    assert_eq!(sites, HashSet::from(["site0", "site1"]));

    // Every stored image matches its raw PNG, flipped back for the MONOCHROME1 site.
    let truth = std::fs::read_to_string(raw.join("ground_truth.csv")).unwrap();
    let mut gt = csv::Reader::from_reader(truth.as_bytes());
    let h = gt.headers().unwrap().clone();
    let (gp, gph) = (
        h.iter().position(|c| c == "path").unwrap(),
        h.iter().position(|c| c == "photometric").unwrap(),
    );
    let photometric: HashMap<String, String> = gt
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[gp].to_owned(), r[gph].to_owned())
        })
        .collect();
    let st = cxr_data::store::read::Store::open(&store).unwrap();
    let mut checked = HashSet::new();
    for (i, r) in rows.iter().enumerate() {
        let raw_img = image::open(Path::new(&raw).join(&r[path]))
            .unwrap()
            .to_luma8();
        let a: Vec<f64> = raw_img.pixels().map(|p| f64::from(p.0[0])).collect();
        let b: Vec<f64> = st.image(i).unwrap().iter().map(|&v| f64::from(v)).collect();
        let c = correlation(&a, &b);
        let mono1 = photometric[&r[path]] == "MONOCHROME1";
        if mono1 {
            assert!(
                c < -0.9,
                "{}: MONOCHROME1 image not inverted back (r = {c})",
                &r[path]
            );
        } else {
            assert!(c > 0.9, "{}: r = {c}", &r[path]);
        }
        checked.insert(mono1);
    }
    assert_eq!(checked.len(), 2, "both polarities must occur");
}
