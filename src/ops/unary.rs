//! Unary element-wise ops: float math (Sqrt, Exp, Log, Erf, trigonometric and hyperbolic
//! functions, rounding), the activations (Relu, Sigmoid, Tanh, LeakyRelu, Elu, Selu, Celu,
//! Gelu, Mish, Softplus, Softsign, ThresholdedRelu, Shrink, HardSigmoid, HardSwish, Swish), the
//! numeric Abs, Neg and Sign, the predicates IsNaN and IsInf, and Not / BitwiseNot.
//!
//! Float kernels run natively in float32 and float64 and in float32 for float16 and
//! bfloat16 (rounded back to nearest even, as onnxruntime does); Abs, Neg, Sign and Relu
//! also run on the integers (wrapping, as C does).

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_float, attr_int, attr_string};
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::elementwise::{Int, Num, Real, integer, map, numeric, output, real_map, unsupported};
use crate::runtime::kernels::{KernelError, expect_inputs};

const CAL: QuantDefault = QuantDefault::CALIBRATED;

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("Relu", import_unary, QuantDefault { propagate: true, squash: true, ..QuantDefault::CALIBRATED }),
    OnnxOp::ir("Sigmoid", import_unary, QuantDefault::fixed(0.0, 1.0)),
    OnnxOp::ir("Tanh", import_unary, QuantDefault::fixed(-1.0, 1.0)),
    OnnxOp::ir("HardSigmoid", import_unary, QuantDefault::fixed(0.0, 1.0)),
    OnnxOp::ir("HardSwish", import_unary, CAL),
    OnnxOp::ir("Swish", import_unary, CAL),
    OnnxOp::ir("Abs", import_unary, CAL),
    OnnxOp::ir("Neg", import_unary, CAL),
    OnnxOp::ir("Sign", import_unary, QuantDefault::fixed(-1.0, 1.0)),
    OnnxOp::ir("Ceil", import_unary, CAL),
    OnnxOp::ir("Floor", import_unary, CAL),
    OnnxOp::ir("Round", import_unary, CAL),
    OnnxOp::ir("Sqrt", import_unary, CAL),
    OnnxOp::ir("Reciprocal", import_unary, CAL),
    OnnxOp::ir("Exp", import_unary, CAL),
    OnnxOp::ir("Log", import_unary, CAL),
    OnnxOp::ir("Erf", import_unary, QuantDefault::fixed(-1.0, 1.0)),
    OnnxOp::ir("Sin", import_unary, QuantDefault::fixed(-1.0, 1.0)),
    OnnxOp::ir("Cos", import_unary, QuantDefault::fixed(-1.0, 1.0)),
    OnnxOp::ir("Tan", import_unary, CAL),
    OnnxOp::ir("Asin", import_unary, CAL),
    OnnxOp::ir("Acos", import_unary, CAL),
    OnnxOp::ir("Atan", import_unary, CAL),
    OnnxOp::ir("Sinh", import_unary, CAL),
    OnnxOp::ir("Cosh", import_unary, CAL),
    OnnxOp::ir("Asinh", import_unary, CAL),
    OnnxOp::ir("Acosh", import_unary, CAL),
    OnnxOp::ir("Atanh", import_unary, CAL),
    OnnxOp::ir("IsNaN", import_unary, CAL),
    OnnxOp::ir("IsInf", import_unary, CAL),
    OnnxOp::ir("Not", import_unary, CAL),
    OnnxOp::ir("BitwiseNot", import_unary, CAL),
    OnnxOp::ir("LeakyRelu", import_unary, CAL),
    OnnxOp::ir("Elu", import_unary, CAL),
    OnnxOp::ir("Selu", import_unary, CAL),
    OnnxOp::ir("Celu", import_unary, CAL),
    OnnxOp::ir("Gelu", import_unary, CAL),
    OnnxOp::ir("Mish", import_unary, CAL),
    OnnxOp::ir("Softplus", import_unary, CAL),
    OnnxOp::ir("Softsign", import_unary, QuantDefault::fixed(-1.0, 1.0)),
    OnnxOp::ir("ThresholdedRelu", import_unary, CAL),
    OnnxOp::ir("Shrink", import_unary, CAL),
];

/// Element-wise ops of one input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    /// `x * sigmoid(alpha * x)` (opset 24).
    Swish {
        alpha: f32,
    },
    Abs,
    Neg,
    Sign,
    Ceil,
    Floor,
    /// Half to even.
    Round,
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Erf,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    IsNaN,
    IsInf {
        negative: bool,
        positive: bool,
    },
    Not,
    BitwiseNot,
    LeakyRelu {
        alpha: f32,
    },
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu {
        alpha: f32,
    },
    /// `tanh`: the tanh approximation (`approximate = "tanh"`), else the exact erf form.
    Gelu {
        tanh: bool,
    },
    Mish,
    Softplus,
    Softsign,
    ThresholdedRelu {
        alpha: f32,
    },
    Shrink {
        lambd: f32,
        bias: f32,
    },
}

impl From<Unary> for Op {
    fn from(op: Unary) -> Op {
        Op::Unary(op)
    }
}

/// The element types an op takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Domain {
    /// float32/64, float16, bfloat16.
    Float,
    /// Floats and the signed integers.
    Signed,
    /// Every numeric type.
    Numeric,
    Integer,
    Bool,
}

fn import_unary(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let op = match cx.op_type() {
        "HardSigmoid" => {
            let a = cx.attrs(&["alpha", "beta"])?;
            Unary::HardSigmoid { alpha: a.float_or("alpha", 0.2)?, beta: a.float_or("beta", 0.5)? }
        }
        "LeakyRelu" => Unary::LeakyRelu { alpha: cx.attrs(&["alpha"])?.float_or("alpha", 0.01)? },
        "Elu" => Unary::Elu { alpha: cx.attrs(&["alpha"])?.float_or("alpha", 1.0)? },
        "Celu" => Unary::Celu { alpha: cx.attrs(&["alpha"])?.float_or("alpha", 1.0)? },
        "ThresholdedRelu" => Unary::ThresholdedRelu { alpha: cx.attrs(&["alpha"])?.float_or("alpha", 1.0)? },
        "Swish" => Unary::Swish { alpha: cx.attrs(&["alpha"])?.float_or("alpha", 1.0)? },
        "Selu" => {
            let a = cx.attrs(&["alpha", "gamma"])?;
            // The spec's defaults, as float32 (the values of the float attributes).
            Unary::Selu { alpha: a.float_or("alpha", 1.673_263_2)?, gamma: a.float_or("gamma", 1.050_701)? }
        }
        "Shrink" => {
            let a = cx.attrs(&["lambd", "bias"])?;
            Unary::Shrink { lambd: a.float_or("lambd", 0.5)?, bias: a.float_or("bias", 0.0)? }
        }
        "Gelu" => {
            let a = cx.attrs(&["approximate"])?;
            let tanh = match a.string("approximate")?.as_deref() {
                None | Some("none") => false,
                Some("tanh") => true,
                Some(other) => {
                    return Err(bad_attribute(format!("Gelu approximate must be \"none\" or \"tanh\", got {other:?}")));
                }
            };
            Unary::Gelu { tanh }
        }
        "IsInf" => {
            let a = cx.attrs(&["detect_negative", "detect_positive"])?;
            Unary::IsInf {
                negative: a.flag_or("detect_negative", true)?,
                positive: a.flag_or("detect_positive", true)?,
            }
        }
        op_type => {
            cx.attrs(&[])?;
            match op_type {
                "Relu" => Unary::Relu,
                "Sigmoid" => Unary::Sigmoid,
                "Tanh" => Unary::Tanh,
                "HardSwish" => Unary::HardSwish,
                "Abs" => Unary::Abs,
                "Neg" => Unary::Neg,
                "Sign" => Unary::Sign,
                "Ceil" => Unary::Ceil,
                "Floor" => Unary::Floor,
                "Round" => Unary::Round,
                "Sqrt" => Unary::Sqrt,
                "Reciprocal" => Unary::Reciprocal,
                "Exp" => Unary::Exp,
                "Log" => Unary::Log,
                "Erf" => Unary::Erf,
                "Sin" => Unary::Sin,
                "Cos" => Unary::Cos,
                "Tan" => Unary::Tan,
                "Asin" => Unary::Asin,
                "Acos" => Unary::Acos,
                "Atan" => Unary::Atan,
                "Sinh" => Unary::Sinh,
                "Cosh" => Unary::Cosh,
                "Asinh" => Unary::Asinh,
                "Acosh" => Unary::Acosh,
                "Atanh" => Unary::Atanh,
                "IsNaN" => Unary::IsNaN,
                "Not" => Unary::Not,
                "BitwiseNot" => Unary::BitwiseNot,
                "Mish" => Unary::Mish,
                "Softplus" => Unary::Softplus,
                "Softsign" => Unary::Softsign,
                other => return Err(bad_attribute(format!("{other} is not a unary element-wise op"))),
            }
        }
    };
    Lowered::ir(op, vec![0])
}

impl Unary {
    fn domain(&self) -> Domain {
        match self {
            Unary::Abs | Unary::Sign | Unary::Relu => Domain::Numeric,
            Unary::Neg => Domain::Signed,
            Unary::Not => Domain::Bool,
            Unary::BitwiseNot => Domain::Integer,
            _ => Domain::Float,
        }
    }
}

fn accepts(domain: Domain, dtype: DType) -> bool {
    let numeric = dtype.is_compute_float() || is_byte_int(dtype);
    match domain {
        Domain::Float => dtype.is_compute_float(),
        Domain::Signed => dtype.is_compute_float() || (numeric && dtype.is_signed_integer()),
        Domain::Numeric => numeric,
        Domain::Integer => numeric && !dtype.is_compute_float(),
        Domain::Bool => dtype == DType::Bool,
    }
}

/// The integer types the kernels compute in (8 to 64 bits).
pub(super) fn is_byte_int(dtype: DType) -> bool {
    matches!(dtype, DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U16 | DType::U32 | DType::U64)
}

impl OpDef for Unary {
    fn type_name(&self) -> &'static str {
        match self {
            Unary::Relu => "Relu",
            Unary::Sigmoid => "Sigmoid",
            Unary::Tanh => "Tanh",
            Unary::HardSigmoid { .. } => "HardSigmoid",
            Unary::HardSwish => "HardSwish",
            Unary::Swish { .. } => "Swish",
            Unary::Abs => "Abs",
            Unary::Neg => "Neg",
            Unary::Sign => "Sign",
            Unary::Ceil => "Ceil",
            Unary::Floor => "Floor",
            Unary::Round => "Round",
            Unary::Sqrt => "Sqrt",
            Unary::Reciprocal => "Reciprocal",
            Unary::Exp => "Exp",
            Unary::Log => "Log",
            Unary::Erf => "Erf",
            Unary::Sin => "Sin",
            Unary::Cos => "Cos",
            Unary::Tan => "Tan",
            Unary::Asin => "Asin",
            Unary::Acos => "Acos",
            Unary::Atan => "Atan",
            Unary::Sinh => "Sinh",
            Unary::Cosh => "Cosh",
            Unary::Asinh => "Asinh",
            Unary::Acosh => "Acosh",
            Unary::Atanh => "Atanh",
            Unary::IsNaN => "IsNaN",
            Unary::IsInf { .. } => "IsInf",
            Unary::Not => "Not",
            Unary::BitwiseNot => "BitwiseNot",
            Unary::LeakyRelu { .. } => "LeakyRelu",
            Unary::Elu { .. } => "Elu",
            Unary::Selu { .. } => "Selu",
            Unary::Celu { .. } => "Celu",
            Unary::Gelu { .. } => "Gelu",
            Unary::Mish => "Mish",
            Unary::Softplus => "Softplus",
            Unary::Softsign => "Softsign",
            Unary::ThresholdedRelu { .. } => "ThresholdedRelu",
            Unary::Shrink { .. } => "Shrink",
        }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let [x] = exactly(name, inputs)?;
        let predicate = matches!(self, Unary::IsNaN | Unary::IsInf { .. });
        let ok = if predicate { x.dtype.is_float() } else { accepts(self.domain(), x.dtype) };
        if !ok {
            return Err(format!("{name}: {:?} is {}, which {name} does not take", x.name, x.dtype.name()));
        }
        let dtype = if predicate { DType::Bool } else { x.dtype };
        Ok(vec![(dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        expect_inputs(name, inputs, 1, 1)?;
        let x = inputs[0];
        let data = match self {
            Unary::IsNaN | Unary::IsInf { .. } => {
                if !x.dtype().is_float() {
                    return Err(unsupported(name, &x.data));
                }
                let values = x.data.to_f64_vec();
                TensorData::Bool(match *self {
                    Unary::IsInf { negative, positive } => map(&values, |v| {
                        u8::from((positive && v == f64::INFINITY) || (negative && v == f64::NEG_INFINITY))
                    }),
                    _ => map(&values, |v| u8::from(v.is_nan())),
                })
            }
            Unary::Not => match &x.data {
                TensorData::Bool(v) => TensorData::Bool(map(v, |b| u8::from(b == 0))),
                other => return Err(unsupported(name, other)),
            },
            Unary::BitwiseNot => {
                integer!(&x.data, v => Num::wrap(map(v, Int::not)), return Err(unsupported(name, &x.data)))
            }
            Unary::Abs | Unary::Neg | Unary::Sign | Unary::Relu => {
                if !accepts(self.domain(), x.dtype()) {
                    return Err(unsupported(name, &x.data));
                }
                numeric!(&x.data, v => numeric_unary(self, v), return Err(unsupported(name, &x.data)))
            }
            _ => real_map!(&x.data, v => real_unary(self, v), return Err(unsupported(name, &x.data))),
        };
        Ok(vec![output(name, x.shape.clone(), data)?])
    }

    fn run_in_place(&self, x: &mut Tensor) -> Option<Result<(), KernelError>> {
        // Relu on float32, the activation of most convolutions; the same function as `run`'s.
        let (Unary::Relu, TensorData::F32(values)) = (self, &mut x.data) else { return None };
        for v in values.iter_mut() {
            *v = relu(*v);
        }
        Some(Ok(()))
    }

    fn keeps_order(&self) -> bool {
        // Relu is a max with 0; the others compute approximations (or are not monotone).
        matches!(self, Unary::Relu)
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let attrs = match *self {
            Unary::HardSigmoid { alpha, beta } => vec![attr_float("alpha", alpha), attr_float("beta", beta)],
            Unary::LeakyRelu { alpha } | Unary::Elu { alpha } | Unary::Celu { alpha } => {
                vec![attr_float("alpha", alpha)]
            }
            Unary::ThresholdedRelu { alpha } | Unary::Swish { alpha } => vec![attr_float("alpha", alpha)],
            Unary::Selu { alpha, gamma } => vec![attr_float("alpha", alpha), attr_float("gamma", gamma)],
            Unary::Shrink { lambd, bias } => vec![attr_float("lambd", lambd), attr_float("bias", bias)],
            Unary::Gelu { tanh } => vec![attr_string("approximate", if tanh { "tanh" } else { "none" })],
            Unary::IsInf { negative, positive } => {
                vec![attr_int("detect_negative", i64::from(negative)), attr_int("detect_positive", i64::from(positive))]
            }
            _ => vec![],
        };
        cx.emit(self.type_name(), attrs);
    }
}

/// Abs, Neg, Sign and Relu on any numeric type.
fn numeric_unary<T: Num>(op: &Unary, x: &[T]) -> TensorData {
    T::wrap(match op {
        Unary::Abs => map(x, T::abs),
        Unary::Neg => map(x, T::neg),
        Unary::Sign => map(x, T::sign),
        _ => map(x, relu),
    })
}

/// max(x, 0); NaN and -0 map to +0 as onnxruntime's vector max does.
fn relu<T: Num>(v: T) -> T {
    if v > T::ZERO { v } else { T::ZERO }
}

/// `max(0, min(1, alpha * x + beta))`.
fn hard_sigmoid<T: Real>(x: T, alpha: T, beta: T) -> T {
    let y = alpha * x + beta;
    let low = if y < T::ZERO { T::ZERO } else { y };
    if low > T::ONE { T::ONE } else { low }
}

/// `log(1 + exp(x))` without overflow: `x + log1p(exp(-x))` for positive x.
fn softplus<T: Real>(x: T) -> T {
    if x > T::ZERO { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }
}

/// The float math, in the computation type `T` (f32 or f64).
fn real_unary<T: Real>(op: &Unary, x: &[T]) -> Vec<T> {
    let c = |v: f32| T::of(f64::from(v));
    let (zero, one, half) = (T::ZERO, T::ONE, T::of(0.5));
    match *op {
        Unary::Sigmoid => map(x, |v| one / (one + (-v).exp())),
        Unary::Tanh => map(x, T::tanh),
        Unary::HardSigmoid { alpha, beta } => {
            let (alpha, beta) = (c(alpha), c(beta));
            map(x, |v| hard_sigmoid(v, alpha, beta))
        }
        Unary::HardSwish => {
            let sixth = T::of(1.0 / 6.0);
            map(x, |v| v * hard_sigmoid(v, sixth, half))
        }
        Unary::Swish { alpha } => {
            let alpha = c(alpha);
            map(x, |v| v / (one + (-(alpha * v)).exp()))
        }
        Unary::Ceil => map(x, T::ceil),
        Unary::Floor => map(x, T::floor),
        Unary::Round => map(x, T::round_even),
        Unary::Sqrt => map(x, T::sqrt),
        Unary::Reciprocal => map(x, |v| one / v),
        Unary::Exp => map(x, T::exp),
        Unary::Log => map(x, T::ln),
        Unary::Erf => map(x, T::erf),
        Unary::Sin => map(x, T::sin),
        Unary::Cos => map(x, T::cos),
        Unary::Tan => map(x, T::tan),
        Unary::Asin => map(x, T::asin),
        Unary::Acos => map(x, T::acos),
        Unary::Atan => map(x, T::atan),
        Unary::Sinh => map(x, T::sinh),
        Unary::Cosh => map(x, T::cosh),
        Unary::Asinh => map(x, T::asinh),
        Unary::Acosh => map(x, T::acosh),
        Unary::Atanh => map(x, T::atanh),
        Unary::LeakyRelu { alpha } => {
            let alpha = c(alpha);
            map(x, |v| if v < zero { alpha * v } else { v })
        }
        Unary::Elu { alpha } => {
            let alpha = c(alpha);
            map(x, |v| if v < zero { alpha * (v.exp() - one) } else { v })
        }
        Unary::Selu { alpha, gamma } => {
            let (alpha, gamma) = (c(alpha), c(gamma));
            map(x, |v| if v > zero { gamma * v } else { gamma * (alpha * v.exp() - alpha) })
        }
        Unary::Celu { alpha } => {
            // max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
            let alpha = c(alpha);
            map(x, |v| {
                let neg = alpha * ((v / alpha).exp() - one);
                (if v > zero { v } else { zero }) + (if neg < zero { neg } else { zero })
            })
        }
        Unary::Gelu { tanh: false } => {
            let frac_1_sqrt_2 = T::of(std::f64::consts::FRAC_1_SQRT_2);
            map(x, |v| half * v * (one + (v * frac_1_sqrt_2).erf()))
        }
        Unary::Gelu { tanh: true } => {
            let (k, a) = (T::of((2.0 / std::f64::consts::PI).sqrt()), T::of(0.044715));
            map(x, |v| half * v * (one + (k * (v + a * v * v * v)).tanh()))
        }
        Unary::Mish => map(x, |v| v * softplus(v).tanh()),
        Unary::Softplus => map(x, softplus),
        Unary::Softsign => map(x, |v| v / (one + Num::abs(v))),
        Unary::ThresholdedRelu { alpha } => {
            let alpha = c(alpha);
            map(x, |v| if v > alpha { v } else { zero })
        }
        Unary::Shrink { lambd, bias } => {
            let (lambd, bias) = (c(lambd), c(bias));
            map(x, |v| {
                if v < -lambd {
                    v + bias
                } else if v > lambd {
                    v - bias
                } else {
                    zero
                }
            })
        }
        // Numeric, predicate and bitwise ops are dispatched before; the identity keeps this
        // total (unreachable).
        Unary::Relu
        | Unary::Abs
        | Unary::Neg
        | Unary::Sign
        | Unary::IsNaN
        | Unary::IsInf { .. }
        | Unary::Not
        | Unary::BitwiseNot => x.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: Unary, x: Tensor) -> Tensor {
        Op::Unary(op).run(&[&x], &[]).unwrap().remove(0)
    }

    #[test]
    fn integer_abs_neg_sign_wrap_like_c() {
        // i8: |-128| wraps to -128 (two's complement), -(-128) too; sign of [-5, 0, 7] is [-1, 0, 1].
        let x = Tensor::new(vec![4], TensorData::I8(vec![-128, -5, 0, 7])).unwrap();
        assert_eq!(run(Unary::Abs, x.clone()).data, TensorData::I8(vec![-128, 5, 0, 7]));
        assert_eq!(run(Unary::Neg, x.clone()).data, TensorData::I8(vec![-128, 5, 0, -7]));
        assert_eq!(run(Unary::Sign, x).data, TensorData::I8(vec![-1, -1, 0, 1]));
        let u = Tensor::new(vec![2], TensorData::U16(vec![0, 9])).unwrap();
        assert_eq!(run(Unary::Sign, u).data, TensorData::U16(vec![0, 1]));
    }

    #[test]
    fn round_is_half_to_even_in_every_float_type() {
        // 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2 (IEEE roundTiesToEven, the spec's rule).
        let x = [0.5, 1.5, 2.5, -2.5];
        let y = run(Unary::Round, Tensor::from_f32(vec![4], x.to_vec()));
        assert_eq!(y.as_f32().unwrap(), &[0.0, 2.0, 2.0, -2.0]);
        let h = Tensor::new(vec![4], TensorData::F16(x.iter().map(|&v| half::f16::from_f32(v)).collect())).unwrap();
        assert_eq!(run(Unary::Round, h).data.to_f64_vec(), vec![0.0, 2.0, 2.0, -2.0]);
    }

    #[test]
    fn erf_matches_tabulated_values() {
        // Abramowitz & Stegun table 7.1: erf(0.5) = 0.5204998778, erf(1) = 0.8427007929,
        // erf(2) = 0.9953222650, erf(3) = 0.9999779095; erf is odd.
        let e = crate::runtime::kernels::elementwise::erf;
        for (x, want) in [(0.5, 0.5204998778), (1.0, 0.8427007929), (2.0, 0.9953222650), (3.0, 0.9999779095)] {
            assert!((e(x) - want).abs() < 1e-10, "erf({x}) = {}", e(x));
            assert!((e(-x) + want).abs() < 1e-10);
        }
        assert_eq!(e(0.0), 0.0);
        assert_eq!(e(10.0), 1.0);
    }

    #[test]
    fn predicates_and_not() {
        let x = Tensor::from_f32(vec![4], vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        assert_eq!(run(Unary::IsNaN, x.clone()).data, TensorData::Bool(vec![1, 0, 0, 0]));
        let only_negative = Unary::IsInf { negative: true, positive: false };
        assert_eq!(run(only_negative, x).data, TensorData::Bool(vec![0, 0, 1, 0]));
        let b = Tensor::new(vec![2], TensorData::Bool(vec![0, 1])).unwrap();
        assert_eq!(run(Unary::Not, b).data, TensorData::Bool(vec![1, 0]));
        // !0b0000_0101 = 0b1111_1010 = 250 in uint8.
        let u = Tensor::new(vec![1], TensorData::U8(vec![5])).unwrap();
        assert_eq!(run(Unary::BitwiseNot, u).data, TensorData::U8(vec![250]));
    }

    #[test]
    fn swish_is_x_times_sigmoid_of_alpha_x() {
        // alpha 2: 1 * 1/(1+e^-2) = 0.880797077977882, -1 * 1/(1+e^2) = -0.119202922022118,
        // 0 -> 0; a large negative x gives -0, not NaN (exp overflows to inf: x / inf).
        let y = run(Unary::Swish { alpha: 2.0 }, Tensor::from_f32(vec![4], vec![1.0, -1.0, 0.0, -200.0]));
        let want = [0.880_797_1, -0.119_202_92, 0.0, 0.0];
        for (got, want) in y.as_f32().unwrap().iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        let y = run(Unary::Swish { alpha: 1.0 }, Tensor::new(vec![1], TensorData::F64(vec![3.0])).unwrap());
        // 3 / (1 + e^-3) = 2.8577223804673 (Python: 3 / (1 + math.exp(-3))).
        assert!((y.data.to_f64_vec()[0] - 2.857_722_380_467_3).abs() < 1e-12);
    }

    #[test]
    fn float_ops_reject_integers() {
        let i = Tensor::from_i64(vec![1], vec![4]);
        assert!(Op::Unary(Unary::Sqrt).run(&[&i], &[]).is_err());
        assert!(Op::Unary(Unary::Neg).run(&[&Tensor::new(vec![1], TensorData::U8(vec![1])).unwrap()], &[]).is_err());
    }
}
