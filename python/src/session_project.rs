//! The project a `Session` on an `.onnx` file builds: a `qairt.toml` written from the
//! session's options (the same keys as `qairt.toml`'s `[[target]]`, `[model]` and
//! `[calibration]`), calibration arrays written as raw files with an input list, built by the
//! same engine as `qairt build`, so its stages are cached and reused like any project's.
//!
//! Where it lives: `output_dir` when given (the qaic option "stores model binaries at the
//! directory location provided"), else one directory per model file and set of options under
//! `$XDG_CACHE_HOME/qairt/sessions/` (`~/.cache/qairt/sessions/`), all sessions of one model
//! sharing one content-addressed cache: a second session with other bitwidths re-parses and
//! re-calibrates nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use qairt::diag::closest;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use crate::arrays::numpy_name;
use crate::errors;

/// The target every session project builds.
pub const TARGET: &str = "session";

/// The first line of every `qairt.toml` a session writes: a file without it is never
/// overwritten (a project someone else made).
const MARKER: &str = "# Written by qairt.Session: the project of one session (rewritten by the next).";

/// Keys of a `[[target]]` table in `qairt.toml` (README.md lists what each means).
const TARGET_KEYS: &[&str] = &[
    "backend",
    "act_bitwidth",
    "weight_bitwidth",
    "bias_bitwidth",
    "act_calibration",
    "param_calibration",
    "act_schema",
    "param_schema",
    "percentile",
    "per_channel",
    "overrides",
    "float_fallback",
    "algorithms",
    "per_row",
    "restrict_quantization_steps",
    "ignore_encodings",
];

/// Target keys whose value is a path (made absolute: they are relative to the caller's
/// working directory, not to the session's project).
const PATH_KEYS: &[&str] = &["overrides"];

/// Keys of `[model]`, with the qaic name `onnx_define_symbol` for `define_symbols`.
const MODEL_KEYS: &[&str] = &["define_symbols", "onnx_define_symbol", "input_dims"];

/// Keys of the session itself.
const SESSION_KEYS: &[&str] = &["calibration", "calibration_max_samples", "verify", "verify_max_samples", "output_dir"];

/// A session's options sorted into what goes where.
struct SessionOptions<'py> {
    /// The `[[target]]` table.
    target: Table,
    /// The `[model]` table.
    model: Table,
    output_dir: Option<PathBuf>,
    calibration: Option<Bound<'py, PyAny>>,
    calibration_max: Option<i64>,
    verify: Option<Bound<'py, PyAny>>,
    verify_max: Option<i64>,
}

impl<'py> SessionOptions<'py> {
    /// Sorts `options` (keys in order; `None` values left out); an unknown key is an error with
    /// a did-you-mean.
    fn parse(model: &Path, options: &BTreeMap<String, Bound<'py, PyAny>>) -> PyResult<SessionOptions<'py>> {
        let mut parsed = SessionOptions {
            target: Table::new(),
            model: Table::new(),
            output_dir: None,
            calibration: None,
            calibration_max: None,
            verify: None,
            verify_max: None,
        };
        parsed.target.insert("name", Item::Value(TARGET.into()));
        parsed.model.insert("path", Item::Value(path_value(model)));
        for (key, value) in options.iter().filter(|(_, value)| !value.is_none()) {
            match key.as_str() {
                "output_dir" => parsed.output_dir = Some(std::path::absolute(value.extract::<PathBuf>()?)?),
                "calibration" => parsed.calibration = Some(value.clone()),
                "calibration_max_samples" => parsed.calibration_max = Some(value.extract::<i64>()?),
                "verify" => parsed.verify = Some(value.clone()),
                "verify_max_samples" => parsed.verify_max = Some(value.extract::<i64>()?),
                "onnx_define_symbol" | "define_symbols" => {
                    parsed.model.insert("define_symbols", Item::Value(define_symbols(value)?));
                }
                "input_dims" => {
                    parsed.model.insert("input_dims", Item::Value(toml_value(key, value)?));
                }
                key if PATH_KEYS.contains(&key) => {
                    let path = std::path::absolute(value.extract::<PathBuf>()?)?;
                    parsed.target.insert(key, Item::Value(path_value(&path)));
                }
                key if TARGET_KEYS.contains(&key) => {
                    parsed.target.insert(key, Item::Value(toml_value(key, value)?));
                }
                key => return Err(unknown_option(key)),
            }
        }
        if !parsed.target.contains_key("backend") {
            // The float target: a Session on an .onnx runs the model as it is unless told otherwise.
            parsed.target.insert("backend", Item::Value("cpu".into()));
        }
        if parsed.verify.is_none() && parsed.calibration.is_none() {
            return Err(errors::error(
                "qairt::python::no_verify_data",
                "a Session on an .onnx model builds and verifies it, and has no data to verify it on",
                "pass verify= (or calibration=): an input-list path, or a list of dicts of numpy arrays by input name",
            ));
        }
        Ok(parsed)
    }
}

/// Writes the session's project for `model` and `options`; returns its `qairt.toml`.
pub fn write(model: &Path, options: &Bound<'_, PyDict>) -> PyResult<PathBuf> {
    let model = std::path::absolute(model)?;
    let mut sorted: BTreeMap<String, Bound<'_, PyAny>> = BTreeMap::new();
    for (key, value) in options.iter() {
        sorted.insert(key.extract()?, value);
    }
    let parsed = SessionOptions::parse(&model, &sorted)?;
    let shared_cache = parsed.output_dir.is_none();
    let dir = match &parsed.output_dir {
        Some(dir) => dir.clone(),
        None => sessions_root()?.join(short_hash(model.to_string_lossy().as_bytes())).join(options_hash(&sorted)?),
    };
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("qairt.toml");
    if let Ok(existing) = std::fs::read_to_string(&config)
        && !existing.starts_with(MARKER)
    {
        return Err(errors::error(
            "qairt::python::output_dir",
            format!("{} holds a qairt.toml that no Session wrote", dir.display()),
            "give output_dir a directory of its own: a Session never overwrites a file it did not write",
        ));
    }

    let mut doc = DocumentMut::new();
    let mut project = Table::new();
    project.insert("name", Item::Value(TARGET.into()));
    if shared_cache {
        // Every session of one model shares its cache (next to the sessions' directories).
        project.insert("cache_dir", Item::Value("../cache".into()));
        project.insert("dirs_outside_project", Item::Value(true.into()));
    }
    doc.insert("project", Item::Table(project));
    doc.insert("model", Item::Table(parsed.model));
    // The build verifies what it compiles: on the verify data, else on the calibration data.
    let declared = declared_inputs(&model)?;
    let verify = parsed.verify.as_ref().or(parsed.calibration.as_ref());
    for (table_name, data, max) in
        [("calibration", parsed.calibration.as_ref(), parsed.calibration_max), ("verify", verify, parsed.verify_max)]
    {
        let Some(data) = data else { continue };
        let list = input_list(&dir.join(table_name), &declared, table_name, data)?;
        let mut table = Table::new();
        table.insert("input_list", Item::Value(path_value(&list)));
        if let Some(max) = max {
            table.insert("max_samples", Item::Value(max.into()));
        }
        doc.insert(table_name, Item::Table(table));
    }
    let mut targets = toml_edit::ArrayOfTables::new();
    targets.push(parsed.target);
    doc.insert("target", Item::ArrayOfTables(targets));
    write_atomically(&config, format!("{MARKER}\n{doc}").as_bytes())?;
    Ok(config)
}

/// Every key a session takes, for did-you-mean.
fn unknown_option(key: &str) -> PyErr {
    let known = TARGET_KEYS.iter().chain(MODEL_KEYS).chain(SESSION_KEYS).chain(&["options_path", "enable_metrics"]);
    let mut help = "options are qairt.toml's [[target]] keys (backend, act_bitwidth, overrides, ...), \
                    define_symbols / onnx_define_symbol, input_dims, calibration, calibration_max_samples, verify, \
                    verify_max_samples, output_dir, options_path and enable_metrics"
        .to_string();
    if let Some(near) = closest(key, known.copied()) {
        help = format!("did you mean \"{near}\"? ({help})");
    }
    errors::error("qairt::python::unknown_option", format!("unknown Session option \"{key}\""), help)
}

/// `$XDG_CACHE_HOME/qairt/sessions`, else `~/.cache/qairt/sessions`.
fn sessions_root() -> PyResult<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .ok_or_else(|| {
            errors::error(
                "qairt::python::output_dir",
                "neither XDG_CACHE_HOME nor HOME is set: no place for the session's build",
                "pass output_dir=",
            )
        })?;
    Ok(base.join("qairt").join("sessions"))
}

fn short_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..16].to_string()
}

/// A directory name for one set of options: their repr, in key order (calibration arrays by
/// content, so the same data gives the same directory).
fn options_hash(options: &BTreeMap<String, Bound<'_, PyAny>>) -> PyResult<String> {
    let mut hasher = blake3::Hasher::new();
    for (key, value) in options {
        hasher.update(key.as_bytes());
        hasher.update(b"=");
        if matches!(key.as_str(), "calibration" | "verify") && value.is_instance_of::<PyList>() {
            let list = value.cast::<PyList>().map_err(|_| data_error(key))?;
            for sample in list.iter() {
                let sample = sample.cast::<PyDict>().map_err(|_| data_error(key))?.clone();
                for (name, array) in sample.iter() {
                    hasher.update(name.extract::<String>()?.as_bytes());
                    hasher.update(&array.call_method0("tobytes")?.extract::<Vec<u8>>()?);
                    hasher.update(array.getattr("dtype")?.str()?.to_string().as_bytes());
                }
            }
        } else {
            hasher.update(value.repr()?.to_string().as_bytes());
        }
        hasher.update(b"\n");
    }
    Ok(hasher.finalize().to_hex()[..16].to_string())
}

/// `onnx_define_symbol` as qaic takes it (a list of `(name, value)` pairs) or a dict.
fn define_symbols(value: &Bound<'_, PyAny>) -> PyResult<Value> {
    let mut table = InlineTable::new();
    if let Ok(dict) = value.cast::<PyDict>() {
        for (name, size) in dict.iter() {
            table.insert(&name.extract::<String>()?, size.extract::<i64>()?.into());
        }
    } else {
        for pair in value.try_iter()? {
            let pair = pair?;
            let pair = pair.cast::<PyTuple>().map_err(|_| {
                errors::error(
                    "qairt::python::option",
                    "onnx_define_symbol takes (name, value) pairs or a dict",
                    "e.g. onnx_define_symbol=[(\"batch\", 1)]",
                )
            })?;
            table.insert(&pair.get_item(0)?.extract::<String>()?, pair.get_item(1)?.extract::<i64>()?.into());
        }
    }
    Ok(Value::InlineTable(table))
}

/// A Python option value as a TOML value (bool, int, float, str, lists and dicts of them).
fn toml_value(key: &str, value: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(b) = value.extract::<bool>() {
        return Ok(b.into());
    }
    if let Ok(i) = value.extract::<i64>() {
        return Ok(i.into());
    }
    if let Ok(f) = value.extract::<f64>() {
        return Ok(f.into());
    }
    if let Ok(s) = value.extract::<String>() {
        return Ok(s.into());
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut table = InlineTable::new();
        for (k, v) in dict.iter() {
            table.insert(&k.extract::<String>()?, toml_value(key, &v)?);
        }
        return Ok(Value::InlineTable(table));
    }
    if let Ok(items) = value.try_iter() {
        let mut array = Array::new();
        for item in items {
            array.push(toml_value(key, &item?)?);
        }
        return Ok(Value::Array(array));
    }
    Err(errors::error(
        "qairt::python::option",
        format!("option \"{key}\" cannot be {}", value.get_type().name()?),
        "options take what qairt.toml takes: booleans, numbers, strings and lists or dicts of them",
    ))
}

fn path_value(path: &Path) -> Value {
    path.to_string_lossy().as_ref().into()
}

fn data_error(option: &str) -> PyErr {
    errors::error(
        "qairt::python::data",
        format!("{option} must be an input-list path or a list of dicts of numpy arrays by input name"),
        format!("e.g. {option}=[{{\"input\": array}}, ...] or {option}=\"data/input_list.txt\""),
    )
}

/// The input list of `option`'s data: the path given, or the arrays written as raw files in
/// `root` (each in C order, checked against the model's declared input names and element
/// types) with a list of `name:=path` lines.
fn input_list(
    root: &Path,
    declared: &[(String, Option<&'static str>)],
    option: &str,
    data: &Bound<'_, PyAny>,
) -> PyResult<PathBuf> {
    if let Ok(path) = data.extract::<PathBuf>() {
        return Ok(std::path::absolute(path)?);
    }
    let samples = data.cast::<PyList>().map_err(|_| data_error(option))?;
    let mut list = String::new();
    for (n, sample) in samples.iter().enumerate() {
        let sample = sample.cast::<PyDict>().map_err(|_| data_error(option))?.clone();
        let mut line = Vec::new();
        for (name, array) in sample.iter() {
            let name: String = name.extract()?;
            let Some((slot, expected)) =
                declared.iter().enumerate().find(|(_, (declared, _))| *declared == name).map(|(i, (_, t))| (i, t))
            else {
                let names: Vec<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
                let mut help = format!("the model's inputs: {}", names.join(", "));
                if let Some(near) = closest(&name, names.iter().copied()) {
                    help = format!("did you mean \"{near}\"? ({help})");
                }
                return Err(errors::error(
                    "qairt::python::data",
                    format!("{option} sample {n} names \"{name}\", which is not an input of the model"),
                    help,
                ));
            };
            let array = array.cast::<PyUntypedArray>().map_err(|_| data_error(option))?;
            let given = array.dtype().to_string();
            if let Some(expected) = expected
                && given != *expected
            {
                return Err(errors::error(
                    "qairt::python::data",
                    format!("{option} sample {n}: input \"{name}\" is {expected}; the array given is {given}"),
                    format!("convert it with .astype(numpy.{expected})"),
                ));
            }
            let bytes: Vec<u8> = array.call_method1("tobytes", ("C",))?.extract()?;
            let rel = format!("{n}/input_{slot}.raw");
            let path = root.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap_or(root))?;
            write_atomically(&path, &bytes)?;
            line.push(format!("{name}:={rel}"));
        }
        list.push_str(&line.join(" "));
        list.push('\n');
    }
    let list_path = root.join("input_list.txt");
    std::fs::create_dir_all(root)?;
    write_atomically(&list_path, list.as_bytes())?;
    Ok(list_path)
}

/// The model's declared graph inputs: name and numpy type name (`None` for a type numpy lacks).
fn declared_inputs(model: &Path) -> PyResult<Vec<(String, Option<&'static str>)>> {
    let bytes = std::fs::read(model).map_err(|e| {
        errors::error("qairt::io::read", format!("cannot read {}: {e}", model.display()), "check the model path")
    })?;
    let proto = qairt::onnx::decode_model(&bytes).map_err(|e| {
        errors::error("qairt::onnx::decode", format!("{}: {e}", model.display()), "is it an ONNX model?")
    })?;
    Ok(qairt::onnx::declared_inputs(&proto)
        .into_iter()
        .map(|input| (input.name, input.dtype.ok().and_then(numpy_name)))
        .collect())
}

/// `bytes` to `path` through a temporary file in its directory and a rename: never a
/// half-written file under its final name.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
