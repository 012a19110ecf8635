//! Matrix products: ONNX Gemm (`alpha * A' * B' + beta * C`) and numpy-style batched MatMul.
//!
//! [`sgemm`] runs every product on faer's matrix multiplication (sequential: samples, not
//! products, are what run side by side), except single rows, which `gemv.rs` multiplies in
//! place. faer was chosen by measurement: on ResNet-50's convolution shapes (1 thread, AVX-512)
//! it ran 1.17-1.41× faster than matrixmultiply on every shape, and whole `cpu` simulate runs
//! took 18 % less time on ResNet-50 at 224×224 and 13 % less on MobileNetV2 at 96×96 than with
//! qairt's own register tiles (for small products) and matrixmultiply (for large ones). Its
//! kernels are picked at run time by instruction set: results are bit-identical on one
//! machine whatever the thread count, and may differ in the last bit across CPUs.

use super::elementwise::{broadcast_shape, broadcast_strides};
use super::gemv;
use super::{KernelError, element_count, expect_inputs, f32_input, input, tensor};
use crate::ir::{Tensor, TensorData};

/// `c = alpha * a * b + beta * c`, with `a` an `m x k` matrix and `b` a `k x n` matrix given by
/// their (row, column) strides into their slices, and `c` a row-major `m x n` slice. With
/// `beta == 0` the old contents of `c` are not read.
pub(crate) fn sgemm(
    op: &'static str,
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
    beta: f32,
    c: &mut [f32],
) -> Result<(), KernelError> {
    if c.len() != m * n {
        return Err(KernelError::new(op, format!("internal: {} output values for a {m}x{n} product", c.len())));
    }
    sgemm_strided(op, (m, k, n), alpha, a, a_strides, b, b_strides, beta, c, n)
}

/// [`sgemm`] into an `m x n` block of a wider row-major matrix: row `r` of `c` starts at
/// `c[r * c_row_stride]` (the columns of a convolution's output that one strip of its im2col
/// matrix produces). Values of `c` outside the block are neither read nor written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_strided(
    op: &'static str,
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
    beta: f32,
    c: &mut [f32],
    c_row_stride: usize,
) -> Result<(), KernelError> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let span = (m - 1).checked_mul(c_row_stride).and_then(|rows| rows.checked_add(n));
    let Some(c) = span.filter(|_| c_row_stride >= n).and_then(|span| c.get_mut(..span)) else {
        return Err(KernelError::new(
            op,
            format!("internal: {} output values for a {m}x{n} product with row stride {c_row_stride}", c.len()),
        ));
    };
    if k == 0 {
        c.chunks_mut(c_row_stride).for_each(|row| scale(&mut row[..n], beta));
        return Ok(());
    }
    let mut a_copy = Vec::new();
    let mut b_copy = Vec::new();
    let a_view = operand(op, "A", a, (m, k), a_strides, &mut a_copy)?;
    let b_view = operand(op, "B", b, (k, n), b_strides, &mut b_copy)?;
    if m == 1 && alpha == 1.0 && (beta == 0.0 || beta == 1.0) && a_strides.1 == 1 {
        // `operand` checked that both slices hold their matrices.
        let accumulate = beta == 1.0;
        if b_strides == (n, 1) {
            gemv::vector_times_matrix(&a[..k], &b[..k * n], c, accumulate);
            return Ok(());
        }
        if b_strides == (1, k) {
            gemv::vector_times_rows_transposed(&a[..k], &b[..k * n], c, accumulate);
            return Ok(());
        }
    }
    let accumulate = if beta == 0.0 {
        faer::Accum::Replace
    } else {
        c.chunks_mut(c_row_stride).for_each(|row| scale(&mut row[..n], beta));
        faer::Accum::Add
    };
    faer::linalg::matmul::matmul(
        // The transpose of a column-major view: faer 0.22's `from_row_major_slice_with_stride_mut`
        // builds a column-major view with those strides (and so writes out of bounds).
        faer::MatMut::from_column_major_slice_with_stride_mut(c, n, m, c_row_stride).transpose_mut(),
        accumulate,
        a_view,
        b_view,
        alpha,
        faer::Par::Seq,
    );
    Ok(())
}

/// `c *= beta`, with `beta == 0` giving zeros whatever `c` held (NaN included).
fn scale(c: &mut [f32], beta: f32) {
    if beta == 0.0 {
        c.fill(0.0);
    } else if beta != 1.0 {
        c.iter_mut().for_each(|v| *v *= beta);
    }
}

/// A `rows x cols` view of `values` with the given (row, column) strides. faer's safe views
/// need one of the strides to be 1 (a row- or column-major matrix, possibly with a longer
/// leading stride); any other stride pattern is gathered into `copy` first.
fn operand<'a>(
    op: &'static str,
    name: &str,
    values: &'a [f32],
    (rows, cols): (usize, usize),
    (row_stride, col_stride): (usize, usize),
    copy: &'a mut Vec<f32>,
) -> Result<faer::MatRef<'a, f32>, KernelError> {
    let last = (rows - 1)
        .checked_mul(row_stride)
        .and_then(|r| (cols - 1).checked_mul(col_stride).and_then(|c| r.checked_add(c)));
    if last.is_none_or(|last| last >= values.len()) {
        return Err(KernelError::new(
            op,
            format!(
                "internal: {name} of {} values is not a {rows}x{cols} matrix with strides ({row_stride}, {col_stride})",
                values.len()
            ),
        ));
    }
    Ok(if col_stride == 1 {
        faer::MatRef::from_row_major_slice_with_stride(values, rows, cols, row_stride)
    } else if row_stride == 1 {
        faer::MatRef::from_column_major_slice_with_stride(values, rows, cols, col_stride)
    } else {
        *copy = (0..rows).flat_map(|r| (0..cols).map(move |c| values[r * row_stride + c * col_stride])).collect();
        faer::MatRef::from_row_major_slice(copy, rows, cols)
    })
}

/// ONNX Gemm: inputs `[A, B]` or `[A, B, C]`; `A` is `M x K` (`K x M` with `trans_a`), `B` is
/// `K x N` (`N x K` with `trans_b`) and `C` broadcasts (one way) to `M x N`.
pub fn gemm(alpha: f32, beta: f32, trans_a: bool, trans_b: bool, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Gemm";
    expect_inputs(OP, inputs, 2, 3)?;
    let (a_t, b_t) = (input(OP, inputs, 0, "A")?, input(OP, inputs, 1, "B")?);
    let (a, b) = (f32_input(OP, inputs, 0, "A")?, f32_input(OP, inputs, 1, "B")?);
    let [a0, a1] = a_t.shape[..] else {
        return Err(KernelError::new(OP, format!("A must be 2-D, got shape {:?}", a_t.shape)));
    };
    let [b0, b1] = b_t.shape[..] else {
        return Err(KernelError::new(OP, format!("B must be 2-D, got shape {:?}", b_t.shape)));
    };
    // Logical A is M x K; stored row-major as [a0, a1].
    let (m, k, a_strides) = if trans_a { (a1, a0, (1, a1)) } else { (a0, a1, (a1, 1)) };
    // Logical B is K x N; stored row-major as [b0, b1].
    let (kb, n, b_strides) = if trans_b { (b1, b0, (1, b1)) } else { (b0, b1, (b1, 1)) };
    if k != kb {
        return Err(KernelError::new(
            OP,
            format!(
                "inner dimensions differ: A {:?} (trans {trans_a}) and B {:?} (trans {trans_b})",
                a_t.shape, b_t.shape
            ),
        ));
    }
    let len = element_count(OP, &[m, n])?;
    let mut y = vec![0.0f32; len];
    let mut gemm_beta = 0.0;
    if inputs.len() == 3 && beta != 0.0 {
        let c_t = input(OP, inputs, 2, "C")?;
        let c = f32_input(OP, inputs, 2, "C")?;
        fill_with_bias(&mut y, m, n, c, &c_t.shape, beta)?;
        gemm_beta = 1.0;
    }
    sgemm(OP, (m, k, n), alpha, a, a_strides, b, b_strides, gemm_beta, &mut y)?;
    tensor(OP, vec![m, n], TensorData::F32(y))
}

/// [`gemm`] of several samples (`samples[s]` is sample `s`'s `[A, B]` or `[A, B, C]`) whose
/// A is one row and whose B and C are the same tensors (a classifier's weights and bias),
/// with B stored as rows (`trans_b`) and `alpha` 1: the shape for which one sample's product
/// runs in `gemv.rs`. The weights are then read a block at a time for every sample
/// ([`gemv::vectors_times_rows_transposed`]), each output the bits [`gemm`] gives it alone.
/// `None` for any other shape, where each sample runs on its own.
pub fn gemm_group(
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    samples: &[Vec<&Tensor>],
) -> Option<Result<Vec<Vec<Tensor>>, KernelError>> {
    const OP: &str = "Gemm";
    let first = samples.first()?;
    let (b_t, c_t) = (*first.get(1)?, first.get(2).copied());
    let same = |s: &Vec<&Tensor>, k: usize, t: Option<&Tensor>| match (s.get(k), t) {
        (Some(mine), Some(shared)) => std::ptr::eq(*mine, shared),
        (None, None) => true,
        _ => false,
    };
    if !trans_b || alpha != 1.0 || !samples.iter().all(|s| same(s, 1, Some(b_t)) && same(s, 2, c_t)) {
        return None;
    }
    let [n, k] = b_t.shape[..] else { return None };
    let rows = b_t.as_f32().filter(|rows| rows.len() == n * k)?;
    let one_row: &[usize] = if trans_a { &[k, 1] } else { &[1, k] };
    let xs: Vec<&[f32]> =
        samples.iter().map(|s| s[0].as_f32().filter(|_| s[0].shape == one_row)).collect::<Option<_>>()?;
    // Each output starts as it does alone: `beta * C`, or zeros.
    let bias = match c_t.filter(|_| beta != 0.0) {
        Some(c_t) => {
            let mut y = vec![0.0f32; n];
            if let Err(error) = fill_with_bias(&mut y, 1, n, c_t.as_f32()?, &c_t.shape, beta) {
                return Some(Err(error));
            }
            Some(y)
        }
        None => None,
    };
    let mut ys: Vec<Vec<f32>> = xs.iter().map(|_| bias.clone().unwrap_or_else(|| vec![0.0; n])).collect();
    gemv::vectors_times_rows_transposed(&xs, rows, &mut ys, bias.is_some());
    Some(ys.into_iter().map(|y| tensor(OP, vec![1, n], TensorData::F32(y)).map(|t| vec![t])).collect())
}

/// `y = beta * C` broadcast to `m x n`; `C`'s shape must broadcast to it one way.
fn fill_with_bias(
    y: &mut [f32],
    m: usize,
    n: usize,
    c: &[f32],
    c_shape: &[usize],
    beta: f32,
) -> Result<(), KernelError> {
    let target = [m, n];
    let fits = c_shape.len() <= 2
        && c_shape.iter().rev().zip(target.iter().rev()).all(|(&have, &want)| have == want || have == 1);
    if !fits {
        return Err(KernelError::new("Gemm", format!("C of shape {c_shape:?} does not broadcast to [{m}, {n}]")));
    }
    let strides = broadcast_strides(c_shape, &target);
    let (row_step, col_step) = (strides[0], strides[1]);
    for (i, row) in y.chunks_exact_mut(n.max(1)).enumerate().take(m) {
        let base = i * row_step;
        if col_step == 1 {
            for (out, &v) in row.iter_mut().zip(&c[base..base + n]) {
                *out = beta * v;
            }
        } else {
            row.fill(beta * c[base]);
        }
    }
    Ok(())
}

/// numpy `matmul`: 1-D operands are promoted (a leading 1 for A, a trailing 1 for B) and the
/// promoted axis dropped from the result; leading batch axes broadcast.
pub fn matmul(inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "MatMul";
    expect_inputs(OP, inputs, 2, 2)?;
    let (a_t, b_t) = (input(OP, inputs, 0, "A")?, input(OP, inputs, 1, "B")?);
    let (a, b) = (f32_input(OP, inputs, 0, "A")?, f32_input(OP, inputs, 1, "B")?);
    if a_t.shape.is_empty() || b_t.shape.is_empty() {
        return Err(KernelError::new(OP, "operands must have rank 1 or more"));
    }
    let a_shape: Vec<usize> = if a_t.shape.len() == 1 { vec![1, a_t.shape[0]] } else { a_t.shape.clone() };
    let b_shape: Vec<usize> = if b_t.shape.len() == 1 { vec![b_t.shape[0], 1] } else { b_t.shape.clone() };
    let (a_batch, a_mat) = a_shape.split_at(a_shape.len() - 2);
    let (b_batch, b_mat) = b_shape.split_at(b_shape.len() - 2);
    let (m, k, kb, n) = (a_mat[0], a_mat[1], b_mat[0], b_mat[1]);
    if k != kb {
        return Err(KernelError::new(OP, format!("inner dimensions differ: {:?} x {:?}", a_t.shape, b_t.shape)));
    }
    let batch = broadcast_shape(a_batch, b_batch).ok_or_else(|| {
        KernelError::new(OP, format!("batch axes of {:?} and {:?} do not broadcast", a_t.shape, b_t.shape))
    })?;
    let mut out_shape = batch.clone();
    if a_t.shape.len() > 1 {
        out_shape.push(m);
    }
    if b_t.shape.len() > 1 {
        out_shape.push(n);
    }
    let batches = element_count(OP, &batch)?;
    let mut y = vec![0.0f32; element_count(OP, &out_shape)?];
    if batches == 0 || m == 0 || n == 0 {
        return tensor(OP, out_shape, TensorData::F32(y));
    }
    if b_batch.iter().all(|&d| d == 1) {
        // B is one matrix: A's batches stack into one tall matrix, one sgemm.
        sgemm(OP, (batches * m, k, n), 1.0, a, (k, 1), b, (n, 1), 0.0, &mut y)?;
    } else {
        let a_steps = broadcast_strides(a_batch, &batch);
        let b_steps = broadcast_strides(b_batch, &batch);
        let mut index = vec![0usize; batch.len()];
        for out in y.chunks_exact_mut(m * n) {
            let a_at: usize = index.iter().zip(&a_steps).map(|(i, s)| i * s).sum::<usize>() * m * k;
            let b_at: usize = index.iter().zip(&b_steps).map(|(i, s)| i * s).sum::<usize>() * k * n;
            sgemm(OP, (m, k, n), 1.0, &a[a_at..a_at + m * k], (k, 1), &b[b_at..b_at + k * n], (n, 1), 0.0, out)?;
            for level in (0..batch.len()).rev() {
                index[level] += 1;
                if index[level] < batch[level] {
                    break;
                }
                index[level] = 0;
            }
        }
    }
    tensor(OP, out_shape, TensorData::F32(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strided_product_writes_its_block_only_with_the_bits_of_a_contiguous_one() {
        // A 5x37 block at column 3 of a 5x64 row-major matrix, accumulated and replaced: the
        // same bits as the product into a contiguous 5x37 matrix, and nothing else touched.
        let (m, k, n, stride, at) = (5usize, 300usize, 37usize, 64usize, 3usize);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 211) as f32 / 97.0 - 1.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 199) as f32 / 89.0 - 1.0).collect();
        for beta in [0.0f32, 1.0] {
            let mut wide: Vec<f32> = (0..m * stride).map(|i| i as f32).collect();
            let mut narrow: Vec<f32> = (0..m).flat_map(|r| (0..n).map(move |c| (r * stride + at + c) as f32)).collect();
            sgemm("test", (m, k, n), 1.0, &a, (k, 1), &b, (n, 1), beta, &mut narrow).unwrap();
            sgemm_strided("test", (m, k, n), 1.0, &a, (k, 1), &b, (n, 1), beta, &mut wide[at..], stride).unwrap();
            for (i, &v) in wide.iter().enumerate() {
                let (r, c) = (i / stride, i % stride);
                let want = if (at..at + n).contains(&c) { narrow[r * n + c - at] } else { i as f32 };
                assert_eq!(v.to_bits(), want.to_bits(), "beta {beta}, row {r}, column {c}");
            }
        }
        let mut short = vec![0.0f32; 4 * stride];
        assert!(sgemm_strided("test", (m, k, n), 1.0, &a, (k, 1), &b, (n, 1), 0.0, &mut short, stride).is_err());
        assert!(sgemm_strided("test", (m, k, n), 1.0, &a, (k, 1), &b, (n, 1), 0.0, &mut vec![0.0; 999], 30).is_err());
    }

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data.to_vec())
    }

    #[test]
    fn gemm_plain() {
        // [[1,2],[3,4]] x [[5,6],[7,8]] = [[1*5+2*7, 1*6+2*8], [3*5+4*7, 3*6+4*8]] = [[19,22],[43,50]]
        let a = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = t(&[2, 2], &[5.0, 6.0, 7.0, 8.0]);
        let y = gemm(1.0, 1.0, false, false, &[&a, &b]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn gemm_transposes_alpha_beta_and_row_bias() {
        // A stored [K=3, M=2] = [[1,4],[2,5],[3,6]] so A' = [[1,2,3],[4,5,6]].
        // B stored [N=2, K=3] = [[1,0,1],[0,1,0]] so B' = [[1,0],[0,1],[1,0]].
        // A'B' = [[1+3, 2], [4+6, 5]] = [[4,2],[10,5]]; alpha 2 -> [[8,4],[20,10]]
        // C = [1, 2] (shape [2], one row broadcast), beta 0.5 -> + [0.5, 1]
        // Y = [[8.5, 5], [20.5, 11]]
        let a = t(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let b = t(&[2, 3], &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        let c = t(&[2], &[1.0, 2.0]);
        let y = gemm(2.0, 0.5, true, true, &[&a, &b, &c]).unwrap();
        assert_eq!(y.shape, vec![2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[8.5, 5.0, 20.5, 11.0]);
    }

    #[test]
    fn gemm_column_and_scalar_bias() {
        // A = I(2), B = [[1,2],[3,4]]: AB = B.
        let a = t(&[2, 2], &[1.0, 0.0, 0.0, 1.0]);
        let b = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        // C column [10, 20] shape [2,1]: [[11,12],[23,24]]
        let col = t(&[2, 1], &[10.0, 20.0]);
        let y = gemm(1.0, 1.0, false, false, &[&a, &b, &col]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[11.0, 12.0, 23.0, 24.0]);
        // C scalar 1: [[2,3],[4,5]]
        let one = Tensor::scalar_f32(1.0);
        let y = gemm(1.0, 1.0, false, false, &[&a, &b, &one]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn gemm_rejects_bad_shapes() {
        let a = t(&[2, 3], &[0.0; 6]);
        let b = t(&[2, 3], &[0.0; 6]);
        assert!(gemm(1.0, 1.0, false, false, &[&a, &b]).unwrap_err().message.contains("inner"));
        let c = t(&[3], &[0.0; 3]);
        let bt = t(&[3, 2], &[0.0; 6]);
        // Y is [2,2]; C [3] cannot broadcast to it.
        assert!(gemm(1.0, 1.0, false, false, &[&a, &bt, &c]).unwrap_err().message.contains("broadcast"));
    }

    #[test]
    fn matmul_vector_cases() {
        // [1,2] . [[1,2],[3,4]] = [1+6, 2+8] = [7, 10], shape [2]
        let v = t(&[2], &[1.0, 2.0]);
        let m = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let y = matmul(&[&v, &m]).unwrap();
        assert_eq!((y.shape.clone(), y.as_f32().unwrap().to_vec()), (vec![2], vec![7.0, 10.0]));
        // [[1,2],[3,4]] . [1,2] = [5, 11], shape [2]
        let y = matmul(&[&m, &v]).unwrap();
        assert_eq!((y.shape.clone(), y.as_f32().unwrap().to_vec()), (vec![2], vec![5.0, 11.0]));
        // [1,2] . [1,2] = 5, shape []
        let y = matmul(&[&v, &v]).unwrap();
        assert_eq!((y.shape.clone(), y.as_f32().unwrap().to_vec()), (vec![], vec![5.0]));
    }

    #[test]
    fn matmul_broadcasts_batches() {
        // A [2,1 | 1,2]: rows [1,2] and [3,4]; B [3 | 2,1]: columns [1,0], [0,1], [1,1].
        // Batch axes [2,1] and [3] broadcast to [2,3]; Y[i,j] = A[i] . B[j]:
        // A0 -> [1, 2, 1+2=3]; A1 -> [3, 4, 3+4=7].
        let a = t(&[2, 1, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = t(&[3, 2, 1], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let y = matmul(&[&a, &b]).unwrap();
        assert_eq!(y.shape, vec![2, 3, 1, 1]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
    }

    #[test]
    fn matmul_stacks_batches_against_one_matrix() {
        // A [2,2,2] = I, 2I; B = [[1,2],[3,4]] -> B, 2B
        let a = t(&[2, 2, 2], &[1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0]);
        let b = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let y = matmul(&[&a, &b]).unwrap();
        assert_eq!(y.shape, vec![2, 2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 6.0, 8.0]);
    }

    /// Small integers: every product and sum is exact in float32, whatever the kernel's order.
    fn integers(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7 + seed * 3) % 11) as f32 - 5.0).collect()
    }

    /// `alpha * a * b + beta * c` from the definition, `a` and `b` read through their strides.
    fn definition(
        (m, k, n): (usize, usize, usize),
        alpha: f32,
        a: &[f32],
        (ar, ac): (usize, usize),
        b: &[f32],
        (br, bc): (usize, usize),
        beta: f32,
        c: &[f32],
    ) -> Vec<f32> {
        (0..m * n)
            .map(|at| {
                let (i, j) = (at / n, at % n);
                let sum: f32 = (0..k).map(|p| a[i * ar + p * ac] * b[p * br + j * bc]).sum();
                alpha * sum + beta * c[at]
            })
            .collect()
    }

    #[test]
    fn sgemm_reads_every_stride_pattern_and_scales_by_alpha_and_beta() {
        // Row-major, column-major (a transpose), padded leading strides, and strides with no
        // unit axis (gathered first); one row (the gemv paths) and several.
        /// Shape, A's strides, B's strides, alpha, beta.
        type Case = ((usize, usize, usize), (usize, usize), (usize, usize), f32, f32);
        let cases: &[Case] = &[
            ((3, 4, 5), (4, 1), (5, 1), 1.0, 0.0),
            ((3, 4, 5), (1, 3), (1, 4), 1.0, 1.0),
            ((3, 4, 5), (6, 1), (1, 7), 2.0, 0.5),
            ((3, 4, 5), (8, 2), (10, 2), 1.0, 0.0),
            ((1, 6, 5), (6, 1), (5, 1), 1.0, 1.0),
            ((1, 6, 5), (6, 1), (1, 6), 1.0, 0.0),
            ((1, 6, 5), (6, 1), (1, 6), -1.0, 2.0),
            ((17, 33, 65), (33, 1), (65, 1), 1.0, 0.0),
        ];
        for &((m, k, n), a_strides, b_strides, alpha, beta) in cases {
            let a_len = (m - 1) * a_strides.0 + (k - 1) * a_strides.1 + 1;
            let b_len = (k - 1) * b_strides.0 + (n - 1) * b_strides.1 + 1;
            let (a, b) = (integers(a_len, 1), integers(b_len, 2));
            let mut c = integers(m * n, 3);
            let want = definition((m, k, n), alpha, &a, a_strides, &b, b_strides, beta, &c);
            sgemm("test", (m, k, n), alpha, &a, a_strides, &b, b_strides, beta, &mut c).unwrap();
            assert_eq!(c, want, "{m}x{k}x{n} strides {a_strides:?} {b_strides:?}");
        }
    }

    #[test]
    fn sgemm_with_beta_zero_ignores_what_the_output_held_and_an_empty_depth_gives_beta_c() {
        let (a, b) = (integers(6, 1), integers(6, 2));
        let mut c = vec![f32::NAN; 4];
        sgemm("test", (2, 3, 2), 1.0, &a, (3, 1), &b, (2, 1), 0.0, &mut c).unwrap();
        assert_eq!(c, definition((2, 3, 2), 1.0, &a, (3, 1), &b, (2, 1), 0.0, &[0.0; 4]));
        let mut c = vec![2.0f32; 4];
        sgemm("test", (2, 0, 2), 1.0, &[], (0, 1), &[], (2, 1), 0.5, &mut c).unwrap();
        assert_eq!(c, vec![1.0; 4]);
    }

    #[test]
    fn sgemm_rejects_operands_too_short_for_their_shape() {
        let mut c = vec![0.0f32; 4];
        assert!(sgemm("test", (2, 3, 2), 1.0, &[1.0; 5], (3, 1), &[1.0; 6], (2, 1), 0.0, &mut c).is_err());
        assert!(sgemm("test", (2, 3, 2), 1.0, &[1.0; 6], (3, 1), &[1.0; 6], (2, 1), 0.0, &mut c[..3]).is_err());
    }
}
