//! Generic CSV conversion into a store, and reading it back memory-mapped.

use std::path::Path;

use cxr_data::convert::{ConvertOptions, convert};
use cxr_data::csv_source::{CsvSpec, read_generic};
use cxr_data::labels::{Split, Task};
use cxr_data::store::read::Store;

fn fixture(dir: &Path) -> std::path::PathBuf {
    let mut csv = String::from("file,pid,a,b,grade\n");
    for i in 0..12u32 {
        let name = format!("img/{i:02}.png");
        let a = ["1", "0", "-1", ""][i as usize % 4];
        let b = if i % 3 == 0 { "1.0" } else { "0.0" };
        csv += &format!("{name},p{},{a},{b},{}\n", i / 2, i % 3);
    }
    std::fs::create_dir_all(dir.join("img")).unwrap();
    for i in 0..12u32 {
        if i != 5 {
            image::GrayImage::from_pixel(40 + i, 30, image::Luma([(i * 20) as u8]))
                .save(dir.join(format!("img/{i:02}.png")))
                .unwrap();
        }
    }
    // Image 7 is truncated.
    let p7 = dir.join("img/07.png");
    let b = std::fs::read(&p7).unwrap();
    std::fs::write(&p7, &b[..20]).unwrap();
    let path = dir.join("labels.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn spec(csv: &Path, task: Task, labels: &[&str]) -> CsvSpec {
    CsvSpec {
        csv: csv.to_path_buf(),
        path_column: "file".into(),
        label_columns: labels.iter().map(|s| s.to_string()).collect(),
        task,
        patient_column: Some("pid".into()),
        split_column: None,
    }
}

#[test]
fn convert_skip_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let csv = fixture(dir.path());
    let table = read_generic(&spec(&csv, Task::Multilabel, &["a", "b"])).unwrap();
    assert_eq!(table.records.len(), 12);
    let out = dir.path().join("store");
    let mut opts = ConvertOptions::new(&out);
    opts.size = 16;
    opts.shard_len = 4;
    let s = convert(&table, dir.path(), "csv", &opts).unwrap();
    assert_eq!(s.skipped.len(), 2);
    assert_eq!(s.skipped[0].source_path, "img/05.png");
    assert!(s.skipped[1].reason.contains("07.png"));
    assert_eq!(s.meta.skipped, 2);
    assert_eq!(s.meta.splits.values().sum::<usize>(), 10);
    assert_eq!(s.meta.shards, 3);
    let skipped = std::fs::read_to_string(out.join("skipped.csv")).unwrap();
    assert_eq!(skipped.lines().count(), 3);
    let manifest = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    assert_eq!(
        manifest.lines().next().unwrap(),
        "index,id,patient_id,split,source_path,a,b"
    );
    // Row of image 2: a = -1 (uncertain) -> empty under the default policy.
    let row2 = manifest.lines().nth(3).unwrap();
    assert!(
        row2.starts_with("2,img/02.png,p1,") && row2.ends_with(",,0"),
        "{row2}"
    );
    let raw = std::fs::read_to_string(out.join("labels-raw.csv")).unwrap();
    assert_eq!(raw.lines().nth(3).unwrap(), "2,img/02.png,-1,0");
    assert_eq!(raw.lines().nth(4).unwrap(), "3,img/03.png,,1");

    let store = Store::open(&out).unwrap();
    assert_eq!(store.len(), 10);
    // Uniform images stay uniform through the resize: image i has value 20*i.
    for (k, row) in store.rows.iter().enumerate() {
        let i: u32 = row.id[4..6].parse().unwrap();
        let px = store.image(k).unwrap();
        assert_eq!(px.len(), 256);
        assert!(px.iter().all(|&v| v as u32 == i * 20), "image {i}");
    }
    let train: usize = store
        .batches(Split::Train, 3)
        .map(|(idx, buf)| {
            assert_eq!(buf.len(), idx.len() * 256);
            idx.len()
        })
        .sum();
    assert_eq!(train, s.meta.splits["train"]);
    // Same patient, same split.
    for w in store.rows.windows(2) {
        if w[0].patient_id == w[1].patient_id {
            assert_eq!(w[0].split, w[1].split);
        }
    }

    // Occupied output refused, accepted with force, same seed same bytes.
    let e = convert(&table, dir.path(), "csv", &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--force"), "{e}");
    let before = std::fs::read(out.join("images-00000.safetensors")).unwrap();
    let m_before = std::fs::read(out.join("manifest.csv")).unwrap();
    opts.force = true;
    convert(&table, dir.path(), "csv", &opts).unwrap();
    assert_eq!(
        before,
        std::fs::read(out.join("images-00000.safetensors")).unwrap()
    );
    assert_eq!(m_before, std::fs::read(out.join("manifest.csv")).unwrap());
    // No temporary directory is left behind.
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn labels_only_multiclass_and_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let csv = fixture(dir.path());
    let table = read_generic(&spec(&csv, Task::Multiclass, &["grade"])).unwrap();
    assert_eq!(table.labels, vec!["0", "1", "2"]);
    let out = dir.path().join("mc");
    let mut opts = ConvertOptions::new(&out);
    opts.labels_only = true;
    let s = convert(&table, dir.path(), "csv", &opts).unwrap();
    assert_eq!(s.meta.splits.values().sum::<usize>(), 12);
    assert!(!out.join("images-00000.safetensors").exists());
    let manifest = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    assert_eq!(
        manifest.lines().next().unwrap(),
        "index,id,patient_id,split,source_path,class"
    );
    assert!(manifest.lines().nth(3).unwrap().ends_with(",2"));
    let store = Store::open(&out).unwrap();
    assert_eq!(store.rows[2].targets, vec![Some(2.0)]);
    assert!(store.image(0).is_none());

    std::fs::write(
        dir.path().join("bad.csv"),
        "file,pid,a,b,grade\nx.png,p1,1,0,1\ny.png,p2,2,0,1\n",
    )
    .unwrap();
    let e = read_generic(&spec(
        &dir.path().join("bad.csv"),
        Task::Multilabel,
        &["a", "b"],
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("bad.csv, row 3") && e.contains("\"2\""), "{e}");
    std::fs::write(
        dir.path().join("short.csv"),
        "file,pid,a,b,grade\nx.png,p1,1,0,1\ny.png,p2,1\n",
    )
    .unwrap();
    let e = read_generic(&spec(
        &dir.path().join("short.csv"),
        Task::Multilabel,
        &["a", "b"],
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("short.csv, row 3"), "{e}");
    let e = read_generic(&spec(&csv, Task::Multilabel, &["a", "zzz"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing column \"zzz\""), "{e}");
}

#[test]
fn no_half_store_is_left_behind() {
    use cxr_data::store::write::StoreWriter;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    // An abandoned writer (error or panic mid-way) removes its partial directory.
    let mut w = StoreWriter::create(&out, false, [2, 2], 1).unwrap();
    w.push(&[1, 2, 3, 4]).unwrap();
    assert!(w.push(&[1, 2, 3]).is_err());
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A killed run's leftover is cleaned by the next run for the same output.
    std::fs::create_dir_all(dir.path().join(".s.partial-4000000/x")).unwrap();
    let w = StoreWriter::create(&out, false, [2, 2], 1).unwrap();
    assert!(!dir.path().join(".s.partial-4000000").exists());
    drop(w);
    // An existing regular file is an occupied output too.
    std::fs::write(&out, "x").unwrap();
    assert!(
        StoreWriter::create(&out, false, [2, 2], 1)
            .unwrap_err()
            .to_string()
            .contains("--force")
    );
}

/// Label-efficiency subsets: patient-level, seeded, nested, every label
/// trainable, written as lists and read back; tampered or missing lists are
/// errors that name the file.
#[test]
fn training_subsets_are_nested_patient_level_lists() {
    use std::collections::HashSet;
    let dir = tempfile::tempdir().unwrap();
    // 300 patients with 1-3 images; label `rare` positive for two patients only.
    let mut csv = String::from("file,pid,common,rare\n");
    for p in 0..300u32 {
        for f in 0..(1 + p % 3) {
            let rare = u8::from(p == 17 || p == 230);
            csv += &format!("img/{p}-{f}.png,p{p},{},{rare}\n", (p + f) % 2);
        }
    }
    let path = dir.path().join("labels.csv");
    std::fs::write(&path, csv).unwrap();
    let table = read_generic(&spec(&path, Task::Multilabel, &["common", "rare"])).unwrap();
    let root = dir.path().join("store");
    let mut opts = ConvertOptions::new(&root);
    opts.labels_only = true;
    convert(&table, dir.path(), "csv", &opts).unwrap();
    let store = Store::open(&root).unwrap();
    let train: Vec<usize> = store.split_indices(Split::Train);
    let train_patients: HashSet<&str> = train
        .iter()
        .map(|&i| store.rows[i].patient_id.as_str())
        .collect();
    let patients_of = |rows: &[usize]| -> HashSet<String> {
        rows.iter()
            .map(|&i| store.rows[i].patient_id.clone())
            .collect()
    };
    let fractions = [0.01, 0.1, 0.5, 1.0];
    let subsets: Vec<Vec<usize>> = fractions
        .iter()
        .map(|&f| store.train_subset(f, 3).unwrap())
        .collect();
    for (k, rows) in subsets.iter().enumerate() {
        let patients = patients_of(rows);
        // Whole patients: every training image of a kept patient is in.
        for &i in &train {
            assert_eq!(
                rows.contains(&i),
                patients.contains(&store.rows[i].patient_id),
                "fraction {}",
                fractions[k]
            );
        }
        // The prefix, plus at most one patient per label for the rare label.
        let prefix = ((fractions[k] * train_patients.len() as f64).round() as usize).max(1);
        assert!(patients.len() >= prefix && patients.len() <= prefix + 2);
        // Every label has a positive.
        for j in 0..2 {
            assert!(rows.iter().any(|&i| store.rows[i].targets[j] == Some(1.0)));
        }
        if k > 0 {
            let smaller: HashSet<usize> = subsets[k - 1].iter().copied().collect();
            assert!(smaller.iter().all(|i| rows.contains(i)), "not nested");
        }
    }
    assert_eq!(subsets[3], train);
    assert_ne!(store.train_subset(0.1, 4).unwrap(), subsets[1]);

    // Written lists read back identically; writing again changes nothing.
    store
        .write_train_subsets(&root, &fractions[..3], 3)
        .unwrap();
    store
        .write_train_subsets(&root, &fractions[..3], 3)
        .unwrap();
    for (k, &f) in fractions.iter().enumerate() {
        assert_eq!(store.read_train_subset(&root, f, 3).unwrap(), subsets[k]);
    }
    let listing = cxr_data::store::subsets::subset_path(&root, 0.1, 3);
    assert!(
        listing.ends_with("subsets/seed-3/fraction-0.1.csv"),
        "{}",
        listing.display()
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("subsets/seed-3/subsets.json")).unwrap())
            .unwrap();
    assert_eq!(meta["subsets"][0]["patients_added_for_labels"][0], "rare");
    // A later call for another fraction keeps the earlier entries, in order.
    store.write_train_subsets(&root, &[0.2], 3).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("subsets/seed-3/subsets.json")).unwrap())
            .unwrap();
    let listed: Vec<f64> = meta["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fraction"].as_f64().unwrap())
        .collect();
    assert_eq!(listed, [0.01, 0.1, 0.2, 0.5]);

    // Missing list: the error names the command that writes it.
    let e = store
        .read_train_subset(&root, 0.3, 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fraction-0.3.csv") && e.contains("cxrlearn subsets"),
        "{e}"
    );
    // A list naming a validation image, or an unknown id, is refused with its row.
    let val_id = store.split_indices(Split::Val)[0];
    let text = std::fs::read_to_string(&listing).unwrap();
    let tampered = format!(
        "{text}{},{}\n",
        store.rows[val_id].id, store.rows[val_id].patient_id
    );
    std::fs::write(&listing, tampered).unwrap();
    let e = store
        .read_train_subset(&root, 0.1, 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is not in the training split") && e.contains("row "),
        "{e}"
    );
    // Writing over a list that differs from the rule is refused, not silent.
    let e = store
        .write_train_subsets(&root, &[0.1], 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("differs"), "{e}");
    std::fs::write(&listing, "id,patient_id\nnope,p1\n").unwrap();
    let e = store
        .read_train_subset(&root, 0.1, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("id 'nope' is not in the store"), "{e}");
    assert!(store.train_subset(0.0, 3).is_err() && store.train_subset(1.5, 3).is_err());
}

/// A manifest label outside the store format (`1`, `0`, empty; multi-class:
/// a class index) is refused, naming file, row and column, rather than read
/// as a truthy/falsy target that changes the ground truth (#22).
#[test]
fn store_labels_outside_the_format_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let csv = fixture(dir.path());
    for (task, labels, name) in [
        (Task::Multilabel, vec!["a", "b"], "ml"),
        (Task::Multiclass, vec!["grade"], "mc"),
    ] {
        let table = read_generic(&spec(&csv, task, &labels)).unwrap();
        let out = dir.path().join(name);
        let mut opts = ConvertOptions::new(&out);
        opts.labels_only = true;
        convert(&table, dir.path(), "csv", &opts).unwrap();
        let manifest = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
        Store::open(&out).unwrap();
        let column = if task == Task::Multiclass {
            "class"
        } else {
            "b"
        };
        for bad in ["7", "-3", "0.5", "nan", "3"] {
            // Replace the last cell of the third record (row 4).
            let mut lines: Vec<String> = manifest.lines().map(str::to_string).collect();
            let cut = lines[3].rfind(',').unwrap();
            lines[3] = format!("{},{bad}", &lines[3][..cut]);
            std::fs::write(out.join("manifest.csv"), lines.join("\n") + "\n").unwrap();
            let e = Store::open(&out).map(|_| ()).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(e, cxr_data::error::DataError::StoreLabel { row: 4, .. })
                    && msg.contains("manifest.csv, row 4")
                    && msg.contains(&format!("column \"{column}\""))
                    && msg.contains(&format!("{bad:?}")),
                "{msg}"
            );
        }
    }
}

/// A label CSV whose header repeats a column the reader uses is refused,
/// naming the file and the column, instead of silently reading the first;
/// a repeated column that no reader asks for is left alone (#22).
#[test]
fn repeated_header_columns_that_are_read_are_refused() {
    use cxr_data::error::DataError;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = "x.png,p1,1,0,1,0\ny.png,p2,0,1,0,1\n";
    for (header, column) in [
        ("file,pid,a,b,a,z", "a"),
        ("file,pid,a,b,z, b ", "b"),
        ("file,pid,a,b,pid,z", "pid"),
        ("file,pid,a,b,file,z", "file"),
    ] {
        let path = d.join("dup.csv");
        std::fs::write(&path, format!("{header}\n{rows}")).unwrap();
        let e = read_generic(&spec(&path, Task::Multilabel, &["a", "b"])).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, DataError::DuplicateColumn { column: c, .. } if c.trim() == column)
                && msg.contains("dup.csv")
                && msg.contains(&format!("column {column:?}")),
            "{header}: {msg}"
        );
    }
    // Unused repeats (as some publishers' files have) still read.
    let path = d.join("extra.csv");
    std::fs::write(&path, format!("file,pid,a,b,z,z\n{rows}")).unwrap();
    let table = read_generic(&spec(&path, Task::Multilabel, &["a", "b"])).unwrap();
    assert_eq!(table.records.len(), 2);
}
