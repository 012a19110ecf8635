//! ONNX's backend node tests through the CLI: every test of `tests/data/onnx-node/corpus.tsv`
//! becomes its own temporary project (model, raw inputs in their own element types, an input
//! list, a `qairt.toml` with one `cpu` target), built with the real `qairt build`, and its
//! `out/cpu/outputs/Result_0/*.raw` compared with ONNX's expected outputs at rtol 1e-3 /
//! atol 1e-7 (integer and bool types exactly).
//!
//! Every test ends in exactly one class: pass, diagnostic (with a reason class), wrong, panic,
//! crash, hang or not vendored. The run fails on any wrong answer, panic, crash or hang, and
//! on any difference from the ratchet `tests/data/onnx-node/status.txt` (a test expected to
//! pass that does not, a test that newly passes); `QAIRT_UPDATE_NODE_STATUS=1` rewrites it.
//! A JSON summary (per test, per op type, reason histogram) goes to
//! `target/tmp/node_tests/summary.json` (or `$QAIRT_NODE_SUMMARY`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use qairt::onnx::proto::tensor_proto::DataType;
use qairt::onnx::proto::type_proto::Value as TypeValue;
use qairt::onnx::proto::{ModelProto, TensorProto, ValueInfoProto};
use serde_json::json;

#[path = "node_tests/operators_doc.rs"]
mod operators_doc;

const NODE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/onnx-node");
const OPERATORS_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operators.md");
/// A hang detector, not a speed check: the slowest test takes well under a second.
const TIME_LIMIT: Duration = Duration::from_secs(300);
const THREADS: usize = 2;
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;
const UPDATE_ENV: &str = "QAIRT_UPDATE_NODE_STATUS";

/// How a test is counted: the issue's "single-node" and "expanded" tests are ONNX's node tests
/// with one node and with several nodes; the pytorch-converted Conv2d cases are extra.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Single,
    Expanded,
    PytorchConverted,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Single => "single",
            Group::Expanded => "expanded",
            Group::PytorchConverted => "pytorch-converted",
        }
    }
}

struct Case {
    name: String,
    group: Group,
    vendored: bool,
    ops: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pass,
    /// Exit 1 with a diagnostic: its reason class and the full first message.
    Diagnostic {
        reason: String,
        message: String,
    },
    Wrong(String),
    Panic(String),
    Crash(String),
    Hang,
    NotVendored,
}

impl Outcome {
    fn class(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Diagnostic { .. } => "diagnostic",
            Outcome::Wrong(_) => "wrong",
            Outcome::Panic(_) => "panic",
            Outcome::Crash(_) => "crash",
            Outcome::Hang => "hang",
            Outcome::NotVendored => "not-vendored",
        }
    }

    /// A class the run must never produce.
    fn is_failure(&self) -> bool {
        matches!(self, Outcome::Wrong(_) | Outcome::Panic(_) | Outcome::Crash(_) | Outcome::Hang)
    }
}

fn read_corpus() -> Vec<Case> {
    let text = std::fs::read_to_string(Path::new(NODE_TESTS).join("corpus.tsv")).expect("corpus.tsv");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next().unwrap().to_string();
            let group_field = fields.next().unwrap_or_else(|| panic!("corpus.tsv: no group: {line}"));
            let (group, vendored) = match group_field.split_once(':') {
                Some((g, "not-vendored")) => (g, false),
                _ => (group_field, true),
            };
            let group = match group {
                "single" => Group::Single,
                "expanded" => Group::Expanded,
                "pytorch-converted" => Group::PytorchConverted,
                other => panic!("corpus.tsv: unknown group {other:?}: {line}"),
            };
            let ops = fields.next().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(String::from).collect();
            Case { name, group, vendored, ops }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Element types and raw files

/// How the elements of an ONNX element type are stored in a raw file and compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    F32,
    F64,
    F16,
    Bf16,
    /// Pairs of f32 / f64.
    Complex32,
    Complex64,
    /// Integers and bool (one byte), compared exactly.
    Int {
        bytes: usize,
        signed: bool,
    },
    /// float8, float4 and sub-byte integers: packed bits as ONNX stores them, compared
    /// bit-exactly (at these precisions rtol 1e-3 is exact anyway).
    Bits(usize),
    /// No raw form in the SDK: each string's UTF-8 bytes and a NUL, compared exactly.
    String,
}

fn kind_of(data_type: i32) -> Result<Kind, String> {
    let dt = DataType::try_from(data_type).map_err(|_| format!("unknown element type {data_type}"))?;
    Ok(match dt {
        DataType::Float => Kind::F32,
        DataType::Double => Kind::F64,
        DataType::Float16 => Kind::F16,
        DataType::Bfloat16 => Kind::Bf16,
        DataType::Complex64 => Kind::Complex32,
        DataType::Complex128 => Kind::Complex64,
        DataType::Bool | DataType::Uint8 => Kind::Int { bytes: 1, signed: false },
        DataType::Int8 => Kind::Int { bytes: 1, signed: true },
        DataType::Uint16 => Kind::Int { bytes: 2, signed: false },
        DataType::Int16 => Kind::Int { bytes: 2, signed: true },
        DataType::Uint32 => Kind::Int { bytes: 4, signed: false },
        DataType::Int32 => Kind::Int { bytes: 4, signed: true },
        DataType::Uint64 => Kind::Int { bytes: 8, signed: false },
        DataType::Int64 => Kind::Int { bytes: 8, signed: true },
        DataType::Float8e4m3fn
        | DataType::Float8e4m3fnuz
        | DataType::Float8e5m2
        | DataType::Float8e5m2fnuz
        | DataType::Float8e8m0 => Kind::Bits(8),
        DataType::Uint4 | DataType::Int4 | DataType::Float4e2m1 => Kind::Bits(4),
        DataType::Uint2 | DataType::Int2 => Kind::Bits(2),
        DataType::String => Kind::String,
        DataType::Undefined => return Err("element type UNDEFINED".into()),
    })
}

fn type_name(data_type: i32) -> &'static str {
    DataType::try_from(data_type).map_or("UNKNOWN", |d| d.as_str_name())
}

/// Bytes of `n` elements of `kind` in a raw file.
fn raw_size(kind: Kind, n: usize) -> usize {
    match kind {
        Kind::F32 => 4 * n,
        Kind::F64 | Kind::Complex32 => 8 * n,
        Kind::Complex64 => 16 * n,
        Kind::F16 | Kind::Bf16 => 2 * n,
        Kind::Int { bytes, .. } => bytes * n,
        Kind::Bits(bits) => (n * bits).div_ceil(8),
        Kind::String => 0,
    }
}

fn elements(proto: &TensorProto) -> Result<usize, String> {
    proto
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| usize::try_from(d).map(|d| acc * d).map_err(|_| format!("negative dimension {d}")))
}

/// A TensorProto's elements as a little-endian raw file in its own element type.
fn raw_bytes(proto: &TensorProto) -> Result<Vec<u8>, String> {
    let dt = proto.data_type.unwrap_or(0);
    let kind = kind_of(dt)?;
    if kind == Kind::String {
        return Ok(proto.string_data.iter().flat_map(|s| s.iter().copied().chain([0])).collect());
    }
    let n = elements(proto)?;
    let want = raw_size(kind, n);
    if let Some(raw) = proto.raw_data.as_deref().filter(|r| !r.is_empty() || want == 0) {
        if raw.len() != want {
            return Err(format!("raw_data has {} bytes, {n} elements of {} need {want}", raw.len(), type_name(dt)));
        }
        return Ok(raw.to_vec());
    }
    let bytes: Vec<u8> = match kind {
        Kind::F32 | Kind::Complex32 => proto.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Kind::F64 | Kind::Complex64 => proto.double_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Kind::Int { bytes: 8, signed: true } => proto.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Kind::Int { bytes, signed: false } if bytes >= 4 => {
            proto.uint64_data.iter().flat_map(|v| v.to_le_bytes()[..bytes].to_vec()).collect()
        }
        // int32_data holds INT32, and the 16-bit patterns of (U)INT16, FLOAT16, BFLOAT16, and
        // the bytes of (U)INT8, BOOL, float8 and packed sub-byte types.
        Kind::Int { bytes, .. } => proto.int32_data.iter().flat_map(|v| v.to_le_bytes()[..bytes].to_vec()).collect(),
        Kind::F16 | Kind::Bf16 => proto.int32_data.iter().flat_map(|v| v.to_le_bytes()[..2].to_vec()).collect(),
        Kind::Bits(_) => proto.int32_data.iter().map(|v| v.to_le_bytes()[0]).collect(),
        Kind::String => unreachable!(),
    };
    if bytes.len() != want {
        return Err(format!("typed data has {} bytes, {n} elements of {} need {want}", bytes.len(), type_name(dt)));
    }
    Ok(bytes)
}

fn tensor_elem_type(info: &ValueInfoProto) -> Option<i32> {
    match info.r#type.as_ref()?.value.as_ref()? {
        TypeValue::TensorType(t) => t.elem_type,
        _ => None,
    }
}

fn value_kind(info: &ValueInfoProto) -> &'static str {
    match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(_)) => "tensor",
        Some(TypeValue::SequenceType(_)) => "sequence",
        Some(TypeValue::MapType(_)) => "map",
        Some(TypeValue::OptionalType(_)) => "optional",
        Some(TypeValue::SparseTensorType(_)) => "sparse tensor",
        None => "untyped value",
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison

fn le_f64(kind: Kind, b: &[u8]) -> f64 {
    match kind {
        Kind::F32 | Kind::Complex32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
        Kind::F64 | Kind::Complex64 => f64::from_le_bytes(b.try_into().unwrap()),
        Kind::F16 => half::f16::from_le_bytes(b.try_into().unwrap()).to_f64(),
        Kind::Bf16 => half::bf16::from_le_bytes(b.try_into().unwrap()).to_f64(),
        _ => unreachable!(),
    }
}

fn le_int(signed: bool, b: &[u8]) -> i128 {
    let mut bytes = [0u8; 16];
    bytes[..b.len()].copy_from_slice(b);
    if signed && b.last().is_some_and(|&top| top & 0x80 != 0) {
        bytes[b.len()..].fill(0xff);
    }
    i128::from_le_bytes(bytes)
}

/// `|got - expected| <= atol + rtol * |expected|`; NaN matches NaN, an infinity only itself.
fn close(got: f64, expected: f64) -> bool {
    if got.is_nan() || expected.is_nan() || got.is_infinite() || expected.is_infinite() {
        return got == expected || (got.is_nan() && expected.is_nan());
    }
    (got - expected).abs() <= ATOL + RTOL * expected.abs()
}

/// Compares one output file with its expected TensorProto: `Err` describes the first
/// difference.
fn compare_output(got: &[u8], expected: &TensorProto) -> Result<(), String> {
    let dt = expected.data_type.unwrap_or(0);
    let kind = kind_of(dt)?;
    let want = raw_bytes(expected)?;
    let n = elements(expected)?;
    if kind == Kind::String {
        return if got == want { Ok(()) } else { Err("the strings differ".into()) };
    }
    if got.len() != want.len() {
        let hint = if kind != Kind::F32 && got.len() == 4 * n { " (the size of float32 data)" } else { "" };
        return Err(format!(
            "the file has {} bytes{hint}; {n} elements of {} {:?} need {}",
            got.len(),
            type_name(dt),
            expected.dims,
            want.len()
        ));
    }
    let (width, float) = match kind {
        Kind::F32 | Kind::Complex32 => (4, true),
        Kind::F64 | Kind::Complex64 => (8, true),
        Kind::F16 | Kind::Bf16 => (2, true),
        Kind::Int { bytes, .. } => (bytes, false),
        Kind::Bits(_) => (1, false),
        Kind::String => unreachable!(),
    };
    for (i, (g, e)) in got.chunks_exact(width).zip(want.chunks_exact(width)).enumerate() {
        let (ok, shown) = if float {
            let (g, e) = (le_f64(kind, g), le_f64(kind, e));
            (close(g, e), format!("got {g:e}, expected {e:e}"))
        } else if let Kind::Int { signed, .. } = kind {
            let (g, e) = (le_int(signed, g), le_int(signed, e));
            (g == e, format!("got {g}, expected {e}"))
        } else {
            (g == e, format!("got byte {:#04x}, expected {:#04x}", g[0], e[0]))
        };
        if !ok {
            let total = want.len() / width;
            let bad = got
                .chunks_exact(width)
                .zip(want.chunks_exact(width))
                .filter(|(g, e)| if float { !close(le_f64(kind, g), le_f64(kind, e)) } else { g != e })
                .count();
            return Err(format!("{bad} of {total} values differ; first at flat index {i}: {shown}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Diagnostics

/// The error diagnostics of miette's narrated output (`NO_GRAPHICS=1`): (code, message).
fn parse_diagnostics(stderr: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = stderr.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "Diagnostic severity: error" {
            continue;
        }
        let message = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).copied().unwrap_or("").to_string();
        let code = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim() != "Diagnostic severity: error")
            .find_map(|l| l.strip_prefix("diagnostic code: "))
            .unwrap_or("")
            .to_string();
        found.push((code, message));
    }
    found
}

/// The text after the first `after`, up to the first character that is `stop`.
fn between<'a>(text: &'a str, after: &str, stop: impl Fn(char) -> bool) -> Option<&'a str> {
    let start = text.find(after)? + after.len();
    let rest = &text[start..];
    Some(&rest[..rest.find(stop).unwrap_or(rest.len())])
}

/// A short, stable reason class of a diagnostic: op and type names kept, tensor names,
/// numbers and paths dropped.
fn reason_class(code: &str, message: &str) -> String {
    if let Some(op) = between(message, "unsupported op \"", |c| c == '"') {
        return format!("unsupported op {op}");
    }
    if let Some(ty) = between(message, "element type ", |c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let ty = ty.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        if !ty.is_empty() && ty.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return format!("unsupported element type {ty}");
        }
    }
    if code == "qairt::input_list::dtype"
        && let Some(ty) = between(message, "\" is ", |c| c == ',')
    {
        return format!("input element type {ty}");
    }
    let op = between(message, "\" (", |c| c == ')').unwrap_or("?");
    if message.contains("computed at run time") {
        return format!("input computed at run time ({op})");
    }
    if let Some(opset) = between(message, "uses ai.onnx opset ", |c: char| !c.is_ascii_digit()) {
        return format!("ai.onnx opset {opset} not imported");
    }
    if message.contains("is not a dense tensor") {
        return "graph input not a dense tensor (sequence, optional)".into();
    }
    // Generic: the code and the message with quoted names, numbers and the file dropped.
    let code = code.strip_prefix("qairt::").unwrap_or(code);
    let text = message.strip_prefix("node ").map_or(message, |rest| rest.split_once(' ').map_or(rest, |r| r.1));
    let mut text = text.to_string();
    if let Some(open) = text.rfind(" (")
        && text[open..].contains('/')
    {
        text.truncate(open);
    }
    let mut normalized = String::new();
    let mut quoted = false;
    let mut last_digit = false;
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
            if quoted {
                normalized.push_str("\"…");
            } else {
                normalized.push('"');
            }
            last_digit = false;
        } else if quoted {
        } else if c.is_ascii_digit() {
            if !last_digit {
                normalized.push('N');
            }
            last_digit = true;
        } else {
            normalized.push(c);
            last_digit = false;
        }
    }
    let normalized: String = normalized.chars().take(110).collect();
    format!("{code}: {normalized}")
}

// ---------------------------------------------------------------------------------------------
// Running one test

const QAIRT_TOML: &str = r#"[project]
name = "node-test"

[model]
path = "model.onnx"

[[target]]
name = "cpu"
backend = "cpu"

[verify]
input_list = "input_list.txt"
"#;

fn read_proto(path: &Path) -> Result<TensorProto, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    TensorProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the project of one test into `project`.
fn make_project(test: &Path, project: &Path, model: &ModelProto) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(project).map_err(io)?;
    if std::fs::hard_link(test.join("model.onnx"), project.join("model.onnx")).is_err() {
        std::fs::copy(test.join("model.onnx"), project.join("model.onnx")).map_err(io)?;
    }
    let graph = model.graph.as_ref().ok_or("model has no graph")?;
    let mut entries = Vec::new();
    for (i, input) in graph.input.iter().enumerate() {
        let pb = test.join(format!("test_data_set_0/input_{i}.pb"));
        if !pb.exists() {
            continue; // an initializer listed as a graph input (IR 3)
        }
        let file = format!("input_{i}.raw");
        let bytes = if tensor_elem_type(input).is_some() {
            raw_bytes(&read_proto(&pb)?).map_err(|e| format!("input {i}: {e}"))?
        } else {
            // A sequence or optional: no raw form; hand over the serialized value as it is,
            // qairt must refuse the model anyway.
            std::fs::read(&pb).map_err(io)?
        };
        std::fs::write(project.join(&file), bytes).map_err(io)?;
        entries.push(format!("{}:={file}", input.name.as_deref().unwrap_or_default()));
    }
    let list = if entries.is_empty() { String::new() } else { format!("{}\n", entries.join(" ")) };
    std::fs::write(project.join("input_list.txt"), list).map_err(io)?;
    std::fs::write(project.join("qairt.toml"), QAIRT_TOML).map_err(io)?;
    Ok(())
}

fn excerpt(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = lines.iter().take(12).copied().collect::<Vec<_>>().join("\n    ");
    if lines.len() > 12 { format!("{shown}\n    ... ({} lines)", lines.len()) } else { shown }
}

fn run_case(case: &Case) -> Outcome {
    if !case.vendored {
        return Outcome::NotVendored;
    }
    match run_vendored(case) {
        Ok(outcome) => outcome,
        // The harness itself could not set up or read the test: never a pass.
        Err(e) => Outcome::Crash(format!("harness error: {e}")),
    }
}

fn run_vendored(case: &Case) -> Result<Outcome, String> {
    let test = Path::new(NODE_TESTS).join(&case.name);
    let bytes = std::fs::read(test.join("model.onnx")).map_err(|e| format!("model.onnx: {e}"))?;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| format!("model.onnx: {e}"))?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let project = root.path().join("project");
    make_project(&test, &project, &model)?;

    let stdout = std::fs::File::create(root.path().join("stdout")).map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(root.path().join("stderr")).map_err(|e| e.to_string())?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_qairt"))
        .arg("build")
        .arg(&project)
        .args(["--message-format", "json"])
        .current_dir(&project)
        .env("NO_GRAPHICS", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run qairt: {e}"))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::Hang);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(root.path().join("stderr")).unwrap_or_default();
    let stdout = std::fs::read_to_string(root.path().join("stdout")).unwrap_or_default();

    let Some(code) = status.code() else {
        return Ok(Outcome::Crash(format!("{status}\n    {}", excerpt(&stderr))));
    };
    if code == 101 || stderr.contains("panicked") {
        return Ok(Outcome::Panic(format!("exit {code}\n    {}", excerpt(&stderr))));
    }
    match code {
        0 => {}
        1 => {
            let diags = parse_diagnostics(&stderr);
            return Ok(match diags.first() {
                Some((code, message)) => {
                    Outcome::Diagnostic { reason: reason_class(code, message), message: message.clone() }
                }
                None => Outcome::Crash(format!("exit 1 without a diagnostic\n    {}", excerpt(&stderr))),
            });
        }
        other => {
            return Ok(Outcome::Wrong(format!(
                "exit {other} (no thresholds are set)\n    {}\n    {}",
                excerpt(&stdout),
                excerpt(&stderr)
            )));
        }
    }

    // Exit 0: every output must be there, in its own element type, and match.
    let graph = model.graph.as_ref().ok_or("model has no graph")?;
    let results = project.join("out/cpu/outputs/Result_0");
    let mut problems = Vec::new();
    for (j, output) in graph.output.iter().enumerate() {
        let name = output.name.as_deref().unwrap_or_default();
        let file = results.join(format!("{}.raw", qairt::quant::aimet::sanitize_name(name)));
        if tensor_elem_type(output).is_none() {
            problems.push(format!("output {j} {name:?} is a {}: no raw form to compare", value_kind(output)));
            continue;
        }
        let got = match std::fs::read(&file) {
            Ok(got) => got,
            Err(e) => {
                problems.push(format!("output {j} {name:?}: {}: {e}", file.display()));
                continue;
            }
        };
        let expected = read_proto(&test.join(format!("test_data_set_0/output_{j}.pb")))?;
        if let Err(e) = compare_output(&got, &expected) {
            problems.push(format!("output {j} {name:?} ({}): {e}", type_name(expected.data_type.unwrap_or(0))));
        }
    }
    Ok(if problems.is_empty() { Outcome::Pass } else { Outcome::Wrong(problems.join("\n    ")) })
}

// ---------------------------------------------------------------------------------------------
// The ratchet and the summary

fn status_path() -> PathBuf {
    Path::new(NODE_TESTS).join("status.txt")
}

fn read_status() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(status_path()).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, s)| (n.to_string(), s.trim().to_string()))
        .collect()
}

fn write_status(cases: &[Case], outcomes: &[Outcome]) {
    let mut text = String::from(
        "# Ratchet of tests/node_tests.rs: name<TAB>pass|diagnostic. Regenerate with\n\
         # QAIRT_UPDATE_NODE_STATUS=1 cargo test --test node_tests\n",
    );
    for (case, outcome) in cases.iter().zip(outcomes) {
        text.push_str(&format!("{}\t{}\n", case.name, outcome.class()));
    }
    std::fs::write(status_path(), text).expect("write status.txt");
}

#[derive(Default)]
struct Counts {
    passed: usize,
    total: usize,
}

fn summary_json(cases: &[Case], outcomes: &[Outcome], seconds: &[f64], wall: f64) -> serde_json::Value {
    let mut groups: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut ops: BTreeMap<&str, BTreeMap<&str, Counts>> = BTreeMap::new();
    let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tests = Vec::new();
    for ((case, outcome), secs) in cases.iter().zip(outcomes).zip(seconds) {
        let pass = *outcome == Outcome::Pass;
        let g = groups.entry(case.group.name()).or_default();
        g.total += 1;
        g.passed += usize::from(pass);
        for op in &case.ops {
            let c = ops.entry(op).or_default().entry(case.group.name()).or_default();
            c.total += 1;
            c.passed += usize::from(pass);
        }
        *classes.entry(outcome.class()).or_default() += 1;
        let (reason, detail) = match outcome {
            Outcome::Diagnostic { reason, message } => (Some(reason.as_str()), Some(message.as_str())),
            Outcome::Wrong(d) | Outcome::Panic(d) | Outcome::Crash(d) => (None, Some(d.as_str())),
            _ => (None, None),
        };
        if let Some(reason) = reason {
            *reasons.entry(reason).or_default() += 1;
        }
        tests.push(json!({
            "name": case.name, "group": case.group.name(), "ops": case.ops, "status": outcome.class(),
            "reason": reason, "detail": detail, "seconds": (secs * 1000.0).round() / 1000.0,
        }));
    }
    let counts = |c: &Counts| json!({"passed": c.passed, "total": c.total});
    let mut histogram: Vec<(&str, usize)> = reasons.into_iter().collect();
    histogram.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    json!({
        "onnx_version": "1.22.0",
        "rtol": RTOL, "atol": ATOL,
        "wall_seconds": (wall * 10.0).round() / 10.0,
        "groups": groups.iter().map(|(g, c)| (g.to_string(), counts(c))).collect::<serde_json::Map<_, _>>(),
        "classes": classes,
        "ops": ops.iter().map(|(op, by)| {
            (op.to_string(), by.iter().map(|(g, c)| (g.to_string(), counts(c))).collect::<serde_json::Map<_, _>>().into())
        }).collect::<serde_json::Map<_, _>>(),
        "reasons": histogram.iter().map(|(r, n)| json!({"reason": r, "tests": n})).collect::<Vec<_>>(),
        "tests": tests,
    })
}

fn summary_path() -> PathBuf {
    std::env::var_os("QAIRT_NODE_SUMMARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("node_tests/summary.json"))
}

/// Prints past libtest's output capture: the totals are wanted on every run.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn onnx_node_tests_through_the_cli() {
    let cases = read_corpus();
    let count = |g: Group| cases.iter().filter(|c| c.group == g).count();
    // The corpus is all of ONNX 1.22.0's node tests: 1,383 with one node, 382 with several.
    assert_eq!((count(Group::Single), count(Group::Expanded)), (1383, 382), "corpus.tsv is incomplete");

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<(Outcome, f64)>>> = Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let t = Instant::now();
                    let outcome = run_case(case);
                    results.lock().unwrap()[i] = Some((outcome, t.elapsed().as_secs_f64()));
                }
            });
        }
    });
    let wall = started.elapsed().as_secs_f64();
    let (outcomes, seconds): (Vec<Outcome>, Vec<f64>) =
        results.into_inner().unwrap().into_iter().map(|r| r.expect("every test ran")).unzip();

    let summary = summary_json(&cases, &outcomes, &seconds, wall);
    let path = summary_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&summary).unwrap() + "\n").unwrap();

    // What must never happen.
    let mut failures = Vec::new();
    for (case, outcome) in cases.iter().zip(&outcomes) {
        if outcome.is_failure() {
            let detail = match outcome {
                Outcome::Wrong(d) | Outcome::Panic(d) | Outcome::Crash(d) => d.clone(),
                _ => format!("no exit within {} s", TIME_LIMIT.as_secs()),
            };
            failures.push(format!("{} {}: {detail}", outcome.class(), case.name));
        }
    }

    // The ratchet.
    let update = std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1");
    let expected = read_status();
    let mut regressed = Vec::new();
    let mut newly_passing = Vec::new();
    let mut unlisted = Vec::new();
    for (case, outcome) in cases.iter().zip(&outcomes) {
        match expected.get(&case.name).map(String::as_str) {
            None => unlisted.push(case.name.clone()),
            Some("pass") if *outcome != Outcome::Pass => {
                regressed.push(format!("{}: expected to pass, {}: {outcome:?}", case.name, outcome.class()))
            }
            Some(s) if s != "pass" && *outcome == Outcome::Pass => newly_passing.push(case.name.clone()),
            _ => {}
        }
    }
    let stale: Vec<&String> = expected.keys().filter(|n| !cases.iter().any(|c| &c.name == *n)).collect();
    let doc = operators_doc(&cases, &outcomes);
    let doc_is_current = std::fs::read_to_string(OPERATORS_DOC).is_ok_and(|committed| committed == doc);
    if update {
        write_status(&cases, &outcomes);
        std::fs::write(OPERATORS_DOC, &doc).unwrap();
    }

    let passed = |g: Group| cases.iter().zip(&outcomes).filter(|(c, o)| c.group == g && **o == Outcome::Pass).count();
    let total = format!(
        "node tests: single {}/{} passed, expanded {}/{} passed (pytorch-converted {}/{}); {} in {:.0} s; summary {}",
        passed(Group::Single),
        count(Group::Single),
        passed(Group::Expanded),
        count(Group::Expanded),
        passed(Group::PytorchConverted),
        count(Group::PytorchConverted),
        summary["classes"],
        wall,
        path.display()
    );
    report(&total);

    let mut message = String::new();
    if !failures.is_empty() {
        message += &format!("\n{} tests end in a wrong answer, panic, crash or hang:\n  {}\n", failures.len(), {
            failures.join("\n  ")
        });
    }
    if !update {
        if !regressed.is_empty() {
            message += &format!(
                "\n{} tests expected to pass (status.txt) no longer pass:\n  {}\n",
                regressed.len(),
                regressed.join("\n  ")
            );
        }
        let how = format!("update tests/data/onnx-node/status.txt with {UPDATE_ENV}=1 cargo test --test node_tests");
        if !newly_passing.is_empty() {
            message += &format!(
                "\n{} tests now pass that status.txt does not expect to ({how}):\n  {}\n",
                newly_passing.len(),
                newly_passing.join("\n  ")
            );
        }
        if !doc_is_current {
            message += &format!("\ndocs/operators.md is not what the registry and this run give ({how})\n");
        }
        if !unlisted.is_empty() || !stale.is_empty() {
            message += &format!(
                "\nstatus.txt lacks {} tests and lists {} that are not in corpus.tsv ({how}); first: {:?} {:?}\n",
                unlisted.len(),
                stale.len(),
                unlisted.first(),
                stale.first()
            );
        }
    }
    assert!(message.is_empty(), "{total}\n{message}");
}

/// Element types of a test's graph inputs and outputs (lower-case as ONNX spells them) and its
/// `ai.onnx` opset.
fn test_types(case: &Case) -> (std::collections::BTreeSet<String>, Option<i64>) {
    let path = Path::new(NODE_TESTS).join(&case.name).join("model.onnx");
    let Ok(bytes) = std::fs::read(path) else { return Default::default() };
    let Ok(model) = ModelProto::decode(bytes.as_slice()) else { return Default::default() };
    let opset = model.opset_import.iter().find(|o| matches!(o.domain(), "" | "ai.onnx")).map(|o| o.version());
    let Some(graph) = model.graph else { return Default::default() };
    let types = graph
        .input
        .iter()
        .chain(&graph.output)
        .filter_map(tensor_elem_type)
        .map(|t| type_name(t).to_lowercase())
        .collect();
    (types, opset)
}

fn operators_doc(cases: &[Case], outcomes: &[Outcome]) -> String {
    let results: Vec<operators_doc::TestResult> = cases
        .iter()
        .zip(outcomes)
        .map(|(case, outcome)| {
            let pass = *outcome == Outcome::Pass;
            let (types, opset) =
                if pass && case.group == Group::Single { test_types(case) } else { Default::default() };
            operators_doc::TestResult {
                group: case.group.name(),
                ops: &case.ops,
                pass,
                reason: match outcome {
                    Outcome::Diagnostic { reason, .. } => Some(reason.as_str()),
                    _ => None,
                },
                types,
                opset,
            }
        })
        .collect();
    operators_doc::render(&results, qairt::onnx::MIN_OPSET, qairt::onnx::MAX_OPSET)
}

fn tensor(data_type: DataType, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto { dims: dims.to_vec(), data_type: Some(data_type as i32), raw_data: Some(raw), ..Default::default() }
}

#[test]
fn outputs_compare_in_their_own_element_type() {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let expected = tensor(DataType::Float, &[4], f32s(&[1.0, f32::NAN, f32::INFINITY, 0.0]));
    assert_eq!(compare_output(&f32s(&[1.0005, f32::NAN, f32::INFINITY, 5e-8]), &expected), Ok(()));
    // Just outside rtol; an infinity must be matched exactly; a NaN only by a NaN.
    assert!(compare_output(&f32s(&[1.0012, f32::NAN, f32::INFINITY, 0.0]), &expected).is_err());
    assert!(compare_output(&f32s(&[1.0, f32::NAN, f32::MAX, 0.0]), &expected).is_err());
    assert!(compare_output(&f32s(&[1.0, 0.0, f32::INFINITY, 0.0]), &expected).is_err());

    // An int64 output written as float32 is wrong even when the values are right.
    let ints = tensor(DataType::Int64, &[2], [3i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect());
    let err = compare_output(&f32s(&[3.0, -1.0]), &ints).unwrap_err();
    assert!(err.contains("the size of float32 data"), "{err}");
    assert_eq!(compare_output(&[3, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255], &ints), Ok(()));
    let err = compare_output(&[4, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255], &ints).unwrap_err();
    assert!(err.contains("first at flat index 0: got 4, expected 3"), "{err}");

    // float16 from the typed int32_data field, two bytes a value.
    let halfs = TensorProto {
        dims: vec![2],
        data_type: Some(DataType::Float16 as i32),
        int32_data: vec![0x3c00, 0xc000], // 1.0, -2.0
        ..Default::default()
    };
    assert_eq!(raw_bytes(&halfs).unwrap(), [0x00, 0x3c, 0x00, 0xc0]);
    assert!(compare_output(&[0x00, 0x3c, 0x00, 0xc0], &halfs).is_ok());
    assert!(compare_output(&[0x00, 0x3c, 0x08, 0xc0], &halfs).is_err()); // -2.0156
}

#[test]
fn diagnostics_are_parsed_into_reason_classes() {
    let stderr = "node \"Cast_0\" (Cast): the Cast target has element type FLOAT16 (/tmp/x/model.onnx)\n    \
                  Diagnostic severity: error\ndiagnostic help: convert the model\ndiagnostic code: qairt::onnx::import\n\
                  node \"ArgMax_0\" (ArgMax): unsupported op \"ArgMax\" (domain \"ai.onnx\", opset 13)\n    \
                  Diagnostic severity: error\ndiagnostic code: qairt::onnx::import\n";
    let diags = parse_diagnostics(stderr);
    assert_eq!(diags.len(), 2);
    let classes: Vec<String> = diags.iter().map(|(c, m)| reason_class(c, m)).collect();
    assert_eq!(classes, ["unsupported element type FLOAT16", "unsupported op ArgMax"]);
    let runtime = "node \"Pad_0\" (Pad): Pad input #1 (pads) \"pads\" must be a constant or computable at import, \
                   but it is computed at run time (/tmp/p/model.onnx)";
    assert_eq!(reason_class("qairt::onnx::import", runtime), "input computed at run time (Pad)");
    assert_eq!(
        reason_class(
            "qairt::onnx::import",
            "node \"Q_15\" (QuantizeLinear): its output \"y\" is a graph output (/t/m)"
        ),
        "onnx::import: (QuantizeLinear): its output \"…\" is a graph output"
    );
}
