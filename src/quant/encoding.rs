//! The encoding of one quantized tensor, in the SDK's and AIMET's convention:
//! `x = (q + offset) * scale`, `offset <= 0`, `q` on the unsigned grid `[0, 2^bw - 1]`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    pub bitwidth: u32,
    pub scale: f32,
    pub offset: i32,
    pub min: f32,
    pub max: f32,
    pub symmetric: bool,
}

/// How one tensor is represented on the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorEncoding {
    /// Kept in floating point at this bitwidth (16 or 32).
    Float {
        bitwidth: u32,
    },
    PerTensor(Encoding),
    /// One encoding per slice along `axis` (the output-channel axis of a weight).
    PerChannel {
        axis: usize,
        channels: Vec<Encoding>,
    },
    /// One encoding per block of `block_size` elements along `block_axis` (the input
    /// channels) of each slice along `axis` (the output channels): a weight's AIMET
    /// `PER_BLOCK`/`LPBQ` encodings. `blocks` is row-major over the weight's shape with
    /// `block_axis` divided by `block_size` and every other axis but `axis` of size 1.
    PerBlock {
        axis: usize,
        block_axis: usize,
        block_size: usize,
        blocks: Vec<Encoding>,
    },
}

impl TensorEncoding {
    /// The integer encodings it holds (one, one per channel, one per block); none for float.
    pub fn integer_encodings(&self) -> &[Encoding] {
        match self {
            TensorEncoding::Float { .. } => &[],
            TensorEncoding::PerTensor(e) => std::slice::from_ref(e),
            TensorEncoding::PerChannel { channels, .. } => channels,
            TensorEncoding::PerBlock { blocks, .. } => blocks,
        }
    }
}

/// The output of `quantize`: the optimized graph plus the representation of every tensor
/// that is not kept in float32. Tensors absent from `encodings` stay float32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedGraph {
    pub graph: crate::ir::Graph,
    pub encodings: std::collections::BTreeMap<crate::ir::TensorId, TensorEncoding>,
}
