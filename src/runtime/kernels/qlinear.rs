//! onnxruntime's QOperator ops on 8-bit codes: MatMulInteger, ConvInteger (int32 results) and
//! QLinearMatMul, QLinearConv (requantized to 8-bit codes).
//!
//! Operands are centered once (`code - zero_point`, as i32, zero points broadcast per
//! tensor, per row or per column), then multiplied with exact i32 accumulation: an
//! i-k-j loop whose inner loop runs over a contiguous row of B (vectorizable, no dispatch);
//! convolutions go through im2col of the centered input (padding is 0 there, i.e. the zero
//! point in code space) and the same integer product. Requantization follows the ONNX
//! reference: the multiplier `a_scale * b_scale / y_scale` is computed in the scales' type,
//! the product `acc * multiplier` in f64, rounded half to even, plus the output zero point,
//! saturated to the output type.

use half::{bf16, f16};

use super::conv::im2col;
use super::elementwise::{broadcast_shape, broadcast_strides};
use super::window::Geometry;
use super::{KernelError, element_count, tensor};
use crate::ir::{DType, Tensor, TensorData, Window};

/// `c[m, n] += a[m, k] * b[k, n]`, exact (wrapping) i32 arithmetic.
pub(crate) fn int_gemm(a: &[i32], b: &[i32], (m, k, n): (usize, usize, usize), c: &mut [i32]) {
    for (a_row, c_row) in a.chunks_exact(k.max(1)).take(m).zip(c.chunks_exact_mut(n.max(1))) {
        for (p, &av) in a_row.iter().enumerate().take(k) {
            if av == 0 {
                continue;
            }
            let b_row = &b[p * n..(p + 1) * n];
            for (cv, &bv) in c_row.iter_mut().zip(b_row) {
                *cv = cv.wrapping_add(av.wrapping_mul(bv));
            }
        }
    }
}

/// `x - zero_point` as i32, the zero point broadcast numpy-style to `x`'s shape (after
/// `zp_shape` adjustment by the caller).
fn centered(op: &'static str, x: &Tensor, zp: Option<(&Tensor, Vec<usize>)>) -> Result<Vec<i32>, KernelError> {
    let xs =
        x.to_i64_vec().ok_or_else(|| KernelError::new(op, format!("{} input is not integer", x.dtype().name())))?;
    let Some((zp, zp_shape)) = zp else { return Ok(xs.into_iter().map(|v| v as i32).collect()) };
    let z = zp.to_i64_vec().ok_or_else(|| KernelError::new(op, "zero point is not an integer tensor"))?;
    if let [z] = z[..] {
        return Ok(xs.into_iter().map(|v| (v - z) as i32).collect());
    }
    if broadcast_shape(&zp_shape, &x.shape).as_deref() != Some(&x.shape[..]) {
        return Err(KernelError::new(
            op,
            format!("zero point of shape {zp_shape:?} does not broadcast to the input's {:?}", x.shape),
        ));
    }
    let steps = broadcast_strides(&zp_shape, &x.shape);
    let mut index = vec![0usize; x.shape.len()];
    let mut out = Vec::with_capacity(xs.len());
    for &v in &xs {
        let at: usize = index.iter().zip(&steps).map(|(i, s)| i * s).sum();
        out.push((v - z[at]) as i32);
        for level in (0..index.len()).rev() {
            index[level] += 1;
            if index[level] < x.shape[level] {
                break;
            }
            index[level] = 0;
        }
    }
    Ok(out)
}

/// A 1-D zero point of `len` values per row of a matrix operand `[.., rows, cols]`: shape
/// `[len, 1]`; any other zero point keeps its shape (numpy broadcasting).
fn per_row_shape(zp: &Tensor, rows_axis_len: usize) -> Vec<usize> {
    if zp.shape.len() == 1 && zp.shape[0] == rows_axis_len && zp.shape[0] != 1 {
        vec![zp.shape[0], 1]
    } else {
        zp.shape.clone()
    }
}

/// Shapes of a numpy matmul: the output shape, `(m, k, n)` and, per output matrix, the
/// offsets of its A and B matrices.
struct Batched {
    out_shape: Vec<usize>,
    mkn: (usize, usize, usize),
    pairs: Vec<(usize, usize)>,
}

fn batched(op: &'static str, a: &[usize], b: &[usize]) -> Result<Batched, KernelError> {
    if a.is_empty() || b.is_empty() {
        return Err(KernelError::new(op, "operands must have rank 1 or more"));
    }
    let sa: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let sb: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (a_batch, a_mat) = sa.split_at(sa.len() - 2);
    let (b_batch, b_mat) = sb.split_at(sb.len() - 2);
    let (m, k, kb, n) = (a_mat[0], a_mat[1], b_mat[0], b_mat[1]);
    if k != kb {
        return Err(KernelError::new(op, format!("inner dimensions differ: {a:?} x {b:?}")));
    }
    let batch = broadcast_shape(a_batch, b_batch)
        .ok_or_else(|| KernelError::new(op, format!("batch axes of {a:?} and {b:?} do not broadcast")))?;
    let mut out_shape = batch.clone();
    if a.len() > 1 {
        out_shape.push(m);
    }
    if b.len() > 1 {
        out_shape.push(n);
    }
    let (a_steps, b_steps) = (broadcast_strides(a_batch, &batch), broadcast_strides(b_batch, &batch));
    let count = element_count(op, &batch)?;
    let mut index = vec![0usize; batch.len()];
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let at = |steps: &[usize]| index.iter().zip(steps).map(|(i, s)| i * s).sum::<usize>();
        pairs.push((at(&a_steps) * m * k, at(&b_steps) * k * n));
        for level in (0..batch.len()).rev() {
            index[level] += 1;
            if index[level] < batch[level] {
                break;
            }
            index[level] = 0;
        }
    }
    Ok(Batched { out_shape, mkn: (m, k, n), pairs })
}

/// The int32 product of centered operands.
fn int_matmul(
    op: &'static str,
    a: &Tensor,
    a_zp: Option<&Tensor>,
    b: &Tensor,
    b_zp: Option<&Tensor>,
) -> Result<(Vec<i32>, Batched), KernelError> {
    let shape = batched(op, &a.shape, &b.shape)?;
    let (m, k, n) = shape.mkn;
    let a_rows = if a.shape.len() >= 2 { a.shape[a.shape.len() - 2] } else { 1 };
    let ac = centered(op, a, a_zp.map(|z| (z, per_row_shape(z, a_rows))))?;
    let bc = centered(op, b, b_zp.map(|z| (z, z.shape.clone())))?;
    let mut y = vec![0i32; element_count(op, &shape.out_shape)?];
    if m * n > 0 {
        for (out, &(a_at, b_at)) in y.chunks_exact_mut(m * n).zip(&shape.pairs) {
            int_gemm(&ac[a_at..a_at + m * k], &bc[b_at..b_at + k * n], (m, k, n), out);
        }
    }
    Ok((y, shape))
}

/// MatMulInteger: `(A - a_zero_point) x (B - b_zero_point)` in int32.
pub(crate) fn matmul_integer(
    a: &Tensor,
    a_zp: Option<&Tensor>,
    b: &Tensor,
    b_zp: Option<&Tensor>,
) -> Result<Tensor, KernelError> {
    const OP: &str = "MatMulInteger";
    let (y, shape) = int_matmul(OP, a, a_zp, b, b_zp)?;
    tensor(OP, shape.out_shape, TensorData::I32(y))
}

/// A scale as f32 values (f16/bf16 exact).
fn scale_values(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec()
}

/// Rounds `v` to the scales' type (the precision the reference computes the multiplier in).
fn in_type(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::F16 => f16::from_f32(v).to_f32(),
        DType::BF16 => bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// Multipliers `a_scale * b_scale[j] / y_scale`, one per `b_scale` value, in the scales' type.
fn multipliers(a_scale: &Tensor, b_scale: &Tensor, y_scale: &Tensor) -> Result<Vec<f64>, String> {
    let (a, b, y) = (scale_values(a_scale), scale_values(b_scale), scale_values(y_scale));
    let (&[a], &[y]) = (&a[..], &y[..]) else {
        return Err("the input and output scales must be scalars".into());
    };
    let dtype = b_scale.dtype();
    Ok(b.iter().map(|&b| f64::from(in_type(dtype, in_type(dtype, a * b) / y))).collect())
}

/// Requantizes int32 accumulators to the type of `y_zp`: `saturate(rint(acc * mult[c]) + zp)`,
/// where `c = (i / inner) % mult.len()` (one multiplier per channel of `inner` elements).
fn requantize(
    op: &'static str,
    acc: &[i32],
    mult: &[f64],
    inner: usize,
    y_zp: &Tensor,
) -> Result<TensorData, KernelError> {
    let zp = y_zp
        .to_i64_vec()
        .filter(|z| z.len() == 1)
        .ok_or_else(|| KernelError::new(op, "output zero point must be one integer"))?[0] as f64;
    let (lo, hi) =
        y_zp.dtype().integer_range().ok_or_else(|| KernelError::new(op, "output zero point must be an integer"))?;
    let (lo, hi) = (lo as f64, hi as f64);
    let channels = mult.len().max(1);
    let inner = inner.max(1);
    macro_rules! run {
        ($t:ty, $variant:ident) => {{
            let q = |v: i32, m: f64| ((f64::from(v) * m).round_ties_even() + zp).clamp(lo, hi) as $t;
            let mut out: Vec<$t> = Vec::with_capacity(acc.len());
            if inner == 1 {
                // One multiplier per element of each row (per column of a matmul).
                for row in acc.chunks(channels) {
                    out.extend(row.iter().zip(mult).map(|(&v, &m)| q(v, m)));
                }
            } else {
                for (i, run) in acc.chunks(inner).enumerate() {
                    let m = mult[i % channels];
                    out.extend(run.iter().map(|&v| q(v, m)));
                }
            }
            TensorData::$variant(out)
        }};
    }
    Ok(match y_zp.dtype() {
        DType::U8 => run!(u8, U8),
        DType::I8 => run!(i8, I8),
        other => return Err(KernelError::new(op, format!("output type {} is not uint8 or int8", other.name()))),
    })
}

/// QLinearMatMul: inputs `a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp`; `b_scale`
/// (and `b_zp`) per tensor or per column of B.
pub(crate) fn qlinear_matmul(inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "QLinearMatMul";
    let &[a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp] = inputs else {
        return Err(KernelError::new(OP, format!("expects 8 inputs, got {}", inputs.len())));
    };
    let (acc, shape) = int_matmul(OP, a, Some(a_zp), b, Some(b_zp))?;
    let mult = multipliers(a_scale, b_scale, y_scale).map_err(|e| KernelError::new(OP, e))?;
    let n = shape.mkn.2;
    if mult.len() != 1 && mult.len() != n {
        return Err(KernelError::new(OP, format!("b_scale has {} values for {n} columns", mult.len())));
    }
    // Per column: channel j of every row; one element per "channel run".
    let data = if mult.len() == 1 {
        requantize(OP, &acc, &mult, acc.len(), y_zp)?
    } else {
        requantize(OP, &acc, &mult, 1, y_zp)?
    };
    tensor(OP, shape.out_shape, data)
}

/// The int32 convolution of centered `x` and `w` (plus an int32 bias): `[N, M, out...]`.
#[allow(clippy::too_many_arguments)]
fn int_conv(
    op: &'static str,
    window: &Window,
    group: usize,
    x: &Tensor,
    x_zp: Option<&Tensor>,
    w: &Tensor,
    w_zp: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<(Vec<i32>, Vec<usize>, usize), KernelError> {
    let [m, per_group, ref kernel @ ..] = w.shape[..] else {
        return Err(KernelError::new(op, format!("weights must have rank 3 or more, got {:?}", w.shape)));
    };
    let geo = Geometry::resolve(op, &x.shape, window, kernel, false)?;
    if group == 0 || m % group != 0 || per_group.checked_mul(group) != Some(geo.channels) {
        return Err(KernelError::new(
            op,
            format!("group {group} does not fit input channels {} and weights {:?}", geo.channels, w.shape),
        ));
    }
    if let Some(z) = x_zp
        && z.len() != 1
    {
        return Err(KernelError::new(op, "the input zero point must be a scalar"));
    }
    let xc = centered(op, x, x_zp.map(|z| (z, vec![])))?;
    // A per-output-channel weight zero point: shape [M, 1, 1, ...].
    let wc = centered(
        op,
        w,
        w_zp.map(|z| {
            let shape = if z.len() > 1 {
                let mut s = vec![1; w.shape.len()];
                s[0] = z.len();
                s
            } else {
                vec![]
            };
            (z, shape)
        }),
    )?;
    let out_shape = geo.output_shape(m);
    let out_plane = geo.out_plane();
    let mut y = vec![0i32; element_count(op, &out_shape)?];
    if let Some(b) = bias {
        let b = b
            .to_i64_vec()
            .filter(|b| b.len() == m)
            .ok_or_else(|| KernelError::new(op, format!("bias must hold {m} int32 values")))?;
        for (plane, &value) in y.chunks_exact_mut(out_plane.max(1)).zip(b.iter().cycle()) {
            plane.fill(value as i32);
        }
    }
    let (in_plane, taps) = (geo.in_plane(), geo.taps());
    if y.is_empty() || in_plane == 0 || per_group == 0 {
        return Ok((y, out_shape, out_plane));
    }
    let m_per_group = m / group;
    let depth = per_group * taps;
    let mut columns = vec![0i32; depth * out_plane];
    for (x_image, y_image) in xc.chunks_exact(geo.channels * in_plane).zip(y.chunks_exact_mut(m * out_plane)) {
        let groups = x_image
            .chunks_exact(per_group * in_plane)
            .zip(y_image.chunks_exact_mut(m_per_group * out_plane))
            .zip(wc.chunks_exact(m_per_group * depth));
        for ((x_group, y_group), w_group) in groups {
            im2col(x_group, &geo, &mut columns);
            int_gemm(w_group, &columns, (m_per_group, depth, out_plane), y_group);
        }
    }
    Ok((y, out_shape, out_plane))
}

/// ConvInteger: inputs `x, w` and optional zero points (`x_zp` scalar, `w_zp` scalar or one
/// per output channel); int32 output.
pub(crate) fn conv_integer(
    window: &Window,
    group: usize,
    x: &Tensor,
    x_zp: Option<&Tensor>,
    w: &Tensor,
    w_zp: Option<&Tensor>,
) -> Result<Tensor, KernelError> {
    const OP: &str = "ConvInteger";
    let (y, shape, _) = int_conv(OP, window, group, x, x_zp, w, w_zp, None)?;
    tensor(OP, shape, TensorData::I32(y))
}

/// QLinearConv: inputs `x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, B]`; `w_scale`
/// per tensor or per output channel.
pub(crate) fn qlinear_conv(window: &Window, group: usize, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "QLinearConv";
    if !(8..=9).contains(&inputs.len()) {
        return Err(KernelError::new(OP, format!("expects 8 or 9 inputs, got {}", inputs.len())));
    }
    let (x, x_scale, x_zp, w, w_scale) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4]);
    let (w_zp, y_scale, y_zp, bias) = (inputs[5], inputs[6], inputs[7], inputs.get(8).copied());
    let (acc, shape, out_plane) = int_conv(OP, window, group, x, Some(x_zp), w, Some(w_zp), bias)?;
    let mult = multipliers(x_scale, w_scale, y_scale).map_err(|e| KernelError::new(OP, e))?;
    let m = w.shape[0];
    if mult.len() != 1 && mult.len() != m {
        return Err(KernelError::new(OP, format!("w_scale has {} values for {m} output channels", mult.len())));
    }
    let data = requantize(OP, &acc, &mult, if mult.len() == 1 { acc.len() } else { out_plane }, y_zp)?;
    tensor(OP, shape, data)
}
