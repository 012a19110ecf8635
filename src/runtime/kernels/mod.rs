//! The kernel library the ops call (`crate::ops`, through [`crate::ir::Op::run`]): the heavy
//! numeric machinery (GEMM, convolution, windows, broadcasting), shared by the reference
//! interpreter, constant folding and the executor of compiled models.
//!
//! Each kernel derives its output shape from its inputs and attributes (it needs the geometry
//! anyway); `Op::run` checks the result against the infos shape inference declared, so a
//! disagreement between the two surfaces as a [`KernelError`] instead of silently wrong data.
//! Inputs are validated (`data.len() == product(shape)`) before any kernel indexes into them,
//! so no input can make a kernel panic.
//!
//! Kernels live in one file per family: [`conv`], [`gemm`] (Gemm and MatMul), [`elementwise`],
//! [`pool`], [`norm`] (BatchNormalization and Softmax) and [`shape_ops`].

#[cfg(target_arch = "x86_64")]
mod avx;
pub mod conv;
pub mod conv_transpose;
mod depthwise;
pub mod elementwise;
pub mod gemm;
mod gemv;
pub mod norm;
pub mod normalize;
pub mod pool;
pub mod qlinear;
pub mod quantize;
pub mod reduce;
pub mod resize;
pub mod shape_ops;
mod transpose;
mod window;

/// Test data shared by the kernels' tests.
#[cfg(test)]
pub(crate) mod test_values {
    /// A deterministic, irregular sequence of values in [-1, 1).
    pub fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut next = xorshift(seed.wrapping_mul(2_654_435_761).wrapping_add(1));
        (0..len).map(|_| (next() % 2000) as f32 / 1000.0 - 1.0).collect()
    }

    /// Marsaglia's xorshift32 from `state` (not 0): deterministic test inputs.
    pub fn xorshift(mut state: u32) -> impl FnMut() -> u32 {
        move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        }
    }
}

use crate::ir::{Tensor, TensorData};

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
