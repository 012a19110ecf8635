//! What a model declares about its graph inputs before any shape is resolved (sizes, symbol
//! names, open dims): what `qairt init` writes a `qairt.toml` from.

use super::proto::{ModelProto, tensor_shape_proto::dimension::Value as Dim, type_proto};
use crate::ir::DType;

/// One graph input (an input that is not an initializer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredInput {
    pub name: String,
    /// The element type, or the ONNX name of one qairt does not run (e.g. `STRING`).
    pub dtype: Result<DType, String>,
    /// `None` when the model declares no shape at all.
    pub dims: Option<Vec<DeclaredDim>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeclaredDim {
    Fixed(usize),
    /// A named dim (`batch`): `[model] define_symbols` gives it a size.
    Symbol(String),
    /// Neither a size nor a name (or `-1`): only `[model] input_dims` can give it one.
    Open,
}

/// The model's graph inputs in declaration order, initializers (weights listed as inputs by
/// older exporters) left out.
pub fn declared_inputs(model: &ModelProto) -> Vec<DeclaredInput> {
    let Some(graph) = &model.graph else { return Vec::new() };
    let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    graph
        .input
        .iter()
        .filter(|input| !initializers.contains(input.name()))
        .map(|input| {
            let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(type_proto::Value::TensorType(tensor)) => Some(tensor),
                _ => None,
            };
            let code = tensor.and_then(|t| t.elem_type).unwrap_or(0);
            let dtype = super::tensor::dtype_from_onnx(code, "input").map_err(|_| super::tensor::onnx_dtype_name(code));
            let dims = tensor.and_then(|t| t.shape.as_ref()).map(|shape| {
                shape
                    .dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(Dim::DimValue(v)) if *v >= 0 => DeclaredDim::Fixed(*v as usize),
                        Some(Dim::DimParam(p)) if !p.is_empty() => DeclaredDim::Symbol(p.clone()),
                        _ => DeclaredDim::Open,
                    })
                    .collect()
            });
            DeclaredInput { name: input.name().to_string(), dtype, dims }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::tensor_proto::DataType;
    use crate::onnx::tests::{D, value_info};

    #[test]
    fn inputs_keep_sizes_symbols_and_open_dims_and_skip_initializers() {
        let mut model = ModelProto::default();
        let mut graph = crate::onnx::proto::GraphProto::default();
        graph.input.push(value_info("x", DataType::Float, &[D::S("batch"), D::N(3), D::N(-1)]));
        graph.input.push(value_info("w", DataType::Float, &[D::N(3)]));
        graph.initializer.push(crate::onnx::proto::TensorProto { name: Some("w".into()), ..Default::default() });
        model.graph = Some(graph);
        let inputs = declared_inputs(&model);
        assert_eq!(inputs.len(), 1, "the initializer is not an input to feed");
        assert_eq!(inputs[0].name, "x");
        assert_eq!(inputs[0].dtype, Ok(DType::F32));
        assert_eq!(
            inputs[0].dims,
            Some(vec![DeclaredDim::Symbol("batch".into()), DeclaredDim::Fixed(3), DeclaredDim::Open])
        );
    }
}
