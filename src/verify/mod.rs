//! Accuracy metrics between a simulated run and its reference, per output and per layer,
//! threshold checks, and the `summary.json` / `summary.csv` renderings.
//!
//! Pure: no IO. The engine feeds tensors sample by sample through [`SummaryBuilder`] and
//! writes the strings [`summary_json`] and [`summary_csv`] return.

pub mod checker;
mod error;
pub mod fold;
pub mod golden;
pub mod html;
pub mod json_float;
mod metrics;
mod pair_pass;
mod report;
pub mod report_page;
pub mod sensitivity;
mod settings;
mod summary;
mod top1;
pub mod verifiers;

pub use error::VerifyError;
pub use fold::LayerFold;
pub use metrics::{MetricAccumulator, TensorMetrics};
pub use report::{CSV_LEADING_COLUMNS, CSV_TRAILING_COLUMNS, summary_csv, summary_json};
pub use settings::{DebugSettings, MetricSpec, MetricValue, Mode, default_metrics};
pub use summary::{
    Accuracy, GoldenReport, LayerSpec, LayerSummary, OutputSpec, OutputSummary, Summary, SummaryBuilder,
    ThresholdCheck, ThresholdKind, Thresholds, layer_specs, output_specs,
};
pub use top1::{Top1, argmax};
