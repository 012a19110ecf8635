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
//! rustfft picks AVX, SSE or scalar code at run time, like matrixmultiply: results are
//! bit-identical on one machine and may differ in the last bits across CPUs. That matters to
//! one pair of node tests only: `test_dft_inverse*` expect numpy's float32 rounding noise
//! (1.9e-7) where the exact value is 0, with an absolute tolerance of 1e-7; the AVX path
//! reproduces that noise, the scalar and SSE paths give the exact 0.
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
        if n.is_multiple_of(2) {
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

#[cfg(test)]
mod tests {
    //! Expected values come from the ONNX reference implementation (onnx 1.22,
    //! `onnx.reference.ReferenceEvaluator`) and numpy, never from qairt.

    use std::collections::BTreeMap;

    use super::*;
    use crate::onnx::proto::{AttributeProto, NodeProto};
    use crate::ops::InputView;
    use crate::ops::export::attr_int as int_attr;

    fn close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "element {i}: {g} vs {w}\n{got:?}\n{want:?}");
        }
    }

    fn scalar_i64(v: i64) -> Tensor {
        Tensor::from_i64(vec![], vec![v])
    }

    /// A node input for [`import`]: element type, shape and the value when known (`None`:
    /// omitted).
    type In<'a> = Option<(DType, &'a [usize], Option<&'a Tensor>)>;

    /// Imports one node whose inputs are named `in0, in1...`.
    fn import(op: &str, opset: i64, inputs: &[In], attrs: Vec<AttributeProto>) -> Result<Lowered, ImportError> {
        let names: Vec<String> = inputs
            .iter()
            .enumerate()
            .map(|(i, v)| if v.is_some() { format!("in{i}") } else { String::new() })
            .collect();
        let node = NodeProto {
            op_type: Some(op.into()),
            input: names.clone(),
            output: vec!["out".into()],
            attribute: attrs,
            ..Default::default()
        };
        let views = inputs
            .iter()
            .zip(&names)
            .map(|(v, name)| v.map(|(dtype, shape, value)| InputView { name, dtype, shape, value }))
            .collect();
        let external = BTreeMap::new();
        let cx = NodeCx { node: &node, opset, inputs: views, external: &external, used_outputs: vec![] };
        crate::ops::lower(&cx)
    }

    fn known_value(lowered: Result<Lowered, ImportError>) -> Tensor {
        match lowered {
            Ok(Lowered::Known(mut values)) => values.remove(0),
            Ok(Lowered::Ir { op, .. }) => panic!("expected a value, got {op:?}"),
            Ok(Lowered::Branch(name)) => panic!("expected a value, got the branch {name}"),
            Err(e) => panic!("{e}"),
        }
    }

    fn ir_op(lowered: Result<Lowered, ImportError>) -> (Op, Vec<usize>) {
        match lowered {
            Ok(Lowered::Ir { op, inputs }) => (op, inputs),
            Ok(Lowered::Known(_) | Lowered::Branch(_)) => panic!("expected an IR op"),
            Err(e) => panic!("{e}"),
        }
    }

    fn f64s(t: &Tensor) -> Vec<f64> {
        t.data.to_f64_vec()
    }

    #[test]
    fn windows_match_the_reference_periodic_and_symmetric() {
        // ReferenceEvaluator, size 5, output_datatype = 11 (double).
        let cases: [(&str, i64, [f64; 5]); 6] = [
            ("HannWindow", 1, [0.0, 0.3454915028125263, 0.9045084971874736, 0.9045084971874738, 0.34549150281252644]),
            ("HannWindow", 0, [0.0, 0.4999999999999999, 1.0, 0.5000000000000001, 1.4997597826618576e-32]),
            (
                "HammingWindow",
                1,
                [0.08695652173913038, 0.4024052851766544, 0.9128121061276934, 0.9128121061276935, 0.4024052851766545],
            ),
            (
                "HammingWindow",
                0,
                [0.08695652173913038, 0.5434782608695652, 1.0, 0.5434782608695653, 0.08695652173913038],
            ),
            (
                "BlackmanWindow",
                1,
                [0.0, 0.20077014326253045, 0.8492298567374694, 0.8492298567374696, 0.20077014326253056],
            ),
            ("BlackmanWindow", 0, [0.0, 0.33999999999999997, 1.0, 0.3400000000000001, 0.0]),
        ];
        let size = scalar_i64(5);
        for (op, periodic, want) in cases {
            let y = known_value(import(
                op,
                17,
                &[Some((DType::I64, &[], Some(&size)))],
                vec![int_attr("periodic", periodic), int_attr("output_datatype", 11)],
            ));
            assert_eq!((y.dtype(), y.shape.as_slice()), (DType::F64, &[5][..]), "{op}");
            close(&f64s(&y), &want, 1e-15);
        }
    }

    #[test]
    fn a_window_casts_to_its_output_datatype() {
        // Default float32; int32 (6) truncates: the reference gives [0, 0, 1, 0] for Hann(4).
        let size = Tensor { shape: vec![], data: TensorData::I32(vec![4]) };
        let input = [Some((DType::I32, &[][..], Some(&size)))];
        let y = known_value(import("HannWindow", 17, &input, vec![]));
        assert_eq!(y.data, TensorData::F32(vec![0.0, 0.5, 1.0, 0.5]));
        let y = known_value(import("HannWindow", 17, &input, vec![int_attr("output_datatype", 6)]));
        assert_eq!(y.data, TensorData::I32(vec![0, 0, 1, 0]));
        let err = import("HannWindow", 17, &input, vec![int_attr("output_datatype", 9)]).err().unwrap();
        assert!(err.message.contains("cannot produce bool"), "{err}");
    }

    #[test]
    fn a_window_size_known_only_at_run_time_names_the_input() {
        let err = import("BlackmanWindow", 17, &[Some((DType::I64, &[], None))], vec![]).err().unwrap();
        assert_eq!(err.kind, ErrorKind::RunTimeValue);
        assert_eq!(err.needs_value_of.as_deref(), Some("in0"));
        assert!(err.hint.unwrap().contains("only at import"));
        let negative = scalar_i64(-3);
        let err = import("HannWindow", 17, &[Some((DType::I64, &[], Some(&negative)))], vec![]).err().unwrap();
        assert!(err.message.contains("at least 0"), "{err}");
    }

    #[test]
    fn floor_division_is_pythons() {
        // Python: 1.0 // 0.1 == 9.0 (floor(1.0 / 0.1) would be 10), -7.0 // 2 == -4.0, 7.5 // -2 == -4.0.
        assert_eq!(floor_div(1.0, 0.1), 9.0);
        assert_eq!(floor_div(-7.0, 2.0), -4.0);
        assert_eq!(floor_div(7.5, -2.0), -4.0);
        assert_eq!(floor_div(6.0, 3.0), 2.0);
    }

    fn mel_inputs<'a>(ints: &'a [Tensor; 3], edges: &'a [Tensor; 2]) -> Vec<In<'a>> {
        ints.iter().chain(edges).map(|t| Some((t.dtype(), t.shape.as_slice(), Some(t)))).collect()
    }

    fn i32_scalar(v: i32) -> Tensor {
        Tensor { shape: vec![], data: TensorData::I32(vec![v]) }
    }

    #[test]
    fn mel_weight_matrix_matches_the_reference() {
        // The node test's case (8 bins, 16-point DFT, 8192 Hz, 0..4096 Hz): its expected 9 x 8
        // matrix (mel points on bins 0, 0, 0, 1, 1, 2, 3, 4, 5, 6: triangles collapse to ones).
        let ints = [i32_scalar(8), i32_scalar(16), i32_scalar(8192)];
        let edges = [Tensor::scalar_f32(0.0), Tensor::scalar_f32(4096.0)];
        let y = known_value(import("MelWeightMatrix", 17, &mel_inputs(&ints, &edges), vec![]));
        assert_eq!(y.shape, vec![9, 8]);
        #[rustfmt::skip]
        let want = [
            1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        close(&f64s(&y), &want, 0.0);
    }

    #[test]
    fn mel_edges_are_computed_in_the_edge_inputs_precision() {
        // 11 bins, 999-point DFT, 16 kHz, 240..840 Hz: with float32 edges the reference puts the
        // first triangle on DFT bins 14..18 (weights 1/3, 2/3, 1, 1/2 on 15..18), with float64
        // edges on 15..18 (1/2, 1, 1/2 on 16..18).
        let ints = [i32_scalar(11), i32_scalar(999), i32_scalar(16000)];
        let column0 = |edges: [Tensor; 2]| -> Vec<(usize, f64)> {
            let y = known_value(import("MelWeightMatrix", 17, &mel_inputs(&ints, &edges), vec![]));
            assert_eq!(y.shape, vec![500, 11]);
            f64s(&y).chunks(11).enumerate().filter(|(_, row)| row[0] != 0.0).map(|(i, row)| (i, row[0])).collect()
        };
        let f32s = column0([Tensor::scalar_f32(240.0), Tensor::scalar_f32(840.0)]);
        let want = [(15, 1.0 / 3.0), (16, 2.0 / 3.0), (17, 1.0), (18, 0.5)];
        assert_eq!(f32s.iter().map(|p| p.0).collect::<Vec<_>>(), [15, 16, 17, 18]);
        for ((_, g), (_, w)) in f32s.iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{f32s:?}");
        }
        let f64_edge = |v: f64| Tensor { shape: vec![], data: TensorData::F64(vec![v]) };
        assert_eq!(column0([f64_edge(240.0), f64_edge(840.0)]), [(16, 0.5), (17, 1.0), (18, 0.5)]);
    }

    #[test]
    fn mel_edges_past_the_dft_are_an_error_not_a_panic() {
        // 16-point DFT at 8 kHz has 9 bins; an upper edge of 16 kHz reaches far beyond them.
        let ints = [i32_scalar(4), i32_scalar(16), i32_scalar(8000)];
        let edges = [Tensor::scalar_f32(0.0), Tensor::scalar_f32(16000.0)];
        let err = import("MelWeightMatrix", 17, &mel_inputs(&ints, &edges), vec![]).err().unwrap();
        assert!(err.message.contains("outside the 9 bins"), "{err}");
        assert!(err.hint.is_some());
    }

    fn run_op(op: &Op, inputs: &[&Tensor]) -> Tensor {
        let infos: Vec<TensorInfo> =
            inputs.iter().map(|t| TensorInfo { name: "x".into(), dtype: t.dtype(), shape: t.shape.clone() }).collect();
        let (dtype, shape) = op.infer(&infos.iter().collect::<Vec<_>>()).unwrap().remove(0);
        let out = TensorInfo { name: "y".into(), dtype, shape };
        op.run(inputs, &[out]).unwrap().remove(0)
    }

    fn f64_tensor(shape: &[usize], data: &[f64]) -> Tensor {
        Tensor { shape: shape.to_vec(), data: TensorData::F64(data.to_vec()) }
    }

    fn dft(axis: usize, length: usize, inverse: bool, onesided: bool) -> Op {
        Op::Dft(Dft { axis, length, inverse, onesided })
    }

    #[test]
    fn dft_of_a_real_signal_matches_numpy() {
        // x [2, 5, 1], x[b, k] = (k + 1)(b + 1) + k²/2; numpy.fft.fft along axis 1.
        let x = f64_tensor(&[2, 5, 1], &[1.0, 2.5, 5.0, 8.5, 13.0, 2.0, 4.5, 8.0, 12.5, 18.0]);
        let y = run_op(&dft(1, 5, false, false), &[&x]);
        assert_eq!(y.shape, vec![2, 5, 2]);
        #[rustfmt::skip]
        close(&f64s(&y), &[
            30.0, 0.0, -5.131966011250105, 12.043341804122768, -7.368033988749895, 2.8430473420379303,
            -7.368033988749895, -2.8430473420379303, -5.131966011250105, -12.043341804122768,
            45.0, 0.0, -7.631966011250107, 15.484296605300703, -9.868033988749895, 3.655346582620197,
            -9.868033988749895, -3.655346582620197, -7.631966011250107, -15.484296605300703,
        ], 1e-12);
        // Zero-padded to 8 points, one-sided (numpy.fft.rfft(x, 8)).
        let y = run_op(&dft(1, 8, false, true), &[&x]);
        assert_eq!(y.shape, vec![2, 5, 2]);
        #[rustfmt::skip]
        close(&f64s(&y), &[
            30.0, 0.0, -16.242640687119284, -12.778174593052023, 9.0, 6.0, -7.757359312880714, -2.7781745930520234,
            8.0, 0.0, 45.0, 0.0, -21.65685424949238, -20.02081528017131, 12.0, 8.0, -10.34314575050762,
            -4.020815280171309, 11.0, 0.0,
        ], 1e-12);
        // Truncated to 3 points.
        let y = run_op(&dft(1, 3, false, false), &[&x]);
        #[rustfmt::skip]
        close(&f64s(&y), &[
            8.5, 0.0, -2.75, 2.1650635094610964, -2.75, -2.1650635094610964,
            14.5, 0.0, -4.25, 3.031088913245535, -4.25, -3.031088913245535,
        ], 1e-12);
    }

    #[test]
    fn inverse_dfts_of_a_complex_spectrum_match_the_reference() {
        // c [1, 3, 2, 2] = arange(12) / 2 - 1, along axis 1 (an inner axis of 2 lines).
        let c: Vec<f64> = (0..12).map(|v| f64::from(v) * 0.5 - 1.0).collect();
        let c = f64_tensor(&[1, 3, 2, 2], &c);
        let y = run_op(&dft(1, 3, true, false), &[&c]);
        #[rustfmt::skip]
        close(&f64s(&y), &[
            1.0, 1.5, 2.0, 2.5, -0.42264973081037427, -1.5773502691896255, -0.42264973081037427,
            -1.5773502691896255, -1.5773502691896255, -0.42264973081037427, -1.5773502691896255,
            -0.42264973081037427,
        ], 1e-12);
        // IRFFT: default length 2 (3 - 1) = 4, real output [1, 4, 2, 1] (numpy.fft.irfft).
        let y = run_op(&dft(1, 4, true, true), &[&c]);
        assert_eq!(y.shape, vec![1, 4, 2, 1]);
        close(&f64s(&y), &[1.0, 2.0, -1.75, -2.25, 0.0, 0.0, -0.25, 0.25], 1e-12);
        // IRFFT of odd length 5 (reads 3 bins).
        let y = run_op(&dft(1, 5, true, true), &[&c]);
        #[rustfmt::skip]
        close(&f64s(&y), &[
            1.4000000000000001, 2.4000000000000004, -2.440746858486513, -3.056283565921563, 0.8260215669376891,
            0.971330072538761, -1.1315943759377731, -1.2769028815388452, 0.3463196674865966, 0.9618563749216471,
        ], 1e-12);
    }

    #[test]
    fn dft_keeps_float16_and_float32_types() {
        // [1, 4, 1] ramp 0..3: DFT = [6, -2+2i, -2, -2-2i], exact in float16 too.
        let ramp = [0.0f32, 1.0, 2.0, 3.0];
        let want = [6.0, 0.0, -2.0, 2.0, -2.0, 0.0, -2.0, -2.0];
        let x32 = Tensor::from_f32(vec![1, 4, 1], ramp.to_vec());
        let y = run_op(&dft(1, 4, false, false), &[&x32]);
        assert_eq!(y.dtype(), DType::F32);
        close(&f64s(&y), &want, 1e-6);
        let x16 =
            Tensor { shape: vec![1, 4, 1], data: TensorData::F16(ramp.iter().map(|&v| f16::from_f32(v)).collect()) };
        let y = run_op(&dft(1, 4, false, false), &[&x16]);
        assert_eq!(y.dtype(), DType::F16);
        close(&f64s(&y), &want, 0.0);
    }

    #[test]
    fn stft_frames_window_and_transform_like_the_reference() {
        // s [1, 10, 1] = sin(0.7k) + 0.1k; a 3-point window with 4-point frames (zero-padded),
        // step 3: the reference's [1, 3, 3, 2].
        #[rustfmt::skip]
        let s = f64_tensor(&[1, 10, 1], &[
            0.0, 0.744217687237691, 1.18544972998846, 1.163209366648874, 0.7349881501559051, 0.14921677231038016,
            -0.27157577241358766, -0.2824526126243325, 0.16873336212767842, 0.9168139004843497,
        ]);
        let w = f64_tensor(&[3], &[0.2, 1.0, 0.8]);
        let stft = Op::Stft(Stft { frame_step: 3, frame_length: 4, onesided: true });
        let y = run_op(&stft, &[&s, &w]);
        assert_eq!(y.shape, vec![1, 3, 3, 2]);
        #[rustfmt::skip]
        close(&f64s(&y), &[
            1.6925774712284591, 0.0, -0.9483597839907681, -0.744217687237691, 0.20414209675307715, 0.0,
            1.0870034413339842, 0.0, 0.11326845548147069, -0.7349881501559051, -0.3829728589778262, 0.0,
            -0.2017810774049073, 0.0, -0.1893018441848603, 0.2824526126243325, 0.36312414784375774, 0.0,
        ], 1e-12);
        // No window, 5-point frames every 4 samples, two-sided: [1, 2, 5, 2].
        let stft = Op::Stft(Stft { frame_step: 4, frame_length: 5, onesided: false });
        let y = run_op(&stft, &[&s]);
        assert_eq!(y.shape, vec![1, 2, 5, 2]);
        #[rustfmt::skip]
        close(&f64s(&y), &[
            3.8278649340309303, 0.0, -1.443005381239669, -0.021850368960655037, -0.4709270857757961,
            0.015726856696724877, -0.4709270857757961, -0.015726856696724877, -1.443005381239669,
            0.021850368960655037, 0.4989098995560435, 0.0, 1.2814585239228489, 0.012168133654183563,
            0.3065569016888923, 0.021816053428779424, 0.3065569016888923, -0.021816053428779424,
            1.2814585239228489, -0.012168133654183563,
        ], 1e-12);
    }

    #[test]
    fn dft_import_resolves_axis_and_length_by_opset() {
        let x_shape = [1usize, 10, 6, 1];
        let x = Some((DType::F32, &x_shape[..], None));
        // Opset 17: axis attribute, default 1.
        let (op, inputs) = ir_op(import("DFT", 17, &[x], vec![]));
        assert_eq!((op, inputs), (dft(1, 10, false, false), vec![0]));
        // Opset 20: axis input, default -2 (here axis 2); IRFFT's default length 2 (6 - 1).
        let attrs = vec![int_attr("inverse", 1), int_attr("onesided", 1)];
        let (op, _) = ir_op(import("DFT", 20, &[x], attrs));
        assert_eq!(op, dft(2, 10, true, true));
        let (len, axis) = (scalar_i64(16), scalar_i64(-3));
        let inputs = [x, Some((DType::I64, &[][..], Some(&len))), Some((DType::I64, &[][..], Some(&axis)))];
        let (op, _) = ir_op(import("DFT", 20, &inputs, vec![]));
        assert_eq!(op, dft(1, 16, false, false));
    }

    #[test]
    fn bad_dft_and_stft_inputs_are_diagnostics() {
        let x_shape = [1usize, 10, 1];
        let x = Some((DType::F32, &x_shape[..], None));
        // The last axis holds real and imaginary parts: never the DFT axis.
        let err = import("DFT", 17, &[x], vec![int_attr("axis", -1)]).err().unwrap();
        assert!(err.message.contains("out of range"), "{err}");
        // A run-time axis names the input to specialize on.
        let err = import("DFT", 20, &[x, None, Some((DType::I64, &[], None))], vec![]).err().unwrap();
        assert_eq!(err.needs_value_of.as_deref(), Some("in2"));
        // A trailing axis of 3 is neither real nor complex.
        let bad_shape = [1usize, 10, 3];
        let err = import("DFT", 17, &[Some((DType::F32, &bad_shape[..], None))], vec![]).err().unwrap();
        assert!(err.message.contains("must be 1 (real) or 2"), "{err}");
        assert!(err.hint.is_some());
        // Integer signals are not transformed.
        let err = import("DFT", 17, &[Some((DType::I32, &x_shape[..], None))], vec![]).err().unwrap();
        assert_eq!(err.kind, ErrorKind::UnsupportedDtype);
        // STFT: frames longer than the signal; a run-time step.
        let (step, length) = (scalar_i64(2), scalar_i64(11));
        let known = |t| Some((DType::I64, &[][..], Some(t)));
        let err = import("STFT", 17, &[x, known(&step), None, known(&length)], vec![]).err().unwrap();
        assert!(err.message.contains("do not fit"), "{err}");
        let err = import("STFT", 17, &[x, Some((DType::I64, &[], None))], vec![]).err().unwrap();
        assert_eq!(err.needs_value_of.as_deref(), Some("in1"));
        // A window of another type than the signal.
        let w_shape = [4usize];
        let err = import("STFT", 17, &[x, known(&step), Some((DType::F64, &w_shape[..], None))], vec![]).err().unwrap();
        assert!(err.message.contains("window"), "{err}");
        // A run-time window is fine: it is an input of the IR op; frame_length comes from it.
        let (op, inputs) =
            ir_op(import("STFT", 17, &[x, known(&step), Some((DType::F32, &w_shape[..], None))], vec![]));
        assert_eq!(op, Op::Stft(Stft { frame_step: 2, frame_length: 4, onesided: true }));
        assert_eq!(inputs, vec![0, 2]);
    }
}
