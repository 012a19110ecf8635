//! The closed set of operations the IR carries, with their attributes already resolved.
//!
//! **Invariant:** every attribute an ONNX model passes as a constant input (Reshape's shape,
//! Clip's bounds, Pad's pads, Squeeze/Unsqueeze axes) is resolved into the variant by the
//! importer; a node's `inputs` hold only data tensors (and the weights/biases of Conv, Gemm
//! and BatchNormalization). Negative axes are normalized to non-negative ones at import.

use serde::{Deserialize, Serialize};

/// Spatial attributes shared by Conv and the pools. `pads` holds the ONNX layout:
/// all begin pads, then all end pads (`[top, left, bottom, right]` for 2-D).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
}

/// Conv: inputs `[X, W]` or `[X, W, B]`, `W` of shape `[M, C/group, k...]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conv {
    pub window: Window,
    pub group: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pool {
    pub window: Window,
    pub ceil_mode: bool,
    /// AveragePool only: padded cells count in the divisor.
    pub count_include_pad: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Inputs `[X, W]` or `[X, W, B]`.
    Conv(Conv),
    /// `Y = alpha * A' * B' + beta * C`; inputs `[A, B]` or `[A, B, C]`.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    /// numpy matmul semantics (batched, broadcast).
    MatMul,
    /// Binary elementwise ops with numpy broadcasting.
    Add,
    Sub,
    Mul,
    Div,
    Relu,
    Clip {
        min: f32,
        max: f32,
    },
    Sigmoid,
    Tanh,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    MaxPool(Pool),
    AveragePool(Pool),
    GlobalAveragePool,
    GlobalMaxPool,
    /// Inference form; inputs `[X, scale, B, mean, var]`.
    BatchNormalization {
        epsilon: f32,
    },
    Flatten {
        axis: usize,
    },
    /// Target shape fully resolved (no 0 or -1 entries).
    Reshape {
        shape: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    /// `coerce_2d` is the opset < 13 meaning: flatten to 2-D at `axis`, softmax over the rows.
    Softmax {
        axis: usize,
        coerce_2d: bool,
    },
    Squeeze {
        axes: Vec<usize>,
    },
    Unsqueeze {
        axes: Vec<usize>,
    },
    Identity,
    Dropout,
    /// `pads` as ONNX gives them: all begins then all ends; may be negative (cropping).
    Pad {
        pads: Vec<i64>,
        mode: PadMode,
        value: f32,
    },
    /// A change of representation inserted by `quantize` where an op of one precision feeds
    /// an op of another (the SDK's automatic convert ops for mixed precision): the values pass
    /// through; the output tensor carries the consumer's representation.
    Convert,
}

impl Op {
    /// The ONNX op type this variant corresponds to (used in diagnostics and reports).
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::Add => "Add",
            Op::Sub => "Sub",
            Op::Mul => "Mul",
            Op::Div => "Div",
            Op::Relu => "Relu",
            Op::Clip { .. } => "Clip",
            Op::Sigmoid => "Sigmoid",
            Op::Tanh => "Tanh",
            Op::HardSigmoid { .. } => "HardSigmoid",
            Op::HardSwish => "HardSwish",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::BatchNormalization { .. } => "BatchNormalization",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Softmax { .. } => "Softmax",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Identity => "Identity",
            Op::Dropout => "Dropout",
            Op::Pad { .. } => "Pad",
            Op::Convert => "Convert",
        }
    }

    /// Inputs at these positions are parameters (weights, biases, BN statistics) rather
    /// than activations: they are quantized as params and live in `param_encodings`.
    pub fn param_inputs(&self) -> &'static [usize] {
        match self {
            Op::Conv(_) | Op::Gemm { .. } => &[1, 2],
            Op::BatchNormalization { .. } => &[1, 2, 3, 4],
            _ => &[],
        }
    }
}
