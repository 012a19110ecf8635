//! AIMET encodings files: the overrides a user gives (`[quantization] overrides`) and the
//! `encodings.json` qairt writes.
//!
//! Two on-disk forms are read ([`parse_overrides`]):
//! - the dict form of AIMET 0.4/0.5/0.6.x and of the SDK guide: `activation_encodings` and
//!   `param_encodings` map a tensor name to a list of encodings (one = per tensor, N = per
//!   output channel), each `{bitwidth, min, max, scale, offset, is_symmetric: "True"|"False",
//!   dtype: "int"|"float"}`;
//! - the list form of AIMET 2 (`"version": "1.0.0"`): lists of `{name, dtype: "INT"|"FLOAT",
//!   enc_type, bw, is_sym, scale: [..], offset: [..]}`;
//! - the QuantizeLinear form (`"version": "2.0.0"`, what aimet-onnx 2.x exports by default):
//!   one list `encodings` of `{name, output_dtype, y_scale, y_zero_point, axis, block_size}`,
//!   each field an input or attribute of ONNX `QuantizeLinear` (`y = saturate(round(x /
//!   y_scale) + y_zero_point)`). It has no activation/parameter sections: those entries are
//!   kept in [`Overrides::encodings`] until the model places them ([`place_sections`]). The
//!   grid is QNN's: an unsigned `output_dtype` has `offset = -y_zero_point`; a signed one
//!   counts from `-2^(bw-1)`, so `offset = -y_zero_point - 2^(bw-1)` (`int8` with zero point 0
//!   is the symmetric `offset = -128`).
//!
//! Every form becomes one canonical [`Overrides`] value. Where every entry and every field came from
//! in the text is kept apart (in [`OverrideSource`]) and does not take part in equality, so a
//! re-indented file compares equal and nothing downstream re-runs.
//!
//! Decisions where the vendor docs disagree with themselves (digest §5.2, §11.3):
//! - `scale` and `offset` given with `offset <= 0`: used as given (AIMET/QNN sign), like the
//!   SDK ("if they are provided they will be used"); `min`/`max` are then derived from them,
//!   and a `min`/`max` that disagrees by more than half a step draws a warning.
//! - `offset > 0`: the legacy positive zero-point of two examples in the guide. Accepted with a
//!   warning; when `min` and `max` are present the encoding is re-derived from them (the guide's
//!   own `offset: 127` example has `min / scale = -128`, so the sign flip alone would be wrong),
//!   otherwise the offset is negated.
//! - only `min`/`max` given: scale and offset are computed with the SDK's rules
//!   ([`crate::quant::math`]), symmetric when `is_symmetric` is true.
//! - only `bitwidth` (and `dtype: "int"`): the guide's mixed-precision form; the range comes
//!   from calibration at that bitwidth.
//! - per-channel entries must be symmetric with `offset == -2^(bw-1)` (SDK requirement).
//! - JSON is strict (no comments, no trailing commas), as `qairt-converter` (Python `json`)
//!   reads it: a file qairt accepts is a file the SDK accepts.

mod blocks;
mod check;
mod compare;
mod folds;
mod format;
mod parse;
mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::quant::encoding::Encoding;

pub use blocks::{BlockEncoding, Lpbq};
pub use check::{
    ResolvedOverrides, block_axis, channel_axis, check_overrides, place_sections, resolve_overrides, scale_shape,
};
pub use compare::{Difference, FieldValue, compare_overrides};
pub use folds::carry_through_folds;
pub use format::{AimetVersion, FormatError, write_overrides_json};
pub use parse::parse_overrides;
pub use write::write_encodings_json;

/// A byte range of the overrides text (`offset` from the start, `len` bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

impl Span {
    pub fn new(offset: usize, len: usize) -> Span {
        Span { offset, len }
    }

    /// 1-based line and column (in characters) of the span's start within `text`.
    pub fn line_column(&self, text: &str) -> (usize, usize) {
        let end = self.offset.min(text.len());
        let before = text.get(..end).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }
}

/// Which section of the file an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Section {
    /// `activation_encodings`: graph inputs and op outputs.
    Activation,
    /// `param_encodings`: weights, biases and other constants.
    Param,
    /// `encodings` (version 2.0.0): either kind; the model says which
    /// ([`place_sections`]).
    Encodings,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Activation => "activation_encodings",
            Section::Param => "param_encodings",
            Section::Encodings => "encodings",
        }
    }
}

/// What an override says about one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OverrideEncoding {
    /// `dtype: float`: kept in floating point at this bitwidth (16 or 32).
    Float { bitwidth: u32 },
    /// Integer at this bitwidth, but no range given: the range comes from calibration.
    /// `symmetric` is `is_symmetric` when the entry had it.
    Calibrated { bitwidth: u32, symmetric: Option<bool> },
    /// Complete integer encodings: one = per tensor, several = one per output channel.
    Int(Vec<Encoding>),
    /// `PER_BLOCK`/`LPBQ`: a weight's encodings per block of input channels, per output
    /// channel ([`BlockEncoding`]).
    PerBlock(BlockEncoding),
}

/// The canonical content of an overrides file, plus (outside equality) where it came from.
///
/// `PartialEq` compares `version`, `activations`, `params` and `excluded_layers` only; `source`
/// (spans and warnings) is ignored, and skipped by serde, so that the serialized bytes are a
/// canonical key of the meaning.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Overrides {
    /// The file's `version`, if any (`"0.6.1"`, `"1.0.0"`, ...).
    pub version: Option<String>,
    /// `activation_encodings`, by tensor name as written in the file.
    pub activations: BTreeMap<String, OverrideEncoding>,
    /// `param_encodings`, by tensor name as written in the file.
    pub params: BTreeMap<String, OverrideEncoding>,
    /// A 2.0.0 file's `encodings`, by tensor name, before the model sorts them into
    /// activations and parameters ([`place_sections`]).
    pub encodings: BTreeMap<String, OverrideEncoding>,
    /// The `axis` a 2.0.0 entry gives (per-channel: its channel axis; per-block: its block
    /// axis), by tensor name: checked against the model's own axis for that tensor.
    pub axes: BTreeMap<String, usize>,
    /// The shape of a per-block entry's scale tensor, by tensor name, as the 2.0.0 form nests
    /// `y_scale` (`[out, in / block_size, 1, 1]` for a Conv weight): what a 2.0.0 file gives
    /// and [`place_sections`] takes from the model otherwise, to write the entry back.
    pub scale_shapes: BTreeMap<String, Vec<usize>>,
    /// AIMET's `excluded_layers` (module names); kept for provenance, not used.
    pub excluded_layers: Vec<String>,
    #[serde(skip)]
    pub source: OverrideSource,
}

impl PartialEq for Overrides {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
            && self.activations == other.activations
            && self.params == other.params
            && self.encodings == other.encodings
            && self.axes == other.axes
            && self.scale_shapes == other.scale_shapes
            && self.excluded_layers == other.excluded_layers
    }
}

impl Overrides {
    pub fn section(&self, section: Section) -> &BTreeMap<String, OverrideEncoding> {
        match section {
            Section::Activation => &self.activations,
            Section::Param => &self.params,
            Section::Encodings => &self.encodings,
        }
    }

    pub fn section_mut(&mut self, section: Section) -> &mut BTreeMap<String, OverrideEncoding> {
        match section {
            Section::Activation => &mut self.activations,
            Section::Param => &mut self.params,
            Section::Encodings => &mut self.encodings,
        }
    }

    /// Every entry, activations first, then parameters, then a 2.0.0 file's unsorted
    /// `encodings`, each section in name order.
    pub fn entries(&self) -> impl Iterator<Item = (Section, &str, &OverrideEncoding)> {
        [Section::Activation, Section::Param, Section::Encodings]
            .into_iter()
            .flat_map(move |section| self.section(section).iter().map(move |(n, e)| (section, n.as_str(), e)))
    }

    /// Every entry by tensor name, whatever its section: what two forms of one export agree on.
    pub fn by_name(&self) -> BTreeMap<&str, &OverrideEncoding> {
        self.entries().map(|(_, name, encoding)| (name, encoding)).collect()
    }

    /// Where entry `name` of `section` is in the text (the whole file when unknown, e.g. for
    /// an `Overrides` built in code).
    pub fn spans_of(&self, section: Section, name: &str) -> EntrySpans {
        self.source.entries.get(&(section, name.to_string())).cloned().unwrap_or(EntrySpans {
            name: self.source.root,
            entry: self.source.root,
            ..Default::default()
        })
    }
}

/// Source locations and warnings of a parsed file.
#[derive(Clone, Debug, Default)]
pub struct OverrideSource {
    /// The whole JSON document.
    pub root: Span,
    pub entries: BTreeMap<(Section, String), EntrySpans>,
    /// Problems that did not stop parsing (legacy positive offsets, unknown fields, ...).
    pub warnings: Vec<OverrideError>,
}

/// Where one entry and its fields are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntrySpans {
    /// The tensor name: the key (dict form) or the `"name"` value (list form).
    pub name: Span,
    /// The whole entry: the list of encodings (dict form) or the entry object (list form).
    pub entry: Span,
    /// `(element, field) -> value span`. Dict form: element `i` is the i-th object of the list.
    /// List form: array fields (`scale`, `offset`, `min`, `max`) give one span per array item
    /// (element = item index) plus the whole array under `(0, "scale[]")` etc.; scalar fields
    /// (`bw`, `dtype`, `enc_type`, `is_sym`, `name`) are element 0.
    pub fields: BTreeMap<(usize, String), Span>,
}

impl EntrySpans {
    pub fn field(&self, element: usize, field: &str) -> Option<Span> {
        self.fields.get(&(element, field.to_string())).copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of problem an [`OverrideError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OverrideErrorKind {
    /// Not valid JSON.
    Syntax,
    /// A value of the wrong JSON type.
    WrongType,
    MissingField,
    /// A field this reader does not know (a warning: it is ignored).
    UnknownField,
    /// NaN or infinite numbers, non-positive scale, non-integer offset, unknown dtype, ...
    InvalidValue,
    InvalidBitwidth,
    MinGreaterThanMax,
    /// `offset > 0`: the legacy positive zero-point form (a warning).
    PositiveOffset,
    /// `min`/`max` disagree with `scale`/`offset` (a warning).
    InconsistentRange,
    DuplicateEntry,
    UnsupportedVersion,
    /// The graph has no tensor of that name.
    UnknownTensor,
    /// Two graph tensors match the name once sanitized.
    AmbiguousName,
    /// A parameter under `activation_encodings` or an activation under `param_encodings`.
    WrongSection,
    /// The tensor is not a float tensor.
    NotFloat,
    /// Per-channel entry count differs from the tensor's output channels.
    ChannelCount,
    /// A 2.0.0 entry's `axis` is not the tensor's output-channel axis in the model.
    Axis,
    /// An entry moved, rescaled or dropped because its BatchNorm was folded (a warning).
    Folded,
    /// Per-channel encodings that are not symmetric with `offset = -2^(bw-1)`.
    PerChannelNotSymmetric,
    /// Per-channel or per-block encodings on an activation, and other forms qairt does not take.
    Unsupported,
    /// A per-block entry whose block size or block count the weight's shape does not allow.
    BlockSize,
}

impl OverrideErrorKind {
    /// Stable diagnostic code.
    pub fn code(self) -> &'static str {
        match self {
            OverrideErrorKind::Syntax => "qairt::overrides::syntax",
            OverrideErrorKind::WrongType => "qairt::overrides::wrong_type",
            OverrideErrorKind::MissingField => "qairt::overrides::missing_field",
            OverrideErrorKind::UnknownField => "qairt::overrides::unknown_field",
            OverrideErrorKind::InvalidValue => "qairt::overrides::invalid_value",
            OverrideErrorKind::InvalidBitwidth => "qairt::overrides::invalid_bitwidth",
            OverrideErrorKind::MinGreaterThanMax => "qairt::overrides::min_greater_than_max",
            OverrideErrorKind::PositiveOffset => "qairt::overrides::positive_offset",
            OverrideErrorKind::InconsistentRange => "qairt::overrides::inconsistent_range",
            OverrideErrorKind::DuplicateEntry => "qairt::overrides::duplicate_entry",
            OverrideErrorKind::UnsupportedVersion => "qairt::overrides::unsupported_version",
            OverrideErrorKind::UnknownTensor => "qairt::overrides::unknown_tensor",
            OverrideErrorKind::AmbiguousName => "qairt::overrides::ambiguous_name",
            OverrideErrorKind::WrongSection => "qairt::overrides::wrong_section",
            OverrideErrorKind::NotFloat => "qairt::overrides::not_float",
            OverrideErrorKind::ChannelCount => "qairt::overrides::channel_count",
            OverrideErrorKind::PerChannelNotSymmetric => "qairt::overrides::per_channel_not_symmetric",
            OverrideErrorKind::Unsupported => "qairt::overrides::unsupported",
            OverrideErrorKind::Axis => "qairt::overrides::axis",
            OverrideErrorKind::Folded => "qairt::overrides::batchnorm_folded",
            OverrideErrorKind::BlockSize => "qairt::overrides::block_size",
        }
    }
}

/// A problem in an overrides file, located in its text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OverrideError {
    pub kind: OverrideErrorKind,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub help: Option<String>,
}

impl OverrideError {
    pub fn error(kind: OverrideErrorKind, span: Span, message: impl Into<String>) -> Self {
        OverrideError { kind, severity: Severity::Error, message: message.into(), span, help: None }
    }

    pub fn warning(kind: OverrideErrorKind, span: Span, message: impl Into<String>) -> Self {
        OverrideError { severity: Severity::Warning, ..OverrideError::error(kind, span, message) }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// A short label for the span (what a diagnostic prints under the underlined text).
    pub fn label(&self) -> &'static str {
        match self.kind {
            OverrideErrorKind::Syntax => "invalid JSON here",
            OverrideErrorKind::WrongType => "wrong type",
            OverrideErrorKind::MissingField => "missing field",
            OverrideErrorKind::UnknownField => "unknown field",
            OverrideErrorKind::InvalidValue => "invalid value",
            OverrideErrorKind::InvalidBitwidth => "unsupported bitwidth",
            OverrideErrorKind::MinGreaterThanMax => "min is greater than max",
            OverrideErrorKind::PositiveOffset => "positive offset",
            OverrideErrorKind::InconsistentRange => "inconsistent with scale/offset",
            OverrideErrorKind::DuplicateEntry => "duplicate",
            OverrideErrorKind::UnsupportedVersion => "unsupported version",
            OverrideErrorKind::UnknownTensor => "no such tensor in the model",
            OverrideErrorKind::AmbiguousName => "ambiguous name",
            OverrideErrorKind::WrongSection => "wrong section",
            OverrideErrorKind::NotFloat => "not a float tensor",
            OverrideErrorKind::ChannelCount => "wrong number of channels",
            OverrideErrorKind::PerChannelNotSymmetric => "not symmetric",
            OverrideErrorKind::Unsupported => "not supported",
            OverrideErrorKind::Axis => "wrong axis",
            OverrideErrorKind::Folded => "batchnorm folded",
            OverrideErrorKind::BlockSize => "blocks do not fit the weight",
        }
    }
}

/// The SDK's name sanitization: every character other than an ASCII letter, digit or `_`
/// becomes `_`, and a leading digit gets a `_` prefix (`conv1.weight` -> `conv1_weight`,
/// `130` -> `_130`, `/fc1/Gemm_output_0` -> `_fc1_Gemm_output_0`).
pub fn sanitize_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same AIMET 2.42 export of the digits example in both file forms
    /// (`examples/digits/aimet/`) reads to identical encodings, without warnings.
    #[test]
    fn both_forms_of_a_real_aimet_export_agree() {
        let v0 = parse_overrides(include_str!("../../../examples/digits/aimet/encodings_v0.6.1.json")).unwrap();
        let v1 = parse_overrides(include_str!("../../../examples/digits/aimet/encodings_v1.0.0.json")).unwrap();
        assert!(
            v0.source.warnings.is_empty() && v1.source.warnings.is_empty(),
            "{:?} {:?}",
            v0.source.warnings,
            v1.source.warnings
        );
        assert_eq!(v0.activations, v1.activations);
        assert_eq!(v0.params, v1.params);
        let names: Vec<&str> = v1.activations.keys().map(String::as_str).collect();
        assert_eq!(names, ["/relu1/Relu_output_0", "/relu2/Relu_output_0", "/relu3/Relu_output_0", "input", "logits"]);
        let OverrideEncoding::Int(logits) = &v1.activations["logits"] else { panic!("logits is int") };
        assert_eq!(logits[0].offset, -159);
        let OverrideEncoding::Int(conv1) = &v1.params["conv1.weight"] else { panic!("conv1.weight is int") };
        assert_eq!(conv1.len(), 8);
        assert!(conv1.iter().all(|e| e.offset == -128 && e.symmetric && e.bitwidth == 8));
    }

    /// AIMET's 2.0.0 export of the same QuantSim holds the same encodings as its 1.0.0 export
    /// for every tensor both list, and besides them the int32 biases (`scale = input scale ×
    /// weight scale`, symmetric) and the max-pool and flatten outputs, on relu2's grid (data
    /// movement keeps the grid). It has no sections until the model places it.
    #[test]
    fn aimets_2_0_0_export_agrees_with_its_1_0_0_export() {
        let v1 = parse_overrides(include_str!("../../../examples/digits/aimet/encodings_v1.0.0.json")).unwrap();
        let v2 = parse_overrides(include_str!("../../../examples/digits/aimet/encodings_v2.0.0.json")).unwrap();
        assert!(v2.activations.is_empty() && v2.params.is_empty() && v2.encodings.len() == 15);
        let (old, new) = (v1.by_name(), v2.by_name());
        for (name, encoding) in &old {
            assert_eq!(new.get(name), Some(encoding), "{name}");
        }
        let extra: Vec<&str> = new.keys().filter(|n| !old.contains_key(*n)).copied().collect();
        assert_eq!(
            extra,
            ["/flatten/Flatten_output_0", "/pool/MaxPool_output_0", "conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"]
        );
        for bias in ["conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"] {
            let OverrideEncoding::Int(channels) = new[bias] else { panic!("{bias} is int") };
            assert!(channels.iter().all(|e| e.bitwidth == 32 && e.symmetric && e.offset == i32::MIN), "{bias}");
        }
        let relu2 = new["/relu2/Relu_output_0"];
        assert_eq!((new["/pool/MaxPool_output_0"], new["/flatten/Flatten_output_0"]), (relu2, relu2));
        assert_eq!(v2.axes.get("fc1.weight"), Some(&0));
    }

    /// The example README's observation of AIMET's min-max rule: logits data [-30.0394,
    /// 18.1717] -> min -30.0611, max 18.1501, offset -159 (printed to 4 decimals).
    #[test]
    fn asymmetric_rule_matches_aimets_logits_encoding() {
        let e = Encoding::asymmetric(-30.0394, 18.1717, 8);
        assert_eq!(e.offset, -159);
        assert!((e.min - -30.0611).abs() < 1e-4 && (e.max - 18.1501).abs() < 1e-4, "{e:?}");
    }

    #[test]
    fn sanitizes_like_the_sdk() {
        assert_eq!(sanitize_name("layer3.1.conv1"), "layer3_1_conv1");
        assert_eq!(sanitize_name("130"), "_130");
        assert_eq!(sanitize_name("input.1"), "input_1");
        assert_eq!(sanitize_name("/fc1/Gemm_output_0"), "_fc1_Gemm_output_0");
        assert_eq!(sanitize_name("conv1_weight"), "conv1_weight");
    }

    #[test]
    fn span_line_and_column() {
        let text = "{\n  \"a\": 1,\n  \"bé\": 2\n}";
        let at = text.find('2').unwrap();
        assert_eq!(Span::new(at, 1).line_column(text), (3, 9));
        assert_eq!(Span::new(0, 1).line_column(text), (1, 1));
    }
}
