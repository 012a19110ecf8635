//! RoiAlign (opset 10; opset 16 adds `coordinate_transformation_mode`): for each region of
//! interest `rois[r] = [x1, y1, x2, y2]` (scaled by `spatial_scale`) on the image
//! `X[batch_indices[r]]`, an `output_height × output_width` grid of bins, each the average
//! (`avg`) or maximum (`max`) of `sampling_ratio × sampling_ratio` bilinear samples (0:
//! adaptive, `ceil(roi size / output size)` per axis), giving `Y [R, C, oh, ow]`.
//!
//! `half_pixel` (the opset 16 default) shifts the scaled coordinates by -0.5;
//! `output_half_pixel` (opset 10's only behaviour) does not, and makes regions at least 1×1.
//! This follows onnxruntime's CPU kernel, the ONNX reference, step for step: a sample beyond
//! `[-1, size]` on either axis reads 0, one in `[-1, 0]` is clamped to 0, one past the last
//! cell reads the last cell. The `max` mode takes, per sample, the largest of the four
//! weighted corner terms `w_i · x_i` (not the interpolated value), as both do.
//!
//! The regions are run-time data like GridSample's grid: on quantized backends they are
//! activations (a rules override can give them 16 bits); the batch indices are indices.

use std::ops::{Add, Div, Mul, Sub};

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_float, attr_int, attr_string};
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, element_count, expect_inputs, input, tensor};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::ir("RoiAlign", import_roi_align, QuantDefault::CALIBRATED)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoiPooling {
    Average,
    Max,
}

/// Inputs `[X, rois, batch_indices]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoiAlign {
    pub mode: RoiPooling,
    pub output_height: usize,
    pub output_width: usize,
    /// Samples per bin along each axis; 0 is adaptive.
    pub sampling_ratio: usize,
    pub spatial_scale: f32,
    /// `half_pixel`: coordinates shift by -0.5; else `output_half_pixel`.
    pub half_pixel: bool,
}

into_op!(RoiAlign);

fn import_roi_align(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    let new = cx.opset >= 16;
    let known: &[&str] = if new {
        &["coordinate_transformation_mode", "mode", "output_height", "output_width", "sampling_ratio", "spatial_scale"]
    } else {
        &["mode", "output_height", "output_width", "sampling_ratio", "spatial_scale"]
    };
    let a = cx.attrs(known)?;
    let mode = match a.string("mode")?.as_deref().unwrap_or("avg") {
        "avg" => RoiPooling::Average,
        "max" => RoiPooling::Max,
        other => return Err(bad_attribute(format!("RoiAlign mode {other:?} is not avg or max"))),
    };
    // Opset 10 had no attribute and behaved as output_half_pixel; opset 16 defaults to
    // half_pixel.
    let half_pixel = match a.string("coordinate_transformation_mode")?.as_deref() {
        None => new,
        Some("half_pixel") => true,
        Some("output_half_pixel") => false,
        Some(other) => {
            return Err(bad_attribute(format!(
                "RoiAlign coordinate_transformation_mode {other:?} is not half_pixel or output_half_pixel"
            )));
        }
    };
    let positive = |name: &str| -> Result<usize, ImportError> {
        let v = a.int_or(name, 1)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v >= 1)
            .ok_or_else(|| bad_attribute(format!("{name} must be >= 1, got {v}")))
    };
    let (output_height, output_width) = (positive("output_height")?, positive("output_width")?);
    let ratio = a.int_or("sampling_ratio", 0)?;
    let sampling_ratio = usize::try_from(ratio)
        .map_err(|_| bad_attribute(format!("sampling_ratio must be >= 0 (0: adaptive), got {ratio}")))?;
    let spatial_scale = a.float_or("spatial_scale", 1.0)?;
    if !spatial_scale.is_finite() {
        return Err(bad_attribute(format!("spatial_scale must be finite, got {spatial_scale}")));
    }
    let op = RoiAlign { mode, output_height, output_width, sampling_ratio, spatial_scale, half_pixel };
    Lowered::ir(op, vec![0, 1, 2])
}

impl OpDef for RoiAlign {
    fn type_name(&self) -> &'static str {
        "RoiAlign"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x, rois, batch] = exactly("RoiAlign", inputs)?;
        if !matches!(x.dtype, DType::F32 | DType::F64 | DType::F16) || x.shape.len() != 4 {
            return Err(format!(
                "RoiAlign: X {:?} is {} {:?}, expected a float [N, C, H, W]",
                x.name,
                x.dtype.name(),
                x.shape
            ));
        }
        let &[count, 4] = &rois.shape[..] else {
            return Err(format!("RoiAlign: rois {:?} has shape {:?}, expected [num_rois, 4]", rois.name, rois.shape));
        };
        if rois.dtype != x.dtype {
            return Err(format!("RoiAlign: rois {:?} is {}, X is {}", rois.name, rois.dtype.name(), x.dtype.name()));
        }
        if batch.dtype != DType::I64 || batch.shape != [count] {
            return Err(format!(
                "RoiAlign: batch_indices {:?} is {} {:?}, expected int64 [{count}]",
                batch.name,
                batch.dtype.name(),
                batch.shape
            ));
        }
        Ok(vec![(x.dtype, vec![count, x.shape[1], self.output_height, self.output_width])])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![roi_align(self, inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 2 { InputRole::Index } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let ctm = if self.half_pixel { "half_pixel" } else { "output_half_pixel" };
        let mode = match self.mode {
            RoiPooling::Average => "avg",
            RoiPooling::Max => "max",
        };
        cx.emit(
            "RoiAlign",
            vec![
                attr_string("coordinate_transformation_mode", ctm),
                attr_string("mode", mode),
                attr_int("output_height", self.output_height as i64),
                attr_int("output_width", self.output_width as i64),
                attr_int("sampling_ratio", self.sampling_ratio as i64),
                attr_float("spatial_scale", self.spatial_scale),
            ],
        );
    }
}

/// The float type the kernel computes in (the input's own, as onnxruntime does).
trait Real:
    Copy + Default + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    const ONE: Self;
    fn of(v: f64) -> Self;
    fn of_count(v: usize) -> Self;
    fn ceil(self) -> Self;
    /// Truncation toward zero of a value `>= 0` (0 for NaN; saturating).
    fn index(self) -> usize;
    fn is_finite(self) -> bool;
}

macro_rules! real {
    ($($t:ty),*) => {$(
        impl Real for $t {
            const ONE: $t = 1.0;
            fn of(v: f64) -> $t {
                v as $t
            }
            fn of_count(v: usize) -> $t {
                v as $t
            }
            fn ceil(self) -> $t {
                <$t>::ceil(self)
            }
            fn index(self) -> usize {
                self as usize
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    )*};
}

real!(f32, f64);

/// One sample position along one axis: its two cells and their weights, or `None` when the
/// sample lies beyond `[-1, size]` (it reads 0).
#[derive(Clone, Copy)]
struct Tap<T> {
    low: usize,
    high: usize,
    /// Weight of `low` (`1 - frac`) and of `high` (`frac`).
    w_low: T,
    w_high: T,
}

/// The taps of `bins × grid` samples along an axis of `size` cells, bin-major: sample `i` of
/// bin `b` at `start + b · bin + (i + 0.5) · bin / grid`.
fn axis_taps<T: Real>(start: T, bin: T, bins: usize, grid: usize, size: usize) -> Vec<Option<Tap<T>>> {
    let last = size - 1;
    let (limit, grid_t) = (T::of_count(size), T::of_count(grid));
    let mut taps = Vec::with_capacity(bins * grid);
    for b in 0..bins {
        for i in 0..grid {
            let mut c = start + T::of_count(b) * bin + (T::of_count(i) + T::of(0.5)) * bin / grid_t;
            if c < T::of(-1.0) || c > limit {
                taps.push(None);
                continue;
            }
            if c <= T::default() {
                c = T::default();
            }
            let mut low = c.index();
            let high = if low >= last {
                low = last;
                c = T::of_count(last);
                last
            } else {
                low + 1
            };
            let frac = c - T::of_count(low);
            taps.push(Some(Tap { low, high, w_low: T::ONE - frac, w_high: frac }));
        }
    }
    taps
}

/// Sampling points per bin above which a region is refused (an absurd or non-finite region
/// with an adaptive grid), so a bad input cannot allocate or loop without bound.
const MAX_GRID: usize = 1 << 24;

const NAME: &str = "RoiAlign";

fn roi_align(op: &RoiAlign, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    expect_inputs(NAME, inputs, 3, 3)?;
    let (x, rois, batch) =
        (input(NAME, inputs, 0, "X")?, input(NAME, inputs, 1, "rois")?, input(NAME, inputs, 2, "batch_indices")?);
    let infos = [x, rois, batch].map(|t| TensorInfo { name: String::new(), dtype: t.dtype(), shape: t.shape.clone() });
    let shape = op.infer(&[&infos[0], &infos[1], &infos[2]]).map_err(|e| KernelError::new(NAME, e))?.remove(0).1;
    let Some(batch) = batch.to_i64_vec() else { return Err(KernelError::new(NAME, "batch_indices must be int64")) };
    let n = x.shape[0];
    let batch = batch
        .iter()
        .enumerate()
        .map(|(r, &b)| {
            usize::try_from(b).ok().filter(|&b| b < n).ok_or_else(|| {
                KernelError::new(NAME, format!("batch_indices[{r}] = {b} is outside the batch of {n} images"))
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let size = element_count(NAME, &shape)?;
    let data = match (&x.data, &rois.data) {
        (TensorData::F32(v), TensorData::F32(r)) => TensorData::F32(align(op, v, &x.shape, r, &batch, size)?),
        (TensorData::F64(v), TensorData::F64(r)) => TensorData::F64(align(op, v, &x.shape, r, &batch, size)?),
        (TensorData::F16(v), TensorData::F16(r)) => {
            // float16 computes in float32 (onnxruntime's CPU kernel has no float16).
            let (v, r): (Vec<f32>, Vec<f32>) =
                (v.iter().map(|h| h.to_f32()).collect(), r.iter().map(|h| h.to_f32()).collect());
            let y = align(op, &v, &x.shape, &r, &batch, size)?;
            TensorData::F16(y.into_iter().map(half::f16::from_f32).collect())
        }
        _ => return Err(KernelError::new(NAME, "X and rois must be float32, float64 or float16 alike")),
    };
    tensor(NAME, shape, data)
}

fn align<T: Real>(
    op: &RoiAlign,
    x: &[T],
    x_shape: &[usize],
    rois: &[T],
    batch: &[usize],
    size: usize,
) -> Result<Vec<T>, KernelError> {
    let mut y = vec![T::default(); size];
    let (channels, height, width) = (x_shape[1], x_shape[2], x_shape[3]);
    let (oh, ow) = (op.output_height, op.output_width);
    let plane = height * width;
    if size == 0 || plane == 0 {
        // No cell to sample: every bin reads zeros.
        return Ok(y);
    }
    let scale = T::of(f64::from(op.spatial_scale));
    let offset = T::of(if op.half_pixel { 0.5 } else { 0.0 });
    for (r, (roi, &b)) in rois.chunks_exact(4).zip(batch).enumerate() {
        let [x1, y1, x2, y2] = [roi[0], roi[1], roi[2], roi[3]].map(|v| v * scale - offset);
        let (mut roi_w, mut roi_h) = (x2 - x1, y2 - y1);
        if !op.half_pixel {
            // Malformed regions become 1×1.
            roi_w = if roi_w > T::ONE { roi_w } else { T::ONE };
            roi_h = if roi_h > T::ONE { roi_h } else { T::ONE };
        }
        let (bin_h, bin_w) = (roi_h / T::of_count(oh), roi_w / T::of_count(ow));
        let grid = |extent: T, bins: usize| -> Result<usize, KernelError> {
            if op.sampling_ratio > 0 {
                return Ok(op.sampling_ratio);
            }
            let g = (extent / T::of_count(bins)).ceil();
            // A negative extent (half_pixel regions are not forced to 1×1) samples nothing.
            if !g.is_finite() || g > T::of_count(MAX_GRID) {
                return Err(KernelError::new(NAME, format!("region {r} is too large (or not finite) to sample")));
            }
            Ok(if g > T::default() { g.index() } else { 0 })
        };
        let (grid_h, grid_w) = (grid(roi_h, oh)?, grid(roi_w, ow)?);
        if grid_h.saturating_mul(grid_w) > MAX_GRID {
            return Err(KernelError::new(NAME, format!("region {r} has {grid_h}x{grid_w} samples per bin")));
        }
        let count = T::of_count((grid_h * grid_w).max(1));
        let rows = axis_taps(y1, bin_h, oh, grid_h, height);
        let cols = axis_taps(x1, bin_w, ow, grid_w, width);
        let images = &x[b * channels * plane..(b + 1) * channels * plane];
        let outputs = &mut y[r * channels * oh * ow..(r + 1) * channels * oh * ow];
        // The taps are shared by every channel; each bin reads its own slice of them.
        for (image, out) in images.chunks_exact(plane).zip(outputs.chunks_exact_mut(oh * ow)) {
            for (ph, out_row) in out.chunks_exact_mut(ow).enumerate() {
                let bin_rows = &rows[ph * grid_h..(ph + 1) * grid_h];
                for (pw, o) in out_row.iter_mut().enumerate() {
                    let bin_cols = &cols[pw * grid_w..(pw + 1) * grid_w];
                    *o = match op.mode {
                        RoiPooling::Average => average(image, width, bin_rows, bin_cols) / count,
                        RoiPooling::Max => maximum(image, width, bin_rows, bin_cols),
                    };
                }
            }
        }
    }
    Ok(y)
}

/// The four weighted corner terms of the sample at (`row`, `col`).
#[inline]
fn corners<T: Real>(image: &[T], width: usize, row: &Tap<T>, col: &Tap<T>) -> [T; 4] {
    let (top, bottom) = (row.low * width, row.high * width);
    [
        row.w_low * col.w_low * image[top + col.low],
        row.w_low * col.w_high * image[top + col.high],
        row.w_high * col.w_low * image[bottom + col.low],
        row.w_high * col.w_high * image[bottom + col.high],
    ]
}

/// The sum of a bin's bilinear samples (a sample outside the image adds 0).
fn average<T: Real>(image: &[T], width: usize, rows: &[Option<Tap<T>>], cols: &[Option<Tap<T>>]) -> T {
    let mut sum = T::default();
    for row in rows.iter().flatten() {
        for col in cols.iter().flatten() {
            let [a, b, c, d] = corners(image, width, row, col);
            sum = sum + (a + b + c + d);
        }
    }
    sum
}

/// The largest weighted corner term over a bin's samples (a sample outside the image counts
/// as 0; a bin without samples is 0).
fn maximum<T: Real>(image: &[T], width: usize, rows: &[Option<Tap<T>>], cols: &[Option<Tap<T>>]) -> T {
    // `std::max(a, b)` of the C++ kernel: `a < b ? b : a`.
    let max = |a: T, b: T| if a < b { b } else { a };
    let mut best: Option<T> = None;
    for row in rows {
        for col in cols {
            let value = match (row, col) {
                (Some(row), Some(col)) => {
                    let [a, b, c, d] = corners(image, width, row, col);
                    max(max(max(a, b), c), d)
                }
                _ => T::default(),
            };
            best = Some(best.map_or(value, |m| max(m, value)));
        }
    }
    best.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(mode: RoiPooling, oh: usize, ow: usize, ratio: usize, scale: f32, half_pixel: bool) -> RoiAlign {
        RoiAlign { mode, output_height: oh, output_width: ow, sampling_ratio: ratio, spatial_scale: scale, half_pixel }
    }

    fn run(op: &RoiAlign, x: &Tensor, rois: Vec<f32>, batch: Vec<i64>) -> Result<Vec<f32>, KernelError> {
        let rois = Tensor::from_f32(vec![batch.len(), 4], rois);
        let batch = Tensor::from_i64(vec![batch.len()], batch);
        let y = Op::RoiAlign(op.clone()).run(&[x, &rois, &batch], &[])?.remove(0);
        Ok(y.as_f32().unwrap().to_vec())
    }

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn one_bin_on_a_2x2_image() {
        // X = [[1, 2], [3, 4]], region [0, 0, 1, 1], one bin, one sample per bin.
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        // output_half_pixel: the sample is at (0.5, 0.5): the mean 2.5.
        close(
            &run(&op(RoiPooling::Average, 1, 1, 1, 1.0, false), &x, vec![0.0, 0.0, 1.0, 1.0], vec![0]).unwrap(),
            &[2.5],
        );
        // half_pixel: the region shifts to [-0.5, 0.5], the sample to (0, 0): X[0][0] = 1.
        close(
            &run(&op(RoiPooling::Average, 1, 1, 1, 1.0, true), &x, vec![0.0, 0.0, 1.0, 1.0], vec![0]).unwrap(),
            &[1.0],
        );
        // max: the largest weighted corner, 0.25 * 4 = 1 (not the interpolated 2.5).
        close(&run(&op(RoiPooling::Max, 1, 1, 1, 1.0, false), &x, vec![0.0, 0.0, 1.0, 1.0], vec![0]).unwrap(), &[1.0]);
    }

    #[test]
    fn adaptive_sampling_scale_and_batch() {
        // Two images of 3x3; image 1 holds x = 3y + c (c the column), linear, so every
        // bilinear sample is exact. Region [0, 0, 4, 4] at scale 0.5 is [0, 0, 2, 2]:
        // adaptive grid ceil(2 / 1) = 2 per axis, samples at 0.5 and 1.5: mean 3 + 1 = 4.
        let mut data = vec![100.0; 9];
        data.extend((0..9).map(|v| v as f32));
        let x = Tensor::from_f32(vec![2, 1, 3, 3], data);
        let o = op(RoiPooling::Average, 1, 1, 0, 0.5, false);
        close(&run(&o, &x, vec![0.0, 0.0, 4.0, 4.0], vec![1]).unwrap(), &[4.0]);
        // A 2x1 output of the same region: bins of height 1, samples at rows 0.5 and 1.5,
        // columns 0.5 and 1.5 (grid 1 x 2): 3 * 0.5 + 1 = 2.5 and 3 * 1.5 + 1 = 5.5.
        let o = op(RoiPooling::Average, 2, 1, 0, 0.5, false);
        close(&run(&o, &x, vec![0.0, 0.0, 4.0, 4.0], vec![1]).unwrap(), &[2.5, 5.5]);
        // A region beyond [-1, size] reads zeros.
        let o = op(RoiPooling::Average, 1, 1, 2, 1.0, false);
        close(&run(&o, &x, vec![10.0, 10.0, 12.0, 12.0], vec![0]).unwrap(), &[0.0]);
    }

    /// X of shape [1, 2, 4, 5], the regions and the outputs below were computed with
    /// onnxruntime 1.22 (opset 16, output 2x3, adaptive sampling, spatial_scale 0.5).
    const X: [f32; 40] = [
        -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5,
        21.75, 22.5, 23.25, 24.0, 24.75, 18.0, 18.75, 19.5, 20.25, 21.0, 14.25, 15.0, 15.75, 16.5, 17.25, 10.5, 11.25,
        12.0, 12.75, 13.5,
    ];
    const ROIS: [f32; 12] = [0.5, 0.5, 7.1, 5.9, -2.0, -1.0, 1.0, 1.5, 3.0, 3.0, 3.0, 3.0];

    #[test]
    fn agrees_with_onnxruntime() {
        let x = Tensor::from_f32(vec![1, 2, 4, 5], X.to_vec());
        let cases: [(RoiPooling, bool, [f32; 36]); 3] = [
            (
                RoiPooling::Average,
                false,
                [
                    -0.2875, 0.2625, 0.8125, 3.0875, 3.6375, 4.1875, 18.8812, 19.7062, 20.5312, 13.8188, 14.6437,
                    15.4687, -3.0, -3.0, -2.875, -1.90625, -1.90625, -1.78125, 21.75, 21.75, 21.9375, 20.1094, 20.1094,
                    20.2969, 2.20833, 2.375, 2.54167, 3.45833, 3.625, 3.79167, 16.4375, 16.6875, 16.9375, 14.5625,
                    14.8125, 15.0625,
                ],
            ),
            (
                RoiPooling::Average,
                true,
                [
                    -1.7875, -1.2375, -0.6875, 1.5875, 2.1375, 2.6875, 20.3813, 21.2062, 22.0312, 15.3187, 16.1437,
                    16.9688, 0.0, -3.0, -3.0, 0.0, -3.0, -3.0, 0.0, 21.75, 21.75, 0.0, 21.75, 21.75, 0.0, 0.0, 0.0,
                    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                ],
            ),
            (
                RoiPooling::Max,
                false,
                [
                    0.607031, 0.649687, 0.666094, 2.83281, 2.77922, 2.66438, 12.791, 11.8645, 10.8274, 13.0078,
                    12.1816, 11.2148, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 21.75, 21.75, 16.3125, 12.2344, 12.2344, 9.17578,
                    1.5, 2.25, 1.5, 1.5, 2.25, 1.5, 7.875, 11.8125, 7.875, 7.875, 11.8125, 7.875,
                ],
            ),
        ];
        for (mode, half_pixel, want) in cases {
            let got = run(&op(mode, 2, 3, 0, 0.5, half_pixel), &x, ROIS.to_vec(), vec![0, 0, 0]).unwrap();
            close(&got, &want);
        }
    }

    #[test]
    fn bad_batch_indices_and_regions_are_errors() {
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let o = op(RoiPooling::Average, 1, 1, 0, 1.0, false);
        let err = run(&o, &x, vec![0.0, 0.0, 1.0, 1.0], vec![1]).unwrap_err();
        assert!(err.message.contains("batch_indices[0] = 1"), "{err}");
        assert!(run(&o, &x, vec![0.0, 0.0, f32::INFINITY, 1.0], vec![0]).is_err());
        // A NaN region reads NaN or zeros but never fails or panics with a fixed grid.
        let fixed = op(RoiPooling::Max, 2, 2, 2, 1.0, true);
        assert!(run(&fixed, &x, vec![f32::NAN, 0.0, 1.0, 1.0], vec![0]).is_ok());
        let info = |dtype, shape: &[usize]| TensorInfo { name: "t".into(), dtype, shape: shape.to_vec() };
        let (xi, ri, bi) = (info(DType::F32, &[1, 1, 2, 2]), info(DType::F32, &[3, 5]), info(DType::I64, &[3]));
        assert!(o.infer(&[&xi, &ri, &bi]).unwrap_err().contains("[num_rois, 4]"));
        let (ri, bi) = (info(DType::F32, &[3, 4]), info(DType::I32, &[3]));
        assert!(o.infer(&[&xi, &ri, &bi]).is_err());
    }
}
