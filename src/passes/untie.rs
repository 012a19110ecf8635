//! Untying shared parameters: a constant that several ops read as a weight or bias (exporters
//! deduplicate equal initializers: torch shares one all-zero tensor between a Conv bias and a
//! LayerNorm beta) gets one copy per reader, so each reader's parameter takes the encoding
//! its own op needs (a per-channel int32 bias for the Conv, a per-tensor grid for the other).

use std::collections::BTreeMap;

use crate::ir::{DType, Graph, TensorId, TensorInfo};
use crate::ops::InputRole;

/// Gives a reading of a shared float parameter a copy of its own, named `<name>_<reader
/// node>`, when its op type or input role differs from the first reader's, or it is a bias;
/// returns how many copies were made.
pub(super) fn untie_parameters(graph: &mut Graph) -> usize {
    let mut readings: BTreeMap<TensorId, Vec<(usize, usize)>> = BTreeMap::new();
    for (n, node) in graph.nodes.iter().enumerate() {
        for (position, &id) in node.inputs.iter().enumerate() {
            if graph.constant(id).is_some_and(|t| t.dtype() == DType::F32) {
                readings.entry(id).or_default().push((n, position));
            }
        }
    }
    let mut copies = 0;
    for (id, reads) in readings {
        let rank = graph.info(id).shape.len();
        let role = |&(n, position): &(usize, usize)| graph.nodes[n].op.input_role(position, rank);
        let kind = |read: &(usize, usize)| (graph.nodes[read.0].op.type_name(), role(read));
        // A bias's int32 grid depends on its reader's input and weight scales; any other
        // parameter can stay shared between readers of the same op type and role.
        let own_copy: Vec<(usize, usize)> = reads[1..]
            .iter()
            .copied()
            .filter(|read| role(read) == InputRole::Bias || kind(read) != kind(&reads[0]))
            .collect();
        let is_param = |read: &(usize, usize)| {
            matches!(role(read), InputRole::Weight { .. } | InputRole::Bias | InputRole::FloatParam)
        };
        if !reads.iter().any(is_param) {
            continue;
        }
        let value = graph.constants[&id].clone();
        for (n, position) in own_copy {
            let info = graph.info(id).clone();
            let name = format!("{}_{}", info.name, graph.nodes[n].name);
            let copy = graph.add_tensor(TensorInfo { name, ..info });
            graph.constants.insert(copy, value.clone());
            graph.nodes[n].inputs[position] = copy;
            copies += 1;
        }
    }
    copies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Op;
    use crate::ir::test_graph::GraphBuilder;

    #[test]
    fn a_bias_shared_with_an_add_gets_a_copy_and_a_lone_one_does_not() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 2]);
        let w = b.constant("w", &[2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let zeros = b.constant("zeros", &[2], vec![0.0, 0.0]);
        let gemm = Op::Gemm(crate::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true });
        let y = b.node("fc", gemm, &[x, w, zeros], "y", &[1, 2]);
        let z = b.node("add", Op::Binary(crate::ops::Binary::Add), &[y, zeros], "z", &[1, 2]);
        b.output(z);
        let mut g = b.finish();
        assert_eq!(untie_parameters(&mut g), 1);
        let add_operand = g.nodes[1].inputs[1];
        assert_ne!(add_operand, zeros);
        assert_eq!(g.name(add_operand), "zeros_add");
        assert_eq!(g.constants[&add_operand], g.constants[&zeros]);
        assert_eq!(g.nodes[0].inputs[2], zeros, "the first reader keeps the original");
        g.validate().unwrap();
        assert_eq!(untie_parameters(&mut g), 0, "nothing is shared any more");
    }
}
