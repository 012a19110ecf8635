//! Shape and dtype inference of the registered ops, against hand-derived sizes (the ONNX
//! spec's formulas) and onnxruntime's measured ones.

use super::*;
use crate::ir::shape::{broadcast_shapes, window_output_len};

fn infer(op: &Op, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
    op.infer(inputs)
}

fn t(name: &str, shape: &[usize]) -> TensorInfo {
    TensorInfo { name: name.into(), dtype: DType::F32, shape: shape.to_vec() }
}

fn ti(name: &str, dtype: DType, shape: &[usize]) -> TensorInfo {
    TensorInfo { name: name.into(), dtype, shape: shape.to_vec() }
}

fn shape_of(op: &Op, inputs: &[&TensorInfo]) -> Vec<usize> {
    let out = infer(op, inputs).unwrap();
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap().1
}

fn window(kernel: &[usize], strides: &[usize], pads: &[usize], dilations: &[usize]) -> Window {
    Window { kernel: kernel.to_vec(), strides: strides.to_vec(), pads: pads.to_vec(), dilations: dilations.to_vec() }
}

fn conv(w: Window, group: usize) -> Op {
    Op::Conv(Conv { window: w, group })
}

#[test]
fn broadcasting_follows_numpy() {
    // numpy: (8,1,6,1) + (7,1,5) -> (8,7,6,5) (the numpy broadcasting docs' example).
    assert_eq!(broadcast_shapes(&[8, 1, 6, 1], &[7, 1, 5]), Some(vec![8, 7, 6, 5]));
    assert_eq!(broadcast_shapes(&[], &[3]), Some(vec![3]));
    assert_eq!(broadcast_shapes(&[2, 1], &[3]), Some(vec![2, 3]));
    assert_eq!(broadcast_shapes(&[2], &[3]), None);
    let err = infer(&Op::Binary(Binary::Add), &[&t("a", &[2, 3]), &t("b", &[4])]).unwrap_err();
    assert!(err.contains("do not broadcast") && err.contains("\"b\""), "{err}");
}

#[test]
fn binary_ops_require_equal_dtypes() {
    let a = ti("a", DType::I64, &[2]);
    assert_eq!(infer(&Op::Binary(Binary::Mul), &[&a, &a]).unwrap(), vec![(DType::I64, vec![2])]);
    let err = infer(&Op::Binary(Binary::Mul), &[&a, &t("b", &[2])]).unwrap_err();
    assert!(err.contains("int64") && err.contains("float32"), "{err}");
}

#[test]
fn conv_output_size_uses_pads_strides_dilations() {
    // out = floor((in + pb + pe - d*(k-1) - 1) / s) + 1
    // H: (28 + 1 + 1 - 1*2 - 1)/1 + 1 = 28;  W: (28 + 0 + 0 - 2*2 - 1)/2 + 1 = 12
    let op = conv(window(&[3, 3], &[1, 2], &[1, 0, 1, 0], &[1, 2]), 1);
    let x = t("x", &[1, 3, 28, 28]);
    let w = t("w", &[8, 3, 3, 3]);
    let b = t("b", &[8]);
    assert_eq!(shape_of(&op, &[&x, &w, &b]), vec![1, 8, 28, 12]);
    assert_eq!(shape_of(&op, &[&x, &w]), vec![1, 8, 28, 12]);
}

#[test]
fn depthwise_conv_checks_channels_per_group() {
    // Depthwise: group = C = 32, W [32, 1, 3, 3]; (112 + 2 - 2 - 1)/2 + 1 = 56.
    let op = conv(window(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[1, 1]), 32);
    let x = t("x", &[2, 32, 112, 112]);
    assert_eq!(shape_of(&op, &[&x, &t("w", &[32, 1, 3, 3])]), vec![2, 32, 56, 56]);
    let op1 = conv(window(&[3, 3], &[1, 1], &[0; 4], &[1, 1]), 1);
    let err = infer(&op1, &[&t("x", &[1, 3, 8, 8]), &t("w", &[2, 4, 3, 3])]).unwrap_err();
    assert_eq!(err, "Conv: input has 3 channels, weight expects 4 (group 1)");
    let op3 = conv(window(&[3, 3], &[1, 1], &[0; 4], &[1, 1]), 3);
    let err = infer(&op3, &[&t("x", &[1, 3, 8, 8]), &t("w", &[4, 1, 3, 3])]).unwrap_err();
    assert!(err.contains("do not divide into 3 groups"), "{err}");
}

#[test]
fn conv_rejects_kernel_weight_and_bias_mismatches() {
    let op = conv(window(&[5, 5], &[1, 1], &[0; 4], &[1, 1]), 1);
    let err = infer(&op, &[&t("x", &[1, 1, 8, 8]), &t("w", &[2, 1, 3, 3])]).unwrap_err();
    assert!(err.contains("kernel_shape [5, 5]"), "{err}");
    let op = conv(window(&[3, 3], &[1, 1], &[0; 4], &[1, 1]), 1);
    let err = infer(&op, &[&t("x", &[1, 1, 8, 8]), &t("w", &[2, 1, 3, 3]), &t("b", &[3])]).unwrap_err();
    assert!(err.contains("expected [2]"), "{err}");
    // A 9x9 window on a 4x4 input without padding does not fit.
    let op = conv(window(&[9, 9], &[1, 1], &[0; 4], &[1, 1]), 1);
    let err = infer(&op, &[&t("x", &[1, 1, 4, 4]), &t("w", &[2, 1, 9, 9])]).unwrap_err();
    assert!(err.contains("window spans 9"), "{err}");
}

#[test]
fn pool_ceil_mode_matches_onnxruntime() {
    // Expected sizes measured with onnxruntime 1.31 MaxPool (1-D, pads p/p):
    // (in, k, s, p) -> floor / ceil
    let cases = [
        // (5+2-2)/2 = 2.5: floor 3; ceil 4, but window 4 would start at 6 >= 5+1 -> 3
        (5, 2, 2, 1, 3, 3),
        // (6+2-3)/2 = 2.5: floor 3, ceil 4 (window 4 starts at 6 < 7)
        (6, 3, 2, 1, 3, 4),
        // (10+2-3)/4 = 2.25: floor 3, ceil 4 -> starts at 12 >= 11 -> 3
        (10, 3, 4, 1, 3, 3),
        // (32+2-3)/2 = 15.5: floor 16, ceil 17
        (32, 3, 2, 1, 16, 17),
    ];
    for (input, k, s, p, floor, ceil) in cases {
        for (ceil_mode, want) in [(false, floor), (true, ceil)] {
            let op = Op::Pool(Pool {
                kind: PoolKind::Max,
                window: window(&[k], &[s], &[p, p], &[1]),
                ceil_mode,
                count_include_pad: false,
                indices: None,
            });
            assert_eq!(
                shape_of(&op, &[&t("x", &[1, 2, input])]),
                vec![1, 2, want],
                "in {input} k {k} s {s} p {p} ceil {ceil_mode}"
            );
        }
    }
}

#[test]
fn pool_with_dilation_and_bad_pads() {
    // Dilation 2, k 3: effective 5; (9 - 5)/1 + 1 = 5.
    let op = Op::Pool(Pool {
        kind: PoolKind::Max,
        window: window(&[3, 3], &[1, 1], &[0; 4], &[2, 2]),
        ceil_mode: false,
        count_include_pad: false,
        indices: None,
    });
    assert_eq!(shape_of(&op, &[&t("x", &[1, 1, 9, 9])]), vec![1, 1, 5, 5]);
    let op = Op::Pool(Pool {
        kind: PoolKind::Average,
        window: window(&[2, 2], &[2, 2], &[2, 0, 0, 0], &[1, 1]),
        ceil_mode: false,
        count_include_pad: true,
        indices: None,
    });
    let err = infer(&op, &[&t("x", &[1, 1, 8, 8])]).unwrap_err();
    assert!(err.contains("smaller than the kernel"), "{err}");
}

#[test]
fn global_pools_keep_batch_and_channels() {
    assert_eq!(
        shape_of(&Op::GlobalPool(GlobalPool { kind: PoolKind::Average }), &[&t("x", &[2, 16, 7, 5])]),
        vec![2, 16, 1, 1]
    );
    assert_eq!(shape_of(&Op::GlobalPool(GlobalPool { kind: PoolKind::Max }), &[&t("x", &[2, 16, 7])]), vec![2, 16, 1]);
    assert!(infer(&Op::GlobalPool(GlobalPool { kind: PoolKind::Max }), &[&t("x", &[2, 16])]).is_err());
}

#[test]
fn gemm_honours_transposes_and_bias_broadcast() {
    let gemm = |ta, tb| Op::Gemm(Gemm { alpha: 1.0, beta: 1.0, trans_a: ta, trans_b: tb });
    // A [4,3], B^T: B stored [5,3] -> [3,5]; Y [4,5]; C [5] broadcasts to [4,5].
    let (a, b, c) = (t("a", &[4, 3]), t("b", &[5, 3]), t("c", &[5]));
    assert_eq!(shape_of(&gemm(false, true), &[&a, &b, &c]), vec![4, 5]);
    // transA: A stored [3,4] -> [4,3].
    assert_eq!(shape_of(&gemm(true, true), &[&t("a", &[3, 4]), &b]), vec![4, 5]);
    let err = infer(&gemm(false, false), &[&a, &b]).unwrap_err();
    assert!(err.contains("inner dimensions 3 and 5"), "{err}");
    let err = infer(&gemm(false, true), &[&a, &b, &t("c", &[4])]).unwrap_err();
    assert!(err.contains("does not broadcast to [4, 5]"), "{err}");
    // C of [4,1] broadcasts along N.
    assert_eq!(shape_of(&gemm(false, true), &[&a, &b, &t("c", &[4, 1])]), vec![4, 5]);
}

#[test]
fn matmul_broadcasts_batches_and_handles_vectors() {
    // numpy.matmul: (2,1,3,4) @ (5,4,6) -> (2,5,3,6)
    assert_eq!(shape_of(&Op::MatMul(MatMul), &[&t("a", &[2, 1, 3, 4]), &t("b", &[5, 4, 6])]), vec![2, 5, 3, 6]);
    // (4,) @ (2,4,6) -> (2,6); (2,3,4) @ (4,) -> (2,3); (4,) @ (4,) -> ()
    assert_eq!(shape_of(&Op::MatMul(MatMul), &[&t("a", &[4]), &t("b", &[2, 4, 6])]), vec![2, 6]);
    assert_eq!(shape_of(&Op::MatMul(MatMul), &[&t("a", &[2, 3, 4]), &t("b", &[4])]), vec![2, 3]);
    assert_eq!(shape_of(&Op::MatMul(MatMul), &[&t("a", &[4]), &t("b", &[4])]), Vec::<usize>::new());
    let err = infer(&Op::MatMul(MatMul), &[&t("a", &[3, 4]), &t("b", &[5, 6])]).unwrap_err();
    assert!(err.contains("inner dimensions 4 and 5"), "{err}");
    let err = infer(&Op::MatMul(MatMul), &[&t("a", &[2, 3, 4]), &t("b", &[3, 4, 6])]).unwrap_err();
    assert!(err.contains("do not broadcast"), "{err}");
}

#[test]
fn batch_norm_checks_parameter_shapes() {
    let x = t("x", &[1, 4, 5, 5]);
    let p = t("p", &[4]);
    let op = Op::BatchNormalization(BatchNormalization { epsilon: 1e-5 });
    assert_eq!(shape_of(&op, &[&x, &p, &p, &p, &p]), vec![1, 4, 5, 5]);
    let err = infer(&op, &[&x, &p, &p, &t("mean", &[3]), &p]).unwrap_err();
    assert!(err.contains("mean \"mean\"") && err.contains("expected [4]"), "{err}");
    assert!(infer(&op, &[&x, &p]).is_err());
}

#[test]
fn flatten_reshape_transpose() {
    let x = t("x", &[2, 3, 4, 5]);
    assert_eq!(shape_of(&Op::Flatten(Flatten { axis: 2 }), &[&x]), vec![6, 20]);
    assert_eq!(shape_of(&Op::Flatten(Flatten { axis: 0 }), &[&x]), vec![1, 120]);
    assert_eq!(shape_of(&Op::Flatten(Flatten { axis: 4 }), &[&x]), vec![120, 1]);
    assert!(infer(&Op::Flatten(Flatten { axis: 5 }), &[&x]).is_err());
    assert_eq!(shape_of(&Op::Reshape(Reshape { shape: vec![6, 20] }), &[&x]), vec![6, 20]);
    let err = infer(&Op::Reshape(Reshape { shape: vec![7, 20] }), &[&x]).unwrap_err();
    assert!(err.contains("120 elements") && err.contains("140 elements"), "{err}");
    assert_eq!(shape_of(&Op::Transpose(Transpose { perm: vec![0, 2, 3, 1] }), &[&x]), vec![2, 4, 5, 3]);
    assert!(infer(&Op::Transpose(Transpose { perm: vec![0, 0, 1, 2] }), &[&x]).is_err());
    assert!(infer(&Op::Transpose(Transpose { perm: vec![0, 1, 2] }), &[&x]).is_err());
}

#[test]
fn concat_sums_the_axis() {
    let op = Op::Concat(Concat { axis: 1 });
    let out = shape_of(&op, &[&t("a", &[2, 3, 4]), &t("b", &[2, 5, 4]), &t("c", &[2, 1, 4])]);
    assert_eq!(out, vec![2, 9, 4]);
    let err = infer(&op, &[&t("a", &[2, 3, 4]), &t("b", &[2, 3, 5])]).unwrap_err();
    assert!(err.contains("differ outside axis 1"), "{err}");
    let i = ti("i", DType::I64, &[2]);
    assert_eq!(infer(&Op::Concat(Concat { axis: 0 }), &[&i, &i]).unwrap(), vec![(DType::I64, vec![4])]);
}

#[test]
fn softmax_squeeze_unsqueeze() {
    let x = t("x", &[1, 10]);
    assert_eq!(shape_of(&Op::Softmax(Softmax { axis: 1, coerce_2d: true }), &[&x]), vec![1, 10]);
    assert!(infer(&Op::Softmax(Softmax { axis: 2, coerce_2d: false }), &[&x]).is_err());
    let y = t("y", &[1, 3, 1, 5]);
    assert_eq!(shape_of(&Op::Squeeze(Squeeze { axes: vec![0, 2] }), &[&y]), vec![3, 5]);
    let err = infer(&Op::Squeeze(Squeeze { axes: vec![1] }), &[&y]).unwrap_err();
    assert!(err.contains("has size 3, not 1"), "{err}");
    // Unsqueeze [3,5] at output axes 0 and 2 -> [1,3,1,5].
    assert_eq!(shape_of(&Op::Unsqueeze(Unsqueeze { axes: vec![2, 0] }), &[&t("z", &[3, 5])]), vec![1, 3, 1, 5]);
    assert!(infer(&Op::Unsqueeze(Unsqueeze { axes: vec![4] }), &[&t("z", &[3, 5])]).is_err());
    assert!(infer(&Op::Unsqueeze(Unsqueeze { axes: vec![1, 1] }), &[&t("z", &[3, 5])]).is_err());
}

#[test]
fn pad_accepts_negative_pads_and_checks_reflect() {
    let x = t("x", &[1, 3, 4, 4]);
    // out = dim + begin + end: H 4+1+2 = 7, W 4-1+0 = 3.
    let op = Op::Pad(Pad { pads: vec![0, 0, 1, -1, 0, 0, 2, 0], mode: PadMode::Constant, value: 0.0 });
    assert_eq!(shape_of(&op, &[&x]), vec![1, 3, 7, 3]);
    let op = Op::Pad(Pad { pads: vec![0, 0, 0, -3, 0, 0, 0, -2], mode: PadMode::Constant, value: 0.0 });
    assert!(infer(&op, &[&x]).unwrap_err().contains("negative size"));
    let op = Op::Pad(Pad { pads: vec![0, 0, 4, 0, 0, 0, 0, 0], mode: PadMode::Reflect, value: 0.0 });
    assert!(infer(&op, &[&x]).unwrap_err().contains("Reflect"));
    let op = Op::Pad(Pad { pads: vec![0, 0, 3, 0, 0, 0, 0, 0], mode: PadMode::Reflect, value: 0.0 });
    assert_eq!(shape_of(&op, &[&x]), vec![1, 3, 7, 4]);
    let op = Op::Pad(Pad { pads: vec![0, 0, 1, 1], mode: PadMode::Edge, value: 0.0 });
    assert!(infer(&op, &[&x]).unwrap_err().contains("expected 8"));
}

#[test]
fn absurd_attributes_are_errors_not_overflows() {
    let huge = usize::MAX / 2 + 1; // 2 * huge overflows
    assert!(window_output_len(8, 3, 1, 0, 0, huge, false).unwrap_err().contains("too large"));
    assert!(window_output_len(8, 3, 1, huge, huge, 1, false).unwrap_err().contains("too large"));
    // Stride 1, span usize::MAX - 2 in ceil mode: no overflow in the +1 or the last-start test.
    assert!(window_output_len(usize::MAX - 1, 1, 1, 0, 0, 1, true).is_ok());
    let op = conv(window(&[1], &[1], &[0, 0], &[1]), huge);
    let err = infer(&op, &[&t("x", &[1, 4, 4]), &t("w", &[4, 4, 1])]).unwrap_err();
    assert!(err.contains("weight expects too many"), "{err}");
    let err = infer(&Op::Reshape(Reshape { shape: vec![huge, huge, 0] }), &[&t("x", &[2])]).unwrap_err();
    assert!(err.contains("too many elements"), "{err}");
}

#[test]
fn float_only_ops_reject_integers() {
    let i = ti("i", DType::I64, &[3]);
    let err = infer(&Op::Unary(Unary::Sigmoid), &[&i]).unwrap_err();
    assert_eq!(err, "Sigmoid: \"i\" is int64, which Sigmoid does not take");
    assert_eq!(infer(&Op::Unary(Unary::Relu), &[&i]).unwrap(), vec![(DType::I64, vec![3])]);
    assert_eq!(infer(&Op::Unary(Unary::HardSwish), &[&t("x", &[2])]).unwrap(), vec![(DType::F32, vec![2])]);
    assert!(infer(&Op::Identity(Identity), &[]).unwrap_err().contains("expects 1 input(s), got 0"));
}
