//! Element-wise ops of several inputs with numpy broadcasting: the binary arithmetic (Add,
//! Sub, Mul, Div, Pow, Mod), bit shifts and bitwise logic, boolean logic, comparisons, PRelu,
//! the variadic Min, Max, Sum and Mean, Where, and Clip (bounds folded at import or read at
//! run time).
//!
//! Every numeric element type runs natively (integers wrap and divide truncating toward zero,
//! as onnxruntime's C++ does; float16 and bfloat16 compute each operation in float32 and round
//! back). The unary ops live in `unary.rs`.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int, attr_string};
use super::import::{Lowered, NodeCx};
use super::unary::is_byte_int;
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::{broadcast_shapes, exactly};
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::elementwise::{
    Int, Num, broadcast, broadcast_pair, clamp_keeping_nan, clip_f32, clip_f32_in_place, integer, map, mismatch,
    numeric, output, real_map, unsupported,
};
use crate::runtime::kernels::{KernelError, expect_inputs};

const CAL: QuantDefault = QuantDefault::CALIBRATED;

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("Add", import_binary, CAL),
    OnnxOp::ir("Sub", import_binary, CAL),
    OnnxOp::ir("Mul", import_binary, CAL),
    OnnxOp::ir("Div", import_binary, CAL),
    OnnxOp::ir("Pow", import_binary, CAL),
    OnnxOp::ir("Mod", import_binary, CAL),
    OnnxOp::ir("BitShift", import_binary, CAL),
    OnnxOp::ir("BitwiseAnd", import_binary, CAL),
    OnnxOp::ir("BitwiseOr", import_binary, CAL),
    OnnxOp::ir("BitwiseXor", import_binary, CAL),
    OnnxOp::ir("And", import_binary, CAL),
    OnnxOp::ir("Or", import_binary, CAL),
    OnnxOp::ir("Xor", import_binary, CAL),
    OnnxOp::ir("Equal", import_binary, CAL),
    OnnxOp::ir("Greater", import_binary, CAL),
    OnnxOp::ir("GreaterOrEqual", import_binary, CAL),
    OnnxOp::ir("Less", import_binary, CAL),
    OnnxOp::ir("LessOrEqual", import_binary, CAL),
    OnnxOp::ir("PRelu", import_binary, CAL),
    OnnxOp::ir("Min", import_variadic, CAL),
    OnnxOp::ir("Max", import_variadic, CAL),
    OnnxOp::ir("Sum", import_variadic, CAL),
    OnnxOp::ir("Mean", import_variadic, CAL),
    OnnxOp::ir("Where", import_where, CAL),
    OnnxOp::ir("Clip", import_clip, QuantDefault { squash: true, ..QuantDefault::CALIBRATED }),
];

/// Binary element-wise ops with numpy broadcasting. Both inputs share a dtype, except Pow's
/// exponent; comparisons produce bool; PRelu's slope broadcasts to the shape of X.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// `fmod`: the remainder takes the dividend's sign (C `fmod`); else the divisor's (Python).
    Mod {
        fmod: bool,
    },
    BitShift {
        left: bool,
    },
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    And,
    Or,
    Xor,
    Equal,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    PRelu,
}

/// Min, Max, Sum and Mean of one or more inputs, broadcast together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variadic {
    Min,
    Max,
    Sum,
    Mean,
}

/// `condition ? X : Y`, broadcast over the three inputs; any element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Where;

/// `min(max(x, min), max)` on float32 with bounds known at import; absent bounds are infinite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    pub min: f32,
    pub max: f32,
}

/// Clip on any numeric type with bounds read from inputs (run-time values, or constants of a
/// type other than float32): the IR inputs are X, then min if `min`, then max if `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClipBounds {
    pub min: bool,
    pub max: bool,
}

impl From<Binary> for Op {
    fn from(op: Binary) -> Op {
        Op::Binary(op)
    }
}

impl From<Variadic> for Op {
    fn from(op: Variadic) -> Op {
        Op::Variadic(op)
    }
}

impl From<Where> for Op {
    fn from(op: Where) -> Op {
        Op::Where(op)
    }
}

impl From<Clip> for Op {
    fn from(op: Clip) -> Op {
        Op::Clip(op)
    }
}

impl From<ClipBounds> for Op {
    fn from(op: ClipBounds) -> Op {
        Op::ClipBounds(op)
    }
}

fn import_binary(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let op = match cx.op_type() {
        "Mod" => {
            let fmod = cx.attrs(&["fmod"])?.flag_or("fmod", false)?;
            if !fmod && cx.input(0, "A")?.dtype.is_float() {
                return Err(bad_attribute("Mod on floats needs fmod = 1 (the spec's rule)"));
            }
            Binary::Mod { fmod }
        }
        "BitShift" => {
            let a = cx.attrs(&["direction"])?;
            let left = match a.string("direction")?.as_deref() {
                Some("LEFT") => true,
                Some("RIGHT") => false,
                other => {
                    return Err(bad_attribute(format!(
                        "BitShift direction must be \"LEFT\" or \"RIGHT\", got {other:?}"
                    )));
                }
            };
            Binary::BitShift { left }
        }
        op_type => {
            cx.attrs(&[])?;
            match op_type {
                "Add" => Binary::Add,
                "Sub" => Binary::Sub,
                "Mul" => Binary::Mul,
                "Div" => Binary::Div,
                "Pow" => Binary::Pow,
                "BitwiseAnd" => Binary::BitwiseAnd,
                "BitwiseOr" => Binary::BitwiseOr,
                "BitwiseXor" => Binary::BitwiseXor,
                "And" => Binary::And,
                "Or" => Binary::Or,
                "Xor" => Binary::Xor,
                "Equal" => Binary::Equal,
                "Greater" => Binary::Greater,
                "GreaterOrEqual" => Binary::GreaterOrEqual,
                "Less" => Binary::Less,
                "LessOrEqual" => Binary::LessOrEqual,
                "PRelu" => Binary::PRelu,
                other => return Err(bad_attribute(format!("{other} is not a binary element-wise op"))),
            }
        }
    };
    Lowered::ir(op, vec![0, 1])
}

fn import_variadic(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.attrs(&[])?;
    let n = cx.inputs.len();
    if n == 0 {
        return Err(crate::onnx::error::malformed(format!("{} needs at least one input", cx.op_type())));
    }
    for i in 0..n {
        cx.input(i, "data")?;
    }
    let op = match cx.op_type() {
        "Min" => Variadic::Min,
        "Max" => Variadic::Max,
        "Sum" => Variadic::Sum,
        _ => Variadic::Mean,
    };
    Lowered::ir(op, (0..n).collect())
}

fn import_where(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    cx.attrs(&[])?;
    Lowered::ir(Where, vec![0, 1, 2])
}

fn import_clip(cx: &NodeCx) -> Result<Lowered, ImportError> {
    if cx.opset < 11 {
        cx.arity(1, 1)?;
        let a = cx.attrs(&["min", "max"])?;
        let (min, max) = (a.float("min")?, a.float("max")?);
        return Lowered::ir(Clip { min: min.unwrap_or(f32::NEG_INFINITY), max: max.unwrap_or(f32::INFINITY) }, vec![0]);
    }
    cx.arity(1, 3)?;
    cx.attrs(&[])?;
    let x = cx.input(0, "input")?;
    let known = |i: usize| cx.opt(i).is_none_or(|view| view.value.is_some());
    if x.dtype == DType::F32 && known(1) && known(2) {
        // Constant bounds on float32: attributes the quantizer reads (Relu6 squashing).
        let (min, max) = (cx.constant_scalar(1, "min")?, cx.constant_scalar(2, "max")?);
        return Lowered::ir(Clip { min: min.unwrap_or(f32::NEG_INFINITY), max: max.unwrap_or(f32::INFINITY) }, vec![0]);
    }
    for i in [1, 2] {
        if let Some(view) = cx.opt(i) {
            if view.dtype != x.dtype {
                return Err(bad_attribute(format!(
                    "Clip bound #{i} is {} but the input is {}",
                    view.dtype.name(),
                    x.dtype.name()
                )));
            }
            if view.shape.iter().product::<usize>() != 1 {
                return Err(bad_attribute(format!("Clip bound #{i} must hold one value, got shape {:?}", view.shape)));
            }
        }
    }
    let bounds = ClipBounds { min: cx.opt(1).is_some(), max: cx.opt(2).is_some() };
    Lowered::ir(bounds, cx.present(&[0, 1, 2]))
}

/// A numeric type the kernels compute in.
fn is_numeric(dtype: DType) -> bool {
    dtype.is_compute_float() || is_byte_int(dtype)
}

fn broadcast_infos(name: &str, a: &TensorInfo, b: &TensorInfo) -> Result<Vec<usize>, String> {
    broadcast_shapes(&a.shape, &b.shape).ok_or_else(|| {
        format!("{name}: shapes {:?} of {:?} and {:?} of {:?} do not broadcast", a.shape, a.name, b.shape, b.name)
    })
}

fn same_dtype(name: &str, a: &TensorInfo, b: &TensorInfo) -> Result<(), String> {
    if a.dtype != b.dtype {
        return Err(format!("{name}: {:?} is {} but {:?} is {}", a.name, a.dtype.name(), b.name, b.dtype.name()));
    }
    Ok(())
}

fn takes(name: &str, x: &TensorInfo, ok: bool) -> Result<(), String> {
    if ok { Ok(()) } else { Err(format!("{name}: {:?} is {}, which {name} does not take", x.name, x.dtype.name())) }
}

impl OpDef for Binary {
    fn type_name(&self) -> &'static str {
        match self {
            Binary::Add => "Add",
            Binary::Sub => "Sub",
            Binary::Mul => "Mul",
            Binary::Div => "Div",
            Binary::Pow => "Pow",
            Binary::Mod { .. } => "Mod",
            Binary::BitShift { .. } => "BitShift",
            Binary::BitwiseAnd => "BitwiseAnd",
            Binary::BitwiseOr => "BitwiseOr",
            Binary::BitwiseXor => "BitwiseXor",
            Binary::And => "And",
            Binary::Or => "Or",
            Binary::Xor => "Xor",
            Binary::Equal => "Equal",
            Binary::Greater => "Greater",
            Binary::GreaterOrEqual => "GreaterOrEqual",
            Binary::Less => "Less",
            Binary::LessOrEqual => "LessOrEqual",
            Binary::PRelu => "PRelu",
        }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let [a, b] = exactly(name, inputs)?;
        let shape = broadcast_infos(name, a, b)?;
        if *self == Binary::Pow {
            let base = matches!(a.dtype, DType::I32 | DType::I64) || a.dtype.is_compute_float();
            takes(name, a, base)?;
            takes(name, b, is_numeric(b.dtype))?;
            return Ok(vec![(a.dtype, shape)]);
        }
        same_dtype(name, a, b)?;
        let (ok, dtype) = match self {
            Binary::Add | Binary::Sub | Binary::Mul | Binary::Div | Binary::Mod { .. } => {
                (is_numeric(a.dtype), a.dtype)
            }
            Binary::BitShift { .. } => (matches!(a.dtype, DType::U8 | DType::U16 | DType::U32 | DType::U64), a.dtype),
            Binary::BitwiseAnd | Binary::BitwiseOr | Binary::BitwiseXor => (is_byte_int(a.dtype), a.dtype),
            Binary::And | Binary::Or | Binary::Xor => (a.dtype == DType::Bool, DType::Bool),
            Binary::Equal => (is_numeric(a.dtype) || a.dtype == DType::Bool, DType::Bool),
            Binary::Greater | Binary::GreaterOrEqual | Binary::Less | Binary::LessOrEqual => {
                (is_numeric(a.dtype), DType::Bool)
            }
            Binary::PRelu => {
                if shape != a.shape {
                    return Err(format!(
                        "PRelu: slope {:?} of shape {:?} does not broadcast to X's shape {:?}",
                        b.name, b.shape, a.shape
                    ));
                }
                (is_numeric(a.dtype), a.dtype)
            }
            Binary::Pow => (true, a.dtype),
        };
        takes(name, a, ok)?;
        Ok(vec![(dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        expect_inputs(name, inputs, 2, 2)?;
        let (a, b) = (inputs[0], inputs[1]);
        let shape = broadcast_pair(name, a, b)?;
        let g = Geometry { a: &a.shape, b: &b.shape, out: &shape };
        let fail = || unsupported(name, &a.data);
        let data = match *self {
            Binary::Pow => pow(&g, a, b).ok_or_else(|| {
                KernelError::new(name, format!("unsupported types {} ^ {}", a.dtype().name(), b.dtype().name()))
            })?,
            _ if a.dtype() != b.dtype() => return Err(mismatch(name, &a.data, &b.data)),
            Binary::And | Binary::Or | Binary::Xor => match (&a.data, &b.data) {
                (TensorData::Bool(x), TensorData::Bool(y)) => TensorData::Bool(match self {
                    Binary::And => broadcast(x, g.a, y, g.b, g.out, |p, q| p & q),
                    Binary::Or => broadcast(x, g.a, y, g.b, g.out, |p, q| p | q),
                    _ => broadcast(x, g.a, y, g.b, g.out, |p, q| p ^ q),
                }),
                _ => return Err(fail()),
            },
            Binary::Equal if a.dtype() == DType::Bool => match (&a.data, &b.data) {
                (TensorData::Bool(x), TensorData::Bool(y)) => {
                    TensorData::Bool(broadcast(x, g.a, y, g.b, g.out, |p, q| u8::from(p == q)))
                }
                _ => return Err(fail()),
            },
            Binary::Equal | Binary::Greater | Binary::GreaterOrEqual | Binary::Less | Binary::LessOrEqual => {
                numeric!(&a.data, x => compare(*self, &g, x, &b.data), return Err(fail()))
            }
            Binary::BitShift { .. } | Binary::BitwiseAnd | Binary::BitwiseOr | Binary::BitwiseXor => {
                integer!(&a.data, x => bitwise(*self, &g, x, &b.data), return Err(fail()))
            }
            _ => numeric!(&a.data, x => arithmetic(name, *self, &g, x, &b.data)?, return Err(fail())),
        };
        Ok(vec![output(name, shape, data)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        match (self, position) {
            (Binary::PRelu, 1) => InputRole::Weight { channel_axis: None },
            _ => InputRole::Activation,
        }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let attrs = match *self {
            Binary::Mod { fmod } => vec![attr_int("fmod", i64::from(fmod))],
            Binary::BitShift { left } => vec![attr_string("direction", if left { "LEFT" } else { "RIGHT" })],
            _ => vec![],
        };
        cx.emit(self.type_name(), attrs);
    }
}

/// The shapes of a broadcast: both operands and the output.
struct Geometry<'a> {
    a: &'a [usize],
    b: &'a [usize],
    out: &'a [usize],
}

/// Add, Sub, Mul, Div, Mod and PRelu on one numeric type.
fn arithmetic<T: Num>(
    name: &'static str,
    op: Binary,
    g: &Geometry,
    x: &[T],
    other: &TensorData,
) -> Result<TensorData, KernelError> {
    let y = T::slice(other).ok_or_else(|| KernelError::new(name, "inputs have different dtypes"))?;
    let out = match op {
        Binary::Add => broadcast(x, g.a, y, g.b, g.out, T::add),
        Binary::Sub => broadcast(x, g.a, y, g.b, g.out, T::sub),
        Binary::Mul => broadcast(x, g.a, y, g.b, g.out, T::mul),
        Binary::PRelu => broadcast(x, g.a, y, g.b, g.out, |v, slope| if v < T::ZERO { slope.mul(v) } else { v }),
        Binary::Div | Binary::Mod { .. } => {
            if T::IS_INT && y.contains(&T::ZERO) {
                return Err(KernelError::new(name, "integer division by zero"));
            }
            match op {
                Binary::Div => broadcast(x, g.a, y, g.b, g.out, T::div),
                Binary::Mod { fmod: true } => broadcast(x, g.a, y, g.b, g.out, T::rem_trunc),
                _ => broadcast(x, g.a, y, g.b, g.out, T::rem_floor),
            }
        }
        _ => return Err(KernelError::new(name, "not an arithmetic op")),
    };
    Ok(T::wrap(out))
}

/// The comparisons, to bool.
fn compare<T: Num>(op: Binary, g: &Geometry, x: &[T], other: &TensorData) -> TensorData {
    let Some(y) = T::slice(other) else { return TensorData::Bool(vec![]) };
    TensorData::Bool(match op {
        Binary::Equal => broadcast(x, g.a, y, g.b, g.out, |p, q| u8::from(p == q)),
        Binary::Greater => broadcast(x, g.a, y, g.b, g.out, |p, q| u8::from(p > q)),
        Binary::GreaterOrEqual => broadcast(x, g.a, y, g.b, g.out, |p, q| u8::from(p >= q)),
        Binary::Less => broadcast(x, g.a, y, g.b, g.out, |p, q| u8::from(p < q)),
        _ => broadcast(x, g.a, y, g.b, g.out, |p, q| u8::from(p <= q)),
    })
}

/// Bit shifts and bitwise logic on one integer type.
fn bitwise<T: Int>(op: Binary, g: &Geometry, x: &[T], other: &TensorData) -> TensorData {
    let Some(y) = T::slice(other) else { return TensorData::Bool(vec![]) };
    T::wrap(match op {
        Binary::BitShift { left: true } => broadcast(x, g.a, y, g.b, g.out, T::shl),
        Binary::BitShift { left: false } => broadcast(x, g.a, y, g.b, g.out, T::shr),
        Binary::BitwiseAnd => broadcast(x, g.a, y, g.b, g.out, T::and),
        Binary::BitwiseOr => broadcast(x, g.a, y, g.b, g.out, T::or),
        _ => broadcast(x, g.a, y, g.b, g.out, T::xor),
    })
}

/// Pow: the base's type out. float32 ^ float32 runs in float32 (numpy's `powf`); other float
/// bases in float64 (exact for every exponent type numpy would promote to) rounded to the
/// base type; integer ^ integer by repeated squaring, wrapping (a negative exponent truncates
/// `1 / base^-e` toward zero); integer ^ float in float64, truncated as a C cast.
fn pow(g: &Geometry, a: &Tensor, b: &Tensor) -> Option<TensorData> {
    if let (TensorData::F32(x), TensorData::F32(y)) = (&a.data, &b.data) {
        return Some(TensorData::F32(broadcast(x, g.a, y, g.b, g.out, f32::powf)));
    }
    if a.dtype().is_compute_float() {
        let (x, y) = (a.data.to_f64_vec(), b.data.to_f64_vec());
        let out = broadcast(&x, g.a, &y, g.b, g.out, f64::powf);
        return TensorData::floats_from_f64(a.dtype(), &out, false);
    }
    let x = a.data.to_i64_vec()?;
    let out: Vec<i64> = match b.data.to_i64_vec() {
        Some(y) if b.dtype() != DType::Bool => broadcast(&x, g.a, &y, g.b, g.out, |p: i64, q: i64| {
            if q >= 0 {
                p.pow_wrapping(q as u64)
            } else {
                // 1 / p^|q| truncated: 1 for p = 1, ±1 for p = -1, 0 otherwise (and for p = 0, where
                // C's pow gives inf and the cast is undefined).
                match p {
                    1 => 1,
                    -1 => {
                        if q % 2 == 0 {
                            1
                        } else {
                            -1
                        }
                    }
                    _ => 0,
                }
            }
        }),
        _ => {
            let y = b.data.to_f64_vec();
            broadcast(&x, g.a, &y, g.b, g.out, |p: i64, q: f64| (p as f64).powf(q) as i64)
        }
    };
    TensorData::ints_from_i64(a.dtype(), &out)
}

fn import_variadic_name(op: Variadic) -> &'static str {
    match op {
        Variadic::Min => "Min",
        Variadic::Max => "Max",
        Variadic::Sum => "Sum",
        Variadic::Mean => "Mean",
    }
}

impl OpDef for Variadic {
    fn type_name(&self) -> &'static str {
        import_variadic_name(*self)
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let Some((first, rest)) = inputs.split_first() else {
            return Err(format!("{name}: expects at least one input"));
        };
        let ok = if *self == Variadic::Mean { first.dtype.is_compute_float() } else { is_numeric(first.dtype) };
        takes(name, first, ok)?;
        let mut shape = first.shape.clone();
        for x in rest {
            same_dtype(name, first, x)?;
            shape = broadcast_shapes(&shape, &x.shape).ok_or_else(|| {
                format!("{name}: shape {:?} of {:?} does not broadcast with {shape:?}", x.shape, x.name)
            })?;
        }
        Ok(vec![(first.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        let Some((first, rest)) = inputs.split_first() else {
            return Err(KernelError::new(name, "expects at least one input"));
        };
        let mut acc: Tensor = (*first).clone();
        for next in rest {
            if next.dtype() != acc.dtype() {
                return Err(mismatch(name, &acc.data, &next.data));
            }
            let shape = broadcast_pair(name, &acc, next)?;
            let g = Geometry { a: &acc.shape, b: &next.shape, out: &shape };
            let data =
                numeric!(&acc.data, x => fold(*self, &g, x, &next.data), return Err(unsupported(name, &acc.data)));
            acc = output(name, shape, data)?;
        }
        if *self == Variadic::Mean {
            let n = inputs.len() as f64;
            let data = real_map!(&acc.data, v => divide(v, n), return Err(unsupported(name, &acc.data)));
            acc = output(name, acc.shape.clone(), data)?;
        } else if !is_numeric(acc.dtype()) {
            return Err(unsupported(name, &acc.data));
        }
        Ok(vec![acc])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit(self.type_name(), vec![]);
    }
}

/// Every element divided by `n` (Mean).
fn divide<T: Num>(v: &[T], n: f64) -> Vec<T> {
    let n = T::from_f64(n);
    map(v, |s| s.div(n))
}

/// One step of a variadic op: `acc ∘ next`. Mean sums (and divides at the end).
fn fold<T: Num>(op: Variadic, g: &Geometry, x: &[T], other: &TensorData) -> TensorData {
    let Some(y) = T::slice(other) else { return TensorData::Bool(vec![]) };
    T::wrap(match op {
        Variadic::Min => broadcast(x, g.a, y, g.b, g.out, T::min_nan),
        Variadic::Max => broadcast(x, g.a, y, g.b, g.out, T::max_nan),
        Variadic::Sum | Variadic::Mean => broadcast(x, g.a, y, g.b, g.out, T::add),
    })
}

/// Where over one element type: the condition and X are paired first, then Y is chosen.
fn select<T: Copy + 'static>(
    c: &[u8],
    cs: &[usize],
    x: &[T],
    xs: &[usize],
    y: &[T],
    ys: &[usize],
    out: &[usize],
) -> Vec<T> {
    let Some(cx_shape) = broadcast_shapes(cs, xs) else { return vec![] };
    let pairs = broadcast(c, cs, x, xs, &cx_shape, |c, x| (c, x));
    broadcast(&pairs, &cx_shape, y, ys, out, |(c, x), y| if c != 0 { x } else { y })
}

macro_rules! select_all {
    ($c:expr, $x:expr, $y:expr, $($variant:ident),+) => {
        match (&$x.data, &$y.data) {
            $((TensorData::$variant(xv), TensorData::$variant(yv)) => {
                Some(TensorData::$variant(select($c.0, $c.1, xv, &$x.shape, yv, &$y.shape, $c.2)))
            })+
            _ => None,
        }
    };
}

impl OpDef for Where {
    fn type_name(&self) -> &'static str {
        "Where"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [c, x, y] = exactly("Where", inputs)?;
        takes("Where", c, c.dtype == DType::Bool)?;
        same_dtype("Where", x, y)?;
        let shape = broadcast_infos("Where", c, x)?;
        let shape = broadcast_shapes(&shape, &y.shape)
            .ok_or_else(|| format!("Where: shape {:?} of {:?} does not broadcast with {shape:?}", y.shape, y.name))?;
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        expect_inputs("Where", inputs, 3, 3)?;
        let (c, x, y) = (inputs[0], inputs[1], inputs[2]);
        let TensorData::Bool(cv) = &c.data else { return Err(unsupported("Where", &c.data)) };
        let shape = broadcast_pair("Where", c, x)?;
        let shape = broadcast_shape_or("Where", &shape, &y.shape)?;
        let geometry = (cv.as_slice(), c.shape.as_slice(), shape.as_slice());
        let data = select_all!(
            geometry, x, y, F32, I64, I32, Bool, F64, F16, BF16, I8, I16, U8, U16, U32, U64, F8E4M3FN, F8E4M3FNUZ,
            F8E5M2, F8E5M2FNUZ, I4, U4, I2, U2
        )
        .ok_or_else(|| mismatch("Where", &x.data, &y.data))?;
        Ok(vec![output("Where", shape, data)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 0 { InputRole::Index } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Where", vec![]);
    }
}

fn broadcast_shape_or(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>, KernelError> {
    broadcast_shapes(a, b).ok_or_else(|| KernelError::new(op, format!("shapes {a:?} and {b:?} do not broadcast")))
}

impl OpDef for Clip {
    fn type_name(&self) -> &'static str {
        "Clip"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Clip", inputs)?;
        takes("Clip", x, x.dtype == DType::F32)?;
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        expect_inputs("Clip", inputs, 1, 1)?;
        let x = inputs[0];
        let TensorData::F32(v) = &x.data else { return Err(unsupported("Clip", &x.data)) };
        let (min, max) = (self.min, self.max);
        Ok(vec![output("Clip", x.shape.clone(), TensorData::F32(clip_f32(v, min, max)))?])
    }

    fn run_in_place(&self, x: &mut Tensor) -> Option<Result<(), KernelError>> {
        let TensorData::F32(values) = &mut x.data else { return None };
        clip_f32_in_place(values, self.min, self.max);
        Some(Ok(()))
    }

    fn keeps_order(&self) -> bool {
        // max, then min: each keeps order (with NaN bounds, a NaN never passes through one).
        true
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

/// Clip of one numeric type with bounds from tensors (`None`: unbounded on that side).
fn clip_typed<T: Num>(x: &[T], lo: Option<&TensorData>, hi: Option<&TensorData>) -> Option<TensorData> {
    let bound = |t: Option<&TensorData>| -> Option<Option<T>> {
        match t {
            None => Some(None),
            Some(data) => T::slice(data).and_then(|s| s.first().copied()).map(Some),
        }
    };
    let (lo, hi) = (bound(lo)?, bound(hi)?);
    Some(T::wrap(match (lo, hi) {
        (Some(lo), Some(hi)) => map(x, |v| clamp_keeping_nan(v, lo, hi)),
        (Some(lo), None) => map(x, |v| if v < lo { lo } else { v }),
        (None, Some(hi)) => map(x, |v| if v > hi { hi } else { v }),
        (None, None) => x.to_vec(),
    }))
}

impl OpDef for ClipBounds {
    fn type_name(&self) -> &'static str {
        "Clip"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let n = 1 + usize::from(self.min) + usize::from(self.max);
        if inputs.len() != n {
            return Err(format!("Clip: expects {n} input(s), got {}", inputs.len()));
        }
        let x = inputs[0];
        takes("Clip", x, is_numeric(x.dtype))?;
        for bound in &inputs[1..] {
            same_dtype("Clip", x, bound)?;
            if bound.shape.iter().product::<usize>() != 1 {
                return Err(format!("Clip: bound {:?} must hold one value, got shape {:?}", bound.name, bound.shape));
            }
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let n = 1 + usize::from(self.min) + usize::from(self.max);
        expect_inputs("Clip", inputs, n, n)?;
        let x = inputs[0];
        let lo = self.min.then(|| &inputs[1].data);
        let hi = self.max.then(|| &inputs[n - 1].data);
        let data = numeric!(&x.data, v => clip_typed(v, lo, hi), None).ok_or_else(|| {
            KernelError::new("Clip", format!("{} input with bounds of another type or empty", x.dtype().name()))
        })?;
        Ok(vec![output("Clip", x.shape.clone(), data)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 0 { InputRole::Activation } else { InputRole::FloatParam }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        if !self.min && self.max {
            cx.inputs.insert(1, String::new());
        }
        cx.emit("Clip", vec![]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::kernels::elementwise::broadcast_shape;

    fn binary(op: Binary, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
        Op::Binary(op).run(inputs, &[]).map(|mut v| v.remove(0))
    }

    fn f32s(t: &Tensor) -> &[f32] {
        t.as_f32().unwrap()
    }

    #[test]
    fn clip_and_relu_over_their_inputs_own_values_give_the_bits_of_a_run() {
        let special = [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY, 5.9, 6.0, 6.1, -1e-30, 1e-45];
        let values: Vec<f32> = special.iter().copied().chain((0..50).map(|i| (i as f32 - 25.0) / 3.0)).collect();
        let x = Tensor::from_f32(vec![values.len()], values);
        let ops = [
            Op::Clip(Clip { min: 0.0, max: 6.0 }),
            Op::Clip(Clip { min: -0.0, max: f32::INFINITY }),
            Op::Unary(crate::ops::Unary::Relu),
        ];
        let bits = |t: &Tensor| f32s(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for op in ops {
            let run = op.run(&[&x], &[]).unwrap().remove(0);
            let mut own = x.clone();
            op.run_in_place(&mut own).expect("a path over the input's values").unwrap();
            assert_eq!(bits(&own), bits(&run), "{op:?}");
        }
        // Other types and ops have none, and leave the input as it was.
        let mut ints = Tensor::new(vec![2], TensorData::I32(vec![-1, 1])).unwrap();
        assert!(Op::Unary(crate::ops::Unary::Relu).run_in_place(&mut ints).is_none());
        assert_eq!(ints.data, TensorData::I32(vec![-1, 1]));
        let mut floats = x.clone();
        assert!(Op::Unary(crate::ops::Unary::Sigmoid).run_in_place(&mut floats).is_none());
        assert_eq!(bits(&floats), bits(&x));
    }

    #[test]
    fn broadcast_shape_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 3, 4], &[4]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shape(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shape(&[2, 3], &[2]), None);
        assert_eq!(broadcast_shape(&[0, 3], &[1, 3]), Some(vec![0, 3]));
    }

    #[test]
    fn add_same_shape() {
        let a = Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]);
        let b = Tensor::from_f32(vec![3], vec![10.0, 20.0, 30.0]);
        let y = binary(Binary::Add, &[&a, &b]).unwrap();
        assert_eq!(f32s(&y), &[11.0, 22.0, 33.0]);
    }

    #[test]
    fn sub_broadcasts_a_per_channel_bias_over_nchw() {
        // x[n,c,h,w] = 100n + 10c + (2h + w) with N=2, C=2, H=W=2; b[c] = c + 1, shape [2,1,1].
        let x: Vec<f32> = (0..16).map(|i| (100 * (i / 8) + 10 * ((i / 4) % 2) + i % 4) as f32).collect();
        let a = Tensor::from_f32(vec![2, 2, 2, 2], x);
        let b = Tensor::from_f32(vec![2, 1, 1], vec![1.0, 2.0]);
        let y = binary(Binary::Sub, &[&a, &b]).unwrap();
        assert_eq!(y.shape, vec![2, 2, 2, 2]);
        #[rustfmt::skip]
        let expected = [
            -1.0, 0.0, 1.0, 2.0,        // n0 c0: [0,1,2,3] - 1
            8.0, 9.0, 10.0, 11.0,       // n0 c1: [10..13] - 2
            99.0, 100.0, 101.0, 102.0,  // n1 c0: [100..103] - 1
            108.0, 109.0, 110.0, 111.0, // n1 c1: [110..113] - 2
        ];
        assert_eq!(f32s(&y), &expected);
    }

    #[test]
    fn mul_broadcasts_both_operands() {
        // [3,1] * [1,2] -> [3,2]: outer product of [1,2,3] and [10,100].
        let a = Tensor::from_f32(vec![3, 1], vec![1.0, 2.0, 3.0]);
        let b = Tensor::from_f32(vec![1, 2], vec![10.0, 100.0]);
        let y = binary(Binary::Mul, &[&a, &b]).unwrap();
        assert_eq!(y.shape, vec![3, 2]);
        assert_eq!(f32s(&y), &[10.0, 100.0, 20.0, 200.0, 30.0, 300.0]);
    }

    #[test]
    fn div_by_a_scalar_on_the_left_and_right() {
        let a = Tensor::scalar_f32(12.0);
        let b = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        // 12 / [1,2,3,4] = [12, 6, 4, 3]
        assert_eq!(f32s(&binary(Binary::Div, &[&a, &b]).unwrap()), &[12.0, 6.0, 4.0, 3.0]);
        // [1,2,3,4] / 12 computed as x / 12 exactly as in f32
        let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|x| x / 12.0).collect();
        assert_eq!(f32s(&binary(Binary::Div, &[&b, &a]).unwrap()), &expected[..]);
    }

    #[test]
    fn broadcast_a_middle_axis() {
        // a [2,3,2] = 0..12, b [2,1,2] = [[1,2]],[[3,4]]: b repeats over the middle axis.
        let a = Tensor::from_f32(vec![2, 3, 2], (0..12).map(|i| i as f32).collect());
        let b = Tensor::from_f32(vec![2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let y = binary(Binary::Add, &[&a, &b]).unwrap();
        #[rustfmt::skip]
        let expected = [
            1.0, 3.0, 3.0, 5.0, 5.0, 7.0,     // [0,1],[2,3],[4,5] + [1,2]
            9.0, 11.0, 11.0, 13.0, 13.0, 15.0, // [6,7],[8,9],[10,11] + [3,4]
        ];
        assert_eq!(f32s(&y), &expected);
    }

    #[test]
    fn integer_arithmetic_wraps_and_truncates() {
        let a = Tensor::from_i64(vec![4], vec![7, -7, i64::MAX, 6]);
        let b = Tensor::from_i64(vec![4], vec![2, 2, 1, -4]);
        let div = binary(Binary::Div, &[&a, &b]).unwrap();
        // 7/2 = 3, -7/2 = -3 (toward zero), MAX/1 = MAX, 6/-4 = -1
        assert_eq!(div.data, TensorData::I64(vec![3, -3, i64::MAX, -1]));
        let add = binary(Binary::Add, &[&a, &b]).unwrap();
        // MAX + 1 wraps to MIN
        assert_eq!(add.data, TensorData::I64(vec![9, -5, i64::MIN, 2]));
        let i32s = |v: Vec<i32>| Tensor::new(vec![v.len()], TensorData::I32(v)).unwrap();
        let mul = binary(Binary::Mul, &[&i32s(vec![3, -4]), &i32s(vec![5])]).unwrap();
        assert_eq!(mul.data, TensorData::I32(vec![15, -20]));
    }

    #[test]
    fn integer_division_by_zero_is_an_error() {
        let a = Tensor::from_i64(vec![2], vec![1, 2]);
        let b = Tensor::from_i64(vec![2], vec![1, 0]);
        assert!(binary(Binary::Div, &[&a, &b]).unwrap_err().message.contains("by zero"));
    }

    #[test]
    fn mismatched_dtypes_and_shapes_are_errors() {
        let a = Tensor::from_i64(vec![2], vec![1, 2]);
        let b = Tensor::from_f32(vec![2], vec![1.0, 2.0]);
        assert!(binary(Binary::Add, &[&a, &b]).unwrap_err().message.contains("different dtypes"));
        let c = Tensor::from_f32(vec![3], vec![1.0, 2.0, 3.0]);
        assert!(binary(Binary::Add, &[&b, &c]).unwrap_err().message.contains("do not broadcast"));
    }

    #[test]
    fn integer_mod_follows_the_divisor_or_the_dividend() {
        // Python: -7 % 3 = 2, 7 % -3 = -2; C fmod: -7 % 3 = -1, 7 % -3 = 1.
        let a = Tensor::from_i64(vec![2], vec![-7, 7]);
        let b = Tensor::from_i64(vec![2], vec![3, -3]);
        assert_eq!(binary(Binary::Mod { fmod: false }, &[&a, &b]).unwrap().data, TensorData::I64(vec![2, -2]));
        assert_eq!(binary(Binary::Mod { fmod: true }, &[&a, &b]).unwrap().data, TensorData::I64(vec![-1, 1]));
    }

    #[test]
    fn integer_pow_and_shifts() {
        // 3^4 = 81, 2^-1 truncates to 0, (-1)^-3 = -1; u8: 1 << 9 (past the width) = 0, 128 >> 7 = 1.
        let a = Tensor::from_i64(vec![3], vec![3, 2, -1]);
        let b = Tensor::from_i64(vec![3], vec![4, -1, -3]);
        assert_eq!(binary(Binary::Pow, &[&a, &b]).unwrap().data, TensorData::I64(vec![81, 0, -1]));
        let u = |v: Vec<u8>| Tensor::new(vec![v.len()], TensorData::U8(v)).unwrap();
        let left = binary(Binary::BitShift { left: true }, &[&u(vec![1, 1]), &u(vec![9, 3])]).unwrap();
        assert_eq!(left.data, TensorData::U8(vec![0, 8]));
        let right = binary(Binary::BitShift { left: false }, &[&u(vec![128]), &u(vec![7])]).unwrap();
        assert_eq!(right.data, TensorData::U8(vec![1]));
    }

    #[test]
    fn where_broadcasts_three_ways() {
        // c [2,1] = [[1],[0]], x [3] = [1,2,3], y scalar 9 -> [[1,2,3],[9,9,9]].
        let c = Tensor::new(vec![2, 1], TensorData::Bool(vec![1, 0])).unwrap();
        let x = Tensor::new(vec![3], TensorData::I16(vec![1, 2, 3])).unwrap();
        let y = Tensor::new(vec![], TensorData::I16(vec![9])).unwrap();
        let out = Op::Where(Where).run(&[&c, &x, &y], &[]).unwrap().remove(0);
        assert_eq!((out.shape, out.data), (vec![2, 3], TensorData::I16(vec![1, 2, 3, 9, 9, 9])));
    }

    #[test]
    fn clip_bounds_read_at_run_time_on_integers() {
        // int8 [-100, 0, 100] clipped to [-5, 5] -> [-5, 0, 5]; only a max of 5 -> [-100, 0, 5].
        let i8s = |v: Vec<i8>| Tensor::new(vec![v.len()], TensorData::I8(v)).unwrap();
        let x = i8s(vec![-100, 0, 100]);
        let (lo, hi) = (Tensor::new(vec![], TensorData::I8(vec![-5])).unwrap(), i8s(vec![5]));
        let both = Op::ClipBounds(ClipBounds { min: true, max: true }).run(&[&x, &lo, &hi], &[]).unwrap();
        assert_eq!(both[0].data, TensorData::I8(vec![-5, 0, 5]));
        let max_only = Op::ClipBounds(ClipBounds { min: false, max: true }).run(&[&x, &hi], &[]).unwrap();
        assert_eq!(max_only[0].data, TensorData::I8(vec![-100, 0, 5]));
        // A bound of another type is an error, not a panic.
        let f = Tensor::scalar_f32(1.0);
        assert!(Op::ClipBounds(ClipBounds { min: true, max: false }).run(&[&x, &f], &[]).is_err());
    }

    #[test]
    fn variadic_ops_broadcast_and_propagate_nan() {
        // Max([1, NaN], [[0], [5]]) = [[1, NaN], [5, NaN]]; Mean([2], [4], [9]) = [5].
        let a = Tensor::from_f32(vec![2], vec![1.0, f32::NAN]);
        let b = Tensor::from_f32(vec![2, 1], vec![0.0, 5.0]);
        let max = Op::Variadic(Variadic::Max).run(&[&a, &b], &[]).unwrap().remove(0);
        let got = max.as_f32().unwrap();
        assert_eq!((got[0], got[2]), (1.0, 5.0));
        assert!(got[1].is_nan() && got[3].is_nan());
        let (p, q, r) = (
            Tensor::from_f32(vec![1], vec![2.0]),
            Tensor::from_f32(vec![1], vec![4.0]),
            Tensor::from_f32(vec![1], vec![9.0]),
        );
        let mean = Op::Variadic(Variadic::Mean).run(&[&p, &q, &r], &[]).unwrap().remove(0);
        assert_eq!(mean.as_f32().unwrap(), &[5.0]);
    }
}
