//! Which per-block encoding each element of a blocked weight takes: the runs of consecutive
//! elements that share one, as [`TensorEncoding::PerBlock`](super::encoding::TensorEncoding)
//! orders its blocks (row-major over the weight's shape with the block axis divided by the
//! block size and every other axis but the output-channel axis of size 1). Shared by fake
//! quantization here and by `model.bin`'s codec, so that both read a block the same way.

use std::ops::Range;

/// `(block index, element range)` of every run of `shape`'s elements, in order; `None` when the
/// axes are out of range or equal, or the block size does not divide the block axis.
pub fn block_runs(
    shape: &[usize],
    axis: usize,
    block_axis: usize,
    block_size: usize,
) -> Option<impl Iterator<Item = (usize, Range<usize>)> + use<>> {
    let inputs = *shape.get(block_axis)?;
    let channels = *shape.get(axis)?;
    if axis == block_axis || block_size == 0 || !inputs.is_multiple_of(block_size) {
        return None;
    }
    let blocks = inputs / block_size;
    // The block axis split in two, (blocks, block_size): a run is everything after the later
    // of the channel and block-index axes.
    let mut dims = Vec::with_capacity(shape.len() + 1);
    let (mut channel_at, mut block_at) = (0, 0);
    for (d, &n) in shape.iter().enumerate() {
        if d == block_axis {
            block_at = dims.len();
            dims.extend([blocks, block_size]);
        } else {
            if d == axis {
                channel_at = dims.len();
            }
            dims.push(n);
        }
    }
    let last = channel_at.max(block_at);
    let run: usize = dims[last + 1..].iter().product();
    let total: usize = shape.iter().product();
    let stride = |at: usize| dims[at + 1..=last].iter().product::<usize>();
    let (channel_stride, block_stride) = (stride(channel_at), stride(block_at));
    let channel_major = axis < block_axis;
    Some((0..total.checked_div(run).unwrap_or(0)).map(move |r| {
        let (c, b) = ((r / channel_stride) % channels.max(1), (r / block_stride) % blocks.max(1));
        let index = if channel_major { c * blocks + b } else { b * channels + c };
        (index, r * run..(r + 1) * run)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(shape: &[usize], axis: usize, block_axis: usize, size: usize) -> Vec<usize> {
        let mut out = vec![usize::MAX; shape.iter().product()];
        for (index, range) in block_runs(shape, axis, block_axis, size).unwrap() {
            out[range].fill(index);
        }
        out
    }

    #[test]
    fn conv_weight_blocks_along_input_channels() {
        // [out 2, in 4, k 2]: blocks of 2 input channels, each run a whole block (2 x k).
        assert_eq!(indices(&[2, 4, 2], 0, 1, 2), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
        let runs: Vec<_> = block_runs(&[2, 4, 2], 0, 1, 2).unwrap().collect();
        assert_eq!(runs.len(), 4);
    }

    #[test]
    fn gemm_and_matmul_layouts() {
        // Gemm transB [out 2, in 4], blocks of 2: channel-major.
        assert_eq!(indices(&[2, 4], 0, 1, 2), [0, 0, 1, 1, 2, 2, 3, 3]);
        // MatMul [in 4, out 2], blocks of 2 along axis 0: block-major scale tensor [2, 2].
        assert_eq!(indices(&[4, 2], 1, 0, 2), [0, 1, 0, 1, 2, 3, 2, 3]);
    }

    #[test]
    fn refuses_what_does_not_block() {
        assert!(block_runs(&[2, 4], 0, 1, 3).is_none());
        assert!(block_runs(&[2, 4], 0, 0, 2).is_none());
        assert!(block_runs(&[2, 4], 0, 2, 2).is_none());
    }
}
