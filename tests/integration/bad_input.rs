//! Every kind of bad input gets a diagnostic naming the file (and line:column where there is
//! one) with a hint, and exit status 1; never a panic.

use crate::util::{Project, config};

/// Runs a build that must fail, and returns its stderr.
fn fails(p: &Project) -> String {
    let out = p.run(&["build"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn with_config(edit: impl Fn(String) -> String) -> Project {
    Project::digits_with(&edit(config(5)))
}

#[test]
fn an_unknown_key_in_qairt_toml() {
    let p = with_config(|c| c.replace("per_channel = true", "per_chanel = true"));
    let err = fails(&p);
    assert!(err.contains("qairt.toml:12:1"), "{err}");
    assert!(err.contains("per_chanel"), "{err}");
}

#[test]
fn malformed_toml() {
    let p = with_config(|c| c.replace("[verify]", "[verify"));
    let err = fails(&p);
    assert!(err.contains("qairt.toml:"), "{err}");
}

#[test]
fn a_wrong_type_in_qairt_toml() {
    let p = with_config(|c| c.replace("per_channel = true", "per_channel = \"yes\""));
    let err = fails(&p);
    assert!(err.contains("qairt.toml:12:"), "{err}");
}

#[test]
fn bitwidth_three() {
    let p = with_config(|c| c.replace("act_bitwidth = 16", "act_bitwidth = 3"));
    let err = fails(&p);
    assert!(err.contains("qairt.toml:22:"), "{err}");
    assert!(err.contains("8, 16"), "the allowed values are listed: {err}");
}

#[test]
fn a_missing_model_file() {
    let p = with_config(|c| c.replace("digits/model.onnx", "digits/missing.onnx"));
    let err = fails(&p);
    assert!(err.contains("missing.onnx"), "{err}");
    assert!(err.contains("qairt.toml:5:8"), "points at the path in qairt.toml: {err}");
}

#[test]
fn a_truncated_onnx_file() {
    let p = Project::digits_with(&config(5));
    let bytes = std::fs::read(p.path("digits/model.onnx")).unwrap();
    std::fs::write(p.path("digits/model.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&p);
    assert!(err.contains("model.onnx"), "{err}");
}

#[test]
fn a_raw_file_of_the_wrong_size() {
    let p = Project::digits_with(&config(5));
    std::fs::write(p.path("digits/test/raw/test_002.raw"), [0u8; 250]).unwrap();
    let err = fails(&p);
    assert!(err.contains("input_list.txt:3:1"), "{err}");
    assert!(err.contains("250 bytes"), "{err}");
}

#[test]
fn an_input_list_naming_an_input_the_model_lacks() {
    let p = Project::digits_with(&config(5));
    let list = p.read("digits/test/input_list.txt").replacen("raw/test_000.raw", "inptu:=raw/test_000.raw", 1);
    p.write("digits/test/input_list.txt", &list);
    let err = fails(&p);
    assert!(err.contains("input_list.txt:1:1"), "{err}");
    assert!(err.contains("did you mean \"input\""), "{err}");
}

fn with_overrides(p: &Project, from: &str, to: &str) {
    let text = p.read("overrides.json");
    assert!(text.contains(from), "fixture lacks {from}");
    p.write("overrides.json", &text.replacen(from, to, 1));
}

#[test]
fn a_nan_scale_in_an_encodings_file() {
    let p = Project::digits_with(&config(5));
    with_overrides(&p, "\"scale\": 0.00392156862745098", "\"scale\": NaN");
    let err = fails(&p);
    assert!(err.contains("overrides.json:"), "{err}");
}

#[test]
fn a_negative_scale_in_an_encodings_file() {
    let p = Project::digits_with(&config(5));
    with_overrides(&p, "\"scale\": 0.00392156862745098", "\"scale\": -0.00392156862745098");
    let err = fails(&p);
    assert!(err.contains("overrides.json:12:"), "{err}");
}

#[test]
fn an_override_naming_a_tensor_the_model_lacks() {
    let p = Project::digits_with(&config(5));
    with_overrides(&p, "\"/relu1/Relu_output_0\"", "\"/relu1/Relu_outptu_0\"");
    let err = fails(&p);
    assert!(err.contains("overrides.json:26:"), "{err}");
    assert!(err.contains("did you mean \"/relu1/Relu_output_0\""), "{err}");
}

#[test]
fn a_parameter_under_activation_encodings() {
    let p = Project::digits_with(&config(5));
    with_overrides(&p, "\"/relu1/Relu_output_0\"", "\"conv2.weight\"");
    let err = fails(&p);
    assert!(err.contains("overrides.json:26:"), "{err}");
    assert!(err.contains("param_encodings"), "{err}");
}

#[test]
fn an_unknown_target_on_the_command_line() {
    let p = Project::digits_with(&config(5));
    let out = p.run(&["build", "--target", "htp-w8a9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("did you mean \"htp-w8a8\""), "{err}");
}
