//! Identity and Dropout removal (both are the identity at inference time).
//!
//! A removable node reads one tensor `x` and writes `y` (Dropout's optional mask output must
//! be unused). Two rewrites, both keeping every graph output's name:
//! - `y` is not a graph output: every reader of `y` reads `x` instead and `y` disappears;
//! - `y` is a graph output: the node producing `x` writes `y` directly, when `x` is read only
//!   by this node, is not itself a graph output, and is neither a graph input nor a constant.
//!   Otherwise the node stays: it is what gives the graph output its name.

use std::collections::{HashMap, HashSet};

use crate::ir::{Graph, Node, Op, TensorId};

/// Removes what it can; returns the number of nodes removed.
pub(super) fn remove_identities(graph: &mut Graph) -> usize {
    bypass_internal(graph) + rename_into_outputs(graph)
}

/// `(x, y)` when `node` is an Identity/Dropout that may go: one input, and every output
/// after the first unread and not a graph output.
fn removable(
    node: &Node,
    consumers: &HashMap<TensorId, Vec<usize>>,
    graph_outputs: &HashSet<TensorId>,
) -> Option<(TensorId, TensorId)> {
    if !matches!(node.op, Op::Identity(crate::ops::Identity) | Op::Dropout(crate::ops::Dropout)) {
        return None;
    }
    let [x] = node.inputs.as_slice() else { return None };
    let (&y, extra) = node.outputs.split_first()?;
    let extra_used = extra.iter().any(|t| consumers.contains_key(t) || graph_outputs.contains(t));
    (!extra_used).then_some((*x, y))
}

/// First rewrite: bypasses nodes whose output is not a graph output, in one sweep over the
/// nodes (topological order means a substituted tensor's readers all come later).
fn bypass_internal(graph: &mut Graph) -> usize {
    let consumers = graph.consumers();
    let graph_outputs: HashSet<TensorId> = graph.outputs.iter().copied().collect();
    let mut substitute: HashMap<TensorId, TensorId> = HashMap::new();
    let mut keep = Vec::with_capacity(graph.nodes.len());
    for node in &mut graph.nodes {
        for input in &mut node.inputs {
            if let Some(&replacement) = substitute.get(input) {
                *input = replacement;
            }
        }
        let bypass = removable(node, &consumers, &graph_outputs).filter(|(_, y)| !graph_outputs.contains(y));
        if let Some((x, y)) = bypass {
            substitute.insert(y, x);
        }
        keep.push(bypass.is_none());
    }
    retain_nodes(graph, &keep)
}

/// Second rewrite: lets the producer of `x` write the graph output `y` directly.
fn rename_into_outputs(graph: &mut Graph) -> usize {
    let consumers = graph.consumers();
    let producers = graph.producers();
    let graph_outputs: HashSet<TensorId> = graph.outputs.iter().copied().collect();
    let graph_inputs: HashSet<TensorId> = graph.inputs.iter().copied().collect();
    let mut keep = vec![true; graph.nodes.len()];
    for (index, keep_node) in keep.iter_mut().enumerate() {
        let Some((x, y)) = removable(&graph.nodes[index], &consumers, &graph_outputs) else { continue };
        let only_reader = consumers.get(&x).is_some_and(|readers| readers.as_slice() == [index]);
        if !only_reader
            || graph_outputs.contains(&x)
            || graph_inputs.contains(&x)
            || graph.is_constant(x)
            || graph.info(x).shape != graph.info(y).shape
            || graph.info(x).dtype != graph.info(y).dtype
        {
            continue;
        }
        let Some(&producer) = producers.get(&x) else { continue };
        for out in &mut graph.nodes[producer].outputs {
            if *out == x {
                *out = y;
            }
        }
        *keep_node = false;
    }
    retain_nodes(graph, &keep)
}

/// Drops the nodes whose `keep` flag is false; returns how many went.
fn retain_nodes(graph: &mut Graph, keep: &[bool]) -> usize {
    let before = graph.nodes.len();
    let mut flags = keep.iter();
    graph.nodes.retain(|_| flags.next().copied().unwrap_or(true));
    before - graph.nodes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::test_graph::{GraphBuilder, id_of, node_names};

    #[test]
    fn internal_identity_is_bypassed() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "r", &[1, 4]);
        let i = b.node("id", Op::Identity(crate::ops::Identity), &[r], "i", &[1, 4]);
        let d = b.node("drop", Op::Dropout(crate::ops::Dropout), &[i], "d", &[1, 4]);
        let y = b.node("sig", Op::Unary(crate::ops::Unary::Sigmoid), &[d], "y", &[1, 4]);
        b.output(y);
        let mut g = b.finish();
        assert_eq!(remove_identities(&mut g), 2);
        assert_eq!(node_names(&g), ["relu", "sig"]);
        assert_eq!(g.nodes[1].inputs, vec![r]);
        g.validate().unwrap();
    }

    #[test]
    fn identity_writing_a_graph_output_keeps_the_output_name() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "r", &[1, 4]);
        let y = b.node("id", Op::Identity(crate::ops::Identity), &[r], "logits", &[1, 4]);
        b.output(y);
        let mut g = b.finish();
        assert_eq!(remove_identities(&mut g), 1);
        assert_eq!(node_names(&g), ["relu"]);
        g.compact();
        g.validate().unwrap();
        assert_eq!(g.name(g.outputs[0]), "logits");
        assert_eq!(g.name(g.nodes[0].outputs[0]), "logits");
        assert!(!g.names().contains_key("r"), "the producer's old output name is gone");
    }

    #[test]
    fn identity_stays_when_its_input_has_other_readers() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "r", &[1, 4]);
        let y = b.node("id", Op::Identity(crate::ops::Identity), &[r], "out", &[1, 4]);
        let s = b.node("sig", Op::Unary(crate::ops::Unary::Sigmoid), &[r], "s", &[1, 4]);
        b.output(y);
        b.output(s);
        let mut g = b.finish();
        assert_eq!(remove_identities(&mut g), 0);
        assert_eq!(node_names(&g), ["relu", "id", "sig"]);
    }

    #[test]
    fn identity_of_a_graph_input_to_a_graph_output_stays() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let y = b.node("id", Op::Identity(crate::ops::Identity), &[x], "y", &[1, 4]);
        b.output(y);
        let mut g = b.finish();
        assert_eq!(remove_identities(&mut g), 0);
        assert_eq!(g.nodes.len(), 1);
    }

    #[test]
    fn identity_whose_input_is_also_a_graph_output_stays() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "r", &[1, 4]);
        let y = b.node("id", Op::Identity(crate::ops::Identity), &[r], "y", &[1, 4]);
        b.output(r);
        b.output(y);
        let mut g = b.finish();
        assert_eq!(remove_identities(&mut g), 0);
    }

    #[test]
    fn chain_of_identities_into_a_graph_output_collapses() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "r", &[1, 4]);
        let i = b.node("id1", Op::Identity(crate::ops::Identity), &[r], "i", &[1, 4]);
        let y = b.node("id2", Op::Identity(crate::ops::Identity), &[i], "y", &[1, 4]);
        b.output(y);
        let mut g = b.finish();
        assert_eq!(remove_identities(&mut g), 2);
        g.compact();
        g.validate().unwrap();
        assert_eq!(node_names(&g), ["relu"]);
        assert_eq!(g.nodes[0].outputs, vec![id_of(&g, "y")]);
    }

    #[test]
    fn dropout_with_a_used_mask_stays() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4]);
        let y = b.tensor("y", &[1, 4]);
        let mask = b.tensor("mask", &[1, 4]);
        b.graph.nodes.push(Node {
            name: "drop".into(),
            op: Op::Dropout(crate::ops::Dropout),
            inputs: vec![x],
            outputs: vec![y, mask],
        });
        let s = b.node("sig", Op::Unary(crate::ops::Unary::Sigmoid), &[y], "s", &[1, 4]);
        b.output(s);
        b.output(mask);
        let mut g = b.finish();
        assert_eq!(remove_identities(&mut g), 0);
    }
}
