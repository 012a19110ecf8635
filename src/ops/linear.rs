//! The ops with weights: Conv, Gemm and MatMul.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_float, attr_int};
use super::import::{Lowered, NodeCx, positive_list, shape_error};
use super::window::{Window, resolve_window};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::{broadcast_shapes, exactly, require_float, require_numeric, same_type_as};
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, conv, gemm};

/// Weighted ops may carry per-channel (Conv) or per-row (Gemm, MatMul) weight encodings.
const WEIGHTED: QuantDefault = QuantDefault { per_channel: true, ..QuantDefault::CALIBRATED };

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("Conv", import_conv, WEIGHTED),
    OnnxOp::ir("Gemm", import_gemm, WEIGHTED),
    OnnxOp::ir("MatMul", import_matmul, WEIGHTED),
];

/// Conv: inputs `[X, W]` or `[X, W, B]`, `W` of shape `[M, C/group, k...]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conv {
    pub window: Window,
    pub group: usize,
}

/// `Y = alpha * A' * B' + beta * C`; inputs `[A, B]` or `[A, B, C]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

/// numpy matmul semantics (batched, broadcast).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatMul;

impl From<Conv> for Op {
    fn from(op: Conv) -> Op {
        Op::Conv(op)
    }
}

impl From<Gemm> for Op {
    fn from(op: Gemm) -> Op {
        Op::Gemm(op)
    }
}

impl From<MatMul> for Op {
    fn from(op: MatMul) -> Op {
        Op::MatMul(op)
    }
}

/// Conv's window and group from a node with the data at input 0 and the weights `[M, C/group,
/// kernel...]` at input `w` (Conv, ConvInteger, QLinearConv).
pub(super) fn conv_window(cx: &NodeCx, w: usize) -> Result<(Window, usize), ImportError> {
    let a = cx.attrs(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
    let (x, w) = (cx.input(0, "X")?, cx.input(w, "W")?);
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
    Ok((resolve_window(&a, kernel, x.shape.get(2..).unwrap_or_default())?, group))
}

fn import_conv(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 3)?;
    let (window, group) = conv_window(cx, 1)?;
    Lowered::ir(Conv { window, group }, cx.present(&[0, 1, 2]))
}

fn import_gemm(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 3)?;
    let a = cx.attrs(&["alpha", "beta", "transA", "transB"])?;
    let op = Gemm {
        alpha: a.float_or("alpha", 1.0)?,
        beta: a.float_or("beta", 1.0)?,
        trans_a: a.flag("transA")?,
        trans_b: a.flag("transB")?,
    };
    Lowered::ir(op, cx.present(&[0, 1, 2]))
}

fn import_matmul(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    cx.attrs(&[])?;
    Lowered::ir(MatMul, vec![0, 1])
}

impl OpDef for Conv {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "Conv"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let (x, w, bias) = match inputs {
            [x, w] => (*x, *w, None),
            [x, w, b] => (*x, *w, Some(*b)),
            _ => return Err(format!("Conv: expects 2 or 3 inputs, got {}", inputs.len())),
        };
        for t in [Some(x), Some(w), bias].into_iter().flatten() {
            require_float("Conv", t)?;
        }
        same_type_as("Conv", x, &[Some(w), bias].into_iter().flatten().collect::<Vec<_>>())?;
        if x.shape.len() < 3 {
            return Err(format!(
                "Conv: input {:?} has shape {:?}, expected [N, C, spatial...] (rank >= 3)",
                x.name, x.shape
            ));
        }
        if w.shape.len() != x.shape.len() {
            return Err(format!(
                "Conv: weight {:?} has rank {} but input {:?} has rank {}",
                w.name,
                w.shape.len(),
                x.name,
                x.shape.len()
            ));
        }
        let spatial = x.shape.len() - 2;
        self.window.check("Conv", spatial)?;
        if self.window.kernel[..] != w.shape[2..] {
            return Err(format!(
                "Conv: kernel_shape {:?} disagrees with weight {:?} of shape {:?}",
                self.window.kernel, w.name, w.shape
            ));
        }
        let group = self.group;
        let (channels, per_group, filters) = (x.shape[1], w.shape[1], w.shape[0]);
        let expected = per_group.checked_mul(group);
        if group == 0 || expected != Some(channels) {
            let expected = expected.map_or("too many".to_string(), |e| e.to_string());
            return Err(format!("Conv: input has {channels} channels, weight expects {expected} (group {group})"));
        }
        if !filters.is_multiple_of(group) {
            return Err(format!("Conv: {filters} output channels do not divide into {group} groups"));
        }
        if let Some(b) = bias
            && b.shape != [filters]
        {
            return Err(format!("Conv: bias {:?} has shape {:?}, expected [{filters}]", b.name, b.shape));
        }
        let mut shape = vec![x.shape[0], filters];
        shape.extend(self.window.output("Conv", &x.shape[2..], false)?);
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![conv::conv(self, inputs)?])
    }

    fn has_group_kernel(&self) -> bool {
        true
    }

    fn run_group(&self, samples: &[Vec<&Tensor>]) -> Option<Result<Vec<Vec<Tensor>>, KernelError>> {
        conv::conv_group(self, samples)
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        match position {
            1 => InputRole::Weight { channel_axis: Some(0) },
            2 => InputRole::Bias,
            _ => InputRole::Activation,
        }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = self.window.attrs();
        attrs.push(attr_int("group", self.group as i64));
        cx.emit("Conv", attrs);
    }
}

impl OpDef for Gemm {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "Gemm"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let (trans_a, trans_b) = (self.trans_a, self.trans_b);
        let (a, b, c) = match inputs {
            [a, b] => (*a, *b, None),
            [a, b, c] => (*a, *b, Some(*c)),
            _ => return Err(format!("Gemm: expects 2 or 3 inputs, got {}", inputs.len())),
        };
        for t in [Some(a), Some(b), c].into_iter().flatten() {
            require_float("Gemm", t)?;
        }
        same_type_as("Gemm", a, &[Some(b), c].into_iter().flatten().collect::<Vec<_>>())?;
        let (&[a0, a1], &[b0, b1]) = (&a.shape[..], &b.shape[..]) else {
            return Err(format!(
                "Gemm: A {:?} and B {:?} must be 2-D, got shapes {:?} and {:?}",
                a.name, b.name, a.shape, b.shape
            ));
        };
        let (m, k) = if trans_a { (a1, a0) } else { (a0, a1) };
        let (kb, n) = if trans_b { (b1, b0) } else { (b0, b1) };
        if k != kb {
            return Err(format!(
                "Gemm: A' is [{m}, {k}] but B' is [{kb}, {n}] (transA {trans_a}, transB {trans_b}): \
                 inner dimensions {k} and {kb} differ"
            ));
        }
        if let Some(c) = c {
            // C broadcasts one way to [M, N].
            let fits = c.shape.len() <= 2 && broadcast_shapes(&c.shape, &[m, n]).as_deref() == Some(&[m, n]);
            if !fits {
                return Err(format!("Gemm: C {:?} of shape {:?} does not broadcast to [{m}, {n}]", c.name, c.shape));
            }
        }
        Ok(vec![(a.dtype, vec![m, n])])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![gemm::gemm(self.alpha, self.beta, self.trans_a, self.trans_b, inputs)?])
    }

    fn has_group_kernel(&self) -> bool {
        true
    }

    fn run_group(&self, samples: &[Vec<&Tensor>]) -> Option<Result<Vec<Vec<Tensor>>, KernelError>> {
        gemm::gemm_group(self.alpha, self.beta, self.trans_a, self.trans_b, samples)
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        match position {
            // B is [K, N], or [N, K] with transB: the output channels run along N.
            1 => InputRole::Weight { channel_axis: Some(usize::from(!self.trans_b)) },
            2 => InputRole::Bias,
            _ => InputRole::Activation,
        }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit(
            "Gemm",
            vec![
                attr_float("alpha", self.alpha),
                attr_float("beta", self.beta),
                attr_int("transA", i64::from(self.trans_a)),
                attr_int("transB", i64::from(self.trans_b)),
            ],
        );
    }
}

impl OpDef for MatMul {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "MatMul"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [a, b] = exactly("MatMul", inputs)?;
        require_numeric("MatMul", a)?;
        if a.dtype != b.dtype {
            return Err(format!("MatMul: {:?} is {} but {:?} is {}", a.name, a.dtype.name(), b.name, b.dtype.name()));
        }
        if a.shape.is_empty() || b.shape.is_empty() {
            return Err(format!("MatMul: operands must have rank >= 1, got {:?} and {:?}", a.shape, b.shape));
        }
        // numpy: a 1-D left operand gains a leading 1, a 1-D right operand a trailing 1; both
        // are removed from the result.
        let sa = if a.shape.len() == 1 { vec![1, a.shape[0]] } else { a.shape.clone() };
        let sb = if b.shape.len() == 1 { vec![b.shape[0], 1] } else { b.shape.clone() };
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (kb, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != kb {
            return Err(format!(
                "MatMul: {:?} of shape {:?} and {:?} of shape {:?}: inner dimensions {k} and {kb} differ",
                a.name, a.shape, b.name, b.shape
            ));
        }
        let batch_a = &sa[..sa.len() - 2];
        let batch_b = &sb[..sb.len() - 2];
        let Some(mut shape) = broadcast_shapes(batch_a, batch_b) else {
            return Err(format!(
                "MatMul: batch dimensions {batch_a:?} of {:?} and {batch_b:?} of {:?} do not broadcast",
                a.name, b.name
            ));
        };
        if a.shape.len() > 1 {
            shape.push(m);
        }
        if b.shape.len() > 1 {
            shape.push(n);
        }
        Ok(vec![(a.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![gemm::matmul(inputs)?])
    }

    fn input_role(&self, position: usize, rank: usize) -> InputRole {
        // A constant operand is a weight; the right one `[.., K, N]` has its output
        // channels along its last axis.
        let channel_axis = (position == 1 && rank >= 2).then(|| rank - 1);
        InputRole::Weight { channel_axis }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("MatMul", vec![]);
    }
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;
    use crate::ir::TensorData;

    fn tensor(shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(shape, data).unwrap()
    }

    /// float16 and float64 operands run through the float32 kernel and come back in their own
    /// type: A = [[1, 2, 3], [4, 5, 6]], B = [[0.5, -1], [0.25, 2], [1, 0.125]] by hand:
    /// [[4, 3.375], [9.25, 6.75]] (every value exact in float16).
    #[test]
    fn float16_and_float64_matmuls_keep_their_type() {
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [0.5f32, -1.0, 0.25, 2.0, 1.0, 0.125];
        let want = [4.0f32, 3.375, 9.25, 6.75];
        let half = |v: &[f32]| TensorData::F16(v.iter().map(|&x| f16::from_f32(x)).collect());
        let (ha, hb) = (tensor(vec![2, 3], half(&a)), tensor(vec![3, 2], half(&b)));
        let out = Op::MatMul(MatMul).run(&[&ha, &hb], &[]).unwrap();
        assert_eq!(out[0].data, half(&want));
        let double = |v: &[f32]| TensorData::F64(v.iter().map(|&x| f64::from(x)).collect());
        let (da, db) = (tensor(vec![2, 3], double(&a)), tensor(vec![3, 2], double(&b)));
        let out = Op::MatMul(MatMul).run(&[&da, &db], &[]).unwrap();
        assert_eq!(out[0].data, double(&want));
    }

    /// A float16 Gemm result is the float32 result rounded once: 1 + 2^-11 (exact in float32)
    /// is a tie in float16 and rounds to even, 1.0.
    #[test]
    fn float16_results_are_rounded_once_from_float32() {
        let gemm = Op::Gemm(Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false });
        let one = |v: f32| tensor(vec![1, 1], TensorData::F16(vec![f16::from_f32(v)]));
        let (a, b, c) = (one(1.0), one(1.0), one(2f32.powi(-11)));
        let info = |name: &str, t: &Tensor| TensorInfo { name: name.into(), dtype: t.dtype(), shape: t.shape.clone() };
        let infos = gemm.infer(&[&info("a", &a), &info("b", &b), &info("c", &c)]).unwrap();
        assert_eq!(infos[0].0, DType::F16, "the output keeps the inputs' type");
        let out = gemm.run(&[&a, &b, &c], &[]).unwrap();
        assert_eq!(out[0].data, TensorData::F16(vec![f16::from_f32(1.0)]));
    }

    #[test]
    fn operands_of_different_float_types_are_refused() {
        let x = TensorInfo { name: "x".into(), dtype: DType::F16, shape: vec![1, 1, 4, 4] };
        let w = TensorInfo { name: "w".into(), dtype: DType::F32, shape: vec![1, 1, 3, 3] };
        let window = Window { kernel: vec![3, 3], strides: vec![1, 1], pads: vec![0; 4], dilations: vec![1, 1] };
        let conv = Conv { window, group: 1 };
        let err = conv.infer(&[&x, &w]).unwrap_err();
        assert!(err.contains("\"w\" is float32 but \"x\" is float16"), "{err}");
    }
}
