//! LpPool: `y = (Σ |x|^p)^(1/p)` over a sliding window (opset 2 on: `p` an int, default 2;
//! opset 18: `ceil_mode` and `dilations`). Padded cells are zeros: they add nothing to the sum.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int};
use super::import::{Lowered, NodeCx, positive_list};
use super::window::{Window, resolve_window};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::{exactly, require_float};
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, element_count, expect_inputs, f32_input, input, tensor};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::ir("LpPool", import_lp_pool, QuantDefault::CALIBRATED)];

/// LpPool over `window`, of order `p`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LpPool {
    pub window: Window,
    pub p: u32,
    pub ceil_mode: bool,
}

impl From<LpPool> for Op {
    fn from(op: LpPool) -> Op {
        Op::LpPool(op)
    }
}

fn import_lp_pool(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let known: &[&str] = if cx.opset < 18 {
        &["auto_pad", "kernel_shape", "p", "pads", "strides"]
    } else {
        &["auto_pad", "ceil_mode", "dilations", "kernel_shape", "p", "pads", "strides"]
    };
    let a = cx.attrs(known)?;
    let x = cx.input(0, "X")?;
    let kernel = a.ints("kernel_shape")?.ok_or_else(|| bad_attribute("attribute \"kernel_shape\" is required"))?;
    let kernel = positive_list(Some(kernel.clone()), kernel.len(), "kernel_shape")?;
    let window = resolve_window(&a, kernel, x.shape.get(2..).unwrap_or_default())?;
    let p = a.int_or("p", 2)?;
    let p =
        u32::try_from(p).ok().filter(|&p| p >= 1).ok_or_else(|| bad_attribute(format!("p must be >= 1, got {p}")))?;
    Lowered::ir(LpPool { window, p, ceil_mode: a.flag("ceil_mode")? }, vec![0])
}

impl OpDef for LpPool {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "LpPool"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("LpPool", inputs)?;
        require_float("LpPool", x)?;
        if x.shape.len() < 3 {
            return Err(format!("LpPool: input {:?} has shape {:?}, expected [N, C, spatial...]", x.name, x.shape));
        }
        self.window.check("LpPool", x.shape.len() - 2)?;
        let mut shape = x.shape[..2].to_vec();
        shape.extend(self.window.output("LpPool", &x.shape[2..], self.ceil_mode)?);
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![lp_pool(self, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = self.window.attrs();
        attrs.push(attr_int("ceil_mode", i64::from(self.ceil_mode)));
        attrs.push(attr_int("p", i64::from(self.p)));
        cx.emit("LpPool", attrs);
    }
}

/// For every output position of one plane, the plane offsets of the in-bounds input cells
/// of its window (shared by all `N × C` planes).
fn window_offsets(window: &Window, spatial_in: &[usize], spatial_out: &[usize]) -> Vec<Vec<usize>> {
    let n = spatial_in.len();
    // Per axis and output coordinate: the in-bounds input coordinates of the window.
    let per_axis: Vec<Vec<Vec<usize>>> = (0..n)
        .map(|d| {
            (0..spatial_out[d])
                .map(|o| {
                    (0..window.kernel[d])
                        .filter_map(|k| {
                            let c = (o * window.strides[d] + k * window.dilations[d]) as i64 - window.pads[d] as i64;
                            (c >= 0 && (c as usize) < spatial_in[d]).then_some(c as usize)
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let out_count: usize = spatial_out.iter().product();
    let mut result = Vec::with_capacity(out_count);
    let mut index = vec![0usize; n];
    for _ in 0..out_count {
        // Cartesian product of the axes' coordinate lists, as flat offsets.
        let mut offsets = vec![0usize];
        for d in 0..n {
            let coords = &per_axis[d][index[d]];
            offsets = offsets.iter().flat_map(|&base| coords.iter().map(move |&c| base * spatial_in[d] + c)).collect();
        }
        result.push(offsets);
        for d in (0..n).rev() {
            index[d] += 1;
            if index[d] < spatial_out[d] {
                break;
            }
            index[d] = 0;
        }
    }
    result
}

fn lp_pool(op: &LpPool, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const NAME: &str = "LpPool";
    expect_inputs(NAME, inputs, 1, 1)?;
    let x_t = input(NAME, inputs, 0, "X")?;
    let x = f32_input(NAME, inputs, 0, "X")?;
    let info = TensorInfo { name: "X".into(), dtype: DType::F32, shape: x_t.shape.clone() };
    let shape = op.infer(&[&info]).map_err(|e| KernelError::new(NAME, e))?.remove(0).1;
    let mut y = vec![0.0f32; element_count(NAME, &shape)?];
    let in_plane: usize = x_t.shape[2..].iter().product();
    let out_plane: usize = shape[2..].iter().product();
    if y.is_empty() || in_plane == 0 {
        return tensor(NAME, shape, TensorData::F32(y));
    }
    let offsets = window_offsets(&op.window, &x_t.shape[2..], &shape[2..]);
    let planes = x.chunks_exact(in_plane).zip(y.chunks_exact_mut(out_plane));
    match op.p {
        1 => planes.for_each(|(xp, yp)| reduce(xp, yp, &offsets, f32::abs, |s| s)),
        2 => planes.for_each(|(xp, yp)| reduce(xp, yp, &offsets, |v| v * v, f32::sqrt)),
        p => {
            let (pf, inv) = (p as f32, 1.0 / p as f32);
            planes.for_each(|(xp, yp)| reduce(xp, yp, &offsets, |v| v.abs().powf(pf), |s| s.powf(inv)))
        }
    }
    tensor(NAME, shape, TensorData::F32(y))
}

/// One plane: `y[o] = root(Σ power(x[i]))` over the window offsets of `o`. Monomorphized per
/// `p` class, so the inner loop has no dispatch.
#[inline]
fn reduce(x: &[f32], y: &mut [f32], offsets: &[Vec<usize>], power: impl Fn(f32) -> f32, root: impl Fn(f32) -> f32) {
    for (out, window) in y.iter_mut().zip(offsets) {
        let sum: f32 = window.iter().map(|&i| power(x[i])).sum();
        *out = root(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(kernel: &[usize], strides: &[usize], pads: &[usize], dilations: &[usize], p: u32) -> LpPool {
        let n = kernel.len();
        let or_ones = |v: &[usize]| if v.is_empty() { vec![1; n] } else { v.to_vec() };
        LpPool {
            window: Window {
                kernel: kernel.to_vec(),
                strides: or_ones(strides),
                pads: if pads.is_empty() { vec![0; 2 * n] } else { pads.to_vec() },
                dilations: or_ones(dilations),
            },
            p,
            ceil_mode: false,
        }
    }

    fn run(op: &LpPool, shape: &[usize], x: Vec<f32>) -> Tensor {
        let x = Tensor::from_f32(shape.to_vec(), x);
        op.run(&[&x], &[]).unwrap().remove(0)
    }

    #[test]
    fn p2_is_the_euclidean_norm_of_each_window() {
        // x = [3, 4, 0, 5, 12]; kernel 2: sqrt(9+16)=5, sqrt(16)=4, sqrt(25)=5, sqrt(25+144)=13.
        let y = run(&pool(&[2], &[], &[], &[], 2), &[1, 1, 5], vec![3.0, 4.0, 0.0, 5.0, 12.0]);
        assert_eq!(y.shape, vec![1, 1, 4]);
        assert_eq!(y.as_f32().unwrap(), &[5.0, 4.0, 5.0, 13.0]);
    }

    #[test]
    fn p1_sums_magnitudes_and_padding_adds_nothing() {
        // 2x2 input [[1,-2],[-3,4]], kernel 2x2, pads 1 all round, stride 2: output 2x2, each
        // window holding one input cell plus zeros: |1|, |-2|, |-3|, |4|.
        let y = run(&pool(&[2, 2], &[2, 2], &[1, 1, 1, 1], &[], 1), &[1, 1, 2, 2], vec![1.0, -2.0, -3.0, 4.0]);
        assert_eq!(y.shape, vec![1, 1, 2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn p3_with_dilation_over_two_channels() {
        // Channel 0 = [1, 5, 2, 7], channel 1 = [-1, 0, -2, 0]; kernel 2 dilation 2 pairs
        // (0, 2) and (1, 3): cbrt(1 + 8) = 9^(1/3), cbrt(125 + 343) = 468^(1/3); cbrt(1 + 8),
        // cbrt(0).
        let y = run(&pool(&[2], &[], &[], &[2], 3), &[1, 2, 4], vec![1.0, 5.0, 2.0, 7.0, -1.0, 0.0, -2.0, 0.0]);
        let want = [9f32.cbrt(), 468f32.cbrt(), 9f32.cbrt(), 0.0];
        for (got, want) in y.as_f32().unwrap().iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }
}
