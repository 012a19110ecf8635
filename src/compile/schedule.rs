//! Scheduling: a topological order of the graph's nodes that keeps activation memory low.
//!
//! The graph's own order is always valid. As an alternative, a greedy list scheduler picks,
//! among the nodes whose inputs are ready, the one that frees the most bytes net of what it
//! allocates (ties: the earliest node of the graph order). The compiler plans memory for both
//! orders and keeps the smaller arena, so scheduling never makes a plan worse.

use std::collections::BTreeSet;

use crate::ir::{Graph, TensorId};

/// A topological order of `graph.nodes` chosen greedily to free memory early. `bytes[t]` is
/// the arena size of tensor `t` (0 for constants, which live outside the arena).
pub fn greedy_order(graph: &Graph, bytes: &[u64]) -> Vec<usize> {
    let size = |id: TensorId| bytes.get(id.index()).copied().unwrap_or(0);
    let n = graph.nodes.len();
    let tensor_count = graph.tensors.len();

    // Remaining readers of each tensor (distinct nodes; a graph output has one more reader
    // that never goes away, so it is never freed).
    let mut readers = vec![0usize; tensor_count];
    for node in &graph.nodes {
        for id in distinct(&node.inputs) {
            if let Some(r) = readers.get_mut(id.index()) {
                *r += 1;
            }
        }
    }
    for id in &graph.outputs {
        if let Some(r) = readers.get_mut(id.index()) {
            *r += 1;
        }
    }

    // Which node waits on which tensor, and how many inputs each node still waits for.
    let mut available = vec![false; tensor_count];
    for id in graph.inputs.iter().chain(graph.constants.keys()) {
        if let Some(a) = available.get_mut(id.index()) {
            *a = true;
        }
    }
    let mut waiting_on: Vec<Vec<usize>> = vec![Vec::new(); tensor_count];
    let mut pending = vec![0usize; n];
    for (i, node) in graph.nodes.iter().enumerate() {
        for id in distinct(&node.inputs) {
            if !available.get(id.index()).copied().unwrap_or(true) {
                pending[i] += 1;
                waiting_on[id.index()].push(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| pending[i] == 0).collect();

    let mut order = Vec::with_capacity(n);
    while !ready.is_empty() {
        let mut best: Option<(i128, usize)> = None;
        for &i in &ready {
            let node = &graph.nodes[i];
            let freed: u64 =
                distinct(&node.inputs).filter(|id| readers.get(id.index()) == Some(&1)).map(|&id| size(id)).sum();
            let allocated: u64 = node.outputs.iter().map(|&id| size(id)).sum();
            let gain = i128::from(freed) - i128::from(allocated);
            // Strictly better only: `ready` iterates in graph order, so ties keep the earliest.
            if best.is_none_or(|(g, _)| gain > g) {
                best = Some((gain, i));
            }
        }
        let Some((_, pick)) = best else { break };
        ready.remove(&pick);
        order.push(pick);
        let node = &graph.nodes[pick];
        for id in distinct(&node.inputs) {
            if let Some(r) = readers.get_mut(id.index()) {
                *r = r.saturating_sub(1);
            }
        }
        for id in &node.outputs {
            let Some(waiters) = waiting_on.get_mut(id.index()) else { continue };
            for waiter in std::mem::take(waiters) {
                pending[waiter] -= 1;
                if pending[waiter] == 0 {
                    ready.insert(waiter);
                }
            }
        }
    }
    // A valid graph schedules every node; if it somehow did not, the graph order is safe.
    if order.len() == n { order } else { (0..n).collect() }
}

/// The distinct ids of `ids`, in first-occurrence order.
fn distinct(ids: &[TensorId]) -> impl Iterator<Item = &TensorId> {
    ids.iter().enumerate().filter(move |(k, id)| !ids[..*k].contains(id)).map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, Node, Op, TensorInfo};

    fn add(g: &mut Graph, name: &str) -> TensorId {
        g.add_tensor(TensorInfo { name: name.into(), dtype: DType::F32, shape: vec![1] })
    }

    fn node(name: &str, inputs: Vec<TensorId>, outputs: Vec<TensorId>) -> Node {
        Node { name: name.into(), op: Op::Unary(crate::ops::Unary::Relu), inputs, outputs }
    }

    #[test]
    fn finishing_a_branch_first_frees_its_big_tensor() {
        // x -> a1 (big) -> a2 (small);  x -> b1 (big) -> b2 (small);  out = concat(a2, b2).
        // Graph order a1, b1, a2, b2 keeps both big tensors alive at once; the greedy
        // scheduler runs a2 right after a1 (frees a1's 1000 bytes for 10).
        let mut g = Graph::default();
        let [x, a1, a2, b1, b2, out] = ["x", "a1", "a2", "b1", "b2", "out"].map(|n| add(&mut g, n));
        g.inputs = vec![x];
        g.outputs = vec![out];
        g.nodes = vec![
            node("A1", vec![x], vec![a1]),
            node("B1", vec![x], vec![b1]),
            node("A2", vec![a1], vec![a2]),
            node("B2", vec![b1], vec![b2]),
            node("C", vec![a2, b2], vec![out]),
        ];
        let bytes = [10, 1000, 10, 1000, 10, 10];
        assert_eq!(greedy_order(&g, &bytes), [0, 2, 1, 3, 4]);
    }

    #[test]
    fn every_order_respects_dependencies() {
        let mut g = Graph::default();
        let [x, a, b, c] = ["x", "a", "b", "c"].map(|n| add(&mut g, n));
        g.inputs = vec![x];
        g.outputs = vec![c];
        // Listed in a valid order; b reads x twice.
        g.nodes = vec![node("A", vec![x], vec![a]), node("B", vec![x, x], vec![b]), node("C", vec![a, b], vec![c])];
        let order = greedy_order(&g, &[4, 4, 4, 4]);
        assert_eq!(order.len(), 3);
        assert_eq!(order.last(), Some(&2));
    }
}
