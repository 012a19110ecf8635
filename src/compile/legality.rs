//! Legality: does a quantized graph fit a backend? Every op supported, no integer tensors
//! left, and every tensor in a representation the backend runs (float backends: float
//! tensors of an accepted bitwidth; quantized backends: integer encodings of an accepted
//! bitwidth for the tensor's role). The result is each tensor's use and representation.

use crate::ir::{DType, Graph, Op, TensorId};
use crate::ops::InputRole;
use crate::quant::encoding::{QuantizedGraph, TensorEncoding};

use super::CompileError;
use super::repr::{Blocks, QuantParams, Repr};
use super::rules::{BackendRules, TensorRole};

/// How the program uses a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    /// Neither read nor written by any node, input or output.
    Unused,
    /// A graph input or a node output: lives in the arena.
    Activation,
    /// A constant read by some node in this role.
    Constant(TensorRole),
}

/// Checks `q` against `backend`; returns every tensor's use and representation.
pub(crate) fn check(q: &QuantizedGraph, backend: &BackendRules) -> Result<Vec<(Use, Repr)>, CompileError> {
    let graph = &q.graph;
    for node in &graph.nodes {
        let op = node.op.type_name();
        if !backend.supports(op) && node.op != Op::Convert(crate::ops::Convert) {
            return Err(CompileError::UnsupportedOp {
                node: node.name.clone(),
                op: op.to_string(),
                backend: backend.name.clone(),
            });
        }
    }
    if let Some((id, _)) = q.encodings.iter().find(|(id, _)| id.index() >= graph.tensors.len()) {
        return Err(CompileError::InvalidGraph(format!(
            "an encoding names tensor {} but the graph has {} tensors",
            id.0,
            graph.tensors.len()
        )));
    }

    let uses = uses(graph);
    let mut result = Vec::with_capacity(graph.tensors.len());
    for (i, &use_) in uses.iter().enumerate() {
        let id = TensorId(i as u32);
        let info = graph.info(id);
        if use_ == Use::Unused {
            result.push((use_, Repr::F32));
            continue;
        }
        if info.dtype != DType::F32 {
            // Integer, bool and non-float32 float tensors run in their own type, unquantized.
            result.push((use_, Repr::Native(info.dtype)));
            continue;
        }
        let role = match use_ {
            Use::Constant(role) => role,
            _ => TensorRole::Activation,
        };
        let repr = representation(graph, id, role, q.encodings.get(&id), backend)?;
        result.push((use_, repr));
    }
    Ok(result)
}

/// Each tensor's use; a constant read in several roles takes the most specific one
/// (bias over weight over plain constant).
fn uses(graph: &Graph) -> Vec<Use> {
    let mut uses = vec![Use::Unused; graph.tensors.len()];
    let mut mark = |id: TensorId, use_: Use| {
        if let Some(slot) = uses.get_mut(id.index()) {
            let rank = |u: &Use| match u {
                Use::Unused => 0,
                Use::Constant(TensorRole::Constant) => 1,
                Use::Constant(TensorRole::Weight) => 2,
                Use::Constant(_) => 3,
                Use::Activation => 4,
            };
            if rank(&use_) > rank(slot) {
                *slot = use_;
            }
        }
    };
    for &id in graph.inputs.iter().chain(&graph.outputs) {
        mark(id, Use::Activation);
    }
    for node in &graph.nodes {
        for &id in &node.outputs {
            mark(id, Use::Activation);
        }
        for (position, &id) in node.inputs.iter().enumerate() {
            if graph.is_constant(id) {
                mark(id, Use::Constant(constant_role(&node.op, position)));
            }
        }
    }
    uses
}

/// The role of a constant read at input `position` of `op`.
fn constant_role(op: &Op, position: usize) -> TensorRole {
    // A BatchNorm's beta is the bias of the SDK's BatchNorm op: when a target keeps its
    // BatchNorms and an encodings file quantizes beta (AIMET's 2.0.0 export writes it int32),
    // it takes the backend's bias bitwidths. Unencoded, it stays float as a statistic.
    let bn_beta = matches!(op, Op::BatchNormalization(_)) && position == 2;
    let is_bias = bn_beta || op.input_role(position, 0) == crate::ops::InputRole::Bias;
    if is_bias {
        TensorRole::Bias
    } else if op.is_param_input(position) {
        TensorRole::Weight
    } else {
        TensorRole::Constant
    }
}

/// The representation of one used tensor on `backend`, or why it has none.
fn representation(
    graph: &Graph,
    id: TensorId,
    role: TensorRole,
    encoding: Option<&TensorEncoding>,
    backend: &BackendRules,
) -> Result<Repr, CompileError> {
    let info = graph.info(id);
    let tensor = || info.name.clone();
    let float = |bitwidth: u32| -> Result<Repr, CompileError> {
        if backend.float_bitwidths.contains(&bitwidth) {
            Ok(Repr::Float { bitwidth })
        } else {
            Err(CompileError::FloatNotAllowed {
                tensor: tensor(),
                bitwidth,
                allowed: backend.float_bitwidths.iter().copied().collect(),
                backend: backend.name.clone(),
            })
        }
    };
    let params = match encoding {
        // An unencoded bias stays float32 even on a quantized backend, as in AIMET's QuantSim,
        // whose backend configs leave biases unquantized unless an encoding is given; so do
        // BatchNormalization statistics, which the quantizer leaves float.
        None if backend.quantized && may_stay_float(graph, id) => return Ok(Repr::F32),
        None if backend.quantized => {
            return Err(CompileError::MissingEncoding { tensor: tensor(), role, backend: backend.name.clone() });
        }
        None => return float(32),
        Some(TensorEncoding::Float { bitwidth }) => return float(*bitwidth),
        Some(TensorEncoding::PerTensor(e)) => QuantParams {
            bitwidth: e.bitwidth,
            axis: None,
            scales: vec![e.scale],
            offsets: vec![e.offset],
            block: None,
        },
        Some(TensorEncoding::PerChannel { axis, channels }) => {
            let bitwidth = channels.first().map_or(0, |c| c.bitwidth);
            if let Some(odd) = channels.iter().find(|c| c.bitwidth != bitwidth) {
                return Err(CompileError::InvalidEncoding {
                    tensor: tensor(),
                    reason: format!("per-channel encodings mix {bitwidth}-bit and {}-bit channels", odd.bitwidth),
                });
            }
            let Ok(axis) = u32::try_from(*axis) else {
                return Err(CompileError::InvalidEncoding { tensor: tensor(), reason: format!("axis {axis}") });
            };
            if let Some(reason) = per_channel_refusal(graph, id, role, backend) {
                return Err(CompileError::PerChannelNotAllowed {
                    tensor: tensor(),
                    reason,
                    backend: backend.name.clone(),
                });
            }
            QuantParams {
                bitwidth,
                axis: Some(axis),
                scales: channels.iter().map(|c| c.scale).collect(),
                offsets: channels.iter().map(|c| c.offset).collect(),
                block: None,
            }
        }
        Some(TensorEncoding::PerBlock { axis, block_axis, block_size, blocks }) => {
            let bitwidth = blocks.first().map_or(0, |c| c.bitwidth);
            if let Some(odd) = blocks.iter().find(|c| c.bitwidth != bitwidth) {
                return Err(CompileError::InvalidEncoding {
                    tensor: tensor(),
                    reason: format!("per-block encodings mix {bitwidth}-bit and {}-bit blocks", odd.bitwidth),
                });
            }
            let (Ok(axis), Ok(block_axis), Ok(size)) =
                (u32::try_from(*axis), u32::try_from(*block_axis), u32::try_from(*block_size))
            else {
                return Err(CompileError::InvalidEncoding {
                    tensor: tensor(),
                    reason: format!("axes {axis}, {block_axis} or block size {block_size}"),
                });
            };
            // Blocks refine channels: where a backend refuses per-channel weights, it refuses these.
            if let Some(reason) = per_channel_refusal(graph, id, role, backend) {
                return Err(CompileError::PerChannelNotAllowed {
                    tensor: tensor(),
                    reason,
                    backend: backend.name.clone(),
                });
            }
            QuantParams {
                bitwidth,
                axis: Some(axis),
                scales: blocks.iter().map(|c| c.scale).collect(),
                offsets: blocks.iter().map(|c| c.offset).collect(),
                block: Some(Blocks { axis: block_axis, size }),
            }
        }
    };
    if !backend.quantized {
        return Err(CompileError::QuantizedOnFloatBackend {
            tensor: tensor(),
            bitwidth: params.bitwidth,
            backend: backend.name.clone(),
        });
    }
    let allowed = backend.quant_bitwidths(role);
    if !allowed.contains(&params.bitwidth) {
        return Err(CompileError::BitwidthNotAllowed {
            tensor: tensor(),
            role,
            bitwidth: params.bitwidth,
            allowed: allowed.into_iter().collect(),
            backend: backend.name.clone(),
        });
    }
    let repr = Repr::Quant(params);
    repr.check(&info.shape).map_err(|reason| CompileError::InvalidEncoding { tensor: tensor(), reason })?;
    Ok(repr)
}

/// Whether a tensor may stay float32 without an encoding on a quantized backend: it is not a
/// graph output and every read of it is the scale of a quantized compute op (QuantizeLinear,
/// QLinearConv, ...); or it is a constant and every read is a Conv/ConvTranspose/Gemm bias or
/// a parameter its op declares float (BatchNormalization statistics, a recurrent op's B, Clip
/// bounds, quantization scales: `InputRole::FloatParam`).
fn may_stay_float(graph: &Graph, id: TensorId) -> bool {
    let rank = graph.info(id).shape.len();
    let reads: Vec<(&Op, usize)> = graph
        .nodes
        .iter()
        .flat_map(|node| {
            node.inputs.iter().enumerate().filter(move |&(_, &input)| input == id).map(move |(p, _)| (&node.op, p))
        })
        .collect();
    let scale = !reads.is_empty()
        && !graph.outputs.contains(&id)
        && reads.iter().all(|&(op, position)| op.reads_quant_scale(position));
    scale
        || graph.is_constant(id)
            && reads.iter().all(|&(op, position)| match op.input_role(position, rank) {
                InputRole::FloatParam => true,
                InputRole::Bias => matches!(op, Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_)),
                _ => false,
            })
}

/// Why `id` may not carry a per-channel encoding on `backend` (None: it may).
fn per_channel_refusal(graph: &Graph, id: TensorId, role: TensorRole, backend: &BackendRules) -> Option<String> {
    if !matches!(role, TensorRole::Weight | TensorRole::Bias) {
        return Some(format!(
            "it is {} {} tensor; only weights and biases are per-channel",
            article(role),
            role.name()
        ));
    }
    let readers = graph.nodes.iter().filter(|n| n.inputs.contains(&id));
    for node in readers {
        let op = node.op.type_name();
        if !backend.allows_per_channel(op) {
            let allowed: Vec<&str> = backend.per_channel_ops.iter().map(String::as_str).collect();
            return Some(format!(
                "node {:?} ({op}) reads it, and per-channel ops are [{}]",
                node.name,
                allowed.join(", ")
            ));
        }
    }
    None
}

fn article(role: TensorRole) -> &'static str {
    if role == TensorRole::Activation { "an" } else { "a" }
}
