//! The self-contained HTML verify report (`out/<target>/verify/report.html`).
//!
//! Pure: [`render_report`] turns a [`ReportData`] into one HTML string with inline CSS, inline
//! SVG charts drawn by `plotters` and a tiny inline table-sorting script; no network reference,
//! no external resource. Same data, same bytes. Histograms arrive pre-binned (see
//! [`histogram`]) so the page stays small for large graphs.

mod binning;
mod charts;
mod format;
mod model;
mod page;

pub use binning::{histogram, histogram_of_sorted};
pub use model::{
    CheckerRow, CheckerTable, Headline, Histogram, HistogramKind, LayerRow, ProfileRow, ProfileTable, ReportData,
    SensitivityRow, Suggestion,
};

/// Renders the report page for `data`.
pub fn render_report(data: &ReportData) -> String {
    page::render(data)
}

#[cfg(test)]
mod tests;
