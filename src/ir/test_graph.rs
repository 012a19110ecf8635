//! A small builder for hand-made test graphs (float tensors only).

use crate::ir::{DType, Graph, Node, Op, Tensor, TensorId, TensorInfo};

#[derive(Default)]
pub struct GraphBuilder {
    pub graph: Graph,
}

impl GraphBuilder {
    pub fn new() -> Self {
        GraphBuilder::default()
    }

    pub fn tensor(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.graph.add_tensor(TensorInfo { name: name.into(), dtype: DType::F32, shape: shape.to_vec() })
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> TensorId {
        let id = self.tensor(name, shape);
        self.graph.inputs.push(id);
        id
    }

    pub fn constant(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> TensorId {
        let id = self.tensor(name, shape);
        self.graph.constants.insert(id, Tensor::from_f32(shape.to_vec(), data));
        id
    }

    /// Adds a single-output node and returns its output tensor.
    pub fn node(&mut self, name: &str, op: Op, inputs: &[TensorId], output: &str, shape: &[usize]) -> TensorId {
        let out = self.tensor(output, shape);
        self.graph.nodes.push(Node { name: name.into(), op, inputs: inputs.to_vec(), outputs: vec![out] });
        out
    }

    pub fn output(&mut self, id: TensorId) {
        self.graph.outputs.push(id);
    }

    pub fn finish(self) -> Graph {
        self.graph.validate().expect("test graph is valid");
        self.graph
    }
}

/// Names of the nodes, in order.
pub fn node_names(graph: &Graph) -> Vec<&str> {
    graph.nodes.iter().map(|n| n.name.as_str()).collect()
}

/// The tensor called `name`; panics in tests when absent.
pub fn id_of(graph: &Graph, name: &str) -> TensorId {
    *graph.names().get(name).unwrap_or_else(|| panic!("no tensor {name:?}"))
}
