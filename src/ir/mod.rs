//! The typed core IR: tensors, ops and graphs, plus shape inference.
//!
//! **Invariant:** plain data. No salsa, no IO, no miette: every other layer builds on this
//! one, and it knows nothing about where graphs come from or where they go.

pub mod float8;
mod graph;
mod model_encoding;
pub mod shape;
mod tensor;
#[cfg(test)]
pub mod test_graph;

pub use crate::ops::{Conv, Op, PadMode, Pool, Window};
pub use graph::{BatchNormFold, BoundInput, Graph, InvalidGraph, Node, TensorId, TensorInfo};
pub use model_encoding::ModelEncoding;
pub use tensor::{DType, ShapeMismatch, Tensor, TensorData, strides_of};
