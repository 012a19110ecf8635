//! The `verify` stage: compares a target's simulated run with the float reference, per
//! output and per layer, and checks the thresholds.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::diag::Diag;
use crate::ir::Tensor;
use crate::quant::TensorEncoding;
use crate::verify::checker::{self, CheckerReport};
use crate::verify::html::Histogram;
use crate::verify::{LayerFold, LayerSummary, Mode, Summary, SummaryBuilder};

use super::convert;
use super::db::{Db, Failed, ProjectInput, Stage, TargetInput};
use super::golden_stage;
use super::inputs::read_file;
use super::memo::{KeyBuilder, Record, encode, load, memoize};
use super::snoop;
use super::stages::{self, RunOutputs};

/// The headline of a verification, kept in the action record so a cached build can report
/// it without loading the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    pub passed: bool,
    pub metrics: BTreeMap<String, f64>,
    pub failures: Vec<String>,
    pub mode: Mode,
    /// The first layer (graph order) that fails a metric threshold.
    pub first_failing: Option<FailingLayer>,
    /// The five layers with the largest error (lowest SQNR), worst first.
    pub worst: Vec<WorstLayer>,
    /// The quantization checker: tensors failing, tensors analyzed.
    pub checker: Option<(usize, usize)>,
    /// `[verify] golden`: tensors matched, graph tensors with no file, files with no tensor.
    pub golden: Option<(usize, Vec<String>, Vec<String>)>,
}

/// A layer that fails a metric threshold, as the terminal and the JSON messages name it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailingLayer {
    pub layer: String,
    /// The failing metrics, `"sqnr = 12.3 (limit 20)"`.
    pub failed: Vec<String>,
    /// The tensor its row was compared at, when not its own: an op output fused into the
    /// Relu/Clip after it exists on the target only as that activation's output, so a Conv
    /// "fails" because of the Relu's encoding (see `LayerSummary::compared_with`).
    pub compared_with: Option<String>,
}

/// One of the layers with the largest error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorstLayer {
    pub layer: String,
    pub op: String,
    pub sqnr_db: f64,
    /// As in [`FailingLayer::compared_with`].
    pub compared_with: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyResult {
    pub outcome: VerifyOutcome,
    pub summary: Summary,
    /// The quantization checker's report (quantized targets).
    pub checker: Option<CheckerReport>,
    /// `(analysed, verify samples)` when the checker's activation analyses and the activation
    /// histograms saw only the first samples (their float values are kept within
    /// `compare::PREFIX_BUDGET_VALUES`); `None` when they saw every sample.
    pub activation_samples: Option<(usize, usize)>,
    /// Weight and activation histograms with their encoding ranges, for `report.html`.
    pub histograms: Vec<Histogram>,
    pub json: String,
    pub csv: String,
}

#[salsa::tracked(returns(clone))]
pub fn verify_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let simulated = stages::simulate_record(db, project, target)?;
    let reference = stages::reference_record(db, project)?;
    let debug = project.debug(db);
    let layer_runs = match debug.mode {
        Mode::Oneshot => None,
        Mode::Layerwise | Mode::Cumulative => Some(snoop::snoop_record(db, project, target)?.output),
    };
    let encodings = if stages::is_quantized(db, project, target)? {
        Some(stages::quantize_record(db, project, target)?.output)
    } else {
        None
    };
    let checker = match encodings {
        Some(_) => Some(checker_record(db, project, target)?.output),
        None => None,
    };
    let labels = project.labels(db).map(|f| f.digest(db));
    let golden = golden_stage::dump_key(db, project);
    let key = KeyBuilder::new(Stage::Verify)
        .value("golden", &golden)
        .digest("simulated", &simulated.output)
        .digest("reference", &reference.output)
        .value("layer runs", &layer_runs.map(|d| *d.as_bytes()))
        .value("encodings", &encodings.map(|d| *d.as_bytes()))
        .value("labels", &labels.map(|d| *d.as_bytes()))
        .value("thresholds", project.thresholds(db))
        .value("mode", &debug.mode)
        .value("metrics", &debug.metrics)
        // The checker runs on quantized targets only.
        .value("checker", &checker.map(|d| *d.as_bytes()))
        .finish();
    let name = target.name(db).clone();
    memoize(
        db,
        Stage::Verify,
        Some(&name),
        key,
        || compute_verify(db, project, target),
        |r: &VerifyResult| encode(&r.outcome),
    )
}

#[salsa::tracked(returns(clone))]
pub fn verify_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<VerifyResult>, Failed> {
    let record = verify_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Verify, Some(&name), &record, || compute_verify(db, project, target))
}

/// The quantization checker's report and the weight histograms of a quantized target: cached
/// apart from the verdict, since they depend only on the encodings, the float activations
/// simulate profiled and the checker's configuration. A threshold, label or metric edit
/// reuses them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckerRun {
    pub report: CheckerReport,
    pub weight_histograms: Vec<Histogram>,
}

#[salsa::tracked(returns(clone))]
pub fn checker_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let encodings = stages::quantize_record(db, project, target)?;
    let simulated = stages::simulate_record(db, project, target)?;
    let key = KeyBuilder::new(Stage::Verify)
        .bytes("part", b"checker")
        .digest("encodings", &encodings.output)
        .digest("param profiles", &param_profiles_record(db, project, target)?.output)
        .digest("simulated", &simulated.output)
        .value("checker", &project.debug(db).checker)
        .finish();
    let name = target.name(db).clone();
    memoize(db, Stage::Verify, Some(&name), key, || compute_checker(db, project, target), |_| Vec::new())
}

#[salsa::tracked(returns(clone))]
pub fn checker_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<CheckerRun>, Failed> {
    let record = checker_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Verify, Some(&name), &record, || compute_checker(db, project, target))
}

/// What verify reads of a target's graphs: the graph outputs, the per-layer rows, the tensors
/// a golden dump may provide, and of the quantized graph the activations squashed into their
/// producers and the per-tensor encoding ranges. Cached apart, keyed by the graphs' digests:
/// a threshold, metric or labels edit re-renders the verdict from this outline and the run's
/// folds without loading the graphs (their weights were most of such a rebuild).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyOutline {
    pub outputs: Vec<crate::verify::OutputSpec>,
    /// Every float layer of the float graph, graph order.
    pub layers: Vec<crate::verify::LayerSpec>,
    pub golden_wanted: Vec<crate::verify::golden::Wanted>,
    pub squashed: BTreeMap<String, String>,
    /// `(min, max)` of each tensor with a per-tensor encoding in the quantized graph.
    pub encoding_ranges: BTreeMap<String, (f64, f64)>,
}

#[salsa::tracked(returns(clone))]
pub fn outline_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let graph = stages::target_optimize_record(db, project, target)?;
    let encodings = if stages::is_quantized(db, project, target)? {
        Some(stages::quantize_record(db, project, target)?.output)
    } else {
        None
    };
    let key = KeyBuilder::new(Stage::Verify)
        .bytes("part", b"outline")
        .digest("float graph", &graph.output)
        .value("encodings", &encodings.map(|d| *d.as_bytes()))
        .finish();
    let name = target.name(db).clone();
    memoize(db, Stage::Verify, Some(&name), key, || compute_outline(db, project, target), |_| Vec::new())
}

#[salsa::tracked(returns(clone))]
pub fn outline_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<VerifyOutline>, Failed> {
    let record = outline_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Verify, Some(&name), &record, || compute_outline(db, project, target))
}

fn compute_outline(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<VerifyOutline, Failed> {
    let graph = stages::target_optimize_value(db, project, target)?;
    let mut outline = VerifyOutline {
        outputs: crate::verify::output_specs(&graph),
        layers: crate::verify::layer_specs(&graph, |_| true),
        golden_wanted: golden_stage::wanted(&graph),
        squashed: BTreeMap::new(),
        encoding_ranges: BTreeMap::new(),
    };
    if stages::is_quantized(db, project, target)? {
        let q = stages::quantize_value(db, project, target)?;
        outline.squashed = crate::quant::quantize::squashed_producers(&q);
        outline.encoding_ranges = q
            .encodings
            .iter()
            .filter_map(|(&id, encoding)| match encoding {
                TensorEncoding::PerTensor(e) => {
                    Some((q.graph.name(id).to_string(), (f64::from(e.min), f64::from(e.max))))
                }
                _ => None,
            })
            .collect();
    }
    Ok(outline)
}

/// The checker's profile of every weight and bias of the target's float graph, with the
/// digest of the values it was made from: a cached action keyed by the float graph alone, so
/// an encoding edit re-checks the parameters without profiling them again (sorting every
/// weight is most of the checker's time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamProfiles(pub BTreeMap<String, ([u8; 32], checker::FloatProfile)>);

fn values_digest(values: &[f32]) -> [u8; 32] {
    // The little-endian bytes of the values, handed to the hasher a block at a time (one
    // `update` per value cost more than the hashing: 3.5 M weights of MobileNetV2).
    let mut hasher = blake3::Hasher::new();
    let mut block = Vec::with_capacity(16 * 1024);
    for chunk in values.chunks(4 * 1024) {
        block.clear();
        block.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
        hasher.update(&block);
    }
    *hasher.finalize().as_bytes()
}

#[salsa::tracked(returns(clone))]
pub fn param_profiles_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let graph = stages::target_optimize_record(db, project, target)?;
    let key =
        KeyBuilder::new(Stage::Verify).bytes("part", b"param profiles").digest("float graph", &graph.output).finish();
    let name = target.name(db).clone();
    memoize(db, Stage::Verify, Some(&name), key, || compute_param_profiles(db, project, target), |_| Vec::new())
}

fn compute_param_profiles(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<ParamProfiles, Failed> {
    use rayon::prelude::*;
    let graph = stages::target_optimize_value(db, project, target)?;
    let params: BTreeMap<String, &[f32]> = graph
        .nodes
        .iter()
        .flat_map(|node| {
            checker::param_positions(&node.op).iter().filter_map(|&(position, _)| node.inputs.get(position))
        })
        .filter_map(|&id| Some((graph.name(id).to_string(), graph.constant(id)?.as_f32()?)))
        .collect();
    let entries: Vec<(&String, &&[f32])> = params.iter().collect();
    let profiles = entries
        .par_iter()
        .map(|(name, values)| ((*name).clone(), (values_digest(values), checker::FloatProfile::of(values))))
        .collect();
    Ok(ParamProfiles(profiles))
}

#[salsa::tracked(returns(clone))]
pub fn param_profiles_value(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<Arc<ParamProfiles>, Failed> {
    let record = param_profiles_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Verify, Some(&name), &record, || compute_param_profiles(db, project, target))
}

fn compute_checker(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<CheckerRun, Failed> {
    let q = stages::quantize_value(db, project, target)?;
    let params = param_profiles_value(db, project, target)?;
    // A weight the quantized graph holds with other values than the float graph's (none
    // today) is profiled afresh.
    let param_profile = |name: &str, values: &[f32]| match params.0.get(name) {
        Some((digest, profile)) if *digest == values_digest(values) => profile.clone(),
        _ => checker::FloatProfile::of(values),
    };
    let simulated = stages::simulate_value(db, project, target)?;
    let Some(activations) = &simulated.activations else {
        return Err(convert::internal("a quantized target's run has no activation profiles"));
    };
    let squashed = crate::quant::quantize::squashed_producers(&q);
    // A squashed producer is checked against the fused op's float output, the values its
    // (activation's) encoding was made for.
    let profile_of = |name: &str| {
        let name = squashed.get(name).map_or(name, String::as_str);
        activations.profiles.get(name).cloned()
    };
    Ok(CheckerRun {
        report: checker::check_graph_with(&q, &profile_of, &param_profile, &project.debug(db).checker),
        weight_histograms: crate::verify::report_page::weight_histograms(&q),
    })
}

pub(super) fn read_labels(db: &dyn Db, project: ProjectInput, samples: usize) -> Result<Option<Vec<usize>>, Failed> {
    let Some(file) = project.labels(db) else { return Ok(None) };
    let bytes = read_file(db, file)?;
    let path = file.path(db).clone();
    let text = String::from_utf8_lossy(&bytes);
    let mut labels = Vec::new();
    let mut offset = 0;
    for line in text.split('\n') {
        let start = offset;
        offset += line.len() + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match trimmed.parse::<usize>() {
            Ok(label) => labels.push(label),
            Err(_) => {
                return Err(Failed(vec![
                    Diag::error("qairt::labels::syntax", format!("`{trimmed}` is not a class index"))
                        .in_file(&path)
                        .at(start, line.len(), "expected a non-negative integer")
                        .with_help("labels.txt holds one class index per line, in the order of the verify input list"),
                ]));
            }
        }
    }
    if labels.len() < samples {
        return Err(Failed(vec![
            Diag::error(
                "qairt::labels::count",
                format!("{} has {} labels, the verify input list has {samples} samples", path.display(), labels.len()),
            )
            .in_file(&path)
            .with_help("give one label per line of the verify input list"),
        ]));
    }
    Ok(Some(labels))
}

fn compute_verify(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<VerifyResult, Failed> {
    let simulated = stages::simulate_value(db, project, target)?;
    let reference = stages::reference_value(db, project)?;
    let debug = project.debug(db).clone();
    let snooped = match debug.mode {
        Mode::Oneshot => None,
        Mode::Layerwise | Mode::Cumulative => Some(snoop::snoop_value(db, project, target)?),
    };
    let rows: &[(String, LayerFold)] = match &snooped {
        Some(run) => &run.layers,
        None => &simulated.layers,
    };
    let outline = outline_value(db, project, target)?;
    let samples = reference.samples.len();
    let labels = read_labels(db, project, samples)?;
    // `[verify] golden`: the dump replaces the float run wherever a tensor matched.
    let external = match project.golden(db) {
        Some(input) => Some(golden_stage::read_golden(db, input, &outline.golden_wanted, samples)?),
        None => None,
    };
    let mut builder = SummaryBuilder::new(outline.outputs.clone(), Vec::new(), project.thresholds(db).clone())
        .map_err(convert::internal)?;
    let simulated_samples = &simulated.outputs.samples;
    for n in 0..samples {
        builder.begin_sample(labels.as_ref().map(|l| l[n])).map_err(convert::internal)?;
        for (k, name) in reference.output_names.iter().enumerate() {
            let (Some(rt), Some(at)) = (reference.samples[n].get(k), simulated_samples.get(n).and_then(|s| s.get(k)))
            else {
                return Err(convert::internal(format!("output {name} is missing for sample {n}")));
            };
            let golden = match external.as_ref().and_then(|e| e.values.get(name)) {
                Some(values) => {
                    let size = rt.shape.iter().product::<usize>();
                    values.get(n * size..(n + 1) * size).map(<[f32]>::to_vec).unwrap_or_default()
                }
                None => rt.to_f32_vec(),
            };
            builder.add_output(name, &golden, &at.to_f32_vec()).map_err(convert::internal)?;
        }
    }
    let mut summary = builder.finish().map_err(convert::internal)?;
    // The per-layer rows, from the folds of the run they come from.
    let fold_of: BTreeMap<&str, &LayerFold> = rows.iter().map(|(name, fold)| (name.as_str(), fold)).collect();
    summary.layers = outline
        .layers
        .iter()
        .filter_map(|spec| {
            let mut row = LayerSummary::from_metrics(spec, &fold_of.get(spec.name.as_str())?.metrics);
            row.compared_with = outline.squashed.get(&spec.name).cloned();
            Some(row)
        })
        .collect();
    summary.mode = debug.mode;
    summary.golden = external.as_ref().map(|e| e.report.clone());
    let metrics = debug.metrics();
    summary.attach_metrics(&metrics, |name| {
        fold_of.get(name).map(|fold| (*fold, outline.encoding_ranges.get(name).copied()))
    });
    if let (Some(run), Some(first)) = (&snooped, metrics.first())
        && run.mode == Mode::Cumulative
    {
        attach_cumulative(&mut summary, run, &reference, first, project.thresholds(db));
    }
    // The checker and the histograms read what simulate kept of the float activations.
    let (checker, histograms) = match (stages::is_quantized(db, project, target)?, &simulated.activations) {
        (true, Some(activations)) => {
            let run = checker_value(db, project, target)?;
            let mut histograms = run.weight_histograms.clone();
            histograms.extend(crate::verify::report_page::activation_histograms(
                |name| activations.histograms.get(name),
                &summary,
            ));
            (Some(run.report.clone()), histograms)
        }
        _ => (None, Vec::new()),
    };
    let covered = simulated.activations.as_ref().map_or(samples, |a| a.samples);
    let mut outcome = outcome(&summary);
    outcome.checker = checker.as_ref().map(|c| (c.failed, c.analyzed));
    Ok(VerifyResult {
        outcome,
        json: crate::verify::summary_json(&summary),
        csv: crate::verify::summary_csv(&summary),
        summary,
        checker,
        activation_samples: (covered < samples).then_some((covered, samples)),
        histograms,
    })
}

/// Cumulative rows: the partition status and, per graph output, the first metric measured on
/// the run the row comes from.
fn attach_cumulative(
    summary: &mut Summary,
    run: &snoop::SnoopRun,
    reference: &RunOutputs,
    metric: &crate::verify::MetricSpec,
    thresholds: &crate::verify::Thresholds,
) {
    let samples = reference.samples.len();
    let golden_outputs: Vec<Vec<f32>> = (0..reference.output_names.len())
        .map(|k| reference.samples.iter().flat_map(|s| s.get(k).map(Tensor::to_f32_vec).unwrap_or_default()).collect())
        .collect();
    let per_segment: Vec<BTreeMap<String, f64>> = run
        .segments
        .iter()
        .map(|outputs| {
            reference
                .output_names
                .iter()
                .zip(&golden_outputs)
                .zip(outputs)
                .map(|((name, g), q)| (name.clone(), metric.evaluate(g, q, samples, None, thresholds).metric))
                .collect()
        })
        .collect();
    for layer in &mut summary.layers {
        layer.status = Some(if run.partitioned.contains(&layer.name) { "part".into() } else { String::new() });
        layer.final_outputs = run.segment_of.get(&layer.name).and_then(|&s| per_segment.get(s)).cloned();
    }
}

/// A metric for people: four decimals, or four significant digits in scientific notation for
/// values too small for that to show (an MSE of 1.9e-5 must not read as 0.0000).
fn significant(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || x.abs() >= 0.01 { format!("{x:.4}") } else { format!("{x:.3e}") }
}

fn outcome(summary: &Summary) -> VerifyOutcome {
    let mut metrics = BTreeMap::new();
    if let Some(first) = summary.outputs.first() {
        metrics.insert("sqnr_db".to_string(), first.metrics.sqnr_db);
        metrics.insert("cosine".to_string(), first.metrics.cosine);
        metrics.insert("mse".to_string(), first.metrics.mse);
        metrics.insert("max_abs_error".to_string(), first.metrics.max_abs_error);
        metrics.insert("top1_agreement".to_string(), first.top1_agreement);
        if let Some(acc) = &first.accuracy {
            metrics.insert("accuracy".to_string(), acc.actual);
            metrics.insert("reference_accuracy".to_string(), acc.reference);
        }
    }
    let failures = summary
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} = {:.4} on `{}` (limit {})", c.threshold.name(), c.measured, c.output, c.limit))
        .collect();
    let first_failing = summary.layers.iter().find(|l| l.failed).map(|l| FailingLayer {
        layer: l.name.clone(),
        failed: l
            .verifiers
            .iter()
            .filter(|v| v.passed == Some(false))
            .map(|v| format!("{} = {} (limit {})", v.column, significant(v.metric), v.threshold.unwrap_or(f64::NAN)))
            .collect(),
        compared_with: l.compared_with.clone(),
    });
    let golden =
        summary.golden.as_ref().map(|g| (g.matched.len(), g.unmatched_tensors.clone(), g.unmatched_files.clone()));
    // Exact layers (infinite SQNR) have no error to rank.
    let worst = summary
        .worst_layers(5)
        .into_iter()
        .filter(|l| l.metrics.sqnr_db != f64::INFINITY)
        .map(|l| WorstLayer {
            layer: l.name.clone(),
            op: l.layer_type.clone(),
            sqnr_db: l.metrics.sqnr_db,
            compared_with: l.compared_with.clone(),
        })
        .collect();
    VerifyOutcome {
        passed: summary.passed,
        metrics,
        failures,
        mode: summary.mode,
        first_failing,
        worst,
        checker: None,
        golden,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_values_digest_is_the_blake3_of_their_little_endian_bytes() {
        let values: Vec<f32> = (0..10_000).map(|i| (i as f32).sin()).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(super::values_digest(&values), *blake3::hash(&bytes).as_bytes());
        assert_eq!(super::values_digest(&[]), *blake3::hash(&[]).as_bytes());
    }
}
