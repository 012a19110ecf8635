//! The four float8 formats of ONNX (opset 19): E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ. Codes are
//! decoded exactly; encoding rounds to the nearest representable value, ties to the even
//! code, and out-of-range values saturate to the largest finite value when `saturate` (ONNX
//! Cast's default), else become infinity (E5M2) or NaN (the formats without infinity).
//!
//! | format | exponent bias | infinity | NaN | largest finite | negative zero |
//! |---|---|---|---|---|---|
//! | E4M3FN | 7 | none | S.1111.111 | 448 | yes |
//! | E4M3FNUZ | 8 | none | 0x80 | 240 | no |
//! | E5M2 | 15 | S.11111.00 | S.11111.{01,10,11} | 57344 | yes |
//! | E5M2FNUZ | 16 | none | 0x80 | 57344 | no |

use std::sync::OnceLock;

use super::tensor::DType;

struct Format {
    exponent_bits: u32,
    mantissa_bits: u32,
    bias: i32,
    /// Codes whose exponent field is all ones are infinity/NaN (E5M2), as in IEEE 754.
    ieee_specials: bool,
    /// Only 0x80 is NaN and there is no negative zero (the FNUZ formats).
    unsigned_zero: bool,
}

fn format(dtype: DType) -> &'static Format {
    const E4M3FN: Format =
        Format { exponent_bits: 4, mantissa_bits: 3, bias: 7, ieee_specials: false, unsigned_zero: false };
    const E4M3FNUZ: Format =
        Format { exponent_bits: 4, mantissa_bits: 3, bias: 8, ieee_specials: false, unsigned_zero: true };
    const E5M2: Format =
        Format { exponent_bits: 5, mantissa_bits: 2, bias: 15, ieee_specials: true, unsigned_zero: false };
    const E5M2FNUZ: Format =
        Format { exponent_bits: 5, mantissa_bits: 2, bias: 16, ieee_specials: false, unsigned_zero: true };
    match dtype {
        DType::F8E4M3FN => &E4M3FN,
        DType::F8E4M3FNUZ => &E4M3FNUZ,
        DType::F8E5M2 => &E5M2,
        _ => &E5M2FNUZ,
    }
}

/// The value of `code` in the float8 format `dtype`.
pub fn decode(dtype: DType, code: u8) -> f32 {
    let f = format(dtype);
    if f.unsigned_zero && code == 0x80 {
        return f32::NAN;
    }
    let sign = if code & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let magnitude = code & 0x7F;
    let exponent = i32::from(magnitude >> f.mantissa_bits);
    let mantissa = f32::from(magnitude & ((1 << f.mantissa_bits) - 1));
    let max_exponent = (1 << f.exponent_bits) - 1;
    if f.ieee_specials && exponent == max_exponent {
        return if mantissa == 0.0 { sign * f32::INFINITY } else { f32::NAN };
    }
    if !f.ieee_specials && !f.unsigned_zero && magnitude == 0x7F {
        return f32::NAN; // E4M3FN: S.1111.111
    }
    let scale = (1u32 << f.mantissa_bits) as f32;
    let value = if exponent == 0 {
        mantissa / scale * 2f32.powi(1 - f.bias)
    } else {
        (1.0 + mantissa / scale) * 2f32.powi(exponent - f.bias)
    };
    sign * value
}

/// The positive finite codes of each format, sorted by value (a code's value grows with it).
fn positive_codes(dtype: DType) -> &'static [(f32, u8)] {
    static TABLES: [OnceLock<Vec<(f32, u8)>>; 4] = [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match dtype {
        DType::F8E4M3FN => 0,
        DType::F8E4M3FNUZ => 1,
        DType::F8E5M2 => 2,
        _ => 3,
    };
    TABLES[slot].get_or_init(|| (0u8..0x80).map(|c| (decode(dtype, c), c)).filter(|(v, _)| v.is_finite()).collect())
}

/// The code of `x` in the float8 format `dtype` (see the module docs for rounding).
pub fn encode(dtype: DType, x: f32, saturate: bool) -> u8 {
    let f = format(dtype);
    // ONNX's NaN codes: 0x80 (FNUZ), S.11111.10 (E5M2), S.1111.111 (E4M3FN).
    let nan = if f.unsigned_zero {
        0x80
    } else if f.ieee_specials {
        0x7E
    } else {
        0x7F
    };
    if x.is_nan() {
        return nan;
    }
    let sign_bit = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let table = positive_codes(dtype);
    let &(max, max_code) = table.last().expect("every format has finite codes");
    let a = x.abs();
    let overflow = || {
        if saturate {
            max_code | sign_bit
        } else if f.ieee_specials {
            0x7C | sign_bit
        } else {
            nan | sign_bit
        }
    };
    if a.is_infinite() {
        return overflow();
    }
    if a > max {
        // Beyond the largest finite value: saturate, or overflow once past half a step.
        let step = max - table[table.len() - 2].0;
        return if saturate || a < max + step / 2.0 { max_code | sign_bit } else { overflow() };
    }
    // The first code at or above `a`, and the one below it: the nearest wins, ties to even.
    let hi = table.partition_point(|&(v, _)| v < a);
    let (value_hi, code_hi) = table[hi];
    let code = if hi == 0 || value_hi == a {
        code_hi
    } else {
        let (value_lo, code_lo) = table[hi - 1];
        let (below, above) = (a - value_lo, value_hi - a);
        if below < above || (below == above && code_lo % 2 == 0) { code_lo } else { code_hi }
    };
    // Zero keeps its sign where the format has a negative zero.
    if code == 0 && f.unsigned_zero { 0 } else { code | sign_bit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_values_and_specials() {
        assert_eq!(decode(DType::F8E4M3FN, 0x7E), 448.0);
        assert!(decode(DType::F8E4M3FN, 0x7F).is_nan());
        assert_eq!(decode(DType::F8E4M3FNUZ, 0x7F), 240.0);
        assert!(decode(DType::F8E4M3FNUZ, 0x80).is_nan());
        assert_eq!(decode(DType::F8E5M2, 0x7B), 57344.0);
        assert_eq!(decode(DType::F8E5M2, 0x7C), f32::INFINITY);
        assert_eq!(decode(DType::F8E5M2FNUZ, 0x7F), 57344.0);
        // Smallest subnormals: 2^-9 (E4M3FN), 2^-10 (E4M3FNUZ), 2^-16 (E5M2), 2^-17 (E5M2FNUZ).
        assert_eq!(decode(DType::F8E4M3FN, 1), 2f32.powi(-9));
        assert_eq!(decode(DType::F8E4M3FNUZ, 1), 2f32.powi(-10));
        assert_eq!(decode(DType::F8E5M2, 1), 2f32.powi(-16));
        assert_eq!(decode(DType::F8E5M2FNUZ, 1), 2f32.powi(-17));
    }

    #[test]
    fn every_finite_code_round_trips() {
        for dtype in [DType::F8E4M3FN, DType::F8E4M3FNUZ, DType::F8E5M2, DType::F8E5M2FNUZ] {
            for code in 0..=255u8 {
                let v = decode(dtype, code);
                if v.is_finite() && !(v == 0.0 && code != 0) {
                    assert_eq!(encode(dtype, v, true), code, "{dtype:?} {code:#x} = {v}");
                }
            }
        }
    }

    #[test]
    fn rounding_ties_to_even_and_saturation() {
        // E4M3FN around 1: steps of 1/8; 1 + 1/16 is a tie between 1.0 (0x38) and 1.125 (0x39).
        assert_eq!(encode(DType::F8E4M3FN, 1.0625, true), 0x38);
        assert_eq!(encode(DType::F8E4M3FN, 1.07, true), 0x39);
        assert_eq!(encode(DType::F8E4M3FN, 1000.0, true), 0x7E);
        assert_eq!(encode(DType::F8E4M3FN, -1000.0, true), 0xFE);
        assert_eq!(encode(DType::F8E4M3FN, 1000.0, false), 0x7F);
        assert_eq!(encode(DType::F8E5M2, 1e6, false), 0x7C);
        assert_eq!(encode(DType::F8E5M2, f32::NEG_INFINITY, true), 0xFB);
        assert_eq!(encode(DType::F8E4M3FNUZ, -0.0, true), 0);
    }
}
