//! Float32 kernels, one per IR op, shared by the reference interpreter, constant folding and
//! the executor of compiled models.

use crate::ir::{Op, Tensor, TensorInfo};

/// A kernel could not run: unsupported dtype or an input that disagrees with its shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message}")]
pub struct KernelError {
    pub op: &'static str,
    pub message: String,
}

/// Runs one op on its inputs. `outputs` are the inferred output tensor infos (dtype and
/// shape), which the kernels use instead of recomputing shapes.
pub fn run_op(op: &Op, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
    let _ = (inputs, outputs);
    Err(KernelError { op: op.type_name(), message: "kernel not written yet".into() })
}
