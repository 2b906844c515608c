//! Seeded, group-disjoint, label-stratified train/val/test splits and few-shot
//! subsets.

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};
use crate::labels::{LabelState, LabelTable, Split, Task};

/// Parses `--splits` percentages (`60,20,20`) into fractions that sum to one.
///
/// # Errors
/// [`DataError::InvalidOption`] naming `--splits` and the value when it is
/// not three finite, non-negative numbers that sum to 100.
pub fn parse_fractions(s: &str) -> Result<[f64; 3]> {
    let invalid = |reason: &str| DataError::InvalidOption {
        flag: "--splits",
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("expected three percentages like 60,20,20"))?;
    if parts.len() != 3 {
        return Err(invalid("expected three percentages like 60,20,20"));
    }
    if parts.iter().any(|p| !p.is_finite() || *p < 0.0) {
        return Err(invalid("percentages must be finite and non-negative"));
    }
    let total: f64 = parts.iter().sum();
    // Percentages that do not add up (50,50,50) are a typo more often than a
    // ratio: refuse them rather than silently rescale. A small tolerance
    // admits thirds written as 33.33,33.33,33.34.
    if (total - 100.0).abs() > 1e-6 * 100.0 {
        return Err(invalid(&format!(
            "train/val/test percentages must sum to 100 (they sum to {total})"
        )));
    }
    Ok([parts[0] / total, parts[1] / total, parts[2] / total])
}

/// Assigns a split to every record: records with a `fixed_split` keep it; the
/// rest are split by group (never splitting a group), stratified so that each
/// split receives positives of every label where the counts allow.
///
/// When some records are fixed to `test` (an official test set), the others are
/// shared between train and val in the ratio of the first two fractions.
pub fn assign(table: &LabelTable, fractions: [f64; 3], seed: u64) -> Vec<Split> {
    let n = table.records.len();
    let mut out: Vec<Option<Split>> = table.records.iter().map(|r| r.fixed_split).collect();
    let has_fixed_test = out.contains(&Some(Split::Test));
    let mut frac = fractions;
    if has_fixed_test {
        let tv = frac[0] + frac[1];
        frac = if tv > 0.0 {
            [frac[0] / tv, frac[1] / tv, 0.0]
        } else {
            [1.0, 0.0, 0.0]
        };
    }

    // Groups of the records that still need a split, in first-seen order.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, r) in table.records.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        let g = *index.entry(r.group.as_str()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let k = table.labels.len();
    let group_pos: Vec<Vec<usize>> = groups
        .iter()
        .map(|members| {
            let mut p = vec![0usize; k];
            for &i in members {
                for l in table.positive_labels(&table.records[i]) {
                    p[l] += 1;
                }
            }
            p
        })
        .collect();
    let total_pos: Vec<usize> = (0..k)
        .map(|l| group_pos.iter().map(|p| p[l]).sum())
        .collect();
    let total: usize = groups.iter().map(Vec::len).sum();

    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    // Rarest label first (Sechidis-style iterative stratification); groups
    // without positives last, where they balance the image counts.
    let rarity = |g: usize| {
        (0..k)
            .filter(|&l| group_pos[g][l] > 0)
            .map(|l| total_pos[l])
            .min()
            .unwrap_or(usize::MAX)
    };
    order.sort_by_key(|&g| rarity(g));

    let mut have = [0usize; 3];
    let mut have_pos = vec![[0usize; 3]; k];
    for g in order {
        let size = groups[g].len();
        let rare = (0..k)
            .filter(|&l| group_pos[g][l] > 0)
            .min_by_key(|&l| total_pos[l]);
        let image_need = |s: usize| frac[s] * total as f64 - have[s] as f64;
        let best = (0..3)
            .filter(|&s| frac[s] > 0.0)
            .max_by(|&a, &b| {
                let key = |s: usize| {
                    let pos_need = rare.map_or(0.0, |l| {
                        frac[s] * total_pos[l] as f64 - have_pos[l][s] as f64
                    });
                    (pos_need, image_need(s) / (frac[s] * total as f64).max(1.0))
                };
                let (ka, kb) = (key(a), key(b));
                ka.partial_cmp(&kb)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.cmp(&a))
            })
            .unwrap_or(0);
        have[best] += size;
        for l in 0..k {
            have_pos[l][best] += group_pos[g][l];
        }
        for &i in &groups[g] {
            out[i] = Some(Split::ALL[best]);
        }
    }
    debug_assert_eq!(out.len(), n);
    out.into_iter().map(|s| s.unwrap_or(Split::Train)).collect()
}

/// Keeps, in the training split, `k` images per class (binary: `k` positives
/// and `k` negatives; multilabel: `k` positives of each label; multiclass: `k`
/// per class), drawn with the seeded RNG without replacement. Returns the
/// record indices to keep (all val/test records plus the selected train ones).
pub fn few_shot(table: &LabelTable, splits: &[Split], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_F3E5);
    let mut pools: BTreeMap<(usize, bool), Vec<usize>> = BTreeMap::new();
    for (i, r) in table.records.iter().enumerate() {
        if splits[i] != Split::Train {
            continue;
        }
        match table.task {
            Task::Multiclass => {
                if let Some(c) = r.class {
                    pools.entry((c as usize, true)).or_default().push(i);
                }
            }
            Task::Binary => match r.labels.first() {
                Some(LabelState::Positive) => pools.entry((0, true)).or_default().push(i),
                Some(LabelState::Negative) => pools.entry((0, false)).or_default().push(i),
                _ => {}
            },
            Task::Multilabel => {
                for l in table.positive_labels(r) {
                    pools.entry((l, true)).or_default().push(i);
                }
            }
        }
    }
    let mut keep = vec![false; table.records.len()];
    for (i, s) in splits.iter().enumerate() {
        keep[i] = *s != Split::Train;
    }
    for pool in pools.values() {
        for &i in pool.choose_multiple(&mut rng, k) {
            keep[i] = true;
        }
    }
    (0..table.records.len()).filter(|&i| keep[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{GroupLevel, Record};

    fn table(n: usize) -> LabelTable {
        let mut t = LabelTable::new(
            "t",
            Task::Multilabel,
            vec!["a".into(), "rare".into()],
            GroupLevel::Patient,
        );
        for i in 0..n {
            let a = if i % 3 == 0 {
                LabelState::Positive
            } else {
                LabelState::Negative
            };
            let rare = if i % 97 == 0 {
                LabelState::Positive
            } else {
                LabelState::Negative
            };
            t.records.push(Record {
                id: format!("img{i}"),
                group: format!("p{}", i / 4),
                labels: vec![a, rare],
                ..Default::default()
            });
        }
        t
    }

    #[test]
    fn patient_disjoint_stratified_seeded() {
        let t = table(2000);
        let s = assign(&t, [0.6, 0.2, 0.2], 7);
        assert_eq!(s, assign(&t, [0.6, 0.2, 0.2], 7));
        assert_ne!(s, assign(&t, [0.6, 0.2, 0.2], 8));
        let mut by_group: HashMap<&str, Split> = HashMap::new();
        for (r, sp) in t.records.iter().zip(&s) {
            assert_eq!(*by_group.entry(r.group.as_str()).or_insert(*sp), *sp);
        }
        let count = |x: Split| s.iter().filter(|&&y| y == x).count();
        assert_eq!(
            count(Split::Train) + count(Split::Val) + count(Split::Test),
            2000
        );
        assert!(
            (count(Split::Train) as i64 - 1200).abs() <= 4,
            "{}",
            count(Split::Train)
        );
        assert!((count(Split::Val) as i64 - 400).abs() <= 4);
        // 21 rare positives in 21 groups: 12.6/4.2/4.2 expected, each split gets some.
        for sp in Split::ALL {
            let rare = t
                .records
                .iter()
                .zip(&s)
                .filter(|(r, x)| **x == sp && r.labels[1] == LabelState::Positive)
                .count();
            assert!(rare >= 4, "{sp:?} has {rare} rare positives");
        }
    }

    #[test]
    fn fixed_test_and_few_shot() {
        let mut t = table(100);
        for r in t.records.iter_mut().take(20) {
            r.fixed_split = Some(Split::Test);
        }
        let s = assign(&t, [0.8, 0.1, 0.1], 0);
        assert!(s[..20].iter().all(|&x| x == Split::Test));
        assert!(s[20..].iter().all(|&x| x != Split::Test));
        let val = s.iter().filter(|&&x| x == Split::Val).count();
        assert!((8..=12).contains(&val), "{val}");
        let keep = few_shot(&t, &s, 2, 0);
        let train = keep.iter().filter(|&&i| s[i] == Split::Train).count();
        assert!((2..=4).contains(&train), "{train}");
        assert_eq!(keep, few_shot(&t, &s, 2, 0));
        assert_eq!(
            keep.len() - train,
            100 - s.iter().filter(|&&x| x == Split::Train).count()
        );
        assert!(parse_fractions("60,20").is_err());
        assert_eq!(parse_fractions("60,20,20").unwrap(), [0.6, 0.2, 0.2]);
        assert_eq!(parse_fractions("100,0,0").unwrap(), [1.0, 0.0, 0.0]);
        // #22: percentages that do not sum to 100, negative or all zero.
        for bad in ["50,50,50", "-20,60,60", "0,0,0", "6,2,2", "nan,50,50"] {
            let e = parse_fractions(bad).unwrap_err();
            assert!(
                matches!(&e, DataError::InvalidOption { flag: "--splits", value, .. } if value == bad),
                "{e}"
            );
            assert!(
                e.to_string().starts_with(&format!("--splits {bad}: ")),
                "{e}"
            );
        }
    }
}
