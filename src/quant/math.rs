//! Encoding math: turning a float range into an [`Encoding`], and moving values between the
//! float line and the integer grid (`quantize`, `dequantize`, fake-quant).
//!
//! # Conventions (shared by the SDK, AIMET and this crate)
//!
//! `x = (q + offset) * scale`, `q` on the unsigned grid `[0, 2^bw - 1]`, `offset <= 0`. The
//! SDK guide's prose calls `-offset` "the offset" (200 in its worked example); that positive
//! number is [`Encoding::zero_point`] here, and the QNN/AIMET files store `offset = -200`.
//!
//! ## Asymmetric (the SDK's "tf" mode, `Schema::Asymmetric`)
//!
//! Exactly the steps of the SDK guide (QNN "Quantization" page, digest §5.2):
//! 1. minimum range: `max = max(max, min + 0.0001)` ([`MIN_RANGE`]; AIMET's own analyzer uses
//!    0.01, the SDK documents 0.0001 and we follow the SDK);
//! 2. zero exactly representable: all values >= 0 -> `min = 0`; all <= 0 -> `max = 0`; mixed
//!    signs -> `scale = (max - min) / (2^bw - 1)`, `offset = -round(-min / scale)` and the range
//!    is shifted to `[offset * scale, offset * scale + (max - min)]`, so zero lands on the
//!    integer `-offset` (AIMET `TfEncodingAnalyzer`: the nudge rounds half away from zero, as
//!    C's `round` does; `[-5.1, 5.1]` hits the tie `127.5` and goes to 128 as the guide says);
//! 3. `scale = (max - min) / (2^bw - 1)`, `offset = round(min / scale)`.
//!
//! The stored `min`/`max` are the nudged ones, recomputed from the stored (f32) `scale` and
//! `offset` by [`Encoding::from_scale_offset`], so that an encoding written to a file and read
//! back is bit-identical.
//!
//! ## Symmetric (`Schema::Symmetric`, and every per-channel weight)
//!
//! `new_max = max(|min|, |max|)` (after the minimum-range rule). Chosen convention: AIMET's
//! (`TfEncodingAnalyzer`, symmetric branch), which is what the SDK guide's own per-channel
//! override example shows: `scale = new_max / (2^(bw-1) - 1)` (equivalently
//! `2 * new_max / (2^bw - 2)`), `offset = -2^(bw-1)`, so the grid is `[-2^(bw-1), 2^(bw-1) - 1]`
//! steps: `min = -2^(bw-1) * scale` (one step beyond `-new_max`) and `max = new_max`.
//! Check against the guide: channel 0 has `max 0.7011175155639648`, `scale
//! 0.005520610358771377 = 0.7011175155639648 / 127` and `min -0.7066381259227362 = -128 *
//! scale`. The alternative `scale = 2 * new_max / (2^bw - 1)` would give 0.0054989..., which
//! the guide's files do not contain. A symmetric encoding therefore represents the signed grid
//! of the SDK ("int#_t data with offset 0") on the unsigned convention: `q_signed = q - 2^(bw-1)`.
//!
//! ## Adjusted (the legacy `adjusted` quantizer, 8-bit weights)
//!
//! Same minimum-range and zero rules as asymmetric, but zero is made exact by *widening* the
//! range instead of shifting it ("expanding max or lowering min if necessary"): with `z =
//! round(-min / scale)` fixed, `scale = max(-min / z, max / (2^bw - 1 - z))`, so the grid
//! `[-z * scale, (2^bw - 1 - z) * scale]` covers the whole `[min, max]` and nothing is clipped.
//!
//! ## Restricted steps (`restrict_quantization_steps = "MIN MAX"`)
//!
//! The SDK's option for 16-bit MatMul: a signed grid `[MIN, MAX]` (hex, e.g. `-0x8000 0x7FFF`),
//! `scale = (max - min) / (MAX - MIN)` of the symmetric range `[-new_max, new_max]`, offset
//! `MIN` on the unsigned convention. With `MAX - MIN = 2^bw - 1` this is
//! `scale = 2 * new_max / (2^bw - 1)`, which clips nothing at either end.
//!
//! ## 32-bit (biases)
//!
//! QNN stores int32 biases as `SFIXED_POINT_32` with offset 0 and `scale = in_scale * w_scale`.
//! On the unsigned convention that is `offset = -2^31` (`i32::MIN`), `q_unsigned = q_signed +
//! 2^31`; see [`Encoding::int32_with_scale`]. An asymmetric 32-bit range could need an offset
//! below `i32::MIN`, which no SDK tensor type has, so 32-bit encodings are always symmetric.
//!
//! ## Rounding of values
//!
//! `quantize(x) = clamp(round_half_even(x / scale) - offset, 0, 2^bw - 1)`, computed like
//! AIMET QuantSim and torch do on float32 tensors (`x / scale` in f32, ties to even), and
//! `dequantize(q) = (q + offset) * scale` in f32 (exact integer times scale, one rounding). For
//! 32-bit grids f32 cannot hold every integer, so both run in f64 there.

use super::encoding::Encoding;
use super::settings::Schema;

/// The SDK's minimum encoding range ("Minimum range of 0.0001 is enforced").
pub const MIN_RANGE: f64 = 0.0001;

/// Number of steps of a `bitwidth`-bit grid: `2^bw - 1`. Bitwidths are clamped to `1..=32`
/// (the settings and override parsers reject anything else before it gets here).
pub fn grid_steps(bitwidth: u32) -> f64 {
    ((1u64 << bitwidth.clamp(1, 32)) - 1) as f64
}

/// `2^(bw-1)`: the magnitude of a symmetric encoding's offset.
pub fn symmetric_offset_magnitude(bitwidth: u32) -> i64 {
    1i64 << (bitwidth.clamp(1, 32) - 1)
}

impl Encoding {
    /// The encoding of the range `[min, max]` under `schema`, at `bitwidth` bits (see the
    /// module docs for the exact rules). Non-finite bounds are treated as 0.
    pub fn from_range(min: f32, max: f32, bitwidth: u32, schema: Schema) -> Encoding {
        match schema {
            Schema::Asymmetric if bitwidth < 32 => Encoding::asymmetric(min, max, bitwidth),
            _ => Encoding::symmetric(min, max, bitwidth),
        }
    }

    /// The SDK's TF-style asymmetric encoding of `[min, max]` (module docs, "Asymmetric").
    pub fn asymmetric(min: f32, max: f32, bitwidth: u32) -> Encoding {
        if bitwidth >= 32 {
            return Encoding::symmetric(min, max, bitwidth);
        }
        let steps = grid_steps(bitwidth);
        let mut lo = finite_or_zero(min);
        let mut hi = finite_or_zero(max).max(lo + MIN_RANGE);
        if lo >= 0.0 {
            lo = 0.0;
        } else if hi <= 0.0 {
            hi = 0.0;
        } else {
            // Shift the range so that zero falls on an integer of the grid.
            let scale = (hi - lo) / steps;
            let zero = (-lo / scale).round().clamp(0.0, steps);
            let shifted_lo = -zero * scale;
            hi = shifted_lo + (hi - lo);
            lo = shifted_lo;
        }
        let scale = (hi - lo) / steps;
        let offset = (lo / scale).round().clamp(-steps, 0.0);
        Encoding::from_scale_offset(bitwidth, scale as f32, offset as i64, false)
    }

    /// The symmetric encoding of `[min, max]` (module docs, "Symmetric").
    pub fn symmetric(min: f32, max: f32, bitwidth: u32) -> Encoding {
        let lo = finite_or_zero(min);
        let hi = finite_or_zero(max).max(lo + MIN_RANGE);
        let new_max = lo.abs().max(hi.abs());
        let positive_steps = (symmetric_offset_magnitude(bitwidth) - 1).max(1) as f64;
        let scale = new_max / positive_steps;
        Encoding::from_scale_offset(bitwidth, scale as f32, -symmetric_offset_magnitude(bitwidth), true)
    }

    /// The legacy `adjusted` encoding of `[min, max]` (module docs, "Adjusted").
    pub fn adjusted(min: f32, max: f32, bitwidth: u32) -> Encoding {
        if bitwidth >= 32 {
            return Encoding::symmetric(min, max, bitwidth);
        }
        let steps = grid_steps(bitwidth);
        let lo = finite_or_zero(min).min(0.0);
        let hi = finite_or_zero(max).max(lo + MIN_RANGE).max(0.0);
        let mut scale = (hi - lo) / steps;
        let zero = (-lo / scale).round().clamp(0.0, steps);
        if zero > 0.0 {
            scale = scale.max(-lo / zero);
        }
        if zero < steps {
            scale = scale.max(hi / (steps - zero));
        }
        Encoding::from_scale_offset(bitwidth, scale as f32, -(zero as i64), false)
    }

    /// The symmetric encoding of `[min, max]` on the signed grid `[grid_min, grid_max]` (module
    /// docs, "Restricted steps"); `None` when that grid does not fit `bitwidth` bits.
    pub fn restricted(min: f32, max: f32, bitwidth: u32, (grid_min, grid_max): (i64, i64)) -> Option<Encoding> {
        let half = symmetric_offset_magnitude(bitwidth);
        if grid_min < -half || grid_max > half - 1 || grid_max <= grid_min || grid_min > 0 {
            return None;
        }
        let lo = finite_or_zero(min);
        let hi = finite_or_zero(max).max(lo + MIN_RANGE);
        let new_max = lo.abs().max(hi.abs());
        let scale = 2.0 * new_max / (grid_max - grid_min) as f64;
        // The unsigned grid's offset is `grid_min`; a `grid_min` above `-2^(bw-1)` leaves the
        // lowest codes unused, exactly as the SDK's signed grid does.
        Some(Encoding::from_scale_offset(bitwidth, scale as f32, grid_min, true))
    }

    /// The encoding with this `scale` and `offset`; `min`/`max` are the float values of grid
    /// points 0 and `2^bw - 1`. `offset` is clamped into `i32` (32-bit symmetric: `i32::MIN`).
    pub fn from_scale_offset(bitwidth: u32, scale: f32, offset: i64, symmetric: bool) -> Encoding {
        let offset = offset.clamp(i32::MIN as i64, 0) as i32;
        let scale64 = scale as f64;
        Encoding {
            bitwidth,
            scale,
            offset,
            min: (offset as f64 * scale64) as f32,
            max: ((offset as f64 + grid_steps(bitwidth)) * scale64) as f32,
            symmetric,
        }
    }

    /// A signed 32-bit encoding with a given scale (an int32 bias: `scale = in_scale *
    /// w_scale`): QNN's `SFIXED_POINT_32` with offset 0, which is `offset = -2^31` on the
    /// unsigned grid.
    pub fn int32_with_scale(scale: f32) -> Encoding {
        Encoding::from_scale_offset(32, scale, i32::MIN as i64, true)
    }

    /// Largest grid value, `2^bw - 1`.
    pub fn qmax(&self) -> u32 {
        grid_steps(self.bitwidth) as u32
    }

    /// The SDK guide's positive offset: the grid value that represents 0.0 (`-offset`).
    pub fn zero_point(&self) -> i64 {
        -(self.offset as i64)
    }

    /// `clamp(round_half_even(x / scale) - offset, 0, 2^bw - 1)`. NaN maps to 0.
    pub fn quantize(&self, x: f32) -> u32 {
        let steps = grid_steps(self.bitwidth);
        let rounded = if self.bitwidth <= 24 {
            // The sign of a zero does not survive the subtraction and clamp below.
            round_ties_even_f32(x / self.scale) as f64
        } else {
            (x as f64 / self.scale as f64).round_ties_even()
        };
        // `as` saturates and maps NaN to 0.
        (rounded - self.offset as f64).clamp(0.0, steps) as u32
    }

    /// `(q + offset) * scale`.
    pub fn dequantize(&self, q: u32) -> f32 {
        let shifted = q as i64 + self.offset as i64;
        if self.bitwidth <= 24 {
            // |shifted| < 2^24: exact in f32, so this is one correctly rounded product.
            shifted as f32 * self.scale
        } else {
            (shifted as f64 * self.scale as f64) as f32
        }
    }

    /// `dequantize(quantize(x))`: the value the quantized model computes with.
    pub fn fake_quant(&self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }
}

/// [`Encoding::fake_quant`] of every value of one run that shares `scale` and `offset` (on
/// the grid of `bitwidth` bits), in place and without the codes: vector instructions
/// throughout, compiled for AVX-512 and AVX2 besides the baseline and picked at run time (the
/// same operations on every path, so the same bits). Through the codes, each element went
/// through a conversion of a 64-bit integer, which AVX2 has no vector instruction for: 5 % of
/// MobileNetV2's `htp` simulate in the profile, and most of the checker's time on weights.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn fake_quant_run(values: &mut [f32], scale: f32, offset: i32, bitwidth: u32) {
    // One loop per kind of grid, so that no element tests the width.
    let max = grid_steps(bitwidth);
    if bitwidth <= 24 {
        // The shifted grid's ends, rounded to float32 as `dequantize` rounds a code plus the
        // offset.
        let (lo, hi) = (offset as f32, (f64::from(offset) + max) as f32);
        for v in values.iter_mut() {
            *v = narrow_round_trip(*v, scale, lo, hi);
        }
    } else {
        for v in values.iter_mut() {
            *v = wide_round_trip(*v, scale, offset, max);
        }
    }
}

/// The round trip on a grid of at most 24 bits, all in float32, as QuantSim computes it: the
/// division rounded to an integer, clamped to the shifted grid's ends `lo..=hi` (offset and
/// offset plus the largest code, each rounded to float32), times the scale. That is
/// `dequantize(quantize(x))` bit for bit: `dequantize` rounds the clamped code plus the offset
/// to float32, and rounding is monotonic, so clamping the (integral, float32) rounded value to
/// the rounded ends gives the same float32; NaN goes to `lo`, as a code of 0 does.
#[inline(always)]
fn narrow_round_trip(x: f32, scale: f32, lo: f32, hi: f32) -> f32 {
    let rounded = round_ties_even_f32(x / scale);
    let clamped = if rounded > lo { rounded } else { lo };
    let clamped = if clamped < hi { clamped } else { hi };
    clamped * scale
}

/// The round trip on a wider grid (32-bit biases), in float64: the clamped grid value plus
/// the offset is an integer below 2^53, exact there, and rounding the product to float32 is
/// what `dequantize` does.
#[inline(always)]
fn wide_round_trip(x: f32, scale: f32, offset: i32, max: f64) -> f32 {
    let rounded = (f64::from(x) / f64::from(scale)).round_ties_even();
    let q = rounded - f64::from(offset);
    let clamped = if q > 0.0 { q } else { 0.0 };
    let clamped = if clamped < max { clamped } else { max };
    ((clamped + f64::from(offset)) * f64::from(scale)) as f32
}

/// `y.round_ties_even()` up to the sign of a zero result, without the libm call it compiles
/// to on x86-64 without SSE4.1 (`rintf` was 3 % of a quantized build's profile, and 9 % of a
/// rebuild after an encoding edit, which quantizes every weight again): below 2^22, adding and
/// subtracting 1.5 * 2^23 lands on the integer grid of [2^23, 2^24), where float32 addition
/// rounds to nearest, ties to even. Tested over every 61st bit pattern in `compile::repr`.
#[inline]
pub fn round_ties_even_f32(y: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    if y.abs() < 4_194_304.0 { (y + SHIFT) - SHIFT } else { y.round_ties_even() }
}

fn finite_or_zero(x: f32) -> f64 {
    if x.is_finite() { x as f64 } else { 0.0 }
}

/// Rounds an f32 to the nearest IEEE half-precision value (ties to even), returned as f32:
/// the fake-quant of a tensor kept in float16. Overflow goes to infinity, as a cast does.
pub fn round_to_f16(x: f32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // Largest finite half is 65504; values from 65520 up round to infinity.
    if x.abs() >= 65520.0 {
        return f32::INFINITY.copysign(x);
    }
    let biased = ((x.to_bits() >> 23) & 0xff) as i32;
    let exponent = (biased - 127).max(-14);
    // A half has 10 fraction bits; below 2^-14 its spacing stays 2^-24 (subnormals).
    let quantum = 2f32.powi(exponent - 10);
    (x / quantum).round_ties_even() * quantum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_rounding_is_round_ties_even_for_every_kind_of_float() {
        // Every 61st bit pattern (~70 million floats), plus the ties and the range edges.
        let mut checked = 0u64;
        let edges = [0.5f32, 1.5, 2.5, -0.5, -2.5, 4_194_303.5, 4_194_304.0, 4_194_304.5, 8_388_607.5, 8_388_608.0];
        let sweep = (0..u32::MAX).step_by(61).map(f32::from_bits);
        for y in edges.into_iter().chain(edges.map(|e| -e)).chain(sweep) {
            let (fast, exact) = (round_ties_even_f32(y), y.round_ties_even());
            assert!(fast == exact || (fast.is_nan() && exact.is_nan()), "{y:e}: {fast:e} vs {exact:e}");
            checked += 1;
        }
        assert!(checked > 70_000_000);
    }

    #[test]
    fn adjusted_widens_instead_of_shifting() {
        // [-1.0, 2.0] at 8 bits: scale 3/255 = 0.0117647, -min/scale = 85 exactly, so no
        // adjustment is needed and it equals the asymmetric encoding.
        let a = Encoding::adjusted(-1.0, 2.0, 8);
        assert_eq!((a.offset, a.scale), (-85, (3.0f64 / 255.0) as f32));
        // [-1.0, 1.51]: scale 2.51/255 = 0.00984314, -min/scale = 101.59 -> z = 102.
        // Shifting (asymmetric) would give max = (255-102)*0.00984314 = 1.506 < 1.51 (clipped);
        // widening keeps z = 102 and takes scale = max(1/102, 1.51/153) = 0.00986928.
        let a = Encoding::adjusted(-1.0, 1.51, 8);
        assert_eq!(a.offset, -102);
        assert!((a.scale as f64 - 1.51 / 153.0).abs() < 1e-9, "{}", a.scale);
        assert!(a.max >= 1.51 && a.min <= -1.0, "{a:?}");
        let shifted = Encoding::asymmetric(-1.0, 1.51, 8);
        assert!(shifted.max < 1.51, "asymmetric clips the top: {shifted:?}");
        // All-positive data: zero is the grid's first point, as in asymmetric.
        let a = Encoding::adjusted(0.5, 2.0, 8);
        assert_eq!(a.offset, 0);
        assert!((a.scale as f64 - 2.0 / 255.0).abs() < 1e-9);
    }

    #[test]
    fn restricted_steps_follow_the_sdk_formula() {
        // "-0x80 0x7F" on [-0.5, 1.0]: new_max 1.0, scale = 2 / 255, offset -128.
        let e = Encoding::restricted(-0.5, 1.0, 8, (-0x80, 0x7F)).unwrap();
        assert_eq!(e.offset, -128);
        assert!((e.scale as f64 - 2.0 / 255.0).abs() < 1e-9);
        assert!(e.symmetric);
        // "-0x8000 0x7FFF" at 16 bits: scale = 2 * 3 / 65535.
        let e = Encoding::restricted(-3.0, 2.0, 16, (-0x8000, 0x7FFF)).unwrap();
        assert_eq!(e.offset, -32768);
        assert!((e.scale as f64 - 6.0 / 65535.0).abs() < 1e-12);
        // A 16-bit grid does not fit 8 bits.
        assert_eq!(Encoding::restricted(-1.0, 1.0, 8, (-0x8000, 0x7FFF)), None);
        assert_eq!(Encoding::restricted(-1.0, 1.0, 8, (0x10, 0x7F)), None);
    }

    fn close(a: f32, b: f64, tol: f64) -> bool {
        (a as f64 - b).abs() <= tol
    }

    /// The SDK guide's worked example ("Quantization Example"/"Dequantization Example"):
    /// input [-1.8, -1.0, 0, 0.5], 8 bit -> encoding-min -1.803922, encoding-max 0.496078,
    /// step 0.009020, offset 200 (QNN sign: -200), q = [0, 89, 200, 255], dequantized
    /// [-1.8039, -1.0011, 0.0000, 0.4961].
    ///
    /// By hand: scale = 2.3 / 255 = 0.00901961; -min/scale = 1.8 / 0.00901961 = 199.565 ->
    /// 200; min = -200 * 0.00901961 = -1.803922; max = min + 2.3 = 0.496078.
    #[test]
    fn reproduces_the_sdk_worked_example() {
        let data = [-1.8f32, -1.0, 0.0, 0.5];
        let enc = Encoding::asymmetric(-1.8, 0.5, 8);
        assert_eq!(format!("{:.6}", enc.min), "-1.803922");
        assert_eq!(format!("{:.6}", enc.max), "0.496078");
        assert_eq!(format!("{:.6}", enc.scale), "0.009020");
        assert_eq!(enc.offset, -200);
        assert_eq!(enc.zero_point(), 200);
        assert!(!enc.symmetric);
        let q: Vec<u32> = data.iter().map(|&x| enc.quantize(x)).collect();
        assert_eq!(q, vec![0, 89, 200, 255]);
        // The guide prints 4 decimals; its "-1.0011" is -111 * 0.00901961 = -1.0011765
        // truncated (its "0.4961" is 0.4960784 rounded), so compare within one unit of the
        // last printed digit rather than by formatting.
        let deq: Vec<f32> = q.iter().map(|&q| enc.dequantize(q)).collect();
        for (got, printed) in deq.iter().zip([-1.8039, -1.0011, 0.0000, 0.4961]) {
            assert!(close(*got, printed, 1e-4), "{got} vs printed {printed}");
        }
        assert_eq!(deq[2], 0.0, "zero is exactly representable");
    }

    /// Guide §5.2 case 1: strictly positive [5, 10] -> [0, 10]; scale 10/255, offset 0.
    #[test]
    fn all_positive_range_starts_at_zero() {
        let enc = Encoding::asymmetric(5.0, 10.0, 8);
        assert_eq!(enc.offset, 0);
        assert_eq!(enc.min, 0.0);
        assert!(close(enc.max, 10.0, 1e-6));
        assert!(close(enc.scale, 10.0 / 255.0, 1e-8), "f32 ulp here is 3.7e-9");
        assert_eq!(enc.quantize(0.0), 0);
        assert_eq!(enc.quantize(10.0), 255);
    }

    /// Guide §5.2 case 2: strictly negative [-20, -6] -> [-20, 0]; scale 20/255, offset -255,
    /// zero is grid value 255.
    #[test]
    fn all_negative_range_ends_at_zero() {
        let enc = Encoding::asymmetric(-20.0, -6.0, 8);
        assert_eq!(enc.offset, -255);
        assert!(close(enc.min, -20.0, 1e-5));
        assert!(close(enc.max, 0.0, 1e-6));
        assert_eq!(enc.quantize(0.0), 255);
        assert_eq!(enc.dequantize(255), 0.0);
    }

    /// Guide §5.2 case 3: [-5.1, 5.1]: step 10.2/255 = 0.04, range shifted by -0.02 to
    /// [-5.12, 5.08], zero is grid value 128.
    #[test]
    fn mixed_range_is_nudged_so_zero_is_on_the_grid() {
        let enc = Encoding::asymmetric(-5.1, 5.1, 8);
        assert!(close(enc.scale, 0.04, 1e-7));
        assert!(close(enc.min, -5.12, 1e-5), "{}", enc.min);
        assert!(close(enc.max, 5.08, 1e-5), "{}", enc.max);
        assert_eq!(enc.offset, -128);
        assert_eq!(enc.quantize(0.0), 128);
        assert_eq!(enc.dequantize(128), 0.0);
    }

    /// Minimum range first, then zero (the guide's order): [0, 0] becomes [0, 0.0001] (scale
    /// 0.0001/255); [3, 3] becomes [3, 3.0001] and then [0, 3.0001].
    #[test]
    fn degenerate_ranges_get_the_minimum_range() {
        let enc = Encoding::asymmetric(0.0, 0.0, 8);
        assert!(close(enc.max, 0.0001, 1e-9));
        assert!(close(enc.scale, 0.0001 / 255.0, 1e-12));
        let enc = Encoding::asymmetric(3.0, 3.0, 8);
        assert_eq!(enc.min, 0.0);
        assert!(close(enc.max, 3.0001, 1e-6));
    }

    /// The guide's per-channel override example, channel 0: weights with largest magnitude
    /// 0.7011175155639648 -> scale = 0.7011175155639648 / 127 = 0.005520610358771377, offset
    /// -128, min = -128 * scale = -0.7066381259227362, max = 0.7011175155639648.
    #[test]
    fn symmetric_matches_the_guides_per_channel_example() {
        let enc = Encoding::symmetric(-0.5, 0.701_117_5, 8);
        assert!(close(enc.scale, 0.005520610358771377, 1e-9));
        assert_eq!(enc.offset, -128);
        assert!(close(enc.min, -0.7066381259227362, 1e-7));
        assert!(close(enc.max, 0.7011175155639648, 1e-7));
        assert!(enc.symmetric);
        // Signed grid: 0.0 -> q 128 (signed 0), -new_max -> signed -127, +new_max -> 127.
        assert_eq!(enc.quantize(0.0), 128);
        assert_eq!(enc.quantize(-0.701_117_5), 1);
        assert_eq!(enc.quantize(0.701_117_5), 255);
    }

    /// 4-bit symmetric: offset -8, scale = max|x| / 7; 16-bit: offset -32768, scale / 32767.
    #[test]
    fn symmetric_other_bitwidths() {
        let enc = Encoding::symmetric(-0.7, 0.35, 4);
        assert_eq!(enc.offset, -8);
        assert!(close(enc.scale, 0.1, 1e-8));
        assert_eq!(enc.qmax(), 15);
        let enc = Encoding::symmetric(-3.2767, 1.0, 16);
        assert_eq!(enc.offset, -32768);
        assert!(close(enc.scale, 0.0001, 1e-9));
    }

    /// int32 bias: in_scale 0.5 * w_scale 0.25 = 0.125; bias 1.0 -> signed 8 -> unsigned
    /// 8 + 2^31; -1.0 -> 2^31 - 8.
    #[test]
    fn int32_bias_grid() {
        let enc = Encoding::int32_with_scale(0.5 * 0.25);
        assert_eq!(enc.bitwidth, 32);
        assert_eq!(enc.offset, i32::MIN);
        assert_eq!(enc.qmax(), u32::MAX);
        assert_eq!(enc.quantize(1.0), (1u32 << 31) + 8);
        assert_eq!(enc.quantize(-1.0), (1u32 << 31) - 8);
        assert_eq!(enc.dequantize((1u32 << 31) + 8), 1.0);
        assert_eq!(enc.fake_quant(0.3), 0.25, "0.3/0.125 = 2.4 -> 2 -> 0.25");
        assert!(close(enc.min, -(2f64.powi(31)) * 0.125, 1.0));
    }

    /// Rounding is half to even (as torch.round/AIMET QuantSim and onnxruntime): with scale 1
    /// and offset 0, 2.5 -> 2, 3.5 -> 4; values beyond the grid clamp.
    #[test]
    fn quantize_rounds_half_to_even_and_clamps() {
        let enc = Encoding::from_scale_offset(8, 1.0, 0, false);
        assert_eq!(enc.quantize(2.5), 2);
        assert_eq!(enc.quantize(3.5), 4);
        assert_eq!(enc.quantize(-3.0), 0);
        assert_eq!(enc.quantize(300.0), 255);
        assert_eq!(enc.quantize(f32::NAN), 0);
        assert_eq!(enc.fake_quant(2.5), 2.0);
    }

    /// Schema dispatch, and 32-bit always symmetric.
    #[test]
    fn from_range_dispatches_on_schema() {
        assert_eq!(Encoding::from_range(-1.8, 0.5, 8, Schema::Asymmetric).offset, -200);
        assert_eq!(Encoding::from_range(-1.8, 0.5, 8, Schema::Symmetric).offset, -128);
        assert_eq!(Encoding::from_range(-1.8, 0.5, 32, Schema::Asymmetric).offset, i32::MIN);
    }

    /// float16 rounding: 1 + 2^-11 is a tie between 1 and 1 + 2^-10 -> 1 (even); 1 + 3*2^-11
    /// -> 1 + 2^-9; 65519 -> 65504; 65520 -> inf; 2^-25 + 2^-24 (tie near subnormals) -> 2^-23.
    #[test]
    fn rounds_to_half_precision() {
        assert_eq!(round_to_f16(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(round_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2f32.powi(-9));
        assert_eq!(round_to_f16(65519.0), 65504.0);
        assert_eq!(round_to_f16(-65520.0), f32::NEG_INFINITY);
        assert_eq!(round_to_f16(3.0 * 2f32.powi(-25)), 2f32.powi(-23));
        assert_eq!(round_to_f16(0.1), 0.099975586);
    }
}
