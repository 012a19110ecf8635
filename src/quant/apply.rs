//! Applying an encoding to a whole tensor: fake-quant (what the quantized model computes
//! with, in float) and quantization to grid values (what a compiled model stores).

use crate::ir::{Tensor, TensorData};
use crate::quant::encoding::TensorEncoding;
use crate::quant::math::round_to_f16;

/// A per-channel encoding that does not fit the tensor it is applied to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a per-channel encoding with {got} channels along axis {axis} does not fit a tensor of shape {shape:?}")]
pub struct ChannelMismatch {
    pub axis: usize,
    pub got: usize,
    pub shape: Vec<usize>,
}

/// For each element (row-major), the index of its encoding: 0 for per-tensor, the position
/// along `axis` for per-channel.
fn channel_indices(
    shape: &[usize],
    axis: usize,
    channels: usize,
) -> Result<impl Iterator<Item = usize>, ChannelMismatch> {
    let mismatch = || ChannelMismatch { axis, got: channels, shape: shape.to_vec() };
    let dim = *shape.get(axis).ok_or_else(mismatch)?;
    if dim != channels {
        return Err(mismatch());
    }
    let inner: usize = shape.get(axis + 1..).map_or(1, |s| s.iter().product());
    let total: usize = shape.iter().product();
    Ok((0..total).map(move |i| (i / inner.max(1)) % dim.max(1)))
}

/// Every element of `t` through `e`: `dequantize(quantize(x))` for integer encodings, a round
/// trip through float16 for `Float { bitwidth: 16 }`, unchanged for float32 and for non-f32
/// tensors.
pub fn fake_quant_tensor(t: &Tensor, e: &TensorEncoding) -> Result<Tensor, ChannelMismatch> {
    let Some(values) = t.as_f32() else { return Ok(t.clone()) };
    let data: Vec<f32> = match e {
        TensorEncoding::Float { bitwidth: 16 } => values.iter().map(|&x| round_to_f16(x)).collect(),
        TensorEncoding::Float { .. } => values.to_vec(),
        TensorEncoding::PerTensor(enc) => values.iter().map(|&x| enc.fake_quant(x)).collect(),
        TensorEncoding::PerChannel { axis, channels } => {
            let idx = channel_indices(&t.shape, *axis, channels.len())?;
            values.iter().zip(idx).map(|(&x, c)| channels[c].fake_quant(x)).collect()
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
            let idx = channel_indices(&t.shape, *axis, channels.len())?;
            Some(values.iter().zip(idx).map(|(&x, c)| channels[c].quantize(x)).collect())
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

    #[test]
    fn mismatched_channels_are_an_error() {
        let t = Tensor::from_f32(vec![3, 1], vec![0.0; 3]);
        let e = TensorEncoding::PerChannel { axis: 0, channels: vec![enc(1.0, -128); 2] };
        assert_eq!(fake_quant_tensor(&t, &e).unwrap_err().got, 2);
        let e = TensorEncoding::PerChannel { axis: 2, channels: vec![enc(1.0, -128); 3] };
        assert!(quantize_tensor(&t, &e).is_err());
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
