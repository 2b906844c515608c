//! The report's multiplicity adjustment, calibration, subgroup and
//! label-efficiency sections, each against a direct computation with
//! `cxr_stats` (reading reports written before these existed is checked in
//! `report.rs`).

use crate::common;

use common::*;
use cxr_report::{Cell, CellStatus, Report, StrategyReport, Unit};
use cxr_stats::calibration::CalibrationData;
use cxr_stats::evaluation::Options;
use cxr_stats::multiplicity::holm;
use cxr_stats::subgroups::{AGE_BINS, age_band};
use cxr_stats::{BootstrapConfig, Resampler, evaluate_with, percentile, roc_auc_weighted};

/// Clinical and Chest Multi, plus label-efficiency cells on Clinical:
/// imagenet and convirt probed on 10% and 50% of the training set (convirt
/// at 10% with two seeds).
fn efficiency_grid() -> Grid {
    let mut g = grid_of(vec![clinical(), multilabel()]);
    let d = clinical();
    for model in ["imagenet", "convirt"] {
        for fraction in [0.1, 0.5] {
            let seeds: &[u64] = if model == "convirt" && fraction == 0.1 {
                &[0, 1]
            } else {
                &[0]
            };
            for &seed in seeds {
                let cell = Cell {
                    dataset: d.name.into(),
                    model: model.into(),
                    strategy: "linear".into(),
                    seed,
                    fraction: Some(fraction),
                    run_dir: g.dir.path().join(format!("frac-{model}-{fraction}-{seed}")),
                    error: None,
                };
                let p = predictions_at(&d, model, "linear", seed, Some(fraction));
                add_cell(&mut g, cell, p);
            }
        }
    }
    g
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// `adjusted` equals Holm's adjustment of `raw` exactly, and `significant`
/// follows the adjusted values.
fn check_family(raw: &[Option<f64>], adjusted: &[Option<f64>], significant: &[bool]) {
    assert_eq!(adjusted, holm(raw).as_slice(), "raw {raw:?}");
    let want: Vec<bool> = adjusted
        .iter()
        .map(|p| p.is_some_and(|p| p < 0.05))
        .collect();
    assert_eq!(significant, want.as_slice());
}

#[test]
fn holm_families_match_holm_on_the_reports_raw_p_values() {
    let g = grid_of(vec![clinical(), multilabel(), binary()]);
    let r = report(&g, &config());
    // Table 2: every (dataset, strategy) best SSL comparison together.
    let table2: Vec<_> = r
        .datasets
        .iter()
        .flat_map(|d| &d.strategies)
        .filter_map(|s| s.best_ssl.as_ref()?.vs_baseline.as_ref())
        .collect();
    assert_eq!(table2.len(), 6);
    check_family(
        &table2.iter().map(|c| c.p_value).collect::<Vec<_>>(),
        &table2.iter().map(|c| c.p_value_holm).collect::<Vec<_>>(),
        &table2.iter().map(|c| c.significant).collect::<Vec<_>>(),
    );
    for sr in r.datasets.iter().flat_map(|d| &d.strategies) {
        // Models compared with the comparator within (dataset, strategy).
        let models: Vec<_> = sr
            .models
            .iter()
            .filter_map(|m| m.vs_baseline.as_ref())
            .collect();
        assert_eq!(models.len(), 2);
        check_family(
            &models.iter().map(|c| c.p_value).collect::<Vec<_>>(),
            &models.iter().map(|c| c.p_value_holm).collect::<Vec<_>>(),
            &models.iter().map(|c| c.significant).collect::<Vec<_>>(),
        );
        // The labels of one model.
        for m in sr.models.iter().filter(|m| m.vs_baseline.is_some()) {
            let labels: Vec<_> = m
                .labels
                .iter()
                .filter_map(|l| l.vs_baseline.as_ref())
                .collect();
            check_family(
                &labels.iter().map(|c| c.p_value).collect::<Vec<_>>(),
                &labels.iter().map(|c| c.p_value_holm).collect::<Vec<_>>(),
                &labels.iter().map(|c| c.significant).collect::<Vec<_>>(),
            );
        }
        // Figure 1's per-label comparisons are the best model's.
        let best = sr.best_ssl.as_ref().unwrap();
        let m = sr.models.iter().find(|m| m.model == best.model).unwrap();
        for (l, ml) in sr.per_label.iter().zip(&m.labels) {
            assert_eq!(Some(&l.comparison), ml.vs_baseline.as_ref());
        }
        // The same raw comparison, adjusted in its two families.
        let (t2, own) = (
            best.vs_baseline.as_ref().unwrap(),
            m.vs_baseline.as_ref().unwrap(),
        );
        assert_eq!(t2.p_value, own.p_value);
    }
}

/// Six labels, each strongly better with convirt: every raw per-label
/// p-value is the bootstrap floor 2 / (B + 1) = 0.00995 < 0.05, and Holm
/// over six gives 12 / 201 = 0.0597 >= 0.05: no per-label star.
#[test]
fn stars_follow_the_adjusted_p_value() {
    let n = 160;
    let labels = vec!["A", "B", "C", "D", "E", "F"];
    let six = Dataset {
        name: "Six",
        ids: (0..n).map(|i| format!("s{i:03}")).collect(),
        targets: (0..labels.len())
            .map(|j| {
                (0..n)
                    .map(|i| Some(noise(hash("six") + (i * 10 + j) as u64) < 0.4))
                    .collect()
            })
            .collect(),
        labels,
        patients: None,
        attributes: Default::default(),
    };
    let g = grid_of(vec![six]);
    let r = report(&g, &config());
    let sr = strategy(&r, "Six", "linear");
    let convirt = sr.models.iter().find(|m| m.model == "convirt").unwrap();
    let floor = 2.0 / (B as f64 + 1.0);
    for l in &convirt.labels {
        let c = l.vs_baseline.as_ref().unwrap();
        assert_eq!(c.p_value, Some(floor), "{}", l.label);
        assert!(c.p_value.unwrap() < 0.05);
        assert!(close(c.p_value_holm.unwrap(), 6.0 * floor));
        assert!(c.p_value_holm.unwrap() >= 0.05 && !c.significant);
    }
    // The macro comparison's family has two members: 2 x 0.00995 < 0.05.
    let macro_cmp = convirt.vs_baseline.as_ref().unwrap();
    assert!(macro_cmp.significant && close(macro_cmp.p_value_holm.unwrap(), 2.0 * floor));
    let md = r.to_markdown();
    let section = &md[md.find("### Six, linear").unwrap()..md.find("### Six, finetune").unwrap()];
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| A |")).collect();
    assert_eq!(rows.len(), 2, "{section}");
    for row in rows {
        assert!(!row.contains('*'), "{row}");
    }
    // Raw and adjusted p side by side.
    assert!(section.contains("| 0.010 | 0.060 |"), "{section}");
    let table5 = &md[md.find("## Table 5").unwrap()..md.find("## Table 4").unwrap()];
    assert!(
        table5
            .lines()
            .any(|l| l.starts_with("| Six |") && l.ends_with("]* |"))
    );
}

#[test]
fn calibration_matches_calibration_data() {
    let d = clinical();
    let g = grid_of(vec![clinical()]);
    let r = report(&g, &config());
    let data = |p: &cxr_stats::Predictions, j: usize| {
        CalibrationData::new(
            (0..d.ids.len()).filter_map(|i| d.targets[j][i].map(|t| (i as u32, t, p.scores[j][i]))),
        )
        .unwrap()
    };
    let model = |s: &str, m: &str| {
        strategy(&r, "Clinical", s)
            .models
            .iter()
            .find(|x| x.model == m)
            .unwrap()
            .calibration
            .clone()
            .unwrap()
    };
    // One seed: the mean over labels of the library's Brier score and ECE.
    let p = predictions(&d, "imagenet", "linear", 0);
    let c = model("linear", "imagenet");
    let n = d.labels.len() as f64;
    let brier: f64 = (0..3)
        .map(|j| data(&p, j).brier(None).unwrap())
        .sum::<f64>()
        / n;
    let ece: f64 = (0..3).map(|j| data(&p, j).ece(None).unwrap()).sum::<f64>() / n;
    assert_eq!(c.n_labels, 3);
    assert!(close(c.brier.unwrap(), brier) && close(c.ece.unwrap(), ece));
    assert!(c.excluded.is_empty() && c.score_range.is_none());
    // The reliability diagram pools the labels' bins.
    for (k, bin) in c.reliability.iter().enumerate() {
        let bins: Vec<_> = (0..3).map(|j| data(&p, j).reliability()[k]).collect();
        let count: usize = bins.iter().map(|b| b.n).sum();
        assert_eq!(bin.n, count);
        let weighted = |f: &dyn Fn(&cxr_stats::calibration::ReliabilityBin) -> Option<f64>| {
            bins.iter()
                .filter_map(|b| Some(f(b)? * b.n as f64))
                .sum::<f64>()
                / count as f64
        };
        if count > 0 {
            assert!(close(bin.mean_score.unwrap(), weighted(&|b| b.mean_score)));
            assert!(close(
                bin.fraction_positive.unwrap(),
                weighted(&|b| b.fraction_positive)
            ));
        } else {
            assert_eq!((bin.mean_score, bin.fraction_positive), (None, None));
        }
    }
    // Two seeds: each label's mean over seeds, then over labels.
    let seeds = [0, 1].map(|s| predictions(&d, "convirt", "finetune", s));
    let c = model("finetune", "convirt");
    let brier: f64 = (0..3)
        .map(|j| {
            seeds
                .iter()
                .map(|p| data(p, j).brier(None).unwrap())
                .sum::<f64>()
                / 2.0
        })
        .sum::<f64>()
        / n;
    assert!(close(c.brier.unwrap(), brier));
    // Raw scores: not calibrated, with the reason and the range, never squashed.
    let p = predictions(&d, "moco", "linear", 0);
    let c = model("linear", "moco");
    assert_eq!((c.n_labels, c.brier, c.ece), (0, None, None));
    assert_eq!(c.excluded.len(), 3);
    assert!(
        c.excluded
            .iter()
            .all(|e| e.reason.contains("not probabilities"))
    );
    let mut scores: Vec<f64> = Vec::new();
    for j in 0..3 {
        for i in 0..d.ids.len() {
            if d.targets[j][i].is_some() {
                scores.push(p.scores[j][i]);
            }
        }
    }
    let lo = scores.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(c.score_range, Some([lo, hi]));
    assert!(hi > 1.0 && c.reliability.is_empty());
    let md = r.to_markdown();
    assert!(md.contains(&format!(
        "| linear | moco | 0 | n/a | n/a | not calibrated: scores are not probabilities (outside [0, 1]: they range from {lo} to {hi})"
    )));
    assert!(md.contains("## Calibration") && md.contains("figures/reliability-1-clinical.png"));
}

/// The images of `d` in age band `band` (unknown ages in none).
fn age_members(d: &Dataset, band: &str) -> Vec<usize> {
    (0..d.ids.len())
        .filter(|&i| {
            d.attributes["age"][i]
                .as_deref()
                .and_then(|a| a.parse::<f64>().ok())
                .is_some_and(|a| age_band(a, &AGE_BINS) == band)
        })
        .collect()
}

#[test]
fn subgroup_macro_aucs_match_roc_auc_on_the_subgroup() {
    let d = clinical();
    let g = grid_of(vec![clinical()]);
    let r = report(&g, &config());
    let sr: &StrategyReport = strategy(&r, "Clinical", "linear");
    let columns: Vec<&str> = sr.subgroups.iter().map(|a| a.column.as_str()).collect();
    assert_eq!(columns, ["sex", "age", "view"]);
    let models: Vec<(&str, &str)> = sr.subgroups[0]
        .models
        .iter()
        .map(|m| (m.role.as_str(), m.model.as_str()))
        .collect();
    assert_eq!(models, [("baseline", "imagenet"), ("best_ssl", "convirt")]);
    let patients = d.patients.clone().unwrap();
    let resampler = Resampler::patients(&patients);
    for a in &sr.subgroups {
        for (k, group) in a.groups.iter().enumerate() {
            let members = if a.column == "age" {
                age_members(&d, &group.value)
            } else {
                members(&d, &a.column, &group.value)
            };
            assert_eq!(
                group.n_images,
                members.len(),
                "{} {}",
                a.column,
                group.value
            );
            assert_eq!(group.n_patients, Some(patients_of(&d, &members)));
            for m in &a.models {
                let p = predictions(&d, &m.model, "linear", 0);
                let got = &m.results[k].macro_avg;
                if group.reason.is_some() {
                    assert_eq!(got.auc, None);
                    continue;
                }
                let want = direct_macro_on(&p, &members).unwrap();
                assert!(
                    close(got.auc.unwrap(), want),
                    "{} {}",
                    a.column,
                    group.value
                );
                // The interval: the same patient draws, restricted to the subgroup.
                let mut reps: Vec<f64> = (0..B as u64)
                    .filter_map(|b| {
                        let (mut counts, mut scratch) = (Vec::new(), Vec::new());
                        resampler.counts(7, b, &mut counts, &mut scratch);
                        let aucs: Vec<f64> = (0..3)
                            .filter_map(|j| {
                                let (t, s, w) = members
                                    .iter()
                                    .filter_map(|&i| {
                                        let t = d.targets[j][i]?;
                                        Some((t, p.scores[j][i], f64::from(counts[i])))
                                    })
                                    .fold((vec![], vec![], vec![]), |mut acc, (t, s, w)| {
                                        acc.0.push(t);
                                        acc.1.push(s);
                                        acc.2.push(w);
                                        acc
                                    });
                                roc_auc_weighted(&t, &s, &w).unwrap()
                            })
                            .collect();
                        (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
                    })
                    .collect();
                reps.sort_by(f64::total_cmp);
                let [lo, hi] = got.ci.unwrap();
                assert!(
                    close(lo, percentile(&reps, 0.025)),
                    "{} {}",
                    a.column,
                    group.value
                );
                assert!(close(hi, percentile(&reps, 0.975)));
            }
        }
        // The gap: best minus worst subgroup, on the point estimates.
        for m in &a.models {
            let scored: Vec<(&str, f64)> = m
                .results
                .iter()
                .filter_map(|x| Some((x.value.as_str(), x.macro_avg.auc?)))
                .collect();
            let best = scored
                .iter()
                .copied()
                .fold(scored[0], |b, x| if x.1 >= b.1 { x } else { b });
            let worst = scored
                .iter()
                .copied()
                .fold(scored[0], |w, x| if x.1 < w.1 { x } else { w });
            let gap = m.gap.as_ref().unwrap();
            assert_eq!((gap.best.as_str(), gap.worst.as_str()), (best.0, worst.0));
            assert!(close(gap.gap, best.1 - worst.1));
            let [lo, hi] = gap.ci.unwrap();
            assert!(lo <= hi);
        }
    }
    // The oldest band has one patient and too few positives; one patient's age is unknown.
    let age = &sr.subgroups[1];
    let old = age.groups.iter().find(|g| g.value == ">=80").unwrap();
    assert_eq!((old.n_images, old.n_patients), (3, Some(1)));
    assert!(
        old.reason
            .as_ref()
            .unwrap()
            .contains("fewer than 5 positive images")
    );
    assert_eq!(age.n_unknown, 3);
    let md = r.to_markdown();
    assert!(md.contains("## Subgroups") && md.contains("| age | &gt;=80 | 3 | 1 | n/a | n/a |"));
    assert!(md.contains("figures/subgroups-1-clinical.png"));
    // Without attribute columns there is no subgroup section.
    let plain = report(&grid(), &config());
    assert!(
        plain
            .datasets
            .iter()
            .flat_map(|d| &d.strategies)
            .all(|s| s.subgroups.is_empty())
    );
    assert!(!plain.to_markdown().contains("## Subgroups"));
}

#[test]
fn label_efficiency_appears_only_with_fractions() {
    let g = efficiency_grid();
    let with = report(&g, &config());
    let full_cells: Vec<_> = g
        .inputs
        .iter()
        .filter(|i| i.cell.fraction.is_none())
        .cloned()
        .collect();
    let without = Report::from_predictions(full_cells, &config()).unwrap();
    // Everything else uses the full-data cells only: unchanged by fractions.
    for (a, b) in with.datasets.iter().zip(&without.datasets) {
        assert_eq!(a.strategies, b.strategies);
    }
    assert_eq!(with.model_means, without.model_means);
    assert!(
        without
            .datasets
            .iter()
            .all(|d| d.label_efficiency.is_empty())
    );
    let md_without = without.to_markdown();
    assert!(!md_without.contains("Label efficiency"));

    let d = clinical();
    let curves = &with.datasets[0].label_efficiency;
    let names: Vec<(&str, &str)> = curves
        .iter()
        .map(|c| (c.strategy.as_str(), c.model.as_str()))
        .collect();
    // Only linear has fractions; moco has its full-data point alone.
    assert_eq!(
        names,
        [
            ("linear", "imagenet"),
            ("linear", "moco"),
            ("linear", "convirt")
        ]
    );
    assert!(with.datasets[1].label_efficiency.is_empty());
    let options = Options {
        bootstrap: BootstrapConfig {
            n_replicates: B,
            seed: 7,
            confidence: 0.95,
        },
        ..Options::default()
    };
    for c in curves {
        let fractions: Vec<f64> = c.points.iter().map(|p| p.fraction).collect();
        let want: &[f64] = if c.model == "moco" {
            &[1.0]
        } else {
            &[0.1, 0.5, 1.0]
        };
        assert_eq!(fractions, want);
        for point in &c.points {
            let fraction = (point.fraction < 1.0).then_some(point.fraction);
            let ps: Vec<_> = point
                .seeds
                .iter()
                .map(|&s| predictions_at(&d, &c.model, "linear", s, fraction))
                .collect();
            let want = ps.iter().map(direct_macro).sum::<f64>() / ps.len() as f64;
            assert!(
                close(point.macro_avg.auc.unwrap(), want),
                "{} {}",
                c.model,
                point.fraction
            );
            if ps.len() == 1 {
                // The same patient-level replicates as `evaluate`, bit for bit.
                let e = evaluate_with(&ps[0], None, &options).unwrap();
                assert_eq!(e.resample, Unit::Patient);
                assert_eq!(point.macro_avg.ci, e.macro_avg.ci);
            }
        }
    }
    let seeds = &curves[2].points[0].seeds;
    assert_eq!(seeds, &[0, 1]);
    // Less training data, lower AUC (the signal shrinks with the fraction).
    let convirt: Vec<f64> = curves[2]
        .points
        .iter()
        .map(|p| p.macro_avg.auc.unwrap())
        .collect();
    assert!(convirt[0] < convirt[2]);
    let md = with.to_markdown();
    assert!(
        md.contains("## Label efficiency")
            && md.contains("| Strategy | Model | fraction 0.1 | fraction 0.5 | fraction 1 |")
    );
    assert!(
        with.method
            .iter()
            .any(|m| m.starts_with("Label efficiency"))
    );
    let out = tempfile::tempdir().unwrap();
    let w = with.write(out.path()).unwrap();
    let svg = w
        .figures
        .iter()
        .find(|p| p.ends_with("label-efficiency-1-clinical.svg"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    assert!(svg.contains("convirt") && svg.contains("0.5") && svg.contains("linear"));
    // Numbers in the Markdown all come from report.json, and a rebuild is identical.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w.json).unwrap()).unwrap();
    let bad = untraceable(&std::fs::read_to_string(&w.markdown).unwrap(), &json);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(Report::rebuild(&w.json).unwrap(), with);
}

#[test]
fn fractions_make_distinct_cells_and_are_checked() {
    let g = efficiency_grid();
    let cell = |fraction: Option<f64>| {
        let mut c = g
            .cells
            .iter()
            .find(|c| c.fraction == Some(0.5))
            .unwrap()
            .clone();
        c.fraction = fraction;
        c.seed = 9;
        c
    };
    assert!(
        cell(Some(0.5))
            .describe()
            .ends_with("seed 9 / fraction 0.5")
    );
    // No fraction and 1.0 are both the full training set: the same cell.
    let mut cells = g.cells.clone();
    cells.extend([cell(None), cell(Some(1.0))]);
    let e = Report::from_cells(&cells, &config())
        .unwrap_err()
        .to_string();
    assert!(e.contains("given twice") && e.contains("fraction 1"), "{e}");
    for bad in [0.0, 1.5, f64::NAN] {
        let mut cells = g.cells.clone();
        cells.push(cell(Some(bad)));
        let e = Report::from_cells(&cells, &config())
            .unwrap_err()
            .to_string();
        assert!(e.contains("(0, 1]"), "{e}");
    }
    // A fraction-only cell without predictions is listed with its fraction.
    let mut cells = g.cells.clone();
    let mut missing = cell(Some(0.25));
    missing.run_dir = g.dir.path().join("nowhere");
    cells.push(missing);
    let r = Report::from_cells(&cells, &config()).unwrap();
    assert_eq!(r.cells_with(CellStatus::Missing).count(), 1);
    assert!(
        r.to_markdown()
            .contains("| Seed | Fraction | Status | Why |")
    );
    // Serialised only when given.
    let json = serde_json::to_value(&g.cells[0]).unwrap();
    assert!(json.get("fraction").is_none());
}
