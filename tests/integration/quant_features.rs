//! Quantization features through the real binary: cross-layer equalization as a target of its
//! own, float fallback without calibration data (AIMET's exported encodings), mixed precision
//! with convert ops in `model.bin`, and calibration reuse across methods and legacy names.

use crate::util::{Project, config, read_f32, repo_root};

/// `out/<target>/model.bin`, decoded by qairt's own loader (it validates every invariant).
fn program(p: &Project, target: &str) -> qairt::compile::Program {
    let bytes = std::fs::read(p.path(&format!("out/{target}/model.bin"))).unwrap();
    qairt::compile::Program::from_bytes(&bytes).unwrap()
}

fn converts(program: &qairt::compile::Program) -> Vec<String> {
    program.steps.iter().filter(|s| matches!(s.op, qairt::ir::Op::Convert(_))).map(|s| s.node.clone()).collect()
}

fn sqnr(build: &crate::util::Build, target: &str) -> f64 {
    build.verify(target)["metrics"]["sqnr_db"].as_f64().unwrap_or_else(|| panic!("{:?}", build.verify(target)))
}

/// A project over examples/digits with `targets` (TOML) and the given model.
fn digits_project(model: &str, calibration: bool, targets: &str) -> Project {
    let p = Project::empty();
    crate::util::copy_dir(&repo_root().join("examples/digits"), &p.path("digits"));
    let calibration = if calibration { "[calibration]\ninput_list = \"digits/calib/input_list.txt\"\n" } else { "" };
    p.write(
        "qairt.toml",
        &format!(
            "[project]\nname = \"q\"\n[model]\npath = \"{model}\"\n{calibration}{targets}\n[verify]\n\
             input_list = \"digits/test/input_list.txt\"\nlabels = \"digits/test/labels.txt\"\nmax_samples = 100\n"
        ),
    );
    p
}

#[test]
fn cle_targets_get_their_own_graph_and_statistics_and_improve_unequal_channels() {
    let model = repo_root().join("tests/data/models/cle_digits/model.onnx");
    let p = digits_project(
        "cle.onnx",
        true,
        r#"
[quantization]
per_channel = false
[[target]]
name = "plain"
backend = "htp"
[[target]]
name = "cle"
backend = "htp"
algorithms = ["cle"]
[[target]]
name = "cle-a16"
backend = "htp"
algorithms = ["cle"]
act_bitwidth = 16
"#,
    );
    std::fs::copy(model, p.path("cle.onnx")).unwrap();
    let build = p.build();
    build.assert_ok();
    let built = build.built();
    // The plain target uses the shared graph; the CLE targets equalize once (content-keyed:
    // the second CLE target finds the first one's graph and statistics in the store).
    for stage in ["optimize", "calibrate"] {
        assert!(built.contains(&("plain".into(), stage.into())), "{built:?}");
        assert!(built.contains(&("cle".into(), stage.into())), "{built:?}");
        assert!(!built.contains(&("cle-a16".into(), stage.into())), "{built:?}");
    }
    let (plain, cle) = (sqnr(&build, "plain"), sqnr(&build, "cle"));
    // The model's stem has channel ranges 100x apart; per-tensor weights lose them without CLE.
    assert!(cle > plain + 6.0, "CLE {cle:.2} dB vs {plain:.2} dB without");
    let second = p.build();
    second.assert_ok();
    assert!(second.built().is_empty(), "{:?}", second.built());
}

const AIMET_TARGET: &str = r#"
[[target]]
name = "aimet"
backend = "htp"
float_fallback = true
overrides = "encodings.json"
"#;

#[test]
fn float_fallback_builds_from_aimets_encodings_without_calibration_data() {
    let p = digits_project("digits/aimet/digits_bnfolded.onnx", false, AIMET_TARGET);
    std::fs::copy(p.path("digits/aimet/encodings_v0.6.1.json"), p.path("encodings.json")).unwrap();
    let build = p.build();
    build.assert_ok();
    let stages: Vec<String> = build.built().into_iter().map(|(_, s)| s).collect();
    assert!(!stages.contains(&"calibrate".to_string()), "{stages:?}");
    // Every tensor AIMET encoded (and, by squashing and propagation, every other one) is
    // integer: no convert, and the outputs match AIMET QuantSim to one step as the calibrated
    // pipeline does.
    assert!(converts(&program(&p, "aimet")).is_empty());
    let (mut identical, mut total) = (0, 0);
    for n in 0..100 {
        let ours = read_f32(&p.path(&format!("out/aimet/outputs/Result_{n}/logits.raw")));
        let aimet = read_f32(&p.path(&format!("digits/aimet/quantsim/Result_{n}/logits.raw")));
        for (a, b) in ours.iter().zip(&aimet) {
            identical += usize::from(a == b);
            total += 1;
        }
    }
    assert!(identical * 100 >= total * 95, "{identical} of {total} identical to AIMET QuantSim");

    // Drop the second Relu's encoding: conv2 and relu2 have no encoding any more and run in
    // float16, with convert ops on both sides in model.bin.
    let mut encodings: serde_json::Value = serde_json::from_str(&p.read("encodings.json")).unwrap();
    encodings["activation_encodings"].as_object_mut().unwrap().remove("/relu2/Relu_output_0");
    p.write("encodings.json", &serde_json::to_string_pretty(&encodings).unwrap());
    let build = p.build();
    build.assert_ok();
    let program = program(&p, "aimet");
    let names = converts(&program);
    assert!(names.iter().any(|n| n.ends_with(".convert_fp16")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".convert_q8")), "{names:?}");
    let relu2 = program.find_tensor("/relu2/Relu_output_0").unwrap();
    assert_eq!(program.tensor(relu2).unwrap().repr, qairt::compile::Repr::Float { bitwidth: 16 });
    assert!(sqnr(&build, "aimet") > 30.0, "{}", sqnr(&build, "aimet"));
}

#[test]
fn a_float_override_runs_its_op_in_float16_between_convert_ops() {
    let p = Project::digits_with(
        &crate::util::config(40).replace("overrides = \"overrides.json\"", "overrides = \"mixed.json\""),
    );
    p.write(
        "mixed.json",
        r#"{"activation_encodings": {"/fc1/Gemm_output_0": [{"bitwidth": 16, "dtype": "float"}]}, "param_encodings": {}}"#,
    );
    let build = p.build();
    build.assert_ok();
    let program = program(&p, "htp-w8a8");
    // fc1 (and by the SDK's coupling rule its weight and bias) is float16; it reads its
    // integer input through a convert, and the integer Relu after it reads through another.
    let fc1 = program.steps.iter().find(|s| s.node == "/fc1/Gemm").unwrap();
    for &input in &fc1.inputs {
        assert_eq!(program.tensor(input).unwrap().repr, qairt::compile::Repr::Float { bitwidth: 16 });
    }
    let names = converts(&program);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(sqnr(&build, "htp-w8a8") > 30.0);
}

#[test]
fn switching_calibration_method_or_legacy_name_reuses_the_statistics() {
    let p = Project::digits();
    p.build().assert_ok();
    for (from, to) in [
        ("act_bitwidth = 16", "act_bitwidth = 16\nact_calibration = \"mse\""),
        ("act_calibration = \"mse\"", "act_calibration = \"enhanced\"\nparam_calibration = \"symmetric\""),
        ("act_calibration = \"enhanced\"", "act_calibration = \"entropy\""),
        ("param_calibration = \"symmetric\"", "param_calibration = \"adjusted\"\nparam_schema = \"asymmetric\""),
    ] {
        let toml = p.read("qairt.toml").replacen(from, to, 1);
        p.write("qairt.toml", &toml);
        let build = p.build();
        build.assert_ok();
        // The float model never runs again: only quantize and what it feeds (unless the
        // encodings came out identical, then the build stops early).
        let built = build.built();
        assert!(built.contains(&("htp-w8a16".into(), "quantize".into())), "after {to:?}: {built:?}");
        for (target, stage) in &built {
            assert_eq!(target, "htp-w8a16", "after {to:?}: {built:?}");
            assert!(["quantize", "compile", "simulate", "verify"].contains(&stage.as_str()), "after {to:?}: {built:?}");
        }
    }
}

/// A target asking for 16-bit weights while AIMET's encodings file pins every weight at 8
/// bits gets 8-bit weights (the override wins, as in the SDK) and a warning that the setting
/// changed nothing; without the file the same setting applies and nothing is said.
#[test]
fn a_bitwidth_the_overrides_leave_nothing_to_apply_to_is_a_warning() {
    let p = Project::digits();
    std::fs::copy(repo_root().join("examples/digits/aimet/encodings_v0.6.1.json"), p.path("aimet_all.json")).unwrap();
    let pinned = config(5).replace(
        "overrides = \"overrides.json\"",
        "overrides = \"aimet_all.json\"\nweight_bitwidth = 16\nper_channel = false",
    );
    assert_ne!(pinned, config(5));
    p.write("qairt.toml", &pinned);
    let b = p.build();
    b.assert_ok();
    assert!(b.stderr.contains("weight_bitwidth = 16 changes nothing"), "{}", b.stderr);
    assert!(b.stderr.contains("all 4 weight tensors"), "{}", b.stderr);
    let encodings = p.read("out/htp-w8a8/encodings.json");
    assert!(!encodings.contains("\"bitwidth\": 16"), "the overrides' 8-bit weights win: {encodings}");

    let free = pinned.replace("overrides = \"aimet_all.json\"\n", "");
    p.write("qairt.toml", &free);
    let b = p.build();
    b.assert_ok();
    assert!(!b.stderr.contains("changes nothing"), "{}", b.stderr);
    assert!(p.read("out/htp-w8a8/encodings.json").contains("\"bitwidth\": 16"), "16-bit weights without the file");
}
