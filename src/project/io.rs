//! `[io]` in `qairt.toml`: the form of the raw files on either side of the model, with the
//! meaning of the SDK's custom I/O file (the Converters documentation, "Custom I/O"): per
//! input, the layout, element type and quantization of the files; per output, the layout and
//! element type they are written in.
//!
//! Only what can be checked without the model is checked here (names of layouts and types,
//! which layouts convert into which, scale and offset); the engine checks the rest against
//! the model's tensors (names, ranks, element types) and points back at these spans.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The layouts of the SDK's layout vocabulary (the Converters documentation, "Layouts").
/// Letters: N batch, C channels, D depth, H height, W width, F feature, T time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Layout {
    Ncdhw,
    Ndhwc,
    Nchw,
    Nhwc,
    Ncf,
    Nfc,
    Ntf,
    Tnf,
    Nf,
    Nc,
    F,
    Nontrivial,
}

impl Layout {
    pub const ALL: [Layout; 12] = [
        Layout::Ncdhw,
        Layout::Ndhwc,
        Layout::Nchw,
        Layout::Nhwc,
        Layout::Ncf,
        Layout::Nfc,
        Layout::Ntf,
        Layout::Tnf,
        Layout::Nf,
        Layout::Nc,
        Layout::F,
        Layout::Nontrivial,
    ];

    pub const NAMES: &'static [&'static str] =
        &["NCDHW", "NDHWC", "NCHW", "NHWC", "NCF", "NFC", "NTF", "TNF", "NF", "NC", "F", "NONTRIVIAL"];

    pub fn name(self) -> &'static str {
        Layout::NAMES[Layout::ALL.iter().position(|&l| l == self).unwrap_or(0)]
    }

    pub fn parse(text: &str) -> Option<Layout> {
        Layout::NAMES.iter().position(|&n| n == text).map(|i| Layout::ALL[i])
    }

    /// One letter per axis; `None` for NONTRIVIAL, which says nothing about its axes.
    pub fn axes(self) -> Option<&'static str> {
        match self {
            Layout::Nontrivial => None,
            other => Some(other.name()),
        }
    }

    /// The other layout of its pair: the only conversions the SDK's custom I/O supports
    /// (NCDHW<->NDHWC, NCHW<->NHWC, NCF<->NFC, NTF<->TNF).
    pub fn partner(self) -> Option<Layout> {
        Some(match self {
            Layout::Ncdhw => Layout::Ndhwc,
            Layout::Ndhwc => Layout::Ncdhw,
            Layout::Nchw => Layout::Nhwc,
            Layout::Nhwc => Layout::Nchw,
            Layout::Ncf => Layout::Nfc,
            Layout::Nfc => Layout::Ncf,
            Layout::Ntf => Layout::Tnf,
            Layout::Tnf => Layout::Ntf,
            Layout::Nf | Layout::Nc | Layout::F | Layout::Nontrivial => return None,
        })
    }

    /// The layout an ONNX model's tensor has when the project does not say: channels first
    /// for images, volumes and 1-D convolutions, the convention of ONNX's Conv. `None` for
    /// time series, whose order (ONNX's LSTM takes both) only the project knows.
    pub fn onnx_default_for(file: Layout) -> Option<Layout> {
        match file {
            Layout::Ncdhw | Layout::Ndhwc => Some(Layout::Ncdhw),
            Layout::Nchw | Layout::Nhwc => Some(Layout::Nchw),
            Layout::Ncf | Layout::Nfc => Some(Layout::Ncf),
            Layout::Ntf | Layout::Tnf => None,
            same => Some(same),
        }
    }
}

pub const LAYOUT_PAIRS_HELP: &str = "the supported conversions are NCDHW<->NDHWC, NCHW<->NHWC, NCF<->NFC and NTF<->TNF \
     (the SDK's custom I/O); any other layout must be the model's own";

/// The element type of an input's raw files (the custom I/O limitations: float32, float16,
/// uint8, int8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InputDtype {
    Float32,
    Float16,
    Uint8,
    Int8,
}

impl InputDtype {
    pub const ALL: [InputDtype; 4] = [InputDtype::Float32, InputDtype::Float16, InputDtype::Uint8, InputDtype::Int8];
    pub const NAMES: &'static [&'static str] = &["float32", "float16", "uint8", "int8"];

    pub fn name(self) -> &'static str {
        InputDtype::NAMES[self as usize]
    }

    pub fn parse(text: &str) -> Option<InputDtype> {
        InputDtype::NAMES.iter().position(|&n| n == text).map(|i| InputDtype::ALL[i])
    }

    /// Whether files of this type hold quantized codes (which need a scale and an offset).
    pub fn is_quantized(self) -> bool {
        matches!(self, InputDtype::Uint8 | InputDtype::Int8)
    }
}

/// The element type an output's raw files are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutputDtype {
    /// float32, dequantized on a quantized target (the SDK's default form).
    Float32,
    Float16,
    /// Codes on the grid of the `scale` and `offset` given with it.
    Uint8,
    Int8,
    /// The target's own representation of the output: the codes of its encoding on a
    /// quantized target (uint8 up to 8 bits, uint16 up to 16, uint32 beyond), its own
    /// element type otherwise (the SDK's `--use_native_output_files`).
    Native,
}

impl OutputDtype {
    pub const ALL: [OutputDtype; 5] =
        [OutputDtype::Float32, OutputDtype::Float16, OutputDtype::Uint8, OutputDtype::Int8, OutputDtype::Native];
    pub const NAMES: &'static [&'static str] = &["float32", "float16", "uint8", "int8", "native"];

    pub fn name(self) -> &'static str {
        OutputDtype::NAMES[self as usize]
    }

    pub fn parse(text: &str) -> Option<OutputDtype> {
        OutputDtype::NAMES.iter().position(|&n| n == text).map(|i| OutputDtype::ALL[i])
    }
}

/// The grid of quantized files: `x = (q + offset) * scale`, the SDK's and AIMET's convention
/// (for uint8 `offset <= 0`; the SDK guide's positive zero point `z` is `offset = -z`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileGrid {
    pub scale: f32,
    pub offset: i32,
}

/// How the raw files of one model input are written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputFormat {
    /// The files' layout; `None`: the model's own.
    pub layout: Option<Layout>,
    /// The model's layout, when it cannot be inferred (or differs from the ONNX default).
    pub model_layout: Option<Layout>,
    /// `None`: the input's own element type.
    pub dtype: Option<InputDtype>,
    /// Given with uint8 and int8 files: how their codes map to the model's values.
    pub grid: Option<FileGrid>,
}

/// How the raw files of one model output are written under `out/<target>/outputs/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputFormat {
    pub layout: Option<Layout>,
    pub model_layout: Option<Layout>,
    /// `None`: as `[io] native_outputs` says.
    pub dtype: Option<OutputDtype>,
    pub grid: Option<FileGrid>,
}

/// Where an `[io.inputs."<name>"]` or `[io.outputs."<name>"]` table and its keys are in
/// `qairt.toml` (byte start, length), for diagnostics found against the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntrySpans {
    pub name: (usize, usize),
    pub layout: Option<(usize, usize)>,
    pub dtype: Option<(usize, usize)>,
}

/// `[io]`: the files' form per model input and output. Spans never enter a stage key:
/// a comment or a moved table rebuilds nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IoConfig {
    /// `qairt.toml`, which the spans point into.
    pub file: PathBuf,
    pub inputs: BTreeMap<String, InputFormat>,
    pub outputs: BTreeMap<String, OutputFormat>,
    /// `[io] native_outputs`: every output without a `dtype` of its own is written native.
    pub native_outputs: bool,
    pub spans: BTreeMap<(Side, String), EntrySpans>,
}

/// Which side of the model an `[io]` entry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Input,
    Output,
}

impl IoConfig {
    /// The dtype an output's files are written in: its own `dtype`, else native under
    /// `[io] native_outputs`; `None` leaves it to `[verify] output_files`.
    pub fn output_dtype(&self, name: &str) -> Option<OutputDtype> {
        self.outputs.get(name).and_then(|o| o.dtype).or(self.native_outputs.then_some(OutputDtype::Native))
    }

    /// Whether `[io]` says nothing about the output files (they are then written as before
    /// the table existed, as `[verify] output_files` says).
    pub fn outputs_are_default(&self) -> bool {
        !self.native_outputs && self.outputs.is_empty()
    }

    pub fn spans(&self, side: Side, name: &str) -> EntrySpans {
        self.spans.get(&(side, name.to_string())).cloned().unwrap_or_default()
    }
}

// ---------------------------------------------------------------- reading the tables

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIo {
    native_outputs: Option<bool>,
    #[serde(default)]
    inputs: BTreeMap<Spanned<String>, Spanned<RawEntry>>,
    #[serde(default)]
    outputs: BTreeMap<Spanned<String>, Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    layout: Option<Spanned<String>>,
    model_layout: Option<Spanned<String>>,
    dtype: Option<Spanned<String>>,
    scale: Option<Spanned<f64>>,
    offset: Option<Spanned<i64>>,
}

/// What reading `[io]` reports: a message and help at a span of `qairt.toml`.
pub(super) struct Problem {
    pub span: (usize, usize),
    pub message: String,
    pub help: String,
}

fn span_of<T>(value: &Spanned<T>) -> (usize, usize) {
    (value.span().start, value.span().len())
}

fn problem<T>(at: &Spanned<T>, message: impl Into<String>, help: impl Into<String>) -> Problem {
    Problem { span: span_of(at), message: message.into(), help: help.into() }
}

/// A name from `names`, or a problem with the closest one as a suggestion.
fn named<T: Copy>(
    value: &Spanned<String>,
    what: &str,
    names: &[&str],
    parse: fn(&str) -> Option<T>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let parsed = parse(value.get_ref());
    if parsed.is_none() {
        // Layout names are upper case in the SDK: "nhwc" is a slip, not a typo.
        let upper = value.get_ref().to_ascii_uppercase();
        let near = if names.contains(&upper.as_str()) {
            Some(names[names.iter().position(|&n| n == upper).unwrap_or(0)])
        } else {
            crate::diag::closest(value.get_ref(), names.iter().copied())
        };
        let mut help = format!("allowed values: {}", names.join(", "));
        if let Some(near) = near {
            help = format!("did you mean \"{near}\"? ({help})");
        }
        problems.push(problem(value, format!("unknown {what} \"{}\"", value.get_ref()), help));
    }
    parsed
}

/// The layouts of one entry, checked: each a known name, and a pair the SDK converts.
fn layouts(raw: &RawEntry, problems: &mut Vec<Problem>) -> (Option<Layout>, Option<Layout>) {
    let layout = raw.layout.as_ref().and_then(|l| named(l, "layout", Layout::NAMES, Layout::parse, problems));
    let model = raw.model_layout.as_ref().and_then(|l| named(l, "layout", Layout::NAMES, Layout::parse, problems));
    if let (Some(file), Some(model), Some(at)) = (layout, model, raw.layout.as_ref())
        && file != model
        && file.partner() != Some(model)
    {
        problems.push(problem(
            at,
            format!("files in {} cannot feed a {} tensor", file.name(), model.name()),
            LAYOUT_PAIRS_HELP,
        ));
    }
    if let (Some(file), None, Some(at)) = (layout, model, raw.layout.as_ref())
        && Layout::onnx_default_for(file).is_none()
    {
        problems.push(problem(
            at,
            format!("the model's layout of a {} input cannot be inferred", file.name()),
            "time series come as NTF or TNF (ONNX's LSTM takes both): add model_layout = \"TNF\" or \"NTF\"",
        ));
    }
    (layout, model)
}

/// `scale` and `offset`: both or neither, a positive finite scale, an offset on the grid.
fn grid(
    raw: &RawEntry,
    entry: &Spanned<RawEntry>,
    quantized: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Option<FileGrid> {
    let (scale, offset) = match (&raw.scale, &raw.offset) {
        (None, None) => return None,
        (Some(scale), Some(offset)) => (scale, offset),
        (Some(scale), None) => {
            problems.push(problem(scale, "scale is given without offset", "give both: x = (q + offset) * scale"));
            return None;
        }
        (None, Some(offset)) => {
            problems.push(problem(offset, "offset is given without scale", "give both: x = (q + offset) * scale"));
            return None;
        }
    };
    let Some(dtype) = quantized else {
        let at = raw.dtype.as_ref().map(span_of).unwrap_or(span_of(entry));
        problems.push(Problem {
            span: at,
            message: "scale and offset are given for files that hold no codes".into(),
            help: "scale and offset describe uint8 and int8 files: add dtype = \"uint8\" (or \"int8\"), or remove them"
                .into(),
        });
        return None;
    };
    let value = *scale.get_ref();
    if !(value.is_finite() && value > 0.0 && (value as f32) > 0.0 && (value as f32).is_finite()) {
        problems.push(problem(
            scale,
            format!("scale {value} is not a positive float32"),
            "e.g. scale = 0.00392156862 (1/255)",
        ));
        return None;
    }
    let (low, high) = if dtype == "uint8" { (-255, 0) } else { (-127, 128) };
    let o = *offset.get_ref();
    if !(low..=high).contains(&o) {
        let help = if dtype == "uint8" && o > 0 {
            format!("qairt's offsets are <= 0, as in x = (q + offset) * scale: a zero point of {o} is offset = {}", -o)
        } else {
            format!("for {dtype} files the offset is in {low}..={high} (x = (q + offset) * scale)")
        };
        problems.push(problem(offset, format!("offset {o} is off the {dtype} grid"), help));
        return None;
    }
    Some(FileGrid { scale: value as f32, offset: o as i32 })
}

/// Resolves `[io]`; `file` is `qairt.toml`.
pub(super) fn read_io(raw: Option<&RawIo>, file: PathBuf, problems: &mut Vec<Problem>) -> IoConfig {
    let mut io = IoConfig { file, ..IoConfig::default() };
    let Some(raw) = raw else { return io };
    io.native_outputs = raw.native_outputs.unwrap_or(false);
    let spans = |name: &Spanned<String>, e: &RawEntry| EntrySpans {
        name: span_of(name),
        layout: e.layout.as_ref().or(e.model_layout.as_ref()).map(span_of),
        dtype: e.dtype.as_ref().map(span_of),
    };
    for (name, entry) in &raw.inputs {
        let e = entry.get_ref();
        let (layout, model_layout) = layouts(e, problems);
        let dtype =
            e.dtype.as_ref().and_then(|d| named(d, "input file type", InputDtype::NAMES, InputDtype::parse, problems));
        let quantized = dtype.filter(|d| d.is_quantized()).map(InputDtype::name);
        let grid = grid(e, entry, quantized, problems);
        io.spans.insert((Side::Input, name.get_ref().clone()), spans(name, e));
        io.inputs.insert(name.get_ref().clone(), InputFormat { layout, model_layout, dtype, grid });
    }
    for (name, entry) in &raw.outputs {
        let e = entry.get_ref();
        let (layout, model_layout) = layouts(e, problems);
        let dtype = e
            .dtype
            .as_ref()
            .and_then(|d| named(d, "output file type", OutputDtype::NAMES, OutputDtype::parse, problems));
        let quantized = match dtype {
            Some(OutputDtype::Uint8) => Some("uint8"),
            Some(OutputDtype::Int8) => Some("int8"),
            _ => None,
        };
        let grid = grid(e, entry, quantized, problems);
        if let (Some(codes), None, Some(at)) = (quantized, grid, e.dtype.as_ref())
            && e.scale.is_none()
            && e.offset.is_none()
        {
            problems.push(problem(
                at,
                format!("{codes} output files need a scale and an offset"),
                "add scale and offset (x = (q + offset) * scale), or write dtype = \"native\" for the codes of \
                 the target's own encoding",
            ));
        }
        io.spans.insert((Side::Output, name.get_ref().clone()), spans(name, e));
        io.outputs.insert(name.get_ref().clone(), OutputFormat { layout, model_layout, dtype, grid });
    }
    io
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Diag;
    use std::path::Path;

    const BASE: &str = "[project]\nname = \"p\"\n[model]\npath = \"m.onnx\"\n[[target]]\nname = \"cpu\"\nbackend = \"cpu\"\n\
                        [verify]\ninput_list = \"l.txt\"\n";

    fn parse(io: &str) -> Result<IoConfig, (String, Vec<Diag>)> {
        let text = format!("{BASE}{io}");
        super::super::parse_config(Path::new("/p/qairt.toml"), &text).map(|c| c.io).map_err(|d| (text, d))
    }

    /// The first diagnostic's message, help and the text its span covers.
    fn refused(io: &str) -> (String, String, String) {
        let (text, diags) = parse(io).expect_err(io);
        let d = &diags[0];
        let (start, len) = d.span.expect("a span");
        (d.message.clone(), d.help.clone().unwrap_or_default(), text[start..start + len].to_string())
    }

    #[test]
    fn inputs_and_outputs_read_by_name_with_their_form() {
        let io = parse(
            "[io]\nnative_outputs = true\n[io.inputs.\"/in:0\"]\nlayout = \"NHWC\"\ndtype = \"uint8\"\n\
             scale = 0.0625\noffset = 0\n[io.outputs.logits]\ndtype = \"float16\"\nlayout = \"NFC\"\n\
             model_layout = \"NCF\"\n",
        )
        .unwrap();
        let input = &io.inputs["/in:0"];
        assert_eq!(input.layout, Some(Layout::Nhwc));
        assert_eq!(input.dtype, Some(InputDtype::Uint8));
        assert_eq!(input.grid, Some(FileGrid { scale: 0.0625, offset: 0 }));
        assert_eq!(io.outputs["logits"].model_layout, Some(Layout::Ncf));
        assert_eq!(io.output_dtype("logits"), Some(OutputDtype::Float16));
        assert_eq!(io.output_dtype("other"), Some(OutputDtype::Native), "native_outputs");
        assert!(!io.outputs_are_default());
        let default = parse("").unwrap();
        assert!(default.outputs_are_default() && default.inputs.is_empty());
        assert_eq!(default.output_dtype("logits"), None);
    }

    #[test]
    fn layouts_are_checked_by_name_and_by_pair() {
        let (message, help, at) = refused("[io.inputs.x]\nlayout = \"nhwc\"\n");
        assert!(message.contains("unknown layout"), "{message}");
        assert!(help.starts_with("did you mean \"NHWC\""), "{help}");
        assert_eq!(at, "\"nhwc\"");
        let (message, help, at) = refused("[io.inputs.x]\nlayout = \"NHWC\"\nmodel_layout = \"NCF\"\n");
        assert!(message.contains("NHWC cannot feed a NCF"), "{message}");
        assert!(help.contains("NCHW<->NHWC"), "{help}");
        assert_eq!(at, "\"NHWC\"");
        let (message, help, _) = refused("[io.inputs.x]\nlayout = \"NTF\"\n");
        assert!(message.contains("cannot be inferred") && help.contains("model_layout"), "{message} {help}");
        assert!(parse("[io.inputs.x]\nlayout = \"NTF\"\nmodel_layout = \"TNF\"\n").is_ok());
    }

    #[test]
    fn scales_and_offsets_are_checked() {
        let (message, _, at) = refused("[io.inputs.x]\ndtype = \"uint8\"\nscale = 0.5\n");
        assert!(message.contains("without offset"), "{message}");
        assert_eq!(at, "0.5");
        let (message, help, at) = refused("[io.inputs.x]\ndtype = \"uint8\"\nscale = 0.5\noffset = 128\n");
        assert!(message.contains("off the uint8 grid") && help.contains("offset = -128"), "{message} {help}");
        assert_eq!(at, "128");
        let (message, _, _) = refused("[io.inputs.x]\ndtype = \"uint8\"\nscale = -1.0\noffset = 0\n");
        assert!(message.contains("not a positive float32"), "{message}");
        let (message, _, at) = refused("[io.inputs.x]\ndtype = \"float16\"\nscale = 1.0\noffset = 0\n");
        assert!(message.contains("hold no codes"), "{message}");
        assert_eq!(at, "\"float16\"");
        let (message, help, _) = refused("[io.outputs.y]\ndtype = \"uint8\"\n");
        assert!(message.contains("need a scale and an offset") && help.contains("native"), "{message} {help}");
        let (message, _, _) = refused("[io.inputs.x]\ndtype = \"uint16\"\n");
        assert!(message.contains("unknown input file type"), "{message}");
        let (_, diags) = parse("[io.inputs.x]\nlayot = \"NHWC\"\n").unwrap_err();
        assert!(diags[0].help.as_deref().unwrap().contains("did you mean `layout`"), "{:?}", diags[0]);
        assert!(parse("[io.inputs.x]\ndtype = \"int8\"\nscale = 0.5\noffset = 3\n").is_ok());
    }
}
