//! How one tensor is represented in a compiled program, and the byte codec for it: float32,
//! float16, or integer codes of an affine encoding (`x = (q + offset) * scale`, `q` on the
//! unsigned grid `[0, 2^bw - 1]`), per tensor or per channel.
//!
//! Byte layouts (all little-endian):
//! - float32: 4 bytes per element; float16: 2 bytes (IEEE binary16);
//! - codes of 1..=4 bits: two per byte, element `2i` in the low nibble, `2i+1` in the high one
//!   (an odd count leaves the last high nibble zero);
//! - 5..=8 bits: one byte (u8); 9..=16 bits: two bytes (u16); 17..=32 bits: four bytes (u32).
//!
//! Quantization rounds half to even and clamps to the grid, as AIMET's QuantSim does:
//! `q = clamp(round(x / scale) - offset, 0, 2^bw - 1)`; dequantization is
//! `x = (q + offset) * scale`, both in float32 arithmetic.
// The quant module is gaining `Encoding::quantize`/`dequantize` with this same formula; this
// module keeps its own copy on the plan's types so that `model.bin` does not depend on the
// shape of the quantizer's structs.

use std::ops::Range;

use multiversion::multiversion;
use serde::{Deserialize, Serialize};

use crate::ir::{DType, TensorData};

/// Affine integer encoding of a tensor: one `(scale, offset)` pair per tensor, one per slice
/// along `axis` (per-channel weights), or one per block of each such slice (per-block
/// weights, [`Blocks`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantParams {
    pub bitwidth: u32,
    /// `None`: per tensor (`scales` and `offsets` hold one entry each).
    pub axis: Option<u32>,
    pub scales: Vec<f32>,
    pub offsets: Vec<i32>,
    /// Per-block: each slice along `axis` split into blocks along another axis. `scales` and
    /// `offsets` then hold one entry per block, in the order of
    /// [`crate::quant::blocks::block_runs`].
    pub block: Option<Blocks>,
}

/// Blocks of `size` elements along `axis` (a weight's input channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocks {
    pub axis: u32,
    pub size: u32,
}

/// The representation of one tensor on the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Repr {
    /// IEEE float of this many bits (16 or 32).
    Float {
        bitwidth: u32,
    },
    Quant(QuantParams),
    /// The tensor's own element type, as raw little-endian elements: integer and bool tensors
    /// (never quantized) and float tensors of a type other than float32 (float64, float16,
    /// bfloat16, float8). Its data is never dequantized: kernels see the typed values.
    Native(DType),
}

impl Repr {
    pub const F32: Repr = Repr::Float { bitwidth: 32 };

    pub fn is_quantized(&self) -> bool {
        matches!(self, Repr::Quant(_))
    }

    /// The storage layout of one element.
    pub fn layout(&self) -> Layout {
        match self {
            Repr::Native(dtype) => Layout::Native(*dtype),
            Repr::Float { bitwidth: 16 } => Layout::F16,
            Repr::Float { .. } => Layout::F32,
            Repr::Quant(q) => match q.bitwidth {
                0..=4 => Layout::Nibble,
                5..=8 => Layout::U8,
                9..=16 => Layout::U16,
                _ => Layout::U32,
            },
        }
    }

    /// Bytes needed for `elements` values (None on overflow).
    pub fn bytes_for(&self, elements: usize) -> Option<usize> {
        self.layout().bytes_for(elements)
    }

    /// Checks the representation against the shape of its tensor.
    pub fn check(&self, shape: &[usize]) -> Result<(), String> {
        match self {
            Repr::Native(_) => Ok(()),
            Repr::Float { bitwidth: 16 | 32 } => Ok(()),
            Repr::Float { bitwidth } => Err(format!("float bitwidth {bitwidth} (expected 16 or 32)")),
            Repr::Quant(q) => {
                if !(1..=32).contains(&q.bitwidth) {
                    return Err(format!("bitwidth {} outside 1..=32", q.bitwidth));
                }
                let channels = match q.axis {
                    None => 1,
                    Some(axis) => *shape
                        .get(axis as usize)
                        .ok_or_else(|| format!("per-channel axis {axis} of a rank-{} tensor", shape.len()))?,
                };
                let channels = match (q.block, q.axis) {
                    (None, _) => channels,
                    (Some(b), Some(axis)) => {
                        let inputs = shape.get(b.axis as usize).copied().filter(|_| b.axis != axis);
                        match inputs.filter(|&n| b.size > 0 && n.is_multiple_of(b.size as usize)) {
                            Some(n) => channels * (n / b.size as usize),
                            None => {
                                return Err(format!(
                                    "blocks of {} along axis {} do not tile shape {shape:?} (channel axis {axis})",
                                    b.size, b.axis
                                ));
                            }
                        }
                    }
                    (Some(_), None) => return Err("blocks without a channel axis".to_string()),
                };
                if q.scales.len() != channels || q.offsets.len() != channels {
                    return Err(format!(
                        "{} scales and {} offsets for {channels} channel(s)",
                        q.scales.len(),
                        q.offsets.len()
                    ));
                }
                if let Some(bad) = q.scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(format!("scale {bad} is not a positive finite number"));
                }
                Ok(())
            }
        }
    }
}

/// Element storage of a [`Repr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    F32,
    F16,
    Nibble,
    U8,
    U16,
    U32,
    /// Raw elements of this type.
    Native(DType),
}

impl Layout {
    pub fn bytes_for(self, elements: usize) -> Option<usize> {
        match self {
            Layout::Native(dtype) => elements.checked_mul(dtype.size_bytes()),
            Layout::Nibble => Some(elements.div_ceil(2)),
            Layout::U8 => Some(elements),
            Layout::U16 | Layout::F16 => elements.checked_mul(2),
            Layout::U32 | Layout::F32 => elements.checked_mul(4),
        }
    }
}

/// The largest code of a `bitwidth`-bit grid.
fn grid_max(bitwidth: u32) -> u32 {
    if bitwidth >= 32 { u32::MAX } else { (1u32 << bitwidth) - 1 }
}

/// `clamp(round_half_even(x / scale) - offset, 0, 2^bw - 1)`; NaN maps to code 0. Up to 24
/// bits the division is in float32, as QuantSim computes it; wider grids (32-bit biases)
/// divide in float64, where float32 would lose integer steps.
pub fn quantize_value(x: f32, scale: f32, offset: i32, bitwidth: u32) -> u32 {
    let rounded = if bitwidth <= 24 {
        f64::from(crate::quant::math::round_ties_even_f32(x / scale))
    } else {
        (f64::from(x) / f64::from(scale)).round_ties_even()
    };
    // f64 holds every f32 integer and every i32 exactly, so the subtraction is exact.
    let q = rounded - f64::from(offset);
    // Ordered comparisons map NaN to 0 (a saturating `as` would too, but it compiles to a
    // scalar conversion per element). The clamped value is an integer in [0, 2^32), so adding
    // 2^52 puts it, exactly, in the low bits of the float64's mantissa: vector instructions
    // throughout.
    let max = f64::from(grid_max(bitwidth));
    let clamped = if q > 0.0 { q } else { 0.0 };
    let clamped = if clamped < max { clamped } else { max };
    (clamped + 4_503_599_627_370_496.0).to_bits() as u32
}

/// `(q + offset) * scale`: one correctly rounded float32 product up to 24 bits (where
/// `q + offset` is exact in float32), computed in float64 for wider grids.
pub fn dequantize_value(q: u32, scale: f32, offset: i32, bitwidth: u32) -> f32 {
    let shifted = i64::from(q) + i64::from(offset);
    if bitwidth <= 24 { shifted as f32 * scale } else { (shifted as f64 * f64::from(scale)) as f32 }
}

/// The encoding index (channel) of every element, or `None` for per-tensor encodings.
struct Channels {
    inner: usize,
    count: usize,
}

impl Channels {
    fn of(q: &QuantParams, shape: &[usize]) -> Option<Channels> {
        let axis = q.axis? as usize;
        let count = *shape.get(axis)?;
        let inner = shape.get(axis + 1..).map_or(1, |rest| rest.iter().product());
        Some(Channels { inner: inner.max(1), count: count.max(1) })
    }
}

/// Quantizes (or rounds to float16) `values` of a tensor of `shape` and writes them to `out`,
/// which must hold exactly `repr.bytes_for(values.len())` bytes.
pub fn encode(repr: &Repr, shape: &[usize], values: &[f32], out: &mut [u8]) {
    match repr {
        Repr::Native(dtype) => {
            // Float values converted to the type (integers truncate, as a Cast would).
            let wide: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
            let data = if dtype.is_float() {
                TensorData::floats_from_f64(*dtype, &wide, true)
            } else {
                TensorData::ints_from_i64(*dtype, &wide.iter().map(|&x| x as i64).collect::<Vec<_>>())
            };
            if let Some(data) = data {
                let bytes = data.to_le_bytes();
                let n = bytes.len().min(out.len());
                out[..n].copy_from_slice(&bytes[..n]);
            }
        }
        Repr::Float { bitwidth: 16 } => {
            for (chunk, &x) in out.chunks_exact_mut(2).zip(values) {
                chunk.copy_from_slice(&half::f16::from_f32(x).to_le_bytes());
            }
        }
        Repr::Float { .. } => {
            for (chunk, &x) in out.chunks_exact_mut(4).zip(values) {
                chunk.copy_from_slice(&x.to_le_bytes());
            }
        }
        Repr::Quant(q) => {
            let mut codes = vec![0u32; values.len()];
            for (range, scale, offset) in encoding_runs(q, shape, values.len()) {
                quantize_run(&values[range.clone()], scale, offset, q.bitwidth, &mut codes[range]);
            }
            match repr.layout() {
                Layout::Nibble => {
                    out.fill(0);
                    for (i, &code) in codes.iter().enumerate() {
                        if let Some(byte) = out.get_mut(i / 2) {
                            *byte |= ((code & 0xF) as u8) << (4 * (i % 2));
                        }
                    }
                }
                Layout::U8 => {
                    for (byte, &code) in out.iter_mut().zip(&codes) {
                        *byte = code as u8;
                    }
                }
                Layout::U16 => {
                    for (chunk, &code) in out.chunks_exact_mut(2).zip(&codes) {
                        chunk.copy_from_slice(&(code as u16).to_le_bytes());
                    }
                }
                Layout::U32 | Layout::F32 | Layout::F16 | Layout::Native(_) => {
                    for (chunk, &code) in out.chunks_exact_mut(4).zip(&codes) {
                        chunk.copy_from_slice(&code.to_le_bytes());
                    }
                }
            }
        }
    }
}

/// Every value a tensor of a per-tensor encoding of up to 16 bits can hold once stored and
/// read back ([`round_trip_in_place`], or decoded from its codes): each code's value, and
/// `-0.0` where zero lies strictly inside the grid (a small negative value rounds to `-0.0`,
/// which the clamp to the grid's ends then keeps). `None` for other representations
/// (per-channel, wider, float), whose values are not enumerated.
pub fn held_values(repr: &Repr) -> Option<Vec<f32>> {
    let Repr::Quant(q) = repr else { return None };
    let ([scale], &[offset], None) = (q.scales.as_slice(), q.offsets.as_slice(), q.axis) else { return None };
    if q.bitwidth > 16 {
        return None;
    }
    let max = grid_max(q.bitwidth);
    let zero_inside = offset < 0 && i64::from(offset) + i64::from(max) > 0;
    let codes = (0..=max).map(|c| dequantize_value(c, *scale, offset, q.bitwidth));
    Some(codes.chain(zero_inside.then_some(-0.0)).collect())
}

/// `values` as stored in `repr` and read back (`decode(encode(values))`), computed in place:
/// what a step's result is to its readers, without the codes or a second buffer. Native
/// representations hold values as they are and are left alone.
pub fn round_trip_in_place(repr: &Repr, shape: &[usize], values: &mut [f32]) {
    match repr {
        Repr::Native(_) | Repr::Float { bitwidth: 32 } => {}
        Repr::Float { bitwidth: 16 } => {
            for v in values.iter_mut() {
                *v = half::f16::from_f32(*v).to_f32();
            }
        }
        // Any other float width is stored as float32 (see `encode`).
        Repr::Float { .. } => {}
        Repr::Quant(q) => {
            let len = values.len();
            for (range, scale, offset) in encoding_runs(q, shape, len) {
                crate::quant::math::fake_quant_run(&mut values[range], scale, offset, q.bitwidth);
            }
        }
    }
}

/// The runs of elements that share one encoding, with its scale and offset: the whole tensor
/// for a per-tensor encoding, else `inner` elements at a time cycling through the channels
/// (so no element pays a division to find its channel).
fn encoding_runs<'q>(
    q: &'q QuantParams,
    shape: &[usize],
    len: usize,
) -> Box<dyn Iterator<Item = (Range<usize>, f32, i32)> + 'q> {
    let params = |c: usize| (q.scales.get(c).copied().unwrap_or(1.0), q.offsets.get(c).copied().unwrap_or(0));
    if let (Some(b), Some(axis)) = (q.block, q.axis) {
        // A checked program's blocks tile the shape; anything else encodes nothing.
        let runs = crate::quant::blocks::block_runs(shape, axis as usize, b.axis as usize, b.size as usize);
        return Box::new(runs.into_iter().flatten().map(move |(index, run)| {
            let (scale, offset) = params(index);
            (run.start.min(len)..run.end.min(len), scale, offset)
        }));
    }
    let (run, count) = match Channels::of(q, shape) {
        Some(ch) => (ch.inner, ch.count),
        None => (len.max(1), 1),
    };
    Box::new((0..len).step_by(run).enumerate().map(move |(k, start)| {
        let (scale, offset) = params(k % count);
        (start..(start + run).min(len), scale, offset)
    }))
}

/// [`quantize_value`] of every value of one run, vectorized (AVX-512/AVX2 picked at run time;
/// the same operations, so the same codes, on every path).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn quantize_run(values: &[f32], scale: f32, offset: i32, bitwidth: u32, codes: &mut [u32]) {
    for (code, &x) in codes.iter_mut().zip(values) {
        *code = quantize_value(x, scale, offset, bitwidth);
    }
}

/// [`dequantize_value`] of every code of one run.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn dequantize_run(codes: &[u32], scale: f32, offset: i32, bitwidth: u32, values: &mut [f32]) {
    for (value, &code) in values.iter_mut().zip(codes) {
        *value = dequantize_value(code, scale, offset, bitwidth);
    }
}

/// The codes of `elements` values stored in `bytes` (integer representations only).
pub fn unpack_codes(layout: Layout, bytes: &[u8], elements: usize) -> Vec<u32> {
    match layout {
        Layout::Nibble => {
            (0..elements).map(|i| bytes.get(i / 2).map_or(0, |b| u32::from((b >> (4 * (i % 2))) & 0xF))).collect()
        }
        Layout::U8 => bytes.iter().take(elements).map(|&b| u32::from(b)).collect(),
        Layout::U16 | Layout::F16 => {
            bytes.chunks_exact(2).take(elements).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]))).collect()
        }
        Layout::U32 | Layout::F32 | Layout::Native(_) => {
            bytes.chunks_exact(4).take(elements).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
    }
}

/// The typed data of a [`Repr::Native`] tensor stored in `bytes` (`None` when `bytes` is not
/// a whole number of elements, which validated programs exclude).
pub fn decode_native(dtype: DType, bytes: &[u8]) -> Option<TensorData> {
    TensorData::from_le_bytes(dtype, bytes).ok()
}

/// Reads `elements` values of a tensor of `shape` from `bytes`, dequantized to float32.
pub fn decode(repr: &Repr, shape: &[usize], bytes: &[u8], elements: usize) -> Vec<f32> {
    match repr {
        Repr::Native(dtype) => {
            let values = decode_native(*dtype, bytes).map(|d| d.to_f64_vec()).unwrap_or_default();
            values.into_iter().take(elements).map(|x| x as f32).collect()
        }
        Repr::Float { bitwidth: 16 } => {
            bytes.chunks_exact(2).take(elements).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        Repr::Float { .. } => {
            bytes.chunks_exact(4).take(elements).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        Repr::Quant(q) => {
            let codes = unpack_codes(repr.layout(), bytes, elements);
            let mut values = vec![0.0f32; codes.len()];
            for (range, scale, offset) in encoding_runs(q, shape, codes.len()) {
                dequantize_run(&codes[range.clone()], scale, offset, q.bitwidth, &mut values[range]);
            }
            values
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn per_tensor(bitwidth: u32, scale: f32, offset: i32) -> Repr {
        Repr::Quant(QuantParams { bitwidth, axis: None, scales: vec![scale], offsets: vec![offset], block: None })
    }

    /// Whatever goes in, a round trip gives one of the held values: the list is complete
    /// (NaN, infinities, signed zeros and values that round to zero from below included).
    #[test]
    fn every_round_trip_gives_a_held_value() {
        let mut inputs: Vec<f32> = (-3000..3000).map(|i| i as f32 / 97.0).collect();
        inputs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, -1e-9, 1e-9, f32::MAX, f32::MIN]);
        for (repr, negative_zero) in [
            (per_tensor(8, 6.0 / 255.0, 0), false),
            (per_tensor(8, 0.05, -128), true),
            (per_tensor(8, 0.05, -255), false),
            (per_tensor(4, 0.5, -3), true),
            (per_tensor(16, 0.001, -30_000), true),
        ] {
            let held = held_values(&repr).unwrap();
            let held_bits: std::collections::HashSet<u32> = held.iter().map(|v| v.to_bits()).collect();
            assert_eq!(held_bits.contains(&(-0.0f32).to_bits()), negative_zero, "{repr:?}");
            let mut values = inputs.clone();
            round_trip_in_place(&repr, &[values.len()], &mut values);
            for (x, v) in inputs.iter().zip(&values) {
                assert!(held_bits.contains(&v.to_bits()), "{repr:?}: {x} gave {v}, not a held value");
            }
        }
        let per_channel =
            Repr::Quant(QuantParams { bitwidth: 8, axis: Some(0), scales: vec![1.0], offsets: vec![0], block: None });
        assert_eq!(held_values(&per_channel), None);
        assert_eq!(held_values(&per_tensor(32, 1.0, 0)), None);
        assert_eq!(held_values(&Repr::F32), None);
    }

    /// Each block of each channel takes its own scale, in `block_runs`' order; `check` refuses
    /// blocks that do not tile the shape.
    #[test]
    fn per_block_codes_use_each_blocks_scale() {
        let blocked = |scales: Vec<f32>, size| {
            let offsets = vec![-8; scales.len()];
            Repr::Quant(QuantParams {
                bitwidth: 4,
                axis: Some(0),
                scales,
                offsets,
                block: Some(Blocks { axis: 1, size }),
            })
        };
        let repr = blocked(vec![1.0, 0.5, 0.25, 2.0], 2);
        assert_eq!(repr.check(&[2, 4]), Ok(()));
        let (bytes, back) = round_trip(&repr, &[2, 4], &[1.0; 8]);
        // Codes round(1 / scale) + 8: 9, 9 | 10, 10 | 12, 12 | 8, 8 (0.5 rounds to even 0).
        assert_eq!(bytes, [0x99, 0xAA, 0xCC, 0x88]);
        assert_eq!(back, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        assert!(blocked(vec![1.0; 4], 3).check(&[2, 4]).is_err());
        assert!(blocked(vec![1.0; 3], 2).check(&[2, 4]).is_err());
    }

    fn round_trip(repr: &Repr, shape: &[usize], values: &[f32]) -> (Vec<u8>, Vec<f32>) {
        let mut bytes = vec![0xAA; repr.bytes_for(values.len()).unwrap()];
        encode(repr, shape, values, &mut bytes);
        let back = decode(repr, shape, &bytes, values.len());
        (bytes, back)
    }

    #[test]
    fn the_round_trip_of_a_run_is_dequantize_of_quantize_bit_for_bit() {
        let mut values: Vec<f32> = crate::runtime::kernels::test_values::values(4000, 31)
            .iter()
            .enumerate()
            .map(|(i, v)| v * [1.0, 300.0, 1e-3, 7e4, 2e9][i % 5])
            .collect();
        values.extend([
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            0.5,
            1.5,
            2.5,
            -0.5,
            -2.5,
            4_194_304.5,
            16_777_217.0,
        ]);
        let scales = [1.0f32, 0.0123, 3.7e-6, 250.0, 1e-30];
        // Offsets whose shifted grid's ends float32 holds exactly and others, that it rounds.
        let offsets = [0, 1, 2, -128, 127, -32768, -(1 << 24), (1 << 24) - 255, i32::MIN, i32::MAX, -(1 << 24) - 3];
        for bitwidth in [1, 4, 8, 16, 24, 25, 31, 32] {
            for &scale in &scales {
                for &offset in &offsets {
                    let mut run = values.clone();
                    crate::quant::math::fake_quant_run(&mut run, scale, offset, bitwidth);
                    for (&x, got) in values.iter().zip(&run) {
                        let want =
                            dequantize_value(quantize_value(x, scale, offset, bitwidth), scale, offset, bitwidth);
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "x {x}, scale {scale}, offset {offset}, {bitwidth} bits: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_sdk_worked_example_quantizes_exactly() {
        // SDK guide: [-1.8, -1.0, 0, 0.5] with enc_min -1.803922, enc_max 0.496078:
        // scale = 2.3 / 255, offset = round(-1.803922 / scale) = -200; q = [0, 89, 200, 255].
        let scale = 2.3f32 / 255.0;
        let repr = per_tensor(8, scale, -200);
        let (bytes, back) = round_trip(&repr, &[4], &[-1.8, -1.0, 0.0, 0.5]);
        assert_eq!(bytes, [0, 89, 200, 255]);
        // Dequantized, the doc lists [-1.8039, -1.0011, 0.0000, 0.4961].
        let expected = [-1.8039f32, -1.0011, 0.0, 0.4961];
        for (got, want) in back.iter().zip(expected) {
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
    }

    #[test]
    fn rounding_is_half_to_even_and_clamps_to_the_grid() {
        // scale 0.5, offset 0: x/scale = 2*x; 0.25 -> 0.5 -> 0, 0.75 -> 1.5 -> 2, 1.25 -> 2.5 -> 2.
        assert_eq!(quantize_value(0.25, 0.5, 0, 8), 0);
        assert_eq!(quantize_value(0.75, 0.5, 0, 8), 2);
        assert_eq!(quantize_value(1.25, 0.5, 0, 8), 2);
        // offset -128: x = -0.25 -> round(-0.5) = -0 -> q = 128; x = -0.75 -> -2 -> 126.
        assert_eq!(quantize_value(-0.25, 0.5, -128, 8), 128);
        assert_eq!(quantize_value(-0.75, 0.5, -128, 8), 126);
        assert_eq!(quantize_value(1000.0, 0.5, 0, 8), 255);
        assert_eq!(quantize_value(-1000.0, 0.5, 0, 8), 0);
        assert_eq!(quantize_value(f32::NAN, 0.5, 0, 8), 0);
        assert_eq!(quantize_value(1e30, 1.0, 0, 32), u32::MAX);
        assert_eq!(dequantize_value(126, 0.5, -128, 8), -1.0);
    }

    /// The vectorizable clamp and conversion give the codes of the plain definition,
    /// `clamp(round(x / scale) - offset, 0, 2^bw - 1) as u32`, on every kind of float (NaN,
    /// infinities, huge, tiny, ties) and grid, and so does a whole run through `encode`.
    #[test]
    fn the_vector_conversion_is_the_saturating_cast() {
        let definition = |x: f32, scale: f32, offset: i32, bw: u32| -> u32 {
            let rounded = if bw <= 24 {
                f64::from((x / scale).round_ties_even())
            } else {
                (f64::from(x) / f64::from(scale)).round_ties_even()
            };
            (rounded - f64::from(offset)).clamp(0.0, f64::from(grid_max(bw))) as u32
        };
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN, 0.0, -0.0, 0.5, -2.5, 1e-30];
        let sweep = (0..u32::MAX).step_by(9_973).map(f32::from_bits);
        let values: Vec<f32> = specials.into_iter().chain(sweep).collect();
        for (scale, offset, bw) in
            [(0.5f32, -128, 8), (0.01, 0, 8), (3e-3, -7, 4), (1e-4, -32768, 16), (1.0, 0, 24), (1e-6, -5, 32)]
        {
            let mut codes = vec![0u32; values.len()];
            quantize_run(&values, scale, offset, bw, &mut codes);
            for (&x, &code) in values.iter().zip(&codes) {
                assert_eq!(
                    code,
                    definition(x, scale, offset, bw),
                    "x {x:e}, scale {scale}, offset {offset}, {bw} bits"
                );
            }
        }
    }

    /// The in-place round trip is, bit for bit, encoding to the stored bytes and reading them
    /// back: per tensor and per channel, every grid width, float16, and NaN and infinities.
    #[test]
    fn the_in_place_round_trip_is_encode_then_decode() {
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, 0.0, -0.0, 0.5, -2.5, 1e-30, 65504.5];
        let sweep = (0..u32::MAX).step_by(1_000_003).map(f32::from_bits);
        let values: Vec<f32> = specials.into_iter().chain(sweep).take(4 * 1070).collect();
        let channels = Repr::Quant(QuantParams {
            bitwidth: 8,
            axis: Some(1),
            scales: vec![0.02, 1.5, 3e-4, 7.0],
            offsets: vec![-128, 0, -3, -255],
            block: None,
        });
        let reprs = [
            (per_tensor(8, 0.031, -117), vec![values.len()]),
            (per_tensor(4, 0.37, -8), vec![values.len()]),
            (per_tensor(16, 3.1e-4, -32768), vec![values.len()]),
            (per_tensor(32, 1.7e-7, i32::MIN), vec![values.len()]),
            (channels, vec![1, 4, values.len() / 4]),
            (Repr::Float { bitwidth: 16 }, vec![values.len()]),
            (Repr::Float { bitwidth: 32 }, vec![values.len()]),
        ];
        for (repr, shape) in reprs {
            let (_, want) = round_trip(&repr, &shape, &values);
            let mut got = values.clone();
            round_trip_in_place(&repr, &shape, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{repr:?}");
        }
    }

    #[test]
    fn codes_agree_with_the_quantizer_encoding_math() {
        // The quant module's `Encoding::quantize`/`dequantize` is the same formula; the
        // compiled program must not drift from it (including the wide-grid float64 path).
        use crate::quant::encoding::Encoding;
        for (bitwidth, scale, offset) in
            [(8, 0.0123f32, -117), (16, 3.1e-4, -32768), (4, 0.37, -8), (32, 1.7e-7, i32::MIN)]
        {
            let e = Encoding::from_scale_offset(bitwidth, scale, i64::from(offset), false);
            for k in -3000..3000 {
                let x = k as f32 * scale * 0.173 + (k % 7) as f32 * 1e-3;
                let q = quantize_value(x, scale, offset, bitwidth);
                assert_eq!(q, e.quantize(x), "bw {bitwidth}, x {x}");
                assert_eq!(dequantize_value(q, scale, offset, bitwidth).to_bits(), e.dequantize(q).to_bits());
            }
        }
    }

    #[test]
    fn float16_rounding_agrees_with_the_quantizer() {
        for k in -5000..5000 {
            let x = (k as f32).powi(3) * 1.37e-7 + k as f32 * 0.011;
            let (_, back) = round_trip(&Repr::Float { bitwidth: 16 }, &[1], &[x]);
            assert_eq!(back[0].to_bits(), crate::quant::math::round_to_f16(x).to_bits(), "x {x}");
        }
    }

    #[test]
    fn four_bit_codes_pack_low_nibble_first() {
        // scale 1, offset -8: x -> x + 8; [-8, 7, 0] -> [0, 15, 8] -> bytes [0xF0, 0x08].
        let repr = per_tensor(4, 1.0, -8);
        let (bytes, back) = round_trip(&repr, &[3], &[-8.0, 7.0, 0.0]);
        assert_eq!(bytes, [0xF0, 0x08]);
        assert_eq!(back, [-8.0, 7.0, 0.0]);
    }

    #[test]
    fn sixteen_and_thirty_two_bit_codes_are_little_endian() {
        // 16-bit, scale 1, offset -32768: 1.0 -> 32769 = 0x8001.
        let (bytes, _) = round_trip(&per_tensor(16, 1.0, -32768), &[1], &[1.0]);
        assert_eq!(bytes, [0x01, 0x80]);
        // 32-bit bias, scale 0.5, offset -2^31: 3.0 -> 6 + 2^31 = 0x8000_0006.
        let (bytes, back) = round_trip(&per_tensor(32, 0.5, i32::MIN), &[1], &[3.0]);
        assert_eq!(bytes, [0x06, 0, 0, 0x80]);
        assert_eq!(back, [3.0]);
    }

    #[test]
    fn per_channel_codes_use_their_channel_encoding() {
        // Shape [2, 2], axis 0: row 0 scale 1, row 1 scale 0.5 (both offset -128).
        // [1, -1 | 1, -1] -> [129, 127 | 130, 126].
        let repr = Repr::Quant(QuantParams {
            bitwidth: 8,
            axis: Some(0),
            scales: vec![1.0, 0.5],
            offsets: vec![-128, -128],
            block: None,
        });
        let (bytes, back) = round_trip(&repr, &[2, 2], &[1.0, -1.0, 1.0, -1.0]);
        assert_eq!(bytes, [129, 127, 130, 126]);
        assert_eq!(back, [1.0, -1.0, 1.0, -1.0]);
        // Axis 1 of shape [2, 2]: the channel is the column.
        let repr = Repr::Quant(QuantParams {
            bitwidth: 8,
            axis: Some(1),
            scales: vec![1.0, 0.5],
            offsets: vec![-128, -128],
            block: None,
        });
        let (bytes, _) = round_trip(&repr, &[2, 2], &[1.0, 1.0, -1.0, -1.0]);
        assert_eq!(bytes, [129, 130, 127, 126]);
    }

    #[test]
    fn float16_rounds_to_nearest_even() {
        // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to the even mantissa, 1.0.
        let (bytes, back) = round_trip(&Repr::Float { bitwidth: 16 }, &[2], &[1.0 + 2f32.powi(-11), 65504.0]);
        assert_eq!(back, [1.0, 65504.0]);
        assert_eq!(bytes, [0x00, 0x3C, 0xFF, 0x7B]);
    }

    #[test]
    fn check_rejects_inconsistent_encodings() {
        let bad_axis =
            Repr::Quant(QuantParams { bitwidth: 8, axis: Some(2), scales: vec![1.0], offsets: vec![0], block: None });
        assert!(bad_axis.check(&[3, 1]).unwrap_err().contains("axis 2"));
        let too_few =
            Repr::Quant(QuantParams { bitwidth: 8, axis: Some(0), scales: vec![1.0], offsets: vec![0], block: None });
        assert!(too_few.check(&[3, 1]).unwrap_err().contains("3 channel"));
        assert!(per_tensor(8, 0.0, 0).check(&[1]).unwrap_err().contains("scale 0"));
        assert!(per_tensor(33, 1.0, 0).check(&[1]).is_err());
        assert!(Repr::Float { bitwidth: 8 }.check(&[1]).is_err());
        assert!(per_tensor(8, 0.1, -3).check(&[7]).is_ok());
    }
}
