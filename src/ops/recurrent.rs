//! The recurrent ops LSTM, GRU and RNN: directions forward, reverse and bidirectional, the
//! `activations` (with `activation_alpha`/`activation_beta`), `clip`, LSTM's `input_forget`
//! and peepholes, GRU's `linear_before_reset`, `layout` (batch-first, opset 14+),
//! `sequence_lens` (a run-time mask), initial states and the optional outputs `Y`, `Y_h`,
//! `Y_c`.
//!
//! The input projections of every time step run as one sgemm per direction, the recurrent
//! projections as one sgemm per step; float16/float64 data is computed in float32.

use serde::{Deserialize, Serialize};

use super::attention::{f32_data, f32_result};
use super::export::{ExportCx, attr_float, attr_int, attr_string};
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};

/// Calibrated output; W and R may take per-row encodings (the backend's `per_channel_ops`).
const WEIGHTED: QuantDefault = QuantDefault { per_channel: true, ..QuantDefault::CALIBRATED };
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::onnx::proto::AttributeProto;
use crate::runtime::kernels::{KernelError, element_count, gemm::sgemm};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("LSTM", import_recurrent, WEIGHTED),
    OnnxOp::ir("GRU", import_recurrent, WEIGHTED),
    OnnxOp::ir("RNN", import_recurrent, WEIGHTED),
];

/// Which cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cell {
    Rnn,
    Gru { linear_before_reset: bool },
    Lstm { input_forget: bool },
}

impl Cell {
    /// Gates per hidden unit (rows of `W` per unit).
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru { .. } => 3,
            Cell::Lstm { .. } => 4,
        }
    }

    /// Activation functions per direction.
    fn activations(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru { .. } => 2,
            Cell::Lstm { .. } => 3,
        }
    }

    fn outputs(self) -> usize {
        if matches!(self, Cell::Lstm { .. }) { 3 } else { 2 }
    }

    fn name(self) -> &'static str {
        match self {
            Cell::Rnn => "RNN",
            Cell::Gru { .. } => "GRU",
            Cell::Lstm { .. } => "LSTM",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    Forward,
    Reverse,
    Bidirectional,
}

impl Direction {
    fn count(self) -> usize {
        if self == Direction::Bidirectional { 2 } else { 1 }
    }

    fn name(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
            Direction::Bidirectional => "bidirectional",
        }
    }
}

/// The activation functions ONNX's recurrent ops accept.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    Affine { alpha: f32, beta: f32 },
    LeakyRelu { alpha: f32 },
    ThresholdedRelu { alpha: f32 },
    ScaledTanh { alpha: f32, beta: f32 },
    HardSigmoid { alpha: f32, beta: f32 },
    Elu { alpha: f32 },
    Softsign,
    Softplus,
}

impl Activation {
    /// Parses one name, taking its alpha/beta from the lists (ONNX's defaults when exhausted).
    fn parse(
        name: &str,
        alphas: &mut impl Iterator<Item = f32>,
        betas: &mut impl Iterator<Item = f32>,
    ) -> Result<Activation, ImportError> {
        let mut alpha = |default: f32| alphas.next().unwrap_or(default);
        Ok(match name.to_ascii_lowercase().as_str() {
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "affine" => Activation::Affine { alpha: alpha(1.0), beta: betas.next().unwrap_or(0.0) },
            "leakyrelu" => Activation::LeakyRelu { alpha: alpha(0.01) },
            "thresholdedrelu" => Activation::ThresholdedRelu { alpha: alpha(1.0) },
            "scaledtanh" => Activation::ScaledTanh { alpha: alpha(1.0), beta: betas.next().unwrap_or(1.0) },
            "hardsigmoid" => Activation::HardSigmoid { alpha: alpha(0.2), beta: betas.next().unwrap_or(0.5) },
            "elu" => Activation::Elu { alpha: alpha(1.0) },
            "softsign" => Activation::Softsign,
            "softplus" => Activation::Softplus,
            other => return Err(bad_attribute(format!("unknown activation {other:?}"))),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
            Activation::Affine { .. } => "Affine",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::ThresholdedRelu { .. } => "ThresholdedRelu",
            Activation::ScaledTanh { .. } => "ScaledTanh",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::Elu { .. } => "Elu",
            Activation::Softsign => "Softsign",
            Activation::Softplus => "Softplus",
        }
    }

    /// `(alpha, beta)` as the attribute lists carry them.
    fn params(self) -> (Option<f32>, Option<f32>) {
        match self {
            Activation::Affine { alpha, beta }
            | Activation::ScaledTanh { alpha, beta }
            | Activation::HardSigmoid { alpha, beta } => (Some(alpha), Some(beta)),
            Activation::LeakyRelu { alpha } | Activation::ThresholdedRelu { alpha } | Activation::Elu { alpha } => {
                (Some(alpha), None)
            }
            _ => (None, None),
        }
    }

    /// Applies the function to a slice (one dispatch per slice).
    fn apply(self, xs: &mut [f32]) {
        match self {
            Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
            Activation::Tanh => xs.iter_mut().for_each(|x| *x = x.tanh()),
            Activation::Sigmoid => xs.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
            Activation::Affine { alpha, beta } => xs.iter_mut().for_each(|x| *x = alpha * *x + beta),
            Activation::LeakyRelu { alpha } => xs.iter_mut().for_each(|x| *x = if *x >= 0.0 { *x } else { alpha * *x }),
            Activation::ThresholdedRelu { alpha } => xs.iter_mut().for_each(|x| *x = if *x > alpha { *x } else { 0.0 }),
            Activation::ScaledTanh { alpha, beta } => xs.iter_mut().for_each(|x| *x = alpha * (beta * *x).tanh()),
            Activation::HardSigmoid { alpha, beta } => {
                xs.iter_mut().for_each(|x| *x = (alpha * *x + beta).clamp(0.0, 1.0))
            }
            Activation::Elu { alpha } => {
                xs.iter_mut().for_each(|x| *x = if *x >= 0.0 { *x } else { alpha * (x.exp() - 1.0) })
            }
            Activation::Softsign => xs.iter_mut().for_each(|x| *x /= 1.0 + x.abs()),
            Activation::Softplus => xs.iter_mut().for_each(|x| *x = x.exp().ln_1p()),
        }
    }
}

/// LSTM, GRU or RNN. `onnx_inputs` are the ONNX positions of the IR inputs, in order
/// (`X, W, R` always; `B, sequence_lens, initial_h, initial_c, P` when given).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recurrent {
    pub cell: Cell,
    pub direction: Direction,
    pub hidden_size: usize,
    /// `cell.activations()` per direction, forward direction first.
    pub activations: Vec<Activation>,
    pub clip: Option<f32>,
    /// `layout = 1`: X, Y and the states are batch-first.
    pub batch_first: bool,
    pub onnx_inputs: Vec<usize>,
}

impl From<Recurrent> for Op {
    fn from(op: Recurrent) -> Op {
        Op::Recurrent(op)
    }
}

fn import_recurrent(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let lstm = cx.op_type() == "LSTM";
    cx.arity(3, if lstm { 8 } else { 6 })?;
    let mut known = vec!["activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size"];
    if cx.opset >= 14 {
        known.push("layout");
    }
    match cx.op_type() {
        "LSTM" => known.push("input_forget"),
        "GRU" => known.push("linear_before_reset"),
        _ => {}
    }
    let a = cx.attrs(&known)?;
    let cell = match cx.op_type() {
        "LSTM" => Cell::Lstm { input_forget: a.flag("input_forget")? },
        "GRU" => Cell::Gru { linear_before_reset: a.flag("linear_before_reset")? },
        _ => Cell::Rnn,
    };
    let direction = match a.string("direction")?.as_deref().unwrap_or("forward") {
        "forward" => Direction::Forward,
        "reverse" => Direction::Reverse,
        "bidirectional" => Direction::Bidirectional,
        d => return Err(bad_attribute(format!("direction must be forward, reverse or bidirectional, got {d:?}"))),
    };
    let r = cx.input(2, "R")?;
    let hidden_size = match a.int("hidden_size")? {
        Some(h) => usize::try_from(h)
            .ok()
            .filter(|&h| h > 0)
            .ok_or_else(|| bad_attribute(format!("hidden_size must be positive, got {h}")))?,
        None => *r.shape.get(2).ok_or_else(|| bad_attribute("R must be 3-D [directions, gates * hidden, hidden]"))?,
    };
    let per = cell.activations();
    let names: Vec<String> = match activation_names(cx)? {
        Some(list) => list,
        None => match cell {
            Cell::Rnn => vec!["Tanh".into()],
            Cell::Gru { .. } => vec!["Sigmoid".into(), "Tanh".into()],
            Cell::Lstm { .. } => vec!["Sigmoid".into(), "Tanh".into(), "Tanh".into()],
        },
    };
    let names: Vec<String> = if names.len() == per && direction == Direction::Bidirectional {
        names.iter().chain(&names).cloned().collect()
    } else {
        names
    };
    if names.len() != per * direction.count() {
        return Err(bad_attribute(format!(
            "{} {} needs {} activations, got {}",
            direction.name(),
            cell.name(),
            per * direction.count(),
            names.len()
        )));
    }
    let mut alphas = a.floats("activation_alpha")?.unwrap_or_default().into_iter();
    let mut betas = a.floats("activation_beta")?.unwrap_or_default().into_iter();
    let activations =
        names.iter().map(|n| Activation::parse(n, &mut alphas, &mut betas)).collect::<Result<Vec<_>, _>>()?;
    let clip = a.float("clip")?;
    if clip.is_some_and(|c| c.is_nan() || c <= 0.0) {
        return Err(bad_attribute(format!("clip must be positive, got {clip:?}")));
    }
    let batch_first = a.flag("layout")?;
    let onnx_inputs = cx.present(&[0, 1, 2, 3, 4, 5, 6, 7]);
    let op =
        Recurrent { cell, direction, hidden_size, activations, clip, batch_first, onnx_inputs: onnx_inputs.clone() };
    Lowered::ir(op, onnx_inputs)
}

/// The `activations` attribute (a list of strings).
fn activation_names(cx: &NodeCx) -> Result<Option<Vec<String>>, ImportError> {
    use crate::onnx::proto::attribute_proto::AttributeType;
    let Some(a) = cx.node.attribute.iter().find(|a| a.name() == "activations") else { return Ok(None) };
    if !matches!(a.r#type(), AttributeType::Strings | AttributeType::Undefined) {
        return Err(bad_attribute(format!(
            "attribute \"activations\" is {}, expected STRINGS",
            a.r#type().as_str_name()
        )));
    }
    a.strings
        .iter()
        .map(|s| {
            String::from_utf8(s.clone()).map_err(|_| bad_attribute("attribute \"activations\" is not valid UTF-8"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The sizes of one call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    dirs: usize,
}

impl Recurrent {
    /// The IR input holding ONNX input `position`, if given.
    fn find<'t, T>(&self, inputs: &'t [T], position: usize) -> Option<&'t T> {
        self.onnx_inputs.iter().position(|&p| p == position).and_then(|i| inputs.get(i))
    }

    fn check(&self, shape: &dyn Fn(usize) -> Option<Vec<usize>>) -> Result<Dims, String> {
        let name = self.cell.name();
        let x = shape(0).ok_or_else(|| format!("{name}: missing X"))?;
        let &[a, b, input] = &x[..] else { return Err(format!("{name}: X has shape {x:?}, expected 3-D")) };
        let (seq, batch) = if self.batch_first { (b, a) } else { (a, b) };
        let (hidden, dirs, gates) = (self.hidden_size, self.direction.count(), self.cell.gates());
        let want = |position: usize, role: &str, expected: Vec<usize>| -> Result<(), String> {
            match shape(position) {
                Some(s) if s != expected => Err(format!("{name}: {role} has shape {s:?}, expected {expected:?}")),
                _ => Ok(()),
            }
        };
        want(1, "W", vec![dirs, gates * hidden, input])?;
        want(2, "R", vec![dirs, gates * hidden, hidden])?;
        want(3, "B", vec![dirs, 2 * gates * hidden])?;
        want(4, "sequence_lens", vec![batch])?;
        let state = if self.batch_first { vec![batch, dirs, hidden] } else { vec![dirs, batch, hidden] };
        want(5, "initial_h", state.clone())?;
        want(6, "initial_c", state)?;
        want(7, "P", vec![dirs, 3 * hidden])?;
        if self.activations.len() != self.cell.activations() * dirs {
            return Err(format!("{name}: {} activations for {dirs} directions", self.activations.len()));
        }
        Ok(Dims { seq, batch, input, hidden, dirs })
    }

    fn output_shapes(&self, d: &Dims) -> Vec<Vec<usize>> {
        let (y, state) = if self.batch_first {
            (vec![d.batch, d.seq, d.dirs, d.hidden], vec![d.batch, d.dirs, d.hidden])
        } else {
            (vec![d.seq, d.dirs, d.batch, d.hidden], vec![d.dirs, d.batch, d.hidden])
        };
        let mut out = vec![y, state.clone(), state];
        out.truncate(self.cell.outputs());
        out
    }
}

impl OpDef for Recurrent {
    fn type_name(&self) -> &'static str {
        self.cell.name()
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.cell.name();
        if inputs.len() != self.onnx_inputs.len() {
            return Err(format!("{name}: expects {} inputs, got {}", self.onnx_inputs.len(), inputs.len()));
        }
        let x = inputs[0];
        if !matches!(x.dtype, DType::F32 | DType::F64 | DType::F16) {
            return Err(format!("{name}: X {:?} is {}, expected float32, float64 or float16", x.name, x.dtype.name()));
        }
        for (&p, t) in self.onnx_inputs.iter().zip(inputs) {
            let ok = if p == 4 { t.dtype == DType::I32 } else { t.dtype == x.dtype };
            if !ok {
                return Err(format!("{name}: input #{p} {:?} is {}", t.name, t.dtype.name()));
            }
        }
        let dims = self.check(&|p| self.find(inputs, p).map(|t| t.shape.clone()))?;
        Ok(self.output_shapes(&dims).into_iter().map(|s| (x.dtype, s)).collect())
    }

    fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.cell.name();
        if inputs.len() != self.onnx_inputs.len() {
            return Err(KernelError::new(
                name,
                format!("expects {} inputs, got {}", self.onnx_inputs.len(), inputs.len()),
            ));
        }
        let dims =
            self.check(&|p| self.find(inputs, p).map(|t| t.shape.clone())).map_err(|e| KernelError::new(name, e))?;
        let dtype = inputs[0].dtype();
        let results = recurrent(self, &dims, inputs)?;
        let wanted = if outputs.is_empty() { self.cell.outputs() } else { outputs.len() };
        results
            .into_iter()
            .zip(self.output_shapes(&dims))
            .take(wanted)
            .map(|(values, shape)| f32_result(name, dtype, shape, values))
            .collect()
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        match self.onnx_inputs.get(position) {
            // W and R are [directions, gates × hidden, ·]: one row per gate unit, whose
            // ranges differ from gate to gate, so per-row encodings run along axis 1.
            Some(1 | 2) => InputRole::Weight { channel_axis: Some(1) },
            // B adds to both X·Wᵀ and H·Rᵀ, two products of different scales: the int32
            // `input scale × weight scale` bias rule fits neither half, so it stays float, as
            // do the peepholes (multiplied with the cell state, not a matmul operand).
            Some(3 | 7) => InputRole::FloatParam,
            Some(4) => InputRole::Index,
            _ => InputRole::Activation,
        }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs: Vec<AttributeProto> = vec![
            attr_string("direction", self.direction.name()),
            attr_int("hidden_size", self.hidden_size as i64),
            attr_int("layout", i64::from(self.batch_first)),
            attr_strings("activations", self.activations.iter().map(|a| a.name()).collect()),
        ];
        let (alphas, betas): (Vec<Option<f32>>, Vec<Option<f32>>) = self.activations.iter().map(|a| a.params()).unzip();
        let alphas: Vec<f32> = alphas.into_iter().flatten().collect();
        let betas: Vec<f32> = betas.into_iter().flatten().collect();
        if !alphas.is_empty() {
            attrs.push(attr_floats("activation_alpha", &alphas));
        }
        if !betas.is_empty() {
            attrs.push(attr_floats("activation_beta", &betas));
        }
        if let Some(c) = self.clip {
            attrs.push(attr_float("clip", c));
        }
        match self.cell {
            Cell::Lstm { input_forget } => attrs.push(attr_int("input_forget", i64::from(input_forget))),
            Cell::Gru { linear_before_reset } => {
                attrs.push(attr_int("linear_before_reset", i64::from(linear_before_reset)))
            }
            Cell::Rnn => {}
        }
        // ONNX reads optional inputs by position: put the IR inputs back where they were.
        let given = std::mem::take(&mut cx.inputs);
        let last = self.onnx_inputs.last().copied().unwrap_or(0);
        let mut named = vec![String::new(); last + 1];
        for (&p, n) in self.onnx_inputs.iter().zip(given) {
            named[p] = n;
        }
        cx.inputs = named;
        cx.emit(self.cell.name(), attrs);
    }
}

fn attr_strings(name: &str, values: Vec<&str>) -> AttributeProto {
    use crate::onnx::proto::attribute_proto::AttributeType;
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Strings as i32),
        strings: values.into_iter().map(|v| v.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

fn attr_floats(name: &str, values: &[f32]) -> AttributeProto {
    use crate::onnx::proto::attribute_proto::AttributeType;
    AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(AttributeType::Floats as i32),
        floats: values.to_vec(),
        ..Default::default()
    }
}

/// `[a, b, rest]` -> `[b, a, rest]` (the batch-first layouts to sequence-first and back).
fn swap01(values: &[f32], a: usize, b: usize, rest: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    for j in 0..b {
        for i in 0..a {
            let base = (i * b + j) * rest;
            out.extend_from_slice(&values[base..base + rest]);
        }
    }
    out
}

/// `[Y, Y_h, Y_c]` (Y_c for LSTM only) as f32 in the op's layout.
fn recurrent(op: &Recurrent, d: &Dims, inputs: &[&Tensor]) -> Result<Vec<Vec<f32>>, KernelError> {
    let name = op.cell.name();
    let Dims { seq, batch, input, hidden, dirs } = *d;
    let gates = op.cell.gates();
    let gh = gates * hidden;
    let get = |p: usize| op.find(inputs, p).map(|t| f32_data(t));
    let x = get(0).ok_or_else(|| KernelError::new(name, "missing X"))?;
    let x = if op.batch_first { swap01(&x, batch, seq, input) } else { x.into_owned() };
    let w = get(1).ok_or_else(|| KernelError::new(name, "missing W"))?;
    let r = get(2).ok_or_else(|| KernelError::new(name, "missing R"))?;
    let bias = get(3);
    let lens: Vec<usize> = match op.find(inputs, 4) {
        Some(t) => t
            .to_i64_vec()
            .ok_or_else(|| KernelError::new(name, "sequence_lens must be int32"))?
            .into_iter()
            .map(|l| usize::try_from(l).unwrap_or(0).min(seq))
            .collect(),
        None => vec![seq; batch],
    };
    let state = |p: usize| -> Vec<f32> {
        match get(p) {
            Some(s) if op.batch_first => swap01(&s, batch, dirs, hidden),
            Some(s) => s.into_owned(),
            None => vec![0.0; dirs * batch * hidden],
        }
    };
    let (h0, c0) = (state(5), state(6));
    let peep = get(7);
    let clip = op.clip;
    let clamp = |xs: &mut [f32]| {
        if let Some(c) = clip {
            xs.iter_mut().for_each(|x| *x = x.clamp(-c, c));
        }
    };

    let mut y = vec![0.0f32; element_count(name, &[seq, dirs, batch, hidden])?];
    let mut y_h = vec![0.0f32; dirs * batch * hidden];
    let mut y_c = vec![0.0f32; dirs * batch * hidden];
    let mut xw = vec![0.0f32; element_count(name, &[seq, batch, gh])?];
    let mut hr = vec![0.0f32; batch * gh];
    let mut scratch = vec![0.0f32; batch * hidden];
    let mut rh = vec![0.0f32; batch * hidden];
    let mut tmp = vec![0.0f32; hidden];
    for dir in 0..dirs {
        let reverse = op.direction == Direction::Reverse || dir == 1;
        let acts = &op.activations[dir * op.cell.activations()..(dir + 1) * op.cell.activations()];
        let wd = &w[dir * gh * input..(dir + 1) * gh * input];
        let rd = &r[dir * gh * hidden..(dir + 1) * gh * hidden];
        // X·Wᵀ for every step at once, plus the biases that sit outside the recurrence.
        sgemm(name, (seq * batch, input, gh), 1.0, &x, (input, 1), wd, (1, input), 0.0, &mut xw)?;
        let lbr = matches!(op.cell, Cell::Gru { linear_before_reset: true });
        let zeros = vec![0.0f32; gh];
        let (wb, rb) = match &bias {
            Some(b) => (&b[dir * 2 * gh..dir * 2 * gh + gh], &b[dir * 2 * gh + gh..(dir + 1) * 2 * gh]),
            None => (&zeros[..], &zeros[..]),
        };
        for row in xw.chunks_exact_mut(gh) {
            for (j, v) in row.iter_mut().enumerate() {
                // GRU with linear_before_reset keeps Rbh inside the reset gate's product.
                *v += wb[j] + if lbr && j >= 2 * hidden { 0.0 } else { rb[j] };
            }
        }
        let mut h = h0[dir * batch * hidden..(dir + 1) * batch * hidden].to_vec();
        let mut c = c0[dir * batch * hidden..(dir + 1) * batch * hidden].to_vec();
        let pd = peep.as_ref().map(|p| &p[dir * 3 * hidden..(dir + 1) * 3 * hidden]);
        for step in 0..seq {
            let t = if reverse { seq - 1 - step } else { step };
            let xt = &xw[t * batch * gh..(t + 1) * batch * gh];
            match op.cell {
                Cell::Rnn | Cell::Lstm { .. } => {
                    sgemm(name, (batch, hidden, gh), 1.0, &h, (hidden, 1), rd, (1, hidden), 0.0, &mut hr)?;
                }
                Cell::Gru { .. } => {
                    // z and r first; the candidate needs r.
                    let rzr = &rd[..2 * hidden * hidden];
                    let mut zr_buf = vec![0.0f32; batch * 2 * hidden];
                    sgemm(name, (batch, hidden, 2 * hidden), 1.0, &h, (hidden, 1), rzr, (1, hidden), 0.0, &mut zr_buf)?;
                    for b in 0..batch {
                        hr[b * gh..b * gh + 2 * hidden].copy_from_slice(&zr_buf[b * 2 * hidden..(b + 1) * 2 * hidden]);
                    }
                }
            }
            match op.cell {
                Cell::Rnn => {
                    for b in (0..batch).filter(|&b| t < lens[b]) {
                        let g = &mut tmp[..];
                        for (k, v) in g.iter_mut().enumerate() {
                            *v = xt[b * gh + k] + hr[b * gh + k];
                        }
                        clamp(g);
                        acts[0].apply(g);
                        h[b * hidden..(b + 1) * hidden].copy_from_slice(g);
                    }
                }
                Cell::Lstm { input_forget } => {
                    let mut gate = vec![0.0f32; gh];
                    for b in (0..batch).filter(|&b| t < lens[b]) {
                        for (k, v) in gate.iter_mut().enumerate() {
                            *v = xt[b * gh + k] + hr[b * gh + k];
                        }
                        // Gate order: i, o, f, c; peepholes P = [Pi, Po, Pf].
                        let cb = &mut c[b * hidden..(b + 1) * hidden];
                        let (i_g, rest) = gate.split_at_mut(hidden);
                        let (o_g, rest) = rest.split_at_mut(hidden);
                        let (f_g, c_g) = rest.split_at_mut(hidden);
                        if let Some(p) = pd {
                            for k in 0..hidden {
                                i_g[k] += p[k] * cb[k];
                                f_g[k] += p[2 * hidden + k] * cb[k];
                            }
                        }
                        for g in [&mut *i_g, &mut *f_g, &mut *c_g] {
                            clamp(g);
                        }
                        acts[0].apply(i_g);
                        if input_forget {
                            for k in 0..hidden {
                                f_g[k] = 1.0 - i_g[k];
                            }
                        } else {
                            acts[0].apply(f_g);
                        }
                        acts[1].apply(c_g);
                        for k in 0..hidden {
                            cb[k] = f_g[k] * cb[k] + i_g[k] * c_g[k];
                        }
                        if let Some(p) = pd {
                            for k in 0..hidden {
                                o_g[k] += p[hidden + k] * cb[k];
                            }
                        }
                        clamp(o_g);
                        acts[0].apply(o_g);
                        tmp.copy_from_slice(cb);
                        acts[2].apply(&mut tmp);
                        for k in 0..hidden {
                            h[b * hidden + k] = o_g[k] * tmp[k];
                        }
                    }
                }
                Cell::Gru { linear_before_reset } => {
                    // z, r activations.
                    for b in 0..batch {
                        let row = &mut hr[b * gh..b * gh + 2 * hidden];
                        for (k, v) in row.iter_mut().enumerate() {
                            *v += xt[b * gh + k];
                        }
                        clamp(row);
                        acts[0].apply(row);
                    }
                    let rh_w = &rd[2 * hidden * hidden..];
                    if linear_before_reset {
                        sgemm(
                            name,
                            (batch, hidden, hidden),
                            1.0,
                            &h,
                            (hidden, 1),
                            rh_w,
                            (1, hidden),
                            0.0,
                            &mut scratch,
                        )?;
                        let rbh = match &bias {
                            Some(bv) => bv[dir * 2 * gh + gh + 2 * hidden..dir * 2 * gh + 2 * gh].to_vec(),
                            None => vec![0.0; hidden],
                        };
                        for b in 0..batch {
                            for k in 0..hidden {
                                let r_gate = hr[b * gh + hidden + k];
                                scratch[b * hidden + k] = r_gate * (scratch[b * hidden + k] + rbh[k]);
                            }
                        }
                    } else {
                        for b in 0..batch {
                            for k in 0..hidden {
                                rh[b * hidden + k] = hr[b * gh + hidden + k] * h[b * hidden + k];
                            }
                        }
                        sgemm(
                            name,
                            (batch, hidden, hidden),
                            1.0,
                            &rh,
                            (hidden, 1),
                            rh_w,
                            (1, hidden),
                            0.0,
                            &mut scratch,
                        )?;
                    }
                    for b in (0..batch).filter(|&b| t < lens[b]) {
                        let cand = &mut tmp[..];
                        for k in 0..hidden {
                            cand[k] = xt[b * gh + 2 * hidden + k] + scratch[b * hidden + k];
                        }
                        clamp(cand);
                        acts[1].apply(cand);
                        for k in 0..hidden {
                            let z = hr[b * gh + k];
                            h[b * hidden + k] = (1.0 - z) * cand[k] + z * h[b * hidden + k];
                        }
                    }
                }
            }
            for b in (0..batch).filter(|&b| t < lens[b]) {
                let dst = ((t * dirs + dir) * batch + b) * hidden;
                y[dst..dst + hidden].copy_from_slice(&h[b * hidden..(b + 1) * hidden]);
            }
        }
        y_h[dir * batch * hidden..(dir + 1) * batch * hidden].copy_from_slice(&h);
        y_c[dir * batch * hidden..(dir + 1) * batch * hidden].copy_from_slice(&c);
    }
    if op.batch_first {
        // [S, D, B, H] -> [B, S, D, H]; states [D, B, H] -> [B, D, H].
        y = swap01(&y, seq * dirs, batch, hidden);
        y_h = swap01(&y_h, dirs, batch, hidden);
        y_c = swap01(&y_c, dirs, batch, hidden);
    }
    let mut out = vec![y, y_h, y_c];
    out.truncate(op.cell.outputs());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_rnn_accumulates_its_input() {
        // h_t = x_t + h_{t-1} with W = R = 1 and Affine(1, 0): Y = cumulative sums.
        let op = Recurrent {
            cell: Cell::Rnn,
            direction: Direction::Forward,
            hidden_size: 1,
            activations: vec![Activation::Affine { alpha: 1.0, beta: 0.0 }],
            clip: None,
            batch_first: false,
            onnx_inputs: vec![0, 1, 2],
        };
        let x = Tensor::from_f32(vec![3, 1, 1], vec![1.0, 2.0, 3.0]);
        let one = Tensor::from_f32(vec![1, 1, 1], vec![1.0]);
        let out = op.run(&[&x, &one, &one], &[]).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), &[1.0, 3.0, 6.0]);
        assert_eq!(out[1].as_f32().unwrap(), &[6.0]);
        // Reverse runs from the last step: 3, 5, 6 written at steps 2, 1, 0.
        let rev = Recurrent { direction: Direction::Reverse, ..op.clone() };
        let out = rev.run(&[&x, &one, &one], &[]).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), &[6.0, 5.0, 3.0]);
    }

    #[test]
    fn sequence_lens_stop_a_batch_entry_early() {
        let op = Recurrent {
            cell: Cell::Rnn,
            direction: Direction::Forward,
            hidden_size: 1,
            activations: vec![Activation::Affine { alpha: 1.0, beta: 0.0 }],
            clip: Some(2.5),
            batch_first: true,
            onnx_inputs: vec![0, 1, 2, 4],
        };
        // Batch-first X [2, 2, 1]; entry 1 has length 1.
        let x = Tensor::from_f32(vec![2, 2, 1], vec![1.0, 2.0, 4.0, 8.0]);
        let one = Tensor::from_f32(vec![1, 1, 1], vec![1.0]);
        let lens = Tensor::new(vec![2], crate::ir::TensorData::I32(vec![2, 1])).unwrap();
        let out = op.run(&[&x, &one, &one, &lens], &[]).unwrap();
        // Entry 0: 1, then clip(1 + 2) = 2.5; entry 1: clip(4) = 2.5, then padding (0).
        assert_eq!(out[0].as_f32().unwrap(), &[1.0, 2.5, 2.5, 0.0]);
        assert_eq!(out[1].as_f32().unwrap(), &[2.5, 2.5]);
    }
}
