//! The self-contained HTML verify report (`out/<target>/verify/report.html`).
//!
//! Pure: [`render_report`] turns a [`ReportData`] into one HTML string with inline CSS, inline
//! SVG charts drawn by `plotters` and a tiny inline table-sorting script; no network reference,
//! no external resource. Same data, same bytes.

mod binning;
mod charts;
mod model;

pub use binning::histogram;
pub use model::{
    CheckerRow, CheckerTable, Headline, Histogram, HistogramKind, LayerRow, ReportData, SensitivityRow, Suggestion,
};
