//! The report as a document (headings, paragraphs, tables, figures) built
//! once from a [`Report`] and rendered to Markdown and to HTML
//! ([`render`]), so both show the same cells. Numbers are rounded to 3
//! decimals from the values in `report.json`.

mod render;
mod sections;

use crate::compute::notes::{FAMILY_LABELS, FAMILY_MODELS, FAMILY_TABLE2};
use crate::figures::{FigureKind, FigureSpec};
use crate::report::{BaselineStrategy, CellStatus, Comparison, Estimate, Report, TaskKind};

pub(crate) use render::{html, markdown};

/// A number to 3 decimals, `n/a` when absent.
pub fn fmt3(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

/// A signed difference to 3 decimals, `n/a` when absent.
pub fn fmt_delta(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:+.3}"))
}

/// A p-value to 3 decimals. Bootstrap p-values never fall below
/// `2 / (B + 1)`, so 3 decimals show every value from 1000 replicates.
pub fn fmt_p(x: Option<f64>) -> String {
    fmt3(x)
}

pub(crate) fn fmt_estimate(e: &Estimate) -> String {
    match (e.auc, e.ci) {
        (Some(a), Some([lo, hi])) => format!("{a:.3} [{lo:.3}, {hi:.3}]"),
        (a, _) => fmt3(a),
    }
}

fn fmt_comparison(c: &Comparison) -> String {
    let mut s = match (c.delta, c.delta_ci) {
        (Some(d), Some([lo, hi])) => format!("{d:+.3} [{lo:+.3}, {hi:+.3}]"),
        (d, _) => fmt_delta(d),
    };
    if c.significant {
        s.push('*');
    }
    s
}

/// Marks the start and end of a user-supplied span inside a paragraph
/// (private-use characters, never in report text): paragraphs mix fixed
/// Markdown (`p < 0.05`) with names, and only the names are escaped for
/// Markdown. Headings, list items and table cells are escaped whole.
pub(crate) const USER_START: char = '\u{E000}';
pub(crate) const USER_END: char = '\u{E001}';

/// `s` marked as user-supplied for a [`Block::Paragraph`].
pub(crate) fn user(s: &str) -> String {
    format!(
        "{USER_START}{}{USER_END}",
        s.replace([USER_START, USER_END], "")
    )
}

/// A table: header, rows, and which columns hold numbers (right-aligned).
pub(crate) struct Table {
    pub(crate) header: Vec<String>,
    pub(crate) numeric: Vec<bool>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// One block of the document.
pub(crate) enum Block {
    Heading(usize, String),
    Paragraph(String),
    List(Vec<String>),
    Table(Table),
    Figure(FigureSpec),
}

fn table_number(strategy: &str) -> String {
    match strategy {
        "finetune" => "Table 4".to_owned(),
        "linear" => "Table 5".to_owned(),
        other => format!("Table ({other})"),
    }
}

/// The figures of `kind` in `figures` (for `strategy` or `dataset` when
/// given), as blocks.
fn figures_of<'a>(
    figures: &'a [FigureSpec],
    keep: impl Fn(&FigureSpec) -> bool + 'a,
) -> impl Iterator<Item = Block> + 'a {
    figures
        .iter()
        .filter(move |f| keep(f))
        .map(|f| Block::Figure(f.clone()))
}

/// Where a significance star goes: after the value, when the comparison's
/// Holm-adjusted p-value is below alpha.
fn star(cell: &mut String, c: Option<&Comparison>) {
    if c.is_some_and(|c| c.significant) {
        cell.push('*');
    }
}

/// The whole document, in reading order.
pub(crate) fn document(report: &Report, figures: &[FigureSpec]) -> Vec<Block> {
    let cfg = &report.settings;
    let pct = cfg.confidence * 100.0;
    let alpha = cfg.alpha;
    let strategies = report.strategies();
    let mut doc = vec![
        Block::Heading(1, "Benchmark report".into()),
        Block::Paragraph(format!(
            "{} datasets, {} strategies, {} cells ({} in the report). Baseline: {}. \
             Intervals are {pct}% percentile bootstrap intervals; * marks a significant \
             difference from the baseline (Holm-adjusted bootstrap p < {alpha} within the \
             family named under each table).",
            report.datasets.len(),
            strategies.len(),
            report.cells.len(),
            report.cells_with(CellStatus::Ok).count(),
            user(&cfg.baseline_model),
        )),
    ];
    doc.push(Block::List(report.method.clone()));

    // The test sets and what the bootstrap resamples in each.
    doc.push(Block::Heading(2, "Test sets and resampling".into()));
    doc.push(Block::Table(Table {
        header: [
            "Dataset",
            "Task",
            "Labels",
            "Images",
            "Resampled unit",
            "Units",
            "Images per unit",
        ]
        .map(String::from)
        .to_vec(),
        numeric: vec![false, false, true, true, false, true, true],
        rows: report
            .datasets
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    match d.task {
                        TaskKind::Binary => "binary",
                        TaskKind::MultiClass => "multi-class",
                        TaskKind::MultiLabel => "multi-label",
                    }
                    .to_owned(),
                    d.labels.len().to_string(),
                    d.n_images.to_string(),
                    d.resample.to_string(),
                    d.n_clusters.to_string(),
                    format!("{:.3}", d.mean_cluster_size),
                ]
            })
            .collect(),
    }));
    table2(report, figures, &mut doc);
    tables45(report, figures, &mut doc);
    per_label(report, &mut doc);
    sections::calibration(report, figures, &mut doc);
    sections::subgroups(report, figures, &mut doc);
    sections::label_efficiency(report, figures, &mut doc);
    left_out(report, &mut doc);
    doc
}

fn table2(report: &Report, figures: &[FigureSpec], doc: &mut Vec<Block>) {
    let cfg = &report.settings;
    let pct = cfg.confidence * 100.0;
    let strategies = report.strategies();
    doc.push(Block::Heading(
        2,
        "Table 2: best SSL model against the baseline".into(),
    ));
    let fixed = match &cfg.baseline_strategy {
        BaselineStrategy::Fixed(s) => Some(s.clone()),
        BaselineStrategy::SameStrategy => None,
    };
    let mut header = vec!["Dataset".to_owned()];
    let mut numeric = vec![false];
    if let Some(f) = &fixed {
        header.push(format!("Baseline ({f}) AUC [{pct}% CI]"));
        numeric.push(true);
    }
    for s in &strategies {
        if fixed.is_none() {
            header.push(format!("{s}: baseline AUC [{pct}% CI]"));
            numeric.push(true);
        }
        header.extend([
            format!("{s}: best SSL (AUC)"),
            format!("{s}: improvement [{pct}% CI]"),
            format!("{s}: p"),
            format!("{s}: p (Holm)"),
        ]);
        numeric.extend([false, true, true, true]);
    }
    let mut rows = Vec::new();
    let mut family = 0;
    for d in &report.datasets {
        let mut row = vec![d.name.clone()];
        let find = |s: &str| d.strategies.iter().find(|x| x.strategy == s);
        if fixed.is_some() {
            let base = d.strategies.iter().find_map(|s| s.baseline.as_ref());
            row.push(base.map_or("n/a".into(), |b| fmt_estimate(&b.macro_avg)));
        }
        for s in &strategies {
            let sr = find(s);
            if fixed.is_none() {
                let base = sr.and_then(|x| x.baseline.as_ref());
                row.push(base.map_or("n/a".into(), |b| fmt_estimate(&b.macro_avg)));
            }
            let best = sr.and_then(|x| x.best_ssl.as_ref());
            row.push(best.map_or("n/a".into(), |b| {
                format!("{} ({})", b.model, fmt3(b.macro_avg.auc))
            }));
            let cmp = best.and_then(|b| b.vs_baseline.as_ref());
            family += usize::from(cmp.is_some_and(|c| c.p_value.is_some()));
            row.push(cmp.map_or("n/a".into(), fmt_comparison));
            row.push(cmp.map_or("n/a".into(), |c| fmt_p(c.p_value)));
            row.push(cmp.map_or("n/a".into(), |c| fmt_p(c.p_value_holm)));
        }
        rows.push(row);
    }
    doc.push(Block::Table(Table {
        header,
        numeric,
        rows,
    }));
    doc.push(Block::Paragraph(format!(
        "Stars (*) mark a Holm-adjusted p < {}. {FAMILY_TABLE2}: {family} comparison(s) with a p-value.",
        cfg.alpha
    )));
    doc.extend(figures_of(figures, |f| f.kind == FigureKind::PerTask));
}

fn tables45(report: &Report, figures: &[FigureSpec], doc: &mut Vec<Block>) {
    let pct = report.settings.confidence * 100.0;
    let models = report.models();
    for s in &report.strategies() {
        doc.push(Block::Heading(
            2,
            format!(
                "{}: macro AUC [{pct}% CI] of every model, {s}",
                table_number(s)
            ),
        ));
        let used: Vec<&String> = models
            .iter()
            .filter(|m| {
                report.datasets.iter().any(|d| {
                    d.strategies
                        .iter()
                        .any(|x| &x.strategy == s && x.models.iter().any(|r| &r.model == *m))
                })
            })
            .collect();
        let mut header = vec!["Dataset".to_owned()];
        header.extend(used.iter().map(|m| (*m).clone()));
        let numeric = std::iter::once(false)
            .chain(used.iter().map(|_| true))
            .collect();
        let mut rows = Vec::new();
        for d in &report.datasets {
            let sr = d.strategies.iter().find(|x| &x.strategy == s);
            let mut row = vec![d.name.clone()];
            for m in &used {
                let r = sr.and_then(|x| x.models.iter().find(|r| &r.model == *m));
                row.push(r.map_or("n/a".into(), |r| {
                    let mut cell = fmt_estimate(&r.macro_avg);
                    star(&mut cell, r.vs_baseline.as_ref());
                    cell
                }));
            }
            rows.push(row);
        }
        let mut mean_row = vec!["Mean over datasets (n)".to_owned()];
        for m in &used {
            let mean = report
                .model_means
                .iter()
                .find(|x| &x.strategy == s && &x.model == *m);
            mean_row.push(mean.map_or("n/a".into(), |x| {
                format!("{} ({})", fmt3(Some(x.mean_macro_auc)), x.n_datasets)
            }));
        }
        rows.push(mean_row);
        doc.push(Block::Table(Table {
            header,
            numeric,
            rows,
        }));
        doc.push(Block::Paragraph(format!(
            "Stars (*) mark a macro AUC that differs from the comparator's with Holm-adjusted p < {}; {FAMILY_MODELS}.",
            report.settings.alpha
        )));
        doc.extend(figures_of(figures, |f| {
            matches!(f.kind, FigureKind::PerDataset(_)) && &f.strategy == s
        }));
    }
}

fn per_label(report: &Report, doc: &mut Vec<Block>) {
    let pct = report.settings.confidence * 100.0;
    doc.push(Block::Heading(2, "Per-label AUC".into()));
    doc.push(Block::Paragraph(format!(
        "Stars (*) mark a label's AUC that differs from the comparator's with Holm-adjusted p < {}; {FAMILY_LABELS}.",
        report.settings.alpha
    )));
    for d in &report.datasets {
        for sr in &d.strategies {
            doc.push(Block::Heading(3, format!("{}, {}", d.name, sr.strategy)));
            let mut header = vec!["Label".to_owned(), "n+".to_owned(), "n-".to_owned()];
            header.extend(sr.models.iter().map(|m| m.model.clone()));
            let numeric = (0..header.len()).map(|k| k > 0).collect();
            let rows = d
                .labels
                .iter()
                .enumerate()
                .map(|(j, label)| {
                    let first = &sr.models[0].labels[j];
                    let mut row = vec![
                        label.clone(),
                        first.n_pos.to_string(),
                        first.n_neg.to_string(),
                    ];
                    row.extend(sr.models.iter().map(|m| {
                        let l = &m.labels[j];
                        let mut cell = fmt3(l.auc);
                        star(&mut cell, l.vs_baseline.as_ref());
                        cell
                    }));
                    row
                })
                .collect();
            doc.push(Block::Table(Table {
                header,
                numeric,
                rows,
            }));
            if let (Some(best), false) = (&sr.best_ssl, sr.per_label.is_empty()) {
                doc.push(Block::Paragraph(format!(
                    "Best SSL model {} against the baseline, per label:",
                    user(&best.model)
                )));
                let rows = sr
                    .per_label
                    .iter()
                    .map(|l| {
                        vec![
                            l.label.clone(),
                            fmt_estimate(&l.baseline),
                            fmt_estimate(&l.best_ssl),
                            fmt_comparison(&l.comparison),
                            fmt_p(l.comparison.p_value),
                            fmt_p(l.comparison.p_value_holm),
                        ]
                    })
                    .collect();
                doc.push(Block::Table(Table {
                    header: vec![
                        "Label".into(),
                        format!("Baseline AUC [{pct}% CI]"),
                        format!("{} AUC [{pct}% CI]", best.model),
                        format!("Difference [{pct}% CI]"),
                        "p".into(),
                        "p (Holm)".into(),
                    ],
                    numeric: vec![false, true, true, true, true, true],
                    rows,
                }));
            }
        }
    }
}

fn left_out(report: &Report, doc: &mut Vec<Block>) {
    doc.push(Block::Heading(2, "Missing and failed cells".into()));
    let with_fraction = report.cells.iter().any(|c| c.cell.fraction.is_some());
    let left_out: Vec<Vec<String>> = report
        .cells
        .iter()
        .filter(|c| c.status != CellStatus::Ok)
        .map(|c| {
            let mut row = vec![
                c.cell.dataset.clone(),
                c.cell.strategy.clone(),
                c.cell.model.clone(),
                c.cell.seed.to_string(),
            ];
            if with_fraction {
                row.push(format!("{}", c.cell.training_fraction()));
            }
            row.extend([
                format!("{:?}", c.status).to_lowercase(),
                c.message.clone().unwrap_or_default(),
            ]);
            row
        })
        .collect();
    if left_out.is_empty() {
        doc.push(Block::Paragraph(
            "None: every cell is in the report.".into(),
        ));
    } else {
        let mut header: Vec<String> = ["Dataset", "Strategy", "Model", "Seed"]
            .map(String::from)
            .to_vec();
        let mut numeric = vec![false, false, false, true];
        if with_fraction {
            header.push("Fraction".into());
            numeric.push(true);
        }
        header.extend(["Status".into(), "Why".into()]);
        numeric.extend([false, false]);
        doc.push(Block::Table(Table {
            header,
            numeric,
            rows: left_out,
        }));
    }
}
