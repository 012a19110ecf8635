//! Integration tests: qdq_input. `qairt build` on onnxruntime's QDQ-quantized digits models
//! (`tests/data/models/digits_qdq/`, made by `scripts/python/make_qdq_models.py`): the pairs are
//! stripped and the model's scales and zero points come out in `encodings.json` exactly as
//! onnxruntime chose them (the manifest), under the overrides file and above calibration;
//! `ignore_encodings = true` drops both.

use serde_json::Value;

use crate::util::{Build, Project, copy_dir, read_f32, repo_root};

const FIXTURE: &str = "tests/data/models/digits_qdq";
const SAMPLES: usize = 5;

fn manifest() -> Value {
    let text = std::fs::read_to_string(repo_root().join(FIXTURE).join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A project on `model_<variant>.onnx` with the digits calibration set; verify runs on the
/// manifest's test samples. `quantization` is the body of `[quantization]`, `target_extra`
/// extra keys of the one `[[target]]` (named `htp`).
fn qdq_project(variant: &str, quantization: &str, target_extra: &str) -> Project {
    let p = Project::empty();
    let fixture = repo_root().join(FIXTURE);
    let model = format!("model_{variant}.onnx");
    std::fs::copy(fixture.join(&model), p.path(&model)).unwrap();
    copy_dir(&repo_root().join("examples/digits/calib"), &p.path("calib"));
    copy_dir(&fixture.join("inputs"), &p.path("test"));
    let list: String = (0..SAMPLES).map(|k| format!("{k}/input.raw\n")).collect();
    p.write("test/input_list.txt", &list);
    p.write(
        "qairt.toml",
        &format!(
            r#"[project]
name = "digits-qdq"

[model]
path = "{model}"

[calibration]
input_list = "calib/input_list.txt"

[quantization]
act_bitwidth = 8
{quantization}

[[target]]
name = "htp"
backend = "htp"
{target_extra}

[verify]
input_list = "test/input_list.txt"
"#
        ),
    );
    p
}

fn encodings(p: &Project) -> Value {
    serde_json::from_str(&p.read("out/htp/encodings.json")).unwrap()
}

fn section_of(manifest_section: &str) -> &'static str {
    if manifest_section == "activations" { "activation_encodings" } else { "param_encodings" }
}

/// Every encoding of the manifest, as `(encodings.json section, tensor name, manifest entry)`.
fn expected(variant: &str) -> Vec<(&'static str, String, Value)> {
    let m = manifest();
    let mut out = Vec::new();
    for section in ["activations", "params"] {
        for (name, e) in m["variants"][variant][section].as_object().unwrap() {
            out.push((section_of(section), name.clone(), e.clone()));
        }
    }
    out
}

/// `encodings.json`'s entry for `name` has onnxruntime's scale and offset (in the AIMET
/// convention, computed by the fixture script with numpy) for every channel.
fn assert_entry_is_onnxruntimes(enc: &Value, section: &str, name: &str, e: &Value) {
    let got = enc[section][name].as_array().unwrap_or_else(|| panic!("no {section} entry for {name:?}: {enc}"));
    let scales = e["aimet"]["scale"].as_array().unwrap();
    let offsets = e["aimet"]["offset"].as_array().unwrap();
    assert_eq!(got.len(), scales.len(), "{name}: channels");
    for (c, entry) in got.iter().enumerate() {
        assert_eq!(entry["dtype"], "int", "{name}[{c}]: {entry}");
        assert_eq!(entry["bitwidth"], e["bitwidth"], "{name}[{c}]: {entry}");
        // Both sides print the exact f32 value; compare as f32.
        let (got_scale, want_scale) = (entry["scale"].as_f64().unwrap() as f32, scales[c].as_f64().unwrap() as f32);
        assert_eq!(got_scale, want_scale, "{name}[{c}] scale: {entry}");
        assert_eq!(entry["offset"].as_i64(), offsets[c].as_i64(), "{name}[{c}] offset: {entry}");
        let symmetric = if e["aimet"]["is_symmetric"].as_bool().unwrap() { "True" } else { "False" };
        assert_eq!(entry["is_symmetric"], symmetric, "{name}[{c}]: {entry}");
    }
}

/// qairt's simulated outputs against onnxruntime's run of the QDQ model, within `steps` steps
/// of the logits grid: with the same encodings the integer pipelines agree exactly at 8 bits
/// and within a step at 16 (observed through the library: `quant::model_encodings` test
/// `the_compiled_qdq_digits_model_matches_onnxruntime`).
fn assert_outputs_match_onnxruntime(p: &Project, variant: &str, steps: f32) {
    let step = manifest()["variants"][variant]["activations"]["logits"]["scale"][0].as_f64().unwrap() as f32;
    for k in 0..SAMPLES {
        let ours = read_f32(&p.path(&format!("out/htp/outputs/Result_{k}/logits.raw")));
        let ort = read_f32(&repo_root().join(format!("{FIXTURE}/outputs/{variant}/{k}/logits.raw")));
        assert_eq!(ours.len(), ort.len());
        let worst = ours.iter().zip(&ort).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= steps * step * 1.001, "{variant} sample {k}: {ours:?} vs {ort:?}");
    }
}

fn build_ok(p: &Project) -> Build {
    let b = p.build();
    b.assert_ok();
    b
}

#[test]
fn per_channel_qdq_model_builds_with_onnxruntimes_encodings() {
    let p = qdq_project("per_channel", "per_channel = true", "");
    build_ok(&p);
    let enc = encodings(&p);
    for (section, name, e) in expected("per_channel") {
        assert_entry_is_onnxruntimes(&enc, section, &name, &e);
    }
    assert_outputs_match_onnxruntime(&p, "per_channel", 0.0);
}

#[test]
fn per_tensor_qdq_model_builds_with_onnxruntimes_encodings() {
    let p = qdq_project("per_tensor", "per_channel = false", "");
    build_ok(&p);
    let enc = encodings(&p);
    for (section, name, e) in expected("per_tensor") {
        assert_entry_is_onnxruntimes(&enc, section, &name, &e);
    }
    assert_outputs_match_onnxruntime(&p, "per_tensor", 0.0);
}

/// uint16 activations (an opset-21 model) under 8-bit settings: the model's 16-bit encodings win.
#[test]
fn a16_qdq_model_keeps_its_16_bit_activations() {
    let p = qdq_project("a16_per_channel", "per_channel = true", "");
    build_ok(&p);
    let enc = encodings(&p);
    for (section, name, e) in expected("a16_per_channel") {
        assert_entry_is_onnxruntimes(&enc, section, &name, &e);
    }
    assert_eq!(enc["activation_encodings"]["logits"][0]["bitwidth"], 16);
    assert_outputs_match_onnxruntime(&p, "a16_per_channel", 1.0);
}

/// int4 weights (QDQ nodes in onnxruntime's com.microsoft domain) under 8-bit settings: the
/// model's 4-bit weight encodings win.
#[test]
fn w4_qdq_model_keeps_its_4_bit_weights() {
    let p = qdq_project("w4_per_channel", "per_channel = true", "");
    build_ok(&p);
    let enc = encodings(&p);
    for (section, name, e) in expected("w4_per_channel") {
        assert_entry_is_onnxruntimes(&enc, section, &name, &e);
    }
    assert_eq!(enc["param_encodings"]["fc1.weight"][0]["bitwidth"], 4);
    assert_outputs_match_onnxruntime(&p, "w4_per_channel", 0.0);
}

const OVERRIDES: &str = r#"{
  "activation_encodings": {
    "/relu1/Relu_output_0": [{"bitwidth": 16, "dtype": "float"}]
  },
  "param_encodings": {
    "fc2.weight": [{"bitwidth": 8, "dtype": "int", "is_symmetric": "True", "max": 1.27, "min": -1.28, "offset": -128, "scale": 0.01}]
  }
}
"#;

/// Precedence: overrides file > the model's own encodings > calibration, tensor by tensor.
#[test]
fn the_overrides_file_wins_over_the_models_encodings() {
    let p = qdq_project("per_tensor", "per_channel = true", "overrides = \"overrides.json\"");
    p.write("overrides.json", OVERRIDES);
    build_ok(&p);
    let enc = encodings(&p);
    let relu1 = &enc["activation_encodings"]["/relu1/Relu_output_0"][0];
    assert_eq!((&relu1["dtype"], &relu1["bitwidth"]), (&Value::from("float"), &Value::from(16)), "{relu1}");
    let fc2 = &enc["param_encodings"]["fc2.weight"];
    assert_eq!(fc2.as_array().map(Vec::len), Some(1), "{fc2}");
    assert_eq!(fc2[0]["scale"].as_f64().unwrap() as f32, 0.01f32, "{fc2}");
    // Every other tensor keeps onnxruntime's encoding; in particular the Conv weights stay per
    // tensor although per_channel = true would calibrate them per channel.
    for (section, name, e) in expected("per_tensor") {
        if name != "/relu1/Relu_output_0" && name != "fc2.weight" {
            assert_entry_is_onnxruntimes(&enc, section, &name, &e);
        }
    }
}

/// `ignore_encodings = true` drops the overrides file and the model's encodings: the Conv
/// weights are calibrated per channel (8 and 16 encodings, where the model has one) and the
/// overridden activation is an integer again.
#[test]
fn ignore_encodings_drops_the_file_and_the_models_encodings() {
    let p = qdq_project("per_tensor", "per_channel = true\nignore_encodings = true", "overrides = \"overrides.json\"");
    p.write("overrides.json", OVERRIDES);
    build_ok(&p);
    let enc = encodings(&p);
    let relu1 = &enc["activation_encodings"]["/relu1/Relu_output_0"][0];
    assert_eq!(relu1["dtype"], "int", "{relu1}");
    let channels = |name: &str| enc["param_encodings"][name].as_array().map(Vec::len);
    assert_eq!(channels("ConvBnFusion_W_conv1.weight"), Some(8));
    assert_eq!(channels("ConvBnFusion_W_conv2.weight"), Some(16));
    assert_ne!(enc["param_encodings"]["fc2.weight"][0]["scale"].as_f64().map(|s| s as f32), Some(0.01f32));
}

/// The same key per target: one target keeps the model's encodings, the other ignores them.
#[test]
fn ignore_encodings_is_a_per_target_setting() {
    let p = qdq_project("per_tensor", "per_channel = true", "ignore_encodings = true");
    let toml = p.read("qairt.toml").replace("[verify]", "[[target]]\nname = \"keep\"\nbackend = \"htp\"\n\n[verify]");
    p.write("qairt.toml", &toml);
    build_ok(&p);
    let ignored: Value = serde_json::from_str(&p.read("out/htp/encodings.json")).unwrap();
    let kept: Value = serde_json::from_str(&p.read("out/keep/encodings.json")).unwrap();
    let channels = |enc: &Value| enc["param_encodings"]["ConvBnFusion_W_conv1.weight"].as_array().map(Vec::len);
    assert_eq!(channels(&ignored), Some(8));
    assert_eq!(channels(&kept), Some(1));
}

/// A pair that dequantizes with another pair's scale makes no encoding: both nodes stay
/// compute ops (QuantizeLinear, DequantizeLinear with ONNX's semantics) and the build succeeds;
/// the input, no longer covered by the model's encodings, is calibrated.
#[test]
fn a_mismatched_qdq_pair_stays_two_compute_ops() {
    use prost::Message;
    let p = qdq_project("per_tensor", "", "");
    let bytes = std::fs::read(p.path("model_per_tensor.onnx")).unwrap();
    let mut model = qairt::onnx::decode_model(&bytes).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let dq = graph.node.iter_mut().find(|n| n.name() == "input_DequantizeLinear").expect("fixture changed");
    dq.input[1] = "/relu1/Relu_output_0_scale".to_string();
    std::fs::write(p.path("model_per_tensor.onnx"), model.encode_to_vec()).unwrap();
    let out = p.run(&["build"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
