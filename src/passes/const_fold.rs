//! Constant folding: a node whose inputs are all constants is evaluated now, with the same
//! kernels the runtime uses, and its outputs become constants under their own names.
//!
//! Nodes that write a graph output are kept (a graph output is never a constant). The
//! kernels are float32 kernels: a kernel error on a node that touches a non-float tensor is
//! the expected "unsupported" case and leaves that node in place; any other kernel error is
//! a real failure and is returned.

use crate::ir::{DType, Graph, Tensor, TensorInfo};

use super::PassError;

/// Folds every foldable node in one sweep (a folded node's outputs are constants for the
/// nodes after it); returns the number of nodes folded.
pub(super) fn fold_constants(graph: &mut Graph) -> Result<usize, PassError> {
    let mut keep = Vec::with_capacity(graph.nodes.len());
    for index in 0..graph.nodes.len() {
        let folded = fold_node(graph, index)?;
        if let Some(outputs) = &folded {
            for (id, tensor) in graph.nodes[index].outputs.clone().into_iter().zip(outputs.iter().cloned()) {
                graph.constants.insert(id, tensor);
            }
        }
        keep.push(folded.is_none());
    }
    let before = graph.nodes.len();
    let mut flags = keep.into_iter();
    graph.nodes.retain(|_| flags.next().unwrap_or(true));
    Ok(before - graph.nodes.len())
}

/// The output values of node `index` when it can be folded.
fn fold_node(graph: &Graph, index: usize) -> Result<Option<Vec<Tensor>>, PassError> {
    let node = &graph.nodes[index];
    if node.inputs.is_empty() || node.outputs.iter().any(|out| graph.outputs.contains(out)) {
        return Ok(None);
    }
    let Some(inputs) = node.inputs.iter().map(|&id| graph.constant(id)).collect::<Option<Vec<&Tensor>>>() else {
        return Ok(None);
    };
    let infos: Vec<TensorInfo> = node.outputs.iter().map(|&id| graph.info(id).clone()).collect();
    let values = match node.op.run(&inputs, &infos) {
        Ok(values) => values,
        Err(_) if touches_non_float(&inputs, &infos) => return Ok(None),
        Err(source) => return Err(PassError::ConstFold { node: node.name.clone(), source }),
    };
    if values.len() != infos.len() {
        return Err(PassError::FoldedMismatch {
            node: node.name.clone(),
            tensor: infos.first().map(|i| i.name.clone()).unwrap_or_default(),
            expected: format!("{} outputs", infos.len()),
            got: format!("{} outputs", values.len()),
        });
    }
    for (value, info) in values.iter().zip(&infos) {
        if value.shape != info.shape || value.dtype() != info.dtype || value.len() != info.elements() {
            return Err(PassError::FoldedMismatch {
                node: node.name.clone(),
                tensor: info.name.clone(),
                expected: format!("{} {:?}", info.dtype.name(), info.shape),
                got: format!("{} {:?}", value.dtype().name(), value.shape),
            });
        }
    }
    Ok(Some(values))
}

fn touches_non_float(inputs: &[&Tensor], outputs: &[TensorInfo]) -> bool {
    inputs.iter().any(|t| t.dtype() != DType::F32) || outputs.iter().any(|i| i.dtype != DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Op;
    use crate::ir::test_graph::{GraphBuilder, id_of, node_names};

    /// `c = relu(a - b)` on constants, then `y = x + c`: with working kernels the Sub and
    /// the Relu fold to `c = [0, 1, 0, 2.5]` (hand-computed: relu([1-2, 3-2, -1-0, 2.5-0])).
    fn graph() -> crate::ir::Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let a = b.constant("a", &[1, 4], vec![1.0, 3.0, -1.0, 2.5]);
        let bb = b.constant("b", &[1, 4], vec![2.0, 2.0, 0.0, 0.0]);
        let d = b.node("sub", Op::Binary(crate::ops::Binary::Sub), &[a, bb], "d", &[1, 4]);
        let c = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[d], "c", &[1, 4]);
        let y = b.node("add", Op::Binary(crate::ops::Binary::Add), &[x, c], "y", &[1, 4]);
        b.output(y);
        b.finish()
    }

    #[test]
    fn constant_subgraph_folds_to_named_constants() {
        let mut g = graph();
        assert_eq!(fold_constants(&mut g), Ok(2));
        assert_eq!(node_names(&g), ["add"]);
        let c = g.constant(id_of(&g, "c")).expect("c is a constant");
        assert_eq!(c.as_f32(), Some(&[0.0, 1.0, 0.0, 2.5][..]));
        assert!(g.is_constant(id_of(&g, "d")), "intermediate folded values are constants too");
        g.validate().unwrap();
    }

    #[test]
    fn kernel_failure_on_a_float_node_is_an_error() {
        // Shapes [1, 4] and [1, 3] do not broadcast: the kernel fails on float data, which
        // is a broken graph rather than an unsupported case.
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let a = b.constant("a", &[1, 4], vec![1.0; 4]);
        let c = b.constant("c", &[1, 3], vec![1.0; 3]);
        let d = b.node("bad_add", Op::Binary(crate::ops::Binary::Add), &[a, c], "d", &[1, 4]);
        let y = b.node("add", Op::Binary(crate::ops::Binary::Add), &[x, d], "y", &[1, 4]);
        b.output(y);
        let mut g = b.finish();
        assert!(matches!(fold_constants(&mut g), Err(PassError::ConstFold { node, .. }) if node == "bad_add"));
    }

    #[test]
    fn kernel_failure_on_a_non_float_node_leaves_it_in_place() {
        // The Sigmoid kernel rejects integers: the expected "unsupported" case.
        let mut b = GraphBuilder::new();
        let int = |name: &str| TensorInfo { name: name.into(), dtype: DType::I32, shape: vec![2] };
        let x = b.graph.add_tensor(int("x"));
        b.graph.inputs.push(x);
        let a = b.graph.add_tensor(int("a"));
        b.graph.constants.insert(a, Tensor::new(vec![2], crate::ir::TensorData::I32(vec![-1, 2])).unwrap());
        let d = b.graph.add_tensor(int("d"));
        let y = b.graph.add_tensor(int("y"));
        let node =
            |name: &str, op, inputs, output| crate::ir::Node { name: name.into(), op, inputs, outputs: vec![output] };
        b.graph.nodes.push(node("int_relu", Op::Unary(crate::ops::Unary::Sigmoid), vec![a], d));
        b.graph.nodes.push(node("add", Op::Binary(crate::ops::Binary::Add), vec![x, d], y));
        b.output(y);
        let mut g = b.finish();
        assert_eq!(fold_constants(&mut g), Ok(0));
        assert_eq!(node_names(&g), ["int_relu", "add"]);
    }

    #[test]
    fn node_writing_a_graph_output_is_not_folded() {
        let mut b = GraphBuilder::new();
        let a = b.constant("a", &[2], vec![1.0, -1.0]);
        let y = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[a], "y", &[2]);
        b.output(y);
        let mut g = b.finish();
        assert_eq!(fold_constants(&mut g), Ok(0));
        assert_eq!(node_names(&g), ["relu"]);
    }

    #[test]
    fn node_with_a_runtime_input_is_not_folded() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2]);
        let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "r", &[2]);
        let y = b.node("sig", Op::Unary(crate::ops::Unary::Sigmoid), &[r], "y", &[2]);
        b.output(y);
        let mut g = b.finish();
        assert_eq!(fold_constants(&mut g), Ok(0));
    }
}
