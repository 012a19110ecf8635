//! Quantization: encodings and their formats, calibration statistics, encoding computation
//! and weight quantization.

pub mod encoding;
pub mod settings;
