//! Real-world input shapes: a model exported with an anonymous (`-1`) batch dim (the zoo's
//! `digits_dynbatch`, made by `scripts/python/make_zoo.py`) is refused with a diagnostic that
//! names the input and shows the `input_dims` line to add; with that line it builds and
//! matches onnxruntime's float outputs (the fixture's `reference/` dump).

use crate::util::{Project, copy_dir, read_f32, repo_root};

/// The diagnostic text with miette's line wrapping and box drawing undone.
fn flat(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ")
}

fn dynbatch() -> Project {
    let p = Project::empty();
    copy_dir(&repo_root().join("tests/data/zoo/digits_dynbatch"), p.dir.path());
    p
}

#[test]
fn an_anonymous_batch_dim_names_the_input_and_the_line_to_add() {
    let p = dynbatch();
    let out = p.run(&["build", "--target", "cpu"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = flat(&out.stderr);
    assert!(stderr.contains("graph input \"input\""), "{stderr}");
    assert!(stderr.contains("input_dims = { input = [1, 1, 8, 8] }"), "{stderr}");
}

#[test]
fn input_dims_give_a_concrete_shape_and_the_cpu_target_matches_onnxruntime() {
    let p = dynbatch();
    let toml = p
        .read("qairt.toml")
        .replace("path = \"model.onnx\"", "path = \"model.onnx\"\ninput_dims = { input = [1, 1, 8, 8] }");
    p.write("qairt.toml", &toml);
    let out = p.run(&["build", "--target", "cpu"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for n in 0..8 {
        let got = read_f32(&p.path(&format!("out/cpu/outputs/Result_{n}/logits.raw")));
        let want = read_f32(&p.path(&format!("reference/Result_{n}/logits.raw")));
        assert_eq!(got.len(), want.len());
        let noise: f64 = got.iter().zip(&want).map(|(g, w)| f64::from(g - w).powi(2)).sum();
        let signal: f64 = want.iter().map(|w| f64::from(*w).powi(2)).sum();
        let sqnr = 10.0 * (signal / noise.max(1e-30)).log10();
        assert!(sqnr >= 80.0, "sample {n}: SQNR {sqnr:.1} dB against onnxruntime");
    }

    // A shape that breaks a fixed dim of the model is refused, naming it.
    p.write("qairt.toml", &toml.replace("[1, 1, 8, 8]", "[1, 3, 8, 8]"));
    let out = p.run(&["build", "--target", "cpu"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = flat(&out.stderr);
    assert!(stderr.contains("axis 1 is fixed at 1"), "{stderr}");
}

/// ONNX's `test_argmax_default_axis_example` (int64 output): outputs are written in their own
/// element type by default (the SDK's native output files), and as float32 with
/// `[verify] output_files = "float32"` (the SDK's default form); both hold ONNX's expected values.
#[test]
fn outputs_are_native_by_default_and_float32_on_request() {
    use prost::Message;
    let dir = repo_root().join("tests/data/onnx-node/test_argmax_default_axis_example");
    let decode = |path: std::path::PathBuf| {
        let proto = qairt::onnx::proto::TensorProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
        qairt::onnx::decode_tensor(&proto, &Default::default()).unwrap()
    };
    let p = Project::empty();
    std::fs::copy(dir.join("model.onnx"), p.path("model.onnx")).unwrap();
    let data = decode(dir.join("test_data_set_0/input_0.pb"));
    std::fs::write(p.path("data.raw"), data.data.to_packed_bytes()).unwrap();
    p.write("list.txt", "data.raw\n");
    let toml = "[project]\nname = \"argmax\"\n\n[model]\npath = \"model.onnx\"\n\n[[target]]\nname = \"cpu\"\nbackend = \"cpu\"\n\n[verify]\ninput_list = \"list.txt\"\n";
    p.write("qairt.toml", toml);
    let expected = decode(dir.join("test_data_set_0/output_0.pb"));
    let want: Vec<i64> = expected.to_i64_vec().unwrap();
    let out = p.run(&["build"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let native = std::fs::read(p.path("out/cpu/outputs/Result_0/result.raw")).unwrap();
    let got: Vec<i64> = native.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(got, want);

    p.write(
        "qairt.toml",
        &toml.replace("input_list = \"list.txt\"", "input_list = \"list.txt\"\noutput_files = \"float32\""),
    );
    let out = p.run(&["build"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let floats = read_f32(&p.path("out/cpu/outputs/Result_0/result.raw"));
    assert_eq!(floats, want.iter().map(|&v| v as f32).collect::<Vec<_>>());

    // A misspelled value is a diagnostic naming the allowed ones.
    p.write(
        "qairt.toml",
        &toml.replace("input_list = \"list.txt\"", "input_list = \"list.txt\"\noutput_files = \"f32\""),
    );
    let out = p.run(&["build"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(flat(&out.stderr).contains("native, float32"), "{}", flat(&out.stderr));
}

/// The accuracy debugger's layerwise and cumulative modes on a model whose uint8 image input
/// runs through integer tensors (Transpose of the uint8 input, then Cast) before its float
/// layers (the zoo's `uint8_classifier`): integer tensors have no float reference to seed a
/// step with, so they keep the values the run computes, and every float layer gets its row.
#[test]
fn layerwise_and_cumulative_modes_run_through_integer_tensors() {
    let p = Project::empty();
    copy_dir(&repo_root().join("tests/data/zoo/uint8_classifier"), p.dir.path());
    for mode in ["layerwise", "cumulative"] {
        let out = p.run(&["build", "--target", "htp-w8a8", "--mode", mode]);
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value =
            serde_json::from_str(&p.read("out/htp-w8a8/verify/summary.json")).expect("summary.json");
        assert_eq!(summary["mode"], mode);
        let layers = summary["layers"].as_array().expect("layers");
        let conv = layers.iter().find(|l| l["name"] == "/body/body.0/Conv_output_0").expect("first Conv row");
        let sqnr = conv["metrics"]["sqnr_db"].as_f64().expect("a finite SQNR");
        // Layerwise isolates the Conv's own 8-bit error (its input seeded from float); both
        // modes see the quantized input of the first Conv, never a run of integer garbage.
        assert!(sqnr > 20.0, "{mode}: first Conv {sqnr} dB");
    }
}

/// A float16 tensor on a quantized target runs unquantized in float16 (qairt encodes float32
/// tensors only), and the build says so instead of reporting a quantized model: ONNX's
/// `test_cast_FLOAT_to_FLOAT16` (float32 input, Cast, float16 output) on `htp` warns and names
/// the tensor, and writes the output in float16.
#[test]
fn float16_tensors_on_a_quantized_target_are_named_in_a_warning() {
    let p = Project::empty();
    let dir = repo_root().join("tests/data/onnx-node/test_cast_FLOAT_to_FLOAT16");
    std::fs::copy(dir.join("model.onnx"), p.path("model.onnx")).unwrap();
    let input = std::fs::read(dir.join("test_data_set_0/input_0.pb")).unwrap();
    let input = <qairt::onnx::proto::TensorProto as prost::Message>::decode(input.as_slice()).unwrap();
    let input = qairt::onnx::decode_tensor(&input, &Default::default()).unwrap();
    std::fs::write(p.path("input.raw"), input.data.to_packed_bytes()).unwrap();
    p.write("list.txt", "input.raw\n");
    p.write(
        "qairt.toml",
        "[project]\nname = \"cast\"\n\n[model]\npath = \"model.onnx\"\n\n[calibration]\ninput_list = \"list.txt\"\n\n[[target]]\nname = \"cpu\"\n\
         backend = \"cpu\"\n\n[[target]]\nname = \"htp\"\nbackend = \"htp\"\n\n[verify]\ninput_list = \"list.txt\"\n",
    );
    let build = p.build();
    build.assert_ok();
    let stderr = flat(build.stderr.as_bytes());
    assert!(stderr.contains("qairt::quantize::float16_unquantized"), "{stderr}");
    assert!(stderr.contains("target \"htp\": 1 float16/bfloat16/float64 tensors (the first: \"output\")"), "{stderr}");
    // The float32 input is quantized (8 bits), the Cast output stays float16: 12 values of 2 bytes.
    assert_eq!(std::fs::read(p.path("out/htp/outputs/Result_0/output.raw")).unwrap().len(), 24);
}
