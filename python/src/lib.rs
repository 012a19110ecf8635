//! `qairt._qairt`, the extension module of the `qairt` Python package: the Rust side of
//! `qairt.Session` (a compiled model run from numpy arrays) and `qairt.build` (a project
//! built as `qairt build` builds it). `python/qairt/__init__.py` wraps both in the API the
//! SDK's qaic `Session` documents.

mod arrays;
mod build_project;
mod errors;
mod loaded;
mod session;
mod session_project;

use pyo3::prelude::*;

#[pymodule]
fn _qairt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::plain_diagnostics();
    m.add("QairtError", m.py().get_type::<errors::QairtError>())?;
    m.add_class::<session::Session>()?;
    m.add_function(wrap_pyfunction!(build_project::build, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
