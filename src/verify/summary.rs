//! The verify summary: per-output and per-layer metrics, and threshold checks, built one
//! sample at a time so that no more than one sample's tensors is ever held.
//!
//! Use: declare what will be compared ([`SummaryBuilder::new`] or
//! [`SummaryBuilder::from_graph`]), then for every sample call
//! [`begin_sample`](SummaryBuilder::begin_sample) and
//! [`add_tensor`](SummaryBuilder::add_tensor) once per declared tensor (any order), then
//! [`finish`](SummaryBuilder::finish).
//!
//! Thresholds are checked on every graph output, each `(threshold, output)` pair giving one
//! [`ThresholdCheck`]: `min_*` passes when `measured >= limit`, `max_accuracy_drop` when
//! `reference accuracy - actual accuracy <= limit`; a NaN measurement fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ir::{DType, Graph};

use super::error::VerifyError;
use super::fold::LayerFold;
use super::metrics::{MetricAccumulator, TensorMetrics};
use super::settings::{MetricSpec, MetricValue, Mode};
use super::top1::Top1;

/// Limits from `[verify.thresholds]`; any that is set and not met fails the build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub min_sqnr_db: Option<f64>,
    pub min_cosine: Option<f64>,
    pub min_top1_agreement: Option<f64>,
    /// Largest allowed `reference accuracy - actual accuracy`, as a fraction (0.01 = 1 point).
    pub max_accuracy_drop: Option<f64>,
}

/// One of the [`Thresholds`]; serialized as its `qairt.toml` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdKind {
    MinSqnrDb,
    MinCosine,
    MinTop1Agreement,
    MaxAccuracyDrop,
}

impl ThresholdKind {
    pub const ALL: [ThresholdKind; 4] = [
        ThresholdKind::MinSqnrDb,
        ThresholdKind::MinCosine,
        ThresholdKind::MinTop1Agreement,
        ThresholdKind::MaxAccuracyDrop,
    ];

    /// The key in `[verify.thresholds]`.
    pub fn name(self) -> &'static str {
        match self {
            ThresholdKind::MinSqnrDb => "min_sqnr_db",
            ThresholdKind::MinCosine => "min_cosine",
            ThresholdKind::MinTop1Agreement => "min_top1_agreement",
            ThresholdKind::MaxAccuracyDrop => "max_accuracy_drop",
        }
    }

    /// Whether `measured` meets `limit` (false for NaN).
    pub fn passes(self, measured: f64, limit: f64) -> bool {
        match self {
            ThresholdKind::MaxAccuracyDrop => measured <= limit,
            _ => measured >= limit,
        }
    }
}

impl Thresholds {
    pub fn get(&self, kind: ThresholdKind) -> Option<f64> {
        match kind {
            ThresholdKind::MinSqnrDb => self.min_sqnr_db,
            ThresholdKind::MinCosine => self.min_cosine,
            ThresholdKind::MinTop1Agreement => self.min_top1_agreement,
            ThresholdKind::MaxAccuracyDrop => self.max_accuracy_drop,
        }
    }
}

/// One threshold measured on one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdCheck {
    pub threshold: ThresholdKind,
    pub output: String,
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub limit: f64,
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub measured: f64,
    pub passed: bool,
}

/// A graph output to compare (with top-1 agreement and accuracy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// A tensor of the per-layer table: a node's output, in graph order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    pub name: String,
    /// The op that writes it (ONNX op type, e.g. `Conv`).
    pub layer_type: String,
    pub dims: Vec<usize>,
}

/// Top-1 accuracy of both runs against the labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub reference: f64,
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub actual: f64,
    /// `reference - actual`.
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub drop: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSummary {
    pub name: String,
    pub shape: Vec<usize>,
    pub metrics: TensorMetrics,
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub top1_agreement: f64,
    /// Present when the samples carried labels.
    pub accuracy: Option<Accuracy>,
}

/// One row of the per-layer table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub name: String,
    pub layer_type: String,
    /// Elements of one sample's tensor.
    pub size: usize,
    pub dims: Vec<usize>,
    pub metrics: TensorMetrics,
    /// Range of the reference values over all samples (NaN skipped; `"nan"` in JSON when empty).
    #[serde(serialize_with = "crate::verify::json_float::f32")]
    pub golden_min: f32,
    #[serde(serialize_with = "crate::verify::json_float::f32")]
    pub golden_max: f32,
    /// Range of the actual values over all samples.
    #[serde(serialize_with = "crate::verify::json_float::f32")]
    pub target_min: f32,
    #[serde(serialize_with = "crate::verify::json_float::f32")]
    pub target_max: f32,
    /// One per metric, in [`Summary::verifier_columns`] order.
    pub verifiers: Vec<MetricValue>,
    /// Whether a metric with a threshold failed on this layer.
    pub failed: bool,
    /// The golden tensor this row is compared with when it is not the layer's own: an op
    /// output squashed into the Relu/Clip after it is compared with that activation's output.
    pub compared_with: Option<String>,
    /// Cumulative mode: `part` when the quantized run was restarted from float values after
    /// this layer (its output differs from the float run), empty otherwise.
    pub status: Option<String>,
    /// Cumulative mode: the first metric on every graph output, measured on the run this row
    /// comes from (the debugger's "Orig Outputs").
    #[serde(serialize_with = "crate::verify::json_float::option_map_f64")]
    pub final_outputs: Option<BTreeMap<String, f64>>,
}

/// The outcome of verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// True when every threshold check passed (and vacuously when none is set).
    pub passed: bool,
    pub samples: usize,
    pub thresholds: Thresholds,
    pub checks: Vec<ThresholdCheck>,
    pub outputs: Vec<OutputSummary>,
    /// In graph order.
    pub layers: Vec<LayerSummary>,
    /// How the per-layer rows were produced.
    pub mode: Mode,
    /// The metric columns of the per-layer table.
    pub verifier_columns: Vec<String>,
    /// The first layer (graph order) that fails a metric threshold.
    pub first_failing: Option<String>,
    /// `[verify] golden`: the external dump compared against, and how its names matched.
    pub golden: Option<GoldenReport>,
}

/// What an external golden dump gave, and how its file names matched the graph's tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoldenReport {
    pub dir: String,
    pub samples: usize,
    /// (tensor, file relative to a sample directory, how it matched), graph order.
    pub matched: Vec<(String, String, super::golden::MatchedBy)>,
    /// Graph tensors with no golden file (left out of the per-layer table).
    pub unmatched_tensors: Vec<String>,
    /// Golden files that matched no tensor.
    pub unmatched_files: Vec<String>,
    /// (tensor, likely file) hints for unmatched tensors.
    pub closest: Vec<(String, String)>,
}

impl Summary {
    /// Evaluates `metrics` on every layer `folds` gives (by name: the layer's fold and its
    /// output encoding's representable range, for ScaledDiff), records the columns, each
    /// layer's verdict and the first failing layer in graph order. Layers `folds` does not
    /// know get NaN metrics.
    pub fn attach_metrics<'a>(
        &mut self,
        metrics: &[MetricSpec],
        mut folds: impl FnMut(&str) -> Option<(&'a LayerFold, Option<(f64, f64)>)>,
    ) {
        self.verifier_columns = metrics.iter().map(|m| m.column().to_string()).collect();
        for layer in &mut self.layers {
            let fold = folds(&layer.name);
            layer.verifiers = metrics
                .iter()
                .map(|spec| match &fold {
                    Some((fold, range)) => spec.evaluate_fold(fold, *range, &self.thresholds),
                    None => MetricValue {
                        column: spec.column().to_string(),
                        metric: f64::NAN,
                        threshold: spec.effective_threshold(&self.thresholds),
                        passed: None,
                        lower_is_better: spec.verifier.units().1,
                        note: Some("no values for this layer".into()),
                    },
                })
                .collect();
            layer.failed = layer.verifiers.iter().any(|v| v.passed == Some(false));
        }
        self.first_failing = self.layers.iter().find(|l| l.failed).map(|l| l.name.clone());
    }

    /// The `count` layers with the lowest output-referenced SQNR (largest relative error),
    /// worst first; NaN rows (nothing comparable) last.
    pub fn worst_layers(&self, count: usize) -> Vec<&LayerSummary> {
        let mut layers: Vec<&LayerSummary> = self.layers.iter().collect();
        layers.sort_by(|a, b| {
            let key = |l: &LayerSummary| if l.metrics.sqnr_db.is_nan() { f64::INFINITY } else { l.metrics.sqnr_db };
            key(a).total_cmp(&key(b))
        });
        layers.truncate(count);
        layers
    }
}

struct OutputState {
    spec: OutputSpec,
    metrics: MetricAccumulator,
    top1: Top1,
}

struct LayerState {
    spec: LayerSpec,
    metrics: MetricAccumulator,
}

/// Where a declared name goes, and whether the current sample has it yet in each role.
struct Slot {
    output: Option<usize>,
    layer: Option<usize>,
    elements: usize,
    given_output: bool,
    given_layer: bool,
}

/// Which role(s) of a declared name a value is for.
#[derive(Clone, Copy)]
enum Role {
    Both,
    Output,
    Layer,
}

/// Accumulates a [`Summary`] sample by sample (see the module docs).
pub struct SummaryBuilder {
    thresholds: Thresholds,
    outputs: Vec<OutputState>,
    layers: Vec<LayerState>,
    slots: BTreeMap<String, Slot>,
    /// Samples started so far.
    samples: usize,
    /// Whether samples carry labels, fixed by the first sample.
    labeled: Option<bool>,
    label: Option<usize>,
}

impl SummaryBuilder {
    /// Declares the outputs and the per-layer tensors (graph order) to compare. A name may
    /// be both an output and a layer (a graph output is also a node's output); its shapes
    /// must then agree.
    pub fn new(outputs: Vec<OutputSpec>, layers: Vec<LayerSpec>, thresholds: Thresholds) -> Result<Self, VerifyError> {
        if outputs.is_empty() {
            return Err(VerifyError::NoOutputs);
        }
        let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
        for (index, spec) in outputs.iter().enumerate() {
            if slots.contains_key(&spec.name) {
                return Err(VerifyError::DuplicateName { name: spec.name.clone(), role: "an output" });
            }
            let elements = spec.shape.iter().product();
            slots.insert(
                spec.name.clone(),
                Slot { output: Some(index), layer: None, elements, given_output: false, given_layer: false },
            );
        }
        for (index, spec) in layers.iter().enumerate() {
            let elements = spec.dims.iter().product();
            match slots.get_mut(&spec.name) {
                None => {
                    slots.insert(
                        spec.name.clone(),
                        Slot { output: None, layer: Some(index), elements, given_output: false, given_layer: false },
                    );
                }
                Some(slot) if slot.layer.is_some() => {
                    return Err(VerifyError::DuplicateName { name: spec.name.clone(), role: "a layer" });
                }
                Some(slot) => {
                    let output = slot.output.and_then(|i| outputs.get(i)).map(|o| o.shape.clone()).unwrap_or_default();
                    if output != spec.dims {
                        return Err(VerifyError::ConflictingShapes {
                            name: spec.name.clone(),
                            output,
                            layer: spec.dims.clone(),
                        });
                    }
                    slot.layer = Some(index);
                }
            }
        }
        Ok(SummaryBuilder {
            thresholds,
            outputs: outputs
                .into_iter()
                .map(|spec| OutputState { spec, metrics: MetricAccumulator::new(), top1: Top1::new() })
                .collect(),
            layers: layers.into_iter().map(|spec| LayerState { spec, metrics: MetricAccumulator::new() }).collect(),
            slots,
            samples: 0,
            labeled: None,
            label: None,
        })
    }

    /// Declares the graph's outputs, and every float tensor a node writes as a layer (node
    /// order, the op type as layer type; graph outputs are layers too).
    pub fn from_graph(graph: &Graph, thresholds: Thresholds) -> Result<Self, VerifyError> {
        SummaryBuilder::from_graph_keeping(graph, thresholds, |_| true)
    }

    /// [`from_graph`](Self::from_graph) with only the layers `keep` accepts (by name).
    pub fn from_graph_keeping(
        graph: &Graph,
        thresholds: Thresholds,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Self, VerifyError> {
        SummaryBuilder::new(output_specs(graph), layer_specs(graph, keep), thresholds)
    }

    /// Starts the next sample (after checking the previous one got every declared tensor).
    /// `label` is the sample's class when labels are known: all samples or none have one.
    pub fn begin_sample(&mut self, label: Option<usize>) -> Result<(), VerifyError> {
        self.check_sample_complete()?;
        let has_label = label.is_some();
        if *self.labeled.get_or_insert(has_label) != has_label {
            return Err(VerifyError::InconsistentLabels { sample: self.samples, has_label });
        }
        for slot in self.slots.values_mut() {
            slot.given_output = false;
            slot.given_layer = false;
        }
        self.label = label;
        self.samples += 1;
        Ok(())
    }

    /// Compares the current sample's reference and actual values of the declared tensor
    /// `name` (flattened, row-major, as in a `.raw` file), in every role it was declared in.
    pub fn add_tensor(&mut self, name: &str, reference: &[f32], actual: &[f32]) -> Result<(), VerifyError> {
        self.add(name, Role::Both, reference, actual)
    }

    /// Like [`add_tensor`](Self::add_tensor), for the graph-output role of `name` only (when a
    /// layer row of the same tensor comes from another run, e.g. the layerwise mode).
    pub fn add_output(&mut self, name: &str, reference: &[f32], actual: &[f32]) -> Result<(), VerifyError> {
        self.add(name, Role::Output, reference, actual)
    }

    /// Like [`add_tensor`](Self::add_tensor), for the per-layer role of `name` only.
    pub fn add_layer(&mut self, name: &str, reference: &[f32], actual: &[f32]) -> Result<(), VerifyError> {
        self.add(name, Role::Layer, reference, actual)
    }

    fn add(&mut self, name: &str, role: Role, reference: &[f32], actual: &[f32]) -> Result<(), VerifyError> {
        let Some(slot) = self.slots.get_mut(name) else {
            let suggestion = closest(name, self.slots.keys());
            return Err(VerifyError::UnknownTensor { name: name.to_string(), suggestion });
        };
        let Some(sample) = self.samples.checked_sub(1) else {
            return Err(VerifyError::NoSampleStarted { name: name.to_string() });
        };
        if reference.len() != slot.elements || actual.len() != slot.elements {
            return Err(VerifyError::WrongSize {
                name: name.to_string(),
                sample,
                expected: slot.elements,
                reference: reference.len(),
                actual: actual.len(),
            });
        }
        let as_output = matches!(role, Role::Both | Role::Output) && slot.output.is_some();
        let as_layer = matches!(role, Role::Both | Role::Layer) && slot.layer.is_some();
        if (as_output && slot.given_output) || (as_layer && slot.given_layer) || (!as_output && !as_layer) {
            return Err(VerifyError::GivenTwice { name: name.to_string(), sample });
        }
        if as_output && let Some(output) = slot.output.and_then(|i| self.outputs.get_mut(i)) {
            slot.given_output = true;
            output.metrics.add(reference, actual);
            output.top1.add(reference, actual, self.label);
        }
        if as_layer && let Some(layer) = slot.layer.and_then(|i| self.layers.get_mut(i)) {
            slot.given_layer = true;
            layer.metrics.add(reference, actual);
        }
        Ok(())
    }

    /// The summary of every sample so far; the current sample must be complete.
    pub fn finish(&self) -> Result<Summary, VerifyError> {
        self.check_sample_complete()?;
        if self.samples == 0 {
            return Err(VerifyError::NoSamples);
        }
        let outputs: Vec<OutputSummary> = self.outputs.iter().map(output_summary).collect();
        let layers = self.layers.iter().map(layer_summary).collect();
        let mut checks = Vec::new();
        for kind in ThresholdKind::ALL {
            let Some(limit) = self.thresholds.get(kind) else { continue };
            for output in &outputs {
                let measured = match kind {
                    ThresholdKind::MinSqnrDb => output.metrics.sqnr_db,
                    ThresholdKind::MinCosine => output.metrics.cosine,
                    ThresholdKind::MinTop1Agreement => output.top1_agreement,
                    ThresholdKind::MaxAccuracyDrop => match &output.accuracy {
                        Some(accuracy) => accuracy.drop,
                        None => return Err(VerifyError::ThresholdNeedsLabels { threshold: kind.name() }),
                    },
                };
                let passed = kind.passes(measured, limit);
                checks.push(ThresholdCheck { threshold: kind, output: output.name.clone(), limit, measured, passed });
            }
        }
        Ok(Summary {
            passed: checks.iter().all(|c| c.passed),
            samples: self.samples,
            thresholds: self.thresholds.clone(),
            checks,
            outputs,
            layers,
            mode: Mode::default(),
            verifier_columns: Vec::new(),
            first_failing: None,
            golden: None,
        })
    }

    fn check_sample_complete(&self) -> Result<(), VerifyError> {
        let Some(sample) = self.samples.checked_sub(1) else { return Ok(()) };
        let incomplete =
            |slot: &Slot| (slot.output.is_some() && !slot.given_output) || (slot.layer.is_some() && !slot.given_layer);
        match self.slots.iter().find(|(_, slot)| incomplete(slot)) {
            Some((name, _)) => Err(VerifyError::Missing { name: name.clone(), sample }),
            None => Ok(()),
        }
    }
}

fn output_summary(state: &OutputState) -> OutputSummary {
    let accuracy = match (state.top1.reference_accuracy(), state.top1.actual_accuracy()) {
        (Some(reference), Some(actual)) => Some(Accuracy { reference, actual, drop: reference - actual }),
        _ => None,
    };
    OutputSummary {
        name: state.spec.name.clone(),
        shape: state.spec.shape.clone(),
        metrics: state.metrics.finish(),
        top1_agreement: state.top1.agreement().unwrap_or(f64::NAN),
        accuracy,
    }
}

fn layer_summary(state: &LayerState) -> LayerSummary {
    LayerSummary::from_metrics(&state.spec, &state.metrics)
}

/// The graph's outputs (each name once), in output order.
pub fn output_specs(graph: &Graph) -> Vec<OutputSpec> {
    let mut outputs: Vec<OutputSpec> = Vec::new();
    for &id in &graph.outputs {
        let info = graph.info(id);
        if !outputs.iter().any(|o| o.name == info.name) {
            outputs.push(OutputSpec { name: info.name.clone(), shape: info.shape.clone() });
        }
    }
    outputs
}

/// Every float tensor a node writes that `keep` accepts (node order, the op type as layer
/// type; graph outputs are layers too).
pub fn layer_specs(graph: &Graph, keep: impl Fn(&str) -> bool) -> Vec<LayerSpec> {
    graph
        .nodes
        .iter()
        .flat_map(|node| node.outputs.iter().map(move |&id| (node, id)))
        .filter(|&(_, id)| graph.info(id).dtype == DType::F32 && keep(graph.name(id)))
        .map(|(node, id)| LayerSpec {
            name: graph.name(id).to_string(),
            layer_type: node.op.type_name().to_string(),
            dims: graph.info(id).shape.clone(),
        })
        .collect()
}

impl LayerSummary {
    /// The row of `spec` from its accumulated metrics (no verifier columns yet).
    pub fn from_metrics(spec: &LayerSpec, metrics: &MetricAccumulator) -> LayerSummary {
        let (golden_min, golden_max) = metrics.reference_range();
        let (target_min, target_max) = metrics.actual_range();
        LayerSummary {
            name: spec.name.clone(),
            layer_type: spec.layer_type.clone(),
            size: spec.dims.iter().product(),
            dims: spec.dims.clone(),
            metrics: metrics.finish(),
            golden_min,
            golden_max,
            target_min,
            target_max,
            verifiers: Vec::new(),
            failed: false,
            compared_with: None,
            status: None,
            final_outputs: None,
        }
    }
}

/// The declared name closest to `name`, if any is reasonably close.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> Option<String> {
    candidates
        .map(|c| (strsim::normalized_levenshtein(name, c), c))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Node, Op, TensorInfo};

    fn specs() -> (Vec<OutputSpec>, Vec<LayerSpec>) {
        let outputs = vec![OutputSpec { name: "prob".into(), shape: vec![1, 3] }];
        let layers = vec![
            LayerSpec { name: "hidden".into(), layer_type: "Relu".into(), dims: vec![2] },
            LayerSpec { name: "prob".into(), layer_type: "Softmax".into(), dims: vec![1, 3] },
        ];
        (outputs, layers)
    }

    fn builder(thresholds: Thresholds) -> SummaryBuilder {
        let (outputs, layers) = specs();
        SummaryBuilder::new(outputs, layers, thresholds).unwrap()
    }

    /// Two samples with labels [0, 2].
    /// prob: sample 0 r = [0.6, 0.3, 0.1], a = [0.5, 0.4, 0.1] (both argmax 0, label 0);
    ///       sample 1 r = [0.2, 0.3, 0.5], a = [0.2, 0.5, 0.3] (argmax 2 vs 1, label 2).
    /// Agreement 1/2; accuracy reference 2/2 = 1, actual 1/2, drop 0.5.
    /// Pooled error e = [-0.1, 0.1, 0, 0, 0.2, -0.2]: sum e^2 = 0.1, mse = 0.1 / 6;
    /// sum r^2 = 0.36 + 0.09 + 0.01 + 0.04 + 0.09 + 0.25 = 0.84 -> SQNR = 10 log10(8.4)
    /// = 9.242792860618817 dB (numpy: 10*np.log10(8.4)), up to f32 rounding of the inputs.
    /// hidden: r = [1, 2] then [0, 4], a equal -> +inf dB; golden range [0, 4].
    fn feed(b: &mut SummaryBuilder) {
        b.begin_sample(Some(0)).unwrap();
        b.add_tensor("hidden", &[1.0, 2.0], &[1.0, 2.0]).unwrap();
        b.add_tensor("prob", &[0.6, 0.3, 0.1], &[0.5, 0.4, 0.1]).unwrap();
        b.begin_sample(Some(2)).unwrap();
        b.add_tensor("prob", &[0.2, 0.3, 0.5], &[0.2, 0.5, 0.3]).unwrap();
        b.add_tensor("hidden", &[0.0, 4.0], &[0.0, 4.0]).unwrap();
    }

    #[test]
    fn two_samples_by_hand() {
        let thresholds = Thresholds {
            min_sqnr_db: Some(9.0),
            min_cosine: None,
            min_top1_agreement: Some(0.9),
            max_accuracy_drop: Some(0.5),
        };
        let mut b = builder(thresholds.clone());
        feed(&mut b);
        let s = b.finish().unwrap();
        assert_eq!(s.samples, 2);
        let prob = &s.outputs[0];
        assert!((prob.metrics.sqnr_db - 9.242792860618817).abs() < 1e-5, "{}", prob.metrics.sqnr_db);
        assert!((prob.metrics.mse - 0.1 / 6.0).abs() < 1e-8);
        assert!((prob.metrics.max_abs_error - 0.2).abs() < 1e-7);
        assert_eq!(prob.metrics.elements, 6);
        assert_eq!(prob.top1_agreement, 0.5);
        assert_eq!(prob.accuracy, Some(Accuracy { reference: 1.0, actual: 0.5, drop: 0.5 }));
        assert_eq!(s.layers.len(), 2);
        let hidden = &s.layers[0];
        assert_eq!((hidden.name.as_str(), hidden.size), ("hidden", 2));
        assert_eq!(hidden.metrics.sqnr_db, f64::INFINITY);
        assert_eq!((hidden.golden_min, hidden.golden_max, hidden.target_min, hidden.target_max), (0.0, 4.0, 0.0, 4.0));
        assert_eq!(s.layers[1].metrics, prob.metrics, "an output that is also a layer gets the same metrics");
        let verdicts: Vec<(ThresholdKind, bool)> = s.checks.iter().map(|c| (c.threshold, c.passed)).collect();
        assert_eq!(
            verdicts,
            [
                (ThresholdKind::MinSqnrDb, true),
                (ThresholdKind::MinTop1Agreement, false),
                (ThresholdKind::MaxAccuracyDrop, true),
            ]
        );
        assert!(!s.passed);
        assert_eq!(s.checks[1].measured, 0.5);
        assert_eq!(s.thresholds, thresholds);
    }

    #[test]
    fn no_thresholds_pass() {
        let mut b = builder(Thresholds::default());
        feed(&mut b);
        let s = b.finish().unwrap();
        assert!(s.passed && s.checks.is_empty());
    }

    #[test]
    fn nan_measurement_fails_its_threshold() {
        assert!(!ThresholdKind::MinSqnrDb.passes(f64::NAN, 10.0));
        assert!(!ThresholdKind::MaxAccuracyDrop.passes(f64::NAN, 0.01));
        assert!(ThresholdKind::MinSqnrDb.passes(f64::INFINITY, 10.0));
        assert!(!ThresholdKind::MinSqnrDb.passes(f64::NEG_INFINITY, 10.0));
    }

    #[test]
    fn feeding_mistakes_are_typed_errors() {
        let mut b = builder(Thresholds::default());
        assert_eq!(
            b.add_tensor("prob", &[0.0; 3], &[0.0; 3]),
            Err(VerifyError::NoSampleStarted { name: "prob".into() })
        );
        b.begin_sample(None).unwrap();
        assert_eq!(
            b.add_tensor("hiden", &[0.0; 2], &[0.0; 2]),
            Err(VerifyError::UnknownTensor { name: "hiden".into(), suggestion: Some("hidden".into()) })
        );
        assert_eq!(
            b.add_tensor("prob", &[0.0; 3], &[0.0; 2]),
            Err(VerifyError::WrongSize { name: "prob".into(), sample: 0, expected: 3, reference: 3, actual: 2 })
        );
        b.add_tensor("prob", &[0.0; 3], &[0.0; 3]).unwrap();
        assert_eq!(
            b.add_tensor("prob", &[0.0; 3], &[0.0; 3]),
            Err(VerifyError::GivenTwice { name: "prob".into(), sample: 0 })
        );
        assert_eq!(b.finish(), Err(VerifyError::Missing { name: "hidden".into(), sample: 0 }));
        assert_eq!(b.begin_sample(None), Err(VerifyError::Missing { name: "hidden".into(), sample: 0 }));
        b.add_tensor("hidden", &[0.0; 2], &[0.0; 2]).unwrap();
        assert_eq!(b.begin_sample(Some(1)), Err(VerifyError::InconsistentLabels { sample: 1, has_label: true }));
    }

    #[test]
    fn accuracy_threshold_without_labels_is_an_error() {
        let mut b = builder(Thresholds { max_accuracy_drop: Some(0.01), ..Default::default() });
        b.begin_sample(None).unwrap();
        b.add_tensor("prob", &[0.0; 3], &[0.0; 3]).unwrap();
        b.add_tensor("hidden", &[0.0; 2], &[0.0; 2]).unwrap();
        assert_eq!(b.finish(), Err(VerifyError::ThresholdNeedsLabels { threshold: "max_accuracy_drop" }));
    }

    #[test]
    fn declaration_mistakes_are_typed_errors() {
        assert_eq!(builder(Thresholds::default()).finish(), Err(VerifyError::NoSamples));
        let (outputs, mut layers) = specs();
        assert!(matches!(
            SummaryBuilder::new(vec![], layers.clone(), Thresholds::default()),
            Err(VerifyError::NoOutputs)
        ));
        layers[1].dims = vec![3];
        assert!(matches!(
            SummaryBuilder::new(outputs.clone(), layers.clone(), Thresholds::default()),
            Err(VerifyError::ConflictingShapes { .. })
        ));
        let doubled = vec![layers[0].clone(), layers[0].clone()];
        assert!(matches!(
            SummaryBuilder::new(outputs, doubled, Thresholds::default()),
            Err(VerifyError::DuplicateName { role: "a layer", .. })
        ));
    }

    #[test]
    fn from_graph_declares_outputs_and_node_outputs_in_graph_order() {
        let mut g = Graph::default();
        let f32 = |name: &str, shape: Vec<usize>| TensorInfo { name: name.into(), dtype: DType::F32, shape };
        let x = g.add_tensor(f32("x", vec![1, 4]));
        let r = g.add_tensor(f32("r", vec![1, 4]));
        let y = g.add_tensor(f32("y", vec![1, 4]));
        g.inputs = vec![x];
        g.outputs = vec![y];
        g.nodes.push(Node {
            name: "relu".into(),
            op: Op::Unary(crate::ops::Unary::Relu),
            inputs: vec![x],
            outputs: vec![r],
        });
        g.nodes.push(Node {
            name: "sig".into(),
            op: Op::Unary(crate::ops::Unary::Sigmoid),
            inputs: vec![r],
            outputs: vec![y],
        });
        let mut b = SummaryBuilder::from_graph(&g, Thresholds::default()).unwrap();
        b.begin_sample(None).unwrap();
        b.add_tensor("y", &[0.0; 4], &[0.0; 4]).unwrap();
        b.add_tensor("r", &[1.0; 4], &[1.0; 4]).unwrap();
        let s = b.finish().unwrap();
        let rows: Vec<(&str, &str)> = s.layers.iter().map(|l| (l.name.as_str(), l.layer_type.as_str())).collect();
        assert_eq!(rows, [("r", "Relu"), ("y", "Sigmoid")]);
        assert_eq!(s.outputs[0].name, "y");
    }
}
