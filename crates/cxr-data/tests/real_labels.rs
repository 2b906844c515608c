//! Presets on the real label files shipped in the torchxrayvision 1.5.7 wheel
//! (fetched by scripts/fetch-test-data.sh), in labels-only mode.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use cxr_data::convert::{ConvertOptions, convert};
use cxr_data::labels::Split;
use cxr_data::presets;
use cxr_data::store::read::Store;
use cxr_data::store::summary::{Counts, SubgroupSummary};

fn labels_only(preset: &str, root: &Path) -> (Store, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let table = presets::load(preset, root).unwrap();
    let mut opts = ConvertOptions::new(out.path().join("store"));
    opts.labels_only = true;
    convert(&table, root, preset, &opts).unwrap();
    (Store::open(&out.path().join("store")).unwrap(), out)
}

/// Zero group overlap between splits; split fractions within `tol` of `want`.
fn check_splits(store: &Store, want: [f64; 3], tol: f64) {
    let mut seen: HashMap<&str, Split> = HashMap::new();
    for r in &store.rows {
        let s = *seen.entry(r.patient_id.as_str()).or_insert(r.split);
        assert_eq!(s, r.split, "group {} in two splits", r.patient_id);
    }
    let n = store.len() as f64;
    for (k, s) in Split::ALL.iter().enumerate() {
        let f = store.rows.iter().filter(|r| r.split == *s).count() as f64 / n;
        assert!((f - want[k]).abs() <= tol, "{s:?}: {f:.4} vs {}", want[k]);
    }
}

fn positives(store: &Store) -> Vec<usize> {
    let k = store.meta.labels.len();
    (0..k)
        .map(|l| {
            store
                .rows
                .iter()
                .filter(|r| r.targets[l] == Some(1.0))
                .count()
        })
        .collect()
}

/// Images per value (sorted) and the number without a value.
fn counts(c: &Option<Counts>) -> (Vec<(&str, usize)>, usize) {
    let c = c.as_ref().expect("the store has this attribute");
    (
        c.values.iter().map(|(v, n)| (v.as_str(), *n)).collect(),
        c.unknown,
    )
}

/// Youngest, oldest, and the number of images without an age.
fn ages(g: &SubgroupSummary) -> (f32, f32, usize) {
    let a = g.age.expect("the store has ages");
    (a.min, a.max, a.unknown)
}

/// Every label has positives in every split.
fn stratified(store: &Store) {
    for (s, p) in &store.meta.positives {
        assert!(p.iter().all(|&x| x > 0), "{s}: {p:?}");
    }
}

#[test]
fn nih_labels_only() {
    let Some(f) = common::real_data("Data_Entry_2017_v2020.csv.gz") else {
        return;
    };
    let root = common::root_with(&[(&f, "Data_Entry_2017_v2020.csv.gz")]);
    let (store, _tmp) = labels_only("nih", root.path());
    assert_eq!(store.len(), 112_120);
    assert_eq!(
        store
            .rows
            .iter()
            .map(|r| r.patient_id.as_str())
            .collect::<HashSet<_>>()
            .len(),
        30_805
    );
    assert_eq!(
        positives(&store),
        vec![
            11559, 2776, 4667, 2303, 13317, 2516, 1686, 227, 19894, 5782, 6331, 3385, 1431, 5302
        ]
    );
    assert_eq!(store.rows[0].source_path, "images/00000001_000.png");
    check_splits(&store, [0.6, 0.2, 0.2], 0.01);
    stratified(&store);
    // Subgroups, expected from the raw file with pandas:
    //   d = pd.read_csv("Data_Entry_2017_v2020.csv.gz"); a = d["Patient Age"]
    //   d["Patient Gender"].value_counts()   # M 63340, F 48780
    //   d["View Position"].value_counts()    # PA 67310, AP 44810
    //   a[a.between(0, 120)].min(), a[a.between(0, 120)].max(), (~a.between(0, 120)).sum()  # 0, 95, 0
    // (the v2020 file has no ages above 120; the 2017 one had a few, e.g. 412).
    let g = SubgroupSummary::of(&store.rows);
    assert_eq!(counts(&g.sex), (vec![("F", 48_780), ("M", 63_340)], 0));
    assert_eq!(counts(&g.view), (vec![("AP", 44_810), ("PA", 67_310)], 0));
    assert_eq!(ages(&g), (0.0, 95.0, 0));
    assert_eq!(g.site, None);
    let first = &store.rows[0];
    assert_eq!(
        (first.sex.as_deref(), first.age, first.view.as_deref()),
        (Some("M"), Some(57.0), Some("PA"))
    );
    assert!(
        store
            .meta
            .notes
            .iter()
            .any(|n| n.contains("`Patient Age`: 0 values unparsable"))
    );
}

#[test]
fn padchest_labels_only() {
    let Some(f) = common::real_data("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz")
    else {
        return;
    };
    let root = common::root_with(&[(
        &f,
        "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
    )]);
    let (store, _tmp) = labels_only("padchest", root.path());
    // Frontal projections with labels, minus the 21 broken files.
    assert_eq!(store.len(), 110_536);
    assert_eq!(
        store
            .rows
            .iter()
            .map(|r| r.patient_id.as_str())
            .collect::<HashSet<_>>()
            .len(),
        67_209
    );
    assert_eq!(
        positives(&store),
        vec![6168, 9846, 1666, 1298, 7018, 3009, 2549, 5223, 416]
    );
    check_splits(&store, [0.6, 0.2, 0.2], 0.01);
    stratified(&store);
    // Subgroups of the kept rows, expected with pandas (`broken` = the 21 ids of
    // presets::padchest::BROKEN):
    //   p = pd.read_csv(f, dtype=str, keep_default_na=False)
    //   k = p[~p.ImageID.isin(broken) & p.Projection.isin(["PA", "AP", "AP_horizontal"])
    //         & ~p.Labels.str.strip().isin(["", "nan", "None"])]                       # 110536 rows
    //   k.PatientSex_DICOM.value_counts()     # M 55692, F 54826, O 15, "nan" 3
    //   k.Projection.replace({"AP_horizontal": "AP"}).value_counts()   # PA 91648, AP 18888
    //   age = k.StudyDate_DICOM.str[:4].astype(int) - pd.to_numeric(k.PatientBirth, errors="coerce")
    //   age[age.between(0, 120)].min(), age[age.between(0, 120)].max(), (~age.between(0, 120)).sum()
    //                                         # 0, 105, 3 (3 empty PatientBirth, none out of range)
    let g = SubgroupSummary::of(&store.rows);
    assert_eq!(counts(&g.sex), (vec![("F", 54_826), ("M", 55_692)], 18));
    assert_eq!(counts(&g.view), (vec![("AP", 18_888), ("PA", 91_648)], 0));
    assert_eq!(ages(&g), (0.0, 105.0, 3));
    assert!(
        store
            .meta
            .notes
            .iter()
            .any(|n| n.contains("+-1")
                && n.contains("the birth and study years: 0 values unparsable"))
    );
}

#[test]
fn vindr_kaggle_labels_only() {
    let Some(f) = common::real_data("vinbigdata-train.csv.gz") else {
        return;
    };
    let root = common::root_with(&[(&f, "train.csv.gz")]);
    let (store, _tmp) = labels_only("vindr", root.path());
    assert_eq!(store.len(), 15_000);
    // A finding is positive when any of the three readers marked it.
    assert_eq!(
        positives(&store),
        vec![
            3067, 186, 452, 2300, 353, 386, 613, 1322, 826, 1134, 1032, 1981, 96, 1617
        ]
    );
    check_splits(&store, [0.6, 0.2, 0.2], 0.005);
    stratified(&store);
    assert!(
        store
            .meta
            .notes
            .iter()
            .any(|n| n.contains("ANY of its readers"))
    );
    // The Kaggle CSV has no sex, age or view: they come from the DICOM headers,
    // which a labels-only conversion never opens (tests/metadata.rs covers them).
    let g = SubgroupSummary::of(&store.rows);
    assert_eq!((g.sex, g.view, g.site, g.age), (None, None, None, None));
}

#[test]
fn siim_labels_only() {
    let Some(f) = common::real_data("siim-pneumothorax-train-rle.csv.gz") else {
        return;
    };
    let root = common::root_with(&[(&f, "train-rle.csv.gz")]);
    let (store, _tmp) = labels_only("siim", root.path());
    assert_eq!(store.len(), 12_047);
    assert_eq!(positives(&store), vec![2669]);
    check_splits(&store, [0.6, 0.2, 0.2], 0.005);
    assert_eq!(
        store.meta.split_rule.group_level,
        cxr_data::labels::GroupLevel::Image
    );
}

#[test]
fn indiana_labels_only() {
    let Some(f) = common::real_data("NLMCXR_reports.tgz") else {
        return;
    };
    let root = common::root_with(&[(&f, "NLMCXR_reports.tgz")]);
    let (store, tmp) = labels_only("indiana", root.path());
    assert_eq!(store.len(), 7_470);
    // 3,955 reports, 104 without images.
    assert_eq!(
        store
            .rows
            .iter()
            .map(|r| r.patient_id.as_str())
            .collect::<HashSet<_>>()
            .len(),
        3_851
    );
    assert_eq!(
        positives(&store),
        vec![
            1058, 840, 655, 616, 558, 511, 485, 355, 337, 305, 297, 286, 269, 233, 224, 222, 220,
            210, 213, 211
        ]
    );
    check_splits(&store, [0.6, 0.2, 0.2], 0.01);
    let manifest = std::fs::read_to_string(tmp.path().join("store/manifest.csv")).unwrap();
    assert!(
        manifest
            .lines()
            .next()
            .unwrap()
            .ends_with(",study_id,report")
    );
    assert!(
        manifest.contains("The cardiac silhouette and mediastinum size are within normal limits")
    );
}

#[test]
fn chexpert_labels_only_four_states() {
    let Some(f) = common::real_data("chexpert_train.csv.gz") else {
        return;
    };
    let root = common::root_with(&[(&f, "train.csv.gz")]);
    let (store, tmp) = labels_only("chexpert", root.path());
    assert_eq!(store.len(), 223_414);
    assert_eq!(
        store
            .rows
            .iter()
            .map(|r| r.patient_id.as_str())
            .collect::<HashSet<_>>()
            .len(),
        64_540
    );
    check_splits(&store, [0.6, 0.2, 0.2], 0.01);
    // Edema: 1 / 0 / -1 / blank = 52,246 / 20,726 / 12,984 / 137,458; the manifest
    // policy writes -1 as unknown and blank as 0; labels-raw.csv keeps all four.
    let edema = store.meta.labels.iter().position(|l| l == "Edema").unwrap();
    let count = |v: Option<f32>| store.rows.iter().filter(|r| r.targets[edema] == v).count();
    assert_eq!(
        (count(Some(1.0)), count(Some(0.0)), count(None)),
        (52_246, 20_726 + 137_458, 12_984)
    );
    let raw = std::fs::read_to_string(tmp.path().join("store/labels-raw.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(raw.as_bytes());
    let col = rdr
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "Edema")
        .unwrap();
    let mut states: HashMap<String, usize> = HashMap::new();
    for r in rdr.records() {
        *states.entry(r.unwrap()[col].to_string()).or_default() += 1;
    }
    assert_eq!(states["-1"], 12_984);
    assert_eq!(states[""], 137_458);
    // Subgroups, expected with pandas:
    //   c = pd.read_csv("chexpert_train.csv.gz"); fl, appa = c["Frontal/Lateral"], c["AP/PA"]
    //   c.Sex.value_counts()                  # Male 132636, Female 90777, Unknown 1
    //   fl.where(fl == "Lateral", appa.where(appa.isin(["AP", "PA"]), "UNKNOWN")).value_counts()
    //                                         # AP 161590, Lateral 32387, PA 29420, UNKNOWN 17 (LL 16, RL 1)
    //   c.Age.min(), c.Age.max(), (~c.Age.between(0, 120)).sum()   # 0, 90, 0
    let g = SubgroupSummary::of(&store.rows);
    assert_eq!(counts(&g.sex), (vec![("F", 90_777), ("M", 132_636)], 1));
    assert_eq!(
        counts(&g.view),
        (
            vec![
                ("AP", 161_590),
                ("LATERAL", 32_387),
                ("PA", 29_420),
                ("UNKNOWN", 17)
            ],
            0
        )
    );
    assert_eq!(ages(&g), (0.0, 90.0, 0));
    let manifest = std::fs::read_to_string(tmp.path().join("store/manifest.csv")).unwrap();
    assert!(
        manifest
            .lines()
            .next()
            .unwrap()
            .ends_with(",study_id,view,sex,age"),
        "{}",
        manifest.lines().next().unwrap()
    );
}
