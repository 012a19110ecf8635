//! QuantizeLinear/DequantizeLinear pairs in an input model: stripped at import, their scales and
//! zero points kept as the model's own encodings ([`crate::ir::Graph::model_encodings`]).
//!
//! Runs on the `GraphProto` before the regular import ([`strip`]), which then sees a float
//! model; after import, [`finish`] checks the recorded encodings against the imported shapes.
//!
//! What is recognised (domains `ai.onnx` and `com.microsoft`, every opset from 10 on; the
//! integer types uint4, int4, uint8, int8, uint16, int16 and int32; per tensor and per axis):
//! - **Q -> DQ on a float tensor** (activations, graph inputs, float weights): the pair goes,
//!   readers of the DQ output read the float tensor before the Q, and the encoding is recorded
//!   under that tensor's name. When the DQ output is a graph output, the float tensor takes the
//!   output's name instead (outputs are written as `Result_N/<name>.raw`, so their names stay).
//! - **DQ of a constant** (ORT's int8 weights and int32 biases): folded into a float32
//!   constant `(q - zero_point) * scale` (in f32, as onnxruntime computes it), and the encoding
//!   recorded under that constant's name.
//!
//! **Naming of folded constants.** onnxruntime names the integer initializer `<w>_quantized`,
//! where `<w>` is the float tensor of the source model (`fc1.weight_quantized`), and the DQ
//! output `<w>_DequantizeLinear_Output` for weights but `<w>` for biases. The folded constant
//! is named `<w>` (the name without `_quantized`) when that name is free in the model, so the
//! weight a Conv/Gemm reads is called what it was called in the float model (`fc1.weight`,
//! `conv1.bias`), and user overrides written against that model still match. Otherwise (other
//! tools, or a clash) it keeps the DQ output's name.
//!
//! **What is not stripped stays a compute op.** A Q or DQ that cannot become an encoding is
//! left in the graph and imported as the registry ops `QuantizeLinear` / `DequantizeLinear`
//! (`ops::quantize`), with ONNX's exact semantics: a Q whose integer output reaches a non-DQ
//! op or a graph output (and the DQs that read it), a DQ of a graph input or of any other
//! run-time tensor, a pair whose scales, zero points or types differ, non-constant scales or
//! zero points, block quantization, float8, int2/uint2 and other code types. A kept DQ of a
//! constant is evaluated at import like any op on constants. Malformed parameters (zero
//! points out of range, per-axis counts that do not fit) and a tensor quantized twice with
//! different parameters remain [`ImportError`]s.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{ErrorKind, ImportError, bad_attribute, malformed};
use super::inline;
use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::{GraphProto, NodeProto, TensorProto};
use super::tensor::{decode_tensor, external_bytes, onnx_dtype_name};
use crate::ir::{Graph, ModelEncoding};

#[cfg(test)]
#[path = "qdq_tests.rs"]
mod qdq_tests;

/// An encoding found in the model, before the imported shapes are known (a negative axis is
/// resolved in [`finish`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RawEncoding {
    params: QParams,
    /// The node that stated it, for messages.
    node: String,
}

/// The float graph and the encodings taken out of it.
pub(crate) struct Stripped {
    pub graph: GraphProto,
    pub encodings: BTreeMap<String, RawEncoding>,
}

/// Whether the graph has any QuantizeLinear or DequantizeLinear node.
pub(crate) fn has_qdq(g: &GraphProto) -> bool {
    g.node.iter().any(|n| qdq_kind(n).is_some())
}

/// Removes the Q/DQ nodes of `g` (module docs). `None` when there are none (nothing to copy).
pub(crate) fn strip(
    g: &GraphProto,
    external: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<Stripped>, Vec<ImportError>> {
    if !has_qdq(g) {
        return Ok(None);
    }
    let mut s = Stripper::new(g, external);
    s.run();
    if !s.errors.is_empty() {
        return Err(s.errors);
    }
    Ok(Some(s.rewrite()))
}

/// The recorded encodings of tensors that survived import, with per-axis encodings checked
/// against the tensor's shape and their axis made non-negative.
pub(crate) fn finish(
    graph: &Graph,
    encodings: BTreeMap<String, RawEncoding>,
) -> Result<BTreeMap<String, ModelEncoding>, Vec<ImportError>> {
    let names = graph.names();
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, raw) in encodings {
        let Some(&id) = names.get(name.as_str()) else { continue };
        let shape = &graph.info(id).shape;
        let p = raw.params;
        let axis = match p.axis {
            None => None,
            Some(axis) => {
                let rank = shape.len() as i64;
                let normalized = if axis < 0 { axis + rank } else { axis };
                let dim = usize::try_from(normalized).ok().and_then(|a| shape.get(a).map(|&d| (a, d)));
                match dim {
                    Some((a, d)) if d == p.scales.len() => Some(a),
                    _ => {
                        errors.push(
                            bad_attribute(format!(
                                "tensor {name:?} of shape {shape:?} has {} per-axis scales along axis {axis}",
                                p.scales.len()
                            ))
                            .at_node(&raw.node, "QuantizeLinear/DequantizeLinear")
                            .with_hint("a per-axis scale needs one value per slice along `axis`"),
                        );
                        continue;
                    }
                }
            }
        };
        let encoding = ModelEncoding {
            scales: p.scales,
            zero_points: p.zero_points,
            axis,
            bitwidth: p.int.bitwidth,
            signed: p.int.signed,
        };
        out.insert(name, encoding);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QdqKind {
    Quantize,
    Dequantize,
}

fn qdq_kind(n: &NodeProto) -> Option<QdqKind> {
    if !matches!(n.domain(), "" | "ai.onnx" | "com.microsoft") {
        return None;
    }
    match n.op_type() {
        "QuantizeLinear" => Some(QdqKind::Quantize),
        "DequantizeLinear" => Some(QdqKind::Dequantize),
        _ => None,
    }
}

fn node_name(node: &NodeProto, index: usize) -> String {
    match node.name() {
        "" => format!("{}_{index}", node.op_type()),
        name => name.to_string(),
    }
}

/// An integer element type of a quantized tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IntType {
    code: i32,
    bitwidth: u32,
    signed: bool,
}

impl IntType {
    fn from_code(code: i32, what: &str) -> Result<IntType, ImportError> {
        let (bitwidth, signed) = match DataType::try_from(code) {
            Ok(DataType::Uint8) => (8, false),
            Ok(DataType::Int8) => (8, true),
            Ok(DataType::Uint16) => (16, false),
            Ok(DataType::Int16) => (16, true),
            Ok(DataType::Int32) => (32, true),
            Ok(DataType::Uint4) => (4, false),
            Ok(DataType::Int4) => (4, true),
            _ => {
                return Err(ImportError::new(
                    ErrorKind::UnsupportedDtype,
                    format!("{what} has element type {}", onnx_dtype_name(code)),
                )
                .with_hint(
                    "qairt reads QDQ models quantized to uint8, int8, uint16, int16 or int32 (not 4-bit or float8)",
                ));
            }
        };
        Ok(IntType { code, bitwidth, signed })
    }

    fn name(self) -> String {
        onnx_dtype_name(self.code)
    }

    fn contains(self, v: i64) -> bool {
        let bw = self.bitwidth;
        if self.signed {
            (-(1i64 << (bw - 1))..(1i64 << (bw - 1))).contains(&v)
        } else {
            (0..(1i64 << bw)).contains(&v)
        }
    }
}

/// Scale, zero point and type of one Q or DQ node.
#[derive(Clone, Debug, PartialEq)]
struct QParams {
    scales: Vec<f32>,
    zero_points: Vec<i64>,
    /// The `axis` attribute as written, when the scale has more than one element.
    axis: Option<i64>,
    int: IntType,
}

impl QParams {
    /// Same quantization: bit-identical scales, same zero points, type and axis.
    fn same_as(&self, other: &QParams) -> bool {
        let bits = |v: &[f32]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
        bits(&self.scales) == bits(&other.scales)
            && self.zero_points == other.zero_points
            && self.axis == other.axis
            && self.int == other.int
    }

    fn describe(&self) -> String {
        let axis = self.axis.map_or(String::new(), |a| format!(" along axis {a}"));
        format!("{} scale {:?} zero point {:?}{axis}", self.int.name(), self.scales, self.zero_points)
    }
}

/// Why a Q or DQ is not stripped.
enum Reject {
    /// Valid ONNX that makes no encoding (run-time or non-float32 scales, block quantization,
    /// code types other than uint4..int32): the node stays a compute op.
    Keep,
    /// A malformed model.
    Fail(ImportError),
}

impl From<ImportError> for Reject {
    fn from(e: ImportError) -> Reject {
        Reject::Fail(e)
    }
}

/// An unsupported code type keeps the node; other errors fail.
fn keep_if_unsupported<T>(r: Result<T, ImportError>) -> Result<T, Reject> {
    r.map_err(|e| if e.kind == ErrorKind::UnsupportedDtype { Reject::Keep } else { Reject::Fail(e) })
}

/// Where a tensor name comes from.
enum Source<'g> {
    Constant(&'g TensorProto),
    Node(usize),
    Input,
}

struct Stripper<'g> {
    g: &'g GraphProto,
    external: &'g BTreeMap<String, Vec<u8>>,
    sources: BTreeMap<&'g str, Source<'g>>,
    readers: BTreeMap<&'g str, Vec<usize>>,
    graph_outputs: BTreeSet<&'g str>,
    /// Per Q/DQ node index: its params (`None` when they could not be read; the error is
    /// recorded).
    params: BTreeMap<usize, QParams>,
    /// DQ output -> the tensor its readers read instead.
    alias: BTreeMap<String, String>,
    /// Float tensor produced by a node -> the graph output name it takes.
    rename: BTreeMap<String, String>,
    /// New float initializers (folded DQs of constants).
    folded: Vec<TensorProto>,
    /// Encodings by the name the tensor has before renaming.
    encodings: BTreeMap<String, RawEncoding>,
    /// Names in use: initializers, inputs, node outputs, folded constants.
    taken: BTreeSet<String>,
    dropped_nodes: BTreeSet<usize>,
    /// Q nodes that stay compute ops (their DQ readers stay too).
    kept_q: BTreeSet<usize>,
    /// Encodings found by DQ nodes, under the name they read, recorded once every alias is known.
    pending: Vec<(usize, String, RawEncoding)>,
    errors: Vec<ImportError>,
}

impl<'g> Stripper<'g> {
    fn new(g: &'g GraphProto, external: &'g BTreeMap<String, Vec<u8>>) -> Self {
        let mut sources = BTreeMap::new();
        let mut taken = BTreeSet::new();
        for vi in &g.input {
            sources.insert(vi.name(), Source::Input);
            taken.insert(vi.name().to_string());
        }
        for t in &g.initializer {
            sources.insert(t.name(), Source::Constant(t));
            taken.insert(t.name().to_string());
        }
        let mut readers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, n) in g.node.iter().enumerate() {
            let value = (n.op_type() == "Constant" && matches!(n.domain(), "" | "ai.onnx"))
                .then(|| n.attribute.iter().find(|a| a.name() == "value").and_then(|a| a.t.as_ref()))
                .flatten();
            for out in n.output.iter().filter(|o| !o.is_empty()) {
                sources.insert(out, value.map_or(Source::Node(i), Source::Constant));
                taken.insert(out.clone());
            }
            // What an If's branches read counts as read by the If.
            let mut reads: BTreeSet<&str> = n.input.iter().filter(|x| !x.is_empty()).map(String::as_str).collect();
            reads.extend(inline::implicit_inputs(n));
            for input in reads {
                let list = readers.entry(input).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Stripper {
            g,
            external,
            sources,
            readers,
            graph_outputs: g.output.iter().map(|o| o.name()).collect(),
            params: BTreeMap::new(),
            alias: BTreeMap::new(),
            rename: BTreeMap::new(),
            folded: Vec::new(),
            encodings: BTreeMap::new(),
            taken,
            dropped_nodes: BTreeSet::new(),
            kept_q: BTreeSet::new(),
            pending: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn run(&mut self) {
        let g = self.g;
        for (i, n) in g.node.iter().enumerate() {
            if qdq_kind(n) == Some(QdqKind::Quantize) {
                self.quantize_node(i, n);
            }
        }
        self.check_pairs();
        let stripped_q: Vec<usize> = self.params.keys().copied().collect();
        self.dropped_nodes.extend(stripped_q);
        for (i, n) in g.node.iter().enumerate() {
            if qdq_kind(n) == Some(QdqKind::Dequantize) {
                self.dequantize_node(i, n);
            }
        }
        for (index, name, enc) in std::mem::take(&mut self.pending) {
            let root = self.resolve(&name);
            self.record(index, &root, enc);
        }
        if self.errors.is_empty() {
            self.keep_output_names();
        }
    }

    fn fail(&mut self, index: usize, e: ImportError) {
        let n = &self.g.node[index];
        self.errors.push(e.at_node(&node_name(n, index), n.op_type()));
    }

    /// A Q node: stripped when its integer output is read only by DQ nodes and its
    /// parameters make an encoding; else it stays a compute op.
    fn quantize_node(&mut self, index: usize, n: &'g NodeProto) {
        let out = n.output.first().map(String::as_str).unwrap_or("");
        let only_dq = self
            .readers
            .get(out)
            .is_none_or(|rs| rs.iter().all(|&r| self.g.node.get(r).and_then(qdq_kind) == Some(QdqKind::Dequantize)));
        if !only_dq || self.graph_outputs.contains(out) {
            self.kept_q.insert(index);
            return;
        }
        match self.node_params(n, None) {
            Ok(p) => {
                self.params.insert(index, p);
            }
            Err(Reject::Keep) => {
                self.kept_q.insert(index);
            }
            Err(Reject::Fail(e)) => self.fail(index, e),
        }
    }

    /// A Q whose DQ readers do not all dequantize with its own parameters stays a compute
    /// op, and so do they.
    fn check_pairs(&mut self) {
        let g = self.g;
        let candidates: Vec<usize> = self.params.keys().copied().collect();
        for q in candidates {
            let out = g.node[q].output.first().map(String::as_str).unwrap_or("");
            let qp = self.params[&q].clone();
            let mut keep = false;
            for &r in self.readers.get(out).map_or(&[][..], Vec::as_slice) {
                match self.node_params(&g.node[r], Some(qp.int)) {
                    Ok(dp) if dp.same_as(&qp) => {}
                    Ok(_) | Err(Reject::Keep) => keep = true,
                    Err(Reject::Fail(_)) => {} // Reported by the DQ itself.
                }
            }
            if keep {
                self.params.remove(&q);
                self.kept_q.insert(q);
            }
        }
    }

    /// A DQ node: of a constant (folded) or of a Q output (the pair is stripped).
    fn dequantize_node(&mut self, index: usize, n: &'g NodeProto) {
        let Some(x) = n.input.first().map(String::as_str).filter(|x| !x.is_empty()) else {
            return self.fail(index, malformed("DequantizeLinear has no input"));
        };
        let Some(out) = n.output.first().map(String::as_str).filter(|o| !o.is_empty()) else {
            return self.fail(index, malformed("DequantizeLinear has no output"));
        };
        let node = node_name(n, index);
        match self.sources.get(x) {
            Some(Source::Constant(t)) => {
                let t: &'g TensorProto = t;
                match self.fold_constant(n, t, out) {
                    Ok((name, folded, params)) => {
                        self.dropped_nodes.insert(index);
                        self.alias.insert(out.to_string(), name.clone());
                        self.pending.push((index, name, RawEncoding { params, node }));
                        self.folded.push(folded);
                    }
                    Err(Reject::Keep) => {} // Stays a DequantizeLinear, evaluated at import.
                    Err(Reject::Fail(e)) => self.fail(index, e),
                }
            }
            Some(Source::Node(q)) if self.params.contains_key(q) => {
                let q = *q;
                let qp = self.params[&q].clone();
                let dp = match self.node_params(n, Some(qp.int)) {
                    Ok(p) => p,
                    Err(Reject::Fail(e)) => return self.fail(index, e),
                    Err(Reject::Keep) => return, // Unreachable: check_pairs kept the Q.
                };
                let qnode = &self.g.node[q];
                let Some(float) = qnode.input.first().filter(|f| !f.is_empty()) else {
                    return self.fail(index, malformed("its QuantizeLinear has no input"));
                };
                self.dropped_nodes.insert(index);
                self.alias.insert(out.to_string(), float.clone());
                self.pending.push((index, float.clone(), RawEncoding { params: dp, node }));
            }
            // A kept Q's output, a graph input, any other run-time tensor: a compute op.
            Some(_) => {}
            None => {
                self.fail(index, malformed(format!("input {x:?} is not produced by any node, input or initializer")))
            }
        }
    }

    /// Records `enc` for `name`; a second, different encoding of the same tensor is an error.
    fn record(&mut self, index: usize, name: &str, enc: RawEncoding) {
        if let Some(prev) = self.encodings.get(name) {
            if !prev.params.same_as(&enc.params) {
                let e = ImportError::new(
                    ErrorKind::UnsupportedFeature,
                    format!(
                        "tensor {name:?} is quantized twice, differently: {} here, {} by node {:?}",
                        enc.params.describe(),
                        prev.params.describe(),
                        prev.node
                    ),
                )
                .with_hint("qairt keeps one encoding per tensor; give every QDQ pair of a tensor the same parameters");
                self.fail(index, e);
            }
            return;
        }
        self.encodings.insert(name.to_string(), enc);
    }

    /// Follows DQ outputs back to the float tensor they stand for.
    fn resolve(&self, name: &str) -> String {
        let mut current = name;
        // Each step goes to a different DQ output; more steps than nodes means a cycle
        // (malformed input; the importer reports it).
        for _ in 0..=self.g.node.len() {
            match self.alias.get(current) {
                Some(next) => current = next,
                None => break,
            }
        }
        current.to_string()
    }

    /// The name a tensor has in the rewritten graph.
    fn final_name(&self, name: &str) -> String {
        let root = self.resolve(name);
        self.rename.get(&root).cloned().unwrap_or(root)
    }

    /// A DQ output that is a graph output: its float tensor takes the output's name.
    fn keep_output_names(&mut self) {
        let g = self.g;
        let hint = "keep the QuantizeLinear/DequantizeLinear pair off this output, or add an Identity before it";
        for vi in &g.output {
            let out = vi.name();
            if !self.alias.contains_key(out) {
                continue;
            }
            let root = self.resolve(out);
            let problem = match self.sources.get(root.as_str()) {
                Some(Source::Input) => Some(format!("graph output {out:?} would be graph input {root:?} itself")),
                Some(Source::Constant(_)) => None, // The importer reports constant outputs.
                _ if self.graph_outputs.contains(root.as_str()) => {
                    Some(format!("graph outputs {out:?} and {root:?} would be the same tensor"))
                }
                _ if self.rename.contains_key(&root) => {
                    Some(format!("graph output {out:?} and another output would be the same tensor {root:?}"))
                }
                _ => None,
            };
            if let Some(message) = problem {
                self.errors.push(ImportError::new(ErrorKind::UnsupportedFeature, message).with_hint(hint));
                continue;
            }
            if matches!(self.sources.get(root.as_str()), Some(Source::Constant(_))) {
                continue;
            }
            self.rename.insert(root, out.to_string());
        }
    }

    /// Scale, zero point and type of a Q (`input_type: None`) or DQ node.
    fn node_params(&self, n: &NodeProto, input_type: Option<IntType>) -> Result<QParams, Reject> {
        let int_attr = |name: &str| n.attribute.iter().find(|a| a.name() == name).map(|a| a.i());
        if int_attr("block_size").is_some_and(|b| b != 0) {
            return Err(Reject::Keep); // Block quantization: a compute op.
        }
        let scale_name = n.input.get(1).map(String::as_str).unwrap_or("");
        let scale = self.constant(scale_name, "scale")?;
        let scales = decode_tensor(scale, self.external)
            .map_err(|e| ImportError { message: format!("scale {scale_name:?}: {}", e.message), ..e })?
            .as_f32()
            .map(<[f32]>::to_vec)
            .ok_or(Reject::Keep)?; // A float16/bfloat16 scale: a compute op.
        if scale.dims.len() > 1 || scales.is_empty() {
            return Err(Reject::Fail(bad_attribute(format!(
                "scale {scale_name:?} has shape {:?}; expected a scalar or a 1-D tensor",
                scale.dims
            ))));
        }
        if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Reject::Fail(bad_attribute(format!(
                "scale {scale_name:?} holds {bad}; scales must be positive and finite"
            ))));
        }
        let zp_name = n.input.get(2).map(String::as_str).unwrap_or("");
        let (int, zero_points) = if zp_name.is_empty() {
            let int = match (input_type, int_attr("output_dtype").filter(|&c| c != 0)) {
                (Some(t), _) => t,
                (None, Some(code)) => keep_if_unsupported(IntType::from_code(code as i32, "output_dtype"))?,
                (None, None) => IntType::from_code(DataType::Uint8 as i32, "output")?,
            };
            (int, vec![0; scales.len()])
        } else {
            let zp = self.constant(zp_name, "zero point")?;
            let int = keep_if_unsupported(IntType::from_code(zp.data_type(), &format!("zero point {zp_name:?}")))?;
            if let Some(t) = input_type
                && t != int
            {
                return Err(Reject::Fail(malformed(format!(
                    "zero point {zp_name:?} is {} but the quantized input is {}",
                    int.name(),
                    t.name()
                ))));
            }
            if let Some(code) = int_attr("output_dtype").filter(|&c| c != 0)
                && code as i32 != int.code
            {
                return Err(Reject::Fail(bad_attribute(format!(
                    "output_dtype {} disagrees with zero point {zp_name:?} of type {}",
                    onnx_dtype_name(code as i32),
                    int.name()
                ))));
            }
            let values = decode_ints(zp, int, self.external)?;
            if values.len() != scales.len() {
                return Err(Reject::Fail(bad_attribute(format!(
                    "zero point {zp_name:?} has {} elements but the scale has {}",
                    values.len(),
                    scales.len()
                ))));
            }
            (int, values)
        };
        let axis = (scales.len() > 1).then(|| int_attr("axis").unwrap_or(1));
        Ok(QParams { scales, zero_points, axis, int })
    }

    /// The constant tensor `name` (an initializer or a Constant node's `value`).
    /// A run-time scale or zero point keeps the node as a compute op.
    fn constant(&self, name: &str, what: &str) -> Result<&'g TensorProto, Reject> {
        match self.sources.get(name) {
            Some(Source::Constant(t)) => Ok(t),
            _ if name.is_empty() => Err(Reject::Fail(malformed(format!("the {what} input is missing")))),
            _ => Err(Reject::Keep),
        }
    }

    /// Folds `DequantizeLinear(t)` into a float initializer; returns its name, the tensor and
    /// the quantization.
    fn fold_constant(
        &mut self,
        n: &NodeProto,
        t: &TensorProto,
        out: &str,
    ) -> Result<(String, TensorProto, QParams), Reject> {
        let int =
            keep_if_unsupported(IntType::from_code(t.data_type(), &format!("quantized constant {:?}", t.name())))?;
        let params = self.node_params(n, Some(int))?;
        let values = decode_ints(t, int, self.external)?;
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| malformed(format!("tensor {:?} has dimension {d}", t.name()))))
            .collect::<Result<_, _>>()?;
        let (slices, inner) = match params.axis {
            None => (1, values.len().max(1)),
            Some(axis) => {
                let rank = dims.len() as i64;
                let a = if axis < 0 { axis + rank } else { axis };
                let Some(a) = usize::try_from(a).ok().filter(|&a| a < dims.len()) else {
                    return Err(Reject::Fail(bad_attribute(format!("axis {axis} is out of range for shape {dims:?}"))));
                };
                if dims[a] != params.scales.len() {
                    return Err(Reject::Fail(bad_attribute(format!(
                        "{} per-axis scales, but axis {axis} of {:?} (shape {dims:?}) has {}",
                        params.scales.len(),
                        t.name(),
                        dims[a]
                    ))));
                }
                (dims[a], dims[a + 1..].iter().product::<usize>().max(1))
            }
        };
        let floats: Vec<f32> = values
            .iter()
            .enumerate()
            .map(|(i, &q)| {
                let c = (i / inner) % slices;
                // onnxruntime: static_cast<float>(q - zero_point) * scale, in f32.
                (q - params.zero_points[c]) as f32 * params.scales[c]
            })
            .collect();
        let name = self.folded_name(t.name(), out);
        self.taken.insert(name.clone());
        let tensor = TensorProto {
            name: Some(name.clone()),
            dims: t.dims.clone(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(floats.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        };
        Ok((name, tensor, params))
    }

    /// `<w>` for onnxruntime's `<w>_quantized` when free, else the DQ output's name.
    fn folded_name(&self, quantized: &str, dq_out: &str) -> String {
        match quantized.strip_suffix("_quantized") {
            Some(base) if !base.is_empty() && (base == dq_out || !self.taken.contains(base)) => base.to_string(),
            _ => dq_out.to_string(),
        }
    }

    fn rewrite(self) -> Stripped {
        let g = self.g;
        let kept: Vec<(usize, &NodeProto)> =
            g.node.iter().enumerate().filter(|(i, _)| !self.dropped_nodes.contains(i)).collect();
        // Constant nodes and initializers nothing reads any more (the integer scales, zero
        // points and weights the Q/DQ nodes read): dropped, the importer cannot hold them.
        // Under their final names: a reader of a DQ output now reads the tensor behind it.
        let still_read: BTreeSet<String> = kept
            .iter()
            .flat_map(|(_, n)| {
                n.input.iter().filter(|x| !x.is_empty()).map(String::as_str).chain(inline::implicit_inputs(n))
            })
            .map(|x| self.final_name(x))
            .chain(self.graph_outputs.iter().map(|o| o.to_string()))
            .collect();
        let mut nodes = Vec::with_capacity(kept.len());
        for (i, n) in kept {
            if n.op_type() == "Constant" && !n.output.iter().any(|o| still_read.contains(&self.final_name(o))) {
                continue;
            }
            let mut n = n.clone();
            if n.name().is_empty() {
                // Keep the generated name the unstripped model would have had.
                n.name = Some(node_name(&n, i));
            }
            for input in n.input.iter_mut().filter(|x| !x.is_empty()) {
                *input = self.final_name(input);
            }
            // Branches read the tensors behind stripped DQ outputs too.
            let renamed: BTreeMap<String, String> = inline::implicit_inputs(&n)
                .into_iter()
                .map(|x| (x.to_string(), self.final_name(x)))
                .filter(|(x, new)| x != new)
                .collect();
            if !renamed.is_empty() {
                for attribute in &mut n.attribute {
                    for sub in attribute.g.iter_mut().chain(&mut attribute.graphs) {
                        inline::rename_outer_reads(sub, &renamed);
                    }
                }
            }
            for out in n.output.iter_mut() {
                if let Some(new) = self.rename.get(out.as_str()) {
                    *out = new.clone();
                }
            }
            nodes.push(n);
        }
        let mut initializer: Vec<TensorProto> =
            g.initializer.iter().filter(|t| still_read.contains(t.name())).cloned().collect();
        initializer.extend(self.folded.iter().cloned());
        let encodings = self.encodings.iter().map(|(name, e)| (self.final_name(name), e.clone())).collect();
        let graph = GraphProto { node: nodes, initializer, ..without_nodes(g) };
        Stripped { graph, encodings }
    }
}

/// A copy of everything but the (possibly large) nodes and initializers.
fn without_nodes(g: &GraphProto) -> GraphProto {
    GraphProto {
        node: Vec::new(),
        name: g.name.clone(),
        initializer: Vec::new(),
        sparse_initializer: g.sparse_initializer.clone(),
        doc_string: g.doc_string.clone(),
        input: g.input.clone(),
        output: g.output.clone(),
        value_info: g.value_info.clone(),
        quantization_annotation: g.quantization_annotation.clone(),
        metadata_props: g.metadata_props.clone(),
    }
}

/// The integer contents of a quantized tensor, range-checked against its type.
fn decode_ints(t: &TensorProto, int: IntType, external: &BTreeMap<String, Vec<u8>>) -> Result<Vec<i64>, ImportError> {
    let what = format!("tensor {:?}", t.name());
    let count = t
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
        .ok_or_else(|| malformed(format!("{what} has shape {:?}", t.dims)))?;
    let bytes: Option<&[u8]> = if t.data_location() == DataLocation::External {
        Some(external_bytes(t, external)?)
    } else {
        t.raw_data.as_deref()
    };
    if int.bitwidth == 4 {
        return decode_nibbles(t, int, bytes, count);
    }
    let values: Vec<i64> = match bytes {
        Some(raw) => {
            let width = (int.bitwidth / 8) as usize;
            let need = count.checked_mul(width);
            if need != Some(raw.len()) {
                return Err(malformed(format!(
                    "{what}: {count} {} elements need {} bytes, found {}",
                    int.name(),
                    need.map_or("too many".to_string(), |n| n.to_string()),
                    raw.len()
                )));
            }
            raw.chunks_exact(width)
                .map(|c| match (width, int.signed) {
                    (1, false) => c[0] as i64,
                    (1, true) => c[0] as i8 as i64,
                    (2, false) => u16::from_le_bytes([c[0], c[1]]) as i64,
                    (2, true) => i16::from_le_bytes([c[0], c[1]]) as i64,
                    _ => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
                })
                .collect()
        }
        // ONNX packs every integer type up to 32 bits into int32_data.
        None => t.int32_data.iter().map(|&v| v as i64).collect(),
    };
    if values.len() != count {
        return Err(malformed(format!("{what}: shape {:?} needs {count} elements, found {}", t.dims, values.len())));
    }
    if let Some(bad) = values.iter().find(|&&v| !int.contains(v)) {
        return Err(malformed(format!("{what} holds {bad}, outside the range of {}", int.name())));
    }
    Ok(values)
}

/// INT4/UINT4: two elements per byte, the first in the low nibble (ONNX's packing, in
/// `raw_data` and, one byte per entry, in `int32_data`).
fn decode_nibbles(t: &TensorProto, int: IntType, bytes: Option<&[u8]>, count: usize) -> Result<Vec<i64>, ImportError> {
    let packed: Vec<u8> = match bytes {
        Some(raw) => raw.to_vec(),
        None => t.int32_data.iter().map(|&v| v as u8).collect(),
    };
    let need = count.div_ceil(2);
    if packed.len() != need {
        return Err(malformed(format!(
            "tensor {:?}: {count} {} elements need {need} packed bytes, found {}",
            t.name(),
            int.name(),
            packed.len()
        )));
    }
    let nibble = |n: u8| if int.signed { ((n << 4) as i8 >> 4) as i64 } else { n as i64 };
    Ok(packed.iter().flat_map(|&b| [nibble(b & 0x0F), nibble(b >> 4)]).take(count).collect())
}
