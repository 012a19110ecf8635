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
    for by in [MatchedBy::Exact, MatchedBy::Subdirectory, MatchedBy::Sanitized, MatchedBy::Mapping] {
        // file -> tensors reaching it in this stage (each tensor: its first free candidate).
        let mut reached: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (t, w) in wanted.iter().enumerate() {
            if resolved.get(t).is_some_and(Option::is_some) {
                continue;
            }
            let free = candidates(by, &w.name, mapping)
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

/// The file keys (paths without `.raw`) tensor `name` may have in stage `by`, in order.
fn candidates(by: MatchedBy, name: &str, mapping: Option<&TensorMapping>) -> Vec<String> {
    match by {
        MatchedBy::Exact if !name.contains('/') => vec![name.to_string()],
        MatchedBy::Exact => Vec::new(),
        MatchedBy::Subdirectory => subdirectory_form(name).into_iter().collect(),
        MatchedBy::Sanitized => vec![sanitize_name(name)],
        MatchedBy::Mapping => mapping.and_then(|m| m.get(name)).map(name_forms).unwrap_or_default(),
    }
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
        let stem = sanitize_name(file.strip_suffix(RAW_SUFFIX).unwrap_or(file)).to_lowercase();
        // The similarity is at most shorter / longer (ASCII after sanitizing): skip the
        // len × len distance where it cannot reach 0.75.
        let (a, b) = (wanted.len(), stem.len());
        if a.min(b) * 4 < a.max(b) * 3 {
            continue;
        }
        let score = strsim::normalized_damerau_levenshtein(&wanted, &stem);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;

    fn want(name: &str, elements: usize) -> Wanted {
        Wanted { name: name.to_string(), elements }
    }

    fn file(path: &str, bytes: u64) -> GoldenFile {
        GoldenFile { relative_path: path.to_string(), bytes }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn mapping(pairs: &[(&str, &str)]) -> TensorMapping {
        TensorMapping { entries: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    fn matched(m: &GoldenMatch) -> Vec<(&str, &str, MatchedBy)> {
        m.matched.iter().map(|(t, f, by)| (t.as_str(), f.as_str(), *by)).collect()
    }

    /// The vendor docs' file-name examples (digest §1.3): `:` and `/` become `_`.
    #[test]
    fn sanitized_names_follow_the_vendor_examples() {
        assert_eq!(
            sanitize_name("InceptionV3/InceptionV3/Conv2d_1a_3x3/Relu:0"),
            "InceptionV3_InceptionV3_Conv2d_1a_3x3_Relu_0"
        );
        assert_eq!(sanitize_name("InceptionV3/Conv2d_1a_3x3/Relu:0"), "InceptionV3_Conv2d_1a_3x3_Relu_0");
        assert_eq!(subdirectory_form("inception_3a/1x1/bn/sc").as_deref(), Some("inception_3a/1x1/bn/sc"));
        assert_eq!(subdirectory_form("/conv1/Conv_output_0").as_deref(), Some("conv1/Conv_output_0"));
        assert_eq!(subdirectory_form("logits"), None);
    }

    #[test]
    fn each_match_path_is_taken_and_named() {
        let wanted = [
            want("logits", 10),
            want("inception_3a/1x1/bn/sc", 4),
            want("InceptionV3/Conv2d_1a_3x3/Relu:0", 2),
            want("Postprocessor/BatchMultiClassNonMaxSuppression_boxes", 3),
        ];
        let files = [
            file("logits.raw", 40),
            file("inception_3a/1x1/bn/sc.raw", 16),
            file("InceptionV3_Conv2d_1a_3x3_Relu_0.raw", 8),
            // The mapping's golden name `detection_boxes:0` (digest §2.3), found sanitized.
            file("detection_boxes_0.raw", 12),
        ];
        let map = mapping(&[("Postprocessor/BatchMultiClassNonMaxSuppression_boxes", "detection_boxes:0")]);
        let m = match_goldens(&wanted, &files, Some(&map));
        assert_eq!(
            matched(&m),
            [
                ("logits", "logits.raw", MatchedBy::Exact),
                ("inception_3a/1x1/bn/sc", "inception_3a/1x1/bn/sc.raw", MatchedBy::Subdirectory),
                ("InceptionV3/Conv2d_1a_3x3/Relu:0", "InceptionV3_Conv2d_1a_3x3_Relu_0.raw", MatchedBy::Sanitized),
                ("Postprocessor/BatchMultiClassNonMaxSuppression_boxes", "detection_boxes_0.raw", MatchedBy::Mapping),
            ]
        );
        assert!(m.unmatched_tensors.is_empty() && m.unmatched_files.is_empty(), "{m:?}");
        assert!(m.wrong_size.is_empty() && m.collisions.is_empty(), "{m:?}");

        // Without the mapping the last tensor and its file are left over, on both lists.
        let m = match_goldens(&wanted, &files, None);
        assert_eq!(m.unmatched_tensors, ["Postprocessor/BatchMultiClassNonMaxSuppression_boxes"]);
        assert_eq!(m.unmatched_files, ["detection_boxes_0.raw"]);
    }

    /// A mapped golden name is looked up as written and in sub-directory form too.
    #[test]
    fn mapped_names_resolve_in_every_form() {
        let wanted = [want("a", 1), want("b", 1)];
        let files = [file("g1.raw", 4), file("dir/g2.raw", 4)];
        let map = mapping(&[("a", "g1"), ("b", "/dir/g2")]);
        let m = match_goldens(&wanted, &files, Some(&map));
        assert_eq!(matched(&m), [("a", "g1.raw", MatchedBy::Mapping), ("b", "dir/g2.raw", MatchedBy::Mapping)]);
    }

    #[test]
    fn earlier_stages_win_and_a_file_goes_to_one_tensor() {
        // `a_b` is found exactly; `a.b` would sanitize to the same file, which is taken.
        let m = match_goldens(&[want("a.b", 1), want("a_b", 1)], &[file("a_b.raw", 4)], None);
        assert_eq!(matched(&m), [("a_b", "a_b.raw", MatchedBy::Exact)]);
        assert_eq!(m.unmatched_tensors, ["a.b"]);
        assert!(m.collisions.is_empty());

        // The exact file wins over the mapping's; the mapping's file is then left over.
        let map = mapping(&[("x", "y")]);
        let m = match_goldens(&[want("x", 1)], &[file("x.raw", 4), file("y.raw", 4)], Some(&map));
        assert_eq!(matched(&m), [("x", "x.raw", MatchedBy::Exact)]);
        assert_eq!(m.unmatched_files, ["y.raw"]);
    }

    #[test]
    fn sanitized_collisions_are_reported_not_picked() {
        let wanted = [want("a:b", 2), want("a.b", 2), want("c", 2)];
        let files = [file("a_b.raw", 8), file("c.raw", 8)];
        let m = match_goldens(&wanted, &files, None);
        assert_eq!(matched(&m), [("c", "c.raw", MatchedBy::Exact)]);
        assert_eq!(m.unmatched_tensors, ["a:b", "a.b"]);
        assert_eq!(m.unmatched_files, ["a_b.raw"]);
        assert_eq!(
            m.collisions,
            [Collision { file: "a_b.raw".into(), tensors: strings(&["a:b", "a.b"]), by: MatchedBy::Sanitized }]
        );

        // A mapping entry settles it; the collision is still reported.
        let map = mapping(&[("a.b", "a_b")]);
        let m = match_goldens(&wanted, &files, Some(&map));
        assert_eq!(matched(&m), [("a.b", "a_b.raw", MatchedBy::Mapping), ("c", "c.raw", MatchedBy::Exact)]);
        assert_eq!(m.unmatched_tensors, ["a:b"]);
        assert!(m.unmatched_files.is_empty());
        assert_eq!(m.collisions.len(), 1);

        // Two mapping entries naming one golden file: a collision too.
        let map = mapping(&[("a.b", "g"), ("a:b", "g")]);
        let m = match_goldens(&wanted, &[file("g.raw", 8)], Some(&map));
        assert!(m.matched.is_empty());
        assert_eq!(m.collisions.iter().map(|c| c.by).collect::<Vec<_>>(), [MatchedBy::Mapping]);
    }

    #[test]
    fn wrong_sizes_are_reported_and_final() {
        // 10 float32 values need 40 bytes; the exact file has 36. The sanitized one would fit,
        // but a name match is final.
        let wanted = [want("t.0", 10)];
        let files = [file("t.0.raw", 36), file("t_0.raw", 40)];
        let m = match_goldens(&wanted, &files, None);
        assert!(m.matched.is_empty());
        assert_eq!(m.wrong_size, [("t.0".to_string(), "t.0.raw".to_string(), 40, 36)]);
        assert!(m.unmatched_tensors.is_empty());
        assert_eq!(m.unmatched_files, ["t_0.raw"]);
    }

    #[test]
    fn result_is_independent_of_file_order_and_ignores_other_files() {
        let wanted = [want("/x/y", 1), want("z", 1), want("w", 1)];
        let mut files = vec![
            file("x/y.raw", 4),
            file("README.md", 10),
            file("z.raw", 4),
            file("extra_b.raw", 4),
            file("extra_a.raw", 4),
            file("_x_y.raw", 4),
        ];
        let first = match_goldens(&wanted, &files, None);
        files.reverse();
        assert_eq!(match_goldens(&wanted, &files, None), first);
        assert_eq!(matched(&first), [("/x/y", "x/y.raw", MatchedBy::Subdirectory), ("z", "z.raw", MatchedBy::Exact)]);
        assert_eq!(first.unmatched_files, ["_x_y.raw", "extra_a.raw", "extra_b.raw"]);
        assert_eq!(first.unmatched_tensors, ["w"]);
    }

    #[test]
    fn closest_name_hints_for_unmatched_tensors() {
        let wanted = [want("/conv1/Conv_output_0", 1), want("logits", 1)];
        let files = [file("conv1_Conv_output_1.raw", 4), file("debug_probe.raw", 4)];
        let m = match_goldens(&wanted, &files, None);
        assert_eq!(m.unmatched_tensors.len(), 2);
        // `_conv1_conv_output_0` vs `conv1_conv_output_1`: 2 edits in 20 characters = 0.9.
        assert_eq!(m.closest, [("/conv1/Conv_output_0".to_string(), "conv1_Conv_output_1.raw".to_string())]);
        assert_eq!(closest_file("logits", &strings(&["debug_probe.raw"])), None);
    }

    /// Where an error span starts, as (line, column).
    fn at(text: &str, e: &MappingError) -> (usize, usize) {
        e.span.line_column(text)
    }

    #[test]
    fn mapping_files_parse() {
        // The vendor docs' example (digest §2.3).
        let text = r#"{
  "Postprocessor/BatchMultiClassNonMaxSuppression_boxes": "detection_boxes:0",
  "Postprocessor/BatchMultiClassNonMaxSuppression_scores": "detection_scores:0"
}"#;
        let m = parse_mapping(text).unwrap();
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.get("Postprocessor/BatchMultiClassNonMaxSuppression_scores"), Some("detection_scores:0"));
        assert_eq!(m.get("detection_scores:0"), None);
        // Serializes back as the plain object.
        assert_eq!(serde_json::from_str::<TensorMapping>(&serde_json::to_string(&m).unwrap()).unwrap(), m);
        assert_eq!(parse_mapping("{}").unwrap(), TensorMapping::default());
    }

    #[test]
    fn mapping_errors_point_at_the_culprit() {
        // Duplicate key: the second one, line 3 column 3.
        let text = "{\n  \"a\": \"x\",\n  \"a\": \"y\"\n}";
        let e = parse_mapping(text).unwrap_err();
        assert_eq!(at(text, &e), (3, 3));
        assert_eq!(e.span.len, 3, "the quoted key");
        assert!(e.message.contains("line 2, column 3"), "{}", e.message);

        // A number value: line 2, column 8, two characters.
        let text = "{\n  \"a\": 12\n}";
        let e = parse_mapping(text).unwrap_err();
        assert_eq!((at(text, &e), e.span.len), ((2, 8), 2));
        assert!(e.message.contains("a number"), "{}", e.message);

        let text = "{\"a\": null}";
        let e = parse_mapping(text).unwrap_err();
        assert_eq!((at(text, &e), e.span.len), ((1, 7), 4));

        let text = "{\"a\": \"\"}";
        let e = parse_mapping(text).unwrap_err();
        assert_eq!(at(text, &e), (1, 7));
        assert!(e.message.contains("empty"), "{}", e.message);

        // A list is not a mapping.
        let e = parse_mapping("[\"a\"]").unwrap_err();
        assert_eq!(e.span, Span::new(0, 5));

        // Strict JSON: the trailing comma's closing brace on line 3 column 1 is where
        // serde_json stops (a non-ASCII key before it checks the byte/char conversion).
        let text = "{\n  \"é\": \"x\",\n}";
        let e = parse_mapping(text).unwrap_err();
        assert_eq!(at(text, &e), (3, 1));
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);

        // Same line, after a two-byte character: serde_json counts columns in bytes, the span
        // must still land on the `}` (character 11 of the line).
        let text = "{\"é\": \"x\",}";
        let e = parse_mapping(text).unwrap_err();
        assert_eq!(text.get(e.span.offset..e.span.offset + e.span.len), Some("}"));
        assert_eq!(at(text, &e), (1, 11));

        let text = "{\n  // comment\n  \"a\": \"x\"\n}";
        let e = parse_mapping(text).unwrap_err();
        assert_eq!(at(text, &e).0, 2);

        let e = parse_mapping("  \n").unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = parse_mapping("{\"a\": 'x'}").unwrap_err();
        assert_eq!(at("{\"a\": 'x'}", &e), (1, 7));
    }

    #[test]
    fn layouts() {
        assert_eq!(sample_dirs(&strings(&["a.raw", "conv1", "README.md"])), Ok(vec![]));
        assert_eq!(sample_dirs(&[]), Ok(vec![]));
        // Numeric order, not lexicographic: Result_10 comes after Result_9.
        let mut entries: Vec<String> = (0..11).map(|n| format!("Result_{n}")).collect();
        entries.sort();
        entries.push("input_list.txt".into());
        let dirs = sample_dirs(&entries).unwrap();
        assert_eq!(dirs.len(), 11);
        assert_eq!(dirs.get(9..).unwrap(), ["Result_9", "Result_10"]);
        assert_eq!(
            sample_dirs(&strings(&["Result_0", "Result_1", "Result_3"])),
            Err(GoldenLayoutError::Gap { missing: 2, found: 3, last: 3 })
        );
        assert_eq!(sample_dirs(&strings(&["Result_1"])), Err(GoldenLayoutError::Gap { missing: 0, found: 1, last: 1 }));
        for bad in ["Result_01", "Result_x", "Result_", "Result_-1"] {
            assert_eq!(
                sample_dirs(&strings(&["Result_0", bad])),
                Err(GoldenLayoutError::BadName { name: bad.into() }),
                "{bad}"
            );
        }
        assert_eq!(
            sample_dirs(&strings(&["Result_0", "logits.raw"])),
            Err(GoldenLayoutError::Mixed { file: "logits.raw".into() })
        );
        let e = GoldenLayoutError::Gap { missing: 2, found: 3, last: 3 };
        assert!(e.to_string().starts_with("Result_2 is missing"), "{e}");
    }

    #[test]
    fn raw_decoding() {
        // 1.0 = 0x3F800000, -2.5 = 0xC0200000 (IEEE 754), little-endian byte order.
        assert_eq!(decode_raw(&[0, 0, 0x80, 0x3F, 0, 0, 0x20, 0xC0]), Ok(vec![1.0, -2.5]));
        assert_eq!(decode_raw(&[]), Ok(vec![]));
        assert_eq!(decode_raw(&[0; 5]), Err(RawError { len: 5 }));
    }

    // The fixtures of tests/data/goldens/ (written by onnxruntime, scripts/python/dump_goldens.py).

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let read = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        read.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    /// Every file under `dir`, `/`-separated relative paths.
    fn golden_files(dir: &Path) -> Vec<GoldenFile> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<GoldenFile>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(base, &path, out);
                } else {
                    let rel = path.strip_prefix(base).unwrap();
                    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into()).collect();
                    out.push(GoldenFile { relative_path: parts.join("/"), bytes: path.metadata().unwrap().len() });
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out
    }

    /// The digits model as qairt optimizes it (BN folded), its layer tensors in graph order.
    fn digits_graph() -> (crate::ir::Graph, Vec<Wanted>) {
        let bytes = std::fs::read(root().join("examples/digits/model.onnx")).unwrap();
        let model = crate::onnx::decode_model(&bytes).unwrap();
        let graph = crate::onnx::import(&model, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        let (graph, _) = crate::passes::optimize(graph).unwrap();
        let wanted = graph
            .nodes
            .iter()
            .flat_map(|n| &n.outputs)
            .map(|&id| want(&graph.info(id).name, graph.info(id).elements()))
            .collect();
        (graph, wanted)
    }

    fn read_f32(path: &Path) -> Vec<f32> {
        decode_raw(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
    }

    /// onnxruntime's dump of the BN-folded digits model: every layer tensor of qairt's
    /// optimized graph is found (by its sanitized name) in every Result_N, nothing is left over,
    /// and the values are what qairt's interpreter computes for the same inputs.
    #[test]
    fn onnxruntime_dump_matches_every_layer_of_the_digits_graph() {
        let dir = root().join("tests/data/goldens/digits_ort");
        let (graph, wanted) = digits_graph();
        assert_eq!(wanted.len(), 9, "Conv Relu Conv Relu MaxPool Flatten Gemm Relu Gemm");
        let samples = sample_dirs(&entries(&dir)).unwrap();
        assert_eq!(samples.len(), 8);
        let list = std::fs::read_to_string(dir.join("input_list.txt")).unwrap();
        let inputs: Vec<&str> = list.lines().collect();
        assert_eq!(inputs.len(), samples.len());
        let mut worst = 0f64;
        for (n, (sample, input)) in samples.iter().zip(&inputs).enumerate() {
            let m = match_goldens(&wanted, &golden_files(&dir.join(sample)), None);
            assert_eq!(m.matched.len(), 9, "{sample}: {m:?}");
            // `logits` has no character to sanitize: its file is found by the exact name.
            for (tensor, _, by) in &m.matched {
                let expected = if tensor == "logits" { MatchedBy::Exact } else { MatchedBy::Sanitized };
                assert_eq!(*by, expected, "{tensor}");
            }
            assert!(m.unmatched_tensors.is_empty() && m.unmatched_files.is_empty(), "{m:?}");
            assert!(m.wrong_size.is_empty() && m.collisions.is_empty(), "{m:?}");

            let x = crate::ir::Tensor::from_f32(vec![1, 1, 8, 8], read_f32(&dir.join(input)));
            let mut ours: BTreeMap<String, Vec<f32>> = BTreeMap::new();
            crate::runtime::interpret(&graph, &[x], &mut |id, t| {
                ours.insert(graph.info(id).name.clone(), t.to_f32_vec());
            })
            .unwrap();
            for (tensor, path, _) in &m.matched {
                let golden = read_f32(&dir.join(sample).join(path));
                let mine = &ours[tensor];
                let scale = golden.iter().fold(0f64, |a, v| a.max(f64::from(v.abs())));
                let diff = golden.iter().zip(mine).fold(0f64, |a, (g, o)| a.max(f64::from((g - o).abs())));
                worst = worst.max(diff / scale.max(1e-12));
            }
            // The logits agree with the example's own onnxruntime run of the unfolded model.
            let logits = read_f32(&dir.join(sample).join("logits.raw"));
            let earlier = read_f32(&root().join(format!("examples/digits/test/ort/Result_{n}/logits.raw")));
            assert_eq!(logits.len(), 10);
            assert!(logits.iter().zip(&earlier).all(|(a, b)| (a - b).abs() <= 1e-4 * b.abs().max(1.0)));
        }
        println!("digits_ort: max relative |qairt - onnxruntime| over 9 layers x 8 samples: {worst:e}");
        assert!(worst < 1e-5, "{worst}");
    }

    /// The renamed, flat variant: everything through mapping.json except the tensor whose
    /// file was dropped; the extra file is left over.
    #[test]
    fn renamed_dump_needs_its_mapping_file() {
        let dir = root().join("tests/data/goldens/digits_renamed");
        let (_, wanted) = digits_graph();
        assert_eq!(sample_dirs(&entries(&dir)), Ok(vec![]), "flat layout");
        let map = parse_mapping(&std::fs::read_to_string(dir.join("mapping.json")).unwrap()).unwrap();
        assert_eq!(map.entries.len(), 9);
        let files = golden_files(&dir);
        let m = match_goldens(&wanted, &files, Some(&map));
        assert_eq!(m.matched.len(), 8, "{m:?}");
        assert!(m.matched.iter().all(|(_, _, by)| *by == MatchedBy::Mapping), "{m:?}");
        assert_eq!(m.unmatched_tensors, ["/pool/MaxPool_output_0"]);
        assert_eq!(m.unmatched_files, ["golden__debug_probe.raw"]);
        assert!(m.wrong_size.is_empty() && m.collisions.is_empty(), "{m:?}");

        let m = match_goldens(&wanted, &files, None);
        assert!(m.matched.is_empty());
        assert_eq!(m.unmatched_tensors.len(), 9);
        assert_eq!(m.unmatched_files.len(), 9);
    }
}
