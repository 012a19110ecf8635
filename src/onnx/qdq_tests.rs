//! Tests of QDQ stripping: small hand-built models (every path and every error) and the
//! onnxruntime-quantized digits models of `tests/data/models/digits_qdq/` (expected values from
//! the manifest `scripts/python/make_qdq_models.py` wrote with onnxruntime and numpy).

use std::collections::BTreeMap;
use std::path::Path;

use crate::ir::{Graph, ModelEncoding, Tensor};
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::tensor_shape_proto::{Dimension, dimension};
use crate::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, type_proto,
};
use crate::onnx::tests::{f32_tensor, import_err, import_ok, node};
use crate::onnx::{ErrorKind, decode_model, import};

// ---- builders ----

fn input(name: &str, elem: DataType, dims: &[i64]) -> ValueInfoProto {
    let dim =
        dims.iter().map(|&d| Dimension { denotation: None, value: Some(dimension::Value::DimValue(d)) }).collect();
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

fn axis(v: i64) -> AttributeProto {
    AttributeProto {
        name: Some("axis".into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// An integer tensor in `int32_data` (ONNX's packing for every type up to 32 bits).
fn int_tensor(name: &str, elem: DataType, dims: &[i64], data: &[i32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(elem as i32),
        int32_data: data.to_vec(),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, inputs: Vec<ValueInfoProto>, outputs: &[&str]) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: inputs,
            output: outputs
                .iter()
                .map(|o| ValueInfoProto { name: Some(o.to_string()), ..Default::default() })
                .collect(),
            name: Some("qdq".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn constant(g: &Graph, name: &str) -> Vec<f32> {
    let id = g.names()[name];
    g.constant(id).and_then(Tensor::as_f32).expect("a float constant").to_vec()
}

fn enc(scales: &[f32], zero_points: &[i64], axis: Option<usize>, bitwidth: u32, signed: bool) -> ModelEncoding {
    ModelEncoding { scales: scales.to_vec(), zero_points: zero_points.to_vec(), axis, bitwidth, signed }
}

/// onnxruntime's layout: `x -> Q -> DQ -> Conv(DQ(w_quantized), DQ(b_quantized)) ->
/// y_QuantizeLinear_Input -> Q -> DQ -> y` (graph output), weights int8 per output channel,
/// bias int32, activations uint8.
fn conv_model() -> ModelProto {
    let inits = vec![
        f32_tensor("x_scale", &[], &[0.5]),
        int_tensor("x_zero_point", DataType::Uint8, &[], &[10]),
        // Two output channels, one input channel, 1x1 kernel.
        int_tensor("w_quantized", DataType::Int8, &[2, 1, 1, 1], &[-128, 7]),
        f32_tensor("w_scale", &[2], &[0.25, 0.125]),
        int_tensor("w_zero_point", DataType::Int8, &[2], &[0, 0]),
        int_tensor("b_quantized", DataType::Int32, &[2], &[-3, 1000]),
        f32_tensor("b_quantized_scale", &[2], &[0.125, 0.0625]),
        int_tensor("b_quantized_zero_point", DataType::Int32, &[2], &[0, 0]),
        f32_tensor("y_scale", &[], &[0.75]),
        int_tensor("y_zero_point", DataType::Uint8, &[], &[128]),
    ];
    let nodes = vec![
        node(
            "DequantizeLinear",
            "w_dq",
            &["w_quantized", "w_scale", "w_zero_point"],
            &["w_DequantizeLinear_Output"],
            vec![axis(0)],
        ),
        node(
            "DequantizeLinear",
            "b_dq",
            &["b_quantized", "b_quantized_scale", "b_quantized_zero_point"],
            &["b"],
            vec![axis(0)],
        ),
        node("QuantizeLinear", "x_q", &["x", "x_scale", "x_zero_point"], &["x_QuantizeLinear_Output"], vec![]),
        node(
            "DequantizeLinear",
            "x_dq",
            &["x_QuantizeLinear_Output", "x_scale", "x_zero_point"],
            &["x_DequantizeLinear_Output"],
            vec![],
        ),
        node(
            "Conv",
            "conv",
            &["x_DequantizeLinear_Output", "w_DequantizeLinear_Output", "b"],
            &["y_QuantizeLinear_Input"],
            vec![],
        ),
        node(
            "QuantizeLinear",
            "y_q",
            &["y_QuantizeLinear_Input", "y_scale", "y_zero_point"],
            &["y_QuantizeLinear_Output"],
            vec![],
        ),
        node("DequantizeLinear", "y_dq", &["y_QuantizeLinear_Output", "y_scale", "y_zero_point"], &["y"], vec![]),
    ];
    model(nodes, inits, vec![input("x", DataType::Float, &[1, 1, 2, 2])], &["y"])
}

// ---- hand-built models ----

#[test]
fn pairs_are_stripped_and_constants_dequantized() {
    let g = import_ok(&conv_model());
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.type_name()).collect();
    assert_eq!(ops, ["Conv"]);
    assert_eq!(g.name(g.inputs[0]), "x");
    assert_eq!(g.name(g.outputs[0]), "y", "the graph output keeps its name");
    let conv = &g.nodes[0];
    let read: Vec<&str> = conv.inputs.iter().map(|&i| g.name(i)).collect();
    assert_eq!(read, ["x", "w", "b"], "the conv reads the float input and the weight/bias under their float names");
    // (q - zp) * scale per output channel: -128 * 0.25 = -32, 7 * 0.125 = 0.875;
    // bias -3 * 0.125 = -0.375, 1000 * 0.0625 = 62.5.
    assert_eq!(constant(&g, "w"), [-32.0, 0.875]);
    assert_eq!(constant(&g, "b"), [-0.375, 62.5]);
    let expected = BTreeMap::from([
        ("b".to_string(), enc(&[0.125, 0.0625], &[0, 0], Some(0), 32, true)),
        ("w".to_string(), enc(&[0.25, 0.125], &[0, 0], Some(0), 8, true)),
        ("x".to_string(), enc(&[0.5], &[10], None, 8, false)),
        ("y".to_string(), enc(&[0.75], &[128], None, 8, false)),
    ]);
    assert_eq!(g.model_encodings, expected);
}

#[test]
fn a_model_without_qdq_has_no_model_encodings() {
    let m = model(
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![],
        vec![input("x", DataType::Float, &[1, 2])],
        &["y"],
    );
    assert!(import_ok(&m).model_encodings.is_empty());
}

#[test]
fn missing_zero_point_means_uint8_zero_and_negative_axis_is_resolved() {
    // Q/DQ without zero points (uint8, zp 0) on the input; a per-axis DQ with axis -1 on a
    // [3, 2] MatMul operand: scales [0.5, 2] along its last axis.
    let inits = vec![
        f32_tensor("s", &[], &[0.25]),
        int_tensor("m_quantized", DataType::Uint8, &[3, 2], &[0, 1, 2, 3, 4, 5]),
        f32_tensor("m_scale", &[2], &[0.5, 2.0]),
        int_tensor("m_zero_point", DataType::Uint8, &[2], &[1, 2]),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s"], &["xq"], vec![]),
        node("DequantizeLinear", "dq", &["xq", "s"], &["xd"], vec![]),
        node("DequantizeLinear", "mdq", &["m_quantized", "m_scale", "m_zero_point"], &["md"], vec![axis(-1)]),
        node("MatMul", "mm", &["xd", "md"], &["y"], vec![]),
    ];
    let g = import_ok(&model(nodes, inits, vec![input("x", DataType::Float, &[1, 3])], &["y"]));
    assert_eq!(g.model_encodings["x"], enc(&[0.25], &[0], None, 8, false));
    assert_eq!(g.model_encodings["m"], enc(&[0.5, 2.0], &[1, 2], Some(1), 8, false));
    // Row-major [[0,1],[2,3],[4,5]], column c: (q - zp[c]) * scale[c].
    assert_eq!(constant(&g, "m"), [-0.5, -2.0, 0.5, 2.0, 1.5, 6.0]);
}

#[test]
fn fan_out_to_several_dequantizers_and_int16_pairs() {
    // One Q read by two DQs (onnxruntime's DedicatedQDQPair) at 16 bits.
    let inits = vec![f32_tensor("s", &[], &[0.001]), int_tensor("z", DataType::Int16, &[], &[-5])];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], vec![]),
        node("DequantizeLinear", "dq1", &["xq", "s", "z"], &["a"], vec![]),
        node("DequantizeLinear", "dq2", &["xq", "s", "z"], &["b"], vec![]),
        node("Add", "add", &["a", "b"], &["y"], vec![]),
    ];
    let g = import_ok(&model(nodes, inits, vec![input("x", DataType::Float, &[4])], &["y"]));
    let read: Vec<&str> = g.nodes[0].inputs.iter().map(|&i| g.name(i)).collect();
    assert_eq!(read, ["x", "x"]);
    assert_eq!(g.model_encodings["x"], enc(&[0.001], &[-5], None, 16, true));
}

/// Some exporters keep float weights and put a Q -> DQ pair after them: the pair goes, the
/// weight keeps its float values and name, and the encoding is recorded for it.
#[test]
fn a_pair_on_a_float_weight_keeps_the_weight() {
    let inits = vec![
        f32_tensor("w", &[2, 2], &[0.5, -1.0, 1.5, 2.0]),
        f32_tensor("ws", &[], &[0.0625]),
        int_tensor("wz", DataType::Int8, &[], &[0]),
    ];
    let nodes = vec![
        node("QuantizeLinear", "wq", &["w", "ws", "wz"], &["w_q"], vec![]),
        node("DequantizeLinear", "wdq", &["w_q", "ws", "wz"], &["w_dq"], vec![]),
        node("MatMul", "mm", &["x", "w_dq"], &["y"], vec![]),
    ];
    let g = import_ok(&model(nodes, inits, vec![input("x", DataType::Float, &[1, 2])], &["y"]));
    assert_eq!(g.name(g.nodes[0].inputs[1]), "w");
    assert_eq!(constant(&g, "w"), [0.5, -1.0, 1.5, 2.0], "a Q/DQ pair does not change the stored weight");
    assert_eq!(g.model_encodings["w"], enc(&[0.0625], &[0], None, 8, true));
    assert_eq!(g.model_encodings.len(), 1);
}

/// Scales and zero points from Constant nodes (as torch exports them): read, and the integer
/// Constant nodes dropped with the pair.
#[test]
fn scales_and_zero_points_from_constant_nodes() {
    let value = |t: TensorProto| AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(t),
        ..Default::default()
    };
    let nodes = vec![
        node("Constant", "cs", &[], &["s"], vec![value(f32_tensor("", &[], &[0.125]))]),
        node("Constant", "cz", &[], &["z"], vec![value(int_tensor("", DataType::Uint8, &[], &[7]))]),
        node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], vec![]),
        node("DequantizeLinear", "dq", &["xq", "s", "z"], &["xd"], vec![]),
        node("Relu", "relu", &["xd"], &["y"], vec![]),
    ];
    let g = import_ok(&model(nodes, vec![], vec![input("x", DataType::Float, &[2])], &["y"]));
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.type_name()).collect();
    assert_eq!(ops, ["Relu"]);
    assert_eq!(g.model_encodings["x"], enc(&[0.125], &[7], None, 8, false));
}

/// The op types of the imported graph's nodes, in order.
fn op_types(g: &Graph) -> Vec<&'static str> {
    g.nodes.iter().map(|n| n.op.type_name()).collect()
}

#[test]
fn a_quantize_whose_codes_are_a_graph_output_or_feed_another_op_stays_a_compute_op() {
    // Q -> graph output: the integer codes are the result.
    let inits = vec![f32_tensor("s", &[], &[0.5]), int_tensor("z", DataType::Uint8, &[], &[3])];
    let nodes = vec![node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], vec![])];
    let g = import_ok(&model(nodes, inits.clone(), vec![input("x", DataType::Float, &[2])], &["xq"]));
    assert_eq!(op_types(&g), ["QuantizeLinear"]);
    assert_eq!(g.info(g.outputs[0]).dtype, crate::ir::DType::U8);
    assert!(g.model_encodings.is_empty());
    // Q read by a DQ and by a Cast: both Q and DQ stay (the pair makes no encoding).
    let to_float = AttributeProto {
        name: Some("to".into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(DataType::Float as i64),
        ..Default::default()
    };
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], vec![]),
        node("DequantizeLinear", "dq", &["xq", "s", "z"], &["xd"], vec![]),
        node("Cast", "cast", &["xq"], &["xc"], vec![to_float]),
        node("Add", "add", &["xd", "xc"], &["y"], vec![]),
    ];
    let g = import_ok(&model(nodes, inits, vec![input("x", DataType::Float, &[2])], &["y"]));
    assert_eq!(op_types(&g), ["QuantizeLinear", "DequantizeLinear", "Cast", "Add"]);
    assert!(g.model_encodings.is_empty());
}

#[test]
fn a_pair_with_different_scales_stays_two_compute_ops() {
    let inits = vec![
        f32_tensor("s1", &[], &[0.5]),
        f32_tensor("s2", &[], &[0.25]),
        int_tensor("z", DataType::Uint8, &[], &[3]),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s1", "z"], &["xq"], vec![]),
        node("DequantizeLinear", "dq", &["xq", "s2", "z"], &["y"], vec![]),
    ];
    let g = import_ok(&model(nodes, inits, vec![input("x", DataType::Float, &[2])], &["y"]));
    assert_eq!(op_types(&g), ["QuantizeLinear", "DequantizeLinear"]);
    assert!(g.model_encodings.is_empty());
}

#[test]
fn a_run_time_scale_keeps_the_pair_as_compute_ops() {
    let inits = vec![int_tensor("z", DataType::Uint8, &[], &[0])];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], vec![]),
        node("DequantizeLinear", "dq", &["xq", "s", "z"], &["y"], vec![]),
    ];
    let inputs = vec![input("x", DataType::Float, &[2]), input("s", DataType::Float, &[])];
    let g = import_ok(&model(nodes, inits, inputs, &["y"]));
    assert_eq!(op_types(&g), ["QuantizeLinear", "DequantizeLinear"]);
    assert!(g.model_encodings.is_empty());
}

/// INT4 (onnxruntime's 4-bit weights): two elements per byte, the first in the low nibble.
/// [-8, 7, -1] packs to 0x78, 0x0F; times scale 0.5: [-4, 3.5, -0.5].
#[test]
fn int4_weights_are_unpacked() {
    let packed = TensorProto {
        name: Some("w_quantized".into()),
        dims: vec![3],
        data_type: Some(DataType::Int4 as i32),
        raw_data: Some(vec![0x78, 0x0F]),
        ..Default::default()
    };
    let inits = vec![packed, f32_tensor("s", &[], &[0.5])];
    let nodes = vec![
        node("DequantizeLinear", "dq", &["w_quantized", "s"], &["w_dq"], vec![]),
        node("Mul", "m", &["x", "w_dq"], &["y"], vec![]),
    ];
    let g = import_ok(&model(nodes, inits, vec![input("x", DataType::Float, &[3])], &["y"]));
    assert_eq!(constant(&g, "w"), [-4.0, 3.5, -0.5]);
    assert_eq!(g.model_encodings["w"], enc(&[0.5], &[0], None, 4, true));
}

/// Float8 and blocked constants are not encodings: their DequantizeLinear is evaluated at
/// import. E4M3FN codes 0x30 = 0.5 and 0x7E = 448, times 0.5; int8 [[1, 2], [3, 4]] in blocks
/// of 2 along axis 1, scales [[0.5], [0.25]].
#[test]
fn float8_and_blocked_constants_are_dequantized_at_import() {
    let inits = vec![
        int_tensor("w_quantized", DataType::Float8e4m3fn, &[2], &[0x30, 0x7E]),
        f32_tensor("s", &[], &[0.5]),
        int_tensor("w2_quantized", DataType::Int8, &[2, 2], &[1, 2, 3, 4]),
        f32_tensor("s2", &[2, 1], &[0.5, 0.25]),
    ];
    let block = AttributeProto {
        name: Some("block_size".into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(2),
        ..Default::default()
    };
    let nodes = vec![
        node("DequantizeLinear", "dq8", &["w_quantized", "s"], &["w"], vec![]),
        node("DequantizeLinear", "dqb", &["w2_quantized", "s2"], &["w2"], vec![axis(1), block]),
        node("Mul", "m", &["x", "w"], &["y"], vec![]),
        node("MatMul", "mm", &["y", "w2"], &["z"], vec![]),
    ];
    let g = import_ok(&model(nodes, inits, vec![input("x", DataType::Float, &[2])], &["z"]));
    assert_eq!(op_types(&g), ["Mul", "MatMul"]);
    assert_eq!(constant(&g, "w"), [0.25, 224.0]);
    assert_eq!(constant(&g, "w2"), [0.5, 1.0, 0.75, 1.0]);
    assert!(g.model_encodings.is_empty());
}

#[test]
fn dequantizing_an_integer_graph_input_is_a_compute_op() {
    let inits = vec![f32_tensor("s", &[], &[0.5])];
    let nodes = vec![node("DequantizeLinear", "dq", &["xq", "s"], &["y"], vec![])];
    let g = import_ok(&model(nodes, inits, vec![input("xq", DataType::Uint8, &[2])], &["y"]));
    assert_eq!(op_types(&g), ["DequantizeLinear"]);
    assert_eq!(g.info(g.outputs[0]).dtype, crate::ir::DType::F32);
}

#[test]
fn out_of_range_zero_points_and_bad_per_axis_counts_are_errors() {
    let inits = vec![
        f32_tensor("s", &[], &[0.5]),
        int_tensor("z", DataType::Int8, &[], &[300]),
        int_tensor("w_quantized", DataType::Int8, &[3], &[1, 2, 3]),
        f32_tensor("ws", &[2], &[0.5, 0.25]),
    ];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s", "z"], &["xq"], vec![]),
        node("DequantizeLinear", "dq", &["xq", "s", "z"], &["xd"], vec![]),
        node("DequantizeLinear", "wdq", &["w_quantized", "ws"], &["w"], vec![axis(0)]),
        node("Mul", "m", &["xd", "w"], &["y"], vec![]),
    ];
    let errors = import_err(&model(nodes, inits, vec![input("x", DataType::Float, &[3])], &["y"]));
    assert!(errors.iter().any(|e| e.message.contains("300")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.kind == ErrorKind::BadAttribute && e.message.contains("per-axis")), "{errors:#?}");
}

#[test]
fn an_identity_pair_from_input_to_output_is_an_error_not_a_renamed_input() {
    let inits = vec![f32_tensor("s", &[], &[0.5])];
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "s"], &["xq"], vec![]),
        node("DequantizeLinear", "dq", &["xq", "s"], &["y"], vec![]),
    ];
    let errors = import_err(&model(nodes, inits, vec![input("x", DataType::Float, &[2])], &["y"]));
    assert!(errors.iter().any(|e| e.message.contains("would be graph input")), "{errors:#?}");
}

// ---- onnxruntime's QDQ digits models ----

fn repo_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn import_fixture(file: &str) -> Graph {
    let path = repo_path(&format!("tests/data/models/digits_qdq/{file}"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let m = decode_model(&bytes).unwrap();
    import(&m, &BTreeMap::new(), &BTreeMap::new()).unwrap_or_else(|e| panic!("{file}: {e:#?}"))
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(repo_path("tests/data/models/digits_qdq/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

/// Every encoding onnxruntime wrote is recorded under the documented name with its exact scale
/// and zero point, and the folded weights are numpy's `(q - zp) * scale`.
#[test]
fn onnxruntime_qdq_digits_models_import_with_their_encodings() {
    let manifest = manifest();
    let variants = manifest["variants"].as_object().unwrap();
    assert_eq!(variants.len(), 4);
    for (variant, v) in variants {
        let g = import_fixture(v["model"].as_str().unwrap());
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.type_name()).collect();
        assert_eq!(ops, ["Conv", "Relu", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm"], "{variant}");
        assert_eq!(g.name(g.outputs[0]), "logits");
        let conv1 = &g.nodes[0];
        assert_eq!(g.name(conv1.inputs[1]), "ConvBnFusion_W_conv1.weight");
        assert_eq!(g.name(conv1.inputs[2]), "ConvBnFusion_BN_B_bn1.bias");
        let mut expected_names = Vec::new();
        for section in ["activations", "params"] {
            for (name, e) in v[section].as_object().unwrap() {
                expected_names.push(name.clone());
                let got = g.model_encodings.get(name).unwrap_or_else(|| panic!("{variant}: no encoding for {name}"));
                assert_eq!(got.scales, floats(&e["scale"]), "{variant} {name}");
                assert_eq!(got.zero_points, ints(&e["zero_point"]), "{variant} {name}");
                assert_eq!(got.bitwidth as u64, e["bitwidth"].as_u64().unwrap(), "{variant} {name}");
                assert_eq!(got.signed, e["dtype"].as_str().unwrap().starts_with("int"), "{variant} {name}");
                assert_eq!(got.axis.map(|a| a as u64), e["axis"].as_u64(), "{variant} {name}");
                if section == "params" {
                    let head = floats(&e["dequantized_head"]);
                    assert_eq!(constant(&g, name)[..head.len()], head[..], "{variant} {name}");
                }
            }
        }
        expected_names.sort();
        let got_names: Vec<String> = g.model_encodings.keys().cloned().collect();
        assert_eq!(got_names, expected_names, "{variant}");
    }
}
