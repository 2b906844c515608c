//! Subgroup counts of a store (sex, view, site, age range), from the optional
//! manifest columns: the basis of per-subgroup reporting, and what
//! `cxrlearn info` prints about them.

use std::collections::BTreeMap;

use super::read::ManifestRow;

/// Images per value of one attribute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Images per value, sorted by value.
    pub values: BTreeMap<String, usize>,
    /// Images without a value.
    pub unknown: usize,
}

impl Counts {
    fn of<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Counts {
        let mut c = Counts::default();
        for v in values {
            match v {
                Some(v) => *c.values.entry(v.to_string()).or_default() += 1,
                None => c.unknown += 1,
            }
        }
        c
    }

    /// `F 48780, M 63340` (and `, unknown N` when some images have no value).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .values
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect();
        if self.unknown > 0 {
            parts.push(format!("unknown {}", self.unknown));
        }
        parts.join(", ")
    }
}

/// The range of known ages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgeRange {
    /// Youngest, years.
    pub min: f32,
    /// Oldest, years.
    pub max: f32,
    /// Images with an age.
    pub known: usize,
    /// Images without one.
    pub unknown: usize,
}

/// Sex, view, site and age of a store's images; `None` for an attribute no
/// image has.
#[derive(Debug, Clone, PartialEq)]
pub struct SubgroupSummary {
    /// Images per sex.
    pub sex: Option<Counts>,
    /// Images per view.
    pub view: Option<Counts>,
    /// Images per site.
    pub site: Option<Counts>,
    /// Age range.
    pub age: Option<AgeRange>,
}

impl SubgroupSummary {
    /// Counts over `rows`.
    pub fn of(rows: &[ManifestRow]) -> SubgroupSummary {
        let counts = |f: fn(&ManifestRow) -> Option<&str>| {
            let c = Counts::of(rows.iter().map(f));
            (!c.values.is_empty()).then_some(c)
        };
        let mut age: Option<AgeRange> = None;
        for a in rows.iter().filter_map(|r| r.age) {
            let r = age.get_or_insert(AgeRange {
                min: a,
                max: a,
                known: 0,
                unknown: 0,
            });
            r.min = r.min.min(a);
            r.max = r.max.max(a);
            r.known += 1;
        }
        if let Some(r) = &mut age {
            r.unknown = rows.len() - r.known;
        }
        SubgroupSummary {
            sex: counts(|r| r.sex.as_deref()),
            view: counts(|r| r.view.as_deref()),
            site: counts(|r| r.site.as_deref()),
            age,
        }
    }

    /// One `(name, text)` pair per attribute the store has, in the order
    /// sex, view, site, age.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (name, c) in [
            ("sex", &self.sex),
            ("view", &self.view),
            ("site", &self.site),
        ] {
            if let Some(c) = c {
                out.push((name, c.describe()));
            }
        }
        if let Some(a) = &self.age {
            out.push((
                "age",
                format!("{}-{} years, {} unknown", a.min, a.max, a.unknown),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Split;

    fn row(sex: Option<&str>, age: Option<f32>, view: Option<&str>) -> ManifestRow {
        ManifestRow {
            index: 0,
            id: String::new(),
            patient_id: String::new(),
            split: Split::Train,
            source_path: String::new(),
            targets: Vec::new(),
            study_id: None,
            view: view.map(String::from),
            site: None,
            sex: sex.map(String::from),
            age,
            report: None,
        }
    }

    #[test]
    fn counts_and_lines() {
        let rows = [
            row(Some("F"), Some(45.5), Some("PA")),
            row(Some("M"), None, Some("AP")),
            row(None, Some(3.0), Some("PA")),
        ];
        let s = SubgroupSummary::of(&rows);
        assert_eq!(
            s.lines(),
            vec![
                ("sex", "F 1, M 1, unknown 1".to_string()),
                ("view", "AP 1, PA 2".to_string()),
                ("age", "3-45.5 years, 1 unknown".to_string()),
            ]
        );
        assert_eq!(s.site, None);
        let bare = SubgroupSummary::of(&[row(None, None, None)]);
        assert!(bare.lines().is_empty());
    }
}
