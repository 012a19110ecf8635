//! Reductions and scans: the Reduce* family (ReduceSum, ReduceMean, ReduceMax, ReduceMin,
//! ReduceProd, ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp, ReduceSumSquare), ArgMax,
//! ArgMin, CumSum, CumProd and TopK.
//!
//! Opset differences: Reduce* take `axes` as an attribute before opset 18 (ReduceSum: 13) and
//! as an optional input from then on, together with `noop_with_empty_axes`; the axes input
//! must be known at import. CumSum/CumProd's axis input and TopK's K input likewise (TopK
//! before opset 10: the `k` attribute; `largest`/`sorted` from 11).

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int, ints};
use super::import::{Lowered, NodeCx, axes, axis};
use super::{InputRole, OnnxOp, Op, OpDef, OutputEncoding, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::{bad_attribute, malformed};
use crate::runtime::kernels::KernelError;
use crate::runtime::kernels::reduce::{self as kernel, ReduceKind};

/// Integer outputs (indices): never quantized.
const INDICES: QuantDefault = QuantDefault { output: OutputEncoding::Float, ..QuantDefault::CALIBRATED };

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("ReduceSum", import_reduce, QuantDefault::CALIBRATED),
    OnnxOp::ir("ReduceMean", import_reduce, QuantDefault::CALIBRATED),
    OnnxOp::ir("ReduceMax", import_reduce, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("ReduceMin", import_reduce, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("ReduceProd", import_reduce, QuantDefault::CALIBRATED),
    OnnxOp::ir("ReduceL1", import_reduce, QuantDefault::CALIBRATED),
    OnnxOp::ir("ReduceL2", import_reduce, QuantDefault::CALIBRATED),
    OnnxOp::ir("ReduceLogSum", import_reduce, QuantDefault::CALIBRATED),
    OnnxOp::ir("ReduceLogSumExp", import_reduce, QuantDefault::CALIBRATED),
    OnnxOp::ir("ReduceSumSquare", import_reduce, QuantDefault::CALIBRATED),
    OnnxOp::ir("ArgMax", import_arg, INDICES),
    OnnxOp::ir("ArgMin", import_arg, INDICES),
    OnnxOp::ir("CumSum", import_cumulative, QuantDefault::CALIBRATED),
    OnnxOp::ir("CumProd", import_cumulative, QuantDefault::CALIBRATED),
    OnnxOp::ir("TopK", import_top_k, QuantDefault::PASS_THROUGH),
];

/// Which Reduce* op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

const REDUCTIONS: [(Reduction, &str); 10] = [
    (Reduction::Sum, "ReduceSum"),
    (Reduction::Mean, "ReduceMean"),
    (Reduction::Max, "ReduceMax"),
    (Reduction::Min, "ReduceMin"),
    (Reduction::Prod, "ReduceProd"),
    (Reduction::L1, "ReduceL1"),
    (Reduction::L2, "ReduceL2"),
    (Reduction::LogSum, "ReduceLogSum"),
    (Reduction::LogSumExp, "ReduceLogSumExp"),
    (Reduction::SumSquare, "ReduceSumSquare"),
];

impl Reduction {
    fn kernel(self) -> ReduceKind {
        match self {
            Reduction::Sum => ReduceKind::Sum,
            Reduction::Mean => ReduceKind::Mean,
            Reduction::Max => ReduceKind::Max,
            Reduction::Min => ReduceKind::Min,
            Reduction::Prod => ReduceKind::Prod,
            Reduction::L1 => ReduceKind::L1,
            Reduction::L2 => ReduceKind::L2,
            Reduction::LogSum => ReduceKind::LogSum,
            Reduction::LogSumExp => ReduceKind::LogSumExp,
            Reduction::SumSquare => ReduceKind::SumSquare,
        }
    }

    fn name(self) -> &'static str {
        REDUCTIONS.iter().find(|(r, _)| *r == self).map_or("ReduceSum", |(_, n)| n)
    }
}

/// A Reduce* op over `axes` (sorted, distinct; empty: nothing reduced, the
/// `noop_with_empty_axes` case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reduce {
    pub kind: Reduction,
    pub axes: Vec<usize>,
    pub keepdims: bool,
}

/// ArgMax (`max`) or ArgMin along one axis; int64 output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArgReduce {
    pub max: bool,
    pub axis: usize,
    pub keepdims: bool,
    pub select_last_index: bool,
}

/// CumSum, or CumProd (`product`), along one axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cumulative {
    pub product: bool,
    pub axis: usize,
    pub exclusive: bool,
    pub reverse: bool,
}

/// TopK along `axis`: outputs Values and Indices (int64), always sorted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TopK {
    pub axis: usize,
    pub k: usize,
    pub largest: bool,
    pub sorted: bool,
}

into_op!(Reduce, ArgReduce, Cumulative, TopK);

fn import_reduce(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let kind = REDUCTIONS.iter().find(|(_, n)| *n == cx.op_type()).map_or(Reduction::Sum, |(r, _)| *r);
    let input_form = if kind == Reduction::Sum { 13 } else { 18 };
    let (listed, noop, keepdims) = if cx.opset < input_form {
        cx.arity(1, 1)?;
        let a = cx.attrs(&["axes", "keepdims"])?;
        (a.ints("axes")?, false, a.flag_or("keepdims", true)?)
    } else {
        cx.arity(1, 2)?;
        let a = cx.attrs(&["keepdims", "noop_with_empty_axes"])?;
        (cx.constant_ints(1, "axes")?, a.flag("noop_with_empty_axes")?, a.flag_or("keepdims", true)?)
    };
    let rank = cx.input(0, "data")?.shape.len();
    let mut axes = match listed.filter(|v| !v.is_empty()) {
        Some(v) => axes(&v, rank, "axis")?,
        None if noop => vec![],
        None => (0..rank).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    Lowered::ir(Reduce { kind, axes, keepdims }, vec![0])
}

fn import_arg(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let known: &[&str] = if cx.opset < 12 { &["axis", "keepdims"] } else { &["axis", "keepdims", "select_last_index"] };
    let a = cx.attrs(known)?;
    let rank = cx.input(0, "data")?.shape.len();
    Lowered::ir(
        ArgReduce {
            max: cx.op_type() == "ArgMax",
            axis: axis(a.int_or("axis", 0)?, rank, false, "axis")?,
            keepdims: a.flag_or("keepdims", true)?,
            select_last_index: a.flag("select_last_index")?,
        },
        vec![0],
    )
}

fn import_cumulative(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["exclusive", "reverse"])?;
    let rank = cx.input(0, "x")?.shape.len();
    let value = match cx.constant_ints(1, "axis")?.as_deref() {
        Some(&[v]) => v,
        _ => return Err(bad_attribute(format!("{} axis must hold one integer", cx.op_type()))),
    };
    Lowered::ir(
        Cumulative {
            product: cx.op_type() == "CumProd",
            axis: axis(value, rank, false, "axis")?,
            exclusive: a.flag("exclusive")?,
            reverse: a.flag("reverse")?,
        },
        vec![0],
    )
}

fn import_top_k(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let (a, k) = if cx.opset < 10 {
        cx.arity(1, 1)?;
        let a = cx.attrs(&["axis", "k"])?;
        let k = a.int("k")?.ok_or_else(|| bad_attribute("attribute \"k\" is required"))?;
        (a, k)
    } else {
        cx.arity(2, 2)?;
        let known: &[&str] = if cx.opset < 11 { &["axis"] } else { &["axis", "largest", "sorted"] };
        let a = cx.attrs(known)?;
        let k = match cx.constant_ints(1, "K")?.as_deref() {
            Some(&[k]) => k,
            _ => return Err(malformed("TopK K must hold one integer")),
        };
        (a, k)
    };
    let rank = cx.input(0, "X")?.shape.len();
    let axis = axis(a.int_or("axis", -1)?, rank, false, "axis")?;
    let n = cx.input(0, "X")?.shape[axis];
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k <= n)
        .ok_or_else(|| bad_attribute(format!("TopK K {k} is out of range [0, {n}] for axis {axis}")))?;
    Lowered::ir(TopK { axis, k, largest: a.flag_or("largest", true)?, sorted: a.flag_or("sorted", true)? }, vec![0])
}

fn single<'a>(name: &str, inputs: &[&'a TensorInfo]) -> Result<&'a TensorInfo, String> {
    let [x] = exactly(name, inputs)?;
    Ok(x)
}

fn check_axis(name: &str, x: &TensorInfo, axis: usize) -> Result<(), String> {
    if axis >= x.shape.len() {
        return Err(format!("{name}: axis {axis} is out of range for {:?} of rank {}", x.name, x.shape.len()));
    }
    Ok(())
}

/// Numeric element types: the compute floats and the 8- to 64-bit integers.
fn numeric(name: &str, x: &TensorInfo, integers: bool) -> Result<(), String> {
    let int = x.dtype.is_integer() && !matches!(x.dtype, DType::I4 | DType::U4 | DType::I2 | DType::U2);
    if x.dtype.is_compute_float() || (integers && int) {
        Ok(())
    } else {
        Err(format!("{name}: {:?} is {}, which {name} does not support", x.name, x.dtype.name()))
    }
}

impl OpDef for Reduce {
    fn type_name(&self) -> &'static str {
        self.kind.name()
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let x = single(name, inputs)?;
        let kernel = self.kind.kernel();
        let bool_ok = matches!(kernel, ReduceKind::Max | ReduceKind::Min) && x.dtype == DType::Bool;
        if !bool_ok {
            numeric(name, x, kernel.takes_integers())?;
        }
        if let Some(&a) = self.axes.last() {
            check_axis(name, x, a)?;
        }
        Ok(vec![(x.dtype, kernel::reduced_shape(&x.shape, &self.axes, self.keepdims))])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        let x = crate::runtime::kernels::input(name, inputs, 0, "data")?;
        Ok(vec![kernel::reduce(name, self.kind.kernel(), &self.axes, self.keepdims, x)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let keepdims = attr_int("keepdims", i64::from(self.keepdims));
        if self.axes.is_empty() {
            // Nothing reduced: no axes input and noop_with_empty_axes.
            cx.emit(self.type_name(), vec![keepdims, attr_int("noop_with_empty_axes", 1)]);
            return;
        }
        let axes = cx.int64s("axes", &ints(&self.axes));
        cx.emit_with(self.type_name(), vec![axes], vec![keepdims]);
    }
}

impl OpDef for ArgReduce {
    fn type_name(&self) -> &'static str {
        if self.max { "ArgMax" } else { "ArgMin" }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let x = single(name, inputs)?;
        numeric(name, x, true)?;
        check_axis(name, x, self.axis)?;
        Ok(vec![(DType::I64, kernel::reduced_shape(&x.shape, &[self.axis], self.keepdims))])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        let x = crate::runtime::kernels::input(name, inputs, 0, "data")?;
        Ok(vec![kernel::arg_reduce(name, self.max, self.axis, self.keepdims, self.select_last_index, x)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let attrs = vec![
            attr_int("axis", self.axis as i64),
            attr_int("keepdims", i64::from(self.keepdims)),
            attr_int("select_last_index", i64::from(self.select_last_index)),
        ];
        cx.emit(self.type_name(), attrs);
    }
}

impl OpDef for Cumulative {
    fn type_name(&self) -> &'static str {
        if self.product { "CumProd" } else { "CumSum" }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let x = single(name, inputs)?;
        numeric(name, x, true)?;
        check_axis(name, x, self.axis)?;
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        let x = crate::runtime::kernels::input(name, inputs, 0, "x")?;
        Ok(vec![kernel::cumulative(name, self.product, self.axis, self.exclusive, self.reverse, x)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let axis = cx.int64s("axis", &[self.axis as i64]);
        let attrs =
            vec![attr_int("exclusive", i64::from(self.exclusive)), attr_int("reverse", i64::from(self.reverse))];
        cx.emit_with(self.type_name(), vec![axis], attrs);
    }
}

impl OpDef for TopK {
    fn type_name(&self) -> &'static str {
        "TopK"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let x = single("TopK", inputs)?;
        numeric("TopK", x, true)?;
        check_axis("TopK", x, self.axis)?;
        if self.k > x.shape[self.axis] {
            return Err(format!("TopK: k {} is larger than axis {} of {:?} {:?}", self.k, self.axis, x.name, x.shape));
        }
        let mut shape = x.shape.clone();
        shape[self.axis] = self.k;
        Ok(vec![(x.dtype, shape.clone()), (DType::I64, shape)])
    }

    fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let x = crate::runtime::kernels::input("TopK", inputs, 0, "X")?;
        let mut results = kernel::top_k("TopK", self.axis, self.k, self.largest, x)?;
        if outputs.len() == 1 {
            results.truncate(1);
        }
        Ok(results)
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let k = cx.int64s("K", &[self.k as i64]);
        let attrs = vec![
            attr_int("axis", self.axis as i64),
            attr_int("largest", i64::from(self.largest)),
            attr_int("sorted", i64::from(self.sorted)),
        ];
        cx.emit_with("TopK", vec![k], attrs);
    }
}
