//! Products of one row: a row vector times a matrix, as a classifier head multiplies its
//! features by its weights (`x · b`, or `x · rowsᵀ` when the weights are stored transposed).
//!
//! General products run on faer (`gemm.rs`), which packs its operands into panels first. For
//! a single row that packing is all cost and no reuse: packing a MobileNetV2 classifier's
//! 1280×1000 weights for one row took a sixth of that model's simulate. Here each weight is
//! read once, in place.
//!
//! Every output element is an in-order chain of fused multiply-adds (`f32::mul_add`, rounded
//! once) or, for the transposed form, 16 such chains added in a fixed tree: the same bits on
//! every instruction set.

use multiversion::multiversion;

/// `c = a · b` (or `c += a · b` with `accumulate`) for a row vector `a` of length `k` and a
/// row-major `k × n` matrix `b`.
pub(crate) fn vector_times_matrix(a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) {
    let k = a.len();
    debug_assert!(b.len() >= k * c.len());
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    chains(a, &b[..k * c.len()], c, accumulate);
}

/// `y = x · b` (or `y += x · b`): one pass over `b`'s rows, each output element an in-order
/// chain of fused multiply-adds.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn chains(x: &[f32], b: &[f32], y: &mut [f32], accumulate: bool) {
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

/// Bytes of rows [`vectors_times_rows_transposed`] takes at a time: well inside a core's L2
/// cache, so that the vectors after the first read them from there.
const ROW_BLOCK_BYTES: usize = 128 << 10;

/// [`vector_times_rows_transposed`] of several vectors (`xs[s]` into `ys[s]`) against the same
/// rows: a block of rows at a time for every vector, so that the rows (a classifier's
/// megabytes of weights) come from memory once for all of them, not once per vector, and
/// [`VECTORS`] vectors at a time against each row ([`dots`]). Each output is the same [`dot`]
/// as alone: the same bits.
pub(crate) fn vectors_times_rows_transposed(xs: &[&[f32]], rows: &[f32], ys: &mut [Vec<f32>], accumulate: bool) {
    let k = xs.first().map_or(0, |x| x.len());
    if k == 0 {
        for (x, y) in xs.iter().zip(ys.iter_mut()) {
            vector_times_rows_transposed(x, rows, y, accumulate);
        }
        return;
    }
    let n = ys.first().map_or(0, Vec::len);
    let block = (ROW_BLOCK_BYTES / (k * size_of::<f32>())).max(1);
    for start in (0..n).step_by(block) {
        let end = (start + block).min(n);
        let rows = &rows[start * k..end * k];
        let mut pairs: Vec<(&[f32], &mut [f32])> =
            xs.iter().zip(ys.iter_mut()).map(|(x, y)| (*x, &mut y[start..end])).collect();
        let mut groups = pairs.chunks_exact_mut(VECTORS);
        for group in &mut groups {
            let x: [&[f32]; VECTORS] = std::array::from_fn(|v| group[v].0);
            for (j, row) in rows.chunks_exact(k).enumerate() {
                for ((_, y), sum) in group.iter_mut().zip(dots(x, row)) {
                    y[j] = if accumulate { y[j] + sum } else { sum };
                }
            }
        }
        for (x, y) in groups.into_remainder() {
            vector_times_rows_transposed(x, rows, y, accumulate);
        }
    }
}

/// Vectors [`dots`] takes against one row at a time.
const VECTORS: usize = 4;

/// [`dot`] of each of [`VECTORS`] vectors with the same row: each its own lanes, chains and
/// tree (the same bits as [`dot`] alone), the row loaded once for all of them and the
/// vectors' chains independent of each other, so that one chain's latency hides behind the
/// others'.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn dots(xs: [&[f32]; VECTORS], row: &[f32]) -> [f32; VECTORS] {
    debug_assert!(xs.iter().all(|x| x.len() == row.len()));
    let body = row.len() - row.len() % LANES;
    // Whole chunks of every slice, zipped, and one named array of lanes per vector: indexed
    // per vector, the chunks' bounds tests kept the sums on the stack between multiply-adds
    // (MobileNetV2's classifier took 0.18-0.19 ms per inference in groups of 4; 0.11-0.13 now).
    let [c0, c1, c2, c3] = xs.map(|x| x[..body].chunks_exact(LANES));
    let [mut l0, mut l1, mut l2, mut l3] = [[0.0f32; LANES]; VECTORS];
    for ((((r, x0), x1), x2), x3) in row[..body].chunks_exact(LANES).zip(c0).zip(c1).zip(c2).zip(c3) {
        for l in 0..LANES {
            l0[l] = x0[l].mul_add(r[l], l0[l]);
            l1[l] = x1[l].mul_add(r[l], l1[l]);
            l2[l] = x2[l].mul_add(r[l], l2[l]);
            l3[l] = x3[l].mul_add(r[l], l3[l]);
        }
    }
    let mut lanes = [l0, l1, l2, l3];
    for (v, x) in xs.iter().enumerate() {
        for (l, (&a, &b)) in x[body..].iter().zip(&row[body..]).enumerate() {
            lanes[v][l] = a.mul_add(b, lanes[v][l]);
        }
    }
    let mut sums = [0.0f32; VECTORS];
    for (sum, lanes) in sums.iter_mut().zip(lanes.iter_mut()) {
        let mut width = LANES;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                lanes[i] += lanes[i + width];
            }
        }
        *sum = lanes[0];
    }
    sums
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

    use crate::runtime::kernels::test_values::values;

    /// The definition: each element's products summed in f64, with the bound float32
    /// summation can be off by (`k` roundings of at most one epsilon of the absolute sum).
    fn reference(k: usize, n: usize, x: &[f32], b: &[f32]) -> Vec<(f64, f64)> {
        (0..n)
            .map(|j| {
                let terms = (0..k).map(|p| f64::from(x[p]) * f64::from(b[p * n + j]));
                let bound = k as f64 * f64::from(f32::EPSILON) * terms.clone().map(f64::abs).sum::<f64>();
                (terms.sum(), bound)
            })
            .collect()
    }

    #[test]
    fn a_vector_times_a_matrix_matches_the_definition() {
        for &(k, n) in &[(1, 1), (9, 40), (3, 16), (31, 33), (1280, 100), (100, 5)] {
            let (x, b) = (values(k, 1), values(k * n, 2));
            let mut y = vec![f32::NAN; n];
            vector_times_matrix(&x, &b, &mut y, false);
            for (got, (want, bound)) in y.iter().zip(reference(k, n, &x, &b)) {
                assert!((f64::from(*got) - want).abs() <= bound, "{k}x{n}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn accumulating_adds_to_what_the_output_held() {
        let (k, n) = (7, 20);
        let (x, b) = (values(k, 3), values(k * n, 4));
        let mut plain = vec![0.0f32; n];
        vector_times_matrix(&x, &b, &mut plain, false);
        let mut y = vec![2.0f32; n];
        vector_times_matrix(&x, &b, &mut y, true);
        for (got, p) in y.iter().zip(&plain) {
            assert_eq!(*got, 2.0 + p);
        }
        let mut transposed_plain = vec![0.0f32; 3];
        vector_times_rows_transposed(&x, &b[..3 * k], &mut transposed_plain, false);
        let mut transposed = vec![-1.0f32; 3];
        vector_times_rows_transposed(&x, &b[..3 * k], &mut transposed, true);
        for (got, p) in transposed.iter().zip(&transposed_plain) {
            assert_eq!(*got, -1.0 + p);
        }
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        let mut y = vec![5.0f32; 3];
        vector_times_matrix(&[], &[], &mut y, false);
        assert_eq!(y, vec![0.0; 3]);
        let mut y = vec![5.0f32; 3];
        vector_times_rows_transposed(&[], &[], &mut y, false);
        assert_eq!(y, vec![0.0; 3]);
    }

    #[test]
    fn each_element_is_an_in_order_chain_of_fused_multiply_adds() {
        // The documented rounding, checked exactly: each element's chain computed by hand.
        let (k, n) = (37, 21);
        let (x, b) = (values(k, 5), values(k * n, 6));
        let mut y = vec![0.0f32; n];
        vector_times_matrix(&x, &b, &mut y, false);
        for (j, got) in y.iter().enumerate() {
            let chain = (0..k).fold(0.0f32, |s, p| x[p].mul_add(b[p * n + j], s));
            assert_eq!(got.to_bits(), chain.to_bits(), "element {j}");
        }
    }

    #[test]
    fn vectors_times_shared_rows_give_each_vector_the_bits_it_gets_alone() {
        // 3000 rows of 40: several row blocks and a partial last one.
        for &(k, n) in &[(40, 3000), (1280, 100), (7, 5)] {
            let rows = values(n * k, 9);
            // Six vectors: four taken together against each row, two on their own.
            let xs: Vec<Vec<f32>> = (0..6).map(|s| values(k, 10 + s)).collect();
            for accumulate in [false, true] {
                let start: Vec<Vec<f32>> = (0..6).map(|s| values(n, 20 + s)).collect();
                let mut together = start.clone();
                let refs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
                vectors_times_rows_transposed(&refs, &rows, &mut together, accumulate);
                for ((x, alone), together) in xs.iter().zip(start).zip(&together) {
                    let mut alone = alone;
                    vector_times_rows_transposed(x, &rows, &mut alone, accumulate);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&alone), bits(together), "{k}x{n}, accumulate {accumulate}");
                }
            }
        }
    }

    #[test]
    fn each_transposed_element_is_sixteen_chains_added_in_a_fixed_tree() {
        // The documented rounding, checked exactly, for row counts around multiples of the
        // rows taken together and lengths around multiples of the lanes.
        let by_hand = |x: &[f32], row: &[f32]| {
            let mut lanes = [0.0f32; 16];
            for (p, (&a, &b)) in x.iter().zip(row).enumerate() {
                lanes[p % 16] = a.mul_add(b, lanes[p % 16]);
            }
            for width in [8, 4, 2, 1] {
                for l in 0..width {
                    lanes[l] += lanes[l + width];
                }
            }
            lanes[0]
        };
        for &(k, n) in &[(1, 9), (15, 4), (16, 5), (17, 8), (47, 3), (1280, 11)] {
            let (x, rows) = (values(k, 11), values(n * k, 12));
            let mut y = vec![f32::NAN; n];
            vector_times_rows_transposed(&x, &rows, &mut y, false);
            for (j, got) in y.iter().enumerate() {
                let want = by_hand(&x, &rows[j * k..(j + 1) * k]);
                assert_eq!(got.to_bits(), want.to_bits(), "{k}x{n} row {j}");
            }
        }
    }

    #[test]
    fn a_vector_times_transposed_rows_matches_the_definition() {
        for &(k, n) in &[(1, 3), (15, 4), (16, 2), (1280, 10), (33, 1)] {
            let (x, rows) = (values(k, 7), values(n * k, 8));
            let mut y = vec![f32::NAN; n];
            vector_times_rows_transposed(&x, &rows, &mut y, false);
            let transposed: Vec<f32> = (0..k * n).map(|i| rows[(i % n) * k + i / n]).collect();
            for (j, (got, (want, bound))) in y.iter().zip(reference(k, n, &x, &transposed)).enumerate() {
                assert!((f64::from(*got) - want).abs() <= bound, "{k}x{n} row {j}: {got} vs {want}");
            }
        }
    }
}
