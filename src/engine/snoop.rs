//! The runs the accuracy debugger compares besides `simulate`:
//!
//! - the **layerwise** run: every step of `model.bin` alone, its inputs taken from the target's
//!   float run (its CLE-equalized graph, or the shared optimized graph: equalization rescales
//!   channels, so the unequalized model would show differences that are not quantization
//!   error) and quantized with their own encodings. Sample by sample: each sample's float run,
//!   then each step seeded from it, folded into its row (`compare.rs`).
//! - the **cumulative** run (the debugger's cumulative-layerwise): the quantized program from a
//!   partition point to the end, with every tensor before the point taken from the float run;
//!   after each layer whose output differs from the float run the program is partitioned again
//!   just after it, as the vendor tool does ("partitioned at every layer that does not have a
//!   100% match"). The partition points depend only on the two runs, never on a metric or
//!   threshold, so changing those re-runs only the comparison. A partition decision needs every
//!   sample, so this run holds the float activations of every sample while it runs (not in the
//!   cache): its memory grows with samples x activations, the layerwise and oneshot modes' does
//!   not.
//!
//! With `[verify] golden` the dump takes the float run's place wherever it holds a tensor, for
//! the seeds as for the comparison: each op then starts from the inputs the other tool gave it,
//! so a layerwise row measures that op alone against the other tool (an onnxruntime run of
//! `model.qdq.onnx`, a dump from the device), not the op plus everything the two runs disagreed
//! on before it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::compile::Program;
use crate::ir::{Op, Tensor, TensorId};
use crate::runtime::exec::{Prepared, prepare};
use crate::verify::{LayerFold, Mode};

use super::compare::{Goldens, Plan, SampleFolds, SampleValues};
use super::convert;
use super::db::{Db, Failed, NoProgress, ProjectInput, Stage, TargetInput};
use super::inputs::SampleSource;
use super::memo::{KeyBuilder, Record, load, memoize};
use super::stages;

/// The per-layer rows of a layerwise or cumulative run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnoopRun {
    pub mode: Mode,
    /// One row per float layer (graph order): each layer's quantized value in this mode
    /// against the golden one, folded over the samples.
    pub layers: Vec<(String, LayerFold)>,
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
    let key = KeyBuilder::new(Stage::Simulate).value("mode", &mode).digest("model.bin", &compiled.output);
    let key = stages::comparison_key(db, project, target, key)?;
    let key = stages::list_key(key, db, project, project.verify(db), project.verify_max(db)).finish();
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
    let stages::Comparison { graph, plan, dump, samples } = stages::comparison(db, project, target)?;
    // Each sample runs (parts of) the program and a golden float run that keeps its values.
    super::memory_budget::check_program_and_golden_run(&program, &graph)?;
    let prepared = prepare(&program).map_err(convert::internal)?;
    let goldens = Goldens::new(&graph, dump.as_deref());
    let seeds = Seeds::new(&program, &graph);
    let float_run = |inputs: &[Tensor]| -> Result<SampleValues, Failed> {
        let (_, float) = SampleValues::float_run(&graph, inputs).map_err(convert::internal)?;
        Ok(float)
    };
    let progress = &db.services().progress;
    let label = format!("{} {}", mode.name(), target.name(db));
    let mut run = SnoopRun {
        mode,
        layers: Vec::new(),
        partitioned: Vec::new(),
        segment_of: BTreeMap::new(),
        segments: Vec::new(),
    };
    let folds = match mode {
        Mode::Oneshot => return Err(convert::internal("the oneshot mode has no separate run")),
        Mode::Layerwise => {
            progress.start(&label, samples.len() as u64);
            let mut folds = plan.start();
            super::samples::run_in_order(
                &samples.numbers(),
                &**progress,
                |&n| {
                    let inputs = samples.read(n)?;
                    let float = float_run(&inputs)?;
                    let golden = |name: &str| goldens.value(&float, n, name);
                    // Integer and bool tensors have no float reference to seed them with: they
                    // keep the values this run computes (from seeded inputs), as the cumulative
                    // mode does.
                    let computed = RefCell::new(BTreeMap::new());
                    let mut sample = plan.start();
                    for step in 0..program.steps.len() {
                        prepared
                            .run_steps(
                                step..step + 1,
                                &inputs,
                                &|id| seeds.sample(id, &golden, &computed),
                                &mut |id, t| {
                                    fold_row(&plan, &program, &golden, &mut sample, id, t);
                                    keep_non_float(&computed, id, t);
                                },
                            )
                            .map_err(convert::internal)?;
                    }
                    Ok(sample)
                },
                |sample| {
                    folds.merge(&sample);
                    Ok(())
                },
            )?;
            progress.finish();
            folds
        }
        Mode::Cumulative => {
            progress.start(&label, (samples.len() + program.steps.len()) as u64);
            let mut floats = Vec::with_capacity(samples.len());
            super::samples::run_in_order(
                &samples.numbers(),
                &**progress,
                |&n| float_run(&samples.read(n)?),
                |float| {
                    floats.push(float);
                    Ok(())
                },
            )?;
            let goldens =
                Cumulative { plan: &plan, program: &program, goldens: &goldens, floats: &floats, seeds: &seeds };
            let folds = goldens.run(&prepared, &samples, &mut run, &|| progress.advance())?;
            progress.finish();
            folds
        }
    };
    run.layers = plan.finish(folds).map_err(convert::internal)?;
    Ok(run)
}

/// Folds `tensor`, the value step output `id` got, into its row (if it is one).
fn fold_row<'a>(
    plan: &Plan,
    program: &Program,
    golden: &impl Fn(&str) -> Option<&'a [f32]>,
    folds: &mut SampleFolds,
    id: TensorId,
    tensor: &Tensor,
) {
    let Some(row) = program.tensor_name(id).and_then(|name| plan.row(name)) else { return };
    if let (Some(g), Some(actual)) = (plan.golden_of(row).and_then(golden), tensor.as_f32()) {
        folds.add(row, g, actual);
    }
}

/// The cumulative algorithm (see the module docs), over every sample's float run.
struct Cumulative<'a> {
    plan: &'a Plan,
    program: &'a Program,
    goldens: &'a Goldens<'a>,
    floats: &'a [SampleValues],
    seeds: &'a Seeds,
}

impl Cumulative<'_> {
    /// The rows, each from the run (segment) that covers its layer. `advance` ticks once per
    /// step passed.
    fn run(
        &self,
        prepared: &Prepared<'_>,
        samples: &SampleSource,
        run: &mut SnoopRun,
        advance: &dyn Fn(),
    ) -> Result<SampleFolds, Failed> {
        let program = self.program;
        // Per sample, the integer and bool tensors of the latest run (a segment reads those of
        // earlier steps from the run before it).
        // (Each sample's map is only touched by the one pool thread running that sample.)
        let computed: Vec<Mutex<BTreeMap<TensorId, Tensor>>> = (0..samples.len()).map(|_| Mutex::default()).collect();
        let mut rows = self.plan.start();
        let mut start = 0;
        while start < program.steps.len() {
            // One run from `start` over every sample (side by side): its rows folded, the step
            // outputs that differ from the float run in some sample, its graph outputs.
            let mut segment = self.plan.start();
            let mut differing: BTreeSet<TensorId> = BTreeSet::new();
            let mut outputs: Vec<Vec<f32>> = vec![Vec::new(); program.outputs.len()];
            super::samples::run_in_order(
                &samples.numbers(),
                &NoProgress,
                |&n| {
                    let inputs = samples.read(n)?;
                    let float = &self.floats[n];
                    let golden = |name: &str| self.goldens.value(float, n, name);
                    let lock = || computed[n].lock().unwrap_or_else(|p| p.into_inner());
                    let mine = RefCell::new(std::mem::take(&mut *lock()));
                    let mut sample = self.plan.start();
                    let mut differs: BTreeSet<TensorId> = BTreeSet::new();
                    let result = prepared
                        .run_steps(
                            start..program.steps.len(),
                            &inputs,
                            &|id| self.seeds.sample(id, &golden, &mine),
                            &mut |id, t| {
                                fold_row(self.plan, program, &golden, &mut sample, id, t);
                                let own =
                                    program.tensor_name(id).filter(|name| self.seeds.is_float(name)).and_then(golden);
                                if let (Some(g), Some(q)) = (own, t.as_f32())
                                    && (g.len() != q.len() || g.iter().zip(q).any(|(g, q)| g.to_bits() != q.to_bits()))
                                {
                                    differs.insert(id);
                                }
                                keep_non_float(&mine, id, t);
                            },
                        )
                        .map_err(convert::internal)?;
                    *lock() = mine.into_inner();
                    Ok((sample, differs, result))
                },
                |(sample, differs, result)| {
                    segment.merge(&sample);
                    differing.extend(differs);
                    for (k, t) in result.iter().enumerate() {
                        if let Some(out) = outputs.get_mut(k) {
                            out.extend(t.to_f32_vec());
                        }
                    }
                    Ok(())
                },
            )?;
            let index = run.segments.len();
            run.segments.push(outputs);
            let mut next = program.steps.len();
            for (step_index, step) in program.steps.iter().enumerate().skip(start) {
                advance();
                for &id in &step.outputs {
                    let Some(name) = program.tensor_name(id).filter(|name| self.seeds.is_float(name)) else { continue };
                    if let Some(row) = self.plan.row(name) {
                        rows.take_row(row, &segment);
                    }
                    run.segment_of.insert(name.to_string(), index);
                }
                if step.outputs.iter().any(|id| differing.contains(id)) {
                    for &id in &step.outputs {
                        if let Some(name) = program.tensor_name(id).filter(|name| self.seeds.is_float(name)) {
                            run.partitioned.push(name.to_string());
                        }
                    }
                    next = step_index + 1;
                    break;
                }
            }
            start = next;
        }
        Ok(rows)
    }
}

/// Which float tensor seeds each program tensor: its own float value, or for the convert ops
/// mixed precision inserts (tensors the float graph does not have) the value of the tensor they
/// convert: in float a conversion is the identity.
struct Seeds {
    /// Program tensor id -> the float tensor (by name) whose golden value seeds it.
    source: BTreeMap<TensorId, String>,
    /// The float tensors the target's float graph computes.
    float: BTreeSet<String>,
}

impl Seeds {
    fn new(program: &Program, graph: &crate::ir::Graph) -> Seeds {
        let float: BTreeSet<String> = crate::verify::layer_specs(graph, |_| true).into_iter().map(|l| l.name).collect();
        let mut source = BTreeMap::new();
        for step in &program.steps {
            for (k, &id) in step.outputs.iter().enumerate() {
                let Some(name) = program.tensor_name(id) else { continue };
                if float.contains(name) {
                    source.insert(id, name.to_string());
                } else if step.op == Op::Convert(crate::ops::Convert)
                    && let Some(from) = step.inputs.get(k).and_then(|i| source.get(i)).cloned()
                {
                    source.insert(id, from);
                }
            }
        }
        Seeds { source, float }
    }

    fn is_float(&self, name: &str) -> bool {
        self.float.contains(name)
    }

    /// The seed of `id`: its golden value, else (an integer or bool tensor) the value the run
    /// computed for it.
    fn sample<'a>(
        &self,
        id: TensorId,
        golden: &impl Fn(&str) -> Option<&'a [f32]>,
        computed: &RefCell<BTreeMap<TensorId, Tensor>>,
    ) -> Option<Tensor> {
        match self.source.get(&id) {
            Some(name) => golden(name).map(|v| Tensor::from_f32(vec![v.len()], v.to_vec())),
            None => computed.borrow().get(&id).cloned(),
        }
    }
}

/// Records `tensor` when it is not float32 (float32 tensors are seeded from the golden run).
fn keep_non_float(computed: &RefCell<BTreeMap<TensorId, Tensor>>, id: TensorId, tensor: &Tensor) {
    if tensor.as_f32().is_none() {
        computed.borrow_mut().insert(id, tensor.clone());
    }
}
