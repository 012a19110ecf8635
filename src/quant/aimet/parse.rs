//! Reading an AIMET encodings file (dict form 0.4–0.6.x, list form 1.0.0, QuantizeLinear form
//! 2.0.0 in `v2`) into [`Overrides`], keeping the source span of every entry and field. The rules for turning an entry's fields
//! into an encoding are listed in the parent module's docs.

mod v2;

use std::collections::BTreeMap;

use jsonc_parser::ast::{Array, Object, Value};
use jsonc_parser::common::{Range, Ranged};
use jsonc_parser::errors::{ParseError, ParseErrorKind};
use jsonc_parser::{CollectOptions, ParseOptions, parse_to_ast};

use super::{
    BlockEncoding, EntrySpans, Lpbq, OverrideEncoding, OverrideError, OverrideErrorKind as Kind, Overrides, Section,
    Span,
};
use crate::quant::encoding::Encoding;
use crate::quant::math::{grid_steps, symmetric_offset_magnitude};
use crate::quant::settings::Schema;

const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "activation_encodings",
    "param_encodings",
    "encodings",
    "excluded_layers",
    "quantizer_args",
    "producer",
];
const DICT_FIELDS: &[&str] = &["bitwidth", "dtype", "is_symmetric", "min", "max", "scale", "offset"];
const LIST_FIELDS: &[&str] = &[
    "name",
    "dtype",
    "enc_type",
    "bw",
    "is_sym",
    "scale",
    "offset",
    "min",
    "max",
    "block_size",
    "compressed_bw",
    "per_block_int_scale",
];
const INT_BITWIDTHS: &[u32] = &[4, 8, 16, 32];
const FLOAT_BITWIDTHS: &[u32] = &[16, 32];

/// Parses an AIMET encodings file. On success the result carries the warnings in
/// `source.warnings`; on failure every error found (not just the first) is returned.
pub fn parse_overrides(text: &str) -> Result<Overrides, Vec<OverrideError>> {
    if let Some(offset) = nesting_beyond(text, MAX_NESTING) {
        return Err(vec![
            OverrideError::error(
                Kind::Syntax,
                Span::new(offset, 1),
                format!("the JSON is nested more than {MAX_NESTING} levels deep here"),
            )
            .with_help(r#"an encodings file is a few levels deep: {"activation_encodings": {"name": [{...}]}}"#),
        ]);
    }
    let options =
        ParseOptions { allow_comments: false, allow_loose_object_property_names: false, allow_trailing_commas: false };
    let parsed = match parse_to_ast(text, &CollectOptions::default(), &options) {
        Ok(parsed) => parsed,
        Err(e) => return Err(vec![syntax_error(text, &e)]),
    };
    let whole = Span::new(0, text.len());
    let Some(root) = parsed.value else {
        return Err(vec![
            OverrideError::error(Kind::Syntax, whole, "the overrides file is empty")
                .with_help(r#"expected {"activation_encodings": {...}, "param_encodings": {...}}"#),
        ]);
    };
    let mut reader =
        Reader { errors: Vec::new(), warnings: Vec::new(), out: Overrides::default(), seen: BTreeMap::new() };
    reader.out.source.root = span(root.range());
    match &root {
        Value::Object(obj) => reader.read_root(obj),
        other => reader.error(Kind::WrongType, span(other.range()), "expected a JSON object"),
    }
    if reader.errors.is_empty() {
        reader.out.source.warnings = reader.warnings;
        Ok(reader.out)
    } else {
        Err(reader.errors)
    }
}

/// The deepest nesting an encodings file may have (real files have 4): the parser recurses per
/// level, so an input nested thousands deep would overflow the stack before any check.
const MAX_NESTING: usize = 64;

/// The offset of the first `[` or `{` (outside strings) that opens level `max + 1`, if any.
fn nesting_beyond(text: &str, max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(offset);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn span(r: Range) -> Span {
    Span::new(r.start, r.end.saturating_sub(r.start))
}

fn syntax_error(text: &str, e: &ParseError) -> OverrideError {
    let at = span(e.range());
    let rest = text.get(e.range().start..).unwrap_or("");
    for word in ["NaN", "-NaN", "Infinity", "-Infinity", "inf", "-inf"] {
        if rest.starts_with(word) {
            return OverrideError::error(
                Kind::InvalidValue,
                Span::new(at.offset, word.len()),
                format!("`{word}` is not a JSON number; encodings need finite values"),
            )
            .with_help(
                "AIMET writes NaN for a quantizer that never saw data: give finite min/max or \
                 scale/offset, or remove the entry",
            );
        }
    }
    let message = match e.kind() {
        ParseErrorKind::TrailingCommasNotAllowed => {
            "trailing commas are not allowed (the SDK reads strict JSON)".to_string()
        }
        ParseErrorKind::CommentsNotAllowed => "comments are not allowed (the SDK reads strict JSON)".to_string(),
        kind => format!("invalid JSON: {}", kind.to_string().to_lowercase()),
    };
    OverrideError::error(Kind::Syntax, at, message)
}

/// Closest of `known` to `name`, if it is close enough to be a likely typo.
fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A number and where it was.
#[derive(Clone, Copy, Debug)]
struct Num {
    value: f64,
    span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DtypeKind {
    Int,
    Float,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EncType {
    PerTensor,
    PerChannel,
    PerBlock,
    Lpbq,
}

impl EncType {
    fn name(self) -> &'static str {
        match self {
            EncType::PerTensor => "PER_TENSOR",
            EncType::PerChannel => "PER_CHANNEL",
            EncType::PerBlock => "PER_BLOCK",
            EncType::Lpbq => "LPBQ",
        }
    }
}

/// One encoding of an entry (one channel), fields not yet interpreted.
#[derive(Clone, Debug, Default)]
struct RawElement {
    span: Span,
    bitwidth: Option<Num>,
    dtype: Option<(DtypeKind, Span)>,
    symmetric: Option<(bool, Span)>,
    min: Option<Num>,
    max: Option<Num>,
    scale: Option<Num>,
    offset: Option<Num>,
}

/// Field names as the entry's form spells them, for messages.
struct Names {
    bitwidth: &'static str,
    symmetric: &'static str,
}

const DICT_NAMES: Names = Names { bitwidth: "bitwidth", symmetric: "is_symmetric" };
const LIST_NAMES: Names = Names { bitwidth: "bw", symmetric: "is_sym" };

struct Reader {
    errors: Vec<OverrideError>,
    warnings: Vec<OverrideError>,
    out: Overrides,
    /// Every entry name met so far, valid or not, for duplicate detection.
    seen: BTreeMap<String, Section>,
}

impl Reader {
    fn error(&mut self, kind: Kind, at: Span, message: impl Into<String>) {
        self.errors.push(OverrideError::error(kind, at, message));
    }

    fn push(&mut self, e: OverrideError) {
        if e.is_error() { self.errors.push(e) } else { self.warnings.push(e) }
    }

    fn unknown_field(&mut self, name: &str, at: Span, known: &[&str], context: &str) {
        let mut w = OverrideError::warning(
            Kind::UnknownField,
            at,
            format!("unknown field \"{name}\" in {context}; it is ignored"),
        );
        if let Some(s) = suggest(name, known) {
            w = w.with_help(format!("did you mean \"{s}\"?"));
        }
        self.warnings.push(w);
    }

    fn read_root(&mut self, root: &Object) {
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        let mut sections: [Option<&Value>; 2] = [None, None];
        let mut encodings: Option<(&Value, Span)> = None;
        let mut version_span = None;
        for prop in &root.properties {
            let name = prop.name.as_str();
            let name_span = span(prop.name.range());
            if seen.insert(name.to_string(), name_span).is_some() {
                self.error(Kind::DuplicateEntry, name_span, format!("\"{name}\" appears twice"));
                continue;
            }
            match name {
                "version" => match &prop.value {
                    Value::StringLit(s) => {
                        self.out.version = Some(s.value.to_string());
                        version_span = Some(span(s.range));
                    }
                    other => self.error(
                        Kind::WrongType,
                        span(other.range()),
                        "\"version\" must be a string such as \"0.6.1\" or \"1.0.0\"",
                    ),
                },
                "activation_encodings" => sections[0] = Some(&prop.value),
                "param_encodings" => sections[1] = Some(&prop.value),
                "encodings" => encodings = Some((&prop.value, name_span)),
                "excluded_layers" => self.read_excluded(&prop.value),
                // Metadata AIMET writes (`producer`: the exporting package and its version).
                "quantizer_args" | "producer" => {}
                other => self.unknown_field(other, name_span, TOP_LEVEL_KEYS, "the top level"),
            }
        }
        let version = self.out.version.as_deref();
        // AIMET reads a file without a version but with `encodings` as 2.0.0, and so does qairt.
        if version == Some("2.0.0") || (version.is_none() && encodings.is_some() && sections == [None, None]) {
            self.read_v2_root(root, encodings.map(|(value, _)| value), sections);
            return;
        }
        let list_form = match version {
            None => None,
            Some(v) if v.starts_with("0.") => Some(false),
            Some("1.0.0") => Some(true),
            Some(v) => {
                let at = version_span.unwrap_or_default();
                self.push(
                    OverrideError::error(
                        Kind::UnsupportedVersion,
                        at,
                        format!("unsupported encodings version \"{v}\""),
                    )
                    .with_help("qairt reads versions 0.4-0.6.x (dict form), 1.0.0 (list form) and 2.0.0"),
                );
                return;
            }
        };
        if let Some((_, at)) = encodings {
            self.push(
                OverrideError::error(
                    Kind::InvalidValue,
                    at,
                    format!(
                        "\"encodings\" is the list of a version 2.0.0 file; this file is version {}",
                        version.unwrap_or("0.x (no \"version\")")
                    ),
                )
                .with_help("declare \"version\": \"2.0.0\", or list the entries under activation_encodings and param_encodings"),
            );
            return;
        }
        let root_span = Span::new(root.range.start, 1);
        for (section, value) in [Section::Activation, Section::Param].into_iter().zip(sections) {
            let Some(value) = value else {
                self.push(
                    OverrideError::error(Kind::MissingField, root_span, format!("missing \"{}\"", section.key()))
                        .with_help(format!(
                            "both sections must be present, even when empty: \"{}\": {}",
                            section.key(),
                            if list_form == Some(true) { "[]" } else { "{}" }
                        )),
                );
                continue;
            };
            match (value, list_form) {
                (Value::Object(obj), None | Some(false)) => self.read_dict_section(section, obj),
                (Value::Array(arr), None | Some(true)) => self.read_list_section(section, arr),
                (Value::Object(_), Some(true)) => self.push(
                    OverrideError::error(
                        Kind::WrongType,
                        span(value.range()),
                        format!("\"{}\" must be a list in a version 1.0.0 file", section.key()),
                    )
                    .with_help(
                        "version 1.0.0 lists entries as [{\"name\": ..., \"bw\": ..., \
                         \"scale\": [...], \"offset\": [...]}]; older versions use \
                         {\"<name>\": [{\"bitwidth\": ...}]}",
                    ),
                ),
                (Value::Array(_), Some(false)) => self.push(
                    OverrideError::error(
                        Kind::WrongType,
                        span(value.range()),
                        format!(
                            "\"{}\" must be an object keyed by tensor name in a version {} file",
                            section.key(),
                            self.out.version.as_deref().unwrap_or("0.x")
                        ),
                    )
                    .with_help("the list form needs \"version\": \"1.0.0\""),
                ),
                (other, _) => self.error(
                    Kind::WrongType,
                    span(other.range()),
                    format!("\"{}\" must be an object or a list", section.key()),
                ),
            }
        }
    }

    /// The top level of a 2.0.0 file: one `encodings` list, no sections.
    fn read_v2_root(&mut self, root: &Object, encodings: Option<&Value>, sections: [Option<&Value>; 2]) {
        for (section, value) in [Section::Activation, Section::Param].into_iter().zip(sections) {
            if let Some(value) = value {
                self.push(
                    OverrideError::error(
                        Kind::WrongType,
                        span(value.range()),
                        format!(
                            "\"{}\" is a section of the 1.0.0 and 0.6.1 forms, in a version 2.0.0 file",
                            section.key()
                        ),
                    )
                    .with_help("a 2.0.0 file lists activations and parameters together: \"encodings\": [...]"),
                );
            }
        }
        match encodings {
            Some(Value::Array(arr)) => self.read_v2_section(arr),
            Some(other) => self.push(
                OverrideError::error(
                    Kind::WrongType,
                    span(other.range()),
                    "\"encodings\" must be a list in a version 2.0.0 file",
                )
                .with_help("[{\"name\": ..., \"output_dtype\": \"uint8\", \"y_scale\": ...}, ...]"),
            ),
            None => self.push(
                OverrideError::error(Kind::MissingField, Span::new(root.range.start, 1), "missing \"encodings\"")
                    .with_help(
                        "a 2.0.0 file lists its entries under \"encodings\", even when empty: \"encodings\": []",
                    ),
            ),
        }
    }

    fn read_excluded(&mut self, value: &Value) {
        let Value::Array(arr) = value else {
            self.error(Kind::WrongType, span(value.range()), "\"excluded_layers\" must be a list");
            return;
        };
        for item in &arr.elements {
            match item {
                Value::StringLit(s) => self.out.excluded_layers.push(s.value.to_string()),
                other => self.error(
                    Kind::WrongType,
                    span(other.range()),
                    "\"excluded_layers\" must hold layer names (strings)",
                ),
            }
        }
    }

    /// Records that an entry named `name` was met; `false` (with an error) when it was met
    /// before, in this section or the other.
    fn claim_name(&mut self, section: Section, name: &str, at: Span) -> bool {
        let Some(&first) = self.seen.get(name) else {
            self.seen.insert(name.to_string(), section);
            return true;
        };
        let e = if first == section {
            OverrideError::error(
                Kind::DuplicateEntry,
                at,
                format!("\"{name}\" has two entries in \"{}\"", section.key()),
            )
        } else {
            OverrideError::error(
                Kind::DuplicateEntry,
                at,
                format!("\"{name}\" is listed in both \"{}\" and \"{}\"", first.key(), section.key()),
            )
            .with_help("a tensor is either an activation or a parameter; keep one entry")
        };
        self.push(e);
        false
    }

    /// Registers a resolved entry (its name was claimed already).
    fn add_entry(&mut self, section: Section, name: &str, enc: OverrideEncoding, spans: EntrySpans) {
        self.out.section_mut(section).insert(name.to_string(), enc);
        self.out.source.entries.insert((section, name.to_string()), spans);
    }

    // ----- dict form -----

    fn read_dict_section(&mut self, section: Section, obj: &Object) {
        for prop in &obj.properties {
            let name = prop.name.as_str();
            let mut spans =
                EntrySpans { name: span(prop.name.range()), entry: span(prop.value.range()), fields: BTreeMap::new() };
            if !self.claim_name(section, name, spans.name) {
                continue;
            }
            let before = self.errors.len();
            let Value::Array(list) = &prop.value else {
                self.push(
                    OverrideError::error(
                        Kind::WrongType,
                        spans.entry,
                        format!("the encodings of \"{name}\" must be a list"),
                    )
                    .with_help("one {...} per tensor, or one per output channel: [{...}]"),
                );
                continue;
            };
            let mut elements = Vec::new();
            for (i, item) in list.elements.iter().enumerate() {
                match item {
                    Value::Object(o) => elements.push(self.read_dict_element(o, i, &mut spans)),
                    other => self.error(
                        Kind::WrongType,
                        span(other.range()),
                        format!("encoding {i} of \"{name}\" must be an object"),
                    ),
                }
            }
            if self.errors.len() != before {
                continue;
            }
            let enc_type = if elements.len() > 1 { EncType::PerChannel } else { EncType::PerTensor };
            let enc = self.resolve_entry(name, &elements, spans.entry, enc_type, None, None, &DICT_NAMES);
            if let Some(enc) = enc.filter(|_| self.errors.len() == before) {
                self.add_entry(section, name, enc, spans);
            }
        }
    }

    fn read_dict_element(&mut self, obj: &Object, index: usize, spans: &mut EntrySpans) -> RawElement {
        let mut el = RawElement { span: span(obj.range), ..Default::default() };
        for prop in &obj.properties {
            let field = prop.name.as_str();
            let at = span(prop.value.range());
            if spans.fields.contains_key(&(index, field.to_string())) {
                self.error(Kind::DuplicateEntry, span(prop.name.range()), format!("field \"{field}\" appears twice"));
                continue;
            }
            spans.fields.insert((index, field.to_string()), at);
            match field {
                "bitwidth" => el.bitwidth = self.number(&prop.value, field),
                "dtype" => el.dtype = self.dtype(&prop.value),
                "is_symmetric" => el.symmetric = self.boolean(&prop.value, field),
                "min" => el.min = self.number(&prop.value, field),
                "max" => el.max = self.number(&prop.value, field),
                "scale" => el.scale = self.number(&prop.value, field),
                "offset" => el.offset = self.number(&prop.value, field),
                other => self.unknown_field(other, span(prop.name.range()), DICT_FIELDS, "an encoding"),
            }
        }
        el
    }

    // ----- list form -----

    fn read_list_section(&mut self, section: Section, arr: &Array) {
        for item in &arr.elements {
            let Value::Object(obj) = item else {
                self.push(
                    OverrideError::error(
                        Kind::WrongType,
                        span(item.range()),
                        format!("entries of \"{}\" must be objects", section.key()),
                    )
                    .with_help("{\"name\": ..., \"dtype\": \"INT\", \"bw\": 8, ...}"),
                );
                continue;
            };
            self.read_list_entry(section, obj);
        }
    }

    fn read_list_entry(&mut self, section: Section, obj: &Object) {
        let entry_span = span(obj.range);
        let mut spans = EntrySpans { name: entry_span, entry: entry_span, fields: BTreeMap::new() };
        let mut name = None;
        let mut shared = RawElement { span: entry_span, ..Default::default() };
        let mut enc_type = None;
        let mut block_size = None;
        let mut compressed_bw = None;
        let mut int_scales = None;
        let mut arrays: BTreeMap<&'static str, Vec<Num>> = BTreeMap::new();
        let before = self.errors.len();
        for prop in &obj.properties {
            let field = prop.name.as_str();
            let Some(at) = self.claim_field(prop, &mut spans) else { continue };
            match field {
                "name" => name = self.entry_name(&prop.value, &mut spans).or(name),
                "dtype" => shared.dtype = self.dtype(&prop.value),
                "bw" => shared.bitwidth = self.number(&prop.value, field),
                "is_sym" => shared.symmetric = self.boolean(&prop.value, field),
                "enc_type" => enc_type = self.enc_type(&prop.value),
                "block_size" => block_size = self.number(&prop.value, field),
                "compressed_bw" => compressed_bw = self.number(&prop.value, field),
                "per_block_int_scale" => int_scales = Some(self.number_array(&prop.value, field)),
                "scale" | "offset" | "min" | "max" => {
                    let key = match field {
                        "scale" => "scale",
                        "offset" => "offset",
                        "min" => "min",
                        _ => "max",
                    };
                    spans.fields.remove(&(0, field.to_string()));
                    spans.fields.insert((0, format!("{field}[]")), at);
                    let items = self.number_array(&prop.value, field);
                    for (i, n) in items.iter().enumerate() {
                        spans.fields.insert((i, field.to_string()), n.span);
                    }
                    arrays.insert(key, items);
                }
                other => self.unknown_field(other, span(prop.name.range()), LIST_FIELDS, "an encoding entry"),
            }
        }
        let Some(name) = name else {
            self.error(Kind::MissingField, entry_span, "encoding entry without a \"name\"");
            return;
        };
        if !self.claim_name(section, &name, spans.name) || self.errors.len() != before {
            return;
        }
        let is_float = shared.dtype.map(|d| d.0) == Some(DtypeKind::Float);
        let count = arrays.values().map(Vec::len).max().unwrap_or(0);
        for (field, items) in &arrays {
            if items.len() != count {
                let at = spans.field(0, &format!("{field}[]")).unwrap_or(entry_span);
                self.error(
                    Kind::InvalidValue,
                    at,
                    format!("\"{field}\" of \"{name}\" has {} values, other arrays have {count}", items.len()),
                );
            }
        }
        if self.errors.len() != before {
            return;
        }
        let elements: Vec<RawElement> = if is_float || count == 0 {
            vec![shared.clone()]
        } else {
            (0..count)
                .map(|i| RawElement {
                    scale: arrays.get("scale").and_then(|v| v.get(i)).copied(),
                    offset: arrays.get("offset").and_then(|v| v.get(i)).copied(),
                    min: arrays.get("min").and_then(|v| v.get(i)).copied(),
                    max: arrays.get("max").and_then(|v| v.get(i)).copied(),
                    ..shared.clone()
                })
                .collect()
        };
        let enc_type = match enc_type {
            Some(t) => t,
            None if count > 1 => EncType::PerChannel,
            None => EncType::PerTensor,
        };
        if !is_float && enc_type == EncType::PerTensor && count > 1 {
            let at = spans.field(0, "enc_type").unwrap_or(entry_span);
            self.error(Kind::InvalidValue, at, format!("\"{name}\" is PER_TENSOR but has {count} scales"));
            return;
        }
        let block = block_size.map(|n| n.value.max(0.0) as u32);
        let (elements, lpbq) = if enc_type == EncType::Lpbq {
            let Some(lpbq) = self.lpbq_v1(&name, &elements, int_scales.as_deref(), compressed_bw, entry_span) else {
                return;
            };
            lpbq
        } else {
            (elements, None)
        };
        if let Some(enc) = self.resolve_entry(&name, &elements, entry_span, enc_type, block, lpbq, &LIST_NAMES)
            && self.errors.len() == before
        {
            self.add_entry(section, &name, enc, spans);
        }
    }

    /// A 1.0.0 LPBQ entry: `scale`/`offset` are the per-channel float scales on the
    /// decompressed grid (`bw`, offset `-2^(bw-1)`), `per_block_int_scale` the blocks' integer
    /// scales, channel-major (AIMET's order for Conv and Gemm weights), and `compressed_bw` the
    /// codes' bitwidth. Returns one element per block, with its effective scale on the
    /// compressed grid, and the decomposition.
    #[allow(clippy::type_complexity)]
    fn lpbq_v1(
        &mut self,
        name: &str,
        channels: &[RawElement],
        int_scales: Option<&[Num]>,
        compressed_bw: Option<Num>,
        entry_span: Span,
    ) -> Option<(Vec<RawElement>, Option<Lpbq>)> {
        let help = "AIMET's 1.0.0 LPBQ entries give per_block_int_scale, compressed_bw, and the per-channel \
                    float scales as scale";
        let (Some(ints), Some(bits)) = (int_scales, compressed_bw) else {
            let missing = if int_scales.is_none() { "per_block_int_scale" } else { "compressed_bw" };
            self.push(
                OverrideError::error(
                    Kind::MissingField,
                    entry_span,
                    format!("the LPBQ entry \"{name}\" has no \"{missing}\""),
                )
                .with_help(help),
            );
            return None;
        };
        let floats: Vec<Num> = channels.iter().filter_map(|c| c.scale).collect();
        if floats.is_empty() || floats.len() != channels.len() || !ints.len().is_multiple_of(floats.len()) {
            self.push(
                OverrideError::error(
                    Kind::InvalidValue,
                    entry_span,
                    format!(
                        "\"{name}\" has {} per-block integer scales, not a multiple of its {} per-channel scales",
                        ints.len(),
                        floats.len()
                    ),
                )
                .with_help(help),
            );
            return None;
        }
        let half = symmetric_offset_magnitude(bits.value.clamp(1.0, 32.0) as u32) as f64;
        let per_channel = ints.len() / floats.len();
        let mut int_values = Vec::with_capacity(ints.len());
        let mut elements = Vec::with_capacity(ints.len());
        for (i, n) in ints.iter().enumerate() {
            if n.value.fract() != 0.0 || n.value < 1.0 || n.value > f64::from(u32::MAX) {
                self.error(
                    Kind::InvalidValue,
                    n.span,
                    format!("a per-block integer scale must be a positive integer, got {}", n.value),
                );
                return None;
            }
            let int = n.value as u32;
            int_values.push(int);
            let scale = Lpbq::block_scale(int, floats[i / per_channel].value);
            elements.push(RawElement {
                span: n.span,
                bitwidth: Some(bits),
                scale: Some(Num { value: f64::from(scale), span: n.span }),
                offset: Some(Num { value: -half, span: n.span }),
                ..channels[i / per_channel].clone()
            });
        }
        let lpbq = Lpbq { int_scales: int_values, channel_scales: floats.iter().map(|n| n.value).collect() };
        Some((elements, Some(lpbq)))
    }

    // ----- field readers -----

    /// Records where a field of a list-form entry is (element 0); `None`, with an error, when
    /// the entry gave it already (as a scalar or, `field[]`, as an array).
    fn claim_field(&mut self, prop: &jsonc_parser::ast::ObjectProp, spans: &mut EntrySpans) -> Option<Span> {
        let field = prop.name.as_str();
        let at = span(prop.value.range());
        if spans.fields.contains_key(&(0, field.to_string())) || spans.fields.contains_key(&(0, format!("{field}[]"))) {
            self.error(Kind::DuplicateEntry, span(prop.name.range()), format!("field \"{field}\" appears twice"));
            return None;
        }
        spans.fields.insert((0, field.to_string()), at);
        Some(at)
    }

    /// The `name` of a list-form entry, its span the entry's name span.
    fn entry_name(&mut self, value: &Value, spans: &mut EntrySpans) -> Option<String> {
        match value {
            Value::StringLit(s) => {
                spans.name = span(s.range);
                Some(s.value.to_string())
            }
            other => {
                self.error(Kind::WrongType, span(other.range()), "\"name\" must be a string");
                None
            }
        }
    }

    fn number(&mut self, value: &Value, field: &str) -> Option<Num> {
        let at = span(value.range());
        let Value::NumberLit(n) = value else {
            self.error(Kind::WrongType, at, format!("\"{field}\" must be a number"));
            return None;
        };
        match n.value.parse::<f64>() {
            Ok(v) if v.is_finite() => Some(Num { value: v, span: at }),
            _ => {
                self.error(Kind::InvalidValue, at, format!("\"{field}\" is out of range: {}", n.value));
                None
            }
        }
    }

    fn number_array(&mut self, value: &Value, field: &str) -> Vec<Num> {
        match value {
            Value::Array(arr) => arr.elements.iter().filter_map(|v| self.number(v, field)).collect(),
            // A bare number is a one-element list.
            Value::NumberLit(_) => self.number(value, field).into_iter().collect(),
            other => {
                self.error(Kind::WrongType, span(other.range()), format!("\"{field}\" must be a list of numbers"));
                Vec::new()
            }
        }
    }

    fn boolean(&mut self, value: &Value, field: &str) -> Option<(bool, Span)> {
        let at = span(value.range());
        let parsed = match value {
            Value::BooleanLit(b) => Some(b.value),
            Value::StringLit(s) if s.value.eq_ignore_ascii_case("true") => Some(true),
            Value::StringLit(s) if s.value.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        };
        if parsed.is_none() {
            self.error(Kind::WrongType, at, format!("\"{field}\" must be \"True\", \"False\", true or false"));
        }
        parsed.map(|b| (b, at))
    }

    fn dtype(&mut self, value: &Value) -> Option<(DtypeKind, Span)> {
        let at = span(value.range());
        let kind = match value {
            Value::StringLit(s) if s.value.eq_ignore_ascii_case("int") => Some(DtypeKind::Int),
            Value::StringLit(s) if s.value.eq_ignore_ascii_case("float") => Some(DtypeKind::Float),
            _ => None,
        };
        if kind.is_none() {
            self.error(Kind::InvalidValue, at, "\"dtype\" must be \"int\" or \"float\"");
        }
        kind.map(|k| (k, at))
    }

    fn enc_type(&mut self, value: &Value) -> Option<EncType> {
        let t = match value {
            Value::StringLit(s) => match s.value.to_ascii_uppercase().as_str() {
                "PER_TENSOR" => Some(EncType::PerTensor),
                "PER_CHANNEL" => Some(EncType::PerChannel),
                "PER_BLOCK" => Some(EncType::PerBlock),
                "LPBQ" => Some(EncType::Lpbq),
                _ => None,
            },
            _ => None,
        };
        if t.is_none() {
            self.error(
                Kind::InvalidValue,
                span(value.range()),
                "\"enc_type\" must be PER_TENSOR, PER_CHANNEL, PER_BLOCK or LPBQ",
            );
        }
        t
    }

    // ----- interpretation -----

    /// Turns the elements of one entry into its meaning; errors are recorded, `None` then.
    fn resolve_entry(
        &mut self,
        name: &str,
        elements: &[RawElement],
        entry_span: Span,
        enc_type: EncType,
        block_size: Option<u32>,
        lpbq: Option<Lpbq>,
        names: &Names,
    ) -> Option<OverrideEncoding> {
        let Some(first) = elements.first() else {
            self.error(Kind::MissingField, entry_span, format!("\"{name}\" has no encodings"));
            return None;
        };
        // Every channel must agree on bitwidth, dtype and symmetry.
        for el in &elements[1..] {
            let same = el.bitwidth.map(|n| n.value) == first.bitwidth.map(|n| n.value)
                && el.dtype.map(|d| d.0) == first.dtype.map(|d| d.0)
                && el.symmetric.map(|s| s.0) == first.symmetric.map(|s| s.0);
            if !same {
                self.error(
                    Kind::InvalidValue,
                    el.span,
                    format!(
                        "the per-channel encodings of \"{name}\" disagree on {}, dtype or {}",
                        names.bitwidth, names.symmetric
                    ),
                );
                return None;
            }
        }
        let Some(bw) = first.bitwidth else {
            self.push(
                OverrideError::error(
                    Kind::MissingField,
                    first.span,
                    format!("the encoding of \"{name}\" has no \"{}\"", names.bitwidth),
                )
                .with_help(format!("add \"{}\": 8 (or 16, 4, 32)", names.bitwidth)),
            );
            return None;
        };
        let dtype = first.dtype.map_or(DtypeKind::Int, |d| d.0);
        let allowed = if dtype == DtypeKind::Float { FLOAT_BITWIDTHS } else { INT_BITWIDTHS };
        let bitwidth = bw.value as u32;
        if bw.value.fract() != 0.0 || !allowed.contains(&bitwidth) || bw.value < 0.0 {
            let list = allowed.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
            self.push(
                OverrideError::error(
                    Kind::InvalidBitwidth,
                    bw.span,
                    format!("{} {} is not supported for \"{name}\"", names.bitwidth, bw.value),
                )
                .with_help(format!(
                    "{} encodings take {list} bits",
                    if dtype == DtypeKind::Float { "float" } else { "integer" }
                )),
            );
            return None;
        }
        if dtype == DtypeKind::Float {
            if elements.len() > 1 {
                self.error(
                    Kind::InvalidValue,
                    entry_span,
                    format!("\"{name}\" is float but has {} encodings; give one", elements.len()),
                );
                return None;
            }
            return Some(OverrideEncoding::Float { bitwidth });
        }
        let symmetric = first.symmetric.map(|s| s.0);
        let mut encodings = Vec::with_capacity(elements.len());
        for el in elements {
            encodings.push(self.resolve_int(name, el, bitwidth, symmetric)?);
        }
        if matches!(enc_type, EncType::PerTensor) {
            return Some(match encodings.pop().flatten() {
                Some(e) => OverrideEncoding::Int(vec![e]),
                None => OverrideEncoding::Calibrated { bitwidth, symmetric },
            });
        }
        let Some(channels) = encodings.into_iter().collect::<Option<Vec<Encoding>>>() else {
            self.push(
                OverrideError::error(
                    Kind::MissingField,
                    entry_span,
                    format!("the {} encodings of \"{name}\" need a range for every channel", enc_type.name()),
                )
                .with_help("give scale and offset (or min and max) for each channel"),
            );
            return None;
        };
        if matches!(enc_type, EncType::PerBlock | EncType::Lpbq) {
            let Some(block_size) = block_size.filter(|&b| b > 0) else {
                self.push(
                    OverrideError::error(
                        Kind::MissingField,
                        entry_span,
                        format!("the {} encodings of \"{name}\" have no \"block_size\"", enc_type.name()),
                    )
                    .with_help("give the input channels per block: \"block_size\": 32"),
                );
                return None;
            };
            return Some(OverrideEncoding::PerBlock(BlockEncoding { bitwidth, block_size, blocks: channels, lpbq }));
        }
        let want = -symmetric_offset_magnitude(bitwidth);
        let bad = channels.iter().zip(elements).find(|(e, _)| e.offset as i64 != want);
        if let Some((e, el)) = bad {
            let at = el.offset.map_or(el.span, |o| o.span);
            self.push(
                OverrideError::error(
                    Kind::PerChannelNotSymmetric,
                    at,
                    format!(
                        "per-channel encodings of \"{name}\" must be symmetric with offset {want}, found offset {}",
                        e.offset
                    ),
                )
                .with_help(format!(
                    "the SDK requires per-channel encodings with {} true and offset = -2^(bw-1)",
                    names.symmetric
                )),
            );
            return None;
        }
        if let Some((false, at)) = first.symmetric {
            self.error(
                Kind::PerChannelNotSymmetric,
                at,
                format!("per-channel encodings of \"{name}\" must have {} true", names.symmetric),
            );
            return None;
        }
        let channels = channels.into_iter().map(|e| Encoding { symmetric: true, ..e }).collect();
        Some(OverrideEncoding::Int(channels))
    }

    /// One integer encoding from its fields: `Ok(None)` when no range is given (calibrate).
    /// Errors are recorded and give `None` from the outer `Option`.
    fn resolve_int(
        &mut self,
        name: &str,
        el: &RawElement,
        bitwidth: u32,
        symmetric: Option<bool>,
    ) -> Option<Option<Encoding>> {
        let before = self.errors.len();
        if let Some(s) = el.scale
            && s.value <= 0.0
        {
            self.error(Kind::InvalidValue, s.span, format!("scale of \"{name}\" must be positive, got {}", s.value));
        }
        if let Some(o) = el.offset
            && o.value.fract() != 0.0
        {
            self.error(Kind::InvalidValue, o.span, format!("offset of \"{name}\" must be an integer, got {}", o.value));
        }
        if let (Some(lo), Some(hi)) = (el.min, el.max)
            && lo.value > hi.value
        {
            self.error(
                Kind::MinGreaterThanMax,
                lo.span,
                format!("min {} of \"{name}\" is greater than max {}", lo.value, hi.value),
            );
        }
        if self.errors.len() != before {
            return None;
        }
        let schema = if symmetric == Some(true) { Schema::Symmetric } else { Schema::Asymmetric };
        let steps = grid_steps(bitwidth);
        let lowest_offset = (-steps).max(i32::MIN as f64);
        let range = match (el.min, el.max) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        };
        let check_offset = |reader: &mut Reader, offset: f64, at: Span| -> bool {
            if offset < lowest_offset {
                reader.push(
                    OverrideError::error(
                        Kind::InvalidValue,
                        at,
                        format!("offset {offset} of \"{name}\" is outside [{lowest_offset}, 0] for {bitwidth} bits"),
                    )
                    .with_help("zero must be on the grid: -(2^bw - 1) <= offset <= 0"),
                );
                return false;
            }
            true
        };
        match (el.scale, el.offset, range) {
            (Some(s), Some(o), _) if o.value <= 0.0 => {
                if !check_offset(self, o.value, o.span) {
                    return None;
                }
                let enc =
                    Encoding::from_scale_offset(bitwidth, s.value as f32, o.value as i64, symmetric.unwrap_or(false));
                if let Some((lo, hi)) = range {
                    let tolerance = 0.5 * s.value;
                    let off_lo = (lo.value - enc.min as f64).abs() > tolerance;
                    let off_hi = (hi.value - enc.max as f64).abs() > tolerance;
                    if off_lo || off_hi {
                        self.warnings.push(
                            OverrideError::warning(
                                Kind::InconsistentRange,
                                if off_lo { lo.span } else { hi.span },
                                format!(
                                    "min/max of \"{name}\" ({}, {}) disagree with scale and offset, which give ({}, {}); scale and offset are used",
                                    lo.value, hi.value, enc.min, enc.max
                                ),
                            )
                            .with_help("the SDK uses scale and offset when both are given"),
                        );
                    }
                }
                Some(Some(enc))
            }
            (_, Some(o), Some((lo, hi))) if o.value > 0.0 => {
                // Positive offset with a range: the legacy zero-point form; trust min/max.
                let enc = Encoding::from_range(lo.value as f32, hi.value as f32, bitwidth, schema);
                self.warnings.push(
                    OverrideError::warning(
                        Kind::PositiveOffset,
                        o.span,
                        format!(
                            "offset {} of \"{name}\" is positive: read as the legacy zero-point form; \
                             re-derived from min and max: offset {}, scale {}",
                            o.value, enc.offset, enc.scale
                        ),
                    )
                    .with_help("AIMET and QNN write offset = round(min / scale) <= 0"),
                );
                Some(Some(enc))
            }
            (Some(s), Some(o), None) => {
                if !check_offset(self, -o.value, o.span) {
                    return None;
                }
                let enc = Encoding::from_scale_offset(
                    bitwidth,
                    s.value as f32,
                    -(o.value as i64),
                    symmetric.unwrap_or(false),
                );
                self.warnings.push(
                    OverrideError::warning(
                        Kind::PositiveOffset,
                        o.span,
                        format!(
                            "offset {} of \"{name}\" is positive: read as the legacy zero-point form, \
                             i.e. offset {}",
                            o.value, enc.offset
                        ),
                    )
                    .with_help("AIMET and QNN write offset = round(min / scale) <= 0"),
                );
                Some(Some(enc))
            }
            (scale, offset, Some((lo, hi))) => {
                if let Some(given) = scale.or(offset) {
                    self.warnings.push(OverrideError::warning(
                        Kind::InconsistentRange,
                        given.span,
                        format!(
                            "\"{name}\" gives {} without {}: both are computed from min and max",
                            if scale.is_some() { "scale" } else { "offset" },
                            if scale.is_some() { "offset" } else { "scale" },
                        ),
                    ));
                }
                Some(Some(Encoding::from_range(lo.value as f32, hi.value as f32, bitwidth, schema)))
            }
            (None, None, None) if el.min.is_none() && el.max.is_none() => Some(None),
            _ => {
                self.push(
                    OverrideError::error(
                        Kind::MissingField,
                        el.span,
                        format!("the encoding of \"{name}\" gives only part of a range"),
                    )
                    .with_help("give both min and max, or both scale and offset (or neither, to calibrate)"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::aimet::Severity;

    fn int(o: &OverrideEncoding) -> &[Encoding] {
        match o {
            OverrideEncoding::Int(v) => v,
            other => panic!("expected int encodings, got {other:?}"),
        }
    }

    fn errors_of(text: &str) -> Vec<OverrideError> {
        parse_overrides(text).expect_err("should fail")
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for open in ["[", "{\"a\":"] {
            let close = if open == "[" { "]" } else { "}" };
            let text = format!("{{\"activation_encodings\": {}{}}}", open.repeat(100_000), close.repeat(100_000));
            let errors = errors_of(&text);
            assert!(errors[0].message.contains("nested more than 64"), "{}", errors[0].message);
            assert_eq!(errors[0].span.offset, 25 + 63 * open.len());
        }
        // Brackets inside strings do not count, escaped quotes do not end a string.
        let names = format!("{{\"activation_encodings\": {{\"{}\\\"{}\": []}}}}", "[".repeat(100), "{".repeat(100));
        assert!(nesting_beyond(&names, 64).is_none(), "{names}");
        let errors = parse_overrides(&names).err().unwrap_or_default();
        assert!(errors.iter().all(|e| !e.message.contains("nested")), "{errors:?}");
    }

    /// The SDK guide's first example (dict form, no dtype/is_symmetric).
    const GUIDE_EXAMPLE: &str = r#"{
 "activation_encodings": {
 "Conv1:0": [
 {
 "bitwidth": 8,
 "max": 12.82344407824954,
 "min": 0.0,
 "offset": 0,
 "scale": 0.050288015993135454
 }
],
 "input:0": [
 {
 "bitwidth": 8,
 "max": 0.9960872825108046,
 "min": -1.0039304197656937,
 "offset": 127,
 "scale": 0.007843206675594112
 }
]
 },
 "param_encodings": {
 "Conv2d/weights": [
 {
 "bitwidth": 8,
 "max": 1.0039304197656937,
 "min": -0.9960872825108046,
 "offset": 127,
 "scale": 0.007843206675594112
 }
]
 }
}"#;

    /// Conv1:0 is used as given: offset 0, scale 0.050288.., max = 255 * scale = 12.8234.
    /// input:0 has the legacy positive offset 127 although min / scale = -1.00393 / 0.0078432
    /// = -128.0: re-derived from min/max -> offset -128, with a warning. Conv2d/weights:
    /// min / scale = -127.0 -> offset -127.
    #[test]
    fn reads_the_guides_example_and_fixes_positive_offsets() {
        let o = parse_overrides(GUIDE_EXAMPLE).unwrap();
        let conv = &int(&o.activations["Conv1:0"])[0];
        assert_eq!((conv.bitwidth, conv.offset), (8, 0));
        assert!((conv.scale as f64 - 0.050288015993135454).abs() < 1e-8, "f32 ulp 3.7e-9");
        assert!((conv.max as f64 - 12.82344407824954).abs() < 1e-5);
        let input = &int(&o.activations["input:0"])[0];
        assert_eq!(input.offset, -128);
        assert!((input.scale as f64 - 0.007843206675594112).abs() < 1e-8);
        let w = &int(&o.params["Conv2d/weights"])[0];
        assert_eq!(w.offset, -127);
        let warnings = &o.source.warnings;
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.kind == Kind::PositiveOffset && w.severity == Severity::Warning));
        // The warning points at the offending `127` of input:0 (line 17 of the text).
        let (line, _) = warnings[0].span.line_column(GUIDE_EXAMPLE);
        assert_eq!(line, 17);
        assert_eq!(&GUIDE_EXAMPLE[warnings[0].span.offset..][..3], "127");
    }

    /// The guide's per-channel example: three channels, symmetric, offset -128.0 (a float).
    #[test]
    fn reads_per_channel_dict_entries() {
        let text = r#"{"activation_encodings": {}, "param_encodings": { "features.8.conv.3.weight": [
 {"bitwidth": 8, "is_symmetric": "True", "max": 0.7011175155639648, "min": -0.7066381259227362, "offset": -128.0, "scale": 0.005520610358771377},
 {"bitwidth": 8, "is_symmetric": "True", "max": 0.5228064656257629, "min": -0.5269230519692729, "offset": -128.0, "scale": 0.004116586343509945},
 {"bitwidth": 8, "is_symmetric": "True", "max": 0.7368279099464417, "min": -0.7426297045129491, "offset": -128.0, "scale": 0.005801794566507415} ] }}"#;
        let o = parse_overrides(text).unwrap();
        assert!(o.source.warnings.is_empty(), "{:?}", o.source.warnings);
        let ch = int(&o.params["features.8.conv.3.weight"]);
        assert_eq!(ch.len(), 3);
        assert!(ch.iter().all(|e| e.offset == -128 && e.symmetric));
        // min = -128 * scale reproduces the file's min: -128 * 0.004116586343509945 = -0.52692305.
        assert!((ch[1].min as f64 - -0.5269230519692729).abs() < 1e-7);
        let spans = o.spans_of(Section::Param, "features.8.conv.3.weight");
        let at = spans.field(2, "scale").unwrap();
        assert_eq!(&text[at.offset..at.offset + at.len], "0.005801794566507415");
    }

    /// The guide's mixed-precision example: bitwidth-only int entries calibrate; float entries.
    #[test]
    fn reads_mixed_precision_entries() {
        let text = r#"{ "activation_encodings": { "data_0": [{"bitwidth": 8, "dtype": "int"}],
  "conv2_1": [{"bitwidth": 32, "dtype": "float"}] },
  "param_encodings": { "conv2_w_0": [{"bitwidth": 16, "dtype": "float"}] }, "version": "0.5.0" }"#;
        let o = parse_overrides(text).unwrap();
        assert_eq!(o.version.as_deref(), Some("0.5.0"));
        assert_eq!(o.activations["data_0"], OverrideEncoding::Calibrated { bitwidth: 8, symmetric: None });
        assert_eq!(o.activations["conv2_1"], OverrideEncoding::Float { bitwidth: 32 });
        assert_eq!(o.params["conv2_w_0"], OverrideEncoding::Float { bitwidth: 16 });
    }

    /// AIMET 0.6.1 export (bool-as-string, dtype) and min/max-only entries (computed with the
    /// SDK rule: [-1.8, 0.5] -> offset -200, as in the worked example).
    #[test]
    fn min_max_only_entries_are_computed() {
        let text = r#"{"version": "0.6.1", "excluded_layers": [], "quantizer_args": {"x": 1},
          "activation_encodings": {"a": [{"bitwidth": 8, "dtype": "int", "is_symmetric": "False", "min": -1.8, "max": 0.5}]},
          "param_encodings": {"w": [{"bitwidth": 4, "is_symmetric": true, "min": -0.7, "max": 0.35}]}}"#;
        let o = parse_overrides(text).unwrap();
        assert_eq!(int(&o.activations["a"])[0].offset, -200);
        let w = &int(&o.params["w"])[0];
        assert_eq!((w.offset, w.symmetric), (-8, true));
        assert!((w.scale - 0.1).abs() < 1e-7, "0.7 / 7");
    }

    /// The 1.0.0 list form from the digest (§6.8).
    #[test]
    fn reads_the_list_form() {
        let text = r#"{ "version": "1.0.0",
  "activation_encodings": [ {"name": "/fc1/Gemm_output_0", "dtype": "INT", "enc_type": "PER_TENSOR", "bw": 16, "is_sym": false,
                             "scale": [6.05e-05], "offset": [-35799]} ],
  "param_encodings": [ {"name": "fc1.weight", "dtype": "INT", "enc_type": "PER_CHANNEL", "bw": 4, "is_sym": true,
                        "scale": [0.0405, 0.0397], "offset": [-8, -8]},
                       {"name": "fc1.bias", "dtype": "FLOAT", "bw": 16} ],
  "excluded_layers": [], "quantizer_args": {} }"#;
        let o = parse_overrides(text).unwrap();
        let a = &int(&o.activations["/fc1/Gemm_output_0"])[0];
        assert_eq!((a.bitwidth, a.offset, a.symmetric), (16, -35799, false));
        // min = -35799 * 6.05e-05 = -2.16584; max = (65535 - 35799) * 6.05e-05 = 1.79903.
        assert!((a.min as f64 - -2.1658395).abs() < 1e-5);
        assert!((a.max as f64 - 1.799028).abs() < 1e-5);
        let w = int(&o.params["fc1.weight"]);
        assert_eq!(w.len(), 2);
        assert_eq!((w[1].offset, w[1].bitwidth), (-8, 4));
        assert_eq!(o.params["fc1.bias"], OverrideEncoding::Float { bitwidth: 16 });
        let spans = o.spans_of(Section::Param, "fc1.weight");
        let at = spans.field(1, "scale").unwrap();
        assert_eq!(&text[at.offset..at.offset + at.len], "0.0397");
        assert_eq!(&text[spans.name.offset..spans.name.offset + spans.name.len], "\"fc1.weight\"");
    }

    #[test]
    fn per_block_is_read_as_such() {
        let text = r#"{"version": "1.0.0", "activation_encodings": [], "param_encodings": [
          {"name": "w", "dtype": "INT", "enc_type": "PER_BLOCK", "bw": 4, "is_sym": true, "block_size": 64,
           "scale": [0.1, 0.2], "offset": [-8, -8]}]}"#;
        let o = parse_overrides(text).unwrap();
        assert!(matches!(
            &o.params["w"],
            OverrideEncoding::PerBlock(b) if b.block_size == 64 && b.bitwidth == 4 && b.blocks.len() == 2 && b.lpbq.is_none()
        ));
        let no_size = text.replace(r#""block_size": 64,"#, "");
        assert_eq!(errors_of(&no_size)[0].kind, Kind::MissingField);
    }

    /// AIMET's 1.0.0 LPBQ entry: per-channel float scales on the decompressed 8-bit grid,
    /// integer block scales, 4-bit codes; blocks get `int * float` on the 4-bit grid.
    #[test]
    fn lpbq_1_0_0_reads_effective_block_scales() {
        let text = r#"{"version": "1.0.0", "activation_encodings": [], "param_encodings": [
          {"name": "w", "dtype": "INT", "enc_type": "LPBQ", "bw": 8, "compressed_bw": 4, "is_sym": true, "block_size": 4,
           "scale": [0.5, 0.25], "offset": [-128, -128], "per_block_int_scale": [16, 3, 5, 16]}]}"#;
        let o = parse_overrides(text).unwrap();
        assert!(o.source.warnings.is_empty(), "{:?}", o.source.warnings);
        let OverrideEncoding::PerBlock(b) = &o.params["w"] else { panic!() };
        assert_eq!(
            b.blocks.iter().map(|e| (e.scale, e.offset, e.bitwidth)).collect::<Vec<_>>(),
            [(8.0, -8, 4), (1.5, -8, 4), (1.25, -8, 4), (4.0, -8, 4)]
        );
        assert_eq!(b.lpbq.as_ref().unwrap().channel_scales, [0.5, 0.25]);
        assert_eq!(
            errors_of(&text.replace(r#", "per_block_int_scale": [16, 3, 5, 16]"#, ""))[0].kind,
            Kind::MissingField
        );
        assert_eq!(errors_of(&text.replace("[16, 3, 5, 16]", "[16, 3, 5]"))[0].kind, Kind::InvalidValue);
        assert_eq!(errors_of(&text.replace("[16, 3, 5, 16]", "[16, 0, 5, 16]"))[0].kind, Kind::InvalidValue);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let text = "{\n  \"activation_encodings\": {,\n}";
        let e = errors_of(text);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, Kind::Syntax);
        assert_eq!(e[0].span.line_column(text), (2, 28));
    }

    #[test]
    fn nan_is_reported_as_an_invalid_value() {
        let text = "{\"activation_encodings\": {\"a\": [{\"bitwidth\": 8, \"scale\": NaN, \"offset\": 0}]}, \"param_encodings\": {}}";
        let e = errors_of(text);
        assert_eq!(e[0].kind, Kind::InvalidValue);
        assert_eq!(&text[e[0].span.offset..][..3], "NaN");
    }

    /// One error per problem, each at its field: bitwidth 3, zero scale, min > max, offset
    /// -127.5, a string where a number belongs, a duplicate entry.
    #[test]
    fn value_errors_point_at_their_fields() {
        let text = r#"{
"activation_encodings": {
  "a": [{"bitwidth": 3, "min": 0, "max": 1}],
  "b": [{"bitwidth": 8, "scale": 0, "offset": 0}],
  "c": [{"bitwidth": 8, "min": 2, "max": 1}],
  "d": [{"bitwidth": 8, "scale": 0.1, "offset": -127.5}],
  "e": [{"bitwidth": "8", "min": 0, "max": 1}],
  "a": [{"bitwidth": 8, "min": 0, "max": 1}]
},
"param_encodings": {}
}"#;
        let e = errors_of(text);
        let found: Vec<(Kind, usize)> = e.iter().map(|e| (e.kind, e.span.line_column(text).0)).collect();
        assert_eq!(
            found,
            vec![
                (Kind::InvalidBitwidth, 3),
                (Kind::InvalidValue, 4),
                (Kind::MinGreaterThanMax, 5),
                (Kind::InvalidValue, 6),
                (Kind::WrongType, 7),
                (Kind::DuplicateEntry, 8),
            ]
        );
        let bw = &e[0];
        assert_eq!(&text[bw.span.offset..][..bw.span.len], "3");
        assert!(bw.help.as_deref().unwrap().contains("4, 8, 16, 32"));
    }

    #[test]
    fn sections_are_required_and_versions_checked() {
        let e = errors_of(r#"{"activation_encodings": {}}"#);
        assert_eq!(e[0].kind, Kind::MissingField);
        assert!(e[0].message.contains("param_encodings"));
        let e = errors_of(r#"{"version": "3.0", "activation_encodings": {}, "param_encodings": {}}"#);
        assert_eq!(e[0].kind, Kind::UnsupportedVersion);
        let e = errors_of(r#"{"version": "1.0.0", "activation_encodings": {}, "param_encodings": []}"#);
        assert_eq!(e[0].kind, Kind::WrongType);
    }

    #[test]
    fn per_channel_must_be_symmetric() {
        let text = r#"{"activation_encodings": {}, "param_encodings": {"w": [
          {"bitwidth": 8, "scale": 0.1, "offset": -128}, {"bitwidth": 8, "scale": 0.1, "offset": -100}]}}"#;
        let e = errors_of(text);
        assert_eq!(e[0].kind, Kind::PerChannelNotSymmetric);
        assert_eq!(&text[e[0].span.offset..][..4], "-100");
    }

    #[test]
    fn duplicate_fields_are_errors() {
        let text = r#"{"activation_encodings": {"a": [{"bitwidth": 8, "min": 0, "min": 1, "max": 2}]}, "param_encodings": {}}"#;
        let e = errors_of(text);
        assert_eq!(e[0].kind, Kind::DuplicateEntry);
        assert_eq!(e[0].span.offset, text.rfind("\"min\"").unwrap());
        let text = r#"{"version": "1.0.0", "activation_encodings": [{"name": "a", "bw": 8, "scale": [1], "scale": [2], "offset": [0]}], "param_encodings": []}"#;
        assert_eq!(errors_of(text)[0].kind, Kind::DuplicateEntry);
    }

    #[test]
    fn unknown_fields_warn_with_a_suggestion() {
        let text = r#"{"activation_encodings": {"a": [{"bitwdith": 8, "bitwidth": 8}]}, "param_encodings": {}}"#;
        let o = parse_overrides(text).unwrap();
        let w = &o.source.warnings[0];
        assert_eq!(w.kind, Kind::UnknownField);
        assert_eq!(w.help.as_deref(), Some("did you mean \"bitwidth\"?"));
    }

    /// Formatting changes do not change the value (spans differ, equality holds).
    #[test]
    fn reformatting_compares_equal() {
        let a =
            parse_overrides(r#"{"activation_encodings":{"x":[{"bitwidth":8,"min":-1,"max":1}]},"param_encodings":{}}"#)
                .unwrap();
        let b = parse_overrides("{\n  \"param_encodings\": {},\n  \"activation_encodings\": {\n    \"x\": [ { \"max\": 1.0, \"min\": -1, \"bitwidth\": 8 } ]\n  }\n}\n").unwrap();
        assert_ne!(a.spans_of(Section::Activation, "x"), b.spans_of(Section::Activation, "x"));
        assert_eq!(a, b);
        let c = parse_overrides(
            r#"{"activation_encodings":{"x":[{"bitwidth":16,"min":-1,"max":1}]},"param_encodings":{}}"#,
        )
        .unwrap();
        assert_ne!(a, c);
    }
}
