//! Dead-node pruning: a node none of whose outputs reaches a graph output is removed; the
//! tensors and constants nothing refers to any more are then dropped by [`Graph::compact`].

use std::collections::HashSet;

use crate::ir::{Graph, TensorId};

/// Removes dead nodes and compacts the graph; returns the number of nodes removed.
pub(super) fn prune(graph: &mut Graph) -> usize {
    // Walk backwards from the graph outputs: in topological order every reader of a tensor
    // comes after its producer, so one reverse sweep sees each node after all its readers.
    let mut live: HashSet<TensorId> = graph.outputs.iter().copied().collect();
    let mut keep = vec![false; graph.nodes.len()];
    for (index, node) in graph.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|out| live.contains(out)) {
            keep[index] = true;
            live.extend(node.inputs.iter().copied());
        }
    }
    let before = graph.nodes.len();
    let mut flags = keep.into_iter();
    graph.nodes.retain(|_| flags.next().unwrap_or(true));
    graph.compact();
    before - graph.nodes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Op;
    use crate::ir::test_graph::{GraphBuilder, node_names};

    #[test]
    fn dead_branches_and_their_constants_go() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 2]);
        let c = b.constant("c", &[1, 2], vec![1.0, 2.0]);
        let unused = b.constant("unused", &[1, 2], vec![3.0, 4.0]);
        let dead1 = b.node("dead_add", Op::Binary(crate::ops::Binary::Add), &[x, c], "dead1", &[1, 2]);
        let _dead2 = b.node("dead_relu", Op::Unary(crate::ops::Unary::Relu), &[dead1], "dead2", &[1, 2]);
        let y = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "y", &[1, 2]);
        b.output(y);
        let _ = unused;
        let mut g = b.finish();
        assert_eq!(prune(&mut g), 2);
        assert_eq!(node_names(&g), ["relu"]);
        let mut names: Vec<&str> = g.tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["x", "y"]);
        assert!(g.constants.is_empty());
        assert_eq!(g.inputs.len(), 1, "graph inputs stay even when unread");
        g.validate().unwrap();
    }

    #[test]
    fn a_node_with_one_live_output_stays() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 2]);
        let a = b.node("a", Op::Unary(crate::ops::Unary::Relu), &[x], "a", &[1, 2]);
        let y = b.node("b", Op::Unary(crate::ops::Unary::Sigmoid), &[a], "y", &[1, 2]);
        b.output(y);
        let mut g = b.finish();
        assert_eq!(prune(&mut g), 0);
        assert_eq!(node_names(&g), ["a", "b"]);
    }
}
