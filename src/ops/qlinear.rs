//! onnxruntime's QOperator format: MatMulInteger, ConvInteger (int32 results) and
//! QLinearMatMul, QLinearConv (8-bit codes in, 8-bit codes out), with exact integer
//! arithmetic (`runtime::kernels::qlinear`).
//!
//! Every input is integer data or a quantization parameter: scales are float parameters,
//! zero points and the int32 bias integer data; nothing here is quantized by qairt, the
//! outputs are native integers.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int};
use super::import::{Lowered, NodeCx};
use super::quantize::NOT_QUANTIZED;
use super::window::Window;
use super::{Conv, InputRole, MatMul, OnnxOp, Op, OpDef};
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::runtime::kernels::KernelError;
use crate::runtime::kernels::qlinear::{conv_integer, matmul_integer, qlinear_conv, qlinear_matmul};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("MatMulInteger", import_matmul_integer, NOT_QUANTIZED),
    OnnxOp::ir("QLinearMatMul", import_qlinear_matmul, NOT_QUANTIZED),
    OnnxOp::ir("ConvInteger", import_conv_integer, NOT_QUANTIZED),
    OnnxOp::ir("QLinearConv", import_qlinear_conv, NOT_QUANTIZED),
];

/// `(A - a_zp) x (B - b_zp)` in int32; inputs `[A, B]` then the zero points the node gives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MatMulInteger {
    pub a_zero_point: bool,
    pub b_zero_point: bool,
}

/// Inputs `a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QLinearMatMul;

/// Conv of `x - x_zp` and `w - w_zp` in int32; inputs `[x, w]` then the zero points given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvInteger {
    pub window: Window,
    pub group: usize,
    pub x_zero_point: bool,
    pub w_zero_point: bool,
}

/// Inputs `x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, B]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QLinearConv {
    pub window: Window,
    pub group: usize,
}

into_op!(MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv);

fn import_matmul_integer(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 4)?;
    cx.attrs(&[])?;
    let op = MatMulInteger { a_zero_point: cx.opt(2).is_some(), b_zero_point: cx.opt(3).is_some() };
    Lowered::ir(op, cx.present(&[0, 1, 2, 3]))
}

fn import_qlinear_matmul(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(8, 8)?;
    cx.attrs(&[])?;
    Lowered::ir(QLinearMatMul, (0..8).collect())
}

fn import_conv_integer(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 4)?;
    let (window, group) = super::linear::conv_window(cx, 1)?;
    let op = ConvInteger { window, group, x_zero_point: cx.opt(2).is_some(), w_zero_point: cx.opt(3).is_some() };
    Lowered::ir(op, cx.present(&[0, 1, 2, 3]))
}

fn import_qlinear_conv(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(8, 9)?;
    let (window, group) = super::linear::conv_window(cx, 3)?;
    Lowered::ir(QLinearConv { window, group }, cx.present(&[0, 1, 2, 3, 4, 5, 6, 7, 8]))
}

fn is_byte(d: DType) -> bool {
    matches!(d, DType::U8 | DType::I8)
}

/// Checks that `t` holds 8-bit codes.
fn codes(op: &str, t: &TensorInfo) -> Result<(), String> {
    if is_byte(t.dtype) {
        Ok(())
    } else {
        Err(format!("{op}: {:?} is {}, expected uint8 or int8", t.name, t.dtype.name()))
    }
}

/// Checks that a zero point has the type of the codes it offsets.
fn zero_point(op: &str, zp: &TensorInfo, of: &TensorInfo) -> Result<(), String> {
    if zp.dtype == of.dtype {
        Ok(())
    } else {
        Err(format!("{op}: zero point {:?} is {} but {:?} is {}", zp.name, zp.dtype.name(), of.name, of.dtype.name()))
    }
}

fn scale(op: &str, s: &TensorInfo) -> Result<(), String> {
    if matches!(s.dtype, DType::F32 | DType::F16 | DType::BF16) {
        Ok(())
    } else {
        Err(format!("{op}: scale {:?} is {}, expected a float type", s.name, s.dtype.name()))
    }
}

/// A float32 stand-in of `t` (same shape), to reuse the float ops' shape inference.
fn as_float(t: &TensorInfo) -> TensorInfo {
    TensorInfo { name: t.name.clone(), dtype: DType::F32, shape: t.shape.clone() }
}

fn matmul_shape(op: &str, a: &TensorInfo, b: &TensorInfo) -> Result<Vec<usize>, String> {
    let (fa, fb) = (as_float(a), as_float(b));
    let mut out = MatMul.infer(&[&fa, &fb]).map_err(|e| format!("{op}: {e}"))?;
    Ok(out.remove(0).1)
}

fn conv_shape(op: &str, window: &Window, group: usize, x: &TensorInfo, w: &TensorInfo) -> Result<Vec<usize>, String> {
    let (fx, fw) = (as_float(x), as_float(w));
    let conv = Conv { window: window.clone(), group };
    let mut out = conv.infer(&[&fx, &fw]).map_err(|e| format!("{op}: {e}"))?;
    Ok(out.remove(0).1)
}

/// The two integer operands of MatMulInteger/ConvInteger, checked with their optional zero
/// points (which follow them, in order, when present).
fn integer_operands<'t>(
    op: &str,
    inputs: &[&'t TensorInfo],
    first_zero_point: bool,
    second_zero_point: bool,
) -> Result<(&'t TensorInfo, &'t TensorInfo), String> {
    let want = 2 + usize::from(first_zero_point) + usize::from(second_zero_point);
    if inputs.len() != want {
        return Err(format!("{op}: expects {want} inputs, got {}", inputs.len()));
    }
    let (a, b) = (inputs[0], inputs[1]);
    codes(op, a)?;
    codes(op, b)?;
    let mut next = 2;
    if first_zero_point {
        zero_point(op, inputs[next], a)?;
        next += 1;
    }
    if second_zero_point {
        zero_point(op, inputs[next], b)?;
    }
    Ok((a, b))
}

impl OpDef for MatMulInteger {
    fn type_name(&self) -> &'static str {
        "MatMulInteger"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        const OP: &str = "MatMulInteger";
        let (a, b) = integer_operands(OP, inputs, self.a_zero_point, self.b_zero_point)?;
        Ok(vec![(DType::I32, matmul_shape(OP, a, b)?)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let a_zp = self.a_zero_point.then(|| inputs.get(2).copied()).flatten();
        let b_zp = self.b_zero_point.then(|| inputs.get(2 + usize::from(self.a_zero_point)).copied()).flatten();
        let (a, b) = match inputs {
            [a, b, ..] => (*a, *b),
            _ => return Err(KernelError::new("MatMulInteger", "expects 2 to 4 inputs")),
        };
        Ok(vec![matmul_integer(a, a_zp, b, b_zp)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position < 2 { InputRole::Activation } else { InputRole::Index }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        if self.b_zero_point && !self.a_zero_point {
            cx.inputs.insert(2, String::new());
        }
        cx.emit("MatMulInteger", vec![]);
    }
}

impl OpDef for QLinearMatMul {
    fn type_name(&self) -> &'static str {
        "QLinearMatMul"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        const OP: &str = "QLinearMatMul";
        let &[a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp] = inputs else {
            return Err(format!("{OP}: expects 8 inputs, got {}", inputs.len()));
        };
        for t in [a, b, y_zp] {
            codes(OP, t)?;
        }
        zero_point(OP, a_zp, a)?;
        zero_point(OP, b_zp, b)?;
        for s in [a_scale, b_scale, y_scale] {
            scale(OP, s)?;
        }
        Ok(vec![(y_zp.dtype, matmul_shape(OP, a, b)?)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![qlinear_matmul(inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        match position {
            0 | 3 => InputRole::Activation,
            1 | 4 | 6 => InputRole::FloatParam,
            _ => InputRole::Index,
        }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("QLinearMatMul", vec![]);
    }
}

impl OpDef for ConvInteger {
    fn type_name(&self) -> &'static str {
        "ConvInteger"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        const OP: &str = "ConvInteger";
        let (x, w) = integer_operands(OP, inputs, self.x_zero_point, self.w_zero_point)?;
        Ok(vec![(DType::I32, conv_shape(OP, &self.window, self.group, x, w)?)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let x_zp = self.x_zero_point.then(|| inputs.get(2).copied()).flatten();
        let w_zp = self.w_zero_point.then(|| inputs.get(2 + usize::from(self.x_zero_point)).copied()).flatten();
        let (x, w) = match inputs {
            [x, w, ..] => (*x, *w),
            _ => return Err(KernelError::new("ConvInteger", "expects 2 to 4 inputs")),
        };
        Ok(vec![conv_integer(&self.window, self.group, x, x_zp, w, w_zp)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position < 2 { InputRole::Activation } else { InputRole::Index }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        if self.w_zero_point && !self.x_zero_point {
            cx.inputs.insert(2, String::new());
        }
        let mut attrs = self.window.attrs();
        attrs.push(attr_int("group", self.group as i64));
        cx.emit("ConvInteger", attrs);
    }
}

impl OpDef for QLinearConv {
    fn type_name(&self) -> &'static str {
        "QLinearConv"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        const OP: &str = "QLinearConv";
        let (&[x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp], bias) =
            (inputs.get(..8).unwrap_or(inputs), inputs.get(8))
        else {
            return Err(format!("{OP}: expects 8 or 9 inputs, got {}", inputs.len()));
        };
        for t in [x, w, y_zp] {
            codes(OP, t)?;
        }
        zero_point(OP, x_zp, x)?;
        zero_point(OP, w_zp, w)?;
        for s in [x_scale, w_scale, y_scale] {
            scale(OP, s)?;
        }
        if let Some(b) = bias
            && b.dtype != DType::I32
        {
            return Err(format!("{OP}: bias {:?} is {}, expected int32", b.name, b.dtype.name()));
        }
        Ok(vec![(y_zp.dtype, conv_shape(OP, &self.window, self.group, x, w)?)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![qlinear_conv(&self.window, self.group, inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        match position {
            0 | 3 => InputRole::Activation,
            1 | 4 | 6 => InputRole::FloatParam,
            _ => InputRole::Index,
        }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = self.window.attrs();
        attrs.push(attr_int("group", self.group as i64));
        cx.emit("QLinearConv", attrs);
    }
}

#[cfg(test)]
#[path = "qlinear_tests.rs"]
mod tests;
