//! Ops whose output is their input: Identity, Dropout (inference), Convert (a change of
//! representation inserted by `quantize`); and the ops evaluated at import: Constant, Shape,
//! Size and ConstantOfShape on values known then.

use serde::{Deserialize, Serialize};

use super::export::ExportCx;
use super::import::{Lowered, NodeCx, shape_error};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::{ErrorKind, bad_attribute};
use crate::onnx::fold;
use crate::onnx::tensor::decode_tensor;
use crate::runtime::kernels::{KernelError, shape_ops};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("Identity", import_identity, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("Dropout", import_dropout, QuantDefault::PASS_THROUGH),
    OnnxOp { name: "Convert", import: None, quant: QuantDefault::CALIBRATED, folded: false },
    OnnxOp::folded("Constant", import_constant),
    OnnxOp::folded("Shape", import_shape),
    OnnxOp::folded("Size", import_size),
    OnnxOp::folded("ConstantOfShape", import_constant_of_shape),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity;

/// Inference mode: the input passes through; the optional mask output is all true.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dropout;

/// A change of representation inserted by `quantize` where an op of one precision feeds an
/// op of another (the SDK's automatic convert ops for mixed precision): the values pass
/// through; the output tensor carries the consumer's representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Convert;

impl From<Identity> for Op {
    fn from(op: Identity) -> Op {
        Op::Identity(op)
    }
}

impl From<Dropout> for Op {
    fn from(op: Dropout) -> Op {
        Op::Dropout(op)
    }
}

impl From<Convert> for Op {
    fn from(op: Convert) -> Op {
        Op::Convert(op)
    }
}

fn import_identity(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    cx.attrs(&[])?;
    Lowered::ir(Identity, vec![0])
}

fn import_dropout(cx: &NodeCx) -> Result<Lowered, ImportError> {
    if cx.opset < 12 {
        cx.arity(1, 1)?;
        cx.attrs(&["ratio", "is_test", "seed"])?;
    } else {
        cx.arity(1, 3)?;
        cx.attrs(&["seed"])?;
        // The ratio only matters in training mode; training mode must be a constant false.
        if let Some(view) = cx.opt(2) {
            let training = match view.value {
                Some(t) => t.to_f32_vec().iter().any(|&v| v != 0.0),
                None => true,
            };
            if training {
                return Err(bad_attribute(format!(
                    "training_mode {:?} must be a constant false: qairt imports inference graphs",
                    view.name
                )));
            }
        }
    }
    Lowered::ir(Dropout, vec![0])
}

fn same_as_input(name: &str, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
    let [x] = exactly(name, inputs)?;
    Ok(vec![(x.dtype, x.shape.clone())])
}

impl OpDef for Identity {
    fn type_name(&self) -> &'static str {
        "Identity"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        same_as_input("Identity", inputs)
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::identity("Identity", inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Identity", vec![]);
    }
}

impl OpDef for Dropout {
    fn type_name(&self) -> &'static str {
        "Dropout"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        same_as_input("Dropout", inputs)
    }

    fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        shape_ops::dropout(inputs, outputs.len() >= 2)
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Dropout", vec![]);
    }
}

impl OpDef for Convert {
    fn type_name(&self) -> &'static str {
        "Convert"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        same_as_input("Convert", inputs)
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![shape_ops::identity("Convert", inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        // Only the representation changes, which the output's encoding (QDQ or Cast pair,
        // emitted by the exporter) carries: the value passes through.
        cx.emit("Identity", vec![]);
    }
}

fn import_constant(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(0, 0)?;
    let forms = [
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
        "value_string",
        "value_strings",
        "sparse_value",
    ];
    let a = cx.attrs(&forms)?;
    let given: Vec<&str> = a.names().collect();
    let [form] = given[..] else {
        return Err(bad_attribute(format!("Constant needs exactly one of {}, got {given:?}", forms.join(", "))));
    };
    let tensor = match form {
        "value" => {
            decode_tensor(a.tensor("value")?.ok_or_else(|| bad_attribute("value holds no tensor"))?, cx.external)?
        }
        "value_float" => Tensor::scalar_f32(a.float_or(form, 0.0)?),
        "value_floats" => {
            let v = a.floats(form)?.unwrap_or_default();
            Tensor::from_f32(vec![v.len()], v)
        }
        "value_int" => Tensor::from_i64(vec![], vec![a.int_or(form, 0)?]),
        "value_ints" => {
            let v = a.ints(form)?.unwrap_or_default();
            Tensor::from_i64(vec![v.len()], v)
        }
        "sparse_value" => {
            return Err(ImportError::new(ErrorKind::UnsupportedFeature, "sparse Constant values are not supported"));
        }
        _ => {
            return Err(ImportError::new(ErrorKind::UnsupportedDtype, "string Constant values are not supported"));
        }
    };
    Ok(Lowered::Known(vec![tensor]))
}

fn import_shape(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["start", "end"])?;
    let shape = cx.input(0, "data")?.shape;
    // Opset 15: start/end select a range of axes, negative ones counting from the end,
    // clamped to [0, rank].
    let rank = shape.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(a.int_or("start", 0)?);
    let end = clamp(a.int_or("end", rank)?);
    let dims: Vec<i64> = shape[start..end.max(start)].iter().map(|&d| d as i64).collect();
    Ok(Lowered::Known(vec![Tensor::from_i64(vec![dims.len()], dims)]))
}

fn import_size(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    cx.attrs(&[])?;
    let count = cx.input(0, "data")?.shape.iter().product::<usize>() as i64;
    Ok(Lowered::Known(vec![Tensor::from_i64(vec![], vec![count])]))
}

fn import_constant_of_shape(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["value"])?;
    cx.folded_input(0, "input")?;
    let dims = cx.constant_ints(0, "shape")?.unwrap_or_default();
    let shape = dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| shape_error(format!("ConstantOfShape: negative dimension in {dims:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let value = match a.tensor("value")? {
        Some(t) => decode_tensor(t, cx.external)?,
        None => Tensor::from_f32(vec![1], vec![0.0]),
    };
    let out = fold::fill(shape, &value).map_err(|e| bad_attribute(format!("ConstantOfShape: {e}")))?;
    Ok(Lowered::Known(vec![out]))
}
