//! Pooling over 1-D to 3-D inputs: MaxPool and AveragePool with pads, strides, dilations,
//! `ceil_mode` and `count_include_pad` as ONNX defines them, and the global pools over every
//! spatial axis.
//!
//! Windowed pools accumulate tap by tap over contiguous output rows (the taps that land in
//! the padding are skipped by range, not tested per element). Padding never takes part in a
//! max. An average divides by the taps inside the input, or with `count_include_pad` by the
//! taps inside the padded input (`[-pad_begin, in + pad_end)`): positions that `ceil_mode`
//! adds past the end padding never count, as in onnxruntime.

use super::window::{Axis, Geometry};
use super::{KernelError, element_count, expect_inputs, f32_input, input, tensor};
use crate::ir::{Pool, Tensor, TensorData};

/// An element type MaxPool takes (opset 12: float16/32/64, int8, uint8), with the value a
/// max starts from: the lowest finite value, as onnxruntime starts.
trait Lowest: Copy + PartialOrd {
    const LOWEST: Self;
}

macro_rules! lowest {
    ($($t:ty),*) => {$(
        impl Lowest for $t {
            const LOWEST: $t = <$t>::MIN;
        }
    )*};
}

lowest!(f32, f64, half::f16, i8, u8);

/// MaxPool's input and geometry, resolved.
fn max_setup<'a>(pool: &Pool, inputs: &[&'a Tensor]) -> Result<(&'a Tensor, Geometry), KernelError> {
    const OP: &str = "MaxPool";
    expect_inputs(OP, inputs, 1, 1)?;
    let x = input(OP, inputs, 0, "X")?;
    if pool.window.kernel.is_empty() {
        return Err(KernelError::new(OP, "kernel_shape is empty"));
    }
    let geo = Geometry::resolve(OP, &x.shape, &pool.window, &pool.window.kernel, pool.ceil_mode)?;
    Ok((x, geo))
}

/// MaxPool, `Y` only (the Indices output unread).
pub fn max_pool(pool: &Pool, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const OP: &str = "MaxPool";
    let (x, geo) = max_setup(pool, inputs)?;
    let out_shape = geo.output_shape(geo.channels);
    let count = element_count(OP, &out_shape)?;
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(max_windows(v, &geo, count)),
        TensorData::F64(v) => TensorData::F64(max_windows(v, &geo, count)),
        TensorData::F16(v) => TensorData::F16(max_windows(v, &geo, count)),
        TensorData::I8(v) => TensorData::I8(max_windows(v, &geo, count)),
        TensorData::U8(v) => TensorData::U8(max_windows(v, &geo, count)),
        other => return Err(KernelError::new(OP, format!("X is {}, not a MaxPool type", other.dtype().name()))),
    };
    tensor(OP, out_shape, data)
}

/// Walks every tap of every window of `planes` planes: for each run of outputs one tap
/// reaches along the last axis (one output row), calls `visit(in_start, stride, out)` with the
/// input index of the run's first cell (the next cells `stride` apart) and the outputs' index
/// range, both counted from the start of the whole tensor. Taps go in row-major kernel order,
/// so each output meets its window's cells in input order; padding is never visited.
fn for_each_tap_run(geo: &Geometry, planes: usize, mut visit: impl FnMut(usize, usize, std::ops::Range<usize>)) {
    let (in_plane, out_plane, w) = (geo.in_plane(), geo.out_plane(), geo.w);
    for plane in 0..planes {
        let (x0, y0) = (plane * in_plane, plane * out_plane);
        for t in 0..geo.taps() {
            let (a, i, j) = geo.tap(t);
            let (w_lo, w_hi) = w.valid_outputs(j);
            if w_lo >= w_hi {
                continue;
            }
            let in_start = w.coordinate(w_lo, j) as usize;
            geo.for_each_row(a, i, |out_row, in_row| {
                let first = y0 + out_row * w.output;
                visit(x0 + in_row * w.input + in_start, w.stride, first + w_lo..first + w_hi);
            });
        }
    }
}

/// The number of planes (N x C) a pooling over `geo` runs on.
fn planes(geo: &Geometry, x_len: usize, y_len: usize) -> usize {
    if geo.in_plane() == 0 || geo.out_plane() == 0 { 0 } else { (x_len / geo.in_plane()).min(y_len / geo.out_plane()) }
}

/// The max of every window.
fn max_windows<T: Lowest>(x: &[T], geo: &Geometry, count: usize) -> Vec<T> {
    let mut y = vec![T::LOWEST; count];
    for_each_tap_run(geo, planes(geo, x.len(), count), |start, stride, out| {
        // A select, not a branch: real windows change their maximum often enough that the
        // branch mispredicted (ResNet-50's one MaxPool cost 4.6 ms per inference).
        for (o, &v) in y[out].iter_mut().zip(x[start..].iter().step_by(stride)) {
            *o = if v > *o { v } else { *o };
        }
    });
    y
}

/// MaxPool with its Indices: `Y` exactly as [`max_pool`] computes it, and for each output the
/// index of the first (in input order) maximum of its window in the flattened input,
/// `(n * C + c) * plane + position`, the position row-major or (`column_major`) with the first
/// spatial axis fastest, as the ONNX reference and onnxruntime define it. A window whose
/// values are all below the start value (-inf) points at its first in-bounds cell; one with
/// no cell inside the input (none exists when pads are smaller than the kernel) gets -1.
pub fn max_pool_with_indices(
    pool: &Pool,
    inputs: &[&Tensor],
    column_major: bool,
) -> Result<(Tensor, Tensor), KernelError> {
    const OP: &str = "MaxPool";
    let (x, geo) = max_setup(pool, inputs)?;
    let out_shape = geo.output_shape(geo.channels);
    let count = element_count(OP, &out_shape)?;
    let mut arg = vec![UNSET; count];
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(max_windows_indexed(v, &geo, &mut arg)),
        TensorData::F64(v) => TensorData::F64(max_windows_indexed(v, &geo, &mut arg)),
        TensorData::F16(v) => TensorData::F16(max_windows_indexed(v, &geo, &mut arg)),
        TensorData::I8(v) => TensorData::I8(max_windows_indexed(v, &geo, &mut arg)),
        TensorData::U8(v) => TensorData::U8(max_windows_indexed(v, &geo, &mut arg)),
        other => return Err(KernelError::new(OP, format!("X is {}, not a MaxPool type", other.dtype().name()))),
    };
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    let (d, h, w) = (geo.d.input, geo.h.input, geo.w.input);
    let flat = |p: usize, at: usize| -> i64 {
        if at == UNSET {
            return -1;
        }
        let local = if column_major {
            // (z, y, x) over the (depth, height, width) of the geometry; unit axes add 0.
            let (z, rest) = (at / (h * w), at % (h * w));
            let (row, col) = (rest / w, rest % w);
            z + row * d + col * d * h
        } else {
            at
        };
        (p * in_plane + local) as i64
    };
    let indices: Vec<i64> = arg.iter().enumerate().map(|(o, &at)| flat(o / out_plane.max(1), at)).collect();
    Ok((tensor(OP, out_shape.clone(), data)?, tensor(OP, out_shape, TensorData::I64(indices))?))
}

/// A plane-local offset not set yet (no tap of the window inside the input so far).
const UNSET: usize = usize::MAX;

/// [`max_windows`] that also records, in `arg`, the plane-local row-major offset of each max.
fn max_windows_indexed<T: Lowest>(x: &[T], geo: &Geometry, arg: &mut [usize]) -> Vec<T> {
    let count = arg.len();
    let mut y = vec![T::LOWEST; count];
    let in_plane = geo.in_plane();
    // Cells arrive in input order, so a strict `>` keeps the first maximum.
    for_each_tap_run(geo, planes(geo, x.len(), count), |start, stride, out| {
        let plane_start = start - start % in_plane;
        let cells = y[out.clone()].iter_mut().zip(&mut arg[out]);
        for (k, (o, a)) in cells.enumerate() {
            let at = start + k * stride;
            let v = x[at];
            if v > *o {
                *o = v;
                *a = at - plane_start;
            } else if *a == UNSET {
                *a = at - plane_start;
            }
        }
    });
    y
}

/// AveragePool.
pub fn average_pool(pool: &Pool, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    windowed("AveragePool", pool, inputs, pool.count_include_pad)
}

/// AveragePool: sums tap by tap over contiguous output rows, then divides by the tap counts.
fn windowed(op: &'static str, pool: &Pool, inputs: &[&Tensor], include_pad: bool) -> Result<Tensor, KernelError> {
    expect_inputs(op, inputs, 1, 1)?;
    let x_t = input(op, inputs, 0, "X")?;
    let x = f32_input(op, inputs, 0, "X")?;
    if pool.window.kernel.is_empty() {
        return Err(KernelError::new(op, "kernel_shape is empty"));
    }
    let geo = Geometry::resolve(op, &x_t.shape, &pool.window, &pool.window.kernel, pool.ceil_mode)?;
    let out_shape = geo.output_shape(geo.channels);
    let mut y = vec![0.0; element_count(op, &out_shape)?];
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    if y.is_empty() || in_plane == 0 {
        return tensor(op, out_shape, TensorData::F32(y));
    }
    let w = geo.w;
    for_each_tap_run(&geo, planes(&geo, x.len(), y.len()), |start, stride, out| {
        for (o, &v) in y[out].iter_mut().zip(x[start..].iter().step_by(stride)) {
            *o += v;
        }
    });
    // The count is separable: per (depth, height) output row times per column.
    let depths = tap_counts(&geo.d, include_pad);
    let heights = tap_counts(&geo.h, include_pad);
    let rows: Vec<usize> = depths.iter().flat_map(|&cd| heights.iter().map(move |&ch| cd * ch)).collect();
    let cols = tap_counts(&w, include_pad);
    for out in y.chunks_exact_mut(out_plane) {
        for (out_row, &row_count) in out.chunks_exact_mut(w.output).zip(&rows) {
            for (o, &col_count) in out_row.iter_mut().zip(&cols) {
                let count = row_count * col_count;
                // A window entirely in the padding (only possible with pads >= kernel)
                // has nothing to average; leave its sum, 0.
                if count > 0 {
                    *o /= count as f32;
                }
            }
        }
    }
    tensor(op, out_shape, TensorData::F32(y))
}

/// For each output position of `axis`, how many of its taps count towards an average: taps
/// inside the input, or (`include_pad`) inside the padded input.
fn tap_counts(axis: &Axis, include_pad: bool) -> Vec<usize> {
    let (low, high) = if include_pad {
        (-(axis.pad_begin as isize), (axis.input + axis.pad_end) as isize)
    } else {
        (0, axis.input as isize)
    };
    (0..axis.output)
        .map(|o| (0..axis.kernel).filter(|&t| (low..high).contains(&axis.coordinate(o, t))).count())
        .collect()
}

/// Which reduction a global pool applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalKind {
    Average,
    Max,
}

/// GlobalAveragePool / GlobalMaxPool: reduces every axis after the channel axis to size 1.
pub fn global_pool(kind: GlobalKind, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    let op = match kind {
        GlobalKind::Average => "GlobalAveragePool",
        GlobalKind::Max => "GlobalMaxPool",
    };
    expect_inputs(op, inputs, 1, 1)?;
    let x_t = input(op, inputs, 0, "X")?;
    let x = f32_input(op, inputs, 0, "X")?;
    if x_t.shape.len() < 2 {
        return Err(KernelError::new(op, format!("input must be [N, C, ...], got shape {:?}", x_t.shape)));
    }
    let plane: usize = x_t.shape[2..].iter().product();
    let mut out_shape = x_t.shape.clone();
    out_shape[2..].fill(1);
    let planes = element_count(op, &x_t.shape[..2])?;
    let y: Vec<f32> = if plane == 0 {
        vec![
            match kind {
                GlobalKind::Average => f32::NAN, // mean of nothing
                GlobalKind::Max => f32::MIN,
            };
            planes
        ]
    } else {
        x.chunks_exact(plane)
            .map(|values| match kind {
                // Accumulate in f64: large planes (56x56 and up) would lose digits in f32.
                GlobalKind::Average => (values.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32,
                GlobalKind::Max => values.iter().fold(f32::MIN, |m, &v| if v > m { v } else { m }),
            })
            .collect()
    };
    tensor(op, out_shape, TensorData::F32(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Window;

    fn pool(
        kernel: &[usize],
        strides: &[usize],
        pads: &[usize],
        dilations: &[usize],
        ceil: bool,
        include: bool,
    ) -> Pool {
        Pool {
            kind: crate::ops::PoolKind::Max,
            window: Window {
                kernel: kernel.to_vec(),
                strides: strides.to_vec(),
                pads: pads.to_vec(),
                dilations: dilations.to_vec(),
            },
            ceil_mode: ceil,
            count_include_pad: include,
            indices: None,
        }
    }

    fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data)
    }

    fn iota(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    #[test]
    fn max_pool_2x2_stride_2() {
        // 4x4 of 0..16: window maxima are the bottom-right corners 5, 7, 13, 15.
        let x = t(&[1, 1, 4, 4], iota(16));
        let y = max_pool(&pool(&[2, 2], &[2, 2], &[], &[], false, false), &[&x]).unwrap();
        assert_eq!(y.shape, vec![1, 1, 2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[5.0, 7.0, 13.0, 15.0]);
    }

    #[test]
    fn max_pool_ignores_padding_even_for_negative_inputs() {
        // x = -(1..=4) as 2x2, kernel 2, stride 1, pad 1: 3x3 output, each the max of the
        // in-bounds values of its window; padding (which would be 0) never wins.
        //   -1 -2       (0,0): {-1} = -1   (0,1): {-1,-2} = -1   (0,2): {-2}
        //   -3 -4       (1,0): {-1,-3}     (1,1): all = -1        (1,2): {-2,-4} = -2
        //               (2,0): {-3}        (2,1): {-3,-4} = -3    (2,2): {-4}
        let x = t(&[1, 1, 2, 2], vec![-1.0, -2.0, -3.0, -4.0]);
        let y = max_pool(&pool(&[2, 2], &[1, 1], &[1, 1, 1, 1], &[], false, false), &[&x]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -3.0, -3.0, -4.0]);
    }

    #[test]
    fn max_pool_dilated_1d_with_ceil_mode() {
        // x = [3,1,4,1,5,9,2,6], kernel 2, dilation 2, stride 3, ceil mode:
        // span 3, out = ceil((8 - 3) / 3) + 1 = 3; windows {0,2}, {3,5}, {6,8->out}:
        // max(3,4) = 4, max(1,9) = 9, max(2) = 2
        let x = t(&[1, 1, 8], vec![3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]);
        let y = max_pool(&pool(&[2], &[3], &[], &[2], true, false), &[&x]).unwrap();
        assert_eq!(y.shape, vec![1, 1, 3]);
        assert_eq!(y.as_f32().unwrap(), &[4.0, 9.0, 2.0]);
    }

    #[test]
    fn average_pool_with_and_without_counting_pads() {
        // 3x3 of 1..=9, kernel 2, stride 2, pad 1 on every side: out (3+2-2)/2+1 = 2.
        // Windows (input rows/cols): (0,0): {1}, (0,1): {2,3}, (1,0): {4,7}, (1,1): {5,6,8,9}.
        // Excluding pads: 1/1, 5/2, 11/2, 28/4 = [1, 2.5, 5.5, 7]. Including pads every
        // window lies in the padded 5x5, so all divide by 4: [0.25, 1.25, 2.75, 7].
        let x = t(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
        let exclude = average_pool(&pool(&[2, 2], &[2, 2], &[1, 1, 1, 1], &[], false, false), &[&x]).unwrap();
        assert_eq!(exclude.as_f32().unwrap(), &[1.0, 2.5, 5.5, 7.0]);
        let include = average_pool(&pool(&[2, 2], &[2, 2], &[1, 1, 1, 1], &[], false, true), &[&x]).unwrap();
        assert_eq!(include.as_f32().unwrap(), &[0.25, 1.25, 2.75, 7.0]);
    }

    #[test]
    fn average_pool_ceil_mode_does_not_count_past_the_padding() {
        // 1-D x = [1,2,3,4,5], kernel 2, stride 2, no pads, ceil mode: out = ceil(3/2)+1 = 3.
        // Windows [1,2], [3,4], [5, <past the end>]. The last has one tap inside the padded
        // input (no pads) either way: [1.5, 3.5, 5].
        let x = t(&[1, 1, 5], vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        for include in [false, true] {
            let y = average_pool(&pool(&[2], &[2], &[], &[], true, include), &[&x]).unwrap();
            assert_eq!(y.as_f32().unwrap(), &[1.5, 3.5, 5.0], "count_include_pad {include}");
        }
        // With an end pad of 1 and kernel 3, stride 2: padded [1,2,3,4,5,0], out = ceil(3/2)+1 = 3
        // windows [1,2,3], [3,4,5], [5,0,<past>]; include-pad divisors 3, 3, 2: [2, 4, 2.5];
        // exclude-pad divisors 3, 3, 1: [2, 4, 5].
        let include = average_pool(&pool(&[3], &[2], &[0, 1], &[], true, true), &[&x]).unwrap();
        assert_eq!(include.as_f32().unwrap(), &[2.0, 4.0, 2.5]);
        let exclude = average_pool(&pool(&[3], &[2], &[0, 1], &[], true, false), &[&x]).unwrap();
        assert_eq!(exclude.as_f32().unwrap(), &[2.0, 4.0, 5.0]);
    }

    #[test]
    fn average_pool_keeps_channels_apart() {
        // Two channels of a 1x2 image, kernel [1,2]: means 1.5 and 35.
        let x = t(&[1, 2, 1, 2], vec![1.0, 2.0, 30.0, 40.0]);
        let y = average_pool(&pool(&[1, 2], &[], &[], &[], false, false), &[&x]).unwrap();
        assert_eq!((y.shape.clone(), y.as_f32().unwrap().to_vec()), (vec![1, 2, 1, 1], vec![1.5, 35.0]));
    }

    #[test]
    fn pools_3d() {
        // x[d,h,w] = 4d + 2h + w over 2x2x2. Kernel [2,1,2] covers depth and width per row h:
        // h=0: {0,1,4,5} -> max 5, mean 2.5; h=1: {2,3,6,7} -> max 7, mean 4.5.
        let x = t(&[1, 1, 2, 2, 2], iota(8));
        let p = pool(&[2, 1, 2], &[], &[], &[], false, false);
        let max = max_pool(&p, &[&x]).unwrap();
        assert_eq!(max.shape, vec![1, 1, 1, 2, 1]);
        assert_eq!(max.as_f32().unwrap(), &[5.0, 7.0]);
        assert_eq!(average_pool(&p, &[&x]).unwrap().as_f32().unwrap(), &[2.5, 4.5]);
        // With a depth pad of 1 in front and count_include_pad, the first depth window
        // ([pad, d0]) counts 2 depth taps: kernel [2,1,1] stride 1 gives depths
        // [pad,0] and [0,1]; mean at (h=0, w=0): (0)/2 = 0 and (0 + 4)/2 = 2.
        let p = pool(&[2, 1, 1], &[], &[1, 0, 0, 0, 0, 0], &[], false, true);
        let avg = average_pool(&p, &[&x]).unwrap();
        assert_eq!(avg.shape, vec![1, 1, 2, 2, 2]);
        // depth 0: x[0]/2 = [0, 0.5, 1, 1.5]; depth 1: (x[0] + x[1]) / 2 = [2, 3, 4, 5]
        assert_eq!(avg.as_f32().unwrap(), &[0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn global_pools() {
        // Channel 0 = [1,2,3,4] -> mean 2.5, max 4; channel 1 = [-1,-2,-3,-6] -> mean -3, max -1.
        let x = t(&[1, 2, 2, 2], vec![1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -6.0]);
        let avg = global_pool(GlobalKind::Average, &[&x]).unwrap();
        assert_eq!((avg.shape.clone(), avg.as_f32().unwrap().to_vec()), (vec![1, 2, 1, 1], vec![2.5, -3.0]));
        let max = global_pool(GlobalKind::Max, &[&x]).unwrap();
        assert_eq!(max.as_f32().unwrap(), &[4.0, -1.0]);
    }

    fn with_indices(pool: &Pool, x: &Tensor, column_major: bool) -> (Vec<f32>, Vec<i64>) {
        let (y, i) = max_pool_with_indices(pool, &[x], column_major).unwrap();
        assert_eq!(y.shape, i.shape);
        (y.as_f32().unwrap().to_vec(), i.to_i64_vec().unwrap())
    }

    #[test]
    fn max_pool_indices_row_and_column_major() {
        // 3x3 of 0..9, kernel 2x2, stride 1: maxima at the bottom-right of each window,
        // (1,1)=4, (1,2)=5, (2,1)=7, (2,2)=8: row-major 4, 5, 7, 8; column-major
        // y + 3x: 1+3=4, 1+6=7, 2+3=5, 2+6=8.
        let x = t(&[1, 1, 3, 3], iota(9));
        let p = pool(&[2, 2], &[1, 1], &[], &[], false, false);
        assert_eq!(with_indices(&p, &x, false), (vec![4.0, 5.0, 7.0, 8.0], vec![4, 5, 7, 8]));
        assert_eq!(with_indices(&p, &x, true).1, vec![4, 7, 5, 8]);
        // The values equal the single-output kernel's.
        assert_eq!(max_pool(&p, &[&x]).unwrap().as_f32().unwrap(), &[4.0, 5.0, 7.0, 8.0]);
    }

    #[test]
    fn max_pool_indices_count_batch_and_channel_and_keep_the_first_maximum() {
        // Two planes (N=1, C=2) of 1x4: [7, 7, 1, 2] and [0, 3, 3, 3]; kernel 2, stride 2:
        // plane 0: windows {7,7} -> first, index 0; {1,2} -> 3. plane 1 (offset 4):
        // {0,3} -> 4+1 = 5; {3,3} -> first, 4+2 = 6.
        let x = t(&[1, 2, 1, 4], vec![7.0, 7.0, 1.0, 2.0, 0.0, 3.0, 3.0, 3.0]);
        let p = pool(&[1, 2], &[1, 2], &[], &[], false, false);
        assert_eq!(with_indices(&p, &x, false), (vec![7.0, 2.0, 3.0, 3.0], vec![0, 3, 5, 6]));
    }

    #[test]
    fn max_pool_indices_with_padding_dilation_and_3d_column_major() {
        // 1-D [3,1,4,1,5], kernel 2 dilation 2, pad 1 each side: out (5+2-3)/1+1 = 5;
        // windows (cells -1,1), (0,2), (1,3), (2,4), (3,5): maxima 1@1, 4@2, 1@1, 5@4, 1@3.
        let x = t(&[1, 1, 5], vec![3.0, 1.0, 4.0, 1.0, 5.0]);
        let p = pool(&[2], &[1], &[1, 1], &[2], false, false);
        assert_eq!(with_indices(&p, &x, false), (vec![1.0, 4.0, 1.0, 5.0, 1.0], vec![1, 2, 1, 4, 3]));
        // 3-D 2x2x2 of x[d,h,w] = 4d + 2h + w, one window over everything: max 7 at (1,1,1),
        // row-major 7; column-major d + 2h + 4w = 7 too. Max at (1,0,0) instead (value 9):
        // row-major 4, column-major 1.
        let mut v = iota(8);
        v[4] = 9.0;
        let x = t(&[1, 1, 2, 2, 2], v);
        let p = pool(&[2, 2, 2], &[], &[], &[], false, false);
        assert_eq!(with_indices(&p, &x, false).1, vec![4]);
        assert_eq!(with_indices(&p, &x, true).1, vec![1]);
        // The max at (0,0,1) (value 20): row-major 1, column-major d + 2h + 4w = 4.
        let x = t(&[1, 1, 2, 2, 2], vec![0.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!((with_indices(&p, &x, false).1, with_indices(&p, &x, true).1), (vec![1], vec![4]));
    }

    #[test]
    fn max_pool_indices_of_minus_infinity_point_inside_the_window() {
        // Every value -inf: Y stays at the lowest finite float (as without Indices), the
        // index at the window's first cell.
        let x = t(&[1, 1, 4], vec![f32::NEG_INFINITY; 4]);
        let p = pool(&[2], &[2], &[], &[], false, false);
        assert_eq!(with_indices(&p, &x, false), (vec![f32::MIN, f32::MIN], vec![0, 2]));
    }

    #[test]
    fn max_pool_keeps_its_element_type() {
        // uint8 2x2 [[1, 200], [7, 3]], one 2x2 window: 200, at index 1. int8 [-5, -128, -7]
        // with kernel 2: -5 and -7 (the start value -128 is never above a cell).
        let x = Tensor { shape: vec![1, 1, 2, 2], data: TensorData::U8(vec![1, 200, 7, 3]) };
        let p = pool(&[2, 2], &[], &[], &[], false, false);
        let (y, i) = max_pool_with_indices(&p, &[&x], false).unwrap();
        assert_eq!((y.data, i.to_i64_vec().unwrap()), (TensorData::U8(vec![200]), vec![1]));
        let x = Tensor { shape: vec![1, 1, 1, 3], data: TensorData::I8(vec![-5, -128, -7]) };
        let y = max_pool(&pool(&[1, 2], &[], &[], &[], false, false), &[&x]).unwrap();
        assert_eq!(y.data, TensorData::I8(vec![-5, -7]));
        let x = Tensor { shape: vec![1, 1, 3], data: TensorData::F64(vec![0.25, -1.0, 2.5]) };
        let y = max_pool(&pool(&[2], &[], &[], &[], false, false), &[&x]).unwrap();
        assert_eq!(y.data, TensorData::F64(vec![0.25, 2.5]));
        let halves = |v: &[f32]| TensorData::F16(v.iter().map(|&f| half::f16::from_f32(f)).collect());
        let x = Tensor { shape: vec![1, 1, 3], data: halves(&[0.5, 1.5, -2.0]) };
        assert_eq!(max_pool(&pool(&[2], &[], &[], &[], false, false), &[&x]).unwrap().data, halves(&[1.5, 1.5]));
        let x = Tensor { shape: vec![1, 1, 3], data: TensorData::I32(vec![1, 2, 3]) };
        assert!(max_pool(&pool(&[2], &[], &[], &[], false, false), &[&x]).is_err());
    }

    #[test]
    fn pool_errors() {
        let x = t(&[1, 1, 2, 2], vec![0.0; 4]);
        assert!(max_pool(&pool(&[], &[], &[], &[], false, false), &[&x]).is_err());
        assert!(max_pool(&pool(&[3, 3], &[], &[], &[], false, false), &[&x]).is_err());
        let v = t(&[4], vec![0.0; 4]);
        assert!(global_pool(GlobalKind::Max, &[&v]).is_err());
    }
}
