//! The quantize stage: an encoding for every float tensor of the graph, from calibration
//! statistics, settings and overrides.
//!
//! Rules, tensor by tensor (an override always wins for its own tensor):
//! - **Activations** (graph inputs and op outputs of dtype f32): per tensor, from the
//!   statistics with `act_bitwidth`/`act_schema`/`act_calibration`. Outputs of data-movement
//!   ops (`Op::is_data_movement`: Reshape, Transpose, MaxPool, ...) reuse their input's
//!   encoding, as the SDK does.
//! - **Weights**: Conv input 1 is per output channel (axis 0) when `per_channel`, and then
//!   always symmetric with `offset = -2^(bw-1)` (the SDK requires it), else per tensor with
//!   `param_schema`. Gemm input 1 and constant MatMul operands are per tensor (per-row is a
//!   separate SDK option, `--use_per_row_quantization`, that the settings do not carry yet).
//!   All at `weight_bitwidth`, range from `param_calibration` over the values.
//! - **Biases** (Conv/Gemm input 2): with `bias_bitwidth = 32`, QNN's int32 bias, `scale =
//!   in_scale * w_scale` (per channel when the weight is), offset 0 signed (`-2^31` here); if the
//!   input or weight has no integer per-tensor/per-channel encoding (a float override), the
//!   bias gets a symmetric 32-bit encoding of its own range. With `bias_bitwidth = 8`: per tensor
//!   from its values with `param_schema`.
//! - **Other constants** read by ops (a Mul by a constant, a Concat with a constant, ...):
//!   per tensor at `weight_bitwidth` with `param_schema`. BatchNormalization statistics (inputs
//!   1-4) get none and stay float: BatchNorm is expected to be folded before quantization, and
//!   an 8-bit variance would be wrong anyway.
//! - **Relu squashing** (the SDK's default; `--disable_relu_squashing` turns it off there): a
//!   Relu, or a Clip with a non-negative lower bound, whose input is an op output read by
//!   nothing else lends its output encoding to that input, so the producer and the activation
//!   share one grid, as AIMET QuantSim's Conv+Relu / Gemm+Relu supergroups do. An override of
//!   the producer's output, or a float producer output, still wins.
//! - **Mixed precision** (SDK partial-override rule): when the output, weight or bias of a
//!   Conv, Gemm or MatMul has a float override, the other two of that op become float at the
//!   same bitwidth unless they have overrides of their own.
//! - **Calibration** (`act_calibration`, `param_calibration`): `min-max` and `percentile` here;
//!   `mse`, `sqnr` and `entropy` search the tensor's histogram ([`crate::quant::calibration`];
//!   parameters are binned on the same grid first). Per-channel weights search each channel
//!   with the symmetric schema they are encoded with.

use std::collections::BTreeMap;

use crate::ir::{DType, Graph, Node, Op, Tensor, TensorId};
use crate::quant::aimet::{
    OverrideEncoding, OverrideError, Overrides, ResolvedOverrides, channel_axis, resolve_overrides,
};
use crate::quant::apply::ChannelMismatch;
use crate::quant::calibration::{Search, search_range};
use crate::quant::encoding::{Encoding, QuantizedGraph, TensorEncoding};
use crate::quant::settings::{CalibrationMethod, QuantSettings, Schema};
use crate::quant::stats::{CalibrationStats, TensorStats};

/// Why `quantize` could not produce encodings.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("invalid quantization setting: {0}")]
    Settings(String),
    #[error("no calibration statistics for activation \"{tensor}\"")]
    MissingStats { tensor: String },
    #[error("activation \"{tensor}\" had no finite values during calibration ({nonfinite} NaN or infinite values)")]
    NoFiniteValues { tensor: String, nonfinite: u64 },
    #[error("in the overrides file: {0}")]
    Override(OverrideError),
    #[error("\"{tensor}\": {source}")]
    Channels { tensor: String, source: ChannelMismatch },
}

/// Computes the encoding of every float tensor of `graph` (see the module docs). All problems
/// are reported, not just the first.
pub fn quantize(
    graph: &Graph,
    stats: &CalibrationStats,
    settings: &QuantSettings,
    overrides: Option<&Overrides>,
) -> Result<QuantizedGraph, Vec<QuantError>> {
    let mut errors = check_settings(settings);
    if !errors.is_empty() {
        return Err(errors);
    }
    let resolved = match overrides {
        Some(o) => {
            let (resolved, problems) = resolve_overrides(o, graph);
            errors.extend(problems.into_iter().filter(|e| e.is_error()).map(QuantError::Override));
            resolved
        }
        None => ResolvedOverrides::default(),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut q = Quantizer {
        graph,
        stats,
        settings,
        forced_float: coupled_floats(graph, &resolved),
        resolved,
        encodings: BTreeMap::new(),
        errors,
    };
    q.activations();
    q.squash_relus();
    q.params();
    if q.errors.is_empty() {
        Ok(QuantizedGraph { graph: graph.clone(), encodings: q.encodings })
    } else {
        Err(q.errors)
    }
}

fn check_settings(s: &QuantSettings) -> Vec<QuantError> {
    let mut errors = Vec::new();
    let mut check = |name: &str, value: u32, allowed: &[u32]| {
        if !allowed.contains(&value) {
            errors.push(QuantError::Settings(format!("{name} = {value}; allowed: {allowed:?}")));
        }
    };
    check("act_bitwidth", s.act_bitwidth, &[8, 16]);
    check("weight_bitwidth", s.weight_bitwidth, &[4, 8, 16]);
    check("bias_bitwidth", s.bias_bitwidth, &[8, 32]);
    let uses_percentile = [s.act_calibration, s.param_calibration].contains(&CalibrationMethod::Percentile);
    if uses_percentile && !(90.0..=100.0).contains(&s.percentile) {
        errors.push(QuantError::Settings(format!("percentile = {}; allowed: 90..=100", s.percentile)));
    }
    errors
}

/// The SDK's partial-override rule for Conv/Gemm/MatMul: one float member (output, weight,
/// bias) makes the members without an override float too.
fn coupled_floats(graph: &Graph, resolved: &ResolvedOverrides) -> BTreeMap<TensorId, u32> {
    let mut forced = BTreeMap::new();
    for node in &graph.nodes {
        if !matches!(node.op, Op::Conv(_) | Op::Gemm { .. } | Op::MatMul) {
            continue;
        }
        let params = node.inputs.iter().skip(1).filter(|&&i| graph.is_constant(i));
        let members: Vec<TensorId> = node.outputs.iter().take(1).chain(params).copied().collect();
        let float_bw = members.iter().find_map(|&t| match resolved.get(t) {
            Some(OverrideEncoding::Float { bitwidth }) => Some(*bitwidth),
            _ => None,
        });
        if let Some(bw) = float_bw {
            for t in members {
                if resolved.get(t).is_none() {
                    forced.entry(t).or_insert(bw);
                }
            }
        }
    }
    forced
}

/// How a constant input is quantized by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParamRole {
    /// A weight; per channel along this axis when `Some`.
    Weight(Option<usize>),
    Bias,
    /// Left in float (BatchNorm statistics).
    Float,
    Other,
}

fn param_role(op: &Op, position: usize, per_channel: bool) -> ParamRole {
    match (op, position) {
        (Op::Conv(_), 1) => ParamRole::Weight(per_channel.then_some(0)),
        (Op::Gemm { .. }, 1) | (Op::MatMul, _) => ParamRole::Weight(None),
        (Op::Conv(_) | Op::Gemm { .. }, 2) => ParamRole::Bias,
        (Op::BatchNormalization { .. }, 1..) => ParamRole::Float,
        _ => ParamRole::Other,
    }
}

struct Quantizer<'a> {
    graph: &'a Graph,
    stats: &'a CalibrationStats,
    settings: &'a QuantSettings,
    resolved: ResolvedOverrides,
    forced_float: BTreeMap<TensorId, u32>,
    encodings: BTreeMap<TensorId, TensorEncoding>,
    errors: Vec<QuantError>,
}

impl Quantizer<'_> {
    fn name(&self, id: TensorId) -> String {
        self.graph.name(id).to_string()
    }

    fn is_float_activation(&self, id: TensorId) -> bool {
        !self.graph.is_constant(id) && self.graph.tensors.get(id.index()).is_some_and(|t| t.dtype == DType::F32)
    }

    fn activations(&mut self) {
        for &id in &self.graph.inputs {
            self.activation(id, None);
        }
        for node in &self.graph.nodes {
            for &id in &node.outputs {
                self.activation(id, Some(node));
            }
        }
    }

    fn activation(&mut self, id: TensorId, producer: Option<&Node>) {
        if !self.is_float_activation(id) || self.encodings.contains_key(&id) {
            return;
        }
        let (bw, schema) = (self.settings.act_bitwidth, self.settings.act_schema);
        let enc = match self.resolved.get(id).cloned() {
            Some(OverrideEncoding::Float { bitwidth }) => Some(TensorEncoding::Float { bitwidth }),
            Some(OverrideEncoding::Int(channels)) => channels.into_iter().next().map(TensorEncoding::PerTensor),
            Some(OverrideEncoding::Calibrated { bitwidth, symmetric }) => {
                self.encoding_from_stats(id, bitwidth, schema_of(symmetric, schema))
            }
            // Rejected by the override check; nothing to do here.
            Some(OverrideEncoding::PerBlock { .. }) => None,
            None => match self.forced_float.get(&id) {
                Some(&bitwidth) => Some(TensorEncoding::Float { bitwidth }),
                None => match self.passthrough(producer) {
                    Some(enc) => Some(enc),
                    None => self.encoding_from_stats(id, bw, schema),
                },
            },
        };
        if let Some(enc) = enc {
            self.encodings.insert(id, enc);
        }
    }

    /// Gives the input of every squashable Relu/Clip the activation's own encoding (see the
    /// module docs); runs before the params so that biases use the squashed input scales.
    fn squash_relus(&mut self) {
        let consumers = self.graph.consumers();
        let producers = self.graph.producers();
        for node in &self.graph.nodes {
            let squashable = match &node.op {
                Op::Relu => true,
                Op::Clip { min, .. } => *min >= 0.0,
                _ => false,
            };
            let (Some(&input), Some(&output)) = (node.inputs.first(), node.outputs.first()) else { continue };
            let sole_reader = consumers.get(&input).is_some_and(|readers| readers.len() == 1);
            if !squashable
                || !sole_reader
                || !producers.contains_key(&input)
                || self.graph.outputs.contains(&input)
                || self.resolved.get(input).is_some()
                || self.forced_float.contains_key(&input)
                || matches!(self.encodings.get(&input), Some(TensorEncoding::Float { .. }))
            {
                continue;
            }
            if let Some(enc @ TensorEncoding::PerTensor(_)) = self.encodings.get(&output).cloned() {
                self.encodings.insert(input, enc);
            }
        }
    }

    /// The input encoding a data-movement op passes through to its output.
    fn passthrough(&self, producer: Option<&Node>) -> Option<TensorEncoding> {
        let node = producer?;
        if !node.op.is_data_movement() {
            return None;
        }
        self.encodings.get(node.inputs.first()?).cloned()
    }

    fn encoding_from_stats(&mut self, id: TensorId, bitwidth: u32, schema: Schema) -> Option<TensorEncoding> {
        let Some(stats) = self.stats.get(id) else {
            self.errors.push(QuantError::MissingStats { tensor: self.name(id) });
            return None;
        };
        let (lo, hi) = self.activation_range(id, stats, bitwidth, schema)?;
        Some(TensorEncoding::PerTensor(Encoding::from_range(lo, hi, bitwidth, schema)))
    }

    fn activation_range(
        &mut self,
        id: TensorId,
        stats: &TensorStats,
        bitwidth: u32,
        schema: Schema,
    ) -> Option<(f32, f32)> {
        let method = self.settings.act_calibration;
        let range = match Search::of(method) {
            Some(search) => search_range(search, stats, bitwidth, schema),
            None if method == CalibrationMethod::Percentile => stats.percentile_range(self.settings.percentile),
            None => stats.range(),
        };
        if range.is_none() {
            self.errors.push(QuantError::NoFiniteValues { tensor: self.name(id), nonfinite: stats.nonfinite });
        }
        range
    }

    fn params(&mut self) {
        for node in &self.graph.nodes {
            for (position, &id) in node.inputs.iter().enumerate() {
                let Some(t) = self.graph.constant(id) else { continue };
                if t.dtype() != DType::F32 || self.encodings.contains_key(&id) {
                    continue;
                }
                let role = param_role(&node.op, position, self.settings.per_channel);
                if let Some(enc) = self.param(node, id, t, role) {
                    self.encodings.insert(id, enc);
                }
            }
        }
    }

    fn param(&mut self, node: &Node, id: TensorId, t: &Tensor, role: ParamRole) -> Option<TensorEncoding> {
        let (weight_bw, schema) = (self.settings.weight_bitwidth, self.settings.param_schema);
        match self.resolved.get(id).cloned() {
            Some(OverrideEncoding::Float { bitwidth }) => Some(TensorEncoding::Float { bitwidth }),
            Some(OverrideEncoding::Int(mut channels)) if channels.len() == 1 => {
                channels.pop().map(TensorEncoding::PerTensor)
            }
            Some(OverrideEncoding::Int(channels)) => {
                let axis = channel_axis(self.graph, id);
                Some(TensorEncoding::PerChannel { axis, channels })
            }
            Some(OverrideEncoding::Calibrated { bitwidth, symmetric }) => {
                let schema = schema_of(symmetric, schema);
                match role {
                    ParamRole::Bias if bitwidth == 32 => self.int32_bias(node, t),
                    ParamRole::Weight(axis) => self.weight(t, axis, bitwidth, schema),
                    _ => self.weight(t, None, bitwidth, schema),
                }
            }
            Some(OverrideEncoding::PerBlock { .. }) => None,
            None => {
                if let Some(&bitwidth) = self.forced_float.get(&id) {
                    return Some(TensorEncoding::Float { bitwidth });
                }
                match role {
                    ParamRole::Float => None,
                    ParamRole::Weight(axis) => self.weight(t, axis, weight_bw, schema),
                    ParamRole::Bias if self.settings.bias_bitwidth == 32 => self.int32_bias(node, t),
                    ParamRole::Bias => self.weight(t, None, self.settings.bias_bitwidth, schema),
                    ParamRole::Other => self.weight(t, None, weight_bw, schema),
                }
            }
        }
    }

    /// A parameter's encoding from its own values: per channel (always symmetric) along
    /// `axis`, or per tensor with `schema`.
    fn weight(&self, t: &Tensor, axis: Option<usize>, bitwidth: u32, schema: Schema) -> Option<TensorEncoding> {
        let values = t.as_f32()?;
        match axis.and_then(|a| Some((a, *t.shape.get(a)?))).filter(|&(_, n)| n > 0) {
            Some((axis, n)) => {
                let mut channels = Vec::with_capacity(n);
                for slice in channel_slices(values, &t.shape, axis) {
                    let (lo, hi) = self.param_range(&slice, bitwidth, Schema::Symmetric);
                    channels.push(Encoding::symmetric(lo, hi, bitwidth));
                }
                Some(TensorEncoding::PerChannel { axis, channels })
            }
            None => {
                let (lo, hi) = self.param_range(values, bitwidth, schema);
                Some(TensorEncoding::PerTensor(Encoding::from_range(lo, hi, bitwidth, schema)))
            }
        }
    }

    /// The range of a parameter (or one channel of it) by `param_calibration`; `(0, 0)` when it
    /// has no finite value.
    fn param_range(&self, values: &[f32], bitwidth: u32, schema: Schema) -> (f32, f32) {
        let method = self.settings.param_calibration;
        match Search::of(method) {
            Some(search) => {
                search_range(search, &TensorStats::of_values(values), bitwidth, schema).unwrap_or((0.0, 0.0))
            }
            None if method == CalibrationMethod::Percentile => percentile_range(values, self.settings.percentile),
            None => min_max(values),
        }
    }

    /// QNN's int32 bias: `scale = in_scale * w_scale`, per channel when the weight is.
    fn int32_bias(&self, node: &Node, t: &Tensor) -> Option<TensorEncoding> {
        let in_scale = match node.inputs.first().and_then(|i| self.encodings.get(i)) {
            Some(TensorEncoding::PerTensor(e)) => Some(e.scale),
            _ => None,
        };
        let w_scales: Option<Vec<f32>> = match node.inputs.get(1).and_then(|i| self.encodings.get(i)) {
            Some(TensorEncoding::PerTensor(e)) => Some(vec![e.scale]),
            Some(TensorEncoding::PerChannel { channels, .. }) => Some(channels.iter().map(|e| e.scale).collect()),
            _ => None,
        };
        match (in_scale, w_scales) {
            (Some(s), Some(w)) if w.len() == 1 => Some(TensorEncoding::PerTensor(Encoding::int32_with_scale(s * w[0]))),
            (Some(s), Some(w)) if t.shape.first() == Some(&w.len()) && t.shape.len() == 1 => {
                let channels = w.iter().map(|&ws| Encoding::int32_with_scale(s * ws)).collect();
                Some(TensorEncoding::PerChannel { axis: 0, channels })
            }
            _ => {
                let (lo, hi) = min_max(t.as_f32()?);
                Some(TensorEncoding::PerTensor(Encoding::symmetric(lo, hi, 32)))
            }
        }
    }
}

fn schema_of(symmetric: Option<bool>, default: Schema) -> Schema {
    match symmetric {
        Some(true) => Schema::Symmetric,
        Some(false) => Schema::Asymmetric,
        None => default,
    }
}

/// Min and max of the finite values (0, 0 when there are none).
fn min_max(values: &[f32]) -> (f32, f32) {
    let mut finite = values.iter().copied().filter(|x| x.is_finite());
    let Some(first) = finite.next() else { return (0.0, 0.0) };
    finite.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

/// The `(100-p)`-th and `p`-th percentiles of the finite values, with numpy's default linear
/// interpolation between order statistics (exact; parameters are small enough to sort).
fn percentile_range(values: &[f32], percentile: f64) -> (f32, f32) {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if sorted.is_empty() {
        return (0.0, 0.0);
    }
    sorted.sort_by(f32::total_cmp);
    let at = |q: f64| -> f32 {
        let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
        let (below, frac) = (pos.floor() as usize, pos.fract());
        let lo = sorted[below.min(sorted.len() - 1)] as f64;
        let hi = sorted[(below + 1).min(sorted.len() - 1)] as f64;
        (lo + frac * (hi - lo)) as f32
    };
    let p = percentile / 100.0;
    (at(1.0 - p), at(p))
}

/// The values of each slice along `axis`, in channel order.
fn channel_slices(values: &[f32], shape: &[usize], axis: usize) -> Vec<Vec<f32>> {
    let dim = shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = shape.get(axis + 1..).map_or(1, |s| s.iter().product::<usize>()).max(1);
    let mut slices = vec![Vec::with_capacity(values.len() / dim); dim];
    for (i, &x) in values.iter().enumerate() {
        slices[(i / inner) % dim].push(x);
    }
    slices
}

#[cfg(test)]
mod tests;
