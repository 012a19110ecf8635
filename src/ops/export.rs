//! What an op's QDQ export sees ([`ExportCx`]): the names its node reads and writes, the
//! shapes of those tensors, and a host that adds initializers and nodes to the ONNX graph
//! being written (`onnx::export` implements [`ExportHost`]).

use crate::onnx::proto::AttributeProto;
use crate::onnx::proto::attribute_proto::AttributeType;

/// The ONNX graph under construction, as an op's export uses it.
pub trait ExportHost {
    /// A small int64 initializer (shapes, axes, pads) named after `node` and `role`.
    fn int64s(&mut self, node: &str, role: &str, values: &[i64]) -> String;
    /// A float32 scalar initializer named after `node` and `role`.
    fn scalar(&mut self, node: &str, role: &str, value: f32) -> String;
    /// A 1-D float32 initializer (Resize's roi and scales) named after `node` and `role`.
    fn floats(&mut self, node: &str, role: &str, values: &[f32]) -> String;
    /// A name no tensor of the model has yet, based on `base`.
    fn fresh(&mut self, base: String) -> String;
    /// A node the graph did not have (a helper node): its name is made unique.
    fn push_node(
        &mut self,
        op_type: &str,
        name: String,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    );
    /// The graph node itself, under its own (unique) name.
    fn push_graph_node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    );
}

/// One IR node being exported.
pub struct ExportCx<'a> {
    pub host: &'a mut dyn ExportHost,
    /// The node's name in the graph.
    pub name: &'a str,
    /// ONNX names the node's inputs are read from, in IR input order.
    pub inputs: Vec<String>,
    /// ONNX names the node's outputs are written to.
    pub outputs: Vec<String>,
    pub input_shapes: Vec<Vec<usize>>,
    pub output_shapes: Vec<Vec<usize>>,
}

impl ExportCx<'_> {
    /// Emits the node as one ONNX node of `op_type` with `attrs`, reading the IR inputs.
    pub fn emit(&mut self, op_type: &str, attrs: Vec<AttributeProto>) {
        let (inputs, outputs) = (std::mem::take(&mut self.inputs), std::mem::take(&mut self.outputs));
        self.host.push_graph_node(op_type, self.name, inputs, outputs, attrs);
    }

    /// Emits the node with extra inputs appended after the IR inputs (the constant inputs
    /// ONNX wants where the IR holds attributes: Reshape's shape, Clip's bounds...).
    pub fn emit_with(&mut self, op_type: &str, extra: Vec<String>, attrs: Vec<AttributeProto>) {
        self.inputs.extend(extra);
        self.emit(op_type, attrs);
    }

    /// An int64 initializer for this node.
    pub fn int64s(&mut self, role: &str, values: &[i64]) -> String {
        self.host.int64s(self.name, role, values)
    }

    /// A float32 scalar initializer for this node.
    pub fn scalar(&mut self, role: &str, value: f32) -> String {
        self.host.scalar(self.name, role, value)
    }

    /// A 1-D float32 initializer for this node.
    pub fn floats(&mut self, role: &str, values: &[f32]) -> String {
        self.host.floats(self.name, role, values)
    }
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto { name: Some(name.to_string()), r#type: Some(kind as i32), ..Default::default() }
}

pub(crate) fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { i: Some(value), ..attr(name, AttributeType::Int) }
}

pub(crate) fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { ints: values.to_vec(), ..attr(name, AttributeType::Ints) }
}

pub(crate) fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { f: Some(value), ..attr(name, AttributeType::Float) }
}

pub(crate) fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto { s: Some(value.as_bytes().to_vec()), ..attr(name, AttributeType::String) }
}

/// `usize` values as ONNX ints.
pub(crate) fn ints(values: &[usize]) -> Vec<i64> {
    values.iter().map(|&v| v as i64).collect()
}
