//! QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear (ONNX opsets 10 to 25).
//!
//! The quantization parameters are converted once per call: scales to f32, zero points to
//! i32 (integer codes) or f32 (float8). Every granularity (per tensor, per axis, blocked) is
//! the same walk over `x` viewed as `[outer, dim, inner]`, with the parameter index
//! `o * so + (a / block) * sa + i * si` (strides 0 where a parameter is shared), so the inner
//! loops are monomorphic: the output element type and the rounding of the computation
//! precision are generic parameters, never a per-element match.

use half::{bf16, f16};

use super::{KernelError, tensor};
use crate::ir::{DType, Tensor, TensorData, float8};

/// How the parameters of a Q/DQ map onto `x` viewed as `[outer, dim, inner]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub outer: usize,
    pub dim: usize,
    pub inner: usize,
    /// Parameter strides along outer, along `dim / block` and along inner.
    pub so: usize,
    pub sa: usize,
    pub si: usize,
    pub block: usize,
}

/// The layout of parameters of shape `scale` for `x`: a scalar (or one-element 1-D) scale is
/// per tensor; a 1-D scale of `x.shape[axis]` values per axis; with `block > 0`, a scale of
/// `x`'s rank whose `axis` dimension is `ceil(x.shape[axis] / block)` and whose other
/// dimensions equal `x`'s.
pub(crate) fn layout(x: &[usize], scale: &[usize], axis: usize, block: usize) -> Result<Layout, String> {
    let count: usize = x.iter().product();
    let n: usize = scale.iter().product();
    if block == 0 && scale.len() <= 1 && n == 1 {
        return Ok(Layout { outer: 1, dim: 1, inner: count, so: 0, sa: 0, si: 0, block: 1 });
    }
    if axis >= x.len() {
        return Err(format!("axis {axis} is out of range for input shape {x:?}"));
    }
    let (outer, dim, inner) = (x[..axis].iter().product(), x[axis], x[axis + 1..].iter().product());
    if block == 0 {
        if scale.len() == 1 && scale[0] == dim {
            return Ok(Layout { outer, dim, inner, so: 0, sa: 1, si: 0, block: 1 });
        }
        return Err(format!(
            "scale of shape {scale:?} is neither a scalar nor a per-axis 1-D tensor of {dim} values (axis {axis} of \
             input shape {x:?})"
        ));
    }
    let fits = scale.len() == x.len()
        && scale.iter().zip(x).enumerate().all(|(i, (&s, &d))| if i == axis { s == d.div_ceil(block) } else { s == d });
    if !fits {
        return Err(format!(
            "blocked scale of shape {scale:?} does not fit input shape {x:?} with block_size {block} along axis {axis}"
        ));
    }
    let blocks = scale[axis];
    Ok(Layout { outer, dim, inner, so: blocks * inner, sa: inner, si: 1, block })
}

impl Layout {
    /// Calls `f(x_offset, param_base, param_step)` for each `inner` run of `x`.
    #[inline]
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        for o in 0..self.outer {
            for a in 0..self.dim {
                f((o * self.dim + a) * self.inner, o * self.so + (a / self.block) * self.sa, self.si);
            }
        }
    }
}

/// Calls `$f` with the rounding of the computation precision `$precision` (f32: none) as a
/// closure, so that each precision gets its own monomorphic kernel.
macro_rules! with_rounding {
    ($precision:expr, $f:expr) => {
        match $precision {
            DType::F16 => $f(|v: f32| f16::from_f32(v).to_f32()),
            DType::BF16 => $f(|v: f32| bf16::from_f32(v).to_f32()),
            _ => $f(|v: f32| v),
        }
    };
}

/// Float contents as f32 (exact for f16/bf16; f64 and int32 rounded as onnxruntime casts).
fn floats(t: &Tensor) -> std::borrow::Cow<'_, [f32]> {
    match &t.data {
        TensorData::F32(v) => std::borrow::Cow::Borrowed(v),
        other => std::borrow::Cow::Owned(other.to_f64_vec().into_iter().map(|v| v as f32).collect()),
    }
}

/// Integer zero points (`None`: all zero) as i32, `n` of them.
fn int_zero_points(op: &'static str, zp: Option<&Tensor>, n: usize) -> Result<Vec<i32>, KernelError> {
    let Some(zp) = zp else { return Ok(vec![0; n]) };
    let values = zp.to_i64_vec().ok_or_else(|| KernelError::new(op, "zero point is not an integer tensor"))?;
    if values.len() != n {
        return Err(KernelError::new(op, format!("zero point has {} values but the scale {n}", values.len())));
    }
    Ok(values.into_iter().map(|v| v as i32).collect())
}

fn is_float8(d: DType) -> bool {
    matches!(d, DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ)
}

/// QuantizeLinear: `y = saturate(round_half_even(x / scale) + zero_point)` into `to`
/// (float8: `cast(x / scale + zero_point)`, saturating when `saturate`). The division runs in
/// `precision` (f32, f16 or bf16).
pub(crate) fn quantize(
    x: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    lay: &Layout,
    to: DType,
    precision: DType,
    saturate: bool,
) -> Result<Tensor, KernelError> {
    with_rounding!(precision, |round| quantize_in(x, scale, zero_point, lay, to, saturate, round))
}

fn quantize_in(
    x: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    lay: &Layout,
    to: DType,
    saturate: bool,
    round: impl Fn(f32) -> f32 + Copy,
) -> Result<Tensor, KernelError> {
    const OP: &str = "QuantizeLinear";
    let xs = floats(x);
    let s = floats(scale);
    let n = s.len();
    if is_float8(to) {
        let zp: Vec<f32> = match zero_point {
            Some(z) => floats(z).into_owned(),
            None => vec![0.0; n],
        };
        if zp.len() != n {
            return Err(KernelError::new(OP, format!("zero point has {} values but the scale {n}", zp.len())));
        }
        let mut codes = Vec::with_capacity(xs.len());
        lay.for_each_run(|at, base, step| {
            for (i, &v) in xs[at..at + lay.inner].iter().enumerate() {
                let p = base + i * step;
                codes.push(float8::encode(to, round(round(round(v) / s[p]) + zp[p]), saturate));
            }
        });
        let data = match to {
            DType::F8E4M3FN => TensorData::F8E4M3FN(codes),
            DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(codes),
            DType::F8E5M2 => TensorData::F8E5M2(codes),
            _ => TensorData::F8E5M2FNUZ(codes),
        };
        return tensor(OP, x.shape.clone(), data);
    }
    let zp = int_zero_points(OP, zero_point, n)?;
    let (lo, hi) =
        to.integer_range().ok_or_else(|| KernelError::new(OP, format!("cannot quantize to {}", to.name())))?;
    let (lo, hi) = (lo as f32, hi as f32);
    macro_rules! run {
        ($t:ty, $variant:ident) => {{
            let mut out: Vec<$t> = Vec::with_capacity(xs.len());
            lay.for_each_run(|at, base, step| {
                let row = &xs[at..at + lay.inner];
                if step == 0 {
                    let (sc, z) = (s[base], zp[base] as f32);
                    out.extend(row.iter().map(|&v| ((round(round(v) / sc)).round_ties_even() + z).clamp(lo, hi) as $t));
                } else {
                    let (sc, z) = (&s[base..base + lay.inner], &zp[base..base + lay.inner]);
                    out.extend(row.iter().zip(sc).zip(z).map(|((&v, &sc), &z)| {
                        ((round(round(v) / sc)).round_ties_even() + z as f32).clamp(lo, hi) as $t
                    }));
                }
            });
            TensorData::$variant(out)
        }};
    }
    let data = match to {
        DType::U8 => run!(u8, U8),
        DType::I8 => run!(i8, I8),
        DType::U16 => run!(u16, U16),
        DType::I16 => run!(i16, I16),
        DType::I32 => run!(i32, I32),
        DType::U4 => run!(u8, U4),
        DType::I4 => run!(i8, I4),
        DType::U2 => run!(u8, U2),
        DType::I2 => run!(i8, I2),
        other => return Err(KernelError::new(OP, format!("cannot quantize to {}", other.name()))),
    };
    tensor(OP, x.shape.clone(), data)
}

/// DequantizeLinear: `y = (x - zero_point) * scale`, computed in f32 and rounded to the output
/// type `to` after each step when that is f16 or bf16 (the output type is the precision).
pub(crate) fn dequantize(
    x: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    lay: &Layout,
    to: DType,
) -> Result<Tensor, KernelError> {
    with_rounding!(to, |round| dequantize_in(x, scale, zero_point, lay, to, round))
}

fn dequantize_in(
    x: &Tensor,
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    lay: &Layout,
    to: DType,
    round: impl Fn(f32) -> f32 + Copy,
) -> Result<Tensor, KernelError> {
    const OP: &str = "DequantizeLinear";
    let s = floats(scale);
    let n = s.len();
    let mut y: Vec<f32> = Vec::with_capacity(x.len());
    // Integer codes subtract their zero point exactly (in i64); float8 codes are decoded
    // through a 256-entry table.
    macro_rules! ints {
        ($v:expr) => {{
            let zp = int_zero_points(OP, zero_point, n)?;
            let v = $v;
            lay.for_each_run(|at, base, step| {
                for (i, &q) in v[at..at + lay.inner].iter().enumerate() {
                    let p = base + i * step;
                    y.push(round(round((i64::from(q) - i64::from(zp[p])) as f32) * s[p]));
                }
            });
        }};
    }
    match &x.data {
        TensorData::U8(v) | TensorData::U4(v) | TensorData::U2(v) => ints!(v),
        TensorData::I8(v) | TensorData::I4(v) | TensorData::I2(v) => ints!(v),
        TensorData::U16(v) => ints!(v),
        TensorData::I16(v) => ints!(v),
        TensorData::I32(v) => ints!(v),
        TensorData::F8E4M3FN(v) | TensorData::F8E4M3FNUZ(v) | TensorData::F8E5M2(v) | TensorData::F8E5M2FNUZ(v) => {
            let dtype = x.dtype();
            let table: Vec<f32> = (0..=255u8).map(|c| float8::decode(dtype, c)).collect();
            let zp: Vec<f32> = match zero_point {
                Some(z) => floats(z).into_owned(),
                None => vec![0.0; n],
            };
            if zp.len() != n {
                return Err(KernelError::new(OP, format!("zero point has {} values but the scale {n}", zp.len())));
            }
            lay.for_each_run(|at, base, step| {
                for (i, &c) in v[at..at + lay.inner].iter().enumerate() {
                    let p = base + i * step;
                    y.push(round(round(table[c as usize] - zp[p]) * s[p]));
                }
            });
        }
        other => return Err(KernelError::new(OP, format!("cannot dequantize {}", other.dtype().name()))),
    }
    let data = match to {
        DType::F32 => TensorData::F32(y),
        DType::F16 => TensorData::F16(y.into_iter().map(f16::from_f32).collect()),
        DType::BF16 => TensorData::BF16(y.into_iter().map(bf16::from_f32).collect()),
        DType::F64 => TensorData::F64(y.into_iter().map(f64::from).collect()),
        other => return Err(KernelError::new(OP, format!("cannot dequantize to {}", other.name()))),
    };
    tensor(OP, x.shape.clone(), data)
}

/// DynamicQuantizeLinear (uint8), as onnxruntime computes it: the range `[min(0, min x),
/// max(0, max x)]`, `scale = (max - min) / 255` (1 when the range is empty), zero point
/// `round_half_even(clamp(0 - min / scale, 0, 255))`, `y = saturate(round_half_even(x /
/// scale) + zero_point)`.
pub(crate) fn dynamic_quantize(x: &Tensor) -> Result<Vec<Tensor>, KernelError> {
    const OP: &str = "DynamicQuantizeLinear";
    let TensorData::F32(v) = &x.data else {
        return Err(KernelError::new(OP, format!("input must be float32, got {}", x.dtype().name())));
    };
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for &e in v {
        lo = lo.min(e);
        hi = hi.max(e);
    }
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even();
    let y: Vec<u8> = v.iter().map(|&e| ((e / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8).collect();
    Ok(vec![
        tensor(OP, x.shape.clone(), TensorData::U8(y))?,
        tensor(OP, vec![], TensorData::F32(vec![scale]))?,
        tensor(OP, vec![], TensorData::U8(vec![zp as u8]))?,
    ])
}
