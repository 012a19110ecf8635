//! The stage queries. Each stage is a pair of tracked functions: `<stage>_record` computes
//! the stage's action key from upstream records and consults the disk store (building on a
//! miss), and `<stage>_value` loads the value when a consumer actually needs it. A no-op
//! build therefore touches only records, never the (large) values.
//!
//! **Invariant:** every function here is a pure function of salsa inputs and content-
//! addressed files; a failure is a `Failed` with diagnostics, never a panic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compile::{self, BackendRules, Program, RuleSet};
use crate::diag::Diag;
use crate::ir::{Graph, Tensor};
use crate::quant::{self, CalibrationStats, Overrides, QuantizedGraph};

use super::checkpoint::{self, Checkpoint, Cut};
use super::compare::{Activations, FloatPrefix, Goldens, Plan, SampleFolds, SampleValues};
use super::convert;
use super::db::{DataList, Db, Failed, ProjectInput, SourceFile, Stage, TargetInput};
use super::inputs::{SampleSource, read_file, sample_source};
use super::memo::{KeyBuilder, Record, load, memoize};
use super::specialize;

/// The graph outputs of every verify sample: what the float reference run produces, and
/// what `out/` materializes of a simulated run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOutputs {
    pub output_names: Vec<String>,
    /// `samples[n][k]`: output `k` for line `n` of the verify list.
    pub samples: Vec<Vec<Tensor>>,
}

/// What `simulate` produces: the outputs of every sample, each layer's comparison with the
/// target's float run folded over the samples (`compare.rs`), and on a quantized target what
/// the checker and the report's histograms read of the float activations. Nothing here grows
/// with samples x activations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulateRun {
    pub outputs: RunOutputs,
    /// One row per float layer (graph order): the quantized value against the golden one.
    pub layers: Vec<(String, crate::verify::LayerFold)>,
    pub activations: Option<Activations>,
}

// ---------------------------------------------------------------- parse

/// The key of the unspecialized import: the model, its external data, its input shapes.
fn parse_key(db: &dyn Db, project: ProjectInput) -> super::store::Digest {
    let model = project.model(db);
    let mut key = KeyBuilder::new(Stage::Parse).digest("model", &model.file(db).digest(db));
    for (location, file) in model.externals(db) {
        key = key.bytes("external", location.as_bytes()).digest("bytes", &file.digest(db));
    }
    key.value("shapes", model.shapes(db)).finish()
}

/// Imports the model. A model whose shapes depend on graph inputs is specialized on the
/// values the project's data gives them (`specialize`); its record's meta lists them.
#[salsa::tracked(returns(clone))]
pub fn parse_record(db: &dyn Db, project: ProjectInput) -> Result<Record, Failed> {
    let key = parse_key(db, project);
    let recorded = specialize::recorded_needs(db, &key);
    if let Some(needs) = &recorded
        && !needs.is_empty()
    {
        return specialized_parse(db, project, key, needs.clone());
    }
    let mut needs = None;
    let result = memoize(
        db,
        Stage::Parse,
        None,
        key,
        || compute_parse(db, project, &BTreeMap::new(), &mut needs),
        |_| Vec::new(),
    );
    match (result, needs) {
        (Err(_), Some(needs)) => {
            specialize::record_needs(db, &key, &needs)?;
            specialized_parse(db, project, key, needs)
        }
        // "Needs nothing" recorded too, so that the next build finds the answer in the local
        // cache instead of asking the remote one every time. Only an optimization: a failure
        // to record it is no failure of the build.
        (Ok(record), None) if recorded.is_none() => {
            let _ = specialize::record_needs(db, &key, &[]);
            Ok(record)
        }
        (result, _) => result,
    }
}

/// The import specialized on the inputs in `needs`, growing the set while each round's
/// import names more (an input may only be reachable once another is known).
fn specialized_parse(
    db: &dyn Db,
    project: ProjectInput,
    unspecialized: super::store::Digest,
    mut needs: Vec<crate::onnx::RunTimeInput>,
) -> Result<Record, Failed> {
    loop {
        let bound = specialize::bind_from_data(db, project, &needs)?;
        let key = KeyBuilder::new(Stage::Parse)
            .digest("unspecialized", &unspecialized)
            .value("bound inputs", &bound)
            .finish();
        let mut more = None;
        let meta = super::memo::encode(&needs);
        let result = memoize(db, Stage::Parse, None, key, || compute_parse(db, project, &bound, &mut more), |_| meta);
        let new: Vec<_> = more.into_iter().flatten().filter(|m| !needs.iter().any(|n| n.name == m.name)).collect();
        if result.is_ok() || new.is_empty() {
            return result;
        }
        needs.extend(new);
        specialize::record_needs(db, &unspecialized, &needs)?;
    }
}

/// Imports the model with `bound` inputs as constants. A failure that values of more graph
/// inputs would fix sets `needs` to them (and still returns the import's diagnostics).
fn compute_parse(
    db: &dyn Db,
    project: ProjectInput,
    bound: &BTreeMap<String, Tensor>,
    needs: &mut Option<Vec<crate::onnx::RunTimeInput>>,
) -> Result<Graph, Failed> {
    let model = project.model(db);
    let file = model.file(db);
    let bytes = read_file(db, file)?;
    let path = file.path(db).clone();
    let proto = crate::onnx::decode_model(&bytes).map_err(|e| convert::import_error(&path, e))?;
    let mut external = BTreeMap::new();
    for (location, ext) in model.externals(db) {
        external.insert(location.clone(), read_file(db, *ext)?.to_vec());
    }
    crate::onnx::import_bound(&proto, &external, model.shapes(db), bound).map_err(|failure| {
        if !failure.run_time_inputs.is_empty() {
            *needs = Some(failure.run_time_inputs);
        }
        Failed(failure.errors.into_iter().map(|e| convert::import_error(&path, e)).collect())
    })
}

#[salsa::tracked(returns(clone))]
pub fn parse_value(db: &dyn Db, project: ProjectInput) -> Result<Arc<Graph>, Failed> {
    let record = parse_record(db, project)?;
    load(db, Stage::Parse, None, &record, || {
        // A specialized record's meta lists the inputs it was specialized on.
        let bound = match postcard::from_bytes::<Vec<crate::onnx::RunTimeInput>>(&record.meta) {
            Ok(needs) if !needs.is_empty() => specialize::bind_from_data(db, project, &needs)?,
            _ => BTreeMap::new(),
        };
        compute_parse(db, project, &bound, &mut None)
    })
}

// ---------------------------------------------------------------- optimize

#[salsa::tracked(returns(clone))]
pub fn optimize_record(db: &dyn Db, project: ProjectInput) -> Result<Record, Failed> {
    let parsed = parse_record(db, project)?;
    let key = KeyBuilder::new(Stage::Optimize).digest("graph", &parsed.output).finish();
    memoize(db, Stage::Optimize, None, key, || compute_optimize(db, project), |_| Vec::new())
}

fn compute_optimize(db: &dyn Db, project: ProjectInput) -> Result<Graph, Failed> {
    let graph = parse_value(db, project)?;
    let (optimized, _report) = crate::passes::optimize((*graph).clone()).map_err(convert::internal)?;
    Ok(optimized)
}

#[salsa::tracked(returns(clone))]
pub fn optimize_value(db: &dyn Db, project: ProjectInput) -> Result<Arc<Graph>, Failed> {
    let record = optimize_record(db, project)?;
    load(db, Stage::Optimize, None, &record, || compute_optimize(db, project))
}

/// The optional passes a target asks for; any of them gives it an optimized graph of its own.
fn optimize_options(db: &dyn Db, target: TargetInput) -> crate::passes::OptimizeOptions {
    let settings = target.settings(db);
    crate::passes::OptimizeOptions {
        cle: settings.algorithms.iter().any(|a| a == "cle"),
        keep_batchnorms: !settings.batchnorm_folding,
    }
}

/// Whether the target optimizes the parsed model its own way rather than sharing the
/// project's optimized graph.
fn has_own_graph(db: &dyn Db, target: TargetInput) -> bool {
    optimize_options(db, target) != crate::passes::OptimizeOptions::default()
}

/// The optimized graph of a target with options of its own: cross-layer equalization
/// (`algorithms = ["cle"]`, which needs the BatchNorms the plain optimize folds away, so it
/// starts from the parsed model) or BatchNorms kept (`batchnorm_folding = false`). Keyed by
/// content and by the options that differ from the default (a CLE target's key is what it was
/// before BatchNorms could be kept), so every target with the same options shares one entry.
#[salsa::tracked(returns(clone))]
pub fn own_optimize_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let parsed = parse_record(db, project)?;
    let options = optimize_options(db, target);
    let mut key = KeyBuilder::new(Stage::Optimize).digest("graph", &parsed.output);
    if options.cle {
        key = key.value("cle", &true);
    }
    if options.keep_batchnorms {
        key = key.value("batchnorm_folding", &false);
    }
    let name = target.name(db).clone();
    memoize(
        db,
        Stage::Optimize,
        Some(&name),
        key.finish(),
        || compute_own_optimize(db, project, target),
        |_| Vec::new(),
    )
}

fn compute_own_optimize(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Graph, Failed> {
    let graph = parse_value(db, project)?;
    let options = optimize_options(db, target);
    let (optimized, _report) = crate::passes::optimize_with((*graph).clone(), &options).map_err(convert::internal)?;
    Ok(optimized)
}

#[salsa::tracked(returns(clone))]
pub fn own_optimize_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<Graph>, Failed> {
    let record = own_optimize_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Optimize, Some(&name), &record, || compute_own_optimize(db, project, target))
}

/// The optimize record a target's quantization starts from: the shared one, or its own.
pub fn target_optimize_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    if has_own_graph(db, target) { own_optimize_record(db, project, target) } else { optimize_record(db, project) }
}

pub fn target_optimize_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<Graph>, Failed> {
    if has_own_graph(db, target) { own_optimize_value(db, project, target) } else { optimize_value(db, project) }
}

// ---------------------------------------------------------------- calibrate

/// The key part of the samples a run reads: every raw file of `list` (up to `max` samples)
/// and the form `[io.inputs]` gives them, which decides the tensors they become. Without
/// `[io.inputs]` the key is what it was before the table existed.
pub(super) fn list_key(
    key: KeyBuilder,
    db: &dyn Db,
    project: ProjectInput,
    list: DataList,
    max: Option<usize>,
) -> KeyBuilder {
    let io = &project.io(db).inputs;
    let mut key = if io.is_empty() { key } else { key.value("input files", io) };
    key = key.value("max", &max);
    for sample in list.samples(db).iter().take(max.unwrap_or(usize::MAX)) {
        key = key.value("entries", &sample.entries.len());
        for entry in &sample.entries {
            key = key.value("name", &entry.name).digest("raw", &entry.file.digest(db));
        }
    }
    key
}

fn calibration_list(db: &dyn Db, project: ProjectInput) -> Result<DataList, Failed> {
    project.calibration(db).ok_or_else(|| {
        Failed(vec![
            Diag::error(
                "qairt::config::no_calibration",
                "a quantized target needs calibration data, but qairt.toml has no [calibration] table",
            )
            .with_help("add [calibration] input_list = \"<calibration input list>\""),
        ])
    })
}

#[salsa::tracked(returns(clone))]
pub fn calibrate_record(db: &dyn Db, project: ProjectInput) -> Result<Record, Failed> {
    let optimized = optimize_record(db, project)?;
    let list = calibration_list(db, project)?;
    let key = KeyBuilder::new(Stage::Calibrate).digest("graph", &optimized.output);
    let key = list_key(key, db, project, list, project.calibration_max(db)).finish();
    memoize(db, Stage::Calibrate, None, key, || compute_calibrate(db, project, list), |_| Vec::new())
}

fn compute_calibrate(db: &dyn Db, project: ProjectInput, list: DataList) -> Result<CalibrationStats, Failed> {
    let graph = optimize_value(db, project)?;
    collect_stats(db, project, &graph, list)
}

/// Runs the float `graph` over the calibration samples, collecting every tensor's statistics.
fn collect_stats(
    db: &dyn Db,
    project: ProjectInput,
    graph: &Graph,
    list: DataList,
) -> Result<CalibrationStats, Failed> {
    let group = super::memory_budget::float_run_group(graph, super::samples::GROUP)?;
    let source = sample_source(db, project, graph, list, project.calibration_max(db))?;
    let progress = &*db.services().progress;
    progress.start("calibrate", source.len() as u64);
    // Each sample's statistics on its own, merged: exact and order-independent (quant::stats).
    // A group's samples run node by node together (each node's weights read once for all).
    let mut stats = quant::CalibrationStats::default();
    super::samples::run_in_groups(
        &source.numbers(),
        group,
        progress,
        |numbers| {
            let (inputs, unreadable) = read_group(&source, numbers);
            let views: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
            let mut collectors: Vec<quant::StatsCollector> =
                views.iter().map(|_| quant::StatsCollector::new(graph)).collect();
            let runs = crate::runtime::interpret_group(graph, &views, &mut |k, id, t| collectors[k].observe(id, t));
            let mut results: Vec<Result<_, Failed>> = runs
                .into_iter()
                .zip(collectors)
                .map(|(run, collector)| run.map(|_| collector.finish()).map_err(convert::internal))
                .collect();
            merge_into_first(&mut results);
            results.extend(unreadable.map(Err));
            results
        },
        |sample| {
            stats.merge(&sample);
            Ok(())
        },
    )?;
    progress.finish();
    Ok(stats)
}

/// Merges a group's statistics into its first sample's on the pool thread that ran them,
/// leaving the others empty, so that the thread taking the results in order merges one
/// sample's worth per group instead of every sample's: that merge was 26 ms of MobileNetV2's
/// 410 ms calibrate with 2 threads, on a third thread competing for the two cores. Exact: the
/// statistics merge in any order to the same bits (`quant::stats`). A group with a failed
/// sample is left as it is, each sample with its own result.
fn merge_into_first(results: &mut [Result<CalibrationStats, Failed>]) {
    if !results.iter().all(Result::is_ok) {
        return;
    }
    if let [Ok(first), rest @ ..] = results {
        for other in rest.iter_mut().flatten() {
            first.merge(&std::mem::take(other));
        }
    }
}

#[salsa::tracked(returns(clone))]
pub fn calibrate_value(db: &dyn Db, project: ProjectInput) -> Result<Arc<CalibrationStats>, Failed> {
    let record = calibrate_record(db, project)?;
    let list = calibration_list(db, project)?;
    load(db, Stage::Calibrate, None, &record, || compute_calibrate(db, project, list))
}

/// Statistics of a target's own graph (equalization rescales activations per channel; a kept
/// BatchNorm has tensors the shared graph has not). Keyed by content like [`calibrate_record`].
#[salsa::tracked(returns(clone))]
pub fn own_calibrate_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let graph = own_optimize_record(db, project, target)?;
    let list = calibration_list(db, project)?;
    let key = KeyBuilder::new(Stage::Calibrate).digest("graph", &graph.output);
    let key = list_key(key, db, project, list, project.calibration_max(db)).finish();
    let name = target.name(db).clone();
    let compute = || compute_own_calibrate(db, project, target, list);
    memoize(db, Stage::Calibrate, Some(&name), key, compute, |_| Vec::new())
}

fn compute_own_calibrate(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
    list: DataList,
) -> Result<CalibrationStats, Failed> {
    let graph = own_optimize_value(db, project, target)?;
    collect_stats(db, project, &graph, list)
}

#[salsa::tracked(returns(clone))]
pub fn own_calibrate_value(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<Arc<CalibrationStats>, Failed> {
    let record = own_calibrate_record(db, project, target)?;
    let list = calibration_list(db, project)?;
    let name = target.name(db).clone();
    load(db, Stage::Calibrate, Some(&name), &record, || compute_own_calibrate(db, project, target, list))
}

/// The calibrate record a target's quantization reads; `None` under `float_fallback`, which
/// needs no calibration data.
pub fn target_calibrate_record(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<Option<Record>, Failed> {
    if target.settings(db).float_fallback {
        Ok(None)
    } else if has_own_graph(db, target) {
        own_calibrate_record(db, project, target).map(Some)
    } else {
        calibrate_record(db, project).map(Some)
    }
}

pub(super) fn target_calibrate_value(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<Option<Arc<CalibrationStats>>, Failed> {
    if target.settings(db).float_fallback {
        Ok(None)
    } else if has_own_graph(db, target) {
        own_calibrate_value(db, project, target).map(Some)
    } else {
        calibrate_value(db, project).map(Some)
    }
}

// ---------------------------------------------------------------- rules and overrides

#[salsa::tracked(returns(clone))]
pub fn rule_set(db: &dyn Db, project: ProjectInput) -> Result<Arc<RuleSet>, Failed> {
    let mut rules = compile::standard_rules();
    for (file, text) in project.rules(db).files(db) {
        let parsed = compile::parse_rules(file, text).map_err(|e| convert::rules_error(file, e))?;
        rules.merge(parsed);
    }
    Ok(Arc::new(rules))
}

#[salsa::tracked(returns(clone))]
pub fn backend(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<BackendRules>, Failed> {
    let rules = rule_set(db, project)?;
    match rules.backend(target.backend(db)) {
        Ok(backend) => Ok(Arc::new(backend.clone())),
        Err(unknown) => {
            let mut help = format!("backends defined in rules/: {}", unknown.known.join(", "));
            if let Some(near) = &unknown.did_you_mean {
                help = format!("did you mean \"{near}\"? ({help})");
            }
            Err(Failed(vec![
                Diag::error(
                    "qairt::config::unknown_backend",
                    format!(
                        "target \"{}\" uses backend \"{}\", which no rules file defines",
                        target.name(db),
                        unknown.name
                    ),
                )
                .with_help(help),
            ]))
        }
    }
}

/// The parsed overrides file; equal for files that differ only in formatting, so a re-indented
/// file does not invalidate `quantize`.
#[salsa::tracked(returns(clone))]
pub fn overrides(db: &dyn Db, file: SourceFile) -> Result<Arc<Overrides>, Failed> {
    let bytes = read_file(db, file)?;
    let path = file.path(db).clone();
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Failed(vec![Diag::error("qairt::encodings::not_utf8", "the encodings file is not UTF-8 text").in_file(&path)])
    })?;
    let parsed = quant::parse_overrides(text)
        .map_err(|errors| Failed(errors.into_iter().map(|e| convert::override_error(&path, e)).collect()))?;
    for warning in &parsed.source.warnings {
        super::memo::warn(db, convert::override_error(&path, warning.clone()));
    }
    Ok(Arc::new(parsed))
}

/// Overrides as they apply to the graph: carried through its BatchNorm folds (each change
/// warned about), checked (unknown names, wrong section, channel counts, axes), and a 2.0.0
/// file's entries placed in the sections the graph gives them.
fn checked_overrides(db: &dyn Db, target: TargetInput, graph: &Graph) -> Result<Option<Arc<Overrides>>, Failed> {
    let Some(file) = target.overrides(db) else { return Ok(None) };
    let parsed = overrides(db, file)?;
    let path = file.path(db).clone();
    let parsed = if graph.batchnorm_folds.is_empty() {
        parsed
    } else {
        let (carried, notes) = quant::aimet::carry_through_folds(&parsed, graph);
        for note in notes {
            super::memo::warn(db, convert::override_error(&path, note));
        }
        Arc::new(carried)
    };
    let problems = quant::check_overrides(&parsed, graph);
    if !problems.is_empty() {
        return Err(Failed(problems.into_iter().map(|e| convert::override_error(&path, e)).collect()));
    }
    if parsed.encodings.is_empty() {
        return Ok(Some(parsed));
    }
    Ok(Some(Arc::new(quant::aimet::place_sections(&parsed, graph))))
}

/// The encodings a target's quantization starts from, by precedence: the overrides file, then
/// the model's own (from stripped QDQ pairs), then (absent here) calibration;
/// `ignore_encodings = true` drops both.
pub(super) fn encodings_for(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
    graph: &Graph,
) -> Result<Option<Overrides>, Failed> {
    let io = io_encodings(db, project, target)?;
    if target.settings(db).ignore_encodings {
        return Ok((!io.is_empty()).then(|| with_io_grids(Overrides::default(), io)));
    }
    let file = checked_overrides(db, target, graph)?;
    let skipped = quant::model_encodings::skipped_model_encodings(graph);
    if !skipped.is_empty() {
        let list: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.tensor, s.reason)).collect();
        super::memo::warn(
            db,
            Diag::warning(
                "qairt::quantize::model_encoding_skipped",
                format!("{} of the model's own encodings are calibrated instead", skipped.len()),
            )
            .with_help(list.join("\n")),
        );
    }
    let model = quant::model_encodings::model_overrides(graph);
    if file.is_none() && model.activations.is_empty() && model.params.is_empty() && io.is_empty() {
        return Ok(None);
    }
    Ok(Some(with_io_grids(quant::model_encodings::layer_overrides(file.as_deref(), model), io)))
}

/// `overrides` with `[io]`'s grids on their tensors: the files' grid wins over the overrides
/// file and the model's own encodings, as the SDK's custom I/O overrides the quantizer's values
/// (and `ignore_encodings` does not drop it: it describes the files, not the model).
fn with_io_grids(mut overrides: Overrides, io: BTreeMap<String, quant::Encoding>) -> Overrides {
    for (name, encoding) in io {
        for section in [quant::aimet::Section::Param, quant::aimet::Section::Encodings] {
            overrides.section_mut(section).remove(&name);
        }
        overrides.activations.insert(name, quant::aimet::OverrideEncoding::Int(vec![encoding]));
    }
    overrides
}

/// `[io]`'s uint8/int8 grids, for a quantized target (a float target reads and writes codes
/// on them, but its tensors stay float).
fn io_encodings(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<BTreeMap<String, quant::Encoding>, Failed> {
    if !is_quantized(db, project, target)? {
        return Ok(BTreeMap::new());
    }
    Ok(super::io_files::quantized_io_encodings(project.io(db)))
}

// ---------------------------------------------------------------- quantize

/// Whether the target's backend runs quantized models (then it calibrates and quantizes).
pub fn is_quantized(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<bool, Failed> {
    Ok(backend(db, project, target)?.quantized)
}

#[salsa::tracked(returns(clone))]
pub fn quantize_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let optimized = target_optimize_record(db, project, target)?;
    let stats = target_calibrate_record(db, project, target)?;
    let policy = backend(db, project, target)?.quant_policy();
    let mut key = KeyBuilder::new(Stage::Quantize).digest("graph", &optimized.output);
    if let Some(stats) = stats {
        key = key.digest("stats", &stats.output);
    }
    let mut key = key.value("settings", target.settings(db)).value("policy", &policy);
    // Not in the serialized settings (which keeps the other targets' keys): a BatchNorm the
    // fold could not take is in either graph, but only a target keeping them quantizes gamma.
    if !target.settings(db).batchnorm_folding {
        key = key.value("batchnorm_folding", &false);
    }
    if let Some(file) = target.overrides(db) {
        key = key.value("overrides", &*overrides(db, file)?);
    }
    let io = io_encodings(db, project, target)?;
    if !io.is_empty() {
        key = key.value("[io] grids", &io);
    }
    let key = key.finish();
    let name = target.name(db).clone();
    memoize(db, Stage::Quantize, Some(&name), key, || stored_quantize(db, project, target), |_| Vec::new())
}

/// What the quantize stage stores: its encodings, and its graph only where quantization
/// changed the float graph (Converts between float and integer ops). Most targets' graph is
/// the float graph itself, whose weights (14 MB for MobileNetV2) were otherwise serialized,
/// hashed and written again for every encoding edit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredQuantize {
    /// The output digest of the float graph quantized: part of the stored bytes, so the same
    /// encodings on another float graph are another output (compile's key reads the digest).
    float_graph: [u8; 32],
    /// `None`: the quantized graph is the float graph.
    graph: Option<Graph>,
    encodings: BTreeMap<crate::ir::TensorId, quant::TensorEncoding>,
}

fn stored_quantize(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<StoredQuantize, Failed> {
    let float_graph = *target_optimize_record(db, project, target)?.output.as_bytes();
    let float = target_optimize_value(db, project, target)?;
    let quantized = compute_quantize(db, project, target)?;
    let keeps = quant::quantize::keeps_float_graph(&quantized, &float);
    Ok(StoredQuantize { float_graph, graph: (!keeps).then_some(quantized.graph), encodings: quantized.encodings })
}

pub(super) fn compute_quantize(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<QuantizedGraph, Failed> {
    let graph = target_optimize_value(db, project, target)?;
    let stats = target_calibrate_value(db, project, target)?;
    let policy = backend(db, project, target)?.quant_policy();
    let overrides = encodings_for(db, project, target, &graph)?;
    let quantized =
        quant::quantize::quantize_with(&graph, stats.as_deref(), target.settings(db), overrides.as_ref(), &policy)
            .map_err(|errors| Failed(errors.into_iter().map(convert::quant_error).collect()))?;
    if let Some(overrides) = &overrides {
        for pinned in quant::pinned::pinned_settings(&quantized, overrides, target.settings(db)) {
            super::memo::warn(db, pinned_setting_warning(db, target, &pinned));
        }
    }
    let unquantized = quant::quantize::other_float_tensors(&graph);
    if let Some(first) = unquantized.first() {
        super::memo::warn(
            db,
            Diag::warning(
                "qairt::quantize::float16_unquantized",
                format!(
                    "target {:?}: {} float16/bfloat16/float64 tensors (the first: {first:?}) run unquantized in their \
                     own type: qairt quantizes float32 tensors",
                    target.name(db),
                    unquantized.len()
                ),
            )
            .with_help(
                "export the model in float32 to quantize them (a float16 model's values are exact in float32), \
                 e.g. torch.onnx.export of the module before .half()",
            ),
        );
    }
    Ok(quantized)
}

/// "weight_bitwidth = 16 changes nothing": every tensor it would apply to has an override.
fn pinned_setting_warning(db: &dyn Db, target: TargetInput, pinned: &quant::pinned::PinnedSetting) -> Diag {
    let source = match target.overrides(db) {
        Some(file) => format!("the overrides in {}", file.path(db).display()),
        None => "the model's own QDQ encodings".to_string(),
    };
    let class = if pinned.key == "weight_bitwidth" { "weight" } else { "activation" };
    let given: Vec<String> = pinned.given.iter().map(|b| format!("{b}")).collect();
    Diag::warning(
        "qairt::quantize::setting_without_effect",
        format!(
            "target {:?}: {} = {} changes nothing: {source} give all {} {class} tensors their encoding, at {} bits",
            target.name(db),
            pinned.key,
            pinned.asked,
            pinned.tensors,
            given.join(" and ")
        ),
    )
    .with_help(format!(
        "for the setting to apply, leave those {class} tensors out of the overrides, or set ignore_encodings = true \
         on the target (qairt sweep --no-overrides does so for a sweep)"
    ))
}

/// The quantized graph: the stored encodings on the stored graph, or on the float graph the
/// stage started from.
#[salsa::tracked(returns(clone))]
pub fn quantize_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<QuantizedGraph>, Failed> {
    let record = quantize_record(db, project, target)?;
    let name = target.name(db).clone();
    let stored = load(db, Stage::Quantize, Some(&name), &record, || stored_quantize(db, project, target))?;
    let graph = match &stored.graph {
        Some(graph) => graph.clone(),
        None => {
            // The key holds the float graph's digest, so a record never points at another's.
            if target_optimize_record(db, project, target)?.output.as_bytes() != &stored.float_graph {
                return Err(convert::internal("the quantize record names another float graph than its key"));
            }
            (*target_optimize_value(db, project, target)?).clone()
        }
    };
    Ok(Arc::new(QuantizedGraph { graph, encodings: stored.encodings.clone() }))
}

// ---------------------------------------------------------------- compile

/// `model.bin` bytes, stored as they are written to `out/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelBin {
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Kept beside the bytes so the record can report it without decoding the program.
    pub peak_activation_bytes: u64,
}

#[salsa::tracked(returns(clone))]
pub fn compile_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let rules = backend(db, project, target)?;
    let upstream = if rules.quantized {
        quantize_record(db, project, target)?.output
    } else {
        target_optimize_record(db, project, target)?.output
    };
    let key = KeyBuilder::new(Stage::Compile)
        .value("quantized", &rules.quantized)
        .digest("graph", &upstream)
        .value("backend", &*rules)
        .finish();
    let name = target.name(db).clone();
    memoize(
        db,
        Stage::Compile,
        Some(&name),
        key,
        || compute_compile(db, project, target),
        |bin: &ModelBin| super::memo::encode(&bin.peak_activation_bytes),
    )
}

fn compute_compile(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<ModelBin, Failed> {
    let rules = backend(db, project, target)?;
    let quantized = if rules.quantized {
        quantize_value(db, project, target)?
    } else {
        let graph = target_optimize_value(db, project, target)?;
        Arc::new(QuantizedGraph { graph: (*graph).clone(), encodings: BTreeMap::new() })
    };
    let program = compile::compile(&quantized, &rules)
        .map_err(|e| convert::compile_error(target.name(db), target.backend(db), e))?;
    Ok(ModelBin { bytes: program.to_bytes(), peak_activation_bytes: program.peak_activation_bytes() })
}

#[salsa::tracked(returns(clone))]
pub fn compile_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<ModelBin>, Failed> {
    let record = compile_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Compile, Some(&name), &record, || compute_compile(db, project, target))
}

// ---------------------------------------------------------------- reference and simulate

/// The reference's action key: the optimized float graph and the verify samples.
fn reference_key(db: &dyn Db, project: ProjectInput) -> Result<super::store::Digest, Failed> {
    let optimized = optimize_record(db, project)?;
    let key = KeyBuilder::new(Stage::Reference).digest("graph", &optimized.output);
    Ok(list_key(key, db, project, project.verify(db), project.verify_max(db)).finish())
}

/// The float model's outputs on every verify sample. A target whose float graph is this
/// graph records them from its own golden run (see `compute_simulate`), so a build runs
/// them on their own only when no such target simulated first.
#[salsa::tracked(returns(clone))]
pub fn reference_record(db: &dyn Db, project: ProjectInput) -> Result<Record, Failed> {
    let key = reference_key(db, project)?;
    memoize(db, Stage::Reference, None, key, || compute_reference(db, project), |_| Vec::new())
}

fn compute_reference(db: &dyn Db, project: ProjectInput) -> Result<RunOutputs, Failed> {
    let graph = optimize_value(db, project)?;
    let group = super::memory_budget::float_run_group(&graph, super::samples::GROUP)?;
    let source = sample_source(db, project, &graph, project.verify(db), project.verify_max(db))?;
    let progress = &*db.services().progress;
    progress.start("reference", source.len() as u64);
    let mut outputs = Vec::with_capacity(source.len());
    super::samples::run_in_groups(
        &source.numbers(),
        group,
        progress,
        |numbers| {
            let (inputs, unreadable) = read_group(&source, numbers);
            let views: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
            let runs = crate::runtime::interpret_group(&graph, &views, &mut |_, _, _| {});
            let mut results: Vec<Result<_, Failed>> =
                runs.into_iter().map(|run| run.map_err(convert::internal)).collect();
            results.extend(unreadable.map(Err));
            results
        },
        |out| {
            outputs.push(out);
            Ok(())
        },
    )?;
    progress.finish();
    Ok(RunOutputs { output_names: output_names(&graph), samples: outputs })
}

fn output_names(graph: &Graph) -> Vec<String> {
    graph.outputs.iter().map(|&id| graph.name(id).to_string()).collect()
}

#[salsa::tracked(returns(clone))]
pub fn reference_value(db: &dyn Db, project: ProjectInput) -> Result<Arc<RunOutputs>, Failed> {
    let record = reference_record(db, project)?;
    load(db, Stage::Reference, None, &record, || compute_reference(db, project))
}

/// The inputs every per-layer comparison of a target depends on besides its run: the target's
/// float graph (the golden run), its encodings (which layers are squashed into their
/// activation), the golden dump, and the verifiers folded besides the sums.
pub(super) fn comparison_key(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
    key: KeyBuilder,
) -> Result<KeyBuilder, Failed> {
    let graph = target_optimize_record(db, project, target)?;
    let encodings =
        if is_quantized(db, project, target)? { Some(quantize_record(db, project, target)?.output) } else { None };
    let folded = project.debug(db).folded_metrics();
    Ok(key
        .digest("float graph", &graph.output)
        .value("encodings", &encodings.map(|d| *d.as_bytes()))
        .value("golden dump", &super::golden_stage::dump_key(db, project))
        .value("folded verifiers", &folded))
}

/// What every per-layer comparison of a target needs: its float graph, the rows, the dump.
pub(super) struct Comparison {
    pub graph: Arc<Graph>,
    pub plan: Plan,
    pub dump: Option<Arc<super::golden_stage::ExternalGolden>>,
    pub samples: SampleSource,
}

pub(super) fn comparison(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Comparison, Failed> {
    let graph = target_optimize_value(db, project, target)?;
    let squashed = if is_quantized(db, project, target)? {
        crate::quant::quantize::squashed_producers(&*quantize_value(db, project, target)?)
    } else {
        BTreeMap::new()
    };
    let samples = sample_source(db, project, &graph, project.verify(db), project.verify_max(db))?;
    let dump = match project.golden(db) {
        Some(input) => {
            Some(super::golden_stage::read_golden(db, input, &super::golden_stage::wanted(&graph), samples.len())?)
        }
        None => None,
    };
    let plan = Plan::new(&graph, &squashed, dump.as_deref(), project.debug(db).folded_metrics());
    Ok(Comparison { graph, plan, dump, samples })
}

#[salsa::tracked(returns(clone))]
pub fn simulate_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let compiled = compile_record(db, project, target)?;
    let key = KeyBuilder::new(Stage::Simulate).digest("model.bin", &compiled.output);
    let key = comparison_key(db, project, target, key)?;
    let key = list_key(key, db, project, project.verify(db), project.verify_max(db)).finish();
    let name = target.name(db).clone();
    memoize(db, Stage::Simulate, Some(&name), key, || compute_simulate(db, project, target), |_| Vec::new())
}

fn compute_simulate(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<SimulateRun, Failed> {
    let bin = compile_value(db, project, target)?;
    let program = Program::from_bytes(&bin.bytes).map_err(convert::internal)?;
    let Comparison { graph, plan, dump, samples } = comparison(db, project, target)?;
    let prepared = crate::runtime::exec::prepare(&program).map_err(convert::internal)?;
    let goldens = Goldens::new(&graph, dump.as_deref());
    let quantized = if is_quantized(db, project, target)? { Some(quantize_value(db, project, target)?) } else { None };
    // A program that replays the float graph bit for bit (a float target's, usually) runs
    // once per sample, its values the golden side too; otherwise each sample runs the program
    // and, for the golden side, the float graph, step by step beside it (`GoldenAndProgram`).
    // Either way groups of samples run the program together, step by step, as many as the
    // memory holds (counting, for a golden run, every float value kept to its end, as the
    // first samples' are for the checker: at most 256 MiB of them per thread).
    let replays = quantized.is_none() && prepared.replays(&graph);
    let group = if replays {
        super::memory_budget::program_group(&program, super::samples::GROUP)?
    } else {
        super::memory_budget::program_and_golden_group(&program, &graph, super::samples::GROUP)?
    };
    // Only the checker and the histograms of a quantized target read float values themselves.
    let kept = if quantized.is_some() { FloatPrefix::samples_for(&graph, samples.len()) } else { 0 };
    // The golden run of a target whose float graph is the optimized one is the reference run:
    // its outputs become the reference's record (same graph, same interpreter, same bits)
    // unless the store has it already.
    let reference = reference_key(db, project)?;
    let records_reference = target_optimize_record(db, project, target)?.output == optimize_record(db, project)?.output
        && super::memo::lookup_record(db, &reference).is_none();
    // A quantized target keeps checkpoints (golden values come from its float run, not a dump).
    let float_graph = target_optimize_record(db, project, target)?.output;
    let base = || {
        let key = KeyBuilder::new(Stage::Simulate)
            .bytes("checkpoint", b"")
            .digest("float graph", &float_graph)
            .value("kept samples", &kept);
        list_key(key, db, project, project.verify(db), project.verify_max(db))
    };
    let cuts = match (&quantized, &dump) {
        (Some(q), None) => {
            checkpoint::cuts(&program, &graph, q, &plan, &base, samples.len(), project.checkpoint_budget(db))
        }
        _ => Vec::new(),
    };
    let run = SimulateSetup {
        db,
        target,
        program: &program,
        prepared: &prepared,
        graph: &graph,
        plan: &plan,
        goldens: &goldens,
        samples: &samples,
        kept,
        replays,
        group,
    };
    if !records_reference {
        for cut in cuts.iter().rev() {
            if let Some((_, stored)) = super::memo::lookup::<Checkpoint>(db, &cut.key)
                && stored.seeds.len() == samples.len()
            {
                return run.resume(cut, &stored, quantized.as_deref());
            }
        }
    }
    run.full(&cuts, quantized.as_deref(), records_reference.then_some(reference))
}

/// Samples of a program that [replays](crate::runtime::exec::Prepared::replays) its float
/// graph, run together step by step ([`Prepared::run_group`](crate::runtime::exec::Prepared::run_group)):
/// a single run per sample whose values are both sides of every row, folded as a run against
/// the interpreter's values would fold them (the same values; each row's fold is its own). A
/// row compared with itself is folded as its value appears, without a copy; only the values
/// of rows compared with another tensor (squashed into it, or with a dumped golden) and of
/// those goldens (`needed`, [`goldens_of_deferred_rows`]) are kept until the run ends.
fn replay_group(
    prepared: &crate::runtime::exec::Prepared<'_>,
    graph: &Graph,
    plan: &Plan,
    goldens: &Goldens<'_>,
    needed: &BTreeSet<&str>,
    numbers: &[usize],
    inputs: &[Vec<Tensor>],
) -> Vec<Result<(Vec<Tensor>, SampleFolds), Failed>> {
    let compared_with_itself = |row: usize, name: &str| compared_with_itself(plan, goldens, row, name);
    let mut kept: Vec<SampleValues> = inputs
        .iter()
        .map(|inputs| {
            let mut kept = SampleValues::default();
            for (&id, tensor) in graph.inputs.iter().zip(inputs) {
                if needed.contains(graph.name(id)) {
                    kept.observe(graph.name(id), tensor);
                }
            }
            kept
        })
        .collect();
    let mut samples: Vec<SampleFolds> = inputs.iter().map(|_| plan.start()).collect();
    let mut deferred: Vec<Vec<(usize, crate::ir::TensorId)>> = inputs.iter().map(|_| Vec::new()).collect();
    let inputs: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
    let outputs = prepared.run_group(&inputs, &mut |k, id, t| {
        let name = graph.name(id);
        match plan.row(name) {
            Some(row) if compared_with_itself(row, name) => {
                if let Some(values) = t.as_f32() {
                    samples[k].add(row, values, values);
                }
            }
            Some(row) => {
                deferred[k].push((row, id));
                kept[k].observe(name, t);
                return;
            }
            None => {}
        }
        if needed.contains(name) {
            kept[k].observe(name, t);
        }
    });
    let finished = outputs.into_iter().zip(samples).zip(deferred).zip(kept).zip(numbers);
    finished
        .map(|((((out, mut sample), deferred), kept), &n)| {
            let out = out.map_err(convert::internal)?;
            for (row, id) in deferred {
                let golden = plan.golden_of(row).and_then(|golden| goldens.value(&kept, n, golden));
                if let (Some(golden), Some(actual)) = (golden, kept.get(graph.name(id))) {
                    sample.add(row, golden, actual);
                }
            }
            Ok((out, sample))
        })
        .collect()
}

/// The inputs of the samples `numbers`, up to the first that cannot be read, and that one's
/// failure: the samples before it run, and its failure comes after their results.
fn read_group(samples: &SampleSource, numbers: &[usize]) -> (Vec<Vec<Tensor>>, Option<Failed>) {
    let mut inputs = Vec::with_capacity(numbers.len());
    for &n in numbers {
        match samples.read(n) {
            Ok(values) => inputs.push(values),
            Err(failed) => return (inputs, Some(failed)),
        }
    }
    (inputs, None)
}

/// A full run of a program that does not replay its float graph (a quantized target's): each
/// sample's golden values come from a float run of the graph, and the program's layers are
/// folded against them as they are produced.
struct GoldenAndProgram<'a> {
    prepared: &'a crate::runtime::exec::Prepared<'a>,
    program: &'a Program,
    graph: &'a Graph,
    plan: &'a Plan,
    goldens: &'a Goldens<'a>,
    /// Program values the checkpoints keep (their seeds).
    seed_union: &'a BTreeSet<crate::ir::TensorId>,
    /// Float values the checkpoints keep.
    float_union: &'a BTreeSet<&'a str>,
    /// Whether each sample's float outputs are kept (they become the reference's record).
    float_outputs: bool,
    /// Samples whose float values the checker and the histograms read (the first ones).
    kept: usize,
    /// Where each step's goldens come from.
    sources: GoldenSources<'a>,
}

/// Where the golden values of a program's rows come from in the float graph, worked out once
/// per simulate: each tensor by name, the node producing each tensor, each program step's
/// golden float tensors (none where the dump holds it), and how many rows compare with each.
struct GoldenSources<'a> {
    by_name: HashMap<&'a str, crate::ir::TensorId>,
    producer: HashMap<crate::ir::TensorId, usize>,
    step_goldens: Vec<Vec<crate::ir::TensorId>>,
    uses: HashMap<crate::ir::TensorId, usize>,
    /// Rows whose values are those of an earlier row compared with the same golden: the
    /// output of a step that passes its input through (a ReLU6 squashed into its
    /// convolution's grid), by row, with its input's row. Their sums are that row's.
    repeats: HashMap<usize, usize>,
}

impl<'a> GoldenSources<'a> {
    fn new(
        graph: &'a Graph,
        prepared: &crate::runtime::exec::Prepared<'_>,
        plan: &Plan,
        goldens: &Goldens<'_>,
    ) -> GoldenSources<'a> {
        let program = prepared.program();
        use crate::ir::TensorId;
        let by_name: HashMap<&str, TensorId> =
            (0..graph.tensors.len()).map(|i| TensorId(i as u32)).map(|id| (graph.name(id), id)).collect();
        let producer =
            graph.nodes.iter().enumerate().flat_map(|(i, node)| node.outputs.iter().map(move |&id| (id, i))).collect();
        let step_goldens: Vec<Vec<TensorId>> = program
            .steps
            .iter()
            .map(|step| {
                let rows =
                    step.outputs.iter().filter_map(|&id| program.tensor_name(id).and_then(|name| plan.row(name)));
                let golden_names = rows.filter_map(|row| plan.golden_of(row)).filter(|name| !goldens.is_dumped(name));
                golden_names.filter_map(|name| by_name.get(name).copied()).collect()
            })
            .collect();
        let mut uses: HashMap<TensorId, usize> = HashMap::new();
        for &id in step_goldens.iter().flatten() {
            *uses.entry(id).or_default() += 1;
        }
        let row_of = |id: TensorId| program.tensor_name(id).and_then(|name| plan.row(name));
        let repeats = (program.steps.iter().enumerate())
            .filter(|&(index, _)| prepared.passes_through(index))
            .filter_map(|(_, step)| Some((row_of(*step.outputs.first()?)?, row_of(*step.inputs.first()?)?)))
            .filter(|&(row, from)| plan.golden_of(row).is_some() && plan.golden_of(row) == plan.golden_of(from))
            .collect();
        GoldenSources { by_name, producer, step_goldens, uses, repeats }
    }
}

impl GoldenAndProgram<'_> {
    /// Samples `numbers` (with their `inputs`): the program on all of them together, step by
    /// step ([`Prepared::run_group_with`](crate::runtime::exec::Prepared::run_group_with):
    /// each sample's values are those of its run alone), and their golden float runs together
    /// node by node ([`GroupRun`](crate::runtime::interpret::GroupRun)), advanced before each
    /// step as far as the goldens of that step's rows, so that each layer is folded into its
    /// sample's row as it is produced, against a golden value computed a moment before (still
    /// in the cache: running all the float runs first, then the program, read each group's 38 MB
    /// of MobileNetV2 goldens back from memory; this way `htp` simulate took a tenth less). A
    /// golden value is dropped once its rows are folded, unless the checkpoints, the checker or
    /// the histograms keep it. One result per sample, in order; a sample whose float run fails
    /// gives that failure.
    fn group(&self, numbers: &[usize], inputs: Vec<Vec<Tensor>>) -> Vec<Result<SampleResult, Failed>> {
        use crate::ir::{DType, TensorId};
        let (graph, plan, goldens, program) = (self.graph, self.plan, self.goldens, self.program);
        let views: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
        // The float values kept to the end: all of them for the samples the checker and the
        // histograms read, else the checkpoints' and the graph outputs. The golden value of a
        // row is kept only until the rows comparing with it are folded.
        let keep_all = numbers.iter().any(|&n| n < self.kept);
        let is_float = |id: TensorId| graph.info(id).dtype == DType::F32;
        let kept_to_end = |id: TensorId| is_float(id) && (keep_all || self.float_union.contains(graph.name(id)));
        let GoldenSources { by_name, producer, step_goldens, uses, repeats } = &self.sources;
        let retain = |id: TensorId| kept_to_end(id) || (is_float(id) && uses.contains_key(&id));
        let float = std::cell::RefCell::new(crate::runtime::interpret::GroupRun::start(
            graph,
            &views,
            &retain,
            &mut |_, _, _| {},
        ));
        let mut left: Vec<HashMap<TensorId, usize>> = views.iter().map(|_| uses.clone()).collect();
        let mut folds: Vec<SampleFolds> = views.iter().map(|_| plan.start()).collect();
        let mut keeps: Vec<Captured> = views.iter().map(|_| Captured::default()).collect();
        let empty = SampleValues::default();
        let outs = self.prepared.run_group_with(
            &views,
            &mut |index| {
                // The float run reaches the nodes producing this step's goldens, so that they are
                // still in the cache when the step's results are compared with them.
                if let Some(&last) = step_goldens[index].iter().filter_map(|id| producer.get(id)).max() {
                    float.borrow_mut().run_through(last + 1, &mut |_, _, _| {});
                }
            },
            &mut |j, id, t| {
                if self.seed_union.contains(&id) {
                    keeps[j].seeds.insert(id, t.clone());
                }
                let Some(row) = program.tensor_name(id).and_then(|name| plan.row(name)) else { return };
                let Some(golden_name) = plan.golden_of(row) else { return };
                let golden_id = by_name.get(golden_name).copied();
                let repeated = repeats.get(&row).is_some_and(|&from| folds[j].repeat(row, from));
                if !repeated {
                    let run = float.borrow();
                    let golden = match golden_id.filter(|_| !goldens.is_dumped(golden_name)) {
                        Some(gid) => run.value(j, gid).and_then(Tensor::as_f32),
                        None => goldens.value(&empty, numbers[j], golden_name),
                    };
                    if let (Some(golden), Some(actual)) = (golden, t.as_f32()) {
                        folds[j].add(row, golden, actual);
                    }
                }
                if let Some(gid) = golden_id
                    && let Some(count) = left[j].get_mut(&gid)
                {
                    *count = count.saturating_sub(1);
                    if *count == 0 && !kept_to_end(gid) {
                        float.borrow_mut().release(j, gid);
                    }
                }
            },
        );
        let floats = float.into_inner().finish(&retain);
        floats
            .into_iter()
            .zip(outs.into_iter().zip(folds).zip(keeps))
            .zip(inputs)
            .zip(numbers)
            .map(|(((float, ((out, sample), mut keep)), inputs), &n)| {
                let (float_out, retained) = float.map_err(convert::internal)?;
                let float = SampleValues::by_name(graph, retained);
                let out = out.map_err(convert::internal)?;
                for &name in self.float_union {
                    if let Some(values) = float.get(name) {
                        keep.float.insert(name.to_string(), values.to_vec());
                    }
                }
                let float_out = self.float_outputs.then_some(float_out);
                Ok((out, float_out, sample, keep, (n < self.kept).then_some((inputs, float))))
            })
            .collect()
    }
}

/// Whether row `row` (layer `name`) of a replaying run is compared with its own value.
fn compared_with_itself(plan: &Plan, goldens: &Goldens<'_>, row: usize, name: &str) -> bool {
    plan.golden_of(row) == Some(name) && !goldens.is_dumped(name)
}

/// The golden tensors of the rows a replaying run compares with another value.
fn goldens_of_deferred_rows<'p>(plan: &'p Plan, goldens: &Goldens<'_>) -> BTreeSet<&'p str> {
    let (rows, _) = plan.describe();
    rows.iter()
        .enumerate()
        .filter(|&(row, &(name, _))| !compared_with_itself(plan, goldens, row, name))
        .map(|(_, &(_, golden))| golden)
        .collect()
}

/// What a simulate run works on.
struct SimulateSetup<'a> {
    db: &'a dyn Db,
    target: TargetInput,
    program: &'a Program,
    prepared: &'a crate::runtime::exec::Prepared<'a>,
    graph: &'a Graph,
    plan: &'a Plan,
    goldens: &'a Goldens<'a>,
    samples: &'a SampleSource,
    /// Samples whose float values the checker and the histograms read (the first ones).
    kept: usize,
    /// Whether the program replays the float graph (see `compute_simulate`).
    replays: bool,
    /// Samples a pool thread runs together (see `compute_simulate`).
    group: usize,
}

/// One sample of a full run: its outputs, its float outputs when they become the reference,
/// its folds, what the checkpoints keep of it, and (for the first samples) its float values.
type SampleResult = (Vec<Tensor>, Option<Vec<Tensor>>, SampleFolds, Captured, Option<(Vec<Tensor>, SampleValues)>);

/// What a full run keeps of one sample for the checkpoints.
#[derive(Default)]
struct Captured {
    seeds: HashMap<crate::ir::TensorId, Tensor>,
    float: HashMap<String, Vec<f32>>,
}

impl SimulateSetup<'_> {
    fn input_names(&self) -> Vec<String> {
        self.graph.inputs.iter().map(|&id| self.graph.name(id).to_string()).collect()
    }

    /// Every step of every sample: the float graph for the goldens, then the program folding
    /// each layer; records the reference under `reference` and a checkpoint at each cut.
    fn full(
        &self,
        cuts: &[Cut],
        quantized: Option<&QuantizedGraph>,
        reference: Option<super::store::Digest>,
    ) -> Result<SimulateRun, Failed> {
        let (db, graph, plan, samples) = (self.db, self.graph, self.plan, self.samples);
        // The pool's closures must not capture `self`, which holds the (single-threaded) database.
        let (program, prepared, goldens, kept) = (self.program, self.prepared, self.goldens, self.kept);
        // Each cut's seeds and float values are among the union's (the earliest cut keeps the
        // most float values).
        let seed_union: BTreeSet<crate::ir::TensorId> = cuts.iter().flat_map(|c| c.seeds.iter().copied()).collect();
        let float_union: BTreeSet<&str> = cuts.iter().flat_map(|c| c.suffix_float.iter().map(String::as_str)).collect();
        let progress = &*db.services().progress;
        progress.start(&format!("simulate {}", self.target.name(db)), samples.len() as u64);
        let mut outputs = Vec::with_capacity(samples.len());
        let mut float_outputs = Vec::new();
        let mut captured = Vec::new();
        let mut folds = plan.start();
        let mut float_prefix = FloatPrefix::default();
        let replays = self.replays;
        let needed = if replays { goldens_of_deferred_rows(plan, goldens) } else { BTreeSet::new() };
        let mut consume = |(out, float_out, sample, keep, kept): SampleResult| {
            outputs.push(out);
            float_outputs.extend(float_out);
            if !cuts.is_empty() {
                captured.push(keep);
            }
            folds.merge(&sample);
            if let Some((inputs, float)) = kept {
                float_prefix.append(graph, &inputs, float);
            }
            Ok(())
        };
        let group = self.group;
        if replays {
            super::samples::run_in_groups(
                &samples.numbers(),
                group,
                progress,
                |numbers| {
                    let (inputs, unreadable) = read_group(samples, numbers);
                    let run = replay_group(prepared, graph, plan, goldens, &needed, &numbers[..inputs.len()], &inputs);
                    let mut results: Vec<Result<SampleResult, Failed>> = run
                        .into_iter()
                        .map(|result| {
                            let (out, sample) = result?;
                            let float_out = reference.is_some().then(|| out.clone());
                            Ok((out, float_out, sample, Captured::default(), None))
                        })
                        .collect();
                    results.extend(unreadable.map(Err));
                    results
                },
                &mut consume,
            )?;
        } else {
            let run = GoldenAndProgram {
                prepared,
                program,
                graph,
                plan,
                goldens,
                seed_union: &seed_union,
                float_union: &float_union,
                float_outputs: reference.is_some(),
                kept,
                sources: GoldenSources::new(graph, prepared, plan, goldens),
            };
            super::samples::run_in_groups(
                &samples.numbers(),
                group,
                progress,
                |numbers| {
                    let (inputs, unreadable) = read_group(samples, numbers);
                    let mut results = run.group(&numbers[..inputs.len()], inputs);
                    results.extend(unreadable.map(Err));
                    results
                },
                &mut consume,
            )?;
        }
        let activations = quantized.map(|q| Activations::of(&float_prefix, q, &self.input_names()));
        progress.finish();
        if let Some(key) = reference {
            let run = RunOutputs { output_names: output_names(graph), samples: float_outputs };
            memoize(db, Stage::Reference, None, key, || Ok(run), |_| Vec::new())?;
        }
        let name = self.target.name(db).clone();
        for cut in cuts {
            let stored = Checkpoint {
                seeds: captured
                    .iter()
                    .map(|c| cut.seeds.iter().filter_map(|id| c.seeds.get(id).cloned()).collect())
                    .collect(),
                suffix_float: captured
                    .iter()
                    .map(|c| cut.suffix_float.iter().map(|n| c.float.get(n).cloned().unwrap_or_default()).collect())
                    .collect(),
                prefix_folds: folds.restricted(&cut.prefix_rows),
                prefix_activations: activations.as_ref().map(|a| checkpoint::prefix_activations(a, &cut.suffix_float)),
            };
            // A seed the run did not observe (none is expected) makes the checkpoint unusable.
            if stored.seeds.iter().all(|s| s.len() == cut.seeds.len()) {
                // A checkpoint only saves later work: failing to store one (a full disk) is a
                // warning, not a failed simulate.
                if let Err(failed) = memoize(db, Stage::Simulate, Some(&name), cut.key, || Ok(stored), |_| Vec::new()) {
                    for diag in failed.0 {
                        let message = format!("a simulate checkpoint was not stored: {}", diag.message);
                        super::memo::warn(db, Diag::warning("qairt::cache::checkpoint", message));
                    }
                }
            }
        }
        Ok(SimulateRun {
            outputs: RunOutputs { output_names: output_names(graph), samples: outputs },
            layers: plan.finish(folds).map_err(convert::internal)?,
            activations,
        })
    }

    /// Steps `cut.step..` of every sample from a checkpoint: the rows before the cut, and the
    /// profiles and histograms of the tensors before it, come from the checkpoint; the rest is
    /// computed as a full run computes it (same values, same order, same bits).
    fn resume(
        &self,
        cut: &Cut,
        stored: &Checkpoint,
        quantized: Option<&QuantizedGraph>,
    ) -> Result<SimulateRun, Failed> {
        let (db, graph, plan, samples) = (self.db, self.graph, self.plan, self.samples);
        let (program, prepared, goldens, kept) = (self.program, self.prepared, self.goldens, self.kept);
        let steps = program.steps.len();
        let progress = &*db.services().progress;
        let label = format!("simulate {} from step {} of {}", self.target.name(db), cut.step + 1, steps);
        progress.start(&label, samples.len() as u64);
        let seed_index: HashMap<crate::ir::TensorId, usize> =
            cut.seeds.iter().enumerate().map(|(k, &id)| (id, k)).collect();
        let mut outputs = Vec::with_capacity(samples.len());
        let mut folds = plan.start();
        let mut float_prefix = FloatPrefix::default();
        super::samples::run_in_order(
            &samples.numbers(),
            progress,
            |&n| {
                let inputs = samples.read(n)?;
                let (seeds, suffix) = match (stored.seeds.get(n), stored.suffix_float.get(n)) {
                    (Some(seeds), Some(suffix)) => (seeds, suffix),
                    _ => return Err(convert::internal(format!("the checkpoint has no sample {n}"))),
                };
                let mut float = SampleValues::default();
                for (name, values) in cut.suffix_float.iter().zip(suffix) {
                    if !values.is_empty() {
                        float.insert(name, values.clone());
                    }
                }
                let mut sample = plan.start();
                let seed = |id| seed_index.get(&id).and_then(|&k| seeds.get(k)).cloned();
                let out = prepared
                    .run_steps(cut.step..steps, &inputs, &seed, &mut |id, t| {
                        let Some(row) = program.tensor_name(id).and_then(|name| plan.row(name)) else { return };
                        let golden = plan.golden_of(row).and_then(|name| goldens.value(&float, n, name));
                        if let (Some(golden), Some(actual)) = (golden, t.as_f32()) {
                            sample.add(row, golden, actual);
                        }
                    })
                    .map_err(convert::internal)?;
                Ok((out, sample, (n < kept).then_some(float)))
            },
            |(out, sample, kept)| {
                outputs.push(out);
                folds.merge(&sample);
                if let Some(float) = kept {
                    float_prefix.append(graph, &[], float);
                }
                Ok(())
            },
        )?;
        // The rows before the cut as the checkpoint has them, the others from this run.
        let mut layers = stored.prefix_folds.clone();
        for (row, &before) in cut.prefix_rows.iter().enumerate() {
            if !before {
                layers.take_row(row, &folds);
            }
        }
        let activations = match (quantized, &stored.prefix_activations) {
            (Some(q), Some(before)) => {
                let after = Activations::of(&float_prefix, q, &self.input_names());
                let mut all = before.clone();
                all.profiles.extend(after.profiles);
                all.histograms.extend(after.histograms);
                Some(all)
            }
            _ => None,
        };
        progress.finish();
        Ok(SimulateRun {
            outputs: RunOutputs { output_names: output_names(graph), samples: outputs },
            layers: plan.finish(layers).map_err(convert::internal)?,
            activations,
        })
    }
}

#[salsa::tracked(returns(clone))]
pub fn simulate_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<SimulateRun>, Failed> {
    let record = simulate_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Simulate, Some(&name), &record, || compute_simulate(db, project, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorId;
    use crate::quant::stats::TensorStats;

    fn stats(values: &[&[f32]]) -> CalibrationStats {
        let tensors = values.iter().enumerate().map(|(i, v)| (TensorId(i as u32), TensorStats::of_values(v))).collect();
        CalibrationStats { tensors }
    }

    /// A group merged on its pool thread gives what merging each sample in order gives (the
    /// others left empty, so that merging them too changes nothing); a group with a failure
    /// keeps each sample's own result.
    #[test]
    fn a_group_merged_where_it_ran_gives_the_sample_by_sample_merge() {
        let samples = [
            stats(&[&[1.0, -2.0, 0.5], &[100.0]]),
            stats(&[&[-7.5, 3.0], &[1e-6, 2e6]]),
            stats(&[&[0.0, -0.0, 9.0], &[-3.0]]),
        ];
        let mut in_order = CalibrationStats::default();
        for sample in &samples {
            in_order.merge(sample);
        }
        let mut results: Vec<Result<CalibrationStats, Failed>> = samples.iter().cloned().map(Ok).collect();
        merge_into_first(&mut results);
        let mut taken = CalibrationStats::default();
        for result in &results {
            taken.merge(result.as_ref().unwrap());
        }
        assert_eq!(taken, in_order);
        assert!(results[1..].iter().all(|r| r.as_ref().unwrap().tensors.is_empty()));

        let mut failed: Vec<Result<CalibrationStats, Failed>> =
            vec![Ok(samples[0].clone()), Err(convert::internal("unreadable")), Ok(samples[2].clone())];
        merge_into_first(&mut failed);
        assert_eq!(failed[0].as_ref().unwrap(), &samples[0]);
        assert_eq!(failed[2].as_ref().unwrap(), &samples[2]);
    }
}
