//! Matrix products: ONNX Gemm (`alpha * A' * B' + beta * C`) and numpy-style batched MatMul.
//!
//! [`sgemm`] runs the products inference is made of (row-major operands, a row vector times a
//! transposed weight matrix) on the kernels of `tiled_gemm.rs`, and every other stride pattern
//! on `matrixmultiply`'s sgemm. sgemm is an `unsafe fn` and this crate forbids unsafe code, so
//! it is reached through ndarray's safe `general_mat_mul`, which (without ndarray's `blas`
//! feature) calls `matrixmultiply::sgemm` directly with the views' strides: transposes are just
//! swapped strides.

use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

use super::elementwise::{broadcast_shape, broadcast_strides};
use super::tiled_gemm;
use super::{KernelError, element_count, expect_inputs, f32_input, input, tensor};
use crate::ir::{Tensor, TensorData};

/// Row-major products at most this deep and this wide run on `tiled_gemm.rs`, larger ones on
/// matrixmultiply, whose packing pays off there. Measured on whole `cpu` simulate runs (1
/// thread): every product tiled made MobileNetV2 at 96×96 8 % faster than every product on
/// matrixmultiply and ResNet-50 at 224×224 17 % slower; these limits keep MobileNetV2's
/// gain (its 1×1 convolutions over 24×24 planes and below) and put ResNet-50 within 2 % of
/// matrixmultiply alone. A single row (a classifier head) is always tiled: packing a whole
/// weight matrix for one row cost a sixth of MobileNetV2's simulate.
const TILED_MAX_DEPTH: usize = 1024;
const TILED_MAX_COLUMNS: usize = 576;

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
    if alpha == 1.0 && (beta == 0.0 || beta == 1.0) && c.len() == m * n {
        let accumulate = beta == 1.0;
        if a_strides == (k, 1)
            && b_strides == (n, 1)
            && a.len() >= m * k
            && b.len() >= k * n
            && (m == 1 || (k <= TILED_MAX_DEPTH && n <= TILED_MAX_COLUMNS))
        {
            tiled_gemm::matmul_row_major((m, k, n), a, b, c, accumulate);
            return Ok(());
        }
        if m == 1 && b_strides == (1, k) && a_strides.1 == 1 && a.len() >= k && b.len() >= k * n {
            tiled_gemm::vector_times_rows_transposed(&a[..k], &b[..k * n], c, accumulate);
            return Ok(());
        }
    }
    let internal = |what: &str, e: ndarray::ShapeError| KernelError::new(op, format!("internal: {what} view: {e}"));
    let a = ArrayView2::from_shape((m, k).strides(a_strides), a).map_err(|e| internal("A", e))?;
    let b = ArrayView2::from_shape((k, n).strides(b_strides), b).map_err(|e| internal("B", e))?;
    let mut c = ArrayViewMut2::from_shape((m, n), c).map_err(|e| internal("C", e))?;
    ndarray::linalg::general_mat_mul(alpha, &a, &b, beta, &mut c);
    Ok(())
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
}
