//! `[io]`: input files in another layout and element type than the model's, and output files
//! written native or transposed. The fixtures are made here from the committed float files:
//! the digits pixels are the dataset's 0-16 integers divided by 16, so uint8 codes on a 1/16
//! grid stand for them exactly.

use serde_json::Value;

use crate::util::{Project, config, read_f32, repo_root, tree};

/// Rewrites every raw file of `list` (relative to the project) as uint8 codes `q = x * 16`
/// under `to`, with an input list of its own there; checks that every value is exactly
/// `q / 16`, so the float files and the codes stand for the same tensors.
fn write_uint8_copy(p: &Project, list: &str, to: &str) {
    let list_path = p.path(list);
    let dir = list_path.parent().unwrap();
    let mut lines = String::new();
    for (n, line) in std::fs::read_to_string(&list_path).unwrap().lines().enumerate() {
        let values = read_f32(&dir.join(line.trim()));
        let codes: Vec<u8> = values
            .iter()
            .map(|&x| {
                let q = (x * 16.0).round();
                assert!((0.0..=255.0).contains(&q) && q / 16.0 == x, "{line}: {x} is not a code on the 1/16 grid");
                q as u8
            })
            .collect();
        let file = format!("raw/{n:03}.u8");
        let path = p.path(&format!("{to}/{file}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, codes).unwrap();
        lines.push_str(&file);
        lines.push('\n');
    }
    p.write(&format!("{to}/input_list.txt"), &lines);
}

const UINT8_NHWC: &str = "\n[io.inputs.input]\nlayout = \"NHWC\"\ndtype = \"uint8\"\nscale = 0.0625\noffset = 0\n";

fn outputs(p: &Project, target: &str, dir: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    tree(&p.path(&format!("out/{target}/{dir}")))
}

/// The input's encoding on the uint8 files' grid (scale 1/16, offset 0), in the AIMET 0.6.1
/// form, as an overrides file states it for a float build.
const INPUT_ON_THE_FILES_GRID: &str = r#"[{"bitwidth": 8, "dtype": "int", "is_symmetric": "False",
    "max": 15.9375, "min": 0.0, "offset": 0, "scale": 0.0625}]"#;

/// The float NCHW files give the uint8 NHWC files' outputs on every target. A quantized target
/// takes the files' grid as its input's encoding (the SDK's custom I/O: "custom scale and
/// offset on the I/O of a quantized model ... override the quantizer's values"), so the float
/// build pins its input to that grid with its overrides files: the same quantized model.
#[test]
fn nhwc_uint8_inputs_build_the_outputs_of_the_float_nchw_inputs() {
    let float = Project::digits_with(
        &config(20).replace("act_bitwidth = 16\n", "act_bitwidth = 16\noverrides = \"input_only.json\"\n"),
    );
    let mut w8a8: Value = serde_json::from_str(&float.read("overrides.json")).unwrap();
    w8a8["activation_encodings"]["input"] = serde_json::from_str(INPUT_ON_THE_FILES_GRID).unwrap();
    float.write("overrides.json", &w8a8.to_string());
    let input_only =
        format!(r#"{{"activation_encodings": {{"input": {INPUT_ON_THE_FILES_GRID}}}, "param_encodings": {{}}}}"#);
    float.write("input_only.json", &input_only);
    float.build().assert_ok();

    let codes = Project::digits_with(&config(20));
    write_uint8_copy(&codes, "digits/calib/input_list.txt", "u8/calib");
    write_uint8_copy(&codes, "digits/test/input_list.txt", "u8/test");
    let toml = config(20)
        .replace("digits/calib/input_list.txt", "u8/calib/input_list.txt")
        .replace("digits/test/input_list.txt", "u8/test/input_list.txt");
    codes.write("qairt.toml", &format!("{toml}{UINT8_NHWC}"));
    codes.build().assert_ok();

    for target in ["htp-w8a8", "htp-w8a16", "cpu"] {
        for dir in ["outputs", "reference"] {
            let (a, b) = (outputs(&float, target, dir), outputs(&codes, target, dir));
            assert_eq!(a.len(), 20, "{target}/{dir}");
            assert!(a == b, "{target}/{dir}: the uint8 NHWC build wrote other outputs than the float NCHW one");
        }
    }
    // The files' grid won over the w8a8 overrides file's input encoding (1/255) and over
    // w8a16's calibrated 16-bit one.
    for target in ["htp-w8a8", "htp-w8a16"] {
        let encodings: Value = serde_json::from_str(&codes.read(&format!("out/{target}/encodings.json"))).unwrap();
        let input = &encodings["activation_encodings"]["input"][0];
        assert_eq!(
            (&input["scale"], &input["offset"], &input["bitwidth"]),
            (&Value::from(0.0625), &Value::from(0), &Value::from(8)),
            "{target}: {input}"
        );
    }

    // Another grid is another tensor: the conversion is a key of everything that reads inputs,
    // and of nothing else.
    let text = codes.read("qairt.toml");
    codes.write("qairt.toml", &text.replace("offset = 0\n", "offset = -1\n"));
    let b = codes.build();
    assert_eq!(b.status, 0, "{}", b.stderr);
    let built = b.built();
    let stages: std::collections::BTreeSet<&str> = built.iter().map(|(_, s)| s.as_str()).collect();
    assert!(stages.contains("calibrate") && stages.contains("simulate"), "{built:?}");
    assert!(!stages.contains("parse") && !stages.contains("optimize"), "{built:?}");
    assert!(!built.contains(&("cpu".into(), "compile".into())), "a float target's program reads no input: {built:?}");
    assert!(built.contains(&("htp-w8a8".into(), "quantize".into())), "the grid is the input's encoding: {built:?}");
    assert_ne!(outputs(&float, "cpu", "outputs"), outputs(&codes, "cpu", "outputs"), "offset -1 shifts every pixel");
    let text = codes.read("qairt.toml");
    codes.write("qairt.toml", &format!("# a comment\n{text}"));
    assert_eq!(codes.build().built(), Vec::<(String, String)>::new(), "a comment rebuilds nothing");
}

/// `shape`'s NCHW values in NHWC order.
fn nchw_to_nhwc(values: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                out.extend((0..c).map(|k| values[((b * c + k) * h + y) * w + x]));
            }
        }
    }
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A project on the three-channel `colliding_outputs` model (input `x` [1,3,8,8], six outputs
/// [1,4,8,8]), its input files rewritten in NHWC when `nhwc`, with `io` appended to its qairt.toml.
fn colliding_outputs(nhwc: bool, io: &str) -> Project {
    let p = Project::empty();
    crate::util::copy_dir(&repo_root().join("tests/data/models/colliding_outputs"), &p.path("m"));
    let mut list = String::new();
    for k in 0..3 {
        let file = format!("m/inputs/{k}/x.raw");
        if nhwc {
            let values = nchw_to_nhwc(&read_f32(&p.path(&file)), [1, 3, 8, 8]);
            std::fs::write(p.path(&file), f32_bytes(&values)).unwrap();
        }
        list.push_str(&format!("{file}\n"));
    }
    p.write("list.txt", &list);
    let toml = "[project]\nname = \"colliding\"\n[model]\npath = \"m/colliding_outputs.onnx\"\n[calibration]\n\
                input_list = \"list.txt\"\n[[target]]\nname = \"htp-w8a8\"\nbackend = \"htp\"\n[[target]]\n\
                name = \"cpu\"\nbackend = \"cpu\"\n[verify]\ninput_list = \"list.txt\"\n";
    p.write("qairt.toml", &format!("{toml}{io}"));
    p.build().assert_ok();
    p
}

/// With three channels NHWC and NCHW files differ: the inputs must be transposed into the
/// model's layout, and an output asked in NHWC transposed out of it.
#[test]
fn nhwc_inputs_and_outputs_move_the_channels_on_both_sides() {
    let nchw = colliding_outputs(false, "");
    let io = "[io.inputs.x]\nlayout = \"NHWC\"\n[io.outputs.\"a/b\"]\nlayout = \"NHWC\"\n";
    let nhwc = colliding_outputs(true, io);
    let names: Value = serde_json::from_str(&nchw.read("out/cpu/output_names.json")).unwrap();
    let transposed = names["outputs"][0]["file"].as_str().unwrap();
    assert_eq!(names["outputs"][0]["name"], "a/b");
    for target in ["htp-w8a8", "cpu"] {
        for dir in ["outputs", "reference"] {
            let (a, b) = (outputs(&nchw, target, dir), outputs(&nhwc, target, dir));
            assert_eq!(a.len(), 18, "{target}/{dir}");
            for (file, bytes) in &a {
                let expected = if file.ends_with(&format!("/{transposed}")) {
                    let values: Vec<f32> =
                        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                    f32_bytes(&nchw_to_nhwc(&values, [1, 4, 8, 8]))
                } else {
                    bytes.clone()
                };
                assert!(b[file] == expected, "{target}/{dir}/{file} differs");
            }
        }
    }
}

/// A native output of a quantized target holds the codes of its encoding: dequantized with
/// the scale and offset of `encodings.json` they are exactly the float32 outputs. Asking for
/// them re-renders `out/` and rebuilds no stage.
#[test]
fn native_output_files_hold_the_codes_of_the_float32_outputs() {
    let p = Project::digits_with(&config(20));
    p.build().assert_ok();
    let targets = ["htp-w8a8", "htp-w8a16", "cpu"];
    let float: Vec<_> = targets.iter().map(|t| (outputs(&p, t, "outputs"), outputs(&p, t, "reference"))).collect();
    let text = p.read("qairt.toml");
    p.write("qairt.toml", &format!("{text}\n[io.outputs.logits]\ndtype = \"native\"\n"));
    let b = p.build();
    b.assert_ok();
    assert_eq!(b.built(), Vec::<(String, String)>::new(), "only out/ changes");
    for (target, (float_outputs, float_reference)) in targets.iter().zip(&float) {
        assert!(outputs(&p, target, "reference") == *float_reference, "{target}: reference/ stays float32");
        let native = outputs(&p, target, "outputs");
        if *target == "cpu" {
            assert!(native == *float_outputs, "a float target's native output is its float32 output");
            continue;
        }
        let encodings: Value = serde_json::from_str(&p.read(&format!("out/{target}/encodings.json"))).unwrap();
        let e = &encodings["activation_encodings"]["logits"][0];
        let (scale, offset, bits) =
            (e["scale"].as_f64().unwrap() as f32, e["offset"].as_i64().unwrap(), e["bitwidth"].as_u64().unwrap());
        let width = if bits <= 8 { 1 } else { 2 };
        assert_eq!(native.len(), 20);
        for (file, codes) in &native {
            assert_eq!(codes.len(), 10 * width, "{target}/{file}: {bits}-bit codes");
            let codes: Vec<i64> = if width == 1 {
                codes.iter().map(|&q| q as i64).collect()
            } else {
                codes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()
            };
            let dequantized: Vec<f32> = codes.iter().map(|&q| (q + offset) as f32 * scale).collect();
            let expected = &float_outputs[file];
            assert_eq!(f32_bytes(&dequantized), *expected, "{target}/{file}");
        }
    }
}
