//! Matrix products of row-major operands for the shapes inference runs: a convolution's
//! weights times its columns, a layer's activations times its weights, and the single-row
//! product of a classifier head.
//!
//! `matrixmultiply` packs both operands into its own panels on every call. A network's
//! products are small and many (MobileNetV2 at 96×96 has 1×1 convolutions over 3×3 and 6×6
//! planes, and a 1280×1000 classifier run on one row), so its packing, mostly scalar, cost
//! twice its arithmetic there (a profile of a MobileNetV2 simulate: 37 % of the time in
//! packing, 18 % in the multiply kernel). Here only the right operand is copied, a panel of
//! `NR` columns at a time with full-width copies, and the left operand is read in place: `MR`
//! rows at a time, one broadcast element per row and step of the inner dimension, against the
//! panel's vector of columns, in `MR` × `NR` accumulators that stay in registers. The tile
//! shapes were chosen by measuring whole simulate runs ([`WIDE`] against 8×32, 6×32, 4×96 and
//! 6×64: 4×64 was fastest on ResNet-50 by 13 % and on MobileNetV2 by 7 %).
//!
//! Every output element is the sum, in increasing order of the inner index, of fused
//! multiply-adds (`f32::mul_add`, rounded once): the same bits on every instruction set and
//! whatever the blocking, so a result never depends on the machine or on the thread count.

use multiversion::multiversion;

/// Rows and columns per tile when the product is wide.
const WIDE: (usize, usize) = (4, 64);
/// Rows and columns per tile when the product is narrow (a 3×3 or 4×4 plane): less padding
/// computed, more rows to keep as many accumulators busy.
const NARROW: (usize, usize) = (8, 16);

/// `c = a · b` (or `c += a · b` with `accumulate`): `a` is `m × k`, `b` is `k × n`, `c` is
/// `m × n`, all row-major and contiguous.
pub(crate) fn matmul_row_major(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    debug_assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (a, b) = (&a[..m * k], &b[..k * n]);
    if m == 1 {
        vector_times_matrix(a, b, &mut c[..n], accumulate);
    } else if n <= NARROW.1 {
        tiles::<{ NARROW.0 }, { NARROW.1 }>((m, k, n), a, b, c, accumulate);
    } else {
        tiles::<{ WIDE.0 }, { WIDE.1 }>((m, k, n), a, b, c, accumulate);
    }
}

/// The product tile by tile: for each panel of `NR` columns of `b` (copied, zero-padded past
/// `n`), every block of `MR` rows of `a`.
fn tiles<const MR: usize, const NR: usize>(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    let mut panel = vec![0.0f32; k * NR];
    // Rows of the last, partial block are padded with zeros (and their results dropped).
    let mut padded_rows = vec![0.0f32; MR * k];
    for first_col in (0..n).step_by(NR) {
        let width = NR.min(n - first_col);
        for (dst, row) in panel.chunks_exact_mut(NR).zip(b.chunks_exact(n)) {
            dst[..width].copy_from_slice(&row[first_col..first_col + width]);
        }
        for first_row in (0..m).step_by(MR) {
            let rows = MR.min(m - first_row);
            let block = &a[first_row * k..(first_row + rows) * k];
            let block = if rows == MR {
                block
            } else {
                padded_rows[..block.len()].copy_from_slice(block);
                padded_rows[block.len()..].fill(0.0);
                &padded_rows
            };
            let mut acc = [[0.0f32; NR]; MR];
            tile::<MR, NR>(block, &panel, &mut acc);
            for (i, sums) in acc.iter().enumerate().take(rows) {
                let out = &mut c[(first_row + i) * n + first_col..][..width];
                if accumulate {
                    for (o, &s) in out.iter_mut().zip(sums) {
                        *o += s;
                    }
                } else {
                    out.copy_from_slice(&sums[..width]);
                }
            }
        }
    }
}

/// One tile: `acc[i][j] = Σ_p rows[i][p] · panel[p][j]`, `rows` being `MR` rows of length
/// `k` back to back and `panel` `k` rows of `NR`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn tile<const MR: usize, const NR: usize>(rows: &[f32], panel: &[f32], acc: &mut [[f32; NR]; MR]) {
    let k = panel.len() / NR;
    let rows: [&[f32]; MR] = std::array::from_fn(|i| &rows[i * k..(i + 1) * k]);
    let mut sums = [[0.0f32; NR]; MR];
    for (p, columns) in panel.chunks_exact(NR).enumerate() {
        let columns: &[f32; NR] = columns.try_into().expect("chunks_exact yields NR values");
        for (row_sums, row) in sums.iter_mut().zip(&rows) {
            let weight = row[p];
            for (sum, &x) in row_sums.iter_mut().zip(columns) {
                *sum = weight.mul_add(x, *sum);
            }
        }
    }
    *acc = sums;
}

/// `y = x · b` (or `y += x · b`) for a row vector `x` of length `k` and a row-major `k × n`
/// matrix `b`: one pass over `b`, each output element the same in-order chain of fused
/// multiply-adds as [`tile`] computes.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn vector_times_matrix(x: &[f32], b: &[f32], y: &mut [f32], accumulate: bool) {
    let n = y.len();
    let mut sums = vec![0.0f32; n];
    for (&weight, row) in x.iter().zip(b.chunks_exact(n)) {
        for (sum, &v) in sums.iter_mut().zip(row) {
            *sum = weight.mul_add(v, *sum);
        }
    }
    if accumulate {
        for (out, s) in y.iter_mut().zip(sums) {
            *out += s;
        }
    } else {
        y.copy_from_slice(&sums);
    }
}

/// `y[j] = Σ_p x[p] · rows[j][p]` (or `y[j] +=` with `accumulate`) for the `n` rows of length `k` of `rows` (row-major `n × k`):
/// a row vector times a transposed matrix, as a classifier head multiplies its features by
/// its weights. Each row is read once, contiguously.
pub(crate) fn vector_times_rows_transposed(x: &[f32], rows: &[f32], y: &mut [f32], accumulate: bool) {
    let k = x.len();
    if k == 0 {
        if !accumulate {
            y.fill(0.0);
        }
        return;
    }
    for (out, row) in y.iter_mut().zip(rows.chunks_exact(k)) {
        let sum = dot(x, row);
        *out = if accumulate { *out + sum } else { sum };
    }
}

/// Lanes of [`dot`]'s partial sums.
const LANES: usize = 16;

/// `Σ x[p] · y[p]`: [`LANES`] partial sums of fused multiply-adds (lane `l` takes the
/// elements `p ≡ l` mod [`LANES`] in order), added pairwise at the end in a fixed tree.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (x_body, x_tail) = x.split_at(x.len() - x.len() % LANES);
    let (y_body, y_tail) = y.split_at(x_body.len());
    for (xs, ys) in x_body.chunks_exact(LANES).zip(y_body.chunks_exact(LANES)) {
        for ((lane, &a), &b) in lanes.iter_mut().zip(xs).zip(ys) {
            *lane = a.mul_add(b, *lane);
        }
    }
    for ((lane, &a), &b) in lanes.iter_mut().zip(x_tail).zip(y_tail) {
        *lane = a.mul_add(b, *lane);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic, irregular sequence of values in [-1, 1).
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The definition: each element's products summed in increasing inner index, in f64.
    fn reference(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j])).sum();
            }
        }
        c
    }

    #[test]
    fn products_of_every_shape_class_match_the_definition() {
        // Full and partial row blocks, narrow and wide panels with remainders, k of 1.
        for &(m, k, n) in
            &[(1, 1, 1), (1, 9, 40), (8, 3, 16), (9, 5, 9), (17, 31, 33), (3, 64, 70), (16, 1, 40), (13, 100, 5)]
        {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let mut c = vec![f32::NAN; m * n];
            matmul_row_major((m, k, n), &a, &b, &mut c, false);
            for (got, want) in c.iter().zip(reference(m, k, n, &a, &b)) {
                assert!((f64::from(*got) - want).abs() <= 1e-5 * (1.0 + want.abs()), "{m}x{k}x{n}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn accumulating_adds_to_what_the_output_held() {
        let (m, k, n) = (5, 7, 20);
        let (a, b) = (values(m * k, 3), values(k * n, 4));
        let mut plain = vec![0.0f32; m * n];
        matmul_row_major((m, k, n), &a, &b, &mut plain, false);
        let mut c = vec![2.0f32; m * n];
        matmul_row_major((m, k, n), &a, &b, &mut c, true);
        for (got, p) in c.iter().zip(&plain) {
            assert_eq!(*got, 2.0 + p);
        }
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        let mut c = vec![5.0f32; 6];
        matmul_row_major((2, 0, 3), &[], &[], &mut c, false);
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    fn each_element_is_an_in_order_chain_of_fused_multiply_adds() {
        // The documented rounding, checked exactly: one element's chain computed by hand.
        let (m, k, n) = (3, 37, 21);
        let (a, b) = (values(m * k, 5), values(k * n, 6));
        let mut c = vec![0.0f32; m * n];
        matmul_row_major((m, k, n), &a, &b, &mut c, false);
        for i in 0..m {
            for j in 0..n {
                let chain = (0..k).fold(0.0f32, |s, p| a[i * k + p].mul_add(b[p * n + j], s));
                assert_eq!(c[i * n + j].to_bits(), chain.to_bits(), "element ({i}, {j})");
            }
        }
    }

    #[test]
    fn a_vector_times_transposed_rows_matches_the_definition() {
        for &(k, n) in &[(1, 3), (15, 4), (16, 2), (1280, 10), (33, 1)] {
            let (x, rows) = (values(k, 7), values(n * k, 8));
            let mut y = vec![f32::NAN; n];
            vector_times_rows_transposed(&x, &rows, &mut y, false);
            for (j, got) in y.iter().enumerate() {
                let want: f64 = (0..k).map(|p| f64::from(x[p]) * f64::from(rows[j * k + p])).sum();
                assert!((f64::from(*got) - want).abs() <= 1e-5 * (1.0 + want.abs()), "{k}x{n} row {j}");
            }
        }
    }
}
