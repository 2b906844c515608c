//! `evaluation.csv` and `evaluation.md` from an evaluation.

use std::fmt::Write as _;

use anyhow::Result;
use cxr_report::{MdContext, md_escape};
use cxr_stats::{Evaluation, Unit};

/// A user-supplied string (label, subgroup, reason) in a Markdown table cell.
fn cell(s: &str) -> String {
    md_escape(s, MdContext::TableCell)
}

/// A user-supplied string in Markdown running text.
fn text(s: &str) -> String {
    md_escape(s, MdContext::Text)
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| format!("{v}"))
}

/// One row per label plus a `macro` row; empty cells where not applicable.
pub fn render_csv(e: &Evaluation) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "label",
        "n_pos",
        "n_neg",
        "auc",
        "ci_low",
        "ci_high",
        "baseline_auc",
        "delta",
        "delta_ci_low",
        "delta_ci_high",
        "p_value_delong",
        "p_value_bootstrap",
        "reason",
        "p_value_holm",
        "p_value_delong_clustered",
        "brier",
        "ece",
        "ace",
        "brier_after",
        "ece_after",
        "ace_after",
    ])?;
    let ci = |c: Option<[f64; 2]>, k: usize| num(c.map(|c| c[k]));
    for l in &e.labels {
        let c = l.comparison.as_ref();
        w.write_record([
            l.label.clone(),
            l.n_pos.to_string(),
            l.n_neg.to_string(),
            num(l.auc),
            ci(l.ci, 0),
            ci(l.ci, 1),
            num(c.and_then(|c| c.baseline_auc)),
            num(c.and_then(|c| c.delta)),
            ci(c.and_then(|c| c.delta_ci), 0),
            ci(c.and_then(|c| c.delta_ci), 1),
            num(c.and_then(|c| c.p_value_delong)),
            num(c.and_then(|c| c.p_value_bootstrap)),
            l.reason.clone().unwrap_or_default(),
            num(c.and_then(|c| c.p_value_holm)),
            num(c.and_then(|c| c.p_value_delong_clustered)),
            num(l.calibration.as_ref().map(|k| k.brier)),
            num(l.calibration.as_ref().map(|k| k.ece)),
            num(l.calibration.as_ref().map(|k| k.ace)),
            num(l.calibration_after.as_ref().map(|k| k.brier)),
            num(l.calibration_after.as_ref().map(|k| k.ece)),
            num(l.calibration_after.as_ref().map(|k| k.ace)),
        ])?;
    }
    let m = &e.macro_avg;
    let c = m.comparison.as_ref();
    w.write_record([
        "macro".to_owned(),
        String::new(),
        String::new(),
        num(m.auc),
        ci(m.ci, 0),
        ci(m.ci, 1),
        num(c.and_then(|c| c.baseline_auc)),
        num(c.and_then(|c| c.delta)),
        ci(c.and_then(|c| c.delta_ci), 0),
        ci(c.and_then(|c| c.delta_ci), 1),
        String::new(),
        num(c.and_then(|c| c.p_value_bootstrap)),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ])?;
    Ok(String::from_utf8(w.into_inner()?)?)
}

fn auc_cell(auc: Option<f64>, ci: Option<[f64; 2]>) -> String {
    match (auc, ci) {
        (Some(a), Some([lo, hi])) => format!("{a:.4} ({lo:.4}-{hi:.4})"),
        (Some(a), None) => format!("{a:.4}"),
        (None, _) => "n/a".to_owned(),
    }
}

fn delta_cell(delta: Option<f64>, ci: Option<[f64; 2]>) -> String {
    match (delta, ci) {
        (Some(d), Some([lo, hi])) => format!("{d:+.4} ({lo:+.4} to {hi:+.4})"),
        (Some(d), None) => format!("{d:+.4}"),
        (None, _) => "n/a".to_owned(),
    }
}

fn p_cell(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => "<0.001".to_owned(),
        Some(p) => format!("{p:.3}"),
        None => "n/a".to_owned(),
    }
}

fn ci_cell(v: f64, ci: Option<[f64; 2]>) -> String {
    match ci {
        Some([lo, hi]) => format!("{v:.4} ({lo:.4}-{hi:.4})"),
        None => format!("{v:.4}"),
    }
}

/// A Markdown table's header and separator rows: (title, right-aligned).
fn table_head(s: &mut String, columns: &[(&str, bool)]) {
    for (title, _) in columns {
        let _ = write!(s, "| {title} ");
    }
    s.push_str("|\n");
    for (_, right) in columns {
        s.push_str(if *right { "|---:" } else { "|---" });
    }
    s.push_str("|\n");
}

fn rate(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

/// The sentence saying what the intervals resampled.
fn unit_sentence(e: &Evaluation) -> String {
    let pct = e.confidence * 100.0;
    let unit = match e.resample {
        Unit::Patient => format!(
            "resampling patients with all their images ({} patients, {:.2} images per patient)",
            e.n_clusters, e.mean_cluster_size
        ),
        Unit::Image => "resampling images as if independent (no patient ids)".to_owned(),
    };
    format!(
        "{} images; AUC with {pct}% percentile bootstrap CI over {} replicates (seed {}), {unit}.",
        e.n_images, e.n_bootstrap, e.seed
    )
}

/// The Markdown report: AUC with CI per label and macro, the paired columns
/// when a baseline was given, calibration, and subgroups when asked for.
pub fn render_markdown(e: &Evaluation) -> String {
    let paired = e.macro_avg.comparison.is_some();
    let clustered = e.resample == Unit::Patient;
    let mut s = String::new();
    let _ = writeln!(s, "# Evaluation\n\n{}\n", unit_sentence(e));
    if e.simultaneous {
        let _ = writeln!(
            s,
            "Per-label intervals are Bonferroni intervals ({:.2}% each), holding simultaneously at {}% over the {} labels with an AUC; the macro interval is at {}%.\n",
            e.interval_confidence * 100.0,
            e.confidence * 100.0,
            e.macro_avg.n_labels,
            e.confidence * 100.0
        );
    }
    if paired {
        let family = e
            .multiplicity
            .as_ref()
            .map_or(String::new(), |m| text(&m.family));
        let _ = writeln!(
            s,
            "p DeLong: DeLong's test with images as independent{}; p bootstrap: paired bootstrap in the resampled unit; p Holm: p bootstrap Holm-adjusted over {family}.\n",
            if clustered {
                "; p clustered: Obuchowski's clustered DeLong, patients as the unit"
            } else {
                ""
            }
        );
        let mut columns = vec![
            ("label", false),
            ("n+", true),
            ("n-", true),
            ("AUC (CI)", false),
            ("baseline AUC", false),
            ("delta (CI)", false),
            ("p DeLong", true),
        ];
        if clustered {
            columns.push(("p clustered", true));
        }
        columns.extend([("p bootstrap", true), ("p Holm", true)]);
        table_head(&mut s, &columns);
    } else {
        table_head(
            &mut s,
            &[
                ("label", false),
                ("n+", true),
                ("n-", true),
                ("AUC (CI)", false),
            ],
        );
    }
    for l in &e.labels {
        let mut auc = auc_cell(l.auc, l.ci);
        if let Some(reason) = &l.reason {
            let _ = write!(auc, " ({})", cell(reason));
        }
        let _ = write!(
            s,
            "| {} | {} | {} | {auc} |",
            cell(&l.label),
            l.n_pos,
            l.n_neg
        );
        if let Some(c) = &l.comparison {
            let _ = write!(
                s,
                " {} | {} | {} |",
                auc_cell(c.baseline_auc, None),
                delta_cell(c.delta, c.delta_ci),
                p_cell(c.p_value_delong),
            );
            if clustered {
                let _ = write!(s, " {} |", p_cell(c.p_value_delong_clustered));
            }
            let _ = write!(
                s,
                " {} | {} |",
                p_cell(c.p_value_bootstrap),
                p_cell(c.p_value_holm)
            );
        }
        s.push('\n');
    }
    let m = &e.macro_avg;
    let _ = write!(
        s,
        "| **macro ({} labels)** | | | {} |",
        m.n_labels,
        auc_cell(m.auc, m.ci)
    );
    if let Some(c) = &m.comparison {
        let _ = write!(
            s,
            " {} | {} | |{} {} | |",
            auc_cell(c.baseline_auc, None),
            delta_cell(c.delta, c.delta_ci),
            if clustered { " |" } else { "" },
            p_cell(c.p_value_bootstrap)
        );
    }
    s.push('\n');
    calibration_section(e, &mut s);
    subgroup_section(e, &mut s);
    s
}

fn calibration_section(e: &Evaluation, s: &mut String) {
    let after = e.labels.iter().any(|l| l.calibration_after.is_some());
    if e.labels.iter().all(|l| l.calibration.is_none()) && !after {
        if let Some(reason) = e.labels.iter().find_map(|l| l.calibration_reason.as_ref()) {
            let _ = writeln!(s, "\n## Calibration\n\nNot computed: {reason}.");
        }
        return;
    }
    s.push_str("\n## Calibration\n\nBrier score; ECE over 15 equal-width bins and ACE over 15 equal-mass bins (lower is better).");
    if after {
        s.push_str(" After: Platt scaling fitted per label on the validation predictions.");
    }
    s.push_str("\n\n");
    let mut columns = vec![
        ("label", false),
        ("Brier (CI)", false),
        ("ECE (CI)", false),
        ("ACE", true),
    ];
    if after {
        columns.extend([
            ("Brier after", true),
            ("ECE after", true),
            ("ACE after", true),
        ]);
    }
    table_head(s, &columns);
    for l in &e.labels {
        let _ = write!(s, "| {} |", cell(&l.label));
        match &l.calibration {
            Some(c) => {
                let _ = write!(
                    s,
                    " {} | {} | {:.4} |",
                    ci_cell(c.brier, c.brier_ci),
                    ci_cell(c.ece, c.ece_ci),
                    c.ace
                );
            }
            None => {
                let _ = write!(
                    s,
                    " n/a ({}) | | |",
                    cell(l.calibration_reason.as_deref().unwrap_or("not computed"))
                );
            }
        }
        if after {
            match (&l.calibration_after, &l.calibration_after_reason) {
                (Some(c), _) => {
                    let _ = write!(s, " {:.4} | {:.4} | {:.4} |", c.brier, c.ece, c.ace);
                }
                (None, reason) => {
                    let _ = write!(s, " n/a ({}) | | |", cell(reason.as_deref().unwrap_or("-")));
                }
            }
        }
        s.push('\n');
    }
}

fn subgroup_section(e: &Evaluation, s: &mut String) {
    let (Some(results), Some(gaps)) = (&e.subgroups, &e.subgroup_gaps) else {
        return;
    };
    let _ = writeln!(
        s,
        "\n## Subgroups\n\nAUC per subgroup with the same bootstrap's {}% interval; TPR and FPR at one threshold per label: {}.\n",
        e.confidence * 100.0,
        text(e.threshold_source.as_deref().unwrap_or("-"))
    );
    let mut unknown = false;
    for c in e.subgroup_columns.iter().flatten() {
        if c.n_unknown > 0 {
            let _ = writeln!(
                s,
                "- {}: {} image(s) of unknown value left out.",
                text(&c.column),
                c.n_unknown
            );
            unknown = true;
        }
    }
    if unknown {
        s.push('\n');
    }
    table_head(
        s,
        &[
            ("column", false),
            ("subgroup", false),
            ("label", false),
            ("n", true),
            ("n+", true),
            ("AUC (CI)", false),
            ("TPR", true),
            ("FPR", true),
        ],
    );
    for r in results {
        let mut auc = auc_cell(r.auc, r.ci);
        if let Some(reason) = &r.reason {
            let _ = write!(auc, " ({})", cell(reason));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {auc} | {} | {} |",
            cell(&r.column),
            cell(&r.value),
            cell(&r.label),
            r.n,
            r.n_pos,
            rate(r.tpr),
            rate(r.fpr)
        );
    }
    if gaps.is_empty() {
        return;
    }
    s.push_str("\nGaps: best minus worst subgroup AUC, and highest minus lowest false negative rate (underdiagnosis), with the paired interval of the same two subgroups over the replicates (the pair is chosen on the point estimates).\n\n");
    table_head(
        s,
        &[
            ("column", false),
            ("label", false),
            ("AUC gap (CI)", false),
            ("best", false),
            ("worst", false),
            ("FNR gap (CI)", false),
            ("most underdiagnosed", false),
        ],
    );
    for g in gaps {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&g.column),
            cell(&g.label),
            delta_cell(Some(g.gap), g.gap_ci),
            cell(&g.best),
            cell(&g.worst),
            delta_cell(g.fnr_gap, g.fnr_gap_ci),
            cell(g.fnr_worst.as_deref().unwrap_or("n/a"))
        );
    }
}
