//! The document's later sections: calibration, subgroups and label
//! efficiency, each present only when the report has its data.

use super::{Block, Table, fmt_estimate, fmt3};
use crate::figures::{FigureKind, FigureSpec};
use crate::report::{ModelResult, Report};
use crate::sections::ModelCalibration;

fn figure(figures: &[FigureSpec], kind: FigureKind, dataset: &str) -> Option<Block> {
    figures
        .iter()
        .find(|f| f.kind == kind && f.dataset == dataset)
        .map(|f| Block::Figure(f.clone()))
}

/// What the calibration table says about the labels left out.
fn calibration_note(c: &ModelCalibration) -> String {
    if c.excluded.is_empty() {
        return String::new();
    }
    let not_probabilities = c
        .excluded
        .iter()
        .filter(|e| e.reason.contains("not probabilities"))
        .count();
    let mut parts = Vec::new();
    if not_probabilities > 0 {
        let range = c.score_range.map_or_else(String::new, |[lo, hi]| {
            format!(": they range from {lo} to {hi}")
        });
        let what = if c.n_labels == 0 {
            "not calibrated".to_owned()
        } else {
            format!("{not_probabilities} label(s) left out")
        };
        parts.push(format!(
            "{what}: scores are not probabilities (outside [0, 1]{range}); they are not squashed into [0, 1]"
        ));
    }
    let other: Vec<String> = c
        .excluded
        .iter()
        .filter(|e| !e.reason.contains("not probabilities"))
        .map(|e| format!("{} left out: {}", e.label, e.reason))
        .collect();
    parts.extend(other);
    parts.join("; ")
}

pub(super) fn calibration(report: &Report, figures: &[FigureSpec], doc: &mut Vec<Block>) {
    let rows_of = |models: &[ModelResult], strategy: &str| -> Vec<Vec<String>> {
        models
            .iter()
            .filter_map(|m| {
                let c = m.calibration.as_ref()?;
                Some(vec![
                    strategy.to_owned(),
                    m.model.clone(),
                    c.n_labels.to_string(),
                    fmt3(c.brier),
                    fmt3(c.ece),
                    calibration_note(c),
                ])
            })
            .collect()
    };
    let any = report
        .datasets
        .iter()
        .flat_map(|d| &d.strategies)
        .flat_map(|s| &s.models)
        .any(|m| m.calibration.is_some());
    if !any {
        return;
    }
    doc.push(Block::Heading(2, "Calibration".into()));
    doc.push(Block::Paragraph(
        "Mean over labels (and seeds) of the Brier score and the expected calibration error \
         (ECE, 15 equal-width bins), over the labels whose scores are probabilities; lower is \
         better. Point estimates on the test split."
            .into(),
    ));
    for d in &report.datasets {
        let rows: Vec<Vec<String>> = d
            .strategies
            .iter()
            .flat_map(|s| rows_of(&s.models, &s.strategy))
            .collect();
        if rows.is_empty() {
            continue;
        }
        doc.push(Block::Heading(3, d.name.clone()));
        doc.push(Block::Table(Table {
            header: ["Strategy", "Model", "Labels", "Brier", "ECE", "Note"]
                .map(String::from)
                .to_vec(),
            numeric: vec![false, false, true, true, true, false],
            rows,
        }));
        doc.extend(figure(figures, FigureKind::Reliability, &d.name));
    }
}

pub(super) fn subgroups(report: &Report, figures: &[FigureSpec], doc: &mut Vec<Block>) {
    let pct = report.settings.confidence * 100.0;
    if !report
        .datasets
        .iter()
        .flat_map(|d| &d.strategies)
        .any(|s| !s.subgroups.is_empty())
    {
        return;
    }
    doc.push(Block::Heading(2, "Subgroups".into()));
    doc.push(Block::Paragraph(format!(
        "Macro AUC [{pct}% CI] per subgroup of the comparator and the best SSL model (mean over \
         the labels with both classes in the subgroup). Gap: best minus worst subgroup of a \
         model, with the {pct}% interval of the paired replicate differences."
    )));
    for d in &report.datasets {
        for sr in d.strategies.iter().filter(|s| !s.subgroups.is_empty()) {
            doc.push(Block::Heading(3, format!("{}, {}", d.name, sr.strategy)));
            let models = &sr.subgroups[0].models;
            let mut header: Vec<String> = ["Attribute", "Subgroup", "Images", "Patients"]
                .map(String::from)
                .to_vec();
            header.extend(
                models
                    .iter()
                    .map(|m| format!("{} ({}) macro AUC [{pct}% CI]", m.model, m.strategy)),
            );
            header.push("Note".into());
            let mut numeric = vec![false, false, true, true];
            numeric.extend(models.iter().map(|_| true));
            numeric.push(false);
            let mut rows = Vec::new();
            let mut gaps = Vec::new();
            for a in &sr.subgroups {
                for (k, g) in a.groups.iter().enumerate() {
                    let mut row = vec![
                        a.column.clone(),
                        g.value.clone(),
                        g.n_images.to_string(),
                        g.n_patients.map_or("n/a".into(), |n| n.to_string()),
                    ];
                    row.extend(a.models.iter().map(|m| {
                        m.results
                            .get(k)
                            .map_or("n/a".into(), |r| fmt_estimate(&r.macro_avg))
                    }));
                    row.push(g.reason.clone().unwrap_or_default());
                    rows.push(row);
                }
                if a.n_unknown > 0 {
                    let mut row = vec![
                        a.column.clone(),
                        "(unknown)".into(),
                        a.n_unknown.to_string(),
                        String::new(),
                    ];
                    row.extend(a.models.iter().map(|_| String::new()));
                    row.push("left out".into());
                    rows.push(row);
                }
                for m in &a.models {
                    let Some(gap) = &m.gap else { continue };
                    let ci = gap
                        .ci
                        .map_or_else(String::new, |[lo, hi]| format!(" [{lo:+.3}, {hi:+.3}]"));
                    gaps.push(vec![
                        a.column.clone(),
                        format!("{} ({})", m.model, m.strategy),
                        gap.best.clone(),
                        gap.worst.clone(),
                        format!("{:+.3}{ci}", gap.gap),
                    ]);
                }
            }
            doc.push(Block::Table(Table {
                header,
                numeric,
                rows,
            }));
            if !gaps.is_empty() {
                doc.push(Block::Paragraph(
                    "Largest gap between a model's subgroups of each attribute:".into(),
                ));
                doc.push(Block::Table(Table {
                    header: vec![
                        "Attribute".into(),
                        "Model".into(),
                        "Best subgroup".into(),
                        "Worst subgroup".into(),
                        format!("Gap [{pct}% CI]"),
                    ],
                    numeric: vec![false, false, false, false, true],
                    rows: gaps,
                }));
            }
        }
        doc.extend(figure(figures, FigureKind::Subgroups, &d.name));
    }
}

pub(super) fn label_efficiency(report: &Report, figures: &[FigureSpec], doc: &mut Vec<Block>) {
    let pct = report.settings.confidence * 100.0;
    if report
        .datasets
        .iter()
        .all(|d| d.label_efficiency.is_empty())
    {
        return;
    }
    doc.push(Block::Heading(2, "Label efficiency".into()));
    doc.push(Block::Paragraph(format!(
        "Macro AUC [{pct}% CI] against the fraction of the training set each cell was adapted \
         on (1 = the full training set, the cells of every other table); seeds averaged, the \
         dataset's replicates."
    )));
    for d in report
        .datasets
        .iter()
        .filter(|d| !d.label_efficiency.is_empty())
    {
        let mut fractions: Vec<f64> = d
            .label_efficiency
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.fraction))
            .collect();
        fractions.sort_by(f64::total_cmp);
        fractions.dedup();
        let mut header = vec!["Strategy".to_owned(), "Model".to_owned()];
        header.extend(fractions.iter().map(|f| format!("fraction {f}")));
        let numeric = (0..header.len()).map(|k| k > 1).collect();
        let rows = d
            .label_efficiency
            .iter()
            .map(|c| {
                let mut row = vec![c.strategy.clone(), c.model.clone()];
                row.extend(fractions.iter().map(|f| {
                    c.points
                        .iter()
                        .find(|p| p.fraction == *f)
                        .map_or("n/a".into(), |p| fmt_estimate(&p.macro_avg))
                }));
                row
            })
            .collect();
        doc.push(Block::Heading(3, d.name.clone()));
        doc.push(Block::Table(Table {
            header,
            numeric,
            rows,
        }));
        doc.extend(figure(figures, FigureKind::LabelEfficiency, &d.name));
    }
}
