//! Normalizations and the Softmax relatives: LayerNormalization (with its optional Mean and
//! InvStdDev outputs), RMSNormalization, InstanceNormalization, GroupNormalization (opset 18:
//! scale and bias per group; 21: per channel), LpNormalization, MeanVarianceNormalization,
//! LRN, LogSoftmax and Hardmax (opset < 13: coerced to 2-D at the axis, as Softmax).

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_float, attr_int, attr_ints, ints};
use super::import::{Lowered, NodeCx, axes, axis};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::onnx::tensor::dtype_from_onnx;
use crate::runtime::kernels::{KernelError, input, normalize as kernel};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("LayerNormalization", import_layer_norm, QuantDefault::CALIBRATED),
    OnnxOp::ir("RMSNormalization", import_layer_norm, QuantDefault::CALIBRATED),
    OnnxOp::ir("InstanceNormalization", import_group_norm, QuantDefault::CALIBRATED),
    OnnxOp::ir("GroupNormalization", import_group_norm, QuantDefault::CALIBRATED),
    OnnxOp::ir("LpNormalization", import_lp_norm, QuantDefault::CALIBRATED),
    OnnxOp::ir("MeanVarianceNormalization", import_mvn, QuantDefault::CALIBRATED),
    OnnxOp::ir("LRN", import_lrn, QuantDefault::CALIBRATED),
    OnnxOp::ir("LogSoftmax", import_softmax_like, QuantDefault::CALIBRATED),
    OnnxOp::ir("Hardmax", import_softmax_like, QuantDefault::fixed(0.0, 1.0)),
];

/// LayerNormalization (`rms == false`; inputs `[X, Scale, B?]`) or RMSNormalization (inputs
/// `[X, scale]`) over the axes from `axis` on. `stash` is the statistics' element type
/// (LayerNormalization's Mean and InvStdDev outputs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerNormalization {
    pub rms: bool,
    pub axis: usize,
    pub epsilon: f32,
    pub stash: DType,
}

/// InstanceNormalization (`groups == None`) or GroupNormalization; inputs `[X, scale, B]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupNormalization {
    pub groups: Option<usize>,
    /// Scale and bias hold one value per channel (opset 21) rather than per group (18).
    pub per_channel: bool,
    pub epsilon: f32,
    pub stash: DType,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LpNormalization {
    pub axis: usize,
    pub p: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MeanVarianceNormalization {
    pub axes: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

/// LogSoftmax (`log`) or Hardmax; `coerce_2d` as [`super::Softmax`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SoftmaxLike {
    pub log: bool,
    pub axis: usize,
    pub coerce_2d: bool,
}

into_op!(LayerNormalization, GroupNormalization, LpNormalization, MeanVarianceNormalization, Lrn, SoftmaxLike);

fn stash_type(a: &super::import::Attrs) -> Result<DType, ImportError> {
    let code = a.int_or("stash_type", 1)?;
    let code = i32::try_from(code).map_err(|_| bad_attribute(format!("stash_type {code} is not an element type")))?;
    let dtype = dtype_from_onnx(code, "stash_type")?;
    if !dtype.is_compute_float() {
        return Err(bad_attribute(format!("stash_type {} is not a float type", dtype.name())));
    }
    Ok(dtype)
}

fn import_layer_norm(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let rms = cx.op_type() == "RMSNormalization";
    if rms {
        cx.arity(2, 2)?
    } else {
        cx.arity(2, 3)?
    };
    let a = cx.attrs(&["axis", "epsilon", "stash_type"])?;
    let rank = cx.input(0, "X")?.shape.len();
    cx.input(1, "Scale")?;
    let op = LayerNormalization {
        rms,
        axis: axis(a.int_or("axis", -1)?, rank, false, "axis")?,
        epsilon: a.float_or("epsilon", 1e-5)?,
        stash: stash_type(&a)?,
    };
    Lowered::ir(op, cx.present(&[0, 1, 2]))
}

fn import_group_norm(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    let op = if cx.op_type() == "InstanceNormalization" {
        let a = cx.attrs(&["epsilon"])?;
        GroupNormalization { groups: None, per_channel: true, epsilon: a.float_or("epsilon", 1e-5)?, stash: DType::F32 }
    } else {
        let known: &[&str] =
            if cx.opset < 21 { &["epsilon", "num_groups"] } else { &["epsilon", "num_groups", "stash_type"] };
        let a = cx.attrs(known)?;
        let groups = a.int("num_groups")?.ok_or_else(|| bad_attribute("attribute \"num_groups\" is required"))?;
        let groups = usize::try_from(groups)
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| bad_attribute(format!("num_groups {groups} must be positive")))?;
        GroupNormalization {
            groups: Some(groups),
            per_channel: cx.opset >= 21,
            epsilon: a.float_or("epsilon", 1e-5)?,
            stash: stash_type(&a)?,
        }
    };
    for (i, role) in [(0, "X"), (1, "scale"), (2, "B")] {
        cx.input(i, role)?;
    }
    Lowered::ir(op, vec![0, 1, 2])
}

fn import_lp_norm(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["axis", "p"])?;
    let rank = cx.input(0, "input")?.shape.len();
    let p = match a.int_or("p", 2)? {
        1 => 1,
        2 => 2,
        p => return Err(bad_attribute(format!("p must be 1 or 2, got {p}"))),
    };
    Lowered::ir(LpNormalization { axis: axis(a.int_or("axis", -1)?, rank, false, "axis")?, p }, vec![0])
}

fn import_mvn(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["axes"])?;
    let rank = cx.input(0, "X")?.shape.len();
    let mut axes = axes(&a.ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]), rank, "axis")?;
    axes.sort_unstable();
    axes.dedup();
    Lowered::ir(MeanVarianceNormalization { axes }, vec![0])
}

fn import_lrn(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["alpha", "beta", "bias", "size"])?;
    let size = a.int("size")?.ok_or_else(|| bad_attribute("attribute \"size\" is required"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| bad_attribute(format!("size {size} must be positive")))?;
    let op = Lrn {
        size,
        alpha: a.float_or("alpha", 1e-4)?,
        beta: a.float_or("beta", 0.75)?,
        bias: a.float_or("bias", 1.0)?,
    };
    Lowered::ir(op, vec![0])
}

fn import_softmax_like(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["axis"])?;
    let rank = cx.input(0, "input")?.shape.len();
    // Before opset 13 the default axis was 1 and the input was coerced to 2-D there.
    let coerce_2d = cx.opset < 13;
    let default = if coerce_2d { 1 } else { -1 };
    let axis = axis(a.int_or("axis", default)?, rank, coerce_2d, "axis")?;
    Lowered::ir(SoftmaxLike { log: cx.op_type() == "LogSoftmax", axis, coerce_2d }, vec![0])
}

/// A float input of a compute type.
fn float(name: &str, x: &TensorInfo) -> Result<(), String> {
    if x.dtype.is_compute_float() {
        Ok(())
    } else {
        Err(format!("{name}: {:?} is {}, expected a float type", x.name, x.dtype.name()))
    }
}

/// Parameters must share X's element type.
fn same_type(name: &str, x: &TensorInfo, params: &[&TensorInfo]) -> Result<(), String> {
    for p in params {
        if p.dtype != x.dtype {
            return Err(format!("{name}: {:?} is {} but {:?} is {}", p.name, p.dtype.name(), x.name, x.dtype.name()));
        }
    }
    Ok(())
}

fn one<'a>(name: &str, inputs: &[&'a TensorInfo]) -> Result<&'a TensorInfo, String> {
    let [x] = crate::ir::shape::exactly(name, inputs)?;
    float(name, x)?;
    Ok(x)
}

fn affine_role(position: usize) -> InputRole {
    match position {
        0 => InputRole::Activation,
        1 => InputRole::Weight { channel_axis: None },
        _ => InputRole::Bias,
    }
}

impl OpDef for LayerNormalization {
    fn type_name(&self) -> &'static str {
        if self.rms { "RMSNormalization" } else { "LayerNormalization" }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let max = if self.rms { 2 } else { 3 };
        let [x, params @ ..] = inputs else { return Err(format!("{name}: expects 2 to {max} inputs, got 0")) };
        if params.is_empty() || params.len() >= max {
            return Err(format!("{name}: expects 2 to {max} inputs, got {}", inputs.len()));
        }
        float(name, x)?;
        same_type(name, x, params)?;
        if self.axis >= x.shape.len() {
            return Err(format!(
                "{name}: axis {} is out of range for {:?} of rank {}",
                self.axis,
                x.name,
                x.shape.len()
            ));
        }
        let normalized = &x.shape[self.axis..];
        for p in params {
            if kernel::broadcast_to(&vec![0u8; p.shape.iter().product()], &p.shape, normalized).is_none() {
                return Err(format!(
                    "{name}: {:?} of shape {:?} does not broadcast to the normalized shape {normalized:?}",
                    p.name, p.shape
                ));
            }
        }
        let mut outputs = vec![(x.dtype, x.shape.clone())];
        if !self.rms {
            let mut stats = x.shape.clone();
            stats[self.axis..].fill(1);
            outputs.push((self.stash, stats.clone()));
            outputs.push((self.stash, stats));
        }
        Ok(outputs)
    }

    fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        let stats = (!self.rms && outputs.len() > 1).then_some(self.stash);
        let mut results = kernel::layer_norm(name, self.axis, self.epsilon, !self.rms, inputs, stats)?;
        if !outputs.is_empty() {
            results.truncate(outputs.len());
        }
        Ok(results)
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        affine_role(position)
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let attrs = vec![
            attr_int("axis", self.axis as i64),
            attr_float("epsilon", self.epsilon),
            attr_int("stash_type", i64::from(crate::onnx::tensor::onnx_code(self.stash))),
        ];
        cx.emit(self.type_name(), attrs);
    }
}

impl OpDef for GroupNormalization {
    fn type_name(&self) -> &'static str {
        if self.groups.is_some() { "GroupNormalization" } else { "InstanceNormalization" }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let [x, scale, bias] = crate::ir::shape::exactly(name, inputs)?;
        float(name, x)?;
        same_type(name, x, &[scale, bias])?;
        let [_, c, ..] = x.shape[..] else {
            return Err(format!("{name}: {:?} has shape {:?}, expected [N, C, ...]", x.name, x.shape));
        };
        let g = self.groups.unwrap_or(c);
        if !c.is_multiple_of(g) {
            return Err(format!("{name}: {c} channels of {:?} do not split into {g} groups", x.name));
        }
        let params = if self.per_channel { c } else { g };
        for p in [scale, bias] {
            if p.shape != [params] {
                return Err(format!("{name}: {:?} has shape {:?}, expected [{params}]", p.name, p.shape));
            }
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![kernel::group_norm(self.type_name(), self.groups, self.per_channel, self.epsilon, inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        affine_role(position)
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        match self.groups {
            None => cx.emit("InstanceNormalization", vec![attr_float("epsilon", self.epsilon)]),
            Some(g) if self.per_channel => cx.emit(
                "GroupNormalization",
                vec![
                    attr_float("epsilon", self.epsilon),
                    attr_int("num_groups", g as i64),
                    attr_int("stash_type", i64::from(crate::onnx::tensor::onnx_code(self.stash))),
                ],
            ),
            Some(g) => {
                // Opset 21 wants per-channel scale and bias: repeat each group's value over its
                // channels (Expand of the [G, 1] reshape to [G, C / G], flattened).
                let c = cx.input_shapes.first().and_then(|s| s.get(1)).copied().unwrap_or(g);
                let name = cx.name.to_string();
                let mut inputs = std::mem::take(&mut cx.inputs);
                let grouped = cx.int64s("grouped_shape", &[g as i64, 1]);
                let expanded = cx.int64s("expanded_shape", &[g as i64, (c / g.max(1)) as i64]);
                let flat = cx.int64s("channel_shape", &[c as i64]);
                for (slot, role) in inputs.iter_mut().skip(1).zip(["scale", "bias"]) {
                    let (r, e, f) = (
                        cx.host.fresh(format!("{name}_{role}_grouped")),
                        cx.host.fresh(format!("{name}_{role}_expanded")),
                        cx.host.fresh(format!("{name}_{role}_per_channel")),
                    );
                    let node = |s: &str| format!("{name}_{role}_{s}");
                    cx.host.push_node(
                        "Reshape",
                        node("Reshape"),
                        vec![slot.clone(), grouped.clone()],
                        vec![r.clone()],
                        vec![],
                    );
                    cx.host.push_node("Expand", node("Expand"), vec![r, expanded.clone()], vec![e.clone()], vec![]);
                    cx.host.push_node("Reshape", node("Flatten"), vec![e, flat.clone()], vec![f.clone()], vec![]);
                    *slot = f;
                }
                cx.inputs = inputs;
                cx.emit(
                    "GroupNormalization",
                    vec![attr_float("epsilon", self.epsilon), attr_int("num_groups", g as i64)],
                );
            }
        }
    }
}

impl OpDef for LpNormalization {
    fn type_name(&self) -> &'static str {
        "LpNormalization"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let x = one("LpNormalization", inputs)?;
        if self.axis >= x.shape.len() {
            return Err(format!("LpNormalization: axis {} is out of range for {:?}", self.axis, x.name));
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let x = input("LpNormalization", inputs, 0, "input")?;
        Ok(vec![kernel::lp_norm("LpNormalization", self.axis, self.p, x)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("LpNormalization", vec![attr_int("axis", self.axis as i64), attr_int("p", i64::from(self.p))]);
    }
}

impl OpDef for MeanVarianceNormalization {
    fn type_name(&self) -> &'static str {
        "MeanVarianceNormalization"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let x = one("MeanVarianceNormalization", inputs)?;
        if let Some(&a) = self.axes.iter().find(|&&a| a >= x.shape.len()) {
            return Err(format!("MeanVarianceNormalization: axis {a} is out of range for {:?}", x.name));
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let x = input("MeanVarianceNormalization", inputs, 0, "X")?;
        Ok(vec![kernel::mean_variance("MeanVarianceNormalization", &self.axes, x)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("MeanVarianceNormalization", vec![attr_ints("axes", &ints(&self.axes))]);
    }
}

impl OpDef for Lrn {
    fn type_name(&self) -> &'static str {
        "LRN"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let x = one("LRN", inputs)?;
        if x.shape.len() < 2 {
            return Err(format!("LRN: {:?} has shape {:?}, expected [N, C, ...]", x.name, x.shape));
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let x = input("LRN", inputs, 0, "X")?;
        Ok(vec![kernel::lrn("LRN", self.size, self.alpha, self.beta, self.bias, x)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let attrs = vec![
            attr_int("size", self.size as i64),
            attr_float("alpha", self.alpha),
            attr_float("beta", self.beta),
            attr_float("bias", self.bias),
        ];
        cx.emit("LRN", attrs);
    }
}

impl OpDef for SoftmaxLike {
    fn type_name(&self) -> &'static str {
        if self.log { "LogSoftmax" } else { "Hardmax" }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let x = one(name, inputs)?;
        let rank = x.shape.len();
        if self.axis > rank || (self.axis == rank && !self.coerce_2d) {
            return Err(format!("{name}: axis {} is out of range for {:?} of rank {rank}", self.axis, x.name));
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        let x = input(name, inputs, 0, "input")?;
        Ok(vec![kernel::softmax_like(name, self.log, self.axis, self.coerce_2d, x)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let name = self.type_name();
        let rank = cx.input_shapes.first().map_or(0, Vec::len);
        if !self.coerce_2d || self.axis + 1 == rank {
            cx.emit(name, vec![attr_int("axis", self.axis as i64)]);
            return;
        }
        // The opset < 13 meaning in opset 13+ terms: Flatten, the op over axis 1, Reshape back.
        let node = cx.name;
        let shape: Vec<i64> = cx.output_shapes.first().map_or(vec![], |s| ints(s));
        let flat = cx.host.fresh(format!("{node}_flattened"));
        let normalized = cx.host.fresh(format!("{node}_2d"));
        let inputs = std::mem::take(&mut cx.inputs);
        let outputs = std::mem::take(&mut cx.outputs);
        cx.host.push_node(
            "Flatten",
            format!("{node}_Flatten"),
            inputs,
            vec![flat.clone()],
            vec![attr_int("axis", self.axis as i64)],
        );
        cx.host.push_graph_node(name, node, vec![flat], vec![normalized.clone()], vec![attr_int("axis", 1)]);
        let shape = cx.int64s("shape", &shape);
        cx.host.push_node("Reshape", format!("{node}_Reshape"), vec![normalized, shape], outputs, vec![]);
    }
}
