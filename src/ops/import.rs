//! What an op's ONNX import sees of a node ([`NodeCx`]) and returns ([`Lowered`]), with the
//! helpers every importer shares: arity checks, inputs that must be known at import, axis
//! normalization.

use std::collections::BTreeMap;

use super::Op;
pub(crate) use super::attrs::Attrs;
use crate::ir::{DType, Tensor};
use crate::onnx::error::{ErrorKind, ImportError, bad_attribute, malformed};
use crate::onnx::proto::NodeProto;

/// What the importer knows about one node input.
pub(crate) struct InputView<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    /// The value, when known at import (initializer, Constant, folded shape arithmetic).
    pub value: Option<&'a Tensor>,
}

/// A node with everything known about its inputs.
pub(crate) struct NodeCx<'a> {
    pub node: &'a NodeProto,
    /// The model's `ai.onnx` opset version.
    pub opset: i64,
    /// One entry per `node.input`; `None` for an omitted optional input (empty name).
    pub inputs: Vec<Option<InputView<'a>>>,
    pub external: &'a BTreeMap<String, Vec<u8>>,
    /// One entry per `node.output`: whether the graph reads it (another node's input or a
    /// graph output). An op with optional outputs that cost work (MaxPool's Indices) computes
    /// them only when read.
    pub used_outputs: Vec<bool>,
}

/// The import of one node.
pub(crate) enum Lowered {
    /// An IR node reading the node's inputs at these positions; it produces output 0.
    Ir { op: Op, inputs: Vec<usize> },
    /// Values of the node's first outputs, computed at import.
    Known(Vec<Tensor>),
    /// The node is replaced by the subgraph of this graph attribute (the branch an If takes),
    /// whose outputs become the node's: the importer imports its nodes in place.
    Branch(&'static str),
}

impl Lowered {
    /// An IR op reading the node's inputs at `inputs`.
    pub fn ir(op: impl Into<Op>, inputs: Vec<usize>) -> Result<Lowered, ImportError> {
        Ok(Lowered::Ir { op: op.into(), inputs })
    }
}

pub(crate) fn shape_error(message: impl Into<String>) -> ImportError {
    ImportError::new(ErrorKind::ShapeError, message)
}

impl<'a> NodeCx<'a> {
    pub fn op_type(&self) -> &'a str {
        self.node.op_type()
    }

    /// The node's attributes, checking every name is in `known`.
    pub fn attrs(&self, known: &[&str]) -> Result<Attrs<'a>, ImportError> {
        Attrs::new(self.node, known)
    }

    /// Checks the number of inputs the node lists (trailing optional ones may be omitted).
    pub fn arity(&self, min: usize, max: usize) -> Result<(), ImportError> {
        let n = self.inputs.len();
        if n < min || n > max {
            let range = if min == max { format!("{min}") } else { format!("{min} to {max}") };
            return Err(malformed(format!("{} takes {range} inputs, got {n}", self.op_type())));
        }
        Ok(())
    }

    /// Whether the graph reads output `i` of the node.
    pub fn output_used(&self, i: usize) -> bool {
        self.used_outputs.get(i).copied().unwrap_or(false)
    }

    pub fn opt(&self, i: usize) -> Option<&InputView<'a>> {
        self.inputs.get(i).and_then(Option::as_ref)
    }

    pub fn input(&self, i: usize, role: &str) -> Result<&InputView<'a>, ImportError> {
        self.opt(i).ok_or_else(|| malformed(format!("{} needs input #{i} ({role})", self.op_type())))
    }

    /// An input whose value must be known at import (shape, axes, pads, bounds...).
    pub fn constant(&self, i: usize, role: &str) -> Result<Option<&'a Tensor>, ImportError> {
        let Some(view) = self.opt(i) else { return Ok(None) };
        match view.value {
            Some(t) => Ok(Some(t)),
            None => Err(ImportError::needs_value(
                view.name,
                format!(
                    "{} input #{i} ({role}) {:?} must be a constant or computable at import, but it \
                     is computed at run time",
                    self.op_type(),
                    view.name
                ),
            )),
        }
    }

    pub fn constant_ints(&self, i: usize, role: &str) -> Result<Option<Vec<i64>>, ImportError> {
        let Some(t) = self.constant(i, role)? else { return Ok(None) };
        match t.to_i64_vec() {
            Some(v) if t.dtype() != DType::Bool && t.shape.len() <= 1 => Ok(Some(v)),
            _ => Err(bad_attribute(format!(
                "{} input #{i} ({role}) must be a 1-D integer tensor, got {} of shape {:?}",
                self.op_type(),
                t.dtype().name(),
                t.shape
            ))),
        }
    }

    pub fn constant_scalar(&self, i: usize, role: &str) -> Result<Option<f32>, ImportError> {
        let Some(t) = self.constant(i, role)? else { return Ok(None) };
        match t.to_f32_vec()[..] {
            [v] => Ok(Some(v)),
            _ => Err(bad_attribute(format!(
                "{} input #{i} ({role}) must hold one value, got shape {:?}",
                self.op_type(),
                t.shape
            ))),
        }
    }

    /// Positions in `wanted` whose input the node actually provides.
    pub fn present(&self, wanted: &[usize]) -> Vec<usize> {
        wanted.iter().copied().filter(|&i| self.opt(i).is_some()).collect()
    }

    /// The error for an input that is computed at run time where only a known value works.
    pub fn run_time_input(&self, name: &str) -> ImportError {
        let op = self.op_type();
        ImportError::needs_value(name, format!("{op} on {name:?}, which is computed at run time, is not supported"))
            .with_hint(format!(
                "qairt evaluates {op} only at import, on values known then (constants and static shapes)"
            ))
    }

    /// An input of a fold-only op, which must be known at import.
    pub fn folded_input(&self, i: usize, role: &str) -> Result<&'a Tensor, ImportError> {
        let view = self.input(i, role)?;
        view.value.ok_or_else(|| self.run_time_input(view.name))
    }
}

/// Normalizes an axis in `[-rank, rank - 1]` (or `[-rank, rank]` when `inclusive`, as for
/// Flatten) to a non-negative one.
pub(crate) fn axis(value: i64, rank: usize, inclusive: bool, what: &str) -> Result<usize, ImportError> {
    let r = rank as i64;
    let hi = if inclusive { r } else { r - 1 };
    if value < -r || value > hi {
        return Err(bad_attribute(format!("{what} {value} is out of range [{}, {hi}] for rank {rank}", -r)));
    }
    Ok(if value < 0 { (value + r) as usize } else { value as usize })
}

pub(crate) fn axes(values: &[i64], rank: usize, what: &str) -> Result<Vec<usize>, ImportError> {
    values.iter().map(|&v| axis(v, rank, false, what)).collect()
}

/// A list attribute of `n` strictly positive entries, or all ones when absent.
pub(crate) fn positive_list(values: Option<Vec<i64>>, n: usize, what: &str) -> Result<Vec<usize>, ImportError> {
    let Some(values) = values else { return Ok(vec![1; n]) };
    if values.len() != n || values.iter().any(|&v| v < 1) {
        return Err(bad_attribute(format!("{what} must be {n} positive integers, got {values:?}")));
    }
    Ok(values.iter().map(|&v| v as usize).collect())
}
