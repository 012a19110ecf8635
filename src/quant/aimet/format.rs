//! Writing an [`Overrides`] value back out as an AIMET encodings file, in the 0.6.1 dict form,
//! the 1.0.0 list form or the 2.0.0 QuantizeLinear form (`qairt encodings convert`).
//!
//! Output is deterministic and shaped like AIMET's own exports (`json.dump(indent=4,
//! sort_keys=True)`): keys sorted at every level, four-space indentation, `\n` line ends and a
//! final newline; list-form entries in name order. Floats are the exact value of the stored
//! f32 written as the shortest decimal that reads back as that same f64, so re-reading the
//! output gives bit-identical encodings. Offsets are integers.
//!
//! What each form holds per entry:
//! - dict (0.6.1): `{bitwidth, dtype: "int", is_symmetric: "True"|"False", max, min, offset,
//!   scale}`, one object per channel; `{bitwidth, dtype: "float"}`; a bitwidth-only entry
//!   (range from calibration) keeps only `bitwidth`, `dtype` and, when known, `is_symmetric`.
//! - list (1.0.0): `{bw, dtype: "INT"|"FLOAT", enc_type, is_sym, name, offset: [..], scale:
//!   [..]}`. Like AIMET's 1.0.0 export it carries no
//!   `min`/`max`: they follow from scale and offset.
//!
//! - 2.0.0: `{"encodings": [{axis, name, output_dtype, y_scale, y_zero_point}], "version"}`,
//!   entries in name order. A symmetric encoding is written signed (`int8`, zero point 0), an
//!   asymmetric one unsigned (`uint8`, zero point `-offset`), and a zero point of 0 is left
//!   out, as AIMET does; per-channel entries need their channel axis ([`Overrides::axes`], which
//!   a 2.0.0 file gives and [`place_sections`](super::place_sections) takes from the model).
//!   The form has no sections and no `excluded_layers`.
//!
//! Per-block entries (`PER_BLOCK`, `LPBQ`) are written as AIMET writes them ([`blocks`]).
//!
//! What a form cannot hold is an error rather than a silent loss: per-block encodings in the
//! dict form; float and bitwidth-only entries in the 2.0.0 form; a 2.0.0 file's entries, whose
//! sections only the model knows, in the older forms.

mod blocks;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{OverrideEncoding, Overrides};
use crate::quant::encoding::Encoding;

/// The two on-disk forms of an AIMET encodings file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AimetVersion {
    /// The dict form (AIMET 0.6.x; what the SDK guide shows).
    V0_6_1,
    /// The list form (AIMET 2, schema "1.0.0").
    V1_0_0,
    /// The QuantizeLinear form (aimet-onnx 2.x's default export, schema "2.0.0").
    V2_0_0,
}

impl AimetVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            AimetVersion::V0_6_1 => "0.6.1",
            AimetVersion::V1_0_0 => "1.0.0",
            AimetVersion::V2_0_0 => "2.0.0",
        }
    }
}

/// Why an [`Overrides`] value cannot be written in the requested form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("\"{name}\" has {enc_type} encodings, which the {version} dict form cannot express")]
    NotExpressible { name: String, enc_type: String, version: &'static str },
    #[error("the {field} of \"{name}\" is not a finite number")]
    NonFinite { name: String, field: &'static str },
    /// Something only the model knows: a 2.0.0 entry's section, a per-channel entry's axis.
    #[error("\"{name}\" needs the model to be written in the {version} form: {what}")]
    NeedsModel { name: String, what: &'static str, version: &'static str },
}

/// `o` as the text of an AIMET encodings file of `version`. `quantizer_args`, when given, is
/// copied as the file's `quantizer_args` (AIMET's record of the QuantSim settings, which
/// [`Overrides`] does not keep).
pub fn write_overrides_json(
    o: &Overrides,
    version: AimetVersion,
    quantizer_args: Option<&Value>,
) -> Result<String, FormatError> {
    if version == AimetVersion::V2_0_0 {
        return v2_document(o);
    }
    if let Some(name) = o.encodings.keys().next() {
        let what = "its section (activation or parameter) comes from the model";
        return Err(FormatError::NeedsModel { name: name.clone(), what, version: version.as_str() });
    }
    let (activations, params) = match version {
        AimetVersion::V0_6_1 => (dict_section(&o.activations)?, dict_section(&o.params)?),
        _ => (list_section(&o.activations)?, list_section(&o.params)?),
    };
    let mut root = Map::new();
    root.insert("activation_encodings".into(), activations);
    root.insert("excluded_layers".into(), json!(o.excluded_layers));
    root.insert("param_encodings".into(), params);
    if let Some(args) = quantizer_args {
        root.insert("quantizer_args".into(), args.clone());
    }
    root.insert("version".into(), json!(version.as_str()));
    Ok(pretty(&sorted(Value::Object(root))))
}

/// The same value with every object's keys in sorted order, whatever map serde_json uses.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn pretty(v: &Value) -> String {
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    // Serializing a `Value` into a Vec cannot fail (keys are strings, numbers are finite).
    let _ = v.serialize(&mut ser);
    let mut text = String::from_utf8(bytes).unwrap_or_default();
    text.push('\n');
    text
}

fn number(x: f32, name: &str, field: &'static str) -> Result<Value, FormatError> {
    serde_json::Number::from_f64(f64::from(x))
        .map(Value::Number)
        .ok_or_else(|| FormatError::NonFinite { name: name.to_string(), field })
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

// ----- dict form -----

fn dict_section(entries: &std::collections::BTreeMap<String, OverrideEncoding>) -> Result<Value, FormatError> {
    let mut out = Map::new();
    for (name, enc) in entries {
        out.insert(name.clone(), Value::Array(dict_entry(name, enc)?));
    }
    Ok(Value::Object(out))
}

fn dict_entry(name: &str, enc: &OverrideEncoding) -> Result<Vec<Value>, FormatError> {
    Ok(match enc {
        OverrideEncoding::Float { bitwidth } => vec![json!({"bitwidth": bitwidth, "dtype": "float"})],
        OverrideEncoding::Calibrated { bitwidth, symmetric } => {
            let mut e = json!({"bitwidth": bitwidth, "dtype": "int"});
            if let Some(s) = symmetric {
                e["is_symmetric"] = json!(py_bool(*s));
            }
            vec![e]
        }
        OverrideEncoding::Int(channels) => channels.iter().map(|c| dict_int(name, c)).collect::<Result<_, _>>()?,
        OverrideEncoding::PerBlock(b) => {
            return Err(FormatError::NotExpressible {
                name: name.to_string(),
                enc_type: b.enc_type().to_string(),
                version: AimetVersion::V0_6_1.as_str(),
            });
        }
    })
}

fn dict_int(name: &str, e: &Encoding) -> Result<Value, FormatError> {
    Ok(json!({
        "bitwidth": e.bitwidth,
        "dtype": "int",
        "is_symmetric": py_bool(e.symmetric),
        "max": number(e.max, name, "max")?,
        "min": number(e.min, name, "min")?,
        "offset": e.offset,
        "scale": number(e.scale, name, "scale")?,
    }))
}

// ----- list form -----

fn list_section(entries: &std::collections::BTreeMap<String, OverrideEncoding>) -> Result<Value, FormatError> {
    entries.iter().map(|(name, enc)| list_entry(name, enc)).collect::<Result<Vec<_>, _>>().map(Value::Array)
}

fn list_entry(name: &str, enc: &OverrideEncoding) -> Result<Value, FormatError> {
    Ok(match enc {
        OverrideEncoding::Float { bitwidth } => {
            json!({"bw": bitwidth, "dtype": "FLOAT", "enc_type": "PER_TENSOR", "name": name})
        }
        OverrideEncoding::Calibrated { bitwidth, symmetric } => {
            let mut e = json!({"bw": bitwidth, "dtype": "INT", "enc_type": "PER_TENSOR", "name": name});
            if let Some(s) = symmetric {
                e["is_sym"] = json!(s);
            }
            e
        }
        OverrideEncoding::Int(channels) => {
            let enc_type = if channels.len() > 1 { "PER_CHANNEL" } else { "PER_TENSOR" };
            list_int(name, enc_type, channels)?
        }
        OverrideEncoding::PerBlock(b) => blocks::list_entry(name, b)?,
    })
}

fn list_int(name: &str, enc_type: &str, channels: &[Encoding]) -> Result<Value, FormatError> {
    let first = channels.first();
    let scales = channels.iter().map(|c| number(c.scale, name, "scale")).collect::<Result<Vec<_>, _>>()?;
    let offsets: Vec<i32> = channels.iter().map(|c| c.offset).collect();
    Ok(json!({
        "bw": first.map_or(0, |c| c.bitwidth),
        "dtype": "INT",
        "enc_type": enc_type,
        "is_sym": first.is_some_and(|c| c.symmetric),
        "name": name,
        "offset": offsets,
        "scale": scales,
    }))
}

// ----- 2.0.0 form -----

fn v2_document(o: &Overrides) -> Result<String, FormatError> {
    let entries = o.by_name().into_iter().map(|(name, enc)| v2_entry(o, name, enc)).collect::<Result<Vec<_>, _>>()?;
    let root = json!({"encodings": entries, "version": AimetVersion::V2_0_0.as_str()});
    Ok(pretty(&sorted(root)))
}

fn v2_entry(o: &Overrides, name: &str, enc: &OverrideEncoding) -> Result<Value, FormatError> {
    let not_expressible = |enc_type: &str| FormatError::NotExpressible {
        name: name.to_string(),
        enc_type: enc_type.to_string(),
        version: AimetVersion::V2_0_0.as_str(),
    };
    let channels = match enc {
        OverrideEncoding::Int(channels) if !channels.is_empty() => channels,
        OverrideEncoding::Float { .. } => return Err(not_expressible("float")),
        OverrideEncoding::Calibrated { .. } => return Err(not_expressible("bitwidth-only (calibrated)")),
        OverrideEncoding::PerBlock(b) => return blocks::v2_entry(o, name, b),
        OverrideEncoding::Int(_) => return Err(not_expressible("empty")),
    };
    let first = &channels[0];
    let half = crate::quant::math::symmetric_offset_magnitude(first.bitwidth);
    // Signed for a symmetric grid (zero point 0), unsigned otherwise: each reads back as it was.
    let (output_dtype, shift) =
        if first.symmetric { (format!("int{}", first.bitwidth), half) } else { (format!("uint{}", first.bitwidth), 0) };
    let zero_points: Vec<i64> = channels.iter().map(|c| -i64::from(c.offset) - shift).collect();
    let scales = channels.iter().map(|c| number(c.scale, name, "scale")).collect::<Result<Vec<_>, _>>()?;
    let mut e = json!({"name": name, "output_dtype": output_dtype});
    if channels.len() == 1 {
        e["y_scale"] = scales[0].clone();
        if zero_points[0] != 0 {
            e["y_zero_point"] = json!(zero_points[0]);
        }
    } else {
        let Some(axis) = o.axes.get(name) else {
            let what = "the axis of its per-channel encodings comes from the model";
            return Err(FormatError::NeedsModel { name: name.to_string(), what, version: "2.0.0" });
        };
        e["axis"] = json!(axis);
        e["y_scale"] = Value::Array(scales);
        if zero_points.iter().any(|&z| z != 0) {
            e["y_zero_point"] = json!(zero_points);
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::aimet::parse_overrides;

    const V0: &str = include_str!("../../../examples/digits/aimet/encodings_v0.6.1.json");
    const V1: &str = include_str!("../../../examples/digits/aimet/encodings_v1.0.0.json");

    fn quantizer_args(text: &str) -> Option<Value> {
        serde_json::from_str::<Value>(text).ok()?.get("quantizer_args").cloned()
    }

    /// AIMET exported both files from the same QuantSim (an independent reference): our
    /// 1.0.0 rendering of its 0.6.1 file reads back to exactly what its own 1.0.0 file reads
    /// to, and the other way round.
    #[test]
    fn converting_aimets_files_gives_aimets_other_file() {
        let v0 = parse_overrides(V0).unwrap();
        let v1 = parse_overrides(V1).unwrap();
        let to_v1 = write_overrides_json(&v0, AimetVersion::V1_0_0, quantizer_args(V0).as_ref()).unwrap();
        let back = parse_overrides(&to_v1).unwrap();
        assert!(back.source.warnings.is_empty(), "{:?}", back.source.warnings);
        assert_eq!(back, v1, "equal including the version and excluded_layers");
        let to_v0 = write_overrides_json(&v1, AimetVersion::V0_6_1, quantizer_args(V1).as_ref()).unwrap();
        let back = parse_overrides(&to_v0).unwrap();
        assert!(back.source.warnings.is_empty(), "{:?}", back.source.warnings);
        assert_eq!(back, v0);
        // Same top-level structure as AIMET's own file (quantizer_args carried over).
        let ours: Value = serde_json::from_str(&to_v1).unwrap();
        let theirs: Value = serde_json::from_str(V1).unwrap();
        assert_eq!(ours["quantizer_args"], theirs["quantizer_args"]);
        assert_eq!(
            ours["param_encodings"].as_array().map(Vec::len),
            theirs["param_encodings"].as_array().map(Vec::len)
        );
    }

    /// AIMET's 1.0.0 entry for `logits` is `{"bw": 8, "dtype": "INT", "enc_type":
    /// "PER_TENSOR", "is_sym": false, "name": "logits", "offset": [-159.0], "scale":
    /// [0.1890632704192517]}`; ours differs only in the integer offset and in the scale being
    /// the f32 nearest to AIMET's f64 (0.1890632704192517 as f32 = 0.18906326591968536).
    #[test]
    fn list_entries_look_like_aimets() {
        let v1 = parse_overrides(V1).unwrap();
        let text = write_overrides_json(&v1, AimetVersion::V1_0_0, None).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let logits =
            v["activation_encodings"].as_array().unwrap().iter().find(|e| e["name"] == "logits").unwrap().clone();
        assert_eq!(
            logits,
            json!({"bw": 8, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": false, "name": "logits",
                   "offset": [-159], "scale": [0.18906326591968536]})
        );
        assert!(text.starts_with("{\n    \"activation_encodings\": [\n        {\n            \"bw\": 8,"), "{text}");
        assert!(text.ends_with("    \"version\": \"1.0.0\"\n}\n"));
        assert!(v.get("quantizer_args").is_none());
    }

    #[test]
    fn output_is_deterministic_and_sorted() {
        let v0 = parse_overrides(V0).unwrap();
        let a = write_overrides_json(&v0, AimetVersion::V0_6_1, None).unwrap();
        let b = write_overrides_json(&parse_overrides(&a).unwrap(), AimetVersion::V0_6_1, None).unwrap();
        assert_eq!(a, b, "a second round trip is byte-identical");
        let keys: Vec<usize> =
            ["\"activation_encodings\"", "\"excluded_layers\"", "\"param_encodings\"", "\"version\""]
                .iter()
                .map(|k| a.find(k).unwrap())
                .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    const V2: &str = include_str!("../../../examples/digits/aimet/encodings_v2.0.0.json");

    /// AIMET's own 2.0.0 file written again in 2.0.0 reads back to the same encodings, axes
    /// included, and its entries have AIMET's shape: `fc2.bias` is `{"axis": 0, "name":
    /// "fc2.bias", "output_dtype": "int32", "y_scale": [...]}` (zero points of 0 left out),
    /// `logits` is `{"name", "output_dtype": "uint8", "y_scale": 0.189..., "y_zero_point": 159}`.
    #[test]
    fn aimets_2_0_0_file_round_trips_in_aimets_shape() {
        let v2 = parse_overrides(V2).unwrap();
        assert!(v2.source.warnings.is_empty(), "{:?}", v2.source.warnings);
        let text = write_overrides_json(&v2, AimetVersion::V2_0_0, None).unwrap();
        let back = parse_overrides(&text).unwrap();
        assert_eq!(back, v2);
        let ours: Value = serde_json::from_str(&text).unwrap();
        let theirs: Value = serde_json::from_str(V2).unwrap();
        let find =
            |v: &Value, name: &str| v["encodings"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned();
        for name in ["fc2.bias", "conv1.weight", "logits", "input"] {
            let (a, b) = (find(&ours, name).unwrap(), find(&theirs, name).unwrap());
            let keys = |e: &Value| e.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&a), keys(&b), "{name}: {a} vs {b}");
            assert_eq!((&a["output_dtype"], &a["axis"]), (&b["output_dtype"], &b["axis"]), "{name}");
        }
        assert_eq!(find(&ours, "logits").unwrap()["y_zero_point"], 159);
        assert_eq!(ours["encodings"].as_array().unwrap().len(), theirs["encodings"].as_array().unwrap().len());
    }

    /// The 2.0.0 form cannot say what an older file's float and bitwidth-only entries mean, nor
    /// a per-channel entry's axis without the model; the older forms cannot place a 2.0.0 entry.
    #[test]
    fn what_a_form_cannot_hold_is_an_error() {
        let o = parse_overrides(
            r#"{"version": "1.0.0", "activation_encodings": [{"name": "a", "dtype": "FLOAT", "bw": 16}],
                "param_encodings": []}"#,
        )
        .unwrap();
        let err = write_overrides_json(&o, AimetVersion::V2_0_0, None).unwrap_err();
        assert!(matches!(err, FormatError::NotExpressible { ref enc_type, .. } if enc_type == "float"), "{err:?}");
        let mut v1 = parse_overrides(V1).unwrap();
        let err = write_overrides_json(&v1, AimetVersion::V2_0_0, None).unwrap_err();
        assert!(matches!(err, FormatError::NeedsModel { ref name, .. } if name == "conv1.weight"), "{err:?}");
        for name in ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"] {
            v1.axes.insert(name.to_string(), 0);
        }
        assert!(write_overrides_json(&v1, AimetVersion::V2_0_0, None).is_ok());
        let v2 = parse_overrides(V2).unwrap();
        for version in [AimetVersion::V0_6_1, AimetVersion::V1_0_0] {
            let err = write_overrides_json(&v2, version, None).unwrap_err();
            assert!(matches!(err, FormatError::NeedsModel { .. }), "{err:?}");
        }
    }

    /// Float, bitwidth-only and per-block entries, in both forms.
    #[test]
    fn every_kind_of_entry_round_trips() {
        let text = r#"{"version": "1.0.0", "excluded_layers": ["fc"],
          "activation_encodings": [{"name": "a", "dtype": "FLOAT", "bw": 16},
                                   {"name": "b", "dtype": "INT", "bw": 16, "is_sym": true}],
          "param_encodings": [{"name": "w", "dtype": "INT", "enc_type": "PER_BLOCK", "bw": 4, "is_sym": true,
                               "block_size": 32, "scale": [0.1, 0.2], "offset": [-8, -8]}]}"#;
        let o = parse_overrides(text).unwrap();
        let v1 = write_overrides_json(&o, AimetVersion::V1_0_0, None).unwrap();
        assert_eq!(parse_overrides(&v1).unwrap(), o);
        let err = write_overrides_json(&o, AimetVersion::V0_6_1, None).unwrap_err();
        assert_eq!(
            err,
            FormatError::NotExpressible { name: "w".into(), enc_type: "PER_BLOCK".into(), version: "0.6.1" }
        );
        let mut no_block = o.clone();
        no_block.params.clear();
        let v0 = write_overrides_json(&no_block, AimetVersion::V0_6_1, None).unwrap();
        let back = parse_overrides(&v0).unwrap();
        assert_eq!(back.activations, no_block.activations);
        assert_eq!(back.excluded_layers, vec!["fc".to_string()]);
        assert!(v0.contains("\"is_symmetric\": \"True\""), "{v0}");
    }
}
