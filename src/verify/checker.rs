//! The quantization checker, after the vendor SDK's `qnn-quantization-checker`: for every
//! weight, bias, activation and graph input of a quantized graph, compare the float data with
//! its quantized form and analyse the float data itself, with the SDK's six algorithms, its
//! default thresholds, its Pass/Fail/N/A table and its recommendation strings.
//!
//! Pure: no IO. [`check_graph`] takes the quantized graph and a lookup of recorded float
//! activations; the engine caches the [`CheckerReport`] and the HTML/CLI layers render it.
//! Formulas, defaults, N/A rules and the differences from the SDK are in `docs/checker.md`.
//!
//! - [`algorithms`]: the formulas over plain slices;
//! - this file: configuration, verdicts, and walking the graph.

pub mod algorithms;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ir::{Node, Op, TensorId};
use crate::quant::apply::fake_quant_tensor;
use crate::quant::{Encoding, QuantizedGraph, TensorEncoding};

pub use algorithms::Stats;

/// What a checked tensor is to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorClass {
    Weight,
    Bias,
    Activation,
    Input,
}

impl TensorClass {
    pub const ALL: [TensorClass; 4] =
        [TensorClass::Weight, TensorClass::Bias, TensorClass::Activation, TensorClass::Input];

    /// The SDK's "Node Type" cell.
    pub fn title(self) -> &'static str {
        match self {
            TensorClass::Weight => "Weight",
            TensorClass::Bias => "Bias",
            TensorClass::Activation => "Activation",
            TensorClass::Input => "Input",
        }
    }

    /// Whether `algorithm` means anything for this class: the comparisons need a quantized
    /// counterpart (a dequantized tensor for weights and biases; for activations only
    /// `minmax`, against the encoding's representable range); the float analyses apply to
    /// every class.
    pub fn supports(self, algorithm: Algorithm) -> bool {
        match self {
            TensorClass::Weight | TensorClass::Bias => true,
            TensorClass::Activation => algorithm != Algorithm::MaxDiff && algorithm != Algorithm::Sqnr,
            TensorClass::Input => !algorithm.needs_quantized(),
        }
    }
}

/// The SDK's algorithms ("checkers").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "minmax")]
    MinMax,
    #[serde(rename = "maxdiff")]
    MaxDiff,
    #[serde(rename = "sqnr")]
    Sqnr,
    #[serde(rename = "stats")]
    Stats,
    #[serde(rename = "data_range_analyzer")]
    DataRange,
    #[serde(rename = "data_distribution_analyzer")]
    DataDistribution,
}

impl Algorithm {
    /// In the order of the SDK's HTML columns.
    pub const COLUMNS: [Algorithm; 6] = [
        Algorithm::Stats,
        Algorithm::DataRange,
        Algorithm::DataDistribution,
        Algorithm::MinMax,
        Algorithm::MaxDiff,
        Algorithm::Sqnr,
    ];

    /// The config/CSV name (`algo_name`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::MinMax => "minmax",
            Algorithm::MaxDiff => "maxdiff",
            Algorithm::Sqnr => "sqnr",
            Algorithm::Stats => "stats",
            Algorithm::DataRange => "data_range_analyzer",
            Algorithm::DataDistribution => "data_distribution_analyzer",
        }
    }

    /// An `algo_name`; also accepts `data_range`, the short name of the SDK guide's examples.
    pub fn parse(name: &str) -> Option<Algorithm> {
        let name = name.trim();
        if name == "data_range" {
            return Some(Algorithm::DataRange);
        }
        Algorithm::COLUMNS.into_iter().find(|a| a.name() == name)
    }

    /// The SDK's HTML column title ("Quantization Checker Name").
    pub fn column_title(self) -> &'static str {
        match self {
            Algorithm::Stats => "Symmetry",
            Algorithm::DataRange => "Quantization Bit-Width Range",
            Algorithm::DataDistribution => "Clustering of Unquantized Data",
            Algorithm::MinMax => "Minimum/Maximum Difference Value",
            Algorithm::MaxDiff => "Maximum Absolute Difference",
            Algorithm::Sqnr => "Signal to Quantization Noise Ratio",
        }
    }

    /// `minmax`, `maxdiff` and `sqnr` compare with the quantized form; the others analyse the
    /// float data alone.
    pub fn needs_quantized(self) -> bool {
        matches!(self, Algorithm::MinMax | Algorithm::MaxDiff | Algorithm::Sqnr)
    }

    /// The SDK's canned advice for a failure of this algorithm.
    pub fn recommendation(self) -> &'static str {
        match self {
            Algorithm::Stats => "The data analyzed is asymmetric. Please consider using symmetric values.",
            Algorithm::DataRange => {
                "The quantization bit-width used does not accurately capture the data. Please consider using a larger bit-width, e.g., 16-bit quantization."
            }
            Algorithm::Sqnr => {
                "The signal to quantization noise ratio is low. Please consider retraining the model using QAT."
            }
            Algorithm::MinMax => {
                "The minimum and/or the maximum values differ widely from the unquantized version. Please consider using a larger bit-width for quantization, e.g., 16-bit quantization."
            }
            Algorithm::MaxDiff => {
                "The maximum absolute difference between the quantized and unquantized data is too large. Please consider retraining the model using QAT."
            }
            Algorithm::DataDistribution => {
                "Many values have been quantized to the same value. Please consider using a larger bit-width, e.g., 16-bit quantization."
            }
        }
    }

    /// The SDK default threshold; `None` for `data_range_analyzer`, whose threshold is always
    /// `2^bitwidth` of the tensor.
    pub fn default_threshold(self) -> Option<f64> {
        match self {
            Algorithm::MinMax | Algorithm::MaxDiff => Some(10.0),
            Algorithm::Sqnr => Some(26.0),
            Algorithm::Stats => Some(2.0),
            Algorithm::DataRange => None,
            Algorithm::DataDistribution => Some(0.6),
        }
    }

    /// `sqnr` fails below its threshold; every other algorithm fails above it.
    pub fn fails(self, measured: f64, threshold: f64) -> bool {
        match self {
            Algorithm::Sqnr => measured < threshold,
            _ => measured > threshold,
        }
    }
}

/// The algorithms run on one class of tensors.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassConfig {
    /// Algorithms with a fixed threshold. Never holds `data_range_analyzer`.
    pub thresholds: BTreeMap<Algorithm, f64>,
    /// Run `data_range_analyzer` (threshold `2^bitwidth`, as the SDK forces it).
    pub data_range_analyzer: bool,
}

impl ClassConfig {
    fn with(algorithms: &[Algorithm]) -> ClassConfig {
        let mut config = ClassConfig::default();
        for &a in algorithms {
            match a.default_threshold() {
                Some(t) => {
                    config.thresholds.insert(a, t);
                }
                None => config.data_range_analyzer = true,
            }
        }
        config
    }

    /// Whether `algorithm` runs.
    pub fn enabled(&self, algorithm: Algorithm) -> bool {
        match algorithm {
            Algorithm::DataRange => self.data_range_analyzer,
            a => self.thresholds.contains_key(&a),
        }
    }
}

/// Per class, which algorithms run with which threshold. The default is the SDK's:
/// weights and biases run all six (minmax 10, maxdiff 10, sqnr 26 dB, stats 2,
/// data_range_analyzer 2^bitwidth, data_distribution_analyzer 0.6), activations `minmax` 10
/// (against the encoding's range), graph inputs `stats` 2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckerConfig {
    pub weight: ClassConfig,
    pub bias: ClassConfig,
    pub activation: ClassConfig,
    pub input: ClassConfig,
}

impl Default for CheckerConfig {
    fn default() -> CheckerConfig {
        let params = ClassConfig::with(&Algorithm::COLUMNS);
        CheckerConfig {
            weight: params.clone(),
            bias: params,
            activation: ClassConfig::with(&[Algorithm::MinMax]),
            input: ClassConfig::with(&[Algorithm::Stats]),
        }
    }
}

/// A configuration change that makes no sense.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CheckerConfigError {
    #[error(
        "{algorithm} does not apply to {class} tensors (no quantized counterpart to compare with); allowed: {allowed}",
        algorithm = algorithm.name(), class = class.title().to_lowercase()
    )]
    NotApplicable { class: TensorClass, algorithm: Algorithm, allowed: String },
    #[error("the threshold of data_range_analyzer is always 2^bitwidth of the tensor and cannot be set")]
    DerivedThreshold,
    #[error("threshold {value} for {algorithm} is not {expected}", algorithm = algorithm.name())]
    BadThreshold { algorithm: Algorithm, value: f64, expected: &'static str },
}

impl CheckerConfig {
    pub fn class(&self, class: TensorClass) -> &ClassConfig {
        match class {
            TensorClass::Weight => &self.weight,
            TensorClass::Bias => &self.bias,
            TensorClass::Activation => &self.activation,
            TensorClass::Input => &self.input,
        }
    }

    fn class_mut(&mut self, class: TensorClass) -> &mut ClassConfig {
        match class {
            TensorClass::Weight => &mut self.weight,
            TensorClass::Bias => &mut self.bias,
            TensorClass::Activation => &mut self.activation,
            TensorClass::Input => &mut self.input,
        }
    }

    fn applicable(class: TensorClass, algorithm: Algorithm) -> Result<(), CheckerConfigError> {
        if class.supports(algorithm) {
            return Ok(());
        }
        let allowed: Vec<&str> =
            Algorithm::COLUMNS.into_iter().filter(|&a| class.supports(a)).map(Algorithm::name).collect();
        Err(CheckerConfigError::NotApplicable { class, algorithm, allowed: allowed.join(", ") })
    }

    fn valid_threshold(algorithm: Algorithm, value: f64) -> Result<(), CheckerConfigError> {
        let (ok, expected) = match algorithm {
            Algorithm::Sqnr => (value.is_finite(), "a finite number of dB"),
            _ => (value.is_finite() && value >= 0.0, "a finite number >= 0"),
        };
        if ok { Ok(()) } else { Err(CheckerConfigError::BadThreshold { algorithm, value, expected }) }
    }

    /// Runs `algorithm` on `class` with `threshold` (enabling it if it was off).
    pub fn set_threshold(
        &mut self,
        class: TensorClass,
        algorithm: Algorithm,
        threshold: f64,
    ) -> Result<(), CheckerConfigError> {
        Self::applicable(class, algorithm)?;
        if algorithm == Algorithm::DataRange {
            return Err(CheckerConfigError::DerivedThreshold);
        }
        Self::valid_threshold(algorithm, threshold)?;
        self.class_mut(class).thresholds.insert(algorithm, threshold);
        Ok(())
    }

    /// Runs `algorithm` on `class` with its default threshold (keeps a threshold already set).
    pub fn enable(&mut self, class: TensorClass, algorithm: Algorithm) -> Result<(), CheckerConfigError> {
        Self::applicable(class, algorithm)?;
        let config = self.class_mut(class);
        match algorithm.default_threshold() {
            Some(t) => {
                config.thresholds.entry(algorithm).or_insert(t);
            }
            None => config.data_range_analyzer = true,
        }
        Ok(())
    }

    /// Stops running `algorithm` on `class`.
    pub fn disable(&mut self, class: TensorClass, algorithm: Algorithm) {
        let config = self.class_mut(class);
        match algorithm {
            Algorithm::DataRange => config.data_range_analyzer = false,
            a => {
                config.thresholds.remove(&a);
            }
        }
    }

    /// Checks a deserialized configuration the way [`Self::set_threshold`] checks one change.
    pub fn validate(&self) -> Result<(), CheckerConfigError> {
        for class in TensorClass::ALL {
            let config = self.class(class);
            if config.data_range_analyzer {
                Self::applicable(class, Algorithm::DataRange)?;
            }
            for (&algorithm, &threshold) in &config.thresholds {
                Self::applicable(class, algorithm)?;
                if algorithm == Algorithm::DataRange {
                    return Err(CheckerConfigError::DerivedThreshold);
                }
                Self::valid_threshold(algorithm, threshold)?;
            }
        }
        Ok(())
    }
}

/// One cell of the SDK's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    NotApplicable,
}

impl Verdict {
    /// The SDK's cell text.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Fail => "Fail",
            Verdict::NotApplicable => "N/A",
        }
    }
}

/// One algorithm on one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub algorithm: Algorithm,
    pub verdict: Verdict,
    /// The number compared with the threshold: the larger of the two min/max differences,
    /// the max abs difference, SQNR in dB (may be `+inf`), `|skew|`, the larger of unique
    /// integer count and data range, the max bin ratio. `None` when not applicable.
    /// Fail exactly when `measured > threshold` (`sqnr`: `measured < threshold`).
    #[serde(
        serialize_with = "super::json_float::option_f64",
        deserialize_with = "super::json_float::deserialize_option_f64"
    )]
    pub measured: Option<f64>,
    /// The SDK's data string (e.g. `min: 0.43 max: 0.37`), or why the check does not apply.
    pub detail: String,
    /// `None` only for `data_range_analyzer` on a tensor without an integer bitwidth.
    #[serde(
        serialize_with = "super::json_float::option_f64",
        deserialize_with = "super::json_float::deserialize_option_f64"
    )]
    pub threshold: Option<f64>,
}

impl CheckResult {
    fn not_applicable(algorithm: Algorithm, threshold: Option<f64>, why: &str) -> CheckResult {
        CheckResult { algorithm, verdict: Verdict::NotApplicable, measured: None, detail: why.to_string(), threshold }
    }

    fn judged(algorithm: Algorithm, measured: f64, threshold: f64, detail: String) -> CheckResult {
        let verdict = if algorithm.fails(measured, threshold) { Verdict::Fail } else { Verdict::Pass };
        CheckResult { algorithm, verdict, measured: Some(measured), detail, threshold: Some(threshold) }
    }
}

/// All results for one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorCheck {
    /// The node the tensor belongs to (for a graph input: the input's own name).
    pub op_name: String,
    /// Its ONNX op type (`Input` for a graph input).
    pub op_type: String,
    pub tensor: String,
    pub class: TensorClass,
    /// The integer bitwidth of the tensor's encoding; `None` when it is kept in float.
    pub bitwidth: Option<u32>,
    /// One result per configured algorithm, in [`Algorithm::COLUMNS`] order.
    pub results: Vec<CheckResult>,
}

impl TensorCheck {
    pub fn result(&self, algorithm: Algorithm) -> Option<&CheckResult> {
        self.results.iter().find(|r| r.algorithm == algorithm)
    }

    /// The SDK's cell for `algorithm`: N/A when it was not configured or does not apply.
    pub fn verdict(&self, algorithm: Algorithm) -> Verdict {
        self.result(algorithm).map_or(Verdict::NotApplicable, |r| r.verdict)
    }

    /// Failed as a node: any failing algorithm except `data_distribution_analyzer`, which
    /// the SDK never lets fail a node on its own (its influence is inconclusive).
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| r.verdict == Verdict::Fail && r.algorithm != Algorithm::DataDistribution)
    }

    /// At least one algorithm gave Pass or Fail.
    pub fn analyzed(&self) -> bool {
        self.results.iter().any(|r| r.verdict != Verdict::NotApplicable)
    }
}

/// The checker's result for a whole graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckerReport {
    /// Graph inputs first, then for each node (graph order) its weight, its bias and its
    /// output activations.
    pub tensors: Vec<TensorCheck>,
    /// Tensors with at least one applicable check.
    pub analyzed: usize,
    /// Tensors that [`TensorCheck::failed`].
    pub failed: usize,
}

impl CheckerReport {
    pub fn from_tensors(tensors: Vec<TensorCheck>) -> CheckerReport {
        let analyzed = tensors.iter().filter(|t| t.analyzed()).count();
        let failed = tensors.iter().filter(|t| t.failed()).count();
        CheckerReport { tensors, analyzed, failed }
    }

    /// The SDK's "Summary of failed nodes that should be inspected".
    pub fn failed_tensors(&self) -> impl Iterator<Item = &TensorCheck> {
        self.tensors.iter().filter(|t| t.failed())
    }
}

/// The SDK's advice for a tensor: one sentence per failing algorithm (including
/// `data_distribution_analyzer`), in [`Algorithm::COLUMNS`] order.
pub fn recommendations(check: &TensorCheck) -> Vec<&'static str> {
    Algorithm::COLUMNS
        .into_iter()
        .filter(|&a| check.verdict(a) == Verdict::Fail)
        .map(Algorithm::recommendation)
        .collect()
}

/// `2^bitwidth`: the forced threshold of `data_range_analyzer`.
pub fn data_range_threshold(bitwidth: u32) -> f64 {
    2f64.powi(bitwidth.min(64) as i32)
}

/// A number as Python's `str(float)` prints it (shortest round trip; exponent form outside
/// `[1e-4, 1e16)`), so the data strings read like the SDK's.
fn py(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let abs = x.abs();
    if x == 0.0 || (1e-4..1e16).contains(&abs) {
        let s = format!("{x:?}");
        if s.contains('.') || s.contains('e') { s } else { format!("{s}.0") }
    } else {
        // Rust `1e-7` -> Python `1e-07`.
        let s = format!("{x:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

/// Everything the checker's algorithms read of a tensor's float values, computed once (after
/// `nan_to_num`) and independent of the configuration: the float analyses and the float
/// side of `minmax`. Activations are profiled when they are computed, so that a checker
/// configuration change re-judges without the values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloatProfile {
    /// Values profiled (0: every algorithm is N/A, "empty tensor").
    pub len: usize,
    pub stats: algorithms::Stats,
    /// `data_range_analyzer`: distinct truncated values, `max - min`.
    pub data_range: (usize, f64),
    /// `data_distribution_analyzer`'s ratio.
    pub distribution: f64,
    pub min_max: (f64, f64),
}

impl FloatProfile {
    pub fn of(values: &[f32]) -> FloatProfile {
        FloatProfile::with_sorted(values).0
    }

    /// [`FloatProfile::of`], also handing back the values in ascending order when every one is
    /// finite (the sort the profile makes; with a NaN or an infinity it sorts replacements).
    pub fn with_sorted(values: &[f32]) -> (FloatProfile, Option<Vec<f32>>) {
        let values = algorithms::nan_to_num(values);
        let sorted = algorithms::sorted(&values);
        let profile = FloatProfile::of_sorted(&values, &sorted);
        let all_finite = matches!(values, std::borrow::Cow::Borrowed(_));
        (profile, all_finite.then_some(sorted))
    }

    /// [`FloatProfile::of`] finite `values` whose ascending order (`algorithms::sorted`'s) is
    /// already known: `sorted`.
    pub fn of_sorted(values: &[f32], sorted: &[f32]) -> FloatProfile {
        FloatProfile {
            len: values.len(),
            stats: algorithms::stats_of_sorted(values, sorted),
            data_range: algorithms::data_range_of_sorted(sorted),
            distribution: algorithms::data_distribution_of_sorted(sorted),
            min_max: algorithms::min_max_of_sorted(sorted),
        }
    }
}

/// The float-only analyses (`stats`, `data_range_analyzer`, `data_distribution_analyzer`) of
/// a profile; `bitwidth` sets data_range's threshold.
fn float_analysis(
    algorithm: Algorithm,
    threshold: Option<f64>,
    profile: &FloatProfile,
    bitwidth: Option<u32>,
) -> CheckResult {
    match (algorithm, threshold) {
        (Algorithm::Stats, Some(t)) => {
            let s = &profile.stats;
            let detail = format!(
                "skew: {} min: {} max: {} median: {} variance: {} stdDev: {} mode: {}",
                py(s.skew),
                py(s.min),
                py(s.max),
                py(s.median),
                py(s.variance),
                py(s.std_dev),
                py(s.mode)
            );
            CheckResult::judged(algorithm, s.skew.abs(), t, detail)
        }
        (Algorithm::DataRange, _) => match bitwidth {
            None => CheckResult::not_applicable(algorithm, None, "kept in float: no bit-width to compare with"),
            Some(bw) => {
                let (uniques, range) = profile.data_range;
                let detail = format!("unique dec places: {uniques} data range: {}", py(range));
                CheckResult::judged(algorithm, (uniques as f64).max(range), data_range_threshold(bw), detail)
            }
        },
        (Algorithm::DataDistribution, Some(t)) => {
            let ratio = profile.distribution;
            CheckResult::judged(algorithm, ratio, t, format!("Distribution of pixels above threshold: {}", py(ratio)))
        }
        _ => CheckResult::not_applicable(algorithm, threshold, "not applicable"),
    }
}

fn minmax_result(threshold: f64, unquantized: &FloatProfile, (d_min, d_max): (f64, f64)) -> CheckResult {
    let (u_min, u_max) = unquantized.min_max;
    let (dmin, dmax) = ((u_min - d_min).abs(), (u_max - d_max).abs());
    CheckResult::judged(Algorithm::MinMax, dmin.max(dmax), threshold, format!("min: {} max: {}", py(dmin), py(dmax)))
}

/// What the float data is compared with.
enum Counterpart<'a> {
    /// Weights and biases: the float and the dequantized tensor (both through `nan_to_num`).
    Dequantized { float: &'a [f32], dequantized: &'a [f32] },
    /// Activations: the encoding's representable range `(min, max)`.
    Range(f64, f64),
    /// Nothing to compare with; the reason.
    None(&'a str),
}

/// Runs the algorithms configured for `class` on one tensor: `profile` of its float values,
/// and for a weight or bias those values themselves (through `nan_to_num`) in `Dequantized`.
fn check_tensor(
    class: TensorClass,
    profile: &FloatProfile,
    counterpart: Counterpart,
    bitwidth: Option<u32>,
    config: &CheckerConfig,
) -> Vec<CheckResult> {
    let class_config = config.class(class);
    Algorithm::COLUMNS
        .into_iter()
        .filter(|&a| class_config.enabled(a))
        .map(|algorithm| {
            let threshold = match algorithm {
                Algorithm::DataRange => bitwidth.map(data_range_threshold),
                a => class_config.thresholds.get(&a).copied(),
            };
            if profile.len == 0 {
                return CheckResult::not_applicable(algorithm, threshold, "empty tensor");
            }
            if !algorithm.needs_quantized() {
                return float_analysis(algorithm, threshold, profile, bitwidth);
            }
            let Some(t) = threshold else { return CheckResult::not_applicable(algorithm, None, "no threshold") };
            match (&counterpart, algorithm) {
                (Counterpart::None(why), _) => CheckResult::not_applicable(algorithm, threshold, why),
                (Counterpart::Dequantized { dequantized: d, .. }, _) if d.len() != profile.len => {
                    CheckResult::not_applicable(
                        algorithm,
                        threshold,
                        &format!("different sizes: {} float vs {} dequantized values", profile.len, d.len()),
                    )
                }
                (Counterpart::Dequantized { dequantized: d, .. }, Algorithm::MinMax) => {
                    minmax_result(t, profile, algorithms::min_max(d))
                }
                (Counterpart::Dequantized { float, dequantized: d }, Algorithm::MaxDiff) => {
                    let m = algorithms::maxdiff(float, d);
                    CheckResult::judged(algorithm, m, t, format!("largest absolute difference: {}", py(m)))
                }
                (Counterpart::Dequantized { float, dequantized: d }, _) => {
                    let s = algorithms::sqnr(float, d);
                    CheckResult::judged(algorithm, s, t, format!("sqnr: {}", py(s)))
                }
                (Counterpart::Range(lo, hi), Algorithm::MinMax) => minmax_result(t, profile, (*lo, *hi)),
                (Counterpart::Range(..), _) => {
                    CheckResult::not_applicable(algorithm, threshold, "activations have no dequantized tensor")
                }
            }
        })
        .collect()
}

/// Checks a weight or bias: `float` against `dequantized` (the same values through their
/// encoding; `None` when the tensor is kept in float), `bitwidth` the encoding's integer
/// bitwidth (`None` in float).
pub fn check_param(
    class: TensorClass,
    float: &[f32],
    dequantized: Option<&[f32]>,
    bitwidth: Option<u32>,
    config: &CheckerConfig,
) -> Vec<CheckResult> {
    check_param_profiled(class, FloatProfile::of(float), float, dequantized, bitwidth, config)
}

/// [`check_param`] with the float values' profile given (profiles depend on the values only,
/// so a build reuses them across encoding edits).
fn check_param_profiled(
    class: TensorClass,
    profile: FloatProfile,
    float: &[f32],
    dequantized: Option<&[f32]>,
    bitwidth: Option<u32>,
    config: &CheckerConfig,
) -> Vec<CheckResult> {
    let float = algorithms::nan_to_num(float);
    let deq = dequantized.map(algorithms::nan_to_num);
    let counterpart = match &deq {
        Some(d) => Counterpart::Dequantized { float: &float, dequantized: d },
        None => Counterpart::None("kept in float: nothing to compare with"),
    };
    check_tensor(class, &profile, counterpart, bitwidth, config)
}

/// The representable range of an activation encoding, as the SDK computes it:
/// `((0 + offset) * scale, (2^bw - 1 + offset) * scale)`.
pub fn encoding_range(encoding: &Encoding) -> (f64, f64) {
    let scale = encoding.scale as f64;
    let offset = encoding.offset as f64;
    (offset * scale, (crate::quant::math::grid_steps(encoding.bitwidth) + offset) * scale)
}

/// Checks an activation: the profile of its float values over the samples against `encoding`
/// (`None` when the activation is kept in float: `minmax` is N/A, the float analyses still run).
pub fn check_activation(float: &FloatProfile, encoding: Option<&Encoding>, config: &CheckerConfig) -> Vec<CheckResult> {
    let counterpart = match encoding {
        Some(e) => {
            let (lo, hi) = encoding_range(e);
            Counterpart::Range(lo, hi)
        }
        None => Counterpart::None("kept in float: no encoding range to compare with"),
    };
    check_tensor(TensorClass::Activation, float, counterpart, encoding.map(|e| e.bitwidth), config)
}

/// Checks a graph input's float data (the float analyses only).
pub fn check_input(float: &FloatProfile, bitwidth: Option<u32>, config: &CheckerConfig) -> Vec<CheckResult> {
    check_tensor(TensorClass::Input, float, Counterpart::None("graph input"), bitwidth, config)
}

/// Every configured algorithm N/A, for a tensor whose float data is missing.
fn all_not_applicable(
    class: TensorClass,
    bitwidth: Option<u32>,
    why: &str,
    config: &CheckerConfig,
) -> Vec<CheckResult> {
    let class_config = config.class(class);
    Algorithm::COLUMNS
        .into_iter()
        .filter(|&a| class_config.enabled(a))
        .map(|a| {
            let threshold = match a {
                Algorithm::DataRange => bitwidth.map(data_range_threshold),
                a => class_config.thresholds.get(&a).copied(),
            };
            CheckResult::not_applicable(a, threshold, why)
        })
        .collect()
}

/// The integer bitwidth of an encoding (`None` for float and for no encoding).
fn integer_bitwidth(encoding: Option<&TensorEncoding>) -> Option<u32> {
    match encoding? {
        TensorEncoding::Float { .. } => None,
        TensorEncoding::PerTensor(e) => Some(e.bitwidth),
        TensorEncoding::PerChannel { channels: encodings, .. } | TensorEncoding::PerBlock { blocks: encodings, .. } => {
            encodings.first().map(|e| e.bitwidth)
        }
    }
}

/// The weight (input 1) and bias (input 2) positions of ops that carry parameters.
pub fn param_positions(op: &Op) -> &'static [(usize, TensorClass)] {
    match op {
        Op::Conv(_) | Op::Gemm(_) | Op::BatchNormalization(_) => &[(1, TensorClass::Weight), (2, TensorClass::Bias)],
        _ => &[],
    }
}

fn check_graph_param(
    q: &QuantizedGraph,
    node: &Node,
    id: TensorId,
    class: TensorClass,
    param_profile: &ParamProfile<'_>,
    config: &CheckerConfig,
) -> Option<TensorCheck> {
    let tensor = q.graph.constant(id)?;
    let float = tensor.as_f32()?;
    let profile = param_profile(q.graph.name(id), float);
    let encoding = q.encodings.get(&id);
    let bitwidth = integer_bitwidth(encoding);
    let results = match encoding {
        Some(
            e @ (TensorEncoding::PerTensor(_) | TensorEncoding::PerChannel { .. } | TensorEncoding::PerBlock { .. }),
        ) => match fake_quant_tensor(tensor, e) {
            Ok(deq) => check_param_profiled(class, profile, float, deq.as_f32(), bitwidth, config),
            Err(mismatch) => {
                let why = mismatch.to_string();
                check_tensor(class, &profile, Counterpart::None(&why), bitwidth, config)
            }
        },
        _ => check_param_profiled(class, profile, float, None, bitwidth, config),
    };
    Some(TensorCheck {
        op_name: node.name.clone(),
        op_type: node.op.type_name().to_string(),
        tensor: q.graph.name(id).to_string(),
        class,
        bitwidth,
        results,
    })
}

/// Checks every graph input, weight, bias and activation of `q`. `activation_profiles` gives
/// the profile of the float model's values of a tensor by name (over the samples), `None`
/// when they were not recorded (every check of that tensor is then N/A). `Convert` nodes are skipped:
/// they do not exist in the float model, and the value they convert is checked where it is
/// produced.
pub fn check_graph(
    q: &QuantizedGraph,
    activation_profiles: &dyn Fn(&str) -> Option<FloatProfile>,
    config: &CheckerConfig,
) -> CheckerReport {
    check_graph_with(q, activation_profiles, &|_, values| FloatProfile::of(values), config)
}

/// The profile of a weight or bias, from its name and values: computed, or one computed
/// before for the same values.
pub type ParamProfile<'a> = dyn Fn(&str, &[f32]) -> FloatProfile + Sync + 'a;

/// [`check_graph`] with the weights' and biases' profiles from `param_profile`.
pub fn check_graph_with(
    q: &QuantizedGraph,
    activation_profiles: &dyn Fn(&str) -> Option<FloatProfile>,
    param_profile: &ParamProfile<'_>,
    config: &CheckerConfig,
) -> CheckerReport {
    let graph = &q.graph;
    let mut tensors = Vec::new();
    let no_data = "no float values recorded for this tensor";
    for &id in &graph.inputs {
        let Some(info) = graph.tensors.get(id.index()) else { continue };
        let bitwidth = integer_bitwidth(q.encodings.get(&id));
        let results = match activation_profiles(&info.name) {
            Some(values) => check_input(&values, bitwidth, config),
            None => all_not_applicable(TensorClass::Input, bitwidth, no_data, config),
        };
        tensors.push(TensorCheck {
            op_name: info.name.clone(),
            op_type: "Input".into(),
            tensor: info.name.clone(),
            class: TensorClass::Input,
            bitwidth,
            results,
        });
    }
    // Weights and biases first, side by side (profiling a weight sorts its values: the bulk of
    // the checker's time), then every row in graph order.
    let params: Vec<(usize, usize, TensorId, TensorClass)> = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.op != Op::Convert(crate::ops::Convert))
        .flat_map(|(k, node)| {
            param_positions(&node.op)
                .iter()
                .filter_map(move |&(position, class)| node.inputs.get(position).map(|&id| (k, position, id, class)))
        })
        .collect();
    let mut param_checks: std::collections::HashMap<(usize, usize), TensorCheck> = {
        use rayon::prelude::*;
        params
            .par_iter()
            .filter_map(|&(k, position, id, class)| {
                check_graph_param(q, &graph.nodes[k], id, class, param_profile, config)
                    .map(|check| ((k, position), check))
            })
            .collect()
    };
    for (k, node) in graph.nodes.iter().enumerate() {
        if node.op == Op::Convert(crate::ops::Convert) {
            continue;
        }
        for &(position, _) in param_positions(&node.op) {
            if let Some(check) = param_checks.remove(&(k, position)) {
                tensors.push(check);
            }
        }
        for &id in &node.outputs {
            let Some(info) = graph.tensors.get(id.index()) else { continue };
            let encoding = q.encodings.get(&id);
            let bitwidth = integer_bitwidth(encoding);
            let results = match activation_profiles(&info.name) {
                None => all_not_applicable(TensorClass::Activation, bitwidth, no_data, config),
                Some(values) => match encoding {
                    Some(TensorEncoding::PerTensor(e)) => check_activation(&values, Some(e), config),
                    Some(TensorEncoding::PerChannel { .. }) => check_tensor(
                        TensorClass::Activation,
                        &values,
                        Counterpart::None("per-channel activation encoding: no single range"),
                        bitwidth,
                        config,
                    ),
                    _ => check_activation(&values, None, config),
                },
            };
            tensors.push(TensorCheck {
                op_name: node.name.clone(),
                op_type: node.op.type_name().to_string(),
                tensor: info.name.clone(),
                class: TensorClass::Activation,
                bitwidth,
                results,
            });
        }
    }
    CheckerReport::from_tensors(tensors)
}

#[cfg(test)]
mod tests;
