//! Cross-layer equalization (`algorithms = ["cle"]`) with high-bias absorption, after Nagel et
//! al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction", and as
//! AIMET's `aimet_onnx.cross_layer_equalization.equalize_model` does it (the SDK's `--algorithms
//! cle` runs the same algorithm).
//!
//! **Patterns.** A *chain* is a run of layers where each layer's output is read only by the
//! next one, directly or through one activation: `Relu`, or `Clip(0, max)` (Relu6; the
//! activations AIMET accepts are Relu and PRelu, after rewriting Relu6). Layers are Conv with
//! `group == 1`, depthwise Conv (`group == out channels`, one input channel per group, the
//! SDK's "DepthwiseConv") and Gemm with `trans_a == false`, whose `C` is absent or per output
//! channel. Any other op, a second reader or a graph output ends a chain. Each chain is cut
//! into *sets* exactly as AIMET's `convert_layer_group_to_cls_sets` does: `Conv, Conv` and
//! `Depthwise, Conv` pairs, `Conv, Depthwise, Conv` triples (a set's last layer starts the
//! next set), and `Gemm, Gemm` pairs (an extension: AIMET-ONNX scales only Conv). A set whose
//! weights or biases another node also reads is skipped, as AIMET does.
//!
//! **Scaling** (in set order, each set seeing the previous sets' results). With `r1[i]` the
//! abs-max of output channel `i` of the first layer's weight and `r2[i]` that of input channel
//! `i` of the second: `s[i] = r1[i] / sqrt(r1[i] * r2[i])`; `W1[i, ...] /= s[i]`, `b1[i] /=
//! s[i]`, `W2[:, i, ...] *= s[i]`, after which both ranges are `sqrt(r1[i] * r2[i])`. Triples:
//! `t = cbrt(r1 * r2 * r3)`, `s12 = r1 / t`, `s23 = t / r3`; `W1 /= s12`, `b1 /= s12`,
//! `W2 *= s12 / s23`, `b2 /= s23`, `W3[:, i] *= s23`, leaving all three ranges at `t`. A scale
//! that is not finite and positive (a dead channel: some range is 0) is 1, AIMET's
//! `nan_to_num` rule. Since `s > 0`, `relu(x / s) = relu(x) / s`: the float function is kept
//! exactly when the activations are Relu or none.
//!
//! **Relu6.** Every `Clip(0, max)` between the layers of an equalized set becomes `Relu` (the
//! SDK: "Any Relu6 activations will be automatically changed to Relu"); the clip at `max`
//! cannot follow a per-channel scale. This changes the float function wherever an activation
//! exceeded `max` -- AIMET accepts that, and so do we. Clips outside equalized sets are kept
//! (AIMET rewrites every Conv -> Clip(0, x) -> Conv, equalized or not).
//!
//! **High-bias absorption** (after all scaling, pair by pair in set order, as AIMET's
//! `HighBiasFold`). For a pair whose first layer had a BatchNorm folded into it
//! ([`super::bn_fold::FoldedBatchNorm`]) and where both layers have a bias: with the BN's
//! `beta` and `gamma` divided by the pair's scale, `c = max(0, beta - 3 |gamma|)` when a Relu
//! sits between the layers, `c = beta` when nothing does; `b1 -= c` and `b2 += W2 c`, where
//! `W2 c` sums each weight over its spatial taps (AIMET: `weight.sum(3).sum(2) @ c`). This is
//! exact only where the pre-activation stays above `c` (the BN statistics say: nearly always)
//! and where the second layer's window lies inside the input: a zero-padded border of a Conv
//! does not see the absorbed constant. AIMET ignores both, and so do we.
//!
//! A set any of whose changed tensors (weights, biases, outputs inside the set) carries an
//! encoding from the model itself (`Graph::model_encodings`, a QDQ model's) is skipped: those
//! encodings describe the values before equalization.
//!
//! Tensor names never change: weights and biases are rewritten in place (a shared one makes
//! the set skip), and a Clip that becomes Relu keeps its node, input and output.

use std::collections::{HashMap, HashSet, VecDeque};

use super::bn_fold::FoldedBatchNorms;
use crate::ir::{Graph, Op, TensorId};

/// What [`equalize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct CleCounts {
    /// Adjacent layer pairs rescaled (a triple counts as two).
    pub pairs_equalized: usize,
    /// `Clip(0, max)` nodes turned into Relu.
    pub relu6_rewritten: usize,
    /// Pairs where some of the first layer's bias was absorbed into the second layer's bias.
    pub biases_absorbed: usize,
}

/// Equalizes every set of layers found in `graph` (see the module docs); `folded_bns` holds
/// the BatchNorm statistics of layers BatchNorms were folded into, keyed by weight name.
pub(super) fn equalize(graph: &mut Graph, folded_bns: &FoldedBatchNorms) -> CleCounts {
    let mut counts = CleCounts::default();
    let sets = find_sets(graph);
    let mut absorptions = Vec::new();
    for set in &sets {
        let Some(scales) = scale_set(graph, set) else { continue };
        counts.pairs_equalized += set.layers.len() - 1;
        for &activation in set.activations.iter().flatten() {
            if let Some(node) = graph.nodes.get_mut(activation)
                && matches!(node.op, Op::Clip(_))
            {
                node.op = Op::Unary(crate::ops::Unary::Relu);
                counts.relu6_rewritten += 1;
            }
        }
        for ((pair, s), activation) in set.layers.windows(2).zip(scales).zip(&set.activations) {
            absorptions.push((pair[0].clone(), pair[1].clone(), s, activation.is_some()));
        }
    }
    for (first, second, s, relu) in absorptions {
        if absorb_high_bias(graph, folded_bns, &first, &second, &s, relu).is_some() {
            counts.biases_absorbed += 1;
        }
    }
    counts
}

/// How a layer's weight is laid out, in the terms CLE needs: which output and input channel
/// each weight element belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// `W` of shape `[out, inputs, inner]` (`inner` = product of the kernel dims), group 1.
    Conv { inputs: usize, inner: usize },
    /// `W` of shape `[channels, 1, inner]`: element `i` is output and input channel `i / inner`.
    Depthwise { inner: usize },
    /// Gemm `B` of shape `[n, k]` (`trans_b`) or `[k, n]`; `Y = alpha A B' + beta C`.
    Dense { trans_b: bool, k: usize, n: usize, alpha: f32, beta: f32 },
}

#[derive(Clone, Debug, PartialEq)]
struct Layer {
    node: usize,
    kind: Kind,
    weight: TensorId,
    bias: Option<TensorId>,
    outputs: usize,
}

impl Layer {
    fn inputs(&self) -> usize {
        match self.kind {
            Kind::Conv { inputs, .. } => inputs,
            Kind::Depthwise { .. } => self.outputs,
            Kind::Dense { k, .. } => k,
        }
    }

    /// The output channel of weight element `i`.
    fn out_of(&self, i: usize) -> usize {
        match self.kind {
            Kind::Conv { inputs, inner } => i / (inputs * inner).max(1),
            Kind::Depthwise { inner } => i / inner.max(1),
            Kind::Dense { trans_b: true, k, .. } => i / k.max(1),
            Kind::Dense { trans_b: false, n, .. } => i % n.max(1),
        }
    }

    /// The input channel of weight element `i`.
    fn in_of(&self, i: usize) -> usize {
        match self.kind {
            Kind::Conv { inputs, inner } => (i / inner.max(1)) % inputs.max(1),
            Kind::Depthwise { inner } => i / inner.max(1),
            Kind::Dense { trans_b: true, k, .. } => i % k.max(1),
            Kind::Dense { trans_b: false, n, .. } => i / n.max(1),
        }
    }

    /// The factor between the bias tensor and the layer's output (Gemm's `beta`).
    fn bias_gain(&self) -> f64 {
        match self.kind {
            Kind::Dense { beta, .. } => f64::from(beta),
            _ => 1.0,
        }
    }

    /// The factor between the weighted sum and the layer's output (Gemm's `alpha`).
    fn weight_gain(&self) -> f64 {
        match self.kind {
            Kind::Dense { alpha, .. } => f64::from(alpha),
            _ => 1.0,
        }
    }
}

/// Two or three layers scaled together, with the activation node (if any) after each layer
/// but the last.
#[derive(Clone, Debug)]
struct Set {
    layers: Vec<Layer>,
    activations: Vec<Option<usize>>,
}

/// Node `index` as a CLE layer, when it is one (see the module docs).
fn as_layer(graph: &Graph, index: usize) -> Option<Layer> {
    let node = graph.nodes.get(index)?;
    let (weight, bias) = match node.inputs.as_slice() {
        [x, w] if !graph.is_constant(*x) => (*w, None),
        [x, w, b] if !graph.is_constant(*x) => (*w, Some(*b)),
        _ => return None,
    };
    let w = graph.constant(weight)?;
    w.as_f32()?;
    let (kind, outputs) = match &node.op {
        Op::Conv(conv) => {
            let [out, per_group, kernel @ ..] = w.shape.as_slice() else { return None };
            let inner = kernel.iter().product::<usize>();
            if conv.group == 1 {
                (Kind::Conv { inputs: *per_group, inner }, *out)
            } else if conv.group == *out && *per_group == 1 {
                (Kind::Depthwise { inner }, *out)
            } else {
                return None;
            }
        }
        &Op::Gemm(crate::ops::Gemm { alpha, beta, trans_a: false, trans_b }) => {
            let &[r0, r1] = w.shape.as_slice() else { return None };
            let (n, k) = if trans_b { (r0, r1) } else { (r1, r0) };
            (Kind::Dense { trans_b, k, n, alpha, beta }, n)
        }
        _ => return None,
    };
    if outputs == 0 || w.is_empty() {
        return None;
    }
    if let Some(b) = bias {
        let b = graph.constant(b)?;
        // A Conv bias is `[out]`; a Gemm C must be per output channel (`[n]` or `[1, n]`) to be
        // scaled per channel.
        if b.as_f32()?.len() != outputs || b.shape.iter().rev().skip(1).any(|&d| d != 1) {
            return None;
        }
    }
    Some(Layer { node: index, kind, weight, bias, outputs })
}

/// The only node reading `tensor` (as its input 0, once), when `tensor` is not a graph output.
fn single_reader(graph: &Graph, consumers: &HashMap<TensorId, Vec<usize>>, tensor: TensorId) -> Option<usize> {
    if graph.outputs.contains(&tensor) {
        return None;
    }
    let &[reader] = consumers.get(&tensor)?.as_slice() else { return None };
    let inputs = &graph.nodes.get(reader)?.inputs;
    (inputs.first() == Some(&tensor) && inputs.iter().filter(|&&t| t == tensor).count() == 1).then_some(reader)
}

/// The layer that continues the chain after `layer`, and the activation between them.
fn next_in_chain(
    graph: &Graph,
    consumers: &HashMap<TensorId, Vec<usize>>,
    layers: &HashMap<usize, Layer>,
    layer: &Layer,
) -> Option<(usize, Option<usize>)> {
    let &[out] = graph.nodes.get(layer.node)?.outputs.as_slice() else { return None };
    let reader = single_reader(graph, consumers, out)?;
    if layers.contains_key(&reader) {
        return Some((reader, None));
    }
    let activation = graph.nodes.get(reader)?;
    let is_relu_like = match activation.op {
        Op::Unary(crate::ops::Unary::Relu) => true,
        Op::Clip(crate::ops::Clip { min, max }) => min == 0.0 && max > 0.0,
        _ => false,
    };
    let &[act_out] = activation.outputs.as_slice() else { return None };
    if !is_relu_like {
        return None;
    }
    let next = single_reader(graph, consumers, act_out)?;
    layers.contains_key(&next).then_some((next, Some(reader)))
}

/// Every set to equalize, in graph order.
fn find_sets(graph: &Graph) -> Vec<Set> {
    let consumers = graph.consumers();
    let layers: HashMap<usize, Layer> =
        (0..graph.nodes.len()).filter_map(|i| as_layer(graph, i).map(|layer| (i, layer))).collect();
    let mut next: HashMap<usize, (usize, Option<usize>)> = HashMap::new();
    for (&index, layer) in &layers {
        if let Some(link) = next_in_chain(graph, &consumers, &layers, layer) {
            next.insert(index, link);
        }
    }
    let continued: HashSet<usize> = next.values().map(|&(to, _)| to).collect();
    let mut sets = Vec::new();
    for head in (0..graph.nodes.len()).filter(|i| layers.contains_key(i) && !continued.contains(i)) {
        let mut chain = VecDeque::new();
        let mut current = Some((head, None));
        while let Some((index, activation_before)) = current {
            let Some(layer) = layers.get(&index) else { break };
            chain.push_back((layer.clone(), activation_before));
            current = next.get(&index).copied();
            if chain.len() > graph.nodes.len() {
                break; // a cycle cannot happen in a valid graph; stop rather than loop
            }
        }
        sets.extend(split_chain(chain));
    }
    sets
}

/// AIMET's `convert_layer_group_to_cls_sets`: Conv-Conv and Depthwise-Conv pairs and
/// Conv-Depthwise-Conv triples, a set's last layer opening the next set; plus Gemm-Gemm pairs.
/// Each chain entry carries the activation between it and the entry before.
fn split_chain(mut chain: VecDeque<(Layer, Option<usize>)>) -> Vec<Set> {
    #[derive(PartialEq)]
    enum Class {
        Conv,
        Depthwise,
        Dense,
    }
    let class = |layer: &Layer| match layer.kind {
        Kind::Conv { .. } => Class::Conv,
        Kind::Depthwise { .. } => Class::Depthwise,
        Kind::Dense { .. } => Class::Dense,
    };
    let mut sets = Vec::new();
    let Some(mut first) = chain.pop_front() else { return sets };
    while let Some(second) = chain.pop_front() {
        match (class(&first.0), class(&second.0)) {
            (Class::Conv, Class::Conv) | (Class::Depthwise, Class::Conv) | (Class::Dense, Class::Dense) => {
                sets.push(Set { layers: vec![first.0, second.0.clone()], activations: vec![second.1] });
                first = second;
            }
            (Class::Conv, Class::Depthwise) => match chain.front() {
                Some(third) if class(&third.0) == Class::Conv => {
                    let Some(third) = chain.pop_front() else { break };
                    sets.push(Set {
                        layers: vec![first.0, second.0, third.0.clone()],
                        activations: vec![second.1, third.1],
                    });
                    first = third;
                }
                _ => first = second,
            },
            _ => first = second,
        }
    }
    sets
}

fn values(graph: &Graph, id: TensorId) -> Option<Vec<f32>> {
    graph.constant(id)?.as_f32().map(<[f32]>::to_vec)
}

fn store(graph: &mut Graph, id: TensorId, data: Vec<f32>) {
    if let Some(target) = graph.constants.get_mut(&id).and_then(|t| t.as_f32_mut())
        && target.len() == data.len()
    {
        target.copy_from_slice(&data);
    }
}

/// Per-channel abs-max of `w`, channel `channel_of(i)` for element `i`, over `channels`.
fn channel_absmax(w: &[f32], channels: usize, channel_of: impl Fn(usize) -> usize) -> Vec<f64> {
    let mut max = vec![0f64; channels];
    for (i, &v) in w.iter().enumerate() {
        if let Some(m) = max.get_mut(channel_of(i)) {
            *m = m.max(f64::from(v).abs());
        }
    }
    max
}

/// A usable scale, else 1 (AIMET: `nan_to_num(nan=1, posinf=1)` and zeros to 1).
fn sanitize(s: f64) -> f64 {
    if s.is_finite() && s > 0.0 { s } else { 1.0 }
}

/// Multiplies element `i` of `w` by `factor[channel_of(i)]`, in f64.
fn scale_channels(w: &mut [f32], factor: &[f64], channel_of: impl Fn(usize) -> usize) {
    for (i, v) in w.iter_mut().enumerate() {
        let f = factor.get(channel_of(i)).copied().unwrap_or(1.0);
        *v = (f64::from(*v) * f) as f32;
    }
}

/// True when `id` is read by exactly one node input in the whole graph.
fn read_once(graph: &Graph, id: TensorId) -> bool {
    graph.nodes.iter().flat_map(|n| &n.inputs).filter(|&&t| t == id).count() == 1 && !graph.outputs.contains(&id)
}

/// The tensors whose values equalizing `set` changes: every weight and bias, and every
/// output inside the set (the last layer's output keeps its values).
fn changed_tensors<'a>(graph: &'a Graph, set: &'a Set) -> impl Iterator<Item = TensorId> + 'a {
    let params = set.layers.iter().flat_map(|l| std::iter::once(l.weight).chain(l.bias));
    let inner_nodes = set.layers.iter().rev().skip(1).map(|l| l.node).chain(set.activations.iter().flatten().copied());
    let outputs = inner_nodes.filter_map(|n| graph.nodes.get(n)).flat_map(|n| n.outputs.iter().copied());
    params.chain(outputs)
}

/// Scales one set in place; returns the scale of each pair, or `None` (graph untouched) when
/// the set does not qualify (shared parameters, channel counts that disagree).
fn scale_set(graph: &mut Graph, set: &Set) -> Option<Vec<Vec<f64>>> {
    let params = set.layers.iter().flat_map(|l| std::iter::once(l.weight).chain(l.bias));
    if !params.clone().all(|id| read_once(graph, id)) {
        return None;
    }
    if changed_tensors(graph, set).any(|id| graph.model_encodings.contains_key(graph.name(id))) {
        return None;
    }
    let channels = set.layers.first()?.outputs;
    for pair in set.layers.windows(2) {
        if pair[0].outputs != pair[1].inputs() || pair[1].inputs() != channels {
            return None;
        }
    }
    let mut weights: Vec<Vec<f32>> = set.layers.iter().map(|l| values(graph, l.weight)).collect::<Option<_>>()?;
    let mut biases: Vec<Option<Vec<f32>>> = set
        .layers
        .iter()
        .map(|l| match l.bias {
            None => Some(None),
            Some(b) => values(graph, b).map(Some),
        })
        .collect::<Option<_>>()?;
    let first = &set.layers[0];
    let last = set.layers.last()?;
    let r_first = channel_absmax(&weights[0], channels, |i| first.out_of(i));
    let r_last = channel_absmax(weights.last()?, channels, |i| last.in_of(i));
    let scales: Vec<Vec<f64>> = match set.layers.as_slice() {
        [_, _] => {
            let s = r_first.iter().zip(&r_last).map(|(&r1, &r2)| sanitize(r1 / (r1 * r2).sqrt())).collect();
            vec![s]
        }
        [_, middle, _] => {
            let r_mid = channel_absmax(&weights[1], channels, |i| middle.out_of(i));
            let (mut s12, mut s23) = (Vec::with_capacity(channels), Vec::with_capacity(channels));
            for c in 0..channels {
                let t = (r_first[c] * r_mid[c] * r_last[c]).cbrt();
                s12.push(sanitize(r_first[c] / t));
                s23.push(sanitize(t / r_last[c]));
            }
            vec![s12, s23]
        }
        _ => return None,
    };
    // Layer j's outputs are divided by scales[j]; its inputs multiplied by scales[j - 1].
    for (j, layer) in set.layers.iter().enumerate() {
        let w = &mut weights[j];
        if j > 0 {
            scale_channels(w, &scales[j - 1], |i| layer.in_of(i));
        }
        if let Some(s) = scales.get(j) {
            let inverse: Vec<f64> = s.iter().map(|v| 1.0 / v).collect();
            scale_channels(w, &inverse, |i| layer.out_of(i));
            if let Some(b) = biases[j].as_mut() {
                scale_channels(b, &inverse, |i| i);
            }
        }
    }
    for ((layer, w), b) in set.layers.iter().zip(weights).zip(biases) {
        store(graph, layer.weight, w);
        if let (Some(id), Some(b)) = (layer.bias, b) {
            store(graph, id, b);
        }
    }
    Some(scales)
}

/// High-bias absorption for one scaled pair (module docs); `None` when it does not apply or
/// would absorb nothing.
fn absorb_high_bias(
    graph: &mut Graph,
    folded_bns: &FoldedBatchNorms,
    first: &Layer,
    second: &Layer,
    s: &[f64],
    relu: bool,
) -> Option<()> {
    let stats = folded_bns.get(graph.name(first.weight))?;
    let (b1_id, b2_id) = (first.bias?, second.bias?);
    let channels = s.len();
    if stats.beta.len() != channels || stats.gamma.len() != channels {
        return None;
    }
    let (gain1, gain2) = (first.bias_gain(), second.bias_gain());
    if gain1 == 0.0 || gain2 == 0.0 {
        return None;
    }
    let absorbed: Vec<f64> = (0..channels)
        .map(|c| {
            let beta = stats.beta[c] / s[c];
            let gamma = stats.gamma[c] / s[c];
            if relu { (beta - 3.0 * gamma.abs()).max(0.0) } else { beta }
        })
        .collect();
    if absorbed.iter().all(|&c| c == 0.0) {
        return None; // nothing above 3 sigma: the biases stay bit for bit
    }
    let w2 = values(graph, second.weight)?;
    let mut correction = vec![0f64; second.outputs];
    for (i, &w) in w2.iter().enumerate() {
        if let (Some(out), Some(c)) = (correction.get_mut(second.out_of(i)), absorbed.get(second.in_of(i))) {
            *out += f64::from(w) * c;
        }
    }
    let mut b1 = values(graph, b1_id)?;
    let mut b2 = values(graph, b2_id)?;
    for (b, c) in b1.iter_mut().zip(&absorbed) {
        *b = (f64::from(*b) - c / gain1) as f32;
    }
    let factor = second.weight_gain() / gain2;
    for (b, c) in b2.iter_mut().zip(&correction) {
        *b = (f64::from(*b) + c * factor) as f32;
    }
    store(graph, b1_id, b1);
    store(graph, b2_id, b2);
    Some(())
}

#[cfg(test)]
#[path = "cle_tests.rs"]
mod tests;
