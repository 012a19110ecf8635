//! The float reference interpreter: runs a [`Graph`] node by node with the float32 kernels.
//!
//! Memory: constants and graph inputs are borrowed, never copied; each intermediate tensor
//! is dropped right after its last reader runs (and a node output nothing reads is dropped
//! at once), so peak memory is the live set of activations, not all of them.

use std::collections::BTreeMap;

use super::kernels::{self, KernelError};
use crate::ir::{DType, Graph, Tensor, TensorId, TensorInfo};

/// The interpreter could not run the graph on these inputs.
#[derive(Debug, thiserror::Error)]
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

/// [`interpret_retaining`], also reporting in `peak_live` the most node outputs held at once
/// (after a node's outputs are stored, before its dead inputs are dropped).
fn execute(
    graph: &Graph,
    inputs: &[Tensor],
    retain: &dyn Fn(TensorId) -> bool,
    observe: &mut dyn FnMut(TensorId, &Tensor),
    peak_live: &mut usize,
) -> Result<(Vec<Tensor>, Retained), RuntimeError> {
    let tensor_count = graph.tensors.len();
    let info = |id: TensorId| -> Result<&TensorInfo, RuntimeError> {
        graph
            .tensors
            .get(id.index())
            .ok_or_else(|| RuntimeError::InvalidGraph(format!("tensor id {} is out of range", id.0)))
    };
    if inputs.len() != graph.inputs.len() {
        return Err(RuntimeError::InputCount { expected: graph.inputs.len(), got: inputs.len() });
    }
    for (&id, tensor) in graph.inputs.iter().zip(inputs) {
        check_input(info(id)?, tensor)?;
    }

    let mut values: Vec<Value> = (0..tensor_count).map(|_| Value::Absent).collect();
    for (&id, tensor) in &graph.constants {
        info(id)?;
        values[id.index()] = Value::Borrowed(tensor);
    }
    for (&id, tensor) in graph.inputs.iter().zip(inputs) {
        values[id.index()] = Value::Borrowed(tensor);
        observe(id, tensor);
    }

    // The index of the last node reading each tensor; graph outputs are kept to the end.
    let mut last_use: Vec<Option<usize>> = vec![None; tensor_count];
    for (i, node) in graph.nodes.iter().enumerate() {
        for &id in &node.inputs {
            info(id)?;
            last_use[id.index()] = Some(i);
        }
        for &id in &node.outputs {
            info(id)?;
        }
    }
    let mut keep: Vec<bool> = (0..tensor_count).map(|index| retain(TensorId(index as u32))).collect();
    for &id in &graph.outputs {
        info(id)?;
        keep[id.index()] = true;
    }

    // Node outputs currently held.
    let mut live = 0usize;
    for (i, node) in graph.nodes.iter().enumerate() {
        let args = node
            .inputs
            .iter()
            .map(|&id| {
                values[id.index()].get().ok_or_else(|| {
                    RuntimeError::InvalidGraph(format!(
                        "node {:?} reads {:?} before it is computed",
                        node.name,
                        name_of(graph, id)
                    ))
                })
            })
            .collect::<Result<Vec<&Tensor>, _>>()?;
        let declared = node.outputs.iter().map(|&id| info(id).cloned()).collect::<Result<Vec<_>, _>>()?;
        let results = node.op.run(&args, &declared).map_err(|source| RuntimeError::Kernel {
            node: node.name.clone(),
            op: node.op.type_name(),
            source,
        })?;
        drop(args);
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
            if let Value::Owned(_) = std::mem::replace(&mut values[id.index()], Value::Owned(tensor)) {
                live -= 1;
            }
            live += 1;
        }
        *peak_live = (*peak_live).max(live);
        for &id in node.inputs.iter().chain(&node.outputs) {
            let dead = match last_use[id.index()] {
                Some(last) => last <= i,
                None => true,
            };
            if dead
                && !keep[id.index()]
                && let Value::Owned(_) = std::mem::replace(&mut values[id.index()], Value::Absent)
            {
                live -= 1;
            }
        }
    }

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

/// The most bytes of node outputs [`interpret`] holds at once on `graph`, from the declared
/// shapes and the same last-reader rule it frees by: what one float run of a sample needs
/// (besides its inputs, the constants and a kernel's own scratch), known before it runs.
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
        // Ten relus in a row: at most the node's input and its output are alive at once.
        let mut peak = 0;
        let out = execute(&chain(10, false), &input, &|_| false, &mut |_, _| {}, &mut peak).unwrap().0;
        assert_eq!(out[0].as_f32().unwrap(), &[2.0]);
        assert_eq!(peak, 2);
        // With t1 read again at the end, t1 stays alive too: at most 3 (t1, t_k, t_k+1).
        let mut peak = 0;
        let out = execute(&chain(10, true), &input, &|_| false, &mut |_, _| {}, &mut peak).unwrap().0;
        // relu(2) = 2 through the chain; y = t10 + t1 = 4.
        assert_eq!(out[0].as_f32().unwrap(), &[4.0]);
        assert_eq!(peak, 3);
    }

    /// The estimate made before a run agrees with what the run held (4-byte tensors here).
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

    #[test]
    fn a_node_reading_a_value_not_yet_computed_is_an_error() {
        let mut g = chain(3, false);
        g.nodes.swap(1, 2);
        let err = interpret(&g, &[Tensor::from_f32(vec![1], vec![-1.0])], &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("before it is computed"), "{err}");
    }
}
