//! ONNX protobuf decoding and import into the IR (no salsa, no file system).
//!
//! - [`decode_model`]: bytes -> [`proto::ModelProto`] (prost types generated once from
//!   `onnx.proto` and committed; see `scripts/gen-onnx-proto/`).
//! - [`external_data_files`]: which side files the model's weights live in; the engine reads
//!   them (relative to the model file) and hands their bytes to [`import`].
//! - [`import`]: the model -> an [`ir::Graph`](crate::ir::Graph) with static shapes,
//!   ONNX tensor names kept, shape arithmetic evaluated, every error collected.
//! - [`declared_inputs`]: the graph inputs as the model declares them (for `qairt init`).

pub(crate) mod error;
pub mod export;
pub(crate) mod fold;
mod import;
mod inline;
pub mod qdq;
mod signature;
pub(crate) mod tensor;

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub, rustdoc::all)]
#[rustfmt::skip]
pub mod proto;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

pub use error::{ErrorKind, ImportError};
pub use import::{ImportFailure, InputShapes, MAX_OPSET, MIN_OPSET, RunTimeInput};
pub use signature::{DeclaredDim, DeclaredInput, declared_inputs};

/// Decodes a serialized `ModelProto`. Truncated or garbage bytes give an error (never a
/// panic), and so does a message that decodes but holds no graph.
pub fn decode_model(bytes: &[u8]) -> Result<proto::ModelProto, ImportError> {
    let hint = "is this an ONNX model file? It may be truncated or corrupt; re-export or re-download it";
    if bytes.is_empty() {
        return Err(ImportError::new(ErrorKind::Truncated, "the model file is empty").with_hint(hint));
    }
    let model = proto::ModelProto::decode(bytes).map_err(|e| {
        let message = e.to_string();
        let kind = if message.contains("buffer underflow") { ErrorKind::Truncated } else { ErrorKind::Malformed };
        ImportError::new(kind, format!("cannot decode the ONNX protobuf ({} bytes): {message}", bytes.len()))
            .with_hint(hint)
    })?;
    if model.graph.is_none() || model.ir_version.is_none() {
        return Err(ImportError::new(
            ErrorKind::Malformed,
            format!("the {} bytes decode as protobuf but hold no ONNX model (no ir_version or graph)", bytes.len()),
        )
        .with_hint(hint));
    }
    Ok(model)
}

/// Decodes one `TensorProto` (any element type qairt carries; external bytes from
/// `external`, keyed by location) into an IR tensor.
pub fn decode_tensor(
    proto: &proto::TensorProto,
    external: &BTreeMap<String, Vec<u8>>,
) -> Result<crate::ir::Tensor, ImportError> {
    tensor::decode_tensor(proto, external)
}

/// Relative `location`s of external-data files the model references, sorted, deduplicated.
/// Locations that are absolute or climb out of the model's directory are left out (import
/// reports them as malformed), so the caller never reads outside the model's directory.
pub fn external_data_files(model: &proto::ModelProto) -> Vec<String> {
    let Some(graph) = &model.graph else { return Vec::new() };
    let mut locations = BTreeSet::new();
    // Subgraphs (If branches) may keep their weights outside too.
    let mut graphs = vec![graph];
    while let Some(graph) = graphs.pop() {
        let attributes = graph.node.iter().flat_map(|n| &n.attribute);
        graphs.extend(attributes.clone().flat_map(|a| a.g.iter().chain(&a.graphs)));
        let attribute_tensors = attributes.flat_map(|a| a.t.iter().chain(&a.tensors));
        locations.extend(
            graph
                .initializer
                .iter()
                .chain(attribute_tensors)
                .filter(|t| t.data_location() == proto::tensor_proto::DataLocation::External)
                .filter_map(|t| tensor::external_ref(t).ok())
                .map(|r| r.location),
        );
    }
    locations.into_iter().collect()
}

/// Imports `model` into the IR. `external` maps each external-data location (as
/// [`external_data_files`] lists it) to the file's bytes; `symbols` gives values to symbolic
/// input dimensions (`define_symbols` in `qairt.toml`). Every problem found is returned,
/// including every unsupported op.
pub fn import(
    model: &proto::ModelProto,
    external: &BTreeMap<String, Vec<u8>>,
    symbols: &BTreeMap<String, usize>,
) -> Result<crate::ir::Graph, Vec<ImportError>> {
    import::import(model, external, &InputShapes { symbols: symbols.clone(), inputs: BTreeMap::new() })
}

/// [`import`] with concrete shapes for named inputs too (`[model] input_dims`).
pub fn import_with_shapes(
    model: &proto::ModelProto,
    external: &BTreeMap<String, Vec<u8>>,
    shapes: &InputShapes,
) -> Result<crate::ir::Graph, Vec<ImportError>> {
    import::import(model, external, shapes)
}

/// [`import_with_shapes`] specialized on known values of some graph inputs (`bound`): those
/// that decide shapes. A failure that such values would fix lists the inputs
/// ([`ImportFailure::run_time_inputs`]).
pub fn import_bound(
    model: &proto::ModelProto,
    external: &BTreeMap<String, Vec<u8>>,
    shapes: &InputShapes,
    bound: &BTreeMap<String, crate::ir::Tensor>,
) -> Result<crate::ir::Graph, ImportFailure> {
    import::import_bound(model, external, shapes, bound)
}
