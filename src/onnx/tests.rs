//! Import tests on small hand-built `ModelProto`s (the tricky paths) and on the fixture
//! models under `examples/` and `tests/data/`.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;

use super::proto::attribute_proto::AttributeType;
use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::tensor_shape_proto::{Dimension, dimension};
use super::proto::type_proto;
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::{ErrorKind, ImportError, decode_model, external_data_files, import};
use crate::ir::{DType, Graph, Op, PadMode, Tensor};

// ---- builders ----

pub(super) enum D {
    N(i64),
    S(&'static str),
}

pub(super) fn value_info(name: &str, elem: DataType, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: None,
            value: Some(match d {
                D::N(v) => dimension::Value::DimValue(*v),
                D::S(s) => dimension::Value::DimParam(s.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

pub(super) fn f32_input(name: &str, dims: &[i64]) -> ValueInfoProto {
    value_info(name, DataType::Float, &dims.iter().map(|&d| D::N(d)).collect::<Vec<_>>())
}

/// An output with no declared type (shape inference decides).
pub(super) fn output(name: &str) -> ValueInfoProto {
    ValueInfoProto { name: Some(name.into()), ..Default::default() }
}

pub(super) fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(t),
        ..Default::default()
    }
}

pub(super) fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

pub(super) fn model(opset: i64, graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(graph),
        ..Default::default()
    }
}

pub(super) fn graph(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> GraphProto {
    GraphProto {
        node: nodes,
        initializer: inits,
        input: inputs,
        output: outputs.iter().map(|o| output(o)).collect(),
        name: Some("test".into()),
        ..Default::default()
    }
}

pub(super) fn no_files() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::new()
}

fn no_symbols() -> BTreeMap<String, usize> {
    BTreeMap::new()
}

pub(super) fn import_ok(m: &ModelProto) -> Graph {
    match import(m, &no_files(), &no_symbols()) {
        Ok(g) => g,
        Err(errors) => panic!("import failed: {errors:#?}"),
    }
}

pub(super) fn import_err(m: &ModelProto) -> Vec<ImportError> {
    match import(m, &no_files(), &no_symbols()) {
        Ok(g) => panic!("import succeeded: {g:#?}"),
        Err(errors) => errors,
    }
}

fn shape_of(g: &Graph, name: &str) -> Vec<usize> {
    let id = g.names()[name];
    g.info(id).shape.clone()
}

pub(super) fn node_ops(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.type_name()).collect()
}

// ---- hand-built models ----

#[test]
fn conv_takes_kernel_shape_from_the_weight_and_unnamed_nodes_get_names() {
    // x [1,2,5,5], W [4,2,3,3], pads 1: (5 + 2 - 3)/1 + 1 = 5.
    let nodes = vec![
        node("Conv", "", &["x", "w", "b"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]),
        node("Relu", "", &["c"], &["y"], vec![]),
    ];
    let inits = vec![f32_tensor("w", &[4, 2, 3, 3], &[0.5; 72]), f32_tensor("b", &[4], &[0.0; 4])];
    let g = import_ok(&model(13, graph(nodes, inits, vec![f32_input("x", &[1, 2, 5, 5])], &["y"])));
    assert_eq!(g.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["Conv_0", "Relu_1"]);
    let Op::Conv(conv) = &g.nodes[0].op else { panic!() };
    assert_eq!(conv.window.kernel, vec![3, 3]);
    assert_eq!(shape_of(&g, "y"), vec![1, 4, 5, 5]);
    assert_eq!(g.constants.len(), 2);
    assert_eq!(g.constant(g.names()["b"]), Some(&Tensor::from_f32(vec![4], vec![0.0; 4])));
}

#[test]
fn external_data_is_read_at_offset_and_length() {
    // Layout of "weights.bin": 16 junk bytes, then W (2 floats), then 4 junk bytes.
    let mut file = vec![0xEEu8; 16];
    file.extend([3.0f32, -1.0].iter().flat_map(|v| v.to_le_bytes()));
    file.extend([0xEEu8; 4]);
    let entry = |k: &str, v: &str| StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) };
    let w = TensorProto {
        name: Some("w".into()),
        dims: vec![2],
        data_type: Some(DataType::Float as i32),
        data_location: Some(DataLocation::External as i32),
        external_data: vec![entry("location", "weights.bin"), entry("offset", "16"), entry("length", "8")],
        ..Default::default()
    };
    let m = model(
        13,
        graph(vec![node("Mul", "m", &["x", "w"], &["y"], vec![])], vec![w], vec![f32_input("x", &[2])], &["y"]),
    );
    assert_eq!(external_data_files(&m), vec!["weights.bin".to_string()]);
    let files = BTreeMap::from([("weights.bin".to_string(), file)]);
    let g = import(&m, &files, &no_symbols()).unwrap();
    assert_eq!(g.constant(g.names()["w"]), Some(&Tensor::from_f32(vec![2], vec![3.0, -1.0])));

    let errors = import_err(&m);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::MissingExternalData);
    assert!(errors[0].message.contains("weights.bin"), "{}", errors[0].message);
    assert_eq!(errors[0].node.as_deref(), Some("m"));
}

#[test]
fn external_data_files_skips_locations_outside_the_model_directory() {
    let ext = |name: &str, loc: &str| TensorProto {
        name: Some(name.into()),
        data_location: Some(DataLocation::External as i32),
        external_data: vec![StringStringEntryProto { key: Some("location".into()), value: Some(loc.into()) }],
        ..Default::default()
    };
    let m = model(
        13,
        graph(vec![], vec![ext("a", "b.bin"), ext("b", "a.bin"), ext("c", "b.bin"), ext("d", "../x.bin")], vec![], &[]),
    );
    assert_eq!(external_data_files(&m), vec!["a.bin".to_string(), "b.bin".to_string()]);
}

#[test]
fn opset_11_clip_takes_bounds_from_constant_inputs() {
    // ReLU6 as torch exports it at opset 11: Clip(x, Constant 0, Constant 6); a second Clip
    // with only a max (min omitted with an empty name).
    let nodes = vec![
        node("Constant", "lo", &[], &["zero"], vec![attr_tensor("value", f32_tensor("", &[], &[0.0]))]),
        node("Clip", "relu6", &["x", "zero", "six"], &["r"], vec![]),
        node("Clip", "cap", &["r", "", "five"], &["y"], vec![]),
    ];
    let inits = vec![f32_tensor("six", &[], &[6.0]), f32_tensor("five", &[], &[5.0])];
    let g = import_ok(&model(11, graph(nodes, inits, vec![f32_input("x", &[1, 3])], &["y"])));
    assert_eq!(g.nodes[0].op, Op::Clip(crate::ops::Clip { min: 0.0, max: 6.0 }));
    assert_eq!(g.nodes[1].op, Op::Clip(crate::ops::Clip { min: f32::NEG_INFINITY, max: 5.0 }));
    // The bounds are attributes now: no constant tensors remain.
    assert!(g.constants.is_empty());
    assert_eq!(g.tensors.len(), 3);
}

#[test]
fn opset_11_pad_takes_pads_and_value_from_inputs() {
    let nodes = vec![node("Pad", "pad", &["x", "pads", "v"], &["y"], vec![])];
    let inits = vec![i64_tensor("pads", &[8], &[0, 0, 1, 2, 0, 0, 3, -1]), f32_tensor("v", &[], &[0.25])];
    let g = import_ok(&model(11, graph(nodes, inits, vec![f32_input("x", &[1, 1, 4, 4])], &["y"])));
    assert_eq!(
        g.nodes[0].op,
        Op::Pad(crate::ops::Pad { pads: vec![0, 0, 1, 2, 0, 0, 3, -1], mode: PadMode::Constant, value: 0.25 })
    );
    // H: 4 + 1 + 3 = 8; W: 4 + 2 - 1 = 5.
    assert_eq!(shape_of(&g, "y"), vec![1, 1, 8, 5]);
    assert_eq!(g.tensors.len(), 2);
}

#[test]
fn softmax_default_axis_and_coercion_depend_on_the_opset() {
    let m = |opset| {
        model(
            opset,
            graph(vec![node("Softmax", "s", &["x"], &["y"], vec![])], vec![], vec![f32_input("x", &[2, 3, 4])], &["y"]),
        )
    };
    // Opset 11: axis defaults to 1 and the input is coerced to 2-D there.
    assert_eq!(import_ok(&m(11)).nodes[0].op, Op::Softmax(crate::ops::Softmax { axis: 1, coerce_2d: true }));
    // Opset 13: axis defaults to -1 (normalized to 2), no coercion.
    assert_eq!(import_ok(&m(13)).nodes[0].op, Op::Softmax(crate::ops::Softmax { axis: 2, coerce_2d: false }));
}

/// `x.view(x.size(0), -1)` as torch exports it (opset 11):
/// Shape -> Gather(0) -> Unsqueeze -> Concat(with [-1]) -> Reshape.
fn torch_flatten_model() -> ModelProto {
    let nodes = vec![
        node("Relu", "relu", &["x"], &["r"], vec![]),
        node("Shape", "shape", &["r"], &["s"], vec![]),
        node("Constant", "c0", &[], &["zero"], vec![attr_tensor("value", i64_tensor("", &[], &[0]))]),
        node("Gather", "gather", &["s", "zero"], &["n"], vec![attr_int("axis", 0)]),
        node("Unsqueeze", "unsq", &["n"], &["n1"], vec![attr_ints("axes", &[0])]),
        node("Constant", "c1", &[], &["minus1"], vec![attr_tensor("value", i64_tensor("", &[1], &[-1]))]),
        node("Concat", "cat", &["n1", "minus1"], &["target"], vec![attr_int("axis", 0)]),
        node("Reshape", "reshape", &["r", "target"], &["y"], vec![]),
    ];
    model(11, graph(nodes, vec![], vec![f32_input("x", &[2, 3, 4, 4])], &["y"]))
}

#[test]
fn torch_shape_arithmetic_is_evaluated_at_import() {
    let g = import_ok(&torch_flatten_model());
    // Only the float ops remain; the target [2, -1] resolved to [2, 48].
    assert_eq!(node_ops(&g), ["Relu", "Reshape"]);
    assert_eq!(g.nodes[1].op, Op::Reshape(crate::ops::Reshape { shape: vec![2, 48] }));
    assert_eq!(shape_of(&g, "y"), vec![2, 48]);
    assert!(g.tensors.iter().all(|t| t.dtype == DType::F32));
    assert_eq!(g.tensors.len(), 3);
}

#[test]
fn integer_arithmetic_on_shapes_folds_but_float_constants_stay() {
    // x [1, 6, 4]: target = Concat([1], Cast(Cast(Shape(x)[1:] / [2, 1] * [2, 1]))) = [1, 6, 4],
    // through Slice, Div, Mul, Cast and Concat on int64 values.
    let nodes = vec![
        node("Shape", "shape", &["x"], &["s"], vec![]),
        node("Slice", "slice", &["s", "one", "big"], &["tail"], vec![]),
        node("Div", "div", &["tail", "two_one"], &["half"], vec![]),
        node("Mul", "mul", &["half", "two_one"], &["back"], vec![]),
        node("Cast", "cast", &["back"], &["back32"], vec![attr_int("to", DataType::Int32 as i64)]),
        node("Cast", "cast64", &["back32"], &["back64"], vec![attr_int("to", DataType::Int64 as i64)]),
        node("Concat", "cat", &["lead", "back64"], &["target"], vec![attr_int("axis", 0)]),
        node("Reshape", "reshape", &["x", "target"], &["r"], vec![]),
        // A float op on constants only: stays in the graph for the optimize stage.
        node("Add", "const_add", &["k", "k"], &["k2"], vec![]),
        node("Add", "add", &["r", "k2"], &["y"], vec![]),
    ];
    let inits = vec![
        i64_tensor("one", &[1], &[1]),
        i64_tensor("big", &[1], &[i64::MAX]),
        i64_tensor("two_one", &[2], &[2, 1]),
        i64_tensor("lead", &[1], &[1]),
        f32_tensor("k", &[1], &[0.5]),
    ];
    let g = import_ok(&model(13, graph(nodes, inits, vec![f32_input("x", &[1, 6, 4])], &["y"])));
    assert_eq!(node_ops(&g), ["Reshape", "Add", "Add"]);
    assert_eq!(g.nodes[0].op, Op::Reshape(crate::ops::Reshape { shape: vec![1, 6, 4] }));
    assert!(g.is_constant(g.names()["k"]));
    assert!(!g.names().contains_key("target"));
}

#[test]
fn every_unsupported_op_is_reported_at_once() {
    // Scan (unsupported) feeds StringNormalizer (unsupported, still reported) feeds Relu (supported:
    // skipped quietly); a com.microsoft op and a Conv with a bad attribute are separate.
    let nodes = vec![
        node("Scan", "scan", &["x"], &["h"], vec![]),
        node("StringNormalizer", "", &["h"], &["e"], vec![]),
        node("Relu", "relu_after", &["e"], &["y1"], vec![]),
        NodeProto { domain: Some("com.microsoft".into()), ..node("FusedConv", "fused", &["x"], &["y2"], vec![]) },
        node("Sigmoid", "ok", &["x"], &["y3"], vec![]),
        node("Unique", "uq", &["y3"], &["y4"], vec![]),
    ];
    let mut m = model(13, graph(nodes, vec![], vec![f32_input("x", &[1, 4])], &["y1", "y2", "y4"]));
    m.opset_import.push(OperatorSetIdProto { domain: Some("com.microsoft".into()), version: Some(1) });
    let errors = import_err(&m);
    let listed: Vec<(Option<&str>, Option<&str>)> =
        errors.iter().map(|e| (e.node.as_deref(), e.op_type.as_deref())).collect();
    assert_eq!(
        listed,
        [
            (Some("scan"), Some("Scan")),
            (Some("StringNormalizer_1"), Some("StringNormalizer")),
            (Some("fused"), Some("FusedConv")),
            (Some("uq"), Some("Unique")),
        ]
    );
    assert!(errors.iter().all(|e| e.kind == ErrorKind::UnsupportedOp));
    assert!(
        errors[2].message.contains("com.microsoft") && errors[2].message.contains("opset 1"),
        "{}",
        errors[2].message
    );
    // Ops left out by design say why (src/ops/excluded.rs).
    assert!(errors[0].hint.as_deref().unwrap_or("").contains("control flow"), "{:?}", errors[0].hint);
    assert!(errors[3].hint.as_deref().unwrap_or("").contains("static shapes"), "{:?}", errors[3].hint);
    // Any other unknown op lists what qairt imports.
    let nodes = vec![node("Frobnicate", "f", &["x"], &["y"], vec![])];
    let errors = import_err(&model(13, graph(nodes, vec![], vec![f32_input("x", &[1, 4])], &["y"])));
    assert!(errors[0].hint.as_deref().unwrap_or("").contains("Conv"), "{:?}", errors[0].hint);
}

#[test]
fn truncated_and_garbage_bytes_give_errors_not_panics() {
    let bytes = torch_flatten_model().encode_to_vec();
    assert!(decode_model(&bytes).is_ok());
    assert_eq!(decode_model(&[]).unwrap_err().kind, ErrorKind::Truncated);
    // Cutting inside the graph message leaves a length prefix promising more than is there.
    let cut = decode_model(&bytes[..bytes.len() / 2]).unwrap_err();
    assert_eq!(cut.kind, ErrorKind::Truncated, "{cut}");
    // Every prefix either fails cleanly or imports cleanly.
    for len in 0..bytes.len() {
        if let Ok(m) = decode_model(&bytes[..len]) {
            let _ = import(&m, &no_files(), &no_symbols());
        }
    }
    // Deterministic byte corruption (a fixed LCG): never a panic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut corrupt = bytes.clone();
        for _ in 0..3 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let at = (state >> 33) as usize % corrupt.len();
            corrupt[at] = (state >> 20) as u8;
        }
        if let Ok(m) = decode_model(&corrupt) {
            let _ = import(&m, &no_files(), &no_symbols());
        }
    }
    let garbage = decode_model(b"this is not an onnx file at all, just text").unwrap_err();
    assert!(matches!(garbage.kind, ErrorKind::Malformed | ErrorKind::Truncated), "{garbage}");
    assert!(garbage.hint.is_some());
}

#[test]
fn symbolic_dims_need_define_symbols() {
    let x = value_info("x", DataType::Float, &[D::S("batch"), D::N(3), D::S("len")]);
    let x2 = value_info("x2", DataType::Float, &[D::S("batch"), D::N(3), D::N(1)]);
    let m = model(13, graph(vec![node("Add", "add", &["x", "x2"], &["y"], vec![])], vec![], vec![x, x2], &["y"]));
    let errors = import_err(&m);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors.iter().all(|e| e.kind == ErrorKind::UnresolvedSymbol));
    assert_eq!(
        errors[0].message,
        "symbolic dimension \"batch\" (input \"x\" axis 0, input \"x2\" axis 0) has no value"
    );
    assert!(errors[0].hint.as_deref().unwrap_or("").contains("define_symbols = { batch = 1 }"));
    let symbols = BTreeMap::from([("batch".to_string(), 2), ("len".to_string(), 7)]);
    let g = import(&m, &no_files(), &symbols).unwrap();
    assert_eq!(shape_of(&g, "x"), vec![2, 3, 7]);
    assert_eq!(shape_of(&g, "y"), vec![2, 3, 7]);
}

#[test]
fn initializers_listed_as_inputs_are_constants() {
    let nodes = vec![node("Add", "add", &["x", "bias"], &["y"], vec![])];
    let inputs = vec![f32_input("x", &[2]), f32_input("bias", &[2])];
    let g = import_ok(&model(13, graph(nodes, vec![f32_tensor("bias", &[2], &[1.0, 2.0])], inputs, &["y"])));
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.name(g.inputs[0]), "x");
    assert!(g.is_constant(g.names()["bias"]));
}

#[test]
fn declared_shapes_are_checked() {
    let mut gp = graph(vec![node("Relu", "relu", &["x"], &["y"], vec![])], vec![], vec![f32_input("x", &[1, 4])], &[]);
    gp.output = vec![f32_input("y", &[1, 5])];
    let errors = import_err(&model(13, gp.clone()));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::ShapeError);
    assert!(
        errors[0].message.contains("tensor \"y\"") && errors[0].message.contains("[1, 5]"),
        "{}",
        errors[0].message
    );
    // A symbolic declared dim matches anything when the symbol is not defined.
    gp.output = vec![value_info("y", DataType::Float, &[D::S("n"), D::N(4)])];
    import_ok(&model(13, gp.clone()));
    // A declared dtype that disagrees.
    gp.output = vec![value_info("y", DataType::Int64, &[D::N(1), D::N(4)])];
    assert!(import_err(&model(13, gp)).iter().any(|e| e.message.contains("INT64")));
}

#[test]
fn opsets_out_of_range_are_rejected() {
    let g = graph(vec![node("Relu", "r", &["x"], &["y"], vec![])], vec![], vec![f32_input("x", &[1])], &["y"]);
    let errors = import_err(&model(6, g.clone()));
    assert_eq!(errors[0].kind, ErrorKind::UnsupportedOpset);
    assert!(errors[0].message.contains("opset 6"), "{}", errors[0].message);
    assert!(errors[0].hint.as_deref().unwrap_or("").contains("version_converter"), "{:?}", errors[0].hint);
    import_ok(&model(7, g.clone()));
    assert_eq!(import_err(&model(99, g.clone()))[0].kind, ErrorKind::UnsupportedOpset);
    let mut m = model(13, g);
    m.opset_import.clear();
    assert_eq!(import_err(&m)[0].kind, ErrorKind::UnsupportedOpset);
}

#[test]
fn a_model_of_training_ops_only_names_them() {
    // Adagrad lives in ai.onnx.preview.training; such a model need not import ai.onnx.
    let mut n = node("Adagrad", "opt", &["x"], &["y"], vec![]);
    n.domain = Some("ai.onnx.preview.training".into());
    let mut m = model(13, graph(vec![n], vec![], vec![f32_input("x", &[1])], &["y"]));
    m.opset_import = vec![OperatorSetIdProto { domain: Some("ai.onnx.preview.training".into()), version: Some(1) }];
    let errors = import_err(&m);
    assert_eq!(errors[0].kind, ErrorKind::UnsupportedOp);
    assert!(errors[0].message.contains("\"Adagrad\""), "{}", errors[0].message);
    assert!(errors[0].hint.as_deref().unwrap_or("").contains("training operator"), "{:?}", errors[0].hint);
}

#[test]
fn extra_outputs_are_dropped_unless_used() {
    let bn_params: Vec<TensorProto> = ["s", "b", "m", "v"].iter().map(|n| f32_tensor(n, &[2], &[1.0, 1.0])).collect();
    let nodes = vec![
        node("BatchNormalization", "bn", &["x", "s", "b", "m", "v"], &["y", "", ""], vec![]),
        node("MaxPool", "pool", &["y"], &["p", "idx"], vec![attr_ints("kernel_shape", &[2])]),
        node("Dropout", "drop", &["p"], &["d", "mask"], vec![]),
    ];
    let g = import_ok(&model(13, graph(nodes.clone(), bn_params.clone(), vec![f32_input("x", &[1, 2, 4])], &["d"])));
    assert_eq!(node_ops(&g), ["BatchNormalization", "MaxPool", "Dropout"]);
    assert!(!g.names().contains_key("idx") && !g.names().contains_key("mask"));
    assert_eq!(shape_of(&g, "d"), vec![1, 2, 3]);
    // Reading the pool's indices makes them a second output of the IR node (int64).
    let inputs = vec![f32_input("x", &[1, 2, 4])];
    let g = import_ok(&model(13, graph(nodes.clone(), bn_params.clone(), inputs.clone(), &["d", "idx"])));
    assert_eq!(shape_of(&g, "idx"), vec![1, 2, 3]);
    assert!(matches!(&g.nodes[1].op, Op::Pool(p) if p.indices.is_some() && g.nodes[1].outputs.len() == 2));
    // Reading Dropout's mask is an error that names it.
    let errors = import_err(&model(13, graph(nodes, bn_params, inputs, &["d", "mask"])));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].kind, ErrorKind::UnsupportedFeature);
    assert!(errors[0].message.contains("#1 \"mask\""), "{}", errors[0].message);
}

#[test]
fn shape_errors_name_the_node() {
    let nodes = vec![node("Conv", "conv1", &["x", "w"], &["y"], vec![])];
    let inits = vec![f32_tensor("w", &[2, 4, 1, 1], &[0.0; 8])];
    let errors = import_err(&model(13, graph(nodes, inits, vec![f32_input("x", &[1, 3, 4, 4])], &["y"])));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::ShapeError);
    assert_eq!(errors[0].to_string(), "node \"conv1\" (Conv): Conv: input has 3 channels, weight expects 4 (group 1)");
}

#[test]
fn constant_outputs_are_written_by_an_identity_and_dangling_names_are_reported() {
    // Shape of a static input is known at import; the output is still produced, under its name.
    let nodes = vec![node("Shape", "s", &["x"], &["shape"], vec![])];
    let g = import_ok(&model(13, graph(nodes, vec![], vec![f32_input("x", &[2, 3])], &["shape"])));
    assert_eq!(node_ops(&g), ["Identity"]);
    let output = g.outputs[0];
    assert_eq!(g.name(output), "shape");
    let constant = g.nodes[0].inputs[0];
    assert_eq!(g.constants[&constant], Tensor::from_i64(vec![2], vec![2, 3]));
    let nodes = vec![node("Relu", "r", &["nope"], &["y"], vec![])];
    let errors = import_err(&model(13, graph(nodes, vec![], vec![f32_input("x", &[2])], &["y"])));
    assert_eq!(errors[0].kind, ErrorKind::Malformed);
    assert!(errors[0].message.contains("\"nope\""));
}

#[test]
fn absurd_sizes_are_errors() {
    let nodes = vec![node("Relu", "r", &["x"], &["y"], vec![])];
    let errors = import_err(&model(13, graph(nodes, vec![], vec![f32_input("x", &[1 << 40, 1 << 40])], &["y"])));
    assert_eq!(errors[0].kind, ErrorKind::ShapeError);
    assert!(errors[0].message.contains("too large"), "{}", errors[0].message);
    // ConstantOfShape([2^30, 2^30]) is refused, not allocated.
    let nodes = vec![
        node("ConstantOfShape", "big", &["dims"], &["zeros"], vec![]),
        node("Add", "add", &["x", "zeros"], &["y"], vec![]),
    ];
    let inits = vec![i64_tensor("dims", &[2], &[1 << 30, 1 << 30])];
    let errors = import_err(&model(13, graph(nodes, inits, vec![f32_input("x", &[1])], &["y"])));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].node.as_deref(), Some("big"));
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let nodes = vec![node("Sigmoid", "second", &["r"], &["y"], vec![]), node("Relu", "first", &["x"], &["r"], vec![])];
    let g = import_ok(&model(13, graph(nodes, vec![], vec![f32_input("x", &[2])], &["y"])));
    assert_eq!(node_ops(&g), ["Relu", "Sigmoid"]);
}

// ---- fixture models ----

fn repo_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Decodes and imports a model file, reading its external data from beside it.
fn import_file(rel: &str) -> Graph {
    match import_file_with(rel, &no_symbols()) {
        Ok(g) => g,
        Err(errors) => panic!("{rel}: {errors:#?}"),
    }
}

fn import_file_with(rel: &str, symbols: &BTreeMap<String, usize>) -> Result<Graph, Vec<ImportError>> {
    let path = repo_path(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let m = decode_model(&bytes).unwrap();
    let dir = path.parent().unwrap();
    let files = external_data_files(&m)
        .into_iter()
        .map(|loc| {
            let data = std::fs::read(dir.join(&loc)).unwrap();
            (loc, data)
        })
        .collect();
    import(&m, &files, symbols)
}

/// Every non-constant tensor's shape equals ONNX's own shape inference
/// (`testdata/fixture_shapes.json`, written by `testdata/fixture_shapes.py`).
fn check_against_onnx_shape_inference(rel: &str, g: &Graph) {
    let text = std::fs::read_to_string(repo_path("src/onnx/testdata/fixture_shapes.json")).unwrap();
    let all: BTreeMap<String, BTreeMap<String, Vec<usize>>> = serde_json::from_str(&text).unwrap();
    let expected = &all[rel];
    for (i, info) in g.tensors.iter().enumerate() {
        if g.is_constant(crate::ir::TensorId(i as u32)) {
            continue;
        }
        let want = expected.get(&info.name).unwrap_or_else(|| panic!("{rel}: no expectation for {:?}", info.name));
        assert_eq!(&info.shape, want, "{rel}: tensor {:?}", info.name);
    }
}

/// (model, IR nodes, tensors, constants, outputs), counted independently from the ONNX
/// files with the onnx Python package (nodes minus Constant; constants read as data inputs,
/// i.e. not Clip bounds, Pad pads, Reshape shapes or Unsqueeze axes).
/// Output names and shapes.
type Outputs = &'static [(&'static str, &'static [usize])];

const FIXTURES: &[(&str, usize, usize, usize, Outputs)] = &[
    ("examples/digits/model.onnx", 11, 28, 16, &[("logits", &[1, 10])]),
    ("tests/data/models/misc_ops/misc_ops.onnx", 18, 22, 2, &[("out", &[2, 16, 5]), ("pooled", &[1, 3, 4, 4])]),
    ("tests/data/models/mobilenetv2_mini/mobilenetv2_mini.onnx", 55, 142, 86, &[("output", &[1, 10])]),
    ("tests/data/models/resnet18_mini/resnet18_mini.onnx", 69, 172, 102, &[("output", &[1, 10])]),
];

#[test]
fn fixture_models_import_with_the_expected_shapes() {
    for &(rel, nodes, tensors, constants, outputs) in FIXTURES {
        let g = import_file(rel);
        assert_eq!((g.nodes.len(), g.tensors.len(), g.constants.len()), (nodes, tensors, constants), "{rel}");
        let got: Vec<(&str, &[usize])> = g.outputs.iter().map(|&o| (g.name(o), g.info(o).shape.as_slice())).collect();
        assert_eq!(got, outputs, "{rel}");
        check_against_onnx_shape_inference(rel, &g);
    }
}

#[test]
fn mobilenet_weights_come_from_its_external_data_file() {
    let rel = "tests/data/models/mobilenetv2_mini/mobilenetv2_mini.onnx";
    let m = decode_model(&std::fs::read(repo_path(rel)).unwrap()).unwrap();
    assert_eq!(external_data_files(&m), vec!["mobilenetv2_mini.data".to_string()]);
    let errors = import(&m, &no_files(), &no_symbols()).unwrap_err();
    assert!(errors.iter().all(|e| e.kind == ErrorKind::MissingExternalData));
    // 86 initializers live in the file; each read reports separately.
    assert_eq!(errors.len(), 86);
}

/// A node-test model with its int64 and scalar inputs (Reshape shapes, Unsqueeze axes, Clip
/// bounds, Pad values) bound to the test's input values as initializers, so they are known at
/// import as in a real export.
fn node_test_model(dir: &Path, bake_all: bool) -> (ModelProto, Vec<Vec<usize>>) {
    let mut m = decode_model(&std::fs::read(dir.join("model.onnx")).unwrap()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let input_names: Vec<String> = g.input.iter().map(|i| i.name().to_string()).collect();
    for (i, name) in input_names.iter().enumerate() {
        let path = dir.join(format!("test_data_set_0/input_{i}.pb"));
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let mut t = TensorProto::decode(bytes.as_slice()).unwrap();
        // Input 0 is the data in every such test: kept, so integer-only graphs stay graphs.
        if i > 0 && (bake_all || t.data_type() != DataType::Float as i32 || t.dims.is_empty()) {
            t.name = Some(name.clone());
            g.initializer.push(t);
        }
    }
    let mut outputs = Vec::new();
    for i in 0.. {
        let Ok(bytes) = std::fs::read(dir.join(format!("test_data_set_0/output_{i}.pb"))) else { break };
        let t = TensorProto::decode(bytes.as_slice()).unwrap();
        outputs.push(t.dims.iter().map(|&d| d as usize).collect());
    }
    (m, outputs)
}

#[test]
fn onnx_backend_node_tests_import_with_the_reference_output_shapes() {
    let root = repo_path("tests/data/onnx-node");
    let manifest = std::fs::read_to_string(root.join("manifest.txt")).unwrap();
    let names: Vec<&str> = manifest.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert!(names.len() >= 150, "{} tests", names.len());
    let mut failures = Vec::new();
    for name in &names {
        let (m, want) = node_test_model(&root.join(name), false);
        let mut imported = import(&m, &no_files(), &no_symbols());
        // Float inputs that decide a shape (Resize scales, ...) must be known at import too.
        if let Err(errors) = &imported
            && errors.iter().any(|e| e.message.contains("must be a constant"))
        {
            let (baked, _) = node_test_model(&root.join(name), true);
            imported = import(&baked, &no_files(), &no_symbols());
        }
        match imported {
            Ok(g) => {
                let got: Vec<Vec<usize>> = g.outputs.iter().map(|&o| g.info(o).shape.clone()).collect();
                if got != want {
                    failures.push(format!("{name}: shapes {got:?}, reference {want:?}"));
                }
            }
            Err(errors) => failures.push(format!("{name}: {errors:?}")),
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn torch_exports_fold_their_shape_arithmetic() {
    // Output shapes are onnxruntime's (printed by testdata/torch_exports.py).
    let shapes = |g: &Graph| g.outputs.iter().map(|&o| g.info(o).shape.clone()).collect::<Vec<_>>();
    let reshapes = |g: &Graph| {
        g.nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Reshape(crate::ops::Reshape { shape }) => Some(shape.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let g = import_file("src/onnx/testdata/torch_export_opset11.onnx");
    assert_eq!(shapes(&g), [vec![1, 5, 2], vec![1, 200]]);
    // All integer arithmetic was evaluated: only float tensors remain.
    assert!(g.tensors.iter().all(|t| t.dtype == DType::F32));
    // F.pad(x, (1, 0, 1, 0)) pads W on the left and H on the top by one:
    // ONNX pads [N, C, H, W begins, N, C, H, W ends] = [0, 0, 1, 1, 0, 0, 0, 0].
    let pads: Vec<&Op> = g.nodes.iter().filter(|n| matches!(n.op, Op::Pad(_))).map(|n| &n.op).collect();
    assert_eq!(
        pads,
        [&Op::Pad(crate::ops::Pad { pads: vec![0, 0, 1, 1, 0, 0, 0, 0], mode: PadMode::Reflect, value: 0.0 })]
    );
    // x.view(x.size(0), -1) on [1, 4, 5, 5], then fc(y).reshape(x.shape[0], 2, 5).
    assert_eq!(reshapes(&g), [vec![1, 100], vec![1, 2, 5]]);

    let rel = "src/onnx/testdata/torch_export_dynbatch.onnx";
    let errors = import_file_with(rel, &no_symbols()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].kind, ErrorKind::UnresolvedSymbol);
    assert!(errors[0].message.contains("\"batch\""), "{}", errors[0].message);
    let g = import_file_with(rel, &BTreeMap::from([("batch".to_string(), 3)])).unwrap();
    assert_eq!(shapes(&g), [vec![3, 5, 2], vec![3, 200]]);
    assert_eq!(reshapes(&g), [vec![3, 100], vec![3, 2, 5]]);
}

#[test]
fn multi_output_ops_produce_every_used_output() {
    // RNN with only Y_h named: Y gets an internal tensor so Y_h stays output #1.
    let rnn = node("RNN", "rnn", &["x", "w", "r"], &["", "h"], vec![attr_int("hidden_size", 2)]);
    let inputs = vec![f32_input("x", &[3, 1, 4]), f32_input("w", &[1, 2, 4]), f32_input("r", &[1, 2, 2])];
    let g = import_ok(&model(14, graph(vec![rnn], vec![], inputs, &["h"])));
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].outputs.len(), 2);
    assert_eq!(shape_of(&g, "h"), vec![1, 1, 2]);
    assert_eq!(g.info(g.nodes[0].outputs[1]).name, "h");
}

#[test]
fn a_graph_input_that_decides_a_shape_is_named_and_can_be_bound() {
    // Reshape(x, shape) with `shape` a graph input: the import names `shape` (position 1 among
    // the inputs) as the value it needs; bound to [3, 2] it imports with x reshaped to [3, 2].
    let nodes = vec![node("Reshape", "r", &["x", "shape"], &["y"], vec![])];
    let inputs = vec![f32_input("x", &[2, 3]), value_info("shape", DataType::Int64, &[D::N(2)])];
    let m = model(13, graph(nodes, vec![], inputs, &["y"]));
    let failure = super::import_bound(&m, &no_files(), &Default::default(), &BTreeMap::new()).unwrap_err();
    assert_eq!(failure.errors[0].kind, ErrorKind::RunTimeValue);
    let needs: Vec<(&str, usize, DType, &[usize])> =
        failure.run_time_inputs.iter().map(|r| (r.name.as_str(), r.position, r.dtype, r.shape.as_slice())).collect();
    assert_eq!(needs, [("shape", 1, DType::I64, &[2][..])]);

    let bound = BTreeMap::from([("shape".to_string(), Tensor::from_i64(vec![2], vec![3, 2]))]);
    let g = super::import_bound(&m, &no_files(), &Default::default(), &bound).unwrap();
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(shape_of(&g, "y"), [3, 2]);
    assert_eq!(g.bound_inputs.len(), 1);
    assert_eq!((g.bound_inputs[0].name.as_str(), g.bound_inputs[0].position), ("shape", 1));

    // A value of the wrong shape is refused.
    let wrong = BTreeMap::from([("shape".to_string(), Tensor::from_i64(vec![3], vec![3, 2, 1]))]);
    let failure = super::import_bound(&m, &no_files(), &Default::default(), &wrong).unwrap_err();
    assert_eq!(failure.errors[0].kind, ErrorKind::ShapeError);
}

#[test]
fn a_data_dependent_shape_is_not_offered_for_binding() {
    // Reshape(x, Cast(ReduceMax(x))): the shape comes from the data tensor itself, which is too
    // large to freeze; the error stands and no input is offered.
    let nodes = vec![
        node("ReduceMax", "m", &["x"], &["mx"], vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)]),
        node("Cast", "c", &["mx"], &["s"], vec![attr_int("to", DataType::Int64 as i64)]),
        node("Reshape", "r", &["x", "s"], &["y"], vec![]),
    ];
    let m = model(13, graph(nodes, vec![], vec![f32_input("x", &[1, 100])], &["y"]));
    let failure = super::import_bound(&m, &no_files(), &Default::default(), &BTreeMap::new()).unwrap_err();
    assert!(failure.errors.iter().all(|e| e.kind == ErrorKind::RunTimeValue), "{:?}", failure.errors);
    assert!(failure.run_time_inputs.is_empty());
}
