//! The importer's error type: a stable kind, a message, the node it concerns and a hint.

use serde::Serialize;

/// What went wrong, as a stable identifier (the CLI's JSON output and tests match on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The bytes end before the protobuf message does (or an external-data file is short).
    Truncated,
    /// Not a well-formed ONNX model: bad protobuf, dangling names, inconsistent tensors.
    Malformed,
    /// An op type (or op domain) qairt does not import.
    UnsupportedOp,
    /// The model's `ai.onnx` opset is outside the supported range.
    UnsupportedOpset,
    /// A tensor element type the IR does not carry (float16, uint8, strings...).
    UnsupportedDtype,
    /// A model feature outside the IR: sparse tensors, non-tensor inputs, constant outputs...
    UnsupportedFeature,
    /// An attribute (or an input that must be constant) is missing, mistyped or out of range.
    BadAttribute,
    /// A symbolic input dimension with no value in `define_symbols`.
    UnresolvedSymbol,
    /// An external-data file the model references was not provided.
    MissingExternalData,
    /// Shape inference failed, or disagrees with a shape the model declares.
    ShapeError,
    /// An input whose value must be known at import (a shape, axes, pads, a count) is
    /// computed at run time from a graph input.
    RunTimeValue,
}

impl ErrorKind {
    /// The identifier used in machine-readable output, e.g. `unsupported-op`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::Malformed => "malformed",
            ErrorKind::UnsupportedOp => "unsupported-op",
            ErrorKind::UnsupportedOpset => "unsupported-opset",
            ErrorKind::UnsupportedDtype => "unsupported-dtype",
            ErrorKind::UnsupportedFeature => "unsupported-feature",
            ErrorKind::BadAttribute => "bad-attribute",
            ErrorKind::UnresolvedSymbol => "unresolved-symbol",
            ErrorKind::MissingExternalData => "missing-external-data",
            ErrorKind::ShapeError => "shape-error",
            ErrorKind::RunTimeValue => "run-time-value",
        }
    }
}

/// One problem found while decoding or importing a model.
///
/// Display renders `node "<name>" (<OpType>): <message>` when the error concerns a node,
/// else just the message; the hint is kept apart for the CLI's diagnostic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}{message}", node_prefix(.node, .op_type))]
pub struct ImportError {
    pub kind: ErrorKind,
    pub message: String,
    /// The ONNX node name (or the generated `<OpType>_<index>` for an unnamed node).
    pub node: Option<String>,
    pub op_type: Option<String>,
    /// What the user can do about it.
    pub hint: Option<String>,
    /// For [`ErrorKind::RunTimeValue`]: the tensor whose value was needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_value_of: Option<String>,
}

fn node_prefix(node: &Option<String>, op_type: &Option<String>) -> String {
    match (node, op_type) {
        (Some(node), Some(op)) => format!("node {node:?} ({op}): "),
        (Some(node), None) => format!("node {node:?}: "),
        (None, Some(op)) => format!("{op}: "),
        (None, None) => String::new(),
    }
}

impl ImportError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ImportError {
        ImportError { kind, message: message.into(), node: None, op_type: None, hint: None, needs_value_of: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> ImportError {
        self.hint = Some(hint.into());
        self
    }

    /// An input of a node must be known at import, but `tensor` is computed at run time.
    pub fn needs_value(tensor: &str, message: impl Into<String>) -> ImportError {
        ImportError { needs_value_of: Some(tensor.to_string()), ..ImportError::new(ErrorKind::RunTimeValue, message) }
            .with_hint(
                "qairt compiles static-shape programs: a value computed at run time cannot decide shapes. Small graph \
                 inputs that decide them are specialized on the value the input lists give; a value computed from \
                 the data itself (a data-dependent shape) cannot be",
            )
    }

    /// Attaches the node's name and op type, unless the error already names a node.
    pub fn at_node(mut self, node: &str, op_type: &str) -> ImportError {
        if self.node.is_none() {
            self.node = Some(node.to_string());
            self.op_type = Some(op_type.to_string());
        }
        self
    }
}

/// Shorthand constructors used across the importer.
pub(crate) fn malformed(message: impl Into<String>) -> ImportError {
    ImportError::new(ErrorKind::Malformed, message)
}

pub(crate) fn bad_attribute(message: impl Into<String>) -> ImportError {
    ImportError::new(ErrorKind::BadAttribute, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_node() {
        let err = bad_attribute("kernel_shape must have 2 entries").at_node("conv1", "Conv");
        assert_eq!(err.to_string(), "node \"conv1\" (Conv): kernel_shape must have 2 entries");
        let err = malformed("no graph");
        assert_eq!(err.to_string(), "no graph");
        assert_eq!(err.kind.as_str(), "malformed");
    }
}
