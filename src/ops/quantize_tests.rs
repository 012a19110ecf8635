//! QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear against values worked out by hand
//! from the ONNX formulas (and the ONNX backend node tests' data).

use super::*;
use crate::ir::TensorData;

fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_f32(shape.to_vec(), v.to_vec())
}

fn t(shape: &[usize], data: TensorData) -> Tensor {
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn q(axis: usize, block_size: usize, to: DType) -> QuantizeLinear {
    QuantizeLinear { axis, block_size, to, saturate: true, precision: None }
}

fn dq(axis: usize, block_size: usize) -> DequantizeLinear {
    DequantizeLinear { axis, block_size, to: None }
}

fn run(op: impl Into<Op>, inputs: &[&Tensor]) -> Tensor {
    op.into().run(inputs, &[]).unwrap().remove(0)
}

#[test]
fn quantize_per_tensor_rounds_half_to_even_and_saturates() {
    // The ONNX QuantizeLinear example: y = saturate(round(x / 2) + 128):
    // 0 -> 128; 2 -> 129; 3/2 = 1.5 -> 2 -> 130; 1000/2 + 128 = 628 -> 255;
    // -254/2 + 128 = 1; -1000/2 + 128 = -372 -> 0.
    let x = f32s(&[6], &[0.0, 2.0, 3.0, 1000.0, -254.0, -1000.0]);
    let (s, z) = (f32s(&[], &[2.0]), t(&[], TensorData::U8(vec![128])));
    let y = run(q(0, 0, DType::U8), &[&x, &s, &z]);
    assert_eq!(y.data, TensorData::U8(vec![128, 129, 130, 255, 1, 0]));
    // Without a zero point: uint8 and zero point 0; -1 -> 0.
    let y = run(q(0, 0, DType::U8), &[&f32s(&[3], &[-1.0, 5.0, 7.0]), &s]);
    assert_eq!(y.data, TensorData::U8(vec![0, 2, 4])); // 2.5 -> 2, 3.5 -> 4
}

#[test]
fn quantize_per_axis_and_blocked() {
    // Axis 0 of [2, 3], scales [1, 0.5], int8 zero points [0, -1]:
    // row 0: round([-1.5, 0.5, 2.5]) = [-2, 0, 2];
    // row 1: [1, -3, 100] / 0.5 = [2, -6, 200], - 1 = [1, -7, 199 -> 127].
    let x = f32s(&[2, 3], &[-1.5, 0.5, 2.5, 1.0, -3.0, 100.0]);
    let (s, z) = (f32s(&[2], &[1.0, 0.5]), t(&[2], TensorData::I8(vec![0, -1])));
    assert_eq!(run(q(0, 0, DType::I8), &[&x, &s, &z]).data, TensorData::I8(vec![-2, 0, 2, 1, -7, 127]));
    // Blocks of 2 along axis 1 of [2, 4], scales [[1, 2], [4, 8]], int8 without zero point:
    // [1, 2 | 3/2 = 1.5 -> 2, 5/2 = 2.5 -> 2], [4/4, 8/4 | 12/8 = 1.5 -> 2, -20/8 = -2.5 -> -2].
    let x = f32s(&[2, 4], &[1.0, 2.0, 3.0, 5.0, 4.0, 8.0, 12.0, -20.0]);
    let s = f32s(&[2, 2], &[1.0, 2.0, 4.0, 8.0]);
    assert_eq!(run(q(1, 2, DType::I8), &[&x, &s]).data, TensorData::I8(vec![1, 2, 2, 2, 1, 2, 2, -2]));
    // A last, partial block: [1, 3] in blocks of 2 has scales [[1, 10]]: [5, 6 | 25 / 10 = 2.5 -> 2].
    let x = f32s(&[1, 3], &[5.0, 6.0, 25.0]);
    assert_eq!(run(q(1, 2, DType::U8), &[&x, &f32s(&[1, 2], &[1.0, 10.0])]).data, TensorData::U8(vec![5, 6, 2]));
}

#[test]
fn quantize_saturates_to_4_and_2_bit_ranges() {
    // int4 [-8, 7]: -20 -> -8, 20 -> 7, 7.5 -> 8 -> 7, -8.5 -> -8 (half to even).
    let x = f32s(&[4], &[-20.0, 20.0, 7.5, -8.5]);
    let one = f32s(&[], &[1.0]);
    assert_eq!(run(q(0, 0, DType::I4), &[&x, &one]).data, TensorData::I4(vec![-8, 7, 7, -8]));
    // uint2 [0, 3]: 1.5 -> 2, 2.5 -> 2, 9 -> 3, -1 -> 0; int2 [-2, 1].
    let x = f32s(&[5], &[0.0, 1.5, 2.5, 9.0, -1.0]);
    assert_eq!(run(q(0, 0, DType::U2), &[&x, &one]).data, TensorData::U2(vec![0, 2, 2, 3, 0]));
    assert_eq!(run(q(0, 0, DType::I2), &[&x, &one]).data, TensorData::I2(vec![0, 1, 1, 1, -1]));
    // uint16 and int16 ranges.
    let x = f32s(&[3], &[70000.0, -40000.0, 40000.0]);
    assert_eq!(run(q(0, 0, DType::U16), &[&x, &one]).data, TensorData::U16(vec![65535, 0, 40000]));
    assert_eq!(run(q(0, 0, DType::I16), &[&x, &one]).data, TensorData::I16(vec![32767, -32768, 32767]));
}

#[test]
fn quantize_to_float8_with_and_without_saturation() {
    // E4M3FN: 0.5 = 2^-1 is exponent field 6 (bias 7), code 0x30; 1000 saturates to 448 (0x7E).
    let x = f32s(&[4], &[0.0, 1.0, 1000.0, -1000.0]);
    let half = f32s(&[], &[2.0]);
    let y = run(q(0, 0, DType::F8E4M3FN), &[&x, &half]);
    assert_eq!(y.data, TensorData::F8E4M3FN(vec![0x00, 0x30, 0x7E, 0xFE]));
    // E5M2 without saturation: 1e6 overflows to infinity 0x7C (S.11111.00).
    let x = f32s(&[2], &[1e6, 1.0]);
    let op = QuantizeLinear { saturate: false, ..q(0, 0, DType::F8E5M2) };
    // 1 = exponent 15 (bias 15): 0.01111.00 = 0x3C.
    assert_eq!(run(op, &[&x, &f32s(&[], &[1.0])]).data, TensorData::F8E5M2(vec![0x7C, 0x3C]));
}

#[test]
fn quantize_divides_in_the_precision_of_the_scale() {
    // A float16 scale: x is taken to float16 first, 2049 -> 2048 (ties to even), so uint16 2048;
    // in float32 it would be 2049.
    let x = f32s(&[1], &[2049.0]);
    let s = t(&[], TensorData::F16(vec![half::f16::from_f32(1.0)]));
    assert_eq!(run(q(0, 0, DType::U16), &[&x, &s]).data, TensorData::U16(vec![2048]));
    let op = QuantizeLinear { precision: Some(DType::F32), ..q(0, 0, DType::U16) };
    assert_eq!(run(op, &[&x, &s]).data, TensorData::U16(vec![2049]));
}

#[test]
fn dequantize_per_tensor_per_axis_and_blocked() {
    // The ONNX DequantizeLinear example: (x - 128) * 2 for x = [0, 3, 128, 255].
    let x = t(&[4], TensorData::U8(vec![0, 3, 128, 255]));
    let (s, z) = (f32s(&[], &[2.0]), t(&[], TensorData::U8(vec![128])));
    assert_eq!(run(dq(0, 0), &[&x, &s, &z]).as_f32().unwrap(), &[-256.0, -250.0, 0.0, 254.0]);
    // Axis 1 of int8 [2, 2], scales [0.5, 2], zero points [1, -1]:
    // [(3 - 1) * 0.5, (3 + 1) * 2, (-128 - 1) * 0.5, (127 + 1) * 2] = [1, 8, -64.5, 256].
    let x = t(&[2, 2], TensorData::I8(vec![3, 3, -128, 127]));
    let (s, z) = (f32s(&[2], &[0.5, 2.0]), t(&[2], TensorData::I8(vec![1, -1])));
    assert_eq!(run(dq(1, 0), &[&x, &s, &z]).as_f32().unwrap(), &[1.0, 8.0, -64.5, 256.0]);
    // int4 in blocks of 2 along axis 1: [-8, 7] * 0.5, [1, -1] * 4.
    let x = t(&[1, 4], TensorData::I4(vec![-8, 7, 1, -1]));
    assert_eq!(run(dq(1, 2), &[&x, &f32s(&[1, 2], &[0.5, 4.0])]).as_f32().unwrap(), &[-4.0, 3.5, 4.0, -4.0]);
    // int32 (biases): no zero point; i32::MAX is 2^31 in float32.
    let x = t(&[2], TensorData::I32(vec![i32::MAX, -5]));
    assert_eq!(run(dq(0, 0), &[&x, &f32s(&[], &[1.0])]).as_f32().unwrap(), &[2147483648.0, -5.0]);
}

#[test]
fn dequantize_float8_and_float16_outputs() {
    // E4M3FN codes 0x30 = 0.5, 0x7E = 448, times 2.
    let x = t(&[2], TensorData::F8E4M3FN(vec![0x30, 0x7E]));
    assert_eq!(run(dq(0, 0), &[&x, &f32s(&[], &[2.0])]).as_f32().unwrap(), &[1.0, 896.0]);
    // A float16 scale makes a float16 output, computed in float16: int16 2049 -> 2048.
    let x = t(&[2], TensorData::I16(vec![2049, -3]));
    let s = t(&[], TensorData::F16(vec![half::f16::from_f32(1.0)]));
    let y = run(dq(0, 0), &[&x, &s]);
    let expected: Vec<half::f16> = [2048.0f32, -3.0].iter().map(|&v| half::f16::from_f32(v)).collect();
    assert_eq!(y.data, TensorData::F16(expected));
}

#[test]
fn shape_inference_checks_the_granularity() {
    let info = |dtype, shape: &[usize]| TensorInfo { name: "t".into(), dtype, shape: shape.to_vec() };
    let (x, s3) = (info(DType::F32, &[2, 3]), info(DType::F32, &[3]));
    let out = q(1, 0, DType::I8).infer(&[&x, &s3, &info(DType::I8, &[3])]).unwrap();
    assert_eq!(out, vec![(DType::I8, vec![2, 3])]);
    // 3 scales along axis 0 (of 2): an error; so is a zero point of another type.
    assert!(q(0, 0, DType::I8).infer(&[&x, &s3]).unwrap_err().contains("per-axis"));
    assert!(q(1, 0, DType::I8).infer(&[&x, &s3, &info(DType::U8, &[3])]).is_err());
    // DQ: the output has the scale's type.
    let out = dq(0, 0).infer(&[&info(DType::U8, &[4]), &info(DType::F16, &[])]).unwrap();
    assert_eq!(out, vec![(DType::F16, vec![4])]);
    // Blocked: scale [2, 2] for [2, 3] in blocks of 2 along axis 1 (ceil(3 / 2) = 2).
    assert!(dq(1, 2).infer(&[&info(DType::I4, &[2, 3]), &info(DType::F32, &[2, 2])]).is_ok());
    assert!(dq(1, 2).infer(&[&info(DType::I4, &[2, 3]), &info(DType::F32, &[2, 3])]).is_err());
}

#[test]
fn scales_are_float_parameters_and_zero_points_integer_data() {
    let op = Op::from(q(0, 0, DType::U8));
    assert_eq!(op.input_role(0, 1), InputRole::Activation);
    assert_eq!(op.input_role(1, 0), InputRole::FloatParam);
    assert_eq!(op.input_role(2, 0), InputRole::Index);
    let op = Op::from(dq(0, 0));
    assert_eq!(op.input_role(1, 0), InputRole::FloatParam);
    assert_eq!(op.input_role(2, 0), InputRole::Index);
    for name in ["QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"] {
        assert_eq!(super::super::quant_default(name).output, OutputEncoding::Float);
    }
}

#[test]
fn dynamic_quantize_linear_follows_the_onnx_example_and_onnxruntime() {
    // The ONNX example: range [min(0, -3), max(0, 2)] = [-3, 2], scale 5/255, zero point
    // round(3 / scale) = 153; y = saturate(round(x / scale) + 153).
    let x = f32s(&[6], &[0.0, 2.0, -3.0, -2.5, 1.34, 0.5]);
    let out = Op::from(DynamicQuantizeLinear).run(&[&x], &[]).unwrap();
    assert_eq!(out[0].data, TensorData::U8(vec![153, 255, 0, 26, 221, 179]));
    assert_eq!(out[1].as_f32().unwrap(), &[5.0f32 / 255.0]);
    assert_eq!(out[2].data, TensorData::U8(vec![153]));
    // An empty range: onnxruntime's scale 1 (not 0), zero point 0.
    let out = Op::from(DynamicQuantizeLinear).run(&[&f32s(&[2], &[0.0, 0.0])], &[]).unwrap();
    assert_eq!(out[1].as_f32().unwrap(), &[1.0]);
    assert_eq!((out[0].data.clone(), out[2].data.clone()), (TensorData::U8(vec![0, 0]), TensorData::U8(vec![0])));
}
