//! Subgroup metadata (sex, age, view, site) in the store: from DICOM headers
//! during conversion, from the phantom's own files, from MIMIC-IV's patients
//! table, and stores written before these columns existed.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use cxr_data::convert::{ConvertOptions, convert};
use cxr_data::decode::decode_file;
use cxr_data::labels::{GroupLevel, LabelState, LabelTable, Record, Task};
use cxr_data::phantom::{Phantom, PhantomConfig, Prevalence, View};
use cxr_data::presets;
use cxr_data::store::read::Store;
use cxr_data::store::summary::SubgroupSummary;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A 4x2 16-bit CR image with the given PatientSex, PatientAge and ViewPosition.
fn dicom(sex: Option<&str>, age: Option<&str>, view: Option<&str>) -> Vec<u8> {
    dicom_of(sex, age, view, None)
}

/// [`dicom`] with a PatientID too.
fn dicom_of(
    sex: Option<&str>,
    age: Option<&str>,
    view: Option<&str>,
    patient: Option<&str>,
) -> Vec<u8> {
    let pixels: Vec<u16> = (0..8u16).map(|i| 100 * i).collect();
    let mut obj = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
        ),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "2.25.3"),
        DataElement::new(tags::MODALITY, VR::CS, "CR"),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(2u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(4u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
    ]);
    for (tag, vr, value) in [
        (tags::PATIENT_SEX, VR::CS, sex),
        (tags::PATIENT_AGE, VR::AS, age),
        (tags::VIEW_POSITION, VR::CS, view),
        (tags::PATIENT_ID, VR::LO, patient),
    ] {
        if let Some(v) = value {
            obj.put(DataElement::new(tag, vr, v));
        }
    }
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .unwrap();
    let mut out = Vec::new();
    file.write_all(&mut out).unwrap();
    out
}

/// pydicom's RG1_UNCR.dcm (a CR chest film) has PatientSex F and ViewPosition
/// PA but no PatientAge (checked with pydicom: `dcmread(f).get("PatientAge")`
/// is None).
#[test]
fn real_dicom_header_tags() {
    let Some(f) = common::real_data("RG1_UNCR.dcm") else {
        return;
    };
    let d = decode_file(&f).unwrap();
    assert_eq!(d.header.sex.as_deref(), Some("F"));
    assert_eq!(d.header.view.as_deref(), Some("PA"));
    assert_eq!(d.header.age, None);
}

/// VinDr's Kaggle CSV has no sex, age or view: a full conversion takes them
/// from each image's DICOM header, normalised like label-file values.
#[test]
fn vindr_dicom_headers_fill_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(Option<&str>, Option<&str>, Option<&str>); 6] = [
        (Some("M"), Some("045Y"), Some("PA")),
        (Some("F"), Some("006M"), Some("AP")),
        (Some("O"), Some("010W"), Some("LL")),
        (None, Some("003D"), None),
        (Some("F"), Some("412Y"), Some("")),
        (Some("M"), None, Some("PA")),
    ];
    let mut csv = String::from("image_id,class_name,class_id,rad_id\n");
    for (i, (sex, age, view)) in cases.iter().enumerate() {
        let class = if i % 2 == 0 { "0" } else { "14" };
        csv += &format!("img{i},x,{class},R1\n");
        let path = dir.path().join(format!("train/img{i}.dicom"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, dicom(*sex, *age, *view)).unwrap();
    }
    write(&dir.path().join("train.csv"), &csv);
    let table = presets::load("vindr", dir.path()).unwrap();
    assert!(
        table
            .records
            .iter()
            .all(|r| r.sex.is_none() && r.view.is_none())
    );
    let mut opts = ConvertOptions::new(dir.path().join("store"));
    opts.size = 8;
    let s = convert(&table, dir.path(), "vindr", &opts).unwrap();
    assert_eq!(s.skipped.len(), 0);
    assert!(
        s.meta
            .notes
            .iter()
            .any(|n| n.contains("DICOM headers")
                && n.contains("sex of 4, age of 4, view of 4 images")),
        "{:?}",
        s.meta.notes
    );
    let store = Store::open(&dir.path().join("store")).unwrap();
    // VinDr has no reports: the image-text methods' check names the store.
    let e = store.require_reports().unwrap_err().to_string();
    assert!(
        e.contains(&dir.path().join("store").display().to_string()) && e.contains("'report'"),
        "{e}"
    );
    let by_id: BTreeMap<&str, _> = store
        .rows
        .iter()
        .map(|r| (r.id.as_str(), (r.sex.as_deref(), r.age, r.view.as_deref())))
        .collect();
    // O is not F/M; 412 years is a data error; an empty ViewPosition is no view.
    let expected = [
        (Some("M"), Some(45.0), Some("PA")),
        (Some("F"), Some(0.5), Some("AP")),
        (None, Some((70.0 / 365.25) as f32), Some("LATERAL")),
        (None, Some((3.0 / 365.25) as f32), None),
        (Some("F"), None, None),
        (Some("M"), None, Some("PA")),
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(by_id[format!("img{i}").as_str()], *want, "img{i}");
    }
    // Ages are written in their shortest exact form.
    let manifest = std::fs::read_to_string(dir.path().join("store/manifest.csv")).unwrap();
    assert!(manifest.lines().next().unwrap().ends_with(",view,sex,age"));
    assert!(manifest.contains(",PA,M,45\n") && manifest.contains(",AP,F,0.5\n"));
    let g = SubgroupSummary::of(&store.rows);
    assert_eq!(
        g.lines(),
        vec![
            ("sex", "F 2, M 2, unknown 2".to_string()),
            ("view", "AP 1, LATERAL 1, PA 2, unknown 2".to_string()),
            (
                "age",
                format!("{}-45 years, 2 unknown", (3.0 / 365.25) as f32)
            ),
        ]
    );
}

/// Where a label file has a value, it wins over the image header's.
#[test]
fn label_file_values_win_over_the_header() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        let p = dir.path().join(format!("d{i}.dcm"));
        std::fs::write(&p, dicom(Some("M"), Some("070Y"), Some("AP"))).unwrap();
    }
    let mut t = LabelTable::new("t", Task::Binary, vec!["y".into()], GroupLevel::Image);
    for i in 0..5 {
        t.records.push(Record {
            id: format!("d{i}"),
            group: format!("d{i}"),
            source_path: format!("d{i}.dcm"),
            labels: vec![if i % 2 == 0 {
                LabelState::Positive
            } else {
                LabelState::Negative
            }],
            sex: (i == 0).then(|| "F".to_string()),
            age: (i == 0).then_some(33.0),
            view: (i == 0).then(|| "PA".to_string()),
            ..Default::default()
        });
    }
    let mut opts = ConvertOptions::new(dir.path().join("store"));
    opts.size = 8;
    convert(&t, dir.path(), "csv", &opts).unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    for r in &store.rows {
        let want = if r.id == "d0" {
            (Some("F"), Some(33.0), Some("PA"))
        } else {
            (Some("M"), Some(70.0), Some("AP"))
        };
        assert_eq!(
            (r.sex.as_deref(), r.age, r.view.as_deref()),
            want,
            "{}",
            r.id
        );
    }
}

/// The phantom's store carries each patient's sex and age (from
/// ground_truth.csv), site and view; the expected numbers come from the
/// generator's own patients, not from its files.
#[test]
fn phantom_sex_age_view_site() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let ph = Phantom::new(PhantomConfig {
        seed: 7,
        patients: 30,
        size: 32,
        sites: 2,
        prevalence: Prevalence::balanced(),
        ..PhantomConfig::default()
    })
    .unwrap();
    ph.write(&raw, false, &|_, _| {}).unwrap();
    let table = presets::load("phantom", &raw).unwrap();
    let mut opts = ConvertOptions::new(dir.path().join("store"));
    opts.labels_only = true;
    convert(&table, &raw, "phantom", &opts).unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    // The phantom writes a report per study.
    store.require_reports().unwrap();

    // Frontal images only, as the preset keeps them.
    let mut want: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let (mut min, mut max) = (u32::MAX, 0);
    let frontal: Vec<_> = ph
        .images
        .iter()
        .filter(|i| i.view != View::Lateral)
        .collect();
    for img in &frontal {
        let p = &ph.patients[img.patient];
        let sex = if p.anatomy.female { "F" } else { "M" };
        *want
            .entry("sex")
            .or_default()
            .entry(sex.into())
            .or_default() += 1;
        *want
            .entry("view")
            .or_default()
            .entry(img.view.name().into())
            .or_default() += 1;
        *want
            .entry("site")
            .or_default()
            .entry(ph.sites[p.site].name.clone())
            .or_default() += 1;
        (min, max) = (min.min(p.anatomy.age), max.max(p.anatomy.age));
    }
    assert_eq!(store.len(), frontal.len());
    let g = SubgroupSummary::of(&store.rows);
    for (name, c) in [("sex", &g.sex), ("view", &g.view), ("site", &g.site)] {
        let c = c.as_ref().unwrap();
        assert_eq!(c.values, want[name], "{name}");
        assert_eq!(c.unknown, 0, "{name}");
    }
    let a = g.age.unwrap();
    assert_eq!((a.min, a.max, a.unknown), (min as f32, max as f32, 0));
    // Per image too: each row is its patient's.
    for r in &store.rows {
        let p = ph.patients.iter().find(|p| p.id == r.patient_id).unwrap();
        assert_eq!(r.age, Some(p.anatomy.age as f32));
        assert_eq!(
            r.sex.as_deref(),
            Some(if p.anatomy.female { "F" } else { "M" })
        );
    }
    let header = std::fs::read_to_string(dir.path().join("store/manifest.csv")).unwrap();
    assert!(
        header
            .lines()
            .next()
            .unwrap()
            .ends_with(",study_id,view,site,sex,age,report")
    );
}

fn mimic_fixture(dir: &Path) {
    let labels = cxr_data::presets::chexpert::LABELS;
    let mut l = format!("subject_id,study_id,{}\n", labels.join(","));
    let mut m = String::from("dicom_id,subject_id,study_id,ViewPosition,StudyDate\n");
    // Subject 10000001 studied in 2180 and 2183; 10000002 in 2150; 10000003
    // is not in the patients table.
    for (study, subject, date) in [
        ("50000001", "10000001", "21800506"),
        ("50000002", "10000001", "21830101"),
        ("50000003", "10000002", "21501231"),
        ("50000004", "10000003", "21200101"),
    ] {
        l += &format!("{subject},{study},{}\n", ["1.0"; 14].join(","));
        m += &format!("d{study},{subject},{study},PA,{date}\n");
    }
    write(&dir.join("mimic-cxr-2.0.0-chexpert.csv"), &l);
    write(&dir.join("mimic-cxr-2.0.0-metadata.csv"), &m);
}

/// MIMIC-IV's patients table adds sex and the age at each study:
/// anchor_age + (study year - anchor_year).
#[test]
fn mimic_sex_and_age_from_the_patients_table() {
    let dir = tempfile::tempdir().unwrap();
    mimic_fixture(dir.path());
    let t = presets::load("mimic", dir.path()).unwrap();
    assert!(t.records.iter().all(|r| r.sex.is_none() && r.age.is_none()));
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("no sex or age") && n.contains("patients.csv.gz"))
    );

    write(
        &dir.path().join("hosp/patients.csv"),
        "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n\
         10000001,F,52,2180,2014 - 2016,\n\
         10000002,M,91,2148,2008 - 2010,2151-01-01\n",
    );
    let t = presets::load("mimic", dir.path()).unwrap();
    let got: Vec<_> = t
        .records
        .iter()
        .map(|r| (r.id.as_str(), r.sex.as_deref(), r.age))
        .collect();
    assert_eq!(
        got,
        vec![
            ("d50000001", Some("F"), Some(52.0)),
            ("d50000002", Some("F"), Some(55.0)),
            ("d50000003", Some("M"), Some(93.0)),
            ("d50000004", None, None),
        ]
    );
    assert_eq!(t.sources.len(), 3);
    assert!(
        t.notes.iter().any(
            |n| n.contains("anchor_age") && n.contains("1 images of subjects not in the table")
        )
    );

    // A duplicate subject is an error naming the file and row.
    write(
        &dir.path().join("hosp/patients.csv"),
        "subject_id,gender,anchor_age,anchor_year\n10000001,F,52,2180\n10000001,F,52,2180\n",
    );
    let e = presets::load("mimic", dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("patients.csv, row 3") && e.contains("duplicate subject_id"),
        "{e}"
    );
}

/// A manifest written before the sex/age/site columns existed opens
/// unchanged, with those attributes unknown; a malformed age is an error
/// naming the row.
#[test]
fn old_manifests_open_and_bad_ages_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("l.csv");
    write(&csv, "p,y\na.png,1\nb.png,0\nc.png,1\nd.png,0\ne.png,1\n");
    let spec = cxr_data::csv_source::CsvSpec {
        csv: csv.clone(),
        path_column: "p".into(),
        label_columns: vec!["y".into()],
        task: Task::Binary,
        patient_column: None,
        split_column: None,
    };
    let t = cxr_data::csv_source::read_generic(&spec).unwrap();
    let mut opts = ConvertOptions::new(dir.path().join("store"));
    opts.labels_only = true;
    convert(&t, dir.path(), "csv", &opts).unwrap();
    let manifest = dir.path().join("store/manifest.csv");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        "index,id,patient_id,split,source_path,y"
    );
    let store = Store::open(&dir.path().join("store")).unwrap();
    assert!(
        store
            .rows
            .iter()
            .all(|r| r.sex.is_none() && r.age.is_none() && r.site.is_none())
    );
    assert!(SubgroupSummary::of(&store.rows).lines().is_empty());

    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[0] += ",site,sex,age";
    lines[1] += ",s1,F,45.5";
    lines[2] += ",s2,,";
    for l in &mut lines[3..] {
        *l += ",s1,M,7";
    }
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    assert_eq!(
        (
            store.rows[0].site.as_deref(),
            store.rows[0].sex.as_deref(),
            store.rows[0].age
        ),
        (Some("s1"), Some("F"), Some(45.5))
    );
    assert_eq!(
        (store.rows[1].sex.as_deref(), store.rows[1].age),
        (None, None)
    );
    lines[2] = lines[2].replace(",s2,,", ",s2,,old");
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    let e = Store::open(&dir.path().join("store"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 3") && e.contains("bad age \"old\""), "{e}");
}

/// A DICOM's PatientID reaches the decoded image (what `predict` writes as
/// `patient_id`); files without one, and PNGs, have none.
#[test]
fn dicom_patient_id_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.dcm");
    let without = dir.path().join("without.dcm");
    std::fs::write(&without, dicom(Some("F"), None, Some("PA"))).unwrap();
    std::fs::write(
        &with,
        dicom_of(Some("F"), None, Some("PA"), Some(" p-0042 ")),
    )
    .unwrap();
    let img = cxr_data::decode::decode_file(&with).unwrap();
    assert_eq!(img.patient_id.as_deref(), Some("p-0042"));
    assert_eq!(img.header.sex.as_deref(), Some("F"));
    assert_eq!(
        cxr_data::decode::decode_file(&without).unwrap().patient_id,
        None
    );
}
