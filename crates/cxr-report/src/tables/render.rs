//! Rendering the document to Markdown and to one self-contained HTML page.

use std::fmt::Write as _;

use super::{Block, USER_END, USER_START};

use crate::markdown::{MdContext, md_escape};

fn md_cell(s: &str) -> String {
    md_escape(s, MdContext::TableCell)
}

fn md_text(s: &str) -> String {
    md_escape(s, MdContext::Text)
}

/// A paragraph for Markdown: the spans marked by [`super::user`] are
/// escaped, the fixed text around them is Markdown already (it keeps its
/// `p < 0.05`, which no renderer reads as HTML).
fn md_paragraph(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(USER_START) {
        out.push_str(&rest[..start]);
        let inner = &rest[start + USER_START.len_utf8()..];
        let end = inner.find(USER_END).unwrap_or(inner.len());
        out.push_str(&md_text(&inner[..end]));
        rest = inner.get(end + USER_END.len_utf8()..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The text without the marks of user-supplied spans (for HTML, which
/// escapes all text anyway).
fn unmarked(text: &str) -> String {
    text.replace([USER_START, USER_END], "")
}

/// Markdown rendering; figures link to `figures/<stem>.png`.
pub(crate) fn markdown(doc: &[Block]) -> String {
    let mut s = String::new();
    for block in doc {
        match block {
            Block::Heading(level, text) => {
                let _ = writeln!(s, "{} {}\n", "#".repeat(*level), md_text(text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(s, "{}\n", md_paragraph(text));
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(s, "- {}", md_text(item));
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
                let _ = writeln!(s, "![{}](figures/{}.png)\n", md_text(&f.title), f.stem);
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
                let _ = writeln!(s, "<p>{}</p>", html_escape(&unmarked(text)));
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
