//! qairt's diagnostics as Python exceptions: `qairt.QairtError`, whose text is the miette
//! diagnostic `qairt build` prints (file, line, column, what was expected, a hint).

use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use qairt::diag::Diag;

create_exception!(qairt, QairtError, PyException, "A qairt diagnostic: bad input, a failed stage or a failed run.");

/// Diagnostics rendered without terminal colours: an exception's text ends up in logs and
/// notebooks, where escape codes are noise. Set once, when the module loads.
pub fn plain_diagnostics() {
    let _ = miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().color(false).build())));
}

/// One exception for every diagnostic, in order, separated by blank lines.
pub fn from_diags(diags: &[Diag]) -> PyErr {
    let text: Vec<String> = diags.iter().map(qairt::cli::render::render).collect();
    QairtError::new_err(text.join("\n"))
}

/// An exception with a diagnostic of its own (`code`, `message`, `help`).
pub fn error(code: &'static str, message: impl Into<String>, help: impl Into<String>) -> PyErr {
    from_diags(&[Diag::error(code, message).with_help(help)])
}
