//! Label table -> dataset store: splits, optional few-shot subset, parallel
//! decoding in bounded chunks, skipped-image bookkeeping, atomic write.

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::csv_source::{leaves_root, outside_root};
use crate::decode::{DecodeLimits, decode_file_with};
use crate::error::{DataError, Result};
use crate::labels::{LabelTable, Split, Subgroups, Task};
use crate::preprocess::{Preprocessing, ResizePolicy, to_store_image};
use crate::splits;
use crate::store::write::StoreWriter;
use crate::store::{DEFAULT_SHARD_LEN, DatasetMeta, FORMAT_VERSION, Source, SplitRule};

/// The largest side (`--size`) a store image may have, in pixels.
///
/// Chest radiographs are published at up to about 4000 px a side, so a larger
/// store image only upsamples. Conversion holds a chunk of decoded images and
/// one shard in memory, both growing with the square of the side: at 20000 px
/// a single image is 400 MB and the run allocated until it aborted, so the
/// side is checked before anything is read or written.
pub const MAX_IMAGE_SIZE: u32 = 4096;

/// Conversion settings.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Store directory.
    pub out: PathBuf,
    /// Replace an existing non-empty `out`.
    pub force: bool,
    /// Side of the square store images.
    pub size: u32,
    /// Resize policy.
    pub resize: ResizePolicy,
    /// Split seed.
    pub seed: u64,
    /// Train/val/test fractions; `None` = the dataset's paper default, else 60/20/20.
    pub fractions: Option<[f64; 3]>,
    /// Write labels and splits only.
    pub labels_only: bool,
    /// Keep `k` training images per class.
    pub few_shot: Option<usize>,
    /// Images per shard.
    pub shard_len: usize,
    /// Silence progress lines.
    pub quiet: bool,
    /// What one image file may declare (`--max-pixels`); an image beyond
    /// it is skipped like any unreadable one.
    pub limits: DecodeLimits,
}

impl ConvertOptions {
    /// Defaults for `out`: 224 px, squash, seed 0, paper splits.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            force: false,
            size: 224,
            resize: ResizePolicy::Squash,
            seed: 0,
            fractions: None,
            labels_only: false,
            few_shot: None,
            shard_len: DEFAULT_SHARD_LEN,
            quiet: true,
            limits: DecodeLimits::default(),
        }
    }

    /// Checks the options that a user types (`--size`, `--few-shot`,
    /// `--max-pixels`), so a bad value is refused before labels are hashed
    /// or the output touched.
    ///
    /// # Errors
    /// [`DataError::InvalidOption`] naming the flag and its value.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || self.size > MAX_IMAGE_SIZE {
            return Err(DataError::InvalidOption {
                flag: "--size",
                value: self.size.to_string(),
                reason: format!(
                    "the image side must be between 1 and {MAX_IMAGE_SIZE} pixels (MAX_IMAGE_SIZE)"
                ),
            });
        }
        // Zero images per class leaves an empty training split, which no
        // later command can use.
        if self.few_shot == Some(0) {
            return Err(DataError::InvalidOption {
                flag: "--few-shot",
                value: "0".into(),
                reason: "must keep at least 1 training image per class".into(),
            });
        }
        self.limits.validate()
    }
}

/// An image left out of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Image id.
    pub id: String,
    /// Path as listed in the label file.
    pub source_path: String,
    /// Why.
    pub reason: String,
}

/// What a conversion produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The store directory.
    pub out: PathBuf,
    /// Its `dataset.json`.
    pub meta: DatasetMeta,
    /// Images that could not be read.
    pub skipped: Vec<Skipped>,
}

/// SHA-256 over the bytes of `files`, in order.
pub fn hash_files(files: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    for f in files {
        let mut file = std::fs::File::open(f).map_err(|e| DataError::io(f, e))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(|e| DataError::io(f, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

fn csv_bytes(rows: Vec<Vec<String>>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record(&r)?;
    }
    w.into_inner()
        .map_err(|e| DataError::WriteCsv(e.into_error().into()))
}

/// Converts `table` (images under `root`) into a store.
pub fn convert(
    table: &LabelTable,
    root: &Path,
    kind: &str,
    opts: &ConvertOptions,
) -> Result<Summary> {
    opts.validate()?;
    if table.records.is_empty() {
        return Err(DataError::layout(
            root,
            "no images found in the label files",
        ));
    }
    let mut seen = HashSet::new();
    for r in &table.records {
        // The readers check each row's path where they know the row; this
        // catches a table built any other way before an image is opened.
        if let Some(why) = leaves_root(&r.source_path) {
            return Err(DataError::layout(
                root,
                format!("image {:?}: {}", r.id, outside_root(&r.source_path, why)),
            ));
        }
        if !seen.insert(r.id.as_str()) {
            return Err(DataError::layout(
                root,
                format!("duplicate image id {:?}", r.id),
            ));
        }
    }
    let fractions = opts
        .fractions
        .or(table.default_fractions)
        .unwrap_or([0.6, 0.2, 0.2]);
    let split = splits::assign(table, fractions, opts.seed);
    let selected: Vec<usize> = match opts.few_shot {
        Some(k) => splits::few_shot(table, &split, k, opts.seed),
        None => (0..table.records.len()).collect(),
    };
    let label_sha256 = hash_files(&table.sources)?;
    let size = [opts.size, opts.size];
    let mut writer = StoreWriter::create(&opts.out, opts.force, size, opts.shard_len)?;

    let mut kept: Vec<usize> = Vec::with_capacity(selected.len());
    // Sex, age and view read from each kept image's own header (DICOM), in
    // `kept` order; empty in labels-only mode, where no image is opened.
    let mut headers: Vec<Subgroups> = Vec::new();
    let mut skipped = Vec::new();
    if opts.labels_only {
        kept = selected;
    } else {
        // Chunks bound memory to a few hundred decoded images whatever the dataset size.
        let chunk = 64 * rayon::current_num_threads().max(1);
        let total = selected.len();
        let started = std::time::Instant::now();
        for (c, part) in selected.chunks(chunk).enumerate() {
            let images: Vec<Result<(Vec<u8>, Subgroups)>> = part
                .par_iter()
                .map(|&i| {
                    let rec = &table.records[i];
                    let path = root.join(&rec.source_path);
                    decode_file_with(&path, &opts.limits).map(|mut img| {
                        img.inverted ^= rec.inverted;
                        let header = std::mem::take(&mut img.header);
                        (to_store_image(img, opts.size, opts.resize), header)
                    })
                })
                .collect();
            for (&i, img) in part.iter().zip(images) {
                match img {
                    Ok((px, header)) => {
                        writer.push(&px)?;
                        kept.push(i);
                        headers.push(header);
                    }
                    Err(e) => {
                        let r = &table.records[i];
                        if !opts.quiet {
                            eprintln!("skipped {}: {e}", r.source_path);
                        }
                        skipped.push(Skipped {
                            id: r.id.clone(),
                            source_path: r.source_path.clone(),
                            reason: e.to_string(),
                        });
                    }
                }
            }
            let done = ((c + 1) * chunk).min(total);
            if !opts.quiet && (c % 16 == 15 || done == total) {
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                eprintln!("converted {done}/{total} images ({rate:.0}/s)");
            }
        }
    }

    let (subgroups, header_note) = merge_subgroups(table, &kept, &headers);
    let manifest = manifest_rows(table, &kept, &subgroups, &split);
    writer.write_file("manifest.csv", &csv_bytes(manifest)?)?;
    writer.write_file("labels-raw.csv", &csv_bytes(raw_rows(table, &kept))?)?;
    let mut sk = vec![vec![
        "id".to_string(),
        "source_path".into(),
        "reason".into(),
    ]];
    sk.extend(
        skipped
            .iter()
            .map(|s| vec![s.id.clone(), s.source_path.clone(), s.reason.clone()]),
    );
    writer.write_file("skipped.csv", &csv_bytes(sk)?)?;

    let mut counts: BTreeMap<String, usize> = Split::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    let mut positives: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for s in Split::ALL {
        positives.insert(s.as_str().into(), vec![0; table.labels.len()]);
    }
    for &i in &kept {
        let s = split[i].as_str();
        *counts.get_mut(s).expect("split key") += 1;
        let p = positives.get_mut(s).expect("split key");
        for l in table.positive_labels(&table.records[i]) {
            p[l] += 1;
        }
    }
    let description = match table.group_level {
        crate::labels::GroupLevel::Patient => "patient-disjoint",
        crate::labels::GroupLevel::Report => "report-disjoint (no patient id in this dataset)",
        crate::labels::GroupLevel::Image => "image-level (no patient id in this dataset)",
    };
    let fixed = table
        .records
        .iter()
        .any(|r| r.fixed_split == Some(Split::Test));
    let description = format!(
        "{description}, seeded, stratified by label (rarest first){}",
        if fixed {
            "; official test split kept, val carved from the official training set"
        } else {
            ""
        }
    );
    let meta = DatasetMeta {
        name: table.name.clone(),
        task: table.task,
        labels: table.labels.clone(),
        image_size: size,
        channels: 1,
        dtype: "u8".into(),
        preprocessing: Preprocessing::new(opts.resize),
        splits: counts,
        source: Source {
            kind: kind.into(),
            path: root.display().to_string(),
            label_sha256,
            label_files: table
                .sources
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        },
        version: FORMAT_VERSION,
        labels_only: opts.labels_only,
        shards: if opts.labels_only { 0 } else { writer.shards() },
        shard_len: opts.shard_len.max(1),
        split_rule: SplitRule {
            group_level: table.group_level,
            fractions,
            seed: opts.seed,
            description,
        },
        label_policy: table.policy,
        skipped: skipped.len(),
        few_shot: opts.few_shot,
        positives,
        notes: table.notes.iter().cloned().chain(header_note).collect(),
    };
    let out = writer.finish(&meta)?;
    Ok(Summary { out, meta, skipped })
}

/// The sex, age and view of every kept image: the label file's values, else
/// those of the image's header; and a note counting what the headers supplied.
fn merge_subgroups(
    table: &LabelTable,
    kept: &[usize],
    headers: &[Subgroups],
) -> (Vec<Subgroups>, Option<String>) {
    let none = Subgroups::default();
    let (mut sex, mut age, mut view) = (0, 0, 0);
    let merged = kept
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let own = table.records[i].subgroups();
            let header = headers.get(n).unwrap_or(&none);
            sex += usize::from(own.sex.is_none() && header.sex.is_some());
            age += usize::from(own.age.is_none() && header.age.is_some());
            view += usize::from(own.view.is_none() && header.view.is_some());
            own.or(header)
        })
        .collect();
    let note = (sex + age + view > 0).then(|| {
        format!(
            "from the images' DICOM headers where the label files have no value: sex of {sex}, \
             age of {age}, view of {view} images"
        )
    });
    (merged, note)
}

/// Ages as the shortest text that reads back to the same f32 (`45`, `45.5`).
fn age_cell(age: Option<f32>) -> String {
    age.map(|a| a.to_string()).unwrap_or_default()
}

fn manifest_rows(
    table: &LabelTable,
    kept: &[usize],
    subgroups: &[Subgroups],
    split: &[Split],
) -> Vec<Vec<String>> {
    let has = |f: fn(&crate::labels::Record) -> bool| kept.iter().any(|&i| f(&table.records[i]));
    let (study, site, report) = (
        has(|r| r.study_id.is_some()),
        has(|r| r.site.is_some()),
        has(|r| r.report.is_some()),
    );
    let (view, sex, age) = (
        subgroups.iter().any(|s| s.view.is_some()),
        subgroups.iter().any(|s| s.sex.is_some()),
        subgroups.iter().any(|s| s.age.is_some()),
    );
    let mut header: Vec<String> = ["index", "id", "patient_id", "split", "source_path"]
        .map(String::from)
        .to_vec();
    if table.task == Task::Multiclass {
        header.push("class".into());
    } else {
        header.extend(table.labels.iter().cloned());
    }
    for (on, name) in [
        (study, "study_id"),
        (view, "view"),
        (site, "site"),
        (sex, "sex"),
        (age, "age"),
        (report, "report"),
    ] {
        if on {
            header.push(name.into());
        }
    }
    let mut rows = vec![header];
    for (n, &i) in kept.iter().enumerate() {
        let r = &table.records[i];
        let mut row = vec![
            n.to_string(),
            r.id.clone(),
            r.group.clone(),
            split[i].as_str().into(),
            r.source_path.clone(),
        ];
        if table.task == Task::Multiclass {
            row.push(r.class.map(|c| c.to_string()).unwrap_or_default());
        } else {
            row.extend(r.labels.iter().map(|s| table.policy.cell(*s).to_string()));
        }
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let g = &subgroups[n];
        for (on, v) in [
            (study, opt(&r.study_id)),
            (view, opt(&g.view)),
            (site, opt(&r.site)),
            (sex, opt(&g.sex)),
            (age, age_cell(g.age)),
            (report, opt(&r.report)),
        ] {
            if on {
                row.push(v);
            }
        }
        rows.push(row);
    }
    rows
}

fn raw_rows(table: &LabelTable, kept: &[usize]) -> Vec<Vec<String>> {
    let mut header = vec!["index".to_string(), "id".into()];
    if table.task == Task::Multiclass {
        header.push("class".into());
    } else {
        header.extend(table.labels.iter().cloned());
    }
    let mut rows = vec![header];
    for (n, &i) in kept.iter().enumerate() {
        let r = &table.records[i];
        let mut row = vec![n.to_string(), r.id.clone()];
        if table.task == Task::Multiclass {
            row.push(r.class.map(|c| c.to_string()).unwrap_or_default());
        } else {
            row.extend(r.labels.iter().map(|s| s.raw().to_string()));
        }
        rows.push(row);
    }
    rows
}
