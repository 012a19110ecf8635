//! Resolved quantization settings of one target (what `qairt.toml` says after defaults and
//! per-target overrides are applied).

use serde::{Deserialize, Serialize};

/// How a tensor's range is chosen from its calibration statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CalibrationMethod {
    MinMax,
    Percentile,
    Mse,
    Sqnr,
    Entropy,
    /// The legacy `adjusted` ("TF Adjusted") quantizer, for 8-bit weights: the min-max range
    /// with an exact zero reached by widening the range instead of shifting it (see
    /// `Encoding::adjusted`).
    Adjusted,
}

impl CalibrationMethod {
    /// Every name `qairt.toml` accepts: the qairt-quantizer methods, then the legacy
    /// `--param_quantizer`/`--act_quantizer` names (see [`CalibrationMethod::parse_legacy`]).
    pub const NAMES: &'static [&'static str] =
        &["min-max", "percentile", "mse", "sqnr", "entropy", "tf", "symmetric", "enhanced", "adjusted"];

    pub fn parse(name: &str) -> Option<CalibrationMethod> {
        CalibrationMethod::parse_legacy(name).map(|(method, _)| method)
    }

    /// A method name, with the schema a legacy quantizer name implies:
    /// - `tf`: the SDK's default, true min/max: `min-max`;
    /// - `symmetric`: `new_max = max(|min|, |max|)`: `min-max` with the symmetric schema;
    /// - `enhanced`: the range search that may clip long tails while keeping the minimum range
    ///   and an exact zero: `sqnr` (AIMET's TF-Enhanced, the same noise-plus-clipping cost);
    /// - `adjusted`: for 8-bit weights only, the min/max widened so that zero is exact.
    pub fn parse_legacy(name: &str) -> Option<(CalibrationMethod, Option<Schema>)> {
        Some(match name {
            "min-max" | "tf" => (CalibrationMethod::MinMax, None),
            "symmetric" => (CalibrationMethod::MinMax, Some(Schema::Symmetric)),
            "percentile" => (CalibrationMethod::Percentile, None),
            "mse" => (CalibrationMethod::Mse, None),
            "sqnr" | "enhanced" => (CalibrationMethod::Sqnr, None),
            "entropy" => (CalibrationMethod::Entropy, None),
            "adjusted" => (CalibrationMethod::Adjusted, None),
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            CalibrationMethod::MinMax => "min-max",
            CalibrationMethod::Percentile => "percentile",
            CalibrationMethod::Mse => "mse",
            CalibrationMethod::Sqnr => "sqnr",
            CalibrationMethod::Entropy => "entropy",
            CalibrationMethod::Adjusted => "adjusted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Schema {
    Asymmetric,
    Symmetric,
}

impl Schema {
    pub const NAMES: &'static [&'static str] = &["asymmetric", "symmetric"];

    pub fn parse(name: &str) -> Option<Schema> {
        match name {
            "asymmetric" => Some(Schema::Asymmetric),
            "symmetric" => Some(Schema::Symmetric),
            _ => None,
        }
    }
}

/// Everything `quantize` needs to know about a target, besides the graph, the calibration
/// statistics and the overrides file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantSettings {
    pub act_bitwidth: u32,
    pub weight_bitwidth: u32,
    pub bias_bitwidth: u32,
    pub act_calibration: CalibrationMethod,
    pub param_calibration: CalibrationMethod,
    pub act_schema: Schema,
    pub param_schema: Schema,
    pub percentile: f64,
    pub per_channel: bool,
    pub float_fallback: bool,
    pub algorithms: Vec<String>,
    /// Per-row (per output channel) weights for Gemm and constant MatMul operands, the SDK's
    /// `--use_per_row_quantization` (off by default there too).
    #[serde(default)]
    pub per_row: bool,
    /// `restrict_quantization_steps = "-0x80 0x7F"`: the signed grid `[min, max]` the inputs of
    /// MatMul are restricted to (symmetric, `scale = 2 * absmax / (max - min)`, offset `min`),
    /// which the SDK requires for 16-bit MatMul.
    #[serde(default)]
    pub restrict_steps: Option<(i64, i64)>,
    /// `ignore_encodings = true`: the overrides file and the model's own encodings (from QDQ
    /// pairs) are ignored; every tensor is calibrated.
    #[serde(default)]
    pub ignore_encodings: bool,
    /// `batchnorm_folding = false`, the SDK converter's `--disable_batchnorm_folding`: the
    /// target's graph keeps its BatchNormalizations, which run quantized as AIMET's QuantSim
    /// runs an unfolded model (their input, gamma and output on grids of their own).
    /// Left out of the serialized settings so that targets without the key keep their cache
    /// keys: the stages it changes add it to their keys themselves, when it is off.
    #[serde(skip, default = "folds_batchnorms")]
    pub batchnorm_folding: bool,
}

fn folds_batchnorms() -> bool {
    true
}

impl Default for QuantSettings {
    fn default() -> Self {
        QuantSettings {
            act_bitwidth: 8,
            weight_bitwidth: 8,
            bias_bitwidth: 32,
            act_calibration: CalibrationMethod::MinMax,
            param_calibration: CalibrationMethod::MinMax,
            act_schema: Schema::Asymmetric,
            param_schema: Schema::Symmetric,
            percentile: 99.99,
            per_channel: true,
            float_fallback: false,
            algorithms: Vec::new(),
            per_row: false,
            restrict_steps: None,
            ignore_encodings: false,
            batchnorm_folding: true,
        }
    }
}
