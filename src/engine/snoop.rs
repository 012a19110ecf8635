//! The runs the accuracy debugger compares besides `simulate`:
//!
//! - the **target reference**: the float run of the graph a target quantizes (its CLE-equalized
//!   graph, or the shared optimized graph), whose intermediate tensors are the golden values of
//!   the per-layer table. Equalization rescales channels, so comparing an equalized layer with
//!   the unequalized float model would report differences that are not quantization error. When
//!   the graphs are the same the action key is the shared reference's, so nothing re-runs.
//! - the **layerwise** run: every step of `model.bin` alone, its inputs taken from the target
//!   reference and quantized with their own encodings.
//! - the **cumulative** run (the debugger's cumulative-layerwise): the quantized program from a
//!   partition point to the end, with every tensor before the point taken from the target
//!   reference; after each layer whose output differs from the float run the program is
//!   partitioned again just after it, as the vendor tool does ("partitioned at every layer that
//!   does not have a 100% match"). The partition points depend only on the two runs, never on a
//!   metric or threshold, so changing those re-runs only the comparison.
//!
//! With `[verify] golden` the dump takes the target reference's place wherever it holds a
//! tensor, for the seeds as for the comparison: each op then starts from the inputs the other
//! tool gave it, so a layerwise row measures that op alone against the other tool (an
//! onnxruntime run of `model.qdq.onnx`, a dump from the device), not the op plus everything the
//! two runs disagreed on before it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::compile::Program;
use crate::ir::{Op, Tensor, TensorId};
use crate::runtime::exec::{Prepared, prepare};
use crate::verify::Mode;

use super::convert;
use super::db::{Db, Failed, NoProgress, ProjectInput, Stage, TargetInput};
use super::golden_stage;
use super::inputs::read_samples;
use super::memo::{KeyBuilder, Record, load, memoize};
use super::stages::{self, LayerValues, RunOutputs};

// ---------------------------------------------------------------- target reference

#[salsa::tracked(returns(clone))]
pub fn target_reference_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let graph = stages::target_optimize_record(db, project, target)?;
    // The same key form as `reference_record`: equal graphs share one action.
    let key = KeyBuilder::new(Stage::Reference).digest("graph", &graph.output);
    let key = stages::list_key(key, db, project.verify(db), project.verify_max(db)).finish();
    let name = target.name(db).clone();
    memoize(db, Stage::Reference, Some(&name), key, || compute_target_reference(db, project, target), |_| Vec::new())
}

fn compute_target_reference(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<RunOutputs, Failed> {
    let graph = stages::target_optimize_value(db, project, target)?;
    stages::run_verify_samples(db, project, &graph, "reference", |inputs, observe| {
        crate::runtime::interpret(&graph, inputs, observe).map_err(convert::internal)
    })
}

#[salsa::tracked(returns(clone))]
pub fn target_reference_value(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
) -> Result<Arc<RunOutputs>, Failed> {
    let record = target_reference_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Reference, Some(&name), &record, || compute_target_reference(db, project, target))
}

// ---------------------------------------------------------------- layerwise and cumulative

/// The quantized per-layer values of a layerwise or cumulative run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnoopRun {
    pub mode: Mode,
    /// Every float layer of the graph, samples back to back, graph order.
    pub layers: Vec<LayerValues>,
    /// Cumulative: the layers after which the run was partitioned (their output differs from
    /// the float run).
    pub partitioned: Vec<String>,
    /// Cumulative: for each layer, the run (partition segment) its row comes from.
    pub segment_of: BTreeMap<String, usize>,
    /// Cumulative: each segment's graph outputs, `segments[s][k]` = output `k`, samples back
    /// to back.
    pub segments: Vec<Vec<Vec<f32>>>,
}

#[salsa::tracked(returns(clone))]
pub fn snoop_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let mode = project.debug(db).mode;
    let compiled = stages::compile_record(db, project, target)?;
    let golden = target_reference_record(db, project, target)?;
    let key = KeyBuilder::new(Stage::Simulate)
        .value("mode", &mode)
        .digest("model.bin", &compiled.output)
        .digest("golden", &golden.output)
        .value("golden dump", &golden_stage::dump_key(db, project));
    let key = stages::list_key(key, db, project.verify(db), project.verify_max(db)).finish();
    let name = target.name(db).clone();
    memoize(db, Stage::Simulate, Some(&name), key, || compute_snoop(db, project, target), |_| Vec::new())
}

#[salsa::tracked(returns(clone))]
pub fn snoop_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<SnoopRun>, Failed> {
    let record = snoop_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Simulate, Some(&name), &record, || compute_snoop(db, project, target))
}

fn compute_snoop(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<SnoopRun, Failed> {
    let mode = project.debug(db).mode;
    let bin = stages::compile_value(db, project, target)?;
    let program = Program::from_bytes(&bin.bytes).map_err(convert::internal)?;
    let prepared = prepare(&program).map_err(convert::internal)?;
    let reference = target_reference_value(db, project, target)?;
    let graph = stages::target_optimize_value(db, project, target)?;
    let samples = read_samples(db, &graph, project.verify(db), project.verify_max(db))?;
    // The float run's layers, or (with a dump) a copy with the dump's values put in.
    let golden: std::borrow::Cow<'_, [LayerValues]> = match project.golden(db) {
        Some(input) => {
            let dump = golden_stage::read_golden(db, input, &golden_stage::wanted(&graph), samples.len())?;
            std::borrow::Cow::Owned(golden_stage::with_dump(&reference.layers, &dump))
        }
        None => std::borrow::Cow::Borrowed(&reference.layers),
    };
    let seeds = Seeds::new(&program, &golden);
    let progress = &db.services().progress;
    let label = format!("{} {}", mode.name(), target.name(db));
    let mut recorder = Recorder::new(&golden);
    let mut run = SnoopRun {
        mode,
        layers: Vec::new(),
        partitioned: Vec::new(),
        segment_of: BTreeMap::new(),
        segments: Vec::new(),
    };
    match mode {
        Mode::Oneshot => return Err(convert::internal("the oneshot mode has no separate run")),
        Mode::Layerwise => {
            progress.start(&label, samples.len() as u64);
            let numbered: Vec<(usize, &Vec<Tensor>)> = samples.iter().enumerate().collect();
            super::samples::run_in_order(
                &numbered,
                &**progress,
                |&(n, inputs)| {
                    // Integer and bool tensors have no float reference to seed them with: they
                    // keep the values this run computes (from seeded inputs), as the cumulative
                    // mode does.
                    let computed = RefCell::new(BTreeMap::new());
                    let mut observed: Vec<(TensorId, Tensor)> = Vec::new();
                    for step in 0..program.steps.len() {
                        prepared
                            .run_steps(step..step + 1, inputs, &|id| seeds.sample(id, n, &computed), &mut |id, t| {
                                if t.as_f32().is_some() {
                                    observed.push((id, t.clone()));
                                }
                                keep_non_float(&computed, id, t);
                            })
                            .map_err(convert::internal)?;
                    }
                    Ok(observed)
                },
                |observed| {
                    for (id, t) in &observed {
                        recorder.observe(*id, t, &program);
                    }
                    Ok(())
                },
            )?;
            progress.finish();
        }
        Mode::Cumulative => {
            progress.start(&label, program.steps.len() as u64);
            cumulative(&prepared, &program, &samples, &seeds, &golden, &mut recorder, &mut run, &|| {
                progress.advance()
            })?;
            progress.finish();
        }
    }
    run.layers = recorder.finish(&golden);
    Ok(run)
}

/// The cumulative algorithm (see the module docs). `advance` ticks once per step passed.
fn cumulative(
    prepared: &Prepared<'_>,
    program: &Program,
    samples: &[Vec<Tensor>],
    seeds: &Seeds,
    golden: &[LayerValues],
    recorder: &mut Recorder,
    run: &mut SnoopRun,
    advance: &dyn Fn(),
) -> Result<(), Failed> {
    let golden_of: BTreeMap<&str, &LayerValues> = golden.iter().map(|l| (l.name.as_str(), l)).collect();
    // Per sample, the integer and bool tensors of the latest run (a segment reads those of
    // earlier steps from the run before it).
    // (Each sample's map is only touched by the one pool thread running that sample.)
    let computed: Vec<Mutex<BTreeMap<TensorId, Tensor>>> = samples.iter().map(|_| Mutex::default()).collect();
    let numbered: Vec<(usize, &Vec<Tensor>)> = samples.iter().enumerate().collect();
    let mut start = 0;
    while start < program.steps.len() {
        // One run from `start` over every sample (side by side), keeping every step output.
        let mut values: BTreeMap<TensorId, Vec<f32>> = BTreeMap::new();
        let mut outputs: Vec<Vec<f32>> = vec![Vec::new(); program.outputs.len()];
        super::samples::run_in_order(
            &numbered,
            &NoProgress,
            |&(n, inputs)| {
                let lock = || computed[n].lock().unwrap_or_else(|p| p.into_inner());
                let mine = RefCell::new(std::mem::take(&mut *lock()));
                let mut observed: Vec<(TensorId, Vec<f32>)> = Vec::new();
                let result = prepared
                    .run_steps(start..program.steps.len(), inputs, &|id| seeds.sample(id, n, &mine), &mut |id, t| {
                        if let Some(data) = t.as_f32() {
                            observed.push((id, data.to_vec()));
                        }
                        keep_non_float(&mine, id, t);
                    })
                    .map_err(convert::internal)?;
                *lock() = mine.into_inner();
                Ok((observed, result))
            },
            |(observed, result)| {
                for (id, data) in observed {
                    values.entry(id).or_default().extend_from_slice(&data);
                }
                for (k, t) in result.iter().enumerate() {
                    if let Some(out) = outputs.get_mut(k) {
                        out.extend(t.to_f32_vec());
                    }
                }
                Ok(())
            },
        )?;
        let segment = run.segments.len();
        run.segments.push(outputs);
        let mut next = program.steps.len();
        for (index, step) in program.steps.iter().enumerate().skip(start) {
            advance();
            let mut differs = false;
            for &id in &step.outputs {
                let Some(name) = program.tensor_name(id) else { continue };
                let (Some(layer), Some(value)) = (golden_of.get(name), values.get(&id)) else { continue };
                recorder.set(name, value.clone());
                run.segment_of.insert(name.to_string(), segment);
                differs |= layer.values.len() != value.len()
                    || layer.values.iter().zip(value).any(|(g, q)| g.to_bits() != q.to_bits());
            }
            if differs {
                for &id in &step.outputs {
                    if let Some(name) = program.tensor_name(id).filter(|n| golden_of.contains_key(n)) {
                        run.partitioned.push(name.to_string());
                    }
                }
                next = index + 1;
                break;
            }
        }
        start = next;
    }
    Ok(())
}

/// Golden (float) values of the program's activations, per sample, by program tensor id.
/// Tensors the float graph does not have (the convert ops mixed precision inserts) take the
/// value of the tensor they convert: in float a conversion is the identity.
struct Seeds {
    /// Tensor id -> (values of every sample back to back, elements per sample).
    values: BTreeMap<TensorId, (Arc<[f32]>, usize)>,
}

impl Seeds {
    fn new(program: &Program, golden: &[LayerValues]) -> Seeds {
        let by_name: BTreeMap<&str, &LayerValues> = golden.iter().map(|l| (l.name.as_str(), l)).collect();
        let mut values = BTreeMap::new();
        for step in &program.steps {
            for (k, &id) in step.outputs.iter().enumerate() {
                let Some(name) = program.tensor_name(id) else { continue };
                if let Some(layer) = by_name.get(name) {
                    let size: usize = layer.shape.iter().product();
                    values.insert(id, (Arc::from(layer.values.as_slice()), size));
                } else if step.op == Op::Convert(crate::ops::Convert)
                    && let Some(source) = step.inputs.get(k).and_then(|i| values.get(i)).cloned()
                {
                    values.insert(id, source);
                }
            }
        }
        Seeds { values }
    }

    /// Sample `n`'s seed of `id`: its float reference value, else (an integer or bool tensor)
    /// the value the run computed for it.
    fn sample(&self, id: TensorId, n: usize, computed: &RefCell<BTreeMap<TensorId, Tensor>>) -> Option<Tensor> {
        match self.values.get(&id) {
            Some((values, size)) => {
                values.get(n * size..(n + 1) * size).map(|v| Tensor::from_f32(vec![*size], v.to_vec()))
            }
            None => computed.borrow().get(&id).cloned(),
        }
    }
}

/// Records `tensor` when it is not float32 (float32 tensors are seeded from the reference).
fn keep_non_float(computed: &RefCell<BTreeMap<TensorId, Tensor>>, id: TensorId, tensor: &Tensor) {
    if tensor.as_f32().is_none() {
        computed.borrow_mut().insert(id, tensor.clone());
    }
}

/// Collects the quantized values of every float layer, sample by sample.
struct Recorder {
    values: BTreeMap<String, Vec<f32>>,
}

impl Recorder {
    fn new(layers: &[LayerValues]) -> Recorder {
        Recorder { values: layers.iter().map(|l| (l.name.clone(), Vec::new())).collect() }
    }

    /// Layerwise: appends sample `n`'s value (samples arrive in order).
    fn observe(&mut self, id: TensorId, tensor: &Tensor, program: &Program) {
        let Some(name) = program.tensor_name(id) else { return };
        if let (Some(values), Some(data)) = (self.values.get_mut(name), tensor.as_f32()) {
            values.extend_from_slice(data);
        }
    }

    /// Cumulative: every sample's values at once.
    fn set(&mut self, name: &str, values: Vec<f32>) {
        if let Some(slot) = self.values.get_mut(name) {
            *slot = values;
        }
    }

    fn finish(mut self, layers: &[LayerValues]) -> Vec<LayerValues> {
        layers
            .iter()
            .map(|l| LayerValues {
                name: l.name.clone(),
                op: l.op.clone(),
                shape: l.shape.clone(),
                values: self.values.remove(&l.name).unwrap_or_default(),
            })
            .collect()
    }
}
