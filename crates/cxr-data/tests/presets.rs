//! Presets without public metadata, on tiny fixtures in the publisher's layout
//! written by the tests themselves.

use crate::common;

use std::path::Path;

use cxr_data::convert::{ConvertOptions, convert};
use cxr_data::labels::{LabelState, Split, Task};
use cxr_data::presets;
use cxr_data::store::read::Store;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn phantom_layout_full_conversion() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("raw");
    let mut labels = String::from("path,patient_id,study_id,site,view,Cardiomegaly,Effusion\n");
    let mut reports = String::from("study_id,findings,impression\n");
    for p in 0..10 {
        for (k, view) in ["PA", "LATERAL"].iter().enumerate() {
            let path = format!(
                "images/p{p:04}_s01_{}.png",
                if k == 0 { "frontal" } else { "lateral" }
            );
            common::write_png(&root.join(&path), 64, 48, (p * 10) as u8);
            labels += &format!(
                "{path},p{p:04},s{p:04}_01,site{},{view},{},{}\n",
                p % 2,
                p % 2,
                u8::from(p % 3 == 0)
            );
        }
        reports += &format!(
            "s{p:04}_01,\"Heart size {}, lungs clear.\",No acute disease.\n",
            if p % 2 == 1 { "enlarged" } else { "normal" }
        );
    }
    write(&root.join("labels.csv"), &labels);
    write(&root.join("reports.csv"), &reports);
    let table = presets::load("phantom", &root).unwrap();
    assert_eq!(table.records.len(), 10);
    assert_eq!(table.labels, vec!["Cardiomegaly", "Effusion"]);
    assert_eq!(
        table.records[1].labels,
        vec![LabelState::Positive, LabelState::Negative]
    );
    assert!(
        table.records[1]
            .report
            .as_deref()
            .unwrap()
            .contains("Heart size enlarged")
    );
    let mut opts = ConvertOptions::new(dir.path().join("store"));
    opts.size = 32;
    let s = convert(&table, &root, "phantom", &opts).unwrap();
    assert_eq!(s.skipped.len(), 0);
    assert_eq!(s.meta.splits.values().sum::<usize>(), 10);
    assert!(
        s.meta
            .notes
            .iter()
            .any(|n| n.contains("10 lateral images left out"))
    );
    let store = Store::open(&dir.path().join("store")).unwrap();
    assert_eq!(store.meta.image_size, [32, 32]);
    // Column 0 of each gradient image keeps the base value p*10.
    for (i, r) in store.rows.iter().enumerate() {
        let p: u32 = r.patient_id[1..].parse().unwrap();
        assert!((store.image(i).unwrap()[0] as i32 - (p * 10) as i32).abs() <= 3);
    }
    let manifest = std::fs::read_to_string(dir.path().join("store/manifest.csv")).unwrap();
    assert_eq!(
        manifest.lines().next().unwrap(),
        "index,id,patient_id,split,source_path,Cardiomegaly,Effusion,study_id,view,site,report"
    );
}

#[test]
fn pediatric_folders_and_official_test() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("chest_xray");
    let mut n = 0;
    for split in ["train", "test"] {
        for p in 0..20 {
            write(
                &base.join(format!(
                    "{split}/PNEUMONIA/person{p}_bacteria_{}.jpeg",
                    p * 2
                )),
                "",
            );
            write(
                &base.join(format!(
                    "{split}/PNEUMONIA/person{p}_virus_{}.jpeg",
                    p * 2 + 1
                )),
                "",
            );
            write(
                &base.join(format!("{split}/NORMAL/IM-{:04}-0001.jpeg", p)),
                "",
            );
            n += 3;
        }
    }
    write(&base.join("val/NORMAL/NORMAL2-IM-1427-0001.jpeg"), "");
    write(
        &dir.path().join("__MACOSX/chest_xray/train/NORMAL/._x.jpeg"),
        "",
    );
    let table = presets::load("pediatric", dir.path()).unwrap();
    assert_eq!(table.records.len(), n + 1);
    assert_eq!(
        table
            .records
            .iter()
            .filter(|r| r.labels[0] == LabelState::Positive)
            .count(),
        80
    );
    let out = dir.path().join("store");
    let mut opts = ConvertOptions::new(&out);
    opts.labels_only = true;
    let s = convert(&table, dir.path(), "pediatric", &opts).unwrap();
    assert_eq!(s.meta.splits["test"], 60);
    // 61 train+val images share 80:10 -> about 54 / 7, never splitting person<N>.
    assert!(
        (5..=9).contains(&s.meta.splits["val"]),
        "{:?}",
        s.meta.splits
    );
    let store = Store::open(&out).unwrap();
    for r in &store.rows {
        assert_eq!(
            r.split == Split::Test,
            r.source_path.starts_with("chest_xray/test/")
        );
    }
    assert_eq!(
        cxr_data::presets::pediatric::patient_key("person12_virus_3"),
        "person12"
    );
    assert_eq!(
        cxr_data::presets::pediatric::patient_key("NORMAL2-IM-1427-0001"),
        "NORMAL2-IM-1427"
    );
}

#[test]
fn shenzhen_montgomery_suffixes() {
    let dir = tempfile::tempdir().unwrap();
    for i in 1..=6 {
        write(
            &dir.path().join(format!(
                "ChinaSet_AllFiles/CXR_png/CHNCXR_{i:04}_{}.png",
                i % 2
            )),
            "",
        );
        write(
            &dir.path().join(format!(
                "ChinaSet_AllFiles/ClinicalReadings/CHNCXR_{i:04}_{}.txt",
                i % 2
            )),
            "male 35yrs\nnormal\n",
        );
    }
    for i in 1..=4 {
        write(
            &dir.path().join(format!(
                "MontgomerySet/CXR_png/MCUCXR_{i:04}_{}.png",
                u8::from(i > 3)
            )),
            "",
        );
    }
    write(
        &dir.path()
            .join("MontgomerySet/ManualMask/leftMask/MCUCXR_0001_0.png"),
        "",
    );
    let both = presets::load("shenzhen-montgomery", dir.path()).unwrap();
    assert_eq!(both.records.len(), 10);
    assert_eq!(
        both.records
            .iter()
            .filter(|r| r.labels[0] == LabelState::Positive)
            .count(),
        4
    );
    assert_eq!(
        presets::load("shenzhen", dir.path()).unwrap().records.len(),
        6
    );
    assert_eq!(
        presets::load("montgomery", dir.path())
            .unwrap()
            .records
            .len(),
        4
    );
    write(
        &dir.path().join("MontgomerySet/CXR_png/MCUCXR_0009_x.png"),
        "",
    );
    let e = presets::load("montgomery", dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("MCUCXR_0009_x.png"), "{e}");
}

#[test]
fn jsrt_clndat_and_raw_images() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("Clinical_Information/CLNDAT_EN.txt"),
        "JPCLN001.IMG\t5\t15\t53\tmale\t1634\t692\tmalignant\tl.upper lobe\tlung cancer\nJPCLN002.IMG\t2\t30\t?\tfemale\t1000\t900\tbenign\tr.lower\t\tgranuloma\n",
    );
    write(
        &dir.path().join("Clinical_Information/CNNDAT_EN.TXT"),
        "JPCNN001.IMG 48 male non-nodule\n",
    );
    // One real-size raw image; the other two files are missing and get skipped.
    let mut raw = vec![0u8; 2048 * 2048 * 2];
    for (i, px) in raw.chunks_exact_mut(2).enumerate() {
        let v = ((i % 2048) * 4095 / 2047) as u16;
        px.copy_from_slice(&v.to_be_bytes());
    }
    write(&dir.path().join("All247images/JPCLN001.IMG"), "");
    std::fs::write(dir.path().join("All247images/JPCLN001.IMG"), &raw).unwrap();
    let table = presets::load("jsrt", dir.path()).unwrap();
    assert_eq!(table.task, Task::Multiclass);
    assert_eq!(
        table
            .records
            .iter()
            .map(|r| r.class.unwrap())
            .collect::<Vec<_>>(),
        vec![5, 2, 0]
    );
    let mut opts = ConvertOptions::new(dir.path().join("store"));
    opts.size = 64;
    let s = convert(&table, dir.path(), "jsrt", &opts).unwrap();
    assert_eq!(s.skipped.len(), 2);
    let store = Store::open(&dir.path().join("store")).unwrap();
    let img = store.image(0).unwrap();
    // Raw density grows left to right; inverted, the image darkens left to right.
    assert!(img[0] > 250 && img[63] < 5, "{} {}", img[0], img[63]);
    write(
        &dir.path().join("Clinical_Information/CLNDAT_EN.txt"),
        "JPCLN003.IMG\t9\t15\n",
    );
    let e = presets::load("jsrt", dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("CLNDAT_EN.txt, row 1") && e.contains("subtlety"),
        "{e}"
    );
}

#[test]
fn vindr_physionet_official_test() {
    let dir = tempfile::tempdir().unwrap();
    let labels = cxr_data::presets::vindr::PHYSIONET_LABELS;
    let header = format!(
        "image_id,rad_id,{},Aortic enlargement,Other diseases,No finding\n",
        labels.join(",")
    );
    let mut train = header.clone();
    for i in 0..60 {
        for r in 0..3 {
            // Images 0-35 have one positive reader for label i % 18; the rest are normal.
            let cells: Vec<&str> = (0..labels.len())
                .map(|k| {
                    if i < 36 && k == i % 18 && r == 0 {
                        "1"
                    } else {
                        "0"
                    }
                })
                .collect();
            train += &format!("tr{i},R{r},{},0,0,0\n", cells.join(","));
        }
    }
    let mut test = header;
    for i in 0..20 {
        let cells: Vec<&str> = (0..labels.len())
            .map(|k| if k == i % 18 { "1" } else { "0" })
            .collect();
        test += &format!("te{i},R99,{},0,0,0\n", cells.join(","));
    }
    write(
        &dir.path().join("annotations/image_labels_train.csv"),
        &train,
    );
    write(&dir.path().join("annotations/image_labels_test.csv"), &test);
    let table = presets::load("vindr", dir.path()).unwrap();
    assert_eq!(table.records.len(), 80);
    assert_eq!(table.labels.len(), 18);
    let mut opts = ConvertOptions::new(dir.path().join("store"));
    opts.labels_only = true;
    let s = convert(&table, dir.path(), "vindr", &opts).unwrap();
    assert_eq!(
        (
            s.meta.splits["train"],
            s.meta.splits["val"],
            s.meta.splits["test"]
        ),
        (48, 12, 20)
    );
    assert_eq!(table.records[0].source_path, "train/tr0.dicom");
    assert_eq!(table.records[60].source_path, "test/te0.dicom");
}

#[test]
fn mimic_study_join() {
    let dir = tempfile::tempdir().unwrap();
    let labels = cxr_data::presets::chexpert::LABELS;
    let mut l = format!("subject_id,study_id,{}\n", labels.join(","));
    let mut m = String::from(
        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns\n",
    );
    for s in 0..6 {
        let cells: Vec<&str> = (0..14)
            .map(|k| match (k + s) % 4 {
                0 => "1.0",
                1 => "0.0",
                2 => "-1.0",
                _ => "",
            })
            .collect();
        l += &format!("1000000{},5000000{s},{}\n", s / 2, cells.join(","));
        for v in ["PA", "LATERAL"] {
            m += &format!("d{s}{v},1000000{},5000000{s},CHEST,{v},3000,2500\n", s / 2);
        }
    }
    m += "orphan,19999999,59999999,CHEST,AP,1,1\n";
    write(&dir.path().join("mimic-cxr-2.0.0-chexpert.csv"), &l);
    write(&dir.path().join("mimic-cxr-2.0.0-metadata.csv"), &m);
    write(
        &dir.path().join("files/p10/p10000000/s50000000.txt"),
        "FINDINGS: clear lungs.\n",
    );
    let t = presets::load("mimic", dir.path()).unwrap();
    assert_eq!(t.records.len(), 12);
    assert_eq!(
        t.records[0].source_path,
        "files/p10/p10000000/s50000000/d0PA.jpg"
    );
    assert_eq!(
        t.records[0].labels[..4],
        [
            LabelState::Positive,
            LabelState::Negative,
            LabelState::Uncertain,
            LabelState::Missing
        ]
    );
    assert_eq!(
        t.records[1].report.as_deref(),
        Some("FINDINGS: clear lungs.")
    );
    assert_eq!(t.records[2].report, None);
    assert_eq!(t.records[1].view.as_deref(), Some("LATERAL"));
    assert!(
        presets::load("nosuch", dir.path())
            .unwrap_err()
            .to_string()
            .contains("available: nih")
    );
}
