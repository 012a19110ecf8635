//! Data-movement kernels, for every element type (constant folding runs them on int64 shape
//! tensors): the copies that only change the shape (Flatten, Reshape, Squeeze, Unsqueeze,
//! Identity, Dropout in inference mode), Transpose, Concat and Pad (constant, reflect and
//! edge, with negative pads cropping).

use super::{KernelError, checked_product, element_count, expect_inputs, input, tensor};
use crate::ir::{DType, PadMode, Tensor, TensorData, strides_of};
use crate::map_data;

/// The single data input of a shape-only op, after checking the input count.
fn only_input<'a>(op: &'static str, inputs: &[&'a Tensor]) -> Result<&'a Tensor, KernelError> {
    expect_inputs(op, inputs, 1, 1)?;
    input(op, inputs, 0, "data")
}

/// A copy of `x` with a new shape holding the same number of elements.
fn with_shape(op: &'static str, x: &Tensor, shape: Vec<usize>) -> Result<Tensor, KernelError> {
    if checked_product(&shape) != Some(x.len()) {
        return Err(KernelError::new(
            op,
            format!("cannot view {} elements of shape {:?} as {shape:?}", x.len(), x.shape),
        ));
    }
    tensor(op, shape, x.data.clone())
}

/// Flatten: `[prod(shape[..axis]), prod(shape[axis..])]`.
pub fn flatten(axis: usize, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Flatten";
    let x = only_input(OP, inputs)?;
    if axis > x.shape.len() {
        return Err(KernelError::new(OP, format!("axis {axis} is out of range for shape {:?}", x.shape)));
    }
    let shape = vec![element_count(OP, &x.shape[..axis])?, element_count(OP, &x.shape[axis..])?];
    with_shape(OP, x, shape)
}

/// Reshape to a fully resolved shape.
pub fn reshape(shape: &[usize], inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Reshape";
    with_shape(OP, only_input(OP, inputs)?, shape.to_vec())
}

/// Squeeze `axes` (each of size 1); no axes squeezes every size-1 axis.
pub fn squeeze(axes: &[usize], inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Squeeze";
    let x = only_input(OP, inputs)?;
    for &axis in axes {
        if x.shape.get(axis) != Some(&1) {
            return Err(KernelError::new(OP, format!("axis {axis} of shape {:?} is not of size 1", x.shape)));
        }
    }
    let shape = x
        .shape
        .iter()
        .enumerate()
        .filter(|&(i, &d)| if axes.is_empty() { d != 1 } else { !axes.contains(&i) })
        .map(|(_, &d)| d)
        .collect();
    with_shape(OP, x, shape)
}

/// Unsqueeze: inserts size-1 axes at `axes`, which index the output.
pub fn unsqueeze(axes: &[usize], inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Unsqueeze";
    let x = only_input(OP, inputs)?;
    let rank = x.shape.len() + axes.len();
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != axes.len() || sorted.last().is_some_and(|&a| a >= rank) {
        return Err(KernelError::new(OP, format!("axes {axes:?} are repeated or out of range for rank {rank}")));
    }
    let mut dims = x.shape.iter();
    let shape = (0..rank)
        .map(|i| if sorted.binary_search(&i).is_ok() { 1 } else { dims.next().copied().unwrap_or(1) })
        .collect();
    with_shape(OP, x, shape)
}

/// Identity: a copy.
pub fn identity(op: &'static str, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    let x = only_input(op, inputs)?;
    Ok(x.clone())
}

/// Dropout in inference mode: a copy, plus the all-true mask when `with_mask`. Extra inputs
/// (ratio, training_mode) do not change inference and are ignored.
pub fn dropout(inputs: &[&Tensor], with_mask: bool) -> Result<Vec<Tensor>, KernelError> {
    const OP: &str = "Dropout";
    expect_inputs(OP, inputs, 1, 3)?;
    let x = input(OP, inputs, 0, "data")?;
    let mut outputs = vec![x.clone()];
    if with_mask {
        outputs.push(tensor(OP, x.shape.clone(), TensorData::Bool(vec![1; x.len()]))?);
    }
    Ok(outputs)
}

/// Transpose by `perm` (empty: reverse the axes, the ONNX default).
pub fn transpose(perm: &[usize], inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Transpose";
    let x = only_input(OP, inputs)?;
    let rank = x.shape.len();
    let perm: Vec<usize> = if perm.is_empty() { (0..rank).rev().collect() } else { perm.to_vec() };
    let mut seen = vec![false; rank];
    for &p in &perm {
        match seen.get_mut(p) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(KernelError::new(OP, format!("perm {perm:?} is not a permutation of rank {rank}")));
            }
        }
    }
    if perm.len() != rank {
        return Err(KernelError::new(OP, format!("perm {perm:?} is not a permutation of rank {rank}")));
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let in_strides = strides_of(&x.shape);
    let steps: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let data = map_data!(&x.data, v => gather_strided(v, &shape, &steps));
    tensor(OP, shape, data)
}

/// Walks `dims` in row-major order, reading `x` at `sum(index[i] * steps[i])`.
fn gather_strided<T: Copy>(x: &[T], dims: &[usize], steps: &[usize]) -> Vec<T> {
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let Some((&inner, outer)) = dims.split_last() else {
        out.extend_from_slice(x);
        return out;
    };
    let inner_step = steps[dims.len() - 1];
    let mut index = vec![0usize; outer.len()];
    let mut at = 0usize;
    loop {
        if inner_step == 1 {
            out.extend_from_slice(&x[at..at + inner]);
        } else {
            out.extend(x[at..].iter().step_by(inner_step).take(inner));
        }
        let mut level = outer.len();
        loop {
            if level == 0 {
                return out;
            }
            level -= 1;
            index[level] += 1;
            at += steps[level];
            if index[level] < outer[level] {
                break;
            }
            at -= steps[level] * outer[level];
            index[level] = 0;
        }
    }
}

/// Concat along `axis`: every input has the same dtype and rank, and equal dims off the axis.
pub fn concat(axis: usize, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Concat";
    let first = input(OP, inputs, 0, "the first input")?;
    let rank = first.shape.len();
    if axis >= rank {
        return Err(KernelError::new(OP, format!("axis {axis} is out of range for rank {rank}")));
    }
    let mut shape = first.shape.clone();
    shape[axis] = 0;
    for (i, x) in inputs.iter().enumerate() {
        let fits = x.shape.len() == rank
            && x.shape.iter().zip(&first.shape).enumerate().all(|(d, (a, b))| d == axis || a == b);
        if !fits {
            return Err(KernelError::new(
                OP,
                format!(
                    "input {i} of shape {:?} does not fit input 0 of shape {:?} on axis {axis}",
                    x.shape, first.shape
                ),
            ));
        }
        if x.dtype() != first.dtype() {
            return Err(KernelError::new(
                OP,
                format!("input {i} is {} but input 0 is {}", x.dtype().name(), first.dtype().name()),
            ));
        }
        shape[axis] = shape[axis]
            .checked_add(x.shape[axis])
            .ok_or_else(|| KernelError::new(OP, "concatenated axis overflows"))?;
    }
    element_count(OP, &shape)?;
    let outer: usize = first.shape[..axis].iter().product();
    // Every input's elements one after the other, then each output row picks its chunks.
    let datas: Vec<&TensorData> = inputs.iter().map(|x| &x.data).collect();
    let joined = TensorData::concat(&datas)
        .ok_or_else(|| KernelError::new(OP, "inputs of different element types cannot be concatenated"))?;
    let mut starts = Vec::with_capacity(inputs.len());
    let mut at = 0usize;
    for x in inputs {
        starts.push(at);
        at += x.len();
    }
    let mut indices = Vec::with_capacity(at);
    for o in 0..outer {
        for (x, &start) in inputs.iter().zip(&starts) {
            let chunk: usize = x.shape[axis..].iter().product();
            indices.extend(start + o * chunk..start + (o + 1) * chunk);
        }
    }
    tensor(OP, shape, joined.gather(&indices))
}

/// Pad: `pads` holds all begins then all ends and may be negative (cropping).
pub fn pad(pads: &[i64], mode: PadMode, value: f32, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "Pad";
    let x = only_input(OP, inputs)?;
    let rank = x.shape.len();
    if pads.len() != 2 * rank {
        return Err(KernelError::new(OP, format!("{} pads for rank {rank}, expected {}", pads.len(), 2 * rank)));
    }
    let mut shape = Vec::with_capacity(rank);
    for (axis, &dim) in x.shape.iter().enumerate() {
        let out = (dim as i128) + pads[axis] as i128 + pads[rank + axis] as i128;
        let out = usize::try_from(out).map_err(|_| {
            KernelError::new(
                OP,
                format!(
                    "pads {} and {} leave axis {axis} of size {dim} with {out} elements",
                    pads[axis],
                    pads[rank + axis]
                ),
            )
        })?;
        if dim == 0 && out > 0 && mode != PadMode::Constant {
            return Err(KernelError::new(OP, format!("cannot {mode:?}-pad the empty axis {axis}")));
        }
        shape.push(out);
    }
    element_count(OP, &shape)?;
    // The constant goes after the input's elements; padded cells read it from there.
    let fill = constant_of(x.dtype(), value)
        .ok_or_else(|| KernelError::new(OP, format!("cannot pad {} data", x.dtype().name())))?;
    let indices = pad_indices(&x.shape, &shape, &pads[..rank], mode, x.len());
    let extended = TensorData::concat(&[&x.data, &fill])
        .ok_or_else(|| KernelError::new(OP, "internal: the pad value has another type"))?;
    tensor(OP, shape, extended.gather(&indices))
}

/// The input coordinate output coordinate `o` reads on an axis of length `len` padded by
/// `begin` at the front; `None` where Constant mode fills in the value.
fn pad_source(o: usize, begin: i64, len: usize, mode: PadMode) -> Option<usize> {
    let i = o as i64 - begin;
    let n = len as i64;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Constant => None,
        PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
        PadMode::Reflect => {
            // Mirror about the edges without repeating them (numpy "reflect"), repeatedly
            // when the pad is longer than the axis.
            if n == 1 {
                return Some(0);
            }
            let period = 2 * (n - 1);
            let m = i.rem_euclid(period);
            Some(if m >= n { period - m } else { m } as usize)
        }
    }
}

/// One element of `dtype` holding `value` (truncated for integers, non-zero is true for bool).
fn constant_of(dtype: DType, value: f32) -> Option<TensorData> {
    if dtype.is_float() {
        TensorData::floats_from_f64(dtype, &[f64::from(value)], true)
    } else {
        TensorData::ints_from_i64(dtype, &[value as i64])
    }
}

/// For every output element of a pad, the input element it copies, or `fill` (the index of
/// the constant) for a constant cell.
fn pad_indices(in_shape: &[usize], out_shape: &[usize], begins: &[i64], mode: PadMode, fill: usize) -> Vec<usize> {
    let total: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let strides = strides_of(in_shape);
    // Per axis, the input offset each output coordinate reads (None: the constant).
    let maps: Vec<Vec<Option<usize>>> = out_shape
        .iter()
        .zip(in_shape)
        .zip(begins)
        .zip(&strides)
        .map(|(((&out_len, &len), &begin), &stride)| {
            (0..out_len).map(|o| pad_source(o, begin, len, mode).map(|i| i * stride)).collect()
        })
        .collect();
    let Some((inner, outer)) = maps.split_last() else {
        out.push(0);
        return out;
    };
    let mut index = vec![0usize; outer.len()];
    loop {
        let base = outer.iter().zip(&index).try_fold(0usize, |acc, (map, &i)| map[i].map(|off| acc + off));
        match base {
            Some(base) => out.extend(inner.iter().map(|off| off.map_or(fill, |off| base + off))),
            None => out.extend(std::iter::repeat_n(fill, inner.len())),
        }
        let mut level = outer.len();
        loop {
            if level == 0 {
                return out;
            }
            level -= 1;
            index[level] += 1;
            if index[level] < outer[level].len() {
                break;
            }
            index[level] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data)
    }

    fn iota(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    #[test]
    fn reshaping_copies_keep_data_and_check_counts() {
        let x = t(&[2, 3, 4], iota(24));
        let f = flatten(1, &[&x]).unwrap();
        assert_eq!((f.shape.clone(), f.as_f32().unwrap()), (vec![2, 12], &iota(24)[..]));
        assert_eq!(flatten(0, &[&x]).unwrap().shape, vec![1, 24]);
        assert_eq!(flatten(3, &[&x]).unwrap().shape, vec![24, 1]);
        assert_eq!(reshape(&[4, 6], &[&x]).unwrap().shape, vec![4, 6]);
        assert!(reshape(&[5, 5], &[&x]).unwrap_err().message.contains("24 elements"));
        let s = t(&[1, 3, 1, 2], iota(6));
        assert_eq!(squeeze(&[0], &[&s]).unwrap().shape, vec![3, 1, 2]);
        assert_eq!(squeeze(&[], &[&s]).unwrap().shape, vec![3, 2]);
        assert!(squeeze(&[1], &[&s]).is_err());
        assert_eq!(unsqueeze(&[0, 3], &[&t(&[3, 2], iota(6))]).unwrap().shape, vec![1, 3, 2, 1]);
        assert!(unsqueeze(&[5], &[&t(&[3, 2], iota(6))]).is_err());
        let i = Tensor::from_i64(vec![2], vec![4, -1]);
        assert_eq!(identity("Identity", &[&i]).unwrap(), i);
        assert_eq!(unsqueeze(&[0], &[&i]).unwrap().data, TensorData::I64(vec![4, -1]));
    }

    #[test]
    fn transpose_2d_and_3d() {
        // [[0,1,2],[3,4,5]]^T = [[0,3],[1,4],[2,5]]
        let x = t(&[2, 3], iota(6));
        let y = transpose(&[], &[&x]).unwrap();
        assert_eq!((y.shape.clone(), y.as_f32().unwrap().to_vec()), (vec![3, 2], vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]));
        // x of shape [2,2,2] holds x[a,b,c] = 4a + 2b + c (row-major 0..8).
        // perm [2,0,1]: y[c,a,b] = x[a,b,c] = 4a + 2b + c, listed with c slowest then a then b:
        // c=0: (a,b) = 00,01,10,11 -> 0,2,4,6; c=1: 1,3,5,7
        let x = t(&[2, 2, 2], iota(8));
        let y = transpose(&[2, 0, 1], &[&x]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]);
        assert!(transpose(&[0, 0, 1], &[&x]).is_err());
        assert!(transpose(&[0, 1], &[&x]).is_err());
    }

    #[test]
    fn transpose_int64_nchw_to_nhwc() {
        // x[n=0, c, h=0, w] = 10c + w for C=3, W=2; NHWC y[0,0,w,c] = 10c + w.
        let x = Tensor::from_i64(vec![1, 3, 1, 2], vec![0, 1, 10, 11, 20, 21]);
        let y = transpose(&[0, 2, 3, 1], &[&x]).unwrap();
        assert_eq!(y.shape, vec![1, 1, 2, 3]);
        assert_eq!(y.data, TensorData::I64(vec![0, 10, 20, 1, 11, 21]));
    }

    #[test]
    fn concat_on_inner_and_outer_axes() {
        let a = t(&[2, 1], vec![1.0, 2.0]);
        let b = t(&[2, 2], vec![3.0, 4.0, 5.0, 6.0]);
        // axis 1: rows [1 | 3 4], [2 | 5 6]
        let y = concat(1, &[&a, &b]).unwrap();
        assert_eq!((y.shape.clone(), y.as_f32().unwrap().to_vec()), (vec![2, 3], vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]));
        // axis 0 on int64 shape vectors: [1, 3] ++ [-1] = [1, 3, -1]
        let s = Tensor::from_i64(vec![2], vec![1, 3]);
        let r = Tensor::from_i64(vec![1], vec![-1]);
        assert_eq!(concat(0, &[&s, &r]).unwrap().data, TensorData::I64(vec![1, 3, -1]));
        assert!(concat(0, &[&a, &b]).unwrap_err().message.contains("does not fit"));
        assert!(concat(0, &[&s, &t(&[1], vec![0.0])]).unwrap_err().message.contains("int64"));
    }

    #[test]
    fn pad_constant_with_negative_pads() {
        // [[1,2,3],[4,5,6]] with pads begin [1, -1], end [0, 1], value 9:
        // drop column 0, add one column of 9 at the end, add a row of 9 on top.
        // -> [[9,9,9],[2,3,9],[5,6,9]]
        let x = t(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let y = pad(&[1, -1, 0, 1], PadMode::Constant, 9.0, &[&x]).unwrap();
        assert_eq!(y.shape, vec![3, 3]);
        assert_eq!(y.as_f32().unwrap(), &[9.0, 9.0, 9.0, 2.0, 3.0, 9.0, 5.0, 6.0, 9.0]);
        assert!(pad(&[0, -4, 0, 0], PadMode::Constant, 0.0, &[&x]).is_err());
    }

    #[test]
    fn pad_reflect_and_edge() {
        // 1-D [1,2,3], pads 2 and 2.
        // reflect: [3,2 | 1,2,3 | 2,1]; edge: [1,1 | 1,2,3 | 3,3]
        let x = t(&[3], vec![1.0, 2.0, 3.0]);
        let y = pad(&[2, 2], PadMode::Reflect, 0.0, &[&x]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        let y = pad(&[2, 2], PadMode::Edge, 0.0, &[&x]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]);
        // 2-D reflect of [[1,2],[3,4]] by one row on top: [[3,4],[1,2],[3,4]]
        let x = t(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let y = pad(&[1, 0, 0, 0], PadMode::Reflect, 0.0, &[&x]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
        // edge with a crop on the other axis: pads begin [0, 1], end [0, -1]
        // [[1,2],[3,4]] -> drop last column -> [[1],[3]] -> edge-pad one column left: [[1,1],[3,3]]
        let y = pad(&[0, 1, 0, -1], PadMode::Edge, 0.0, &[&x]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[1.0, 1.0, 3.0, 3.0]);
    }

    #[test]
    fn pad_int64_constant() {
        let x = Tensor::from_i64(vec![2], vec![7, 8]);
        let y = pad(&[1, 2], PadMode::Constant, -1.0, &[&x]).unwrap();
        assert_eq!(y.data, TensorData::I64(vec![-1, 7, 8, -1, -1]));
    }
}
