//! Reductions and scans along axes: the Reduce* family, ArgMax/ArgMin, CumSum/CumProd and
//! TopK, on every numeric element type ONNX allows for them.
//!
//! Floats compute in their compute type ([`Real`]: float32 for float32, float16 and
//! bfloat16, rounded back as onnxruntime does; float64 natively), sums and products
//! accumulated in f64. Integers compute in their own type, sums and products wrapping as a C
//! loop does. Multi-axis reductions first move the reduced axes last (one permuted copy, none
//! when they already are), so every reduction walks contiguous rows; single-axis scans walk
//! `[outer, n, inner]` blocks row by row with `inner` accumulators.

use std::borrow::Cow;

use half::{bf16, f16};

use super::{KernelError, tensor};
use crate::ir::{DType, Tensor, TensorData};

/// A float compute type: f32 (for float32, float16, bfloat16) or f64.
pub(crate) trait Real:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    /// The data of a tensor of a float type computed in `Self` (`None` for other types).
    fn slice(data: &TensorData) -> Option<Cow<'_, [Self]>>;
    /// Values back in the float type `dtype` (one `slice` accepts), rounded to nearest.
    fn into_data(values: Vec<Self>, dtype: DType) -> TensorData;
}

macro_rules! real {
    ($t:ty) => {
        const ZERO: $t = 0.0;
        const ONE: $t = 1.0;
        const INFINITY: $t = <$t>::INFINITY;
        fn exp(self) -> $t {
            <$t>::exp(self)
        }
    };
}

impl Real for f32 {
    real!(f32);
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn slice(data: &TensorData) -> Option<Cow<'_, [f32]>> {
        match data {
            TensorData::F32(v) => Some(Cow::Borrowed(v)),
            TensorData::F16(v) => Some(Cow::Owned(v.iter().map(|x| x.to_f32()).collect())),
            TensorData::BF16(v) => Some(Cow::Owned(v.iter().map(|x| x.to_f32()).collect())),
            _ => None,
        }
    }
    fn into_data(values: Vec<f32>, dtype: DType) -> TensorData {
        match dtype {
            DType::F16 => TensorData::F16(values.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::BF16 => TensorData::BF16(values.iter().map(|&x| bf16::from_f32(x)).collect()),
            _ => TensorData::F32(values),
        }
    }
}

impl Real for f64 {
    real!(f64);
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn slice(data: &TensorData) -> Option<Cow<'_, [f64]>> {
        match data {
            TensorData::F64(v) => Some(Cow::Borrowed(v)),
            _ => None,
        }
    }
    fn into_data(values: Vec<f64>, _dtype: DType) -> TensorData {
        TensorData::F64(values)
    }
}

/// Runs `$body` with the type alias `$F` set to the compute type of float dtype `$dtype`
/// (f64 for float64, f32 for float32/float16/bfloat16); `$otherwise` for other types.
macro_rules! with_real {
    ($dtype:expr, $F:ident => $body:expr, $otherwise:expr) => {
        match $dtype {
            $crate::ir::DType::F64 => {
                type $F = f64;
                $body
            }
            $crate::ir::DType::F32 | $crate::ir::DType::F16 | $crate::ir::DType::BF16 => {
                type $F = f32;
                $body
            }
            _ => $otherwise,
        }
    };
}
pub(crate) use with_real;

/// The data of `t` in compute type `F` (the caller dispatched on its dtype).
pub(crate) fn reals<'a, F: Real>(op: &'static str, t: &'a Tensor) -> Result<Cow<'a, [F]>, KernelError> {
    F::slice(&t.data).ok_or_else(|| KernelError::new(op, format!("unexpected element type {}", t.dtype().name())))
}

/// An element type reductions order and accumulate: every integer type, bool (as 0/1) and the
/// float compute types. Integer arithmetic wraps.
pub(crate) trait Num: Copy + PartialOrd + 'static {
    const ZERO: Self;
    const ONE: Self;
    /// The identity of max (float: -inf).
    const LOWEST: Self;
    /// The identity of min (float: +inf).
    const HIGHEST: Self;
    fn add(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! int_num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const ZERO: $t = 0;
            const ONE: $t = 1;
            const LOWEST: $t = <$t>::MIN;
            const HIGHEST: $t = <$t>::MAX;
            fn add(self, other: $t) -> $t {
                self.wrapping_add(other)
            }
            fn mul(self, other: $t) -> $t {
                self.wrapping_mul(other)
            }
            fn is_nan(self) -> bool {
                false
            }
        }
    )*};
}

int_num!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! float_num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            const LOWEST: $t = <$t>::NEG_INFINITY;
            const HIGHEST: $t = <$t>::INFINITY;
            fn add(self, other: $t) -> $t {
                self + other
            }
            fn mul(self, other: $t) -> $t {
                self * other
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    )*};
}

float_num!(f32, f64);

/// Runs `$body` with `$v` bound to the elements of an integer-typed `$data` and wraps the
/// resulting vector (of the same element type) back into the same variant; `$otherwise` for
/// other types. 4- and 2-bit integers are left out (no ONNX reduction takes them).
macro_rules! map_ints {
    ($data:expr, $v:ident => $body:expr, $otherwise:expr) => {
        match $data {
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            _ => $otherwise,
        }
    };
}

/// Runs `$body` (which yields a value of one type for every branch) with `$v` bound to the
/// elements of any numeric `$data`, floats in their compute type (a `Cow`).
macro_rules! with_numeric {
    ($op:expr, $data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::I8($v) => Ok($body),
            TensorData::I16($v) => Ok($body),
            TensorData::I32($v) => Ok($body),
            TensorData::I64($v) => Ok($body),
            TensorData::U8($v) | TensorData::Bool($v) => Ok($body),
            TensorData::U16($v) => Ok($body),
            TensorData::U32($v) => Ok($body),
            TensorData::U64($v) => Ok($body),
            TensorData::F64($v) => Ok($body),
            data @ (TensorData::F32(_) | TensorData::F16(_) | TensorData::BF16(_)) => {
                let owned = <f32 as Real>::slice(data).unwrap_or_default();
                let $v = &*owned;
                Ok($body)
            }
            other => Err(KernelError::new($op, format!("{} is not supported", other.dtype().name()))),
        }
    };
}

/// `x` of `shape` with its axes reordered by `perm` (output axis `i` is input axis
/// `perm[i]`).
pub(crate) fn permute<T: Copy>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let rank = shape.len();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    let mut out = Vec::with_capacity(x.len());
    if x.is_empty() || rank == 0 {
        out.extend_from_slice(x);
        return out;
    }
    let (last_len, last_stride) = (out_shape[rank - 1], out_strides[rank - 1]);
    let mut index = vec![0usize; rank - 1];
    let mut base = 0usize;
    loop {
        out.extend((0..last_len).map(|k| x[base + k * last_stride]));
        // Odometer over every output axis but the last.
        let mut axis = rank - 1;
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            index[axis] += 1;
            base += out_strides[axis];
            if index[axis] < out_shape[axis] {
                break;
            }
            base -= out_strides[axis] * out_shape[axis];
            index[axis] = 0;
        }
    }
}

/// The permutation moving `axes` (sorted) last, kept axes first in order.
pub(crate) fn axes_last(rank: usize, axes: &[usize]) -> Vec<usize> {
    (0..rank).filter(|a| !axes.contains(a)).chain(axes.iter().copied()).collect()
}

/// The inverse of a permutation.
pub(crate) fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// `x` laid out as rows whose elements are the reduced `axes` (sorted): `(data, row length)`.
/// Borrowed when the reduced axes already are the last ones.
pub(crate) fn rows<'a, T: Copy>(x: &'a [T], shape: &[usize], axes: &[usize]) -> (Cow<'a, [T]>, usize) {
    let rank = shape.len();
    let row: usize = axes.iter().map(|&a| shape[a]).product();
    let trailing = axes.iter().enumerate().all(|(i, &a)| a == rank - axes.len() + i);
    if trailing { (Cow::Borrowed(x), row) } else { (Cow::Owned(permute(x, shape, &axes_last(rank, axes))), row) }
}

/// The reductions of the Reduce* family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

impl ReduceKind {
    /// Whether integer inputs are supported (their arithmetic stays in the type).
    pub fn takes_integers(self) -> bool {
        matches!(self, ReduceKind::Sum | ReduceKind::Max | ReduceKind::Min | ReduceKind::Prod)
    }
}

/// The output shape of a reduction over `axes` (sorted).
pub fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        if !axes.contains(&i) {
            out.push(d);
        } else if keepdims {
            out.push(1);
        }
    }
    out
}

/// The largest value; NaN propagates (numpy's max).
fn max_of<T: Num>(row: &[T]) -> T {
    row.iter().fold(T::LOWEST, |m, &v| {
        if m.is_nan() {
            m
        } else if v.is_nan() || v > m {
            v
        } else {
            m
        }
    })
}

/// The smallest value; NaN propagates (numpy's min).
fn min_of<T: Num>(row: &[T]) -> T {
    row.iter().fold(T::HIGHEST, |m, &v| {
        if m.is_nan() {
            m
        } else if v.is_nan() || v < m {
            v
        } else {
            m
        }
    })
}

/// One row reduced in an order-preserving type (integers, bool).
fn reduce_row_exact<T: Num>(kind: ReduceKind, row: &[T]) -> T {
    match kind {
        ReduceKind::Max => max_of(row),
        ReduceKind::Min => min_of(row),
        ReduceKind::Prod => row.iter().fold(T::ONE, |a, &v| a.mul(v)),
        _ => row.iter().fold(T::ZERO, |a, &v| a.add(v)),
    }
}

/// One row reduced in a float type, sums and products accumulated in f64.
fn reduce_row_real<F: Real + Num>(kind: ReduceKind, row: &[F]) -> F {
    let sum = |f: &dyn Fn(F) -> f64| -> f64 { row.iter().map(|&v| f(v)).sum() };
    match kind {
        ReduceKind::Max => max_of(row),
        ReduceKind::Min => min_of(row),
        ReduceKind::Sum => F::from_f64(row.iter().map(|&v| v.to_f64()).sum()),
        ReduceKind::Mean => F::from_f64(row.iter().map(|&v| v.to_f64()).sum::<f64>() / row.len() as f64),
        ReduceKind::Prod => F::from_f64(row.iter().map(|&v| v.to_f64()).product()),
        ReduceKind::L1 => F::from_f64(sum(&|v| v.to_f64().abs())),
        ReduceKind::L2 => F::from_f64(sum(&|v| v.to_f64() * v.to_f64()).sqrt()),
        ReduceKind::SumSquare => F::from_f64(sum(&|v| v.to_f64() * v.to_f64())),
        ReduceKind::LogSum => F::from_f64(row.iter().map(|&v| v.to_f64()).sum::<f64>().ln()),
        ReduceKind::LogSumExp => {
            let m = max_of(row);
            if row.is_empty() || m == F::INFINITY || m == -F::INFINITY {
                // Empty set: ln(0) = -inf; an infinite max dominates (and avoids inf - inf).
                return if row.is_empty() { -F::INFINITY } else { m };
            }
            let s: f64 = row.iter().map(|&v| (v - m).exp().to_f64()).sum();
            F::from_f64(s.ln() + m.to_f64())
        }
    }
}

/// Reduce* over `axes` (sorted, deduplicated); an empty `axes` reduces nothing (each element
/// is its own one-element set: `noop_with_empty_axes`, or a Reduce* whose `axes` select none).
pub fn reduce(
    op: &'static str,
    kind: ReduceKind,
    axes: &[usize],
    keepdims: bool,
    x: &Tensor,
) -> Result<Tensor, KernelError> {
    if let Some(&a) = axes.iter().find(|&&a| a >= x.shape.len()) {
        return Err(KernelError::new(op, format!("axis {a} is out of range for shape {:?}", x.shape)));
    }
    let shape = reduced_shape(&x.shape, axes, keepdims);
    let data = with_real!(x.dtype(), F => {
        let v = reals::<F>(op, x)?;
        let (r, n) = rows(&v, &x.shape, axes);
        let out: Vec<F> = if n == 0 {
            let count: usize = shape.iter().product();
            vec![reduce_row_real::<F>(kind, &[]); count]
        } else {
            r.chunks_exact(n).map(|row| reduce_row_real(kind, row)).collect()
        };
        F::into_data(out, x.dtype())
    }, {
        let bool_ok = matches!(kind, ReduceKind::Max | ReduceKind::Min);
        let unsupported = || KernelError::new(op, format!("{} inputs are not supported", x.dtype().name()));
        if !kind.takes_integers() {
            return Err(unsupported());
        }
        let count: usize = shape.iter().product();
        match &x.data {
            TensorData::Bool(v) if bool_ok => TensorData::Bool(exact_rows(kind, v, &x.shape, axes, count)),
            data => map_ints!(data, v => exact_rows(kind, v, &x.shape, axes, count), return Err(unsupported())),
        }
    });
    tensor(op, shape, data)
}

fn exact_rows<T: Num>(kind: ReduceKind, v: &[T], shape: &[usize], axes: &[usize], count: usize) -> Vec<T> {
    let (r, n) = rows(v, shape, axes);
    if n == 0 {
        return vec![reduce_row_exact::<T>(kind, &[]); count];
    }
    r.chunks_exact(n).map(|row| reduce_row_exact(kind, row)).collect()
}

/// `(outer, n, inner)` of a single-axis operation.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

/// ArgMax / ArgMin along `axis`: int64 indices of the first (or, with `select_last_index`,
/// last) extreme value. NaN counts as the extreme, as numpy's argmax does.
pub fn arg_reduce(
    op: &'static str,
    max: bool,
    axis: usize,
    keepdims: bool,
    select_last_index: bool,
    x: &Tensor,
) -> Result<Tensor, KernelError> {
    if axis >= x.shape.len() {
        return Err(KernelError::new(op, format!("axis {axis} is out of range for shape {:?}", x.shape)));
    }
    let shape = reduced_shape(&x.shape, &[axis], keepdims);
    let (outer, n, inner) = split_at_axis(&x.shape, axis);
    if n == 0 && outer * inner > 0 {
        return Err(KernelError::new(op, format!("cannot take the {op} of an empty axis {axis}")));
    }
    let out = with_numeric!(op, &x.data, v => arg_block(v, outer, n, inner, max, select_last_index))?;
    tensor(op, shape, TensorData::I64(out))
}

fn arg_block<T: Num>(v: &[T], outer: usize, n: usize, inner: usize, max: bool, last: bool) -> Vec<i64> {
    let mut out = vec![0i64; outer * inner];
    let mut best = vec![T::ZERO; inner];
    for o in 0..outer {
        let block = &v[o * n * inner..(o + 1) * n * inner];
        let idx = &mut out[o * inner..(o + 1) * inner];
        best.copy_from_slice(&block[..inner.min(block.len())]);
        for j in 1..n {
            let row = &block[j * inner..(j + 1) * inner];
            for ((b, i), &value) in best.iter_mut().zip(idx.iter_mut()).zip(row) {
                if b.is_nan() {
                    continue;
                }
                let better = if value.is_nan() {
                    true
                } else if max {
                    value > *b || (last && value == *b)
                } else {
                    value < *b || (last && value == *b)
                };
                if better {
                    *b = value;
                    *i = j as i64;
                }
            }
        }
    }
    out
}

/// CumSum / CumProd along `axis`.
pub fn cumulative(
    op: &'static str,
    product: bool,
    axis: usize,
    exclusive: bool,
    reverse: bool,
    x: &Tensor,
) -> Result<Tensor, KernelError> {
    if axis >= x.shape.len() {
        return Err(KernelError::new(op, format!("axis {axis} is out of range for shape {:?}", x.shape)));
    }
    let dims = split_at_axis(&x.shape, axis);
    let data = with_real!(x.dtype(), F => {
        let v = reals::<F>(op, x)?;
        F::into_data(scan::<F>(&v, dims, product, exclusive, reverse), x.dtype())
    }, map_ints!(&x.data, v => scan(v, dims, product, exclusive, reverse), {
        return Err(KernelError::new(op, format!("{} inputs are not supported", x.dtype().name())));
    }));
    tensor(op, x.shape.clone(), data)
}

fn scan<T: Num>(
    v: &[T],
    (outer, n, inner): (usize, usize, usize),
    product: bool,
    exclusive: bool,
    reverse: bool,
) -> Vec<T> {
    let mut out = vec![T::ZERO; v.len()];
    let start = if product { T::ONE } else { T::ZERO };
    let mut acc = vec![start; inner];
    for o in 0..outer {
        acc.fill(start);
        let base = o * n * inner;
        for step in 0..n {
            let j = if reverse { n - 1 - step } else { step };
            let row = &v[base + j * inner..base + (j + 1) * inner];
            let dst = &mut out[base + j * inner..base + (j + 1) * inner];
            for ((d, a), &x) in dst.iter_mut().zip(acc.iter_mut()).zip(row) {
                let next = if product { a.mul(x) } else { a.add(x) };
                *d = if exclusive { *a } else { next };
                *a = next;
            }
        }
    }
    out
}

/// TopK along `axis`: the `k` largest (or smallest) values, sorted, and their int64 indices;
/// equal values keep the lower index first (the ONNX rule).
pub fn top_k(op: &'static str, axis: usize, k: usize, largest: bool, x: &Tensor) -> Result<Vec<Tensor>, KernelError> {
    if axis >= x.shape.len() {
        return Err(KernelError::new(op, format!("axis {axis} is out of range for shape {:?}", x.shape)));
    }
    let (outer, n, inner) = split_at_axis(&x.shape, axis);
    if k > n {
        return Err(KernelError::new(op, format!("k {k} is larger than axis {axis} of shape {:?}", x.shape)));
    }
    let mut shape = x.shape.clone();
    shape[axis] = k;
    let mut indices = Vec::with_capacity(outer * k * inner);
    with_numeric!(op, &x.data, v => select(v, (outer, n, inner), k, largest, &mut indices))?;
    // Values are gathered from the input in its own type (exact for every type).
    let flat: Vec<usize> = gather_positions(&indices, outer, n, inner, k);
    let values = tensor(op, shape.clone(), x.data.gather(&flat))?;
    let indices = tensor(op, shape, TensorData::I64(indices))?;
    Ok(vec![values, indices])
}

/// Fills `indices` (layout `[outer, k, inner]`) with the selected positions along the axis.
fn select<T: Num>(v: &[T], (outer, n, inner): (usize, usize, usize), k: usize, largest: bool, indices: &mut Vec<i64>) {
    indices.resize(outer * k * inner, 0);
    let mut column: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| v[(o * n + j) * inner + i];
            column.clear();
            column.extend(0..n);
            // NaN sorts as the largest value, as onnxruntime orders it.
            let cmp = |a: &usize, b: &usize| {
                let (x, y) = (at(*a), at(*b));
                let ord = match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                };
                let ord = if largest { ord.reverse() } else { ord };
                ord.then(a.cmp(b))
            };
            if k < n && k > 0 {
                column.select_nth_unstable_by(k - 1, cmp);
            }
            column.truncate(k);
            column.sort_unstable_by(cmp);
            for (r, &j) in column.iter().enumerate() {
                indices[(o * k + r) * inner + i] = j as i64;
            }
        }
    }
}

fn gather_positions(indices: &[i64], outer: usize, n: usize, inner: usize, k: usize) -> Vec<usize> {
    let mut flat = Vec::with_capacity(indices.len());
    for o in 0..outer {
        for r in 0..k {
            for i in 0..inner {
                flat.push((o * n + indices[(o * k + r) * inner + i] as usize) * inner + i);
            }
        }
    }
    flat
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data)
    }

    #[test]
    fn permute_moves_axes() {
        // [2, 3] transposed: [[0,1,2],[3,4,5]] -> [[0,3],[1,4],[2,5]].
        assert_eq!(permute(&[0, 1, 2, 3, 4, 5], &[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
        // [2, 1, 2] with axes (2, 0, 1): element (a, 0, c) goes to (c, a, 0).
        assert_eq!(permute(&[0, 1, 2, 3], &[2, 1, 2], &[2, 0, 1]), vec![0, 2, 1, 3]);
    }

    #[test]
    fn reduce_over_non_trailing_axes_and_empty_sets() {
        // x [2, 3] = [[1, 2, 3], [4, 5, 6]]: sum over axis 0 = [5, 7, 9]; max over 0 = [4, 5, 6];
        // mean over both = 21 / 6 = 3.5; L2 over axis 1 = [sqrt 14, sqrt 77].
        let x = t(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let y = reduce("ReduceSum", ReduceKind::Sum, &[0], false, &x).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[5.0, 7.0, 9.0]);
        let y = reduce("ReduceMax", ReduceKind::Max, &[0], true, &x).unwrap();
        assert_eq!((y.shape.clone(), y.as_f32().unwrap().to_vec()), (vec![1, 3], vec![4.0, 5.0, 6.0]));
        let y = reduce("ReduceMean", ReduceKind::Mean, &[0, 1], false, &x).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[3.5]);
        let y = reduce("ReduceL2", ReduceKind::L2, &[1], false, &x).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[14f32.sqrt(), 77f32.sqrt()]);
        // Reducing an empty axis gives each reduction's identity.
        let e = t(&[2, 0], vec![]);
        let y = reduce("ReduceProd", ReduceKind::Prod, &[1], false, &e).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[1.0, 1.0]);
        let y = reduce("ReduceMin", ReduceKind::Min, &[1], false, &e).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[f32::INFINITY; 2]);
    }

    #[test]
    fn integer_reductions_stay_in_their_type() {
        // int32 [[1, -2], [3, 4]]: sum over axis 1 = [-1, 7]; prod over axis 0 = [3, -8];
        // bool max (any) over axis 1 of [[0, 1], [0, 0]] = [1, 0].
        let x = Tensor::new(vec![2, 2], TensorData::I32(vec![1, -2, 3, 4])).unwrap();
        let y = reduce("ReduceSum", ReduceKind::Sum, &[1], false, &x).unwrap();
        assert_eq!(y.data, TensorData::I32(vec![-1, 7]));
        let y = reduce("ReduceProd", ReduceKind::Prod, &[0], false, &x).unwrap();
        assert_eq!(y.data, TensorData::I32(vec![3, -8]));
        let b = Tensor::new(vec![2, 2], TensorData::Bool(vec![0, 1, 0, 0])).unwrap();
        let y = reduce("ReduceMax", ReduceKind::Max, &[1], false, &b).unwrap();
        assert_eq!(y.data, TensorData::Bool(vec![1, 0]));
        assert!(reduce("ReduceMean", ReduceKind::Mean, &[1], false, &x).is_err());
    }

    #[test]
    fn arg_scan_and_top_k() {
        // [[1, 3, 3], [2, 0, 2]]: argmax axis 1 = [1, 0], last index [2, 2]; argmin axis 0 = [0, 1, 1].
        let x = t(&[2, 3], vec![1.0, 3.0, 3.0, 2.0, 0.0, 2.0]);
        let y = arg_reduce("ArgMax", true, 1, false, false, &x).unwrap();
        assert_eq!(y.data, TensorData::I64(vec![1, 0]));
        let y = arg_reduce("ArgMax", true, 1, false, true, &x).unwrap();
        assert_eq!(y.data, TensorData::I64(vec![2, 2]));
        let y = arg_reduce("ArgMin", false, 0, true, false, &x).unwrap();
        assert_eq!((y.shape.clone(), y.data), (vec![1, 3], TensorData::I64(vec![0, 1, 1])));
        // Exclusive reverse cumsum of [1, 2, 3] = [2 + 3, 3, 0] = [5, 3, 0].
        let v = t(&[3], vec![1.0, 2.0, 3.0]);
        let y = cumulative("CumSum", false, 0, true, true, &v).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[5.0, 3.0, 0.0]);
        // Top 2 of each row: [3 (1), 3 (2)] and [2 (0), 2 (2)], ties by lower index.
        let [values, indices] = &top_k("TopK", 1, 2, true, &x).unwrap()[..] else { panic!() };
        assert_eq!(values.as_f32().unwrap(), &[3.0, 3.0, 2.0, 2.0]);
        assert_eq!(indices.data, TensorData::I64(vec![1, 2, 0, 2]));
        // Smallest 1 along axis 0: [1 (0), 0 (1), 2 (1)].
        let [values, indices] = &top_k("TopK", 0, 1, false, &x).unwrap()[..] else { panic!() };
        assert_eq!(values.as_f32().unwrap(), &[1.0, 0.0, 2.0]);
        assert_eq!(indices.data, TensorData::I64(vec![0, 1, 1]));
    }
}
