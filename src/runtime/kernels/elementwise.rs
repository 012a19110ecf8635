//! Elementwise kernels: Add/Sub/Mul/Div with numpy broadcasting (float32, int64 and int32,
//! since constant folding evaluates shape arithmetic with them) and the float activations
//! Relu, Clip, Sigmoid, HardSigmoid and HardSwish.
//!
//! Broadcasting merges adjacent dimensions that both operands walk the same way, so the
//! common cases (same shape, scalar operand, per-channel bias over `H*W`) run as one tight
//! loop over a contiguous row with the other operand fixed or walking in step.

use super::{KernelError, expect_inputs, f32_input, input, tensor};
use crate::ir::{Tensor, TensorData};

/// The binary arithmetic ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
        }
    }
}

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

/// Runs a binary op with numpy broadcasting. Both inputs must share a dtype.
pub fn binary(op: BinaryOp, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    let name = op.name();
    expect_inputs(name, inputs, 2, 2)?;
    let (a, b) = (input(name, inputs, 0, "A")?, input(name, inputs, 1, "B")?);
    let shape = broadcast_shape(&a.shape, &b.shape)
        .ok_or_else(|| KernelError::new(name, format!("shapes {:?} and {:?} do not broadcast", a.shape, b.shape)))?;
    let data = match (&a.data, &b.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            // One call per op, so each closure is inlined into its own loop (a shared
            // `fn` pointer would cost an indirect call per element).
            let (xs, ys) = (&a.shape, &b.shape);
            TensorData::F32(match op {
                BinaryOp::Add => broadcast(x, xs, y, ys, &shape, |p, q| p + q),
                BinaryOp::Sub => broadcast(x, xs, y, ys, &shape, |p, q| p - q),
                BinaryOp::Mul => broadcast(x, xs, y, ys, &shape, |p, q| p * q),
                BinaryOp::Div => broadcast(x, xs, y, ys, &shape, |p, q| p / q),
            })
        }
        (TensorData::I64(x), TensorData::I64(y)) => {
            TensorData::I64(integer_binary(op, x, &a.shape, y, &b.shape, &shape)?)
        }
        (TensorData::I32(x), TensorData::I32(y)) => {
            TensorData::I32(integer_binary(op, x, &a.shape, y, &b.shape, &shape)?)
        }
        (x, y) if x.dtype() != y.dtype() => {
            return Err(KernelError::new(
                name,
                format!("inputs have different dtypes: {} and {}", x.dtype().name(), y.dtype().name()),
            ));
        }
        (x, _) => {
            return Err(KernelError::new(name, format!("unsupported dtype {}", x.dtype().name())));
        }
    };
    tensor(name, shape, data)
}

/// Integer arithmetic as onnxruntime does it: two's-complement wrapping, division truncating
/// toward zero; a zero divisor is an error rather than a crash.
trait Integer: Copy + PartialEq {
    const ZERO: Self;
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
    fn div(self, other: Self) -> Self;
}

macro_rules! impl_integer {
    ($t:ty) => {
        impl Integer for $t {
            const ZERO: Self = 0;
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
                // Callers reject zero divisors first; MIN / -1 wraps to MIN.
                if other == 0 { 0 } else { self.wrapping_div(other) }
            }
        }
    };
}
impl_integer!(i64);
impl_integer!(i32);

fn integer_binary<T: Integer>(
    op: BinaryOp,
    x: &[T],
    x_shape: &[usize],
    y: &[T],
    y_shape: &[usize],
    shape: &[usize],
) -> Result<Vec<T>, KernelError> {
    Ok(match op {
        BinaryOp::Add => broadcast(x, x_shape, y, y_shape, shape, T::add),
        BinaryOp::Sub => broadcast(x, x_shape, y, y_shape, shape, T::sub),
        BinaryOp::Mul => broadcast(x, x_shape, y, y_shape, shape, T::mul),
        BinaryOp::Div => {
            if y.contains(&T::ZERO) {
                return Err(KernelError::new("Div", "integer division by zero"));
            }
            broadcast(x, x_shape, y, y_shape, shape, T::div)
        }
    })
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

/// Applies `f` over the numpy broadcast of `a` and `b`. The caller guarantees that the data
/// lengths match the shapes and that `out_shape` is their broadcast.
pub(crate) fn broadcast<T: Copy>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(T, T) -> T,
) -> Vec<T> {
    let total: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(total);
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

/// Runs a float activation over its single input.
pub fn unary(op: &'static str, inputs: &[&Tensor], f: impl Fn(f32) -> f32) -> Result<Tensor, KernelError> {
    expect_inputs(op, inputs, 1, 1)?;
    let x = f32_input(op, inputs, 0, "X")?;
    let shape = input(op, inputs, 0, "X")?.shape.clone();
    tensor(op, shape, TensorData::F32(x.iter().map(|&v| f(v)).collect()))
}

/// `max(x, 0)`; NaN and -0 map to +0 as onnxruntime's vector max does.
pub fn relu(x: f32) -> f32 {
    if x > 0.0 { x } else { 0.0 }
}

/// `min(max(x, min), max)`, in that order (onnxruntime's order when `min > max`).
pub fn clip(x: f32, min: f32, max: f32) -> f32 {
    let low = if x < min { min } else { x };
    if low > max { max } else { low }
}

/// `1 / (1 + exp(-x))`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `max(0, min(1, alpha * x + beta))`.
pub fn hard_sigmoid(x: f32, alpha: f32, beta: f32) -> f32 {
    clip(alpha * x + beta, 0.0, 1.0)
}

/// `x * HardSigmoid(x, alpha = 1/6, beta = 0.5)` as ONNX defines HardSwish.
pub fn hard_swish(x: f32) -> f32 {
    x * hard_sigmoid(x, 1.0 / 6.0, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(t: &Tensor) -> &[f32] {
        t.as_f32().unwrap()
    }

    #[test]
    fn broadcast_shape_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 3, 4], &[4]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shape(&[2, 3], &[2]), None);
        assert_eq!(broadcast_shape(&[0, 3], &[1, 3]), Some(vec![0, 3]));
    }

    #[test]
    fn add_same_shape() {
        let a = Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]);
        let b = Tensor::from_f32(vec![3], vec![10.0, 20.0, 30.0]);
        let y = binary(BinaryOp::Add, &[&a, &b]).unwrap();
        assert_eq!(f32s(&y), &[11.0, 22.0, 33.0]);
    }

    #[test]
    fn sub_broadcasts_a_per_channel_bias_over_nchw() {
        // x[n,c,h,w] = 100n + 10c + (2h + w) with N=2, C=2, H=W=2; b[c] = c + 1, shape [2,1,1].
        let x: Vec<f32> = (0..16).map(|i| (100 * (i / 8) + 10 * ((i / 4) % 2) + i % 4) as f32).collect();
        let a = Tensor::from_f32(vec![2, 2, 2, 2], x);
        let b = Tensor::from_f32(vec![2, 1, 1], vec![1.0, 2.0]);
        let y = binary(BinaryOp::Sub, &[&a, &b]).unwrap();
        assert_eq!(y.shape, vec![2, 2, 2, 2]);
        #[rustfmt::skip]
        let expected = [
            -1.0, 0.0, 1.0, 2.0,        // n0 c0: [0,1,2,3] - 1
            8.0, 9.0, 10.0, 11.0,       // n0 c1: [10..13] - 2
            99.0, 100.0, 101.0, 102.0,  // n1 c0: [100..103] - 1
            108.0, 109.0, 110.0, 111.0, // n1 c1: [110..113] - 2
        ];
        assert_eq!(f32s(&y), &expected);
    }

    #[test]
    fn mul_broadcasts_both_operands() {
        // [3,1] * [1,2] -> [3,2]: outer product of [1,2,3] and [10,100].
        let a = Tensor::from_f32(vec![3, 1], vec![1.0, 2.0, 3.0]);
        let b = Tensor::from_f32(vec![1, 2], vec![10.0, 100.0]);
        let y = binary(BinaryOp::Mul, &[&a, &b]).unwrap();
        assert_eq!(y.shape, vec![3, 2]);
        assert_eq!(f32s(&y), &[10.0, 100.0, 20.0, 200.0, 30.0, 300.0]);
    }

    #[test]
    fn div_by_a_scalar_on_the_left_and_right() {
        let a = Tensor::scalar_f32(12.0);
        let b = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        // 12 / [1,2,3,4] = [12, 6, 4, 3]
        assert_eq!(f32s(&binary(BinaryOp::Div, &[&a, &b]).unwrap()), &[12.0, 6.0, 4.0, 3.0]);
        // [1,2,3,4] / 12 computed as x / 12 exactly as in f32
        let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|x| x / 12.0).collect();
        assert_eq!(f32s(&binary(BinaryOp::Div, &[&b, &a]).unwrap()), &expected[..]);
    }

    #[test]
    fn broadcast_a_middle_axis() {
        // a [2,3,2] = 0..12, b [2,1,2] = [[1,2]],[[3,4]]: b repeats over the middle axis.
        let a = Tensor::from_f32(vec![2, 3, 2], (0..12).map(|i| i as f32).collect());
        let b = Tensor::from_f32(vec![2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let y = binary(BinaryOp::Add, &[&a, &b]).unwrap();
        #[rustfmt::skip]
        let expected = [
            1.0, 3.0, 3.0, 5.0, 5.0, 7.0,     // [0,1],[2,3],[4,5] + [1,2]
            9.0, 11.0, 11.0, 13.0, 13.0, 15.0, // [6,7],[8,9],[10,11] + [3,4]
        ];
        assert_eq!(f32s(&y), &expected);
    }

    #[test]
    fn integer_arithmetic_wraps_and_truncates() {
        let a = Tensor::from_i64(vec![4], vec![7, -7, i64::MAX, 6]);
        let b = Tensor::from_i64(vec![4], vec![2, 2, 1, -4]);
        let div = binary(BinaryOp::Div, &[&a, &b]).unwrap();
        // 7/2 = 3, -7/2 = -3 (toward zero), MAX/1 = MAX, 6/-4 = -1
        assert_eq!(div.data, TensorData::I64(vec![3, -3, i64::MAX, -1]));
        let add = binary(BinaryOp::Add, &[&a, &b]).unwrap();
        // MAX + 1 wraps to MIN
        assert_eq!(add.data, TensorData::I64(vec![9, -5, i64::MIN, 2]));
        let i32s = |v: Vec<i32>| Tensor::new(vec![v.len()], TensorData::I32(v)).unwrap();
        let mul = binary(BinaryOp::Mul, &[&i32s(vec![3, -4]), &i32s(vec![5])]).unwrap();
        assert_eq!(mul.data, TensorData::I32(vec![15, -20]));
    }

    #[test]
    fn integer_division_by_zero_is_an_error() {
        let a = Tensor::from_i64(vec![2], vec![1, 2]);
        let b = Tensor::from_i64(vec![2], vec![1, 0]);
        assert!(binary(BinaryOp::Div, &[&a, &b]).unwrap_err().message.contains("by zero"));
    }

    #[test]
    fn mismatched_dtypes_and_shapes_are_errors() {
        let a = Tensor::from_i64(vec![2], vec![1, 2]);
        let b = Tensor::from_f32(vec![2], vec![1.0, 2.0]);
        assert!(binary(BinaryOp::Add, &[&a, &b]).unwrap_err().message.contains("different dtypes"));
        let c = Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]);
        assert!(binary(BinaryOp::Add, &[&b, &c]).unwrap_err().message.contains("do not broadcast"));
    }

    #[test]
    fn activations() {
        assert_eq!(relu(-2.0), 0.0);
        assert_eq!(relu(3.5), 3.5);
        assert_eq!(clip(-7.0, -1.0, 6.0), -1.0);
        assert_eq!(clip(7.0, -1.0, 6.0), 6.0);
        assert_eq!(clip(2.0, -1.0, 6.0), 2.0);
        // sigmoid(0) = 1/2; sigmoid(ln 3) = 1/(1 + 1/3) = 0.75
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(3.0f32.ln()) - 0.75).abs() < 1e-7);
        // HardSigmoid(alpha 0.2, beta 0.5): x=1 -> 0.7, x=-5 -> clamp(-0.5) = 0, x=5 -> clamp(1.5) = 1
        assert!((hard_sigmoid(1.0, 0.2, 0.5) - 0.7).abs() < 1e-7);
        assert_eq!(hard_sigmoid(-5.0, 0.2, 0.5), 0.0);
        assert_eq!(hard_sigmoid(5.0, 0.2, 0.5), 1.0);
        // HardSwish: x=3 -> 3 * min(1, 3/6 + 0.5) = 3; x=-3 -> -3 * 0 = 0; x=1 -> 1 * (1/6 + 1/2) = 2/3
        assert_eq!(hard_swish(3.0), 3.0);
        assert_eq!(hard_swish(-3.0), 0.0);
        assert!((hard_swish(1.0) - 2.0 / 3.0).abs() < 1e-7);
    }

    #[test]
    fn unary_keeps_the_shape_and_rejects_integers() {
        let x = Tensor::from_f32(vec![2, 1], vec![-1.0, 2.0]);
        let y = unary("Relu", &[&x], relu).unwrap();
        assert_eq!((y.shape.clone(), f32s(&y).to_vec()), (vec![2, 1], vec![0.0, 2.0]));
        let i = Tensor::from_i64(vec![1], vec![1]);
        assert!(unary("Relu", &[&i], relu).is_err());
    }
}
