//! Assembles the [`html::ReportData`] of `report.html` from what verify computed: the summary,
//! the quantization checker's report, the histograms and (when `qairt suggest` has run) the
//! sensitivity analysis.

use crate::ir::{Op, TensorId};
use crate::quant::{QuantizedGraph, TensorEncoding};

use super::checker::{Algorithm, CheckerReport};
use super::html::{
    self, CheckerRow, CheckerTable, Headline, HistogramKind, LayerRow, ReportData, SensitivityRow, Suggestion,
};
use super::sensitivity::SensitivityResult;
use super::summary::{Summary, ThresholdKind};

/// Where the page's data comes from.
pub struct ReportInput<'a> {
    pub project: &'a str,
    pub target: &'a str,
    pub summary: &'a Summary,
    pub checker: Option<&'a CheckerReport>,
    /// `(analysed, verify samples)` when the checker's activation analyses and the activation
    /// histograms saw only the first samples.
    pub activation_samples: Option<(usize, usize)>,
    pub histograms: Vec<html::Histogram>,
    pub sensitivity: Option<&'a SensitivityResult>,
    /// Where `qairt suggest` wrote the suggested overrides (relative to the project).
    pub overrides_path: Option<String>,
    /// The profile of the simulated run, when `[simulate] profile` asks for one.
    pub profile: Option<&'a crate::runtime::profile::Profile>,
}

/// The profile's table in the report: its slowest steps.
const PROFILE_ROWS: usize = 15;

fn profile_table(profile: &crate::runtime::profile::Profile, target: &str) -> html::ProfileTable {
    html::ProfileTable {
        samples: profile.samples,
        steps: profile.steps.len(),
        total_us: profile.total_median_us(),
        csv_path: format!("out/{target}/profile.csv"),
        rows: profile
            .slowest()
            .into_iter()
            .take(PROFILE_ROWS)
            .map(|s| html::ProfileRow {
                step: s.step,
                node: s.node.clone(),
                op_type: s.op_type.clone(),
                median_us: s.median_us,
                bytes_read: s.bytes_read,
                bytes_written: s.bytes_written,
                time_share: s.time_share,
            })
            .collect(),
    }
}

pub fn report_data(input: ReportInput<'_>) -> ReportData {
    let s = input.summary;
    let mut headline = Vec::new();
    if let Some(first) = s.outputs.first() {
        let check = |kind: ThresholdKind| s.checks.iter().find(|c| c.threshold == kind && c.output == first.name);
        let mut push = |name: &str, value: f64, kind: Option<ThresholdKind>, lower_is_better: bool| {
            let c = kind.and_then(check);
            headline.push(Headline {
                name: name.to_string(),
                value,
                threshold: c.map(|c| c.limit),
                passed: c.map(|c| c.passed),
                lower_is_better,
            });
        };
        push("output SQNR (dB)", first.metrics.sqnr_db, Some(ThresholdKind::MinSqnrDb), false);
        push("output cosine", first.metrics.cosine, Some(ThresholdKind::MinCosine), false);
        push("top-1 agreement", first.top1_agreement, Some(ThresholdKind::MinTop1Agreement), false);
        if let Some(acc) = &first.accuracy {
            push("accuracy drop", acc.drop, Some(ThresholdKind::MaxAccuracyDrop), true);
            push("accuracy", acc.actual, None, false);
            push("float accuracy", acc.reference, None, false);
        }
        push("output max |error|", first.metrics.max_abs_error, None, true);
    }
    let finite = |x: f32| f64::from(x).is_finite().then_some(f64::from(x));
    let layers: Vec<LayerRow> = s
        .layers
        .iter()
        .map(|l| LayerRow {
            name: l.name.clone(),
            layer_type: l.layer_type.clone(),
            size: l.size,
            dims: l.dims.clone(),
            values: s
                .verifier_columns
                .iter()
                .map(|c| l.verifiers.iter().find(|v| &v.column == c).map(|v| v.metric).filter(|m| !m.is_nan()))
                .collect(),
            sqnr_db: Some(l.metrics.sqnr_db),
            golden_min: finite(l.golden_min),
            golden_max: finite(l.golden_max),
            target_min: finite(l.target_min),
            target_max: finite(l.target_max),
            failed: l.failed,
            compared_with: l.compared_with.clone(),
        })
        .collect();
    let first_failing = s.layers.iter().position(|l| l.failed);
    let sqnr_threshold =
        s.layers.first().and_then(|l| l.verifiers.iter().find(|v| v.column == "sqnr")).and_then(|v| v.threshold);
    let checker = input.checker.map(|report| CheckerTable {
        columns: Algorithm::COLUMNS.iter().map(|a| a.column_title().to_string()).collect(),
        rows: report
            .tensors
            .iter()
            .map(|t| CheckerRow {
                op: t.op_name.clone(),
                tensor: t.tensor.clone(),
                class: t.class.title().to_string(),
                cells: Algorithm::COLUMNS.iter().map(|&a| t.verdict(a).label().to_string()).collect(),
                failed: t.failed(),
            })
            .collect(),
        analyzed: report.analyzed,
        failed: report.failed,
    });
    let (sensitivity, suggestion) = match input.sensitivity {
        None => (Vec::new(), None),
        Some(r) => {
            let rows = r
                .ranking
                .iter()
                .map(|g| SensitivityRow {
                    layer: g.layer.clone(),
                    precision: r.precision.name().to_string(),
                    metric_before: r.baseline.sqnr_db,
                    metric_after: g.measurement.sqnr_db,
                    gain: g.gain_db,
                })
                .collect();
            let suggestion = Suggestion {
                layers: r.chosen.clone(),
                precision: r.precision.name().to_string(),
                before: r.baseline.sqnr_db,
                after: r.result.sqnr_db,
                metric_name: "output SQNR (dB)".into(),
                overrides_path: input.overrides_path.clone(),
                meets_thresholds: r.meets,
            };
            (rows, Some(suggestion))
        }
    };
    let mut notes = vec![format!(
        "Per-layer rows compare the quantized run ({} mode) with the target's own float run; \
         the sqnr column is the debugger's (signal = quantized tensor), the chart plots SQNR with the float tensor as signal.",
        s.mode.name()
    )];
    let fused = s.layers.iter().filter(|l| l.compared_with.is_some()).count();
    if fused > 0 {
        notes.push(format!(
            "{fused} op outputs exist on the target only fused into the activation after them (a Conv into its Relu, \
             say), so their rows are measured at that activation's output, with its encoding: the per-layer table \
             names it under each of them."
        ));
    }
    if let Some((analysed, of)) = input.activation_samples {
        notes.push(format!(
            "The quantization checker's activation analyses and the activation histograms cover the first {analysed} \
             of the {of} verify samples (their float values are kept within a fixed budget); every metric of the \
             per-layer table covers all {of}."
        ));
    }
    if let Some(g) = &s.golden {
        notes.push(format!(
            "Golden values from {} ({} sample(s)): {} tensors matched; no golden file for: {}; files matching no tensor: {}.",
            g.dir,
            g.samples,
            g.matched.len(),
            if g.unmatched_tensors.is_empty() { "none".to_string() } else { g.unmatched_tensors.join(", ") },
            if g.unmatched_files.is_empty() { "none".to_string() } else { g.unmatched_files.join(", ") },
        ));
    }
    ReportData {
        title: format!("qairt verify: {} / {}", input.project, input.target),
        project: input.project.to_string(),
        target: input.target.to_string(),
        mode: s.mode.name().to_string(),
        samples: s.samples,
        passed: s.passed,
        headline,
        verifier_columns: s.verifier_columns.clone(),
        layers,
        first_failing,
        sqnr_threshold,
        histograms: input.histograms,
        checker,
        sensitivity,
        sensitivity_metric: input.sensitivity.map(|_| "output SQNR (dB)".to_string()),
        suggestion,
        notes,
        profile: input.profile.map(|p| profile_table(p, input.target)),
    }
}

/// At most this many histograms of each kind in `report.html` (the worst layers first).
const MAX_HISTOGRAMS: usize = 12;
const HISTOGRAM_BINS: usize = 48;

/// The representable range of an encoding; for a per-channel weight the range spans every
/// channel's.
fn encoding_span(encoding: &TensorEncoding) -> Option<(f64, f64)> {
    match encoding {
        TensorEncoding::PerTensor(e) => Some((f64::from(e.min), f64::from(e.max))),
        TensorEncoding::PerChannel { channels, .. } | TensorEncoding::PerBlock { blocks: channels, .. } => {
            let lo = channels.iter().map(|e| f64::from(e.min)).fold(f64::INFINITY, f64::min);
            let hi = channels.iter().map(|e| f64::from(e.max)).fold(f64::NEG_INFINITY, f64::max);
            (lo <= hi).then_some((lo, hi))
        }
        TensorEncoding::Float { .. } => None,
    }
}

/// The histogram of activation `name`'s float values (tensor `id` of `q`'s graph, when it is
/// one), with its encoding's representable range: made where the values are (a run), kept for
/// [`histograms`]. `sorted`, when given, holds the same values in ascending order, all finite
/// (binned by search instead of value by value: the same counts).
pub fn activation_histogram(
    q: &QuantizedGraph,
    id: Option<TensorId>,
    name: &str,
    values: &[f32],
    sorted: Option<&[f32]>,
) -> html::Histogram {
    let encoding = id.and_then(|id| q.encodings.get(&id)).and_then(encoding_span);
    let (edges, counts) = match sorted {
        Some(sorted) => html::histogram_of_sorted(sorted, HISTOGRAM_BINS, encoding),
        None => html::histogram(values, HISTOGRAM_BINS, encoding),
    };
    html::Histogram {
        tensor: name.to_string(),
        layer: None,
        kind: HistogramKind::Activation,
        edges,
        counts,
        encoding,
        channel_ranges: Vec::new(),
    }
}

/// Weight histograms for `report.html` (ops with a constant weight, graph order), each with its
/// encoding's representable range.
pub fn weight_histograms(q: &QuantizedGraph) -> Vec<html::Histogram> {
    let mut out: Vec<html::Histogram> = Vec::new();
    let weights = q.graph.nodes.iter().filter_map(|n| {
        let &w = n.inputs.get(1)?;
        let t = q.graph.constant(w)?;
        matches!(n.op, Op::Conv { .. } | Op::Gemm(_) | Op::MatMul(crate::ops::MatMul)).then_some((n, w, t))
    });
    for (node, w, t) in weights.take(MAX_HISTOGRAMS) {
        let Some(values) = t.as_f32() else { continue };
        let encoding = q.encodings.get(&w).and_then(encoding_span);
        let channel_ranges = match q.encodings.get(&w) {
            Some(TensorEncoding::PerChannel { channels, .. }) => {
                channels.iter().map(|e| (f64::from(e.min), f64::from(e.max))).collect()
            }
            _ => Vec::new(),
        };
        let (edges, counts) = html::histogram(values, HISTOGRAM_BINS, encoding);
        // Exporters name weights after graph-internal ids (`onnx::Conv_538`): the title says
        // which layer reads it (the node, and the output the per-layer table lists it by).
        let output = node.outputs.first().map(|&o| q.graph.name(o)).unwrap_or_default();
        out.push(html::Histogram {
            tensor: q.graph.name(w).to_string(),
            layer: Some(format!("{} ({}) → {output}", node.name, node.op.type_name())),
            kind: HistogramKind::Weight,
            edges,
            counts,
            encoding,
            channel_ranges,
        });
    }
    out
}

/// Activation histograms for `report.html`: the layers with the lowest SQNR, graph order;
/// `activation` gives a tensor's [`activation_histogram`].
pub fn activation_histograms<'a>(
    activation: impl Fn(&str) -> Option<&'a html::Histogram>,
    summary: &Summary,
) -> Vec<html::Histogram> {
    let mut out: Vec<html::Histogram> = Vec::new();
    let mut worst: Vec<&str> = summary.worst_layers(MAX_HISTOGRAMS).iter().map(|l| l.name.as_str()).collect();
    // Back to graph order.
    worst.sort_by_key(|name| summary.layers.iter().position(|l| l.name == *name));
    for name in worst {
        // A squashed producer is on its activation's grid (the same encoding): show the values
        // it is compared with.
        let compared = summary.layers.iter().find(|l| l.name == name).and_then(|l| l.compared_with.as_deref());
        let Some(histogram) = activation(compared.unwrap_or(name)) else { continue };
        out.push(html::Histogram { tensor: name.to_string(), ..histogram.clone() });
    }
    out
}
