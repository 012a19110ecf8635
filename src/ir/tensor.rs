//! Dense host tensors: element types, shapes and owned data.
//!
//! **Invariant:** `data.len() == shape.iter().product()` for every `Tensor` built through
//! [`Tensor::new`]; the element type is the variant of [`TensorData`].

use serde::{Deserialize, Serialize};

/// Element types the IR carries. Float activations and weights are `F32`; integer types
/// appear in shape arithmetic (Reshape targets, Gather indices) and are folded away before
/// quantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DType {
    F32,
    I64,
    I32,
    Bool,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
            DType::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::Bool => "bool",
        }
    }
}

/// Owned element storage. Bool is kept as one byte per element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<u8>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dense, row-major tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// The element count does not match the shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor of shape {shape:?} needs {expected} elements, got {got}")]
pub struct ShapeMismatch {
    pub shape: Vec<usize>,
    pub expected: usize,
    pub got: usize,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, ShapeMismatch> {
        let expected = shape.iter().product::<usize>();
        if expected != data.len() {
            return Err(ShapeMismatch { shape, expected, got: data.len() });
        }
        Ok(Tensor { shape, data })
    }

    /// A float tensor; panics only on a programming error (shape and data disagree).
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor::new(shape, TensorData::F32(data)).expect("float tensor shape matches its data")
    }

    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Tensor {
        Tensor::new(shape, TensorData::I64(data)).expect("int64 tensor shape matches its data")
    }

    pub fn scalar_f32(value: f32) -> Tensor {
        Tensor::from_f32(vec![], vec![value])
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Integer contents widened to i64 (shape arithmetic); `None` for float data.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        match &self.data {
            TensorData::I64(v) => Some(v.clone()),
            TensorData::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::Bool(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::F32(_) => None,
        }
    }

    /// Contents converted to f32, whatever the element type.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// Row-major strides of `shape`, in elements.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_a_shape_that_disagrees_with_the_data() {
        let err = Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 5])).unwrap_err();
        assert_eq!((err.expected, err.got), (6, 5));
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides_of(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides_of(&[]), Vec::<usize>::new());
    }
}
