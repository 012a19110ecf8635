//! The report's charts, drawn by `plotters` into inline SVG strings.
//!
//! Text is emitted as SVG `<text>` elements laid out by plotters' built-in size estimate (no
//! font file is loaded, the browser renders the glyphs). Inputs are sanitized before they reach
//! plotters: non-finite values never become coordinates, and every axis range has a positive,
//! finite width.

use plotters::prelude::*;

use super::model::{Histogram, HistogramKind, LayerRow};

const SQNR_SIZE: (u32, u32) = (1100, 360);
/// Beyond this many channels their ranges are not drawn one by one (the caption still says).
const MAX_CHANNEL_LINES: usize = 2048;
const HIST_SIZE: (u32, u32) = (520, 280);
const FONT: &str = "sans-serif";

const LINE_BLUE: RGBColor = RGBColor(31, 111, 190);
const FAIL_RED: RGBColor = RGBColor(207, 34, 46);
const CLIP_ORANGE: RGBColor = RGBColor(214, 110, 0);
const WEIGHT_FILL: RGBColor = RGBColor(76, 120, 168);
const ACTIVATION_FILL: RGBColor = RGBColor(84, 162, 75);
const GRID: RGBColor = RGBColor(225, 228, 232);
const AXIS_TEXT: RGBColor = RGBColor(60, 64, 67);

/// A drawn chart: the inline `<svg>` and sentences to show under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub svg: String,
    pub notes: Vec<String>,
}

/// The per-layer SQNR chart, or `None` when no layer has an SQNR value.
///
/// `+inf` (identical tensors) is drawn clipped at the top of the axis with a distinct marker,
/// `-inf` clipped at the bottom; NaN leaves a gap. Both are reported in the notes.
pub fn sqnr_chart(layers: &[LayerRow], threshold: Option<f64>, first_failing: Option<usize>) -> Option<Chart> {
    let values: Vec<(usize, f64)> = layers.iter().enumerate().filter_map(|(i, l)| l.sqnr_db.map(|v| (i, v))).collect();
    if values.is_empty() {
        return None;
    }
    let finite: Vec<f64> = values.iter().map(|&(_, v)| v).filter(|v| v.is_finite()).collect();
    let pos_inf = values.iter().filter(|&&(_, v)| v == f64::INFINITY).count();
    let neg_inf = values.iter().filter(|&&(_, v)| v == f64::NEG_INFINITY).count();
    let nan = values.iter().filter(|&&(_, v)| v.is_nan()).count();
    if finite.is_empty() && pos_inf == 0 && neg_inf == 0 {
        return Some(Chart {
            svg: String::new(),
            notes: vec![format!("SQNR is undefined (NaN) for all {nan} layers; nothing to plot.")],
        });
    }

    let threshold = threshold.filter(|t| t.is_finite());
    let (lo, hi) = min_max(finite.iter().copied().chain(threshold)).unwrap_or((0.0, 60.0));
    let Some((y0, y1)) = axis_range(lo, hi, 10.0, 0.08) else {
        return Some(out_of_range());
    };
    let x1 = layers.len().max(1) as f64 - 0.5;

    let clip = |v: f64| {
        if v == f64::INFINITY {
            y1
        } else if v == f64::NEG_INFINITY {
            y0
        } else {
            v
        }
    };

    let mut notes = Vec::new();
    if pos_inf > 0 {
        notes.push(format!(
            "{pos_inf} layer(s) have SQNR = +inf (output identical to the reference); drawn clipped at the top (▲)."
        ));
    }
    if neg_inf > 0 {
        notes.push(format!(
            "{neg_inf} layer(s) have SQNR = -inf (reference is all zero); drawn clipped at the bottom (▼)."
        ));
    }
    if nan > 0 {
        notes.push(format!("{nan} layer(s) have an undefined (NaN) SQNR and are left out."));
    }

    let mut svg = String::new();
    // Pixel position of every plotted point, for the overlay of tooltips and links.
    let mut points: Vec<(usize, (i32, i32))> = Vec::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, SQNR_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..x1, y0..y1)?;
        let x_label = |x: &f64| integer_label(*x);
        let y_label = |y: &f64| axis_number(*y);
        chart
            .configure_mesh()
            .x_labels(layers.len().clamp(2, 16))
            .y_labels(8)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc("layer # in graph order, as in the per-layer table (hover a point for its name, click for its row)")
            .y_desc("SQNR (dB)")
            .label_style((FONT, 13).into_font().color(&AXIS_TEXT))
            .axis_desc_style((FONT, 14).into_font().color(&AXIS_TEXT))
            .light_line_style(GRID.mix(0.25))
            .bold_line_style(GRID)
            .draw()?;

        if let Some(i) = first_failing.filter(|&i| i < layers.len()) {
            let x = i as f64;
            chart
                .draw_series(DashedLineSeries::new([(x, y0), (x, y1)], 6, 4, FAIL_RED.mix(0.7).stroke_width(1)))?
                .label(format!("first failing layer (#{i})"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], FAIL_RED.mix(0.7)));
        }
        if let Some(t) = threshold {
            chart
                .draw_series(DashedLineSeries::new([(-0.5, t), (x1, t)], 8, 5, FAIL_RED.stroke_width(2)))?
                .label(format!("threshold {} dB", axis_number(t)))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], FAIL_RED.stroke_width(2)));
        }

        // Runs of consecutive non-NaN values are joined; a NaN breaks the line.
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut previous: Option<usize> = None;
        for &(i, v) in &values {
            if v.is_nan() {
                previous = None;
                continue;
            }
            let point = (i as f64, clip(v));
            match (previous, runs.last_mut()) {
                (Some(p), Some(run)) if p + 1 == i => run.push(point),
                _ => runs.push(vec![point]),
            }
            previous = Some(i);
        }
        let mut labelled = false;
        for run in runs {
            let series = chart.draw_series(LineSeries::new(run, LINE_BLUE.stroke_width(2)))?;
            if !labelled {
                series
                    .label("SQNR per layer")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], LINE_BLUE.stroke_width(2)));
                labelled = true;
            }
        }
        let dense = layers.len() > 120;
        chart.draw_series(values.iter().filter(|(_, v)| v.is_finite()).map(|&(i, v)| {
            let fill = if layers.get(i).is_some_and(|l| l.failed) { FAIL_RED } else { LINE_BLUE };
            Circle::new((i as f64, v), if dense { 2 } else { 3 }, fill.filled())
        }))?;
        chart.draw_series(
            values
                .iter()
                .filter(|(_, v)| *v == f64::INFINITY)
                .map(|&(i, _)| TriangleMarker::new((i as f64, y1), 5, CLIP_ORANGE.filled())),
        )?;
        chart.draw_series(values.iter().filter(|(_, v)| *v == f64::NEG_INFINITY).map(|&(i, _)| {
            EmptyElement::at((i as f64, y0)) + Polygon::new([(-5, -4), (5, -4), (0, 4)], CLIP_ORANGE.filled())
        }))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 13).into_font().color(&AXIS_TEXT))
            .background_style(WHITE.mix(0.9))
            .border_style(GRID)
            .draw()?;
        points.extend(
            values.iter().filter(|(_, v)| !v.is_nan()).map(|&(i, v)| (i, chart.backend_coord(&(i as f64, clip(v))))),
        );
        root.present()?;
        Ok(())
    })();
    let mut chart = finish(svg, drawn.is_ok(), notes);
    add_point_links(&mut chart.svg, layers, &points);
    Some(chart)
}

/// Makes every point of the SQNR chart name its layer (an SVG `<title>`, shown on hover) and
/// link to its row of the per-layer table: an index alone says nothing on a 100-layer model.
fn add_point_links(svg: &mut String, layers: &[LayerRow], points: &[(usize, (i32, i32))]) {
    let Some(end) = svg.rfind("</svg>") else { return };
    let mut overlay = String::from("<g class=\"points\">\n");
    for &(i, (x, y)) in points {
        let Some(layer) = layers.get(i) else { continue };
        let sqnr = layer.sqnr_db.map(|v| format!("{} dB", axis_number(v))).unwrap_or_default();
        let sqnr = match layer.sqnr_db {
            Some(v) if v == f64::INFINITY => "exact (+inf dB)".to_string(),
            _ => sqnr,
        };
        overlay.push_str(&format!(
            "<a href=\"#layer-{i}\"><circle cx=\"{x}\" cy=\"{y}\" r=\"7\" fill=\"transparent\"><title>#{i} {} ({}): SQNR {}</title></circle></a>\n",
            super::format::escape(&layer.name),
            super::format::escape(&layer.layer_type),
            super::format::escape(&sqnr)
        ));
    }
    overlay.push_str("</g>\n");
    svg.insert_str(end, &overlay);
}

/// The histogram of one tensor with its encoding range marked by two vertical lines.
pub fn histogram_chart(h: &Histogram) -> Chart {
    let bins: Vec<(f64, f64, u64)> = h
        .edges
        .windows(2)
        .zip(&h.counts)
        .filter_map(|(e, &c)| match e {
            [a, b] if a.is_finite() && b.is_finite() && b >= a => Some((*a, *b, c)),
            _ => None,
        })
        .collect();
    let encoding = h.encoding.filter(|(a, b)| a.is_finite() && b.is_finite());
    let mut notes = Vec::new();
    if bins.len() != h.counts.len() || h.edges.len() != h.counts.len() + 1 {
        notes.push(format!(
            "{} edges for {} counts (expected counts + 1); only well-formed bins are drawn.",
            h.edges.len(),
            h.counts.len()
        ));
    }
    let range =
        min_max(bins.iter().flat_map(|&(a, b, _)| [a, b]).chain(encoding.into_iter().flat_map(|(a, b)| [a, b])));
    let Some((lo, hi)) = range else {
        notes.push("no values to plot.".to_string());
        return Chart { svg: String::new(), notes };
    };
    let Some((x0, x1)) = axis_range(lo, hi, 1.0, 0.04) else {
        return out_of_range();
    };
    let top = bins.iter().map(|&(_, _, c)| c).max().unwrap_or(0).max(1) as f64 * 1.1;
    let total: u64 = bins.iter().map(|&(_, _, c)| c).sum();
    if let Some((a, b)) = encoding {
        let outside: u64 = bins.iter().filter(|&&(l, r, _)| r <= a || l >= b).map(|&(_, _, c)| c).sum();
        if total > 0 && outside > 0 {
            notes.push(format!(
                "at least {} of {} values ({:.2}%) lie in bins entirely outside the encoding range (clipped).",
                outside,
                total,
                outside as f64 * 100.0 / total as f64
            ));
        }
    }
    let fill = match h.kind {
        HistogramKind::Weight => WEIGHT_FILL,
        HistogramKind::Activation => ACTIVATION_FILL,
    };

    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, HIST_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, 0.0..top)?;
        let x_label = |x: &f64| axis_number(*x);
        let y_label = |y: &f64| count_label(*y);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc("value")
            .y_desc("count")
            .label_style((FONT, 12).into_font().color(&AXIS_TEXT))
            .axis_desc_style((FONT, 13).into_font().color(&AXIS_TEXT))
            .light_line_style(GRID.mix(0.5))
            .bold_line_style(GRID)
            .draw()?;
        chart.draw_series(
            bins.iter()
                .filter(|&&(_, _, c)| c > 0)
                .map(|&(a, b, c)| Rectangle::new([(a, 0.0), (b, c as f64)], fill.mix(0.85).filled())),
        )?;
        // A per-channel encoding: each channel's range as a faint pair of lines (the bold ones
        // below are the span of them all), so a merged range does not hide narrow channels.
        if h.channel_ranges.len() <= MAX_CHANNEL_LINES {
            for &(a, b) in h.channel_ranges.iter().filter(|(a, b)| a.is_finite() && b.is_finite()) {
                for x in [a, b] {
                    chart.draw_series(LineSeries::new([(x, 0.0), (x, top)], FAIL_RED.mix(0.12).stroke_width(1)))?;
                }
            }
        }
        if let Some((a, b)) = encoding {
            let what = if h.channel_ranges.is_empty() { "encoding" } else { "all channels'" };
            for (x, name) in [(a, "min"), (b, "max")] {
                chart
                    .draw_series(LineSeries::new([(x, 0.0), (x, top)], FAIL_RED.stroke_width(2)))?
                    .label(format!("{what} {name} {}", axis_number(x)))
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], FAIL_RED.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 12).into_font().color(&AXIS_TEXT))
                .background_style(WHITE.mix(0.9))
                .border_style(GRID)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })();
    finish(svg, drawn.is_ok(), notes)
}

/// Keeps the SVG only if plotters finished it; otherwise reports the failure instead of a
/// half-written document.
fn finish(svg: String, ok: bool, mut notes: Vec<String>) -> Chart {
    if ok {
        Chart { svg, notes }
    } else {
        notes.push("the chart could not be drawn.".to_string());
        Chart { svg: String::new(), notes }
    }
}

fn out_of_range() -> Chart {
    Chart { svg: String::new(), notes: vec!["values are too large to plot.".to_string()] }
}

/// A padded axis range around `[lo, hi]` that plotters can tick: finite, of positive width.
/// A range narrower than a millionth of its magnitude is widened to `min_width` around its
/// middle (or to a millionth of the magnitude, if that is wider). `None` when the values are beyond a plottable magnitude (1e150), where
/// widths and tick steps would overflow.
fn axis_range(lo: f64, hi: f64, min_width: f64, pad_fraction: f64) -> Option<(f64, f64)> {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    let magnitude = lo.abs().max(hi.abs()).max(1.0);
    if !(lo.is_finite() && hi.is_finite()) || magnitude > 1e150 {
        return None;
    }
    let (lo, hi) = if hi - lo < magnitude * 1e-6 {
        let half = (min_width / 2.0).max(magnitude * 1e-6);
        let mid = lo / 2.0 + hi / 2.0;
        (mid - half, mid + half)
    } else {
        (lo, hi)
    };
    let pad = (hi - lo) * pad_fraction;
    Some((lo - pad, hi + pad))
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Tick label for the layer-index axis: integers only (plotters may pick fractional ticks on
/// a short axis; those stay unlabelled).
fn integer_label(x: f64) -> String {
    let r = x.round();
    if (x - r).abs() < 1e-6 && r >= 0.0 { format!("{r:.0}") } else { String::new() }
}

fn count_label(y: f64) -> String {
    if y.abs() >= 1e6 { format!("{y:.1e}") } else { format!("{:.0}", y) }
}

/// Compact tick label: up to four significant digits, scientific for very large/small values.
pub(crate) fn axis_number(v: f64) -> String {
    // Tick positions like -2.7e-17 are rounding noise of a zero tick.
    if v.abs() < 1e-15 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" { "0".to_string() } else { s }
}
