//! Comparing two encodings files (`qairt encodings compare`): per tensor present in both, per
//! field (section, dtype, bitwidth, symmetry, encoding type, channel count, and per channel
//! scale, offset, min and max), the differences beyond a chosen precision; plus the tensors
//! present in only one file.
//!
//! Floats are compared relatively: `a` and `b` differ at `digits` significant digits when
//! `|a - b| > 10^-digits * max(|a|, |b|)` (two zeros are equal). Integers (bitwidth, offset,
//! channel count) and names are compared exactly. Fields are those of the parsed meaning, so
//! the two forms compare alike: a dict-form file's `min`/`max` are derived from its scale and
//! offset, as a 1.0.0 file's are (the parser's rule; see the parent module).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{BlockEncoding, OverrideEncoding, Overrides, Section};
use crate::quant::encoding::Encoding;

/// One field's value on one side; `Absent` when that side has no such field or entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FieldValue {
    Absent,
    Int(i64),
    /// Shown and serialized as the shortest decimal of the f32 that encodings hold.
    Float(f32),
    Bool(bool),
    Text(String),
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Absent => f.write_str("-"),
            FieldValue::Int(i) => write!(f, "{i}"),
            FieldValue::Float(x) => write!(f, "{x}"),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::Text(s) => f.write_str(s),
        }
    }
}

/// One difference between file A and file B.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    pub tensor: String,
    /// The section of A's entry (B's for an entry only in B).
    pub section: &'static str,
    /// The channel, for per-channel (or per-block) values; `None` for a per-tensor value or a
    /// field of the whole entry.
    pub channel: Option<usize>,
    /// `entry` for a one-sided entry; else `section`, `dtype`, `bitwidth`, `symmetric`,
    /// `enc_type`, `channels`, `block_size`, `scale`, `offset`, `min` or `max`.
    pub field: &'static str,
    pub a: FieldValue,
    pub b: FieldValue,
    /// `|a - b| / max(|a|, |b|)` for float fields.
    pub relative: Option<f64>,
}

impl Difference {
    /// Whether this is an entry present in only one of the files.
    pub fn is_one_sided(&self) -> bool {
        self.field == "entry"
    }
}

/// Every difference between `a` and `b` beyond `digits` significant digits, in tensor-name
/// order (then field order).
pub fn compare_overrides(a: &Overrides, b: &Overrides, digits: u32) -> Vec<Difference> {
    let tolerance = 10f64.powi(-(digits.min(300) as i32));
    let names: BTreeSet<&str> = a.entries().chain(b.entries()).map(|(_, name, _)| name).collect();
    let mut out = Vec::new();
    for name in names {
        match (lookup(a, name), lookup(b, name)) {
            (Some((sa, ea)), Some((sb, eb))) => {
                let mut cmp = Comparer { out: &mut out, tensor: name, section: sa.key(), tolerance };
                // A 2.0.0 file has no sections: its entries agree with either.
                if sa != sb && sa != Section::Encodings && sb != Section::Encodings {
                    cmp.text(None, "section", sa.key(), sb.key());
                }
                cmp.entries(ea, eb);
            }
            (Some((s, e)), None) => out.push(one_sided(name, s, describe(e), FieldValue::Absent)),
            (None, Some((s, e))) => out.push(one_sided(name, s, FieldValue::Absent, describe(e))),
            (None, None) => {}
        }
    }
    out
}

fn lookup<'o>(o: &'o Overrides, name: &str) -> Option<(Section, &'o OverrideEncoding)> {
    [Section::Activation, Section::Param, Section::Encodings]
        .into_iter()
        .find_map(|section| o.section(section).get(name).map(|e| (section, e)))
}

fn one_sided(name: &str, section: Section, a: FieldValue, b: FieldValue) -> Difference {
    Difference { tensor: name.to_string(), section: section.key(), channel: None, field: "entry", a, b, relative: None }
}

/// A short description of an entry, for one-sided differences (`int 8-bit PER_CHANNEL x16`).
fn describe(e: &OverrideEncoding) -> FieldValue {
    let (dtype, bits) = (dtype(e), bitwidth(e));
    let layout = match channels(e) {
        Some(ch) if ch.len() > 1 => format!(" {} x{}", enc_type(e), ch.len()),
        _ => format!(" {}", enc_type(e)),
    };
    FieldValue::Text(format!("{dtype} {bits}-bit{}", if dtype == "float" { String::new() } else { layout }))
}

fn dtype(e: &OverrideEncoding) -> &'static str {
    if matches!(e, OverrideEncoding::Float { .. }) { "float" } else { "int" }
}

fn bitwidth(e: &OverrideEncoding) -> u32 {
    match e {
        OverrideEncoding::Float { bitwidth }
        | OverrideEncoding::Calibrated { bitwidth, .. }
        | OverrideEncoding::PerBlock(BlockEncoding { bitwidth, .. }) => *bitwidth,
        OverrideEncoding::Int(ch) => ch.first().map_or(0, |c| c.bitwidth),
    }
}

/// `CALIBRATED` is a bitwidth-only entry (no range given).
fn enc_type(e: &OverrideEncoding) -> &str {
    match e {
        OverrideEncoding::Float { .. } => "PER_TENSOR",
        OverrideEncoding::Calibrated { .. } => "CALIBRATED",
        OverrideEncoding::Int(ch) if ch.len() > 1 => "PER_CHANNEL",
        OverrideEncoding::Int(_) => "PER_TENSOR",
        OverrideEncoding::PerBlock(b) => b.enc_type(),
    }
}

fn symmetric(e: &OverrideEncoding) -> Option<bool> {
    match e {
        OverrideEncoding::Float { .. } => None,
        OverrideEncoding::Calibrated { symmetric, .. } => *symmetric,
        OverrideEncoding::Int(ch) | OverrideEncoding::PerBlock(BlockEncoding { blocks: ch, .. }) => {
            ch.first().map(|c| c.symmetric)
        }
    }
}

fn channels(e: &OverrideEncoding) -> Option<&[Encoding]> {
    match e {
        // A per-block entry's blocks compare as its "channels" (LPBQ's effective scales).
        OverrideEncoding::Int(ch) | OverrideEncoding::PerBlock(BlockEncoding { blocks: ch, .. }) => Some(ch),
        _ => None,
    }
}

struct Comparer<'a> {
    out: &'a mut Vec<Difference>,
    tensor: &'a str,
    section: &'static str,
    tolerance: f64,
}

impl Comparer<'_> {
    fn push(&mut self, channel: Option<usize>, field: &'static str, a: FieldValue, b: FieldValue, rel: Option<f64>) {
        self.out.push(Difference {
            tensor: self.tensor.to_string(),
            section: self.section,
            channel,
            field,
            a,
            b,
            relative: rel,
        });
    }

    fn text(&mut self, channel: Option<usize>, field: &'static str, a: &str, b: &str) {
        if a != b {
            self.push(channel, field, FieldValue::Text(a.to_string()), FieldValue::Text(b.to_string()), None);
        }
    }

    fn int(&mut self, channel: Option<usize>, field: &'static str, a: i64, b: i64) {
        if a != b {
            self.push(channel, field, FieldValue::Int(a), FieldValue::Int(b), None);
        }
    }

    fn float(&mut self, channel: Option<usize>, field: &'static str, a: f32, b: f32) {
        let (a, b) = (f64::from(a), f64::from(b));
        let scale = a.abs().max(b.abs());
        let relative = if scale == 0.0 { 0.0 } else { (a - b).abs() / scale };
        // A NaN on either side (no valid encoding holds one) counts as a difference.
        if relative.is_nan() || relative > self.tolerance {
            self.push(channel, field, FieldValue::Float(a as f32), FieldValue::Float(b as f32), Some(relative));
        }
    }

    fn entries(&mut self, a: &OverrideEncoding, b: &OverrideEncoding) {
        self.text(None, "dtype", dtype(a), dtype(b));
        self.int(None, "bitwidth", i64::from(bitwidth(a)), i64::from(bitwidth(b)));
        if dtype(a) == "float" || dtype(b) == "float" {
            return;
        }
        if let (Some(sa), Some(sb)) = (symmetric(a), symmetric(b))
            && sa != sb
        {
            self.push(None, "symmetric", FieldValue::Bool(sa), FieldValue::Bool(sb), None);
        }
        if enc_type(a) != enc_type(b) {
            self.text(None, "enc_type", enc_type(a), enc_type(b));
            return;
        }
        if let (OverrideEncoding::PerBlock(ba), OverrideEncoding::PerBlock(bb)) = (a, b)
            && ba.block_size != bb.block_size
        {
            self.int(None, "block_size", i64::from(ba.block_size), i64::from(bb.block_size));
        }
        let (Some(ca), Some(cb)) = (channels(a), channels(b)) else { return };
        if ca.len() != cb.len() {
            self.int(None, "channels", ca.len() as i64, cb.len() as i64);
            return;
        }
        let per_channel = ca.len() > 1;
        for (i, (ea, eb)) in ca.iter().zip(cb).enumerate() {
            let channel = per_channel.then_some(i);
            self.float(channel, "scale", ea.scale, eb.scale);
            self.int(channel, "offset", i64::from(ea.offset), i64::from(eb.offset));
            self.float(channel, "min", ea.min, eb.min);
            self.float(channel, "max", ea.max, eb.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::aimet::parse_overrides;

    fn parse(text: &str) -> Overrides {
        parse_overrides(text).unwrap()
    }

    /// AIMET's two exports of one QuantSim hold the same encodings.
    #[test]
    fn aimets_two_forms_compare_equal() {
        let v0 = parse(include_str!("../../../examples/digits/aimet/encodings_v0.6.1.json"));
        let v1 = parse(include_str!("../../../examples/digits/aimet/encodings_v1.0.0.json"));
        assert_eq!(compare_overrides(&v0, &v1, 6), vec![]);
        assert_eq!(compare_overrides(&v0, &v1, 9), vec![]);
    }

    /// Scale 0.1 vs 0.1000002: relative difference 2e-7 / 0.1000002 = 1.99999e-6, above
    /// 1e-6 (6 digits) and below 1e-5 (5 digits). With offset 0, min = 0 on both sides and
    /// max = 255 * scale differs by the same relative amount.
    #[test]
    fn precision_decides_what_differs() {
        let a = parse(
            r#"{"activation_encodings": {"x": [{"bitwidth": 8, "scale": 0.1, "offset": 0}]}, "param_encodings": {}}"#,
        );
        let b = parse(
            r#"{"activation_encodings": {"x": [{"bitwidth": 8, "scale": 0.1000002, "offset": 0}]}, "param_encodings": {}}"#,
        );
        assert_eq!(compare_overrides(&a, &b, 5), vec![]);
        let d = compare_overrides(&a, &b, 6);
        let fields: Vec<&str> = d.iter().map(|d| d.field).collect();
        assert_eq!(fields, ["scale", "max"]);
        let rel = d[0].relative.unwrap();
        assert!((rel - 2e-7 / 0.1000002).abs() < 1e-7, "{rel}: the f32 values of 0.1 and 0.1000002");
        assert_eq!((d[0].channel, d[0].section), (None, "activation_encodings"));
    }

    #[test]
    fn one_sided_and_structural_differences() {
        let a = parse(
            r#"{"activation_encodings": {"x": [{"bitwidth": 8, "dtype": "int"}], "only_a": [{"bitwidth": 16, "dtype": "float"}]},
                "param_encodings": {"w": [{"bitwidth": 8, "is_symmetric": "True", "scale": 0.1, "offset": -128},
                                          {"bitwidth": 8, "is_symmetric": "True", "scale": 0.2, "offset": -128}]}}"#,
        );
        let b = parse(
            r#"{"activation_encodings": {"x": [{"bitwidth": 16, "dtype": "int"}]},
                "param_encodings": {"w": [{"bitwidth": 8, "is_symmetric": "True", "scale": 0.1, "offset": -128},
                                          {"bitwidth": 8, "is_symmetric": "True", "scale": 0.3, "offset": -128}],
                                    "only_b": [{"bitwidth": 8, "min": 0, "max": 1}]}}"#,
        );
        let d = compare_overrides(&a, &b, 6);
        let summary: Vec<(&str, &str, Option<usize>, String, String)> =
            d.iter().map(|d| (d.tensor.as_str(), d.field, d.channel, d.a.to_string(), d.b.to_string())).collect();
        assert_eq!(
            summary,
            vec![
                ("only_a", "entry", None, "float 16-bit".to_string(), "-".to_string()),
                ("only_b", "entry", None, "-".to_string(), "int 8-bit PER_TENSOR".to_string()),
                // w channel 1: scale 0.2 -> 0.3; min = -128 * scale, max = 127 * scale.
                ("w", "scale", Some(1), 0.2f32.to_string(), 0.3f32.to_string()),
                ("w", "min", Some(1), (-128.0 * 0.2f32).to_string(), (-128.0 * 0.3f32).to_string()),
                ("w", "max", Some(1), (127.0 * 0.2f32).to_string(), (127.0 * 0.3f32).to_string()),
                ("x", "bitwidth", None, "8".to_string(), "16".to_string()),
            ]
        );
        assert!(d[0].is_one_sided() && d[1].is_one_sided() && !d[2].is_one_sided());
        let json = serde_json::to_value(&d[0]).unwrap();
        assert_eq!(json["b"], serde_json::Value::Null);
        assert_eq!(json["section"], "activation_encodings");
    }
}
