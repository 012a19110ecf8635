//! One ONNX node -> either an IR op (attributes resolved, constant inputs such as Reshape's
//! shape or Clip's bounds folded into the variant) or values computed at import
//! (`Constant`, and the shape arithmetic of `Shape`, `Gather`, `Slice`, ...).
//!
//! Opset differences handled here: Clip bounds (attributes before 11, inputs from 11),
//! Pad (attributes before 11, inputs from 11, `axes` from 18), Softmax (2-D coercion before
//! 13), Squeeze/Unsqueeze axes (attribute before 13, input from 13), Dropout (ratio and
//! training_mode inputs from 12), Reshape `allowzero` (14), Shape `start`/`end` (15).

use std::collections::BTreeMap;

use super::attrs::Attrs;
use super::error::{ErrorKind, ImportError, bad_attribute, malformed};
use super::fold;
use super::proto::NodeProto;
use super::tensor::{decode_tensor, dtype_from_onnx};
use crate::ir::{Conv, DType, Op, PadMode, Pool, Tensor, Window};

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
}

/// The import of one node.
pub(crate) enum Lowered {
    /// An IR node reading the node's inputs at these positions; it produces output 0.
    Ir { op: Op, inputs: Vec<usize> },
    /// Values of the node's first outputs, computed at import.
    Known(Vec<Tensor>),
}

/// Op types that become IR nodes.
pub const IR_OP_TYPES: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
];

/// Op types evaluated at import only (their inputs must be known then).
pub const FOLDED_OP_TYPES: &[&str] = &["Cast", "Constant", "ConstantOfShape", "Gather", "Shape", "Size", "Slice"];

pub(crate) fn is_supported(op_type: &str) -> bool {
    IR_OP_TYPES.contains(&op_type) || FOLDED_OP_TYPES.contains(&op_type)
}

fn shape_error(message: impl Into<String>) -> ImportError {
    ImportError::new(ErrorKind::ShapeError, message)
}

impl<'a> NodeCx<'a> {
    fn op_type(&self) -> &'a str {
        self.node.op_type()
    }

    /// Checks the number of inputs the node lists (trailing optional ones may be omitted).
    fn arity(&self, min: usize, max: usize) -> Result<(), ImportError> {
        let n = self.inputs.len();
        if n < min || n > max {
            let range = if min == max { format!("{min}") } else { format!("{min} to {max}") };
            return Err(malformed(format!("{} takes {range} inputs, got {n}", self.op_type())));
        }
        Ok(())
    }

    fn opt(&self, i: usize) -> Option<&InputView<'a>> {
        self.inputs.get(i).and_then(Option::as_ref)
    }

    fn input(&self, i: usize, role: &str) -> Result<&InputView<'a>, ImportError> {
        self.opt(i).ok_or_else(|| malformed(format!("{} needs input #{i} ({role})", self.op_type())))
    }

    /// An input whose value must be known at import (shape, axes, pads, bounds...).
    fn constant(&self, i: usize, role: &str) -> Result<Option<&'a Tensor>, ImportError> {
        let Some(view) = self.opt(i) else { return Ok(None) };
        match view.value {
            Some(t) => Ok(Some(t)),
            None => Err(bad_attribute(format!(
                "{} input #{i} ({role}) {:?} must be a constant or computable at import, but it \
                 is computed at run time",
                self.op_type(),
                view.name
            ))),
        }
    }

    fn constant_ints(&self, i: usize, role: &str) -> Result<Option<Vec<i64>>, ImportError> {
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

    fn constant_scalar(&self, i: usize, role: &str) -> Result<Option<f32>, ImportError> {
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
}

/// Normalizes an axis in `[-rank, rank - 1]` (or `[-rank, rank]` when `inclusive`, as for
/// Flatten) to a non-negative one.
fn axis(value: i64, rank: usize, inclusive: bool, what: &str) -> Result<usize, ImportError> {
    let r = rank as i64;
    let hi = if inclusive { r } else { r - 1 };
    if value < -r || value > hi {
        return Err(bad_attribute(format!("{what} {value} is out of range [{}, {hi}] for rank {rank}", -r)));
    }
    Ok(if value < 0 { (value + r) as usize } else { value as usize })
}

fn axes(values: &[i64], rank: usize, what: &str) -> Result<Vec<usize>, ImportError> {
    values.iter().map(|&v| axis(v, rank, false, what)).collect()
}

/// A list attribute of `n` strictly positive entries, or all ones when absent.
fn positive_list(values: Option<Vec<i64>>, n: usize, what: &str) -> Result<Vec<usize>, ImportError> {
    let Some(values) = values else { return Ok(vec![1; n]) };
    if values.len() != n || values.iter().any(|&v| v < 1) {
        return Err(bad_attribute(format!("{what} must be {n} positive integers, got {values:?}")));
    }
    Ok(values.iter().map(|&v| v as usize).collect())
}

/// Lowers one node. The caller has checked the domain and that no input failed.
pub(crate) fn lower(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let ir = |op: Op, inputs: Vec<usize>| Ok(Lowered::Ir { op, inputs });
    let node = cx.node;
    match cx.op_type() {
        "Conv" => conv(cx),
        "MaxPool" => pool(cx, true),
        "AveragePool" => pool(cx, false),
        "Gemm" => {
            cx.arity(2, 3)?;
            let a = Attrs::new(node, &["alpha", "beta", "transA", "transB"])?;
            let op = Op::Gemm {
                alpha: a.float_or("alpha", 1.0)?,
                beta: a.float_or("beta", 1.0)?,
                trans_a: a.flag("transA")?,
                trans_b: a.flag("transB")?,
            };
            ir(op, present(cx, &[0, 1, 2]))
        }
        op_type @ ("MatMul" | "Add" | "Sub" | "Mul" | "Div") => {
            cx.arity(2, 2)?;
            Attrs::new(node, &[])?;
            let op = match op_type {
                "MatMul" => Op::MatMul,
                "Add" => Op::Add,
                "Sub" => Op::Sub,
                "Mul" => Op::Mul,
                _ => Op::Div,
            };
            ir(op, vec![0, 1])
        }
        op_type @ ("Relu" | "Sigmoid" | "Tanh" | "HardSwish" | "Identity" | "GlobalAveragePool" | "GlobalMaxPool") => {
            cx.arity(1, 1)?;
            Attrs::new(node, &[])?;
            let op = match op_type {
                "Relu" => Op::Relu,
                "Sigmoid" => Op::Sigmoid,
                "Tanh" => Op::Tanh,
                "HardSwish" => Op::HardSwish,
                "Identity" => Op::Identity,
                "GlobalAveragePool" => Op::GlobalAveragePool,
                _ => Op::GlobalMaxPool,
            };
            ir(op, vec![0])
        }
        "HardSigmoid" => {
            cx.arity(1, 1)?;
            let a = Attrs::new(node, &["alpha", "beta"])?;
            ir(Op::HardSigmoid { alpha: a.float_or("alpha", 0.2)?, beta: a.float_or("beta", 0.5)? }, vec![0])
        }
        "Clip" => clip(cx),
        "BatchNormalization" => {
            cx.arity(5, 5)?;
            let a = Attrs::new(node, &["epsilon", "momentum", "training_mode", "spatial", "is_test"])?;
            if a.flag("training_mode")? {
                return Err(bad_attribute("training_mode=1 is not supported: qairt imports inference graphs"));
            }
            if a.has("spatial") && a.int_or("spatial", 1)? != 1 {
                return Err(bad_attribute("spatial=0 (per-element statistics) is not supported"));
            }
            ir(Op::BatchNormalization { epsilon: a.float_or("epsilon", 1e-5)? }, vec![0, 1, 2, 3, 4])
        }
        "Flatten" => {
            cx.arity(1, 1)?;
            let a = Attrs::new(node, &["axis"])?;
            let rank = cx.input(0, "input")?.shape.len();
            ir(Op::Flatten { axis: axis(a.int_or("axis", 1)?, rank, true, "axis")? }, vec![0])
        }
        "Reshape" => reshape(cx),
        "Transpose" => {
            cx.arity(1, 1)?;
            let a = Attrs::new(node, &["perm"])?;
            let rank = cx.input(0, "data")?.shape.len();
            let perm = match a.ints("perm")? {
                None => (0..rank).rev().collect(),
                Some(p) => p
                    .iter()
                    .map(|&v| usize::try_from(v).map_err(|_| bad_attribute(format!("perm {p:?} has a negative entry"))))
                    .collect::<Result<_, _>>()?,
            };
            ir(Op::Transpose { perm }, vec![0])
        }
        "Concat" => {
            if cx.inputs.is_empty() {
                return Err(malformed("Concat needs at least one input"));
            }
            let a = Attrs::new(node, &["axis"])?;
            let rank = cx.input(0, "inputs")?.shape.len();
            let value = a.int("axis")?.ok_or_else(|| bad_attribute("attribute \"axis\" is required"))?;
            let inputs = (0..cx.inputs.len()).collect::<Vec<_>>();
            for &i in &inputs {
                cx.input(i, "inputs")?;
            }
            ir(Op::Concat { axis: axis(value, rank, false, "axis")? }, inputs)
        }
        "Softmax" => {
            cx.arity(1, 1)?;
            let a = Attrs::new(node, &["axis"])?;
            let rank = cx.input(0, "input")?.shape.len();
            // Before opset 13 the default axis was 1 and the input was coerced to 2-D there.
            let coerce_2d = cx.opset < 13;
            let default = if coerce_2d { 1 } else { -1 };
            let axis = axis(a.int_or("axis", default)?, rank, false, "axis")?;
            ir(Op::Softmax { axis, coerce_2d }, vec![0])
        }
        "Squeeze" => squeeze(cx),
        "Unsqueeze" => unsqueeze(cx),
        "Dropout" => dropout(cx),
        "Pad" => pad(cx),
        "Constant" => constant(cx),
        "Shape" => {
            cx.arity(1, 1)?;
            let a = Attrs::new(node, &["start", "end"])?;
            let shape = cx.input(0, "data")?.shape;
            // Opset 15: start/end select a range of axes, negative ones counting from the end,
            // clamped to [0, rank].
            let rank = shape.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clamp(a.int_or("start", 0)?);
            let end = clamp(a.int_or("end", rank)?);
            let dims: Vec<i64> = shape[start..end.max(start)].iter().map(|&d| d as i64).collect();
            Ok(Lowered::Known(vec![Tensor::from_i64(vec![dims.len()], dims)]))
        }
        "Size" => {
            cx.arity(1, 1)?;
            Attrs::new(node, &[])?;
            let count = cx.input(0, "data")?.shape.iter().product::<usize>() as i64;
            Ok(Lowered::Known(vec![Tensor::from_i64(vec![], vec![count])]))
        }
        "Gather" => {
            cx.arity(2, 2)?;
            let a = Attrs::new(node, &["axis"])?;
            let (data, indices) = (folded_input(cx, 0, "data")?, folded_input(cx, 1, "indices")?);
            let axis = axis(a.int_or("axis", 0)?, data.shape.len(), false, "axis")?;
            let out = fold::gather(data, indices, axis).map_err(|e| shape_error(format!("Gather: {e}")))?;
            Ok(Lowered::Known(vec![out]))
        }
        "Slice" => {
            cx.arity(3, 5)?;
            Attrs::new(node, &[])?;
            let data = folded_input(cx, 0, "data")?;
            folded_input(cx, 1, "starts")?;
            folded_input(cx, 2, "ends")?;
            let starts = cx.constant_ints(1, "starts")?.unwrap_or_default();
            let ends = cx.constant_ints(2, "ends")?.unwrap_or_default();
            let rank = data.shape.len();
            let axes = match cx.constant_ints(3, "axes")? {
                Some(v) => axes(&v, rank, "axis")?,
                None => (0..starts.len()).collect(),
            };
            let steps = cx.constant_ints(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
            let out =
                fold::slice(data, &starts, &ends, &axes, &steps).map_err(|e| shape_error(format!("Slice: {e}")))?;
            Ok(Lowered::Known(vec![out]))
        }
        "Cast" => {
            cx.arity(1, 1)?;
            let a = Attrs::new(node, &["to", "saturate", "round_mode"])?;
            let to = a.int("to")?.ok_or_else(|| bad_attribute("attribute \"to\" is required"))?;
            let to = i32::try_from(to).map_err(|_| bad_attribute(format!("\"to\" = {to} is not an element type")))?;
            let to = dtype_from_onnx(to, "the Cast target")?;
            let x = cx.input(0, "input")?;
            match x.value {
                Some(t) => Ok(Lowered::Known(vec![fold::cast(t, to)])),
                None if x.dtype == to => ir(Op::Identity, vec![0]),
                None => Err(run_time_input(cx, x.name)),
            }
        }
        "ConstantOfShape" => {
            cx.arity(1, 1)?;
            let a = Attrs::new(node, &["value"])?;
            folded_input(cx, 0, "input")?;
            let dims = cx.constant_ints(0, "shape")?.unwrap_or_default();
            let shape = dims
                .iter()
                .map(|&d| {
                    usize::try_from(d)
                        .map_err(|_| shape_error(format!("ConstantOfShape: negative dimension in {dims:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let value = match a.tensor("value")? {
                Some(t) => decode_tensor(t, cx.external)?,
                None => Tensor::from_f32(vec![1], vec![0.0]),
            };
            let out = fold::fill(shape, &value).map_err(|e| bad_attribute(format!("ConstantOfShape: {e}")))?;
            Ok(Lowered::Known(vec![out]))
        }
        other => Err(ImportError::new(ErrorKind::UnsupportedOp, format!("op type {other:?} is not supported"))),
    }
}

/// Positions in `wanted` whose input the node actually provides.
fn present(cx: &NodeCx, wanted: &[usize]) -> Vec<usize> {
    wanted.iter().copied().filter(|&i| cx.opt(i).is_some()).collect()
}

fn run_time_input(cx: &NodeCx, name: &str) -> ImportError {
    let op = cx.op_type();
    ImportError::new(
        ErrorKind::UnsupportedOp,
        format!("{op} on {name:?}, which is computed at run time, is not supported"),
    )
    .with_hint(format!("qairt evaluates {op} only at import, on values known then (constants and static shapes)"))
}

/// An input of a fold-only op, which must be known at import.
fn folded_input<'a>(cx: &NodeCx<'a>, i: usize, role: &str) -> Result<&'a Tensor, ImportError> {
    let view = cx.input(i, role)?;
    view.value.ok_or_else(|| run_time_input(cx, view.name))
}

/// Explicit pads for `auto_pad`, or the `pads` attribute. SAME_* pads so that
/// `out = ceil(in / stride)`: `total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - in)`,
/// the odd cell going to the end (SAME_UPPER) or the beginning (SAME_LOWER).
fn resolve_window(a: &Attrs, kernel: Vec<usize>, spatial_in: &[usize]) -> Result<Window, ImportError> {
    let n = kernel.len();
    let strides = positive_list(a.ints("strides")?, n, "strides")?;
    let dilations = positive_list(a.ints("dilations")?, n, "dilations")?;
    if spatial_in.len() != n {
        return Err(shape_error(format!("the input has {} spatial axes but the kernel has {n}", spatial_in.len())));
    }
    let auto_pad = a.string("auto_pad")?.unwrap_or_default();
    let pads = match auto_pad.as_str() {
        "" | "NOTSET" => match a.ints("pads")? {
            None => vec![0; 2 * n],
            Some(p) if p.len() == 2 * n && p.iter().all(|&v| v >= 0) => p.iter().map(|&v| v as usize).collect(),
            Some(p) => {
                return Err(bad_attribute(format!("pads must be {} non-negative integers, got {p:?}", 2 * n)));
            }
        },
        "VALID" => vec![0; 2 * n],
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            let mut pads = vec![0; 2 * n];
            for i in 0..n {
                let out = spatial_in[i].div_ceil(strides[i]);
                let needed = out
                    .saturating_sub(1)
                    .saturating_mul(strides[i])
                    .saturating_add(kernel[i].saturating_sub(1).saturating_mul(dilations[i]))
                    .saturating_add(1);
                let total = needed.saturating_sub(spatial_in[i]);
                let (small, large) = (total / 2, total - total / 2);
                (pads[i], pads[n + i]) = if mode == "SAME_UPPER" { (small, large) } else { (large, small) };
            }
            pads
        }
        other => {
            return Err(bad_attribute(format!(
                "auto_pad {other:?} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
            )));
        }
    };
    Ok(Window { kernel, strides, pads, dilations })
}

fn conv(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 3)?;
    let a = Attrs::new(cx.node, &["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
    let (x, w) = (cx.input(0, "X")?, cx.input(1, "W")?);
    if w.shape.len() < 3 {
        return Err(shape_error(format!(
            "weight {:?} has shape {:?}, expected [M, C/group, kernel...]",
            w.name, w.shape
        )));
    }
    let kernel = match a.ints("kernel_shape")? {
        None => w.shape[2..].to_vec(),
        Some(k) => positive_list(Some(k), w.shape.len() - 2, "kernel_shape")?,
    };
    let group = a.int_or("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| bad_attribute(format!("group must be positive, got {group}")))?;
    let window = resolve_window(&a, kernel, x.shape.get(2..).unwrap_or_default())?;
    Ok(Lowered::Ir { op: Op::Conv(Conv { window, group }), inputs: present(cx, &[0, 1, 2]) })
}

fn pool(cx: &NodeCx, max: bool) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let known: &[&str] = if max {
        &["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"]
    } else {
        &["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"]
    };
    let a = Attrs::new(cx.node, known)?;
    let x = cx.input(0, "X")?;
    let kernel = a.ints("kernel_shape")?.ok_or_else(|| bad_attribute("attribute \"kernel_shape\" is required"))?;
    let kernel = positive_list(Some(kernel.clone()), kernel.len(), "kernel_shape")?;
    let window = resolve_window(&a, kernel, x.shape.get(2..).unwrap_or_default())?;
    let pool =
        Pool { window, ceil_mode: a.flag("ceil_mode")?, count_include_pad: !max && a.flag("count_include_pad")? };
    let op = if max { Op::MaxPool(pool) } else { Op::AveragePool(pool) };
    Ok(Lowered::Ir { op, inputs: vec![0] })
}

fn clip(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let (min, max) = if cx.opset < 11 {
        cx.arity(1, 1)?;
        let a = Attrs::new(cx.node, &["min", "max"])?;
        (a.float("min")?, a.float("max")?)
    } else {
        cx.arity(1, 3)?;
        Attrs::new(cx.node, &[])?;
        (cx.constant_scalar(1, "min")?, cx.constant_scalar(2, "max")?)
    };
    let op = Op::Clip { min: min.unwrap_or(f32::NEG_INFINITY), max: max.unwrap_or(f32::INFINITY) };
    Ok(Lowered::Ir { op, inputs: vec![0] })
}

/// Resolves Reshape's target: `-1` takes the remaining element count, `0` copies the input
/// dim at that position unless `allowzero=1` (opset 14), where it means a zero-size dim.
fn reshape(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = Attrs::new(cx.node, &["allowzero"])?;
    let allowzero = a.flag("allowzero")?;
    let data = cx.input(0, "data")?;
    let target = cx.constant_ints(1, "shape")?.ok_or_else(|| malformed("Reshape needs input #1 (shape)"))?;
    let mut shape = Vec::with_capacity(target.len());
    let mut inferred = None;
    for (i, &d) in target.iter().enumerate() {
        let dim = match d {
            -1 if inferred.is_some() => {
                return Err(shape_error(format!("target shape {target:?} has more than one -1")));
            }
            -1 => {
                inferred = Some(i);
                1
            }
            0 if !allowzero => *data.shape.get(i).ok_or_else(|| {
                shape_error(format!(
                    "target shape {target:?} copies dim {i} (a 0) but {:?} has rank {}",
                    data.name,
                    data.shape.len()
                ))
            })?,
            d if d < 0 => return Err(shape_error(format!("target shape {target:?} has invalid entry {d}"))),
            d => d as usize,
        };
        shape.push(dim);
    }
    if let Some(i) = inferred {
        let total: usize = data.shape.iter().product();
        let rest = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).unwrap_or(0);
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(shape_error(format!(
                "cannot reshape {:?} of shape {:?} ({total} elements) to {target:?}",
                data.name, data.shape
            )));
        }
        shape[i] = total / rest;
    }
    Ok(Lowered::Ir { op: Op::Reshape { shape }, inputs: vec![0] })
}

fn squeeze(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let listed = if cx.opset < 13 {
        cx.arity(1, 1)?;
        Attrs::new(cx.node, &["axes"])?.ints("axes")?
    } else {
        cx.arity(1, 2)?;
        Attrs::new(cx.node, &[])?;
        cx.constant_ints(1, "axes")?
    };
    let x = cx.input(0, "data")?;
    let axes = match listed {
        Some(v) => axes(&v, x.shape.len(), "axis")?,
        // No axes: every size-1 axis (the shape is static, so this is decided now).
        None => (0..x.shape.len()).filter(|&i| x.shape[i] == 1).collect(),
    };
    Ok(Lowered::Ir { op: Op::Squeeze { axes }, inputs: vec![0] })
}

fn unsqueeze(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let listed = if cx.opset < 13 {
        cx.arity(1, 1)?;
        Attrs::new(cx.node, &["axes"])?.ints("axes")?
    } else {
        cx.arity(2, 2)?;
        Attrs::new(cx.node, &[])?;
        cx.constant_ints(1, "axes")?
    };
    let listed = listed.ok_or_else(|| bad_attribute("Unsqueeze needs axes"))?;
    let x = cx.input(0, "data")?;
    // Axes index the output, whose rank is the input's plus the inserted axes.
    let axes = axes(&listed, x.shape.len() + listed.len(), "axis")?;
    Ok(Lowered::Ir { op: Op::Unsqueeze { axes }, inputs: vec![0] })
}

fn dropout(cx: &NodeCx) -> Result<Lowered, ImportError> {
    if cx.opset < 12 {
        cx.arity(1, 1)?;
        Attrs::new(cx.node, &["ratio", "is_test", "seed"])?;
    } else {
        cx.arity(1, 3)?;
        Attrs::new(cx.node, &["seed"])?;
        // The ratio only matters in training mode; training mode must be a constant false.
        if let Some(view) = cx.opt(2) {
            let training = match view.value {
                Some(t) => t.to_f32_vec().iter().any(|&v| v != 0.0),
                None => true,
            };
            if training {
                return Err(bad_attribute(format!(
                    "training_mode {:?} must be a constant false: qairt imports inference graphs",
                    view.name
                )));
            }
        }
    }
    Ok(Lowered::Ir { op: Op::Dropout, inputs: vec![0] })
}

fn pad(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let x = cx.input(0, "data")?;
    let rank = x.shape.len();
    let (mode, pads, value) = if cx.opset < 11 {
        cx.arity(1, 1)?;
        let a = Attrs::new(cx.node, &["mode", "pads", "value"])?;
        let pads = a.ints("pads")?.ok_or_else(|| bad_attribute("attribute \"pads\" is required"))?;
        (a.string("mode")?, pads, a.float_or("value", 0.0)?)
    } else {
        cx.arity(2, 4)?;
        let a = Attrs::new(cx.node, &["mode"])?;
        let listed = cx.constant_ints(1, "pads")?.ok_or_else(|| malformed("Pad needs input #1 (pads)"))?;
        let value = cx.constant_scalar(2, "constant_value")?.unwrap_or(0.0);
        // Opset 18: `axes` says which axes `pads` covers; the others get no padding.
        let pads = match cx.constant_ints(3, "axes")? {
            None => listed,
            Some(ax) => {
                let ax = axes(&ax, rank, "axis")?;
                if listed.len() != 2 * ax.len() {
                    return Err(bad_attribute(format!(
                        "pads has {} entries, expected {} for axes {ax:?}",
                        listed.len(),
                        2 * ax.len()
                    )));
                }
                let mut full = vec![0; 2 * rank];
                for (k, &axis) in ax.iter().enumerate() {
                    full[axis] = listed[k];
                    full[rank + axis] = listed[ax.len() + k];
                }
                full
            }
        };
        (a.string("mode")?, pads, value)
    };
    let mode = match mode.as_deref().unwrap_or("constant") {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        other => {
            return Err(bad_attribute(format!("pad mode {other:?} is not supported (constant, reflect, edge)")));
        }
    };
    Ok(Lowered::Ir { op: Op::Pad { pads, mode, value }, inputs: vec![0] })
}

fn constant(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(0, 0)?;
    let forms = [
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
        "value_string",
        "value_strings",
        "sparse_value",
    ];
    let a = Attrs::new(cx.node, &forms)?;
    let given: Vec<&str> = a.names().collect();
    let [form] = given[..] else {
        return Err(bad_attribute(format!("Constant needs exactly one of {}, got {given:?}", forms.join(", "))));
    };
    let tensor = match form {
        "value" => {
            decode_tensor(a.tensor("value")?.ok_or_else(|| bad_attribute("value holds no tensor"))?, cx.external)?
        }
        "value_float" => Tensor::scalar_f32(a.float_or(form, 0.0)?),
        "value_floats" => {
            let v = a.floats(form)?.unwrap_or_default();
            Tensor::from_f32(vec![v.len()], v)
        }
        "value_int" => Tensor::from_i64(vec![], vec![a.int_or(form, 0)?]),
        "value_ints" => {
            let v = a.ints(form)?.unwrap_or_default();
            Tensor::from_i64(vec![v.len()], v)
        }
        "sparse_value" => {
            return Err(ImportError::new(ErrorKind::UnsupportedFeature, "sparse Constant values are not supported"));
        }
        _ => {
            return Err(ImportError::new(ErrorKind::UnsupportedDtype, "string Constant values are not supported"));
        }
    };
    Ok(Lowered::Known(vec![tensor]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::AttributeProto;
    use crate::onnx::proto::attribute_proto::AttributeType;

    fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn float_attr(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::Float as i32),
            f: Some(v),
            ..Default::default()
        }
    }

    fn string_attr(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(AttributeType::String as i32),
            s: Some(v.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: usize, attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            input: (0..inputs).map(|i| format!("in{i}")).collect(),
            output: vec!["out".into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    fn view<'a>(name: &'a str, shape: &'a [usize], value: Option<&'a Tensor>) -> Option<InputView<'a>> {
        let dtype = value.map_or(DType::F32, Tensor::dtype);
        Some(InputView { name, dtype, shape, value })
    }

    fn lower_ir(node: &NodeProto, opset: i64, inputs: Vec<Option<InputView>>) -> Result<(Op, Vec<usize>), ImportError> {
        let external = BTreeMap::new();
        let cx = NodeCx { node, opset, inputs, external: &external };
        match lower(&cx)? {
            Lowered::Ir { op, inputs } => Ok((op, inputs)),
            Lowered::Known(_) => panic!("expected an IR op"),
        }
    }

    #[test]
    fn same_upper_and_lower_put_the_odd_pad_cell_at_opposite_ends() {
        // in 5, k 4, s 1: out 5, total = 4*1 + 3 + 1 - 5 = 3 -> UPPER (1, 2), LOWER (2, 1).
        for (mode, begin, end) in [("SAME_UPPER", 1, 2), ("SAME_LOWER", 2, 1)] {
            let n = node("MaxPool", 1, vec![ints_attr("kernel_shape", &[4]), string_attr("auto_pad", mode)]);
            let (op, _) = lower_ir(&n, 13, vec![view("x", &[1, 1, 5], None)]).unwrap();
            let Op::MaxPool(pool) = op else { panic!("{op:?}") };
            assert_eq!(pool.window.pads, vec![begin, end], "{mode}");
        }
        // in 7, k 3, s 2: out 4, total = 3*2 + 2 + 1 - 7 = 2 -> (1, 1).
        let n = node("Conv", 2, vec![ints_attr("strides", &[2]), string_attr("auto_pad", "SAME_UPPER")]);
        let (op, inputs) = lower_ir(&n, 13, vec![view("x", &[1, 1, 7], None), view("w", &[1, 1, 3], None)]).unwrap();
        let Op::Conv(c) = op else { panic!() };
        assert_eq!((c.window.kernel, c.window.pads, inputs), (vec![3], vec![1, 1], vec![0, 1]));
    }

    #[test]
    fn clip_reads_attributes_before_opset_11_and_inputs_after() {
        let n = node("Clip", 1, vec![float_attr("min", -1.0), float_attr("max", 6.0)]);
        let (op, _) = lower_ir(&n, 6, vec![view("x", &[2], None)]).unwrap();
        assert_eq!(op, Op::Clip { min: -1.0, max: 6.0 });
        let lo = Tensor::scalar_f32(0.0);
        let mut n = node("Clip", 3, vec![]);
        n.input[2] = String::new(); // max omitted
        let (op, inputs) = lower_ir(&n, 11, vec![view("x", &[2], None), view("lo", &[], Some(&lo)), None]).unwrap();
        assert_eq!((op, inputs), (Op::Clip { min: 0.0, max: f32::INFINITY }, vec![0]));
        let err = lower_ir(&n, 11, vec![view("x", &[2], None), view("lo", &[], None), None]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadAttribute);
    }

    #[test]
    fn reshape_resolves_zero_and_minus_one() {
        let target = Tensor::from_i64(vec![3], vec![0, -1, 2]);
        let n = node("Reshape", 2, vec![]);
        // [2, 3, 4] -> [2 (copied), 24 / (2*2) = 6, 2]
        let (op, _) = lower_ir(&n, 13, vec![view("x", &[2, 3, 4], None), view("s", &[3], Some(&target))]).unwrap();
        assert_eq!(op, Op::Reshape { shape: vec![2, 6, 2] });
        let bad = Tensor::from_i64(vec![2], vec![-1, -1]);
        let err = lower_ir(&n, 13, vec![view("x", &[2, 3, 4], None), view("s", &[2], Some(&bad))]).unwrap_err();
        assert!(err.message.contains("more than one -1"), "{}", err.message);
    }

    #[test]
    fn pad_attributes_before_11_and_axes_from_18() {
        let n = node("Pad", 1, vec![ints_attr("pads", &[0, 1, 0, 2]), string_attr("mode", "edge")]);
        let (op, _) = lower_ir(&n, 2, vec![view("x", &[2, 2], None)]).unwrap();
        assert_eq!(op, Op::Pad { pads: vec![0, 1, 0, 2], mode: PadMode::Edge, value: 0.0 });
        // axes [-1] on rank 3 = axis 2: pads [1, 2] -> [0, 0, 1, 0, 0, 2]
        let pads = Tensor::from_i64(vec![2], vec![1, 2]);
        let value = Tensor::from_f32(vec![], vec![0.5]);
        let ax = Tensor::from_i64(vec![1], vec![-1]);
        let n = node("Pad", 4, vec![]);
        let inputs = vec![
            view("x", &[1, 2, 3], None),
            view("p", &[2], Some(&pads)),
            view("v", &[], Some(&value)),
            view("a", &[1], Some(&ax)),
        ];
        let (op, inputs) = lower_ir(&n, 18, inputs).unwrap();
        assert_eq!(op, Op::Pad { pads: vec![0, 0, 1, 0, 0, 2], mode: PadMode::Constant, value: 0.5 });
        assert_eq!(inputs, vec![0]);
        let n = node("Pad", 2, vec![string_attr("mode", "wrap")]);
        let err = lower_ir(&n, 19, vec![view("x", &[3], None), view("p", &[2], Some(&pads))]).unwrap_err();
        assert!(err.message.contains("\"wrap\""), "{}", err.message);
    }

    #[test]
    fn squeeze_and_unsqueeze_axes_by_opset() {
        let n = node("Unsqueeze", 1, vec![ints_attr("axes", &[-1])]);
        let (op, _) = lower_ir(&n, 11, vec![view("x", &[3], None)]).unwrap();
        assert_eq!(op, Op::Unsqueeze { axes: vec![1] });
        let n = node("Squeeze", 1, vec![]);
        let (op, _) = lower_ir(&n, 13, vec![view("x", &[1, 3, 1], None)]).unwrap();
        assert_eq!(op, Op::Squeeze { axes: vec![0, 2] });
        let n = node("Unsqueeze", 1, vec![ints_attr("axes", &[0])]);
        assert!(lower_ir(&n, 13, vec![view("x", &[3], None)]).is_err());
    }

    #[test]
    fn unknown_attributes_and_bad_axes_are_reported() {
        let n = node("Softmax", 1, vec![ints_attr("axes", &[1])]);
        let err = lower_ir(&n, 13, vec![view("x", &[1, 10], None)]).unwrap_err();
        assert!(err.message.contains("unknown attribute \"axes\""), "{}", err.message);
        let mut n = node("Flatten", 1, vec![]);
        n.attribute.push(AttributeProto {
            name: Some("axis".into()),
            r#type: Some(AttributeType::Int as i32),
            i: Some(-4),
            ..Default::default()
        });
        let err = lower_ir(&n, 13, vec![view("x", &[1, 2, 3], None)]).unwrap_err();
        assert!(err.message.contains("out of range [-3, 3]"), "{}", err.message);
    }
}
