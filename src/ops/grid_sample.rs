//! GridSample (opset 16: 4-D, modes `bilinear`/`nearest`/`bicubic`; opset 20 on: any rank,
//! modes `linear`/`nearest`/`cubic`): samples `X [N, C, d1..dr]` at the normalized positions
//! of `grid [N, D1..Dr, r]` (the last grid axis lists coordinates innermost axis first: x for
//! the width, then y, then z), giving `Y [N, C, D1..Dr]`.
//!
//! Per spatial axis of size `d`, a normalized `g` becomes `x = (g + 1) / 2 · (d - 1)` with
//! `align_corners`, else `((g + 1) · d - 1) / 2`. Outside the border (`[0, d - 1]` aligned,
//! `[-0.5, d - 0.5]` not) `border` clamps `x` to `[0, d - 1]` and `reflection` reflects it
//! back. Nearest rounds half to even; linear and cubic (Keys, a = -0.75) interpolate per axis,
//! and every tap outside the input reads 0 (`zeros`), the clamped cell (`border`) or the
//! reflected cell (`reflection`). This follows the ONNX reference implementation.
//!
//! AffineGrid (opset 20) makes such grids: `theta [N, 2, 3]` (2-D) or `[N, 3, 4]` (3-D) maps
//! the evenly spaced normalized positions of an `[N, C, (D,) H, W]` volume (`size`, known at
//! import) to `grid [N, (D,) H, W, r]`, coordinates innermost axis first. Along an axis of
//! size `d` the positions are `-1 + 2i / (d - 1)` with `align_corners` (the corner cells'
//! centres at ±1), else `-1 + (2i + 1) / d` (their outer edges at ±1). A size-1 axis with
//! `align_corners` has the position 0, as PyTorch's `affine_grid` (the op's model) gives; the
//! ONNX reference gives -1 and onnxruntime 1 there.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int, attr_string};
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::{exactly, require_float};
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::elementwise::{Real, real_map, unsupported};
use crate::runtime::kernels::{KernelError, element_count, expect_inputs, f32_input, input, tensor};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("GridSample", import_grid_sample, QuantDefault::CALIBRATED),
    OnnxOp::ir("AffineGrid", import_affine_grid, QuantDefault::CALIBRATED),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SampleMode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SamplePadding {
    Zeros,
    Border,
    Reflection,
}

/// Inputs `[X, grid]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GridSample {
    pub mode: SampleMode,
    pub padding: SamplePadding,
    pub align_corners: bool,
}

/// Input `[theta]`; `size` is the `size` input `[N, C, (D,) H, W]`, folded at import.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AffineGrid {
    pub size: Vec<usize>,
    pub align_corners: bool,
}

into_op!(GridSample, AffineGrid);

fn import_affine_grid(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["align_corners"])?;
    let listed = cx.constant_ints(1, "size")?.ok_or_else(|| bad_attribute("AffineGrid needs input #1 (size)"))?;
    if !matches!(listed.len(), 4 | 5) {
        return Err(bad_attribute(format!(
            "AffineGrid size {listed:?} must be [N, C, H, W] (2-D) or [N, C, D, H, W] (3-D)"
        )));
    }
    let size = listed
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| bad_attribute(format!("AffineGrid size {listed:?} has a negative entry")))?;
    Lowered::ir(AffineGrid { size, align_corners: a.flag("align_corners")? }, vec![0])
}

fn import_grid_sample(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["align_corners", "mode", "padding_mode"])?;
    let old = cx.opset < 20;
    let mode = match (a.string("mode")?.as_deref(), old) {
        (None, _) | (Some("bilinear"), true) | (Some("linear"), false) => SampleMode::Linear,
        (Some("nearest"), _) => SampleMode::Nearest,
        (Some("bicubic"), true) | (Some("cubic"), false) => SampleMode::Cubic,
        (Some(other), _) => {
            let known = if old { "bilinear, nearest, bicubic" } else { "linear, nearest, cubic" };
            return Err(bad_attribute(format!(
                "GridSample mode {other:?} is not one of {known} at opset {}",
                cx.opset
            )));
        }
    };
    let padding = match a.string("padding_mode")?.as_deref().unwrap_or("zeros") {
        "zeros" => SamplePadding::Zeros,
        "border" => SamplePadding::Border,
        "reflection" => SamplePadding::Reflection,
        other => {
            return Err(bad_attribute(format!("GridSample padding_mode {other:?} is not zeros, border or reflection")));
        }
    };
    let rank = cx.input(0, "X")?.shape.len();
    if old && rank != 4 {
        return Err(bad_attribute(format!(
            "GridSample before opset 20 takes a 4-D input, got rank {rank} (opset {})",
            cx.opset
        )));
    }
    Lowered::ir(GridSample { mode, padding, align_corners: a.flag("align_corners")? }, vec![0, 1])
}

impl OpDef for GridSample {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "GridSample"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x, grid] = exactly("GridSample", inputs)?;
        require_float("GridSample", x)?;
        require_float("GridSample", grid)?;
        let r = x.shape.len().saturating_sub(2);
        if r == 0 {
            return Err(format!("GridSample: X {:?} has shape {:?}, expected [N, C, spatial...]", x.name, x.shape));
        }
        if grid.dtype != x.dtype || grid.shape.len() != r + 2 || grid.shape[0] != x.shape[0] || grid.shape[r + 1] != r {
            return Err(format!(
                "GridSample: grid {:?} is {} {:?}, expected {} [{}, D1..D{r}, {r}] for X of shape {:?}",
                grid.name,
                grid.dtype.name(),
                grid.shape,
                x.dtype.name(),
                x.shape[0],
                x.shape
            ));
        }
        let mut shape = x.shape[..2].to_vec();
        shape.extend_from_slice(&grid.shape[1..=r]);
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![grid_sample(self, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        // The opset 20 spelling (the exported model's opset is newer).
        let mode = match self.mode {
            SampleMode::Nearest => "nearest",
            SampleMode::Linear => "linear",
            SampleMode::Cubic => "cubic",
        };
        let padding = match self.padding {
            SamplePadding::Zeros => "zeros",
            SamplePadding::Border => "border",
            SamplePadding::Reflection => "reflection",
        };
        cx.emit(
            "GridSample",
            vec![
                attr_int("align_corners", i64::from(self.align_corners)),
                attr_string("mode", mode),
                attr_string("padding_mode", padding),
            ],
        );
    }
}

impl OpDef for AffineGrid {
    fn type_name(&self) -> &'static str {
        "AffineGrid"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [theta] = exactly("AffineGrid", inputs)?;
        if !theta.dtype.is_compute_float() {
            return Err(format!("AffineGrid: theta {:?} is {}, expected a float type", theta.name, theta.dtype.name()));
        }
        let r = self.size.len().saturating_sub(2);
        if !matches!(r, 2 | 3) || theta.shape != [self.size[0], r, r + 1] {
            return Err(format!(
                "AffineGrid: theta {:?} has shape {:?}, but size {:?} needs [{}, {r}, {}]",
                theta.name,
                theta.shape,
                self.size,
                self.size.first().copied().unwrap_or(0),
                r + 1
            ));
        }
        let mut shape = vec![self.size[0]];
        shape.extend_from_slice(&self.size[2..]);
        shape.push(r);
        Ok(vec![(theta.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const NAME: &str = "AffineGrid";
        expect_inputs(NAME, inputs, 1, 1)?;
        let theta = inputs[0];
        let info = TensorInfo { name: String::new(), dtype: theta.dtype(), shape: theta.shape.clone() };
        let shape = self.infer(&[&info]).map_err(|e| KernelError::new(NAME, e))?.remove(0).1;
        element_count(NAME, &shape)?;
        let data = real_map!(&theta.data, v => affine_grid(v, &self.size, self.align_corners), {
            return Err(unsupported(NAME, &theta.data));
        });
        Ok(vec![tensor(NAME, shape, data)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let size: Vec<i64> = self.size.iter().map(|&d| d as i64).collect();
        let size = cx.int64s("size", &size);
        cx.emit_with("AffineGrid", vec![size], vec![attr_int("align_corners", i64::from(self.align_corners))]);
    }
}

/// The normalized positions along an axis of `d` cells (module docs).
fn positions(d: usize, align_corners: bool) -> Vec<f64> {
    (0..d)
        .map(|i| match (align_corners, d) {
            (true, 1) => 0.0,
            (true, _) => -1.0 + 2.0 * i as f64 / (d - 1) as f64,
            (false, _) => -1.0 + (2 * i + 1) as f64 / d as f64,
        })
        .collect()
}

/// The grid of every theta (`size` checked by inference): per output cell, `theta · [x, y,
/// (z,) 1]` in f64, one row of theta per coordinate. The cells are walked axis by axis, so the
/// inner loop is the affine map alone.
fn affine_grid<T: Real>(theta: &[T], size: &[usize], align_corners: bool) -> Vec<T> {
    let dims = &size[2..];
    let r = dims.len();
    let cells: usize = dims.iter().product();
    // Coordinates innermost axis first: x along W, y along H, z along D.
    let axes: Vec<Vec<f64>> = dims.iter().rev().map(|&d| positions(d, align_corners)).collect();
    let mut out = Vec::with_capacity(size[0] * cells * r);
    let mut point = vec![0.0f64; r];
    for t in theta.chunks_exact(r * (r + 1)) {
        let t: Vec<f64> = t.iter().map(|v| v.to_f64()).collect();
        for cell in 0..cells {
            // The cell's index along each axis, innermost (W) first.
            let mut rest = cell;
            for (k, axis) in axes.iter().enumerate() {
                point[k] = axis[rest % axis.len()];
                rest /= axis.len();
            }
            for row in t.chunks_exact(r + 1) {
                let value = row[..r].iter().zip(&point).map(|(a, b)| a * b).sum::<f64>() + row[r];
                out.push(T::from_f64(value));
            }
        }
    }
    out
}

/// Reflects `x` into `[lo, hi]` (the reference's `_gs_reflect`).
fn reflect(x: f32, lo: f32, hi: f32) -> f32 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / range).trunc();
        let r = dx - n * range;
        if n % 2.0 == 0.0 { lo + r } else { hi - r }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / range).trunc();
        let r = dx - n * range;
        if n % 2.0 == 0.0 { hi - r } else { lo + r }
    } else {
        x
    }
}

/// Keys' cubic convolution weights (a = -0.75) of the taps at -1, 0, 1, 2 for fraction `t`.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// One spatial axis: its size and border, and how it maps a normalized coordinate to taps.
struct Axis {
    size: usize,
    lo: f32,
    hi: f32,
}

impl GridSample {
    fn axis(&self, size: usize) -> Axis {
        let (lo, hi) = if self.align_corners { (0.0, size as f32 - 1.0) } else { (-0.5, size as f32 - 0.5) };
        Axis { size, lo, hi }
    }

    /// The cell an integer tap position reads, or `None` for a zero (zeros padding).
    fn cell(&self, axis: &Axis, i: i64) -> Option<usize> {
        let last = axis.size as i64 - 1;
        match self.padding {
            SamplePadding::Zeros => (0..=last).contains(&i).then_some(i as usize),
            SamplePadding::Border => Some(i.clamp(0, last) as usize),
            // `reflect` of an integer against these borders lands on an integer cell.
            SamplePadding::Reflection => Some((reflect(i as f32, axis.lo, axis.hi) as i64).clamp(0, last) as usize),
        }
    }

    /// The (cell, weight) taps of normalized coordinate `g` on `axis`, appended to `taps`.
    fn taps(&self, axis: &Axis, g: f32, taps: &mut Vec<(usize, f32)>) {
        let size = axis.size as f32;
        let mut x = if self.align_corners { (g + 1.0) / 2.0 * (size - 1.0) } else { ((g + 1.0) * size - 1.0) / 2.0 };
        if self.mode == SampleMode::Nearest {
            x = x.round_ties_even();
        }
        if x < axis.lo || x > axis.hi {
            match self.padding {
                SamplePadding::Border => x = x.clamp(0.0, size - 1.0),
                SamplePadding::Reflection => x = reflect(x, axis.lo, axis.hi),
                SamplePadding::Zeros => {}
            }
        }
        if !x.is_finite() {
            // A NaN (or infinite) grid value reads nothing: the output is 0.
            return;
        }
        let x0 = x.floor();
        let t = x - x0;
        let x0 = x0 as i64;
        let mut push = |i: i64, w: f32| {
            if let Some(c) = self.cell(axis, i) {
                taps.push((c, w));
            }
        };
        match self.mode {
            SampleMode::Nearest => push(x.trunc() as i64, 1.0),
            SampleMode::Linear => {
                push(x0, 1.0 - t);
                push(x0 + 1, t);
            }
            SampleMode::Cubic => {
                for (k, w) in cubic_weights(t).into_iter().enumerate() {
                    push(x0 - 1 + k as i64, w);
                }
            }
        }
    }
}

fn grid_sample(op: &GridSample, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const NAME: &str = "GridSample";
    expect_inputs(NAME, inputs, 2, 2)?;
    let (x_t, grid_t) = (input(NAME, inputs, 0, "X")?, input(NAME, inputs, 1, "grid")?);
    let (x, grid) = (f32_input(NAME, inputs, 0, "X")?, f32_input(NAME, inputs, 1, "grid")?);
    let infos = [x_t, grid_t].map(|t| TensorInfo { name: String::new(), dtype: DType::F32, shape: t.shape.clone() });
    let shape = op.infer(&[&infos[0], &infos[1]]).map_err(|e| KernelError::new(NAME, e))?.remove(0).1;
    let mut y = vec![0.0f32; element_count(NAME, &shape)?];
    let (n, c) = (x_t.shape[0], x_t.shape[1]);
    let dims = &x_t.shape[2..];
    let r = dims.len();
    let in_plane: usize = dims.iter().product();
    let out_plane: usize = shape[2..].iter().product();
    if y.is_empty() || in_plane == 0 {
        return tensor(NAME, shape, TensorData::F32(y));
    }
    let axes: Vec<Axis> = dims.iter().map(|&d| op.axis(d)).collect();
    let mut strides = vec![1usize; r];
    for d in (0..r.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * dims[d + 1];
    }
    let (mut taps, mut axis_taps) = (Vec::new(), Vec::new());
    for b in 0..n {
        let x_batch = &x[b * c * in_plane..(b + 1) * c * in_plane];
        for loc in 0..out_plane {
            let g = &grid[(b * out_plane + loc) * r..(b * out_plane + loc + 1) * r];
            // The taps of the location: the product of every axis' taps (grid innermost first).
            taps.clear();
            taps.push((0usize, 1.0f32));
            for d in 0..r {
                axis_taps.clear();
                op.taps(&axes[d], g[r - 1 - d], &mut axis_taps);
                let previous = std::mem::take(&mut taps);
                for &(offset, weight) in &previous {
                    for &(cell, w) in &axis_taps {
                        taps.push((offset + cell * strides[d], weight * w));
                    }
                }
            }
            for ch in 0..c {
                let plane = &x_batch[ch * in_plane..(ch + 1) * in_plane];
                y[(b * c + ch) * out_plane + loc] = taps.iter().map(|&(i, w)| w * plane[i]).sum();
            }
        }
    }
    tensor(NAME, shape, TensorData::F32(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: SampleMode, padding: SamplePadding, align_corners: bool, x: &Tensor, grid: &Tensor) -> Vec<f32> {
        let op = GridSample { mode, padding, align_corners };
        op.run(&[x, grid], &[]).unwrap().remove(0).as_f32().unwrap().to_vec()
    }

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn bilinear_on_a_2x2_image() {
        // X = [[1, 2], [3, 4]]. Aligned corners: g = -1 -> 0, 1 -> 1, 0 -> 0.5.
        //   (x=0, y=0) = 1; (x=0.5, y=0.5) = mean = 2.5; (x=1, y=0) = 2; (x=0, y=1) = 3.
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let grid = Tensor::from_f32(vec![1, 1, 4, 2], vec![-1.0, -1.0, 0.0, 0.0, 1.0, -1.0, -1.0, 1.0]);
        close(&run(SampleMode::Linear, SamplePadding::Zeros, true, &x, &grid), &[1.0, 2.5, 2.0, 3.0]);
        // Unaligned: x = ((g + 1) * 2 - 1) / 2, so g = -1 -> -0.5: half of the taps are in the
        // zero padding: (x=-0.5, y=-0.5) = 1/4 of X[0][0] = 0.25; g = 0 -> 0.5 (centre) 2.5;
        // (x=1.5, y=-0.5): X[0][1] / 4 = 0.5; (x=-0.5, y=1.5): X[1][0] / 4 = 0.75.
        close(&run(SampleMode::Linear, SamplePadding::Zeros, false, &x, &grid), &[0.25, 2.5, 0.5, 0.75]);
        // Border padding: every tap outside reads the nearest edge cell, so the corners.
        close(&run(SampleMode::Linear, SamplePadding::Border, false, &x, &grid), &[1.0, 2.5, 2.0, 3.0]);
    }

    #[test]
    fn nearest_rounds_half_to_even_and_reflects() {
        // 1-D-like image X = [10, 20, 30, 40] (1x4). Unaligned: x = ((g + 1) * 4 - 1) / 2.
        // g = -0.75 -> 0 ; g = -0.25 -> 1 ; g = 0 -> 1.5 -> 2 (half to even) ; g = 0.5 -> 2.5 -> 2.
        let x = Tensor::from_f32(vec![1, 1, 1, 4], vec![10.0, 20.0, 30.0, 40.0]);
        let grid = Tensor::from_f32(vec![1, 1, 4, 2], vec![-0.75, 0.0, -0.25, 0.0, 0.0, 0.0, 0.5, 0.0]);
        close(&run(SampleMode::Nearest, SamplePadding::Zeros, false, &x, &grid), &[10.0, 20.0, 30.0, 30.0]);
        // Reflection: g = 1.5 -> x = 4.5 -> rounds to 4, beyond hi = 3.5 by 0.5 -> 3;
        // g = -1.5 -> x = -1.5 -> -2, below lo = -0.5 by 1.5 -> -0.5 + 1.5 = 1 (n = 0).
        let grid = Tensor::from_f32(vec![1, 1, 2, 2], vec![1.5, 0.0, -1.5, 0.0]);
        close(&run(SampleMode::Nearest, SamplePadding::Reflection, false, &x, &grid), &[40.0, 20.0]);
        // Zeros: both outside.
        close(&run(SampleMode::Nearest, SamplePadding::Zeros, false, &x, &grid), &[0.0, 0.0]);
    }

    #[test]
    fn cubic_on_a_line() {
        // X = [0, 1, 2, 3, 4, 5] (1x6), aligned corners: g = -0.1 -> x = 0.9 / 2 * 5 = 2.25,
        // taps 1..4 with t = 0.25. Keys (a = -0.75): near(s) = (1.25 s - 2.25) s^2 + 1,
        // far(s) = ((-0.75 s + 3.75) s - 6) s + 3: far(1.25) = -0.10546875,
        // near(0.25) = 0.87890625, near(0.75) = 0.26171875, far(1.75) = -0.03515625; the value
        // is 1·w0 + 2·w1 + 3·w2 + 4·w3 = 2.296875 (a = -0.75 does not reproduce lines exactly).
        let x = Tensor::from_f32(vec![1, 1, 1, 6], (0..6).map(|v| v as f32).collect());
        let grid = Tensor::from_f32(vec![1, 1, 1, 2], vec![-0.1, 0.0]);
        close(&run(SampleMode::Cubic, SamplePadding::Border, true, &x, &grid), &[2.296875]);
        // The weights at t = 0.5 by the formula: far(1.5) = -0.09375, near(0.5) = 0.59375.
        close(&cubic_weights(0.5), &[-0.09375, 0.59375, 0.59375, -0.09375]);
    }

    #[test]
    fn volumetric_linear_takes_the_z_coordinate_last() {
        // X [1,1,2,1,1] = depth values [1, 3]; grid (x, y, z) = (0, 0, 0) aligned: depth 0.5
        // -> 2; (0, 0, 1) -> depth 1 -> 3.
        let x = Tensor::from_f32(vec![1, 1, 2, 1, 1], vec![1.0, 3.0]);
        let grid = Tensor::from_f32(vec![1, 1, 1, 2, 3], vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        close(&run(SampleMode::Linear, SamplePadding::Zeros, true, &x, &grid), &[2.0, 3.0]);
    }

    fn grid(size: &[usize], align_corners: bool, theta: Tensor) -> Tensor {
        let op = AffineGrid { size: size.to_vec(), align_corners };
        Op::AffineGrid(op).run(&[&theta], &[]).unwrap().remove(0)
    }

    #[test]
    fn affine_grid_2d_maps_the_cell_positions() {
        // W 3, H 2 not aligned: x = -1 + (2i + 1)/3 = [-2/3, 0, 2/3], y = [-1/2, 1/2]; the
        // identity keeps them, (x, y) per cell, rows of H.
        let identity = Tensor::from_f32(vec![1, 2, 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let g = grid(&[1, 1, 2, 3], false, identity);
        assert_eq!(g.shape, [1, 2, 3, 2]);
        let (a, b) = (2.0 / 3.0, 0.5);
        close(g.as_f32().unwrap(), &[-a, -b, 0.0, -b, a, -b, -a, b, 0.0, b, a, b]);
        // Aligned: x = [-1, 0, 1], y = [-1, 1]; theta [[2, 0, 0.5], [0, -1, 0]] gives
        // x' = 2x + 0.5 = [-1.5, 0.5, 2.5] and y' = -y = [1, -1].
        let theta = Tensor::from_f32(vec![1, 2, 3], vec![2.0, 0.0, 0.5, 0.0, -1.0, 0.0]);
        let g = grid(&[1, 1, 2, 3], true, theta);
        close(g.as_f32().unwrap(), &[-1.5, 1.0, 0.5, 1.0, 2.5, 1.0, -1.5, -1.0, 0.5, -1.0, 2.5, -1.0]);
    }

    #[test]
    fn affine_grid_3d_takes_z_along_the_depth_and_size_1_aligned_is_the_centre() {
        // D 2, H 1, W 1, not aligned: z = [-0.5, 0.5], y = x = 0; theta = identity plus the
        // translation (0.1, 0.2, 0.3): (0.1, 0.2, -0.2) and (0.1, 0.2, 0.8). In float64.
        let theta = [1.0, 0.0, 0.0, 0.1, 0.0, 1.0, 0.0, 0.2, 0.0, 0.0, 1.0, 0.3];
        let theta = Tensor::new(vec![1, 3, 4], TensorData::F64(theta.to_vec())).unwrap();
        let g = grid(&[1, 4, 2, 1, 1], false, theta.clone());
        assert_eq!(g.shape, [1, 2, 1, 1, 3]);
        let want = [0.1, 0.2, -0.2, 0.1, 0.2, 0.8];
        for (got, want) in g.data.to_f64_vec().iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        // Aligned, a size-1 axis sits at 0 (PyTorch's affine_grid): z = [-1, 1].
        let g = grid(&[1, 4, 2, 1, 1], true, theta);
        let want = [0.1, 0.2, -0.7, 0.1, 0.2, 1.3];
        for (got, want) in g.data.to_f64_vec().iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn affine_grid_checks_theta_against_size() {
        let theta = TensorInfo { name: "theta".into(), dtype: DType::F32, shape: vec![2, 2, 3] };
        let op = Op::AffineGrid(AffineGrid { size: vec![1, 1, 4, 4], align_corners: false });
        let err = op.infer(&[&theta]).unwrap_err();
        assert!(err.contains("needs [1, 2, 3]"), "{err}");
        let op = Op::AffineGrid(AffineGrid { size: vec![2, 1, 4, 4, 4], align_corners: false });
        assert!(op.infer(&[&theta]).is_err());
    }
}
