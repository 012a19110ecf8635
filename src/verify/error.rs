//! Errors of the verify stage: the engine fed tensors that do not match what it declared.
//! Samples are numbered from 0, as the `Result_<N>` directories are.

/// Why a [`SummaryBuilder`](super::SummaryBuilder) refused a tensor or could not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("tensor {name:?} is declared twice as {role}")]
    DuplicateName { name: String, role: &'static str },
    #[error("tensor {name:?} is declared as an output of shape {output:?} and as a layer of shape {layer:?}")]
    ConflictingShapes { name: String, output: Vec<usize>, layer: Vec<usize> },
    #[error("nothing to verify: no outputs were declared")]
    NoOutputs,
    #[error("tensor {name:?} was not declared for verification{}", suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    UnknownTensor { name: String, suggestion: Option<String> },
    #[error(
        "tensor {name:?}, sample {sample}: expected {expected} elements, got {reference} in the \
         reference and {actual} in the actual run"
    )]
    WrongSize { name: String, sample: usize, expected: usize, reference: usize, actual: usize },
    #[error("tensor {name:?} was given twice for sample {sample}")]
    GivenTwice { name: String, sample: usize },
    #[error("tensor {name:?} was not given for sample {sample}")]
    Missing { name: String, sample: usize },
    #[error("tensor {name:?} was given before any sample was started")]
    NoSampleStarted { name: String },
    #[error("nothing to verify: no samples")]
    NoSamples,
    #[error("sample {sample} {} a label but sample 0 {}", if *has_label { "has" } else { "has no" }, if *has_label { "has none" } else { "has one" })]
    InconsistentLabels { sample: usize, has_label: bool },
    #[error("threshold {threshold} needs labels ([verify] labels in qairt.toml)")]
    ThresholdNeedsLabels { threshold: &'static str },
}
