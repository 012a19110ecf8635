//! Normalizations: BatchNormalization in its inference form and Softmax (opset 13 per-axis
//! form, and the opset < 13 `coerce_2d` form that flattens at the axis).

use super::{KernelError, element_count, expect_inputs, f32_input, input, tensor};
use crate::ir::{Tensor, TensorData};

/// BatchNormalization (inference): inputs `[X, scale, B, mean, var]`, `X` of shape
/// `[N, C, ...]`, the others of length `C`. Computed as onnxruntime fuses it:
/// `Y = X * s + (B - mean * s)` with `s = scale / sqrt(var + epsilon)`.
pub fn batch_norm(epsilon: f32, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "BatchNormalization";
    expect_inputs(OP, inputs, 5, 5)?;
    let x_t = input(OP, inputs, 0, "X")?;
    let x = f32_input(OP, inputs, 0, "X")?;
    let [n, c, ref spatial @ ..] = x_t.shape[..] else {
        return Err(KernelError::new(OP, format!("X must be [N, C, ...], got shape {:?}", x_t.shape)));
    };
    let mut params = [&[][..]; 4];
    for (slot, (index, what)) in params.iter_mut().zip([(1, "scale"), (2, "B"), (3, "mean"), (4, "var")]) {
        let values = f32_input(OP, inputs, index, what)?;
        if values.len() != c {
            return Err(KernelError::new(OP, format!("{what} has {} values for {c} channels", values.len())));
        }
        *slot = values;
    }
    let [scale, bias, mean, var] = params;
    let fused_scale: Vec<f32> = scale.iter().zip(var).map(|(&s, &v)| s * (1.0 / (v + epsilon).sqrt())).collect();
    let fused_bias: Vec<f32> = bias.iter().zip(mean).zip(&fused_scale).map(|((&b, &m), &s)| b - m * s).collect();
    let plane: usize = spatial.iter().product();
    let mut y = Vec::with_capacity(x.len());
    if plane > 0 && n > 0 {
        for (values, channel) in x.chunks_exact(plane).zip((0..c).cycle()) {
            let (s, b) = (fused_scale[channel], fused_bias[channel]);
            y.extend(values.iter().map(|&v| v * s + b));
        }
    }
    tensor(OP, x_t.shape.clone(), TensorData::F32(y))
}

/// Softmax along `axis`; with `coerce_2d` (opset < 13) the input is seen as a 2-D matrix
/// `[prod(shape[..axis]), prod(shape[axis..])]` and normalized row by row.
pub fn softmax(axis: usize, coerce_2d: bool, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Softmax";
    expect_inputs(OP, inputs, 1, 1)?;
    let x_t = input(OP, inputs, 0, "X")?;
    let x = f32_input(OP, inputs, 0, "X")?;
    let rank = x_t.shape.len();
    // Opset < 13 allows axis == rank for coerce_2d (a [N, 1] matrix); otherwise it must name an axis.
    if axis > rank || (axis == rank && !coerce_2d) {
        return Err(KernelError::new(OP, format!("axis {axis} is out of range for rank {rank}")));
    }
    let (dim, inner) = if coerce_2d {
        (element_count(OP, &x_t.shape[axis..])?, 1)
    } else {
        (x_t.shape[axis], element_count(OP, &x_t.shape[axis + 1..])?)
    };
    let mut y = x.to_vec();
    let block = dim * inner;
    if block > 0 {
        let mut max = vec![0.0f32; inner];
        let mut sum = vec![0.0f64; inner];
        for values in y.chunks_exact_mut(block) {
            softmax_block(values, inner, &mut max, &mut sum);
        }
    }
    tensor(OP, x_t.shape.clone(), TensorData::F32(y))
}

/// Softmax over the rows of a `[dim, inner]` block, column by column (each column is one
/// softmax), walking contiguous rows. Subtracts the column max before `exp` so no term
/// overflows; sums in f64.
fn softmax_block(values: &mut [f32], inner: usize, max: &mut [f32], sum: &mut [f64]) {
    max.fill(f32::NEG_INFINITY);
    sum.fill(0.0);
    for row in values.chunks_exact(inner) {
        for (m, &v) in max.iter_mut().zip(row) {
            if v > *m {
                *m = v;
            }
        }
    }
    for row in values.chunks_exact_mut(inner) {
        for ((v, &m), s) in row.iter_mut().zip(max.iter()).zip(sum.iter_mut()) {
            *v = (*v - m).exp();
            *s += *v as f64;
        }
    }
    for row in values.chunks_exact_mut(inner) {
        for (v, &s) in row.iter_mut().zip(sum.iter()) {
            *v = (*v as f64 / s) as f32;
        }
    }
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
            assert!((g - e).abs() <= 1e-6 * e.abs().max(1.0), "got {got:?}, expected {expected:?}");
        }
    }

    #[test]
    fn batch_norm_per_channel() {
        // eps 1 and var 3 give std sqrt(3 + 1) = 2 for both channels.
        // Channel 0: scale 2, B 1, mean 3: y = (x - 3) / 2 * 2 + 1 = x - 2.
        // Channel 1: scale 1, B 0, mean -1: y = (x + 1) / 2.
        let x = t(&[1, 2, 1, 2], vec![5.0, 7.0, 1.0, 3.0]);
        let p = |v: [f32; 2]| t(&[2], v.to_vec());
        let y = batch_norm(1.0, &[&x, &p([2.0, 1.0]), &p([1.0, 0.0]), &p([3.0, -1.0]), &p([3.0, 3.0])]).unwrap();
        // ch0: [5-2, 7-2] = [3, 5]; ch1: [(1+1)/2, (3+1)/2] = [1, 2]
        assert_eq!(y.shape, vec![1, 2, 1, 2]);
        close(y.as_f32().unwrap(), &[3.0, 5.0, 1.0, 2.0]);
    }

    #[test]
    fn batch_norm_on_2d_input_and_bad_params() {
        // [N=2, C=1]: scale 1, B 0, mean 1, var 4 - eps(0): y = (x - 1) / 2.
        let x = t(&[2, 1], vec![3.0, -1.0]);
        let one = |v: f32| t(&[1], vec![v]);
        let y = batch_norm(0.0, &[&x, &one(1.0), &one(0.0), &one(1.0), &one(4.0)]).unwrap();
        close(y.as_f32().unwrap(), &[1.0, -1.0]);
        let two = t(&[2], vec![1.0, 1.0]);
        assert!(batch_norm(0.0, &[&x, &two, &one(0.0), &one(1.0), &one(4.0)]).is_err());
    }

    #[test]
    fn softmax_last_axis() {
        // softmax([0, ln 2, ln 3]) = [1, 2, 3] / 6; softmax([5, 5]) = [0.5, 0.5]
        let x = t(&[2, 3], vec![0.0, 2f32.ln(), 3f32.ln(), 100.0, 100.0, 100.0]);
        let y = softmax(1, false, &[&x]).unwrap();
        let third = 1.0 / 3.0;
        close(y.as_f32().unwrap(), &[1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0, third, third, third]);
    }

    #[test]
    fn softmax_inner_axis_and_coerced_2d() {
        // x [1, 2, 2] = [[0, ln 3], [ln 3, 0]]; softmax over axis 1 normalizes columns:
        // column 0: [0, ln 3] -> [1/4, 3/4]; column 1: [ln 3, 0] -> [3/4, 1/4].
        let l3 = 3f32.ln();
        let x = t(&[1, 2, 2], vec![0.0, l3, l3, 0.0]);
        let y = softmax(1, false, &[&x]).unwrap();
        close(y.as_f32().unwrap(), &[0.25, 0.75, 0.75, 0.25]);
        // coerce_2d at axis 1: one row of four values [0, l3, l3, 0] -> [1, 3, 3, 1] / 8.
        let y = softmax(1, true, &[&x]).unwrap();
        close(y.as_f32().unwrap(), &[0.125, 0.375, 0.375, 0.125]);
    }

    #[test]
    fn softmax_of_large_values_does_not_overflow_and_bad_axis_fails() {
        // exp(1000) overflows f32; shifted by the max: [1000, 1000 + ln 3] -> [1/4, 3/4].
        let x = t(&[2], vec![1000.0, 1000.0 + 3f32.ln()]);
        let y = softmax(0, false, &[&x]).unwrap();
        let y = y.as_f32().unwrap();
        assert!((y[0] - 0.25).abs() < 1e-4 && (y[1] - 0.75).abs() < 1e-4, "{y:?}");
        assert!(softmax(1, false, &[&x]).is_err());
    }
}
