//! Resize: per-axis tables of source indices and weights, following ONNX's reference
//! implementation (`onnx/reference/ops/op_resize.py`) one axis at a time.
//!
//! For every resized axis and output coordinate `x`, the coordinate transformation gives a
//! source coordinate `x_ori`; the `n` taps are the `n` input indices nearest to it (the lower
//! ones preferred: `ratio = x_ori - base` lies in `(0, 1]`), clamped to the axis (ONNX pads
//! the axis in edge mode), with weights from the mode's coefficient function. Nearest is data
//! movement: one gather over precomputed flat indices, on any element type. Linear and cubic
//! are separable: one weighted pass per resized axis, in f32 (float32, float16, bfloat16) or
//! f64 (float64). The mode is resolved once per table, never per element.

use std::ops::{Add, Mul};

use half::{bf16, f16};

use super::{KernelError, element_count, expect_inputs, input, tensor};
use crate::ir::{Tensor, TensorData};
use crate::ops::{CoordMode, NearestMode, Resize, ResizeMode};

/// The taps of one axis: `taps` (index, weight) pairs per output coordinate.
struct Table {
    out: usize,
    taps: usize,
    index: Vec<usize>,
    weight: Vec<f64>,
    /// `tf_crop_and_resize`: the source coordinate lies outside the input (the output takes
    /// `extrapolation_value`).
    outside: Vec<bool>,
}

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// The source coordinate of output coordinate `x` on an axis of `input` values resized to
/// `output` with factor `scale`; `roi` is the axis's `(start, end)`.
fn source(coord: CoordMode, x: f64, scale: f64, input: usize, output: usize, roi: (f64, f64)) -> f64 {
    let input_f = input as f64;
    let output_width = scale * input_f;
    match coord {
        CoordMode::AlignCorners => {
            if output_width == 1.0 {
                0.0
            } else {
                x * (input_f - 1.0) / (output_width - 1.0)
            }
        }
        CoordMode::Asymmetric => x / scale,
        CoordMode::TfCropAndResize => {
            let base = if output_width == 1.0 {
                (roi.1 - roi.0) * (input_f - 1.0) / 2.0
            } else {
                x * (roi.1 - roi.0) * (input_f - 1.0) / (output_width - 1.0)
            };
            base + roi.0 * (input_f - 1.0)
        }
        CoordMode::PytorchHalfPixel => {
            if output_width == 1.0 {
                -0.5
            } else {
                (x + 0.5) / scale - 0.5
            }
        }
        CoordMode::HalfPixel => (x + 0.5) / scale - 0.5,
        CoordMode::TfHalfPixelForNn => (x + 0.5) / scale,
        CoordMode::HalfPixelSymmetric => {
            let adjustment = output as f64 / output_width;
            let offset = input_f / 2.0 * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
    }
}

/// The coefficient function of the mode, resolved once per axis: the weights of the taps
/// `base + start + k` given `ratio`.
enum Coeffs {
    Nearest { ceil_at_half: bool, floor_always: bool, ceil_always: bool },
    Linear,
    Cubic(f64),
    LinearAntialias { scale: f64, start: i64 },
    CubicAntialias { a: f64, scale: f64, start: i64 },
}

impl Coeffs {
    fn of(op: &Resize, scale: f64) -> Coeffs {
        let aa_scale = scale.min(1.0);
        match op.mode {
            ResizeMode::Nearest(mode) => {
                let (floor_always, ceil_always) = match mode {
                    NearestMode::Floor => (true, false),
                    NearestMode::Ceil => (false, true),
                    NearestMode::Legacy => (scale >= 1.0, scale < 1.0),
                    _ => (false, false),
                };
                Coeffs::Nearest { ceil_at_half: mode == NearestMode::RoundPreferCeil, floor_always, ceil_always }
            }
            ResizeMode::Linear if op.antialias => {
                Coeffs::LinearAntialias { scale: aa_scale, start: (-1.0 / aa_scale).floor() as i64 + 1 }
            }
            ResizeMode::Cubic { a } if op.antialias => {
                Coeffs::CubicAntialias { a: f64::from(a), scale: aa_scale, start: (-2.0 / aa_scale).floor() as i64 + 1 }
            }
            ResizeMode::Linear => Coeffs::Linear,
            ResizeMode::Cubic { a } => Coeffs::Cubic(f64::from(a)),
        }
    }

    /// The first tap's offset from `base`, and the number of taps.
    fn span(&self) -> (i64, usize) {
        match *self {
            Coeffs::Nearest { .. } | Coeffs::Linear => (0, 2),
            Coeffs::Cubic(_) => (-1, 4),
            Coeffs::LinearAntialias { start, .. } | Coeffs::CubicAntialias { start, .. } => {
                (start, (2 - 2 * start).max(0) as usize)
            }
        }
    }

    fn fill(&self, ratio: f64, out: &mut [f64]) {
        match *self {
            Coeffs::Nearest { ceil_at_half, floor_always, ceil_always } => {
                let upper = if ratio == 1.0 || ceil_always {
                    true
                } else if floor_always {
                    false
                } else if ceil_at_half {
                    ratio >= 0.5
                } else {
                    ratio > 0.5
                };
                out[0] = f64::from(u8::from(!upper));
                out[1] = f64::from(u8::from(upper));
            }
            Coeffs::Linear => {
                out[0] = 1.0 - ratio;
                out[1] = ratio;
            }
            Coeffs::Cubic(a) => {
                out[0] = cubic(ratio + 1.0, a);
                out[1] = cubic(ratio, a);
                out[2] = cubic(1.0 - ratio, a);
                out[3] = cubic(2.0 - ratio, a);
            }
            Coeffs::LinearAntialias { scale, start } => {
                for (k, w) in out.iter_mut().enumerate() {
                    *w = (1.0 - ((start + k as i64) as f64 - ratio).abs() * scale).clamp(0.0, 1.0);
                }
                normalize(out);
            }
            Coeffs::CubicAntialias { a, scale, start } => {
                for (k, w) in out.iter_mut().enumerate() {
                    *w = cubic(scale * ((start + k as i64) as f64 - ratio), a);
                }
                normalize(out);
            }
        }
    }
}

fn normalize(weights: &mut [f64]) {
    let sum: f64 = weights.iter().sum();
    if sum != 0.0 {
        for w in weights {
            *w /= sum;
        }
    }
}

/// The table of axis `axis` resized from `input` to `output` values.
fn table(op: &Resize, axis: usize, input: usize, output: usize) -> Table {
    let rank = op.scales.len();
    let scale = op.scales[axis];
    let roi = (op.roi.get(axis).copied().unwrap_or(0.0), op.roi.get(rank + axis).copied().unwrap_or(1.0));
    let coeffs = Coeffs::of(op, scale);
    let (start, taps) = coeffs.span();
    let mut t = Table {
        out: output,
        taps,
        index: vec![0; output * taps],
        weight: vec![0.0; output * taps],
        outside: vec![false; output],
    };
    let last = input.saturating_sub(1) as i64;
    for o in 0..output {
        let x = source(op.coord, o as f64, scale, input, output, roi);
        if op.coord == CoordMode::TfCropAndResize && (x < 0.0 || x > last as f64) {
            t.outside[o] = true;
            continue;
        }
        let floor = x.floor();
        let (base, ratio) = if x == floor { (floor as i64 - 1, 1.0) } else { (floor as i64, x - floor) };
        let weights = &mut t.weight[o * taps..(o + 1) * taps];
        coeffs.fill(ratio, weights);
        let nearest = matches!(coeffs, Coeffs::Nearest { .. });
        if op.exclude_outside && !nearest {
            for (k, w) in weights.iter_mut().enumerate() {
                let i = base + start + k as i64;
                if i < 0 || i > last {
                    *w = 0.0;
                }
            }
            normalize(weights);
        }
        for (k, index) in t.index[o * taps..(o + 1) * taps].iter_mut().enumerate() {
            *index = (base + start + k as i64).clamp(0, last) as usize;
        }
    }
    t
}

/// Arithmetic of the separable passes.
trait Sample: Copy + Default + Add<Output = Self> + Mul<Output = Self> {
    fn of(v: f64) -> Self;
}

impl Sample for f32 {
    fn of(v: f64) -> f32 {
        v as f32
    }
}

impl Sample for f64 {
    fn of(v: f64) -> f64 {
        v
    }
}

/// One pass over an axis: `src` is `[outer, in, inner]`, the result `[outer, t.out, inner]`.
fn pass<T: Sample>(src: &[T], (outer, input, inner): (usize, usize, usize), t: &Table, extrapolation: T) -> Vec<T> {
    let mut dst = vec![T::default(); outer * t.out * inner];
    if dst.is_empty() || input == 0 || inner == 0 {
        return dst;
    }
    let weights: Vec<T> = t.weight.iter().map(|&w| T::of(w)).collect();
    for (s, d) in src.chunks_exact(input * inner).zip(dst.chunks_exact_mut(t.out * inner)) {
        for (o, row) in d.chunks_exact_mut(inner).enumerate() {
            if t.outside[o] {
                row.fill(extrapolation);
                continue;
            }
            let taps = o * t.taps..(o + 1) * t.taps;
            let tap_list = t.index[taps.clone()].iter().zip(&t.weight[taps.clone()]).zip(&weights[taps]);
            for ((&i, &exact), &w) in tap_list {
                if exact == 0.0 {
                    continue;
                }
                for (y, &v) in row.iter_mut().zip(&s[i * inner..(i + 1) * inner]) {
                    *y = *y + w * v;
                }
            }
        }
    }
    dst
}

/// Linear or cubic over every non-identity axis.
fn interpolate<T: Sample>(x: Vec<T>, shape: &[usize], tables: &[Option<Table>], extrapolation: f32) -> Vec<T> {
    let mut data = x;
    let mut current = shape.to_vec();
    for (axis, t) in tables.iter().enumerate() {
        let Some(t) = t else { continue };
        let outer: usize = current[..axis].iter().product();
        let inner: usize = current[axis + 1..].iter().product();
        data = pass(&data, (outer, current[axis], inner), t, T::of(f64::from(extrapolation)));
        current[axis] = t.out;
    }
    data
}

/// Nearest: the flat source index of every output element (`None` outside the crop).
fn gather_indices(shape: &[usize], tables: &[Option<Table>], out_shape: &[usize]) -> Vec<Option<usize>> {
    let strides = crate::ir::strides_of(shape);
    let mut flat: Vec<Option<usize>> = vec![Some(0)];
    for (axis, t) in tables.iter().enumerate() {
        let offsets: Vec<Option<usize>> = match t {
            None => (0..out_shape[axis]).map(|o| Some(o * strides[axis])).collect(),
            Some(t) => (0..t.out)
                .map(|o| {
                    if t.outside[o] {
                        return None;
                    }
                    let taps = &t.weight[o * t.taps..(o + 1) * t.taps];
                    let k = taps.iter().position(|&w| w != 0.0).unwrap_or(0);
                    Some(t.index[o * t.taps + k] * strides[axis])
                })
                .collect(),
        };
        let mut next = Vec::with_capacity(flat.len() * offsets.len());
        for base in &flat {
            next.extend(offsets.iter().map(|off| base.and_then(|b| off.map(|o| b + o))));
        }
        flat = next;
    }
    flat
}

const OP: &str = "Resize";

/// Resize (or Upsample) of input 0.
pub fn resize(op: &Resize, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    expect_inputs(OP, inputs, 1, 1)?;
    let x = input(OP, inputs, 0, "X")?;
    let rank = x.shape.len();
    if op.scales.len() != rank || op.sizes.len() != rank {
        return Err(KernelError::new(
            OP,
            format!("resolved for rank {} but the input has shape {:?}", op.sizes.len(), x.shape),
        ));
    }
    let out_shape: Vec<usize> =
        (0..rank).map(|i| if op.is_identity_axis(i) { x.shape[i] } else { op.sizes[i] }).collect();
    let count = element_count(OP, &out_shape)?;
    if count > 0 && x.is_empty() {
        return Err(KernelError::new(OP, format!("cannot resize the empty input {:?} to {out_shape:?}", x.shape)));
    }
    let tables: Vec<Option<Table>> =
        (0..rank).map(|i| (!op.is_identity_axis(i)).then(|| table(op, i, x.shape[i], out_shape[i]))).collect();
    if count == 0 {
        let empty = x.data.gather(&[]);
        return tensor(OP, out_shape, empty);
    }
    let e = op.extrapolation_value;
    let data = match op.mode {
        ResizeMode::Nearest(_) => {
            let flat = gather_indices(&x.shape, &tables, &out_shape);
            if flat.iter().all(Option::is_some) {
                let indices: Vec<usize> = flat.into_iter().flatten().collect();
                x.data.gather(&indices)
            } else {
                // The extrapolation value, appended after the input's elements.
                let dtype = x.dtype();
                let extra = if dtype.is_float() {
                    TensorData::floats_from_f64(dtype, &[f64::from(e)], true)
                } else {
                    TensorData::ints_from_i64(dtype, &[e as i64])
                };
                let extra = extra.ok_or_else(|| KernelError::new(OP, "no extrapolation value of this type"))?;
                let all = TensorData::concat(&[&x.data, &extra])
                    .ok_or_else(|| KernelError::new(OP, "internal: extrapolation value of another type"))?;
                let indices: Vec<usize> = flat.into_iter().map(|i| i.unwrap_or(x.len())).collect();
                all.gather(&indices)
            }
        }
        ResizeMode::Linear | ResizeMode::Cubic { .. } => match &x.data {
            TensorData::F32(v) => TensorData::F32(interpolate(v.clone(), &x.shape, &tables, e)),
            TensorData::F64(v) => TensorData::F64(interpolate(v.clone(), &x.shape, &tables, e)),
            TensorData::F16(v) => {
                let y = interpolate(v.iter().map(|h| h.to_f32()).collect(), &x.shape, &tables, e);
                TensorData::F16(y.into_iter().map(f16::from_f32).collect())
            }
            TensorData::BF16(v) => {
                let y = interpolate(v.iter().map(|h| h.to_f32()).collect(), &x.shape, &tables, e);
                TensorData::BF16(y.into_iter().map(bf16::from_f32).collect())
            }
            other => {
                return Err(KernelError::new(
                    OP,
                    format!("linear and cubic modes need a float input, got {}", other.dtype().name()),
                ));
            }
        },
    };
    tensor(OP, out_shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(mode: ResizeMode, coord: CoordMode, scales: Vec<f64>, sizes: Vec<usize>, roi: Vec<f64>) -> Resize {
        Resize {
            mode,
            coord,
            exclude_outside: false,
            antialias: false,
            extrapolation_value: 7.0,
            scales,
            sizes,
            roi,
            from_scales: false,
            upsample: false,
        }
    }

    #[test]
    fn nearest_crop_on_integers_extrapolates_outside_the_roi() {
        // Width 4 -> 3 over roi [-0.5, 1]: x_ori = o * 1.5 * 3 / 2 - 1.5 = -1.5 (outside: 7),
        // 0.75 (round_prefer_floor -> 1: 20), 3 (40).
        let x = Tensor::new(vec![4], TensorData::I64(vec![10, 20, 30, 40])).unwrap();
        let r = op(
            ResizeMode::Nearest(NearestMode::RoundPreferFloor),
            CoordMode::TfCropAndResize,
            vec![0.75],
            vec![3],
            vec![-0.5, 1.0],
        );
        let y = resize(&r, &[&x]).unwrap();
        assert_eq!(y.data, TensorData::I64(vec![7, 20, 40]));
    }

    #[test]
    fn linear_half_pixel_upsampling_in_float64() {
        // x_ori = (o + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25; edges clamp: [0, 1, 3, 4].
        let x = Tensor::new(vec![2], TensorData::F64(vec![0.0, 4.0])).unwrap();
        let r = op(ResizeMode::Linear, CoordMode::HalfPixel, vec![2.0], vec![4], vec![]);
        let y = resize(&r, &[&x]).unwrap();
        assert_eq!(y.data, TensorData::F64(vec![0.0, 1.0, 3.0, 4.0]));
    }
}
