//! If with a condition known at import, on hand-built models: the taken branch is imported in
//! place. Expected values are computed by hand in the comments.

use std::collections::BTreeMap;

use super::super::ErrorKind;
use super::super::proto::attribute_proto::AttributeType;
use super::super::proto::tensor_proto::DataType;
use super::super::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use super::super::tests::{f32_input, f32_tensor, graph, import_err, import_ok, model, no_files, node, value_info};
use crate::ir::{DType, Graph, Tensor, TensorData};

fn attr_graph(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Graph as i32),
        g: Some(g),
        ..Default::default()
    }
}

fn bool_tensor(name: &str, value: bool) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![],
        data_type: Some(DataType::Bool as i32),
        int32_data: vec![i32::from(value)],
        ..Default::default()
    }
}

/// A branch: nodes, initializers, outputs (no inputs, as ONNX requires).
fn branch(name: &str, nodes: Vec<NodeProto>, inits: Vec<TensorProto>, outputs: &[&str]) -> GraphProto {
    GraphProto { name: Some(name.into()), ..graph(nodes, inits, vec![], outputs) }
}

fn if_node(name: &str, cond: &str, outputs: &[&str], then: GraphProto, otherwise: GraphProto) -> NodeProto {
    node("If", name, &[cond], outputs, vec![attr_graph("then_branch", then), attr_graph("else_branch", otherwise)])
}

/// Runs the imported graph on float32 inputs; the outputs by name.
fn run(g: &Graph, inputs: &[Tensor]) -> BTreeMap<String, Vec<f32>> {
    let outputs = crate::runtime::interpret::interpret(g, inputs, &mut |_, _| {}).unwrap();
    g.outputs.iter().zip(outputs).map(|(&id, t)| (g.info(id).name.clone(), t.to_f32_vec())).collect()
}

fn x(values: &[f32]) -> Tensor {
    Tensor::from_f32(vec![values.len()], values.to_vec())
}

/// y = If(cond) then x + [1, 1] (a branch initializer) else x * 2 (a Constant in the branch).
fn add_or_double(cond: bool) -> ModelProto {
    let then = branch(
        "then",
        vec![node("Add", "add", &["x", "one"], &["t_out"], vec![])],
        vec![f32_tensor("one", &[2], &[1.0, 1.0])],
        &["t_out"],
    );
    let two = AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(f32_tensor("", &[], &[2.0])),
        ..Default::default()
    };
    let otherwise = branch(
        "else",
        vec![node("Constant", "two", &[], &["two"], vec![two]), node("Mul", "mul", &["x", "two"], &["e_out"], vec![])],
        vec![],
        &["e_out"],
    );
    let nodes = vec![if_node("if", "cond", &["y"], then, otherwise)];
    model(13, graph(nodes, vec![bool_tensor("cond", cond)], vec![f32_input("x", &[2])], &["y"]))
}

#[test]
fn a_constant_condition_imports_the_branch_it_takes() {
    // x = [1, 2]: true -> x + 1 = [2, 3]; false -> x * 2 = [2, 4]. The branch output is
    // produced under the If's output name.
    let g = import_ok(&add_or_double(true));
    assert_eq!(g.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["if/add"]);
    assert_eq!(run(&g, &[x(&[1.0, 2.0])])["y"], [2.0, 3.0]);
    let g = import_ok(&add_or_double(false));
    assert_eq!(g.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["if/mul"]);
    assert_eq!(run(&g, &[x(&[1.0, 2.0])])["y"], [2.0, 4.0]);
}

#[test]
fn branch_names_that_clash_with_outer_names_are_renamed() {
    // The outer graph has an initializer `w` = [10, 10] and computes `s` = y * w after the If;
    // the branch has its own `w` = [1, 1] and its own `s` = x + w, then t = Relu(s). The If is
    // listed before the node computing `h`, which its branch reads: the order follows reads
    // made inside branches too. x = [-3, 2]: h = x; s' = [-2, 3]; t = [0, 3]; s = [0, 30].
    let then = branch(
        "then",
        vec![node("Add", "add", &["h", "w"], &["s"], vec![]), node("Relu", "relu", &["s"], &["t"], vec![])],
        vec![f32_tensor("w", &[2], &[1.0, 1.0])],
        &["t"],
    );
    let otherwise = branch("else", vec![], vec![], &["h"]);
    let nodes = vec![
        if_node("if", "cond", &["y"], then, otherwise),
        node("Identity", "h", &["x"], &["h"], vec![]),
        node("Mul", "scale", &["y", "w"], &["s"], vec![]),
    ];
    let inits = vec![f32_tensor("w", &[2], &[10.0, 10.0]), bool_tensor("cond", true)];
    let g = import_ok(&model(13, graph(nodes, inits, vec![f32_input("x", &[2])], &["s"])));
    assert_eq!(run(&g, &[x(&[-3.0, 2.0])])["s"], [0.0, 30.0]);
    let names = g.names();
    assert!(names.contains_key("s_1") && names.contains_key("w_1"), "{names:?}");
    assert_eq!(g.constant(names["w_1"]), Some(&Tensor::from_f32(vec![2], vec![1.0, 1.0])));
}

#[test]
fn nested_ifs_fold_and_read_the_renamed_names_of_their_enclosing_branch() {
    // Outer: a = Relu(x), and y = If(true): the then-branch has its own `a` = Neg(x) (renamed,
    // as the outer graph has an `a`), and an inner If(false, a Constant of the branch) whose
    // else-branch computes a * x with the branch's `a`. x = [1, -2]: branch a = [-1, 2], so
    // y = [-1, -4]; the outer a = [1, 0].
    let inner_else = branch("inner_else", vec![node("Mul", "mul", &["a", "x"], &["z"], vec![])], vec![], &["z"]);
    let inner_then = branch("inner_then", vec![node("Sub", "sub", &["a", "x"], &["z2"], vec![])], vec![], &["z2"]);
    let constant_false = AttributeProto {
        name: Some("value".into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(bool_tensor("", false)),
        ..Default::default()
    };
    let then = branch(
        "then",
        vec![
            node("Neg", "neg", &["x"], &["a"], vec![]),
            node("Constant", "c2", &[], &["c2"], vec![constant_false]),
            if_node("inner", "c2", &["r"], inner_then, inner_else),
        ],
        vec![],
        &["r"],
    );
    let otherwise = branch("else", vec![], vec![], &["x"]);
    let nodes = vec![node("Relu", "relu", &["x"], &["a"], vec![]), if_node("outer", "cond", &["y"], then, otherwise)];
    let m = model(13, graph(nodes, vec![bool_tensor("cond", true)], vec![f32_input("x", &[2])], &["y", "a"]));
    let g = import_ok(&m);
    let out = run(&g, &[x(&[1.0, -2.0])]);
    assert_eq!(out["y"], [-1.0, -4.0]);
    assert_eq!(out["a"], [1.0, 0.0]);
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["relu", "outer/neg", "outer/inner/mul"]);
}

#[test]
fn branch_outputs_that_are_outer_tensors_or_repeated_go_through_an_identity() {
    // The branch returns the graph input x itself, and its own t = Abs(x) twice.
    // x = [-1, 2]: y1 = [-1, 2], y2 = y3 = [1, 2].
    let then = branch("then", vec![node("Abs", "abs", &["x"], &["t"], vec![])], vec![], &["x", "t", "t"]);
    let otherwise = branch("else", vec![], vec![], &["x", "x", "x"]);
    let nodes = vec![if_node("if", "cond", &["y1", "y2", "y3"], then, otherwise)];
    let m = model(13, graph(nodes, vec![bool_tensor("cond", true)], vec![f32_input("x", &[2])], &["y1", "y2", "y3"]));
    let g = import_ok(&m);
    let out = run(&g, &[x(&[-1.0, 2.0])]);
    assert_eq!((&out["y1"][..], &out["y2"][..], &out["y3"][..]), (&[-1.0, 2.0][..], &[1.0, 2.0][..], &[1.0, 2.0][..]));
    assert_eq!(crate::onnx::tests::node_ops(&g), ["Abs", "Identity", "Identity"]);
}

#[test]
fn only_the_branch_taken_must_be_importable() {
    // The else-branch builds a sequence, which qairt does not import; with cond true it is
    // never looked at. With cond false its unsupported op is reported under the If's name.
    let then = branch("then", vec![node("Relu", "relu", &["x"], &["t"], vec![])], vec![], &["t"]);
    let seq = || branch("else", vec![node("SequenceConstruct", "seq", &["x"], &["s"], vec![])], vec![], &["s"]);
    let m = |cond| {
        let nodes = vec![if_node("if", "cond", &["y"], then.clone(), seq())];
        model(13, graph(nodes, vec![bool_tensor("cond", cond)], vec![f32_input("x", &[2])], &["y"]))
    };
    assert_eq!(run(&import_ok(&m(true)), &[x(&[-1.0, 2.0])])["y"], [0.0, 2.0]);
    let errors = import_err(&m(false));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].kind, ErrorKind::UnsupportedOp);
    assert_eq!(errors[0].node.as_deref(), Some("if/seq"));
}

#[test]
fn a_condition_computed_from_the_data_is_a_diagnostic_that_names_it() {
    // cond = ReduceSum(x) > 0 over a [2, 3] float input: known only at run time, and x is data
    // (never offered for specialization).
    let zero = f32_tensor("zero", &[], &[0.0]);
    let then = branch("then", vec![], vec![], &["x"]);
    let nodes = vec![
        node("ReduceSum", "sum", &["x"], &["total"], vec![]),
        node("Greater", "gt", &["total", "zero"], &["positive"], vec![]),
        if_node("if", "positive", &["y"], then.clone(), then),
    ];
    let m = model(13, graph(nodes, vec![zero], vec![f32_input("x", &[2, 3])], &["y"]));
    let failure = super::super::import_bound(&m, &no_files(), &Default::default(), &BTreeMap::new()).unwrap_err();
    assert_eq!(failure.errors.len(), 1, "{:#?}", failure.errors);
    let e = &failure.errors[0];
    assert_eq!(e.kind, ErrorKind::RunTimeValue);
    assert_eq!(e.needs_value_of.as_deref(), Some("positive"));
    assert!(e.message.contains("\"positive\"") && e.message.contains("known at import"), "{}", e.message);
    assert!(e.hint.as_deref().unwrap().contains("specialized"), "{:?}", e.hint);
    assert!(failure.run_time_inputs.is_empty());
}

#[test]
fn a_condition_that_is_a_graph_input_is_specialized_on_its_value() {
    // cond a bool scalar graph input (position 1): the import names it, and bound to false it
    // imports the else-branch: x * 2 on [1, 2] = [2, 4].
    let mut m = add_or_double(true);
    let g = m.graph.as_mut().unwrap();
    g.initializer.clear();
    g.input.push(value_info("cond", DataType::Bool, &[]));
    let failure = super::super::import_bound(&m, &no_files(), &Default::default(), &BTreeMap::new()).unwrap_err();
    assert_eq!(failure.errors[0].kind, ErrorKind::RunTimeValue);
    let needs: Vec<(&str, usize, DType)> =
        failure.run_time_inputs.iter().map(|r| (r.name.as_str(), r.position, r.dtype)).collect();
    assert_eq!(needs, [("cond", 1, DType::Bool)]);
    let bound = BTreeMap::from([("cond".to_string(), Tensor::new(vec![], TensorData::Bool(vec![0])).unwrap())]);
    let g = super::super::import_bound(&m, &no_files(), &Default::default(), &bound).unwrap();
    assert_eq!(run(&g, &[x(&[1.0, 2.0])])["y"], [2.0, 4.0]);
}

#[test]
fn a_condition_that_is_not_one_bool_and_a_branch_that_does_not_fit_are_errors() {
    let mut m = add_or_double(true);
    m.graph.as_mut().unwrap().initializer[0] = f32_tensor("cond", &[], &[1.0]);
    let errors = import_err(&m);
    assert_eq!(errors[0].kind, ErrorKind::BadAttribute);
    assert!(errors[0].message.contains("must be one bool"), "{}", errors[0].message);

    // Two If outputs, a branch of one.
    let mut m = add_or_double(true);
    m.graph.as_mut().unwrap().node[0].output.push("y2".into());
    let errors = import_err(&m);
    assert!(errors[0].message.contains("has 1 outputs, but the If node has 2"), "{}", errors[0].message);
}

#[test]
fn a_branch_reads_through_stripped_qdq_pairs_and_keeps_the_initializers_only_it_reads() {
    // x -> QuantizeLinear -> DequantizeLinear (uint8, scale 0.5, zero point 0) = x_dq, read
    // only inside the branch, with `w` = [3, 3], an initializer only the branch reads. The
    // pair is stripped (x's encoding recorded): the branch reads x itself, and w stays.
    // x = [1, 2]: y = x * w = [3, 6].
    let u8_zero = TensorProto {
        name: Some("zp".into()),
        dims: vec![],
        data_type: Some(DataType::Uint8 as i32),
        int32_data: vec![0],
        ..Default::default()
    };
    let then = branch("then", vec![node("Mul", "mul", &["x_dq", "w"], &["t"], vec![])], vec![], &["t"]);
    let nodes = vec![
        node("QuantizeLinear", "q", &["x", "scale", "zp"], &["x_q"], vec![]),
        node("DequantizeLinear", "dq", &["x_q", "scale", "zp"], &["x_dq"], vec![]),
        if_node("if", "cond", &["y"], then.clone(), then),
    ];
    let inits =
        vec![f32_tensor("scale", &[], &[0.5]), u8_zero, f32_tensor("w", &[2], &[3.0, 3.0]), bool_tensor("cond", true)];
    let g = import_ok(&model(13, graph(nodes, inits, vec![f32_input("x", &[2])], &["y"])));
    assert_eq!(crate::onnx::tests::node_ops(&g), ["Mul"]);
    assert!(g.model_encodings.contains_key("x"), "{:?}", g.model_encodings);
    assert_eq!(run(&g, &[x(&[1.0, 2.0])])["y"], [3.0, 6.0]);
}
