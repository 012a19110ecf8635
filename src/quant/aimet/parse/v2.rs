//! Entries of the 2.0.0 form: `{"version": "2.0.0", "encodings": [{name, output_dtype,
//! y_scale, y_zero_point, axis, block_size}, ...]}`, each field an input or attribute of ONNX
//! `QuantizeLinear` (AIMET's encoding specification, version 2.0.0).
//!
//! An entry becomes the same [`RawElement`]s a 1.0.0 entry does, and goes through the same
//! [`Reader::resolve_entry`]: bitwidth and signedness from `output_dtype`, `scale` from
//! `y_scale`, and QNN's offset from the zero point (`-y_zero_point`, counted from
//! `-2^(bw-1)` for a signed type). The form does not say whether an encoding is symmetric; a
//! zero point in the middle of the grid (0 for a signed type, `2^(bw-1)` for an unsigned one)
//! is read as symmetric, which is what AIMET writes for its symmetric encodings.
//!
//! Per-block entries give `y_scale` nested to the weight's rank (`[out, in / block_size, 1,
//! 1]` for a Conv weight), `axis` the block axis and `block_size`; LPBQ entries give
//! `per_block_int_scale` nested the same way and `per_channel_float_scale` (`[out, 1, ...]`),
//! whose product, broadcast, is each block's scale. The nesting's shape is kept
//! ([`Overrides::scale_shapes`](crate::quant::aimet::Overrides)) to write the entry back.

use std::collections::BTreeMap;

use jsonc_parser::ast::{Array, Object, Value};
use jsonc_parser::common::Ranged;

use super::{DtypeKind, EncType, Names, Num, RawElement, Reader, span};
use crate::quant::aimet::Lpbq;
use crate::quant::aimet::{EntrySpans, OverrideError, OverrideErrorKind as Kind, Section, Span};
use crate::quant::math::symmetric_offset_magnitude;

/// The fields of a 2.0.0 entry.
pub(super) const FIELDS: &[&str] = &[
    "name",
    "output_dtype",
    "y_scale",
    "y_zero_point",
    "axis",
    "block_size",
    "per_block_int_scale",
    "per_channel_float_scale",
];

/// Fields of the 1.0.0 form: in a 2.0.0 entry they mean the file mixes the two forms.
const V1_FIELDS: &[&str] = &["bw", "dtype", "enc_type", "is_sym", "scale", "offset", "min", "max"];

/// What messages call the fields `resolve_entry` reads.
const NAMES: Names = Names { bitwidth: "output_dtype", symmetric: "y_zero_point" };

/// An integer `output_dtype`: `int8`, `uint16`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IntType {
    signed: bool,
    bits: u32,
}

impl IntType {
    fn parse(text: &str) -> Option<IntType> {
        let (signed, digits) = match text.strip_prefix("uint") {
            Some(rest) => (false, rest),
            None => (true, text.strip_prefix("int")?),
        };
        let bits: u32 = digits.parse().ok().filter(|b| (1..=32).contains(b))?;
        Some(IntType { signed, bits })
    }

    /// The representable zero points: the type's range.
    fn range(self) -> (f64, f64) {
        let steps = ((1u64 << self.bits) - 1) as f64;
        if self.signed {
            let half = symmetric_offset_magnitude(self.bits) as f64;
            (-half, steps - half)
        } else {
            (0.0, steps)
        }
    }

    /// QNN's offset of a zero point (the unsigned grid `0..2^bw - 1` that QNN counts on).
    fn offset(self, zero_point: f64) -> f64 {
        if self.signed { -zero_point - symmetric_offset_magnitude(self.bits) as f64 } else { -zero_point }
    }
}

/// `y_scale` (or `y_zero_point`, or LPBQ's scales) as written: a number, a list, or lists of
/// lists to any depth (a per-block scale tensor), kept row-major with its shape.
enum Values {
    One(Num),
    List(Vec<Num>),
    Tensor { shape: Vec<usize>, items: Vec<Num> },
}

impl Values {
    fn flat(&self) -> Vec<&Num> {
        match self {
            Values::One(n) => vec![n],
            Values::List(items) | Values::Tensor { items, .. } => items.iter().collect(),
        }
    }

    /// The nesting's shape: `[]` for a number, `[n]` for a list.
    fn dims(&self) -> Vec<usize> {
        match self {
            Values::One(_) => Vec::new(),
            Values::List(items) => vec![items.len()],
            Values::Tensor { shape, .. } => shape.clone(),
        }
    }

    /// The outermost length: output channels for a per-block tensor.
    fn rows(&self) -> usize {
        self.dims().first().copied().unwrap_or(1)
    }
}

/// An entry's scales, read: the effective scale of every encoding, how many output channels
/// they cover, the kind of encoding, and for per-block entries the scale tensor's shape and
/// LPBQ's decomposition.
struct Scales {
    values: Vec<Num>,
    rows: usize,
    enc_type: EncType,
    shape: Option<Vec<usize>>,
    lpbq: Option<Lpbq>,
}

impl Scales {
    fn plain(values: Vec<Num>, rows: usize, enc_type: EncType) -> Option<Scales> {
        Some(Scales { values, rows, enc_type, shape: None, lpbq: None })
    }
}

/// The fields of one entry, read but not yet interpreted.
#[derive(Default)]
struct RawEntry {
    name: Option<String>,
    dtype: Option<(IntType, Span)>,
    scale: Option<Values>,
    zero_point: Option<Values>,
    axis: Option<Num>,
    block_size: Option<Num>,
    block_int_scale: Option<Values>,
    channel_float_scale: Option<Values>,
}

impl Reader {
    /// `encodings`: every entry of a 2.0.0 file, activations and parameters alike.
    pub(super) fn read_v2_section(&mut self, arr: &Array) {
        for item in &arr.elements {
            let Value::Object(obj) = item else {
                self.push(
                    OverrideError::error(
                        Kind::WrongType,
                        span(item.range()),
                        "entries of \"encodings\" must be objects",
                    )
                    .with_help(
                        "{\"name\": ..., \"output_dtype\": \"uint8\", \"y_scale\": 0.02, \"y_zero_point\": 128}",
                    ),
                );
                continue;
            };
            self.read_v2_entry(obj);
        }
    }

    fn read_v2_entry(&mut self, obj: &Object) {
        let entry_span = span(obj.range);
        let mut spans = EntrySpans { name: entry_span, entry: entry_span, fields: BTreeMap::new() };
        let before = self.errors.len();
        let mut raw = RawEntry::default();
        for prop in &obj.properties {
            let field = prop.name.as_str();
            if self.claim_field(prop, &mut spans).is_none() {
                continue;
            }
            match field {
                "name" => raw.name = self.entry_name(&prop.value, &mut spans).or(raw.name.take()),
                "output_dtype" => raw.dtype = self.output_dtype(&prop.value),
                "y_scale" => raw.scale = self.values(&prop.value, field, &mut spans),
                "y_zero_point" => raw.zero_point = self.values(&prop.value, field, &mut spans),
                "per_block_int_scale" => raw.block_int_scale = self.values(&prop.value, field, &mut spans),
                "per_channel_float_scale" => raw.channel_float_scale = self.values(&prop.value, field, &mut spans),
                "axis" => raw.axis = self.count(&prop.value, field, 0.0),
                "block_size" => raw.block_size = self.count(&prop.value, field, 1.0),
                other if V1_FIELDS.contains(&other) => self.push(
                    OverrideError::error(
                        Kind::InvalidValue,
                        span(prop.name.range()),
                        format!("\"{other}\" is a field of the 1.0.0 form, in a version 2.0.0 entry"),
                    )
                    .with_help(
                        "a 2.0.0 entry gives output_dtype, y_scale, y_zero_point and axis; or declare \
                         \"version\": \"1.0.0\" with activation_encodings and param_encodings",
                    ),
                ),
                other => self.unknown_field(other, span(prop.name.range()), FIELDS, "an encoding entry"),
            }
        }
        let Some(name) = raw.name.take() else {
            self.error(Kind::MissingField, entry_span, "encoding entry without a \"name\"");
            return;
        };
        if !self.claim_name(Section::Encodings, &name, spans.name) || self.errors.len() != before {
            return;
        }
        let Some((dtype, dtype_span)) = raw.dtype else {
            self.push(
                OverrideError::error(
                    Kind::MissingField,
                    entry_span,
                    format!("the encoding of \"{name}\" has no \"output_dtype\""),
                )
                .with_help("add \"output_dtype\": \"uint8\" (or int8, uint16, int16, int4, int32)"),
            );
            return;
        };
        let Some(Scales { values: scales, rows, enc_type, shape, lpbq }) = self.scales(&name, &raw, entry_span, &spans)
        else {
            return;
        };
        let zero_points = self.zero_points(&name, &raw, dtype, &scales, rows, entry_span);
        if self.errors.len() != before {
            return;
        }
        let bitwidth = Num { value: f64::from(dtype.bits), span: dtype_span };
        let elements: Vec<RawElement> = scales
            .iter()
            .zip(&zero_points)
            .map(|(scale, &(zero_point, at))| {
                let offset = dtype.offset(zero_point);
                let symmetric = offset == -(symmetric_offset_magnitude(dtype.bits) as f64);
                RawElement {
                    span: at,
                    bitwidth: Some(bitwidth),
                    dtype: Some((DtypeKind::Int, dtype_span)),
                    symmetric: Some((symmetric, at)),
                    scale: Some(*scale),
                    offset: Some(Num { value: offset, span: at }),
                    ..Default::default()
                }
            })
            .collect();
        if enc_type == EncType::PerChannel
            && let Some(el) = elements.iter().find(|el| el.symmetric.is_some_and(|s| !s.0))
        {
            self.push(
                OverrideError::error(
                    Kind::PerChannelNotSymmetric,
                    el.span,
                    format!("per-channel encodings of \"{name}\" must be symmetric, with the zero point in the middle of the grid"),
                )
                .with_help(format!(
                    "the SDK requires symmetric per-channel encodings: \"output_dtype\": \"int{0}\" with \"y_zero_point\" 0 \
                     (or \"uint{0}\" with {1})",
                    dtype.bits,
                    symmetric_offset_magnitude(dtype.bits)
                )),
            );
            return;
        }
        let block = raw.block_size.map(|n| n.value as u32);
        if let Some(enc) = self.resolve_entry(&name, &elements, entry_span, enc_type, block, lpbq, &NAMES)
            && self.errors.len() == before
        {
            if let Some(axis) = raw.axis.filter(|_| enc_type != EncType::PerTensor) {
                self.out.axes.insert(name.clone(), axis.value as usize);
            }
            if let Some(shape) = shape {
                self.out.scale_shapes.insert(name.clone(), shape);
            }
            self.add_entry(Section::Encodings, &name, enc, spans);
        }
    }

    /// `output_dtype`: an integer type of 4, 8, 16 or 32 bits.
    fn output_dtype(&mut self, value: &Value) -> Option<(IntType, Span)> {
        let at = span(value.range());
        let Value::StringLit(s) = value else {
            self.error(Kind::WrongType, at, "\"output_dtype\" must be a string such as \"uint8\"");
            return None;
        };
        let text = s.value.as_ref();
        if text.starts_with("float") {
            self.push(
                OverrideError::error(Kind::Unsupported, at, format!("\"{text}\" encodings are not supported"))
                    .with_help("qairt quantizes to integer grids: int4/uint4, int8/uint8, int16/uint16, int32"),
            );
            return None;
        }
        match IntType::parse(text) {
            Some(t) if super::INT_BITWIDTHS.contains(&t.bits) => Some((t, at)),
            Some(t) => {
                self.push(
                    OverrideError::error(
                        Kind::InvalidBitwidth,
                        at,
                        format!("{} bits (\"{text}\") are not supported", t.bits),
                    )
                    .with_help("integer encodings take 4, 8, 16 or 32 bits"),
                );
                None
            }
            None => {
                self.push(
                    OverrideError::error(Kind::InvalidValue, at, format!("unknown \"output_dtype\" \"{text}\""))
                        .with_help(
                            "one of int4, uint4, int8, uint8, int16, uint16, int32 (ONNX QuantizeLinear's types)",
                        ),
                );
                None
            }
        }
    }

    /// A number, a list of numbers, or a list of such lists; every item's span recorded as
    /// `(index, field)` (flattened row by row), the whole value as `(0, "field[]")`.
    fn values(&mut self, value: &Value, field: &str, spans: &mut EntrySpans) -> Option<Values> {
        let whole = span(value.range());
        spans.fields.remove(&(0, field.to_string()));
        spans.fields.insert((0, format!("{field}[]")), whole);
        let read = match value {
            Value::NumberLit(_) => Values::One(self.number(value, field)?),
            Value::Array(arr)
                if arr.elements.iter().all(|v| matches!(v, Value::Array(_))) && !arr.elements.is_empty() =>
            {
                let (shape, items) = self.tensor(value, field)?;
                Values::Tensor { shape, items }
            }
            Value::Array(_) => Values::List(self.number_array(value, field)),
            Value::Object(_) => {
                self.push(
                    OverrideError::error(
                        Kind::Unsupported,
                        whole,
                        format!("\"{field}\" as an object (a meta encoding) is not supported"),
                    )
                    .with_help("meta encodings belong to version 2.1.0; give the effective scales as numbers"),
                );
                return None;
            }
            other => {
                self.error(
                    Kind::WrongType,
                    span(other.range()),
                    format!("\"{field}\" must be a number or a list of numbers"),
                );
                return None;
            }
        };
        for (i, n) in read.flat().into_iter().enumerate() {
            spans.fields.insert((i, field.to_string()), n.span);
        }
        Some(read)
    }

    /// Nested lists of numbers: their shape and items row-major; `None`, with an error at the
    /// list, when the lists at one depth differ in length (the nesting is not a tensor).
    fn tensor(&mut self, value: &Value, field: &str) -> Option<(Vec<usize>, Vec<Num>)> {
        let Value::Array(arr) = value else {
            let n = self.number(value, field)?;
            return Some((Vec::new(), vec![n]));
        };
        if !arr.elements.iter().any(|v| matches!(v, Value::Array(_))) {
            let items = self.number_array(value, field);
            return Some((vec![items.len()], items));
        }
        let mut inner: Option<Vec<usize>> = None;
        let mut items = Vec::new();
        for element in &arr.elements {
            let (shape, values) = self.tensor(element, field)?;
            if inner.as_ref().is_some_and(|s| *s != shape) {
                self.push(
                    OverrideError::error(
                        Kind::InvalidValue,
                        span(element.range()),
                        format!("the lists of \"{field}\" differ in shape"),
                    )
                    .with_help("a per-block scale tensor has one list per output channel, all of one shape"),
                );
                return None;
            }
            inner = Some(shape);
            items.extend(values);
        }
        let mut shape = vec![arr.elements.len()];
        shape.extend(inner.unwrap_or_default());
        Some((shape, items))
    }

    /// A non-negative integer of at least `least` (`axis`, `block_size`).
    fn count(&mut self, value: &Value, field: &str, least: f64) -> Option<Num> {
        let n = self.number(value, field)?;
        if n.value.fract() != 0.0 || n.value < least || n.value > f64::from(u32::MAX) {
            let what =
                if least > 0.0 { "a positive integer" } else { "an integer counted from the first axis (0, 1, ...)" };
            self.error(Kind::InvalidValue, n.span, format!("\"{field}\" must be {what}, got {}", n.value));
            return None;
        }
        Some(n)
    }

    /// The scales of an entry in channel-major order, how many output channels they cover, and
    /// the kind of encoding their shape (and the axis and block size) says it is.
    fn scales(&mut self, name: &str, raw: &RawEntry, entry_span: Span, spans: &EntrySpans) -> Option<Scales> {
        let missing = |reader: &mut Reader, field: &str, help: &str| {
            reader.push(
                OverrideError::error(
                    Kind::MissingField,
                    entry_span,
                    format!("the encoding of \"{name}\" has no \"{field}\""),
                )
                .with_help(help.to_string()),
            );
        };
        let lpbq = (&raw.block_int_scale, &raw.channel_float_scale);
        let values = match (&raw.scale, lpbq) {
            (Some(_), (Some(_), _) | (_, Some(_))) => {
                let at = spans.field(0, "y_scale[]").unwrap_or(entry_span);
                self.error(
                    Kind::InvalidValue,
                    at,
                    format!("\"{name}\" gives both y_scale and LPBQ's per-block scales"),
                );
                return None;
            }
            (Some(Values::One(s)), _) => return Scales::plain(vec![*s], 1, EncType::PerTensor),
            (Some(Values::List(items)), _) if items.len() == 1 && raw.axis.is_none() => {
                return Scales::plain(vec![items[0]], 1, EncType::PerTensor);
            }
            (Some(Values::List(items)), _) => {
                if raw.axis.is_none() {
                    missing(self, "axis", "per-channel encodings give their channel axis: \"axis\": 0");
                    return None;
                }
                return Scales::plain(items.clone(), items.len(), EncType::PerChannel);
            }
            (Some(tensor @ Values::Tensor { .. }), _) => Scales {
                values: tensor.flat().into_iter().copied().collect(),
                rows: tensor.rows(),
                enc_type: EncType::PerBlock,
                shape: Some(tensor.dims()),
                lpbq: None,
            },
            (None, (Some(ints), Some(floats))) => {
                let (values, lpbq) = self.lpbq_scales(name, ints, floats, entry_span)?;
                Scales {
                    values,
                    rows: ints.rows(),
                    enc_type: EncType::Lpbq,
                    shape: Some(ints.dims()),
                    lpbq: Some(lpbq),
                }
            }
            (None, (Some(_), None)) => {
                missing(self, "per_channel_float_scale", "LPBQ gives per_block_int_scale and per_channel_float_scale");
                return None;
            }
            (None, (None, Some(_))) => {
                missing(self, "per_block_int_scale", "LPBQ gives per_block_int_scale and per_channel_float_scale");
                return None;
            }
            (None, (None, None)) => {
                missing(
                    self,
                    "y_scale",
                    "add \"y_scale\": a number (per tensor) or a list (per channel, with \"axis\")",
                );
                return None;
            }
        };
        if raw.block_size.is_none() {
            missing(self, "block_size", "per-block encodings give their block size: \"block_size\": 32");
            return None;
        }
        Some(values)
    }

    /// LPBQ's effective scales, `per_block_int_scale * per_channel_float_scale` with the float
    /// scales broadcast over the blocks (both nested to one rank, each float axis either 1 or
    /// the integer tensor's), and the decomposition itself.
    fn lpbq_scales(
        &mut self,
        name: &str,
        ints: &Values,
        floats: &Values,
        entry_span: Span,
    ) -> Option<(Vec<Num>, Lpbq)> {
        let Values::Tensor { shape, items } = ints else {
            self.push(
                OverrideError::error(
                    Kind::WrongType,
                    entry_span,
                    format!("\"per_block_int_scale\" of \"{name}\" must be a list of lists"),
                )
                .with_help("one list of block scales per output channel, nested like y_scale"),
            );
            return None;
        };
        let mut float_dims = floats.dims();
        // A flat list of one scale per channel stands for `[out, 1, ...]`.
        if float_dims.len() == 1 && shape.len() > 1 {
            float_dims.resize(shape.len(), 1);
        }
        let broadcasts = float_dims.len() == shape.len()
            && float_dims.iter().zip(shape).all(|(&f, &i)| f == 1 || f == i)
            && float_dims.first() == shape.first()
            // One float scale per channel, so fewer than blocks unless a channel has one block.
            && (floats.flat().len() < items.len() || float_dims == *shape && float_dims.iter().skip(1).all(|&d| d == 1));
        if !broadcasts {
            self.push(
                OverrideError::error(
                    Kind::InvalidValue,
                    entry_span,
                    format!(
                        "\"{name}\" has per-block integer scales of shape {shape:?} but per-channel float scales of \
                         shape {float_dims:?}"
                    ),
                )
                .with_help("per_channel_float_scale has one value per output channel, nested to the same rank"),
            );
            return None;
        }
        let per_channel = floats.flat();
        let mut values = Vec::with_capacity(items.len());
        let mut int_scales = Vec::with_capacity(items.len());
        for (i, n) in items.iter().enumerate() {
            if n.value.fract() != 0.0 || n.value < 1.0 || n.value > f64::from(u32::MAX) {
                self.error(
                    Kind::InvalidValue,
                    n.span,
                    format!("a per-block integer scale must be a positive integer, got {}", n.value),
                );
                return None;
            }
            let channel = per_channel[broadcast_index(i, shape, &float_dims)];
            let int = n.value as u32;
            int_scales.push(int);
            values.push(Num { value: f64::from(Lpbq::block_scale(int, channel.value)), span: n.span });
        }
        Some((values, Lpbq { int_scales, channel_scales: per_channel.iter().map(|n| n.value).collect() }))
    }

    /// One zero point per scale (0 where `y_zero_point` is left out), each an integer the
    /// dtype holds; with its span (the scale's where the zero point is implied).
    fn zero_points(
        &mut self,
        name: &str,
        raw: &RawEntry,
        dtype: IntType,
        scales: &[Num],
        rows: usize,
        entry_span: Span,
    ) -> Vec<(f64, Span)> {
        let Some(given) = &raw.zero_point else {
            return scales.iter().map(|s| (0.0, s.span)).collect();
        };
        let flat = given.flat();
        // One zero point for every scale, or (LPBQ) one per channel, or one for all.
        let per_scale: Vec<&Num> = if flat.len() == scales.len() {
            flat
        } else if flat.len() == rows && rows > 0 && scales.len().is_multiple_of(rows) {
            flat.iter().flat_map(|&n| std::iter::repeat_n(n, scales.len() / rows)).collect()
        } else if flat.len() == 1 {
            vec![flat[0]; scales.len()]
        } else {
            self.error(
                Kind::InvalidValue,
                entry_span,
                format!("\"{name}\" has {} scales but {} zero points", scales.len(), flat.len()),
            );
            return Vec::new();
        };
        let (low, high) = dtype.range();
        let mut out = Vec::with_capacity(per_scale.len());
        for n in per_scale {
            if n.value.fract() != 0.0 || n.value < low || n.value > high {
                self.push(
                    OverrideError::error(
                        Kind::InvalidValue,
                        n.span,
                        format!("zero point {} of \"{name}\" is not an integer in [{low}, {high}]", n.value),
                    )
                    .with_help("a zero point outside the output_dtype's range would shift the whole grid"),
                );
                return Vec::new();
            }
            out.push((n.value, n.span));
        }
        out
    }
}

/// The row-major index, in a tensor of shape `to` (each axis 1 or `shape`'s), of the element
/// that item `index` of a tensor of `shape` reads when `to` is broadcast over it.
fn broadcast_index(index: usize, shape: &[usize], to: &[usize]) -> usize {
    let (mut rest, mut out, mut stride) = (index, 0, 1);
    for (&dim, &target) in shape.iter().zip(to).rev() {
        let coordinate = rest % dim.max(1);
        rest /= dim.max(1);
        if target != 1 {
            out += coordinate * stride;
        }
        stride *= target;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::aimet::{OverrideEncoding, parse_overrides};

    #[test]
    fn output_dtypes_map_to_qnn_offsets() {
        let u8 = IntType::parse("uint8").unwrap();
        let i8 = IntType::parse("int8").unwrap();
        assert_eq!((u8.offset(159.0), i8.offset(0.0), i8.offset(-128.0)), (-159.0, -128.0, 0.0));
        assert_eq!(IntType::parse("int32").unwrap().offset(0.0), -2147483648.0);
        assert_eq!(u8.range(), (0.0, 255.0));
        assert_eq!(IntType::parse("int4").unwrap().range(), (-8.0, 7.0));
        assert_eq!(IntType::parse("float8e4m3fn"), None);
        assert_eq!(IntType::parse("int"), None);
    }

    fn v2(entries: &str) -> String {
        format!(r#"{{"version": "2.0.0", "encodings": [{entries}]}}"#)
    }

    #[test]
    fn reads_per_tensor_per_channel_and_zero_points() {
        let o = parse_overrides(&v2(r#"{"name": "x", "output_dtype": "uint8", "y_scale": 0.5, "y_zero_point": 10},
               {"name": "w", "output_dtype": "int8", "y_scale": [0.1, 0.2], "axis": 0},
               {"name": "s", "output_dtype": "int16", "y_scale": [0.25]}"#))
        .unwrap();
        assert!(o.activations.is_empty() && o.params.is_empty());
        let OverrideEncoding::Int(x) = &o.encodings["x"] else { panic!() };
        assert_eq!((x[0].offset, x[0].scale, x[0].symmetric), (-10, 0.5, false));
        let OverrideEncoding::Int(w) = &o.encodings["w"] else { panic!() };
        assert!(w.iter().all(|e| e.offset == -128 && e.symmetric && e.bitwidth == 8), "{w:?}");
        let OverrideEncoding::Int(s) = &o.encodings["s"] else { panic!() };
        assert_eq!((s.len(), s[0].offset, s[0].symmetric), (1, -32768, true));
        assert_eq!(o.axes.get("w"), Some(&0));
        assert_eq!(o.axes.get("x"), None);
    }

    #[test]
    fn reads_per_block_and_lpbq_as_per_block() {
        let o = parse_overrides(&v2(r#"{"name": "b", "output_dtype": "int4", "y_scale": [[0.1, 0.2], [0.3, 0.4]], "axis": 1, "block_size": 32},
               {"name": "l", "output_dtype": "int4", "per_block_int_scale": [[2, 4]], "per_channel_float_scale": [0.5], "axis": 1, "block_size": 16}"#))
        .unwrap();
        let OverrideEncoding::PerBlock(b) = &o.encodings["b"] else { panic!() };
        assert_eq!((b.enc_type(), b.block_size, b.blocks.len(), b.bitwidth), ("PER_BLOCK", 32, 4, 4));
        assert!(b.blocks.iter().all(|e| e.offset == -8 && e.symmetric));
        let OverrideEncoding::PerBlock(l) = &o.encodings["l"] else { panic!() };
        assert_eq!(l.enc_type(), "LPBQ");
        assert_eq!(l.blocks.iter().map(|e| e.scale).collect::<Vec<_>>(), [1.0, 2.0]);
        assert_eq!(l.lpbq.as_ref().unwrap().int_scales, [2, 4]);
        assert_eq!((o.scale_shapes["b"].as_slice(), o.scale_shapes["l"].as_slice()), (&[2, 2][..], &[1, 2][..]));
    }

    /// AIMET nests a Conv weight's scales to its rank (`[out, blocks, 1, 1]`) and broadcasts
    /// the per-channel float scales of LPBQ (`[out, 1, 1, 1]`) over the blocks.
    #[test]
    fn reads_rank_4_block_scales_and_broadcasts_lpbq_channel_scales() {
        let o = parse_overrides(&v2(r#"{"name": "c", "output_dtype": "int4", "y_scale": [[[[0.1]], [[0.2]]], [[[0.3]], [[0.4]]]], "axis": 1, "block_size": 4},
               {"name": "l", "output_dtype": "int4", "per_block_int_scale": [[[[16]], [[3]]], [[[5]], [[16]]]], "per_channel_float_scale": [[[[0.5]]], [[[0.25]]]], "axis": 1, "block_size": 4}"#))
        .unwrap();
        let OverrideEncoding::PerBlock(c) = &o.encodings["c"] else { panic!() };
        assert_eq!(c.blocks.iter().map(|e| e.scale).collect::<Vec<_>>(), [0.1, 0.2, 0.3, 0.4]);
        let OverrideEncoding::PerBlock(l) = &o.encodings["l"] else { panic!() };
        assert_eq!(l.blocks.iter().map(|e| e.scale).collect::<Vec<_>>(), [8.0, 1.5, 1.25, 4.0]);
        assert_eq!(l.lpbq.as_ref().unwrap().channel_scales, [0.5, 0.25]);
        assert_eq!(o.scale_shapes["c"], [2, 2, 1, 1]);
        let e = error_of(
            r#"{"name": "c", "output_dtype": "int4", "y_scale": [[[0.1], [0.2]], [[0.3]]], "axis": 1, "block_size": 4}"#,
        );
        assert_eq!(e.kind, Kind::InvalidValue);
        let e = error_of(
            r#"{"name": "l", "output_dtype": "int4", "per_block_int_scale": [[2, 4]], "per_channel_float_scale": [[0.5, 1]], "axis": 1, "block_size": 4}"#,
        );
        assert_eq!(e.kind, Kind::InvalidValue);
    }

    fn error_of(entries: &str) -> OverrideError {
        let errors = parse_overrides(&v2(entries)).unwrap_err();
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn bad_entries_are_errors_at_their_fields() {
        let text = v2(r#"{"name": "x", "output_dtype": "uint8", "y_scale": 0.5, "y_zero_point": 300}"#);
        let e = parse_overrides(&text).unwrap_err().remove(0);
        assert_eq!(e.kind, Kind::InvalidValue);
        assert_eq!(&text[e.span.offset..e.span.offset + e.span.len], "300");
        assert_eq!(
            error_of(r#"{"name": "x", "output_dtype": "float8e4m3fn", "y_scale": 0.5}"#).kind,
            Kind::Unsupported
        );
        assert_eq!(error_of(r#"{"name": "x", "output_dtype": "int2", "y_scale": 0.5}"#).kind, Kind::InvalidBitwidth);
        assert_eq!(error_of(r#"{"name": "x", "output_dtype": "int9x", "y_scale": 0.5}"#).kind, Kind::InvalidValue);
        assert_eq!(
            error_of(r#"{"name": "w", "output_dtype": "int8", "y_scale": [0.1, 0.2]}"#).kind,
            Kind::MissingField
        );
        assert_eq!(error_of(r#"{"name": "w", "output_dtype": "int8"}"#).kind, Kind::MissingField);
        assert_eq!(error_of(r#"{"name": "w", "y_scale": 1}"#).kind, Kind::MissingField);
        let e = error_of(
            r#"{"name": "w", "output_dtype": "uint8", "y_scale": [0.1, 0.2], "y_zero_point": [0, 0], "axis": 0}"#,
        );
        assert_eq!(e.kind, Kind::PerChannelNotSymmetric);
        assert_eq!(
            error_of(r#"{"name": "w", "output_dtype": "int8", "y_scale": [0.1, 0.2], "axis": -1}"#).kind,
            Kind::InvalidValue
        );
        assert_eq!(error_of(r#"{"name": "w", "output_dtype": "int8", "y_scale": -0.1}"#).kind, Kind::InvalidValue);
        assert_eq!(
            error_of(r#"{"name": "w", "output_dtype": "int8", "bw": 8, "y_scale": 0.1}"#).kind,
            Kind::InvalidValue
        );
        assert_eq!(
            error_of(r#"{"name": "b", "output_dtype": "int4", "y_scale": [[0.1], [0.3]], "axis": 1}"#).kind,
            Kind::MissingField
        );
        assert_eq!(
            error_of(r#"{"name": "x", "output_dtype": "uint8", "y_scale": {"x": [1], "x_scale": 0.1}}"#).kind,
            Kind::Unsupported
        );
        assert_eq!(
            error_of(r#"{"name": "x", "output_dtype": "uint8", "y_scale": 1}, {"name": "x", "output_dtype": "uint8", "y_scale": 1}"#).kind,
            Kind::DuplicateEntry
        );
        assert_eq!(
            error_of(r#"{"name": "x", "output_dtype": "uint8", "y_scale": [1], "y_scale": [2]}"#).kind,
            Kind::DuplicateEntry
        );
    }

    #[test]
    fn an_unsigned_zero_point_at_the_middle_reads_as_symmetric() {
        let o = parse_overrides(&v2(
            r#"{"name": "w", "output_dtype": "uint8", "y_scale": [0.1, 0.2], "y_zero_point": [128, 128], "axis": 0}"#,
        ))
        .unwrap();
        let OverrideEncoding::Int(w) = &o.encodings["w"] else { panic!() };
        assert!(w.iter().all(|e| e.offset == -128 && e.symmetric));
    }
}
