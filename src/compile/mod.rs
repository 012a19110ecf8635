//! Lowering a quantized graph to the executable plan: backend rules, legality, scheduling,
//! memory planning and the versioned, checksummed `model.bin` format.
//!
//! `compile` keeps the optimized graph's tensor ids and names in the [`Program`], one step per
//! node, so that the executor can report every intermediate tensor under the id the float
//! reference uses. Weights are stored in their target representation (integer codes for
//! quantized tensors, see [`repr`]); activations get offsets in one arena.

pub mod format;
mod legality;
pub mod memory;
pub mod program;
pub mod repr;
pub mod rules;
pub mod schedule;
#[cfg(test)]
pub(crate) mod test_graphs;
#[cfg(test)]
mod tests;

pub use format::{FORMAT_VERSION, MAGIC, ModelBinError};
pub use program::{InvalidProgram, Program, ProgramTensor, Step, Storage};
pub use repr::{Blocks, QuantParams, Repr};
pub use rules::{
    BackendRules, OpQuantization, OpRules, RuleSet, RulesError, TensorRole, UnknownBackend, parse_rules, standard_rules,
};

use crate::ir::{Graph, TensorId};
use crate::quant::encoding::QuantizedGraph;
use legality::Use;
use memory::{ARENA_ALIGN, Block, Placement};

/// Why a quantized graph cannot be compiled for a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("invalid graph: {0}")]
    InvalidGraph(String),
    #[error("node {node:?}: op {op} is not supported by backend {backend:?}")]
    UnsupportedOp { node: String, op: String, backend: String },
    #[error("tensor {tensor:?} has dtype {dtype}; only float32 tensors reach compilation")]
    NonFloatTensor { tensor: String, dtype: String },
    #[error("tensor {tensor:?} has a {bitwidth}-bit integer encoding, but backend {backend:?} runs float tensors only")]
    QuantizedOnFloatBackend { tensor: String, bitwidth: u32, backend: String },
    #[error("{} tensor {tensor:?} has no encoding; backend {backend:?} runs quantized tensors only", role.name())]
    MissingEncoding { tensor: String, role: TensorRole, backend: String },
    #[error(
        "{} tensor {tensor:?} is encoded with {bitwidth} bits; backend {backend:?} {}",
        role.name(), accepted(*role, allowed)
    )]
    BitwidthNotAllowed { tensor: String, role: TensorRole, bitwidth: u32, allowed: Vec<u32>, backend: String },
    #[error("tensor {tensor:?} is float{bitwidth}; backend {backend:?} runs float bitwidths {}", list(allowed))]
    FloatNotAllowed { tensor: String, bitwidth: u32, allowed: Vec<u32>, backend: String },
    #[error("tensor {tensor:?} has a per-channel encoding, not allowed on backend {backend:?}: {reason}")]
    PerChannelNotAllowed { tensor: String, reason: String, backend: String },
    #[error("tensor {tensor:?} has an invalid encoding: {reason}")]
    InvalidEncoding { tensor: String, reason: String },
    /// The compiler produced a program that fails its own checks: a bug in qairt.
    #[error("internal compiler error: {0}")]
    Internal(String),
}

fn accepted(role: TensorRole, allowed: &[u32]) -> String {
    if allowed.is_empty() {
        format!("takes no integer {} tensors", role.name())
    } else {
        format!("accepts {} bitwidths {}", role.name(), list(allowed))
    }
}

fn list(values: &[u32]) -> String {
    let items: Vec<String> = values.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(", "))
}

impl CompileError {
    /// A suggestion for the user, for diagnostics.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            CompileError::UnsupportedOp { op, backend, .. } => format!(
                "compile this target for another backend, or add \"{op}\" to supported_ops in rules/{backend}.toml"
            ),
            CompileError::NonFloatTensor { .. } => {
                "integer tensors (shape arithmetic) must be constant-folded by `optimize`; this one depends on a graph input".into()
            }
            CompileError::QuantizedOnFloatBackend { .. } => {
                "compile for a quantized backend (e.g. backend = \"htp\"), or give this target no encodings".into()
            }
            CompileError::MissingEncoding { role: TensorRole::Activation, .. } => {
                "calibrate the target (check [calibration] input_list) or give the tensor an encoding in the overrides file".into()
            }
            CompileError::MissingEncoding { .. } => {
                "quantize the parameters of this target, or give the tensor a param encoding in the overrides file".into()
            }
            CompileError::BitwidthNotAllowed { role, allowed, backend, .. } if allowed.is_empty() => format!(
                "add `{}_bitwidths` to the [backend] table of rules/{backend}.toml, or give the tensor no encoding",
                role.name()
            ),
            CompileError::BitwidthNotAllowed { role, allowed, .. } => {
                let key = match role {
                    TensorRole::Activation => "act_bitwidth",
                    TensorRole::Weight => "weight_bitwidth",
                    TensorRole::Bias => "bias_bitwidth",
                    TensorRole::Constant => "act_bitwidth or weight_bitwidth",
                };
                format!("set {key} to one of {} for this target, or change the override", list(allowed))
            }
            CompileError::FloatNotAllowed { allowed, .. } if allowed.is_empty() => {
                "this backend runs integer tensors only: give the tensor an encoding (float_fallback = false)".into()
            }
            CompileError::FloatNotAllowed { allowed, .. } => {
                format!("use a float bitwidth of {} for this target", list(allowed))
            }
            CompileError::PerChannelNotAllowed { .. } => {
                "set per_channel = false for this target, or use a per-tensor encoding for this tensor".into()
            }
            _ => return None,
        })
    }
}

/// Compiles `q` for `backend`: checks legality, schedules the nodes, plans activation memory
/// and stores constants in their target representation.
pub fn compile(q: &QuantizedGraph, backend: &BackendRules) -> Result<Program, CompileError> {
    let graph = &q.graph;
    graph.validate().map_err(|e| CompileError::InvalidGraph(e.0))?;
    let tensors = legality::check(q, backend)?;

    let mut arena_sizes = vec![0u64; tensors.len()];
    for (i, (use_, repr)) in tensors.iter().enumerate() {
        if *use_ == Use::Activation {
            let info = &graph.tensors[i];
            let bytes = info
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .and_then(|n| repr.bytes_for(n))
                .ok_or_else(|| CompileError::InvalidGraph(format!("tensor {:?} is too large", info.name)))?;
            arena_sizes[i] = bytes as u64;
        }
    }

    // Plan memory for the graph order and for the greedy schedule; keep the smaller arena.
    let graph_order: Vec<usize> = (0..graph.nodes.len()).collect();
    let greedy = schedule::greedy_order(graph, &arena_sizes);
    let by_graph = plan_memory(graph, &graph_order, &arena_sizes);
    let by_greedy = plan_memory(graph, &greedy, &arena_sizes);
    let (order, placement) =
        if by_greedy.arena_bytes < by_graph.arena_bytes { (greedy, by_greedy) } else { (graph_order, by_graph) };

    let mut program_tensors = Vec::with_capacity(tensors.len());
    for (i, (use_, repr)) in tensors.into_iter().enumerate() {
        let id = TensorId(i as u32);
        let info = graph.tensors[i].clone();
        let storage = match use_ {
            Use::Unused => Storage::Unused,
            Use::Activation => Storage::Arena { offset: placement.offsets[i], bytes: arena_sizes[i] },
            Use::Constant(_) => {
                let tensor = graph
                    .constant(id)
                    .ok_or_else(|| CompileError::Internal(format!("constant {:?} has no data", info.name)))?;
                let data = match (&repr, tensor.as_f32()) {
                    (Repr::Native(_), _) => tensor.data.to_le_bytes(),
                    (_, Some(values)) => {
                        let bytes = repr.bytes_for(values.len()).ok_or_else(|| {
                            CompileError::InvalidGraph(format!("constant {:?} is too large", info.name))
                        })?;
                        let mut data = vec![0u8; bytes];
                        repr::encode(&repr, &info.shape, values, &mut data);
                        data
                    }
                    (_, None) => {
                        return Err(CompileError::NonFloatTensor {
                            tensor: info.name.clone(),
                            dtype: tensor.dtype().name().to_string(),
                        });
                    }
                };
                Storage::Constant { data }
            }
        };
        program_tensors.push(ProgramTensor { info, repr, storage });
    }

    let steps = order
        .iter()
        .map(|&i| {
            let node = &graph.nodes[i];
            Step {
                node: node.name.clone(),
                op: node.op.clone(),
                inputs: node.inputs.clone(),
                outputs: node.outputs.clone(),
            }
        })
        .collect();
    let program = Program {
        backend: backend.name.clone(),
        quantized: backend.quantized,
        tensors: program_tensors,
        inputs: graph.inputs.clone(),
        outputs: graph.outputs.clone(),
        steps,
        arena_bytes: placement.arena_bytes,
        naive_activation_bytes: arena_sizes.iter().sum(),
    };
    program.validate().map_err(|e| CompileError::Internal(e.0))?;
    Ok(program)
}

/// Offsets for every activation (indexed like the graph's tensors; 0 for the others) when
/// the nodes run in `order`.
fn plan_memory(graph: &Graph, order: &[usize], arena_sizes: &[u64]) -> Placement {
    let steps: Vec<(&[TensorId], &[TensorId])> =
        order.iter().map(|&i| (graph.nodes[i].inputs.as_slice(), graph.nodes[i].outputs.as_slice())).collect();
    let live = memory::live_intervals(graph.tensors.len(), &graph.inputs, &steps, &graph.outputs);
    let mut blocks = Vec::new();
    let mut owners = Vec::new();
    for (i, interval) in live.iter().enumerate() {
        if let Some(live) = interval
            && arena_sizes[i] > 0
        {
            blocks.push(Block { bytes: arena_sizes[i], live: *live });
            owners.push(i);
        }
    }
    let placed = memory::place(&blocks, ARENA_ALIGN);
    let mut offsets = vec![0u64; graph.tensors.len()];
    for (k, &owner) in owners.iter().enumerate() {
        offsets[owner] = placed.offsets[k];
    }
    Placement { offsets, arena_bytes: placed.arena_bytes }
}
