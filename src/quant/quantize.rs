//! The quantize stage: an encoding for every float tensor of the graph, from calibration
//! statistics, settings, overrides and the backend's rules ([`QuantPolicy`]); and the convert
//! ops mixed precision needs.
//!
//! Rules, tensor by tensor (an override always wins for its own tensor):
//! - **Activations** (graph inputs and op outputs of dtype f32): by the op's rule
//!   (`[ops.X] output_encoding` in `rules/`): `calibrated` (the default) per tensor from the
//!   statistics with `act_bitwidth`/`act_schema`/`act_calibration`; `pass-through` reuses the
//!   input's encoding (Reshape, Transpose, MaxPool, ... as the SDK does); `fixed` takes the
//!   declared range whatever the data (Sigmoid `[0, 1]`, Tanh `[-1, 1]` symmetric, Softmax);
//!   `float` keeps the output in float at the backend's float bitwidth.
//! - **Weights**: Conv input 1 is per output channel (axis 0) when `per_channel` and the backend
//!   allows it, and then always symmetric with `offset = -2^(bw-1)` (the SDK requires it), else
//!   per tensor with `param_schema`. Gemm input 1 and constant MatMul operands are per tensor, or
//!   per row (per output column: Gemm axis 1, or 0 with `transB`; MatMul the last axis) with
//!   `per_row` (the SDK's `--use_per_row_quantization`). All at `weight_bitwidth`, range from
//!   `param_calibration` over the values (`adjusted`: widened so zero is exact).
//! - **Biases** (Conv/Gemm input 2): with `bias_bitwidth = 32`, QNN's int32 bias, `scale =
//!   in_scale * w_scale` (per channel when the weight is), offset 0 signed (`-2^31` here); if the
//!   input or weight has no integer per-tensor/per-channel encoding (a float override), or a
//!   bias value would overflow int32 at that scale (16-bit activations times 16-bit weights),
//!   the bias gets a symmetric 32-bit encoding of its own range. With `bias_bitwidth = 8`: per tensor
//!   from its values with `param_schema`.
//! - **Other constants** read by ops (a Mul by a constant, a Concat with a constant, ...):
//!   per tensor at `weight_bitwidth` with `param_schema`. BatchNormalization statistics (inputs
//!   1-4) get none and stay float: BatchNorm is expected to be folded before quantization, and
//!   an 8-bit variance would be wrong anyway; a target keeping its BatchNorms
//!   (`batchnorm_folding = false`) quantizes gamma per tensor, as AIMET's QuantSim does.
//! - **Relu squashing** (the SDK's default; `--disable_relu_squashing` turns it off there): a
//!   Relu, or a Clip with a non-negative lower bound, whose input is an op output read by
//!   nothing else lends its output encoding to that input, so the producer and the activation
//!   share one grid, as AIMET QuantSim's Conv+Relu / Gemm+Relu supergroups do. An override of
//!   the producer's output, or a float producer output, still wins.
//! - **Restricted steps** (`restrict_quantization_steps`): the inputs of every MatMul (and its
//!   constant operands) take the symmetric encoding on the given signed grid, when the grid fits
//!   their bitwidth (the SDK requires it for 16-bit MatMul).
//! - **Mixed precision** (SDK rules): when the output, weight or bias of a Conv, Gemm or MatMul
//!   has a float override, the other two of that op become float at the same bitwidth unless
//!   they have overrides of their own; every op is then all-float or all-integer: a float op's
//!   other constants are float too, and where a tensor of one precision feeds an op of the
//!   other, a [`Op::Convert(crate::ops::Convert)`] node is inserted, whose output carries the consumer's
//!   representation (an integer encoding calibrated on the same statistics, or float).
//! - **Float fallback** (`float_fallback = true`, the SDK's `--floatFallback`): no calibration
//!   statistics; activations get encodings only from overrides (the file and the model's own),
//!   carried forward through the ops the rules let propagate (pass-through ops, and those with
//!   `propagate = true`: Relu, Concat), and backward through pass-through ops; whatever is still
//!   without an encoding stays float, and its op with it.
//! - **Calibration** (`act_calibration`, `param_calibration`): `min-max` and `percentile` here;
//!   `mse`, `sqnr` and `entropy` search the tensor's histogram ([`crate::quant::calibration`];
//!   parameters are binned on the same grid first). Per-channel weights search each channel
//!   with the symmetric schema they are encoded with.

use std::collections::{BTreeMap, BTreeSet};

use crate::ir::{DType, Graph, Node, Op, Tensor, TensorId, TensorInfo};
use crate::ops::InputRole;
use crate::quant::aimet::{
    OverrideEncoding, OverrideError, Overrides, ResolvedOverrides, block_axis, channel_axis, resolve_overrides,
};
use crate::quant::apply::ChannelMismatch;
use crate::quant::calibration::{Search, search_range};
use crate::quant::encoding::{Encoding, QuantizedGraph, TensorEncoding};
use crate::quant::policy::{OpQuantization, QuantPolicy};
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

/// [`quantize_with`] under the standard HTP policy ([`QuantPolicy::default`]).
pub fn quantize(
    graph: &Graph,
    stats: &CalibrationStats,
    settings: &QuantSettings,
    overrides: Option<&Overrides>,
) -> Result<QuantizedGraph, Vec<QuantError>> {
    quantize_with(graph, Some(stats), settings, overrides, &QuantPolicy::default())
}

/// Computes the encoding of every float tensor of `graph` and inserts the convert ops mixed
/// precision needs (see the module docs). `stats` is `None` only under `float_fallback`. All
/// problems are reported, not just the first.
pub fn quantize_with(
    graph: &Graph,
    stats: Option<&CalibrationStats>,
    settings: &QuantSettings,
    overrides: Option<&Overrides>,
    policy: &QuantPolicy,
) -> Result<QuantizedGraph, Vec<QuantError>> {
    let mut errors = check_settings(settings);
    if stats.is_none() && !settings.float_fallback {
        errors.push(QuantError::Settings("no calibration statistics (and float_fallback is off)".into()));
    }
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
    let empty = CalibrationStats::default();
    let mut q = Quantizer {
        graph,
        stats: stats.unwrap_or(&empty),
        settings,
        policy,
        forced_float: coupled_floats(graph, &resolved),
        resolved,
        encodings: BTreeMap::new(),
        wanted: BTreeMap::new(),
        scale_only: BTreeSet::new(),
        errors,
    };
    q.activations();
    if settings.float_fallback {
        q.propagate();
    }
    q.squash_relus();
    if settings.float_fallback {
        q.keep_the_rest_float();
    }
    q.restrict_matmul_inputs();
    let float_nodes = q.settle_precision();
    q.params(&float_nodes);
    let graph = q.insert_converts(&float_nodes);
    if q.errors.is_empty() { Ok(QuantizedGraph { graph, encodings: q.encodings }) } else { Err(q.errors) }
}

/// Whether quantizing `float` left its graph as it was (no Convert inserted): then a store
/// need not keep the quantized graph beside the float one. [`quantize_with`] changes a graph
/// only by adding Convert nodes and their output tensors, so equal counts mean equal graphs
/// (checked in full in debug builds, which the tests run).
pub fn keeps_float_graph(q: &QuantizedGraph, float: &Graph) -> bool {
    let same = q.graph.nodes.len() == float.nodes.len() && q.graph.tensors.len() == float.tensors.len();
    debug_assert!(!same || q.graph == *float, "quantize changed the graph without adding a Convert");
    same
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
    if s.act_calibration == CalibrationMethod::Adjusted {
        errors.push(QuantError::Settings("the `adjusted` quantizer is for weights only".into()));
    }
    if s.param_calibration == CalibrationMethod::Adjusted && s.weight_bitwidth != 8 {
        errors.push(QuantError::Settings(format!(
            "the `adjusted` quantizer is for 8-bit weights (weight_bitwidth = {})",
            s.weight_bitwidth
        )));
    }
    if let Some((lo, hi)) = s.restrict_steps
        && !(lo < 0 && hi > 0)
    {
        errors.push(QuantError::Settings(format!("restrict_quantization_steps [{lo}, {hi}] must contain zero")));
    }
    errors
}

/// The SDK's partial-override rule for Conv/Gemm/MatMul: one float member (output, weight,
/// bias) makes the members without an override float too.
fn coupled_floats(graph: &Graph, resolved: &ResolvedOverrides) -> BTreeMap<TensorId, u32> {
    let mut forced = BTreeMap::new();
    for node in &graph.nodes {
        if !matches!(node.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul(crate::ops::MatMul)) {
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

/// Names of the float tensors nodes read or write that are not float32 (float16, bfloat16,
/// float64): quantization encodes float32 tensors only, so these run in their own type.
pub fn other_float_tensors(graph: &Graph) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for node in &graph.nodes {
        for &id in node.inputs.iter().chain(&node.outputs) {
            let info = graph.info(id);
            if info.dtype.is_compute_float() && info.dtype != DType::F32 && seen.insert(id) {
                names.push(info.name.clone());
            }
        }
    }
    names
}

/// How a constant input is quantized by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParamRole {
    /// A weight; per channel along this axis when `Some`.
    Weight(Option<usize>),
    Bias,
    /// Left in float (BatchNorm statistics and other `FloatParam` inputs).
    Float,
    /// A kept BatchNorm's `gamma` (`batchnorm_folding = false`): per tensor at the weight
    /// bitwidth, asymmetric below 16 bits, as AIMET's QuantSim quantizes normalization weights
    /// (its exception rules for BatchNormalization and LayerNormalization; mean and var stay
    /// float per its default config, and beta float as every bias there).
    NormScale,
    /// Another op's bias (LayerNorm's beta, ...): on a grid of its own at the weight bitwidth
    /// (the backends' bias bitwidths).
    OwnBias,
    /// A constant where the op takes activations (an Add's or Mul's constant operand, a
    /// Gather of constant indices folded at import): its values join the
    /// activation stream, so it is quantized like one, at the activation bitwidth and schema.
    /// At W8A16 an 8-bit constant would put 8-bit error into 16-bit activations (BERT's
    /// position embeddings added to the token embeddings: 42.6 dB where onnxruntime, which keeps
    /// that Gather, has 46.3).
    StaticActivation,
}

/// Magnitude from which a value is a masking sentinel (float32.lowest, `-1e9`-style masks are
/// left to calibration: they fit a 16-bit grid badly but do not break it).
const MASK_MAGNITUDE: f32 = 1e30;

/// Whether calibration saw masking sentinels in a tensor next to ordinary values: infinities
/// or values of float32's extreme magnitude. (A tensor with no finite value at all is an
/// error, reported where its range is needed.)
fn is_masking(stats: &TensorStats) -> bool {
    stats.count > 0 && (stats.nonfinite > 0 || stats.min <= -MASK_MAGNITUDE || stats.max >= MASK_MAGNITUDE)
}

fn param_role(
    graph: &Graph,
    node: &Node,
    position: usize,
    settings: &QuantSettings,
    policy: &QuantPolicy,
) -> ParamRole {
    let rank = node.inputs.get(position).map_or(0, |&t| graph.info(t).shape.len());
    // Gemm and MatMul weights run per row (`per_row`, the SDK's `--use_per_row_quantization`),
    // the others per channel (`per_channel`); the backend must allow it for the op.
    let wanted = match node.op {
        Op::Gemm(_) | Op::MatMul(_) => settings.per_row,
        _ => settings.per_channel,
    };
    let per_axis = wanted && policy.allows_per_channel(&node.op);
    if matches!(node.op, Op::BatchNormalization(_)) && position == 1 && !settings.batchnorm_folding {
        return ParamRole::NormScale;
    }
    match node.op.input_role(position, rank) {
        InputRole::Weight { channel_axis } => ParamRole::Weight(channel_axis.filter(|_| per_axis)),
        // The int32 `input scale × weight scale` grid fits a bias added to the accumulator of
        // a product of the op's input and weight; other ops' offsets (LayerNorm's beta, ...)
        // are quantized on a grid of their own.
        InputRole::Bias if matches!(node.op, Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_)) => ParamRole::Bias,
        InputRole::Bias => ParamRole::OwnBias,
        InputRole::Activation => ParamRole::StaticActivation,
        // BatchNorm statistics, a recurrent op's B and peepholes, Clip bounds: float32, as
        // compile's legality allows for these roles.
        InputRole::FloatParam | InputRole::Index => ParamRole::Float,
    }
}

struct Quantizer<'a> {
    graph: &'a Graph,
    stats: &'a CalibrationStats,
    settings: &'a QuantSettings,
    policy: &'a QuantPolicy,
    resolved: ResolvedOverrides,
    forced_float: BTreeMap<TensorId, u32>,
    encodings: BTreeMap<TensorId, TensorEncoding>,
    /// Integer encodings asked for tensors that ended up float because their producer runs in
    /// float; an integer consumer reads them through a convert op with this encoding.
    wanted: BTreeMap<TensorId, TensorEncoding>,
    /// Activations read only as scales of quantized compute ops: never encoded.
    scale_only: BTreeSet<TensorId>,
    errors: Vec<QuantError>,
}

impl Quantizer<'_> {
    fn name(&self, id: TensorId) -> String {
        self.graph.name(id).to_string()
    }

    fn is_float_activation(&self, id: TensorId) -> bool {
        !self.graph.is_constant(id) && self.graph.tensors.get(id.index()).is_some_and(|t| t.dtype == DType::F32)
    }

    fn is_float_encoding(&self, id: TensorId) -> bool {
        matches!(self.encodings.get(&id), Some(TensorEncoding::Float { .. }) | None)
    }

    fn activations(&mut self) {
        // Tensors read only as scales of quantized compute ops (and not graph outputs) are
        // parameters: no encoding, they stay float32.
        let mut scales = BTreeSet::new();
        let mut other = BTreeSet::new();
        for node in &self.graph.nodes {
            for (position, &id) in node.inputs.iter().enumerate() {
                if node.op.reads_quant_scale(position) {
                    scales.insert(id)
                } else {
                    other.insert(id)
                };
            }
        }
        other.extend(self.graph.outputs.iter().copied());
        for id in scales.difference(&other) {
            self.scale_only.insert(*id);
        }
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
        if !self.is_float_activation(id) || self.encodings.contains_key(&id) || self.scale_only.contains(&id) {
            return;
        }
        let (bw, schema) = (self.settings.act_bitwidth, self.settings.act_schema);
        let fallback = self.settings.float_fallback;
        let enc = match self.resolved.get(id).cloned() {
            Some(OverrideEncoding::Float { bitwidth }) => Some(TensorEncoding::Float { bitwidth }),
            Some(OverrideEncoding::Int(channels)) => channels.into_iter().next().map(TensorEncoding::PerTensor),
            // Without calibration data a "calibrate this tensor" override cannot be honoured.
            Some(OverrideEncoding::Calibrated { .. }) if fallback => None,
            Some(OverrideEncoding::Calibrated { bitwidth, symmetric }) => {
                self.encoding_from_stats(id, bitwidth, schema_of(symmetric, schema))
            }
            // Rejected by the override check; nothing to do here.
            Some(OverrideEncoding::PerBlock { .. }) => None,
            None => match self.forced_float.get(&id) {
                Some(&bitwidth) => Some(TensorEncoding::Float { bitwidth }),
                // An attention mask (`Where(mask, 0, float32.lowest)`, or -inf), the scores it
                // is added to and the op reading them (Softmax): a grid spanning 3.4e38 would
                // give every score one code, and a clamped one would unmask; in float (the
                // backend's float bitwidth, where float32.lowest becomes -inf) the masked
                // positions stay masked and the scores exact.
                None if self.stats.get(id).is_some_and(is_masking) => {
                    Some(TensorEncoding::Float { bitwidth: self.policy.float_bitwidth })
                }
                // The reader's output keeps the encoding its rule gives (Softmax's fixed [0, 1])
                // for integer consumers, which read it through a convert.
                None if producer
                    .is_some_and(|p| p.inputs.iter().any(|&i| self.stats.get(i).is_some_and(is_masking))) =>
                {
                    if let Some(enc @ TensorEncoding::PerTensor(_)) = self.by_rule(id, producer, bw, schema) {
                        self.wanted.insert(id, enc);
                    }
                    Some(TensorEncoding::Float { bitwidth: self.policy.float_bitwidth })
                }
                None => self.by_rule(id, producer, bw, schema),
            },
        };
        if let Some(enc) = enc {
            self.encodings.insert(id, enc);
        }
    }

    /// The encoding the producer's op rule gives an output without an override.
    fn by_rule(&mut self, id: TensorId, producer: Option<&Node>, bw: u32, schema: Schema) -> Option<TensorEncoding> {
        let fallback = self.settings.float_fallback;
        let Some(node) = producer else {
            return if fallback { None } else { self.encoding_from_stats(id, bw, schema) };
        };
        match self.policy.op(&node.op).clone() {
            OpQuantization::Float => Some(TensorEncoding::Float { bitwidth: self.policy.float_bitwidth }),
            OpQuantization::FixedRange { min, max } => {
                let encoding = if min < 0.0 && min == -max {
                    Encoding::symmetric(min, max, bw)
                } else {
                    Encoding::from_range(min, max, bw, Schema::Asymmetric)
                };
                Some(TensorEncoding::PerTensor(encoding))
            }
            // Data movement out of a constant (Gather from an embedding table): the output's
            // grid spans the whole table, not the rows calibration happened to read, and the
            // table is quantized on that same grid (`params`), so the move stays exact.
            OpQuantization::PassThrough
                if let Some(table) = node.inputs.first().and_then(|&i| self.graph.constant(i))
                    && let Some(values) = table.as_f32()
                    && !values.is_empty() =>
            {
                let (lo, hi) = values.iter().fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                Some(TensorEncoding::PerTensor(Encoding::from_range(lo, hi, bw, schema)))
            }
            OpQuantization::PassThrough => match node.inputs.first().and_then(|i| self.encodings.get(i)) {
                Some(enc) => Some(enc.clone()),
                None if fallback => None,
                None => self.encoding_from_stats(id, bw, schema),
            },
            OpQuantization::Calibrated if fallback => None,
            OpQuantization::Calibrated => self.encoding_from_stats(id, bw, schema),
        }
    }

    /// Float fallback: carries integer encodings through the ops the rules let propagate, to a
    /// fixpoint.
    fn propagate(&mut self) {
        let producers = self.graph.producers();
        loop {
            let mut changed = false;
            for node in &self.graph.nodes {
                if !self.policy.propagates(&node.op) {
                    continue;
                }
                let inputs: Vec<TensorId> =
                    node.inputs.iter().copied().filter(|&i| self.is_float_activation(i)).collect();
                let Some(&output) = node.outputs.first() else { continue };
                let known: Vec<Encoding> = inputs
                    .iter()
                    .filter_map(|i| match self.encodings.get(i) {
                        Some(TensorEncoding::PerTensor(e)) => Some(e.clone()),
                        _ => None,
                    })
                    .collect();
                // Forward: every data input known -> the output (Concat: their union).
                if !self.encodings.contains_key(&output)
                    && !inputs.is_empty()
                    && known.len() == inputs.len()
                    && let Some(enc) = union_encoding(&known)
                {
                    self.encodings.insert(output, TensorEncoding::PerTensor(enc));
                    changed = true;
                }
                // Backward, through pass-through ops only (the output holds the input's values).
                if *self.policy.op(&node.op) == OpQuantization::PassThrough
                    && let (Some(&input), Some(TensorEncoding::PerTensor(enc))) =
                        (inputs.first(), self.encodings.get(&output).cloned())
                    && !self.encodings.contains_key(&input)
                    && self.resolved.get(input).is_none()
                    && (producers.contains_key(&input) || self.graph.inputs.contains(&input))
                {
                    self.encodings.insert(input, TensorEncoding::PerTensor(enc));
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Float fallback, after propagation and Relu squashing: whatever still has no encoding
    /// stays float.
    fn keep_the_rest_float(&mut self) {
        let bitwidth = self.policy.float_bitwidth;
        let missing: Vec<TensorId> = self
            .graph
            .inputs
            .iter()
            .chain(self.graph.nodes.iter().flat_map(|n| &n.outputs))
            .copied()
            .filter(|&id| self.is_float_activation(id) && !self.encodings.contains_key(&id))
            .collect();
        for id in missing {
            self.encodings.insert(id, TensorEncoding::Float { bitwidth });
        }
    }

    /// Gives the input of every squashable Relu/Clip the activation's own encoding (see the
    /// module docs); runs before the params so that biases use the squashed input scales.
    fn squash_relus(&mut self) {
        let consumers = self.graph.consumers();
        let producers = self.graph.producers();
        for node in &self.graph.nodes {
            let squashable = self.policy.squashes(&node.op);
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

    /// `restrict_quantization_steps`: the activation inputs of every MatMul move to the
    /// restricted symmetric grid (module docs).
    fn restrict_matmul_inputs(&mut self) {
        let Some(steps) = self.settings.restrict_steps else { return };
        for node in &self.graph.nodes {
            if node.op != Op::MatMul(crate::ops::MatMul) {
                continue;
            }
            for &input in &node.inputs {
                if self.resolved.get(input).is_some() {
                    continue;
                }
                if let Some(TensorEncoding::PerTensor(e)) = self.encodings.get(&input)
                    && let Some(restricted) = Encoding::restricted(e.min, e.max, e.bitwidth, steps)
                {
                    self.encodings.insert(input, TensorEncoding::PerTensor(restricted));
                }
            }
        }
    }

    /// Decides which nodes run in float: those whose rule says so, whose output is float, or
    /// whose constant inputs were made float. Under float fallback an integer node reading a
    /// float tensor it cannot get an encoding for (no statistics) becomes float too, to a
    /// fixpoint; its output's integer encoding is kept in `wanted` for integer consumers.
    fn settle_precision(&mut self) -> BTreeSet<usize> {
        let mut float_nodes = BTreeSet::new();
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let output_float = node
                .outputs
                .first()
                .is_some_and(|o| matches!(self.encodings.get(o), Some(TensorEncoding::Float { .. })));
            let param_float = node.inputs.iter().any(|&t| {
                self.graph.is_constant(t)
                    && (matches!(self.resolved.get(t), Some(OverrideEncoding::Float { .. }))
                        || self.forced_float.contains_key(&t))
            });
            if output_float || param_float || *self.policy.op(&node.op) == OpQuantization::Float {
                float_nodes.insert(i);
            }
        }
        if !self.settings.float_fallback {
            return float_nodes;
        }
        loop {
            let mut changed = false;
            for (i, node) in self.graph.nodes.iter().enumerate() {
                if float_nodes.contains(&i) {
                    continue;
                }
                let reads_unencodable = node.inputs.iter().any(|&t| {
                    self.is_float_activation(t) && self.is_float_encoding(t) && !self.wanted.contains_key(&t)
                });
                if reads_unencodable {
                    float_nodes.insert(i);
                    for &out in &node.outputs {
                        if let Some(enc @ TensorEncoding::PerTensor(_)) = self.encodings.get(&out).cloned() {
                            self.wanted.insert(out, enc);
                            self.encodings.insert(out, TensorEncoding::Float { bitwidth: self.policy.float_bitwidth });
                        }
                    }
                    changed = true;
                }
            }
            if !changed {
                return float_nodes;
            }
        }
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

    fn params(&mut self, float_nodes: &BTreeSet<usize>) {
        for (i, node) in self.graph.nodes.iter().enumerate() {
            for (position, &id) in node.inputs.iter().enumerate() {
                let Some(t) = self.graph.constant(id) else { continue };
                if t.dtype() != DType::F32 || self.encodings.contains_key(&id) {
                    continue;
                }
                // The table a pass-through op moves data out of shares its output's grid.
                if position == 0
                    && *self.policy.op(&node.op) == OpQuantization::PassThrough
                    && self.resolved.get(id).is_none()
                    && let Some(enc @ TensorEncoding::PerTensor(_)) =
                        node.outputs.first().and_then(|o| self.encodings.get(o)).cloned()
                {
                    self.encodings.insert(id, enc);
                    continue;
                }
                let role = param_role(self.graph, node, position, self.settings, self.policy);
                let enc = if float_nodes.contains(&i) && self.resolved.get(id).is_none() {
                    // An all-float op: its constants follow its output's float bitwidth.
                    (role != ParamRole::Float)
                        .then(|| TensorEncoding::Float { bitwidth: self.node_float_bitwidth(node) })
                } else {
                    self.param(node, id, t, role)
                };
                if let Some(enc) = enc {
                    self.encodings.insert(id, enc);
                }
            }
        }
    }

    /// The float bitwidth a float node runs at: its output's, else the backend's.
    fn node_float_bitwidth(&self, node: &Node) -> u32 {
        match node.outputs.first().and_then(|o| self.encodings.get(o)) {
            Some(TensorEncoding::Float { bitwidth }) => *bitwidth,
            _ => self.policy.float_bitwidth,
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
                    ParamRole::Weight(axis) => self.weight(node, t, axis, bitwidth, schema),
                    _ => self.weight(node, t, None, bitwidth, schema),
                }
            }
            Some(OverrideEncoding::PerBlock(b)) => Some(TensorEncoding::PerBlock {
                axis: channel_axis(self.graph, id),
                // The override check accepted the entry only where the weight has this axis.
                block_axis: block_axis(self.graph, id)?,
                block_size: b.block_size as usize,
                blocks: b.blocks,
            }),
            None => {
                if let Some(&bitwidth) = self.forced_float.get(&id) {
                    return Some(TensorEncoding::Float { bitwidth });
                }
                match role {
                    ParamRole::Float => None,
                    ParamRole::Weight(axis) => self.weight(node, t, axis, weight_bw, schema),
                    ParamRole::Bias if self.settings.bias_bitwidth == 32 => self.int32_bias(node, t),
                    ParamRole::Bias => self.weight(node, t, None, self.settings.bias_bitwidth, schema),
                    ParamRole::OwnBias => self.weight(node, t, None, weight_bw, schema),
                    ParamRole::NormScale => {
                        let schema = if weight_bw >= 16 { Schema::Symmetric } else { Schema::Asymmetric };
                        self.weight(node, t, None, weight_bw, schema)
                    }
                    ParamRole::StaticActivation => {
                        self.weight(node, t, None, self.settings.act_bitwidth, self.settings.act_schema)
                    }
                }
            }
        }
    }

    /// A parameter's encoding from its own values: per channel (always symmetric) along
    /// `axis`, or per tensor with `schema` (on the restricted grid for a MatMul operand when
    /// `restrict_quantization_steps` is set and fits).
    fn weight(
        &self,
        node: &Node,
        t: &Tensor,
        axis: Option<usize>,
        bitwidth: u32,
        schema: Schema,
    ) -> Option<TensorEncoding> {
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
                let restricted = match (self.settings.restrict_steps, &node.op) {
                    (Some(steps), Op::MatMul(crate::ops::MatMul)) => Encoding::restricted(lo, hi, bitwidth, steps),
                    _ => None,
                };
                let encoding = match restricted {
                    Some(e) => e,
                    None if self.settings.param_calibration == CalibrationMethod::Adjusted
                        && schema == Schema::Asymmetric =>
                    {
                        Encoding::adjusted(lo, hi, bitwidth)
                    }
                    None => Encoding::from_range(lo, hi, bitwidth, schema),
                };
                Some(TensorEncoding::PerTensor(encoding))
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
            // AIMET's bias scale for a per-block weight: the input scale times the channel's
            // largest block scale (blocks channel-major: output channels on axis 0).
            Some(TensorEncoding::PerBlock { axis: 0, blocks, .. }) => {
                let rows = t.shape.first().copied().filter(|&n| n > 0 && blocks.len().is_multiple_of(n));
                rows.map(|n| {
                    blocks.chunks(blocks.len() / n).map(|c| c.iter().map(|e| e.scale).fold(0.0, f32::max)).collect()
                })
            }
            _ => None,
        };
        let values = t.as_f32()?;
        // `in_scale * w_scale` can be so fine (16-bit activations and weights: ~1e-9) that a
        // bias overflows int32; then, rather than saturate it, the bias takes a 32-bit grid of
        // its own range.
        let fits = |scale: f32, bias: f32| scale > 0.0 && ((bias as f64) / (scale as f64)).abs() < i32::MAX as f64;
        match (in_scale, w_scales) {
            (Some(s), Some(w)) if w.len() == 1 && values.iter().all(|&b| fits(s * w[0], b)) => {
                Some(TensorEncoding::PerTensor(Encoding::int32_with_scale(s * w[0])))
            }
            (Some(s), Some(w))
                if t.shape.first() == Some(&w.len())
                    && t.shape.len() == 1
                    && w.iter().zip(values).all(|(&ws, &b)| fits(s * ws, b)) =>
            {
                let channels = w.iter().map(|&ws| Encoding::int32_with_scale(s * ws)).collect();
                Some(TensorEncoding::PerChannel { axis: 0, channels })
            }
            _ => {
                let (lo, hi) = min_max(values);
                Some(TensorEncoding::PerTensor(Encoding::symmetric(lo, hi, 32)))
            }
        }
    }

    /// The graph with a [`Op::Convert(crate::ops::Convert)`] before every op input whose precision differs from the
    /// op's (module docs). One convert per (tensor, representation), shared by its readers.
    fn insert_converts(&mut self, float_nodes: &BTreeSet<usize>) -> Graph {
        let mut graph = self.graph.clone();
        let old_nodes = std::mem::take(&mut graph.nodes);
        let mut made: BTreeMap<(TensorId, String), TensorId> = BTreeMap::new();
        let mut used_names: BTreeSet<String> = graph.tensors.iter().map(|t| t.name.clone()).collect();
        used_names.extend(old_nodes.iter().map(|n| n.name.clone()));
        for (i, mut node) in old_nodes.into_iter().enumerate() {
            let node_float = float_nodes.contains(&i);
            let float_bw = self.node_float_bitwidth(&node);
            for (position, input) in node.inputs.iter_mut().enumerate() {
                let t = *input;
                if !self.is_float_activation(t)
                    || (node.op.reads_quant_scale(position) && !self.encodings.contains_key(&t))
                {
                    continue;
                }
                let target = match (node_float, self.encodings.get(&t).cloned()) {
                    (true, Some(TensorEncoding::Float { bitwidth })) if bitwidth == float_bw => continue,
                    (true, None) if float_bw == 32 => continue,
                    (true, _) => TensorEncoding::Float { bitwidth: float_bw },
                    (false, Some(TensorEncoding::Float { .. })) => match self.integer_view(t) {
                        Some(enc) => enc,
                        None => continue,
                    },
                    // No encoding on an integer op's input: an error was already reported.
                    (false, _) => continue,
                };
                let key = (t, format!("{target:?}"));
                let converted = match made.get(&key) {
                    Some(&id) => id,
                    None => {
                        let base = format!("{}.convert_{}", graph.name(t), repr_suffix(&target));
                        let name = unique_name(&mut used_names, base);
                        let info = TensorInfo { name: name.clone(), ..graph.info(t).clone() };
                        let id = graph.add_tensor(info);
                        graph.nodes.push(Node {
                            name,
                            op: Op::Convert(crate::ops::Convert),
                            inputs: vec![t],
                            outputs: vec![id],
                        });
                        self.encodings.insert(id, target);
                        made.insert(key, id);
                        id
                    }
                };
                *input = converted;
            }
            graph.nodes.push(node);
        }
        graph
    }

    /// The integer encoding an integer op reads a float tensor with: the one its float producer
    /// was asked for, else one calibrated on the tensor's statistics (`None` without them).
    fn integer_view(&mut self, t: TensorId) -> Option<TensorEncoding> {
        if let Some(enc) = self.wanted.get(&t) {
            return Some(enc.clone());
        }
        self.stats.get(t)?;
        self.encoding_from_stats(t, self.settings.act_bitwidth, self.settings.act_schema)
    }
}

/// The smallest encoding covering every one of `encodings` (identical ones give themselves).
fn union_encoding(encodings: &[Encoding]) -> Option<Encoding> {
    let first = encodings.first()?;
    if encodings.iter().all(|e| e == first) {
        return Some(first.clone());
    }
    let lo = encodings.iter().map(|e| e.min).fold(f32::INFINITY, f32::min);
    let hi = encodings.iter().map(|e| e.max).fold(f32::NEG_INFINITY, f32::max);
    let bitwidth = encodings.iter().map(|e| e.bitwidth).max()?;
    let schema = if encodings.iter().all(|e| e.symmetric) { Schema::Symmetric } else { Schema::Asymmetric };
    Some(Encoding::from_range(lo, hi, bitwidth, schema))
}

fn repr_suffix(enc: &TensorEncoding) -> String {
    match enc {
        TensorEncoding::Float { bitwidth } => format!("fp{bitwidth}"),
        TensorEncoding::PerTensor(e) => format!("q{}", e.bitwidth),
        TensorEncoding::PerChannel { channels: encodings, .. } | TensorEncoding::PerBlock { blocks: encodings, .. } => {
            format!("q{}", encodings.first().map_or(0, |e| e.bitwidth))
        }
    }
}

fn unique_name(used: &mut BTreeSet<String>, base: String) -> String {
    let mut name = base.clone();
    let mut n = 1;
    while used.contains(&name) {
        n += 1;
        name = format!("{base}_{n}");
    }
    used.insert(name.clone());
    name
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

/// Op outputs squashed into the Relu/Clip that reads them (see the module docs): the tensor
/// is quantized on the activation's grid, i.e. the target computes the fused op, so its golden
/// value is the activation's output (the vendor tools show no row for the pre-activation
/// tensor at all). Recognized by the encoding: the only reader is a Relu or Clip whose output
/// has the very same per-tensor encoding, for a Relu one from 0 (a grid reaching below 0
/// keeps the producer's negative values, which the Relu then clears, as the executor runs it:
/// AIMET's QuantSim on a model with its BatchNorms kept gives a BatchNorm output and the Relu
/// after it one such grid). Maps the tensor to the activation output's name.
pub fn squashed_producers(q: &QuantizedGraph) -> std::collections::BTreeMap<String, String> {
    let consumers = q.graph.consumers();
    let mut squashed = std::collections::BTreeMap::new();
    for node in &q.graph.nodes {
        if !matches!(node.op, Op::Unary(crate::ops::Unary::Relu) | Op::Clip(_)) {
            continue;
        }
        let (Some(&input), Some(&output)) = (node.inputs.first(), node.outputs.first()) else { continue };
        let sole_reader = consumers.get(&input).is_some_and(|readers| readers.len() == 1);
        let is_relu = matches!(node.op, Op::Unary(crate::ops::Unary::Relu));
        let same = match (q.encodings.get(&input), q.encodings.get(&output)) {
            (Some(a @ TensorEncoding::PerTensor(e)), Some(b)) => a == b && !(is_relu && e.min < 0.0),
            _ => false,
        };
        if sole_reader && same {
            squashed.insert(q.graph.name(input).to_string(), q.graph.name(output).to_string());
        }
    }
    squashed
}

#[cfg(test)]
mod tests;
