//! Applying an encoding to a whole tensor: fake-quant (what the quantized model computes
//! with, in float) and quantization to grid values (what a compiled model stores).

use crate::ir::{Tensor, TensorData};
use crate::quant::encoding::{Encoding, TensorEncoding};
use crate::quant::math::{fake_quant_run, round_to_f16};

/// A per-channel encoding that does not fit the tensor it is applied to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a per-channel encoding with {got} channels along axis {axis} does not fit a tensor of shape {shape:?}")]
pub struct ChannelMismatch {
    pub axis: usize,
    pub got: usize,
    pub shape: Vec<usize>,
}

/// The runs of a row-major tensor of `shape` that share one channel of `axis`: `(channel,
/// run)` for every run of `shape[axis + 1..]`'s size, in order. Whole runs, not an index per
/// element: that took a division and a modulo per value, and the encodings of every weight
/// are applied again after each encoding edit.
fn channel_runs(
    shape: &[usize],
    axis: usize,
    channels: usize,
) -> Result<impl Iterator<Item = (usize, std::ops::Range<usize>)>, ChannelMismatch> {
    let mismatch = || ChannelMismatch { axis, got: channels, shape: shape.to_vec() };
    let dim = *shape.get(axis).ok_or_else(mismatch)?;
    if dim != channels {
        return Err(mismatch());
    }
    let inner: usize = shape.get(axis + 1..).map_or(1, |s| s.iter().product());
    let total: usize = shape.iter().product();
    let runs = total.checked_div(inner).unwrap_or(0);
    Ok((0..runs).map(move |run| (run % dim.max(1), run * inner..(run + 1) * inner)))
}

/// The runs of a tensor of `shape` under a per-block encoding, each with its block's encoding;
/// a mismatch when the blocks do not tile the tensor.
fn block_encoding_runs<'e>(
    shape: &[usize],
    axis: usize,
    block_axis: usize,
    block_size: usize,
    blocks: &'e [Encoding],
) -> Result<Vec<(&'e Encoding, std::ops::Range<usize>)>, ChannelMismatch> {
    let mismatch = || ChannelMismatch { axis: block_axis, got: blocks.len(), shape: shape.to_vec() };
    let runs = crate::quant::blocks::block_runs(shape, axis, block_axis, block_size).ok_or_else(mismatch)?;
    runs.map(|(b, run)| blocks.get(b).map(|e| (e, run)).ok_or_else(mismatch)).collect()
}

/// Every element of `t` through `e`: `dequantize(quantize(x))` for integer encodings, a round
/// trip through float16 for `Float { bitwidth: 16 }`, unchanged for float32 and for non-f32
/// tensors.
pub fn fake_quant_tensor(t: &Tensor, e: &TensorEncoding) -> Result<Tensor, ChannelMismatch> {
    let Some(values) = t.as_f32() else { return Ok(t.clone()) };
    let data: Vec<f32> = match e {
        TensorEncoding::Float { bitwidth: 16 } => values.iter().map(|&x| round_to_f16(x)).collect(),
        TensorEncoding::Float { .. } => values.to_vec(),
        // `Encoding::fake_quant` of every value, a run of one encoding at a time, vectorized.
        TensorEncoding::PerTensor(enc) => {
            let mut data = values.to_vec();
            fake_quant_run(&mut data, enc.scale, enc.offset, enc.bitwidth);
            data
        }
        TensorEncoding::PerChannel { axis, channels } => {
            let mut data = Vec::with_capacity(values.len());
            for (c, run) in channel_runs(&t.shape, *axis, channels.len())? {
                let start = data.len();
                data.extend_from_slice(values.get(run).unwrap_or_default());
                let enc = &channels[c];
                fake_quant_run(&mut data[start..], enc.scale, enc.offset, enc.bitwidth);
            }
            data
        }
        TensorEncoding::PerBlock { axis, block_axis, block_size, blocks } => {
            let mut data = values.to_vec();
            for (enc, run) in block_encoding_runs(&t.shape, *axis, *block_axis, *block_size, blocks)? {
                if let Some(slice) = data.get_mut(run) {
                    fake_quant_run(slice, enc.scale, enc.offset, enc.bitwidth);
                }
            }
            data
        }
    };
    Ok(Tensor { shape: t.shape.clone(), data: TensorData::F32(data) })
}

/// The grid values (`0..=2^bw-1`, unsigned convention) of every element of `t`; `None` for
/// float encodings and non-f32 tensors.
pub fn quantize_tensor(t: &Tensor, e: &TensorEncoding) -> Result<Option<Vec<u32>>, ChannelMismatch> {
    let Some(values) = t.as_f32() else { return Ok(None) };
    Ok(match e {
        TensorEncoding::Float { .. } => None,
        TensorEncoding::PerTensor(enc) => Some(values.iter().map(|&x| enc.quantize(x)).collect()),
        TensorEncoding::PerChannel { axis, channels } => {
            let mut grid = Vec::with_capacity(values.len());
            for (c, run) in channel_runs(&t.shape, *axis, channels.len())? {
                grid.extend(values.get(run).unwrap_or_default().iter().map(|&x| channels[c].quantize(x)));
            }
            Some(grid)
        }
        TensorEncoding::PerBlock { axis, block_axis, block_size, blocks } => {
            let mut grid = Vec::with_capacity(values.len());
            for (enc, run) in block_encoding_runs(&t.shape, *axis, *block_axis, *block_size, blocks)? {
                grid.extend(values.get(run).unwrap_or_default().iter().map(|&x| enc.quantize(x)));
            }
            Some(grid)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::encoding::Encoding;

    fn enc(scale: f32, offset: i64) -> Encoding {
        Encoding::from_scale_offset(8, scale, offset, true)
    }

    /// Shape [2, 3] along axis 0: rows use scales 0.5 and 0.25 (offset -128):
    /// row 0: 0.3/0.5 = 0.6 -> 1 -> 0.5; 1.0 -> 2 -> 1.0; -0.74/0.5 = -1.48 -> -1 -> -0.5.
    /// row 1: 0.3/0.25 = 1.2 -> 1 -> 0.25; 1.0 -> 4 -> 1.0; -0.74/0.25 = -2.96 -> -3 -> -0.75.
    #[test]
    fn per_channel_fake_quant_along_axis_0() {
        let t = Tensor::from_f32(vec![2, 3], vec![0.3, 1.0, -0.74, 0.3, 1.0, -0.74]);
        let e = TensorEncoding::PerChannel { axis: 0, channels: vec![enc(0.5, -128), enc(0.25, -128)] };
        let out = fake_quant_tensor(&t, &e).unwrap();
        assert_eq!(out.as_f32().unwrap(), &[0.5, 1.0, -0.5, 0.25, 1.0, -0.75]);
        let q = quantize_tensor(&t, &e).unwrap().unwrap();
        assert_eq!(q, vec![129, 130, 127, 129, 132, 125]);
    }

    /// Along axis 1 of [2, 2]: columns use scales 1 and 0.5: [1.2, 1.2, 2.6, 2.6] ->
    /// [1, 1.0, 3, 2.5] (2.6/0.5 = 5.2 -> 5 -> 2.5).
    #[test]
    fn per_channel_fake_quant_along_axis_1() {
        let t = Tensor::from_f32(vec![2, 2], vec![1.2, 1.2, 2.6, 2.6]);
        let e = TensorEncoding::PerChannel { axis: 1, channels: vec![enc(1.0, -128), enc(0.5, -128)] };
        let out = fake_quant_tensor(&t, &e).unwrap();
        assert_eq!(out.as_f32().unwrap(), &[1.0, 1.0, 3.0, 2.5]);
    }

    /// Every axis of a rank-3 tensor: each element through the encoding of its own index
    /// along the axis (worked out per element here, by runs in the code).
    #[test]
    fn per_channel_encodings_reach_every_element_of_every_axis() {
        let shape = vec![2, 3, 4];
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.37 - 3.0).collect();
        let t = Tensor::from_f32(shape.clone(), values.clone());
        for (axis, &dim) in shape.iter().enumerate() {
            let channels: Vec<Encoding> = (0..dim).map(|c| enc(0.05 * (c + 1) as f32, -128)).collect();
            let e = TensorEncoding::PerChannel { axis, channels: channels.clone() };
            let index = |i: usize| match axis {
                0 => i / 12,
                1 => i / 4 % 3,
                _ => i % 4,
            };
            let want: Vec<f32> = values.iter().enumerate().map(|(i, &x)| channels[index(i)].fake_quant(x)).collect();
            assert_eq!(fake_quant_tensor(&t, &e).unwrap().as_f32().unwrap(), &want[..], "axis {axis}");
            let grid: Vec<u32> = values.iter().enumerate().map(|(i, &x)| channels[index(i)].quantize(x)).collect();
            assert_eq!(quantize_tensor(&t, &e).unwrap().unwrap(), grid, "axis {axis}");
        }
    }

    #[test]
    fn mismatched_channels_are_an_error() {
        let t = Tensor::from_f32(vec![3, 1], vec![0.0; 3]);
        let e = TensorEncoding::PerChannel { axis: 0, channels: vec![enc(1.0, -128); 2] };
        assert_eq!(fake_quant_tensor(&t, &e).unwrap_err().got, 2);
        let e = TensorEncoding::PerChannel { axis: 2, channels: vec![enc(1.0, -128); 3] };
        assert!(quantize_tensor(&t, &e).is_err());
    }

    /// The vectorized runs give `Encoding::fake_quant`'s bits for every value: NaN, the
    /// infinities, signed zeros, ties, values beyond the grid, on 4-, 8-, 16- and 32-bit grids
    /// with symmetric, asymmetric and int32-bias offsets, per tensor and per channel.
    #[test]
    fn tensor_fake_quant_equals_the_encodings_own_per_value() {
        let values: Vec<f32> = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5]
            .into_iter()
            .chain((0..300).map(|i| (i as f32 - 150.0) * 0.037))
            .chain([1e9, -1e9, f32::MAX, f32::MIN, 1e-40])
            .collect();
        let encodings = [
            Encoding::from_scale_offset(4, 0.25, -8, true),
            Encoding::from_scale_offset(8, 0.0123, -128, true),
            Encoding::from_scale_offset(8, 0.05, -37, false),
            Encoding::from_scale_offset(16, 3.1e-4, -32768, true),
            Encoding::int32_with_scale(1.7e-5),
        ];
        for e in &encodings {
            let t = Tensor::from_f32(vec![values.len()], values.clone());
            let got = fake_quant_tensor(&t, &TensorEncoding::PerTensor(e.clone())).unwrap();
            for (&x, g) in values.iter().zip(got.as_f32().unwrap()) {
                assert_eq!(g.to_bits(), e.fake_quant(x).to_bits(), "{x} with {e:?}");
            }
        }
        let rows = values.len() / 5;
        let t = Tensor::from_f32(vec![5, rows], values[..5 * rows].to_vec());
        let got = fake_quant_tensor(&t, &TensorEncoding::PerChannel { axis: 0, channels: encodings.to_vec() }).unwrap();
        for (i, (&x, g)) in values.iter().zip(got.as_f32().unwrap()).enumerate() {
            assert_eq!(g.to_bits(), encodings[i / rows].fake_quant(x).to_bits(), "{x} in row {}", i / rows);
        }
    }

    /// The worked example through the tensor helper; float16 keeps 0.1 as 0.099975586.
    #[test]
    fn per_tensor_and_float() {
        let t = Tensor::from_f32(vec![4], vec![-1.8, -1.0, 0.0, 0.5]);
        let e = TensorEncoding::PerTensor(Encoding::asymmetric(-1.8, 0.5, 8));
        assert_eq!(quantize_tensor(&t, &e).unwrap().unwrap(), vec![0, 89, 200, 255]);
        let half =
            fake_quant_tensor(&Tensor::from_f32(vec![1], vec![0.1]), &TensorEncoding::Float { bitwidth: 16 }).unwrap();
        assert_eq!(half.as_f32().unwrap(), &[0.099975586]);
        let same = fake_quant_tensor(&t, &TensorEncoding::Float { bitwidth: 32 }).unwrap();
        assert_eq!(same, t);
        let ints = Tensor::from_i64(vec![1], vec![7]);
        assert_eq!(fake_quant_tensor(&ints, &e).unwrap(), ints);
    }
}
