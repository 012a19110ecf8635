//! The shape arithmetic every op's inference shares: numpy broadcasting, sliding-window
//! output sizes, arity and dtype checks. Each op's own inference lives with the op
//! (`crate::ops`, [`crate::ir::Op::infer`]). Errors are plain strings that start with the op
//! type and name what disagrees ("Conv: input has 3 channels, weight expects 4 (group 1)");
//! callers add the node name.

use super::graph::TensorInfo;
use super::tensor::DType;

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

pub(crate) fn exactly<'a, const N: usize>(
    name: &str,
    inputs: &[&'a TensorInfo],
) -> Result<[&'a TensorInfo; N], String> {
    <[&TensorInfo; N]>::try_from(inputs).map_err(|_| format!("{name}: expects {N} input(s), got {}", inputs.len()))
}

/// `x` is float32, float16, bfloat16 or float64: what an op whose kernel computes in float32
/// accepts (`OpDef::float32_kernel` runs the other three through float32).
pub(crate) fn require_float(name: &str, x: &TensorInfo) -> Result<(), String> {
    if x.dtype.is_compute_float() {
        Ok(())
    } else {
        Err(format!("{name}: {:?} is {}, expected float32, float16, bfloat16 or float64", x.name, x.dtype.name()))
    }
}

/// `x` is float32 (ops whose ONNX definition allows nothing else).
pub(crate) fn require_f32(name: &str, x: &TensorInfo) -> Result<(), String> {
    if x.dtype == DType::F32 {
        Ok(())
    } else {
        Err(format!("{name}: {:?} is {}, expected float32", x.name, x.dtype.name()))
    }
}

/// Every tensor of `others` has the element type of `x` (ONNX's one type parameter `T`).
pub(crate) fn same_type_as(name: &str, x: &TensorInfo, others: &[&TensorInfo]) -> Result<(), String> {
    match others.iter().find(|t| t.dtype != x.dtype) {
        Some(t) => Err(format!("{name}: {:?} is {} but {:?} is {}", t.name, t.dtype.name(), x.name, x.dtype.name())),
        None => Ok(()),
    }
}

pub(crate) fn require_numeric(name: &str, x: &TensorInfo) -> Result<(), String> {
    if x.dtype == DType::Bool { Err(format!("{name}: {:?} is bool, expected a numeric type", x.name)) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        // numpy: (8,1,6,1) + (7,1,5) -> (8,7,6,5) (the numpy broadcasting docs' example).
        assert_eq!(broadcast_shapes(&[8, 1, 6, 1], &[7, 1, 5]), Some(vec![8, 7, 6, 5]));
        assert_eq!(broadcast_shapes(&[], &[3]), Some(vec![3]));
        assert_eq!(broadcast_shapes(&[2, 1], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shapes(&[2], &[3]), None);
    }

    #[test]
    fn absurd_window_attributes_are_errors_not_overflows() {
        let huge = usize::MAX / 2 + 1; // 2 * huge overflows
        assert!(window_output_len(8, 3, 1, 0, 0, huge, false).unwrap_err().contains("too large"));
        assert!(window_output_len(8, 3, 1, huge, huge, 1, false).unwrap_err().contains("too large"));
        // Stride 1, span usize::MAX - 2 in ceil mode: no overflow in the +1 or the last-start test.
        assert!(window_output_len(usize::MAX - 1, 1, 1, 0, 0, 1, true).is_ok());
    }
}
