//! Pooling: MaxPool and AveragePool over a window, GlobalAveragePool and GlobalMaxPool.
//!
//! MaxPool takes float16/32/64, int8 and uint8 (opset 12 on; its output keeps the type), the
//! other pools float32. MaxPool's optional second output `Indices` (opset 8 on) is computed only when the graph
//! reads it: the op then has two outputs, the int64 index of each maximum in the flattened
//! input (`storage_order` 0: row-major within a channel, 1: column-major), never quantized.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int};
use super::import::{Lowered, NodeCx, positive_list};
use super::window::{Window, resolve_window};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::{exactly, require_float};
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::KernelError;
use crate::runtime::kernels::pool::{self as kernel, GlobalKind};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("MaxPool", import_pool, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("AveragePool", import_pool, QuantDefault::CALIBRATED),
    OnnxOp::ir("GlobalAveragePool", import_global, QuantDefault::CALIBRATED),
    OnnxOp::ir("GlobalMaxPool", import_global, QuantDefault::PASS_THROUGH),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PoolKind {
    Max,
    Average,
}

/// MaxPool or AveragePool over a window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pool {
    pub kind: PoolKind,
    pub window: Window,
    pub ceil_mode: bool,
    /// AveragePool only: padded cells count in the divisor.
    pub count_include_pad: bool,
    /// MaxPool only: the Indices output is produced, in this storage order.
    pub indices: Option<StorageOrder>,
}

/// How MaxPool's Indices flatten a position within a channel (`storage_order`); the offset of
/// the channel (`(n * C + c) * plane`) comes first either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageOrder {
    /// `storage_order = 0`: the last spatial axis varies fastest.
    RowMajor,
    /// `storage_order = 1`: the first spatial axis varies fastest.
    ColumnMajor,
}

/// GlobalAveragePool or GlobalMaxPool: one value per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GlobalPool {
    pub kind: PoolKind,
}

impl From<Pool> for Op {
    fn from(op: Pool) -> Op {
        Op::Pool(op)
    }
}

impl From<GlobalPool> for Op {
    fn from(op: GlobalPool) -> Op {
        Op::GlobalPool(op)
    }
}

fn import_pool(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let max = cx.op_type() == "MaxPool";
    let known: &[&str] = if max {
        &["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"]
    } else {
        &["auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"]
    };
    let a = cx.attrs(known)?;
    let x = cx.input(0, "X")?;
    let kernel = a.ints("kernel_shape")?.ok_or_else(|| bad_attribute("attribute \"kernel_shape\" is required"))?;
    let kernel = positive_list(Some(kernel.clone()), kernel.len(), "kernel_shape")?;
    let window = resolve_window(&a, kernel, x.shape.get(2..).unwrap_or_default())?;
    let order = if a.flag("storage_order")? { StorageOrder::ColumnMajor } else { StorageOrder::RowMajor };
    let pool = Pool {
        kind: if max { PoolKind::Max } else { PoolKind::Average },
        window,
        ceil_mode: a.flag("ceil_mode")?,
        count_include_pad: !max && a.flag("count_include_pad")?,
        // Unread Indices cost nothing: the op keeps its single-output kernel.
        indices: (max && cx.output_used(1)).then_some(order),
    };
    Lowered::ir(pool, vec![0])
}

fn import_global(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    cx.attrs(&[])?;
    let kind = if cx.op_type() == "GlobalMaxPool" { PoolKind::Max } else { PoolKind::Average };
    Lowered::ir(GlobalPool { kind }, vec![0])
}

/// Checks that `x` is float32 `[N, C, spatial...]` (MaxPool also takes float16/64, int8 and
/// uint8: `any_max_type`).
fn spatial_input<'a>(name: &str, inputs: &[&'a TensorInfo], any_max_type: bool) -> Result<&'a TensorInfo, String> {
    let [x] = exactly(name, inputs)?;
    let max_type = matches!(x.dtype, DType::F32 | DType::F64 | DType::F16 | DType::I8 | DType::U8);
    if !(any_max_type && max_type) {
        require_float(name, x)?;
    }
    if x.shape.len() < 3 {
        return Err(format!(
            "{name}: input {:?} has shape {:?}, expected [N, C, spatial...] (rank >= 3)",
            x.name, x.shape
        ));
    }
    Ok(x)
}

impl OpDef for Pool {
    /// MaxPool's kernel runs every type it accepts natively (a maximum is exact in any type).
    fn float32_kernel(&self) -> bool {
        self.kind == PoolKind::Average
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "MaxPool",
            PoolKind::Average => "AveragePool",
        }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let x = spatial_input(name, inputs, self.kind == PoolKind::Max)?;
        let spatial = x.shape.len() - 2;
        let window = &self.window;
        window.check(name, spatial)?;
        // onnxruntime rejects pads >= kernel: such a window could lie wholly in the padding.
        for i in 0..spatial {
            let (begin, end) = (window.pads[i], window.pads[spatial + i]);
            if begin >= window.kernel[i] || end >= window.kernel[i] {
                return Err(format!(
                    "{name}: pads {begin}/{end} on spatial axis {i} must be smaller than the kernel {}",
                    window.kernel[i]
                ));
            }
        }
        let mut shape = x.shape[..2].to_vec();
        shape.extend(window.output(name, &x.shape[2..], self.ceil_mode)?);
        match (self.kind, self.indices) {
            (PoolKind::Max, Some(_)) => Ok(vec![(x.dtype, shape.clone()), (DType::I64, shape)]),
            (PoolKind::Average, Some(_)) => Err(format!("{name} has no Indices output")),
            (_, None) => Ok(vec![(x.dtype, shape)]),
        }
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        match (self.kind, self.indices) {
            (PoolKind::Max, None) => Ok(vec![kernel::max_pool(self, inputs)?]),
            (PoolKind::Max, Some(order)) => {
                let (y, indices) = kernel::max_pool_with_indices(self, inputs, order == StorageOrder::ColumnMajor)?;
                Ok(vec![y, indices])
            }
            (PoolKind::Average, None) => Ok(vec![kernel::average_pool(self, inputs)?]),
            (PoolKind::Average, Some(_)) => Err(KernelError::new("AveragePool", "has no Indices output")),
        }
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = self.window.attrs();
        attrs.push(attr_int("ceil_mode", i64::from(self.ceil_mode)));
        if self.kind == PoolKind::Average {
            attrs.push(attr_int("count_include_pad", i64::from(self.count_include_pad)));
        }
        if let Some(order) = self.indices {
            attrs.push(attr_int("storage_order", i64::from(order == StorageOrder::ColumnMajor)));
        }
        cx.emit(self.type_name(), attrs);
    }
}

impl OpDef for GlobalPool {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "GlobalMaxPool",
            PoolKind::Average => "GlobalAveragePool",
        }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let x = spatial_input(self.type_name(), inputs, false)?;
        let mut shape = x.shape.clone();
        shape[2..].fill(1);
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let kind = match self.kind {
            PoolKind::Max => GlobalKind::Max,
            PoolKind::Average => GlobalKind::Average,
        };
        Ok(vec![kernel::global_pool(kind, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit(self.type_name(), vec![]);
    }
}
