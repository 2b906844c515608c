//! Horizontal dot plots: categories (labels, datasets or subgroups) run
//! down the y axis so long names stay readable, AUCs along x, with the
//! bootstrap interval as a whisker. Figures 1-3 and the subgroup figures.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    DrawResult, FAMILY, FigureKind, FigureSpec, PALETTE, Series, draw_legend, draw_marker, frame,
    legend_height, legend_width, model_series,
};
use crate::report::{Estimate, Report, TaskKind};

/// One dot with its whisker.
struct Dot {
    /// Category index from the top.
    row: usize,
    /// Offset within the category, in category units.
    offset: f64,
    estimate: Estimate,
    series: usize,
}

/// A titled dot-plot panel.
struct Panel {
    title: String,
    categories: Vec<String>,
    dots: Vec<Dot>,
}

const WIDTH: u32 = 1100;
const ROW_UNIT: u32 = 13;

fn panel_height(panel: &Panel, per_row: usize) -> u32 {
    let row = (per_row as u32 * ROW_UNIT + 12).max(28);
    70 + row * panel.categories.len() as u32 + 45
}

/// Horizontal range covering every interval, on a 0.05 grid within [0, 1].
fn x_range(panels: &[Panel]) -> (f64, f64) {
    let values = panels.iter().flat_map(|p| &p.dots).flat_map(|d| {
        let e = d.estimate;
        e.auc.into_iter().chain(e.ci.into_iter().flatten())
    });
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let lo = ((lo * 20.0).floor() / 20.0).clamp(0.0, 0.9);
    let hi = ((hi * 20.0).ceil() / 20.0).clamp(lo + 0.1, 1.0);
    (lo, hi)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    series: &[Series],
    x: (f64, f64),
    label_width: u32,
) -> DrawResult<DB> {
    let n = panel.categories.len();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 19))
        .margin(8)
        .margin_right(20)
        .x_label_area_size(42)
        .y_label_area_size(label_width)
        .build_cartesian_2d(x.0..x.1, -0.5f64..(n as f64 - 0.5))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .max_light_lines(1)
        .x_labels(((x.1 - x.0) / 0.05).round() as usize + 1)
        .x_label_formatter(&|v| format!("{v:.2}"))
        .y_labels(0)
        .x_desc("AUC (dot) with 95% bootstrap interval (whisker)")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 14))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    // Category names, drawn by hand so each sits exactly on its row.
    let (bx, by) = area.get_base_pixel();
    let at = |p: (i32, i32)| (p.0 - bx, p.1 - by);
    let name_style = TextStyle::from((FAMILY, 14).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (k, name) in panel.categories.iter().enumerate() {
        let (px, py) = at(chart.backend_coord(&(x.0, (n - 1 - k) as f64)));
        area.draw(&Text::new(name.clone(), (px - 8, py), name_style.clone()))?;
    }
    // Separators between categories.
    for k in 0..n.saturating_sub(1) {
        let y = k as f64 + 0.5;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x.0, y), (x.1, y)],
            RGBColor(200, 200, 200),
        )))?;
    }
    if x.0 < 0.5 && x.1 > 0.5 {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.5, -0.5), (0.5, n as f64 - 0.5)],
            RGBColor(160, 160, 160).stroke_width(1),
        )))?;
    }
    for d in &panel.dots {
        let Some(auc) = d.estimate.auc else { continue };
        let y = (n - 1 - d.row) as f64 + d.offset;
        let s = &series[d.series];
        let style = s.color.stroke_width(2);
        if let Some([lo, hi]) = d.estimate.ci {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(lo, y), (hi, y)],
                style,
            )))?;
            for end in [lo, hi] {
                let (px, py) = at(chart.backend_coord(&(end, y)));
                area.draw(&PathElement::new(vec![(px, py - 3), (px, py + 3)], style))?;
            }
        }
        draw_marker(area, s, at(chart.backend_coord(&(auc, y))))?;
    }
    Ok(())
}

/// A figure: its panels stacked vertically, the legend on the right.
pub(super) struct Layout {
    title: String,
    panels: Vec<Panel>,
    series: Vec<Series>,
    per_row: usize,
}

impl Layout {
    pub(super) fn size(&self) -> (u32, u32) {
        let h: u32 = self
            .panels
            .iter()
            .map(|p| panel_height(p, self.per_row))
            .sum();
        // A one-dataset figure is shorter than a long legend (entries from
        // y = 70, 24 px apart): grow it so the last entry is not cut.
        let legend = legend_height(self.series.len());
        (WIDTH + legend_width(&self.series), h.max(legend) + 50)
    }

    pub(super) fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (w, _) = self.size();
        let (plots, legend) = frame(&root, &self.title, w, &self.series)?;
        let font = TextStyle::from((FAMILY, 14).into_font());
        let label_width = self
            .panels
            .iter()
            .flat_map(|p| &p.categories)
            .map(|c| {
                root.estimate_text_size(c, &font)
                    .map(|(w, _)| w)
                    .unwrap_or(100)
            })
            .max()
            .unwrap_or(60)
            + 16;
        let x = x_range(&self.panels);
        let heights: Vec<u32> = self
            .panels
            .iter()
            .map(|p| panel_height(p, self.per_row))
            .collect();
        let mut rest = plots;
        for (p, h) in self.panels.iter().zip(heights) {
            let (top, bottom) = rest.split_vertically(h);
            draw_panel(&top, p, &self.series, x, label_width)?;
            rest = bottom;
        }
        draw_legend(&legend, &self.series)?;
        root.present()
    }
}

/// The two series of a baseline-against-best-SSL figure.
fn baseline_and_best(baseline: &str, best: &str) -> Vec<Series> {
    vec![
        Series {
            name: format!("baseline ({baseline})"),
            color: BLACK,
            square: true,
        },
        Series {
            name: best.to_owned(),
            color: PALETTE[0],
            square: false,
        },
    ]
}

fn offsets(k: usize, count: usize) -> f64 {
    if count <= 1 {
        return 0.0;
    }
    let span = 0.7;
    span / 2.0 - span * k as f64 / (count - 1) as f64
}

pub(super) fn layout(report: &Report, spec: &FigureSpec) -> Layout {
    let baseline = &report.settings.baseline_model;
    if spec.kind == FigureKind::Subgroups {
        return subgroups(report, spec);
    }
    if spec.kind == FigureKind::PerTask {
        let mut panels = Vec::new();
        for d in &report.datasets {
            if d.task != TaskKind::MultiLabel {
                continue;
            }
            let Some(sr) = d.strategies.iter().find(|x| x.strategy == spec.strategy) else {
                continue;
            };
            let (Some(best), false) = (&sr.best_ssl, sr.per_label.is_empty()) else {
                continue;
            };
            let base = &sr.per_label[0].comparison;
            let mut dots = Vec::new();
            for (row, l) in sr.per_label.iter().enumerate() {
                dots.push(Dot {
                    row,
                    offset: 0.17,
                    estimate: l.baseline,
                    series: 0,
                });
                dots.push(Dot {
                    row,
                    offset: -0.17,
                    estimate: l.best_ssl,
                    series: 1,
                });
            }
            panels.push(Panel {
                title: format!(
                    "{}: best SSL {} vs {} ({})",
                    d.name, best.model, base.baseline_model, base.baseline_strategy
                ),
                categories: sr.per_label.iter().map(|l| l.label.clone()).collect(),
                dots,
            });
        }
        return Layout {
            title: spec.title.clone(),
            panels,
            series: baseline_and_best(baseline, "best SSL model of the dataset"),
            per_row: 2,
        };
    }
    let models: Vec<String> = report
        .models()
        .into_iter()
        .filter(|m| {
            report.datasets.iter().any(|d| {
                d.strategies
                    .iter()
                    .any(|x| x.strategy == spec.strategy && x.models.iter().any(|r| &r.model == m))
            })
        })
        .collect();
    let series = model_series(report, &models);
    let mut dots = Vec::new();
    let mut categories = Vec::new();
    for d in &report.datasets {
        let Some(sr) = d.strategies.iter().find(|x| x.strategy == spec.strategy) else {
            continue;
        };
        let row = categories.len();
        categories.push(d.name.clone());
        for (k, m) in models.iter().enumerate() {
            if let Some(r) = sr.models.iter().find(|r| &r.model == m) {
                dots.push(Dot {
                    row,
                    offset: offsets(k, models.len()),
                    estimate: r.macro_avg,
                    series: k,
                });
            }
        }
    }
    Layout {
        title: spec.title.clone(),
        panels: vec![Panel {
            title: format!("Macro AUC per dataset, {}", spec.strategy),
            categories,
            dots,
        }],
        series,
        per_row: models.len(),
    }
}

/// The subgroup figure of one dataset: a panel per strategy, a row per
/// (attribute, subgroup), the comparator and the best SSL model.
fn subgroups(report: &Report, spec: &FigureSpec) -> Layout {
    let baseline = &report.settings.baseline_model;
    let mut panels = Vec::new();
    if let Some(d) = report.datasets.iter().find(|d| d.name == spec.dataset) {
        for sr in d.strategies.iter().filter(|s| !s.subgroups.is_empty()) {
            let mut categories = Vec::new();
            let mut dots = Vec::new();
            let mut names: Vec<String> = Vec::new();
            for attribute in &sr.subgroups {
                for (k, group) in attribute.groups.iter().enumerate() {
                    let row = categories.len();
                    let note = if group.reason.is_some() {
                        " (too few positives)"
                    } else {
                        ""
                    };
                    categories.push(format!("{}: {}{note}", attribute.column, group.value));
                    for m in &attribute.models {
                        let is_base = m.role == "baseline";
                        if names.len() < attribute.models.len() {
                            names.push(format!("{} {} ({})", m.role, m.model, m.strategy));
                        }
                        if let Some(r) = m.results.get(k) {
                            dots.push(Dot {
                                row,
                                offset: if is_base { 0.17 } else { -0.17 },
                                estimate: r.macro_avg,
                                series: usize::from(!is_base),
                            });
                        }
                    }
                }
            }
            let title = format!("{}, {}: {}", d.name, sr.strategy, names.join(" vs "))
                .replace("best_ssl", "best SSL");
            panels.push(Panel {
                title,
                categories,
                dots,
            });
        }
    }
    Layout {
        title: spec.title.clone(),
        panels,
        series: baseline_and_best(baseline, "best SSL model"),
        per_row: 2,
    }
}
