//! ONNX import of the registered ops: attributes, constant inputs and opset differences.

use std::collections::BTreeMap;

use super::export::{
    attr_float as float_attr, attr_int as int_attr, attr_ints as ints_attr, attr_string as string_attr,
};
use super::*;
use crate::ir::{Tensor, TensorInfo};
use crate::onnx::proto::AttributeProto;
use crate::onnx::proto::NodeProto;
use crate::onnx::proto::attribute_proto::AttributeType;

fn node(op: &str, inputs: usize, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        input: (0..inputs).map(|i| format!("in{i}")).collect(),
        output: vec!["out".into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn view<'a>(name: &'a str, shape: &'a [usize], value: Option<&'a Tensor>) -> Option<InputView<'a>> {
    let dtype = value.map_or(DType::F32, Tensor::dtype);
    Some(InputView { name, dtype, shape, value })
}

fn lower_ir(node: &NodeProto, opset: i64, inputs: Vec<Option<InputView>>) -> Result<(Op, Vec<usize>), ImportError> {
    let external = BTreeMap::new();
    // Every output the node names is read.
    let used_outputs = node.output.iter().map(|o| !o.is_empty()).collect();
    let cx = NodeCx { node, opset, inputs, external: &external, used_outputs };
    match lower(&cx)? {
        Lowered::Ir { op, inputs } => Ok((op, inputs)),
        Lowered::Known(_) | Lowered::Branch(_) => panic!("expected an IR op"),
    }
}

#[test]
fn same_upper_and_lower_put_the_odd_pad_cell_at_opposite_ends() {
    // in 5, k 4, s 1: out 5, total = 4*1 + 3 + 1 - 5 = 3 -> UPPER (1, 2), LOWER (2, 1).
    for (mode, begin, end) in [("SAME_UPPER", 1, 2), ("SAME_LOWER", 2, 1)] {
        let n = node("MaxPool", 1, vec![ints_attr("kernel_shape", &[4]), string_attr("auto_pad", mode)]);
        let (op, _) = lower_ir(&n, 13, vec![view("x", &[1, 1, 5], None)]).unwrap();
        let Op::Pool(pool) = op else { panic!("{op:?}") };
        assert_eq!(pool.window.pads, vec![begin, end], "{mode}");
    }
    // in 7, k 3, s 2: out 4, total = 3*2 + 2 + 1 - 7 = 2 -> (1, 1).
    let n = node("Conv", 2, vec![ints_attr("strides", &[2]), string_attr("auto_pad", "SAME_UPPER")]);
    let (op, inputs) = lower_ir(&n, 13, vec![view("x", &[1, 1, 7], None), view("w", &[1, 1, 3], None)]).unwrap();
    let Op::Conv(c) = op else { panic!() };
    assert_eq!((c.window.kernel, c.window.pads, inputs), (vec![3], vec![1, 1], vec![0, 1]));
}

#[test]
fn clip_reads_attributes_before_opset_11_and_inputs_after() {
    let n = node("Clip", 1, vec![float_attr("min", -1.0), float_attr("max", 6.0)]);
    let (op, _) = lower_ir(&n, 6, vec![view("x", &[2], None)]).unwrap();
    assert_eq!(op, Op::Clip(Clip { min: -1.0, max: 6.0 }));
    let lo = Tensor::scalar_f32(0.0);
    let mut n = node("Clip", 3, vec![]);
    n.input[2] = String::new(); // max omitted
    let (op, inputs) = lower_ir(&n, 11, vec![view("x", &[2], None), view("lo", &[], Some(&lo)), None]).unwrap();
    assert_eq!((op, inputs), (Op::Clip(Clip { min: 0.0, max: f32::INFINITY }), vec![0]));
    // A bound computed at run time is read as an input.
    let (op, inputs) = lower_ir(&n, 11, vec![view("x", &[2], None), view("lo", &[], None), None]).unwrap();
    assert_eq!((op, inputs), (Op::ClipBounds(crate::ops::ClipBounds { min: true, max: false }), vec![0, 1]));
}

#[test]
fn reshape_resolves_zero_and_minus_one() {
    let target = Tensor::from_i64(vec![3], vec![0, -1, 2]);
    let n = node("Reshape", 2, vec![]);
    // [2, 3, 4] -> [2 (copied), 24 / (2*2) = 6, 2]
    let (op, _) = lower_ir(&n, 13, vec![view("x", &[2, 3, 4], None), view("s", &[3], Some(&target))]).unwrap();
    assert_eq!(op, Op::Reshape(Reshape { shape: vec![2, 6, 2] }));
    let bad = Tensor::from_i64(vec![2], vec![-1, -1]);
    let err = lower_ir(&n, 13, vec![view("x", &[2, 3, 4], None), view("s", &[2], Some(&bad))]).unwrap_err();
    assert!(err.message.contains("more than one -1"), "{}", err.message);
}

#[test]
fn pad_attributes_before_11_and_axes_from_18() {
    let n = node("Pad", 1, vec![ints_attr("pads", &[0, 1, 0, 2]), string_attr("mode", "edge")]);
    let (op, _) = lower_ir(&n, 2, vec![view("x", &[2, 2], None)]).unwrap();
    assert_eq!(op, Op::Pad(Pad { pads: vec![0, 1, 0, 2], mode: PadMode::Edge, value: 0.0 }));
    // axes [-1] on rank 3 = axis 2: pads [1, 2] -> [0, 0, 1, 0, 0, 2]
    let pads = Tensor::from_i64(vec![2], vec![1, 2]);
    let value = Tensor::from_f32(vec![], vec![0.5]);
    let ax = Tensor::from_i64(vec![1], vec![-1]);
    let n = node("Pad", 4, vec![]);
    let inputs = vec![
        view("x", &[1, 2, 3], None),
        view("p", &[2], Some(&pads)),
        view("v", &[], Some(&value)),
        view("a", &[1], Some(&ax)),
    ];
    let (op, inputs) = lower_ir(&n, 18, inputs).unwrap();
    assert_eq!(op, Op::Pad(Pad { pads: vec![0, 0, 1, 0, 0, 2], mode: PadMode::Constant, value: 0.5 }));
    assert_eq!(inputs, vec![0]);
    let n = node("Pad", 2, vec![string_attr("mode", "wrap")]);
    let err = lower_ir(&n, 19, vec![view("x", &[3], None), view("p", &[2], Some(&pads))]).unwrap_err();
    assert!(err.message.contains("\"wrap\""), "{}", err.message);
}

#[test]
fn squeeze_and_unsqueeze_axes_by_opset() {
    let n = node("Unsqueeze", 1, vec![ints_attr("axes", &[-1])]);
    let (op, _) = lower_ir(&n, 11, vec![view("x", &[3], None)]).unwrap();
    assert_eq!(op, Op::Unsqueeze(Unsqueeze { axes: vec![1] }));
    let n = node("Squeeze", 1, vec![]);
    let (op, _) = lower_ir(&n, 13, vec![view("x", &[1, 3, 1], None)]).unwrap();
    assert_eq!(op, Op::Squeeze(Squeeze { axes: vec![0, 2] }));
    let n = node("Unsqueeze", 1, vec![ints_attr("axes", &[0])]);
    assert!(lower_ir(&n, 13, vec![view("x", &[3], None)]).is_err());
}

#[test]
fn unknown_attributes_and_bad_axes_are_reported() {
    let n = node("Softmax", 1, vec![ints_attr("axes", &[1])]);
    let err = lower_ir(&n, 13, vec![view("x", &[1, 10], None)]).unwrap_err();
    assert!(err.message.contains("unknown attribute \"axes\""), "{}", err.message);
    let mut n = node("Flatten", 1, vec![]);
    n.attribute.push(AttributeProto {
        name: Some("axis".into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(-4),
        ..Default::default()
    });
    let err = lower_ir(&n, 13, vec![view("x", &[1, 2, 3], None)]).unwrap_err();
    assert!(err.message.contains("out of range [-3, 3]"), "{}", err.message);
}

#[test]
fn opset_7_to_10_forms_read_their_attributes() {
    // Slice-1: starts/ends/axes attributes (no steps), axes [-1] on rank 2 = axis 1.
    let n = node("Slice", 1, vec![ints_attr("starts", &[1]), ints_attr("ends", &[3]), ints_attr("axes", &[-1])]);
    let (op, inputs) = lower_ir(&n, 9, vec![view("x", &[2, 4], None)]).unwrap();
    assert_eq!(op, Op::Slice(Slice { starts: vec![1], ends: vec![3], axes: vec![1], steps: vec![1] }));
    assert_eq!(inputs, vec![0]);
    // TopK-1: k is an attribute; largest and sorted did not exist (always true).
    let n = node("TopK", 1, vec![int_attr("k", 2)]);
    let (op, _) = lower_ir(&n, 9, vec![view("x", &[3, 5], None)]).unwrap();
    assert_eq!(op, Op::TopK(TopK { axis: 1, k: 2, largest: true, sorted: true }));
    // BatchNormalization-7: spatial=1 is the only form imported; spatial=0 is a diagnostic.
    let stats = || (0..5).map(|i| view(["x", "s", "b", "m", "v"][i], if i == 0 { &[1, 2, 3, 3] } else { &[2] }, None));
    let n = node("BatchNormalization", 5, vec![int_attr("spatial", 1)]);
    assert!(lower_ir(&n, 7, stats().collect()).is_ok());
    let n = node("BatchNormalization", 5, vec![int_attr("spatial", 0)]);
    let err = lower_ir(&n, 7, stats().collect()).unwrap_err();
    assert!(err.message.contains("spatial=0"), "{}", err.message);
}

#[test]
fn legacy_scatter_is_scatter_elements_under_its_old_name() {
    // Scatter-9: ScatterElements with no reduction attribute.
    let n = node("Scatter", 3, vec![int_attr("axis", 1)]);
    let inputs = vec![view("d", &[2, 3], None), view("i", &[2, 1], None), view("u", &[2, 1], None)];
    let (op, read) = lower_ir(&n, 9, inputs).unwrap();
    assert_eq!(read, vec![0, 1, 2]);
    assert_eq!(op.type_name(), "Scatter");
    let Op::Scatter(s) = op else { panic!("{op:?}") };
    assert_eq!((s.axis, s.reduction), (Some(1), ScatterReduction::None));
    let n = node(
        "Scatter",
        3,
        vec![
            int_attr("axis", 1),
            AttributeProto {
                name: Some("reduction".into()),
                r#type: Some(AttributeType::String as i32),
                s: Some(b"add".to_vec()),
                ..Default::default()
            },
        ],
    );
    let inputs = vec![view("d", &[2, 3], None), view("i", &[2, 1], None), view("u", &[2, 1], None)];
    assert!(lower_ir(&n, 11, inputs).is_err());
}

#[test]
fn non_max_suppression_folds_known_boxes_and_explains_run_time_ones() {
    // Two overlapping unit boxes (IoU 0.9 / 1.1 > 0.5) and a far one: boxes 0 and 2 survive.
    let boxes = Tensor::from_f32(vec![1, 3, 4], vec![0.0, 0.0, 1.0, 1.0, 0.1, 0.0, 1.1, 1.0, 5.0, 5.0, 6.0, 6.0]);
    let scores = Tensor::from_f32(vec![1, 1, 3], vec![0.9, 0.8, 0.7]);
    let max = Tensor::from_i64(vec![1], vec![10]);
    let iou = Tensor::from_f32(vec![1], vec![0.5]);
    let n = node("NonMaxSuppression", 4, vec![]);
    let external = BTreeMap::new();
    let inputs = vec![
        view("b", &[1, 3, 4], Some(&boxes)),
        view("s", &[1, 1, 3], Some(&scores)),
        view("m", &[1], Some(&max)),
        view("i", &[1], Some(&iou)),
    ];
    let cx = NodeCx { node: &n, opset: 11, inputs, external: &external, used_outputs: vec![] };
    let Ok(Lowered::Known(values)) = lower(&cx) else { panic!("NonMaxSuppression should fold") };
    assert_eq!(values[0].shape, vec![2, 3]);
    assert_eq!(values[0].to_i64_vec().unwrap(), [0, 0, 0, 0, 0, 2]);
    let inputs = vec![view("b", &[1, 3, 4], None), view("s", &[1, 1, 3], Some(&scores))];
    let n = node("NonMaxSuppression", 2, vec![]);
    let cx = NodeCx { node: &n, opset: 11, inputs, external: &external, used_outputs: vec![] };
    let Err(err) = lower(&cx) else { panic!("run-time boxes cannot fold") };
    assert!(err.message.contains("data-dependent"), "{}", err.message);
}

#[test]
fn max_pool_makes_indices_only_when_they_are_read() {
    let mut n = node("MaxPool", 1, vec![ints_attr("kernel_shape", &[2]), int_attr("storage_order", 1)]);
    n.output.push("indices".into());
    let (op, _) = lower_ir(&n, 12, vec![view("x", &[1, 1, 4], None)]).unwrap();
    let Op::Pool(pool) = &op else { panic!("{op:?}") };
    assert_eq!(pool.indices, Some(StorageOrder::ColumnMajor));
    let x = TensorInfo { name: "x".into(), dtype: DType::F32, shape: vec![1, 1, 4] };
    assert_eq!(op.infer(&[&x]).unwrap(), vec![(DType::F32, vec![1, 1, 3]), (DType::I64, vec![1, 1, 3])]);
    // Named but unread: the single-output op.
    let external = BTreeMap::new();
    let inputs = vec![view("x", &[1, 1, 4], None)];
    let cx = NodeCx { node: &n, opset: 12, inputs, external: &external, used_outputs: vec![true, false] };
    let Ok(Lowered::Ir { op: Op::Pool(pool), .. }) = lower(&cx) else { panic!("MaxPool should import") };
    assert_eq!(pool.indices, None);
    let n = node("MaxPool", 1, vec![ints_attr("kernel_shape", &[2]), int_attr("storage_order", 2)]);
    assert!(lower_ir(&n, 12, vec![view("x", &[1, 1, 4], None)]).is_err());
}

#[test]
fn max_unpool_folds_a_known_output_shape_and_asks_for_a_run_time_one() {
    let shape = Tensor::from_i64(vec![4], vec![1, 1, 5, 5]);
    let attrs = || vec![ints_attr("kernel_shape", &[2, 2]), ints_attr("strides", &[2, 2])];
    let n = node("MaxUnpool", 3, attrs());
    let inputs = vec![view("x", &[1, 1, 2, 2], None), view("i", &[1, 1, 2, 2], None), view("s", &[4], Some(&shape))];
    let (op, read) = lower_ir(&n, 11, inputs).unwrap();
    assert_eq!(read, vec![0, 1]);
    let Op::MaxUnpool(unpool) = op else { panic!("{op:?}") };
    assert_eq!((unpool.output_shape, unpool.pads), (Some(vec![1, 1, 5, 5]), vec![0; 4]));
    let inputs = vec![view("x", &[1, 1, 2, 2], None), view("i", &[1, 1, 2, 2], None), view("s", &[4], None)];
    let err = lower_ir(&n, 11, inputs).unwrap_err();
    assert_eq!(err.needs_value_of.as_deref(), Some("s"), "{err:?}");
    // The kernel must cover X's spatial axes.
    let n = node("MaxUnpool", 2, vec![ints_attr("kernel_shape", &[2])]);
    let err = lower_ir(&n, 9, vec![view("x", &[1, 1, 2, 2], None), view("i", &[1, 1, 2, 2], None)]).unwrap_err();
    assert!(err.message.contains("rank 4"), "{}", err.message);
}

#[test]
fn col2im_needs_known_shapes_and_checks_them() {
    let image = Tensor::from_i64(vec![2], vec![5, 5]);
    let block = Tensor::from_i64(vec![2], vec![1, 5]);
    let n = node("Col2Im", 3, vec![ints_attr("pads", &[0, 1, 0, 1])]);
    let inputs = vec![view("x", &[1, 5, 15], None), view("im", &[2], Some(&image)), view("b", &[2], Some(&block))];
    let (op, read) = lower_ir(&n, 18, inputs).unwrap();
    assert_eq!(read, vec![0]);
    let Op::Col2Im(c) = op else { panic!("{op:?}") };
    assert_eq!((c.image, c.block, c.pads, c.strides), (vec![5, 5], vec![1, 5], vec![0, 1, 0, 1], vec![1, 1]));
    // A run-time image shape names the input that would fix it.
    let inputs = vec![view("x", &[1, 5, 15], None), view("im", &[2], None), view("b", &[2], Some(&block))];
    let err = lower_ir(&n, 18, inputs).unwrap_err();
    assert_eq!(err.needs_value_of.as_deref(), Some("im"), "{err:?}");
    assert!(err.hint.is_some());
    // Mismatched axis counts and non-positive sizes are attribute errors.
    let short = Tensor::from_i64(vec![1], vec![5]);
    let inputs = vec![view("x", &[1, 5, 15], None), view("im", &[2], Some(&image)), view("b", &[1], Some(&short))];
    assert!(lower_ir(&n, 18, inputs).unwrap_err().message.contains("same"));
    let zero = Tensor::from_i64(vec![2], vec![0, 5]);
    let inputs = vec![view("x", &[1, 5, 15], None), view("im", &[2], Some(&zero)), view("b", &[2], Some(&block))];
    assert!(lower_ir(&n, 18, inputs).is_err());
}

#[test]
fn roi_align_modes_by_opset() {
    let inputs = || vec![view("x", &[1, 1, 4, 4], None), view("r", &[2, 4], None), view("b", &[2], None)];
    // Opset 10: no coordinate_transformation_mode, output_half_pixel behaviour; defaults.
    let n = node("RoiAlign", 3, vec![]);
    let (op, read) = lower_ir(&n, 10, inputs()).unwrap();
    assert_eq!(read, vec![0, 1, 2]);
    let want = RoiAlign {
        mode: RoiPooling::Average,
        output_height: 1,
        output_width: 1,
        sampling_ratio: 0,
        spatial_scale: 1.0,
        half_pixel: false,
    };
    assert_eq!(op, Op::RoiAlign(want.clone()));
    let n = node("RoiAlign", 3, vec![string_attr("coordinate_transformation_mode", "half_pixel")]);
    assert!(lower_ir(&n, 10, inputs()).unwrap_err().message.contains("unknown attribute"));
    // Opset 16: half_pixel by default.
    let n = node("RoiAlign", 3, vec![string_attr("mode", "max"), int_attr("output_height", 7)]);
    let (op, _) = lower_ir(&n, 16, inputs()).unwrap();
    let want = RoiAlign { mode: RoiPooling::Max, output_height: 7, half_pixel: true, ..want };
    assert_eq!(op, Op::RoiAlign(want));
    for bad in [
        string_attr("mode", "sum"),
        string_attr("coordinate_transformation_mode", "align_corners"),
        int_attr("output_width", 0),
        int_attr("sampling_ratio", -1),
    ] {
        assert!(lower_ir(&node("RoiAlign", 3, vec![bad]), 16, inputs()).is_err());
    }
}

#[test]
fn bit_cast_between_types_of_different_widths_is_refused_with_a_hint() {
    let n = node("BitCast", 1, vec![int_attr("to", 7)]); // int64
    let err = lower_ir(&n, 26, vec![view("x", &[2], None)]).unwrap_err();
    assert!(err.message.contains("float32 (32 bits) to int64 (64 bits)"), "{}", err.message);
    assert!(err.hint.as_deref().is_some_and(|h| h.contains("Cast")));
    let n = node("BitCast", 1, vec![int_attr("to", 6)]); // int32
    let (op, _) = lower_ir(&n, 26, vec![view("x", &[2], None)]).unwrap();
    assert_eq!(op, Op::BitCast(crate::ops::BitCast { to: DType::I32 }));
}
