//! Element-wise ops: the binary arithmetic family (numpy broadcasting), the unary activation
//! family and Clip.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_float};
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::{broadcast_shapes, exactly, require_float, require_numeric};
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::runtime::kernels::KernelError;
use crate::runtime::kernels::elementwise::{self as kernel, BinaryOp};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("Add", import_binary, QuantDefault::CALIBRATED),
    OnnxOp::ir("Sub", import_binary, QuantDefault::CALIBRATED),
    OnnxOp::ir("Mul", import_binary, QuantDefault::CALIBRATED),
    OnnxOp::ir("Div", import_binary, QuantDefault::CALIBRATED),
    OnnxOp::ir("Relu", import_unary, QuantDefault { propagate: true, squash: true, ..QuantDefault::CALIBRATED }),
    OnnxOp::ir("Sigmoid", import_unary, QuantDefault::fixed(0.0, 1.0)),
    OnnxOp::ir("Tanh", import_unary, QuantDefault::fixed(-1.0, 1.0)),
    OnnxOp::ir("HardSigmoid", import_unary, QuantDefault::CALIBRATED),
    OnnxOp::ir("HardSwish", import_unary, QuantDefault::CALIBRATED),
    OnnxOp::ir("Clip", import_clip, QuantDefault { squash: true, ..QuantDefault::CALIBRATED }),
];

/// Binary arithmetic with numpy broadcasting; both inputs share a dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// Float activations of one input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
}

/// `min(max(x, min), max)`; absent bounds are infinite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    pub min: f32,
    pub max: f32,
}

impl From<Binary> for Op {
    fn from(op: Binary) -> Op {
        Op::Binary(op)
    }
}

impl From<Unary> for Op {
    fn from(op: Unary) -> Op {
        Op::Unary(op)
    }
}

impl From<Clip> for Op {
    fn from(op: Clip) -> Op {
        Op::Clip(op)
    }
}

fn import_binary(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    cx.attrs(&[])?;
    let op = match cx.op_type() {
        "Add" => Binary::Add,
        "Sub" => Binary::Sub,
        "Mul" => Binary::Mul,
        _ => Binary::Div,
    };
    Lowered::ir(op, vec![0, 1])
}

fn import_unary(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let op = match cx.op_type() {
        "HardSigmoid" => {
            let a = cx.attrs(&["alpha", "beta"])?;
            Unary::HardSigmoid { alpha: a.float_or("alpha", 0.2)?, beta: a.float_or("beta", 0.5)? }
        }
        op_type => {
            cx.attrs(&[])?;
            match op_type {
                "Relu" => Unary::Relu,
                "Sigmoid" => Unary::Sigmoid,
                "Tanh" => Unary::Tanh,
                _ => Unary::HardSwish,
            }
        }
    };
    Lowered::ir(op, vec![0])
}

fn import_clip(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let (min, max) = if cx.opset < 11 {
        cx.arity(1, 1)?;
        let a = cx.attrs(&["min", "max"])?;
        (a.float("min")?, a.float("max")?)
    } else {
        cx.arity(1, 3)?;
        cx.attrs(&[])?;
        (cx.constant_scalar(1, "min")?, cx.constant_scalar(2, "max")?)
    };
    Lowered::ir(Clip { min: min.unwrap_or(f32::NEG_INFINITY), max: max.unwrap_or(f32::INFINITY) }, vec![0])
}

impl Binary {
    fn kernel_op(self) -> BinaryOp {
        match self {
            Binary::Add => BinaryOp::Add,
            Binary::Sub => BinaryOp::Sub,
            Binary::Mul => BinaryOp::Mul,
            Binary::Div => BinaryOp::Div,
        }
    }
}

impl OpDef for Binary {
    fn type_name(&self) -> &'static str {
        match self {
            Binary::Add => "Add",
            Binary::Sub => "Sub",
            Binary::Mul => "Mul",
            Binary::Div => "Div",
        }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let [a, b] = exactly(name, inputs)?;
        require_numeric(name, a)?;
        if a.dtype != b.dtype {
            return Err(format!("{name}: {:?} is {} but {:?} is {}", a.name, a.dtype.name(), b.name, b.dtype.name()));
        }
        let shape = broadcast_shapes(&a.shape, &b.shape).ok_or_else(|| {
            format!("{name}: shapes {:?} of {:?} and {:?} of {:?} do not broadcast", a.shape, a.name, b.shape, b.name)
        })?;
        Ok(vec![(a.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![kernel::binary(self.kernel_op(), inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit(self.type_name(), vec![]);
    }
}

impl OpDef for Unary {
    fn type_name(&self) -> &'static str {
        match self {
            Unary::Relu => "Relu",
            Unary::Sigmoid => "Sigmoid",
            Unary::Tanh => "Tanh",
            Unary::HardSigmoid { .. } => "HardSigmoid",
            Unary::HardSwish => "HardSwish",
        }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let [x] = exactly(name, inputs)?;
        // Relu also runs on integers (shape arithmetic evaluated at import).
        if *self != Unary::Relu {
            require_float(name, x)?;
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        let y = match *self {
            Unary::Relu => kernel::unary(name, inputs, kernel::relu)?,
            Unary::Sigmoid => kernel::unary(name, inputs, kernel::sigmoid)?,
            Unary::Tanh => kernel::unary(name, inputs, f32::tanh)?,
            Unary::HardSigmoid { alpha, beta } => {
                kernel::unary(name, inputs, move |x| kernel::hard_sigmoid(x, alpha, beta))?
            }
            Unary::HardSwish => kernel::unary(name, inputs, kernel::hard_swish)?,
        };
        Ok(vec![y])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let attrs = match *self {
            Unary::HardSigmoid { alpha, beta } => vec![attr_float("alpha", alpha), attr_float("beta", beta)],
            _ => vec![],
        };
        cx.emit(self.type_name(), attrs);
    }
}

impl OpDef for Clip {
    fn type_name(&self) -> &'static str {
        "Clip"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Clip", inputs)?;
        require_float("Clip", x)?;
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let (min, max) = (self.min, self.max);
        Ok(vec![kernel::unary("Clip", inputs, move |x| kernel::clip(x, min, max))?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        // Opset 11+: the bounds are inputs; an infinite one is simply omitted.
        let min = if self.min.is_finite() { cx.scalar("min", self.min) } else { String::new() };
        let extra = if self.max.is_finite() {
            vec![min, cx.scalar("max", self.max)]
        } else if !min.is_empty() {
            vec![min]
        } else {
            vec![]
        };
        cx.emit_with("Clip", extra, vec![]);
    }
}
