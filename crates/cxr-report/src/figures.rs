//! Figures 1-3 drawn with plotters, once as SVG (text left to the viewer)
//! and once as PNG (text rasterised with the embedded DejaVu Sans, so no
//! system font is needed).
//!
//! Every figure is a horizontal dot plot: categories (labels or datasets)
//! run down the y axis so long names stay readable, AUCs along x, with the
//! bootstrap interval as a whisker. Legends sit in a margin of their own so
//! they never cover data.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::ReportError;
use crate::report::{Estimate, Report, TaskKind};

/// DejaVu Sans 2.37 (see `assets/README.md` and its licence file).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// One figure to draw.
#[derive(Debug, Clone)]
pub(crate) struct FigureSpec {
    /// Paper numbering: 1 = per-task best SSL vs baseline, 2/3 = per-dataset
    /// AUC of every model (finetuning / linear probing), 0 for other strategies.
    pub(crate) number: u8,
    /// Strategy shown.
    pub(crate) strategy: String,
    /// File stem under `figures/`.
    pub(crate) stem: String,
    /// Title (also the caption in the HTML page and the alt text in Markdown).
    pub(crate) title: String,
}

fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_owned()
}

/// The figures a report calls for.
pub(crate) fn plan(report: &Report) -> Vec<FigureSpec> {
    let mut out = Vec::new();
    for s in report.strategies() {
        let has_tasks = report.datasets.iter().any(|d| {
            d.task == TaskKind::MultiLabel
                && d.strategies
                    .iter()
                    .any(|x| x.strategy == s && !x.per_label.is_empty())
        });
        if has_tasks {
            out.push(FigureSpec {
                number: 1,
                strategy: s.clone(),
                stem: format!("figure1-per-task-{}", slug(&s)),
                title: format!(
                    "Figure 1 ({s}): per-task AUC of the best SSL model vs the baseline, multi-label datasets"
                ),
            });
        }
    }
    for s in report.strategies() {
        let (number, what) = match s.as_str() {
            "finetune" => (2, "Figure 2"),
            "linear" => (3, "Figure 3"),
            _ => (0, "Figure"),
        };
        out.push(FigureSpec {
            number,
            strategy: s.clone(),
            stem: if number == 0 {
                format!("figure-per-dataset-{}", slug(&s))
            } else {
                format!("figure{number}-per-dataset-{}", slug(&s))
            },
            title: format!("{what} ({s}): macro AUC of every model per dataset"),
        });
    }
    out
}

/// Colour-blind-friendly qualitative palette (Okabe-Ito, then Tableau);
/// the baseline is always black.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(213, 94, 0),
    RGBColor(86, 180, 233),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(188, 189, 34),
    RGBColor(127, 127, 127),
];

/// One dot with its whisker.
struct Dot {
    /// Category index from the top.
    row: usize,
    /// Offset within the category, in category units.
    offset: f64,
    estimate: Estimate,
    series: usize,
}

/// A legend entry: name, colour, and whether it is drawn as a square.
struct Series {
    name: String,
    color: RGBColor,
    square: bool,
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

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

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
        let (px, py) = at(chart.backend_coord(&(auc, y)));
        if s.square {
            area.draw(&Rectangle::new(
                [(px - 4, py - 4), (px + 4, py + 4)],
                s.color.filled(),
            ))?;
        } else {
            area.draw(&Circle::new((px, py), 4, s.color.filled()))?;
        }
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> DrawResult<DB> {
    let style = TextStyle::from((FAMILY, 15).into_font()).color(&BLACK);
    area.draw(&Text::new("Legend", (10, 40), style.clone()))?;
    for (k, s) in series.iter().enumerate() {
        let y = 70 + 24 * k as i32;
        if s.square {
            area.draw(&Rectangle::new(
                [(12, y - 5), (22, y + 5)],
                s.color.filled(),
            ))?;
        } else {
            area.draw(&Circle::new((17, y), 5, s.color.filled()))?;
        }
        area.draw(&PathElement::new(
            vec![(6, y), (28, y)],
            s.color.stroke_width(2),
        ))?;
        area.draw(&Text::new(
            s.name.clone(),
            (36, y),
            style.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// A figure: its panels stacked vertically, the legend on the right.
struct Layout {
    title: String,
    panels: Vec<Panel>,
    series: Vec<Series>,
    per_row: usize,
}

impl Layout {
    fn size(&self) -> (u32, u32) {
        let h: u32 = self
            .panels
            .iter()
            .map(|p| panel_height(p, self.per_row))
            .sum();
        // A one-dataset figure is shorter than a long legend (entries from
        // y = 70, 24 px apart): grow it so the last entry is not cut.
        let legend = 70 + 24 * self.series.len() as u32 + 20;
        (WIDTH + self.legend_width(), h.max(legend) + 50)
    }

    fn legend_width(&self) -> u32 {
        let longest = self
            .series
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0);
        (longest as u32 * 9 + 60).clamp(160, 420)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (w, _) = self.size();
        let (title, body) = root.split_vertically(50);
        title.draw(&Text::new(
            self.title.clone(),
            (12, 14),
            TextStyle::from((FAMILY, 21).into_font()).color(&BLACK),
        ))?;
        let (plots, legend) = body.split_horizontally(w - self.legend_width());
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

fn offsets(k: usize, count: usize) -> f64 {
    if count <= 1 {
        return 0.0;
    }
    let span = 0.7;
    span / 2.0 - span * k as f64 / (count - 1) as f64
}

fn layout(report: &Report, spec: &FigureSpec) -> Layout {
    let baseline = &report.settings.baseline_model;
    if spec.number == 1 {
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
            series: vec![
                Series {
                    name: format!("baseline ({baseline})"),
                    color: BLACK,
                    square: true,
                },
                Series {
                    name: "best SSL model of the dataset".into(),
                    color: PALETTE[0],
                    square: false,
                },
            ],
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
    let series = models
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let is_base = m == baseline;
            Series {
                name: if is_base {
                    format!("{m} (baseline)")
                } else {
                    m.clone()
                },
                color: if is_base {
                    BLACK
                } else {
                    PALETTE[(k.saturating_sub(1)) % PALETTE.len()]
                },
                square: is_base,
            }
        })
        .collect();
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

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a fixed, known-good file: failure here is a build defect.
        if register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded DejaVu Sans font does not parse");
        }
    });
}

/// Draws `spec`: the SVG text and the PNG bytes.
pub(crate) fn render(report: &Report, spec: &FigureSpec) -> Result<(String, Vec<u8>), ReportError> {
    register();
    let err = |e: String| ReportError::Figure {
        name: spec.stem.clone(),
        message: e,
    };
    let layout = layout(report, spec);
    let (w, h) = layout.size();
    let mut svg = String::new();
    layout
        .draw(SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area())
        .map_err(|e| err(e.to_string()))?;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    layout
        .draw(BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area())
        .map_err(|e| err(e.to_string()))?;
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| err(e.to_string()))?;
    }
    Ok((svg, png_bytes))
}
