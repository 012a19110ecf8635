//! Writing `encodings.json`: the final encodings of every quantized tensor in the AIMET 0.6.1
//! dict form that `qairt-converter --quantization_overrides` accepts.
//!
//! Output is deterministic: top-level keys, tensor names and entry fields are sorted (as
//! AIMET's `json.dump(..., sort_keys=True)` does), two-space indentation, `\n` line ends.
//! Floats are the exact value of the stored f32, written as the shortest decimal that reads
//! back as that same f64 (so any reader, f32 or f64, gets the exact value). Offsets are
//! integers, `is_symmetric` is the string `"True"`/`"False"` and `dtype` is `"int"`/`"float"`
//! as in AIMET's exports. A per-channel encoding is a list with one entry per channel. Graph
//! constants go to `param_encodings`, everything else to `activation_encodings`.
//!
//! The dict form has no per-block encodings: a model with per-block weights gets the 1.0.0
//! list form instead (AIMET's `PER_BLOCK` entries, with the effective block scales; an LPBQ
//! input's integer/float split is the overrides file's, not the quantized model's), which the
//! SDK reads as well.

use std::fmt::Write as _;

use super::{AimetVersion, BlockEncoding, OverrideEncoding, Overrides, write_overrides_json};
use crate::quant::encoding::{Encoding, QuantizedGraph, TensorEncoding};

/// The AIMET dict-form encodings of every tensor of `q` that has an encoding.
pub fn write_encodings_json(q: &QuantizedGraph) -> String {
    if q.encodings.values().any(|e| matches!(e, TensorEncoding::PerBlock { .. })) {
        return list_form(q);
    }
    let mut activations = Vec::new();
    let mut params = Vec::new();
    for (&id, enc) in &q.encodings {
        let Some(info) = q.graph.tensors.get(id.index()) else { continue };
        let target = if q.graph.is_constant(id) { &mut params } else { &mut activations };
        target.push((info.name.as_str(), enc));
    }
    activations.sort_by(|a, b| a.0.cmp(b.0));
    params.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("{\n");
    write_section(&mut out, "activation_encodings", &activations);
    out.push_str(",\n  \"excluded_layers\": [],\n");
    write_section(&mut out, "param_encodings", &params);
    out.push_str(",\n  \"version\": \"0.6.1\"\n}\n");
    out
}

/// The 1.0.0 list form of `q`'s encodings (through the overrides writer).
fn list_form(q: &QuantizedGraph) -> String {
    let mut o = Overrides { version: Some("1.0.0".into()), ..Default::default() };
    for (&id, enc) in &q.encodings {
        let Some(info) = q.graph.tensors.get(id.index()) else { continue };
        let entry = match enc {
            TensorEncoding::Float { bitwidth } => OverrideEncoding::Float { bitwidth: *bitwidth },
            TensorEncoding::PerTensor(e) => OverrideEncoding::Int(vec![e.clone()]),
            TensorEncoding::PerChannel { channels, .. } => OverrideEncoding::Int(channels.clone()),
            TensorEncoding::PerBlock { block_size, blocks, .. } => OverrideEncoding::PerBlock(BlockEncoding {
                bitwidth: blocks.first().map_or(0, |b| b.bitwidth),
                block_size: *block_size as u32,
                blocks: blocks.clone(),
                lpbq: None,
            }),
        };
        let section = if q.graph.is_constant(id) { &mut o.params } else { &mut o.activations };
        section.insert(info.name.clone(), entry);
    }
    // Every value is finite (encodings are checked when made), so the writer cannot refuse.
    write_overrides_json(&o, AimetVersion::V1_0_0, None).unwrap_or_default()
}

fn write_section(out: &mut String, key: &str, entries: &[(&str, &TensorEncoding)]) {
    let _ = write!(out, "  \"{key}\": {{");
    for (i, (name, enc)) in entries.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        let _ = write!(out, "    {}: [", json_string(name));
        let items: Vec<String> = match enc {
            TensorEncoding::Float { bitwidth } => {
                vec![format!("{{\"bitwidth\": {bitwidth}, \"dtype\": \"float\"}}")]
            }
            TensorEncoding::PerTensor(e) => vec![int_entry(e)],
            TensorEncoding::PerChannel { channels, .. } => channels.iter().map(int_entry).collect(),
            // `write_encodings_json` writes these in the list form.
            TensorEncoding::PerBlock { blocks, .. } => blocks.iter().map(int_entry).collect(),
        };
        for (j, item) in items.iter().enumerate() {
            out.push_str(if j == 0 { "\n      " } else { ",\n      " });
            out.push_str(item);
        }
        out.push_str("\n    ]");
    }
    out.push_str(if entries.is_empty() { "}" } else { "\n  }" });
}

fn int_entry(e: &Encoding) -> String {
    format!(
        "{{\"bitwidth\": {}, \"dtype\": \"int\", \"is_symmetric\": \"{}\", \"max\": {}, \"min\": {}, \"offset\": {}, \"scale\": {}}}",
        e.bitwidth,
        if e.symmetric { "True" } else { "False" },
        json_number(e.max),
        json_number(e.min),
        e.offset,
        json_number(e.scale),
    )
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The f32's exact value as the shortest f64 decimal (ryu via serde_json); non-finite values,
/// which no valid encoding holds, are written as 0.0 rather than as invalid JSON.
fn json_number(x: f32) -> String {
    let v = x as f64;
    match serde_json::Number::from_f64(v) {
        Some(n) => {
            let s = n.to_string();
            if s.contains(['.', 'e', 'E']) { s } else { format!("{s}.0") }
        }
        None => "0.0".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ir::{DType, Graph, Tensor, TensorInfo};
    use crate::quant::aimet::{OverrideEncoding, parse_overrides};
    use crate::quant::settings::Schema;

    fn quantized() -> QuantizedGraph {
        let mut g = Graph::default();
        let mut add =
            |name: &str, shape: Vec<usize>| g.add_tensor(TensorInfo { name: name.into(), dtype: DType::F32, shape });
        let x = add("x \"quoted\"", vec![4]);
        let w = add("conv.weight", vec![2, 2]);
        let b = add("conv.bias", vec![2]);
        let y = add("/conv/Conv_output_0", vec![2]);
        let z = add("z", vec![2]);
        g.constants.insert(w, Tensor::from_f32(vec![2, 2], vec![0.0; 4]));
        g.constants.insert(b, Tensor::from_f32(vec![2], vec![0.0; 2]));
        let mut encodings = BTreeMap::new();
        encodings.insert(x, TensorEncoding::PerTensor(Encoding::asymmetric(-1.8, 0.5, 8)));
        encodings.insert(
            w,
            TensorEncoding::PerChannel {
                axis: 0,
                channels: vec![Encoding::symmetric(-0.3, 0.7, 8), Encoding::symmetric(-1e-3, 2e-4, 8)],
            },
        );
        encodings.insert(b, TensorEncoding::PerTensor(Encoding::int32_with_scale(1.25e-5)));
        encodings.insert(y, TensorEncoding::PerTensor(Encoding::from_range(0.0, 6.0, 16, Schema::Asymmetric)));
        encodings.insert(z, TensorEncoding::Float { bitwidth: 16 });
        QuantizedGraph { graph: g, encodings }
    }

    /// write -> parse gives back exactly the same encodings, tensor by tensor.
    #[test]
    fn round_trips_through_the_parser() {
        let q = quantized();
        let text = write_encodings_json(&q);
        let parsed = parse_overrides(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert!(parsed.source.warnings.is_empty(), "{:?}", parsed.source.warnings);
        assert_eq!(parsed.version.as_deref(), Some("0.6.1"));
        for (&id, enc) in &q.encodings {
            let name = q.graph.name(id);
            let section = if q.graph.is_constant(id) { &parsed.params } else { &parsed.activations };
            let got = section.get(name).unwrap_or_else(|| panic!("{name} missing"));
            let want = match enc {
                TensorEncoding::Float { bitwidth } => OverrideEncoding::Float { bitwidth: *bitwidth },
                TensorEncoding::PerTensor(e) => OverrideEncoding::Int(vec![e.clone()]),
                TensorEncoding::PerChannel { channels, .. } => OverrideEncoding::Int(channels.clone()),
                TensorEncoding::PerBlock { .. } => unreachable!("no per-block encodings here"),
            };
            assert_eq!(got, &want, "{name}");
        }
        assert_eq!(parsed.activations.len() + parsed.params.len(), 5);
    }

    /// Fixed layout: sorted keys, exact f32 values, integer offsets, string booleans. The
    /// numbers were computed independently with numpy: the SDK rule in float64 on
    /// float32(-1.8), float32(0.5), scale rounded to float32 (0.009019607678055763 as f64),
    /// min/max = float32(-200 * scale), float32(55 * scale).
    #[test]
    fn layout_is_fixed() {
        let q = quantized();
        let text = write_encodings_json(&q);
        assert_eq!(text, write_encodings_json(&q.clone()));
        let x_at = text.find("\"x \\\"quoted\\\"\": [").unwrap();
        let y_at = text.find("\"/conv/Conv_output_0\"").unwrap();
        assert!(y_at < x_at, "names sorted: '/' < 'x'");
        assert!(text.contains(
            "{\"bitwidth\": 8, \"dtype\": \"int\", \"is_symmetric\": \"False\", \"max\": 0.4960784316062927, \"min\": -1.8039215803146362, \"offset\": -200, \"scale\": 0.009019607678055763}"
        ), "{text}");
        assert!(text.contains("\"offset\": -2147483648"));
        assert!(text.contains("{\"bitwidth\": 16, \"dtype\": \"float\"}"));
        let keys: Vec<usize> =
            ["\"activation_encodings\"", "\"excluded_layers\"", "\"param_encodings\"", "\"version\""]
                .iter()
                .map(|k| text.find(k).unwrap())
                .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn empty_graph_is_valid_json() {
        let q = QuantizedGraph { graph: Graph::default(), encodings: BTreeMap::new() };
        let text = write_encodings_json(&q);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["activation_encodings"], serde_json::json!({}));
        assert!(parse_overrides(&text).is_ok());
    }
}
