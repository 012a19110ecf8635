//! MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv against values worked out by hand
//! from the ONNX formulas.

use super::*;
use crate::ir::TensorData;

fn t(shape: &[usize], data: TensorData) -> Tensor {
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn s(v: f32) -> Tensor {
    Tensor::scalar_f32(v)
}

fn run(op: impl Into<Op>, inputs: &[&Tensor]) -> Tensor {
    op.into().run(inputs, &[]).unwrap().remove(0)
}

fn window(kernel: &[usize], pads: &[usize]) -> Window {
    Window {
        kernel: kernel.to_vec(),
        strides: vec![1; kernel.len()],
        pads: pads.to_vec(),
        dilations: vec![1; kernel.len()],
    }
}

#[test]
fn matmul_integer_per_tensor_row_and_column_zero_points() {
    // The ONNX MatMulInteger example: A - 12 times B, row 0: [-1, -5, -9] . [1, 2, 3] = -38,
    // . [4, 5, 6] = -83; and so on.
    let a = t(&[4, 3], TensorData::U8(vec![11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]));
    let b = t(&[3, 2], TensorData::U8(vec![1, 4, 2, 5, 3, 6]));
    let (az, bz) = (t(&[], TensorData::U8(vec![12])), t(&[], TensorData::U8(vec![0])));
    let op = MatMulInteger { a_zero_point: true, b_zero_point: true };
    let y = run(op, &[&a, &b, &az, &bz]);
    assert_eq!(y.shape, vec![4, 2]);
    assert_eq!(y.data, TensorData::I32(vec![-38, -83, -44, -98, -50, -113, -56, -128]));
    // Per-row a zero points [1, 3]: [[1, 2], [3, 4]] becomes [[0, 1], [0, 1]]; times I = itself.
    let a = t(&[2, 2], TensorData::U8(vec![1, 2, 3, 4]));
    let eye = t(&[2, 2], TensorData::I8(vec![1, 0, 0, 1]));
    let op = MatMulInteger { a_zero_point: true, b_zero_point: false };
    let y = run(op, &[&a, &eye, &t(&[2], TensorData::U8(vec![1, 3]))]);
    assert_eq!(y.data, TensorData::I32(vec![0, 1, 0, 1]));
    // Per-column b zero points [1, 0] (no a zero point): B becomes [[0, 0], [-1, 1]];
    // [[1, 2], [3, 4]] x that = [[-2, 2], [-4, 4]].
    let op = MatMulInteger { a_zero_point: false, b_zero_point: true };
    let y = run(op, &[&a, &eye, &t(&[2], TensorData::I8(vec![1, 0]))]);
    assert_eq!(y.data, TensorData::I32(vec![-2, 2, -4, 4]));
}

#[test]
fn qlinear_matmul_requantizes() {
    // The ONNX QLinearMatMul example (2-D, uint8, float32 scales).
    let a = t(&[2, 4], TensorData::U8(vec![208, 236, 0, 238, 3, 214, 255, 29]));
    let b = t(&[4, 3], TensorData::U8(vec![152, 51, 244, 60, 26, 255, 0, 127, 246, 127, 254, 247]));
    let (az, bz, yz) =
        (t(&[], TensorData::U8(vec![113])), t(&[], TensorData::U8(vec![114])), t(&[], TensorData::U8(vec![118])));
    let (sa, sb, sy) = (s(0.0066), s(0.00705), s(0.0107));
    let y = run(QLinearMatMul, &[&a, &sa, &az, &b, &sb, &bz, &sy, &yz]);
    assert_eq!(y.data, TensorData::U8(vec![168, 115, 255, 1, 66, 151]));
}

#[test]
fn conv_integer_with_and_without_padding() {
    // The ONNX ConvInteger examples: x - 1 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], a 2x2 kernel of
    // ones: the 2x2 window sums 12, 16, 24, 28; padded by 1, the corners see one value.
    let x = t(&[1, 1, 3, 3], TensorData::U8((2..=10).collect()));
    let w = t(&[1, 1, 2, 2], TensorData::U8(vec![1; 4]));
    let xz = t(&[], TensorData::U8(vec![1]));
    let op = ConvInteger { window: window(&[2, 2], &[0; 4]), group: 1, x_zero_point: true, w_zero_point: false };
    let y = run(op, &[&x, &w, &xz]);
    assert_eq!((y.shape.clone(), y.data), (vec![1, 1, 2, 2], TensorData::I32(vec![12, 16, 24, 28])));
    let op = ConvInteger { window: window(&[2, 2], &[1; 4]), group: 1, x_zero_point: true, w_zero_point: false };
    let y = run(op, &[&x, &w, &xz]);
    assert_eq!(y.data, TensorData::I32(vec![1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9]));
}

#[test]
fn qlinear_conv_per_channel_scales_zero_points_and_bias() {
    // x - 10 = [0, 10, 20, 30]; channel 0: w - 0 = 2, bias 1: [1, 21, 41, 61] * (0.5 * 1 / 2)
    // = [0.25, 5.25, 10.25, 15.25] -> [0, 5, 10, 15] + 100.
    // Channel 1: w - 1 = -4, bias -2: [-2, -42, -82, -122] * (0.5 * 0.25 / 2 = 0.0625)
    // = [-0.125, -2.625, -5.125, -7.625] -> [0, -3, -5, -8] + 100.
    let x = t(&[1, 1, 2, 2], TensorData::U8(vec![10, 20, 30, 40]));
    let w = t(&[2, 1, 1, 1], TensorData::I8(vec![2, -3]));
    let (xz, wz, yz) =
        (t(&[], TensorData::U8(vec![10])), t(&[2], TensorData::I8(vec![0, 1])), t(&[], TensorData::U8(vec![100])));
    let ws = Tensor::from_f32(vec![2], vec![1.0, 0.25]);
    let bias = t(&[2], TensorData::I32(vec![1, -2]));
    let op = QLinearConv { window: window(&[1, 1], &[0; 4]), group: 1 };
    let y = run(op, &[&x, &s(0.5), &xz, &w, &ws, &wz, &s(2.0), &yz, &bias]);
    assert_eq!(y.shape, vec![1, 2, 2, 2]);
    assert_eq!(y.data, TensorData::U8(vec![100, 105, 110, 115, 100, 97, 95, 92]));
}

#[test]
fn shapes_and_types_are_inferred() {
    let info = |dtype, shape: &[usize]| TensorInfo { name: "t".into(), dtype, shape: shape.to_vec() };
    let op = MatMulInteger { a_zero_point: false, b_zero_point: false };
    let out = op.infer(&[&info(DType::U8, &[5, 2, 3]), &info(DType::I8, &[3, 4])]).unwrap();
    assert_eq!(out, vec![(DType::I32, vec![5, 2, 4])]);
    assert!(op.infer(&[&info(DType::F32, &[2, 3]), &info(DType::I8, &[3, 4])]).is_err());
    let f = info(DType::F32, &[]);
    let (a, b, z8) = (info(DType::I8, &[2, 3]), info(DType::I8, &[3, 4]), info(DType::I8, &[]));
    let out = QLinearMatMul.infer(&[&a, &f, &z8, &b, &f, &z8, &f, &info(DType::U8, &[])]).unwrap();
    assert_eq!(out, vec![(DType::U8, vec![2, 4])]);
}
