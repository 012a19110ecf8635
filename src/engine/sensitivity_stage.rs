//! Sensitivity analysis of a quantized target (`qairt suggest`): each candidate layer is
//! raised to higher precision through an in-memory overrides entry, and the model is
//! quantized, compiled and run on the verify inputs again; [`crate::verify::sensitivity`]
//! turns those measurements into a ranking and the smallest set that meets the thresholds.
//!
//! Memoized like a stage (shown as `verify`): keyed by the quantize action, the backend rules,
//! the float reference, the labels, the thresholds and the precision. A build never computes
//! it; it only shows it in `report.html` when it is in the cache ([`cached_sensitivity`]).

use std::sync::Arc;

use crate::compile;
use crate::ir::{Graph, Op};
use crate::quant::aimet::OverrideEncoding;
use crate::quant::{Overrides, QuantizedGraph, TensorEncoding};
use crate::runtime::exec::prepare;
use crate::verify::sensitivity::{self, Measurement, Precision, SensitivityResult};
use crate::verify::{OutputSpec, SummaryBuilder};

use super::convert;
use super::db::{Db, Failed, NoProgress, ProjectInput, Stage, TargetInput};
use super::inputs::sample_source;
use super::memo::{KeyBuilder, Record, load, lookup, memoize};
use super::stages;
use super::verify_stage::read_labels;

/// The action key, from upstream records only (cheap).
fn key(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<super::store::Digest, Failed> {
    let quantize = stages::quantize_record(db, project, target)?;
    let reference = stages::reference_record(db, project)?;
    let rules = stages::backend(db, project, target)?;
    let labels = project.labels(db).map(|f| *f.digest(db).as_bytes());
    Ok(KeyBuilder::new(Stage::Verify)
        .bytes("analysis", b"sensitivity")
        .digest("quantize action", &quantize.key)
        .digest("reference", &reference.output)
        .value("backend", &*rules)
        .value("labels", &labels)
        .value("thresholds", project.thresholds(db))
        .value("precision", &project.debug(db).precision)
        .finish())
}

#[salsa::tracked(returns(clone))]
pub fn sensitivity_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    if !stages::is_quantized(db, project, target)? {
        return Err(Failed(vec![
            crate::diag::Diag::error(
                "qairt::suggest::float_target",
                format!("target \"{}\" is not quantized: there is no precision to raise", target.name(db)),
            )
            .with_help("run qairt suggest on a quantized target (e.g. backend = \"htp\")"),
        ]));
    }
    let key = key(db, project, target)?;
    let name = target.name(db).clone();
    memoize(db, Stage::Verify, Some(&name), key, || compute(db, project, target), |_| Vec::new())
}

#[salsa::tracked(returns(clone))]
pub fn sensitivity_value(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<Arc<SensitivityResult>, Failed> {
    let record = sensitivity_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Verify, Some(&name), &record, || compute(db, project, target))
}

/// The analysis (and its content digest) if an earlier `qairt suggest` left it in the cache;
/// never computes it.
pub fn cached_sensitivity(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Option<(super::store::Digest, Arc<SensitivityResult>)> {
    if !stages::is_quantized(db, project, target).ok()? {
        return None;
    }
    let key = key(db, project, target).ok()?;
    lookup(db, &key)
}

fn compute(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<SensitivityResult, Failed> {
    let precision = project.debug(db).precision;
    let thresholds = project.thresholds(db).clone();
    let baseline_q = stages::quantize_value(db, project, target)?;
    let graph = stages::target_optimize_value(db, project, target)?;
    let stats = stages::target_calibrate_value(db, project, target)?;
    let rules = stages::backend(db, project, target)?;
    let policy = rules.quant_policy();
    let base_overrides = stages::encodings_for(db, project, target, &graph)?;
    let reference = stages::reference_value(db, project)?;
    let samples = sample_source(db, project, &graph, project.verify(db), project.verify_max(db))?;
    let labels = read_labels(db, project, samples.len())?;
    let candidates = candidates(&baseline_q, precision);
    let settings = target.settings(db).clone();

    let progress = &db.services().progress;
    let mut measure = |layers: &[String]| -> Result<Measurement, Failed> {
        let mut overrides = base_overrides.clone().unwrap_or_default();
        for layer in layers {
            raise(&mut overrides, &baseline_q.graph, layer, precision);
        }
        let q = crate::quant::quantize::quantize_with(&graph, stats.as_deref(), &settings, Some(&overrides), &policy)
            .map_err(|errors| Failed(errors.into_iter().map(convert::quant_error).collect()))?;
        let program =
            compile::compile(&q, &rules).map_err(|e| convert::compile_error(target.name(db), target.backend(db), e))?;
        super::memory_budget::check_arena(&program)?;
        let prepared = prepare(&program).map_err(convert::internal)?;
        let outputs: Vec<OutputSpec> = graph
            .outputs
            .iter()
            .map(|&id| OutputSpec { name: graph.name(id).to_string(), shape: graph.info(id).shape.clone() })
            .collect();
        let mut builder = SummaryBuilder::new(outputs, Vec::new(), thresholds.clone()).map_err(convert::internal)?;
        // Samples side by side, folded into the summary in sample order.
        super::samples::run_in_order(
            &samples.numbers(),
            &NoProgress,
            |&n| Ok((n, prepared.run(&samples.read(n)?, &mut |_, _| {}).map_err(convert::internal)?)),
            |(n, actual)| {
                builder.begin_sample(labels.as_ref().and_then(|l| l.get(n).copied())).map_err(convert::internal)?;
                for (k, name) in reference.output_names.iter().enumerate() {
                    let (Some(r), Some(a)) = (reference.samples.get(n).and_then(|s| s.get(k)), actual.get(k)) else {
                        return Err(convert::internal(format!("output {name} is missing for sample {n}")));
                    };
                    builder.add_output(name, &r.to_f32_vec(), &a.to_f32_vec()).map_err(convert::internal)?;
                }
                Ok(())
            },
        )?;
        progress.advance();
        let summary = builder.finish().map_err(convert::internal)?;
        let first = summary.outputs.first().ok_or_else(|| convert::internal("the model has no outputs"))?;
        Ok(Measurement {
            sqnr_db: first.metrics.sqnr_db,
            cosine: first.metrics.cosine,
            top1_agreement: first.top1_agreement,
            accuracy_drop: first.accuracy.as_ref().map(|a| a.drop),
        })
    };
    // One bar per phase of the search, each with the most measurements it can take (the
    // first also counts the baseline), so no bar runs past its total.
    let label = format!("sensitivity {}", target.name(db));
    progress.start(&format!("{label}: {}", sensitivity::Phase::Rank.name()), candidates.len() as u64 + 1);
    let baseline = measure(&[])?;
    let mut phase = |phase: sensitivity::Phase, most: usize| {
        if phase != sensitivity::Phase::Rank {
            progress.finish();
            progress.start(&format!("{label}: {}", phase.name()), most as u64);
        }
    };
    let result = sensitivity::search(precision, &candidates, baseline, &thresholds, &mut measure, &mut phase);
    progress.finish();
    result
}

/// Layers that can be raised, graph order: every op (conversions aside) whose output is on an
/// integer grid below 16 bits (int16), or on any integer grid (float16).
fn candidates(q: &QuantizedGraph, precision: Precision) -> Vec<(String, String)> {
    q.graph
        .nodes
        .iter()
        .filter(|node| node.op != Op::Convert(crate::ops::Convert))
        .filter_map(|node| {
            let &output = node.outputs.first()?;
            let raisable = match q.encodings.get(&output)? {
                TensorEncoding::PerTensor(e) => precision == Precision::Float16 || e.bitwidth < 16,
                TensorEncoding::PerChannel { channels: encodings, .. }
                | TensorEncoding::PerBlock { blocks: encodings, .. } => {
                    precision == Precision::Float16 || encodings.iter().any(|e| e.bitwidth < 16)
                }
                TensorEncoding::Float { .. } => false,
            };
            raisable.then(|| (q.graph.name(output).to_string(), node.op.type_name().to_string()))
        })
        .collect()
}

/// Adds the entries that keep `layer` (an op output) at `precision`: its output activation,
/// and for an op with weights (a constant second input) the weights too.
pub fn raise(overrides: &mut Overrides, graph: &Graph, layer: &str, precision: Precision) {
    let activation = match precision {
        Precision::Int16 => OverrideEncoding::Calibrated { bitwidth: 16, symmetric: None },
        Precision::Float16 => OverrideEncoding::Float { bitwidth: 16 },
    };
    overrides.activations.insert(layer.to_string(), activation);
    let producer = graph.nodes.iter().find(|n| n.outputs.iter().any(|&o| graph.name(o) == layer));
    let weight = producer
        .filter(|n| matches!(n.op, Op::Conv { .. } | Op::Gemm(_) | Op::MatMul(crate::ops::MatMul)))
        .and_then(|n| n.inputs.get(1))
        .filter(|&&w| graph.is_constant(w));
    if let Some(&w) = weight {
        let param = match precision {
            Precision::Int16 => OverrideEncoding::Calibrated { bitwidth: 16, symmetric: Some(true) },
            Precision::Float16 => OverrideEncoding::Float { bitwidth: 16 },
        };
        overrides.params.insert(graph.name(w).to_string(), param);
    }
}

/// The layers of `result.chosen` as an overrides file: the target's own entries (if any) plus
/// the raised ones.
pub fn suggested_overrides(base: Option<&Overrides>, graph: &Graph, result: &SensitivityResult) -> Overrides {
    let mut overrides = base.cloned().unwrap_or_default();
    for layer in &result.chosen {
        raise(&mut overrides, graph, layer, result.precision);
    }
    overrides
}

/// For `qairt suggest`: the target's own overrides and its optimized graph.
pub fn suggest_inputs(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<(Option<Overrides>, Arc<Graph>), Failed> {
    let graph = stages::target_optimize_value(db, project, target)?;
    let overrides = stages::encodings_for(db, project, target, &graph)?;
    Ok((overrides, graph))
}
