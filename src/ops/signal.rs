//! The signal-processing ops (opset 17 on).
//!
//! HannWindow, HammingWindow, BlackmanWindow and MelWeightMatrix produce constants from sizes,
//! rates and edge frequencies: they are evaluated at import, when those inputs are known
//! (constants, folded values, or graph inputs the model is specialized on), with the ONNX
//! reference implementation's formulas. A window is computed in float64 and rounded (or cast)
//! to `output_datatype`; MelWeightMatrix follows the reference step by step, including its
//! element types (the mel edges in the precision of the edge inputs, the bin frequencies in
//! float64, Python's floor division).
//!
//! DFT (opset 17: `axis` an attribute, default 1; opset 20: `dft_length` and `axis` inputs,
//! default axis -2) and STFT are run-time kernels. Their lengths, axis and step decide the
//! output shape, so they must be known at import; STFT's window may be computed at run time.
//! Transforms run in the input's own precision (float16 and bfloat16 through float32), as
//! numpy's and onnxruntime's do: a float32 DFT is a float32 FFT. Real input goes through a
//! real-to-complex FFT, which gives the DC (and even-length Nyquist) bins an exact zero
//! imaginary part and the two-sided spectrum its exact conjugate symmetry; the one-sided
//! inverse (IRFFT) through a complex-to-real FFT, which ignores those bins' imaginary parts
//! as numpy's `irfft` does. Where the ONNX spec says "only real input" for a one-sided forward
//! transform, the reference slices the complex FFT, and so does qairt.
//!
//! Spectra stay float on quantized backends (`OutputEncoding::Float`): a spectrum's bins span
//! the signal's energy (the DC bin of `n` samples is their sum) next to bins near zero, a range
//! an 8- or 16-bit grid holds badly, and these ops are feature extraction ahead of the network,
//! not its arithmetic.

use half::{bf16, f16};
use realfft::RealFftPlanner;
use rustfft::num_complex::Complex;
use rustfft::{FftNum, FftPlanner};
use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int};
use super::import::{Attrs, Lowered, NodeCx, shape_error};
use super::{InputRole, OnnxOp, Op, OpDef, OutputEncoding, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::{ErrorKind, bad_attribute};
use crate::onnx::fold::{cast, folded_count};
use crate::onnx::tensor::dtype_from_onnx;
use crate::runtime::kernels::{KernelError, element_count, expect_inputs, tensor};

/// Spectra are float on every backend (see the module docs).
const FLOAT: QuantDefault = QuantDefault { output: OutputEncoding::Float, ..QuantDefault::CALIBRATED };

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::folded("HannWindow", import_window),
    OnnxOp::folded("HammingWindow", import_window),
    OnnxOp::folded("BlackmanWindow", import_window),
    OnnxOp::folded("MelWeightMatrix", import_mel_weight_matrix),
    OnnxOp::ir("DFT", import_dft, FLOAT),
    OnnxOp::ir("STFT", import_stft, FLOAT),
];

/// The element types a window or mel matrix may be generated in (the spec's T2/T3).
const GENERATED_TYPES: [DType; 12] = [
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::F16,
    DType::F32,
    DType::F64,
    DType::BF16,
];

/// The `output_datatype` attribute (default float32).
fn output_datatype(cx: &NodeCx, a: &Attrs) -> Result<DType, ImportError> {
    let code = a.int_or("output_datatype", 1)?;
    let dtype = i32::try_from(code)
        .map_err(|_| bad_attribute(format!("output_datatype {code} is not an element type")))
        .and_then(|code| dtype_from_onnx(code, "output_datatype"))?;
    if !GENERATED_TYPES.contains(&dtype) {
        return Err(bad_attribute(format!(
            "{} cannot produce {} (output_datatype must be an integer type of 8 to 64 bits, float16, bfloat16, \
             float or double)",
            cx.op_type(),
            dtype.name()
        )));
    }
    Ok(dtype)
}

/// Input `i` of an import-only op: known at import, else the error that names it (so that a
/// graph input it comes from can be specialized on).
fn known<'a>(cx: &NodeCx<'a>, i: usize, role: &str) -> Result<&'a Tensor, ImportError> {
    cx.folded_input(i, role)
}

/// A scalar input (one element) of an integer type, known at import; `None` when omitted.
fn known_int(cx: &NodeCx, i: usize, role: &str) -> Result<Option<i64>, ImportError> {
    let Some(values) = cx.constant_ints(i, role)? else { return Ok(None) };
    match values[..] {
        [v] => Ok(Some(v)),
        _ => Err(bad_attribute(format!(
            "{} input #{i} ({role}) must be a scalar, got {} values",
            cx.op_type(),
            values.len()
        ))),
    }
}

/// A scalar input that must be present and at least `min`.
fn required_int(cx: &NodeCx, i: usize, role: &str, min: i64) -> Result<i64, ImportError> {
    cx.input(i, role)?;
    let v = known_int(cx, i, role)?.expect("present");
    if v < min {
        return Err(bad_attribute(format!("{} {role} must be at least {min}, got {v}", cx.op_type())));
    }
    Ok(v)
}

/// A length from a checked non-negative value.
fn to_len(v: i64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------------------------
// Windows

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WindowKind {
    Hann,
    Hamming,
    Blackman,
}

fn import_window(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let kind = match cx.op_type() {
        "HannWindow" => WindowKind::Hann,
        "HammingWindow" => WindowKind::Hamming,
        _ => WindowKind::Blackman,
    };
    let a = cx.attrs(&["output_datatype", "periodic"])?;
    let dtype = output_datatype(cx, &a)?;
    let periodic = a.flag_or("periodic", true)?;
    known(cx, 0, "size")?;
    let size = required_int(cx, 0, "size", 0)?;
    let size = to_len(size);
    folded_count(&[size]).map_err(|e| bad_attribute(format!("{}: {e}", cx.op_type())))?;
    let values = window(kind, size, periodic);
    Ok(Lowered::Known(vec![cast(&Tensor { shape: vec![size], data: TensorData::F64(values) }, dtype, true)]))
}

/// The window of `size` points, in float64, as the ONNX reference computes it: `N = size`
/// (periodic) or `size - 1` (symmetric; a symmetric window of one point is 0/0, NaN, there).
fn window(kind: WindowKind, size: usize, periodic: bool) -> Vec<f64> {
    use std::f64::consts::PI;
    let n = if periodic { size as f64 } else { size as f64 - 1.0 };
    (0..size)
        .map(|i| {
            let i = i as f64;
            match kind {
                // sin²(πi/N), which is 0.5 - 0.5·cos(2πi/N).
                WindowKind::Hann => (i * PI / n).sin().powi(2),
                // α - β·cos(2πi/N) with α = 25/46 (the exact Hamming zero-sidelobe value, not 0.54).
                WindowKind::Hamming => {
                    let alpha = 25.0 / 46.0;
                    alpha - (i * PI * 2.0 / n).cos() * (1.0 - alpha)
                }
                WindowKind::Blackman => (i * (PI * 2.0) / n).cos() * -0.5 + (i * (PI * 4.0) / n).cos() * 0.08 + 0.42,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// MelWeightMatrix

/// MelWeightMatrix's inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
struct MelParams {
    num_mel_bins: usize,
    dft_length: i64,
    sample_rate: i64,
    lower_edge_hertz: f64,
    upper_edge_hertz: f64,
    /// The element type of the edge inputs, which the reference computes the mel edges in.
    edge_type: DType,
}

fn import_mel_weight_matrix(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(5, 5)?;
    let dtype = output_datatype(cx, &cx.attrs(&["output_datatype"])?)?;
    let roles = ["num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz"];
    for (i, role) in roles.iter().enumerate() {
        known(cx, i, role)?;
    }
    let num_mel_bins = to_len(required_int(cx, 0, "num_mel_bins", 0)?);
    let dft_length = required_int(cx, 1, "dft_length", 0)?;
    let sample_rate = required_int(cx, 2, "sample_rate", 1)?;
    let edge = |i: usize, role: &str| -> Result<(f64, DType), ImportError> {
        let t = known(cx, i, role)?;
        match t.data.to_f64_vec()[..] {
            [v] if t.dtype().is_compute_float() => Ok((v, t.dtype())),
            _ => Err(bad_attribute(format!(
                "MelWeightMatrix {role} must be a float scalar, got {} of shape {:?}",
                t.dtype().name(),
                t.shape
            ))),
        }
    };
    let (lower_edge_hertz, edge_type) = edge(3, "lower_edge_hertz")?;
    let (upper_edge_hertz, upper_type) = edge(4, "upper_edge_hertz")?;
    if upper_type != edge_type {
        return Err(bad_attribute(format!(
            "MelWeightMatrix lower_edge_hertz is {} but upper_edge_hertz is {}",
            edge_type.name(),
            upper_type.name()
        )));
    }
    let params = MelParams { num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, edge_type };
    let (shape, values) = mel_weight_matrix(&params).map_err(|e| {
        bad_attribute(format!("MelWeightMatrix: {e}"))
            .with_hint("the edges must satisfy 0 <= lower_edge_hertz <= upper_edge_hertz <= sample_rate / 2")
    })?;
    Ok(Lowered::Known(vec![cast(&Tensor { shape, data: TensorData::F64(values) }, dtype, true)]))
}

/// Rounds `x` to the precision of `dtype` (the element type numpy computes in).
fn round_to(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::F32 => f64::from(x as f32),
        DType::F16 => f16::from_f64(x).to_f64(),
        DType::BF16 => bf16::from_f64(x).to_f64(),
        _ => x,
    }
}

/// Python's (and numpy's) float floor division `a // b`: the quotient of `a - fmod(a, b)`,
/// which is exact, one less when the remainder's sign differs from `b`'s, rounded to the
/// nearest integer, so that a quotient just below an integer because of rounding still lands
/// on it.
fn floor_div(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && (b < 0.0) != (m < 0.0) {
        div -= 1.0;
    }
    if div == 0.0 {
        return 0f64.copysign(a / b);
    }
    let floor = div.floor();
    if div - floor > 0.5 { floor + 1.0 } else { floor }
}

/// The matrix `[dft_length / 2 + 1, num_mel_bins]` (row-major, float64) of
/// `onnx/reference/ops/op_mel_weight_matrix.py`: `num_mel_bins + 2` points evenly spaced in mel
/// from the lower to the upper edge, mapped back to hertz and to DFT bins
/// `floor((dft_length + 1) · f / sample_rate)`, and a triangle of peak 1 per mel bin over
/// three consecutive points. An index outside the matrix (edges beyond the Nyquist frequency or
/// below zero) is an error where the reference would fail or wrap around.
fn mel_weight_matrix(p: &MelParams) -> Result<(Vec<usize>, Vec<f64>), String> {
    let rows = to_len(p.dft_length.div_euclid(2) + 1);
    let cols = p.num_mel_bins;
    let count = folded_count(&[rows, cols])?;
    // The mel edges in the edge inputs' element type (numpy keeps a float32 scalar float32).
    let r = |x: f64| round_to(p.edge_type, x);
    let mel = |hz: f64| r(2595.0 * r(r(1.0 + r(hz / 700.0)).log10()));
    let (low, high) = (mel(p.lower_edge_hertz), mel(p.upper_edge_hertz));
    let points = cols + 2;
    let step = r(r(high - low) / points as f64);
    // From here on float64: an int64 array times a float scalar array.
    let scale = (p.dft_length + 1) as f64;
    let sample_rate = p.sample_rate as f64;
    let bins: Vec<i64> = (0..points)
        .map(|i| {
            let m = i as f64 * step + low;
            let hz = 700.0 * (10f64.powf(m / 2595.0) - 1.0);
            let bin = floor_div(scale * hz, sample_rate);
            if bin.is_finite() { Ok(bin as i64) } else { Err(format!("mel point {i} is at {hz} Hz, not a DFT bin")) }
        })
        .collect::<Result<_, _>>()?;
    let mut out = vec![0.0f64; count];
    let mut set = |row: i64, col: usize, v: f64| -> Result<(), String> {
        match usize::try_from(row).ok().filter(|&row| row < rows) {
            Some(row) => {
                out[row * cols + col] = v;
                Ok(())
            }
            None => Err(format!(
                "mel bin {col} reaches DFT bin {row}, outside the {rows} bins of a {}-point DFT (mel points at \
                 bins {bins:?})",
                p.dft_length
            )),
        }
    };
    for col in 0..cols {
        let (lower, center, higher) = (bins[col], bins[col + 1], bins[col + 2]);
        let low_to_center = center - lower;
        if low_to_center == 0 {
            set(center, col, 1.0)?;
        } else {
            for j in lower..=center {
                set(j, col, (j - lower) as f64 / low_to_center as f64)?;
            }
        }
        let center_to_high = higher - center;
        if center_to_high > 0 {
            for j in center..higher {
                set(j, col, (higher - j) as f64 / center_to_high as f64)?;
            }
        }
    }
    Ok((vec![rows, cols], out))
}

// ---------------------------------------------------------------------------------------------
// DFT

/// A DFT along `axis` of `length` points. Input `[..., 1]` (real) or `[..., 2]` (complex);
/// output `[..., 2]`, or `[..., 1]` for the one-sided inverse (IRFFT).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dft {
    /// Non-negative, never the last (real/imaginary) axis.
    pub axis: usize,
    /// `dft_length`, resolved (at least 1).
    pub length: usize,
    pub inverse: bool,
    pub onesided: bool,
}

/// An STFT of `signal [batch, length, 1 | 2]` (and optionally `window [w]`): frames of
/// `frame_length` samples every `frame_step` samples, each multiplied by the window (whose
/// length may differ: a shorter frame is zero-padded, a longer one truncated, as the reference
/// does), and their DFTs. Output `[batch, frames, bins, 2]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stft {
    pub frame_step: usize,
    /// The DFT size (at least 1).
    pub frame_length: usize,
    pub onesided: bool,
}

into_op!(Dft, Stft);

/// A float input type the kernels take.
fn require_signal(op: &str, x: &TensorInfo) -> Result<(), String> {
    if x.dtype.is_compute_float() {
        Ok(())
    } else {
        Err(format!("{op}: {:?} is {}, expected float16, bfloat16, float or double", x.name, x.dtype.name()))
    }
}

fn unsupported_signal(cx: &NodeCx, name: &str, dtype: DType) -> ImportError {
    ImportError::new(
        ErrorKind::UnsupportedDtype,
        format!("{} input {name:?} is {}, expected float16, bfloat16, float or double", cx.op_type(), dtype.name()),
    )
}

fn import_dft(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let inputs_as_attrs = cx.opset < 20;
    cx.arity(1, if inputs_as_attrs { 2 } else { 3 })?;
    let a = cx.attrs(if inputs_as_attrs { &["axis", "inverse", "onesided"] } else { &["inverse", "onesided"] })?;
    let x = cx.input(0, "input")?;
    if !x.dtype.is_compute_float() {
        return Err(unsupported_signal(cx, x.name, x.dtype));
    }
    let rank = x.shape.len();
    if rank < 2 || !matches!(x.shape[rank - 1], 1 | 2) {
        return Err(shape_error(format!(
            "DFT input {:?} has shape {:?}; the last axis must be 1 (real) or 2 (real, imaginary)",
            x.name, x.shape
        ))
        .with_hint("a real signal [..., n] needs a trailing axis of 1: Unsqueeze it"));
    }
    let axis = if inputs_as_attrs { a.int_or("axis", 1)? } else { known_int(cx, 2, "axis")?.unwrap_or(-2) };
    // [-r, -2] or [0, r - 2]: never the real/imaginary axis.
    let r = rank as i64;
    let resolved = if axis < 0 { axis + r } else { axis };
    if !(0..r - 1).contains(&resolved) {
        return Err(bad_attribute(format!(
            "DFT axis {axis} is out of range for input {:?} of rank {rank} (allowed: [{}, -2] or [0, {}]; the \
             last axis holds the real and imaginary parts)",
            x.name,
            -r,
            r - 2
        )));
    }
    let axis = resolved as usize;
    let inverse = a.flag("inverse")?;
    let onesided = a.flag("onesided")?;
    let n = x.shape[axis];
    let length = match known_int(cx, 1, "dft_length")? {
        Some(v) if v >= 1 => to_len(v),
        Some(v) => return Err(bad_attribute(format!("DFT dft_length must be at least 1, got {v}"))),
        // IRFFT reads n bins of a spectrum of 2 (n - 1) points.
        None if inverse && onesided => 2 * n.saturating_sub(1),
        None => n,
    };
    if length == 0 {
        return Err(bad_attribute(format!(
            "DFT of {:?} along axis {axis} of size {n} has no points (an inverse one-sided DFT of {n} bins is \
             2 * ({n} - 1) points); give dft_length",
            x.name
        )));
    }
    Lowered::ir(Dft { axis, length, inverse, onesided }, vec![0])
}

impl Dft {
    /// The output size along the axis.
    fn bins(&self) -> usize {
        if self.onesided && !self.inverse { self.length / 2 + 1 } else { self.length }
    }

    /// The output's trailing axis: 1 for the one-sided inverse (a real signal), else 2.
    fn channels(&self) -> usize {
        if self.onesided && self.inverse { 1 } else { 2 }
    }

    fn lines(&self, shape: &[usize]) -> Lines {
        let rank = shape.len();
        Lines {
            outer: shape[..self.axis].iter().product(),
            len: shape[self.axis],
            inner: shape[self.axis + 1..rank - 1].iter().product(),
            channels: shape[rank - 1],
        }
    }
}

impl OpDef for Dft {
    fn type_name(&self) -> &'static str {
        "DFT"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("DFT", inputs)?;
        require_signal("DFT", x)?;
        let rank = x.shape.len();
        if rank < 2 || !matches!(x.shape[rank - 1], 1 | 2) || self.axis + 1 >= rank || self.length == 0 {
            return Err(format!(
                "DFT: input {:?} has shape {:?}, expected [..., 1 | 2] with a signal axis {} and {} points",
                x.name, x.shape, self.axis, self.length
            ));
        }
        let mut shape = x.shape.clone();
        shape[self.axis] = self.bins();
        shape[rank - 1] = self.channels();
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        expect_inputs("DFT", inputs, 1, 1)?;
        let shape = infer_for("DFT", self, inputs)?;
        element_count("DFT", &shape)?;
        let call = DftCall { lines: self.lines(&inputs[0].shape), dft: self.clone() };
        Ok(vec![tensor("DFT", shape, run_float("DFT", inputs, &call)?)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        // The opset 20 form: dft_length and axis are scalar inputs.
        let length = int_constant(cx, "dft_length", self.length as i64);
        let axis = int_constant(cx, "axis", self.axis as i64);
        cx.emit_with(
            "DFT",
            vec![length, axis],
            vec![attr_int("inverse", i64::from(self.inverse)), attr_int("onesided", i64::from(self.onesided))],
        );
    }
}

/// A scalar int64 for a node input (ONNX wants DFT's and STFT's lengths as scalars), as a
/// Constant node.
fn int_constant(cx: &mut ExportCx<'_>, role: &str, value: i64) -> String {
    let base = format!("{}_{role}", cx.name);
    let name = cx.host.fresh(base.clone());
    cx.host.push_node("Constant", base, vec![], vec![name.clone()], vec![attr_int("value_int", value)]);
    name
}

/// The output shape from the op's shape inference on the actual inputs.
fn infer_for(op: &'static str, def: &dyn OpDef, inputs: &[&Tensor]) -> Result<Vec<usize>, KernelError> {
    let infos: Vec<TensorInfo> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| TensorInfo { name: format!("input {i}"), dtype: t.dtype(), shape: t.shape.clone() })
        .collect();
    let refs: Vec<&TensorInfo> = infos.iter().collect();
    def.infer(&refs).map(|mut out| out.remove(0).1).map_err(|e| KernelError::new(op, e))
}

// ---------------------------------------------------------------------------------------------
// STFT

fn import_stft(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 4)?;
    let a = cx.attrs(&["onesided"])?;
    let onesided = a.flag_or("onesided", true)?;
    let x = cx.input(0, "signal")?;
    if !x.dtype.is_compute_float() {
        return Err(unsupported_signal(cx, x.name, x.dtype));
    }
    let &[_, signal_length, channels] = x.shape else {
        return Err(shape_error(format!(
            "STFT signal {:?} has shape {:?}, expected [batch, length, 1 | 2]",
            x.name, x.shape
        ))
        .with_hint("a real signal [batch, length] needs a trailing axis of 1: Unsqueeze it"));
    };
    if !matches!(channels, 1 | 2) {
        return Err(shape_error(format!(
            "STFT signal {:?} has shape {:?}; the last axis must be 1 (real) or 2 (real, imaginary)",
            x.name, x.shape
        )));
    }
    let frame_step = to_len(required_int(cx, 1, "frame_step", 1)?);
    let window = match cx.opt(2) {
        None => None,
        Some(w) => match w.shape {
            &[len] if len >= 1 && w.dtype == x.dtype => Some(len),
            _ => {
                return Err(shape_error(format!(
                    "STFT window {:?} is {} {:?}, expected a non-empty 1-D {} tensor",
                    w.name,
                    w.dtype.name(),
                    w.shape,
                    x.dtype.name()
                )));
            }
        },
    };
    let frame_length = match known_int(cx, 3, "frame_length")? {
        Some(v) if v >= 1 => to_len(v),
        Some(v) => return Err(bad_attribute(format!("STFT frame_length must be at least 1, got {v}"))),
        None => window.unwrap_or(signal_length),
    };
    if frame_length > signal_length {
        return Err(shape_error(format!(
            "STFT frames of {frame_length} samples do not fit in the signal {:?} of {signal_length} samples",
            x.name
        )));
    }
    Lowered::ir(Stft { frame_step, frame_length, onesided }, cx.present(&[0, 2]))
}

impl Stft {
    fn frames(&self, signal_length: usize) -> usize {
        1 + (signal_length - self.frame_length) / self.frame_step
    }

    fn bins(&self) -> usize {
        if self.onesided { self.frame_length / 2 + 1 } else { self.frame_length }
    }
}

impl OpDef for Stft {
    fn type_name(&self) -> &'static str {
        "STFT"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let (x, window) = match inputs {
            [x] => (*x, None),
            [x, w] => (*x, Some(*w)),
            _ => return Err(format!("STFT: expects 1 or 2 inputs, got {}", inputs.len())),
        };
        require_signal("STFT", x)?;
        let &[batch, length, channels] = x.shape.as_slice() else {
            return Err(format!("STFT: signal {:?} has shape {:?}, expected [batch, length, 1 | 2]", x.name, x.shape));
        };
        if !matches!(channels, 1 | 2) || self.frame_step == 0 || self.frame_length == 0 || self.frame_length > length {
            return Err(format!(
                "STFT: signal {:?} of shape {:?} does not hold frames of {} samples (step {})",
                x.name, x.shape, self.frame_length, self.frame_step
            ));
        }
        if let Some(w) = window
            && (w.dtype != x.dtype || w.shape.len() != 1 || w.shape[0] == 0)
        {
            return Err(format!(
                "STFT: window {:?} is {} {:?}, expected a non-empty 1-D {} tensor",
                w.name,
                w.dtype.name(),
                w.shape,
                x.dtype.name()
            ));
        }
        Ok(vec![(x.dtype, vec![batch, self.frames(length), self.bins(), 2])])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        expect_inputs("STFT", inputs, 1, 2)?;
        let shape = infer_for("STFT", self, inputs)?;
        element_count("STFT", &shape)?;
        let x = &inputs[0].shape;
        let call = StftCall { batch: x[0], signal_length: x[1], channels: x[2], frames: shape[1], stft: self.clone() };
        Ok(vec![tensor("STFT", shape, run_float("STFT", inputs, &call)?)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        // A window is a fixed taper, like a normalization's parameters: it stays float.
        if position == 1 { InputRole::FloatParam } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let step = int_constant(cx, "frame_step", self.frame_step as i64);
        let length = int_constant(cx, "frame_length", self.frame_length as i64);
        let window = cx.inputs.get(1).cloned().unwrap_or_default();
        cx.inputs.truncate(1);
        cx.emit_with("STFT", vec![step, window, length], vec![attr_int("onesided", i64::from(self.onesided))]);
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// A computation over float inputs of one element type, generic over the FFT precision.
trait FloatKernel {
    fn apply<T: FftNum>(&self, inputs: &[&[T]]) -> Vec<T>;
}

/// Runs `kernel` in the inputs' precision: float32 and float64 as they are, float16 and
/// bfloat16 through float32.
fn run_float(op: &'static str, inputs: &[&Tensor], kernel: &impl FloatKernel) -> Result<TensorData, KernelError> {
    let dtype = inputs[0].dtype();
    if let Some(other) = inputs.iter().find(|t| t.dtype() != dtype) {
        return Err(KernelError::new(op, format!("inputs are {} and {}", dtype.name(), other.dtype().name())));
    }
    match dtype {
        DType::F32 => {
            let data: Vec<&[f32]> =
                inputs.iter().map(|t| if let TensorData::F32(v) = &t.data { v.as_slice() } else { &[] }).collect();
            Ok(TensorData::F32(kernel.apply(&data)))
        }
        DType::F64 => {
            let data: Vec<&[f64]> =
                inputs.iter().map(|t| if let TensorData::F64(v) = &t.data { v.as_slice() } else { &[] }).collect();
            Ok(TensorData::F64(kernel.apply(&data)))
        }
        DType::F16 | DType::BF16 => {
            let wide: Vec<Vec<f32>> = inputs.iter().map(|t| t.to_f32_vec()).collect();
            let data: Vec<&[f32]> = wide.iter().map(Vec::as_slice).collect();
            let y: Vec<f64> = kernel.apply(&data).into_iter().map(f64::from).collect();
            TensorData::floats_from_f64(dtype, &y, false)
                .ok_or_else(|| KernelError::new(op, format!("internal: no {} data", dtype.name())))
        }
        other => Err(KernelError::new(op, format!("input is {}, expected a float type", other.name()))),
    }
}

/// Where the samples of each transformed line live in a row-major buffer: `outer` blocks of
/// `len` samples `inner` elements apart, each sample `channels` values (1: real; 2: real and
/// imaginary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lines {
    outer: usize,
    len: usize,
    inner: usize,
    channels: usize,
}

impl Lines {
    fn size(&self) -> usize {
        self.outer * self.len * self.inner * self.channels
    }

    /// Offset of sample `k` of line `(o, i)`.
    #[inline]
    fn at(&self, o: usize, k: usize, i: usize) -> usize {
        ((o * self.len + k) * self.inner + i) * self.channels
    }

    /// The lines, as `(o, i)` pairs in memory order.
    fn each(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let inner = self.inner;
        (0..self.outer).flat_map(move |o| (0..inner).map(move |i| (o, i)))
    }

    /// Sample `k` of line `(o, i)` as a complex number.
    #[inline]
    fn get<T: FftNum>(&self, x: &[T], o: usize, k: usize, i: usize) -> Complex<T> {
        let at = self.at(o, k, i);
        Complex::new(x[at], if self.channels == 2 { x[at + 1] } else { T::zero() })
    }
}

struct DftCall {
    lines: Lines,
    dft: Dft,
}

impl FloatKernel for DftCall {
    fn apply<T: FftNum>(&self, inputs: &[&[T]]) -> Vec<T> {
        dft(inputs[0], self.lines, self.dft.length, self.dft.inverse, self.dft.onesided)
    }
}

struct StftCall {
    batch: usize,
    signal_length: usize,
    channels: usize,
    frames: usize,
    stft: Stft,
}

impl FloatKernel for StftCall {
    fn apply<T: FftNum>(&self, inputs: &[&[T]]) -> Vec<T> {
        let (x, window) = (inputs[0], inputs.get(1).copied());
        let (n, step, c) = (self.stft.frame_length, self.stft.frame_step, self.channels);
        // The windowed frames [batch · frames, n, c], then one DFT over all of them. A frame
        // past its window's end is zero; past the DFT size, truncated.
        let used = window.map_or(n, |w| w.len().min(n));
        let mut framed = vec![T::zero(); self.batch * self.frames * n * c];
        for b in 0..self.batch {
            let signal = &x[b * self.signal_length * c..(b + 1) * self.signal_length * c];
            for f in 0..self.frames {
                let frame = &mut framed[(b * self.frames + f) * n * c..][..used * c];
                let samples = &signal[f * step * c..][..used * c];
                match window {
                    Some(w) => {
                        for ((out, s), &w) in frame.chunks_exact_mut(c).zip(samples.chunks_exact(c)).zip(w) {
                            for (o, &s) in out.iter_mut().zip(s) {
                                *o = s * w;
                            }
                        }
                    }
                    None => frame.copy_from_slice(samples),
                }
            }
        }
        let lines = Lines { outer: self.batch * self.frames, len: n, inner: 1, channels: c };
        dft(&framed, lines, n, false, self.stft.onesided)
    }
}

/// The DFT along the lines of `x` (`src`), of `length` points: zero-padded or truncated
/// input, the inverse scaled by `1 / length`; `onesided` keeps the first `length / 2 + 1`
/// bins of a forward transform, and makes an inverse one read that many bins of a
/// conjugate-symmetric spectrum and produce a real signal. Output lines are laid out as the
/// input's, `channels` 2 (1 for the one-sided inverse). Each call plans its FFT once.
fn dft<T: FftNum>(x: &[T], src: Lines, length: usize, inverse: bool, onesided: bool) -> Vec<T> {
    let dst = Lines {
        outer: src.outer,
        len: if onesided && !inverse { length / 2 + 1 } else { length },
        inner: src.inner,
        channels: if onesided && inverse { 1 } else { 2 },
    };
    let mut y = vec![T::zero(); dst.size()];
    if y.is_empty() {
        return y;
    }
    match (src.channels, inverse, onesided) {
        (1, false, _) => real_forward(x, src, &mut y, dst, length),
        (_, true, true) => real_inverse(x, src, &mut y, dst, length),
        _ => complex(x, src, &mut y, dst, length, inverse),
    }
    y
}

/// Real input: a real-to-complex FFT per line; the bins past `length / 2` of a two-sided
/// output are the conjugates of their mirror bins (exactly, as for any real signal).
fn real_forward<T: FftNum>(x: &[T], src: Lines, y: &mut [T], dst: Lines, n: usize) {
    let fft = RealFftPlanner::<T>::new().plan_fft_forward(n);
    let (mut signal, mut spectrum, mut scratch) = (fft.make_input_vec(), fft.make_output_vec(), fft.make_scratch_vec());
    let used = src.len.min(n);
    for (o, i) in src.each() {
        // The FFT uses its input as scratch: refill all of it.
        for (k, s) in signal.iter_mut().enumerate() {
            *s = if k < used { x[src.at(o, k, i)] } else { T::zero() };
        }
        // Errors are only buffer sizes, which the plan made.
        let _ = fft.process_with_scratch(&mut signal, &mut spectrum, &mut scratch);
        for k in 0..dst.len {
            let v = if k < spectrum.len() { spectrum[k] } else { spectrum[n - k].conj() };
            let at = dst.at(o, k, i);
            y[at] = v.re;
            y[at + 1] = v.im;
        }
    }
}

/// The one-sided inverse (IRFFT): the first `length / 2 + 1` bins of a conjugate-symmetric
/// spectrum to a real signal. The imaginary parts of the DC bin and (even lengths) the Nyquist
/// bin cannot reach a real signal and are ignored, as numpy's `irfft` does.
fn real_inverse<T: FftNum>(x: &[T], src: Lines, y: &mut [T], dst: Lines, n: usize) {
    let fft = RealFftPlanner::<T>::new().plan_fft_inverse(n);
    let (mut spectrum, mut signal, mut scratch) = (fft.make_input_vec(), fft.make_output_vec(), fft.make_scratch_vec());
    let used = src.len.min(spectrum.len());
    let scale = T::from_f64(1.0 / n as f64).unwrap_or_else(T::one);
    let last = spectrum.len() - 1;
    for (o, i) in src.each() {
        for (k, s) in spectrum.iter_mut().enumerate() {
            *s = if k < used { src.get(x, o, k, i) } else { Complex::new(T::zero(), T::zero()) };
        }
        spectrum[0].im = T::zero();
        if n % 2 == 0 {
            spectrum[last].im = T::zero();
        }
        // Errors are buffer sizes (which the plan made) and non-zero imaginary parts of the
        // DC and Nyquist bins (zeroed above).
        let _ = fft.process_with_scratch(&mut spectrum, &mut signal, &mut scratch);
        for (k, &v) in signal.iter().enumerate() {
            y[dst.at(o, k, i)] = v * scale;
        }
    }
}

/// Complex input, or a two-sided inverse: every line in one buffer, one batched FFT call.
fn complex<T: FftNum>(x: &[T], src: Lines, y: &mut [T], dst: Lines, n: usize, inverse: bool) {
    let mut planner = FftPlanner::<T>::new();
    let fft = if inverse { planner.plan_fft_inverse(n) } else { planner.plan_fft_forward(n) };
    let zero = Complex::new(T::zero(), T::zero());
    let mut buffer = vec![zero; src.outer * src.inner * n];
    let used = src.len.min(n);
    for ((o, i), line) in src.each().zip(buffer.chunks_exact_mut(n)) {
        for (k, v) in line[..used].iter_mut().enumerate() {
            *v = src.get(x, o, k, i);
        }
    }
    let mut scratch = vec![zero; fft.get_inplace_scratch_len()];
    fft.process_with_scratch(&mut buffer, &mut scratch);
    // numpy multiplies by 1/n (rather than dividing by n): the same rounding.
    let scale = if inverse { T::from_f64(1.0 / n as f64).unwrap_or_else(T::one) } else { T::one() };
    for ((o, i), line) in dst.each().zip(buffer.chunks_exact(n)) {
        for (k, v) in line[..dst.len].iter().enumerate() {
            let at = dst.at(o, k, i);
            y[at] = v.re * scale;
            y[at + 1] = v.im * scale;
        }
    }
}
