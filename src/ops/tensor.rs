//! Data movement and conversion ops on tensors of every element type: Gather, Slice, Split,
//! Expand, Tile, Trilu, DepthToSpace, SpaceToDepth, CenterCropPad, Cast (and CastLike, which
//! imports as a Cast), BitCast, EyeLike; Range, evaluated at import.
//!
//! Inputs that decide output shapes (Slice's bounds, Split's sizes, Expand's shape, Tile's
//! repeats, Trilu's k) must be known at import and are folded into the op. Every op is also
//! evaluated at import when all its inputs are known (shape arithmetic: Gather and Slice of a
//! `Shape` output, Cast of constants).
//!
//! The kernels are type-generic: they compute flat source indices and gather
//! ([`TensorData::gather`]) or copy contiguous runs inside `map_data!`, so no element goes
//! through a dynamic dispatch; indices out of range are [`KernelError`]s.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int, attr_string};
use super::import::{Lowered, NodeCx, axes, axis, shape_error};
use super::{Identity, InputRole, OnnxOp, Op, OpDef, OutputEncoding, QuantDefault};
use crate::ir::shape::{broadcast_shapes, exactly};
use crate::ir::{DType, Tensor, TensorData, TensorInfo, strides_of};
use crate::map_data;
use crate::onnx::ImportError;
use crate::onnx::error::{bad_attribute, malformed};
use crate::onnx::fold::{self, MAX_FOLDED_ELEMENTS};
use crate::onnx::tensor::{dtype_from_onnx, onnx_code};
use crate::runtime::kernels::{KernelError, element_count, shape_ops, tensor};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("Gather", import_gather, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Slice", import_slice, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Split", import_split, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Expand", import_expand, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Tile", import_tile, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Trilu", import_trilu, QuantDefault::CALIBRATED),
    OnnxOp::ir("DepthToSpace", import_depth_to_space, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("SpaceToDepth", import_space_to_depth, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("CenterCropPad", import_center_crop_pad, QuantDefault::CALIBRATED),
    OnnxOp::ir("Cast", import_cast, QuantDefault::CALIBRATED),
    OnnxOp::ir("CastLike", import_cast_like, QuantDefault::CALIBRATED),
    // Bits, not values: an encoding of either side means nothing to the other.
    OnnxOp::ir("BitCast", import_bit_cast, QuantDefault { output: OutputEncoding::Float, ..QuantDefault::CALIBRATED }),
    OnnxOp::ir("EyeLike", import_eye_like, QuantDefault::CALIBRATED),
    OnnxOp::folded("Range", import_range),
];

/// `out = data[..axis] ++ indices.shape ++ data[axis+1..]`; inputs `[data, indices]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Gather {
    pub axis: usize,
}

/// ONNX Slice with its bounds as the model gives them (clamped when run, as the spec says);
/// `axes` normalized, one entry of each list per sliced axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slice {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub axes: Vec<usize>,
    pub steps: Vec<i64>,
}

/// Splits along `axis` into pieces of `sizes` (one output each).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Split {
    pub axis: usize,
    pub sizes: Vec<usize>,
}

/// Broadcasts the input to `shape` (the resolved output shape).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Expand {
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tile {
    pub repeats: Vec<usize>,
}

/// Keeps the upper (`j - i >= k`) or lower (`j - i <= k`) triangle of the last two axes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Trilu {
    pub upper: bool,
    pub k: i64,
}

/// DepthToSpace (`crd`: the CRD mode; otherwise DCR) or SpaceToDepth (`to_depth`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockRearrange {
    pub to_depth: bool,
    pub blocksize: usize,
    pub crd: bool,
}

/// Centered crop and/or zero pad to `shape` (the full output shape).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CenterCropPad {
    pub shape: Vec<usize>,
}

/// Element type conversion (ONNX Cast; CastLike imports as one).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cast {
    pub to: DType,
    pub saturate: bool,
}

/// The input's bits read as elements of `to`, a type of the same width (ONNX BitCast, opset
/// 26): little-endian, as the spec says; a byte read as bool is true when not zero.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BitCast {
    pub to: DType,
}

/// Ones on the `k`-th diagonal of a 2-D tensor of the input's shape, zeros elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EyeLike {
    pub dtype: DType,
    pub k: i64,
}

into_op!(Gather, Slice, Split, Expand, Tile, Trilu, BlockRearrange, CenterCropPad, Cast, BitCast, EyeLike);

// ---------------------------------------------------------------------------------------
// Shared helpers (also used by the index ops).

/// The IR node for `op` reading the node's inputs at `positions`, or, when every one of them
/// is known at import (and the result is small), its value computed now.
pub(super) fn fold_or_ir(cx: &NodeCx, op: impl Into<Op>, positions: Vec<usize>) -> Result<Lowered, ImportError> {
    let op = op.into();
    let mut values = Vec::with_capacity(positions.len());
    let mut infos = Vec::with_capacity(positions.len());
    for &p in &positions {
        let view = cx.input(p, "input")?;
        values.push(view.value);
        infos.push(TensorInfo { name: view.name.to_string(), dtype: view.dtype, shape: view.shape.to_vec() });
    }
    let Some(values) = values.into_iter().collect::<Option<Vec<&Tensor>>>() else {
        return Lowered::ir(op, positions);
    };
    let refs: Vec<&TensorInfo> = infos.iter().collect();
    let inferred = op.infer(&refs).map_err(shape_error)?;
    let small = inferred.iter().all(|(_, shape)| {
        shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_some_and(|n| n <= MAX_FOLDED_ELEMENTS)
    });
    if !small {
        return Lowered::ir(op, positions);
    }
    let out = op.run(&values, &[]).map_err(|e| shape_error(format!("evaluating at import: {e}")))?;
    Ok(Lowered::Known(out))
}

/// Integer index values (int32 or int64 tensors).
pub(super) fn index_values(op: &'static str, t: &Tensor, what: &str) -> Result<Vec<i64>, KernelError> {
    match &t.data {
        TensorData::I64(v) => Ok(v.clone()),
        TensorData::I32(v) => Ok(v.iter().map(|&x| i64::from(x)).collect()),
        other => Err(KernelError::new(op, format!("{what} must be int32 or int64, got {}", other.dtype().name()))),
    }
}

/// Checks that an index input is int32 or int64 (shape inference).
pub(super) fn require_index(op: &str, t: &TensorInfo) -> Result<(), String> {
    if matches!(t.dtype, DType::I32 | DType::I64) {
        Ok(())
    } else {
        Err(format!("{op}: {:?} is {}, expected int32 or int64 indices", t.name, t.dtype.name()))
    }
}

/// An index in `[-dim, dim)` as a position in `[0, dim)`.
pub(super) fn wrap(op: &'static str, k: i64, dim: usize) -> Result<usize, KernelError> {
    let d = dim as i64;
    let w = if k < 0 { k + d } else { k };
    if (0..d).contains(&w) {
        Ok(w as usize)
    } else {
        Err(KernelError::new(op, format!("index {k} is out of range for an axis of size {dim}")))
    }
}

/// Flat source indices of an output of `out_shape` whose element at multi-index `j` reads
/// `sum(tables[a][j[a]])` (each table has `out_shape[a]` entries): slices, broadcasts, tiles.
pub(super) fn table_sources(out_shape: &[usize], tables: &[Vec<usize>]) -> Vec<usize> {
    let count: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(count);
    if count == 0 {
        return out;
    }
    let Some((last, outer)) = tables.split_last() else {
        out.push(0);
        return out;
    };
    let mut index = vec![0usize; outer.len()];
    loop {
        let base: usize = outer.iter().zip(&index).map(|(t, &i)| t[i]).sum();
        out.extend(last.iter().map(|&t| base + t));
        let mut axis = outer.len();
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            index[axis] += 1;
            if index[axis] < out_shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}

/// The rows `rows` (positions along `axis`) of `data`, copied as contiguous runs.
pub(super) fn take_rows(
    op: &'static str,
    data: &Tensor,
    axis: usize,
    rows: &[usize],
    index_shape: &[usize],
) -> Result<Tensor, KernelError> {
    let dim = *data
        .shape
        .get(axis)
        .ok_or_else(|| KernelError::new(op, format!("axis {axis} is out of range for shape {:?}", data.shape)))?;
    if let Some(&bad) = rows.iter().find(|&&r| r >= dim) {
        return Err(KernelError::new(op, format!("index {bad} is out of range for an axis of size {dim}")));
    }
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let mut shape = data.shape[..axis].to_vec();
    shape.extend(index_shape);
    shape.extend(&data.shape[axis + 1..]);
    let count = element_count(op, &shape)?;
    let out = map_data!(&data.data, v => {
        let mut out = Vec::with_capacity(count);
        for o in 0..outer {
            for &r in rows {
                let start = (o * dim + r) * inner;
                out.extend_from_slice(&v[start..start + inner]);
            }
        }
        out
    });
    tensor(op, shape, out)
}

fn one_input<'a>(op: &'static str, inputs: &[&'a Tensor]) -> Result<&'a Tensor, KernelError> {
    match inputs {
        [x] => Ok(x),
        _ => Err(KernelError::new(op, format!("expects 1 input, got {}", inputs.len()))),
    }
}

fn two_inputs<'a>(op: &'static str, inputs: &[&'a Tensor]) -> Result<(&'a Tensor, &'a Tensor), KernelError> {
    match inputs {
        [a, b] => Ok((a, b)),
        _ => Err(KernelError::new(op, format!("expects 2 inputs, got {}", inputs.len()))),
    }
}

fn gathered(op: &'static str, x: &Tensor, shape: Vec<usize>, tables: &[Vec<usize>]) -> Result<Tensor, KernelError> {
    element_count(op, &shape)?;
    let sources = table_sources(&shape, tables);
    tensor(op, shape, x.data.gather(&sources))
}

// ---------------------------------------------------------------------------------------
// Slice geometry.

/// The output shape of a Slice and, per axis, the flat offset each output position reads.
fn slice_plan(shape: &[usize], s: &Slice) -> Result<(Vec<usize>, Vec<Vec<usize>>), String> {
    let rank = shape.len();
    let n = s.starts.len();
    if s.ends.len() != n || s.axes.len() != n || s.steps.len() != n {
        return Err(format!(
            "Slice: starts, ends, axes and steps must have one entry per sliced axis (got {}, {}, {}, {})",
            n,
            s.ends.len(),
            s.axes.len(),
            s.steps.len()
        ));
    }
    let strides = strides_of(shape);
    let mut out_shape = shape.to_vec();
    let mut first = vec![0i64; rank];
    let mut step_of = vec![1i64; rank];
    let mut seen = vec![false; rank];
    for (((&axis, &start), &end), &step) in s.axes.iter().zip(&s.starts).zip(&s.ends).zip(&s.steps) {
        if axis >= rank || std::mem::replace(&mut seen[axis], true) {
            return Err(format!("Slice: axis {axis} is out of range for rank {rank} or repeated"));
        }
        if step == 0 {
            return Err("Slice: steps must be non-zero".into());
        }
        let dim = shape[axis] as i64;
        let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = if step > 0 {
            (norm(start).clamp(0, dim), norm(end).clamp(0, dim))
        } else {
            (norm(start).clamp(0, (dim - 1).max(0)), norm(end).clamp(-1, dim - 1))
        };
        // ceil(distance / |step|) without overflow: steps may be as large as i64::MAX/MIN.
        let len = match (step > 0, start, end) {
            _ if dim == 0 => 0,
            (true, s, e) if e > s => (e - s - 1) as u64 / step.unsigned_abs() + 1,
            (false, s, e) if s > e => (s - e - 1) as u64 / step.unsigned_abs() + 1,
            _ => 0,
        };
        out_shape[axis] = len as usize;
        first[axis] = start;
        // With two or more elements, |step| * (len - 1) < dim, so the products fit.
        step_of[axis] = if len > 1 { step } else { 0 };
    }
    let tables = (0..rank)
        .map(|a| {
            (0..out_shape[a] as i64).map(|j| (first[a] + j * step_of[a]) as usize * strides[a]).collect::<Vec<usize>>()
        })
        .collect();
    Ok((out_shape, tables))
}

// ---------------------------------------------------------------------------------------
// Imports.

fn import_gather(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["axis"])?;
    let rank = cx.input(0, "data")?.shape.len();
    cx.input(1, "indices")?;
    let axis = axis(a.int_or("axis", 0)?, rank, false, "axis")?;
    fold_or_ir(cx, Gather { axis }, vec![0, 1])
}

fn import_slice(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let rank = cx.input(0, "data")?.shape.len();
    let (starts, ends, listed_axes, steps) = if cx.opset < 10 {
        cx.arity(1, 1)?;
        let a = cx.attrs(&["starts", "ends", "axes"])?;
        let starts = a.ints("starts")?.ok_or_else(|| bad_attribute("attribute \"starts\" is required"))?;
        let ends = a.ints("ends")?.ok_or_else(|| bad_attribute("attribute \"ends\" is required"))?;
        (starts, ends, a.ints("axes")?, None)
    } else {
        cx.arity(3, 5)?;
        cx.attrs(&[])?;
        let starts = cx.constant_ints(1, "starts")?.ok_or_else(|| malformed("Slice needs input #1 (starts)"))?;
        let ends = cx.constant_ints(2, "ends")?.ok_or_else(|| malformed("Slice needs input #2 (ends)"))?;
        (starts, ends, cx.constant_ints(3, "axes")?, cx.constant_ints(4, "steps")?)
    };
    let axes = match listed_axes {
        Some(v) => axes(&v, rank, "axis")?,
        None => (0..starts.len()).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    fold_or_ir(cx, Slice { starts, ends, axes, steps }, vec![0])
}

fn import_split(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let (a, listed) = if cx.opset < 13 {
        cx.arity(1, 1)?;
        let a = cx.attrs(&["axis", "split"])?;
        let split = a.ints("split")?;
        (a, split)
    } else {
        cx.arity(1, 2)?;
        let known: &[&str] = if cx.opset >= 18 { &["axis", "num_outputs"] } else { &["axis"] };
        (cx.attrs(known)?, cx.constant_ints(1, "split")?)
    };
    let x = cx.input(0, "input")?;
    let axis = axis(a.int_or("axis", 0)?, x.shape.len(), false, "axis")?;
    let dim = x.shape[axis];
    let outputs = cx.node.output.len();
    if outputs == 0 {
        return Err(malformed("Split has no outputs"));
    }
    let sizes: Vec<usize> = match (listed, a.int("num_outputs")?) {
        (Some(_), Some(_)) => return Err(bad_attribute("Split takes either the split input or num_outputs, not both")),
        (Some(split), None) => {
            let sizes = split
                .iter()
                .map(|&s| usize::try_from(s).map_err(|_| bad_attribute(format!("split {split:?} has a negative size"))))
                .collect::<Result<Vec<_>, _>>()?;
            if sizes.len() != outputs || sizes.iter().sum::<usize>() != dim {
                return Err(bad_attribute(format!(
                    "split {split:?} must have {outputs} entries summing to the axis size {dim}"
                )));
            }
            sizes
        }
        (None, Some(n)) => {
            if n < 1 || n as usize != outputs {
                return Err(bad_attribute(format!("num_outputs {n} does not match the node's {outputs} outputs")));
            }
            // Opset 18: pieces of ceil(dim / n), the last one smaller.
            let chunk = dim.div_ceil(outputs);
            let mut left = dim;
            let sizes: Vec<usize> = (0..outputs)
                .map(|_| {
                    let s = chunk.min(left);
                    left -= s;
                    s
                })
                .collect();
            if sizes.contains(&0) && dim >= outputs {
                return Err(bad_attribute(format!("axis size {dim} cannot be split into {outputs} pieces")));
            }
            sizes
        }
        (None, None) => {
            if !dim.is_multiple_of(outputs) {
                return Err(bad_attribute(format!("axis size {dim} cannot be split into {outputs} equal pieces")));
            }
            vec![dim / outputs; outputs]
        }
    };
    fold_or_ir(cx, Split { axis, sizes }, vec![0])
}

fn import_expand(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    cx.attrs(&[])?;
    let x = cx.input(0, "input")?;
    let target = cx.constant_ints(1, "shape")?.ok_or_else(|| malformed("Expand needs input #1 (shape)"))?;
    let target: Vec<usize> = target
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| shape_error(format!("Expand: negative dimension in {target:?}"))))
        .collect::<Result<_, _>>()?;
    let shape = broadcast_shapes(x.shape, &target).ok_or_else(|| {
        shape_error(format!("Expand: {:?} of shape {:?} does not broadcast to {target:?}", x.name, x.shape))
    })?;
    fold_or_ir(cx, Expand { shape }, vec![0])
}

fn import_tile(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    cx.attrs(&[])?;
    cx.input(0, "input")?;
    let repeats = cx.constant_ints(1, "repeats")?.ok_or_else(|| malformed("Tile needs input #1 (repeats)"))?;
    let repeats = repeats
        .iter()
        .map(|&r| usize::try_from(r).map_err(|_| bad_attribute(format!("repeats {repeats:?} has a negative entry"))))
        .collect::<Result<Vec<_>, _>>()?;
    fold_or_ir(cx, Tile { repeats }, vec![0])
}

fn import_trilu(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 2)?;
    let a = cx.attrs(&["upper"])?;
    let upper = a.flag_or("upper", true)?;
    let k = match cx.constant_ints(1, "k")? {
        None => 0,
        Some(v) => match v[..] {
            [k] => k,
            _ => return Err(bad_attribute(format!("Trilu: k must hold one value, got {v:?}"))),
        },
    };
    fold_or_ir(cx, Trilu { upper, k }, vec![0])
}

fn blocksize(cx: &NodeCx, a: &super::import::Attrs) -> Result<usize, ImportError> {
    let b = a.int("blocksize")?.ok_or_else(|| bad_attribute("attribute \"blocksize\" is required"))?;
    usize::try_from(b)
        .ok()
        .filter(|&b| b > 0)
        .ok_or_else(|| bad_attribute(format!("{}: blocksize must be positive, got {b}", cx.op_type())))
}

fn import_depth_to_space(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["blocksize", "mode"])?;
    let blocksize = blocksize(cx, &a)?;
    let crd = match a.string("mode")?.as_deref().unwrap_or("DCR") {
        "DCR" => false,
        "CRD" => true,
        other => return Err(bad_attribute(format!("DepthToSpace mode {other:?} is not DCR or CRD"))),
    };
    fold_or_ir(cx, BlockRearrange { to_depth: false, blocksize, crd }, vec![0])
}

fn import_space_to_depth(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["blocksize"])?;
    let blocksize = blocksize(cx, &a)?;
    fold_or_ir(cx, BlockRearrange { to_depth: true, blocksize, crd: false }, vec![0])
}

fn import_center_crop_pad(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["axes"])?;
    let x = cx.input(0, "input_data")?;
    let rank = x.shape.len();
    let listed = cx.constant_ints(1, "shape")?.ok_or_else(|| malformed("CenterCropPad needs input #1 (shape)"))?;
    let ax = match a.ints("axes")? {
        Some(v) => axes(&v, rank, "axis")?,
        None => (0..rank).collect(),
    };
    if listed.len() != ax.len() {
        return Err(bad_attribute(format!("shape {listed:?} must have one entry per axis of {ax:?}")));
    }
    let mut shape = x.shape.to_vec();
    for (&axis, &d) in ax.iter().zip(&listed) {
        shape[axis] =
            usize::try_from(d).map_err(|_| bad_attribute(format!("shape {listed:?} has a negative entry")))?;
    }
    fold_or_ir(cx, CenterCropPad { shape }, vec![0])
}

fn cast_target(code: i64) -> Result<DType, ImportError> {
    let code = i32::try_from(code).map_err(|_| bad_attribute(format!("\"to\" = {code} is not an element type")))?;
    dtype_from_onnx(code, "the Cast target")
}

/// `round_mode` (opset 25) only affects casts to float8e8m0, which qairt does not carry.
fn cast_op(cx: &NodeCx, to: DType, saturate: bool) -> Result<Lowered, ImportError> {
    let x = cx.input(0, "input")?;
    if x.value.is_none() && x.dtype == to {
        return Lowered::ir(Identity, vec![0]);
    }
    fold_or_ir(cx, Cast { to, saturate }, vec![0])
}

fn import_cast(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["to", "saturate", "round_mode"])?;
    let to = cast_target(a.int("to")?.ok_or_else(|| bad_attribute("attribute \"to\" is required"))?)?;
    cast_op(cx, to, a.flag_or("saturate", true)?)
}

/// Bits of one element: 4 and 2 for the narrow integers (one element per byte in memory).
fn bit_width(dtype: DType) -> usize {
    match dtype {
        DType::I4 | DType::U4 => 4,
        DType::I2 | DType::U2 => 2,
        other => other.size_bytes() * 8,
    }
}

fn import_bit_cast(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["to"])?;
    let code = a.int("to")?.ok_or_else(|| bad_attribute("attribute \"to\" is required"))?;
    let code = i32::try_from(code).map_err(|_| bad_attribute(format!("\"to\" = {code} is not an element type")))?;
    let to = dtype_from_onnx(code, "the BitCast target")?;
    let x = cx.input(0, "input")?;
    let (from_bits, to_bits) = (bit_width(x.dtype), bit_width(to));
    if from_bits != to_bits {
        return Err(bad_attribute(format!(
            "BitCast from {} ({from_bits} bits) to {} ({to_bits} bits): the types must have the same width",
            x.dtype.name(),
            to.name()
        ))
        .with_hint("BitCast reinterprets each element's bits; Cast converts values between types of any width"));
    }
    fold_or_ir(cx, BitCast { to }, vec![0])
}

fn import_cast_like(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["saturate", "round_mode"])?;
    let to = cx.input(1, "target_type")?.dtype;
    cast_op(cx, to, a.flag_or("saturate", true)?)
}

fn import_eye_like(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["dtype", "k"])?;
    let x = cx.input(0, "input")?;
    let dtype = match a.int("dtype")? {
        Some(code) => cast_target(code)?,
        None => x.dtype,
    };
    fold_or_ir(cx, EyeLike { dtype, k: a.int_or("k", 0)? }, vec![0])
}

/// Range: `start + i * delta` for `i < max(ceil((limit - start) / delta), 0)`, in the inputs'
/// type; every input must be known at import.
fn import_range(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    cx.attrs(&[])?;
    let (start, limit, delta) =
        (cx.folded_input(0, "start")?, cx.folded_input(1, "limit")?, cx.folded_input(2, "delta")?);
    let dtype = start.dtype();
    if limit.dtype() != dtype || delta.dtype() != dtype {
        return Err(malformed("Range: start, limit and delta must have one element type"));
    }
    if start.len() != 1 || limit.len() != 1 || delta.len() != 1 {
        return Err(bad_attribute("Range: start, limit and delta must be scalars"));
    }
    let data = if dtype.is_float() {
        let (s, l, d) = (start.data.to_f64_vec()[0], limit.data.to_f64_vec()[0], delta.data.to_f64_vec()[0]);
        if d == 0.0 || !s.is_finite() || !l.is_finite() || !d.is_finite() {
            return Err(bad_attribute("Range: delta must be non-zero and the bounds finite"));
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if n > MAX_FOLDED_ELEMENTS as f64 {
            return Err(shape_error(format!("Range: {n} elements are too many to evaluate at import")));
        }
        let values: Vec<f64> = (0..n as usize).map(|i| s + i as f64 * d).collect();
        TensorData::floats_from_f64(dtype, &values, true)
    } else {
        let one = |t: &Tensor| t.to_i64_vec().map(|v| v[0]);
        let (Some(s), Some(l), Some(d)) = (one(start), one(limit), one(delta)) else {
            return Err(malformed("Range: inputs must be numbers"));
        };
        if d == 0 {
            return Err(bad_attribute("Range: delta must be non-zero"));
        }
        let (span, step) = (i128::from(l) - i128::from(s), i128::from(d));
        // ceil(span / step), zero when the bounds are the wrong way round.
        let n = if (span > 0) == (step > 0) && span != 0 { (span.abs() + step.abs() - 1) / step.abs() } else { 0 };
        if n > MAX_FOLDED_ELEMENTS as i128 {
            return Err(shape_error(format!("Range: {n} elements are too many to evaluate at import")));
        }
        let values: Vec<i64> = (0..n as i64).map(|i| s.wrapping_add(i.wrapping_mul(d))).collect();
        TensorData::ints_from_i64(dtype, &values)
    };
    let data = data.ok_or_else(|| bad_attribute(format!("Range of {} is not supported", dtype.name())))?;
    let out = Tensor::new(vec![data.len()], data).map_err(|e| shape_error(e.to_string()))?;
    Ok(Lowered::Known(vec![out]))
}

// ---------------------------------------------------------------------------------------
// OpDef implementations.

impl OpDef for Gather {
    fn type_name(&self) -> &'static str {
        "Gather"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [data, indices] = exactly("Gather", inputs)?;
        require_index("Gather", indices)?;
        let axis = self.axis;
        if axis >= data.shape.len() {
            return Err(format!(
                "Gather: axis {axis} is out of range for {:?} of rank {}",
                data.name,
                data.shape.len()
            ));
        }
        let mut shape = data.shape[..axis].to_vec();
        shape.extend(&indices.shape);
        shape.extend(&data.shape[axis + 1..]);
        Ok(vec![(data.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "Gather";
        let (data, indices) = two_inputs(OP, inputs)?;
        let dim = *data
            .shape
            .get(self.axis)
            .ok_or_else(|| KernelError::new(OP, format!("axis {} is out of range", self.axis)))?;
        let rows = index_values(OP, indices, "indices")?
            .into_iter()
            .map(|k| wrap(OP, k, dim))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(vec![take_rows(OP, data, self.axis, &rows, &indices.shape)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        // A constant table (an embedding) is a parameter; the indices select.
        if position == 0 { InputRole::Weight { channel_axis: None } } else { InputRole::Index }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Gather", vec![attr_int("axis", self.axis as i64)]);
    }
}

impl OpDef for Slice {
    fn type_name(&self) -> &'static str {
        "Slice"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Slice", inputs)?;
        let (shape, _) = slice_plan(&x.shape, self)?;
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "Slice";
        let x = one_input(OP, inputs)?;
        let (shape, tables) = slice_plan(&x.shape, self).map_err(|e| KernelError::new(OP, e))?;
        Ok(vec![gathered(OP, x, shape, &tables)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let axes: Vec<i64> = self.axes.iter().map(|&a| a as i64).collect();
        let extra = vec![
            cx.int64s("starts", &self.starts),
            cx.int64s("ends", &self.ends),
            cx.int64s("axes", &axes),
            cx.int64s("steps", &self.steps),
        ];
        cx.emit_with("Slice", extra, vec![]);
    }
}

impl OpDef for Split {
    fn type_name(&self) -> &'static str {
        "Split"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Split", inputs)?;
        let dim = *x.shape.get(self.axis).ok_or_else(|| {
            format!("Split: axis {} is out of range for {:?} of rank {}", self.axis, x.name, x.shape.len())
        })?;
        if self.sizes.iter().sum::<usize>() != dim || self.sizes.is_empty() {
            return Err(format!(
                "Split: sizes {:?} do not add up to axis {} of {:?} (size {dim})",
                self.sizes, self.axis, x.name
            ));
        }
        Ok(self
            .sizes
            .iter()
            .map(|&s| {
                let mut shape = x.shape.clone();
                shape[self.axis] = s;
                (x.dtype, shape)
            })
            .collect())
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "Split";
        let x = one_input(OP, inputs)?;
        let axis = self.axis;
        let dim = *x.shape.get(axis).ok_or_else(|| KernelError::new(OP, format!("axis {axis} is out of range")))?;
        if self.sizes.iter().sum::<usize>() != dim {
            return Err(KernelError::new(OP, format!("sizes {:?} do not add up to {dim}", self.sizes)));
        }
        let outer: usize = x.shape[..axis].iter().product();
        let inner: usize = x.shape[axis + 1..].iter().product();
        let mut offset = 0;
        let mut outputs = Vec::with_capacity(self.sizes.len());
        for &size in &self.sizes {
            let data = map_data!(&x.data, v => {
                let mut out = Vec::with_capacity(outer * size * inner);
                for o in 0..outer {
                    let start = (o * dim + offset) * inner;
                    out.extend_from_slice(&v[start..start + size * inner]);
                }
                out
            });
            let mut shape = x.shape.clone();
            shape[axis] = size;
            outputs.push(tensor(OP, shape, data)?);
            offset += size;
        }
        Ok(outputs)
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let sizes: Vec<i64> = self.sizes.iter().map(|&s| s as i64).collect();
        let split = cx.int64s("split", &sizes);
        cx.emit_with("Split", vec![split], vec![attr_int("axis", self.axis as i64)]);
    }
}

impl OpDef for Expand {
    fn type_name(&self) -> &'static str {
        "Expand"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Expand", inputs)?;
        if broadcast_shapes(&x.shape, &self.shape).as_ref() != Some(&self.shape) {
            return Err(format!("Expand: {:?} of shape {:?} does not broadcast to {:?}", x.name, x.shape, self.shape));
        }
        Ok(vec![(x.dtype, self.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "Expand";
        let x = one_input(OP, inputs)?;
        let out = &self.shape;
        if broadcast_shapes(&x.shape, out).as_ref() != Some(out) {
            return Err(KernelError::new(OP, format!("shape {:?} does not broadcast to {out:?}", x.shape)));
        }
        let strides = strides_of(&x.shape);
        let lead = out.len() - x.shape.len();
        let tables: Vec<Vec<usize>> = (0..out.len())
            .map(|a| match a.checked_sub(lead) {
                Some(i) if x.shape[i] != 1 => (0..out[a]).map(|j| j * strides[i]).collect(),
                _ => vec![0; out[a]],
            })
            .collect();
        Ok(vec![gathered(OP, x, out.clone(), &tables)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
        let shape = cx.int64s("shape", &shape);
        cx.emit_with("Expand", vec![shape], vec![]);
    }
}

impl OpDef for Tile {
    fn type_name(&self) -> &'static str {
        "Tile"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Tile", inputs)?;
        if self.repeats.len() != x.shape.len() {
            return Err(format!(
                "Tile: repeats {:?} must have one entry per axis of {:?} {:?}",
                self.repeats, x.name, x.shape
            ));
        }
        let shape = x
            .shape
            .iter()
            .zip(&self.repeats)
            .map(|(&d, &r)| d.checked_mul(r).ok_or_else(|| "Tile: the output is too large".to_string()))
            .collect::<Result<_, _>>()?;
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "Tile";
        let x = one_input(OP, inputs)?;
        if self.repeats.len() != x.shape.len() {
            return Err(KernelError::new(OP, format!("repeats {:?} do not match shape {:?}", self.repeats, x.shape)));
        }
        let strides = strides_of(&x.shape);
        let shape: Vec<usize> = x.shape.iter().zip(&self.repeats).map(|(&d, &r)| d.saturating_mul(r)).collect();
        element_count(OP, &shape)?;
        let tables: Vec<Vec<usize>> =
            (0..shape.len()).map(|a| (0..shape[a]).map(|j| (j % x.shape[a]) * strides[a]).collect()).collect();
        Ok(vec![gathered(OP, x, shape, &tables)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let repeats: Vec<i64> = self.repeats.iter().map(|&r| r as i64).collect();
        let repeats = cx.int64s("repeats", &repeats);
        cx.emit_with("Tile", vec![repeats], vec![]);
    }
}

impl OpDef for Trilu {
    fn type_name(&self) -> &'static str {
        "Trilu"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Trilu", inputs)?;
        if x.shape.len() < 2 {
            return Err(format!("Trilu: {:?} has rank {}, expected at least 2", x.name, x.shape.len()));
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "Trilu";
        let x = one_input(OP, inputs)?;
        let rank = x.shape.len();
        if rank < 2 {
            return Err(KernelError::new(OP, format!("rank {rank} is below 2")));
        }
        let (n, m) = (x.shape[rank - 2], x.shape[rank - 1]);
        let (upper, k) = (self.upper, self.k);
        // Whether element (i, j) of each matrix is zeroed.
        let zero = |i: usize, j: usize| {
            let d = j as i64 - i as i64;
            if upper { d < k } else { d > k }
        };
        let data = map_data!(&x.data, v => {
            let mut out = v.clone();
            if n * m > 0 {
                for (p, slot) in out.iter_mut().enumerate() {
                    let within = p % (n * m);
                    if zero(within / m, within % m) {
                        *slot = Default::default();
                    }
                }
            }
            out
        });
        Ok(vec![tensor(OP, x.shape.clone(), data)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let k = cx.int64s("k", &[self.k]);
        cx.emit_with("Trilu", vec![k], vec![attr_int("upper", i64::from(self.upper))]);
    }
}

/// The 6-D view of a block rearrangement's input, its permutation and the output shape.
type BlockPlan = (Vec<usize>, [usize; 6], Vec<usize>);

impl BlockRearrange {
    fn name(&self) -> &'static str {
        if self.to_depth { "SpaceToDepth" } else { "DepthToSpace" }
    }

    /// The 6-D view of the input, the permutation and the output shape.
    fn plan(&self, shape: &[usize]) -> Result<BlockPlan, String> {
        let name = self.name();
        let &[n, c, h, w] = shape else {
            return Err(format!("{name}: the input has shape {shape:?}, expected rank 4"));
        };
        let b = self.blocksize;
        if self.to_depth {
            if !h.is_multiple_of(b) || !w.is_multiple_of(b) {
                return Err(format!("{name}: height {h} and width {w} must be multiples of the blocksize {b}"));
            }
            Ok((vec![n, c, h / b, b, w / b, b], [0, 3, 5, 1, 2, 4], vec![n, c * b * b, h / b, w / b]))
        } else {
            if !c.is_multiple_of(b * b) {
                return Err(format!("{name}: {c} channels are not a multiple of blocksize² = {}", b * b));
            }
            let out = vec![n, c / (b * b), h * b, w * b];
            if self.crd {
                Ok((vec![n, c / (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3], out))
            } else {
                Ok((vec![n, b, b, c / (b * b), h, w], [0, 3, 4, 1, 5, 2], out))
            }
        }
    }
}

impl OpDef for BlockRearrange {
    fn type_name(&self) -> &'static str {
        self.name()
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly(self.name(), inputs)?;
        let (_, _, out) = self.plan(&x.shape)?;
        Ok(vec![(x.dtype, out)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let op = self.name();
        let x = one_input(op, inputs)?;
        let (view, perm, out) = self.plan(&x.shape).map_err(|e| KernelError::new(op, e))?;
        let viewed = Tensor { shape: view, data: x.data.clone() };
        let moved = shape_ops::transpose(&perm, &[&viewed])?;
        Ok(vec![tensor(op, out, moved.data)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = vec![attr_int("blocksize", self.blocksize as i64)];
        if !self.to_depth {
            attrs.push(attr_string("mode", if self.crd { "CRD" } else { "DCR" }));
        }
        cx.emit(self.name(), attrs);
    }
}

impl OpDef for CenterCropPad {
    fn type_name(&self) -> &'static str {
        "CenterCropPad"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("CenterCropPad", inputs)?;
        if x.shape.len() != self.shape.len() {
            return Err(format!("CenterCropPad: {:?} has rank {}, the target {:?}", x.name, x.shape.len(), self.shape));
        }
        Ok(vec![(x.dtype, self.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "CenterCropPad";
        let x = one_input(OP, inputs)?;
        if x.shape.len() != self.shape.len() {
            return Err(KernelError::new(
                OP,
                format!("rank of {:?} differs from the target {:?}", x.shape, self.shape),
            ));
        }
        let count = element_count(OP, &self.shape)?;
        let strides = strides_of(&x.shape);
        // Per axis, the source offset of each output position, or None in the padding. A crop
        // starts at (in - out) / 2; a pad puts (out - in) / 2 before the data.
        let tables: Vec<Vec<Option<usize>>> = x
            .shape
            .iter()
            .zip(&self.shape)
            .enumerate()
            .map(|(a, (&din, &dout))| {
                (0..dout)
                    .map(|j| {
                        let src =
                            if dout <= din { Some(j + (din - dout) / 2) } else { j.checked_sub((dout - din) / 2) };
                        src.filter(|&s| s < din).map(|s| s * strides[a])
                    })
                    .collect()
            })
            .collect();
        let mut sources: Vec<Option<usize>> = Vec::with_capacity(count);
        let mut index = vec![0usize; self.shape.len()];
        for _ in 0..count {
            sources.push(tables.iter().zip(&index).try_fold(0usize, |acc, (t, &i)| t[i].map(|s| acc + s)));
            for a in (0..index.len()).rev() {
                index[a] += 1;
                if index[a] < self.shape[a] {
                    break;
                }
                index[a] = 0;
            }
        }
        let data = map_data!(&x.data, v => sources.iter().map(|s| s.map_or_else(Default::default, |i| v[i])).collect());
        Ok(vec![tensor(OP, self.shape.clone(), data)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
        let shape = cx.int64s("shape", &shape);
        cx.emit_with("CenterCropPad", vec![shape], vec![]);
    }
}

impl OpDef for Cast {
    fn type_name(&self) -> &'static str {
        "Cast"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Cast", inputs)?;
        Ok(vec![(self.to, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let x = one_input("Cast", inputs)?;
        Ok(vec![fold::cast(x, self.to, self.saturate)])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = vec![attr_int("to", i64::from(onnx_code(self.to)))];
        if !self.saturate {
            attrs.push(attr_int("saturate", 0));
        }
        cx.emit("Cast", attrs);
    }
}

impl OpDef for BitCast {
    fn type_name(&self) -> &'static str {
        "BitCast"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("BitCast", inputs)?;
        if bit_width(x.dtype) != bit_width(self.to) {
            return Err(format!(
                "BitCast: {:?} is {}, which is not as wide as {}",
                x.name,
                x.dtype.name(),
                self.to.name()
            ));
        }
        Ok(vec![(self.to, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "BitCast";
        let x = one_input(OP, inputs)?;
        if bit_width(x.dtype()) != bit_width(self.to) {
            return Err(KernelError::new(OP, format!("{} is not as wide as {}", x.dtype().name(), self.to.name())));
        }
        // Each element's little-endian bytes (a narrow integer's low bits in its byte), read
        // back as the target type: both codecs are monomorphic per type.
        let data = TensorData::from_le_bytes(self.to, &x.data.to_le_bytes()).map_err(|e| KernelError::new(OP, e))?;
        Ok(vec![tensor(OP, x.shape.clone(), data)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        // Bits, never quantized: a quantized input would change them.
        InputRole::Index
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("BitCast", vec![attr_int("to", i64::from(onnx_code(self.to)))]);
    }
}

impl OpDef for EyeLike {
    fn type_name(&self) -> &'static str {
        "EyeLike"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("EyeLike", inputs)?;
        if x.shape.len() != 2 {
            return Err(format!("EyeLike: {:?} has rank {}, expected 2", x.name, x.shape.len()));
        }
        Ok(vec![(self.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "EyeLike";
        let x = one_input(OP, inputs)?;
        let &[n, m] = &x.shape[..] else {
            return Err(KernelError::new(OP, format!("shape {:?} is not 2-D", x.shape)));
        };
        let ones: Vec<i64> = (0..n * m).map(|p| i64::from((p % m) as i64 - (p / m) as i64 == self.k)).collect();
        let data = if self.dtype.is_float() {
            TensorData::floats_from_f64(self.dtype, &ones.iter().map(|&v| v as f64).collect::<Vec<_>>(), true)
        } else {
            TensorData::ints_from_i64(self.dtype, &ones)
        };
        let data = data.ok_or_else(|| KernelError::new(OP, format!("{} is not supported", self.dtype.name())))?;
        Ok(vec![tensor(OP, x.shape.clone(), data)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Index
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("EyeLike", vec![attr_int("dtype", i64::from(onnx_code(self.dtype))), attr_int("k", self.k)]);
    }
}

#[cfg(test)]
#[path = "tensor_tests.rs"]
mod tests;
