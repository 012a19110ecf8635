//! The float reference interpreter: runs a [`Graph`] node by node with the float32 kernels.
//!
//! Memory: constants and graph inputs are borrowed, never copied; each intermediate tensor
//! is dropped right after its last reader runs (and a node output nothing reads is dropped
//! at once), so peak memory is the live set of activations, not all of them.

use std::collections::BTreeMap;

use super::kernels::{self, KernelError};
use crate::ir::{DType, Graph, Tensor, TensorId, TensorInfo};

/// The interpreter could not run the graph on these inputs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("the graph takes {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
    #[error("input {name:?} must have shape {expected:?}, got {got:?}")]
    InputShape { name: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("input {name:?} must be {}, got {}", .expected.name(), .got.name())]
    InputDType { name: String, expected: DType, got: DType },
    #[error("input {name:?} has shape {shape:?} but {elements} elements")]
    InputData { name: String, shape: Vec<usize>, elements: usize },
    #[error("node {node:?} ({op}) failed: {source}")]
    Kernel {
        node: String,
        op: &'static str,
        #[source]
        source: KernelError,
    },
    /// A structural defect that [`Graph::validate`] would have reported.
    #[error("invalid graph: {0}")]
    InvalidGraph(String),
}

/// Where a live tensor comes from.
enum Value<'a> {
    Absent,
    Borrowed(&'a Tensor),
    Owned(Tensor),
}

impl Value<'_> {
    fn get(&self) -> Option<&Tensor> {
        match self {
            Value::Absent => None,
            Value::Borrowed(t) => Some(t),
            Value::Owned(t) => Some(t),
        }
    }
}

/// Runs `graph` on `inputs` (in `graph.inputs` order; shapes must equal the declared ones),
/// calling `observe(id, tensor)` for every graph input and every node output in execution
/// order, and returns the graph outputs in `graph.outputs` order.
pub fn interpret(
    graph: &Graph,
    inputs: &[Tensor],
    observe: &mut dyn FnMut(TensorId, &Tensor),
) -> Result<Vec<Tensor>, RuntimeError> {
    execute(graph, inputs, &|_| false, observe, &mut 0).map(|(outputs, _)| outputs)
}

/// Values a run hands back, by tensor id.
pub type Retained = Vec<(TensorId, Tensor)>;

/// [`interpret`], also handing back the graph inputs and node outputs `retain` selects, in
/// id order: held to the end of the run instead of dropped after their last reader, and
/// moved out rather than copied (a golden run keeps every activation of its sample).
pub fn interpret_retaining(
    graph: &Graph,
    inputs: &[Tensor],
    retain: &dyn Fn(TensorId) -> bool,
) -> Result<(Vec<Tensor>, Retained), RuntimeError> {
    execute(graph, inputs, retain, &mut |_, _| {}, &mut 0)
}

/// [`interpret`] of several samples run together (see [`GroupRun`]);
/// `observe(sample, id, tensor)` sees each sample's values in the order its run alone shows
/// them.
pub fn interpret_group(
    graph: &Graph,
    inputs: &[&[Tensor]],
    observe: &mut dyn FnMut(usize, TensorId, &Tensor),
) -> Vec<Result<Vec<Tensor>, RuntimeError>> {
    let runs = execute_group(graph, inputs, &|_| false, observe, &mut 0);
    runs.into_iter().map(|run| run.map(|(outputs, _)| outputs)).collect()
}

/// [`interpret_retaining`], also reporting in `peak_live` the most node outputs held at once
/// (after a node's outputs are stored, before its dead inputs are dropped).
fn execute(
    graph: &Graph,
    inputs: &[Tensor],
    retain: &dyn Fn(TensorId) -> bool,
    observe: &mut dyn FnMut(TensorId, &Tensor),
    peak_live: &mut usize,
) -> Result<(Vec<Tensor>, Retained), RuntimeError> {
    let mut results = execute_group(graph, &[inputs], retain, &mut |_, id, t| observe(id, t), peak_live);
    results.pop().unwrap_or_else(|| Err(RuntimeError::InvalidGraph("no run of the sample".into())))
}

/// The samples' runs of a [`GroupRun`] to the end; `observe(sample, id, tensor)` sees each
/// sample's values in the order its run alone shows them, and `peak_live` is the most node
/// outputs one sample holds at once.
fn execute_group(
    graph: &Graph,
    inputs: &[&[Tensor]],
    retain: &dyn Fn(TensorId) -> bool,
    observe: &mut dyn FnMut(usize, TensorId, &Tensor),
    peak_live: &mut usize,
) -> Vec<Result<(Vec<Tensor>, Retained), RuntimeError>> {
    let mut run = GroupRun::start(graph, inputs, retain, observe);
    run.run_through(graph.nodes.len(), observe);
    *peak_live = run.peak_live;
    run.finish(retain)
}

/// Several samples' float runs of a graph advanced together node by node, as far as the caller
/// asks ([`GroupRun::run_through`]), their values readable in between: what lets a program's
/// run compare each layer with its golden value while that value is still in the cache.
/// Values `retain` selects are held until [`GroupRun::release`] or the end.
///
/// Each node runs on every sample before the next one starts, so that its weights, read from
/// memory for the first sample, are still in the cache for the others, and through the op's
/// grouped kernel where it has one ([`crate::ops::Op::run_group`]). Each sample's result is
/// exactly what [`interpret_retaining`] gives it alone; a sample that fails stops there and
/// the others go on.
pub struct GroupRun<'a> {
    graph: &'a Graph,
    schedule: Schedule,
    runs: Vec<Result<SampleRun<'a>, RuntimeError>>,
    /// The next node to run.
    next: usize,
    peak_live: usize,
}

impl<'a> GroupRun<'a> {
    /// The samples' runs before their first node (each sample's inputs checked and shown to
    /// `observe`).
    pub fn start(
        graph: &'a Graph,
        inputs: &[&'a [Tensor]],
        retain: &dyn Fn(TensorId) -> bool,
        observe: &mut dyn FnMut(usize, TensorId, &Tensor),
    ) -> GroupRun<'a> {
        let (schedule, runs) = match Schedule::of(graph, retain) {
            Ok(schedule) => {
                let runs = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, inputs)| SampleRun::start(graph, inputs, &mut |id, t| observe(k, id, t)))
                    .collect();
                (schedule, runs)
            }
            Err(error) => (Schedule::default(), inputs.iter().map(|_| Err(error.clone())).collect()),
        };
        GroupRun { graph, schedule, runs, next: 0, peak_live: 0 }
    }

    /// Runs the nodes before node `end` (in graph order) that have not run yet.
    pub fn run_through(&mut self, end: usize, observe: &mut dyn FnMut(usize, TensorId, &Tensor)) {
        let graph = self.graph;
        while self.next < end.min(graph.nodes.len()) {
            let i = self.next;
            self.next += 1;
            let node = &graph.nodes[i];
            // Every id was checked by `Schedule::of`.
            let declared: Vec<TensorInfo> =
                node.outputs.iter().filter_map(|&id| graph.tensors.get(id.index()).cloned()).collect();
            let (schedule, peak_live) = (&self.schedule, &mut self.peak_live);
            if let Some(results) = run_grouped(node, &self.runs, &declared) {
                let running = self.runs.iter_mut().enumerate().filter_map(|(k, run)| Some(k).zip(run.as_mut().ok()));
                let mut failed = Vec::new();
                for ((k, run), results) in running.zip(results) {
                    if let Err(error) = run.store(schedule, i, node, results, &mut |id, t| observe(k, id, t), peak_live)
                    {
                        failed.push((k, error));
                    }
                }
                for (k, error) in failed {
                    self.runs[k] = Err(error);
                }
                continue;
            }
            for (k, slot) in self.runs.iter_mut().enumerate() {
                let Ok(run) = slot else { continue };
                let results = match run.compute_in_place(schedule, i, node, &declared) {
                    Some(result) => result,
                    None => run.compute(graph, node, &declared),
                };
                let stepped = results.and_then(|results| {
                    run.store(schedule, i, node, results, &mut |id, t| observe(k, id, t), peak_live)
                });
                if let Err(error) = stepped {
                    *slot = Err(error);
                }
            }
        }
    }

    /// Sample `sample`'s value of `id`, if its run has computed it and still holds it.
    pub fn value(&self, sample: usize, id: TensorId) -> Option<&Tensor> {
        self.runs.get(sample)?.as_ref().ok()?.values.get(id.index()).and_then(Value::get)
    }

    /// Lets sample `sample`'s run drop its value of `id` once no node needs it any more, although
    /// `retain` selected it: now if its last reader has run, else after it.
    pub fn release(&mut self, sample: usize, id: TensorId) {
        let Some(Ok(run)) = self.runs.get_mut(sample) else { return };
        let Some(released) = run.released.get_mut(id.index()) else { return };
        *released = true;
        let read_later = self.schedule.last_use[id.index()].is_some_and(|last| last >= self.next);
        if !read_later && !self.schedule.output[id.index()] && matches!(run.values[id.index()], Value::Owned(_)) {
            run.values[id.index()] = Value::Absent;
            run.live -= 1;
        }
    }

    /// Runs the remaining nodes and hands back each sample's graph outputs and the values
    /// `retain` selects that it still holds.
    pub fn finish(mut self, retain: &dyn Fn(TensorId) -> bool) -> Vec<Result<(Vec<Tensor>, Retained), RuntimeError>> {
        self.run_through(self.graph.nodes.len(), &mut |_, _, _| {});
        let graph = self.graph;
        self.runs.into_iter().map(|run| run?.finish(graph, retain)).collect()
    }
}

/// `node` on every sample still running, in one call of its op's grouped kernel, where it has
/// one for these inputs and at least two samples run; `None` (nothing run) otherwise.
fn run_grouped(
    node: &crate::ir::Node,
    runs: &[Result<SampleRun<'_>, RuntimeError>],
    declared: &[TensorInfo],
) -> Option<Vec<Vec<Tensor>>> {
    if runs.iter().filter(|run| run.is_ok()).count() < 2 || !node.op.may_run_grouped() {
        return None;
    }
    let args: Vec<Vec<&Tensor>> = runs.iter().flatten().map(|run| run.args(node).ok()).collect::<Option<_>>()?;
    node.op.run_group(&args, declared)?.ok()
}

/// What every sample's run of a graph shares: for each tensor, the last node reading it,
/// whether it is held to the end (retained, or a graph output), and whether it is a graph
/// output.
#[derive(Default)]
struct Schedule {
    last_use: Vec<Option<usize>>,
    keep: Vec<bool>,
    output: Vec<bool>,
}

impl Schedule {
    /// Also checks every tensor id the nodes and outputs name.
    fn of(graph: &Graph, retain: &dyn Fn(TensorId) -> bool) -> Result<Schedule, RuntimeError> {
        let tensor_count = graph.tensors.len();
        let mut last_use: Vec<Option<usize>> = vec![None; tensor_count];
        for (i, node) in graph.nodes.iter().enumerate() {
            for &id in &node.inputs {
                info(graph, id)?;
                last_use[id.index()] = Some(i);
            }
            for &id in &node.outputs {
                info(graph, id)?;
            }
        }
        let mut keep: Vec<bool> = (0..tensor_count).map(|index| retain(TensorId(index as u32))).collect();
        let mut output = vec![false; tensor_count];
        for &id in &graph.outputs {
            info(graph, id)?;
            keep[id.index()] = true;
            output[id.index()] = true;
        }
        Ok(Schedule { last_use, keep, output })
    }
}

/// The declared info of tensor `id`.
fn info(graph: &Graph, id: TensorId) -> Result<&TensorInfo, RuntimeError> {
    graph
        .tensors
        .get(id.index())
        .ok_or_else(|| RuntimeError::InvalidGraph(format!("tensor id {} is out of range", id.0)))
}

/// One sample's run: its values by tensor id, how many node outputs it holds, and the
/// retained values it may drop after all ([`GroupRun::release`]).
struct SampleRun<'a> {
    values: Vec<Value<'a>>,
    live: usize,
    released: Vec<bool>,
}

impl<'a> SampleRun<'a> {
    /// The run before its first node: inputs checked and shown to `observe`, constants and
    /// inputs borrowed.
    fn start(
        graph: &'a Graph,
        inputs: &'a [Tensor],
        observe: &mut dyn FnMut(TensorId, &Tensor),
    ) -> Result<SampleRun<'a>, RuntimeError> {
        if inputs.len() != graph.inputs.len() {
            return Err(RuntimeError::InputCount { expected: graph.inputs.len(), got: inputs.len() });
        }
        for (&id, tensor) in graph.inputs.iter().zip(inputs) {
            check_input(info(graph, id)?, tensor)?;
        }
        let mut values: Vec<Value> = (0..graph.tensors.len()).map(|_| Value::Absent).collect();
        for (&id, tensor) in &graph.constants {
            info(graph, id)?;
            values[id.index()] = Value::Borrowed(tensor);
        }
        for (&id, tensor) in graph.inputs.iter().zip(inputs) {
            values[id.index()] = Value::Borrowed(tensor);
            observe(id, tensor);
        }
        let released = vec![false; values.len()];
        Ok(SampleRun { values, live: 0, released })
    }

    /// The values `node` reads.
    fn args(&self, node: &crate::ir::Node) -> Result<Vec<&Tensor>, RuntimeError> {
        node.inputs
            .iter()
            .map(|&id| {
                self.values.get(id.index()).and_then(Value::get).ok_or_else(|| {
                    RuntimeError::InvalidGraph(format!("node {:?} reads {id:?} before it is computed", node.name))
                })
            })
            .collect()
    }

    /// Runs `node`'s kernel on this sample's values.
    fn compute(
        &self,
        graph: &Graph,
        node: &crate::ir::Node,
        declared: &[TensorInfo],
    ) -> Result<Vec<Tensor>, RuntimeError> {
        let args = self.args(node).map_err(|_| {
            let missing = node.inputs.iter().find(|id| self.values.get(id.index()).and_then(Value::get).is_none());
            let name = missing.map_or("?", |&id| name_of(graph, id));
            RuntimeError::InvalidGraph(format!("node {:?} reads {name:?} before it is computed", node.name))
        })?;
        node.op.run(&args, declared).map_err(|source| RuntimeError::Kernel {
            node: node.name.clone(),
            op: node.op.type_name(),
            source,
        })
    }

    /// `node` (node `i` of the schedule) over its input's own values
    /// ([`crate::ops::Op::run_in_place`]) where it has one input and one output, the input is
    /// a value this run owns that no later node reads and nothing keeps, and the op has such a
    /// path: no fresh output and no pass through new memory (a Clip after each of a
    /// MobileNet's convolutions). `None`, having changed nothing, otherwise (also where the
    /// output is declared another shape or type, which [`Self::compute`] then reports).
    fn compute_in_place(
        &mut self,
        schedule: &Schedule,
        i: usize,
        node: &crate::ir::Node,
        declared: &[TensorInfo],
    ) -> Option<Result<Vec<Tensor>, RuntimeError>> {
        let (&[input], [_], [info]) = (node.inputs.as_slice(), node.outputs.as_slice(), declared) else { return None };
        let index = input.index();
        let last_read_here = schedule.last_use.get(index).copied().flatten() == Some(i);
        let kept = schedule.output.get(index).copied().unwrap_or(true)
            || (schedule.keep.get(index).copied().unwrap_or(true)
                && !self.released.get(index).copied().unwrap_or(false));
        let owned = match self.values.get(index) {
            Some(Value::Owned(value)) => value.shape == info.shape && value.dtype() == info.dtype,
            _ => false,
        };
        if !last_read_here || kept || !owned {
            return None;
        }
        let Value::Owned(mut value) = std::mem::replace(&mut self.values[index], Value::Absent) else { return None };
        match node.op.run_in_place(&mut value) {
            None => {
                self.values[index] = Value::Owned(value);
                None
            }
            Some(result) => {
                // The input's value is now the output's: it no longer counts as live.
                self.live -= 1;
                Some(result.map(|()| vec![value]).map_err(|source| RuntimeError::Kernel {
                    node: node.name.clone(),
                    op: node.op.type_name(),
                    source,
                }))
            }
        }
    }

    /// Stores `node`'s results (node `i` of the schedule), shows them to `observe`, and drops
    /// the values no later node reads.
    fn store(
        &mut self,
        schedule: &Schedule,
        i: usize,
        node: &crate::ir::Node,
        results: Vec<Tensor>,
        observe: &mut dyn FnMut(TensorId, &Tensor),
        peak_live: &mut usize,
    ) -> Result<(), RuntimeError> {
        if results.len() != node.outputs.len() {
            return Err(RuntimeError::InvalidGraph(format!(
                "node {:?} declares {} outputs but {} produces {}",
                node.name,
                node.outputs.len(),
                node.op.type_name(),
                results.len()
            )));
        }
        for (&id, tensor) in node.outputs.iter().zip(results) {
            observe(id, &tensor);
            if let Value::Owned(_) = std::mem::replace(&mut self.values[id.index()], Value::Owned(tensor)) {
                self.live -= 1;
            }
            self.live += 1;
        }
        *peak_live = (*peak_live).max(self.live);
        for &id in node.inputs.iter().chain(&node.outputs) {
            let dead = match schedule.last_use[id.index()] {
                Some(last) => last <= i,
                None => true,
            };
            let kept = schedule.output[id.index()] || (schedule.keep[id.index()] && !self.released[id.index()]);
            if dead
                && !kept
                && let Value::Owned(value) = std::mem::replace(&mut self.values[id.index()], Value::Absent)
            {
                crate::runtime::buffers::recycle(value);
                self.live -= 1;
            }
        }
        Ok(())
    }

    /// The graph outputs, and the values `retain` selects (moved, not copied).
    fn finish(self, graph: &Graph, retain: &dyn Fn(TensorId) -> bool) -> Result<(Vec<Tensor>, Retained), RuntimeError> {
        let mut values = self.values;
        let mut outputs: Vec<Tensor> = Vec::with_capacity(graph.outputs.len());
        let mut taken: BTreeMap<TensorId, usize> = BTreeMap::new();
        for &id in &graph.outputs {
            let tensor = match std::mem::replace(&mut values[id.index()], Value::Absent) {
                Value::Owned(t) => t,
                Value::Borrowed(t) => t.clone(),
                Value::Absent => match taken.get(&id) {
                    Some(&earlier) => outputs[earlier].clone(),
                    None => {
                        return Err(RuntimeError::InvalidGraph(format!(
                            "graph output {:?} is never computed",
                            name_of(graph, id)
                        )));
                    }
                },
            };
            taken.entry(id).or_insert(outputs.len());
            outputs.push(tensor);
        }
        let mut retained = Vec::new();
        for (index, value) in values.into_iter().enumerate() {
            let id = TensorId(index as u32);
            if !retain(id) || graph.constants.contains_key(&id) {
                continue;
            }
            let tensor = match value {
                Value::Owned(t) => t,
                Value::Borrowed(t) => t.clone(),
                // A graph output, moved into `outputs` above.
                Value::Absent => match taken.get(&id) {
                    Some(&k) => outputs[k].clone(),
                    None => continue,
                },
            };
            retained.push((id, tensor));
        }
        Ok((outputs, retained))
    }
}

/// The most bytes of node outputs [`interpret`] holds at once on `graph`, from the declared
/// shapes and the same last-reader rule it frees by: what one float run of a sample needs
/// (besides its inputs, the constants and a kernel's own scratch), known before it runs. A
/// bound: a node that runs over its dead input's values holds one value where this counts two.
pub fn peak_bytes(graph: &Graph) -> u64 {
    let size = |id: TensorId| graph.tensors.get(id.index()).map_or(0, declared_bytes);
    let steps = graph.nodes.iter().map(|node| (node.inputs.as_slice(), node.outputs.as_slice()));
    super::liveness::peak_held_bytes(graph.tensors.len(), steps, &graph.outputs, size)
}

/// The bytes of every float32 value a run of `graph` computes or takes as input: what
/// [`interpret_retaining`] holds at its end when it keeps every float32 value.
pub fn float_values_bytes(graph: &Graph) -> u64 {
    let produced = graph.nodes.iter().flat_map(|node| node.outputs.iter().copied());
    graph
        .inputs
        .iter()
        .copied()
        .chain(produced)
        .filter_map(|id| graph.tensors.get(id.index()))
        .filter(|info| info.dtype == crate::ir::DType::F32)
        .map(declared_bytes)
        .fold(0u64, u64::saturating_add)
}

/// The bytes a tensor of `info`'s type and shape holds (saturating, for absurd shapes).
fn declared_bytes(info: &crate::ir::TensorInfo) -> u64 {
    info.shape.iter().fold(info.dtype.size_bytes() as u64, |n, &d| n.saturating_mul(d as u64))
}

fn name_of(graph: &Graph, id: TensorId) -> &str {
    graph.tensors.get(id.index()).map_or("<unknown>", |info| info.name.as_str())
}

fn check_input(info: &TensorInfo, tensor: &Tensor) -> Result<(), RuntimeError> {
    if tensor.shape != info.shape {
        return Err(RuntimeError::InputShape {
            name: info.name.clone(),
            expected: info.shape.clone(),
            got: tensor.shape.clone(),
        });
    }
    if tensor.dtype() != info.dtype {
        return Err(RuntimeError::InputDType { name: info.name.clone(), expected: info.dtype, got: tensor.dtype() });
    }
    if kernels::checked_product(&tensor.shape) != Some(tensor.len()) {
        return Err(RuntimeError::InputData {
            name: info.name.clone(),
            shape: tensor.shape.clone(),
            elements: tensor.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Node, Op};

    fn f32_info(name: &str, shape: &[usize]) -> TensorInfo {
        TensorInfo { name: name.into(), dtype: DType::F32, shape: shape.to_vec() }
    }

    /// y = relu(x * w) + x, with w a constant: exercises constants, a tensor read twice
    /// (x, last read by the Add) and an intermediate freed after its reader.
    fn small_graph() -> (Graph, [TensorId; 5]) {
        let mut g = Graph::default();
        let x = g.add_tensor(f32_info("x", &[3]));
        let w = g.add_tensor(f32_info("w", &[3]));
        let p = g.add_tensor(f32_info("p", &[3]));
        let r = g.add_tensor(f32_info("r", &[3]));
        let y = g.add_tensor(f32_info("y", &[3]));
        g.constants.insert(w, Tensor::from_f32(vec![3], vec![2.0, -1.0, 0.5]));
        g.inputs = vec![x];
        g.outputs = vec![y];
        g.nodes = vec![
            Node { name: "mul".into(), op: Op::Binary(crate::ops::Binary::Mul), inputs: vec![x, w], outputs: vec![p] },
            Node { name: "relu".into(), op: Op::Unary(crate::ops::Unary::Relu), inputs: vec![p], outputs: vec![r] },
            Node { name: "add".into(), op: Op::Binary(crate::ops::Binary::Add), inputs: vec![r, x], outputs: vec![y] },
        ];
        g.validate().unwrap();
        (g, [x, w, p, r, y])
    }

    #[test]
    fn runs_nodes_in_order_and_observes_every_value() {
        let (g, [x, _, p, r, y]) = small_graph();
        let input = Tensor::from_f32(vec![3], vec![1.0, 2.0, 4.0]);
        let mut seen = Vec::new();
        let out =
            interpret(&g, std::slice::from_ref(&input), &mut |id, t| seen.push((id, t.as_f32().unwrap().to_vec())))
                .unwrap();
        // p = x * w = [2, -2, 2]; r = relu(p) = [2, 0, 2]; y = r + x = [3, 2, 6]
        assert_eq!(
            seen,
            vec![
                (x, vec![1.0, 2.0, 4.0]),
                (p, vec![2.0, -2.0, 2.0]),
                (r, vec![2.0, 0.0, 2.0]),
                (y, vec![3.0, 2.0, 6.0]),
            ]
        );
        assert_eq!(out, vec![Tensor::from_f32(vec![3], vec![3.0, 2.0, 6.0])]);
    }

    #[test]
    fn an_output_listed_twice_and_an_input_output_are_returned() {
        let (mut g, [x, _, _, _, y]) = small_graph();
        g.outputs = vec![y, x, y];
        let input = Tensor::from_f32(vec![3], vec![1.0, 2.0, 4.0]);
        let out = interpret(&g, std::slice::from_ref(&input), &mut |_, _| {}).unwrap();
        let expected_y = Tensor::from_f32(vec![3], vec![3.0, 2.0, 6.0]);
        assert_eq!(out, vec![expected_y.clone(), input, expected_y]);
    }

    #[test]
    fn bad_inputs_name_the_input() {
        let (g, _) = small_graph();
        let err = interpret(&g, &[], &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, RuntimeError::InputCount { expected: 1, got: 0 }), "{err}");
        let err = interpret(&g, &[Tensor::from_f32(vec![2], vec![0.0; 2])], &mut |_, _| {}).unwrap_err();
        assert_eq!(err.to_string(), "input \"x\" must have shape [3], got [2]");
        let err = interpret(&g, &[Tensor::from_i64(vec![3], vec![0; 3])], &mut |_, _| {}).unwrap_err();
        assert_eq!(err.to_string(), "input \"x\" must be float32, got int64");
    }

    #[test]
    fn a_kernel_failure_names_the_node() {
        let (mut g, _) = small_graph();
        // Declare the relu output with a wrong shape: the kernel's check fails on node "relu".
        g.tensors[3].shape = vec![4];
        let input = Tensor::from_f32(vec![3], vec![1.0, 2.0, 4.0]);
        let err = interpret(&g, &[input], &mut |_, _| {}).unwrap_err();
        match err {
            RuntimeError::Kernel { node, op, .. } => {
                assert_eq!((node.as_str(), op), ("relu", "Relu"))
            }
            other => panic!("expected a kernel error, got {other}"),
        }
    }

    /// A chain x -> relu -> t1 -> relu -> ... -> t{n}, with an Add of t1 at the end when
    /// `skip` (keeping t1 alive across the chain).
    fn chain(n: usize, skip: bool) -> Graph {
        let mut g = Graph::default();
        let x = g.add_tensor(f32_info("x", &[1]));
        let first = g.add_tensor(f32_info("t1", &[1]));
        g.nodes.push(Node {
            name: "r1".into(),
            op: Op::Unary(crate::ops::Unary::Relu),
            inputs: vec![x],
            outputs: vec![first],
        });
        let mut prev = first;
        for k in 2..=n {
            let t = g.add_tensor(f32_info(&format!("t{k}"), &[1]));
            g.nodes.push(Node {
                name: format!("r{k}"),
                op: Op::Unary(crate::ops::Unary::Relu),
                inputs: vec![prev],
                outputs: vec![t],
            });
            prev = t;
        }
        if skip {
            let y = g.add_tensor(f32_info("y", &[1]));
            g.nodes.push(Node {
                name: "add".into(),
                op: Op::Binary(crate::ops::Binary::Add),
                inputs: vec![prev, first],
                outputs: vec![y],
            });
            prev = y;
        }
        g.inputs = vec![x];
        g.outputs = vec![prev];
        g.validate().unwrap();
        g
    }

    #[test]
    fn intermediates_are_freed_after_their_last_reader() {
        let input = [Tensor::from_f32(vec![1], vec![2.0])];
        // Ten relus in a row: each after the first runs over its input's own values (the
        // first reads the borrowed graph input), so one value is alive at a time.
        let mut peak = 0;
        let out = execute(&chain(10, false), &input, &|_| false, &mut |_, _| {}, &mut peak).unwrap().0;
        assert_eq!(out[0].as_f32().unwrap(), &[2.0]);
        assert_eq!(peak, 1);
        // With t1 read again at the end, t1 stays alive too: at most 3 (t1, t10 and y).
        let mut peak = 0;
        let out = execute(&chain(10, true), &input, &|_| false, &mut |_, _| {}, &mut peak).unwrap().0;
        // relu(2) = 2 through the chain; y = t10 + t1 = 4.
        assert_eq!(out[0].as_f32().unwrap(), &[4.0]);
        assert_eq!(peak, 3);
    }

    /// x -> Clip(max 8) -> t1 -> Clip(max 4) -> t2 -> Clip(max 2) -> t3, so that each value
    /// differs from the one it is computed from.
    fn clip_chain() -> (Graph, [TensorId; 3]) {
        let mut g = Graph::default();
        let x = g.add_tensor(f32_info("x", &[2]));
        g.inputs = vec![x];
        let mut ids = Vec::new();
        let mut prev = x;
        for (k, max) in [8.0, 4.0, 2.0].into_iter().enumerate() {
            let t = g.add_tensor(f32_info(&format!("t{}", k + 1), &[2]));
            let op = Op::Clip(crate::ops::Clip { min: f32::NEG_INFINITY, max });
            g.nodes.push(Node { name: format!("c{}", k + 1), op, inputs: vec![prev], outputs: vec![t] });
            ids.push(t);
            prev = t;
        }
        g.outputs = vec![prev];
        g.validate().unwrap();
        (g, [ids[0], ids[1], ids[2]])
    }

    /// A node runs over its input's values only where nothing else will read them: a value
    /// retained (or read again) keeps its own values, and every run gives the same results.
    #[test]
    fn a_one_input_node_reuses_its_dead_input_but_never_a_kept_one() {
        let (g, [t1, t2, t3]) = clip_chain();
        let input = [Tensor::from_f32(vec![2], vec![10.0, -1.0])];
        let mut observed = BTreeMap::new();
        let mut peak = 0;
        let (outputs, _) = execute(
            &g,
            &input,
            &|_| false,
            &mut |id, t| {
                observed.insert(id, t.as_f32().unwrap().to_vec());
            },
            &mut peak,
        )
        .unwrap();
        assert_eq!(outputs[0].as_f32().unwrap(), &[2.0, -1.0]);
        assert_eq!(observed[&t1], [8.0, -1.0]);
        assert_eq!(observed[&t2], [4.0, -1.0]);
        assert_eq!(peak, 1, "c2 and c3 run over t1's buffer");
        assert_eq!(input[0].as_f32().unwrap(), &[10.0, -1.0], "a borrowed input is never written");

        let (outputs, retained) = interpret_retaining(&g, &input, &|id| id == t1).unwrap();
        assert_eq!(outputs[0].as_f32().unwrap(), &[2.0, -1.0]);
        let retained: BTreeMap<_, _> = retained.into_iter().collect();
        assert_eq!(retained[&t1].as_f32().unwrap(), &[8.0, -1.0], "a retained value is not overwritten");

        // Released after its reader ran: t2's node had to leave it alone all the same.
        let samples = [&input[..]];
        let mut run = GroupRun::start(&g, &samples, &|id| id == t2, &mut |_, _, _| {});
        run.run_through(3, &mut |_, _, _| {});
        assert_eq!(run.value(0, t2).unwrap().as_f32().unwrap(), &[4.0, -1.0]);
        assert_eq!(run.value(0, t3).unwrap().as_f32().unwrap(), &[2.0, -1.0]);
        run.release(0, t2);
        assert!(run.value(0, t2).is_none());
    }

    /// The estimate made before a run: what a run holds when no node runs over its input's
    /// values (4-byte tensors here; `chain` is all Relus, so the run itself holds less).
    #[test]
    fn peak_bytes_matches_the_interpreters_own_peak() {
        assert_eq!(peak_bytes(&chain(10, false)), 2 * 4);
        assert_eq!(peak_bytes(&chain(10, true)), 3 * 4);
    }

    #[test]
    fn retained_values_are_the_observed_ones_and_outputs_are_unchanged() {
        let g = chain(4, true);
        let input = [Tensor::from_f32(vec![1], vec![-3.0])];
        let mut observed = BTreeMap::new();
        let plain = interpret(&g, &input, &mut |id, t| {
            observed.insert(id, t.clone());
        })
        .unwrap();
        let every = |_: TensorId| true;
        let (outputs, retained) = interpret_retaining(&g, &input, &every).unwrap();
        assert_eq!(outputs, plain);
        // The input, every intermediate and the output (also moved into `outputs`), by id.
        assert_eq!(retained.into_iter().collect::<BTreeMap<_, _>>(), observed);
        let (_, none) = interpret_retaining(&g, &input, &|_| false).unwrap();
        assert!(none.is_empty());
    }

    /// A group run advanced node by node shows each value once computed; a released value is
    /// dropped once its last reader has run (not before), a graph output never; the results
    /// are those of a run to the end.
    #[test]
    fn a_group_run_stepped_and_released_holds_each_value_as_long_as_it_is_needed() {
        // x -> r1 -> t1 -> r2 -> t2 -> r3 -> t3 -> r4 -> t4, and t1 + t4 -> y (the output).
        let g = chain(4, true);
        let id = |name: &str| TensorId((0..g.tensors.len()).find(|&i| g.tensors[i].name == name).unwrap() as u32);
        let inputs = [Tensor::from_f32(vec![1], vec![-3.0])];
        let views: Vec<&[Tensor]> = vec![&inputs];
        let every = |_| true;
        let mut run = GroupRun::start(&g, &views, &every, &mut |_, _, _| {});
        assert!(run.value(0, id("t1")).is_none(), "not computed yet");
        run.run_through(2, &mut |_, _, _| {});
        assert!(run.value(0, id("t2")).is_some() && run.value(0, id("t3")).is_none());
        // t2 is read by r3, which has not run: released, it stays until then.
        run.release(0, id("t2"));
        assert!(run.value(0, id("t2")).is_some());
        // t1 is read by the last node: released now, it stays; t3 once computed and read.
        run.release(0, id("t1"));
        run.run_through(3, &mut |_, _, _| {});
        assert!(run.value(0, id("t2")).is_none(), "its last reader has run");
        assert!(run.value(0, id("t1")).is_some());
        run.release(0, id("t3"));
        assert!(run.value(0, id("t3")).is_some(), "r4 still reads it");
        run.run_through(4, &mut |_, _, _| {});
        assert!(run.value(0, id("t3")).is_none());
        // A released value whose readers have all run goes at once; an output is kept.
        run.release(0, id("t4"));
        assert!(run.value(0, id("t4")).is_some(), "the add reads it");
        let mut results = run.finish(&every);
        let (outputs, retained) = results.pop().unwrap().unwrap();
        let (want_outputs, want_retained) = interpret_retaining(&g, &inputs, &every).unwrap();
        assert_eq!(outputs, want_outputs);
        let names = |r: &Retained| r.iter().map(|(id, _)| g.tensors[id.index()].name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&retained), ["x", "y"], "the released values are gone, the input and output kept");
        assert_eq!(names(&want_retained), ["x", "t1", "t2", "t3", "t4", "y"]);
    }

    /// The memory bound of a run that keeps every float32 value is what such a run keeps.
    #[test]
    fn float_values_bytes_counts_what_a_retaining_run_keeps() {
        for g in [chain(4, true), chain(7, false)] {
            let input = [Tensor::from_f32(vec![1], vec![2.0])];
            let (_, retained) = interpret_retaining(&g, &input, &|_| true).unwrap();
            let kept: u64 = retained.iter().map(|(_, t)| 4 * t.len() as u64).sum();
            assert_eq!(float_values_bytes(&g), kept);
        }
    }

    /// A group through the grouped kernels (a pointwise convolution on a small plane, a
    /// classifier) gives each sample the bits it gets alone; a sample with a bad input fails
    /// alone, with the error it gets alone.
    #[test]
    fn a_group_gives_each_sample_the_values_of_its_run_alone() {
        let graph = crate::compile::test_graphs::pointwise_classifier(false).graph;
        let mut inputs: Vec<Vec<Tensor>> = (0..4)
            .map(|k| vec![Tensor::from_f32(vec![1, 3, 2, 2], (0..12).map(|i| ((k * 12 + i) as f32).cos()).collect())])
            .collect();
        inputs.insert(2, vec![Tensor::from_f32(vec![1, 12], vec![0.0; 12])]);
        let views: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
        let every = |_| true;
        let together = GroupRun::start(&graph, &views, &every, &mut |_, _, _| {}).finish(&every);
        assert_eq!(together.len(), 5);
        let bits = |values: &[Tensor]| -> Vec<Vec<u32>> {
            values.iter().map(|t| t.to_f32_vec().iter().map(|v| v.to_bits()).collect()).collect()
        };
        for (k, (got, inputs)) in together.into_iter().zip(&inputs).enumerate() {
            match (got, interpret_retaining(&graph, inputs, &every)) {
                (Ok((outputs, retained)), Ok((want_outputs, want_retained))) => {
                    assert_eq!(bits(&outputs), bits(&want_outputs), "sample {k}");
                    let (ids, values): (Vec<TensorId>, Vec<Tensor>) = retained.into_iter().unzip();
                    let (want_ids, want_values): (Vec<TensorId>, Vec<Tensor>) = want_retained.into_iter().unzip();
                    assert_eq!(ids, want_ids, "sample {k}");
                    assert_eq!(bits(&values), bits(&want_values), "sample {k}");
                }
                (Err(got), Err(want)) => {
                    assert_eq!(k, 2);
                    assert_eq!(got.to_string(), want.to_string());
                }
                (got, want) => panic!("sample {k}: {:?} alone, {:?} in the group", want.is_ok(), got.is_ok()),
            }
        }
    }

    #[test]
    fn a_node_reading_a_value_not_yet_computed_is_an_error() {
        let mut g = chain(3, false);
        g.nodes.swap(1, 2);
        let err = interpret(&g, &[Tensor::from_f32(vec![1], vec![-1.0])], &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("before it is computed"), "{err}");
    }
}
