//! Per-block weight encodings (AIMET's `PER_BLOCK` and `LPBQ`): each output channel of a weight
//! split into blocks of `block_size` along its input-channel axis, each block with its own
//! scale (AIMET's encoding format specification, 1.0.0 and 2.0.0).
//!
//! Blocks are kept in the order of AIMET's scale tensor: the weight's shape with the block
//! axis divided by the block size and every axis other than the output-channel and block axes
//! of size 1, flattened row-major. For a Conv (`[out, in, k...]`) or a Gemm with `transB`
//! (`[out, in]`) that is channel-major: channel `c`'s blocks are `c * n .. (c + 1) * n`.
//!
//! LPBQ (low-power blockwise quantization) writes each block's scale as a small integer times
//! one float scale per output channel; the effective block scale is their product. The
//! decomposition is kept beside the effective encodings so that a file written back says what
//! AIMET's said.

use serde::{Deserialize, Serialize};

use crate::quant::encoding::Encoding;

/// A per-block encoding of one weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockEncoding {
    /// Bitwidth of the codes (AIMET's `int4` blocks: 4).
    pub bitwidth: u32,
    /// Input channels per block.
    pub block_size: u32,
    /// One encoding per block, in the scale tensor's order (see the module docs). For LPBQ
    /// the effective ones: `scale = int_scale * channel_scale`.
    pub blocks: Vec<Encoding>,
    /// LPBQ's decomposition of the block scales, when the file gave one.
    pub lpbq: Option<Lpbq>,
}

/// LPBQ's scales as AIMET writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lpbq {
    /// `per_block_int_scale`, one per block, in the blocks' order.
    pub int_scales: Vec<u32>,
    /// `per_channel_float_scale`, one per output channel, as written (float64: AIMET prints
    /// them from double precision, and writing them back must not move them).
    pub channel_scales: Vec<f64>,
}

impl BlockEncoding {
    pub fn enc_type(&self) -> &'static str {
        if self.lpbq.is_some() { "LPBQ" } else { "PER_BLOCK" }
    }

    pub fn symmetric(&self) -> bool {
        self.blocks.first().is_some_and(|b| b.symmetric)
    }
}

impl Lpbq {
    /// Bits of the integer scales: AIMET clips them to `[1, 2^bits]`, so the largest one (each
    /// channel's widest block is `2^bits` exactly) tells.
    pub fn scale_bits(&self) -> u32 {
        let max = self.int_scales.iter().copied().max().unwrap_or(1).max(2);
        u32::BITS - (max - 1).leading_zeros()
    }

    /// The effective scale of block `b` of channel `c`: one float32 rounding of the exact
    /// product (an integer of a few bits times a float64 is exact in float64), which is what
    /// QuantSim's float32 product of the two gives.
    pub fn block_scale(int_scale: u32, channel_scale: f64) -> f32 {
        (f64::from(int_scale) * channel_scale) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_bits_of_aimets_int_scales() {
        let l = |ints: Vec<u32>| Lpbq { int_scales: ints, channel_scales: vec![1.0] };
        assert_eq!(l(vec![16, 13, 4]).scale_bits(), 4);
        assert_eq!(l(vec![9, 3]).scale_bits(), 4);
        assert_eq!(l(vec![8]).scale_bits(), 3);
        assert_eq!(l(vec![1]).scale_bits(), 1);
    }
}
