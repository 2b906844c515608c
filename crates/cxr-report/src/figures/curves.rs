//! Line charts, one panel per strategy side by side: the reliability
//! diagrams (fraction positive against mean score per bin, with the
//! diagonal of perfect calibration) and the label-efficiency curves (macro
//! AUC with its interval against the training fraction, on a log axis).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    DrawResult, FAMILY, FigureSpec, Series, draw_legend, draw_marker, frame, legend_height,
    legend_width, model_series,
};
use crate::report::{DatasetReport, Report};

/// One point of a line: position and, optionally, a vertical interval.
struct Point {
    x: f64,
    y: f64,
    ci: Option<[f64; 2]>,
}

/// One model's line in a panel.
struct Line {
    series: usize,
    points: Vec<Point>,
}

struct CurvePanel {
    title: String,
    lines: Vec<Line>,
}

/// A figure of side-by-side line-chart panels sharing axes and a legend.
pub(super) struct CurveFigure {
    title: String,
    panels: Vec<CurvePanel>,
    series: Vec<Series>,
    x: (f64, f64),
    y: (f64, f64),
    /// Hand-placed x ticks (position, label); plotters' own labels when empty.
    x_ticks: Vec<(f64, String)>,
    x_desc: String,
    y_desc: String,
    /// Draw the diagonal y = x (perfect calibration).
    diagonal: bool,
}

const PANEL_WIDTH: u32 = 540;
const PANEL_HEIGHT: u32 = 500;
const MIN_WIDTH: u32 = 1100;

impl CurveFigure {
    pub(super) fn size(&self) -> (u32, u32) {
        let plots = (PANEL_WIDTH * self.panels.len().max(1) as u32).max(MIN_WIDTH);
        let h = PANEL_HEIGHT.max(legend_height(self.series.len()));
        (plots + legend_width(&self.series), h + 50)
    }

    pub(super) fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (w, _) = self.size();
        let (plots, legend) = frame(&root, &self.title, w, &self.series)?;
        let n = self.panels.len().max(1);
        let panel_width = (w - legend_width(&self.series)) / n as u32;
        let mut rest = plots;
        for panel in &self.panels {
            let (left, right) = rest.split_horizontally(panel_width);
            self.draw_panel(left, panel)?;
            rest = right;
        }
        draw_legend(&legend, &self.series)?;
        root.present()
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: DrawingArea<DB, Shift>,
        panel: &CurvePanel,
    ) -> DrawResult<DB> {
        let width = area.dim_in_pixel().0;
        let area = area.shrink((0, 0), (width, PANEL_HEIGHT));
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.title, (FAMILY, 17))
            .margin(10)
            .margin_right(24)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d(self.x.0..self.x.1, self.y.0..self.y.1)?;
        // Ticks every 0.05 AUC on a zoomed axis, every 0.1 on a full one.
        let step = if self.y.1 - self.y.0 > 0.5 { 0.1 } else { 0.05 };
        let mut mesh = chart.configure_mesh();
        mesh.max_light_lines(1)
            .y_labels(((self.y.1 - self.y.0) / step).round() as usize + 1)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .x_label_formatter(&|v| format!("{v:.1}"))
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215));
        if !self.x_ticks.is_empty() {
            mesh.x_labels(0).disable_x_mesh();
        } else {
            mesh.x_labels(6);
        }
        mesh.draw()?;
        let (bx, by) = area.get_base_pixel();
        let at = |p: (i32, i32)| (p.0 - bx, p.1 - by);
        // Hand-placed ticks: each fraction of the grid, exactly where it lies.
        let tick_style = TextStyle::from((FAMILY, 13).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (x, label) in &self.x_ticks {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(*x, self.y.0), (*x, self.y.1)],
                RGBColor(225, 225, 225),
            )))?;
            let (px, py) = at(chart.backend_coord(&(*x, self.y.0)));
            area.draw(&PathElement::new(vec![(px, py), (px, py + 4)], BLACK))?;
            area.draw(&Text::new(label.clone(), (px, py + 7), tick_style.clone()))?;
        }
        if self.diagonal {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                RGBColor(150, 150, 150).stroke_width(1),
            )))?;
        }
        for line in &panel.lines {
            let s = &self.series[line.series];
            let style = s.color.stroke_width(2);
            chart.draw_series(std::iter::once(PathElement::new(
                line.points.iter().map(|p| (p.x, p.y)).collect::<Vec<_>>(),
                style,
            )))?;
            for p in &line.points {
                if let Some([lo, hi]) = p.ci {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(p.x, lo), (p.x, hi)],
                        s.color.stroke_width(1),
                    )))?;
                    for end in [lo, hi] {
                        let (px, py) = at(chart.backend_coord(&(p.x, end)));
                        area.draw(&PathElement::new(vec![(px - 3, py), (px + 3, py)], style))?;
                    }
                }
                draw_marker(&area, s, at(chart.backend_coord(&(p.x, p.y))))?;
            }
        }
        Ok(())
    }
}

/// The models with a line in any panel, in the report's grid order.
fn used_models(report: &Report, used: impl Fn(&str) -> bool) -> Vec<String> {
    report.models().into_iter().filter(|m| used(m)).collect()
}

fn dataset<'a>(report: &'a Report, spec: &FigureSpec) -> Option<&'a DatasetReport> {
    report.datasets.iter().find(|d| d.name == spec.dataset)
}

/// The reliability diagram of one dataset: a panel per strategy, a line
/// per model with probability scores through its non-empty bins.
pub(super) fn reliability(report: &Report, spec: &FigureSpec) -> CurveFigure {
    let d = dataset(report, spec);
    let strategies: Vec<_> = d.map(|d| d.strategies.iter().collect()).unwrap_or_default();
    let has_bins = |m: &crate::report::ModelResult| {
        m.calibration
            .as_ref()
            .is_some_and(|c| !c.reliability.is_empty())
    };
    let models = used_models(report, |name| {
        strategies
            .iter()
            .flat_map(|s| &s.models)
            .any(|m| m.model == name && has_bins(m))
    });
    let panels = strategies
        .iter()
        .map(|sr| CurvePanel {
            title: sr.strategy.clone(),
            lines: sr
                .models
                .iter()
                .filter_map(|m| {
                    let bins = &m.calibration.as_ref()?.reliability;
                    let points: Vec<Point> = bins
                        .iter()
                        .filter_map(|b| {
                            Some(Point {
                                x: b.mean_score?,
                                y: b.fraction_positive?,
                                ci: None,
                            })
                        })
                        .collect();
                    let series = models.iter().position(|x| *x == m.model)?;
                    (!points.is_empty()).then_some(Line { series, points })
                })
                .collect(),
        })
        .collect();
    CurveFigure {
        title: spec.title.clone(),
        panels,
        series: model_series(report, &models),
        x: (0.0, 1.0),
        y: (0.0, 1.0),
        x_ticks: Vec::new(),
        x_desc: "mean score in the bin".into(),
        y_desc: "fraction positive".into(),
        diagonal: true,
    }
}

/// The label-efficiency curves of one dataset: a panel per strategy, a line
/// per model, x = training fraction on a log axis.
pub(super) fn label_efficiency(report: &Report, spec: &FigureSpec) -> CurveFigure {
    let curves: Vec<_> = dataset(report, spec)
        .map(|d| d.label_efficiency.iter().collect())
        .unwrap_or_default();
    let models = used_models(report, |name| curves.iter().any(|c| c.model == name));
    let mut strategies: Vec<&str> = Vec::new();
    for c in &curves {
        if !strategies.contains(&c.strategy.as_str()) {
            strategies.push(&c.strategy);
        }
    }
    let mut fractions: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.fraction))
        .collect();
    fractions.sort_by(f64::total_cmp);
    fractions.dedup();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let panels = strategies
        .iter()
        .map(|s| CurvePanel {
            title: (*s).to_owned(),
            lines: curves
                .iter()
                .filter(|c| c.strategy == *s)
                .filter_map(|c| {
                    let points: Vec<Point> = c
                        .points
                        .iter()
                        .filter_map(|p| {
                            let y = p.macro_avg.auc?;
                            for v in std::iter::once(y).chain(p.macro_avg.ci.into_iter().flatten())
                            {
                                (lo, hi) = (lo.min(v), hi.max(v));
                            }
                            Some(Point {
                                x: p.fraction.log10(),
                                y,
                                ci: p.macro_avg.ci,
                            })
                        })
                        .collect();
                    Some(Line {
                        series: models.iter().position(|m| *m == c.model)?,
                        points,
                    })
                })
                .collect(),
        })
        .collect();
    let y = if lo.is_finite() {
        let lo = ((lo * 20.0).floor() / 20.0).clamp(0.0, 0.9);
        (lo, ((hi * 20.0).ceil() / 20.0).clamp(lo + 0.1, 1.0))
    } else {
        (0.0, 1.0)
    };
    // Log axis as log10 of the fraction on a linear scale, padded so the
    // end points are not on the frame; ticks at the fractions of the grid.
    let first = fractions.first().map_or(-1.0, |f| f.log10());
    let span = (0.0 - first).max(0.3);
    CurveFigure {
        title: spec.title.clone(),
        panels,
        series: model_series(report, &models),
        x: (first - 0.08 * span, 0.08 * span),
        y,
        x_ticks: fractions
            .iter()
            .map(|f| (f.log10(), format!("{f}")))
            .collect(),
        x_desc: "fraction of the training set (log scale)".into(),
        y_desc: format!(
            "macro AUC with {}% bootstrap interval",
            report.settings.confidence * 100.0
        ),
        diagonal: false,
    }
}
