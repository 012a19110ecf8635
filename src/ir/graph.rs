//! The dataflow graph: tensors (by id), constant data, nodes in topological order.
//!
//! **Invariants** (checked by [`Graph::validate`]):
//! - every tensor has a unique, non-empty name: the ONNX name it had in the source model, so
//!   encodings files keyed by ONNX names keep matching after optimization;
//! - every tensor has a known dtype and a fully static shape;
//! - `nodes` is in topological order and every tensor is produced at most once: by a node,
//!   as a graph input, or as a constant;
//! - graph inputs and outputs are never constants.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::model_encoding::ModelEncoding;
use super::tensor::{DType, Tensor};
use crate::ops::Op;

/// Index into [`Graph::tensors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TensorId(pub u32);

impl TensorId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The ONNX node name, or a generated `<OpType>_<index>` when the model left it empty.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Graph {
    pub tensors: Vec<TensorInfo>,
    /// Initializers and folded values.
    pub constants: BTreeMap<TensorId, Tensor>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
    /// Encodings the model carried itself (stripped QuantizeLinear/DequantizeLinear pairs), by
    /// tensor name. Names, not ids, so [`Graph::compact`] and passes that renumber tensors keep
    /// them valid; an entry whose tensor a pass removed is simply not used.
    #[serde(default)]
    pub model_encodings: BTreeMap<String, ModelEncoding>,
    /// Graph inputs that decide shapes (Reshape's shape, Expand's shape, Reduce axes fed as
    /// inputs...): the graph was specialized on the one value the project's data gives them,
    /// so they are constants here, not entries of `inputs`.
    #[serde(default)]
    pub bound_inputs: Vec<BoundInput>,
    /// The BatchNormalizations the optimizer folded, in the order it folded them: what an
    /// encodings file made for the unfolded model needs to apply to this one.
    #[serde(default)]
    pub batchnorm_folds: Vec<BatchNormFold>,
}

/// A BatchNormalization folded into the Conv or Gemm that feeds it (`passes::bn_fold`), by
/// tensor name (names stay valid when passes renumber tensors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormFold {
    /// The BatchNormalization node.
    pub node: String,
    /// Its output: gone from the graph, unless it was a graph output (then it is `holds`).
    pub bn_output: String,
    /// The layer's output before the fold, whose pre-BatchNorm values no tensor holds now.
    pub layer_output: String,
    /// The tensor that holds the BatchNorm's output values now (the layer's output).
    pub holds: String,
    /// The layer's weight before the fold and after it (another name only when the weight was
    /// shared with another layer and could not be updated in place).
    pub weight: (String, String),
    /// The layer's bias before the fold (none when it had none) and after it.
    pub bias: (Option<String>, String),
    /// Per output channel, what the weights were multiplied by: `gamma / sqrt(var + epsilon)`.
    pub scales: Vec<f32>,
    /// `gamma`, `beta`, `mean` and `var`: gone with the node.
    pub parameters: Vec<String>,
}

/// A graph input the graph was specialized on (see [`Graph::bound_inputs`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundInput {
    pub name: String,
    /// Its place among the model's graph inputs (initializers excluded), for input lists
    /// whose lines give files by position.
    pub position: usize,
    pub value: Tensor,
}

/// A broken structural invariant; only a bug in an importer or pass produces one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid graph: {0}")]
pub struct InvalidGraph(pub String);

impl Graph {
    pub fn info(&self, id: TensorId) -> &TensorInfo {
        &self.tensors[id.index()]
    }

    pub fn name(&self, id: TensorId) -> &str {
        &self.tensors[id.index()].name
    }

    pub fn add_tensor(&mut self, info: TensorInfo) -> TensorId {
        let id = TensorId(self.tensors.len() as u32);
        self.tensors.push(info);
        id
    }

    pub fn constant(&self, id: TensorId) -> Option<&Tensor> {
        self.constants.get(&id)
    }

    pub fn is_constant(&self, id: TensorId) -> bool {
        self.constants.contains_key(&id)
    }

    /// Name -> id for every tensor.
    pub fn names(&self) -> HashMap<&str, TensorId> {
        self.tensors.iter().enumerate().map(|(i, t)| (t.name.as_str(), TensorId(i as u32))).collect()
    }

    /// For every tensor, the node index that produces it (graph inputs and constants: none).
    pub fn producers(&self) -> HashMap<TensorId, usize> {
        let mut map = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for &out in &node.outputs {
                map.insert(out, i);
            }
        }
        map
    }

    /// For every tensor, the indices of the nodes that read it, in node order.
    pub fn consumers(&self) -> HashMap<TensorId, Vec<usize>> {
        let mut map: HashMap<TensorId, Vec<usize>> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for &input in &node.inputs {
                let readers = map.entry(input).or_default();
                if readers.last() != Some(&i) {
                    readers.push(i);
                }
            }
        }
        map
    }

    /// Drops tensors that no node, input, output or constant refers to, renumbering ids
    /// densely in their previous order; also drops constants nothing reads.
    pub fn compact(&mut self) {
        let mut used = vec![false; self.tensors.len()];
        for node in &self.nodes {
            for id in node.inputs.iter().chain(&node.outputs) {
                used[id.index()] = true;
            }
        }
        for id in self.inputs.iter().chain(&self.outputs) {
            used[id.index()] = true;
        }
        let mut remap = vec![None; self.tensors.len()];
        let mut tensors = Vec::new();
        for (i, info) in self.tensors.drain(..).enumerate() {
            if used[i] {
                remap[i] = Some(TensorId(tensors.len() as u32));
                tensors.push(info);
            }
        }
        self.tensors = tensors;
        let map = |id: &mut TensorId| {
            *id = remap[id.index()].expect("a used tensor has a new id");
        };
        for node in &mut self.nodes {
            node.inputs.iter_mut().for_each(map);
            node.outputs.iter_mut().for_each(map);
        }
        self.inputs.iter_mut().for_each(map);
        self.outputs.iter_mut().for_each(map);
        self.constants = std::mem::take(&mut self.constants)
            .into_iter()
            .filter_map(|(id, t)| remap[id.index()].map(|new| (new, t)))
            .collect();
    }

    /// Checks the invariants listed in the module docs.
    pub fn validate(&self) -> Result<(), InvalidGraph> {
        let fail = |msg: String| Err(InvalidGraph(msg));
        let mut seen_names = HashMap::new();
        for (i, info) in self.tensors.iter().enumerate() {
            if info.name.is_empty() {
                return fail(format!("tensor {i} has no name"));
            }
            if let Some(prev) = seen_names.insert(info.name.as_str(), i) {
                return fail(format!("tensors {prev} and {i} share the name {:?}", info.name));
            }
        }
        let mut defined = vec![false; self.tensors.len()];
        for (&id, tensor) in &self.constants {
            let info = self.tensors.get(id.index());
            let Some(info) = info else { return fail(format!("constant {id:?} out of range")) };
            if tensor.shape != info.shape || tensor.dtype() != info.dtype {
                return fail(format!("constant {:?} disagrees with its tensor info", info.name));
            }
            defined[id.index()] = true;
        }
        for &id in &self.inputs {
            if defined[id.index()] {
                return fail(format!("graph input {:?} is also a constant", self.name(id)));
            }
            defined[id.index()] = true;
        }
        for node in &self.nodes {
            for &input in &node.inputs {
                if !defined.get(input.index()).copied().unwrap_or(false) {
                    return fail(format!("node {:?} reads {:?} before it is defined", node.name, self.name(input)));
                }
            }
            for &out in &node.outputs {
                if std::mem::replace(&mut defined[out.index()], true) {
                    return fail(format!("tensor {:?} is defined twice", self.name(out)));
                }
            }
        }
        for &out in &self.outputs {
            if self.is_constant(out) {
                return fail(format!("graph output {:?} is a constant", self.name(out)));
            }
            if !defined[out.index()] {
                return fail(format!("graph output {:?} is never produced", self.name(out)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> TensorInfo {
        TensorInfo { name: name.into(), dtype: DType::F32, shape: vec![1, 4] }
    }

    #[test]
    fn compact_drops_unused_tensors_and_renumbers() {
        let mut g = Graph::default();
        let x = g.add_tensor(info("x"));
        let _dead = g.add_tensor(info("dead"));
        let y = g.add_tensor(info("y"));
        g.inputs = vec![x];
        g.outputs = vec![y];
        g.nodes.push(Node {
            name: "r".into(),
            op: Op::Unary(crate::ops::Unary::Relu),
            inputs: vec![x],
            outputs: vec![y],
        });
        let enc = ModelEncoding { scales: vec![0.5], zero_points: vec![3], axis: None, bitwidth: 8, signed: false };
        g.model_encodings.insert("y".into(), enc.clone());
        g.compact();
        assert_eq!(g.model_encodings.get("y"), Some(&enc), "compact keeps the model's encodings");
        assert_eq!(g.tensors.len(), 2);
        assert_eq!(g.name(g.outputs[0]), "y");
        g.validate().unwrap();
    }

    #[test]
    fn validate_rejects_use_before_definition() {
        let mut g = Graph::default();
        let x = g.add_tensor(info("x"));
        let y = g.add_tensor(info("y"));
        let z = g.add_tensor(info("z"));
        g.inputs = vec![x];
        g.outputs = vec![z];
        g.nodes.push(Node {
            name: "a".into(),
            op: Op::Unary(crate::ops::Unary::Relu),
            inputs: vec![y],
            outputs: vec![z],
        });
        g.nodes.push(Node {
            name: "b".into(),
            op: Op::Unary(crate::ops::Unary::Relu),
            inputs: vec![x],
            outputs: vec![y],
        });
        assert!(g.validate().unwrap_err().0.contains("before it is defined"));
    }
}
