//! Turns the typed errors of the lower layers into diagnostics with file, span and hint.

use std::path::Path;

use crate::compile::{CompileError, RulesError};
use crate::diag::Diag;

use super::db::Failed;

/// A failure that only a bug in qairt can cause; reported, never a panic.
pub fn internal(e: impl std::fmt::Display) -> Failed {
    Failed(vec![
        Diag::error("qairt::internal", format!("internal error: {e}"))
            .with_help("this is a bug in qairt; please report it with the model and qairt.toml that trigger it"),
    ])
}

pub fn rules_error(file: &str, e: RulesError) -> Diag {
    let mut diag = Diag::error("qairt::rules::invalid", e.message.clone()).in_file(file);
    if let Some(span) = &e.span {
        diag = diag.at(span.start, span.end.saturating_sub(span.start), e.message.clone());
    }
    match e.help {
        Some(help) => diag.with_help(help),
        None => diag,
    }
}

pub fn compile_error(target: &str, backend: &str, e: CompileError) -> Diag {
    let help = e.help();
    let diag = Diag::error("qairt::compile::illegal", format!("target \"{target}\" (backend \"{backend}\"): {e}"));
    match help {
        Some(help) => diag.with_help(help),
        None => diag,
    }
}

pub fn import_error(path: &Path, e: crate::onnx::ImportError) -> Diag {
    let mut diag = Diag::error("qairt::onnx::import", e.to_string()).in_file(path);
    if let Some(hint) = e.hint.clone() {
        diag = diag.with_help(hint);
    }
    diag
}

pub(crate) fn override_error(path: &Path, e: crate::quant::OverrideError) -> Diag {
    let message = e.message.clone();
    let mut diag = if e.is_error() {
        Diag::error("qairt::encodings::invalid", message)
    } else {
        Diag::warning("qairt::encodings::suspicious", message)
    };
    diag = diag.in_file(path).at(e.span.offset, e.span.len, e.label().to_string());
    match e.help.clone() {
        Some(help) => diag.with_help(help),
        None => diag,
    }
}

pub fn quant_error(e: crate::quant::QuantError) -> Diag {
    Diag::error("qairt::quantize::failed", e.to_string())
}
