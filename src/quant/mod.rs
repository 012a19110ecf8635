//! Quantization: encodings and their formats, calibration statistics, encoding computation
//! and weight quantization. Everything here is a pure function of its inputs (no file system):
//!
//! - [`math`]: the SDK/AIMET encoding rules and quantize/dequantize of single values;
//! - [`stats`]: calibration statistics (min, max, exactly mergeable histograms);
//! - [`calibration`]: the `mse`, `sqnr` and `entropy` range searches over those histograms;
//! - [`aimet`]: reading overrides files (with source spans) and writing `encodings.json`;
//! - [`quantize()`]: the quantize stage (an encoding for every float tensor);
//! - [`apply`]: fake-quant and grid quantization of whole tensors.

pub mod aimet;
pub mod apply;
pub mod blocks;
pub mod calibration;
pub mod encoding;
pub mod math;
pub mod model_encodings;
pub mod pinned;
pub mod policy;
pub mod quantize;
pub mod settings;
pub mod stats;

pub use aimet::{OverrideError, Overrides, check_overrides, parse_overrides, write_encodings_json};
pub use apply::{fake_quant_tensor, quantize_tensor};
pub use encoding::{Encoding, QuantizedGraph, TensorEncoding};
pub use quantize::{QuantError, quantize};
pub use stats::{CalibrationStats, StatsCollector, TensorStats};
