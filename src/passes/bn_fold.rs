//! BatchNormalization folding into the Conv or Gemm that feeds it.
//!
//! With `s[c] = gamma[c] / sqrt(var[c] + epsilon)` per output channel `c`:
//! - weights: `W'[c, ...] = W[c, ...] * s[c]` (Conv: `W` is `[M, C/group, k...]`, channel axis
//!   0; Gemm: channel axis 0 of `B` when `trans_b`, else axis 1);
//! - bias: `b'[c] = (b[c] - mean[c]) * s[c] + beta[c]`, with `b = 0` when the Conv has none.
//!   For Gemm `Y = alpha * A' * B' + beta_g * C`, the bias term is `beta_g * C` broadcast to
//!   `[rows, N]`: `C' = (beta_g * C - mean) * s + beta` (shape `[N]`, or `[rows, N]` when `C`
//!   varies along rows), and the folded Gemm gets `beta_g = 1`; `alpha` is unchanged.
//!
//! The fold applies when the BN's input is written by a single-output Conv/Gemm and read by
//! nothing else (and is not a graph output), and the weights, the bias (if any) and the four
//! BN parameters are float constants of matching sizes. The Conv/Gemm keeps its own output
//! tensor, which now holds the post-BN values, and the BN's readers are rewired to it: that is
//! what AIMET's `fold_all_batch_norms` does, so encodings exported by AIMET (keyed by the
//! Conv/Gemm output names) keep matching. Only when the BN output is a graph output does the
//! Conv/Gemm write it instead, so graph output names never change. A weight or bias read only
//! by this node is updated in place, keeping its name; a shared one is left alone and the
//! node reads a new constant named `<bn node name>.folded_weight` / `.folded_bias` (suffixed
//! `_1`, `_2`, ... if taken). A BN that does not qualify stays as it is.
//!
//! Each fold is recorded twice: for cross-layer equalization's high-bias absorption, which
//! needs the BN's `gamma` and `beta` after they are gone from the graph ([`FoldedBatchNorm`]),
//! and in the graph itself ([`crate::ir::BatchNormFold`]: which names went where, and the
//! per-channel weight factors), for encodings made for the unfolded model.

use std::collections::{BTreeMap, HashMap};

use crate::ir::{DType, Graph, Op, Tensor, TensorId, TensorInfo};

/// What a folded BatchNormalization said about the output of the layer it was folded into,
/// per output channel: the folded layer computes `gamma * x_hat + beta` with `x_hat` of zero
/// mean and unit variance over the training data, so its outputs are roughly distributed as
/// `N(beta, gamma^2)` (Nagel et al. 2019, section 4.1, use this for high-bias absorption).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct FoldedBatchNorm {
    pub gamma: Vec<f64>,
    pub beta: Vec<f64>,
}

/// Folded BatchNorm statistics keyed by the name of the weight tensor the Conv/Gemm reads
/// after the fold (a tensor name is unique and stays put; node indices do not).
pub(super) type FoldedBatchNorms = BTreeMap<String, FoldedBatchNorm>;

/// Folds every qualifying BatchNormalization, recording each in `record`; returns how many
/// were folded.
pub(super) fn fold_batchnorms(graph: &mut Graph, record: &mut FoldedBatchNorms) -> usize {
    // One fold at a time: a fold changes which constants are shared, and sharing decides
    // whether the next fold may update a weight in place.
    let mut folded = 0;
    while let Some(plan) = find_fold(graph) {
        apply(graph, plan, record);
        folded += 1;
    }
    folded
}

/// A fold ready to apply.
struct Fold {
    bn: usize,
    producer: usize,
    bn_name: String,
    bn_output: TensorId,
    weight: Tensor,
    bias: Tensor,
    /// The producer's op after folding (Gemm's `beta` becomes 1).
    op: Op,
    /// The BN's per-channel `(gamma, beta, mean, s)`, to record the fold.
    stats: Vec<[f64; 4]>,
}

fn find_fold(graph: &Graph) -> Option<Fold> {
    let producers = graph.producers();
    let consumers = graph.consumers();
    (0..graph.nodes.len()).find_map(|bn| plan_fold(graph, bn, &producers, &consumers))
}

fn plan_fold(
    graph: &Graph,
    bn: usize,
    producers: &HashMap<TensorId, usize>,
    consumers: &HashMap<TensorId, Vec<usize>>,
) -> Option<Fold> {
    let node = &graph.nodes[bn];
    let Op::BatchNormalization(crate::ops::BatchNormalization { epsilon }) = node.op else { return None };
    let [x, gamma, beta, mean, var] = node.inputs.as_slice() else { return None };
    let [bn_output] = node.outputs.as_slice() else { return None };
    if graph.outputs.contains(x) || consumers.get(x).map(Vec::as_slice) != Some(&[bn]) {
        return None;
    }
    let producer = *producers.get(x)?;
    let conv_or_gemm = &graph.nodes[producer];
    if conv_or_gemm.outputs.as_slice() != [*x] {
        return None;
    }
    let params = BnParams {
        gamma: float_constant(graph, *gamma)?,
        beta: float_constant(graph, *beta)?,
        mean: float_constant(graph, *mean)?,
        var: float_constant(graph, *var)?,
        epsilon: f64::from(epsilon),
    };
    let x_shape = &graph.info(*x).shape;
    let (weight, bias, op) = match &conv_or_gemm.op {
        Op::Conv(_) => {
            let (w, b) = match conv_or_gemm.inputs.as_slice() {
                [_, w] => (*w, None),
                [_, w, b] => (*w, Some(*b)),
                _ => return None,
            };
            let (weight, bias) = fold_conv(graph, w, b, &params, x_shape)?;
            (weight, bias, conv_or_gemm.op.clone())
        }
        &Op::Gemm(crate::ops::Gemm { alpha, beta: beta_g, trans_a, trans_b }) => {
            let (b, c) = match conv_or_gemm.inputs.as_slice() {
                [_, b] => (*b, None),
                [_, b, c] => (*b, Some(*c)),
                _ => return None,
            };
            let (weight, bias) = fold_gemm(graph, b, c, beta_g, trans_b, &params, x_shape)?;
            (weight, bias, Op::Gemm(crate::ops::Gemm { alpha, beta: 1.0, trans_a, trans_b }))
        }
        _ => return None,
    };
    let channels = weight_channels(&op, &weight)?;
    let scales = params.scales(channels)?;
    let stats = (0..channels)
        .map(|c| {
            let at = |v: &[f32]| v.get(c).copied().map_or(0.0, f64::from);
            [at(params.gamma), at(params.beta), at(params.mean), scales.get(c).copied().unwrap_or(1.0)]
        })
        .collect();
    Some(Fold { bn, producer, bn_name: node.name.clone(), bn_output: *bn_output, weight, bias, op, stats })
}

/// Output channels of a folded Conv (`W` axis 0) or Gemm (`B` axis 0 when `trans_b`, else 1).
fn weight_channels(op: &Op, weight: &Tensor) -> Option<usize> {
    match op {
        Op::Conv(_) => weight.shape.first().copied(),
        Op::Gemm(crate::ops::Gemm { trans_b: true, .. }) => weight.shape.first().copied(),
        Op::Gemm(crate::ops::Gemm { trans_b: false, .. }) => weight.shape.get(1).copied(),
        _ => None,
    }
}

struct BnParams<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
    mean: &'a [f32],
    var: &'a [f32],
    epsilon: f64,
}

impl BnParams<'_> {
    /// `s[c] = gamma[c] / sqrt(var[c] + epsilon)` in f64, when there are `channels` of each
    /// parameter and every `var + epsilon` is positive (otherwise the BN stays, computing
    /// whatever it computed before).
    fn scales(&self, channels: usize) -> Option<Vec<f64>> {
        let sizes = [self.gamma.len(), self.beta.len(), self.mean.len(), self.var.len()];
        if sizes.iter().any(|&n| n != channels) {
            return None;
        }
        self.gamma
            .iter()
            .zip(self.var)
            .map(|(&g, &v)| {
                let denominator = f64::from(v) + self.epsilon;
                (denominator > 0.0).then(|| f64::from(g) / denominator.sqrt())
            })
            .collect()
    }

    /// `(b - mean[c]) * s[c] + beta[c]`.
    fn bias(&self, channel: usize, b: f64, scales: &[f64]) -> f32 {
        let mean = self.mean.get(channel).copied().map_or(0.0, f64::from);
        let beta = self.beta.get(channel).copied().map_or(0.0, f64::from);
        let s = scales.get(channel).copied().unwrap_or(1.0);
        ((b - mean) * s + beta) as f32
    }
}

fn float_constant(graph: &Graph, id: TensorId) -> Option<&[f32]> {
    graph.constant(id)?.as_f32()
}

fn fold_conv(
    graph: &Graph,
    w: TensorId,
    b: Option<TensorId>,
    params: &BnParams,
    x_shape: &[usize],
) -> Option<(Tensor, Tensor)> {
    let weight = graph.constant(w)?;
    let w_data = weight.as_f32()?;
    let channels = *weight.shape.first()?;
    if channels == 0 || x_shape.get(1) != Some(&channels) {
        return None;
    }
    let scales = params.scales(channels)?;
    let per_channel = w_data.len() / channels;
    let new_w = w_data.iter().enumerate().map(|(i, &v)| (f64::from(v) * scales[i / per_channel]) as f32).collect();
    let old_bias = match b {
        Some(b) => {
            let data = float_constant(graph, b)?;
            if data.len() != channels {
                return None;
            }
            data.to_vec()
        }
        None => vec![0.0; channels],
    };
    let new_b = old_bias.iter().enumerate().map(|(c, &v)| params.bias(c, f64::from(v), &scales)).collect();
    Some((Tensor::from_f32(weight.shape.clone(), new_w), Tensor::from_f32(vec![channels], new_b)))
}

fn fold_gemm(
    graph: &Graph,
    b: TensorId,
    c: Option<TensorId>,
    beta_g: f32,
    trans_b: bool,
    params: &BnParams,
    x_shape: &[usize],
) -> Option<(Tensor, Tensor)> {
    let weight = graph.constant(b)?;
    let b_data = weight.as_f32()?;
    let &[r0, r1] = weight.shape.as_slice() else { return None };
    let channels = if trans_b { r0 } else { r1 };
    let &[rows, n] = x_shape else { return None };
    if n != channels || channels == 0 {
        return None;
    }
    let scales = params.scales(channels)?;
    let channel_of = |i: usize| if trans_b { i / r1 } else { i % r1 };
    let new_w = b_data.iter().enumerate().map(|(i, &v)| (f64::from(v) * scales[channel_of(i)]) as f32).collect();

    // C broadcast (unidirectionally, as ONNX says) to [rows, channels], seen as [c0, c1].
    let (c_data, c0, c1) = match c {
        Some(c) => {
            let tensor = graph.constant(c)?;
            let (c0, c1) = match tensor.shape.as_slice() {
                [] => (1, 1),
                &[d1] => (1, d1),
                &[d0, d1] => (d0, d1),
                _ => return None,
            };
            if !(c0 == 1 || c0 == rows) || !(c1 == 1 || c1 == channels) {
                return None;
            }
            (tensor.as_f32()?.to_vec(), c0, c1)
        }
        None => (vec![0.0], 1, 1),
    };
    let out_rows = if c0 == 1 { 1 } else { rows };
    let mut new_c = Vec::with_capacity(out_rows * channels);
    for r in 0..out_rows {
        for ch in 0..channels {
            let index = (if c0 == 1 { 0 } else { r }) * c1 + if c1 == 1 { 0 } else { ch };
            let value = f64::from(*c_data.get(index)?) * f64::from(beta_g);
            new_c.push(params.bias(ch, value, &scales));
        }
    }
    let c_shape = if out_rows == 1 { vec![channels] } else { vec![rows, channels] };
    Some((Tensor::from_f32(weight.shape.clone(), new_w), Tensor::from_f32(c_shape, new_c)))
}

fn apply(graph: &mut Graph, fold: Fold, record: &mut FoldedBatchNorms) {
    let Fold { bn, producer, bn_name, bn_output, weight, bias, op, stats } = fold;
    let name_at = |graph: &Graph, position: usize| {
        graph.nodes[producer].inputs.get(position).map(|&id| graph.name(id).to_string())
    };
    let (weight_before, bias_before) = (name_at(graph, 1).unwrap_or_default(), name_at(graph, 2));
    let layer_output = graph.name(graph.nodes[producer].outputs[0]).to_string();
    let parameters = graph.nodes[bn].inputs[1..].iter().map(|&id| graph.name(id).to_string()).collect();
    place_constant(graph, producer, 1, weight, &format!("{bn_name}.folded_weight"));
    place_constant(graph, producer, 2, bias, &format!("{bn_name}.folded_bias"));
    if let Some(&w) = graph.nodes[producer].inputs.get(1) {
        record_fold(record, graph.name(w), &stats);
    }
    let node = &mut graph.nodes[producer];
    node.op = op;
    if graph.outputs.contains(&bn_output) {
        node.outputs = vec![bn_output];
    } else {
        let folded = node.outputs[0];
        for reader in &mut graph.nodes {
            for input in reader.inputs.iter_mut().filter(|i| **i == bn_output) {
                *input = folded;
            }
        }
    }
    let holds = graph.name(graph.nodes[producer].outputs[0]).to_string();
    graph.batchnorm_folds.push(crate::ir::BatchNormFold {
        node: bn_name,
        bn_output: graph.name(bn_output).to_string(),
        layer_output,
        holds,
        weight: (weight_before, name_at(graph, 1).unwrap_or_default()),
        bias: (bias_before, name_at(graph, 2).unwrap_or_default()),
        scales: stats.iter().map(|&[_, _, _, s]| s as f32).collect(),
        parameters,
    });
    graph.nodes.remove(bn);
}

/// Records a fold under the layer's weight name. A layer that already had a BN folded into it
/// (Conv -> BN -> BN) gets the composition: the second BN maps the first one's output
/// `N(beta1, gamma1^2)` to `N((beta1 - mean2) * s2 + beta2, (gamma1 * s2)^2)`.
fn record_fold(record: &mut FoldedBatchNorms, weight_name: &str, stats: &[[f64; 4]]) {
    let (gamma, beta) = match record.get(weight_name) {
        Some(old) if old.gamma.len() == stats.len() && old.beta.len() == stats.len() => stats
            .iter()
            .zip(old.gamma.iter().zip(&old.beta))
            .map(|(&[_, beta2, mean2, s2], (&g1, &b1))| (g1 * s2, (b1 - mean2) * s2 + beta2))
            .unzip(),
        _ => stats.iter().map(|&[gamma, beta, _, _]| (gamma, beta)).unzip(),
    };
    record.insert(weight_name.to_string(), FoldedBatchNorm { gamma, beta });
}

/// Makes input `position` of node `node` read `value`: in place when the current constant
/// there has the same shape and no other reader, else as a new constant named `name`.
fn place_constant(graph: &mut Graph, node: usize, position: usize, value: Tensor, name: &str) {
    let current = graph.nodes[node].inputs.get(position).copied();
    if let Some(id) = current {
        let readers = graph.consumers();
        let only_this_node = readers.get(&id).map(Vec::as_slice) == Some(&[node]);
        let count = graph.nodes[node].inputs.iter().filter(|&&i| i == id).count();
        if only_this_node && count == 1 && graph.is_constant(id) && graph.info(id).shape == value.shape {
            graph.constants.insert(id, value);
            return;
        }
    }
    let id =
        graph.add_tensor(TensorInfo { name: unique_name(graph, name), dtype: DType::F32, shape: value.shape.clone() });
    graph.constants.insert(id, value);
    let inputs = &mut graph.nodes[node].inputs;
    match inputs.get_mut(position) {
        Some(slot) => *slot = id,
        None => inputs.push(id),
    }
}

/// `base`, or `base_1`, `base_2`, ... : the first name no tensor has.
fn unique_name(graph: &Graph, base: &str) -> String {
    let names = graph.names();
    if !names.contains_key(base) {
        return base.to_string();
    }
    (1..)
        .map(|k| format!("{base}_{k}"))
        .find(|candidate| !names.contains_key(candidate.as_str()))
        .unwrap_or_else(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::test_graph::{GraphBuilder, id_of, node_names};
    use crate::ir::{Conv, Window};

    fn conv_1x1() -> Op {
        Op::Conv(Conv {
            window: Window { kernel: vec![1, 1], strides: vec![1, 1], pads: vec![0; 4], dilations: vec![1, 1] },
            group: 1,
        })
    }

    fn values(g: &Graph, name: &str) -> Vec<f32> {
        g.constant(id_of(g, name)).and_then(Tensor::as_f32).expect("float constant").to_vec()
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{got:?} vs {want:?}");
        }
    }

    /// Conv(x, W, b) -> BN -> relu. Two output channels, one input channel, 1x1 kernel.
    /// epsilon = 1, var = [3, 0] -> sqrt(var + eps) = [2, 1]; gamma = [1, 2] -> s = [0.5, 2].
    fn conv_bn(with_bias: bool) -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 1, 2, 2]);
        let w = b.constant("conv.weight", &[2, 1, 1, 1], vec![2.0, -1.0]);
        let mut inputs = vec![x, w];
        if with_bias {
            inputs.push(b.constant("conv.bias", &[2], vec![1.5, 0.0]));
        }
        let c = b.node("conv", conv_1x1(), &inputs, "conv_out", &[1, 2, 2, 2]);
        let gamma = b.constant("bn.gamma", &[2], vec![1.0, 2.0]);
        let beta = b.constant("bn.beta", &[2], vec![0.1, -0.2]);
        let mean = b.constant("bn.mean", &[2], vec![0.5, 1.0]);
        let var = b.constant("bn.var", &[2], vec![3.0, 0.0]);
        let y = b.node(
            "bn",
            Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 1.0 }),
            &[c, gamma, beta, mean, var],
            "bn_out",
            &[1, 2, 2, 2],
        );
        let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[y], "relu_out", &[1, 2, 2, 2]);
        b.output(r);
        b.finish()
    }

    #[test]
    fn conv_bn_folds_by_hand_computation() {
        let mut g = conv_bn(true);
        assert_eq!(fold_batchnorms(&mut g, &mut FoldedBatchNorms::new()), 1);
        g.compact();
        g.validate().unwrap();
        assert_eq!(node_names(&g), ["conv", "relu"]);
        // W' = W * s = [2 * 0.5, -1 * 2] = [1, -2].
        assert_close(&values(&g, "conv.weight"), &[1.0, -2.0]);
        // b' = (b - mean) * s + beta = [(1.5 - 0.5) * 0.5 + 0.1, (0 - 1) * 2 - 0.2] = [0.6, -2.2].
        assert_close(&values(&g, "conv.bias"), &[0.6, -2.2]);
        // The conv keeps its output name (as AIMET's fold does); the BN's output is gone.
        assert_eq!(g.name(g.nodes[0].outputs[0]), "conv_out");
        assert_eq!(g.nodes[1].inputs, g.nodes[0].outputs, "the relu reads the folded conv");
        assert!(!g.names().contains_key("bn_out"));
        assert!(!g.names().contains_key("bn.gamma"), "unused BN parameters are dropped");
    }

    #[test]
    fn conv_without_bias_gets_a_new_named_bias() {
        let mut g = conv_bn(false);
        assert_eq!(fold_batchnorms(&mut g, &mut FoldedBatchNorms::new()), 1);
        g.compact();
        g.validate().unwrap();
        // b = 0: b' = [(0 - 0.5) * 0.5 + 0.1, (0 - 1) * 2 - 0.2] = [-0.15, -2.2].
        assert_close(&values(&g, "bn.folded_bias"), &[-0.15, -2.2]);
        assert_eq!(g.nodes[0].inputs[2], id_of(&g, "bn.folded_bias"));
    }

    #[test]
    fn shared_weight_is_not_modified() {
        let mut g = conv_bn(true);
        // A second conv reads the same weight and bias.
        let x = g.inputs[0];
        let w = id_of(&g, "conv.weight");
        let bias = id_of(&g, "conv.bias");
        let other = g.add_tensor(TensorInfo { name: "other".into(), dtype: DType::F32, shape: vec![1, 2, 2, 2] });
        g.nodes.insert(
            1,
            crate::ir::Node { name: "conv2".into(), op: conv_1x1(), inputs: vec![x, w, bias], outputs: vec![other] },
        );
        g.outputs.push(other);
        g.validate().unwrap();
        assert_eq!(fold_batchnorms(&mut g, &mut FoldedBatchNorms::new()), 1);
        g.compact();
        g.validate().unwrap();
        assert_eq!(values(&g, "conv.weight"), [2.0, -1.0]);
        assert_eq!(values(&g, "conv.bias"), [1.5, 0.0]);
        assert_close(&values(&g, "bn.folded_weight"), &[1.0, -2.0]);
        assert_close(&values(&g, "bn.folded_bias"), &[0.6, -2.2]);
    }

    #[test]
    fn new_constant_names_are_unique() {
        let mut g = conv_bn(false);
        g.add_tensor(TensorInfo { name: "bn.folded_bias".into(), dtype: DType::F32, shape: vec![1] });
        assert_eq!(fold_batchnorms(&mut g, &mut FoldedBatchNorms::new()), 1);
        assert!(g.names().contains_key("bn.folded_bias_1"));
    }

    #[test]
    fn bn_whose_input_has_another_reader_stays() {
        let mut g = conv_bn(true);
        let conv_out = id_of(&g, "conv_out");
        let extra = g.add_tensor(TensorInfo { name: "extra".into(), dtype: DType::F32, shape: vec![1, 2, 2, 2] });
        g.nodes.push(crate::ir::Node {
            name: "sig".into(),
            op: Op::Unary(crate::ops::Unary::Sigmoid),
            inputs: vec![conv_out],
            outputs: vec![extra],
        });
        g.outputs.push(extra);
        assert_eq!(fold_batchnorms(&mut g, &mut FoldedBatchNorms::new()), 0);
    }

    #[test]
    fn standalone_bn_stays() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 1, 2]);
        let p: Vec<TensorId> = ["g", "b", "m", "v"].iter().map(|n| b.constant(n, &[1], vec![1.0])).collect();
        let y = b.node(
            "bn",
            Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 1e-5 }),
            &[x, p[0], p[1], p[2], p[3]],
            "y",
            &[1, 1, 2],
        );
        b.output(y);
        let mut g = b.finish();
        assert_eq!(fold_batchnorms(&mut g, &mut FoldedBatchNorms::new()), 0);
    }

    /// Gemm(A, B, C; alpha = 2, beta = 0.5) -> BN over 3 channels; the BN output is the graph
    /// output. epsilon = 1, var = [0, 3, 8] -> sqrt = [1, 2, 3]; gamma = [2, 1, 6] -> s = [2, 0.5, 2].
    fn gemm_bn(trans_b: bool) -> Graph {
        let mut b = GraphBuilder::new();
        let a = b.input("a", &[1, 2]);
        // B^T (channel-major) = [[1, 2], [3, 4], [5, 6]].
        let (shape, data) = if trans_b {
            ([3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        } else {
            ([2, 3], vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0])
        };
        let w = b.constant("fc.weight", &shape, data);
        let c = b.constant("fc.bias", &[3], vec![1.0, 2.0, 4.0]);
        let op = Op::Gemm(crate::ops::Gemm { alpha: 2.0, beta: 0.5, trans_a: false, trans_b });
        let x = b.node("fc", op, &[a, w, c], "fc_out", &[1, 3]);
        let gamma = b.constant("bn.gamma", &[3], vec![2.0, 1.0, 6.0]);
        let beta = b.constant("bn.beta", &[3], vec![0.0, 1.0, -1.0]);
        let mean = b.constant("bn.mean", &[3], vec![1.0, 0.0, 2.0]);
        let var = b.constant("bn.var", &[3], vec![0.0, 3.0, 8.0]);
        let y = b.node(
            "bn",
            Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 1.0 }),
            &[x, gamma, beta, mean, var],
            "logits",
            &[1, 3],
        );
        b.output(y);
        b.finish()
    }

    /// Hand computation: B'^T = [[2, 4], [1.5, 2], [10, 12]]; beta * C = [0.5, 1, 2];
    /// C' = (beta C - mean) * s + beta_bn = [-1, 1.5, -1]. Check for A = [1, 1]:
    /// before: 2 * [3, 7, 11] + [0.5, 1, 2] = [6.5, 15, 24] -> BN -> [11, 8.5, 43];
    /// after: 2 * [6, 3.5, 22] + [-1, 1.5, -1] = [11, 8.5, 43].
    #[test]
    fn gemm_bn_folds_respecting_trans_b_alpha_and_beta() {
        for trans_b in [true, false] {
            let mut g = gemm_bn(trans_b);
            assert_eq!(fold_batchnorms(&mut g, &mut FoldedBatchNorms::new()), 1);
            g.compact();
            g.validate().unwrap();
            let want_w: &[f32] =
                if trans_b { &[2.0, 4.0, 1.5, 2.0, 10.0, 12.0] } else { &[2.0, 1.5, 10.0, 4.0, 2.0, 12.0] };
            assert_close(&values(&g, "fc.weight"), want_w);
            assert_close(&values(&g, "fc.bias"), &[-1.0, 1.5, -1.0]);
            assert_eq!(g.nodes[0].op, Op::Gemm(crate::ops::Gemm { alpha: 2.0, beta: 1.0, trans_a: false, trans_b }));
            assert_eq!(g.name(g.outputs[0]), "logits");
            assert_eq!(g.nodes[0].outputs, g.outputs);
        }
    }

    #[test]
    fn gemm_without_c_gets_one() {
        let mut g = gemm_bn(true);
        g.nodes[0].inputs.truncate(2);
        assert_eq!(fold_batchnorms(&mut g, &mut FoldedBatchNorms::new()), 1);
        // C = 0: C' = (0 - mean) * s + beta_bn = [-2, 1, -5].
        assert_close(&values(&g, "bn.folded_bias"), &[-2.0, 1.0, -5.0]);
    }
}
