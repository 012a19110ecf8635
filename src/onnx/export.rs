//! Export of the optimized, quantized graph as an ONNX QDQ model (`out/<target>/model.qdq.onnx`).
//!
//! The model computes what qairt's `simulate` computes, in the form onnxruntime's QDQ tooling
//! uses (opset [`OPSET`], IR version [`IR_VERSION`]):
//!
//! - **Weights and other quantized constants** are integer initializers read through a
//!   `DequantizeLinear` whose output keeps the constant's name (per channel with `axis`).
//! - **Activations** (graph inputs and op outputs) with an integer encoding get
//!   `QuantizeLinear -> DequantizeLinear` after their producer. Names follow onnxruntime's QDQ
//!   models (so that qairt's own QDQ import, `super::qdq`, reads an exported model back with the
//!   optimized graph's tensor names): the producer's output and every graph input keep their
//!   names (the float value before quantization), consumers read
//!   `<name>_DequantizeLinear_Output`; a graph output's name goes to the dequantized value and
//!   its producer writes `<name>_QuantizeLinear_Input`. Generated tensors are named
//!   `<name>_<node>_Output` after the node writing them (`<name>_<node>`).
//! - **Float16** tensors go through `Cast` to float16 and back (`<name>_CastToFloat16`,
//!   `<name>_CastToFloat`).
//! - Tensors without an encoding (or with a float32 one) stay float32, untouched.
//!
//! # Encodings (AIMET/SDK convention -> ONNX)
//!
//! qairt's `x = (q + offset) * scale` with `q` in `[0, 2^bw - 1]` is ONNX's
//! `x = (q' - zero_point) * scale` with either
//! - an unsigned type: `q' = q`, `zero_point = -offset`; or
//! - a signed type: `q' = q - 2^(bw-1)`, `zero_point = -offset - 2^(bw-1)`.
//!
//! Both are exact. The signed form is used when every channel is symmetric on the SDK's grid
//! (`offset = -2^(bw-1)`, so `zero_point = 0`, as onnxruntime's QDQ weights are) and for
//! 17..=32-bit encodings (biases: int32 with zero point 0); the unsigned form otherwise. Types:
//! 1..=4 bits -> (u)int4, 5..=8 -> (u)int8, 9..=16 -> (u)int16, 17..=32 -> int32. A constant's
//! codes fit its type whatever the bitwidth. `QuantizeLinear` saturates to its type's range, so
//! an activation whose bitwidth is not 4, 8 or 16 gets a `Clip` to the float values of grid
//! points `0` and `2^bw - 1` after its `DequantizeLinear` (exact: dequantization is monotonic
//! and that bound is the value the `DequantizeLinear` itself would produce). Activations wider
//! than 16 bits have no `QuantizeLinear` type and are an [`ExportError`].
//!
//! Rounding agrees with qairt's: `QuantizeLinear` computes `saturate(round_half_even(x /
//! scale) + zero_point)` and `DequantizeLinear` `(q - zero_point) * scale`, in float32.
//!
//! The output bytes are a deterministic function of the [`QuantizedGraph`]: nodes, initializers
//! and names are produced in graph order, never from a hash map.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

use super::proto::attribute_proto::AttributeType;
use super::proto::tensor_proto::DataType;
use super::proto::tensor_shape_proto::{Dimension, dimension};
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, type_proto,
};
use super::tensor::onnx_code;
use crate::ir::{DType, Graph, Node, Tensor, TensorId};
use crate::ops::{ExportCx, ExportHost};
use crate::quant::apply::quantize_tensor;
use crate::quant::encoding::{Encoding, QuantizedGraph, TensorEncoding};
use crate::quant::math::symmetric_offset_magnitude;

/// The `ai.onnx` opset of exported models: the first with int4/uint4 and 16-bit
/// `QuantizeLinear`/`DequantizeLinear`.
pub const OPSET: i64 = 21;

/// The IR version that goes with [`OPSET`] (onnx 1.16+).
pub const IR_VERSION: i64 = 10;

/// Why the quantized graph could not be written as an ONNX QDQ model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    #[error("the quantized graph is inconsistent: {0}")]
    InvalidGraph(String),
    #[error("node \"{node}\": op {op} has no ONNX form")]
    UnsupportedOp { node: String, op: String },
    #[error("tensor \"{tensor}\": {message}")]
    Encoding { tensor: String, message: String },
}

/// Serializes `q` as an ONNX model with QuantizeLinear/DequantizeLinear pairs carrying its
/// encodings (see the module docs for the exact form).
pub fn export_qdq(q: &QuantizedGraph) -> Result<Vec<u8>, ExportError> {
    Ok(build_model(q)?.encode_to_vec())
}

/// The model [`export_qdq`] serializes.
pub fn build_model(q: &QuantizedGraph) -> Result<ModelProto, ExportError> {
    q.graph.validate().map_err(|e| ExportError::InvalidGraph(e.0))?;
    let mut b = Builder::new(&q.graph, &q.encodings);
    b.graph_inputs()?;
    b.constants()?;
    for node in &q.graph.nodes {
        b.node(node)?;
    }
    let graph = &q.graph;
    let mut outputs = Vec::with_capacity(graph.outputs.len());
    for &id in &graph.outputs {
        outputs.push(value_info(b.read(id)?, graph.info(id).dtype, &graph.info(id).shape));
    }
    let inputs = graph.inputs.iter().map(|&id| value_info(graph.name(id), graph.info(id).dtype, &graph.info(id).shape));
    let graph_proto = GraphProto {
        node: b.nodes,
        name: Some("qairt_qdq".to_string()),
        initializer: b.initializers,
        input: inputs.collect(),
        output: outputs,
        doc_string: Some(
            "The optimized graph with qairt's final encodings as QuantizeLinear/DequantizeLinear pairs".to_string(),
        ),
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("qairt".to_string()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        graph: Some(graph_proto),
        ..Default::default()
    })
}

/// An ONNX integer type for quantized codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QType {
    U4,
    I4,
    U8,
    I8,
    U16,
    I16,
    I32,
}

impl QType {
    /// The type holding `bitwidth`-bit codes, signed or not (17..=32 bits: always int32).
    fn for_bits(bitwidth: u32, signed: bool) -> QType {
        match (bitwidth, signed) {
            (0..=4, false) => QType::U4,
            (0..=4, true) => QType::I4,
            (5..=8, false) => QType::U8,
            (5..=8, true) => QType::I8,
            (9..=16, false) => QType::U16,
            (9..=16, true) => QType::I16,
            _ => QType::I32,
        }
    }

    fn bits(self) -> u32 {
        match self {
            QType::U4 | QType::I4 => 4,
            QType::U8 | QType::I8 => 8,
            QType::U16 | QType::I16 => 16,
            QType::I32 => 32,
        }
    }

    fn signed(self) -> bool {
        matches!(self, QType::I4 | QType::I8 | QType::I16 | QType::I32)
    }

    fn range(self) -> (i64, i64) {
        let bits = self.bits();
        if self.signed() { (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) } else { (0, (1i64 << bits) - 1) }
    }

    fn data_type(self) -> DataType {
        match self {
            QType::U4 => DataType::Uint4,
            QType::I4 => DataType::Int4,
            QType::U8 => DataType::Uint8,
            QType::I8 => DataType::Int8,
            QType::U16 => DataType::Uint16,
            QType::I16 => DataType::Int16,
            QType::I32 => DataType::Int32,
        }
    }

    /// `raw_data` of `values` (each in [`QType::range`]): little-endian; 4-bit values two per
    /// byte, the first in the low nibble (the ONNX packing).
    fn raw(self, values: &[i64]) -> Vec<u8> {
        match self {
            QType::U4 | QType::I4 => values
                .chunks(2)
                .map(|pair| {
                    let nibble = |v: i64| (v as u8) & 0x0f;
                    nibble(pair[0]) | pair.get(1).map_or(0, |&v| nibble(v) << 4)
                })
                .collect(),
            QType::U8 | QType::I8 => values.iter().map(|&v| v as u8).collect(),
            QType::U16 | QType::I16 => values.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect(),
            QType::I32 => values.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
        }
    }
}

/// An integer encoding in ONNX terms.
#[derive(Clone, Debug, PartialEq)]
struct OnnxQuant {
    qtype: QType,
    /// `Some` for per-channel encodings.
    axis: Option<usize>,
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    /// Added to a grid value `q` of qairt's unsigned convention to get the stored code.
    shift: i64,
    /// For activations whose grid is narrower than `qtype`: the float values of grid points
    /// `0` and `2^bw - 1`, to clip to after dequantization.
    clip: Option<(f32, f32)>,
    /// Blocked (per-block weights): the block size and the scale tensor's shape; `axis` is
    /// then the block axis.
    block: Option<(usize, Vec<usize>)>,
}

/// The ONNX form of the integer encoding `e` of tensor `name` (shape `shape`); see the module
/// docs. `activation`: the tensor is quantized at run time by a `QuantizeLinear`.
fn onnx_quant(name: &str, e: &TensorEncoding, shape: &[usize], activation: bool) -> Result<OnnxQuant, ExportError> {
    let fail = |message: String| ExportError::Encoding { tensor: name.to_string(), message };
    let (axis, channels): (Option<usize>, &[Encoding]) = match e {
        TensorEncoding::PerTensor(enc) => (None, std::slice::from_ref(enc)),
        TensorEncoding::PerChannel { axis, channels } => {
            let dim = shape.get(*axis).copied();
            if dim != Some(channels.len()) {
                return Err(fail(format!(
                    "a per-channel encoding with {} channels along axis {axis} does not fit shape {shape:?}",
                    channels.len()
                )));
            }
            (Some(*axis), channels)
        }
        TensorEncoding::Float { .. } => return Err(fail("a float encoding has no integer form".to_string())),
        TensorEncoding::PerBlock { axis, block_axis, block_size, blocks } => {
            if activation {
                return Err(fail("a per-block activation encoding: only weights are blocked".to_string()));
            }
            let (dims, expanded) = blocked_scales(shape, *axis, *block_axis, *block_size, blocks)
                .ok_or_else(|| fail(format!("per-block encodings do not tile shape {shape:?}")))?;
            let mut q = onnx_quant(
                name,
                &TensorEncoding::PerChannel { axis: 0, channels: expanded.clone() },
                &[expanded.len()],
                false,
            )?;
            q.axis = Some(*block_axis);
            q.block = Some((*block_size, dims));
            return Ok(q);
        }
    };
    let Some(first) = channels.first() else {
        return Err(fail("a per-channel encoding with no channels".to_string()));
    };
    let bitwidth = first.bitwidth;
    if !(1..=32).contains(&bitwidth) || channels.iter().any(|c| c.bitwidth != bitwidth) {
        let widths: BTreeSet<u32> = channels.iter().map(|c| c.bitwidth).collect();
        return Err(fail(format!("bitwidth {widths:?}: expected one bitwidth in 1..=32 for all channels")));
    }
    if let Some(c) = channels.iter().find(|c| !(c.scale.is_finite() && c.scale > 0.0)) {
        return Err(fail(format!("scale {} is not a positive finite number", c.scale)));
    }
    if activation && bitwidth > 16 {
        return Err(fail(format!(
            "a {bitwidth}-bit activation encoding: ONNX QuantizeLinear has no integer type wider than 16 bits"
        )));
    }
    let half = symmetric_offset_magnitude(bitwidth);
    let signed = bitwidth > 16 || channels.iter().all(|c| i64::from(c.offset) == -half);
    let qtype = QType::for_bits(bitwidth, signed);
    let shift = if signed { -half } else { 0 };
    let (lo, hi) = qtype.range();
    let mut zero_points = Vec::with_capacity(channels.len());
    for c in channels {
        let zp = -i64::from(c.offset) + shift;
        if zp < lo || zp > hi {
            return Err(fail(format!(
                "offset {} puts the zero point outside the {bitwidth}-bit grid, which ONNX cannot express",
                c.offset
            )));
        }
        zero_points.push(zp);
    }
    let clip = if activation && bitwidth != qtype.bits() {
        if axis.is_some() {
            return Err(fail(format!(
                "a per-channel {bitwidth}-bit activation encoding: ONNX can only clip a narrow grid per tensor"
            )));
        }
        Some((first.dequantize(0), first.dequantize(first.qmax())))
    } else {
        None
    };
    Ok(OnnxQuant {
        qtype,
        axis,
        scales: channels.iter().map(|c| c.scale).collect(),
        zero_points,
        shift,
        clip,
        block: None,
    })
}

/// A per-block encoding as ONNX's blocked `DequantizeLinear` (opset 21) takes it: the scale
/// tensor has the weight's shape with the block axis divided by the block size, every other
/// axis whole, so a block's encoding repeats along the axes it spans (a Conv's kernel
/// positions). Returns that shape and its encodings, row-major.
fn blocked_scales(
    shape: &[usize],
    axis: usize,
    block_axis: usize,
    block_size: usize,
    blocks: &[Encoding],
) -> Option<(Vec<usize>, Vec<Encoding>)> {
    let inputs = *shape.get(block_axis)?;
    let channels = *shape.get(axis)?;
    if axis == block_axis || block_size == 0 || !inputs.is_multiple_of(block_size) {
        return None;
    }
    let per_channel = inputs / block_size;
    let mut dims = shape.to_vec();
    dims[block_axis] = per_channel;
    let total: usize = dims.iter().product();
    let stride = |a: usize| dims[a + 1..].iter().product::<usize>();
    let (channel_stride, block_stride) = (stride(axis), stride(block_axis));
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        let (c, b) = ((i / channel_stride) % channels, (i / block_stride) % per_channel);
        let index = if axis < block_axis { c * per_channel + b } else { b * channels + c };
        out.push(blocks.get(index)?.clone());
    }
    Some((dims, out))
}

/// How a float32 tensor is represented in the exported model.
enum Form {
    Float32,
    Float16,
    Int(OnnxQuant),
}

struct Builder<'g> {
    graph: &'g Graph,
    encodings: &'g BTreeMap<TensorId, TensorEncoding>,
    /// Every tensor name in use (the graph's own and the generated ones).
    taken: BTreeSet<String>,
    node_names: BTreeSet<String>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// For each tensor id, the name its consumers read, once defined.
    reads: Vec<Option<String>>,
}

impl<'g> Builder<'g> {
    fn new(graph: &'g Graph, encodings: &'g BTreeMap<TensorId, TensorEncoding>) -> Builder<'g> {
        Builder {
            graph,
            encodings,
            taken: graph.tensors.iter().map(|t| t.name.clone()).collect(),
            node_names: graph.nodes.iter().map(|n| n.name.clone()).collect(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            reads: vec![None; graph.tensors.len()],
        }
    }

    /// A tensor name not used yet: `base`, or `base_<k>` for the smallest free `k`.
    fn fresh(&mut self, base: String) -> String {
        fresh_in(&mut self.taken, base)
    }

    fn read(&self, id: TensorId) -> Result<&str, ExportError> {
        self.reads
            .get(id.index())
            .and_then(|r| r.as_deref())
            .ok_or_else(|| ExportError::InvalidGraph(format!("tensor {id:?} is read before it is defined")))
    }

    fn repr(&self, id: TensorId, activation: bool) -> Result<Form, ExportError> {
        let info = self.graph.info(id);
        let Some(e) = self.encodings.get(&id) else { return Ok(Form::Float32) };
        // Encodings of non-float tensors are ignored, as by the simulation.
        if info.dtype != DType::F32 {
            return Ok(Form::Float32);
        }
        match e {
            TensorEncoding::Float { bitwidth: 32 } => Ok(Form::Float32),
            TensorEncoding::Float { bitwidth: 16 } => Ok(Form::Float16),
            TensorEncoding::Float { bitwidth } => Err(ExportError::Encoding {
                tensor: info.name.clone(),
                message: format!("float bitwidth {bitwidth} (expected 16 or 32)"),
            }),
            _ => Ok(Form::Int(onnx_quant(&info.name, e, &info.shape, activation)?)),
        }
    }

    fn push_node(
        &mut self,
        op_type: &str,
        name: String,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        let name = fresh_in(&mut self.node_names, name);
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            name: Some(name),
            op_type: Some(op_type.to_string()),
            domain: Some(String::new()),
            attribute: attrs,
            ..Default::default()
        });
    }

    /// A node of the graph itself: keeps the graph's node name, which is unique there.
    fn push_graph_node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            name: Some(name.to_string()),
            op_type: Some(op_type.to_string()),
            domain: Some(String::new()),
            attribute: attrs,
            ..Default::default()
        });
    }

    fn initializer(&mut self, name: String, data_type: DataType, dims: &[usize], raw: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type as i32),
            name: Some(name.clone()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    /// A small int64 initializer (shapes, axes, pads) named after `node` and `role`.
    fn int64s(&mut self, node: &str, role: &str, values: &[i64]) -> String {
        let name = self.fresh(format!("{node}_{role}"));
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, DataType::Int64, &[values.len()], raw)
    }

    /// A float32 scalar initializer named after `node` and `role`.
    fn scalar(&mut self, node: &str, role: &str, value: f32) -> String {
        let name = self.fresh(format!("{node}_{role}"));
        self.initializer(name, DataType::Float, &[], value.to_le_bytes().to_vec())
    }

    /// A 1-D float32 initializer (Resize's roi and scales) named after `node` and `role`.
    fn floats(&mut self, node: &str, role: &str, values: &[f32]) -> String {
        let name = self.fresh(format!("{node}_{role}"));
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, DataType::Float, &[values.len()], raw)
    }

    /// The scale and zero-point initializers of an encoding of tensor `name`.
    fn quant_params(&mut self, name: &str, q: &OnnxQuant) -> (String, String) {
        let dims: Vec<usize> = match (&q.block, q.axis) {
            (Some((_, dims)), _) => dims.clone(),
            (None, Some(_)) => vec![q.scales.len()],
            (None, None) => vec![],
        };
        let scale = self.fresh(format!("{name}_scale"));
        let raw = q.scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        let scale = self.initializer(scale, DataType::Float, &dims, raw);
        let zero_point = self.fresh(format!("{name}_zero_point"));
        let zero_point = self.initializer(zero_point, q.qtype.data_type(), &dims, q.qtype.raw(&q.zero_points));
        (scale, zero_point)
    }

    fn axis_attr(q: &OnnxQuant) -> Vec<AttributeProto> {
        let mut attrs: Vec<AttributeProto> = q.axis.map(|a| vec![attr_int("axis", a as i64)]).unwrap_or_default();
        if let Some((size, _)) = &q.block {
            attrs.push(attr_int("block_size", *size as i64));
        }
        attrs
    }

    /// Emits the representation change of activation `id`: float value `source` in, the
    /// fake-quantized value out, as `target` or else under a generated name (`<name>_<last
    /// node>_Output`). Every generated tensor is named `<name>_<node>_Output` after the node
    /// that writes it, as onnxruntime's quantizer does. Returns the output's name.
    fn encode_activation(&mut self, id: TensorId, form: &Form, source: String, target: Option<String>) -> String {
        let name = self.graph.name(id).to_string();
        let emit = |b: &mut Self, op: &str, node: &str, inputs: Vec<String>, last: bool, attrs| {
            let output = match (&target, last) {
                (Some(target), true) => target.clone(),
                _ => b.fresh(format!("{name}_{node}_Output")),
            };
            b.push_node(op, format!("{name}_{node}"), inputs, vec![output.clone()], attrs);
            output
        };
        match form {
            Form::Float32 => emit(self, "Identity", "Identity", vec![source], true, vec![]),
            Form::Float16 => {
                let to_half = vec![attr_int("to", DataType::Float16 as i64)];
                let half = emit(self, "Cast", "CastToFloat16", vec![source], false, to_half);
                let to_float = vec![attr_int("to", DataType::Float as i64)];
                emit(self, "Cast", "CastToFloat", vec![half], true, to_float)
            }
            Form::Int(q) => {
                let (scale, zero_point) = self.quant_params(&name, q);
                let params = |v: String| vec![v, scale.clone(), zero_point.clone()];
                let quantized =
                    emit(self, "QuantizeLinear", "QuantizeLinear", params(source), false, Self::axis_attr(q));
                let clip = q.clip;
                let dequantized = emit(
                    self,
                    "DequantizeLinear",
                    "DequantizeLinear",
                    params(quantized),
                    clip.is_none(),
                    Self::axis_attr(q),
                );
                match clip {
                    None => dequantized,
                    Some((lo, hi)) => {
                        let lo = self.scalar(&name, "grid_min", lo);
                        let hi = self.scalar(&name, "grid_max", hi);
                        emit(self, "Clip", "ClipToGrid", vec![dequantized, lo, hi], true, vec![])
                    }
                }
            }
        }
    }

    /// Graph inputs keep their names; quantized ones are read through their encoding.
    fn graph_inputs(&mut self) -> Result<(), ExportError> {
        for &id in &self.graph.inputs {
            let name = self.graph.name(id).to_string();
            let read = match self.repr(id, true)? {
                Form::Float32 => name,
                repr => self.encode_activation(id, &repr, name, None),
            };
            self.reads[id.index()] = Some(read);
        }
        Ok(())
    }

    /// Every constant a node reads, as an initializer (quantized ones through a
    /// DequantizeLinear or Cast whose output keeps the constant's name).
    fn constants(&mut self) -> Result<(), ExportError> {
        let read: BTreeSet<TensorId> = self.graph.nodes.iter().flat_map(|n| n.inputs.iter().copied()).collect();
        let graph = self.graph;
        for (&id, tensor) in graph.constants.iter().filter(|(id, _)| read.contains(id)) {
            let name = graph.name(id).to_string();
            match self.repr(id, false)? {
                Form::Float32 => {
                    let (data_type, raw) = plain_raw(tensor);
                    self.initializer(name.clone(), data_type, &tensor.shape, raw);
                }
                Form::Float16 => {
                    let values = tensor.to_f32_vec();
                    let raw = values.iter().flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes()).collect();
                    let stored = self.fresh(format!("{name}_float16"));
                    let stored = self.initializer(stored, DataType::Float16, &tensor.shape, raw);
                    let to_float = vec![attr_int("to", DataType::Float as i64)];
                    self.push_node("Cast", format!("{name}_CastToFloat"), vec![stored], vec![name.clone()], to_float);
                }
                Form::Int(q) => {
                    let fail = |message: String| ExportError::Encoding { tensor: name.clone(), message };
                    let encoding = self.encodings.get(&id).ok_or_else(|| fail("encoding vanished".to_string()))?;
                    let grid = quantize_tensor(tensor, encoding)
                        .map_err(|e| fail(e.to_string()))?
                        .ok_or_else(|| fail("has no integer codes".to_string()))?;
                    let codes: Vec<i64> = grid.iter().map(|&g| i64::from(g) + q.shift).collect();
                    let stored = self.fresh(format!("{name}_quantized"));
                    let stored = self.initializer(stored, q.qtype.data_type(), &tensor.shape, q.qtype.raw(&codes));
                    let (scale, zero_point) = self.quant_params(&name, &q);
                    self.push_node(
                        "DequantizeLinear",
                        format!("{name}_DequantizeLinear"),
                        vec![stored, scale, zero_point],
                        vec![name.clone()],
                        Self::axis_attr(&q),
                    );
                }
            }
            self.reads[id.index()] = Some(name);
        }
        Ok(())
    }

    /// One node of the graph, its outputs followed by their encodings. As in onnxruntime's QDQ
    /// models, the node's output keeps its name and consumers read the encoded value
    /// (`<name>_DequantizeLinear_Output`), except for graph outputs, whose name goes to the
    /// encoded value (the node writes `<name>_<first node>_Input`).
    fn node(&mut self, node: &Node) -> Result<(), ExportError> {
        let inputs = node.inputs.iter().map(|&id| self.read(id).map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
        let mut outputs = Vec::with_capacity(node.outputs.len());
        let mut encode = Vec::new();
        for &id in &node.outputs {
            let name = self.graph.name(id).to_string();
            let form = self.repr(id, true)?;
            let is_output = self.graph.outputs.contains(&id);
            let written = match &form {
                Form::Float32 => name.clone(),
                Form::Float16 if is_output => self.fresh(format!("{name}_CastToFloat16_Input")),
                Form::Int(_) if is_output => self.fresh(format!("{name}_QuantizeLinear_Input")),
                _ => name.clone(),
            };
            outputs.push(written.clone());
            self.reads[id.index()] = Some(written.clone());
            if !matches!(form, Form::Float32) {
                encode.push((id, form, written, is_output.then_some(name)));
            }
        }
        self.op(node, inputs, outputs)?;
        for (id, form, written, target) in encode {
            let read = self.encode_activation(id, &form, written, target);
            self.reads[id.index()] = Some(read);
        }
        Ok(())
    }

    /// The ONNX node(s) of one IR op, reading `inputs` and writing `outputs`: the op's own
    /// export (`crate::ops`).
    fn op(&mut self, node: &Node, inputs: Vec<String>, outputs: Vec<String>) -> Result<(), ExportError> {
        let shapes = |ids: &[TensorId]| ids.iter().map(|&id| self.graph.info(id).shape.clone()).collect::<Vec<_>>();
        let (input_shapes, output_shapes) = (shapes(&node.inputs), shapes(&node.outputs));
        let mut cx = ExportCx { host: self, name: &node.name, inputs, outputs, input_shapes, output_shapes };
        node.op.export(&mut cx);
        Ok(())
    }
}

impl ExportHost for Builder<'_> {
    fn int64s(&mut self, node: &str, role: &str, values: &[i64]) -> String {
        Builder::int64s(self, node, role, values)
    }

    fn scalar(&mut self, node: &str, role: &str, value: f32) -> String {
        Builder::scalar(self, node, role, value)
    }

    fn floats(&mut self, node: &str, role: &str, values: &[f32]) -> String {
        Builder::floats(self, node, role, values)
    }

    fn fresh(&mut self, base: String) -> String {
        Builder::fresh(self, base)
    }

    fn push_node(
        &mut self,
        op_type: &str,
        name: String,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        Builder::push_node(self, op_type, name, inputs, outputs, attrs)
    }

    fn push_graph_node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        Builder::push_graph_node(self, op_type, name, inputs, outputs, attrs)
    }
}

fn fresh_in(taken: &mut BTreeSet<String>, base: String) -> String {
    if taken.insert(base.clone()) {
        return base;
    }
    let mut k = 1usize;
    loop {
        let candidate = format!("{base}_{k}");
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        k += 1;
    }
}

/// A constant in its own element type, as `raw_data`.
fn plain_raw(t: &Tensor) -> (DataType, Vec<u8>) {
    let code = DataType::try_from(super::tensor::onnx_code(t.dtype())).unwrap_or(DataType::Undefined);
    (code, super::tensor::onnx_raw_bytes(&t.data))
}

fn value_info(name: &str, dtype: DType, shape: &[usize]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|&d| Dimension { denotation: None, value: Some(dimension::Value::DimValue(d as i64)) })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(onnx_code(dtype)),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto { name: Some(name.to_string()), r#type: Some(kind as i32), ..Default::default() }
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { i: Some(value), ..attr(name, AttributeType::Int) }
}

#[cfg(test)]
mod tests {
    use crate::ir::{Op, PadMode};
    use std::collections::BTreeMap;

    use super::*;
    use crate::ir::test_graph::{GraphBuilder, id_of};
    use crate::ir::{Conv, Window};
    use crate::onnx::decode_model;

    fn per_tensor(bitwidth: u32, scale: f32, offset: i64) -> TensorEncoding {
        TensorEncoding::PerTensor(Encoding::from_scale_offset(bitwidth, scale, offset, false))
    }

    fn symmetric(bitwidth: u32, scale: f32) -> Encoding {
        Encoding::from_scale_offset(bitwidth, scale, -symmetric_offset_magnitude(bitwidth), true)
    }

    fn export(graph: Graph, encodings: &[(&str, TensorEncoding)]) -> Result<ModelProto, ExportError> {
        let encodings = encodings.iter().map(|(name, e)| (id_of(&graph, name), e.clone())).collect::<BTreeMap<_, _>>();
        let bytes = export_qdq(&QuantizedGraph { graph, encodings })?;
        Ok(decode_model(&bytes).expect("the export decodes"))
    }

    fn graph_of(m: &ModelProto) -> &GraphProto {
        m.graph.as_ref().expect("a graph")
    }

    fn op_types(m: &ModelProto) -> Vec<&str> {
        graph_of(m).node.iter().map(|n| n.op_type()).collect()
    }

    fn node<'m>(m: &'m ModelProto, name: &str) -> &'m NodeProto {
        graph_of(m).node.iter().find(|n| n.name() == name).unwrap_or_else(|| panic!("no node {name:?}"))
    }

    fn init<'m>(m: &'m ModelProto, name: &str) -> &'m TensorProto {
        graph_of(m).initializer.iter().find(|t| t.name() == name).unwrap_or_else(|| panic!("no initializer {name:?}"))
    }

    fn raw(t: &TensorProto) -> &[u8] {
        t.raw_data.as_deref().unwrap_or_default()
    }

    /// A 1x1 Conv with per-channel int8 weights and int32 biases, a float16 output and a
    /// 16-bit Relu output:
    ///
    /// x [1,1,1,2] (uint8, scale 0.1, offset -10) -> Conv(w [2,1,1,1], b [2]) -> y (float16)
    /// -> Relu -> z (16-bit, scale 0.001, offset -1000).
    fn conv_graph() -> Graph {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[1, 1, 1, 2]);
        let w = g.constant("w", &[2, 1, 1, 1], vec![1.0, -0.74]);
        let b = g.constant("b", &[2], vec![0.12, -0.3]);
        let window = Window { kernel: vec![1, 1], strides: vec![1, 1], pads: vec![0; 4], dilations: vec![1, 1] };
        let y = g.node("conv", Op::Conv(Conv { window, group: 1 }), &[x, w, b], "y", &[1, 2, 1, 2]);
        let z = g.node("relu", Op::Unary(crate::ops::Unary::Relu), &[y], "z", &[1, 2, 1, 2]);
        g.output(z);
        g.finish()
    }

    fn conv_encodings() -> Vec<(&'static str, TensorEncoding)> {
        vec![
            ("x", per_tensor(8, 0.1, -10)),
            ("w", TensorEncoding::PerChannel { axis: 0, channels: vec![symmetric(8, 0.5), symmetric(8, 0.25)] }),
            (
                "b",
                TensorEncoding::PerChannel {
                    axis: 0,
                    channels: vec![Encoding::int32_with_scale(0.05), Encoding::int32_with_scale(0.025)],
                },
            ),
            ("y", TensorEncoding::Float { bitwidth: 16 }),
            ("z", per_tensor(16, 0.001, -1000)),
        ]
    }

    #[test]
    fn conv_graph_structure_names_and_opset() {
        let m = export(conv_graph(), &conv_encodings()).unwrap();
        assert_eq!((m.ir_version, m.opset_import[0].version, m.opset_import[0].domain()), (Some(10), Some(21), ""));
        assert_eq!(
            op_types(&m),
            [
                "QuantizeLinear",
                "DequantizeLinear",
                "DequantizeLinear",
                "DequantizeLinear",
                "Conv",
                "Cast",
                "Cast",
                "Relu",
                "QuantizeLinear",
                "DequantizeLinear"
            ]
        );
        let g = graph_of(&m);
        assert_eq!(g.input.iter().map(|v| v.name()).collect::<Vec<_>>(), ["x"]);
        assert_eq!(g.output.iter().map(|v| v.name()).collect::<Vec<_>>(), ["z"]);
        // onnxruntime's naming: producers keep their output names, consumers read
        // `<name>_DequantizeLinear_Output`; the graph output's name goes to the encoded value.
        let conv = node(&m, "conv");
        assert_eq!(conv.input, ["x_DequantizeLinear_Output", "w", "b"]);
        assert_eq!(conv.output, ["y"]);
        assert_eq!(node(&m, "x_QuantizeLinear").input, ["x", "x_scale", "x_zero_point"]);
        assert_eq!(node(&m, "y_CastToFloat16").output, ["y_CastToFloat16_Output"]);
        assert_eq!(node(&m, "y_CastToFloat").output, ["y_CastToFloat_Output"]);
        assert_eq!(node(&m, "relu").input, ["y_CastToFloat_Output"]);
        assert_eq!(node(&m, "relu").output, ["z_QuantizeLinear_Input"]);
        assert_eq!(node(&m, "z_QuantizeLinear").input, ["z_QuantizeLinear_Input", "z_scale", "z_zero_point"]);
        assert_eq!(node(&m, "z_QuantizeLinear").output, ["z_QuantizeLinear_Output"]);
        assert_eq!(node(&m, "z_DequantizeLinear").output, ["z"]);
        let attr = |n: &NodeProto, name: &str| n.attribute.iter().find(|a| a.name() == name).map(|a| a.i());
        assert_eq!(attr(node(&m, "w_DequantizeLinear"), "axis"), Some(0));
        assert_eq!(attr(node(&m, "z_DequantizeLinear"), "axis"), None);
        assert_eq!(attr(node(&m, "y_CastToFloat16"), "to"), Some(DataType::Float16 as i64));
        assert_eq!(
            conv.attribute.iter().map(|a| a.name()).collect::<Vec<_>>(),
            ["kernel_shape", "strides", "pads", "dilations", "group"]
        );
    }

    /// Codes by hand: weights are symmetric (offset -128) so int8 with zero point 0:
    /// 1.0 / 0.5 = 2; -0.74 / 0.25 = -2.96 -> -3 (0xfd). Biases: int32, zero point 0,
    /// 0.12 / 0.05 = 2.4 -> 2; -0.3 / 0.025 = -12. x: uint8 zero point 10; z: uint16 zero point
    /// 1000 (0x03e8).
    #[test]
    fn integer_initializers_hold_the_hand_computed_codes() {
        let m = export(conv_graph(), &conv_encodings()).unwrap();
        let w = init(&m, "w_quantized");
        assert_eq!(
            (w.data_type, w.dims.as_slice(), raw(w)),
            (Some(DataType::Int8 as i32), &[2, 1, 1, 1][..], &[2, 0xfd][..])
        );
        assert_eq!(raw(init(&m, "w_zero_point")), [0, 0]);
        let w_scales: Vec<u8> = [0.5f32, 0.25].iter().flat_map(|s| s.to_le_bytes()).collect();
        assert_eq!(raw(init(&m, "w_scale")), w_scales);
        assert_eq!(init(&m, "w_scale").dims, [2]);
        let b = init(&m, "b_quantized");
        let b_codes: Vec<u8> = [2i32, -12].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!((b.data_type, raw(b)), (Some(DataType::Int32 as i32), &b_codes[..]));
        assert_eq!(raw(init(&m, "b_zero_point")), [0; 8]);
        let x_zp = init(&m, "x_zero_point");
        assert_eq!((x_zp.data_type, x_zp.dims.len(), raw(x_zp)), (Some(DataType::Uint8 as i32), 0, &[10][..]));
        assert_eq!(raw(init(&m, "x_scale")), 0.1f32.to_le_bytes());
        let z_zp = init(&m, "z_zero_point");
        assert_eq!((z_zp.data_type, raw(z_zp)), (Some(DataType::Uint16 as i32), &[0xe8, 0x03][..]));
        // The float graph input and output keep float32.
        let g = graph_of(&m);
        let elem = |v: &ValueInfoProto| match &v.r#type.as_ref().unwrap().value {
            Some(type_proto::Value::TensorType(t)) => (t.elem_type(), t.shape.as_ref().unwrap().dim.len()),
            _ => panic!("not a tensor"),
        };
        assert_eq!(elem(&g.input[0]), (DataType::Float as i32, 4));
    }

    #[test]
    fn the_same_graph_exports_the_same_bytes() {
        let q = || {
            let graph = conv_graph();
            let encodings = conv_encodings().into_iter().map(|(n, e)| (id_of(&graph, n), e)).collect();
            QuantizedGraph { graph, encodings }
        };
        assert_eq!(export_qdq(&q()).unwrap(), export_qdq(&q()).unwrap());
    }

    /// ONNX packs 4-bit values two per byte, the first in the low nibble: int4 [1, -2, 3] is
    /// 0x1 | 0xe << 4 = 0xe1, then 0x03; uint4 [15, 0, 7] is 0x0f, 0x07.
    #[test]
    fn four_bit_codes_are_packed_low_nibble_first() {
        assert_eq!(QType::I4.raw(&[1, -2, 3]), [0xe1, 0x03]);
        assert_eq!(QType::U4.raw(&[15, 0, 7]), [0x0f, 0x07]);
        assert_eq!(QType::I16.raw(&[-2]), [0xfe, 0xff]);
    }

    /// 4-bit weights: symmetric (offset -8) -> int4 zero point 0, 1.0 / 0.25 = 4 and
    /// -2.0 / 0.25 = -8; asymmetric (scale 0.5, offset -3) -> uint4 zero point 3, codes
    /// round(x / 0.5) + 3: 1.0 -> 5, -1.5 -> 0 (0x05).
    #[test]
    fn four_bit_weights_are_int4_or_uint4() {
        let graph = |w: Vec<f32>| {
            let mut g = GraphBuilder::new();
            let x = g.input("x", &[1, 2]);
            let w = g.constant("w", &[1, 2], w);
            let y = g.node("mul", Op::Binary(crate::ops::Binary::Mul), &[x, w], "y", &[1, 2]);
            g.output(y);
            g.finish()
        };
        let m = export(graph(vec![1.0, -2.0]), &[("w", TensorEncoding::PerTensor(symmetric(4, 0.25)))]).unwrap();
        let w = init(&m, "w_quantized");
        assert_eq!((w.data_type, raw(w)), (Some(DataType::Int4 as i32), &[0x84][..]));
        assert_eq!(raw(init(&m, "w_zero_point")), [0]);
        let m = export(graph(vec![1.0, -1.5]), &[("w", per_tensor(4, 0.5, -3))]).unwrap();
        let w = init(&m, "w_quantized");
        assert_eq!((w.data_type, raw(w)), (Some(DataType::Uint4 as i32), &[0x05][..]));
        assert_eq!(raw(init(&m, "w_zero_point")), [3]);
    }

    /// A 6-bit activation (scale 0.5, offset -8) is stored as uint8 with zero point 8 and
    /// clipped after dequantization to the grid's float range: 0 -> -8 * 0.5 = -4,
    /// 63 -> (63 - 8) * 0.5 = 27.5.
    #[test]
    fn narrow_activation_grids_are_clipped_after_dequantization() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[4]);
        let y = g.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "y", &[4]);
        g.output(y);
        let m = export(g.finish(), &[("y", per_tensor(6, 0.5, -8))]).unwrap();
        assert_eq!(op_types(&m), ["Relu", "QuantizeLinear", "DequantizeLinear", "Clip"]);
        assert_eq!(raw(init(&m, "y_zero_point")), [8]);
        let clip = node(&m, "y_ClipToGrid");
        assert_eq!(clip.input, ["y_DequantizeLinear_Output", "y_grid_min", "y_grid_max"]);
        assert_eq!(clip.output, ["y"]);
        assert_eq!(raw(init(&m, "y_grid_min")), (-4.0f32).to_le_bytes());
        assert_eq!(raw(init(&m, "y_grid_max")), 27.5f32.to_le_bytes());
    }

    fn relu_graph() -> Graph {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[4]);
        let y = g.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "y", &[4]);
        g.output(y);
        g.finish()
    }

    #[test]
    fn encodings_onnx_cannot_express_are_errors_that_name_the_tensor() {
        let err = export(relu_graph(), &[("y", TensorEncoding::PerTensor(Encoding::int32_with_scale(0.1)))]);
        assert!(
            matches!(&err, Err(ExportError::Encoding { tensor, message }) if tensor == "y" && message.contains("16 bits"))
        );
        // A zero point beyond the 8-bit grid (an offset no quantizer produces, but a struct can hold).
        let wide = Encoding { bitwidth: 8, scale: 0.1, offset: -300, min: -30.0, max: -4.5, symmetric: false };
        let err = export(relu_graph(), &[("y", TensorEncoding::PerTensor(wide))]).unwrap_err();
        assert!(err.to_string().contains("offset -300"), "{err}");
        let zero_scale = Encoding { scale: 0.0, ..Encoding::from_scale_offset(8, 1.0, 0, false) };
        let err = export(relu_graph(), &[("x", TensorEncoding::PerTensor(zero_scale))]).unwrap_err();
        assert!(err.to_string().contains("\"x\"") && err.to_string().contains("scale 0"), "{err}");
        let err = export(relu_graph(), &[("y", TensorEncoding::Float { bitwidth: 8 })]).unwrap_err();
        assert!(err.to_string().contains("float bitwidth 8"), "{err}");
        let channels = TensorEncoding::PerChannel { axis: 0, channels: vec![symmetric(8, 0.1); 3] };
        let err = export(relu_graph(), &[("y", channels)]).unwrap_err();
        assert!(err.to_string().contains("3 channels along axis 0"), "{err}");
    }

    #[test]
    fn generated_names_never_collide_with_the_graphs_own() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[2]);
        let taken = g.node("a", Op::Unary(crate::ops::Unary::Relu), &[x], "y_DequantizeLinear_Output", &[2]);
        let y = g.node("b", Op::Binary(crate::ops::Binary::Add), &[taken, x], "y", &[2]);
        let z = g.node("c", Op::Unary(crate::ops::Unary::Relu), &[y], "z", &[2]);
        g.output(z);
        let m = export(g.finish(), &[("y", per_tensor(8, 0.1, 0))]).unwrap();
        assert_eq!(node(&m, "a").output, ["y_DequantizeLinear_Output"]);
        assert_eq!(node(&m, "b").output, ["y"]);
        assert_eq!(node(&m, "y_DequantizeLinear").output, ["y_DequantizeLinear_Output_1"]);
        assert_eq!(node(&m, "c").input, ["y_DequantizeLinear_Output_1"]);
    }

    /// Opset 21 forms of ops whose IR variant holds what older opsets kept in attributes:
    /// Reshape's shape and Squeeze's axes as int64 inputs, Clip's bounds as inputs (an
    /// infinite max is omitted), the opset < 13 Softmax as Flatten/Softmax/Reshape, Convert as
    /// Identity, Pad with its constant value.
    #[test]
    fn ops_get_their_opset_21_form() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[2, 3, 4]);
        let a = g.node("clip", Op::Clip(crate::ops::Clip { min: 0.0, max: f32::INFINITY }), &[x], "a", &[2, 3, 4]);
        let s = g.node("softmax", Op::Softmax(crate::ops::Softmax { axis: 1, coerce_2d: true }), &[a], "s", &[2, 3, 4]);
        let c = g.node("convert", Op::Convert(crate::ops::Convert), &[s], "c", &[2, 3, 4]);
        let r = g.node("reshape", Op::Reshape(crate::ops::Reshape { shape: vec![6, 4] }), &[c], "r", &[6, 4]);
        let q = g.node("squeeze", Op::Unsqueeze(crate::ops::Unsqueeze { axes: vec![0] }), &[r], "u", &[1, 6, 4]);
        let pads = vec![0, 1, 0, 0, 1, 0];
        let p = g.node(
            "pad",
            Op::Pad(crate::ops::Pad { pads: pads.clone(), mode: PadMode::Constant, value: 0.5 }),
            &[q],
            "p",
            &[1, 8, 4],
        );
        g.output(p);
        let m = export(g.finish(), &[("c", TensorEncoding::Float { bitwidth: 16 })]).unwrap();
        assert_eq!(
            op_types(&m),
            ["Clip", "Flatten", "Softmax", "Reshape", "Identity", "Cast", "Cast", "Reshape", "Unsqueeze", "Pad"]
        );
        assert_eq!(node(&m, "clip").input, ["x", "clip_min"]);
        assert_eq!(raw(init(&m, "clip_min")), 0f32.to_le_bytes());
        assert_eq!(node(&m, "softmax_Flatten").attribute[0].i, Some(1));
        assert_eq!(node(&m, "softmax").attribute[0].i, Some(1));
        let back = node(&m, "softmax_Reshape");
        assert_eq!(back.output, ["s"]);
        let shape: Vec<u8> = [2i64, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(raw(init(&m, &back.input[1])), shape);
        assert_eq!(
            (node(&m, "convert").input.as_slice(), node(&m, "convert").output.as_slice()),
            (&["s".to_string()][..], &["c".to_string()][..])
        );
        assert_eq!(node(&m, "reshape").input, ["c_CastToFloat_Output", "reshape_shape"]);
        let reshape = init(&m, "reshape_shape");
        assert_eq!(
            (reshape.data_type, raw(reshape)),
            (Some(DataType::Int64 as i32), &[6u8, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0][..])
        );
        assert_eq!(node(&m, "pad").input, ["u", "pad_pads", "pad_constant_value"]);
        let pad_bytes: Vec<u8> = pads.iter().flat_map(|v: &i64| v.to_le_bytes()).collect();
        assert_eq!(raw(init(&m, "pad_pads")), pad_bytes);
        assert_eq!(node(&m, "pad").attribute[0].s.as_deref(), Some(&b"constant"[..]));
    }

    /// A constant kept in float16 is stored as float16 (0.1 -> 0x2e66, the nearest half) and
    /// cast back to float under its own name.
    #[test]
    fn float16_constants_are_stored_as_half() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[1]);
        let k = g.constant("k", &[1], vec![0.1]);
        let y = g.node("mul", Op::Binary(crate::ops::Binary::Mul), &[x, k], "y", &[1]);
        g.output(y);
        let m = export(g.finish(), &[("k", TensorEncoding::Float { bitwidth: 16 })]).unwrap();
        let k = init(&m, "k_float16");
        assert_eq!((k.data_type, raw(k)), (Some(DataType::Float16 as i32), &[0x66, 0x2e][..]));
        assert_eq!(node(&m, "k_CastToFloat").output, ["k"]);
        assert_eq!(node(&m, "mul").input, ["x", "k"]);
    }

    fn import_bytes(bytes: &[u8]) -> Graph {
        let model = decode_model(bytes).expect("the export decodes");
        crate::onnx::import(&model, &BTreeMap::new(), &BTreeMap::new()).unwrap_or_else(|e| panic!("re-import: {e:?}"))
    }

    /// Deterministic inputs in [-2, 2): `2 * sin(7 i + k)`.
    fn inputs_of(graph: &Graph) -> Vec<Tensor> {
        graph
            .inputs
            .iter()
            .enumerate()
            .map(|(k, &id)| {
                let info = graph.info(id);
                let values = (0..info.elements()).map(|i| 2.0 * ((7 * i + k) as f32).sin()).collect();
                Tensor::from_f32(info.shape.clone(), values)
            })
            .collect()
    }

    /// Every vendored ONNX backend node test (`tests/data/onnx-node`) that imports: exported
    /// without encodings and imported again, it computes bit-identical outputs in qairt's
    /// interpreter, so every op and attribute maps back to an equivalent ONNX node.
    #[test]
    fn node_tests_survive_an_export_and_import_round_trip() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx-node");
        let manifest = std::fs::read_to_string(root.join("manifest.txt")).unwrap();
        let mut checked = 0;
        for case in manifest.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let bytes = std::fs::read(root.join(case).join("model.onnx")).unwrap();
            let model = decode_model(&bytes).unwrap();
            // Cases whose attribute-like inputs are graph inputs do not import as they are
            // (the conformance test bakes them); they are covered by the others of their op.
            let Ok(graph) = crate::onnx::import(&model, &BTreeMap::new(), &BTreeMap::new()) else { continue };
            if graph.inputs.iter().any(|&id| graph.info(id).dtype != DType::F32) {
                continue;
            }
            let exported = export_qdq(&QuantizedGraph { graph: graph.clone(), encodings: BTreeMap::new() })
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let again = import_bytes(&exported);
            let inputs = inputs_of(&graph);
            let want = crate::runtime::interpret(&graph, &inputs, &mut |_, _| {}).unwrap();
            let got = crate::runtime::interpret(&again, &inputs, &mut |_, _| {}).unwrap();
            let bits = |ts: &[Tensor]| {
                ts.iter().map(|t| t.to_f32_vec().iter().map(|v| v.to_bits()).collect()).collect::<Vec<Vec<u32>>>()
            };
            assert_eq!(bits(&got), bits(&want), "{case}");
            let names = |g: &Graph| g.outputs.iter().map(|&id| g.name(id).to_string()).collect::<Vec<_>>();
            assert_eq!(names(&again), names(&graph), "{case}");
            checked += 1;
        }
        assert!(checked >= 100, "only {checked} node tests imported");
    }

    /// qairt's QDQ import (`super::qdq`, written separately from this exporter) reads the
    /// exported encodings back under the original names, in ONNX terms: x uint8 zero point 10;
    /// w int8 per axis 0 with zero points 0; b int32; z uint16 zero point 1000. The folded
    /// weights are the dequantized codes: 2 * 0.5 = 1.0 and -3 * 0.25 = -0.75.
    #[test]
    fn qairts_qdq_import_reads_the_encodings_back() {
        let mut encodings = conv_encodings();
        encodings.retain(|(name, _)| *name != "y"); // float16 Casts are not a QDQ import form
        let graph = conv_graph();
        let ids = encodings.iter().map(|(n, e)| (id_of(&graph, n), e.clone())).collect();
        let again = import_bytes(&export_qdq(&QuantizedGraph { graph, encodings: ids }).unwrap());
        let me = |name: &str| again.model_encodings.get(name).unwrap_or_else(|| panic!("no encoding for {name}"));
        let x = me("x");
        assert_eq!(
            (x.scales.as_slice(), x.zero_points.as_slice(), x.axis, x.bitwidth, x.signed),
            (&[0.1f32][..], &[10i64][..], None, 8, false)
        );
        let w = me("w");
        assert_eq!(
            (w.scales.as_slice(), w.zero_points.as_slice(), w.axis, w.bitwidth, w.signed),
            (&[0.5f32, 0.25][..], &[0i64, 0][..], Some(0), 8, true)
        );
        let b = me("b");
        assert_eq!((b.scales.as_slice(), b.axis, b.bitwidth, b.signed), (&[0.05f32, 0.025][..], Some(0), 32, true));
        let z = me("z");
        assert_eq!((z.zero_points.as_slice(), z.bitwidth, z.signed), (&[1000i64][..], 16, false));
        let w_id = id_of(&again, "w");
        assert_eq!(again.constant(w_id).and_then(|t| t.as_f32()), Some(&[1.0f32, -0.75][..]));
        assert_eq!(again.nodes.iter().map(|n| n.op.type_name()).collect::<Vec<_>>(), ["Conv", "Relu"]);
    }
}
