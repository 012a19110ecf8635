//! Float32 kernels, one per IR op, shared by the reference interpreter, constant folding and
//! the executor of compiled models.
//!
//! [`run_op`] is the single entry point. Each kernel derives its output shape from its inputs
//! and attributes (it needs the geometry anyway), and `run_op` then checks the result against
//! the `outputs` infos that shape inference declared, so a disagreement between the two
//! surfaces as a [`KernelError`] instead of silently wrong data. Inputs are validated
//! (`data.len() == product(shape)`) before any kernel indexes into them, so no input can make
//! a kernel panic.
//!
//! Kernels live in one file per family: [`conv`], [`gemm`] (Gemm and MatMul), [`elementwise`],
//! [`pool`], [`norm`] (BatchNormalization and Softmax) and [`shape_ops`].

pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod norm;
pub mod pool;
pub mod shape_ops;
mod window;

use crate::ir::{Op, Tensor, TensorData, TensorInfo};

/// A kernel could not run: unsupported dtype or an input that disagrees with its shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message}")]
pub struct KernelError {
    pub op: &'static str,
    pub message: String,
}

impl KernelError {
    pub(crate) fn new(op: &'static str, message: impl Into<String>) -> KernelError {
        KernelError { op, message: message.into() }
    }
}

/// Runs one op on its inputs. `outputs` are the inferred output tensor infos (dtype and
/// shape); every tensor the kernel produces is checked against them. An empty `outputs`
/// skips the check (for callers that have no inferred infos). Dropout produces its optional
/// second output (the all-true mask of inference mode) only when `outputs` declares it.
pub fn run_op(op: &Op, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
    let name = op.type_name();
    for (i, input) in inputs.iter().enumerate() {
        let expected = checked_product(&input.shape);
        if expected != Some(input.len()) {
            return Err(KernelError::new(
                name,
                format!("input {i} has shape {:?} but {} elements", input.shape, input.len()),
            ));
        }
    }
    let results = match op {
        Op::Conv(conv) => vec![conv::conv(conv, inputs)?],
        Op::Gemm { alpha, beta, trans_a, trans_b } => {
            vec![gemm::gemm(*alpha, *beta, *trans_a, *trans_b, inputs)?]
        }
        Op::MatMul => vec![gemm::matmul(inputs)?],
        Op::Add => vec![elementwise::binary(elementwise::BinaryOp::Add, inputs)?],
        Op::Sub => vec![elementwise::binary(elementwise::BinaryOp::Sub, inputs)?],
        Op::Mul => vec![elementwise::binary(elementwise::BinaryOp::Mul, inputs)?],
        Op::Div => vec![elementwise::binary(elementwise::BinaryOp::Div, inputs)?],
        Op::Relu => vec![elementwise::unary(name, inputs, elementwise::relu)?],
        Op::Clip { min, max } => {
            let (min, max) = (*min, *max);
            vec![elementwise::unary(name, inputs, move |x| elementwise::clip(x, min, max))?]
        }
        Op::Sigmoid => vec![elementwise::unary(name, inputs, elementwise::sigmoid)?],
        Op::Tanh => vec![elementwise::unary(name, inputs, f32::tanh)?],
        Op::HardSigmoid { alpha, beta } => {
            let (alpha, beta) = (*alpha, *beta);
            vec![elementwise::unary(name, inputs, move |x| elementwise::hard_sigmoid(x, alpha, beta))?]
        }
        Op::HardSwish => vec![elementwise::unary(name, inputs, elementwise::hard_swish)?],
        Op::MaxPool(pool) => vec![pool::max_pool(pool, inputs)?],
        Op::AveragePool(pool) => vec![pool::average_pool(pool, inputs)?],
        Op::GlobalAveragePool => vec![pool::global_pool(pool::GlobalKind::Average, inputs)?],
        Op::GlobalMaxPool => vec![pool::global_pool(pool::GlobalKind::Max, inputs)?],
        Op::BatchNormalization { epsilon } => vec![norm::batch_norm(*epsilon, inputs)?],
        Op::Softmax { axis, coerce_2d } => vec![norm::softmax(*axis, *coerce_2d, inputs)?],
        Op::Flatten { axis } => vec![shape_ops::flatten(*axis, inputs)?],
        Op::Reshape { shape } => vec![shape_ops::reshape(shape, inputs)?],
        Op::Transpose { perm } => vec![shape_ops::transpose(perm, inputs)?],
        Op::Concat { axis } => vec![shape_ops::concat(*axis, inputs)?],
        Op::Squeeze { axes } => vec![shape_ops::squeeze(axes, inputs)?],
        Op::Unsqueeze { axes } => vec![shape_ops::unsqueeze(axes, inputs)?],
        Op::Identity | Op::Convert => vec![shape_ops::identity(name, inputs)?],
        Op::Dropout => shape_ops::dropout(inputs, outputs.len() >= 2)?,
        Op::Pad { pads, mode, value } => vec![shape_ops::pad(pads, *mode, *value, inputs)?],
    };
    check_outputs(name, &results, outputs)?;
    Ok(results)
}

/// Checks the produced tensors against the declared infos (when there are any).
fn check_outputs(op: &'static str, results: &[Tensor], outputs: &[TensorInfo]) -> Result<(), KernelError> {
    if outputs.is_empty() {
        return Ok(());
    }
    if outputs.len() != results.len() {
        return Err(KernelError::new(
            op,
            format!("produces {} outputs but {} are declared", results.len(), outputs.len()),
        ));
    }
    for (result, info) in results.iter().zip(outputs) {
        if result.shape != info.shape || result.dtype() != info.dtype {
            return Err(KernelError::new(
                op,
                format!(
                    "output {:?} is declared {} {:?} but the kernel computes {} {:?}",
                    info.name,
                    info.dtype.name(),
                    info.shape,
                    result.dtype().name(),
                    result.shape
                ),
            ));
        }
    }
    Ok(())
}

/// The element count of `shape`, or `None` on overflow.
pub(crate) fn checked_product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The element count of `shape` as a kernel error on overflow.
pub(crate) fn element_count(op: &'static str, shape: &[usize]) -> Result<usize, KernelError> {
    checked_product(shape).ok_or_else(|| KernelError::new(op, format!("shape {shape:?} has too many elements")))
}

/// Checks that the op received between `min` and `max` inputs.
pub(crate) fn expect_inputs(op: &'static str, inputs: &[&Tensor], min: usize, max: usize) -> Result<(), KernelError> {
    if inputs.len() < min || inputs.len() > max {
        let expected = if min == max { format!("{min}") } else { format!("{min} to {max}") };
        return Err(KernelError::new(op, format!("expects {expected} inputs, got {}", inputs.len())));
    }
    Ok(())
}

/// The float data of input `index`, or an error naming what the input is.
pub(crate) fn f32_input<'a>(
    op: &'static str,
    inputs: &[&'a Tensor],
    index: usize,
    what: &str,
) -> Result<&'a [f32], KernelError> {
    let tensor = inputs.get(index).ok_or_else(|| KernelError::new(op, format!("missing input {index} ({what})")))?;
    match &tensor.data {
        TensorData::F32(v) => Ok(v),
        other => {
            Err(KernelError::new(op, format!("input {index} ({what}) must be float32, got {}", other.dtype().name())))
        }
    }
}

/// Input `index`, or an error naming what the input is.
pub(crate) fn input<'a>(
    op: &'static str,
    inputs: &[&'a Tensor],
    index: usize,
    what: &str,
) -> Result<&'a Tensor, KernelError> {
    inputs.get(index).copied().ok_or_else(|| KernelError::new(op, format!("missing input {index} ({what})")))
}

/// A tensor whose data length is known to match its shape by construction in the kernel.
pub(crate) fn tensor(op: &'static str, shape: Vec<usize>, data: TensorData) -> Result<Tensor, KernelError> {
    Tensor::new(shape, data).map_err(|e| KernelError::new(op, format!("internal: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DType;

    fn info(shape: &[usize]) -> TensorInfo {
        TensorInfo { name: "y".into(), dtype: DType::F32, shape: shape.to_vec() }
    }

    #[test]
    fn an_input_whose_data_disagrees_with_its_shape_is_an_error() {
        let bad = Tensor { shape: vec![2, 2], data: TensorData::F32(vec![1.0; 3]) };
        let err = run_op(&Op::Relu, &[&bad], &[]).unwrap_err();
        assert!(err.message.contains("3 elements"), "{err}");
    }

    #[test]
    fn an_output_that_disagrees_with_the_declared_info_is_an_error() {
        let x = Tensor::from_f32(vec![2], vec![-1.0, 1.0]);
        let err = run_op(&Op::Relu, &[&x], &[info(&[3])]).unwrap_err();
        assert!(err.message.contains("declared"), "{err}");
        // The matching declaration passes: relu([-1, 1]) = [0, 1].
        let y = run_op(&Op::Relu, &[&x], &[info(&[2])]).unwrap();
        assert_eq!(y[0].as_f32().unwrap(), &[0.0, 1.0]);
    }

    #[test]
    fn dropout_emits_its_mask_only_when_declared() {
        let x = Tensor::from_f32(vec![2], vec![3.0, 4.0]);
        let mask = TensorInfo { name: "m".into(), dtype: DType::Bool, shape: vec![2] };
        let both = run_op(&Op::Dropout, &[&x], &[info(&[2]), mask]).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].data, TensorData::Bool(vec![1, 1]));
        assert_eq!(run_op(&Op::Dropout, &[&x], &[info(&[2])]).unwrap().len(), 1);
    }
}
