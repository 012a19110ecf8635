//! External golden dumps: lining up the tensors of another tool's dump (onnxruntime, AIMET,
//! the vendor's framework runner) with the graph tensors a comparison wants.
//!
//! Pure: the engine lists the golden directory and reads the files; this module decides the
//! layout ([`sample_dirs`]), which file holds which tensor ([`match_goldens`]), reads the
//! optional tensor-mapping JSON ([`parse_mapping`]) and decodes `.raw` bytes ([`decode_raw`]).
//!
//! Layout (accuracy-debugger digest §1.3): one `Result_<N>/` directory per input-list line
//! (N 0-based), each holding one headerless float32 little-endian `.raw` file per tensor; or a
//! flat directory of `.raw` files, meaning a single sample. A file is named either after the
//! tensor (`logits.raw`), with `/` made into sub-directories (`inception_3a/1x1/bn/sc` ->
//! `inception_3a/1x1/bn/sc.raw`), or with the SDK's sanitization
//! ([`sanitize_name`]: `InceptionV3/Conv2d_1a_3x3/Relu:0` -> `InceptionV3_Conv2d_1a_3x3_Relu_0.raw`).
//!
//! Matching order (digest §13.1 item 6), each stage only over the tensors and files still
//! unmatched: exact name -> sub-directory form -> sanitized name -> mapping file (whose golden
//! name is then looked up in the same three forms). When two tensors reach the same file in
//! one stage, neither gets it: the collision is reported and both go on to the next stage (a
//! mapping entry can settle it). A name match is final: a file of the wrong size is reported
//! in `wrong_size`, not replaced by a later stage's candidate.

use std::collections::{BTreeMap, BTreeSet};

use jsonc_parser::ast::Value;
use jsonc_parser::common::{Range, Ranged};
use jsonc_parser::{CollectOptions, ParseOptions, parse_to_ast};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::quant::aimet::{Span, sanitize_name};

/// The suffix of a golden tensor file; other files in a golden directory are ignored.
pub const RAW_SUFFIX: &str = ".raw";

/// A tensor mapping file: graph (inference) tensor name -> golden tensor name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TensorMapping {
    pub entries: BTreeMap<String, String>,
}

impl TensorMapping {
    /// The golden name given for the graph tensor `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(String::as_str)
    }
}

/// A problem in a tensor mapping file, with where it is (a byte range of the text).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct MappingError {
    pub span: Span,
    pub message: String,
    /// What was expected at `span`, for the diagnostic's help line.
    pub expected: String,
}

impl MappingError {
    fn new(span: Span, message: impl Into<String>, expected: impl Into<String>) -> MappingError {
        MappingError { span, message: message.into(), expected: expected.into() }
    }
}

const EXPECTED_MAPPING: &str =
    r#"a JSON object of graph tensor name -> golden tensor name, e.g. {"logits": "output_0"}"#;

/// Reads a tensor mapping file: strict JSON (no comments, no trailing commas), an object whose
/// values are non-empty strings, each key once. The first problem in the text is returned.
pub fn parse_mapping(text: &str) -> Result<TensorMapping, MappingError> {
    // serde_json is the strict judge of syntax (what Python's `json` accepts, as the SDK does).
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(syntax_error(text, &e));
    }
    let options =
        ParseOptions { allow_comments: false, allow_loose_object_property_names: false, allow_trailing_commas: false };
    let parsed = parse_to_ast(text, &CollectOptions::default(), &options)
        .map_err(|e| MappingError::new(span_of(e.range()), format!("invalid JSON: {}", e.kind()), EXPECTED_MAPPING))?;
    let Some(root) = parsed.value else {
        return Err(MappingError::new(Span::new(0, text.len()), "the tensor mapping file is empty", EXPECTED_MAPPING));
    };
    let Value::Object(object) = &root else {
        return Err(MappingError::new(
            span_of(root.range()),
            format!("the tensor mapping must be a JSON object, not {}", kind_of(&root)),
            EXPECTED_MAPPING,
        ));
    };
    let mut entries = BTreeMap::new();
    let mut first_seen: BTreeMap<String, Span> = BTreeMap::new();
    for prop in &object.properties {
        let key_span = span_of(prop.name.range());
        let key = prop.name.as_str().to_string();
        if let Some(first) = first_seen.get(&key) {
            let (line, column) = first.line_column(text);
            return Err(MappingError::new(
                key_span,
                format!("\"{key}\" is mapped twice (first at line {line}, column {column})"),
                "each graph tensor name once",
            ));
        }
        if key.is_empty() {
            return Err(MappingError::new(key_span, "an empty graph tensor name", "a graph tensor name"));
        }
        let golden = match &prop.value {
            Value::StringLit(s) if s.value.is_empty() => {
                return Err(MappingError::new(
                    span_of(s.range()),
                    format!("\"{key}\" maps to an empty golden name"),
                    "the name of the tensor in the golden dump",
                ));
            }
            Value::StringLit(s) => s.value.to_string(),
            other => {
                return Err(MappingError::new(
                    span_of(other.range()),
                    format!("\"{key}\" maps to {}, not a string", kind_of(other)),
                    "a string: the name of the tensor in the golden dump",
                ));
            }
        };
        first_seen.insert(key.clone(), key_span);
        entries.insert(key, golden);
    }
    Ok(TensorMapping { entries })
}

fn span_of(range: Range) -> Span {
    Span::new(range.start, range.end.saturating_sub(range.start))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::StringLit(_) => "a string",
        Value::NumberLit(_) => "a number",
        Value::BooleanLit(_) => "a boolean",
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::NullKeyword(_) => "null",
    }
}

/// serde_json reports a 1-based line and a column counted in bytes (0 when the error is at
/// the very start of a line); turned into a byte offset of `text`, one character long.
fn syntax_error(text: &str, e: &serde_json::Error) -> MappingError {
    let line_start: usize = text.split_inclusive('\n').take(e.line().saturating_sub(1)).map(str::len).sum();
    let mut offset = (line_start + e.column().saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let len = text.get(offset..).and_then(|rest| rest.chars().next()).map_or(0, char::len_utf8);
    let full = e.to_string();
    let message = full.split(" at line ").next().unwrap_or(&full).to_string();
    let message = if text.trim().is_empty() {
        "the tensor mapping file is empty".to_string()
    } else {
        format!("invalid JSON: {message}")
    };
    MappingError::new(Span::new(offset, len), message, EXPECTED_MAPPING)
}

/// One `.raw` file of a sample directory (or of a flat golden directory).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GoldenFile {
    /// `/`-separated, relative to the `Result_<N>` directory: `conv1_Conv_output_0.raw`, `a/b.raw`.
    pub relative_path: String,
    pub bytes: u64,
}

/// A graph tensor the comparison wants, in graph order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    pub name: String,
    /// Number of values; the file must hold `4 * elements` bytes (float32).
    pub elements: usize,
}

/// How a tensor found its golden file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MatchedBy {
    /// `<name>.raw`.
    Exact,
    /// `/` made into directories: `a/b/c` -> `a/b/c.raw` (leading `/` dropped).
    Subdirectory,
    /// The SDK's sanitized name: `/a/b:0` -> `_a_b_0.raw`.
    Sanitized,
    /// Through the tensor mapping file, the golden name in any of the three forms above.
    Mapping,
}

/// Several tensors that reached the same file in one stage: none of them got it there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collision {
    pub file: String,
    /// In graph order.
    pub tensors: Vec<String>,
    pub by: MatchedBy,
}

/// The outcome of [`match_goldens`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenMatch {
    /// (tensor, relative path, how), in graph order.
    pub matched: Vec<(String, String, MatchedBy)>,
    /// Wanted tensors with no file, in graph order.
    pub unmatched_tensors: Vec<String>,
    /// `.raw` files no tensor took, sorted.
    pub unmatched_files: Vec<String>,
    /// (tensor, relative path, expected bytes, file bytes), in graph order: found by name, but
    /// not `4 * elements` bytes long.
    pub wrong_size: Vec<(String, String, u64, u64)>,
    /// Files several tensors reached in one stage, sorted by file then stage.
    pub collisions: Vec<Collision>,
    /// (unmatched tensor, likely unmatched file) hints, in graph order.
    pub closest: Vec<(String, String)>,
}

/// Where a tensor ended.
#[derive(Clone, Copy, Debug)]
enum Resolved {
    Matched(usize, MatchedBy),
    WrongSize(usize),
}

/// Lines up `wanted` graph tensors with golden `files` (see the module docs for the order).
/// Deterministic: the result depends only on the values, not on the order of `files`.
pub fn match_goldens(wanted: &[Wanted], files: &[GoldenFile], mapping: Option<&TensorMapping>) -> GoldenMatch {
    let mut raw: Vec<&GoldenFile> = files.iter().filter(|f| f.relative_path.ends_with(RAW_SUFFIX)).collect();
    raw.sort();
    raw.dedup_by(|a, b| a.relative_path == b.relative_path);
    let by_key: BTreeMap<&str, usize> =
        raw.iter().enumerate().filter_map(|(i, f)| Some((f.relative_path.strip_suffix(RAW_SUFFIX)?, i))).collect();

    let mut claimed = vec![false; raw.len()];
    let mut resolved: Vec<Option<Resolved>> = vec![None; wanted.len()];
    let mut collisions = Vec::new();
    let stages: [(MatchedBy, &dyn Fn(&str) -> Vec<String>); 4] = [
        (MatchedBy::Exact, &|name| if name.contains('/') { vec![] } else { vec![name.to_string()] }),
        (MatchedBy::Subdirectory, &|name| subdirectory_form(name).into_iter().collect()),
        (MatchedBy::Sanitized, &|name| vec![sanitize_name(name)]),
        (MatchedBy::Mapping, &|name| mapping.and_then(|m| m.get(name)).map(name_forms).unwrap_or_default()),
    ];
    for (by, candidates) in stages {
        // file -> tensors reaching it in this stage (each tensor: its first free candidate).
        let mut reached: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (t, w) in wanted.iter().enumerate() {
            if resolved.get(t).is_some_and(Option::is_some) {
                continue;
            }
            let free = candidates(&w.name)
                .iter()
                .filter_map(|key| by_key.get(key.as_str()).copied())
                .find(|&f| !claimed.get(f).copied().unwrap_or(true));
            if let Some(f) = free {
                reached.entry(f).or_default().push(t);
            }
        }
        for (f, tensors) in reached {
            let (Some(file), [t]) = (raw.get(f), tensors.as_slice()) else {
                if let Some(file) = raw.get(f) {
                    let names = tensors.iter().filter_map(|&t| wanted.get(t)).map(|w| w.name.clone()).collect();
                    collisions.push(Collision { file: file.relative_path.clone(), tensors: names, by });
                }
                continue;
            };
            let Some(w) = wanted.get(*t) else { continue };
            if let Some(c) = claimed.get_mut(f) {
                *c = true;
            }
            let outcome = if file.bytes == expected_bytes(w.elements) {
                Resolved::Matched(f, by)
            } else {
                Resolved::WrongSize(f)
            };
            if let Some(slot) = resolved.get_mut(*t) {
                *slot = Some(outcome);
            }
        }
    }

    let mut out = GoldenMatch { collisions, ..GoldenMatch::default() };
    out.collisions.sort_by(|a, b| (&a.file, a.by).cmp(&(&b.file, b.by)));
    for (w, r) in wanted.iter().zip(&resolved) {
        match *r {
            Some(Resolved::Matched(f, by)) => {
                if let Some(file) = raw.get(f) {
                    out.matched.push((w.name.clone(), file.relative_path.clone(), by));
                }
            }
            Some(Resolved::WrongSize(f)) => {
                if let Some(file) = raw.get(f) {
                    let expected = expected_bytes(w.elements);
                    out.wrong_size.push((w.name.clone(), file.relative_path.clone(), expected, file.bytes));
                }
            }
            None => out.unmatched_tensors.push(w.name.clone()),
        }
    }
    out.unmatched_files =
        raw.iter().zip(&claimed).filter(|(_, c)| !**c).map(|(f, _)| f.relative_path.clone()).collect();
    out.closest = out
        .unmatched_tensors
        .iter()
        .filter_map(|t| Some((t.clone(), closest_file(t, &out.unmatched_files)?.to_string())))
        .collect();
    out
}

fn expected_bytes(elements: usize) -> u64 {
    u64::try_from(elements).unwrap_or(u64::MAX).saturating_mul(4)
}

/// `a/b/c` -> `a/b/c` (empty components dropped, so `/conv1/Conv` -> `conv1/Conv`); names
/// without `/` have no sub-directory form.
fn subdirectory_form(name: &str) -> Option<String> {
    if !name.contains('/') {
        return None;
    }
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The file keys a golden name may have, in matching order: as written, sub-directory form,
/// sanitized.
fn name_forms(name: &str) -> Vec<String> {
    let mut forms = Vec::new();
    if !name.contains('/') {
        forms.push(name.to_string());
    }
    forms.extend(subdirectory_form(name));
    forms.push(sanitize_name(name));
    forms
}

/// The file of `files` (relative paths) whose name looks most like `tensor`, if it is close
/// enough to be a likely misspelling or renaming (normalized Damerau-Levenshtein similarity of
/// the lower-cased sanitized names >= 0.75; ties go to the first file in order).
pub fn closest_file<'f>(tensor: &str, files: &'f [String]) -> Option<&'f str> {
    let wanted = sanitize_name(tensor).to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for file in files {
        let stem = file.strip_suffix(RAW_SUFFIX).unwrap_or(file);
        let score = strsim::normalized_damerau_levenshtein(&wanted, &sanitize_name(stem).to_lowercase());
        if score >= 0.75 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, file.as_str()));
        }
    }
    best.map(|(_, f)| f)
}

/// A golden directory whose top level is not a valid layout.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum GoldenLayoutError {
    #[error(
        "Result_{missing} is missing: the golden directory has {found} Result_<N> directories, up to Result_{last}"
    )]
    Gap { missing: usize, found: usize, last: usize },
    #[error("`{name}` is not a sample directory name: expected Result_<N>, N a line index without leading zeros")]
    BadName { name: String },
    #[error(
        "the golden directory mixes Result_<N> sample directories with top-level .raw files (`{file}`): use one layout"
    )]
    Mixed { file: String },
}

/// The sample directories of a golden directory, from its top-level entry names:
/// `Result_0`..`Result_{n-1}` in numeric order, or an empty list for the flat layout (no
/// `Result_` entries: the `.raw` files at the top are one sample). Other entries (a README,
/// an input list, a mapping file) are ignored.
pub fn sample_dirs(entries: &[String]) -> Result<Vec<String>, GoldenLayoutError> {
    let mut indices = BTreeSet::new();
    for name in entries {
        let Some(digits) = name.strip_prefix("Result_") else { continue };
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        match digits.parse::<usize>() {
            Ok(n) if canonical => {
                indices.insert(n);
            }
            _ => return Err(GoldenLayoutError::BadName { name: name.clone() }),
        }
    }
    if indices.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(file) = entries.iter().filter(|e| e.ends_with(RAW_SUFFIX)).min() {
        return Err(GoldenLayoutError::Mixed { file: file.clone() });
    }
    let last = indices.last().copied().unwrap_or(0);
    if let Some(missing) = (0..=last).find(|n| !indices.contains(n)) {
        return Err(GoldenLayoutError::Gap { missing, found: indices.len(), last });
    }
    Ok((0..=last).map(|n| format!("Result_{n}")).collect())
}

/// A `.raw` file whose length is not a whole number of float32 values.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("a .raw file of {len} bytes is not a whole number of float32 values (its length must be a multiple of 4)")]
pub struct RawError {
    pub len: usize,
}

/// Decodes a headerless float32 little-endian `.raw` file.
pub fn decode_raw(bytes: &[u8]) -> Result<Vec<f32>, RawError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(RawError { len: bytes.len() });
    }
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}
