//! Shape and dtype inference for every op of the IR.
//!
//! [`infer`] is the one place that knows how an op's output shape follows from its inputs:
//! the ONNX importer calls it for every node it imports, and passes can call it after a
//! rewrite. Errors are plain strings that start with the op type and name what disagrees
//! ("Conv: input has 3 channels, weight expects 4 (group 1)"); callers add the node name.

use super::graph::TensorInfo;
use super::op::{Conv, Op, PadMode, Pool, Window};
use super::tensor::DType;

/// Output `(dtype, shape)` of every output of `op` (all IR ops have exactly one output),
/// given the infos of its inputs in node order.
pub fn infer(op: &Op, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
    let name = op.type_name();
    let out = match op {
        Op::Conv(conv) => conv_output(conv, inputs)?,
        Op::Gemm { trans_a, trans_b, .. } => gemm_output(*trans_a, *trans_b, inputs)?,
        Op::MatMul => matmul_output(inputs)?,
        Op::Add | Op::Sub | Op::Mul | Op::Div => binary_output(name, inputs)?,
        Op::Relu | Op::Identity | Op::Dropout | Op::Convert => {
            let [x] = exactly(name, inputs)?;
            (x.dtype, x.shape.clone())
        }
        Op::Clip { .. } | Op::Sigmoid | Op::Tanh | Op::HardSigmoid { .. } | Op::HardSwish => {
            let [x] = exactly(name, inputs)?;
            require_float(name, x)?;
            (x.dtype, x.shape.clone())
        }
        Op::MaxPool(pool) | Op::AveragePool(pool) => pool_output(name, pool, inputs)?,
        Op::GlobalAveragePool | Op::GlobalMaxPool => global_pool_output(name, inputs)?,
        Op::BatchNormalization { .. } => batch_norm_output(inputs)?,
        Op::Flatten { axis } => flatten_output(*axis, inputs)?,
        Op::Reshape { shape } => reshape_output(shape, inputs)?,
        Op::Transpose { perm } => transpose_output(perm, inputs)?,
        Op::Concat { axis } => concat_output(*axis, inputs)?,
        Op::Softmax { axis, .. } => {
            let [x] = exactly(name, inputs)?;
            require_float(name, x)?;
            if *axis >= x.shape.len() {
                return Err(format!("Softmax: axis {axis} is out of range for {:?} of rank {}", x.name, x.shape.len()));
            }
            (x.dtype, x.shape.clone())
        }
        Op::Squeeze { axes } => squeeze_output(axes, inputs)?,
        Op::Unsqueeze { axes } => unsqueeze_output(axes, inputs)?,
        Op::Pad { pads, mode, .. } => pad_output(pads, *mode, inputs)?,
    };
    Ok(vec![out])
}

/// numpy broadcasting of two shapes: align at the right; each pair of dims must be equal or
/// one of them 1.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, slot) in out.iter_mut().enumerate() {
        // Dim i of the output lines up with dim (i - (rank - len)) of each operand.
        let da = (i + a.len()).checked_sub(rank).map_or(1, |j| a[j]);
        let db = (i + b.len()).checked_sub(rank).map_or(1, |j| b[j]);
        *slot = match (da, db) {
            _ if da == db => da,
            (1, d) | (d, 1) => d,
            _ => return None,
        };
    }
    Some(out)
}

/// Output length of one spatial axis of a sliding window (Conv, pools), per the ONNX spec:
/// `out = floor_or_ceil((in + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride) + 1`.
/// With `ceil_mode`, a last window that would start inside the end padding is dropped
/// (the PyTorch and onnxruntime rule: `(out - 1) * stride >= in + pad_begin` => `out - 1`).
pub fn window_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize, String> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(format!("kernel {kernel}, stride {stride} and dilation {dilation} must all be positive"));
    }
    // Attributes come from the model file: guard every step against overflow.
    let effective = (kernel - 1).checked_mul(dilation).and_then(|e| e.checked_add(1));
    let padded = input.checked_add(pad_begin).and_then(|p| p.checked_add(pad_end));
    let (Some(effective), Some(padded)) = (effective, padded) else {
        return Err(format!("kernel {kernel}, dilation {dilation} and pads {pad_begin}/{pad_end} are too large"));
    };
    let Some(span) = padded.checked_sub(effective) else {
        return Err(format!(
            "the window spans {effective} elements but the padded input has only {padded} \
             ({input} + pads {pad_begin}/{pad_end})"
        ));
    };
    if !ceil_mode {
        return Ok(span / stride + 1);
    }
    // span.div_ceil(stride) <= span < usize::MAX, so the +1 cannot overflow; `padded` fits,
    // so `input + pad_begin` does too.
    let mut out = span.div_ceil(stride) + 1;
    let last_start = (out - 1).checked_mul(stride);
    if last_start.is_none_or(|start| start >= input + pad_begin) {
        out -= 1;
    }
    Ok(out)
}

fn exactly<'a, const N: usize>(name: &str, inputs: &[&'a TensorInfo]) -> Result<[&'a TensorInfo; N], String> {
    <[&TensorInfo; N]>::try_from(inputs).map_err(|_| format!("{name}: expects {N} input(s), got {}", inputs.len()))
}

fn require_float(name: &str, x: &TensorInfo) -> Result<(), String> {
    if x.dtype == DType::F32 {
        Ok(())
    } else {
        Err(format!("{name}: {:?} is {}, expected float32", x.name, x.dtype.name()))
    }
}

fn require_numeric(name: &str, x: &TensorInfo) -> Result<(), String> {
    if x.dtype == DType::Bool { Err(format!("{name}: {:?} is bool, expected a numeric type", x.name)) } else { Ok(()) }
}

/// Checks that the window's vectors all cover `spatial` axes.
fn check_window(name: &str, window: &Window, spatial: usize) -> Result<(), String> {
    let lens = [
        ("kernel", window.kernel.len(), spatial),
        ("strides", window.strides.len(), spatial),
        ("dilations", window.dilations.len(), spatial),
        ("pads", window.pads.len(), 2 * spatial),
    ];
    for (what, got, want) in lens {
        if got != want {
            return Err(format!("{name}: {what} has {got} entries, expected {want} for {spatial} spatial axes"));
        }
    }
    Ok(())
}

fn spatial_output(name: &str, window: &Window, spatial_in: &[usize], ceil_mode: bool) -> Result<Vec<usize>, String> {
    let n = spatial_in.len();
    (0..n)
        .map(|i| {
            window_output_len(
                spatial_in[i],
                window.kernel[i],
                window.strides[i],
                window.pads[i],
                window.pads[n + i],
                window.dilations[i],
                ceil_mode,
            )
            .map_err(|e| format!("{name}: spatial axis {i}: {e}"))
        })
        .collect()
}

fn conv_output(conv: &Conv, inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let (x, w, bias) = match inputs {
        [x, w] => (*x, *w, None),
        [x, w, b] => (*x, *w, Some(*b)),
        _ => return Err(format!("Conv: expects 2 or 3 inputs, got {}", inputs.len())),
    };
    for t in [Some(x), Some(w), bias].into_iter().flatten() {
        require_float("Conv", t)?;
    }
    if x.shape.len() < 3 {
        return Err(format!(
            "Conv: input {:?} has shape {:?}, expected [N, C, spatial...] (rank >= 3)",
            x.name, x.shape
        ));
    }
    if w.shape.len() != x.shape.len() {
        return Err(format!(
            "Conv: weight {:?} has rank {} but input {:?} has rank {}",
            w.name,
            w.shape.len(),
            x.name,
            x.shape.len()
        ));
    }
    let spatial = x.shape.len() - 2;
    check_window("Conv", &conv.window, spatial)?;
    if conv.window.kernel[..] != w.shape[2..] {
        return Err(format!(
            "Conv: kernel_shape {:?} disagrees with weight {:?} of shape {:?}",
            conv.window.kernel, w.name, w.shape
        ));
    }
    let group = conv.group;
    let (channels, per_group, filters) = (x.shape[1], w.shape[1], w.shape[0]);
    let expected = per_group.checked_mul(group);
    if group == 0 || expected != Some(channels) {
        let expected = expected.map_or("too many".to_string(), |e| e.to_string());
        return Err(format!("Conv: input has {channels} channels, weight expects {expected} (group {group})"));
    }
    if !filters.is_multiple_of(group) {
        return Err(format!("Conv: {filters} output channels do not divide into {group} groups"));
    }
    if let Some(b) = bias
        && b.shape != [filters]
    {
        return Err(format!("Conv: bias {:?} has shape {:?}, expected [{filters}]", b.name, b.shape));
    }
    let mut shape = vec![x.shape[0], filters];
    shape.extend(spatial_output("Conv", &conv.window, &x.shape[2..], false)?);
    Ok((DType::F32, shape))
}

fn pool_output(name: &str, pool: &Pool, inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x] = exactly(name, inputs)?;
    require_float(name, x)?;
    if x.shape.len() < 3 {
        return Err(format!(
            "{name}: input {:?} has shape {:?}, expected [N, C, spatial...] (rank >= 3)",
            x.name, x.shape
        ));
    }
    let spatial = x.shape.len() - 2;
    let window = &pool.window;
    check_window(name, window, spatial)?;
    // onnxruntime rejects pads >= kernel: such a window could lie wholly in the padding.
    for i in 0..spatial {
        let (begin, end) = (window.pads[i], window.pads[spatial + i]);
        if begin >= window.kernel[i] || end >= window.kernel[i] {
            return Err(format!(
                "{name}: pads {begin}/{end} on spatial axis {i} must be smaller than the kernel {}",
                window.kernel[i]
            ));
        }
    }
    let mut shape = x.shape[..2].to_vec();
    shape.extend(spatial_output(name, window, &x.shape[2..], pool.ceil_mode)?);
    Ok((x.dtype, shape))
}

fn global_pool_output(name: &str, inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x] = exactly(name, inputs)?;
    require_float(name, x)?;
    if x.shape.len() < 3 {
        return Err(format!(
            "{name}: input {:?} has shape {:?}, expected [N, C, spatial...] (rank >= 3)",
            x.name, x.shape
        ));
    }
    let mut shape = x.shape.clone();
    shape[2..].fill(1);
    Ok((x.dtype, shape))
}

fn gemm_output(trans_a: bool, trans_b: bool, inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let (a, b, c) = match inputs {
        [a, b] => (*a, *b, None),
        [a, b, c] => (*a, *b, Some(*c)),
        _ => return Err(format!("Gemm: expects 2 or 3 inputs, got {}", inputs.len())),
    };
    for t in [Some(a), Some(b), c].into_iter().flatten() {
        require_float("Gemm", t)?;
    }
    let (&[a0, a1], &[b0, b1]) = (&a.shape[..], &b.shape[..]) else {
        return Err(format!(
            "Gemm: A {:?} and B {:?} must be 2-D, got shapes {:?} and {:?}",
            a.name, b.name, a.shape, b.shape
        ));
    };
    let (m, k) = if trans_a { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if trans_b { (b1, b0) } else { (b0, b1) };
    if k != kb {
        return Err(format!(
            "Gemm: A' is [{m}, {k}] but B' is [{kb}, {n}] (transA {trans_a}, transB {trans_b}): \
             inner dimensions {k} and {kb} differ"
        ));
    }
    if let Some(c) = c {
        // C broadcasts one way to [M, N].
        let fits = c.shape.len() <= 2 && broadcast_shapes(&c.shape, &[m, n]).as_deref() == Some(&[m, n]);
        if !fits {
            return Err(format!("Gemm: C {:?} of shape {:?} does not broadcast to [{m}, {n}]", c.name, c.shape));
        }
    }
    Ok((DType::F32, vec![m, n]))
}

fn matmul_output(inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [a, b] = exactly("MatMul", inputs)?;
    require_numeric("MatMul", a)?;
    if a.dtype != b.dtype {
        return Err(format!("MatMul: {:?} is {} but {:?} is {}", a.name, a.dtype.name(), b.name, b.dtype.name()));
    }
    if a.shape.is_empty() || b.shape.is_empty() {
        return Err(format!("MatMul: operands must have rank >= 1, got {:?} and {:?}", a.shape, b.shape));
    }
    // numpy: a 1-D left operand gains a leading 1, a 1-D right operand a trailing 1; both
    // are removed from the result.
    let sa = if a.shape.len() == 1 { vec![1, a.shape[0]] } else { a.shape.clone() };
    let sb = if b.shape.len() == 1 { vec![b.shape[0], 1] } else { b.shape.clone() };
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (kb, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != kb {
        return Err(format!(
            "MatMul: {:?} of shape {:?} and {:?} of shape {:?}: inner dimensions {k} and {kb} differ",
            a.name, a.shape, b.name, b.shape
        ));
    }
    let batch_a = &sa[..sa.len() - 2];
    let batch_b = &sb[..sb.len() - 2];
    let Some(mut shape) = broadcast_shapes(batch_a, batch_b) else {
        return Err(format!(
            "MatMul: batch dimensions {batch_a:?} of {:?} and {batch_b:?} of {:?} do not broadcast",
            a.name, b.name
        ));
    };
    if a.shape.len() > 1 {
        shape.push(m);
    }
    if b.shape.len() > 1 {
        shape.push(n);
    }
    Ok((a.dtype, shape))
}

fn binary_output(name: &str, inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [a, b] = exactly(name, inputs)?;
    require_numeric(name, a)?;
    if a.dtype != b.dtype {
        return Err(format!("{name}: {:?} is {} but {:?} is {}", a.name, a.dtype.name(), b.name, b.dtype.name()));
    }
    let shape = broadcast_shapes(&a.shape, &b.shape).ok_or_else(|| {
        format!("{name}: shapes {:?} of {:?} and {:?} of {:?} do not broadcast", a.shape, a.name, b.shape, b.name)
    })?;
    Ok((a.dtype, shape))
}

fn batch_norm_output(inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x, params @ ..] = inputs else {
        return Err("BatchNormalization: expects 5 inputs, got 0".into());
    };
    if params.len() != 4 {
        return Err(format!("BatchNormalization: expects 5 inputs, got {}", inputs.len()));
    }
    require_float("BatchNormalization", x)?;
    if x.shape.len() < 2 {
        return Err(format!("BatchNormalization: input {:?} has shape {:?}, expected [N, C, ...]", x.name, x.shape));
    }
    let channels = x.shape[1];
    for (p, role) in params.iter().zip(["scale", "B", "mean", "var"]) {
        require_float("BatchNormalization", p)?;
        if p.shape != [channels] {
            return Err(format!(
                "BatchNormalization: {role} {:?} has shape {:?}, expected [{channels}] \
                 (the channels of {:?})",
                p.name, p.shape, x.name
            ));
        }
    }
    Ok((x.dtype, x.shape.clone()))
}

fn flatten_output(axis: usize, inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x] = exactly("Flatten", inputs)?;
    if axis > x.shape.len() {
        return Err(format!("Flatten: axis {axis} is out of range for {:?} of rank {}", x.name, x.shape.len()));
    }
    let outer = x.shape[..axis].iter().product();
    let inner = x.shape[axis..].iter().product();
    Ok((x.dtype, vec![outer, inner]))
}

fn reshape_output(shape: &[usize], inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x] = exactly("Reshape", inputs)?;
    let from = x.elements();
    let to = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if to != Some(from) {
        let to = to.map_or("too many".to_string(), |t| t.to_string());
        return Err(format!(
            "Reshape: cannot reshape {:?} of shape {:?} ({from} elements) to {shape:?} ({to} elements)",
            x.name, x.shape
        ));
    }
    Ok((x.dtype, shape.to_vec()))
}

fn transpose_output(perm: &[usize], inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x] = exactly("Transpose", inputs)?;
    let rank = x.shape.len();
    let mut seen = vec![false; rank];
    let is_permutation = perm.len() == rank && perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
    if !is_permutation {
        return Err(format!("Transpose: perm {perm:?} is not a permutation of the {rank} axes of {:?}", x.name));
    }
    Ok((x.dtype, perm.iter().map(|&p| x.shape[p]).collect()))
}

fn concat_output(axis: usize, inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [first, rest @ ..] = inputs else {
        return Err("Concat: expects at least 1 input, got 0".into());
    };
    if axis >= first.shape.len() {
        return Err(format!("Concat: axis {axis} is out of range for {:?} of rank {}", first.name, first.shape.len()));
    }
    let mut shape = first.shape.clone();
    for t in rest {
        if t.dtype != first.dtype {
            return Err(format!(
                "Concat: {:?} is {} but {:?} is {}",
                first.name,
                first.dtype.name(),
                t.name,
                t.dtype.name()
            ));
        }
        let same_elsewhere =
            t.shape.len() == shape.len() && (0..shape.len()).all(|i| i == axis || t.shape[i] == shape[i]);
        if !same_elsewhere {
            return Err(format!(
                "Concat: {:?} of shape {:?} and {:?} of shape {:?} differ outside axis {axis}",
                first.name, first.shape, t.name, t.shape
            ));
        }
        shape[axis] = shape[axis]
            .checked_add(t.shape[axis])
            .ok_or_else(|| format!("Concat: the sizes along axis {axis} overflow"))?;
    }
    Ok((first.dtype, shape))
}

fn squeeze_output(axes: &[usize], inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x] = exactly("Squeeze", inputs)?;
    let rank = x.shape.len();
    let mut drop = vec![false; rank];
    for &a in axes {
        match x.shape.get(a) {
            None => {
                return Err(format!("Squeeze: axis {a} is out of range for {:?} of rank {rank}", x.name));
            }
            Some(&d) if d != 1 => {
                return Err(format!("Squeeze: axis {a} of {:?} (shape {:?}) has size {d}, not 1", x.name, x.shape));
            }
            Some(_) if std::mem::replace(&mut drop[a], true) => {
                return Err(format!("Squeeze: axis {a} is listed twice"));
            }
            Some(_) => {}
        }
    }
    let shape = (0..rank).filter(|&i| !drop[i]).map(|i| x.shape[i]).collect();
    Ok((x.dtype, shape))
}

fn unsqueeze_output(axes: &[usize], inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x] = exactly("Unsqueeze", inputs)?;
    let out_rank = x.shape.len() + axes.len();
    let mut insert = vec![false; out_rank];
    for &a in axes {
        if a >= out_rank {
            return Err(format!("Unsqueeze: axis {a} is out of range for an output of rank {out_rank}"));
        }
        if std::mem::replace(&mut insert[a], true) {
            return Err(format!("Unsqueeze: axis {a} is listed twice"));
        }
    }
    let mut dims = x.shape.iter();
    let shape = insert.iter().map(|&new| if new { 1 } else { dims.next().copied().unwrap_or(1) }).collect();
    Ok((x.dtype, shape))
}

fn pad_output(pads: &[i64], mode: PadMode, inputs: &[&TensorInfo]) -> Result<(DType, Vec<usize>), String> {
    let [x] = exactly("Pad", inputs)?;
    let rank = x.shape.len();
    if pads.len() != 2 * rank {
        return Err(format!(
            "Pad: pads has {} entries, expected {} for {:?} of rank {rank}",
            pads.len(),
            2 * rank,
            x.name
        ));
    }
    let mut shape = Vec::with_capacity(rank);
    for (i, &dim) in x.shape.iter().enumerate() {
        let (begin, end) = (pads[i], pads[rank + i]);
        let size = i64::try_from(dim).ok().and_then(|d| d.checked_add(begin)?.checked_add(end));
        let Some(size) = size.filter(|&s| s >= 0) else {
            return Err(format!(
                "Pad: axis {i} of {:?} has size {dim}; pads {begin}/{end} leave a negative size",
                x.name
            ));
        };
        // Reflect mirrors without repeating the edge element, so it needs pads < size; edge
        // needs at least one element to repeat.
        let dim = dim as i64;
        let bad = match mode {
            PadMode::Constant => false,
            PadMode::Reflect => begin >= dim || end >= dim,
            PadMode::Edge => dim == 0 && (begin > 0 || end > 0),
        };
        if bad {
            return Err(format!(
                "Pad: {mode:?} padding of {begin}/{end} on axis {i} of {:?} needs a larger axis (size {dim})",
                x.name
            ));
        }
        shape.push(size as usize);
    }
    Ok((x.dtype, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[usize]) -> TensorInfo {
        TensorInfo { name: name.into(), dtype: DType::F32, shape: shape.to_vec() }
    }

    fn ti(name: &str, dtype: DType, shape: &[usize]) -> TensorInfo {
        TensorInfo { name: name.into(), dtype, shape: shape.to_vec() }
    }

    fn shape_of(op: &Op, inputs: &[&TensorInfo]) -> Vec<usize> {
        let out = infer(op, inputs).unwrap();
        assert_eq!(out.len(), 1);
        out.into_iter().next().unwrap().1
    }

    fn window(kernel: &[usize], strides: &[usize], pads: &[usize], dilations: &[usize]) -> Window {
        Window {
            kernel: kernel.to_vec(),
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            dilations: dilations.to_vec(),
        }
    }

    fn conv(w: Window, group: usize) -> Op {
        Op::Conv(Conv { window: w, group })
    }

    #[test]
    fn broadcasting_follows_numpy() {
        // numpy: (8,1,6,1) + (7,1,5) -> (8,7,6,5) (the numpy broadcasting docs' example).
        assert_eq!(broadcast_shapes(&[8, 1, 6, 1], &[7, 1, 5]), Some(vec![8, 7, 6, 5]));
        assert_eq!(broadcast_shapes(&[], &[3]), Some(vec![3]));
        assert_eq!(broadcast_shapes(&[2, 1], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shapes(&[2], &[3]), None);
        let err = infer(&Op::Add, &[&t("a", &[2, 3]), &t("b", &[4])]).unwrap_err();
        assert!(err.contains("do not broadcast") && err.contains("\"b\""), "{err}");
    }

    #[test]
    fn binary_ops_require_equal_dtypes() {
        let a = ti("a", DType::I64, &[2]);
        assert_eq!(infer(&Op::Mul, &[&a, &a]).unwrap(), vec![(DType::I64, vec![2])]);
        let err = infer(&Op::Mul, &[&a, &t("b", &[2])]).unwrap_err();
        assert!(err.contains("int64") && err.contains("float32"), "{err}");
    }

    #[test]
    fn conv_output_size_uses_pads_strides_dilations() {
        // out = floor((in + pb + pe - d*(k-1) - 1) / s) + 1
        // H: (28 + 1 + 1 - 1*2 - 1)/1 + 1 = 28;  W: (28 + 0 + 0 - 2*2 - 1)/2 + 1 = 12
        let op = conv(window(&[3, 3], &[1, 2], &[1, 0, 1, 0], &[1, 2]), 1);
        let x = t("x", &[1, 3, 28, 28]);
        let w = t("w", &[8, 3, 3, 3]);
        let b = t("b", &[8]);
        assert_eq!(shape_of(&op, &[&x, &w, &b]), vec![1, 8, 28, 12]);
        assert_eq!(shape_of(&op, &[&x, &w]), vec![1, 8, 28, 12]);
    }

    #[test]
    fn depthwise_conv_checks_channels_per_group() {
        // Depthwise: group = C = 32, W [32, 1, 3, 3]; (112 + 2 - 2 - 1)/2 + 1 = 56.
        let op = conv(window(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[1, 1]), 32);
        let x = t("x", &[2, 32, 112, 112]);
        assert_eq!(shape_of(&op, &[&x, &t("w", &[32, 1, 3, 3])]), vec![2, 32, 56, 56]);
        let op1 = conv(window(&[3, 3], &[1, 1], &[0; 4], &[1, 1]), 1);
        let err = infer(&op1, &[&t("x", &[1, 3, 8, 8]), &t("w", &[2, 4, 3, 3])]).unwrap_err();
        assert_eq!(err, "Conv: input has 3 channels, weight expects 4 (group 1)");
        let op3 = conv(window(&[3, 3], &[1, 1], &[0; 4], &[1, 1]), 3);
        let err = infer(&op3, &[&t("x", &[1, 3, 8, 8]), &t("w", &[4, 1, 3, 3])]).unwrap_err();
        assert!(err.contains("do not divide into 3 groups"), "{err}");
    }

    #[test]
    fn conv_rejects_kernel_weight_and_bias_mismatches() {
        let op = conv(window(&[5, 5], &[1, 1], &[0; 4], &[1, 1]), 1);
        let err = infer(&op, &[&t("x", &[1, 1, 8, 8]), &t("w", &[2, 1, 3, 3])]).unwrap_err();
        assert!(err.contains("kernel_shape [5, 5]"), "{err}");
        let op = conv(window(&[3, 3], &[1, 1], &[0; 4], &[1, 1]), 1);
        let err = infer(&op, &[&t("x", &[1, 1, 8, 8]), &t("w", &[2, 1, 3, 3]), &t("b", &[3])]).unwrap_err();
        assert!(err.contains("expected [2]"), "{err}");
        // A 9x9 window on a 4x4 input without padding does not fit.
        let op = conv(window(&[9, 9], &[1, 1], &[0; 4], &[1, 1]), 1);
        let err = infer(&op, &[&t("x", &[1, 1, 4, 4]), &t("w", &[2, 1, 9, 9])]).unwrap_err();
        assert!(err.contains("window spans 9"), "{err}");
    }

    #[test]
    fn pool_ceil_mode_matches_onnxruntime() {
        // Expected sizes measured with onnxruntime 1.31 MaxPool (1-D, pads p/p):
        // (in, k, s, p) -> floor / ceil
        let cases = [
            // (5+2-2)/2 = 2.5: floor 3; ceil 4, but window 4 would start at 6 >= 5+1 -> 3
            (5, 2, 2, 1, 3, 3),
            // (6+2-3)/2 = 2.5: floor 3, ceil 4 (window 4 starts at 6 < 7)
            (6, 3, 2, 1, 3, 4),
            // (10+2-3)/4 = 2.25: floor 3, ceil 4 -> starts at 12 >= 11 -> 3
            (10, 3, 4, 1, 3, 3),
            // (32+2-3)/2 = 15.5: floor 16, ceil 17
            (32, 3, 2, 1, 16, 17),
        ];
        for (input, k, s, p, floor, ceil) in cases {
            for (ceil_mode, want) in [(false, floor), (true, ceil)] {
                let op = Op::MaxPool(Pool {
                    window: window(&[k], &[s], &[p, p], &[1]),
                    ceil_mode,
                    count_include_pad: false,
                });
                assert_eq!(
                    shape_of(&op, &[&t("x", &[1, 2, input])]),
                    vec![1, 2, want],
                    "in {input} k {k} s {s} p {p} ceil {ceil_mode}"
                );
            }
        }
    }

    #[test]
    fn pool_with_dilation_and_bad_pads() {
        // Dilation 2, k 3: effective 5; (9 - 5)/1 + 1 = 5.
        let op = Op::MaxPool(Pool {
            window: window(&[3, 3], &[1, 1], &[0; 4], &[2, 2]),
            ceil_mode: false,
            count_include_pad: false,
        });
        assert_eq!(shape_of(&op, &[&t("x", &[1, 1, 9, 9])]), vec![1, 1, 5, 5]);
        let op = Op::AveragePool(Pool {
            window: window(&[2, 2], &[2, 2], &[2, 0, 0, 0], &[1, 1]),
            ceil_mode: false,
            count_include_pad: true,
        });
        let err = infer(&op, &[&t("x", &[1, 1, 8, 8])]).unwrap_err();
        assert!(err.contains("smaller than the kernel"), "{err}");
    }

    #[test]
    fn global_pools_keep_batch_and_channels() {
        assert_eq!(shape_of(&Op::GlobalAveragePool, &[&t("x", &[2, 16, 7, 5])]), vec![2, 16, 1, 1]);
        assert_eq!(shape_of(&Op::GlobalMaxPool, &[&t("x", &[2, 16, 7])]), vec![2, 16, 1]);
        assert!(infer(&Op::GlobalMaxPool, &[&t("x", &[2, 16])]).is_err());
    }

    #[test]
    fn gemm_honours_transposes_and_bias_broadcast() {
        let gemm = |ta, tb| Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: ta, trans_b: tb };
        // A [4,3], B^T: B stored [5,3] -> [3,5]; Y [4,5]; C [5] broadcasts to [4,5].
        let (a, b, c) = (t("a", &[4, 3]), t("b", &[5, 3]), t("c", &[5]));
        assert_eq!(shape_of(&gemm(false, true), &[&a, &b, &c]), vec![4, 5]);
        // transA: A stored [3,4] -> [4,3].
        assert_eq!(shape_of(&gemm(true, true), &[&t("a", &[3, 4]), &b]), vec![4, 5]);
        let err = infer(&gemm(false, false), &[&a, &b]).unwrap_err();
        assert!(err.contains("inner dimensions 3 and 5"), "{err}");
        let err = infer(&gemm(false, true), &[&a, &b, &t("c", &[4])]).unwrap_err();
        assert!(err.contains("does not broadcast to [4, 5]"), "{err}");
        // C of [4,1] broadcasts along N.
        assert_eq!(shape_of(&gemm(false, true), &[&a, &b, &t("c", &[4, 1])]), vec![4, 5]);
    }

    #[test]
    fn matmul_broadcasts_batches_and_handles_vectors() {
        // numpy.matmul: (2,1,3,4) @ (5,4,6) -> (2,5,3,6)
        assert_eq!(shape_of(&Op::MatMul, &[&t("a", &[2, 1, 3, 4]), &t("b", &[5, 4, 6])]), vec![2, 5, 3, 6]);
        // (4,) @ (2,4,6) -> (2,6); (2,3,4) @ (4,) -> (2,3); (4,) @ (4,) -> ()
        assert_eq!(shape_of(&Op::MatMul, &[&t("a", &[4]), &t("b", &[2, 4, 6])]), vec![2, 6]);
        assert_eq!(shape_of(&Op::MatMul, &[&t("a", &[2, 3, 4]), &t("b", &[4])]), vec![2, 3]);
        assert_eq!(shape_of(&Op::MatMul, &[&t("a", &[4]), &t("b", &[4])]), Vec::<usize>::new());
        let err = infer(&Op::MatMul, &[&t("a", &[3, 4]), &t("b", &[5, 6])]).unwrap_err();
        assert!(err.contains("inner dimensions 4 and 5"), "{err}");
        let err = infer(&Op::MatMul, &[&t("a", &[2, 3, 4]), &t("b", &[3, 4, 6])]).unwrap_err();
        assert!(err.contains("do not broadcast"), "{err}");
    }

    #[test]
    fn batch_norm_checks_parameter_shapes() {
        let x = t("x", &[1, 4, 5, 5]);
        let p = t("p", &[4]);
        let op = Op::BatchNormalization { epsilon: 1e-5 };
        assert_eq!(shape_of(&op, &[&x, &p, &p, &p, &p]), vec![1, 4, 5, 5]);
        let err = infer(&op, &[&x, &p, &p, &t("mean", &[3]), &p]).unwrap_err();
        assert!(err.contains("mean \"mean\"") && err.contains("expected [4]"), "{err}");
        assert!(infer(&op, &[&x, &p]).is_err());
    }

    #[test]
    fn flatten_reshape_transpose() {
        let x = t("x", &[2, 3, 4, 5]);
        assert_eq!(shape_of(&Op::Flatten { axis: 2 }, &[&x]), vec![6, 20]);
        assert_eq!(shape_of(&Op::Flatten { axis: 0 }, &[&x]), vec![1, 120]);
        assert_eq!(shape_of(&Op::Flatten { axis: 4 }, &[&x]), vec![120, 1]);
        assert!(infer(&Op::Flatten { axis: 5 }, &[&x]).is_err());
        assert_eq!(shape_of(&Op::Reshape { shape: vec![6, 20] }, &[&x]), vec![6, 20]);
        let err = infer(&Op::Reshape { shape: vec![7, 20] }, &[&x]).unwrap_err();
        assert!(err.contains("120 elements") && err.contains("140 elements"), "{err}");
        assert_eq!(shape_of(&Op::Transpose { perm: vec![0, 2, 3, 1] }, &[&x]), vec![2, 4, 5, 3]);
        assert!(infer(&Op::Transpose { perm: vec![0, 0, 1, 2] }, &[&x]).is_err());
        assert!(infer(&Op::Transpose { perm: vec![0, 1, 2] }, &[&x]).is_err());
    }

    #[test]
    fn concat_sums_the_axis() {
        let op = Op::Concat { axis: 1 };
        let out = shape_of(&op, &[&t("a", &[2, 3, 4]), &t("b", &[2, 5, 4]), &t("c", &[2, 1, 4])]);
        assert_eq!(out, vec![2, 9, 4]);
        let err = infer(&op, &[&t("a", &[2, 3, 4]), &t("b", &[2, 3, 5])]).unwrap_err();
        assert!(err.contains("differ outside axis 1"), "{err}");
        let i = ti("i", DType::I64, &[2]);
        assert_eq!(infer(&Op::Concat { axis: 0 }, &[&i, &i]).unwrap(), vec![(DType::I64, vec![4])]);
    }

    #[test]
    fn softmax_squeeze_unsqueeze() {
        let x = t("x", &[1, 10]);
        assert_eq!(shape_of(&Op::Softmax { axis: 1, coerce_2d: true }, &[&x]), vec![1, 10]);
        assert!(infer(&Op::Softmax { axis: 2, coerce_2d: false }, &[&x]).is_err());
        let y = t("y", &[1, 3, 1, 5]);
        assert_eq!(shape_of(&Op::Squeeze { axes: vec![0, 2] }, &[&y]), vec![3, 5]);
        let err = infer(&Op::Squeeze { axes: vec![1] }, &[&y]).unwrap_err();
        assert!(err.contains("has size 3, not 1"), "{err}");
        // Unsqueeze [3,5] at output axes 0 and 2 -> [1,3,1,5].
        assert_eq!(shape_of(&Op::Unsqueeze { axes: vec![2, 0] }, &[&t("z", &[3, 5])]), vec![1, 3, 1, 5]);
        assert!(infer(&Op::Unsqueeze { axes: vec![4] }, &[&t("z", &[3, 5])]).is_err());
        assert!(infer(&Op::Unsqueeze { axes: vec![1, 1] }, &[&t("z", &[3, 5])]).is_err());
    }

    #[test]
    fn pad_accepts_negative_pads_and_checks_reflect() {
        let x = t("x", &[1, 3, 4, 4]);
        // out = dim + begin + end: H 4+1+2 = 7, W 4-1+0 = 3.
        let op = Op::Pad { pads: vec![0, 0, 1, -1, 0, 0, 2, 0], mode: PadMode::Constant, value: 0.0 };
        assert_eq!(shape_of(&op, &[&x]), vec![1, 3, 7, 3]);
        let op = Op::Pad { pads: vec![0, 0, 0, -3, 0, 0, 0, -2], mode: PadMode::Constant, value: 0.0 };
        assert!(infer(&op, &[&x]).unwrap_err().contains("negative size"));
        let op = Op::Pad { pads: vec![0, 0, 4, 0, 0, 0, 0, 0], mode: PadMode::Reflect, value: 0.0 };
        assert!(infer(&op, &[&x]).unwrap_err().contains("Reflect"));
        let op = Op::Pad { pads: vec![0, 0, 3, 0, 0, 0, 0, 0], mode: PadMode::Reflect, value: 0.0 };
        assert_eq!(shape_of(&op, &[&x]), vec![1, 3, 7, 4]);
        let op = Op::Pad { pads: vec![0, 0, 1, 1], mode: PadMode::Edge, value: 0.0 };
        assert!(infer(&op, &[&x]).unwrap_err().contains("expected 8"));
    }

    #[test]
    fn absurd_attributes_are_errors_not_overflows() {
        let huge = usize::MAX / 2 + 1; // 2 * huge overflows
        assert!(window_output_len(8, 3, 1, 0, 0, huge, false).unwrap_err().contains("too large"));
        assert!(window_output_len(8, 3, 1, huge, huge, 1, false).unwrap_err().contains("too large"));
        // Stride 1, span usize::MAX - 2 in ceil mode: no overflow in the +1 or the last-start test.
        assert!(window_output_len(usize::MAX - 1, 1, 1, 0, 0, 1, true).is_ok());
        let op = conv(window(&[1], &[1], &[0, 0], &[1]), huge);
        let err = infer(&op, &[&t("x", &[1, 4, 4]), &t("w", &[4, 4, 1])]).unwrap_err();
        assert!(err.contains("weight expects too many"), "{err}");
        let err = infer(&Op::Reshape { shape: vec![huge, huge, 0] }, &[&t("x", &[2])]).unwrap_err();
        assert!(err.contains("too many elements"), "{err}");
    }

    #[test]
    fn float_only_ops_reject_integers() {
        let i = ti("i", DType::I64, &[3]);
        let err = infer(&Op::Sigmoid, &[&i]).unwrap_err();
        assert_eq!(err, "Sigmoid: \"i\" is int64, expected float32");
        assert_eq!(infer(&Op::Relu, &[&i]).unwrap(), vec![(DType::I64, vec![3])]);
        assert_eq!(infer(&Op::HardSwish, &[&t("x", &[2])]).unwrap(), vec![(DType::F32, vec![2])]);
        assert!(infer(&Op::Identity, &[]).unwrap_err().contains("expects 1 input(s), got 0"));
    }
}
