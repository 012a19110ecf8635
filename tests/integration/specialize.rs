//! Graph inputs that decide shapes: ONNX's `test_expand_dim_changed` (onnx 1.22.0's node test,
//! vendored in tests/data/onnx-node) expands `data` to the shape given by the int64 graph input
//! `new_shape`. qairt compiles static-shape programs, so the build specializes the model on the
//! value the input list gives `new_shape`, records that it did (a later build goes straight to
//! the cached specialized import), and refuses an input list whose lines disagree on it. An
//! If whose condition is a graph input is specialized the same way (`test_if`).

use std::path::Path;

use prost::Message;
use qairt::onnx::proto::TensorProto;

use crate::util::{Project, read_f32, repo_root};

const TOML: &str = r#"[project]
name = "expand"

[model]
path = "model.onnx"

[[target]]
name = "cpu"
backend = "cpu"

[verify]
input_list = "input_list.txt"
"#;

fn node_test_dir() -> std::path::PathBuf {
    repo_root().join("tests/data/onnx-node/test_expand_dim_changed")
}

/// A tensor of the node test, decoded by qairt's ONNX tensor decoder.
fn tensor(path: &Path) -> qairt::ir::Tensor {
    let proto = TensorProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    qairt::onnx::decode_tensor(&proto, &Default::default()).unwrap()
}

fn expand_project() -> Project {
    let p = Project::empty();
    let dir = node_test_dir();
    std::fs::copy(dir.join("model.onnx"), p.path("model.onnx")).unwrap();
    for (i, name) in ["data", "new_shape"].iter().enumerate() {
        let t = tensor(&dir.join(format!("test_data_set_0/input_{i}.pb")));
        std::fs::write(p.path(&format!("{name}.raw")), t.data.to_packed_bytes()).unwrap();
    }
    p.write("qairt.toml", TOML);
    p.write("input_list.txt", "data:=data.raw new_shape:=new_shape.raw\n");
    p
}

#[test]
fn a_shape_input_is_specialized_on_the_project_data_and_matches_the_onnx_reference() {
    let p = expand_project();
    let first = p.build();
    first.assert_ok();
    assert!(first.built().iter().any(|(_, stage)| stage == "parse"), "{:?}", first.built());
    let want = tensor(&node_test_dir().join("test_data_set_0/output_0.pb"));
    let got = read_f32(&p.path("out/cpu/outputs/Result_0/expanded.raw"));
    assert_eq!(want.shape, [2, 3, 6]);
    assert_eq!(got, want.to_f32_vec());

    // Nothing changed: the recorded specialization leads straight to the cached import.
    let again = p.build();
    again.assert_ok();
    assert!(again.built().is_empty(), "rebuilt {:?}", again.built());
}

#[test]
fn lines_that_disagree_on_a_shape_input_are_refused() {
    let p = expand_project();
    let other: Vec<u8> = [3i64, 1, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(p.path("other_shape.raw"), other).unwrap();
    p.write("input_list.txt", "data:=data.raw new_shape:=new_shape.raw\ndata:=data.raw new_shape:=other_shape.raw\n");
    let build = p.build();
    assert_eq!(build.status, 1, "{}", build.stderr);
    assert!(build.stderr.contains("qairt::input_list::specialized_input"), "{}", build.stderr);
    assert!(build.stderr.contains("new_shape"), "{}", build.stderr);
    assert!(!build.stderr.contains("panicked"), "{}", build.stderr);
}

/// ONNX's `test_if`: `res = If(cond)` with constant branches [1..5] (then) and [5..1] (else),
/// `cond` a bool scalar graph input. The build takes the branch the input list's `cond` picks;
/// lines that disagree on it would need both branches, and are refused.
#[test]
fn an_if_condition_input_is_specialized_on_and_disagreeing_lines_are_refused() {
    let p = Project::empty();
    let dir = repo_root().join("tests/data/onnx-node/test_if");
    std::fs::copy(dir.join("model.onnx"), p.path("model.onnx")).unwrap();
    std::fs::write(p.path("true.raw"), [1u8]).unwrap();
    std::fs::write(p.path("false.raw"), [0u8]).unwrap();
    p.write("qairt.toml", TOML);
    p.write("input_list.txt", "cond:=false.raw\n");
    p.build().assert_ok();
    assert_eq!(read_f32(&p.path("out/cpu/outputs/Result_0/res.raw")), [5.0, 4.0, 3.0, 2.0, 1.0]);

    p.write("input_list.txt", "cond:=false.raw\ncond:=true.raw\n");
    let build = p.build();
    assert_eq!(build.status, 1, "{}", build.stderr);
    assert!(build.stderr.contains("qairt::input_list::specialized_input"), "{}", build.stderr);
    assert!(build.stderr.contains("the branch an If takes"), "{}", build.stderr);
    assert!(!build.stderr.contains("panicked"), "{}", build.stderr);
}
