//! The input of the HTML report: plain data, decoupled from the rest of the crate.
//!
//! The engine fills a [`ReportData`] from whatever it computed (summary, per-layer metrics,
//! encodings, checker, sensitivity) and hands it to [`super::render_report`]. Every section is
//! optional: an empty vector or `None` means "not computed" and the page says so or omits it.
//! Layers are expected in graph (topological) order; the page keeps that order.

use serde::{Deserialize, Serialize};

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportData {
    /// Page title (also the `<title>`); falls back to "qairt verify report" when empty.
    pub title: String,
    pub project: String,
    pub target: String,
    /// The verify mode (e.g. "per-layer", "outputs").
    pub mode: String,
    pub samples: usize,
    /// Overall verdict of the threshold checks.
    pub passed: bool,
    /// Headline metrics with their thresholds, shown in the summary.
    pub headline: Vec<Headline>,
    /// Names of the verifier columns of the per-layer table, in display order.
    pub verifier_columns: Vec<String>,
    /// Per-layer rows in graph order.
    pub layers: Vec<LayerRow>,
    /// Index into `layers` of the first failing layer, if any.
    pub first_failing: Option<usize>,
    /// SQNR threshold (dB) drawn as a line in the SQNR chart.
    pub sqnr_threshold: Option<f64>,
    /// Pre-binned weight and activation histograms.
    pub histograms: Vec<Histogram>,
    pub checker: Option<CheckerTable>,
    /// Sensitivity ranking, most helpful first.
    pub sensitivity: Vec<SensitivityRow>,
    /// Name of the metric the sensitivity ranking is measured in (e.g. "SQNR (dB)").
    pub sensitivity_metric: Option<String>,
    pub suggestion: Option<Suggestion>,
    /// Free-form notes shown at the end of the summary.
    pub notes: Vec<String>,
    /// The slowest steps of the simulated run (`[simulate] profile`); `None` leaves the
    /// section out, so a report without a profile is the page it was before profiles.
    pub profile: Option<ProfileTable>,
}

/// The profile's table: its slowest steps, slowest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileTable {
    /// Verify samples each step was timed on.
    pub samples: usize,
    /// Program steps in all (the table may show fewer).
    pub steps: usize,
    /// Sum of every step's median time, in microseconds.
    pub total_us: f64,
    /// Where the whole table is (`out/<target>/profile.csv`).
    pub csv_path: String,
    pub rows: Vec<ProfileRow>,
}

/// One step of the profile table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileRow {
    pub step: usize,
    pub node: String,
    pub op_type: String,
    pub median_us: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Fraction of the total.
    pub time_share: f64,
}

/// One headline metric of the summary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Headline {
    pub name: String,
    pub value: f64,
    pub threshold: Option<f64>,
    /// Verdict of the threshold check; `None` when there is no threshold.
    pub passed: Option<bool>,
    /// `true` for error-like metrics (threshold is a maximum), `false` for SQNR-like ones.
    pub lower_is_better: bool,
}

/// One row of the per-layer table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LayerRow {
    pub name: String,
    pub layer_type: String,
    /// Number of elements of the layer's output tensor.
    pub size: usize,
    pub dims: Vec<usize>,
    /// One value per entry of [`ReportData::verifier_columns`]; `None` = not computed.
    pub values: Vec<Option<f64>>,
    /// SQNR in dB for the chart (may be `+inf` for identical tensors, NaN when undefined).
    pub sqnr_db: Option<f64>,
    pub golden_min: Option<f64>,
    pub golden_max: Option<f64>,
    pub target_min: Option<f64>,
    pub target_max: Option<f64>,
    pub failed: bool,
    /// The activation this op output is fused into on the target, and measured at (its row
    /// compares that tensor), when not its own.
    pub compared_with: Option<String>,
}

/// Which kind of tensor a histogram describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistogramKind {
    #[default]
    Weight,
    Activation,
}

/// A pre-binned histogram with the chosen encoding range.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Histogram {
    pub tensor: String,
    /// What the tensor belongs to, for the title: a weight's layer (`conv1 (Conv)`); `None`
    /// for an activation, whose tensor is the layer's output.
    pub layer: Option<String>,
    pub kind: HistogramKind,
    /// Bin edges, `counts.len() + 1` of them, ascending.
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    /// The encoding's representable range `(min, max)`, marked with vertical lines (for a
    /// per-channel encoding, the span of every channel's).
    pub encoding: Option<(f64, f64)>,
    /// A per-channel encoding's range of each channel, output-channel order (empty for a
    /// per-tensor one).
    pub channel_ranges: Vec<(f64, f64)>,
}

/// The quantization checker's table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckerTable {
    /// Algorithm names, one per cell of each row.
    pub columns: Vec<String>,
    pub rows: Vec<CheckerRow>,
    /// Number of tensors analyzed.
    pub analyzed: usize,
    /// Number of tensors with at least one failing check.
    pub failed: usize,
}

/// One tensor of the checker table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckerRow {
    pub op: String,
    pub tensor: String,
    /// Tensor class (e.g. "weight", "bias", "activation").
    pub class: String,
    /// One verdict per column: "Pass", "Fail" or "N/A" (anything else is shown verbatim).
    pub cells: Vec<String>,
    pub failed: bool,
}

/// One entry of the sensitivity ranking.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SensitivityRow {
    pub layer: String,
    /// The precision tried for this layer (e.g. "int16", "fp16").
    pub precision: String,
    pub metric_before: f64,
    pub metric_after: f64,
    pub gain: f64,
}

/// The mixed-precision suggestion.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Suggestion {
    /// Layers to raise.
    pub layers: Vec<String>,
    /// Precision to raise them to.
    pub precision: String,
    pub before: f64,
    pub after: f64,
    pub metric_name: String,
    /// The overrides file written for the suggestion, if any.
    pub overrides_path: Option<String>,
    pub meets_thresholds: bool,
}
