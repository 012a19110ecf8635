//! `qairt init MODEL.onnx`: a `qairt.toml` for a model, read from what the model declares: its
//! inputs (element types, sizes, and `define_symbols`/`input_dims` for the dims it leaves
//! open), the calibration and verification input lists (the user's, or templates that say
//! which raw files each sample needs), a float `cpu` target and an 8-bit `htp-w8a8` one.
//!
//! Never replaces a file: an existing `qairt.toml` or input list is left as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::diag::Diag;
use crate::onnx::{DeclaredDim, DeclaredInput};
use crate::project::paths;

use super::files::write_new;
use super::{render, style};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The ONNX model to build
    model: PathBuf,
    /// The project directory to write qairt.toml into (default: the model's directory)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// An input list of calibration samples (the SDK's input_list.txt) instead of a template
    #[arg(long, value_name = "FILE")]
    calibration: Option<PathBuf>,
    /// An input list of held-out samples to verify on (default: a template, or the
    /// calibration list when one is given)
    #[arg(long, value_name = "FILE")]
    verify: Option<PathBuf>,
    /// The verify samples' labels, one class index per line (adds top-1 accuracy)
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
}

/// The size given to a named dim the model leaves open, until the user sets the real one.
const SYMBOL_DEFAULT: usize = 1;

pub fn run(args: InitArgs) -> u8 {
    match init(&args) {
        Ok(lines) => {
            if !style::quiet() {
                for line in lines {
                    println!("{line}");
                }
            }
            0
        }
        Err(diag) => {
            render::print(&diag);
            1
        }
    }
}

fn init(args: &InitArgs) -> Result<Vec<String>, Diag> {
    let model = absolute(&args.model)?;
    let bytes = std::fs::read(&model).map_err(|e| {
        Diag::error("qairt::init::model", format!("cannot read the model {}: {e}", args.model.display()))
            .with_help("give the path of an .onnx file")
    })?;
    let proto = crate::onnx::decode_model(&bytes).map_err(|e| {
        let diag = Diag::error("qairt::init::model", format!("{}: {}", args.model.display(), e.message));
        match &e.hint {
            Some(hint) => diag.with_help(hint.clone()),
            None => diag,
        }
    })?;
    let inputs = crate::onnx::declared_inputs(&proto);
    if let Some(input) = inputs.iter().find(|i| i.dtype.is_err()) {
        let found = input.dtype.clone().err().unwrap_or_default();
        return Err(Diag::error(
            "qairt::init::model",
            format!(
                "input {:?} of {} has element type {found}, which qairt cannot feed",
                input.name,
                args.model.display()
            ),
        )
        .with_help("qairt runs numeric and bool inputs; export the model with such an input instead"));
    }
    let dir = match &args.dir {
        Some(dir) => absolute(dir)?,
        None => model.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let toml_path = dir.join("qairt.toml");
    if toml_path.exists() {
        return Err(Diag::error("qairt::init::exists", format!("{} exists already", toml_path.display()))
            .in_file(&toml_path)
            .with_help("qairt init never replaces a file: edit it, or move it away and run qairt init again"));
    }
    let relative =
        |path: &Path| -> Result<String, Diag> { Ok(toml_string(&paths::relative_to(&dir, &absolute(path)?))) };

    let mut wrote = Vec::new();
    let mut templates = Vec::new();
    let mut kept = Vec::new();
    let calibration = match &args.calibration {
        Some(list) => relative(list)?,
        None => {
            let path = dir.join("calib/input_list.txt");
            if write_template(&path, "Calibration", &inputs)? {
                templates.push("calib/input_list.txt");
            } else {
                kept.push("calib/input_list.txt");
            }
            toml_string(Path::new("calib/input_list.txt"))
        }
    };
    let (verify, verify_note) = match (&args.verify, &args.calibration) {
        (Some(list), _) => (relative(list)?, None),
        (None, Some(_)) => (
            calibration.clone(),
            Some("# Verified on the calibration samples: point this at held-out ones for a fair score.\n"),
        ),
        (None, None) => {
            let path = dir.join("verify/input_list.txt");
            if write_template(&path, "Verification", &inputs)? {
                templates.push("verify/input_list.txt");
            } else {
                kept.push("verify/input_list.txt");
            }
            (toml_string(Path::new("verify/input_list.txt")), None)
        }
    };
    let labels = args.labels.as_deref().map(relative).transpose()?;
    let name = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let text = config_text(&ConfigParts {
        name: &name,
        model: &relative(&model)?,
        inputs: &inputs,
        calibration: &calibration,
        verify: &verify,
        verify_note,
        labels: labels.as_deref(),
    });
    write_new(&toml_path, text.as_bytes()).map_err(|e| write_error(&toml_path, e))?;
    wrote.push(format!(
        "wrote {}: {} ({}), targets cpu and htp-w8a8",
        toml_path.display(),
        plural(inputs.len(), "input"),
        inputs.iter().map(describe).collect::<Vec<_>>().join("; ")
    ));
    if !kept.is_empty() {
        wrote.push(format!("using the input lists that exist already: {}", kept.join(" and ")));
    }
    if !templates.is_empty() {
        wrote.push(format!(
            "wrote {}: list your samples' raw files there (each file says what they hold), then run `qairt build {}`",
            templates.join(" and "),
            dir.display()
        ));
    }
    Ok(wrote)
}

struct ConfigParts<'a> {
    name: &'a str,
    model: &'a str,
    inputs: &'a [DeclaredInput],
    calibration: &'a str,
    verify: &'a str,
    verify_note: Option<&'a str>,
    labels: Option<&'a str>,
}

/// The `qairt.toml` text: every value checked by a test to parse as a valid configuration.
fn config_text(p: &ConfigParts) -> String {
    let mut symbols: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut open_inputs = Vec::new();
    for input in p.inputs {
        for dim in input.dims.iter().flatten() {
            match dim {
                DeclaredDim::Symbol(s) => symbols.entry(s).or_default().push(input.name.clone()),
                DeclaredDim::Open => {
                    if !open_inputs.contains(&input) {
                        open_inputs.push(input);
                    }
                }
                DeclaredDim::Fixed(_) => {}
            }
        }
    }
    let mut t = String::new();
    t.push_str(&format!(
        "# Written by `qairt init` for {}: a float target (cpu) and an 8-bit quantized one\n\
         # (htp-w8a8), built with `qairt build`. Every key is described in qairt's README.\n\n",
        p.model
    ));
    t.push_str(&format!("[project]\nname = {}\n\n", toml_string(Path::new(p.name))));
    t.push_str(&format!("[model]\npath = {}\n", p.model));
    for input in p.inputs {
        t.push_str(&format!("# input {}\n", describe(input)));
    }
    if !symbols.is_empty() {
        t.push_str("# The model leaves these dims open: the sizes to build (and deploy) with.\n");
        let entries: Vec<String> = symbols.keys().map(|s| format!("{} = {SYMBOL_DEFAULT}", toml_key(s))).collect();
        t.push_str(&format!("define_symbols = {{ {} }}\n", entries.join(", ")));
    }
    if !open_inputs.is_empty() {
        t.push_str("# Dims with neither a size nor a name (shown as 1 here): give each input's real shape.\n");
        let entries: Vec<String> = open_inputs
            .iter()
            .map(|input| {
                let dims: Vec<String> = input
                    .dims
                    .iter()
                    .flatten()
                    .map(|d| match d {
                        DeclaredDim::Fixed(n) => n.to_string(),
                        DeclaredDim::Symbol(_) | DeclaredDim::Open => SYMBOL_DEFAULT.to_string(),
                    })
                    .collect();
                format!("{} = [{}]", toml_key(&input.name), dims.join(", "))
            })
            .collect();
        t.push_str(&format!("input_dims = {{ {} }}\n", entries.join(", ")));
    }
    t.push_str(&format!(
        "\n[calibration]\n# One line per sample: the raw files of the model's inputs (the SDK's input_list.txt).\n\
         input_list = {}\n\n",
        p.calibration
    ));
    t.push_str(
        "[quantization]                 # defaults for every quantized target\n\
         act_bitwidth = 8\n\
         weight_bitwidth = 8\n\
         bias_bitwidth = 32\n\
         act_calibration = \"min-max\"\n\
         param_calibration = \"min-max\"\n\
         act_schema = \"asymmetric\"\n\
         param_schema = \"symmetric\"\n\
         per_channel = true\n\n",
    );
    t.push_str("[[target]]\nname = \"cpu\"\nbackend = \"cpu\"\n\n");
    t.push_str("[[target]]\nname = \"htp-w8a8\"\nbackend = \"htp\"\n\n");
    t.push_str("[verify]\n");
    if let Some(note) = p.verify_note {
        t.push_str(note);
    }
    t.push_str(&format!("input_list = {}\n", p.verify));
    match p.labels {
        Some(labels) => t.push_str(&format!("labels = {labels}\n")),
        None => t.push_str("# labels = \"verify/labels.txt\"   # one class index per sample: adds top-1 accuracy\n"),
    }
    t.push_str(
        "\n[verify.thresholds]\n\
         # Uncomment to make `qairt build` exit with status 2 when a quantized target misses them:\n\
         # min_sqnr_db = 25.0\n\
         # max_accuracy_drop = 0.01\n",
    );
    t
}

/// Writes an input-list template at `path` unless a file is there already (then the user's
/// list is kept and used). Returns whether it wrote one.
fn write_template(path: &Path, what: &str, inputs: &[DeclaredInput]) -> Result<bool, Diag> {
    if path.exists() {
        return Ok(false);
    }
    let mut t = format!(
        "# {what} samples for qairt, in the SDK's input_list.txt format: one line per sample, naming\n\
         # the raw file of each model input (paths relative to this file). A raw file holds the\n\
         # tensor's values and nothing else: little-endian, row-major, no header.\n#\n"
    );
    for input in inputs {
        t.push_str(&format!("#   {}\n", describe(input)));
    }
    let example: Vec<String> =
        inputs.iter().map(|i| format!("{}:=sample_0/{}.raw", i.name, file_stem(&i.name))).collect();
    t.push_str(&format!("#\n# A line of this list, for example:\n#   {}\n", example.join(" ")));
    write_new(path, t.as_bytes()).map_err(|e| write_error(path, e))?;
    Ok(true)
}

/// `"x": float32 [batch=1, 3, 224, 224], 602112 bytes`
fn describe(input: &DeclaredInput) -> String {
    let Ok(dtype) = &input.dtype else { return format!("{:?}", input.name) };
    let Some(dims) = &input.dims else { return format!("{:?}: {} (no shape declared)", input.name, dtype.name()) };
    let text: Vec<String> = dims
        .iter()
        .map(|d| match d {
            DeclaredDim::Fixed(n) => n.to_string(),
            DeclaredDim::Symbol(s) => format!("{s}={SYMBOL_DEFAULT}"),
            DeclaredDim::Open => format!("?={SYMBOL_DEFAULT}"),
        })
        .collect();
    let elements = dims.iter().try_fold(1usize, |n, d| match d {
        DeclaredDim::Fixed(v) => n.checked_mul(*v),
        _ => Some(n * SYMBOL_DEFAULT),
    });
    let bytes = elements.and_then(|n| n.checked_mul(dtype.size_bytes()));
    match bytes {
        Some(bytes) => format!("{:?}: {} [{}], {bytes} bytes", input.name, dtype.name(), text.join(", ")),
        None => format!("{:?}: {} [{}]", input.name, dtype.name(), text.join(", ")),
    }
}

/// A file name for an input's raw file: the name with anything but letters, digits, `-`,
/// `_` and `.` replaced.
fn file_stem(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

fn toml_string(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().replace('\\', "/")).to_string()
}

fn toml_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_string()
    } else {
        toml::Value::String(key.to_string()).to_string()
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

fn absolute(path: &Path) -> Result<PathBuf, Diag> {
    std::path::absolute(path)
        .map(|p| paths::normalize(&p))
        .map_err(|e| Diag::error("qairt::init::path", format!("cannot resolve {}: {e}", path.display())))
}

fn write_error(path: &Path, e: std::io::Error) -> Diag {
    let diag = Diag::error("qairt::init::write", format!("cannot write {}: {e}", path.display()));
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        diag.with_help("qairt init never replaces a file: move it away and run qairt init again")
    } else {
        diag.with_help("check that the directory is writable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DType;

    fn input(name: &str, dims: Vec<DeclaredDim>) -> DeclaredInput {
        DeclaredInput { name: name.into(), dtype: Ok(DType::F32), dims: Some(dims) }
    }

    #[test]
    fn the_written_configuration_parses_with_symbols_and_open_dims() {
        let inputs = vec![
            input("input ids", vec![DeclaredDim::Symbol("batch".into()), DeclaredDim::Symbol("seq len".into())]),
            input("x", vec![DeclaredDim::Open, DeclaredDim::Fixed(3)]),
        ];
        let text = config_text(&ConfigParts {
            name: "bert \"tiny\"",
            model: "\"model.onnx\"",
            inputs: &inputs,
            calibration: "\"calib/input_list.txt\"",
            verify: "\"verify/input_list.txt\"",
            verify_note: None,
            labels: Some("\"labels.txt\""),
        });
        let config =
            crate::project::parse_config(Path::new("/p/qairt.toml"), &text).unwrap_or_else(|d| panic!("{d:?}\n{text}"));
        assert_eq!(config.name, "bert \"tiny\"");
        assert_eq!(config.model.define_symbols, BTreeMap::from([("batch".into(), 1), ("seq len".into(), 1)]));
        assert_eq!(config.model.input_dims, BTreeMap::from([("x".into(), vec![1, 3])]));
        let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["cpu", "htp-w8a8"]);
        assert_eq!(config.verify.labels.as_deref(), Some(Path::new("/p/labels.txt")));
    }

    #[test]
    fn an_input_is_described_with_its_type_shape_and_size() {
        let x = input("x", vec![DeclaredDim::Symbol("batch".into()), DeclaredDim::Fixed(3), DeclaredDim::Fixed(8)]);
        assert_eq!(describe(&x), "\"x\": float32 [batch=1, 3, 8], 96 bytes");
    }
}
