//! Normalizations beyond BatchNormalization: LayerNormalization, RMSNormalization,
//! InstanceNormalization, GroupNormalization, LpNormalization, MeanVarianceNormalization,
//! LRN, and the Softmax relatives LogSoftmax and Hardmax.
//!
//! Every kernel runs on float32/float64 natively and on float16/bfloat16 computed in float32
//! and rounded back ([`Real`]); statistics (means, variances, norms) accumulate in f64 over
//! contiguous rows.

use std::borrow::Cow;

use super::reduce::{Real, axes_last, inverse, permute, reals, rows, split_at_axis, with_real};
use super::{KernelError, tensor};
use crate::ir::{DType, Tensor, TensorData};

fn unsupported(op: &'static str, t: &Tensor) -> KernelError {
    KernelError::new(op, format!("{} inputs are not supported (float types only)", t.dtype().name()))
}

/// `values` of shape `from` broadcast (numpy, unidirectionally) to shape `to`.
pub(crate) fn broadcast_to<T: Copy>(values: &[T], from: &[usize], to: &[usize]) -> Option<Vec<T>> {
    if from.len() > to.len() {
        return None;
    }
    let offset = to.len() - from.len();
    let mut strides = vec![0usize; to.len()];
    let mut stride = 1;
    for i in (0..from.len()).rev() {
        let (f, t) = (from[i], to[offset + i]);
        if f != t && f != 1 {
            return None;
        }
        strides[offset + i] = if f == 1 { 0 } else { stride };
        stride *= f;
    }
    let count: usize = to.iter().product();
    let mut out = Vec::with_capacity(count);
    let mut index = vec![0usize; to.len()];
    for _ in 0..count {
        out.push(values[index.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
        for axis in (0..to.len()).rev() {
            index[axis] += 1;
            if index[axis] < to[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Some(out)
}

/// Row statistics: `(mean, 1 / sqrt(var + eps))`, or with `center == false` (RMS)
/// `(0, 1 / sqrt(mean(x²) + eps))`.
fn row_stats<F: Real>(row: &[F], eps: f64, center: bool) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = if center { row.iter().map(|v| v.to_f64()).sum::<f64>() / n } else { 0.0 };
    let var = row
        .iter()
        .map(|v| {
            let d = v.to_f64() - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// LayerNormalization (`center`) or RMSNormalization (not): normalizes over the axes from
/// `axis` on, then `y * scale (+ bias)`, scale and bias broadcast to the normalized shape.
/// With `stats`, also the Mean and InvStdDev outputs (shape of X with the normalized axes
/// 1) in that dtype.
pub fn layer_norm(
    op: &'static str,
    axis: usize,
    epsilon: f32,
    center: bool,
    inputs: &[&Tensor],
    stats: Option<DType>,
) -> Result<Vec<Tensor>, KernelError> {
    let x = super::input(op, inputs, 0, "X")?;
    let scale = super::input(op, inputs, 1, "Scale")?;
    let bias = inputs.get(2).copied();
    if axis > x.shape.len() {
        return Err(KernelError::new(op, format!("axis {axis} is out of range for shape {:?}", x.shape)));
    }
    let norm_shape = &x.shape[axis..];
    let n: usize = norm_shape.iter().product();
    let bad = |what: &str, t: &Tensor| {
        KernelError::new(op, format!("{what} of shape {:?} does not broadcast to {norm_shape:?}", t.shape))
    };
    with_real!(x.dtype(), F => {
        let xv = reals::<F>(op, x)?;
        let s = broadcast_to(&reals::<F>(op, scale)?, &scale.shape, norm_shape).ok_or_else(|| bad("Scale", scale))?;
        let b = match bias {
            Some(b) => Some(broadcast_to(&reals::<F>(op, b)?, &b.shape, norm_shape).ok_or_else(|| bad("B", b))?),
            None => None,
        };
        let rows_count = xv.len().checked_div(n).unwrap_or(0);
        let mut y = Vec::with_capacity(xv.len());
        let (mut means, mut invs) = (Vec::new(), Vec::new());
        for row in xv.chunks_exact(n.max(1)).take(rows_count) {
            let (mean, inv) = row_stats(row, f64::from(epsilon), center);
            let (m, i) = (F::from_f64(mean), F::from_f64(inv));
            match &b {
                Some(b) => y.extend(row.iter().zip(&s).zip(b).map(|((&v, &s), &b)| (v - m) * i * s + b)),
                None => y.extend(row.iter().zip(&s).map(|(&v, &s)| (v - m) * i * s)),
            }
            means.push(mean);
            invs.push(inv);
        }
        let mut out = vec![tensor(op, x.shape.clone(), F::into_data(y, x.dtype()))?];
        if let Some(dtype) = stats {
            let mut shape = x.shape.clone();
            shape[axis..].fill(1);
            for v in [means, invs] {
                let data = TensorData::floats_from_f64(dtype, &v, false)
                    .ok_or_else(|| KernelError::new(op, format!("statistics cannot be {}", dtype.name())))?;
                out.push(tensor(op, shape.clone(), data)?);
            }
        }
        Ok(out)
    }, Err(unsupported(op, x)))
}

/// InstanceNormalization (`groups == None`: one group per channel, scale/bias per channel)
/// and GroupNormalization (`groups`, scale/bias per channel when `per_channel`, else per
/// group): X `[N, C, ...]` normalized over each group's channels and spatial positions.
pub fn group_norm(
    op: &'static str,
    groups: Option<usize>,
    per_channel: bool,
    epsilon: f32,
    inputs: &[&Tensor],
) -> Result<Tensor, KernelError> {
    let x = super::input(op, inputs, 0, "X")?;
    let scale = super::input(op, inputs, 1, "scale")?;
    let bias = super::input(op, inputs, 2, "B")?;
    let [_, c, ref spatial @ ..] = x.shape[..] else {
        return Err(KernelError::new(op, format!("X must be [N, C, ...], got shape {:?}", x.shape)));
    };
    let g = groups.unwrap_or(c);
    if g == 0 || !c.is_multiple_of(g) {
        return Err(KernelError::new(op, format!("{c} channels do not split into {g} groups")));
    }
    let per_channel = per_channel || groups.is_none();
    let params = if per_channel { c } else { g };
    if scale.len() != params || bias.len() != params {
        return Err(KernelError::new(
            op,
            format!("scale and B must hold {params} values, got {} and {}", scale.len(), bias.len()),
        ));
    }
    let plane: usize = spatial.iter().product();
    let row_len = c / g * plane;
    with_real!(x.dtype(), F => {
        let xv = reals::<F>(op, x)?;
        let (s, b) = (reals::<F>(op, scale)?, reals::<F>(op, bias)?);
        let mut y = Vec::with_capacity(xv.len());
        if row_len > 0 {
            for (r, row) in xv.chunks_exact(row_len).enumerate() {
                let group = r % g;
                let (mean, inv) = row_stats(row, f64::from(epsilon), true);
                let (m, i) = (F::from_f64(mean), F::from_f64(inv));
                for (k, chunk) in row.chunks_exact(plane).enumerate() {
                    let p = if per_channel { group * (c / g) + k } else { group };
                    let (s, b) = (s[p], b[p]);
                    y.extend(chunk.iter().map(|&v| (v - m) * i * s + b));
                }
            }
        }
        tensor(op, x.shape.clone(), F::into_data(y, x.dtype()))
    }, Err(unsupported(op, x)))
}

/// LpNormalization: `x / ||x||_p` along `axis`, p 1 or 2 (a zero norm leaves x, zero).
pub fn lp_norm(op: &'static str, axis: usize, p: u32, x: &Tensor) -> Result<Tensor, KernelError> {
    if axis >= x.shape.len() {
        return Err(KernelError::new(op, format!("axis {axis} is out of range for shape {:?}", x.shape)));
    }
    let (outer, n, inner) = split_at_axis(&x.shape, axis);
    with_real!(x.dtype(), F => {
        let xv = reals::<F>(op, x)?;
        let mut y = vec![F::ZERO; xv.len()];
        let mut norm = vec![0f64; inner];
        for o in 0..outer {
            let base = o * n * inner;
            norm.fill(0.0);
            for j in 0..n {
                for (acc, &v) in norm.iter_mut().zip(&xv[base + j * inner..base + (j + 1) * inner]) {
                    let v = v.to_f64();
                    *acc += if p == 1 { v.abs() } else { v * v };
                }
            }
            // A zero norm (an all-zero slice) divides by 1, as the ONNX reference does.
            let scale: Vec<F> = norm
                .iter()
                .map(|&s| F::from_f64(if s == 0.0 { 1.0 } else if p == 1 { s } else { s.sqrt() }))
                .collect();
            for j in 0..n {
                let range = base + j * inner..base + (j + 1) * inner;
                for ((d, &v), &s) in y[range.clone()].iter_mut().zip(&xv[range]).zip(&scale) {
                    *d = v / s;
                }
            }
        }
        tensor(op, x.shape.clone(), F::into_data(y, x.dtype()))
    }, Err(unsupported(op, x)))
}

/// MeanVarianceNormalization over `axes` (sorted): `(x - mean) / (sqrt(E[x²] - mean²) + 1e-9)`.
pub fn mean_variance(op: &'static str, axes: &[usize], x: &Tensor) -> Result<Tensor, KernelError> {
    if let Some(&a) = axes.iter().find(|&&a| a >= x.shape.len()) {
        return Err(KernelError::new(op, format!("axis {a} is out of range for shape {:?}", x.shape)));
    }
    with_real!(x.dtype(), F => {
        let xv = reals::<F>(op, x)?;
        let (r, n) = rows(&xv, &x.shape, axes);
        let mut y: Vec<F> = Vec::with_capacity(xv.len());
        if n > 0 {
            for row in r.chunks_exact(n) {
                let len = n as f64;
                let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / len;
                let square = row.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>() / len;
                let std = (square - mean * mean).max(0.0).sqrt();
                let (m, d) = (F::from_f64(mean), F::from_f64(std + 1e-9));
                y.extend(row.iter().map(|&v| (v - m) / d));
            }
        }
        let y = if matches!(r, Cow::Borrowed(_)) {
            y
        } else {
            let perm = axes_last(x.shape.len(), axes);
            let permuted_shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
            permute(&y, &permuted_shape, &inverse(&perm))
        };
        tensor(op, x.shape.clone(), F::into_data(y, x.dtype()))
    }, Err(unsupported(op, x)))
}

/// LRN across channels of X `[N, C, ...]`: `x / (bias + alpha / size * Σ x²)^beta` over the
/// channels `[c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]`.
pub fn lrn(op: &'static str, size: usize, alpha: f32, beta: f32, bias: f32, x: &Tensor) -> Result<Tensor, KernelError> {
    let [n, c, ref spatial @ ..] = x.shape[..] else {
        return Err(KernelError::new(op, format!("X must be [N, C, ...], got shape {:?}", x.shape)));
    };
    let plane: usize = spatial.iter().product();
    if size == 0 {
        return Err(KernelError::new(op, "size must be positive"));
    }
    // floor((size - 1) / 2) channels before, ceil((size - 1) / 2) = floor(size / 2) after.
    let (before, after) = ((size - 1) / 2, size / 2);
    with_real!(x.dtype(), F => {
        let xv = reals::<F>(op, x)?;
        let mut y = vec![F::ZERO; xv.len()];
        let mut acc = vec![0f64; plane];
        let coef = f64::from(alpha) / size as f64;
        for batch in 0..n {
            let base = batch * c * plane;
            for ch in 0..c {
                acc.fill(0.0);
                let lo = ch.saturating_sub(before);
                let hi = (ch + after).min(c - 1);
                for k in lo..=hi {
                    for (a, &v) in acc.iter_mut().zip(&xv[base + k * plane..base + (k + 1) * plane]) {
                        *a += v.to_f64() * v.to_f64();
                    }
                }
                let range = base + ch * plane..base + (ch + 1) * plane;
                for ((d, &v), &s) in y[range.clone()].iter_mut().zip(&xv[range]).zip(&acc) {
                    *d = F::from_f64(v.to_f64() / (f64::from(bias) + coef * s).powf(f64::from(beta)));
                }
            }
        }
        tensor(op, x.shape.clone(), F::into_data(y, x.dtype()))
    }, Err(unsupported(op, x)))
}

/// LogSoftmax (`log == true`) or Hardmax along `axis`; with `coerce_2d` (opset < 13) over
/// the flattened `shape[axis..]`.
pub fn softmax_like(
    op: &'static str,
    log: bool,
    axis: usize,
    coerce_2d: bool,
    x: &Tensor,
) -> Result<Tensor, KernelError> {
    let rank = x.shape.len();
    if axis > rank || (axis == rank && !coerce_2d) {
        return Err(KernelError::new(op, format!("axis {axis} is out of range for rank {rank}")));
    }
    let (outer, n, inner) = if coerce_2d {
        (x.shape[..axis].iter().product(), x.shape[axis..].iter().product(), 1)
    } else {
        split_at_axis(&x.shape, axis)
    };
    with_real!(x.dtype(), F => {
        let xv = reals::<F>(op, x)?;
        let mut y = vec![F::ZERO; xv.len()];
        let mut max = vec![F::ZERO; inner];
        let mut arg = vec![0usize; inner];
        let mut sum = vec![0f64; inner];
        let outer = if n * inner == 0 { 0 } else { outer };
        for o in 0..outer {
            let base = o * n * inner;
            let block = &xv[base..base + n * inner];
            max.fill(-F::INFINITY);
            arg.fill(0);
            for (j, row) in block.chunks_exact(inner).enumerate() {
                for ((m, a), &v) in max.iter_mut().zip(arg.iter_mut()).zip(row) {
                    if v > *m {
                        *m = v;
                        *a = j;
                    }
                }
            }
            let out = &mut y[base..base + n * inner];
            if log {
                sum.fill(0.0);
                for row in block.chunks_exact(inner) {
                    for ((s, &m), &v) in sum.iter_mut().zip(&max).zip(row) {
                        *s += (v - m).exp().to_f64();
                    }
                }
                let log_sum: Vec<F> = sum.iter().map(|&s| F::from_f64(s.ln())).collect();
                for (dst, row) in out.chunks_exact_mut(inner).zip(block.chunks_exact(inner)) {
                    for (((d, &v), &m), &l) in dst.iter_mut().zip(row).zip(&max).zip(&log_sum) {
                        *d = v - m - l;
                    }
                }
            } else {
                for (i, &a) in arg.iter().enumerate() {
                    out[a * inner + i] = F::ONE;
                }
            }
        }
        tensor(op, x.shape.clone(), F::into_data(y, x.dtype()))
    }, Err(unsupported(op, x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data)
    }

    fn close(got: &[f32], expected: &[f32]) {
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "got {got:?}, expected {expected:?}");
        }
    }

    #[test]
    fn layer_and_rms_norm_by_hand() {
        // Row [1, 3]: mean 2, var 1, eps 0 -> [-1, 1]; scale [2, 1], bias [0, 1] -> [-2, 2].
        let x = t(&[1, 2], vec![1.0, 3.0]);
        let out = layer_norm(
            "LayerNormalization",
            1,
            0.0,
            true,
            &[&x, &t(&[2], vec![2.0, 1.0]), &t(&[2], vec![0.0, 1.0])],
            Some(DType::F32),
        )
        .unwrap();
        close(out[0].as_f32().unwrap(), &[-2.0, 2.0]);
        close(out[1].as_f32().unwrap(), &[2.0]);
        close(out[2].as_f32().unwrap(), &[1.0]);
        // RMS of [3, 4]: sqrt((9 + 16) / 2) = sqrt(12.5); y = x / sqrt(12.5).
        let x = t(&[2], vec![3.0, 4.0]);
        let out = layer_norm("RMSNormalization", 0, 0.0, false, &[&x, &t(&[1], vec![1.0])], None).unwrap();
        let r = 12.5f32.sqrt();
        close(out[0].as_f32().unwrap(), &[3.0 / r, 4.0 / r]);
    }

    #[test]
    fn group_norm_per_group_and_lrn() {
        // X [1, 2, 1]: channels [1] and [3], one group: mean 2, std 1 -> [-1, 1];
        // per-group scale 2 and bias 1 -> [-1, 3].
        let x = t(&[1, 2, 1], vec![1.0, 3.0]);
        let y = group_norm("GroupNormalization", Some(1), false, 0.0, &[&x, &t(&[1], vec![2.0]), &t(&[1], vec![1.0])])
            .unwrap();
        close(y.as_f32().unwrap(), &[-1.0, 3.0]);
        // LRN size 1, alpha 1, beta 1, bias 1 on x = 1: 1 / (1 + 1 * 1) = 0.5.
        let y = lrn("LRN", 1, 1.0, 1.0, 1.0, &t(&[1, 1, 1], vec![1.0])).unwrap();
        close(y.as_f32().unwrap(), &[0.5]);
    }

    #[test]
    fn log_softmax_hardmax_lp_and_mvn() {
        // log_softmax([0, ln 3]) = [ln(1/4), ln(3/4)]; hardmax([[1, 2], [3, 0]]) over axis 0 = [[0, 1], [1, 0]].
        let x = t(&[2], vec![0.0, 3f32.ln()]);
        close(softmax_like("LogSoftmax", true, 0, false, &x).unwrap().as_f32().unwrap(), &[0.25f32.ln(), 0.75f32.ln()]);
        let x = t(&[2, 2], vec![1.0, 2.0, 3.0, 0.0]);
        close(softmax_like("Hardmax", false, 0, false, &x).unwrap().as_f32().unwrap(), &[0.0, 1.0, 1.0, 0.0]);
        // L2 norm along axis 0 of [3, 4] columns: [[3], [4]] / 5.
        let x = t(&[2, 1], vec![3.0, 4.0]);
        close(lp_norm("LpNormalization", 0, 2, &x).unwrap().as_f32().unwrap(), &[0.6, 0.8]);
        // MVN over axis 0 of [[1, 10], [3, 30]]: column means 2 and 20, stds 1 and 10 -> [[-1, -1], [1, 1]].
        let x = t(&[2, 2], vec![1.0, 10.0, 3.0, 30.0]);
        close(mean_variance("MeanVarianceNormalization", &[0], &x).unwrap().as_f32().unwrap(), &[-1.0, -1.0, 1.0, 1.0]);
    }
}
