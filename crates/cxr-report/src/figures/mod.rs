//! The figures, drawn with plotters, once as SVG (text left to the viewer)
//! and once as PNG (text rasterised with the embedded DejaVu Sans, so no
//! system font is needed).
//!
//! Figures 1-3 and the subgroup figures are horizontal dot plots
//! ([`dots`]); the reliability diagrams and label-efficiency curves are
//! line charts ([`curves`]). Legends sit in a margin of their own so they
//! never cover data.

mod curves;
mod dots;

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::ReportError;
use crate::report::{Report, TaskKind};

/// DejaVu Sans 2.37 (see `crates/cxr-report/assets/README.md` and its licence file).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// What a figure shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FigureKind {
    /// Figure 1: per task, the best SSL model against the baseline, for one strategy.
    PerTask,
    /// Figures 2 (finetuning) and 3 (linear probing), 0 for other
    /// strategies: macro AUC of every model per dataset.
    PerDataset(u8),
    /// Reliability diagram of one dataset, a panel per strategy.
    Reliability,
    /// Macro AUC per subgroup of one dataset, a panel per strategy.
    Subgroups,
    /// Macro AUC against the training fraction of one dataset.
    LabelEfficiency,
}

/// One figure to draw.
#[derive(Debug, Clone)]
pub(crate) struct FigureSpec {
    pub(crate) kind: FigureKind,
    /// Strategy shown (Figures 1-3; empty for per-dataset figures).
    pub(crate) strategy: String,
    /// Dataset shown (per-dataset figures; empty for Figures 1-3).
    pub(crate) dataset: String,
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
                kind: FigureKind::PerTask,
                strategy: s.clone(),
                dataset: String::new(),
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
            kind: FigureKind::PerDataset(number),
            strategy: s.clone(),
            dataset: String::new(),
            stem: if number == 0 {
                format!("figure-per-dataset-{}", slug(&s))
            } else {
                format!("figure{number}-per-dataset-{}", slug(&s))
            },
            title: format!("{what} ({s}): macro AUC of every model per dataset"),
        });
    }
    // Per-dataset figures; the dataset's index keeps stems unique even when
    // two names slug alike.
    for (k, d) in report.datasets.iter().enumerate() {
        let stem = |what: &str| format!("{what}-{}-{}", k + 1, slug(&d.name));
        let per_dataset = |kind, what: &str, title: String| FigureSpec {
            kind,
            strategy: String::new(),
            dataset: d.name.clone(),
            stem: stem(what),
            title,
        };
        let calibrated = d.strategies.iter().flat_map(|s| &s.models).any(|m| {
            m.calibration
                .as_ref()
                .is_some_and(|c| !c.reliability.is_empty())
        });
        if calibrated {
            out.push(per_dataset(
                FigureKind::Reliability,
                "reliability",
                format!(
                    "Reliability diagram ({}): fraction positive against mean score, 15 bins pooled over the labels",
                    d.name
                ),
            ));
        }
        if d.strategies.iter().any(|s| !s.subgroups.is_empty()) {
            out.push(per_dataset(
                FigureKind::Subgroups,
                "subgroups",
                format!(
                    "Subgroups ({}): macro AUC of the baseline and the best SSL model per subgroup",
                    d.name
                ),
            ));
        }
        if !d.label_efficiency.is_empty() {
            out.push(per_dataset(
                FigureKind::LabelEfficiency,
                "label-efficiency",
                format!(
                    "Label efficiency ({}): macro AUC against the fraction of the training set",
                    d.name
                ),
            ));
        }
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

/// A legend entry: name, colour, and whether it is drawn as a square.
struct Series {
    name: String,
    color: RGBColor,
    square: bool,
}

/// The series of a report's models in grid order: the baseline black
/// squares, every other model a palette colour fixed by its position.
fn model_series(report: &Report, models: &[String]) -> Vec<Series> {
    let baseline = &report.settings.baseline_model;
    models
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
        .collect()
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A drawing area in pixel coordinates.
type Area<DB> = DrawingArea<DB, Shift>;

/// What drawing on a backend fails with.
type DrawError<DB> = DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>;

/// Every figure's frame: a white page of width `w`, the title in a 50 px
/// band, and below it the plots' area and the legend column of `series`.
fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    w: u32,
    series: &[Series],
) -> Result<(Area<DB>, Area<DB>), DrawError<DB>> {
    root.fill(&WHITE)?;
    let (band, body) = root.split_vertically(50);
    band.draw(&Text::new(
        title.to_owned(),
        (12, 14),
        TextStyle::from((FAMILY, 21).into_font()).color(&BLACK),
    ))?;
    Ok(body.split_horizontally(w - legend_width(series)))
}

/// A marker at a pixel position: a square for the baseline, else a disc.
fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &Series,
    (px, py): (i32, i32),
) -> DrawResult<DB> {
    if s.square {
        area.draw(&Rectangle::new(
            [(px - 4, py - 4), (px + 4, py + 4)],
            s.color.filled(),
        ))
    } else {
        area.draw(&Circle::new((px, py), 4, s.color.filled()))
    }
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

/// Width of the legend margin for `series`.
fn legend_width(series: &[Series]) -> u32 {
    let longest = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    (longest as u32 * 9 + 60).clamp(160, 420)
}

/// Height a legend of `n` entries needs (entries from y = 70, 24 px apart).
fn legend_height(n: usize) -> u32 {
    70 + 24 * n as u32 + 20
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

/// A figure ready to draw on any backend.
enum Drawing {
    Dots(dots::Layout),
    Curves(curves::CurveFigure),
}

impl Drawing {
    fn size(&self) -> (u32, u32) {
        match self {
            Self::Dots(l) => l.size(),
            Self::Curves(c) => c.size(),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> DrawResult<DB> {
        match self {
            Self::Dots(l) => l.draw(root),
            Self::Curves(c) => c.draw(root),
        }
    }
}

/// Draws `spec`: the SVG text and the PNG bytes.
pub(crate) fn render(report: &Report, spec: &FigureSpec) -> Result<(String, Vec<u8>), ReportError> {
    register();
    let err = |e: String| ReportError::Figure {
        name: spec.stem.clone(),
        message: e,
    };
    let drawing = match spec.kind {
        FigureKind::PerTask | FigureKind::PerDataset(_) | FigureKind::Subgroups => {
            Drawing::Dots(dots::layout(report, spec))
        }
        FigureKind::Reliability => Drawing::Curves(curves::reliability(report, spec)),
        FigureKind::LabelEfficiency => Drawing::Curves(curves::label_efficiency(report, spec)),
    };
    let (w, h) = drawing.size();
    let mut svg = String::new();
    drawing
        .draw(SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area())
        .map_err(|e| err(e.to_string()))?;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    drawing
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
