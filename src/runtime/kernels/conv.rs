//! Conv over 1-D, 2-D and 3-D inputs (`[N, C, W]`, `[N, C, H, W]`, `[N, C, D, H, W]`) with
//! groups, dilations and asymmetric pads.
//!
//! The general case lowers each (image, group) to one sgemm: the weights `[M/g, C/g*taps]`
//! times the im2col matrix `[C/g*taps, OH*OW]`, written straight into the output planes.
//! A pointwise conv (1x1, stride 1, no pads) skips im2col: the input planes already are that
//! matrix. Convs with one input channel per group (depthwise, with any channel multiplier)
//! run the direct kernel of `depthwise.rs` instead, which never materializes im2col.

use super::depthwise::depthwise;
use super::gemm::{sgemm, sgemm_strided};
use super::window::Geometry;
use super::{KernelError, element_count, expect_inputs, f32_input, input, tensor};
use crate::ir::{Conv, Tensor, TensorData};
use crate::runtime::buffers;
use std::ops::Range;

const OP: &str = "Conv";

/// Conv: inputs `[X, W]` or `[X, W, B]`, `W` of shape `[M, C/group, k...]`, `B` of shape `[M]`.
pub fn conv(conv: &Conv, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    expect_inputs(OP, inputs, 2, 3)?;
    let (x_t, w_t) = (input(OP, inputs, 0, "X")?, input(OP, inputs, 1, "W")?);
    let (x, w) = (f32_input(OP, inputs, 0, "X")?, f32_input(OP, inputs, 1, "W")?);
    let [m, per_group, ref kernel @ ..] = w_t.shape[..] else {
        return Err(KernelError::new(OP, format!("weights must have rank 3 or more, got {:?}", w_t.shape)));
    };
    let geo = Geometry::resolve(OP, &x_t.shape, &conv.window, kernel, false)?;
    let group = conv.group;
    if group == 0 || m % group != 0 || per_group.checked_mul(group) != Some(geo.channels) {
        return Err(KernelError::new(
            OP,
            format!("group {group} does not fit input channels {} and weights {:?}", geo.channels, w_t.shape),
        ));
    }
    let bias = if inputs.len() == 3 {
        let b = f32_input(OP, inputs, 2, "B")?;
        if b.len() != m {
            return Err(KernelError::new(OP, format!("bias has {} values for {m} output channels", b.len())));
        }
        Some(b)
    } else {
        None
    };
    let out_shape = geo.output_shape(m);
    let elements = element_count(OP, &out_shape)?;
    let out_plane = geo.out_plane();
    if elements == 0 {
        return tensor(OP, out_shape, TensorData::F32(Vec::new()));
    }
    if per_group == 1 && geo.in_plane() > 0 {
        return tensor(OP, out_shape, TensorData::F32(depthwise(x, w, bias, &geo, m)));
    }
    let mut y = with_bias(bias, elements, out_plane);
    if geo.in_plane() == 0 || per_group == 0 {
        // No input values under any tap (empty spatial axes or channels): bias only.
        return tensor(OP, out_shape, TensorData::F32(y));
    }
    grouped_gemm(x, w, &geo, m, group, bias.is_some(), &mut y)?;
    tensor(OP, out_shape, TensorData::F32(y))
}

/// Output planes up to which [`conv_group`] multiplies a group's samples together. Measured on
/// MobileNetV2's pointwise shapes (faer, 4 samples, weights in cache): one product over the
/// samples' columns side by side took 10 % less time than one product per sample on 6×6
/// planes and 25 % less on 3×3 ones, but 30 % more on 12×12 and larger planes, where each
/// sample's product is already wide and the copies in and out cost more than they save.
const GROUPED_PLANE_MAX: usize = 64;

/// [`conv`] of several samples (`samples[s]` is sample `s`'s `[X, W]` or `[X, W, B]`) that
/// share their weights and bias, where that gains: a pointwise convolution (1×1, stride 1,
/// no pads, one group) of one image per sample on small planes ([`GROUPED_PLANE_MAX`]), run
/// as one product of the weights by every sample's input planes side by side. faer sums each
/// output over the inner dimension in an order that does not depend on the number of columns,
/// so each sample gets the bits [`conv`] gives it alone (tested on MobileNetV2's and
/// ResNet-50's shapes). `None` for any other convolution, where each sample runs on its own.
pub fn conv_group(conv: &Conv, samples: &[Vec<&Tensor>]) -> Option<Result<Vec<Vec<Tensor>>, KernelError>> {
    let first = samples.first()?;
    let (x_t, w_t, b_t) = (*first.first()?, *first.get(1)?, first.get(2).copied());
    let same = |s: &Vec<&Tensor>, k: usize, t: Option<&Tensor>| match (s.get(k), t) {
        (Some(mine), Some(shared)) => std::ptr::eq(*mine, shared),
        (None, None) => true,
        _ => false,
    };
    if conv.group != 1 || !samples.iter().all(|s| same(s, 1, Some(w_t)) && same(s, 2, b_t) && s[0].shape == x_t.shape) {
        return None;
    }
    let [m, channels, ref kernel @ ..] = w_t.shape[..] else { return None };
    let geo = Geometry::resolve(OP, &x_t.shape, &conv.window, kernel, false).ok()?;
    let pointwise = geo.pointwise();
    let plane = geo.out_plane();
    // One input channel goes to the depthwise kernel alone; an empty product has nothing to share.
    let fits = pointwise && geo.batch == 1 && geo.channels == channels && channels > 1 && m > 0;
    if !fits || plane == 0 || plane > GROUPED_PLANE_MAX || geo.in_plane() != plane {
        return None;
    }
    let w = w_t.as_f32().filter(|w| w.len() == m * channels)?;
    let bias = match b_t {
        Some(b) => Some(b.as_f32().filter(|b| b.len() == m)?),
        None => None,
    };
    let xs: Vec<&[f32]> =
        samples.iter().map(|s| s[0].as_f32().filter(|x| x.len() == channels * plane)).collect::<Option<_>>()?;
    let width = xs.len() * plane;
    // Row `c` holds channel `c` of every sample, one plane after another.
    let mut columns = buffers::take(channels * width);
    for c in 0..channels {
        for x in &xs {
            columns.extend_from_slice(&x[c * plane..(c + 1) * plane]);
        }
    }
    let mut y = with_bias(bias, m * width, width);
    let beta = if bias.is_some() { 1.0 } else { 0.0 };
    if let Err(error) = sgemm(OP, (m, channels, width), 1.0, w, (channels, 1), &columns, (width, 1), beta, &mut y) {
        return Some(Err(error));
    }
    buffers::give(columns);
    let out_shape = geo.output_shape(m);
    let outputs = (0..xs.len()).map(|s| {
        let mut own = buffers::take(m * plane);
        for row in y.chunks_exact(width) {
            own.extend_from_slice(&row[s * plane..(s + 1) * plane]);
        }
        tensor(OP, out_shape.clone(), TensorData::F32(own)).map(|t| vec![t])
    });
    let outputs: Result<Vec<Vec<Tensor>>, KernelError> = outputs.collect();
    buffers::give(y);
    Some(outputs)
}

/// An output of `elements` values whose rows of `row` values hold the bias of their channel
/// (cycling over the channels), or zeros without a bias: what the products then add to.
/// Written once, not zeroed and then filled (each a pass over megabytes on early layers).
fn with_bias(bias: Option<&[f32]>, elements: usize, row: usize) -> Vec<f32> {
    let mut y = buffers::take(elements);
    let Some(bias) = bias else {
        y.resize(elements, 0.0);
        return y;
    };
    for &value in bias.iter().cycle().take(elements / row.max(1)) {
        y.extend(std::iter::repeat_n(value, row));
    }
    y.resize(elements, 0.0);
    y
}

/// The general case: one sgemm per (image, group), on im2col columns.
fn grouped_gemm(
    x: &[f32],
    w: &[f32],
    geo: &Geometry,
    m: usize,
    group: usize,
    accumulate: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    let per_group = geo.channels / group;
    let m_per_group = m / group;
    let depth = per_group * geo.taps();
    let (in_plane, out_plane) = (geo.in_plane(), geo.out_plane());
    let pointwise = geo.pointwise();
    let row_len = geo.w.output;
    let out_rows = geo.d.output * geo.h.output;
    let rows_per_strip = strip_rows(depth, row_len, out_rows);
    // im2col writes every element of its columns (zeros where a tap falls in the padding).
    let mut columns =
        if pointwise { Vec::new() } else { buffers::take_overwritten(depth * rows_per_strip * row_len, 0.0f32) };
    let x_group_len = per_group * in_plane;
    let y_group_len = m_per_group * out_plane;
    let beta = if accumulate { 1.0 } else { 0.0 };
    for (x_image, y_image) in x.chunks_exact(geo.channels * in_plane).zip(y.chunks_exact_mut(m * out_plane)) {
        let groups = x_image
            .chunks_exact(x_group_len)
            .zip(y_image.chunks_exact_mut(y_group_len))
            .zip(w.chunks_exact(m_per_group * depth));
        for ((x_group, y_group), w_group) in groups {
            if pointwise {
                let dims = (m_per_group, depth, out_plane);
                sgemm(OP, dims, 1.0, w_group, (depth, 1), x_group, (out_plane, 1), beta, y_group)?;
                continue;
            }
            // One strip of output rows at a time: its im2col columns are still in the cache
            // when the product reads them (a whole early ResNet-50 layer's are 7 MB).
            for first in (0..out_rows).step_by(rows_per_strip) {
                let rows = first..(first + rows_per_strip).min(out_rows);
                let width = rows.len() * row_len;
                let strip = &mut columns[..depth * width];
                im2col_rows(x_group, geo, rows.clone(), strip);
                let dims = (m_per_group, depth, width);
                let y_strip = &mut y_group[first * row_len..];
                sgemm_strided(OP, dims, 1.0, w_group, (depth, 1), strip, (width, 1), beta, y_strip, out_plane)?;
            }
        }
    }
    buffers::give(columns);
    Ok(())
}

/// An im2col matrix up to this size is made whole: it stays in a core's L2 cache (2 MiB on
/// the Xeons measured) between im2col writing it and the product reading it.
const WHOLE_MAX_BYTES: usize = 2 * 1024 * 1024;

/// A larger one is made and multiplied one strip of output rows at a time, each strip about
/// this size but at least [`MIN_STRIP_COLUMNS`] wide (narrower products ran slower). Measured
/// with `cargo bench --bench conv_layers` (1 thread): the 7×7 stem took 3.2 ms instead of 4.2,
/// the 3×3 convolutions on 56×56 planes 2.1 ms instead of 2.9; strips of 256 KiB made the 3×3
/// ones on 7×7 and 14×14 planes up to twice as slow, hence whole matrices there.
const STRIP_BYTES: usize = 512 * 1024;
const MIN_STRIP_COLUMNS: usize = 256;

/// Output rows per im2col strip for a matrix of `depth` rows and `row_len` columns per output
/// row, out of `out_rows`: at least one, at most all.
fn strip_rows(depth: usize, row_len: usize, out_rows: usize) -> usize {
    let row_bytes = depth.saturating_mul(row_len).saturating_mul(std::mem::size_of::<f32>()).max(1);
    if row_bytes.saturating_mul(out_rows) <= WHOLE_MAX_BYTES {
        return out_rows.max(1);
    }
    (STRIP_BYTES / row_bytes).max(MIN_STRIP_COLUMNS.div_ceil(row_len.max(1))).clamp(1, out_rows.max(1))
}

/// Fills `columns` (`[C*taps, out_plane]`, row-major) from the `C` input planes of `x`: row
/// `(c, tap)` holds, for every output position, the input value under that tap of channel
/// `c`, or 0 where the tap falls in the padding.
pub(super) fn im2col<T: Copy + Default>(x: &[T], geo: &Geometry, columns: &mut [T]) {
    im2col_rows(x, geo, 0..geo.d.output * geo.h.output, columns);
}

/// [`im2col`] for the output rows `rows` only (an output row is one `(d, h)` position: `W`
/// output positions), into `columns` of `[C*taps, rows.len() * W]`: the part of the im2col
/// matrix that produces those rows of every output plane. Every element is written.
pub(super) fn im2col_rows<T: Copy + Default>(x: &[T], geo: &Geometry, rows: Range<usize>, columns: &mut [T]) {
    let w = geo.w;
    let width = rows.len() * w.output;
    if width == 0 {
        return;
    }
    let (in_plane, taps) = (geo.in_plane(), geo.taps());
    for (r, row) in columns.chunks_exact_mut(width).enumerate() {
        let (c, (a, i, j)) = (r / taps, geo.tap(r % taps));
        let plane = &x[c * in_plane..(c + 1) * in_plane];
        let (w_lo, w_hi) = w.valid_outputs(j);
        let (d_lo, d_hi) = geo.d.valid_outputs(a);
        let (h_lo, h_hi) = geo.h.valid_outputs(i);
        for (q, out_row) in rows.clone().zip(row.chunks_exact_mut(w.output)) {
            let (od, oh) = (q / geo.h.output, q % geo.h.output);
            if w_lo >= w_hi || !(d_lo..d_hi).contains(&od) || !(h_lo..h_hi).contains(&oh) {
                out_row.fill(T::default());
                continue;
            }
            // Zeros only where the tap falls in the padding; the copy writes the rest.
            out_row[..w_lo].fill(T::default());
            out_row[w_hi..].fill(T::default());
            let in_row = geo.d.coordinate(od, a) as usize * geo.h.input + geo.h.coordinate(oh, i) as usize;
            let in_start = w.coordinate(w_lo, j) as usize;
            let dst = &mut out_row[w_lo..w_hi];
            let src = &plane[in_row * w.input + in_start..(in_row + 1) * w.input];
            match w.stride {
                1 => dst.copy_from_slice(&src[..dst.len()]),
                // Every other value: pairs vectorize where `step_by` walked one value at a
                // time (half the time on 28- to 112-wide rows: the stem, the downsamplings).
                2 => {
                    let pairs = dst.len().min(src.len() / 2);
                    for (d, pair) in dst[..pairs].iter_mut().zip(src.chunks_exact(2)) {
                        *d = pair[0];
                    }
                    if let Some(last) = dst.get_mut(pairs) {
                        *last = src[2 * pairs];
                    }
                }
                stride => {
                    for (d, &v) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                        *d = v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Window;

    fn conv_op(kernel: &[usize], strides: &[usize], pads: &[usize], dilations: &[usize], group: usize) -> Conv {
        Conv {
            window: Window {
                kernel: kernel.to_vec(),
                strides: strides.to_vec(),
                pads: pads.to_vec(),
                dilations: dilations.to_vec(),
            },
            group,
        }
    }

    fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data)
    }

    fn iota(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    use crate::runtime::kernels::test_values::values as noise;

    #[test]
    fn a_group_of_pointwise_samples_gets_the_bits_of_each_alone() {
        // MobileNetV2's and ResNet-50's pointwise shapes on small planes (out, in, side),
        // with a bias and without.
        let shapes = [(160, 576, 3), (1280, 320, 3), (96, 384, 6), (576, 96, 6), (2048, 512, 7), (512, 2048, 7)];
        for (k, &(m, c, side)) in shapes.iter().enumerate() {
            let op = conv_op(&[1, 1], &[1, 1], &[0, 0, 0, 0], &[1, 1], 1);
            let w = t(&[m, c, 1, 1], noise(m * c, k as u32));
            let b = t(&[m], noise(m, 100 + k as u32));
            let xs: Vec<Tensor> = (0..3).map(|s| t(&[1, c, side, side], noise(c * side * side, 200 + s))).collect();
            for with_bias in [true, false] {
                let samples: Vec<Vec<&Tensor>> =
                    xs.iter().map(|x| if with_bias { vec![x, &w, &b] } else { vec![x, &w] }).collect();
                let together = conv_group(&op, &samples).expect("a grouped path").unwrap();
                for (inputs, got) in samples.iter().zip(together) {
                    let alone = conv(&op, inputs).unwrap();
                    let bits = |t: &Tensor| t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(got[0].shape, alone.shape);
                    assert!(bits(&got[0]) == bits(&alone), "{m}x{c} on {side}x{side}, bias {with_bias}");
                }
            }
        }
    }

    #[test]
    fn only_small_pointwise_planes_with_shared_weights_run_grouped() {
        let pointwise = conv_op(&[1, 1], &[1, 1], &[0, 0, 0, 0], &[1, 1], 1);
        let w = t(&[4, 2, 1, 1], noise(8, 1));
        let other_w = t(&[4, 2, 1, 1], noise(8, 1));
        let small = t(&[1, 2, 3, 3], noise(18, 2));
        let large = t(&[1, 2, 9, 9], noise(162, 3));
        assert!(conv_group(&pointwise, &[vec![&small, &w], vec![&small, &w]]).is_some());
        // Planes above the limit, weights that are not the same tensor, a 3x3 kernel.
        assert!(conv_group(&pointwise, &[vec![&large, &w], vec![&large, &w]]).is_none());
        assert!(conv_group(&pointwise, &[vec![&small, &w], vec![&small, &other_w]]).is_none());
        let w3 = t(&[4, 2, 3, 3], noise(72, 4));
        let three = conv_op(&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], 1);
        assert!(conv_group(&three, &[vec![&small, &w3], vec![&small, &w3]]).is_none());
    }

    #[test]
    fn conv_3x3_with_padding_and_bias() {
        // X = 0..9 as a 3x3 image, W = all ones 3x3, pad 1, bias 0.5: each output is the sum of
        // the 3x3 neighbourhood (zeros outside) plus 0.5.
        //   0 1 2      top-left: 0+1+3+4 = 8        top: 0+1+2+3+4+5 = 15      top-right: 1+2+4+5 = 12
        //   3 4 5      left: 0+1+3+4+6+7 = 21       centre: 36                 right: 1+2+4+5+7+8 = 27
        //   6 7 8      bottom-left: 3+4+6+7 = 20    bottom: 3+..+8 = 33        bottom-right: 4+5+7+8 = 24
        let x = t(&[1, 1, 3, 3], iota(9));
        let w = t(&[1, 1, 3, 3], vec![1.0; 9]);
        let b = t(&[1], vec![0.5]);
        let op = conv_op(&[3, 3], &[1, 1], &[1, 1, 1, 1], &[], 1);
        let y = conv(&op, &[&x, &w, &b]).unwrap();
        assert_eq!(y.shape, vec![1, 1, 3, 3]);
        let expected = [8.5, 15.5, 12.5, 21.5, 36.5, 27.5, 20.5, 33.5, 24.5];
        assert_eq!(y.as_f32().unwrap(), &expected);
    }

    #[test]
    fn conv_stride_2_two_channels_two_filters() {
        // X: channel 0 = 0..16 (4x4), channel 1 = all 1. W[0] = ones on channel 0 only (2x2);
        // W[1] = 1 on channel 0 top-left tap, -1 on every channel-1 tap. Stride 2, no pad.
        // Filter 0 windows of channel 0: (0+1+4+5)=10, (2+3+6+7)=18, (8+9+12+13)=42, (10+11+14+15)=50.
        // Filter 1: top-left value - 4: 0-4=-4, 2-4=-2, 8-4=4, 10-4=6.
        let mut xs = iota(16);
        xs.extend([1.0; 16]);
        let x = t(&[1, 2, 4, 4], xs);
        #[rustfmt::skip]
        let w = t(&[2, 2, 2, 2], vec![
            1.0, 1.0, 1.0, 1.0,   0.0, 0.0, 0.0, 0.0,
            1.0, 0.0, 0.0, 0.0,  -1.0, -1.0, -1.0, -1.0,
        ]);
        let op = conv_op(&[2, 2], &[2, 2], &[], &[], 1);
        let y = conv(&op, &[&x, &w]).unwrap();
        assert_eq!(y.shape, vec![1, 2, 2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[10.0, 18.0, 42.0, 50.0, -4.0, -2.0, 4.0, 6.0]);
    }

    #[test]
    fn conv_dilated_with_asymmetric_pads() {
        // 1-D: x = [1,2,3,4,5], kernel [1, 10] dilation 2, pads begin 0 end 2.
        // padded x = [1,2,3,4,5,0,0]; out length = (7 - 3) / 1 + 1 = 5; y[o] = x[o] + 10*x[o+2]
        // = [1+30, 2+40, 3+50, 4+0, 5+0] = [31, 42, 53, 4, 5]
        let x = t(&[1, 1, 5], vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let w = t(&[1, 1, 2], vec![1.0, 10.0]);
        let op = conv_op(&[2], &[], &[0, 2], &[2], 1);
        let y = conv(&op, &[&x, &w]).unwrap();
        assert_eq!(y.shape, vec![1, 1, 5]);
        assert_eq!(y.as_f32().unwrap(), &[31.0, 42.0, 53.0, 4.0, 5.0]);
    }

    #[test]
    fn conv_1d_strided_with_left_pad() {
        // x = [1,2,3,4], kernel [1,1,1], pad 1 each side, stride 2: padded [0,1,2,3,4,0]
        // out = (6 - 3) / 2 + 1 = 2: [0+1+2, 2+3+4] = [3, 9]
        let x = t(&[1, 1, 4], vec![1.0, 2.0, 3.0, 4.0]);
        let w = t(&[1, 1, 3], vec![1.0; 3]);
        let op = conv_op(&[3], &[2], &[1, 1], &[], 1);
        let y = conv(&op, &[&x, &w]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[3.0, 9.0]);
    }

    #[test]
    fn pointwise_conv_on_a_batch() {
        // 1x1 conv mixes channels per pixel: y0 = x0 + x1, y1 = 2*x0 - x1, plus bias [1, 0].
        // Image 0: x0 = [1,2], x1 = [3,4] -> y0 = [4,6]+1 = [5,7], y1 = [2-3, 4-4] = [-1, 0].
        // Image 1: x0 = [0,1], x1 = [1,0] -> y0 = [1,1]+1 = [2,2], y1 = [0-1, 2-0] = [-1, 2].
        let x = t(&[2, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 1.0, 0.0]);
        let w = t(&[2, 2, 1, 1], vec![1.0, 1.0, 2.0, -1.0]);
        let b = t(&[2], vec![1.0, 0.0]);
        let op = conv_op(&[1, 1], &[], &[], &[], 1);
        let y = conv(&op, &[&x, &w, &b]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[5.0, 7.0, -1.0, 0.0, 2.0, 2.0, -1.0, 2.0]);
    }

    #[test]
    fn grouped_conv_keeps_groups_apart() {
        // 4 input channels, 2 groups, 2 filters (one per group), 1x1 kernels of ones:
        // y0 = x0 + x1, y1 = x2 + x3. Pixel values: x_c = c + 1 -> y = [3, 7].
        let x = t(&[1, 4, 1, 1], vec![1.0, 2.0, 3.0, 4.0]);
        let w = t(&[2, 2, 1, 1], vec![1.0; 4]);
        let op = conv_op(&[1, 1], &[], &[], &[], 2);
        let y = conv(&op, &[&x, &w]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[3.0, 7.0]);
    }

    #[test]
    fn depthwise_with_multiplier_stride_and_padding() {
        // 2 channels, multiplier 2 (4 filters), 3x3 input, 2x2 kernels, stride 2, pad 1 all round.
        // Padded 5x5, out = (5 - 2) / 2 + 1 = 2 per axis. Output (oh, ow) covers padded rows
        // 2oh..2oh+1, i.e. input rows 2oh-1..2oh (same for columns).
        // Channel 0 = 0..9, channel 1 = 10 * (0..9).
        //   filter 0 (ch 0) = [[0,0],[0,1]] picks input (2oh, 2ow): [0, 2, 6, 8]
        //   filter 1 (ch 0) = [[1,0],[0,0]] picks input (2oh-1, 2ow-1): only (1,1) -> 4: [0,0,0,4]
        //   filter 2 (ch 1) = ones, bias 1: window sums of ch1:
        //     (0,0): x[0,0] = 0; (0,1): x[0,1]+x[0,2] = 10+20 = 30;
        //     (1,0): x[1,0]+x[2,0] = 30+60 = 90; (1,1): 40+50+70+80 = 240; +1 each
        //   filter 3 (ch 1) = [[0,0],[1,0]] picks (2oh, 2ow-1): [0, 10, 0, 70]
        let mut xs = iota(9);
        xs.extend(iota(9).iter().map(|v| v * 10.0));
        let x = t(&[1, 2, 3, 3], xs);
        #[rustfmt::skip]
        let w = t(&[4, 1, 2, 2], vec![
            0.0, 0.0, 0.0, 1.0,
            1.0, 0.0, 0.0, 0.0,
            1.0, 1.0, 1.0, 1.0,
            0.0, 0.0, 1.0, 0.0,
        ]);
        let b = t(&[4], vec![0.0, 0.0, 1.0, 0.0]);
        let op = conv_op(&[2, 2], &[2, 2], &[1, 1, 1, 1], &[], 2);
        let y = conv(&op, &[&x, &w, &b]).unwrap();
        assert_eq!(y.shape, vec![1, 4, 2, 2]);
        #[rustfmt::skip]
        let expected = [
            0.0, 2.0, 6.0, 8.0,
            0.0, 0.0, 0.0, 4.0,
            1.0, 31.0, 91.0, 241.0,
            0.0, 10.0, 0.0, 70.0,
        ];
        assert_eq!(y.as_f32().unwrap(), &expected);
    }

    #[test]
    fn depthwise_and_gemm_paths_agree_with_a_direct_sum() {
        // A 2-group conv with 2 channels per group (gemm path) whose second input channel of
        // each group has zero weights equals a depthwise conv on the first channels; both are
        // checked against the definition y[oc,oh,ow] = sum_ij w[i,j] * x[oh*s+i*d-p, ow*s+j*d-p].
        let (hgt, wid) = (5usize, 6usize);
        let xs: Vec<f32> = (0..4 * hgt * wid).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        let x = t(&[1, 4, hgt, wid], xs.clone());
        let kernel: Vec<f32> = vec![0.5, -1.0, 2.0, 0.25, 1.5, -0.75, 1.0, 0.0, 3.0];
        let mut w_full = Vec::new();
        for _ in 0..2 {
            w_full.extend(&kernel);
            w_full.extend([0.0; 9]);
        }
        let w = t(&[2, 2, 3, 3], w_full);
        let op = conv_op(&[3, 3], &[2, 1], &[1, 2, 0, 1], &[1, 2], 2);
        let y = conv(&op, &[&x, &w]).unwrap();
        // Direct definition for the group's first channel (channels 0 and 2).
        let (oh_n, ow_n) = ((hgt + 1 - 3) / 2 + 1, (wid + 3 - 5) + 1);
        assert_eq!(y.shape, vec![1, 2, oh_n, ow_n]);
        let mut expected = Vec::new();
        for c in [0usize, 2] {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let mut sum = 0.0f32;
                    for i in 0..3 {
                        for j in 0..3 {
                            let ih = (oh * 2 + i) as isize - 1;
                            let iw = (ow + j * 2) as isize - 2;
                            if (0..hgt as isize).contains(&ih) && (0..wid as isize).contains(&iw) {
                                sum += kernel[i * 3 + j] * xs[c * hgt * wid + ih as usize * wid + iw as usize];
                            }
                        }
                    }
                    expected.push(sum);
                }
            }
        }
        let got = y.as_f32().unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "got {got:?}\nexpected {expected:?}");
        }
        // Depthwise on channels 0 and 2 alone gives the same numbers.
        let dx: Vec<f32> = xs[..hgt * wid].iter().chain(&xs[2 * hgt * wid..3 * hgt * wid]).copied().collect();
        let dw = t(&[2, 1, 3, 3], kernel.iter().chain(&kernel).copied().collect());
        let yd = conv(&op, &[&t(&[1, 2, hgt, wid], dx), &dw]).unwrap();
        for (g, e) in yd.as_f32().unwrap().iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0));
        }
    }

    #[test]
    fn batched_grouped_padded_strided_conv_matches_the_definition() {
        // One im2col matrix serves every (image, group) in turn. Two images, two groups of
        // two channels, 3x3 taps with asymmetric pads and stride 2, against the definition.
        let (n, c, hgt, wid, m, group) = (2usize, 4usize, 5usize, 4usize, 4usize, 2usize);
        let xs: Vec<f32> = (0..n * c * hgt * wid).map(|i| ((i * 13 % 17) as f32) - 8.0).collect();
        let ws: Vec<f32> = (0..m * (c / group) * 9).map(|i| ((i * 5 % 7) as f32) * 0.5 - 1.5).collect();
        let op = conv_op(&[3, 3], &[2, 2], &[1, 1, 2, 1], &[1, 1], group);
        let y = conv(&op, &[&t(&[n, c, hgt, wid], xs.clone()), &t(&[m, c / group, 3, 3], ws.clone())]).unwrap();
        let (oh_n, ow_n) = ((hgt + 3 - 3) / 2 + 1, (wid + 2 - 3) / 2 + 1);
        assert_eq!(y.shape, vec![n, m, oh_n, ow_n]);
        let mut expected = Vec::new();
        for image in 0..n {
            for oc in 0..m {
                let g = oc / (m / group);
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        let mut sum = 0.0f32;
                        for ic in 0..c / group {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let (ih, iw) = ((oh * 2 + i) as isize - 1, (ow * 2 + j) as isize - 1);
                                    if (0..hgt as isize).contains(&ih) && (0..wid as isize).contains(&iw) {
                                        let channel = g * (c / group) + ic;
                                        let x = xs[((image * c + channel) * hgt + ih as usize) * wid + iw as usize];
                                        sum += ws[((oc * (c / group) + ic) * 3 + i) * 3 + j] * x;
                                    }
                                }
                            }
                        }
                        expected.push(sum);
                    }
                }
            }
        }
        for (k, (g, e)) in y.as_f32().unwrap().iter().zip(&expected).enumerate() {
            assert!((g - e).abs() <= 1e-4 * e.abs().max(1.0), "output {k}: {g} vs {e}");
        }
    }

    #[test]
    fn im2col_strips_side_by_side_are_the_whole_matrix() {
        // 3-D input, asymmetric pads, stride 2 in height: strips of 1, 2 and 3 output rows
        // (the last shorter) cover the whole matrix column for column.
        let window = conv_op(&[2, 3, 2], &[1, 2, 1], &[1, 0, 1, 0, 1, 0], &[1, 1, 2], 1).window;
        let (c, shape) = (3usize, [1usize, 3, 3, 6, 5]);
        let x = noise(shape.iter().product(), 7);
        let geo = Geometry::resolve(OP, &shape, &window, &[2, 3, 2], false).unwrap();
        let (depth, plane, row_len) = (c * geo.taps(), geo.out_plane(), geo.w.output);
        let out_rows = geo.d.output * geo.h.output;
        let mut whole = vec![f32::NAN; depth * plane];
        im2col(&x, &geo, &mut whole);
        for per_strip in 1..=3 {
            for first in (0..out_rows).step_by(per_strip) {
                let rows = first..(first + per_strip).min(out_rows);
                let width = rows.len() * row_len;
                let mut strip = vec![f32::NAN; depth * width];
                im2col_rows(&x, &geo, rows, &mut strip);
                for (r, row) in strip.chunks_exact(width).enumerate() {
                    let want = &whole[r * plane + first * row_len..][..width];
                    assert_eq!(row, want, "row {r}, strip at output row {first} of {per_strip}");
                }
            }
        }
    }

    #[test]
    fn a_convolution_in_strips_gets_the_bits_of_one_whole_product() {
        // ResNet-50's 3x3 convolution on 56x56 planes, a narrower cousin and its 7x7 stem
        // have im2col matrices beyond WHOLE_MAX_BYTES, so they run in strips; each output must
        // be the bits of the single product over the whole im2col matrix, bias first, as before
        // strips existed (the definition tests above check that product's values).
        for (k, &(c, side, m, kernel, stride, pad)) in
            [(64, 56, 64, 3, 1, 1), (32, 56, 8, 3, 1, 1), (3, 224, 64, 7, 2, 3)].iter().enumerate()
        {
            let op = conv_op(&[kernel, kernel], &[stride, stride], &[pad; 4], &[1, 1], 1);
            let x = t(&[1, c, side, side], noise(c * side * side, 10 + k as u32));
            let w = t(&[m, c, kernel, kernel], noise(m * c * kernel * kernel, 20 + k as u32));
            let b = t(&[m], noise(m, 30 + k as u32));
            let geo = Geometry::resolve(OP, &x.shape, &op.window, &[kernel, kernel], false).unwrap();
            let (depth, plane) = (c * geo.taps(), geo.out_plane());
            assert!(depth * plane * 4 > WHOLE_MAX_BYTES, "case {k} must run in strips");
            let mut columns = vec![0.0; depth * plane];
            im2col(x.as_f32().unwrap(), &geo, &mut columns);
            let mut want = with_bias(b.as_f32(), m * plane, plane);
            let w_values = w.as_f32().unwrap();
            sgemm(OP, (m, depth, plane), 1.0, w_values, (depth, 1), &columns, (plane, 1), 1.0, &mut want).unwrap();
            let got = conv(&op, &[&x, &w, &b]).unwrap();
            let same = got.as_f32().unwrap().iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
            assert!(same, "case {k}: strips changed the bits");
        }
    }

    #[test]
    fn strips_are_whole_matrices_up_to_the_cache_budget_and_never_empty() {
        assert_eq!(strip_rows(576, 7, 7), 7, "a matrix that fits is made whole");
        assert_eq!(strip_rows(576, 56, 56), 5, "512 KiB strips of 56-wide rows, 280 columns");
        assert_eq!(strip_rows(147, 112, 112), 7, "the stem: about 512 KiB per strip");
        assert_eq!(strip_rows(100_000, 100, 100), 3, "at least MIN_STRIP_COLUMNS wide");
        assert_eq!(strip_rows(1_000_000, 1000, 1), 1);
        assert_eq!(strip_rows(10, 0, 0), 1);
    }

    #[test]
    fn im2col_gathers_strided_columns_as_the_definition_says() {
        // Strides 2 (the paired copy) and 3 along the width, odd and even widths, pads on
        // either side, a dilated tap: each cell is the input under its tap, or 0 in the pad.
        for (stride, wid, pads) in [(2usize, 9usize, [0usize, 1]), (2, 8, [1, 0]), (2, 7, [1, 1]), (3, 10, [2, 1])] {
            let (c, hgt, kw) = (2usize, 3usize, 3usize);
            let x: Vec<f32> = (0..c * hgt * wid).map(|i| i as f32 + 1.0).collect();
            let window = conv_op(&[1, kw], &[1, stride], &[0, pads[0], 0, pads[1]], &[1, 2], 1).window;
            let geo = Geometry::resolve(OP, &[1, c, hgt, wid], &window, &[1, kw], false).unwrap();
            let (oh_n, ow_n) = (geo.h.output, geo.w.output);
            let mut columns = vec![f32::NAN; c * kw * oh_n * ow_n];
            im2col(&x, &geo, &mut columns);
            for (ch, j) in (0..c).flat_map(|ch| (0..kw).map(move |j| (ch, j))) {
                for (oh, ow) in (0..oh_n).flat_map(|oh| (0..ow_n).map(move |ow| (oh, ow))) {
                    let iw = (ow * stride + j * 2) as isize - pads[0] as isize;
                    let inside = (0..wid as isize).contains(&iw);
                    let want = if inside { x[(ch * hgt + oh) * wid + iw as usize] } else { 0.0 };
                    let got = columns[((ch * kw + j) * oh_n + oh) * ow_n + ow];
                    assert_eq!(got, want, "stride {stride} width {wid}: channel {ch} tap {j} output ({oh}, {ow})");
                }
            }
        }
    }

    #[test]
    fn im2col_writes_every_cell_whatever_the_buffer_held() {
        // Padding cells must come out 0 from a buffer that held other values: asymmetric pads
        // on both axes, stride 2, dilation 2 along the width.
        let (c, hgt, wid) = (2usize, 4usize, 5usize);
        let x: Vec<f32> = (0..c * hgt * wid).map(|i| i as f32 + 1.0).collect();
        let window = conv_op(&[2, 3], &[2, 1], &[1, 2, 1, 1], &[1, 2], 1).window;
        let geo = Geometry::resolve(OP, &[1, c, hgt, wid], &window, &[2, 3], false).unwrap();
        let (oh_n, ow_n) = (geo.h.output, geo.w.output);
        let mut columns = vec![f32::NAN; c * 6 * oh_n * ow_n];
        im2col(&x, &geo, &mut columns);
        for ch in 0..c {
            for (i, j) in (0..2).flat_map(|i| (0..3).map(move |j| (i, j))) {
                for (oh, ow) in (0..oh_n).flat_map(|oh| (0..ow_n).map(move |ow| (oh, ow))) {
                    let (ih, iw) = ((oh * 2 + i) as isize - 1, (ow + j * 2) as isize - 2);
                    let inside = (0..hgt as isize).contains(&ih) && (0..wid as isize).contains(&iw);
                    let want = if inside { x[(ch * hgt + ih as usize) * wid + iw as usize] } else { 0.0 };
                    let got = columns[((ch * 6 + i * 3 + j) * oh_n + oh) * ow_n + ow];
                    assert_eq!(got, want, "channel {ch} tap ({i}, {j}) output ({oh}, {ow})");
                }
            }
        }
    }

    #[test]
    fn conv_3d_on_both_paths() {
        // x[d,h,w] = 4d + 2h + w over 2x2x2; kernel over depth only, taps [1, 10]:
        // y[0,h,w] = (2h + w) + 10 * (4 + 2h + w) = 40 + 22h + 11w = [40, 51, 62, 73].
        let x = t(&[1, 1, 2, 2, 2], iota(8));
        let w = t(&[1, 1, 2, 1, 1], vec![1.0, 10.0]);
        let op = conv_op(&[2, 1, 1], &[], &[], &[], 1);
        let y = conv(&op, &[&x, &w]).unwrap(); // one input channel: the direct path
        assert_eq!(y.shape, vec![1, 1, 1, 2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[40.0, 51.0, 62.0, 73.0]);
        // A second input channel of ones with taps [0.5, 0.5] adds 1: the im2col path.
        let mut xs = iota(8);
        xs.extend([1.0; 8]);
        let x2 = t(&[1, 2, 2, 2, 2], xs);
        let w2 = t(&[1, 2, 2, 1, 1], vec![1.0, 10.0, 0.5, 0.5]);
        let y = conv(&op, &[&x2, &w2]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[41.0, 52.0, 63.0, 74.0]);
    }

    #[test]
    fn empty_inputs_leave_the_bias() {
        // W = 0 with pads 1 and 1: two outputs, both entirely in the padding -> bias 0.5.
        let x = t(&[1, 2, 0], vec![]);
        let w = t(&[1, 2, 1], vec![1.0, 1.0]);
        let b = t(&[1], vec![0.5]);
        let y = conv(&conv_op(&[1], &[], &[1, 1], &[], 1), &[&x, &w, &b]).unwrap();
        assert_eq!((y.shape.clone(), y.as_f32().unwrap().to_vec()), (vec![1, 1, 2], vec![0.5, 0.5]));
        // Zero input channels: nothing to sum, bias only.
        let x = t(&[1, 0, 3], vec![]);
        let w = t(&[2, 0, 1], vec![]);
        let b = t(&[2], vec![1.0, -1.0]);
        let y = conv(&conv_op(&[1], &[], &[], &[], 1), &[&x, &w, &b]).unwrap();
        assert_eq!(y.as_f32().unwrap(), &[1.0, 1.0, 1.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn mismatched_channels_and_bias_are_errors() {
        let x = t(&[1, 3, 2, 2], vec![0.0; 12]);
        let w = t(&[2, 2, 1, 1], vec![0.0; 4]);
        let op = conv_op(&[1, 1], &[], &[], &[], 1);
        assert!(conv(&op, &[&x, &w]).unwrap_err().message.contains("group"));
        let w = t(&[2, 3, 1, 1], vec![0.0; 6]);
        let b = t(&[3], vec![0.0; 3]);
        assert!(conv(&op, &[&x, &w, &b]).unwrap_err().message.contains("bias"));
    }
}
