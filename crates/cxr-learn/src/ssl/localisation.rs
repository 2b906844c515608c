//! Does a word look at its lesion? GLoRIA's attention check
//! (docs/ssl-methods.md (Checks that a method learns)): for report sentences with a lesion word,
//! the region the word attends to most should overlap the image's lesion
//! mask more often than a region drawn at random would (the fraction of
//! regions the mask touches).
//!
//! Masks come from a CSV with a `path` column (an image's `source_path` in
//! the store) and a `lesion_mask` column (a PNG, relative to the CSV's
//! folder, same geometry as the source image; empty: no lesion), as the
//! phantom's `ground_truth.csv` has them. They go through the store's own
//! resize, so a mask lies on the image as stored.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use cxr_data::decode::decode_file;
use cxr_data::labels::Split;
use cxr_data::preprocess::to_store_image;
use cxr_data::store::read::Store;
use serde::Serialize;

use crate::error::Error;

/// A lesion-mask CSV's read error, naming the file.
fn lesion_csv(path: &Path, cause: csv::Error) -> Error {
    Error::LesionCsv {
        path: path.to_owned(),
        cause,
    }
}

/// Words that name a focal lung lesion in a report (GLoRIA's local
/// sentences are lower-cased ASCII words).
pub const LESION_WORDS: [&str; 9] = [
    "opacity",
    "opacities",
    "consolidation",
    "nodule",
    "nodular",
    "mass",
    "pneumonia",
    "infiltrate",
    "lesion",
];

/// Lesion masks of store rows at the store's image size (row-major, true
/// inside the lesion).
#[derive(Debug)]
pub struct LesionMasks {
    /// Side of the stored images.
    pub size: usize,
    masks: BTreeMap<usize, Vec<bool>>,
}

impl LesionMasks {
    /// Reads the masks `csv` names for the rows of `store`'s `split`
    /// (rows the CSV does not list, or lists without a mask, have none).
    ///
    /// # Errors
    /// A missing `path` or `lesion_mask` column, an unreadable CSV or
    /// mask (the file named), or a CSV that matches no image of the split.
    pub fn read(csv: &Path, store: &Store, split: Split) -> Result<Self, Error> {
        // Bounded like every user CSV (MAX_CSV_RECORD_BYTES): a record past
        // it fails as a `LesionCsv` error naming its line.
        let mut reader =
            cxr_data::csv_source::open_bounded(csv, b',').map_err(|e| Error::Data(Box::new(e)))?;
        let headers = reader
            .headers()
            .map_err(|cause| lesion_csv(csv, cause))?
            .clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| Error::LesionColumn {
                    path: csv.to_owned(),
                    column: name.to_owned(),
                })
        };
        let (path_col, mask_col) = (column("path")?, column("lesion_mask")?);
        let by_path: HashMap<&str, usize> = store
            .split_indices(split)
            .into_iter()
            .map(|i| (store.rows[i].source_path.as_str(), i))
            .collect();
        let root = csv.parent().unwrap_or(Path::new("."));
        let size = store.meta.image_size[0];
        let policy = store.meta.preprocessing.resize;
        let mut masks = BTreeMap::new();
        let mut matched = 0;
        for record in reader.records() {
            let record = record.map_err(|cause| lesion_csv(csv, cause))?;
            let Some(&row) = record.get(path_col).and_then(|p| by_path.get(p)) else {
                continue;
            };
            matched += 1;
            let mask = record.get(mask_col).unwrap_or_default();
            if mask.is_empty() {
                continue;
            }
            let file = root.join(mask);
            let decoded = decode_file(&file).map_err(|e| Error::LesionMask(Box::new(e)))?;
            let pixels = to_store_image(decoded, size, policy);
            masks.insert(row, pixels.iter().map(|&v| v >= 128).collect());
        }
        if matched == 0 {
            return Err(Error::LesionPaths {
                path: csv.to_owned(),
                split: split.as_str(),
            });
        }
        Ok(Self {
            size: size as usize,
            masks,
        })
    }

    /// Rows with a mask, in order.
    pub fn rows(&self) -> Vec<usize> {
        self.masks.keys().copied().collect()
    }

    /// The mask of `row`.
    pub fn get(&self, row: usize) -> Option<&[bool]> {
        self.masks.get(&row).map(Vec::as_slice)
    }
}

/// Which cells of a `grid` x `grid` partition of a `size`-pixel square
/// (row-major, the order of a flattened feature map) hold a mask pixel.
pub fn cells_touched(mask: &[bool], size: usize, grid: usize) -> Vec<bool> {
    let mut cells = vec![false; grid * grid];
    for (k, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let (y, x) = (k / size, k % size);
        cells[(y * grid / size) * grid + x * grid / size] = true;
    }
    cells
}

/// Hit counts of lesion words, overall and per word.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    /// Lesion-word occurrences checked (masks touching at least one region).
    pub words: usize,
    /// Occurrences whose most-attended region touches the mask; a maximum
    /// shared by several regions counts the share of them that do (so a
    /// uniform attention scores chance, not region 0's luck).
    pub hits: f64,
    /// Sum over occurrences of the fraction of regions the mask touches.
    chance_sum: f64,
    /// Images that contributed.
    pub images: usize,
    /// Occurrences and hits per word.
    pub per_word: BTreeMap<String, (usize, f64)>,
    /// How often each region was the most attended (ties shared), in the
    /// flattened map's order: where the words look, lesion or not.
    pub top_regions: Vec<f64>,
}

impl Tally {
    /// Records one occurrence of `word` whose attention over the regions is
    /// `attention`, against the regions the mask touches; an occurrence on a
    /// mask that touches no region is skipped.
    pub fn add(&mut self, word: &str, attention: &[f64], touched: &[bool]) {
        let area = touched.iter().filter(|&&t| t).count();
        if area == 0 || attention.len() != touched.len() {
            return;
        }
        let top = attention.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Ties within float rounding of the softmax.
        let tied: Vec<usize> = (0..attention.len())
            .filter(|&k| attention[k] >= top - 1e-6 * top.abs())
            .collect();
        let hit = tied.iter().filter(|&&k| touched[k]).count() as f64 / tied.len() as f64;
        self.top_regions.resize(attention.len(), 0.0);
        for &k in &tied {
            self.top_regions[k] += 1.0 / tied.len() as f64;
        }
        self.words += 1;
        self.hits += hit;
        self.chance_sum += area as f64 / touched.len() as f64;
        let e = self.per_word.entry(word.to_string()).or_default();
        e.0 += 1;
        e.1 += hit;
    }

    /// Hit rate, chance rate and their ratio (`None` without occurrences).
    pub fn rates(&self) -> Option<(f64, f64, f64)> {
        (self.words > 0).then(|| {
            let hit = self.hits / self.words as f64;
            let chance = self.chance_sum / self.words as f64;
            (hit, chance, hit / chance)
        })
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self.rates() {
            Some((hit, chance, ratio)) => format!(
                "attention check: {:.1} of {} lesion words attend most to a region of their lesion \
                 ({hit:.3}; chance {chance:.3}, {ratio:.2}x)",
                self.hits, self.words
            ),
            None => "attention check: no lesion word in the masked images' sentences".into(),
        }
    }

    /// The record logged and written to `localisation.json`.
    pub fn to_json(&self, grid: usize, step: u64) -> serde_json::Value {
        let rates = self.rates();
        let (hit, chance, ratio) = (rates.map(|r| r.0), rates.map(|r| r.1), rates.map(|r| r.2));
        serde_json::json!({
            "event": "localisation", "step": step, "grid": [grid, grid],
            "images": self.images, "words": self.words, "hits": self.hits,
            "hit_rate": hit, "chance": chance, "ratio": ratio,
            "top_regions": self.top_regions,
            "per_word": self.per_word.iter()
                .map(|(w, &(n, h))| (w.clone(), serde_json::json!({"words": n, "hits": h})))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_the_flattened_map_order() {
        // A 4-px square on a 2x2 grid: pixel (y 3, x 0) is cell (1, 0) = 2.
        let mut mask = vec![false; 16];
        mask[3 * 4] = true;
        assert_eq!(cells_touched(&mask, 4, 2), vec![false, false, true, false]);
        mask[1] = true; // (0, 1) -> cell 0
        assert_eq!(cells_touched(&mask, 4, 2), vec![true, false, true, false]);
        // An 8x8 grid on 64 px: pixel (y 63, x 63) is the last cell.
        let mut big = vec![false; 64 * 64];
        big[64 * 64 - 1] = true;
        let cells = cells_touched(&big, 64, 8);
        assert!(cells[63] && cells.iter().filter(|&&c| c).count() == 1);
    }

    #[test]
    fn tally_counts_hits_and_chance() {
        let touched = [true, false, false, false];
        let mut t = Tally::default();
        t.add("mass", &[0.7, 0.1, 0.1, 0.1], &touched);
        t.add("mass", &[0.1, 0.7, 0.1, 0.1], &touched);
        t.add("nodule", &[0.1, 0.1, 0.1, 0.7], &[true, true, false, true]);
        // A mask touching no region does not count.
        t.add("mass", &[1.0, 0.0, 0.0, 0.0], &[false; 4]);
        assert_eq!((t.words, t.hits), (3, 2.0));
        let (hit, chance, ratio) = t.rates().unwrap();
        assert!((hit - 2.0 / 3.0).abs() < 1e-12);
        assert!((chance - (0.25 + 0.25 + 0.75) / 3.0).abs() < 1e-12);
        assert!((ratio - hit / chance).abs() < 1e-12);
        assert_eq!(t.per_word["mass"], (2, 1.0));
        assert_eq!(t.per_word["nodule"], (1, 1.0));
        // A uniform attention scores the mask's share of the regions; a
        // maximum shared by two regions, one on the mask, half a hit.
        let mut u = Tally::default();
        u.add("pneumonia", &[0.25; 4], &[true, false, false, true]);
        u.add("mass", &[0.1, 0.4, 0.4, 0.1], &[false, true, false, false]);
        assert_eq!((u.words, u.hits), (2, 1.0));
        assert_eq!(u.top_regions, vec![0.25, 0.75, 0.75, 0.25]);
        assert!(Tally::default().rates().is_none());
    }
}
