//! The report as a document (headings, paragraphs, tables, figures) built
//! once from a [`Report`] and rendered to Markdown and to HTML, so both
//! show the same cells. Numbers are rounded to 3 decimals from the values
//! in `report.json`.

use std::fmt::Write as _;

use crate::figures::FigureSpec;
use crate::report::{BaselineStrategy, CellStatus, Comparison, Estimate, Report};

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

fn fmt_estimate(e: &Estimate) -> String {
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

/// The whole document, in reading order.
pub(crate) fn document(report: &Report, figures: &[FigureSpec]) -> Vec<Block> {
    let cfg = &report.settings;
    let pct = cfg.confidence * 100.0;
    let strategies = report.strategies();
    let mut doc = vec![
        Block::Heading(1, "Benchmark report".into()),
        Block::Paragraph(format!(
            "{} datasets, {} strategies, {} cells ({} in the report). Baseline: {}. \
             Intervals are {pct}% percentile bootstrap intervals; * marks a significant \
             difference from the baseline (bootstrap p < {}).",
            report.datasets.len(),
            strategies.len(),
            report.cells.len(),
            report.cells_with(CellStatus::Ok).count(),
            cfg.baseline_model,
            cfg.alpha
        )),
    ];
    doc.push(Block::List(report.method.clone()));

    // Table 2.
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
        ]);
        numeric.extend([false, true, true]);
    }
    let mut rows = Vec::new();
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
            row.push(cmp.map_or("n/a".into(), fmt_comparison));
            row.push(cmp.map_or("n/a".into(), |c| fmt_p(c.p_value)));
        }
        rows.push(row);
    }
    doc.push(Block::Table(Table {
        header,
        numeric,
        rows,
    }));
    for f in figures.iter().filter(|f| f.number == 1) {
        doc.push(Block::Figure(f.clone()));
    }

    // Tables 4 and 5.
    let models = report.models();
    for s in &strategies {
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
                    if r.vs_baseline.as_ref().is_some_and(|c| c.significant) {
                        cell.push('*');
                    }
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
        for f in figures.iter().filter(|f| f.number != 1 && &f.strategy == s) {
            doc.push(Block::Figure(f.clone()));
        }
    }

    // Per-label results.
    doc.push(Block::Heading(2, "Per-label AUC".into()));
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
                        if l.vs_baseline.as_ref().is_some_and(|c| c.significant) {
                            cell.push('*');
                        }
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
                    best.model
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
                    ],
                    numeric: vec![false, true, true, true, true],
                    rows,
                }));
            }
        }
    }

    // Cells left out.
    doc.push(Block::Heading(2, "Missing and failed cells".into()));
    let left_out: Vec<Vec<String>> = report
        .cells
        .iter()
        .filter(|c| c.status != CellStatus::Ok)
        .map(|c| {
            vec![
                c.cell.dataset.clone(),
                c.cell.strategy.clone(),
                c.cell.model.clone(),
                c.cell.seed.to_string(),
                format!("{:?}", c.status).to_lowercase(),
                c.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if left_out.is_empty() {
        doc.push(Block::Paragraph(
            "None: every cell is in the report.".into(),
        ));
    } else {
        doc.push(Block::Table(Table {
            header: ["Dataset", "Strategy", "Model", "Seed", "Status", "Why"]
                .map(String::from)
                .to_vec(),
            numeric: vec![false, false, false, true, false, false],
            rows: left_out,
        }));
    }
    doc
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Markdown rendering; figures link to `figures/<stem>.png`.
pub(crate) fn markdown(doc: &[Block]) -> String {
    let mut s = String::new();
    for block in doc {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "{} {}\n", "#".repeat(*level), text);
            }
            Block::Paragraph(text) => {
                let _ = writeln!(s, "{text}\n");
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(s, "- {item}");
                }
                s.push('\n');
            }
            Block::Table(t) => {
                let cells: Vec<String> = t.header.iter().map(|h| md_cell(h)).collect();
                let _ = writeln!(s, "| {} |", cells.join(" | "));
                let rule: Vec<&str> = t
                    .numeric
                    .iter()
                    .map(|&n| if n { "---:" } else { "---" })
                    .collect();
                let _ = writeln!(s, "|{}|", rule.join("|"));
                for row in &t.rows {
                    let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
                    let _ = writeln!(s, "| {} |", cells.join(" | "));
                }
                s.push('\n');
            }
            Block::Figure(f) => {
                let _ = writeln!(s, "![{}](figures/{}.png)\n", f.title, f.stem);
            }
        }
    }
    s
}

/// Escapes text for HTML content and attributes.
pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:2em auto;max-width:1200px;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:0.25em 0.6em}th{background:#f0f0f0}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}";

/// One self-contained HTML page; `svg(stem)` returns a figure's SVG text,
/// which is embedded inline.
pub(crate) fn html(doc: &[Block], svg: impl Fn(&str) -> Option<String>) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Benchmark report</title>\n",
    );
    let _ = writeln!(s, "<style>{STYLE}</style>\n</head>\n<body>");
    for block in doc {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "<h{level}>{}</h{level}>", html_escape(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(s, "<p>{}</p>", html_escape(text));
            }
            Block::List(items) => {
                s.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(s, "<li>{}</li>", html_escape(item));
                }
                s.push_str("</ul>\n");
            }
            Block::Table(t) => {
                s.push_str("<table>\n<tr>");
                for h in &t.header {
                    let _ = write!(s, "<th>{}</th>", html_escape(h));
                }
                s.push_str("</tr>\n");
                for row in &t.rows {
                    s.push_str("<tr>");
                    for (k, c) in row.iter().enumerate() {
                        let class = if t.numeric.get(k) == Some(&true) {
                            " class=\"num\""
                        } else {
                            ""
                        };
                        let _ = write!(s, "<td{class}>{}</td>", html_escape(c));
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</table>\n");
            }
            Block::Figure(f) => {
                s.push_str("<figure>\n");
                match svg(&f.stem) {
                    Some(text) => s.push_str(strip_xml_declaration(&text)),
                    None => {
                        let _ = write!(s, "<p>(figure {} unavailable)</p>", html_escape(&f.stem));
                    }
                }
                let _ = writeln!(
                    s,
                    "\n<figcaption>{}</figcaption>\n</figure>",
                    html_escape(&f.title)
                );
            }
        }
    }
    s.push_str("</body>\n</html>\n");
    s
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(k) => &svg[k..],
        None => svg,
    }
}
