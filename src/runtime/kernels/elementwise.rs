//! Elementwise kernel machinery shared by the element-wise op families (`crate::ops`):
//! numpy broadcasting of two operands, the numeric traits the generic kernels are written
//! against ([`Num`] for every numeric element type, [`Int`] for the integers, [`Real`] for the
//! float math of float32 and float64) and the dtype dispatch macros that monomorphize one
//! generic kernel per element type (float16 and bfloat16 computed in float32 and rounded back,
//! as onnxruntime does).
//!
//! Broadcasting merges adjacent dimensions that both operands walk the same way, so the
//! common cases (same shape, scalar operand, per-channel bias over `H*W`) run as one tight
//! loop over a contiguous row with the other operand fixed or walking in step. The op is
//! chosen once per call, outside the loops: every loop body is a closure inlined into its own
//! monomorphized loop, never a call through a pointer per element.

use half::{bf16, f16};

use super::{KernelError, tensor};
use crate::ir::{Tensor, TensorData};

/// The numpy broadcast of two shapes, or `None` when a dimension pair is neither equal nor 1.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, slot) in out.iter_mut().enumerate() {
        // Align from the right: missing leading dimensions act as 1.
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        *slot = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// The broadcast shape of two inputs as a kernel error when they do not broadcast.
pub(crate) fn broadcast_pair(op: &'static str, a: &Tensor, b: &Tensor) -> Result<Vec<usize>, KernelError> {
    broadcast_shape(&a.shape, &b.shape)
        .ok_or_else(|| KernelError::new(op, format!("shapes {:?} and {:?} do not broadcast", a.shape, b.shape)))
}

/// The error for operands whose element types differ.
pub(crate) fn mismatch(op: &'static str, a: &TensorData, b: &TensorData) -> KernelError {
    KernelError::new(op, format!("inputs have different dtypes: {} and {}", a.dtype().name(), b.dtype().name()))
}

/// The error for an element type the op does not take.
pub(crate) fn unsupported(op: &'static str, data: &TensorData) -> KernelError {
    KernelError::new(op, format!("unsupported dtype {}", data.dtype().name()))
}

/// A tensor of `shape` from data computed elementwise.
pub(crate) fn output(op: &'static str, shape: Vec<usize>, data: TensorData) -> Result<Tensor, KernelError> {
    tensor(op, shape, data)
}

/// Arithmetic on every numeric element type: floats are IEEE, integers wrap (two's
/// complement) and divide truncating toward zero, as onnxruntime's C++ does.
pub trait Num: Copy + PartialOrd + 'static {
    const ZERO: Self;
    const ONE: Self;
    const IS_INT: bool;
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
    /// Integers: toward zero, `MIN / -1` wraps; the caller rejects a zero divisor (0 here).
    fn div(self, other: Self) -> Self;
    /// The remainder with the sign of the dividend (C `fmod`, `%`); 0 for a zero integer divisor.
    fn rem_trunc(self, other: Self) -> Self;
    /// The remainder with the sign of the divisor (Python's `%`); 0 for a zero integer divisor.
    fn rem_floor(self, other: Self) -> Self {
        let r = self.rem_trunc(other);
        if r != Self::ZERO && ((r < Self::ZERO) != (other < Self::ZERO)) { r.add(other) } else { r }
    }
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
    /// A value converted as a C cast does (truncating, saturating for floats into integers).
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// The data as this element type, if it is of this type's variant.
    fn slice(data: &TensorData) -> Option<&[Self]>;
    fn wrap(values: Vec<Self>) -> TensorData;

    /// numpy's `minimum`: NaN propagates.
    fn min_nan(self, other: Self) -> Self {
        if self.is_nan() || !(other.is_nan() || other < self) { self } else { other }
    }
    /// numpy's `maximum`: NaN propagates.
    fn max_nan(self, other: Self) -> Self {
        if self.is_nan() || !(other.is_nan() || other > self) { self } else { other }
    }
    /// -1, 0 or 1 (NaN stays NaN).
    fn sign(self) -> Self {
        if self > Self::ZERO {
            Self::ONE
        } else if self < Self::ZERO {
            Self::ZERO.sub(Self::ONE)
        } else if self.is_nan() {
            self
        } else {
            Self::ZERO
        }
    }
}

macro_rules! int_common {
    ($t:ty, $variant:ident) => {
        const ZERO: Self = 0;
        const ONE: Self = 1;
        const IS_INT: bool = true;
        fn add(self, other: Self) -> Self {
            self.wrapping_add(other)
        }
        fn sub(self, other: Self) -> Self {
            self.wrapping_sub(other)
        }
        fn mul(self, other: Self) -> Self {
            self.wrapping_mul(other)
        }
        fn div(self, other: Self) -> Self {
            if other == 0 { 0 } else { self.wrapping_div(other) }
        }
        fn rem_trunc(self, other: Self) -> Self {
            if other == 0 { 0 } else { self.wrapping_rem(other) }
        }
        fn is_nan(self) -> bool {
            false
        }
        fn from_f64(x: f64) -> Self {
            x as $t
        }
        fn to_f64(self) -> f64 {
            self as f64
        }
        fn slice(data: &TensorData) -> Option<&[Self]> {
            match data {
                TensorData::$variant(v) => Some(v),
                _ => None,
            }
        }
        fn wrap(values: Vec<Self>) -> TensorData {
            TensorData::$variant(values)
        }
    };
}

macro_rules! signed_num {
    ($($t:ty => $variant:ident),*) => {$(
        impl Num for $t {
            int_common!($t, $variant);
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn abs(self) -> Self {
                self.wrapping_abs()
            }
        }
    )*};
}

macro_rules! unsigned_num {
    ($($t:ty => $variant:ident),*) => {$(
        impl Num for $t {
            int_common!($t, $variant);
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn abs(self) -> Self {
                self
            }
        }
    )*};
}

signed_num!(i8 => I8, i16 => I16, i32 => I32, i64 => I64);
unsigned_num!(u8 => U8, u16 => U16, u32 => U32, u64 => U64);

macro_rules! float_num {
    ($($t:ty => $variant:ident),*) => {$(
        impl Num for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const IS_INT: bool = false;
            fn add(self, other: Self) -> Self {
                self + other
            }
            fn sub(self, other: Self) -> Self {
                self - other
            }
            fn mul(self, other: Self) -> Self {
                self * other
            }
            fn div(self, other: Self) -> Self {
                self / other
            }
            fn rem_trunc(self, other: Self) -> Self {
                self % other
            }
            fn neg(self) -> Self {
                -self
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(values: Vec<Self>) -> TensorData {
                TensorData::$variant(values)
            }
        }
    )*};
}

float_num!(f32 => F32, f64 => F64);

/// float16 and bfloat16: each operation in float32, rounded back to nearest even.
macro_rules! half_num {
    ($($t:ty => $variant:ident),*) => {$(
        impl Num for $t {
            const ZERO: Self = <$t>::ZERO;
            const ONE: Self = <$t>::ONE;
            const IS_INT: bool = false;
            fn add(self, other: Self) -> Self {
                <$t>::from_f32(self.to_f32() + other.to_f32())
            }
            fn sub(self, other: Self) -> Self {
                <$t>::from_f32(self.to_f32() - other.to_f32())
            }
            fn mul(self, other: Self) -> Self {
                <$t>::from_f32(self.to_f32() * other.to_f32())
            }
            fn div(self, other: Self) -> Self {
                <$t>::from_f32(self.to_f32() / other.to_f32())
            }
            fn rem_trunc(self, other: Self) -> Self {
                <$t>::from_f32(self.to_f32() % other.to_f32())
            }
            fn neg(self) -> Self {
                -self
            }
            fn abs(self) -> Self {
                <$t>::from_bits(self.to_bits() & 0x7FFF)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn from_f64(x: f64) -> Self {
                <$t>::from_f64(x)
            }
            fn to_f64(self) -> f64 {
                <$t>::to_f64(self)
            }
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(values: Vec<Self>) -> TensorData {
                TensorData::$variant(values)
            }
        }
    )*};
}

half_num!(f16 => F16, bf16 => BF16);

/// Bitwise operations of the integer types.
pub trait Int: Num + Eq {
    const BITS: u32;
    fn and(self, other: Self) -> Self;
    fn or(self, other: Self) -> Self;
    fn xor(self, other: Self) -> Self;
    fn not(self) -> Self;
    /// `self << n`, 0 once `n` reaches the width (onnxruntime's BitShift).
    fn shl(self, n: Self) -> Self;
    /// `self >> n` (logical for the unsigned types BitShift takes), 0 once `n` reaches the width.
    fn shr(self, n: Self) -> Self;
    /// Wrapping integer power for a non-negative exponent.
    fn pow_wrapping(self, exponent: u64) -> Self {
        let (mut base, mut e, mut acc) = (self, exponent, Self::ONE);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.mul(base);
            }
            base = base.mul(base);
            e >>= 1;
        }
        acc
    }
}

macro_rules! int_bits {
    ($($t:ty),*) => {$(
        impl Int for $t {
            const BITS: u32 = <$t>::BITS;
            fn and(self, other: Self) -> Self {
                self & other
            }
            fn or(self, other: Self) -> Self {
                self | other
            }
            fn xor(self, other: Self) -> Self {
                self ^ other
            }
            fn not(self) -> Self {
                !self
            }
            fn shl(self, n: Self) -> Self {
                match u32::try_from(n) {
                    Ok(n) if n < Self::BITS => self << n,
                    _ => 0,
                }
            }
            fn shr(self, n: Self) -> Self {
                match u32::try_from(n) {
                    Ok(n) if n < Self::BITS => self >> n,
                    _ => 0,
                }
            }
        }
    )*};
}

int_bits!(i8, i16, i32, i64, u8, u16, u32, u64);

/// The float math of float32 and float64 (float16 and bfloat16 compute in float32).
pub trait Real:
    Num
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn tanh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    /// Round half to even.
    fn round_even(self) -> Self;
    fn erf(self) -> Self;
    fn powf(self, exponent: Self) -> Self;
    /// A constant of the computation type.
    fn of(x: f64) -> Self {
        Self::from_f64(x)
    }
}

macro_rules! real {
    ($($t:ty: $erf:expr),*) => {$(
        impl Real for $t {
            fn sqrt(self) -> Self { <$t>::sqrt(self) }
            fn exp(self) -> Self { <$t>::exp(self) }
            fn ln(self) -> Self { <$t>::ln(self) }
            fn ln_1p(self) -> Self { <$t>::ln_1p(self) }
            fn sin(self) -> Self { <$t>::sin(self) }
            fn cos(self) -> Self { <$t>::cos(self) }
            fn tan(self) -> Self { <$t>::tan(self) }
            fn asin(self) -> Self { <$t>::asin(self) }
            fn acos(self) -> Self { <$t>::acos(self) }
            fn atan(self) -> Self { <$t>::atan(self) }
            fn sinh(self) -> Self { <$t>::sinh(self) }
            fn cosh(self) -> Self { <$t>::cosh(self) }
            fn tanh(self) -> Self { <$t>::tanh(self) }
            fn asinh(self) -> Self { <$t>::asinh(self) }
            fn acosh(self) -> Self { <$t>::acosh(self) }
            fn atanh(self) -> Self { <$t>::atanh(self) }
            fn floor(self) -> Self { <$t>::floor(self) }
            fn ceil(self) -> Self { <$t>::ceil(self) }
            fn round_even(self) -> Self { <$t>::round_ties_even(self) }
            fn erf(self) -> Self { $erf(self) }
            fn powf(self, exponent: Self) -> Self { <$t>::powf(self, exponent) }
        }
    )*};
}

real!(f32: |x: f32| erf(f64::from(x)) as f32, f64: erf);

/// The error function in float64: for `|x| < 2.5` the series
/// `erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1))` (all terms
/// positive, so no cancellation); beyond, `1 - erfc(x)` with erfc's continued fraction
/// `erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))`
/// evaluated bottom-up (Abramowitz & Stegun 7.1.6 and 7.1.14).
pub fn erf(x: f64) -> f64 {
    const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let value = if a < 2.5 {
        let x2 = a * a;
        let (mut term, mut sum, mut n) = (a, a, 0.0f64);
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        FRAC_2_SQRT_PI * (-x2).exp() * sum
    } else if a < 6.0 {
        // 60 levels of the continued fraction are plenty from 2.5 on.
        let mut fraction = a;
        for k in (1..=60).rev() {
            fraction = a + (f64::from(k) / 2.0) / fraction;
        }
        1.0 - (-a * a).exp() / (fraction * std::f64::consts::PI.sqrt())
    } else {
        1.0
    };
    if x < 0.0 { -value } else { value }
}

/// Dispatches `$data` over the numeric element types, binding `$v` to the element slice;
/// `$body` is a generic call monomorphized per type, `$else` runs for other types.
macro_rules! numeric {
    ($data:expr, $v:ident => $body:expr, $else:expr) => {
        match $data {
            $crate::ir::TensorData::F32($v) => $body,
            $crate::ir::TensorData::F64($v) => $body,
            $crate::ir::TensorData::F16($v) => $body,
            $crate::ir::TensorData::BF16($v) => $body,
            $crate::ir::TensorData::I8($v) => $body,
            $crate::ir::TensorData::I16($v) => $body,
            $crate::ir::TensorData::I32($v) => $body,
            $crate::ir::TensorData::I64($v) => $body,
            $crate::ir::TensorData::U8($v) => $body,
            $crate::ir::TensorData::U16($v) => $body,
            $crate::ir::TensorData::U32($v) => $body,
            $crate::ir::TensorData::U64($v) => $body,
            _ => $else,
        }
    };
}
pub(crate) use numeric;

/// [`numeric!`] over the integer types.
macro_rules! integer {
    ($data:expr, $v:ident => $body:expr, $else:expr) => {
        match $data {
            $crate::ir::TensorData::I8($v) => $body,
            $crate::ir::TensorData::I16($v) => $body,
            $crate::ir::TensorData::I32($v) => $body,
            $crate::ir::TensorData::I64($v) => $body,
            $crate::ir::TensorData::U8($v) => $body,
            $crate::ir::TensorData::U16($v) => $body,
            $crate::ir::TensorData::U32($v) => $body,
            $crate::ir::TensorData::U64($v) => $body,
            _ => $else,
        }
    };
}
pub(crate) use integer;

/// Float math over float32 and float64 natively and float16/bfloat16 in float32 (rounded
/// back): `$body` maps `$v` (a slice of f32 or f64) to a `Vec` of the same type.
macro_rules! real_map {
    ($data:expr, $v:ident => $body:expr, $else:expr) => {
        match $data {
            $crate::ir::TensorData::F32($v) => $crate::ir::TensorData::F32($body),
            $crate::ir::TensorData::F64($v) => $crate::ir::TensorData::F64($body),
            $crate::ir::TensorData::F16(narrow) => {
                let wide: Vec<f32> = narrow.iter().map(|x| x.to_f32()).collect();
                let $v = &wide;
                $crate::ir::TensorData::F16(($body).into_iter().map(half::f16::from_f32).collect())
            }
            $crate::ir::TensorData::BF16(narrow) => {
                let wide: Vec<f32> = narrow.iter().map(|x| x.to_f32()).collect();
                let $v = &wide;
                $crate::ir::TensorData::BF16(($body).into_iter().map(half::bf16::from_f32).collect())
            }
            _ => $else,
        }
    };
}
pub(crate) use real_map;

/// Float32 Clip into a pooled buffer (`x` clamped to `[lo, hi]`, NaN kept): a MobileNet's
/// ReLU6 after every convolution. As an iterator `collect` into fresh memory it ran on the
/// baseline's four lanes and page-faulted its output: a quarter of the float reference run.
pub(crate) fn clip_f32(x: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    let mut out = super::super::buffers::take_overwritten(x.len(), 0.0);
    clip_into(x, &mut out, lo, hi);
    out
}

/// Clip's clamp of one value, for every numeric type: `min(max(x, lo), hi)`, in that order
/// (onnxruntime's order when `lo > hi`), with selects on plain comparisons, which
/// compile to vector compare-and-blend and keep a NaN input (every comparison with it is
/// false), as `f32::clamp` would not.
#[inline(always)]
pub(crate) fn clamp_keeping_nan<T: Num>(x: T, lo: T, hi: T) -> T {
    let low = if x < lo { lo } else { x };
    if low > hi { hi } else { low }
}

#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn clip_into(x: &[f32], out: &mut [f32], lo: f32, hi: f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = clamp_keeping_nan(v, lo, hi);
    }
}

/// [`clip_f32`] over `x` itself.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn clip_f32_in_place(x: &mut [f32], lo: f32, hi: f32) {
    for v in x.iter_mut() {
        *v = clamp_keeping_nan(*v, lo, hi);
    }
}

/// `f` over every element.
pub(crate) fn map<T: Copy, U>(x: &[T], f: impl Fn(T) -> U) -> Vec<U> {
    x.iter().map(|&v| f(v)).collect()
}

/// Strides of `shape` (right-aligned into `out_rank` dimensions) with 0 for broadcast axes.
pub(crate) fn broadcast_strides(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let rank = out_shape.len();
    let mut strides = vec![0; rank];
    let mut stride = 1;
    for i in (0..shape.len()).rev() {
        let out_axis = rank - shape.len() + i;
        strides[out_axis] = if shape[i] == 1 && out_shape[out_axis] != 1 { 0 } else { stride };
        stride *= shape[i];
    }
    strides
}

/// One loop level of a broadcast walk: extent and the step of each operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    len: usize,
    step_a: usize,
    step_b: usize,
}

/// The broadcast walk over `out_shape`, with size-1 axes dropped and adjacent axes merged
/// where both operands step through them as one.
fn broadcast_axes(a_shape: &[usize], b_shape: &[usize], out_shape: &[usize]) -> Vec<Axis> {
    let sa = broadcast_strides(a_shape, out_shape);
    let sb = broadcast_strides(b_shape, out_shape);
    let mut axes: Vec<Axis> = Vec::with_capacity(out_shape.len());
    for (i, &len) in out_shape.iter().enumerate() {
        if len == 1 {
            continue;
        }
        let (step_a, step_b) = (sa[i], sb[i]);
        if let Some(outer) = axes.last_mut()
            && outer.step_a == step_a * len
            && outer.step_b == step_b * len
        {
            outer.len *= len;
            outer.step_a = step_a;
            outer.step_b = step_b;
            continue;
        }
        axes.push(Axis { len, step_a, step_b });
    }
    axes
}

/// Applies `f` over the numpy broadcast of `a` and `b` (operands and result may differ in type). The caller guarantees that the data
/// lengths match the shapes and that `out_shape` is their broadcast.
pub(crate) fn broadcast<A: Copy, B: Copy, U: Copy + 'static>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(A, B) -> U,
) -> Vec<U> {
    let total: usize = out_shape.iter().product();
    let mut out = crate::runtime::buffers::take(total);
    if total == 0 {
        return out;
    }
    let axes = broadcast_axes(a_shape, b_shape, out_shape);
    let (inner, outer) = match axes.split_last() {
        Some((inner, outer)) => (*inner, outer),
        None => (Axis { len: 1, step_a: 0, step_b: 0 }, &[][..]),
    };
    let mut index = vec![0usize; outer.len()];
    let (mut at_a, mut at_b) = (0usize, 0usize);
    loop {
        let n = inner.len;
        match (inner.step_a, inner.step_b) {
            (1, 1) => out.extend(a[at_a..at_a + n].iter().zip(&b[at_b..at_b + n]).map(|(&x, &y)| f(x, y))),
            (1, 0) => {
                let y = b[at_b];
                out.extend(a[at_a..at_a + n].iter().map(|&x| f(x, y)));
            }
            (0, 1) => {
                let x = a[at_a];
                out.extend(b[at_b..at_b + n].iter().map(|&y| f(x, y)));
            }
            (sa, sb) => out.extend((0..n).map(|i| f(a[at_a + i * sa], b[at_b + i * sb]))),
        }
        // Advance the odometer over the outer axes, last axis fastest.
        let mut level = outer.len();
        loop {
            if level == 0 {
                return out;
            }
            level -= 1;
            let axis = outer[level];
            index[level] += 1;
            at_a += axis.step_a;
            at_b += axis.step_b;
            if index[level] < axis.len {
                break;
            }
            index[level] = 0;
            at_a -= axis.step_a * axis.len;
            at_b -= axis.step_b * axis.len;
        }
    }
}
