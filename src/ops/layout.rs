//! Ops that move or reshape data without arithmetic: Flatten, Reshape, Transpose, Concat,
//! Squeeze, Unsqueeze and Pad.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int, attr_ints, attr_string, ints};
use super::import::{Lowered, NodeCx, axes, axis, shape_error};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::{bad_attribute, malformed};
use crate::runtime::kernels::{KernelError, shape_ops};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("Flatten", import_flatten, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Reshape", import_reshape, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Transpose", import_transpose, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Concat", import_concat, QuantDefault { propagate: true, ..QuantDefault::CALIBRATED }),
    OnnxOp::ir("Squeeze", import_squeeze, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Unsqueeze", import_unsqueeze, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Pad", import_pad, QuantDefault::CALIBRATED),
];

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flatten {
    pub axis: usize,
}

/// Target shape fully resolved (no 0 or -1 entries).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reshape {
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Concat {
    pub axis: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Squeeze {
    pub axes: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unsqueeze {
    pub axes: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
}

/// `pads` as ONNX gives them: all begins then all ends; may be negative (cropping).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pad {
    pub pads: Vec<i64>,
    pub mode: PadMode,
    pub value: f32,
}

into_op!(Flatten, Reshape, Transpose, Concat, Squeeze, Unsqueeze, Pad);

fn import_flatten(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["axis"])?;
    let rank = cx.input(0, "input")?.shape.len();
    Lowered::ir(Flatten { axis: axis(a.int_or("axis", 1)?, rank, true, "axis")? }, vec![0])
}

/// Resolves Reshape's target: `-1` takes the remaining element count, `0` copies the input
/// dim at that position unless `allowzero=1` (opset 14), where it means a zero-size dim.
fn import_reshape(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["allowzero"])?;
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
    Lowered::ir(Reshape { shape }, vec![0])
}

fn import_transpose(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["perm"])?;
    let rank = cx.input(0, "data")?.shape.len();
    let perm = match a.ints("perm")? {
        None => (0..rank).rev().collect(),
        Some(p) => p
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| bad_attribute(format!("perm {p:?} has a negative entry"))))
            .collect::<Result<_, _>>()?,
    };
    Lowered::ir(Transpose { perm }, vec![0])
}

fn import_concat(cx: &NodeCx) -> Result<Lowered, ImportError> {
    if cx.inputs.is_empty() {
        return Err(malformed("Concat needs at least one input"));
    }
    let a = cx.attrs(&["axis"])?;
    let rank = cx.input(0, "inputs")?.shape.len();
    let value = a.int("axis")?.ok_or_else(|| bad_attribute("attribute \"axis\" is required"))?;
    let inputs = (0..cx.inputs.len()).collect::<Vec<_>>();
    for &i in &inputs {
        cx.input(i, "inputs")?;
    }
    Lowered::ir(Concat { axis: axis(value, rank, false, "axis")? }, inputs)
}

fn import_squeeze(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let listed = if cx.opset < 13 {
        cx.arity(1, 1)?;
        cx.attrs(&["axes"])?.ints("axes")?
    } else {
        cx.arity(1, 2)?;
        cx.attrs(&[])?;
        cx.constant_ints(1, "axes")?
    };
    let x = cx.input(0, "data")?;
    let axes = match listed {
        Some(v) => axes(&v, x.shape.len(), "axis")?,
        // No axes: every size-1 axis (the shape is static, so this is decided now).
        None => (0..x.shape.len()).filter(|&i| x.shape[i] == 1).collect(),
    };
    Lowered::ir(Squeeze { axes }, vec![0])
}

fn import_unsqueeze(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let listed = if cx.opset < 13 {
        cx.arity(1, 1)?;
        cx.attrs(&["axes"])?.ints("axes")?
    } else {
        cx.arity(2, 2)?;
        cx.attrs(&[])?;
        cx.constant_ints(1, "axes")?
    };
    let listed = listed.ok_or_else(|| bad_attribute("Unsqueeze needs axes"))?;
    let x = cx.input(0, "data")?;
    // Axes index the output, whose rank is the input's plus the inserted axes.
    let axes = axes(&listed, x.shape.len() + listed.len(), "axis")?;
    Lowered::ir(Unsqueeze { axes }, vec![0])
}

fn import_pad(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let x = cx.input(0, "data")?;
    let rank = x.shape.len();
    let (mode, pads, value) = if cx.opset < 11 {
        cx.arity(1, 1)?;
        let a = cx.attrs(&["mode", "pads", "value"])?;
        let pads = a.ints("pads")?.ok_or_else(|| bad_attribute("attribute \"pads\" is required"))?;
        (a.string("mode")?, pads, a.float_or("value", 0.0)?)
    } else {
        cx.arity(2, 4)?;
        let a = cx.attrs(&["mode"])?;
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
    Lowered::ir(Pad { pads, mode, value }, vec![0])
}

impl OpDef for Flatten {
    fn type_name(&self) -> &'static str {
        "Flatten"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Flatten", inputs)?;
        let axis = self.axis;
        if axis > x.shape.len() {
            return Err(format!("Flatten: axis {axis} is out of range for {:?} of rank {}", x.name, x.shape.len()));
        }
        let outer = x.shape[..axis].iter().product();
        let inner = x.shape[axis..].iter().product();
        Ok(vec![(x.dtype, vec![outer, inner])])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::flatten(self.axis, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Flatten", vec![attr_int("axis", self.axis as i64)]);
    }
}

impl OpDef for Reshape {
    fn type_name(&self) -> &'static str {
        "Reshape"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Reshape", inputs)?;
        let shape = &self.shape;
        let from = x.elements();
        let to = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if to != Some(from) {
            let to = to.map_or("too many".to_string(), |t| t.to_string());
            return Err(format!(
                "Reshape: cannot reshape {:?} of shape {:?} ({from} elements) to {shape:?} ({to} elements)",
                x.name, x.shape
            ));
        }
        Ok(vec![(x.dtype, shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::reshape(&self.shape, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let shape = cx.int64s("shape", &ints(&self.shape));
        cx.emit_with("Reshape", vec![shape], vec![]);
    }
}

impl OpDef for Transpose {
    fn type_name(&self) -> &'static str {
        "Transpose"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Transpose", inputs)?;
        let (perm, rank) = (&self.perm, x.shape.len());
        let mut seen = vec![false; rank];
        let is_permutation =
            perm.len() == rank && perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
        if !is_permutation {
            return Err(format!("Transpose: perm {perm:?} is not a permutation of the {rank} axes of {:?}", x.name));
        }
        Ok(vec![(x.dtype, perm.iter().map(|&p| x.shape[p]).collect())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::transpose(&self.perm, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Transpose", vec![attr_ints("perm", &ints(&self.perm))]);
    }
}

impl OpDef for Concat {
    fn type_name(&self) -> &'static str {
        "Concat"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let axis = self.axis;
        let [first, rest @ ..] = inputs else {
            return Err("Concat: expects at least 1 input, got 0".into());
        };
        if axis >= first.shape.len() {
            return Err(format!(
                "Concat: axis {axis} is out of range for {:?} of rank {}",
                first.name,
                first.shape.len()
            ));
        }
        let mut shape = first.shape.clone();
        for t in rest {
            if t.dtype != first.dtype {
                return Err(format!(
                    "Concat: {:?} is {} but {:?} is {}",
                    first.name,
                    first.dtype.name(),
                    t.name,
                    t.dtype.name()
                ));
            }
            let same_elsewhere =
                t.shape.len() == shape.len() && (0..shape.len()).all(|i| i == axis || t.shape[i] == shape[i]);
            if !same_elsewhere {
                return Err(format!(
                    "Concat: {:?} of shape {:?} and {:?} of shape {:?} differ outside axis {axis}",
                    first.name, first.shape, t.name, t.shape
                ));
            }
            shape[axis] = shape[axis]
                .checked_add(t.shape[axis])
                .ok_or_else(|| format!("Concat: the sizes along axis {axis} overflow"))?;
        }
        Ok(vec![(first.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::concat(self.axis, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Concat", vec![attr_int("axis", self.axis as i64)]);
    }
}

impl OpDef for Squeeze {
    fn type_name(&self) -> &'static str {
        "Squeeze"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Squeeze", inputs)?;
        let rank = x.shape.len();
        let mut drop = vec![false; rank];
        for &a in &self.axes {
            match x.shape.get(a) {
                None => {
                    return Err(format!("Squeeze: axis {a} is out of range for {:?} of rank {rank}", x.name));
                }
                Some(&d) if d != 1 => {
                    return Err(format!("Squeeze: axis {a} of {:?} (shape {:?}) has size {d}, not 1", x.name, x.shape));
                }
                Some(_) if std::mem::replace(&mut drop[a], true) => {
                    return Err(format!("Squeeze: axis {a} is listed twice"));
                }
                Some(_) => {}
            }
        }
        let shape = (0..rank).filter(|&i| !drop[i]).map(|i| x.shape[i]).collect();
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::squeeze(&self.axes, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let axes = cx.int64s("axes", &ints(&self.axes));
        cx.emit_with("Squeeze", vec![axes], vec![]);
    }
}

impl OpDef for Unsqueeze {
    fn type_name(&self) -> &'static str {
        "Unsqueeze"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Unsqueeze", inputs)?;
        let out_rank = x.shape.len() + self.axes.len();
        let mut insert = vec![false; out_rank];
        for &a in &self.axes {
            if a >= out_rank {
                return Err(format!("Unsqueeze: axis {a} is out of range for an output of rank {out_rank}"));
            }
            if std::mem::replace(&mut insert[a], true) {
                return Err(format!("Unsqueeze: axis {a} is listed twice"));
            }
        }
        let mut dims = x.shape.iter();
        let shape = insert.iter().map(|&new| if new { 1 } else { dims.next().copied().unwrap_or(1) }).collect();
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::unsqueeze(&self.axes, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let axes = cx.int64s("axes", &ints(&self.axes));
        cx.emit_with("Unsqueeze", vec![axes], vec![]);
    }
}

impl OpDef for Pad {
    fn type_name(&self) -> &'static str {
        "Pad"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Pad", inputs)?;
        let (pads, mode) = (&self.pads, self.mode);
        let rank = x.shape.len();
        if pads.len() != 2 * rank {
            return Err(format!(
                "Pad: pads has {} entries, expected {} for {:?} of rank {rank}",
                pads.len(),
                2 * rank,
                x.name
            ));
        }
        let mut shape = Vec::with_capacity(rank);
        for (i, &dim) in x.shape.iter().enumerate() {
            let (begin, end) = (pads[i], pads[rank + i]);
            let size = i64::try_from(dim).ok().and_then(|d| d.checked_add(begin)?.checked_add(end));
            let Some(size) = size.filter(|&s| s >= 0) else {
                return Err(format!(
                    "Pad: axis {i} of {:?} has size {dim}; pads {begin}/{end} leave a negative size",
                    x.name
                ));
            };
            // Reflect mirrors without repeating the edge element, so it needs pads < size; edge
            // needs at least one element to repeat.
            let dim = dim as i64;
            let bad = match mode {
                PadMode::Constant => false,
                PadMode::Reflect => begin >= dim || end >= dim,
                PadMode::Edge => dim == 0 && (begin > 0 || end > 0),
            };
            if bad {
                return Err(format!(
                    "Pad: {mode:?} padding of {begin}/{end} on axis {i} of {:?} needs a larger axis (size {dim})",
                    x.name
                ));
            }
            shape.push(size as usize);
        }
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::pad(&self.pads, self.mode, self.value, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut extra = vec![cx.int64s("pads", &self.pads)];
        let mode = match self.mode {
            PadMode::Constant => {
                extra.push(cx.scalar("constant_value", self.value));
                "constant"
            }
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
        };
        cx.emit_with("Pad", extra, vec![attr_string("mode", mode)]);
    }
}
