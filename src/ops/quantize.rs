//! QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear as compute ops.
//!
//! A QDQ model's ordinary Q -> DQ pairs and DQs of constants never reach this module: they are
//! stripped at import and kept as the model's encodings (`onnx::qdq`). What the stripper
//! cannot turn into an encoding stays a node and imports here: a Q whose integer output is a
//! graph output or feeds a non-DQ op, a DQ of a graph input or of a run-time integer tensor,
//! run-time scales and zero points, block quantization, float8, 2-bit codes.
//!
//! Semantics are ONNX's for opsets 10 to 25: per tensor (scalar scale), per axis (1-D scale
//! along `axis`) or blocked (`block_size`, a scale of the input's rank); round half to even;
//! saturation to the code type's range; zero point optional (type from `output_dtype`, else
//! uint8); `saturate` for float8; the division of Q in the scale's type (or `precision`), the
//! multiplication of DQ in the output type. DynamicQuantizeLinear follows onnxruntime
//! (scale 1 when the input range is empty).
//!
//! Quantization: scales are float parameters and zero points integer data the quantizer
//! leaves alone; the outputs are not quantized (integer codes are native, DQ's float output
//! is computed in float).

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int};
use super::import::{Lowered, NodeCx, axis};
use super::tensor::fold_or_ir;
use super::{InputRole, OnnxOp, Op, OpDef, OutputEncoding, QuantDefault};
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::{ErrorKind, bad_attribute};
use crate::onnx::tensor::{dtype_from_onnx, onnx_code};
use crate::runtime::kernels::quantize::{dequantize, dynamic_quantize, layout, quantize};
use crate::runtime::kernels::{KernelError, expect_inputs};

/// The outputs are integer codes or float values computed in float: never quantized.
pub(super) const NOT_QUANTIZED: QuantDefault =
    QuantDefault { output: OutputEncoding::Float, ..QuantDefault::CALIBRATED };

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("QuantizeLinear", import_quantize, NOT_QUANTIZED),
    OnnxOp::ir("DequantizeLinear", import_dequantize, NOT_QUANTIZED),
    OnnxOp::ir("DynamicQuantizeLinear", import_dynamic, NOT_QUANTIZED),
];

/// `y = saturate(round(x / scale) + zero_point)`; inputs `[x, scale]` or `[x, scale, zp]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuantizeLinear {
    /// The quantized axis (normalized; 0 and unused for per-tensor parameters).
    pub axis: usize,
    /// 0: per tensor or per axis.
    pub block_size: usize,
    /// The code type (the zero point's, else `output_dtype`, else uint8).
    pub to: DType,
    /// Float8 only: out-of-range values saturate (else become infinity or NaN).
    pub saturate: bool,
    /// The precision of the division; `None`: the scale's type.
    pub precision: Option<DType>,
}

/// `y = (x - zero_point) * scale`; inputs `[x, scale]` or `[x, scale, zp]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DequantizeLinear {
    pub axis: usize,
    pub block_size: usize,
    /// The output type (`output_dtype`); `None`: the scale's type.
    pub to: Option<DType>,
}

/// uint8 dynamic quantization: outputs `y`, `y_scale`, `y_zero_point`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DynamicQuantizeLinear;

impl From<QuantizeLinear> for Op {
    fn from(op: QuantizeLinear) -> Op {
        Op::QuantizeLinear(op)
    }
}

impl From<DequantizeLinear> for Op {
    fn from(op: DequantizeLinear) -> Op {
        Op::DequantizeLinear(op)
    }
}

impl From<DynamicQuantizeLinear> for Op {
    fn from(op: DynamicQuantizeLinear) -> Op {
        Op::DynamicQuantizeLinear(op)
    }
}

/// Code types of QuantizeLinear's output and DequantizeLinear's input.
fn is_code_type(d: DType) -> bool {
    matches!(
        d,
        DType::U8
            | DType::I8
            | DType::U16
            | DType::I16
            | DType::I32
            | DType::U4
            | DType::I4
            | DType::U2
            | DType::I2
            | DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
    )
}

fn is_scale_type(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16)
}

fn dtype_attr(cx: &NodeCx, name: &str) -> Result<Option<DType>, ImportError> {
    let a = cx.attrs(&["axis", "block_size", "output_dtype", "saturate", "precision"])?;
    match a.int(name)? {
        None | Some(0) => Ok(None),
        Some(code) => {
            let code =
                i32::try_from(code).map_err(|_| bad_attribute(format!("{name} {code} is not an element type")))?;
            dtype_from_onnx(code, name).map(Some)
        }
    }
}

/// `axis` and `block_size`, the axis normalized when the parameters are not per tensor.
fn granularity(cx: &NodeCx, x_rank: usize, scale: &[usize]) -> Result<(usize, usize), ImportError> {
    let a = cx.attrs(&["axis", "block_size", "output_dtype", "saturate", "precision"])?;
    let block = a.int_or("block_size", 0)?;
    let block = usize::try_from(block).map_err(|_| bad_attribute(format!("block_size must be >= 0, got {block}")))?;
    let per_tensor = block == 0 && scale.len() <= 1 && scale.iter().product::<usize>() == 1;
    let axis = if per_tensor { 0 } else { axis(a.int_or("axis", 1)?, x_rank, false, "axis")? };
    Ok((axis, block))
}

fn unsupported_type(what: &str, d: DType) -> ImportError {
    ImportError::new(ErrorKind::UnsupportedDtype, format!("{what} has element type {}", d.name()))
}

fn import_quantize(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 3)?;
    let a = cx.attrs(&["axis", "block_size", "output_dtype", "saturate", "precision"])?;
    let (x, scale) = (cx.input(0, "x")?, cx.input(1, "y_scale")?);
    let declared = dtype_attr(cx, "output_dtype")?;
    let to = match (cx.opt(2), declared) {
        (Some(zp), Some(d)) if zp.dtype != d => {
            return Err(bad_attribute(format!(
                "output_dtype {} disagrees with zero point {:?} of type {}",
                d.name(),
                zp.name,
                zp.dtype.name()
            )));
        }
        (Some(zp), _) => zp.dtype,
        (None, Some(d)) => d,
        (None, None) => DType::U8,
    };
    if !is_code_type(to) {
        return Err(unsupported_type("the quantized output", to));
    }
    let precision = dtype_attr(cx, "precision")?;
    if let Some(p) = precision.filter(|&p| !is_scale_type(p)) {
        return Err(unsupported_type("precision", p));
    }
    let (axis, block_size) = granularity(cx, x.shape.len(), scale.shape)?;
    let op = QuantizeLinear { axis, block_size, to, saturate: a.flag_or("saturate", true)?, precision };
    fold_or_ir(cx, op, cx.present(&[0, 1, 2]))
}

fn import_dequantize(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 3)?;
    let a = cx.attrs(&["axis", "block_size", "output_dtype"])?;
    let (x, scale) = (cx.input(0, "x")?, cx.input(1, "x_scale")?);
    let to = match a.int("output_dtype")? {
        None | Some(0) => None,
        Some(_) => dtype_attr(cx, "output_dtype")?,
    };
    if let Some(t) = to.filter(|&t| !is_scale_type(t)) {
        return Err(unsupported_type("output_dtype", t));
    }
    let (axis, block_size) = granularity(cx, x.shape.len(), scale.shape)?;
    fold_or_ir(cx, DequantizeLinear { axis, block_size, to }, cx.present(&[0, 1, 2]))
}

fn import_dynamic(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    cx.attrs(&[])?;
    fold_or_ir(cx, DynamicQuantizeLinear, vec![0])
}

/// Checks scale and zero point of a Q/DQ against `x`; the code type is `code`.
fn check_params(op: &str, inputs: &[&TensorInfo], code: DType, axis: usize, block: usize) -> Result<(), String> {
    let (x, scale) = match inputs {
        [x, s] | [x, s, _] => (*x, *s),
        _ => return Err(format!("{op}: expects 2 or 3 inputs, got {}", inputs.len())),
    };
    if !is_scale_type(scale.dtype) {
        return Err(format!("{op}: scale {:?} is {}, expected a float type", scale.name, scale.dtype.name()));
    }
    if let [_, _, zp] = inputs {
        if zp.dtype != code {
            return Err(format!("{op}: zero point {:?} is {}, expected {}", zp.name, zp.dtype.name(), code.name()));
        }
        let one = |t: &TensorInfo| t.shape.iter().product::<usize>() == 1 && t.shape.len() <= 1;
        if zp.shape != scale.shape && !(one(zp) && one(scale)) {
            return Err(format!(
                "{op}: zero point {:?} has shape {:?} but the scale {:?}",
                zp.name, zp.shape, scale.shape
            ));
        }
    }
    layout(&x.shape, &scale.shape, axis, block).map(|_| ()).map_err(|e| format!("{op}: per-axis/blocked {e}"))
}

fn split<'a>(
    op: &'static str,
    inputs: &[&'a Tensor],
) -> Result<(&'a Tensor, &'a Tensor, Option<&'a Tensor>), KernelError> {
    expect_inputs(op, inputs, 2, 3)?;
    Ok((inputs[0], inputs[1], inputs.get(2).copied()))
}

impl OpDef for QuantizeLinear {
    fn type_name(&self) -> &'static str {
        "QuantizeLinear"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        check_params("QuantizeLinear", inputs, self.to, self.axis, self.block_size)?;
        let x = inputs[0];
        if !(is_scale_type(x.dtype) || matches!(x.dtype, DType::F64 | DType::I32)) {
            return Err(format!("QuantizeLinear: {:?} is {}, expected a float type", x.name, x.dtype.name()));
        }
        Ok(vec![(self.to, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "QuantizeLinear";
        let (x, scale, zp) = split(OP, inputs)?;
        let lay = layout(&x.shape, &scale.shape, self.axis, self.block_size).map_err(|e| KernelError::new(OP, e))?;
        let precision = self.precision.unwrap_or(scale.dtype());
        Ok(vec![quantize(x, scale, zp, &lay, self.to, precision, self.saturate)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        match position {
            0 => InputRole::Activation,
            1 => InputRole::FloatParam,
            _ => InputRole::Index,
        }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = vec![attr_int("axis", self.axis as i64)];
        if self.block_size > 0 {
            attrs.push(attr_int("block_size", self.block_size as i64));
        }
        if cx.inputs.len() < 3 && self.to != DType::U8 {
            attrs.push(attr_int("output_dtype", i64::from(onnx_code(self.to))));
        }
        if !self.saturate {
            attrs.push(attr_int("saturate", 0));
        }
        if let Some(p) = self.precision {
            attrs.push(attr_int("precision", i64::from(onnx_code(p))));
        }
        cx.emit("QuantizeLinear", attrs);
    }
}

impl OpDef for DequantizeLinear {
    fn type_name(&self) -> &'static str {
        "DequantizeLinear"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let x = inputs.first().ok_or("DequantizeLinear: expects 2 or 3 inputs, got 0")?;
        if !is_code_type(x.dtype) {
            return Err(format!("DequantizeLinear: {:?} is {}, expected quantized codes", x.name, x.dtype.name()));
        }
        check_params("DequantizeLinear", inputs, x.dtype, self.axis, self.block_size)?;
        Ok(vec![(self.to.unwrap_or(inputs[1].dtype), x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "DequantizeLinear";
        let (x, scale, zp) = split(OP, inputs)?;
        let lay = layout(&x.shape, &scale.shape, self.axis, self.block_size).map_err(|e| KernelError::new(OP, e))?;
        Ok(vec![dequantize(x, scale, zp, &lay, self.to.unwrap_or(scale.dtype()))?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 1 { InputRole::FloatParam } else { InputRole::Index }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = vec![attr_int("axis", self.axis as i64)];
        if self.block_size > 0 {
            attrs.push(attr_int("block_size", self.block_size as i64));
        }
        if let Some(t) = self.to {
            attrs.push(attr_int("output_dtype", i64::from(onnx_code(t))));
        }
        cx.emit("DequantizeLinear", attrs);
    }
}

impl OpDef for DynamicQuantizeLinear {
    fn type_name(&self) -> &'static str {
        "DynamicQuantizeLinear"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = crate::ir::shape::exactly("DynamicQuantizeLinear", inputs)?;
        crate::ir::shape::require_f32("DynamicQuantizeLinear", x)?;
        Ok(vec![(DType::U8, x.shape.clone()), (DType::F32, vec![]), (DType::U8, vec![])])
    }

    fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "DynamicQuantizeLinear";
        expect_inputs(OP, inputs, 1, 1)?;
        let mut all = dynamic_quantize(inputs[0])?;
        if !outputs.is_empty() {
            all.truncate(outputs.len());
        }
        Ok(all)
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("DynamicQuantizeLinear", vec![]);
    }
}

#[cfg(test)]
#[path = "quantize_tests.rs"]
mod tests;
