//! Normalization: BatchNormalization (inference form) and Softmax.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_float, attr_int};
use super::import::{Lowered, NodeCx, axis};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::{exactly, require_float};
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, norm};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("BatchNormalization", import_batch_norm, QuantDefault::CALIBRATED),
    OnnxOp::ir("Softmax", import_softmax, QuantDefault::fixed(0.0, 1.0)),
];

/// Inference form; inputs `[X, scale, B, mean, var]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormalization {
    pub epsilon: f32,
}

/// `coerce_2d` is the opset < 13 meaning: flatten to 2-D at `axis`, softmax over the rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Softmax {
    pub axis: usize,
    pub coerce_2d: bool,
}

impl From<BatchNormalization> for Op {
    fn from(op: BatchNormalization) -> Op {
        Op::BatchNormalization(op)
    }
}

impl From<Softmax> for Op {
    fn from(op: Softmax) -> Op {
        Op::Softmax(op)
    }
}

fn import_batch_norm(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(5, 5)?;
    let a = cx.attrs(&["epsilon", "momentum", "training_mode", "spatial", "is_test"])?;
    if a.flag("training_mode")? {
        return Err(bad_attribute("training_mode=1 is not supported: qairt imports inference graphs"));
    }
    if a.has("spatial") && a.int_or("spatial", 1)? != 1 {
        return Err(bad_attribute("spatial=0 (per-element statistics) is not supported"));
    }
    Lowered::ir(BatchNormalization { epsilon: a.float_or("epsilon", 1e-5)? }, vec![0, 1, 2, 3, 4])
}

fn import_softmax(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["axis"])?;
    let rank = cx.input(0, "input")?.shape.len();
    // Before opset 13 the default axis was 1 and the input was coerced to 2-D there.
    let coerce_2d = cx.opset < 13;
    let default = if coerce_2d { 1 } else { -1 };
    let axis = axis(a.int_or("axis", default)?, rank, false, "axis")?;
    Lowered::ir(Softmax { axis, coerce_2d }, vec![0])
}

impl OpDef for BatchNormalization {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "BatchNormalization"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x, params @ ..] = inputs else {
            return Err("BatchNormalization: expects 5 inputs, got 0".into());
        };
        if params.len() != 4 {
            return Err(format!("BatchNormalization: expects 5 inputs, got {}", inputs.len()));
        }
        require_float("BatchNormalization", x)?;
        if x.shape.len() < 2 {
            return Err(format!(
                "BatchNormalization: input {:?} has shape {:?}, expected [N, C, ...]",
                x.name, x.shape
            ));
        }
        let channels = x.shape[1];
        // Opset 15 lets the statistics have their own float type (T1, T2).
        for (p, role) in params.iter().zip(["scale", "B", "mean", "var"]) {
            require_float("BatchNormalization", p)?;
            if p.shape != [channels] {
                return Err(format!(
                    "BatchNormalization: {role} {:?} has shape {:?}, expected [{channels}] \
                     (the channels of {:?})",
                    p.name, p.shape, x.name
                ));
            }
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![norm::batch_norm(self.epsilon, inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 0 { InputRole::Activation } else { InputRole::FloatParam }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("BatchNormalization", vec![attr_float("epsilon", self.epsilon)]);
    }
}

impl OpDef for Softmax {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "Softmax"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Softmax", inputs)?;
        require_float("Softmax", x)?;
        if self.axis >= x.shape.len() {
            return Err(format!(
                "Softmax: axis {} is out of range for {:?} of rank {}",
                self.axis,
                x.name,
                x.shape.len()
            ));
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![norm::softmax(self.axis, self.coerce_2d, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let rank = cx.input_shapes.first().map_or(0, Vec::len);
        if !self.coerce_2d || self.axis + 1 >= rank {
            cx.emit("Softmax", vec![attr_int("axis", self.axis as i64)]);
            return;
        }
        // The opset < 13 meaning in opset 13+ terms: Flatten, Softmax over axis 1, Reshape back.
        let name = cx.name;
        let shape: Vec<i64> = cx.output_shapes.first().map_or(vec![], |s| s.iter().map(|&d| d as i64).collect());
        let flat = cx.host.fresh(format!("{name}_flattened"));
        let normalized = cx.host.fresh(format!("{name}_softmax_2d"));
        let inputs = std::mem::take(&mut cx.inputs);
        let outputs = std::mem::take(&mut cx.outputs);
        cx.host.push_node(
            "Flatten",
            format!("{name}_Flatten"),
            inputs,
            vec![flat.clone()],
            vec![attr_int("axis", self.axis as i64)],
        );
        cx.host.push_graph_node("Softmax", name, vec![flat], vec![normalized.clone()], vec![attr_int("axis", 1)]);
        let shape = cx.int64s("shape", &shape);
        cx.host.push_node("Reshape", format!("{name}_Reshape"), vec![normalized, shape], outputs, vec![]);
    }
}
