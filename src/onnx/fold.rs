//! Evaluation at import time of the values exporters compute from static shapes: integer
//! arithmetic on `Shape` outputs, `Cast`, `ConstantOfShape` (Gather, Slice and the other data
//! movement ops run their kernels at import when their inputs are known: `ops::tensor`). Float math is never evaluated here (the optimize stage folds it).

use crate::ir::{DType, Op, Tensor, TensorData, strides_of};

/// The largest value evaluated at import, in elements. Shape arithmetic needs a handful;
/// the cap keeps a hostile model (ConstantOfShape of [1e9, 1e9]) from exhausting memory.
pub(crate) const MAX_FOLDED_ELEMENTS: usize = 1 << 24;

/// Element count of `shape`, if it fits under [`MAX_FOLDED_ELEMENTS`].
pub(crate) fn folded_count(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_FOLDED_ELEMENTS)
        .ok_or_else(|| format!("a value of shape {shape:?} is too large to evaluate at import"))
}

/// Flat source indices of a strided view: element `j` (a multi-index over `out_shape`) reads
/// `base + sum(j[a] * steps[a])`. Slices, transposes and broadcasts are all such views.
fn strided_indices(out_shape: &[usize], base: isize, steps: &[isize]) -> Vec<usize> {
    let count: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(count);
    if count == 0 {
        return out;
    }
    let rank = out_shape.len();
    let mut index = vec![0usize; rank];
    let mut pos = base;
    loop {
        out.push(pos as usize);
        let mut axis = rank;
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            index[axis] += 1;
            pos += steps[axis];
            if index[axis] < out_shape[axis] {
                break;
            }
            pos -= steps[axis] * out_shape[axis] as isize;
            index[axis] = 0;
        }
    }
}

fn tensor(shape: Vec<usize>, data: TensorData) -> Result<Tensor, String> {
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

/// Steps that broadcast `shape` (right-aligned) over `out_shape`: stride 0 along size-1 axes.
fn broadcast_steps(shape: &[usize], out_shape: &[usize]) -> Vec<isize> {
    let strides = strides_of(shape);
    let lead = out_shape.len() - shape.len();
    (0..out_shape.len())
        .map(|a| match a.checked_sub(lead) {
            Some(i) if shape[i] != 1 => strides[i] as isize,
            _ => 0,
        })
        .collect()
}

/// Evaluates an IR op whose inputs are all known integers, when its output is an integer
/// type. `None` when the op or types are not shape arithmetic (then the node stays in the IR).
pub(crate) fn eval_int(
    op: &Op,
    inputs: &[&Tensor],
    out_dtype: DType,
    out_shape: &[usize],
) -> Option<Result<Tensor, String>> {
    if out_dtype == DType::F32 {
        return None;
    }
    if let Err(e) = folded_count(out_shape) {
        return Some(Err(e));
    }
    let values: Vec<Vec<i64>> = inputs.iter().map(|t| t.to_i64_vec()).collect::<Option<_>>()?;
    let result = match op {
        Op::Binary(crate::ops::Binary::Add)
        | Op::Binary(crate::ops::Binary::Sub)
        | Op::Binary(crate::ops::Binary::Mul)
        | Op::Binary(crate::ops::Binary::Div) => {
            let ([a, b], [va, vb]) = (inputs, &values[..]) else { return None };
            let ia = strided_indices(out_shape, 0, &broadcast_steps(&a.shape, out_shape));
            let ib = strided_indices(out_shape, 0, &broadcast_steps(&b.shape, out_shape));
            ia.iter()
                .zip(&ib)
                .map(|(&i, &j)| {
                    let (x, y) = (va[i], vb[j]);
                    match op {
                        Op::Binary(crate::ops::Binary::Add) => x.checked_add(y),
                        Op::Binary(crate::ops::Binary::Sub) => x.checked_sub(y),
                        Op::Binary(crate::ops::Binary::Mul) => x.checked_mul(y),
                        // Integer division truncates toward zero, as onnxruntime's does.
                        _ => x.checked_div(y),
                    }
                    .ok_or_else(|| format!("{} of {x} and {y} overflows or divides by zero", op.type_name()))
                })
                .collect::<Result<Vec<i64>, String>>()
        }
        Op::Concat(crate::ops::Concat { axis }) => {
            let inner: usize = out_shape.get(axis + 1..).map_or(1, |s| s.iter().product());
            let outer: usize = out_shape[..*axis].iter().product();
            let mut out = Vec::with_capacity(out_shape.iter().product());
            for o in 0..outer {
                for (t, v) in inputs.iter().zip(&values) {
                    let chunk = t.shape[*axis] * inner;
                    out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
                }
            }
            Ok(out)
        }
        Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Squeeze(_)
        | Op::Unsqueeze(_)
        | Op::Identity(crate::ops::Identity)
        | Op::Dropout(crate::ops::Dropout) => Ok(values.first()?.clone()),
        Op::Transpose(crate::ops::Transpose { perm }) => {
            let (t, v) = (inputs.first()?, values.first()?);
            let strides = strides_of(&t.shape);
            let steps: Vec<isize> = perm.iter().map(|&p| strides[p] as isize).collect();
            Ok(strided_indices(out_shape, 0, &steps).iter().map(|&i| v[i]).collect())
        }
        Op::Unary(crate::ops::Unary::Relu) => Ok(values.first()?.iter().map(|&x| x.max(0)).collect()),
        _ => return None,
    };
    Some(result.and_then(|v| from_i64(out_dtype, out_shape.to_vec(), v)))
}

/// Narrows i64 results back to the output's integer type.
fn from_i64(dtype: DType, shape: Vec<usize>, values: Vec<i64>) -> Result<Tensor, String> {
    let data = match dtype {
        DType::I64 => TensorData::I64(values),
        DType::I32 => TensorData::I32(
            values
                .iter()
                .map(|&v| i32::try_from(v).map_err(|_| format!("{v} does not fit in int32")))
                .collect::<Result<_, _>>()?,
        ),
        other => TensorData::ints_from_i64(other, &values)
            .ok_or_else(|| format!("{} is not an integer type", other.name()))?,
    };
    tensor(shape, data)
}

/// ONNX Cast between element types: float to integer truncates toward zero (saturating, as
/// Rust's `as` does), integers wrap as a C cast does, anything to bool is "non-zero", float
/// to float rounds to nearest even (float8 saturating when `saturate`).
pub(crate) fn cast(t: &Tensor, to: DType, saturate: bool) -> Tensor {
    let data = match &t.data {
        data if data.dtype() == to => data.clone(),
        data if to.is_float() => {
            let values = data.to_f64_vec();
            TensorData::floats_from_f64(to, &values, saturate).unwrap_or_else(|| data.clone())
        }
        data if to == DType::Bool => TensorData::Bool(data.to_f64_vec().iter().map(|&x| u8::from(x != 0.0)).collect()),
        data => {
            let values: Vec<i64> = match data.to_i64_vec() {
                Some(v) => v,
                // NaN becomes 0; out-of-range floats saturate (f64 -> i64 `as`).
                None => data.to_f64_vec().iter().map(|&x| x as i64).collect(),
            };
            TensorData::ints_from_i64(to, &values).unwrap_or_else(|| data.clone())
        }
    };
    Tensor { shape: t.shape.clone(), data }
}

/// ONNX ConstantOfShape: `shape` filled with the single element of `value`.
pub(crate) fn fill(shape: Vec<usize>, value: &Tensor) -> Result<Tensor, String> {
    if value.len() != 1 {
        return Err(format!("value must hold one element, got {}", value.len()));
    }
    let count = folded_count(&shape)?;
    tensor(shape, value.data.repeat(0, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_i64(shape.to_vec(), v.to_vec())
    }

    #[test]
    fn broadcast_arithmetic_on_shapes() {
        // [2,1] * [3] -> [[1*10, 1*20, 1*30], [2*10, 2*20, 2*30]]
        let a = i64s(&[2, 1], &[1, 2]);
        let b = i64s(&[3], &[10, 20, 30]);
        let got = eval_int(&Op::Binary(crate::ops::Binary::Mul), &[&a, &b], DType::I64, &[2, 3]).unwrap().unwrap();
        assert_eq!(got, i64s(&[2, 3], &[10, 20, 30, 20, 40, 60]));
        // -7 / 2 truncates to -3 (C semantics).
        let got =
            eval_int(&Op::Binary(crate::ops::Binary::Div), &[&i64s(&[1], &[-7]), &i64s(&[], &[2])], DType::I64, &[1]);
        assert_eq!(got.unwrap().unwrap(), i64s(&[1], &[-3]));
        let zero =
            eval_int(&Op::Binary(crate::ops::Binary::Div), &[&i64s(&[1], &[1]), &i64s(&[1], &[0])], DType::I64, &[1]);
        assert!(zero.unwrap().is_err());
        assert!(eval_int(&Op::Binary(crate::ops::Binary::Add), &[&a, &a], DType::F32, &[2, 1]).is_none());
    }

    #[test]
    fn concat_and_transpose() {
        let a = i64s(&[2, 1], &[1, 2]);
        let b = i64s(&[2, 2], &[3, 4, 5, 6]);
        let got =
            eval_int(&Op::Concat(crate::ops::Concat { axis: 1 }), &[&a, &b], DType::I64, &[2, 3]).unwrap().unwrap();
        assert_eq!(got, i64s(&[2, 3], &[1, 3, 4, 2, 5, 6]));
        let t = eval_int(&Op::Transpose(crate::ops::Transpose { perm: vec![1, 0] }), &[&b], DType::I64, &[2, 2])
            .unwrap()
            .unwrap();
        assert_eq!(t, i64s(&[2, 2], &[3, 5, 4, 6]));
    }

    #[test]
    fn cast_and_fill() {
        let f = Tensor::from_f32(vec![3], vec![-1.7, 0.0, 2.9]);
        assert_eq!(cast(&f, DType::I64, true), i64s(&[3], &[-1, 0, 2]));
        assert_eq!(cast(&i64s(&[1], &[5]), DType::F32, true), Tensor::from_f32(vec![1], vec![5.0]));
        assert_eq!(cast(&i64s(&[2], &[0, 5]), DType::Bool, true).data, TensorData::Bool(vec![0, 1]));
        let filled = fill(vec![2, 2], &Tensor::from_f32(vec![1], vec![0.5])).unwrap();
        assert_eq!(filled, Tensor::from_f32(vec![2, 2], vec![0.5; 4]));
        // A hostile size is refused before anything is allocated.
        let err = fill(vec![1 << 30, 1 << 30], &Tensor::from_f32(vec![1], vec![0.5])).unwrap_err();
        assert!(err.contains("too large to evaluate"), "{err}");
    }
}
