//! The quantization a model carries itself (from QuantizeLinear/DequantizeLinear pairs the
//! importer stripped), as plain data in ONNX's own terms: `x = (q - zero_point) * scale` on the
//! integer type's own (signed or unsigned) grid. Turning it into the SDK/AIMET convention is the
//! quantizer's business (`crate::quant::model_encodings`).

use serde::{Deserialize, Serialize};

/// One tensor's encoding as the model states it.
///
/// Per tensor: `scales` and `zero_points` have one element and `axis` is `None`. Per axis:
/// one element per slice along `axis` (of the float tensor the encoding is recorded for).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEncoding {
    pub scales: Vec<f32>,
    /// On the integer type's own grid, e.g. `-128..=127` for int8, `0..=255` for uint8.
    pub zero_points: Vec<i64>,
    pub axis: Option<usize>,
    /// Bits of the integer type: 8, 16 or 32.
    pub bitwidth: u32,
    /// Whether the integer type is signed (int8/int16/int32) or unsigned (uint8/uint16).
    pub signed: bool,
}

impl ModelEncoding {
    /// Smallest value of the integer type: `-2^(bw-1)` when signed, else 0.
    pub fn qmin(&self) -> i64 {
        if self.signed { -(1i64 << (self.bitwidth.clamp(1, 32) - 1)) } else { 0 }
    }

    /// Largest value of the integer type: `2^(bw-1) - 1` when signed, else `2^bw - 1`.
    pub fn qmax(&self) -> i64 {
        let bw = self.bitwidth.clamp(1, 32);
        if self.signed { (1i64 << (bw - 1)) - 1 } else { (1i64 << bw) - 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ranges_of_the_onnx_types() {
        let e =
            |bitwidth, signed| ModelEncoding { scales: vec![1.0], zero_points: vec![0], axis: None, bitwidth, signed };
        assert_eq!((e(8, false).qmin(), e(8, false).qmax()), (0, 255));
        assert_eq!((e(8, true).qmin(), e(8, true).qmax()), (-128, 127));
        assert_eq!((e(16, false).qmin(), e(16, false).qmax()), (0, 65535));
        assert_eq!((e(32, true).qmin(), e(32, true).qmax()), (i32::MIN as i64, i32::MAX as i64));
    }
}
