//! ConvTranspose over 1-D, 2-D and 3-D inputs: per (image, group) one sgemm
//! `W_g^T [M/g*taps, C/g] x X_g [C/g, in_plane]` into a column matrix, then col2im scatters
//! each column row into the output planes (`o = i * stride + t * dilation - pad_begin`, out of
//! range positions dropped). Float16 computes in float32.

use half::f16;

use super::gemm::sgemm;
use super::{KernelError, element_count, expect_inputs, input, tensor};
use crate::ir::{Tensor, TensorData};
use crate::ops::ConvTranspose;

const OP: &str = "ConvTranspose";

fn floats(t: &Tensor, what: &str) -> Result<Vec<f32>, KernelError> {
    match &t.data {
        TensorData::F32(v) => Ok(v.clone()),
        TensorData::F16(v) => Ok(v.iter().map(|h| h.to_f32()).collect()),
        other => Err(KernelError::new(OP, format!("{what} must be float32 or float16, got {}", other.dtype().name()))),
    }
}

/// One spatial axis, with 1-D and 2-D inputs padded to 3-D by unit axes in front.
#[derive(Clone, Copy)]
struct Axis {
    input: usize,
    output: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
}

impl Axis {
    /// For tap `t`: the output position of every input position (`None` when dropped).
    fn targets(&self, t: usize) -> Vec<Option<usize>> {
        (0..self.input)
            .map(|i| (i * self.stride + t * self.dilation).checked_sub(self.pad).filter(|&o| o < self.output))
            .collect()
    }
}

pub fn conv_transpose(op: &ConvTranspose, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    expect_inputs(OP, inputs, 2, 3)?;
    let (x_t, w_t) = (input(OP, inputs, 0, "X")?, input(OP, inputs, 1, "W")?);
    let n = op.kernel.len();
    if !(1..=3).contains(&n) || x_t.shape.len() != n + 2 || w_t.shape.len() != n + 2 {
        return Err(KernelError::new(
            OP,
            format!("input {:?} and weight {:?} must have {n} spatial axes", x_t.shape, w_t.shape),
        ));
    }
    let (batch, channels) = (x_t.shape[0], x_t.shape[1]);
    let g = op.group;
    if g == 0 || w_t.shape[0] != channels || channels % g != 0 || w_t.shape[2..] != op.kernel[..] {
        return Err(KernelError::new(
            OP,
            format!("weight {:?} does not fit input {:?} (group {g})", w_t.shape, x_t.shape),
        ));
    }
    let (c_g, m_g) = (channels / g, w_t.shape[1]);
    let m = m_g * g;
    let mut axes = [Axis { input: 1, output: 1, kernel: 1, stride: 1, dilation: 1, pad: 0 }; 3];
    for i in 0..n {
        axes[3 - n + i] = Axis {
            input: x_t.shape[2 + i],
            output: op.output[i],
            kernel: op.kernel[i],
            stride: op.strides[i],
            dilation: op.dilations[i],
            pad: op.pads[i],
        };
    }
    let in_plane: usize = axes.iter().map(|a| a.input).product();
    let out_plane: usize = axes.iter().map(|a| a.output).product();
    let taps: usize = axes.iter().map(|a| a.kernel).product();
    let mut out_shape = vec![batch, m];
    out_shape.extend(&op.output);
    let mut y = vec![0.0f32; element_count(OP, &out_shape)?];
    let (x, w) = (floats(x_t, "X")?, floats(w_t, "W")?);
    let bias = match inputs.get(2) {
        Some(b) => {
            let b = floats(b, "B")?;
            if b.len() != m {
                return Err(KernelError::new(OP, format!("bias has {} values for {m} output channels", b.len())));
            }
            Some(b)
        }
        None => None,
    };
    let rows = m_g * taps;
    if !y.is_empty() && in_plane > 0 && c_g > 0 && rows > 0 {
        // Output targets per axis and tap, computed once.
        let targets: Vec<Vec<Vec<Option<usize>>>> =
            axes.iter().map(|a| (0..a.kernel).map(|t| a.targets(t)).collect()).collect();
        let mut col = vec![0.0f32; rows * in_plane];
        for (x_image, y_image) in x.chunks_exact(channels * in_plane).zip(y.chunks_exact_mut(m * out_plane)) {
            for ((x_group, y_group), w_group) in x_image
                .chunks_exact(c_g * in_plane)
                .zip(y_image.chunks_exact_mut(m_g * out_plane))
                .zip(w.chunks_exact(c_g * rows))
            {
                // col[r, p] = sum_c W_g[c, r] * X_g[c, p].
                sgemm(OP, (rows, c_g, in_plane), 1.0, w_group, (1, rows), x_group, (in_plane, 1), 0.0, &mut col)?;
                for (r, col_row) in col.chunks_exact(in_plane).enumerate() {
                    let (oc, t) = (r / taps, r % taps);
                    let (td, th, tw) = (
                        t / (axes[1].kernel * axes[2].kernel),
                        (t / axes[2].kernel) % axes[1].kernel,
                        t % axes[2].kernel,
                    );
                    let plane = &mut y_group[oc * out_plane..(oc + 1) * out_plane];
                    let (wd, wh, ww) = (&targets[0][td], &targets[1][th], &targets[2][tw]);
                    for (id, od) in wd.iter().enumerate() {
                        let Some(od) = od else { continue };
                        for (ih, oh) in wh.iter().enumerate() {
                            let Some(oh) = oh else { continue };
                            let src = &col_row[(id * axes[1].input + ih) * axes[2].input..][..axes[2].input];
                            let dst = &mut plane[(od * axes[1].output + oh) * axes[2].output..][..axes[2].output];
                            for (&v, ow) in src.iter().zip(ww) {
                                if let Some(ow) = *ow {
                                    dst[ow] += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = bias
        && out_plane > 0
    {
        for (plane, &value) in y.chunks_exact_mut(out_plane).zip(b.iter().cycle()) {
            for v in plane {
                *v += value;
            }
        }
    }
    let data = match x_t.data {
        TensorData::F16(_) => TensorData::F16(y.into_iter().map(f16::from_f32).collect()),
        _ => TensorData::F32(y),
    };
    tensor(OP, out_shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_1d_float16_with_pads_and_bias() {
        // y_full[2i + t] = x[i] for taps [1, 1]: [1, 1, 2, 2, 3, 3]; pads [1, 0] drop y_full[0];
        // bias 0.5.
        let h = |v: &[f32]| TensorData::F16(v.iter().map(|&x| f16::from_f32(x)).collect());
        let x = Tensor::new(vec![1, 1, 3], h(&[1.0, 2.0, 3.0])).unwrap();
        let w = Tensor::new(vec![1, 1, 2], h(&[1.0, 1.0])).unwrap();
        let b = Tensor::new(vec![1], h(&[0.5])).unwrap();
        let op = ConvTranspose {
            kernel: vec![2],
            strides: vec![2],
            dilations: vec![1],
            pads: vec![1, 0],
            output: vec![5],
            group: 1,
        };
        let y = conv_transpose(&op, &[&x, &w, &b]).unwrap();
        assert_eq!(y.shape, vec![1, 1, 5]);
        assert_eq!(y.data, h(&[1.5, 2.5, 2.5, 3.5, 3.5]));
    }
}
