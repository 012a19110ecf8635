//! Integration tests: the real `qairt` binary on real files (the digits CNN trained on
//! scikit-learn's digits, onnxruntime references). One test binary, one link step.

mod bad_input;
mod browser;
mod cli;
mod debug_dumps;
mod debugging;
mod encodings;
mod golden;
mod incremental;
mod io_files;
mod json_messages;
mod models;
mod pipeline;
mod qdq_export;
mod qdq_input;
mod quant_features;
mod real_inputs;
mod remote_cache;
mod safety;
mod specialize;
mod sweep;
mod threads;
mod tidy;
mod util;
mod watch;
