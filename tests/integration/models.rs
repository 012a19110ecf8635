//! Op coverage through the whole pipeline: MobileNetV2- and ResNet-18-shaped models (random
//! weights; the MobileNetV2 one stores its weights as ONNX external data, as AIMET's export
//! does) and a two-input model fed by `name:=path` input lists. The float target must match
//! onnxruntime's outputs (tests/data/models/*/outputs, made by scripts/python/make_models.py).

use serde_json::Value;

use crate::util::{Project, read_f32, repo_root};

fn build_model(model: &str) -> (Project, Value) {
    let p = Project::empty();
    let source = repo_root().join("tests/data/models").join(model);
    crate::util::copy_dir(&source, &p.path(model));
    let manifest: Value = serde_json::from_str(&p.read(&format!("{model}/manifest.json"))).unwrap();
    let inputs: Vec<&str> =
        manifest["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    let samples = manifest["samples"].as_u64().unwrap();
    let mut list = String::new();
    for k in 0..samples {
        let line: Vec<String> = inputs.iter().map(|name| format!("{name}:={model}/inputs/{k}/{name}.raw")).collect();
        list.push_str(&line.join(" "));
        list.push('\n');
    }
    p.write("list.txt", &list);
    let file = manifest["model"].as_str().unwrap();
    p.write(
        "qairt.toml",
        &format!(
            r#"[project]
name = "{model}"
[model]
path = "{model}/{file}"
[calibration]
input_list = "list.txt"
[[target]]
name = "htp-w8a8"
backend = "htp"
[[target]]
name = "cpu"
backend = "cpu"
[verify]
input_list = "list.txt"
"#
        ),
    );
    let b = p.build();
    b.assert_ok();
    (p, manifest)
}

fn check_float_outputs_match_onnxruntime(model: &str) {
    let (p, manifest) = build_model(model);
    let mut worst = 0f32;
    for k in 0..manifest["samples"].as_u64().unwrap() {
        for output in manifest["outputs"].as_array().unwrap() {
            let name = output["name"].as_str().unwrap();
            let ours = read_f32(&p.path(&format!("out/cpu/outputs/Result_{k}/{name}.raw")));
            let reference = read_f32(&p.path(&format!("{model}/outputs/{k}/{name}.raw")));
            assert_eq!(ours.len(), reference.len(), "{model}/{name}");
            let scale = reference.iter().fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
            for (a, r) in ours.iter().zip(&reference) {
                worst = worst.max((a - r).abs() / scale);
            }
        }
    }
    assert!(worst < 1e-5, "{model}: float target vs onnxruntime, max error / max |ref| = {worst}");
    let summary: Value = serde_json::from_str(&p.read("out/htp-w8a8/verify/summary.json")).unwrap();
    assert!(summary["layers"].as_array().unwrap().len() > 5, "{model}: per-layer rows");
}

#[test]
fn mobilenetv2_shaped_model_with_external_data() {
    check_float_outputs_match_onnxruntime("mobilenetv2_mini");
}

#[test]
fn resnet18_shaped_model() {
    check_float_outputs_match_onnxruntime("resnet18_mini");
}

#[test]
fn two_input_model_fed_by_named_input_lists() {
    check_float_outputs_match_onnxruntime("misc_ops");
}

#[test]
fn editing_external_data_rebuilds_from_parse() {
    let (p, _) = build_model("mobilenetv2_mini");
    let data = p.path("mobilenetv2_mini/mobilenetv2_mini.data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&data, bytes).unwrap();
    let b = p.build();
    b.assert_ok();
    assert!(b.built().contains(&("cpu".to_string(), "parse".to_string())), "{:?}", b.built());
}
