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
}

impl CalibrationMethod {
    pub const NAMES: &'static [&'static str] = &["min-max", "percentile", "mse", "sqnr", "entropy"];

    pub fn parse(name: &str) -> Option<CalibrationMethod> {
        Some(match name {
            "min-max" | "tf" => CalibrationMethod::MinMax,
            "percentile" => CalibrationMethod::Percentile,
            "mse" => CalibrationMethod::Mse,
            "sqnr" => CalibrationMethod::Sqnr,
            "entropy" => CalibrationMethod::Entropy,
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
        }
    }
}
