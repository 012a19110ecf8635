//! The model's own encodings (from stripped QDQ pairs, [`Graph::model_encodings`]) as
//! overrides, layered under the overrides file.
//!
//! Precedence, tensor by tensor: the overrides file > the model's own encodings > calibration.
//! [`model_overrides`] turns the model's encodings into an [`Overrides`] value the quantizer
//! already consumes; [`layer_overrides`] puts the file's entries on top.
//!
//! # From ONNX to the AIMET/QNN convention
//!
//! ONNX: `x = (q_onnx - zero_point) * scale`, `q_onnx` on the type's own grid (`-128..=127` for
//! int8, `0..=255` for uint8). AIMET/QNN: `x = (q + offset) * scale`, `q` on the unsigned grid
//! `[0, 2^bw - 1]`, `offset <= 0`. With `q = q_onnx + shift`, `shift = 2^(bw-1)` for signed
//! types and 0 for unsigned ones: `offset = -(zero_point + shift)`. So uint8 `zp` -> `-zp`;
//! int8 `zp` -> `-(zp + 128)`; an int32 bias with `zp = 0` -> `-2^31` (QNN's `SFIXED_POINT_32`
//! with offset 0, [`Encoding::int32_with_scale`]). The encoding is symmetric when the zero point
//! is the grid's middle (`0` signed, `2^(bw-1)` unsigned); `min`/`max` are the float values of
//! the grid's ends ([`Encoding::from_scale_offset`]).
//!
//! # What is left to calibration
//!
//! An entry is not turned into an override (and [`skipped_model_encodings`] says why) when its
//! tensor is gone from the graph (a pass removed it), is not float, is per axis on an
//! activation (the quantizer encodes activations per tensor), is per axis along another axis
//! than the one the quantizer uses for that weight ([`channel_axis`]), or is per axis but not
//! symmetric (the SDK requires symmetric per-channel weights, and so does the overrides parser).

use std::collections::BTreeSet;

use crate::ir::{DType, Graph, ModelEncoding, TensorId};
use crate::quant::aimet::{OverrideEncoding, Overrides, Section, channel_axis, sanitize_name};
use crate::quant::encoding::Encoding;

/// A model encoding that [`model_overrides`] leaves out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEncoding {
    /// The tensor name (as in [`Graph::model_encodings`]).
    pub tensor: String,
    pub reason: String,
}

/// The model's own encodings as overrides: parameters (graph constants) under `params`,
/// everything else under `activations`, keyed by the graph's tensor names. Entries that cannot
/// be used are left out ([`skipped_model_encodings`]).
pub fn model_overrides(graph: &Graph) -> Overrides {
    convert(graph).0
}

/// The entries [`model_overrides`] leaves out, in name order, for a warning.
pub fn skipped_model_encodings(graph: &Graph) -> Vec<SkippedEncoding> {
    convert(graph).1
}

/// `model` with `file`'s entries on top: a tensor the file lists (under its exact name or its
/// SDK-sanitized one, in either section) takes the file's entry and loses the model's. The
/// result keeps the file's `version`, `excluded_layers` and `source`, so diagnostics about file
/// entries still point into the file (entries from the model have no span; a diagnostic about
/// one points at the whole file).
pub fn layer_overrides(file: Option<&Overrides>, model: Overrides) -> Overrides {
    let Some(file) = file else { return model };
    let listed: BTreeSet<String> = file.by_name().into_keys().map(sanitize_name).collect();
    let mut merged = file.clone();
    for (section, name, encoding) in model.entries() {
        if !listed.contains(&sanitize_name(name)) {
            merged.section_mut(section).insert(name.to_string(), encoding.clone());
        }
    }
    merged
}

fn convert(graph: &Graph) -> (Overrides, Vec<SkippedEncoding>) {
    let names = graph.names();
    let mut overrides = Overrides::default();
    let mut skipped = Vec::new();
    for (name, enc) in &graph.model_encodings {
        let skip = |reason: String| SkippedEncoding { tensor: name.clone(), reason };
        let Some(&id) = names.get(name.as_str()) else {
            skipped.push(skip("the optimized graph has no tensor of this name".into()));
            continue;
        };
        match entry(graph, id, enc) {
            Ok((section, e)) => {
                overrides.section_mut(section).insert(name.clone(), e);
            }
            Err(reason) => skipped.push(skip(reason)),
        }
    }
    (overrides, skipped)
}

fn entry(graph: &Graph, id: TensorId, enc: &ModelEncoding) -> Result<(Section, OverrideEncoding), String> {
    let info = graph.info(id);
    if info.dtype != DType::F32 {
        return Err(format!("it is a {} tensor; only float tensors are quantized", info.dtype.name()));
    }
    if enc.scales.is_empty() || enc.scales.len() != enc.zero_points.len() {
        return Err(format!("{} scales and {} zero points", enc.scales.len(), enc.zero_points.len()));
    }
    let section = if graph.is_constant(id) { Section::Param } else { Section::Activation };
    let channels: Vec<Encoding> =
        enc.scales.iter().zip(&enc.zero_points).map(|(&s, &z)| aimet_encoding(enc, s, z)).collect();
    if let Some(axis) = enc.axis
        && channels.len() > 1
    {
        if section == Section::Activation {
            return Err(format!(
                "per-axis encoding (axis {axis}) on an activation; activations are encoded per tensor"
            ));
        }
        let expected = channel_axis(graph, id);
        if axis != expected {
            return Err(format!(
                "per-axis encoding along axis {axis}, but qairt encodes this weight per channel along axis {expected}"
            ));
        }
        if !channels.iter().all(|c| c.symmetric) {
            return Err(
                "per-channel encoding with a zero point off the grid's middle; per-channel weights must be symmetric"
                    .into(),
            );
        }
    }
    Ok((section, OverrideEncoding::Int(channels)))
}

/// One ONNX `(scale, zero_point)` in the AIMET convention (module docs).
fn aimet_encoding(enc: &ModelEncoding, scale: f32, zero_point: i64) -> Encoding {
    let middle = 1i64 << (enc.bitwidth.clamp(1, 32) - 1);
    let shift = if enc.signed { middle } else { 0 };
    let symmetric = zero_point == if enc.signed { 0 } else { middle };
    Encoding::from_scale_offset(enc.bitwidth, scale, -(zero_point + shift), symmetric)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ir::{Conv, Node, Op, Tensor, TensorInfo, Window};
    use crate::quant::aimet::{parse_overrides, resolve_overrides};

    fn e(scales: &[f32], zero_points: &[i64], axis: Option<usize>, bitwidth: u32, signed: bool) -> ModelEncoding {
        ModelEncoding { scales: scales.to_vec(), zero_points: zero_points.to_vec(), axis, bitwidth, signed }
    }

    /// x [1,1,2,2] -> Conv(conv.weight [2,1,1,1], conv.bias [2]) -> y -> Flatten -> f -> Gemm(fc.weight
    /// [3,8], trans_b) -> z.
    fn graph() -> Graph {
        let mut g = Graph::default();
        let mut add =
            |name: &str, shape: Vec<usize>| g.add_tensor(TensorInfo { name: name.into(), dtype: DType::F32, shape });
        let x = add("x", vec![1, 1, 2, 2]);
        let w = add("conv.weight", vec![2, 1, 1, 1]);
        let b = add("conv.bias", vec![2]);
        let y = add("y", vec![1, 2, 2, 2]);
        let f = add("f", vec![1, 8]);
        let fw = add("fc.weight", vec![3, 8]);
        let z = add("z", vec![1, 3]);
        g.constants.insert(w, Tensor::from_f32(vec![2, 1, 1, 1], vec![1.0, -1.0]));
        g.constants.insert(b, Tensor::from_f32(vec![2], vec![0.5, 0.25]));
        g.constants.insert(fw, Tensor::from_f32(vec![3, 8], vec![0.5; 24]));
        g.inputs = vec![x];
        g.outputs = vec![z];
        let window = Window { kernel: vec![1, 1], strides: vec![1, 1], pads: vec![0; 4], dilations: vec![1, 1] };
        let conv = Op::Conv(Conv { window, group: 1 });
        g.nodes.push(Node { name: "conv".into(), op: conv, inputs: vec![x, w, b], outputs: vec![y] });
        g.nodes.push(Node {
            name: "flat".into(),
            op: Op::Flatten(crate::ops::Flatten { axis: 1 }),
            inputs: vec![y],
            outputs: vec![f],
        });
        let gemm = Op::Gemm(crate::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true });
        g.nodes.push(Node { name: "fc".into(), op: gemm, inputs: vec![f, fw], outputs: vec![z] });
        g
    }

    fn int(o: &Overrides, section: Section, name: &str) -> Vec<Encoding> {
        match o.section(section).get(name) {
            Some(OverrideEncoding::Int(c)) => c.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    /// Hand-computed conversions: uint8 zp 10 -> offset -10, min = -10 * 0.5 = -5,
    /// max = (255 - 10) * 0.5 = 122.5; int8 zp 0 -> offset -128 symmetric, min = -128 * 0.25 = -32,
    /// max = 127 * 0.25 = 31.75; int8 zp -3 -> offset -125 asymmetric; int32 zp 0 -> -2^31;
    /// uint8 zp 128 -> offset -128, symmetric.
    #[test]
    fn onnx_zero_points_become_aimet_offsets() {
        let mut g = graph();
        g.model_encodings = BTreeMap::from([
            ("x".into(), e(&[0.5], &[10], None, 8, false)),
            ("y".into(), e(&[0.25], &[128], None, 8, false)),
            ("conv.weight".into(), e(&[0.25, 0.125], &[0, 0], Some(0), 8, true)),
            ("conv.bias".into(), e(&[0.0625, 0.03125], &[0, 0], Some(0), 32, true)),
            ("fc.weight".into(), e(&[0.01], &[-3], None, 8, true)),
        ]);
        let o = model_overrides(&g);
        assert!(skipped_model_encodings(&g).is_empty());
        let x = &int(&o, Section::Activation, "x")[0];
        assert_eq!((x.bitwidth, x.scale, x.offset, x.min, x.max, x.symmetric), (8, 0.5, -10, -5.0, 122.5, false));
        let y = &int(&o, Section::Activation, "y")[0];
        assert_eq!((y.offset, y.symmetric, y.min, y.max), (-128, true, -32.0, 31.75));
        let w = int(&o, Section::Param, "conv.weight");
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].offset, w[0].symmetric, w[0].min, w[0].max), (-128, true, -32.0, 31.75));
        assert_eq!((w[1].scale, w[1].offset, w[1].min), (0.125, -128, -16.0));
        let b = int(&o, Section::Param, "conv.bias");
        assert_eq!((b[0].bitwidth, b[0].offset, b[0].symmetric), (32, i32::MIN, true));
        assert_eq!(b[0].min, -2147483648.0 * 0.0625);
        let fc = &int(&o, Section::Param, "fc.weight")[0];
        assert_eq!((fc.offset, fc.symmetric), (-125, false));
        // And the quantizer's own override check accepts every entry against the graph.
        let (resolved, problems) = resolve_overrides(&o, &g);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(resolved.tensors.len(), 5);
    }

    #[test]
    fn unusable_entries_are_skipped_with_a_reason() {
        let mut g = graph();
        g.model_encodings = BTreeMap::from([
            ("gone".into(), e(&[0.5], &[0], None, 8, false)),
            ("y".into(), e(&[0.5, 0.25], &[0, 0], Some(1), 8, false)),
            ("fc.weight".into(), e(&[0.5; 8], &[0; 8], Some(1), 8, true)),
            ("conv.weight".into(), e(&[0.5, 0.5], &[0, 1], Some(0), 8, true)),
        ]);
        let o = model_overrides(&g);
        assert!(o.activations.is_empty() && o.params.is_empty(), "{o:?}");
        let skipped = skipped_model_encodings(&g);
        let why: BTreeMap<&str, &str> = skipped.iter().map(|s| (s.tensor.as_str(), s.reason.as_str())).collect();
        assert!(why["gone"].contains("no tensor"));
        assert!(why["y"].contains("activation"));
        assert!(why["fc.weight"].contains("axis 0"), "Gemm B with trans_b has its channels on axis 0");
        assert!(why["conv.weight"].contains("symmetric"));
    }

    #[test]
    fn the_file_wins_per_tensor_and_keeps_its_spans() {
        let mut g = graph();
        g.model_encodings = BTreeMap::from([
            ("x".into(), e(&[0.5], &[10], None, 8, false)),
            ("conv.weight".into(), e(&[0.25, 0.125], &[0, 0], Some(0), 8, true)),
            ("fc.weight".into(), e(&[0.01], &[0], None, 8, true)),
        ]);
        let text = r#"{"activation_encodings": {"x": [{"bitwidth": 16, "dtype": "float"}]},
                       "param_encodings": {"conv_weight": [{"bitwidth": 8, "dtype": "int"}]}}"#;
        let file = parse_overrides(text).unwrap();
        let merged = layer_overrides(Some(&file), model_overrides(&g));
        assert_eq!(merged.activations["x"], OverrideEncoding::Float { bitwidth: 16 });
        // The file's sanitized `conv_weight` names conv.weight: the model's entry goes.
        assert!(!merged.params.contains_key("conv.weight"));
        assert_eq!(merged.params["conv_weight"], OverrideEncoding::Calibrated { bitwidth: 8, symmetric: None });
        assert_eq!(int(&merged, Section::Param, "fc.weight")[0].offset, -128);
        let span = merged.spans_of(Section::Activation, "x").name;
        assert_eq!(text.get(span.offset..span.offset + span.len), Some("\"x\""));
        let (_, problems) = resolve_overrides(&merged, &g);
        assert!(problems.is_empty(), "{problems:?}");
        // Without a file the model's encodings are the overrides.
        assert_eq!(layer_overrides(None, model_overrides(&g)), model_overrides(&g));
    }

    /// onnxruntime's QDQ digits models through import, optimize and quantize with no
    /// calibration statistics at all: every tensor's encoding in `encodings.json` is the one
    /// onnxruntime chose (the fixture manifest's AIMET scale/offset, computed by numpy), even
    /// where the settings say otherwise (`per_channel` flipped against the model).
    #[test]
    fn onnxruntimes_qdq_digits_encodings_reach_encodings_json() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/digits_qdq");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
        for (variant, per_channel) in
            [("per_tensor", true), ("per_channel", false), ("a16_per_channel", false), ("w4_per_channel", false)]
        {
            let v = &manifest["variants"][variant];
            let bytes = std::fs::read(root.join(v["model"].as_str().unwrap())).unwrap();
            let model = crate::onnx::decode_model(&bytes).unwrap();
            let g = crate::onnx::import(&model, &BTreeMap::new(), &BTreeMap::new()).unwrap();
            let (g, _) = crate::passes::optimize(g).unwrap();
            assert_eq!(skipped_model_encodings(&g), [], "{variant}");
            let settings = crate::quant::settings::QuantSettings { per_channel, ..Default::default() };
            let stats = crate::quant::stats::CalibrationStats::default();
            let q = crate::quant::quantize(&g, &stats, &settings, Some(&model_overrides(&g))).unwrap();
            let json: serde_json::Value = serde_json::from_str(&crate::quant::write_encodings_json(&q)).unwrap();
            let mut count = 0;
            for (section, key) in [("activations", "activation_encodings"), ("params", "param_encodings")] {
                for (name, e) in v[section].as_object().unwrap() {
                    let got = json[key][name].as_array().unwrap_or_else(|| panic!("{variant}: no {key} for {name}"));
                    let scales = e["aimet"]["scale"].as_array().unwrap();
                    let offsets = e["aimet"]["offset"].as_array().unwrap();
                    assert_eq!(got.len(), scales.len(), "{variant} {name}");
                    for (c, entry) in got.iter().enumerate() {
                        assert_eq!(entry["scale"].as_f64().map(|s| s as f32), scales[c].as_f64().map(|s| s as f32));
                        assert_eq!(entry["offset"], offsets[c], "{variant} {name}[{c}]");
                        assert_eq!(entry["bitwidth"], e["bitwidth"], "{variant} {name}[{c}]");
                    }
                    count += 1;
                }
            }
            let total = json["activation_encodings"].as_object().unwrap().len()
                + json["param_encodings"].as_object().unwrap().len();
            assert_eq!(count, total, "{variant}: every encoding written is one of onnxruntime's");
        }
    }

    /// With onnxruntime's encodings, qairt's compiled HTP program computes what onnxruntime
    /// computes for the QDQ model (its outputs on 5 test samples, in the fixture): both
    /// dequantize, compute and requantize on the same grids. 8-bit activations (int8 or int4
    /// weights): bit-identical logits (all 50 values of each of the three variants, as observed). 16-bit activations: within one
    /// step of the logits grid (observed: 49 of 50 identical, one value one step apart,
    /// accumulation order).
    #[test]
    fn the_compiled_qdq_digits_model_matches_onnxruntime() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/digits_qdq");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap()).unwrap();
        let read = |rel: String| -> Vec<f32> {
            let bytes = std::fs::read(root.join(rel)).unwrap();
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        };
        for variant in ["per_tensor", "per_channel", "a16_per_channel", "w4_per_channel"] {
            let step = manifest["variants"][variant]["activations"]["logits"]["scale"][0].as_f64().unwrap() as f32;
            let tolerance = if variant.starts_with("a16") { step * 1.001 } else { 0.0 };
            let bytes = std::fs::read(root.join(format!("model_{variant}.onnx"))).unwrap();
            let model = crate::onnx::decode_model(&bytes).unwrap();
            let g = crate::onnx::import(&model, &BTreeMap::new(), &BTreeMap::new()).unwrap();
            let (g, _) = crate::passes::optimize(g).unwrap();
            let settings = crate::quant::settings::QuantSettings::default();
            let stats = crate::quant::stats::CalibrationStats::default();
            let q = crate::quant::quantize(&g, &stats, &settings, Some(&model_overrides(&g))).unwrap();
            let rules = crate::compile::standard_rules();
            let program = crate::compile::compile(&q, rules.get("htp").unwrap()).unwrap();
            let mut identical = 0;
            for k in 0..5 {
                let x = Tensor::from_f32(vec![1, 1, 8, 8], read(format!("inputs/{k}/input.raw")));
                let ours = crate::runtime::exec::execute(&program, &[x], &mut |_, _| {}).unwrap();
                let ort = read(format!("outputs/{variant}/{k}/logits.raw"));
                let ours = ours[0].as_f32().unwrap();
                assert_eq!(ours.len(), ort.len());
                for (a, b) in ours.iter().zip(&ort) {
                    assert!((a - b).abs() <= tolerance, "{variant} sample {k}: {ours:?} vs {ort:?}");
                    identical += usize::from(a == b);
                }
            }
            assert!(identical >= 45, "{variant}: only {identical} of 50 values identical");
        }
    }
}
