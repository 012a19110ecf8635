//! qairt: a trained network to a verified, quantized, deployable artifact, as an incremental
//! build. See `docs/architecture.md` for the layering; arrows point only downward:
//! `cli -> engine -> {verify, runtime, compile, quant, passes, onnx} -> ops -> ir`.

pub mod cli;
pub mod compile;
pub mod diag;
pub mod engine;
pub mod ir;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod project;
pub mod quant;
pub mod runtime;
pub mod verify;
