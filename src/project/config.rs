//! `qairt.toml` schema: the raw, span-carrying form serde reads, and the resolved
//! [`ProjectConfig`] every other layer uses.
//!
//! **Invariant:** every user mistake becomes a [`Diag`] pointing at the offending line and
//! column of `qairt.toml` with the allowed values; paths are resolved relative to the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::io::{IoConfig, RawIo, read_io};
use crate::diag::{Diag, closest};
use crate::quant::settings::{CalibrationMethod, QuantSettings, Schema};

/// The resolved project: defaults applied, per-target quantization merged, paths absolute.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectConfig {
    /// The `qairt.toml` file itself.
    pub file: PathBuf,
    /// Its directory: every relative path is resolved against it.
    pub root: PathBuf,
    pub name: String,
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// `[project] checkpoint_budget_mb`, in bytes: what each quantized target's simulate may
    /// keep in the cache at cut points of its program, so that an edit downstream of a cut
    /// re-runs only the steps after it (0 turns checkpoints off).
    pub checkpoint_budget: u64,
    pub model: ModelConfig,
    pub calibration: Option<CalibrationConfig>,
    pub targets: Vec<TargetConfig>,
    pub verify: VerifyConfig,
    /// `[io]`: the form of the input files read and the output files written.
    pub io: IoConfig,
    /// `[simulate]`: what a build writes besides the stages' outputs.
    pub simulate: SimulateConfig,
    /// `[cache]`: the shared remote cache, when the file names one (the environment's
    /// `QAIRT_REMOTE_CACHE` and `QAIRT_REMOTE_CACHE_MODE` win over it).
    pub cache: CacheConfig,
    /// Where in `qairt.toml` each path was written, so a missing file points at its line.
    pub path_spans: BTreeMap<PathBuf, (usize, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub define_symbols: BTreeMap<String, usize>,
    /// Whole shapes of named inputs (`input_dims`), which win over `define_symbols`.
    pub input_dims: BTreeMap<String, Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationConfig {
    pub input_list: PathBuf,
    pub max_samples: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TargetConfig {
    pub name: String,
    pub backend: String,
    pub quant: QuantSettings,
    pub overrides: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VerifyConfig {
    pub input_list: PathBuf,
    pub labels: Option<PathBuf>,
    pub golden: Option<PathBuf>,
    pub max_samples: Option<usize>,
    pub thresholds: Thresholds,
    /// `[verify] tensor_mapping`: golden names for graph tensors, used with `golden`.
    pub tensor_mapping: Option<PathBuf>,
    /// `[verify] mode` and `metrics`.
    pub debug: DebugSettings,
    /// `[verify] output_files`: how `out/<target>/outputs/` and `reference/` are written.
    pub output_files: OutputFiles,
}

/// `[cache]`: the remote cache of the project.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheConfig {
    pub remote: Option<super::remote::RemoteSpec>,
    pub mode: Option<super::remote::RemoteMode>,
}

/// `[simulate]`: opt-in views of the compiled program's run on the verify inputs. Neither
/// enters a stage key: turning one on or off runs no stage again, it adds or removes files
/// under `out/<target>/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimulateConfig {
    /// `debug`: every tensor a step produces, per verify sample, as float32, in
    /// `out/<target>/debug/Result_<N>/` (the SDK's `qnn-net-run --debug`).
    pub debug: bool,
    /// `profile`: each step's time and bytes moved, in `out/<target>/profile.csv`,
    /// `profile.json` and the report (the SDK's `--profiling_level detailed`).
    pub profile: bool,
}

/// The element type of the raw output files: each output's own (the default, the SDK's
/// `--use_native_output_files`), or float32 for every output (the SDK's default form).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OutputFiles {
    #[default]
    Native,
    Float32,
}

impl OutputFiles {
    pub const ALL: [OutputFiles; 2] = [OutputFiles::Native, OutputFiles::Float32];

    pub fn name(self) -> &'static str {
        match self {
            OutputFiles::Native => "native",
            OutputFiles::Float32 => "float32",
        }
    }

    pub fn parse(text: &str) -> Option<OutputFiles> {
        OutputFiles::ALL.into_iter().find(|o| o.name() == text)
    }
}

pub use crate::verify::Thresholds;
use crate::verify::checker::{Algorithm, CheckerConfig, TensorClass};
use crate::verify::sensitivity::Precision;
use crate::verify::{DebugSettings, MetricSpec, Mode};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    project: Spanned<RawProject>,
    model: Spanned<RawModel>,
    calibration: Option<RawCalibration>,
    quantization: Option<RawQuant>,
    target: Option<Vec<Spanned<RawQuant>>>,
    verify: Option<Spanned<RawVerify>>,
    io: Option<RawIo>,
    simulate: Option<RawSimulate>,
    cache: Option<RawCache>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    remote: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimulate {
    debug: Option<bool>,
    profile: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: Spanned<String>,
    out_dir: Option<Spanned<String>>,
    cache_dir: Option<Spanned<String>>,
    /// Lets `out_dir` and `cache_dir` name directories outside the project (never the project
    /// itself or a directory that contains it).
    dirs_outside_project: Option<Spanned<bool>>,
    checkpoint_budget_mb: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    path: Spanned<String>,
    #[serde(default)]
    define_symbols: BTreeMap<String, Spanned<i64>>,
    #[serde(default)]
    input_dims: BTreeMap<String, Spanned<Vec<Spanned<i64>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalibration {
    input_list: Spanned<String>,
    max_samples: Option<Spanned<i64>>,
}

/// `[quantization]` and `[[target]]` share one key set; `name` and `backend` are accepted
/// only in a target (checked by hand, so both tables keep `deny_unknown_fields`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQuant {
    name: Option<Spanned<String>>,
    backend: Option<Spanned<String>>,
    act_bitwidth: Option<Spanned<i64>>,
    weight_bitwidth: Option<Spanned<i64>>,
    bias_bitwidth: Option<Spanned<i64>>,
    act_calibration: Option<Spanned<String>>,
    param_calibration: Option<Spanned<String>>,
    act_schema: Option<Spanned<String>>,
    param_schema: Option<Spanned<String>>,
    percentile: Option<Spanned<f64>>,
    per_channel: Option<bool>,
    overrides: Option<Spanned<String>>,
    float_fallback: Option<Spanned<bool>>,
    algorithms: Option<Spanned<Vec<String>>>,
    per_row: Option<bool>,
    restrict_quantization_steps: Option<Spanned<String>>,
    ignore_encodings: Option<Spanned<bool>>,
    batchnorm_folding: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    input_list: Spanned<String>,
    labels: Option<Spanned<String>>,
    golden: Option<Spanned<String>>,
    tensor_mapping: Option<Spanned<String>>,
    max_samples: Option<Spanned<i64>>,
    mode: Option<Spanned<String>>,
    metrics: Option<Vec<Spanned<toml::Value>>>,
    suggest_precision: Option<Spanned<String>>,
    output_files: Option<Spanned<String>>,
    /// `[verify.checker.<class>] <algorithm> = <threshold> | true | false`.
    #[serde(default)]
    checker: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    #[serde(default)]
    thresholds: RawThresholds,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    min_sqnr_db: Option<Spanned<f64>>,
    min_cosine: Option<Spanned<f64>>,
    min_top1_agreement: Option<Spanned<f64>>,
    max_accuracy_drop: Option<Spanned<f64>>,
}

/// `[project] checkpoint_budget_mb` when not set: 256 MiB per quantized target.
pub const DEFAULT_CHECKPOINT_BUDGET_MB: u64 = 256;
/// The largest budget accepted (1 TiB), so that the byte count cannot overflow.
const MAX_CHECKPOINT_BUDGET_MB: i64 = 1 << 20;

/// Collects every problem in the file instead of stopping at the first.
struct Checker<'a> {
    file: &'a Path,
    diags: Vec<Diag>,
}

impl Checker<'_> {
    fn error<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>, help: impl Into<String>) {
        let span = spanned.span();
        let message = message.into();
        self.diags.push(
            Diag::error("qairt::config::invalid_value", message.clone())
                .in_file(self.file)
                .at(span.start, span.end - span.start, message)
                .with_help(help),
        );
    }

    fn one_of(&mut self, value: &Spanned<i64>, allowed: &[i64], what: &str) -> u32 {
        let v = *value.get_ref();
        if !allowed.contains(&v) {
            let list = allowed.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
            self.error(value, format!("{what} {v} is not supported"), format!("allowed values: {list}"));
        }
        v.clamp(0, u32::MAX as i64) as u32
    }

    fn name_in<T: Copy>(
        &mut self,
        value: &Spanned<String>,
        what: &str,
        names: &[&str],
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(value.get_ref());
        if parsed.is_none() {
            let mut help = format!("allowed values: {}", names.join(", "));
            if let Some(near) = closest(value.get_ref(), names.iter().copied()) {
                help = format!("did you mean \"{near}\"? ({help})");
            }
            self.error(value, format!("unknown {what} \"{}\"", value.get_ref()), help);
        }
        parsed
    }

    fn count(&mut self, value: &Option<Spanned<i64>>, what: &str) -> Option<usize> {
        let value = value.as_ref()?;
        if *value.get_ref() < 1 {
            self.error(
                value,
                format!("{what} must be at least 1"),
                "use a positive sample count, or remove the key to use every line",
            );
            return None;
        }
        Some(*value.get_ref() as usize)
    }
}

/// Applies the keys set in `raw` on top of `base`.
fn apply_quant(base: &QuantSettings, raw: &RawQuant, check: &mut Checker) -> QuantSettings {
    let mut q = base.clone();
    if let Some(v) = &raw.act_bitwidth {
        q.act_bitwidth = check.one_of(v, &[8, 16], "act_bitwidth");
    }
    if let Some(v) = &raw.weight_bitwidth {
        q.weight_bitwidth = check.one_of(v, &[4, 8, 16], "weight_bitwidth");
    }
    if let Some(v) = &raw.bias_bitwidth {
        q.bias_bitwidth = check.one_of(v, &[8, 32], "bias_bitwidth");
    }
    // A legacy name (`symmetric`) may imply a schema; an explicit `*_schema` key still wins.
    let mut implied_act_schema = None;
    let mut implied_param_schema = None;
    if let Some(v) = &raw.act_calibration {
        let names = CalibrationMethod::NAMES;
        if let Some((method, schema)) = check.name_in(v, "calibration method", names, CalibrationMethod::parse_legacy) {
            if method == CalibrationMethod::Adjusted {
                check.error(
                    v,
                    "the `adjusted` quantizer is for weights only",
                    "use it as param_calibration; for activations use min-max, percentile, mse, sqnr or entropy",
                );
            }
            q.act_calibration = method;
            implied_act_schema = schema;
        }
    }
    if let Some(v) = &raw.param_calibration {
        let names = CalibrationMethod::NAMES;
        if let Some((method, schema)) = check.name_in(v, "calibration method", names, CalibrationMethod::parse_legacy) {
            q.param_calibration = method;
            implied_param_schema = schema;
        }
    }
    q.act_schema = implied_act_schema.unwrap_or(q.act_schema);
    q.param_schema = implied_param_schema.unwrap_or(q.param_schema);
    if let Some(v) = &raw.act_schema {
        q.act_schema = check.name_in(v, "schema", Schema::NAMES, Schema::parse).unwrap_or(q.act_schema);
    }
    if let Some(v) = &raw.param_schema {
        q.param_schema = check.name_in(v, "schema", Schema::NAMES, Schema::parse).unwrap_or(q.param_schema);
    }
    if let Some(v) = &raw.percentile {
        let p = *v.get_ref();
        if !(90.0..=100.0).contains(&p) {
            check.error(v, format!("percentile {p} is out of range"), "allowed range: 90 to 100 (default 99.99)");
        }
        q.percentile = p;
    }
    if let Some(v) = raw.per_channel {
        q.per_channel = v;
    }
    if let Some(v) = &raw.float_fallback {
        q.float_fallback = *v.get_ref();
    }
    if let Some(v) = raw.per_row {
        q.per_row = v;
    }
    if let Some(v) = &raw.ignore_encodings {
        q.ignore_encodings = *v.get_ref();
    }
    if let Some(v) = &raw.restrict_quantization_steps {
        match parse_restrict_steps(v.get_ref()) {
            Ok(steps) => q.restrict_steps = Some(steps),
            Err(problem) => check.error(
                v,
                format!("restrict_quantization_steps: {problem}"),
                "write two signed hex numbers, e.g. \"-0x80 0x7F\" (8-bit) or \"-0x8000 0x7FFF\" (16-bit)",
            ),
        }
    }
    if q.param_calibration == CalibrationMethod::Adjusted
        && q.weight_bitwidth != 8
        && let Some(span) =
            raw.weight_bitwidth.as_ref().map(|v| v.span()).or(raw.param_calibration.as_ref().map(|v| v.span()))
    {
        let spanned = Spanned::new(span, ());
        check.error(
            &spanned,
            format!("the `adjusted` quantizer is for 8-bit weights, but weight_bitwidth is {}", q.weight_bitwidth),
            "use weight_bitwidth = 8, or another param_calibration (min-max, mse, sqnr, ...)",
        );
    }
    if q.float_fallback
        && q.ignore_encodings
        && let Some(v) = raw.ignore_encodings.as_ref().or(raw.float_fallback.as_ref())
    {
        check.error(
            v,
            "float_fallback and ignore_encodings cannot be combined",
            "float_fallback takes every encoding from the overrides file and the model (the SDK rejects \
             --floatFallback with --ignore_encodings); drop one of them",
        );
    }
    if let Some(v) = &raw.algorithms {
        for name in v.get_ref() {
            if name != "cle" {
                check.error(v, format!("unknown algorithm \"{name}\""), "allowed values: cle");
            }
        }
        q.algorithms = v.get_ref().clone();
    }
    if let Some(v) = &raw.batchnorm_folding {
        q.batchnorm_folding = *v.get_ref();
    }
    // Equalization folds the BatchNorms first (their statistics drive high-bias absorption),
    // as AIMET's equalize_model does: it cannot run on a graph that keeps them.
    if !q.batchnorm_folding
        && q.algorithms.iter().any(|a| a == "cle")
        && let Some(v) = raw.batchnorm_folding.as_ref().map(|v| v.span()).or(raw.algorithms.as_ref().map(|v| v.span()))
    {
        check.error(
            &Spanned::new(v, ()),
            "batchnorm_folding = false and algorithms = [\"cle\"] cannot be combined",
            "cross-layer equalization folds the BatchNorms before equalizing; drop one of the two keys",
        );
    }
    q
}

/// `"-0x80 0x7F"`: two hex literals with an optional minus sign, as the SDK's
/// `--restrict_quantization_steps` takes them; the grid must contain zero.
fn parse_restrict_steps(text: &str) -> Result<(i64, i64), String> {
    let numbers: Vec<&str> = text.split_whitespace().collect();
    let [min, max] = numbers[..] else {
        return Err(format!("expected two numbers, found {}", numbers.len()));
    };
    let hex = |s: &str| -> Result<i64, String> {
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let digits = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
            .ok_or_else(|| format!("\"{s}\" is not a hex literal (expected 0x...)"))?;
        let value = i64::from_str_radix(digits, 16).map_err(|_| format!("\"{s}\" is not a hex literal"))?;
        if value > 1 << 31 {
            return Err(format!("\"{s}\" is beyond 32 bits"));
        }
        Ok(if negative { -value } else { value })
    };
    let (min, max) = (hex(min)?, hex(max)?);
    if !(min < 0 && max > 0) {
        return Err(format!("the grid [{min}, {max}] must run from a negative MIN to a positive MAX"));
    }
    Ok((min, max))
}

/// Parses and validates `qairt.toml`. `file` is its path (used for resolving relative paths
/// and in diagnostics); `text` its contents.
pub fn parse_config(file: &Path, text: &str) -> Result<ProjectConfig, Vec<Diag>> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| vec![toml_error(file, &e)])?;
    let root = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut check = Checker { file, diags: Vec::new() };
    let path_spans = std::cell::RefCell::new(BTreeMap::new());
    let resolve = |p: &Spanned<String>| {
        let path = root.join(p.get_ref());
        path_spans.borrow_mut().insert(path.clone(), (p.span().start, p.span().len()));
        path
    };

    let project = raw.project.get_ref();
    if project.name.get_ref().trim().is_empty() {
        check.error(&project.name, "the project name is empty", "give the project a name, e.g. name = \"digits\"");
    }
    let out_dir = project.out_dir.as_ref().map(resolve).unwrap_or_else(|| root.join("out"));
    let cache_dir = project.cache_dir.as_ref().map(resolve).unwrap_or_else(|| root.join("cache"));
    check_written_dirs(&mut check, &root, project, &out_dir, &cache_dir);
    let checkpoint_budget = match &project.checkpoint_budget_mb {
        None => DEFAULT_CHECKPOINT_BUDGET_MB << 20,
        Some(v) if (0..=MAX_CHECKPOINT_BUDGET_MB).contains(v.get_ref()) => (*v.get_ref() as u64) << 20,
        Some(v) => {
            check.error(
                v,
                format!("checkpoint_budget_mb must be between 0 and {MAX_CHECKPOINT_BUDGET_MB}"),
                format!("a size in MiB (default {DEFAULT_CHECKPOINT_BUDGET_MB}); 0 keeps no checkpoints"),
            );
            0
        }
    };

    let raw_model = raw.model.get_ref();
    let mut define_symbols = BTreeMap::new();
    for (name, value) in &raw_model.define_symbols {
        if *value.get_ref() < 1 {
            check.error(
                value,
                format!("symbol `{name}` must be a positive dimension"),
                "e.g. define_symbols = { batch = 1 }",
            );
        }
        define_symbols.insert(name.clone(), (*value.get_ref()).max(1) as usize);
    }
    let mut input_dims = BTreeMap::new();
    for (name, dims) in &raw_model.input_dims {
        if dims.get_ref().is_empty() {
            check.error(
                dims,
                format!("input `{name}` needs at least one dim"),
                "e.g. input_dims = { input = [1, 3, 224, 224] }",
            );
        }
        for dim in dims.get_ref() {
            if *dim.get_ref() < 1 {
                check.error(
                    dim,
                    format!("dim {} of input `{name}` must be a positive size", dim.get_ref()),
                    "e.g. input_dims = { input = [1, 3, 224, 224] }",
                );
            }
        }
        input_dims.insert(name.clone(), dims.get_ref().iter().map(|d| (*d.get_ref()).max(1) as usize).collect());
    }
    let model = ModelConfig { path: resolve(&raw_model.path), define_symbols, input_dims };

    let calibration = raw.calibration.as_ref().map(|c| CalibrationConfig {
        input_list: resolve(&c.input_list),
        max_samples: check.count(&c.max_samples, "max_samples"),
    });

    let defaults_raw = raw.quantization.unwrap_or_default();
    for key in [&defaults_raw.name, &defaults_raw.backend].into_iter().flatten() {
        check.error(key, "`name` and `backend` belong in a [[target]] table", "move this key into a [[target]] table");
    }
    let defaults = apply_quant(&QuantSettings::default(), &defaults_raw, &mut check);
    let default_overrides = defaults_raw.overrides.as_ref().map(resolve);

    let mut targets: Vec<TargetConfig> = Vec::new();
    let raw_targets = raw.target.unwrap_or_default();
    if raw_targets.is_empty() {
        check.diags.push(
            Diag::error("qairt::config::no_target", "qairt.toml defines no [[target]]")
                .in_file(file)
                .at(0, 0, "expected at least one [[target]] table")
                .with_help("add e.g.\n[[target]]\nname = \"htp-w8a8\"\nbackend = \"htp\""),
        );
    }
    for t in &raw_targets {
        let raw_t = t.get_ref();
        let Some(name) = &raw_t.name else {
            check.error(t, "this [[target]] has no `name`", "add name = \"...\" to the target");
            continue;
        };
        let Some(backend) = &raw_t.backend else {
            check.error(
                t,
                format!("target \"{}\" has no `backend`", name.get_ref()),
                "add backend = \"htp\" (or \"cpu\", ...)",
            );
            continue;
        };
        if let Some(problem) = super::paths::target_name_problem(name.get_ref()) {
            check.error(
                name,
                problem,
                "it names the directory out/<target>/: use letters, digits, '-', '_' and '.', e.g. \"htp-w8a8\"",
            );
        }
        if let Some(other) = targets.iter().find(|other| other.name.eq_ignore_ascii_case(name.get_ref())) {
            let message = if other.name == *name.get_ref() {
                format!("target \"{}\" is defined twice", name.get_ref())
            } else {
                // Case-insensitive file systems (macOS, Windows) would give both one directory.
                format!("targets \"{}\" and \"{}\" differ only in case", other.name, name.get_ref())
            };
            check.error(name, message, "give every target a unique name (out/<target>/ is its directory)");
        }
        targets.push(TargetConfig {
            name: name.get_ref().clone(),
            backend: backend.get_ref().clone(),
            quant: apply_quant(&defaults, raw_t, &mut check),
            overrides: raw_t.overrides.as_ref().map(resolve).or_else(|| default_overrides.clone()),
        });
    }

    let Some(raw_verify) = raw.verify else {
        check.diags.push(
            Diag::error("qairt::config::no_verify", "qairt.toml has no [verify] table")
                .in_file(file)
                .at(0, 0, "expected a [verify] table")
                .with_help("add [verify] with input_list = \"<test input list>\""),
        );
        return Err(check.diags);
    };
    let v = raw_verify.get_ref();
    let mut threshold = |value: &Option<Spanned<f64>>, range: std::ops::RangeInclusive<f64>, help: &str| {
        let value = value.as_ref()?;
        if !range.contains(value.get_ref()) {
            check.error(value, format!("threshold {} is out of range", value.get_ref()), help.to_string());
        }
        Some(*value.get_ref())
    };
    let thresholds = Thresholds {
        min_sqnr_db: threshold(&v.thresholds.min_sqnr_db, -200.0..=400.0, "an SQNR in dB, e.g. 25.0"),
        min_cosine: threshold(&v.thresholds.min_cosine, -1.0..=1.0, "a cosine similarity in [-1, 1], e.g. 0.99"),
        min_top1_agreement: threshold(&v.thresholds.min_top1_agreement, 0.0..=1.0, "a fraction in [0, 1], e.g. 0.98"),
        max_accuracy_drop: threshold(&v.thresholds.max_accuracy_drop, 0.0..=1.0, "a fraction in [0, 1], e.g. 0.01"),
    };
    if let (Some(drop), None) = (&v.thresholds.max_accuracy_drop, &v.labels) {
        check.error(
            drop,
            "max_accuracy_drop needs labels to measure accuracy",
            "add labels = \"<labels file>\" to [verify], or remove this threshold",
        );
    }
    let precision_names: Vec<&str> = Precision::ALL.iter().map(|p| p.name()).collect();
    let precision = v
        .suggest_precision
        .as_ref()
        .and_then(|p| check.name_in(p, "suggest_precision", &precision_names, Precision::parse))
        .unwrap_or_default();
    let output_names: Vec<&str> = OutputFiles::ALL.iter().map(|o| o.name()).collect();
    let output_files = v
        .output_files
        .as_ref()
        .and_then(|o| check.name_in(o, "output_files", &output_names, OutputFiles::parse))
        .unwrap_or_default();
    let mode_names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
    let mode = v.mode.as_ref().and_then(|m| check.name_in(m, "mode", &mode_names, Mode::parse)).unwrap_or_default();
    let mut metrics: Vec<MetricSpec> = Vec::new();
    for entry in v.metrics.iter().flatten() {
        match metric_spec_text(entry.get_ref()) {
            Err(problem) => check.error(entry, problem, METRIC_HELP),
            Ok(text) => match MetricSpec::parse(&text) {
                Err(e) => check.error(entry, format!("invalid metric `{text}`: {e}"), METRIC_HELP),
                Ok(spec) if metrics.iter().any(|m| m.column() == spec.column()) => {
                    check.error(entry, format!("metric `{}` is listed twice", spec.column()), "list each verifier once")
                }
                Ok(spec) if matches!(spec.verifier, crate::verify::verifiers::Verifier::MeanIou { .. }) => check.error(
                    entry,
                    "MeanIOU compares detection outputs (boxes and classes), not one tensor per layer",
                    "per-layer metrics take one tensor; MeanIOU is not available in [verify] metrics",
                ),
                Ok(spec) => metrics.push(spec),
            },
        }
    }
    if let (Some(mapping), None) = (&v.tensor_mapping, &v.golden) {
        check.error(
            mapping,
            "tensor_mapping is only used with golden",
            "add golden = \"<dump directory>\" to [verify]",
        );
    }
    if let Some(golden) = &v.golden {
        check_golden_dir(&mut check, &root, golden);
    }
    let simulate = raw.simulate.as_ref().map_or_else(SimulateConfig::default, |s| SimulateConfig {
        debug: s.debug.unwrap_or(false),
        profile: s.profile.unwrap_or(false),
    });
    let cache = cache_config(raw.cache.as_ref(), &mut check);
    let verify = VerifyConfig {
        input_list: resolve(&v.input_list),
        labels: v.labels.as_ref().map(resolve),
        golden: v.golden.as_ref().map(resolve),
        max_samples: check.count(&v.max_samples, "max_samples"),
        thresholds,
        tensor_mapping: v.tensor_mapping.as_ref().map(resolve),
        debug: DebugSettings { mode, metrics, precision, checker: checker_config(&v.checker, &mut check) },
        output_files,
    };

    let mut io_problems = Vec::new();
    let io = read_io(raw.io.as_ref(), file.to_path_buf(), &mut io_problems);
    for problem in io_problems {
        check.diags.push(
            Diag::error("qairt::config::invalid_value", problem.message.clone())
                .in_file(file)
                .at(problem.span.0, problem.span.1, problem.message)
                .with_help(problem.help),
        );
    }

    if !check.diags.is_empty() {
        return Err(check.diags);
    }
    Ok(ProjectConfig {
        path_spans: path_spans.into_inner(),
        file: file.to_path_buf(),
        root,
        name: project.name.get_ref().clone(),
        out_dir,
        cache_dir,
        checkpoint_budget,
        model,
        calibration,
        targets,
        verify,
        io,
        simulate,
        cache,
    })
}

/// `[cache] remote` and `mode`, each mistake at its line.
fn cache_config(raw: Option<&RawCache>, check: &mut Checker) -> CacheConfig {
    use super::remote::{RemoteMode, parse_remote_url};
    let Some(raw) = raw else { return CacheConfig::default() };
    let remote = raw.remote.as_ref().and_then(|url| match parse_remote_url(url.get_ref(), true) {
        Ok(spec) => Some(spec),
        Err(problem) => {
            check.error(url, problem.message, problem.help);
            None
        }
    });
    let mode = raw.mode.as_ref().and_then(|mode| match RemoteMode::parse(mode.get_ref()) {
        Ok(mode) => Some(mode),
        Err(message) => {
            check.error(mode, message, "mode = \"read\" lets this project only read the remote cache");
            None
        }
    });
    CacheConfig { remote, mode }
}

/// `out_dir` and `cache_dir` are removed whole by `qairt clean`: neither may be the project
/// directory or contain it, nor contain the other, and both stay inside the project unless
/// `dirs_outside_project = true` says the user means it.
fn check_written_dirs(check: &mut Checker, root: &Path, project: &RawProject, out_dir: &Path, cache_dir: &Path) {
    use super::paths::{Placement, overlap, placement};
    let outside_allowed = project.dirs_outside_project.as_ref().is_some_and(|flag| *flag.get_ref());
    for (key, raw, dir) in [("out_dir", &project.out_dir, out_dir), ("cache_dir", &project.cache_dir, cache_dir)] {
        let Some(raw) = raw else { continue };
        let (message, help) = match placement(root, dir) {
            Placement::Inside => continue,
            Placement::Outside if outside_allowed => continue,
            Placement::ProjectRoot => (
                format!("{key} names the project directory itself"),
                format!(
                    "`qairt clean` removes {key} whole: name a directory of its own, e.g. {key} = \"{}\"",
                    default_dir(key)
                ),
            ),
            Placement::Ancestor => (
                format!("{key} names a directory that contains the project"),
                format!(
                    "`qairt clean` removes {key} whole: name a directory inside the project, e.g. {key} = \"{}\"",
                    default_dir(key)
                ),
            ),
            Placement::Outside => (
                format!("{key} is outside the project directory"),
                format!(
                    "name a directory inside the project (e.g. {key} = \"{}\"), or add dirs_outside_project = true to [project] if it is meant to be elsewhere",
                    default_dir(key)
                ),
            ),
        };
        check.error(raw, message, help);
    }
    if overlap(out_dir, cache_dir) {
        let span = project.cache_dir.as_ref().or(project.out_dir.as_ref());
        if let Some(span) = span {
            check.error(
                span,
                "out_dir and cache_dir overlap (one is, or contains, the other)",
                "give each its own directory: `qairt clean` removes out_dir and keeps the cache",
            );
        }
    }
}

fn default_dir(key: &str) -> &'static str {
    if key == "out_dir" { "out" } else { "cache" }
}

/// `[verify] golden` is read recursively: a relative path stays inside the project (an absolute
/// path says the user means a dump elsewhere), and it is never the project or a directory
/// containing it (qairt's own `out/` and cache would be read as a dump).
fn check_golden_dir(check: &mut Checker, root: &Path, golden: &Spanned<String>) {
    use super::paths::{Placement, placement};
    let dir = root.join(golden.get_ref());
    let help =
        "name the dump directory itself, e.g. golden = \"golden\", or an absolute path for a dump outside the project";
    match placement(root, &dir) {
        Placement::Inside => {}
        Placement::Outside if Path::new(golden.get_ref()).is_absolute() => {}
        Placement::Outside => check.error(golden, "golden climbs out of the project directory", help),
        Placement::ProjectRoot | Placement::Ancestor => {
            check.error(golden, "golden names the project directory or one that contains it", help)
        }
    }
}

/// `[verify.checker.<class>]` tables over the SDK checker's defaults: a number sets an
/// algorithm's threshold, `true` turns it on with its default, `false` turns it off.
fn checker_config(
    raw: &BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    check: &mut Checker<'_>,
) -> CheckerConfig {
    let mut config = CheckerConfig::default();
    for (class_name, algorithms) in raw {
        let class = match class_name.get_ref().as_str() {
            "weight" => TensorClass::Weight,
            "bias" => TensorClass::Bias,
            "activation" => TensorClass::Activation,
            "input" => TensorClass::Input,
            other => {
                check.error(
                    class_name,
                    format!("[verify.checker.{other}] is not a tensor class"),
                    "classes: weight, bias, activation, input",
                );
                continue;
            }
        };
        for (algorithm_name, value) in algorithms {
            let Some(algorithm) = Algorithm::parse(algorithm_name.get_ref()) else {
                check.error(
                    algorithm_name,
                    format!("`{}` is not a quantization checker algorithm", algorithm_name.get_ref()),
                    "algorithms: minmax, maxdiff, sqnr, stats, data_range_analyzer, data_distribution_analyzer",
                );
                continue;
            };
            let result = match value.get_ref() {
                toml::Value::Boolean(true) => config.enable(class, algorithm),
                toml::Value::Boolean(false) => {
                    config.disable(class, algorithm);
                    Ok(())
                }
                toml::Value::Float(t) => config.set_threshold(class, algorithm, *t),
                toml::Value::Integer(t) => config.set_threshold(class, algorithm, *t as f64),
                other => {
                    check.error(
                        value,
                        format!("expected a threshold or true/false, found {}", other.type_str()),
                        "e.g. sqnr = 30.0 (a threshold), stats = false (off)",
                    );
                    Ok(())
                }
            };
            if let Err(e) = result {
                check.error(value, e.to_string(), "see docs/checker.md for each algorithm's classes and thresholds");
            }
        }
    }
    config
}

const METRIC_HELP: &str = "a metric is \"name[,key,value]...\" (e.g. \"rtolatol,rtolmargin,0.02,threshold,5\") or a table (e.g. { name = \"sqnr\", threshold = 30.0 }); names: rtolatol, adjustedrtolatol, topk, l1error, mae, mse, cosinesimilarity, sqnr, scaleddiff, kld, maxerror";

/// A `[verify] metrics` entry as the debugger's comma syntax: a string as it is, a table
/// `{ name = "...", key = value, threshold = ... }` as `name,key,value,...`.
fn metric_spec_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Table(table) => {
            let Some(toml::Value::String(name)) = table.get("name") else {
                return Err("a metric table needs name = \"<verifier>\"".into());
            };
            let mut parts = vec![name.clone()];
            for (key, value) in table.iter().filter(|(k, _)| k.as_str() != "name") {
                let text = match value {
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::String(s) => s.clone(),
                    other => {
                        return Err(format!(
                            "`{key}` must be a number, a boolean or a string, not {}",
                            other.type_str()
                        ));
                    }
                };
                parts.push(key.clone());
                parts.push(text);
            }
            Ok(parts.join(","))
        }
        other => Err(format!("a metric must be a string or a table, not {}", other.type_str())),
    }
}

fn toml_error(file: &Path, e: &toml::de::Error) -> Diag {
    let message = e.message().trim().to_string();
    let mut diag = Diag::error("qairt::config::syntax", format!("invalid qairt.toml: {message}")).in_file(file);
    if let Some(span) = e.span() {
        diag = diag.at(span.start, span.end.saturating_sub(span.start), message.clone());
    }
    let help = if let Some(near) = misspelled_key(&message) {
        format!("did you mean `{near}`? (see the `qairt.toml` reference in the README)")
    } else if message.contains("unknown field") {
        "remove or correct the key; the allowed keys are listed above (see README, `qairt.toml` reference)".into()
    } else if message.contains("missing field") {
        "add the missing key; see the `qairt.toml` reference in the README".into()
    } else if message.contains("expected a boolean") {
        "write true or false, without quotes".into()
    } else {
        "see the `qairt.toml` reference in the README".into()
    };
    diag.with_help(help)
}

/// The allowed key closest to the unknown one in serde's "unknown field `x`, expected one of
/// `a`, `b`" message, if one is close enough to be a likely typo.
fn misspelled_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let allowed = rest.split_once("expected")?.1;
    let keys: Vec<&str> = allowed.split('`').skip(1).step_by(2).collect();
    closest(unknown, keys.iter().copied()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[project]
name = "digits"

[model]
path = "model.onnx"

[calibration]
input_list = "calib/input_list.txt"

[quantization]
act_bitwidth = 8

[[target]]
name = "htp-w8a16"
backend = "htp"
act_bitwidth = 16

[[target]]
name = "cpu"
backend = "cpu"

[verify]
input_list = "test/input_list.txt"
[verify.thresholds]
min_sqnr_db = 25.0
"#;

    fn parse(text: &str) -> Result<ProjectConfig, Vec<Diag>> {
        parse_config(Path::new("/p/qairt.toml"), text)
    }

    fn line_of(text: &str, diag: &Diag) -> usize {
        let (start, _) = diag.span.expect("a span");
        text[..start].matches('\n').count() + 1
    }

    #[test]
    fn checkpoint_budget_is_in_mib_defaults_to_256_and_refuses_negatives() {
        assert_eq!(parse(MINIMAL).unwrap().checkpoint_budget, 256 << 20);
        let with = |value: &str| {
            MINIMAL.replace("name = \"digits\"\n", &format!("name = \"digits\"\ncheckpoint_budget_mb = {value}\n"))
        };
        assert_eq!(parse(&with("0")).unwrap().checkpoint_budget, 0);
        assert_eq!(parse(&with("1024")).unwrap().checkpoint_budget, 1 << 30);
        let text = with("-1");
        let diags = parse(&text).unwrap_err();
        assert!(diags[0].message.contains("checkpoint_budget_mb must be between 0 and"), "{:?}", diags[0].message);
        assert_eq!(line_of(&text, &diags[0]), 4);
    }

    #[test]
    fn verify_metrics_mode_and_precision_parse_in_both_forms() {
        let text = MINIMAL.replace(
            "input_list = \"test/input_list.txt\"\n",
            "input_list = \"test/input_list.txt\"\nmode = \"cumulative-layerwise\"\nsuggest_precision = \"float16\"\n\
             metrics = [\"sqnr,threshold,30\", { name = \"RtolAtol\", rtolmargin = 0.02, threshold = 5 }, \"topk,k,3\"]\n",
        );
        let debug = parse(&text).unwrap().verify.debug;
        assert_eq!(debug.mode, Mode::Cumulative);
        assert_eq!(debug.precision, Precision::Float16);
        let columns: Vec<&str> = debug.metrics.iter().map(|m| m.column()).collect();
        assert_eq!(columns, ["sqnr", "rtolatol", "topk"]);
        assert_eq!(debug.metrics[0].threshold, Some(30.0));
        assert_eq!(
            debug.metrics[1].verifier,
            crate::verify::verifiers::Verifier::RtolAtol { rtol_margin: 0.02, atol_margin: 0.01 }
        );
        assert_eq!(debug.metrics[1].threshold, Some(5.0));
        let default = parse(MINIMAL).unwrap().verify.debug;
        assert_eq!((default.mode, default.metrics.len()), (Mode::Oneshot, 0));
    }

    #[test]
    fn checker_tables_change_the_sdk_defaults_and_refuse_what_does_not_apply() {
        let with =
            |tables: &str| parse(&MINIMAL.replace("[verify.thresholds]", &format!("{tables}\n[verify.thresholds]")));
        let cfg = with("[verify.checker.weight]\nsqnr = 30\nstats = false\n[verify.checker.activation]\nstats = true")
            .unwrap();
        let checker = cfg.verify.debug.checker;
        assert_eq!(checker.class(TensorClass::Weight).thresholds.get(&Algorithm::Sqnr), Some(&30.0));
        assert!(!checker.class(TensorClass::Weight).enabled(Algorithm::Stats));
        assert!(checker.class(TensorClass::Activation).enabled(Algorithm::Stats));
        assert_eq!(checker.class(TensorClass::Bias), CheckerConfig::default().class(TensorClass::Bias));

        let text =
            MINIMAL.replace("[verify.thresholds]", "[verify.checker.activation]\nmaxdiff = 1.0\n[verify.thresholds]");
        let diags = parse(&text).unwrap_err();
        assert_eq!(line_of(&text, &diags[0]), 26, "{}", diags[0].message);
        assert!(diags[0].message.contains("maxdiff does not apply"), "{}", diags[0].message);
        let diags = with("[verify.checker.weights]\nsqnr = 30").unwrap_err();
        assert!(diags[0].message.contains("not a tensor class"), "{}", diags[0].message);
        let diags = with("[verify.checker.weight]\nsnr = 30").unwrap_err();
        assert!(diags[0].help.as_deref().unwrap().contains("data_range_analyzer"));
        let diags = with("[verify.checker.weight]\ndata_range_analyzer = 256").unwrap_err();
        assert!(diags[0].message.contains("cannot be set"), "{}", diags[0].message);
        let diags = with("[verify.checker.weight]\nsqnr = \"high\"").unwrap_err();
        assert!(diags[0].message.contains("found string"), "{}", diags[0].message);
    }

    #[test]
    fn bad_verify_metrics_point_at_the_entry() {
        let with = |metrics: &str| {
            let text = MINIMAL.replace(
                "input_list = \"test/input_list.txt\"\n",
                &format!("input_list = \"test/input_list.txt\"\nmetrics = [\n  \"mse\",\n  {metrics},\n]\n"),
            );
            let diags = parse(&text).unwrap_err();
            (line_of(&text, &diags[0]), diags[0].message.clone(), diags[0].help.clone().unwrap_or_default())
        };
        // MINIMAL's [verify] input_list is line 24: `metrics = [` 25, "mse" 26, the entry 27.
        let (line, message, help) = with("\"snr\"");
        assert_eq!(line, 27);
        assert!(message.contains("snr") && help.contains("sqnr"), "{message} / {help}");
        let (line, message, _) = with("{ name = \"mse\", threshold = 1 }");
        assert_eq!(line, 27);
        assert!(message.contains("listed twice"), "{message}");
        let (_, message, _) = with("{ rtolmargin = 1 }");
        assert!(message.contains("needs name"), "{message}");
        let (_, message, _) = with("\"rtolatol,rtolmargin\"");
        assert!(message.contains("rtolatol"), "{message}");
        let (_, message, _) = with("\"meaniou\"");
        assert!(message.contains("MeanIOU"), "{message}");
        let (_, message, _) = with("3");
        assert!(message.contains("string or a table"), "{message}");
        let text = MINIMAL.replace("[verify.thresholds]", "mode = \"partial\"\n[verify.thresholds]");
        let diags = parse(&text).unwrap_err();
        assert!(diags[0].help.as_deref().unwrap().contains("oneshot, cumulative, layerwise"));
        let text = MINIMAL.replace("[verify.thresholds]", "tensor_mapping = \"m.json\"\n[verify.thresholds]");
        assert!(parse(&text).unwrap_err()[0].message.contains("only used with golden"));
    }

    #[test]
    fn targets_inherit_defaults_and_override_them() {
        let cfg = parse(MINIMAL).unwrap();
        assert_eq!(cfg.targets[0].quant.act_bitwidth, 16);
        assert_eq!(cfg.targets[1].quant.act_bitwidth, 8);
        assert_eq!(cfg.model.path, Path::new("/p/model.onnx"));
        assert_eq!(cfg.out_dir, Path::new("/p/out"));
        assert_eq!(cfg.verify.thresholds.min_sqnr_db, Some(25.0));
    }

    #[test]
    fn an_unknown_key_points_at_its_line() {
        let text = MINIMAL.replace("act_bitwidth = 16", "act_bitwdth = 16");
        let diags = parse(&text).unwrap_err();
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.contains("act_bitwdth"), "{}", diags[0].message);
        assert_eq!(line_of(&text, &diags[0]), 17);
        assert!(diags[0].help.as_deref().unwrap().starts_with("did you mean `act_bitwidth`?"), "{:?}", diags[0].help);
        // Nothing close: the list of allowed keys is the help.
        let far = parse(&MINIMAL.replace("act_bitwidth = 16", "zzzzzz = 16")).unwrap_err();
        assert!(far[0].help.as_deref().unwrap().starts_with("remove or correct the key"), "{:?}", far[0].help);
    }

    #[test]
    fn bitwidth_three_is_refused_with_the_allowed_values() {
        let text = MINIMAL.replace("act_bitwidth = 16", "act_bitwidth = 3");
        let diags = parse(&text).unwrap_err();
        assert_eq!(line_of(&text, &diags[0]), 17);
        assert!(diags[0].help.as_deref().unwrap().contains("8, 16"));
    }

    #[test]
    fn a_misspelled_calibration_method_gets_a_suggestion() {
        let text = MINIMAL.replace("act_bitwidth = 16", "act_calibration = \"min_max\"");
        let diags = parse(&text).unwrap_err();
        assert!(diags[0].help.as_deref().unwrap().contains("did you mean \"min-max\""));
    }

    #[test]
    fn legacy_quantizer_names_are_aliases() {
        let target =
            |keys: &str| parse(&MINIMAL.replace("act_bitwidth = 16", keys)).map(|c| c.targets[0].quant.clone());
        let q = target("param_calibration = \"symmetric\"\nparam_schema = \"asymmetric\"").unwrap();
        // An explicit schema wins over the one `symmetric` implies.
        assert_eq!((q.param_calibration, q.param_schema), (CalibrationMethod::MinMax, Schema::Asymmetric));
        let q = target("act_calibration = \"symmetric\"").unwrap();
        assert_eq!((q.act_calibration, q.act_schema), (CalibrationMethod::MinMax, Schema::Symmetric));
        assert_eq!(target("act_calibration = \"tf\"").unwrap().act_calibration, CalibrationMethod::MinMax);
        assert_eq!(target("act_calibration = \"enhanced\"").unwrap().act_calibration, CalibrationMethod::Sqnr);
        assert_eq!(target("param_calibration = \"adjusted\"").unwrap().param_calibration, CalibrationMethod::Adjusted);
        let diags = target("act_calibration = \"adjusted\"").unwrap_err();
        assert!(diags[0].message.contains("weights only"), "{}", diags[0].message);
        let text = MINIMAL.replace("act_bitwidth = 16", "param_calibration = \"adjusted\"\nweight_bitwidth = 4");
        let diags = parse(&text).unwrap_err();
        assert!(diags[0].message.contains("8-bit weights"), "{}", diags[0].message);
        assert_eq!(line_of(&text, &diags[0]), 18, "points at weight_bitwidth");
    }

    #[test]
    fn restrict_quantization_steps_parse_as_signed_hex() {
        let text =
            |value: &str| MINIMAL.replace("act_bitwidth = 16", &format!("restrict_quantization_steps = \"{value}\""));
        let target = |value: &str| parse(&text(value)).map(|c| c.targets[0].quant.restrict_steps);
        assert_eq!(target("-0x80 0x7F").unwrap(), Some((-128, 127)));
        assert_eq!(target("-0x8000 0x7FFF").unwrap(), Some((-32768, 32767)));
        for bad in ["0x80 0x7F", "-128 127", "-0x80", "-0x80 0x7F 0x1", "-0xZZ 0x7F"] {
            let diags = target(bad).unwrap_err();
            assert_eq!(line_of(&text(bad), &diags[0]), 17, "{bad}");
            assert!(diags[0].help.as_deref().unwrap().contains("-0x80 0x7F"), "{bad}");
        }
    }

    #[test]
    fn float_fallback_and_ignore_encodings_exclude_each_other() {
        let text = MINIMAL.replace("act_bitwidth = 16", "float_fallback = true\nignore_encodings = true");
        let diags = parse(&text).unwrap_err();
        assert!(diags[0].message.contains("cannot be combined"), "{}", diags[0].message);
        let cfg = parse(&MINIMAL.replace("act_bitwidth = 16", "ignore_encodings = true\nper_row = true")).unwrap();
        assert!(cfg.targets[0].quant.ignore_encodings && cfg.targets[0].quant.per_row);
    }

    /// `batchnorm_folding`: on unless a target (or `[quantization]`) turns it off; a value
    /// that is no boolean, or off together with CLE (which folds first), is a diagnostic at it.
    #[test]
    fn batchnorm_folding_is_a_per_target_boolean() {
        let cfg = parse(&MINIMAL.replace("act_bitwidth = 16", "batchnorm_folding = false")).unwrap();
        assert!(!cfg.targets[0].quant.batchnorm_folding && cfg.targets[1].quant.batchnorm_folding);
        assert!(parse(MINIMAL).unwrap().targets.iter().all(|t| t.quant.batchnorm_folding));
        let text = MINIMAL.replace("act_bitwidth = 16", "batchnorm_folding = \"no\"");
        let diags = parse(&text).unwrap_err();
        assert_eq!(line_of(&text, &diags[0]), 17);
        assert!(diags[0].message.contains("boolean"), "{}", diags[0].message);
        let text = MINIMAL.replace("act_bitwidth = 16", "algorithms = [\"cle\"]\nbatchnorm_folding = false");
        let diags = parse(&text).unwrap_err();
        assert_eq!(line_of(&text, &diags[0]), 18, "at batchnorm_folding");
        assert!(diags[0].message.contains("cannot be combined"), "{}", diags[0].message);
    }

    #[test]
    fn a_wrong_type_is_a_diagnostic() {
        let text = MINIMAL.replace("act_bitwidth = 16", "act_bitwidth = \"sixteen\"");
        let diags = parse(&text).unwrap_err();
        assert_eq!(line_of(&text, &diags[0]), 17);
    }

    #[test]
    fn simulate_debug_and_profile_are_off_unless_set() {
        assert_eq!(parse(MINIMAL).unwrap().simulate, SimulateConfig { debug: false, profile: false });
        let both = format!("{MINIMAL}\n[simulate]\ndebug = true\nprofile = true\n");
        assert_eq!(parse(&both).unwrap().simulate, SimulateConfig { debug: true, profile: true });
        let one = format!("{MINIMAL}\n[simulate]\nprofile = true\n");
        assert_eq!(parse(&one).unwrap().simulate, SimulateConfig { debug: false, profile: true });
    }

    #[test]
    fn bad_simulate_keys_point_at_their_line_with_a_hint() {
        // MINIMAL ends with a newline: [simulate] is on the line after it, the key below.
        let key_line = MINIMAL.lines().count() + 3;
        let quoted = format!("{MINIMAL}\n[simulate]\ndebug = \"yes\"\n");
        let diags = parse(&quoted).unwrap_err();
        assert_eq!(line_of(&quoted, &diags[0]), key_line);
        assert!(diags[0].help.as_deref().unwrap().contains("true or false"), "{:?}", diags[0].help);
        let typo = format!("{MINIMAL}\n[simulate]\nprofiling = true\n");
        let diags = parse(&typo).unwrap_err();
        assert_eq!(line_of(&typo, &diags[0]), key_line);
        assert!(diags[0].help.as_deref().unwrap().contains("`profile`"), "{:?}", diags[0].help);
    }

    #[test]
    fn the_cache_table_names_a_remote_without_credentials() {
        use crate::project::remote::{RemoteBackend, RemoteMode};
        let text = format!("{MINIMAL}\n[cache]\nremote = \"redis://127.0.0.1:6379\"\nmode = \"read\"\n");
        let cache = parse(&text).unwrap().cache;
        assert_eq!(
            cache.remote.unwrap().backend,
            RemoteBackend::Redis { endpoint: "tcp://127.0.0.1:6379".into(), db: 0 }
        );
        assert_eq!(cache.mode, Some(RemoteMode::Read));
        assert_eq!(parse(MINIMAL).unwrap().cache, crate::project::CacheConfig::default());
        let key_line = MINIMAL.lines().count() + 3;
        let secret = format!("{MINIMAL}\n[cache]\nremote = \"redis://ci:hunter2@127.0.0.1:6379\"\n");
        let diags = parse(&secret).unwrap_err();
        assert_eq!(line_of(&secret, &diags[0]), key_line);
        assert!(diags[0].help.as_deref().unwrap().contains("environment"), "{:?}", diags[0].help);
        let mode = format!("{MINIMAL}\n[cache]\nmode = \"write-only\"\n");
        let diags = parse(&mode).unwrap_err();
        assert_eq!(line_of(&mode, &diags[0]), key_line);
    }

    #[test]
    fn an_accuracy_threshold_without_labels_is_refused() {
        let text = MINIMAL.replace("min_sqnr_db = 25.0", "max_accuracy_drop = 0.01");
        let diags = parse(&text).unwrap_err();
        assert!(diags[0].message.contains("needs labels"), "{}", diags[0].message);
        let with_labels = text.replace("[verify]\n", "[verify]\nlabels = \"test/labels.txt\"\n");
        assert!(parse(&with_labels).is_ok());
    }

    #[test]
    fn comments_do_not_change_the_parsed_config() {
        let commented = format!("# tuned by hand\n{MINIMAL}");
        let (mut a, mut b) = (parse(&commented).unwrap(), parse(MINIMAL).unwrap());
        assert_ne!(a.path_spans, b.path_spans, "spans move with the text");
        a.path_spans.clear();
        b.path_spans.clear();
        assert_eq!(a, b);
    }

    fn with_project_keys(keys: &str) -> String {
        MINIMAL.replace("name = \"digits\"", &format!("name = \"digits\"\n{keys}"))
    }

    #[test]
    fn written_dirs_cannot_be_the_project_an_ancestor_or_elsewhere() {
        for (keys, expected) in [
            ("out_dir = \"..\"", "contains the project"),
            ("out_dir = \"/\"", "contains the project"),
            ("out_dir = \".\"", "the project directory itself"),
            ("out_dir = \"out/..\"", "the project directory itself"),
            ("cache_dir = \"./\"", "the project directory itself"),
            ("out_dir = \"../elsewhere\"", "outside the project"),
            ("out_dir = \"/tmp/out\"", "outside the project"),
            ("out_dir = \"build\"\ncache_dir = \"build/cache\"", "overlap"),
            ("out_dir = \"same\"\ncache_dir = \"same\"", "overlap"),
        ] {
            let text = with_project_keys(keys);
            let diags = parse(&text).expect_err(keys);
            assert!(diags.iter().any(|d| d.message.contains(expected)), "{keys}: {:?}", diags);
            assert_eq!(line_of(&text, &diags[0]), 4 + keys.matches('\n').count(), "{keys}");
        }
        // Outside on purpose: allowed, but never the project or an ancestor.
        let cfg = parse(&with_project_keys("out_dir = \"/tmp/out\"\ndirs_outside_project = true")).unwrap();
        assert_eq!(cfg.out_dir, Path::new("/tmp/out"));
        assert!(parse(&with_project_keys("out_dir = \"..\"\ndirs_outside_project = true")).is_err());
        // Inside, however spelled.
        let cfg = parse(&with_project_keys("out_dir = \"build/../artifacts\"\ncache_dir = \"/p/.cache\"")).unwrap();
        assert_eq!(cfg.cache_dir, Path::new("/p/.cache"));
    }

    #[test]
    fn target_names_must_be_directory_names() {
        for bad in ["..", ".", ".tmp", "a/b", ""] {
            let text = MINIMAL.replace("name = \"cpu\"", &format!("name = \"{bad}\""));
            let diags = parse(&text).expect_err(bad);
            assert!(diags[0].help.as_deref().unwrap_or("").contains("out/<target>/"), "{bad}: {:?}", diags);
        }
        let text = MINIMAL.replace("name = \"cpu\"", "name = \"HTP-w8a16\"");
        let diags = parse(&text).unwrap_err();
        assert!(diags[0].message.contains("differ only in case"), "{:?}", diags);
    }

    #[test]
    fn golden_stays_in_the_project_unless_given_absolute() {
        let with_golden = |g: &str| MINIMAL.replace("[verify]\n", &format!("[verify]\ngolden = \"{g}\"\n"));
        assert!(parse(&with_golden("dumps/golden")).is_ok());
        assert!(parse(&with_golden("/data/dumps")).is_ok());
        for bad in ["../..", "..", ".", "/", "../dumps"] {
            let diags = parse(&with_golden(bad)).expect_err(bad);
            assert!(diags[0].message.starts_with("golden"), "{bad}: {:?}", diags);
        }
    }
}
