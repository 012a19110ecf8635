//! Tests of cross-layer equalization: hand-computed pairs, AIMET's `equalize_model` on a small
//! model (tests/data/cle, made by scripts/python/cle_reference.py), the float function, and
//! the measured benefit for per-tensor W8A8 on tests/data/models/cle_digits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::super::bn_fold::{FoldedBatchNorm, FoldedBatchNorms};
use super::*;
use crate::ir::test_graph::{GraphBuilder, id_of};
use crate::ir::{Conv, Tensor, Window};
use crate::passes::{OptimizeOptions, OptimizeReport, optimize, optimize_with};
use crate::runtime::interpret;

const CLE: OptimizeOptions = OptimizeOptions { cle: true, keep_batchnorms: false };

fn conv_op(kernel: usize, pad: usize, group: usize) -> Op {
    Op::Conv(Conv {
        window: Window { kernel: vec![kernel, kernel], strides: vec![1, 1], pads: vec![pad; 4], dilations: vec![1, 1] },
        group,
    })
}

fn values_of(g: &Graph, name: &str) -> Vec<f32> {
    g.constant(id_of(g, name)).and_then(Tensor::as_f32).expect("float constant").to_vec()
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    let scale = want.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs())).max(1e-30);
    for (g, w) in got.iter().zip(want) {
        let err = (f64::from(*g) - f64::from(*w)).abs() / scale;
        assert!(err <= tolerance, "{got:?} vs {want:?} (relative error {err:e})");
    }
}

fn run(graph: &Graph, inputs: &[Tensor]) -> Vec<f32> {
    let out = interpret(graph, inputs, &mut |_, _| {}).expect("the interpreter runs the graph");
    out.iter().flat_map(Tensor::to_f32_vec).collect()
}

/// Deterministic values in `[lo, hi)` (64-bit LCG).
fn lcg_values(seed: &mut u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (*seed >> 40) as f32 / (1u64 << 24) as f32 * (hi - lo)
        })
        .collect()
}

/// x[1,1,1,1] -> conv1 (1x1, W1 = [4, 1], b1 = [2, -1]) -> Clip(0, 6) -> conv2 (1x1,
/// W2 = [1, 4], b2 = [0.5]) -> y.
fn two_convs() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 1, 1, 1]);
    let w1 = b.constant("conv1.weight", &[2, 1, 1, 1], vec![4.0, 1.0]);
    let b1 = b.constant("conv1.bias", &[2], vec![2.0, -1.0]);
    let h = b.node("conv1", conv_op(1, 0, 1), &[x, w1, b1], "h", &[1, 2, 1, 1]);
    let a = b.node("relu6", Op::Clip(crate::ops::Clip { min: 0.0, max: 6.0 }), &[h], "a", &[1, 2, 1, 1]);
    let w2 = b.constant("conv2.weight", &[1, 2, 1, 1], vec![1.0, 4.0]);
    let b2 = b.constant("conv2.bias", &[1], vec![0.5]);
    let y = b.node("conv2", conv_op(1, 0, 1), &[a, w2, b2], "y", &[1, 1, 1, 1]);
    b.output(y);
    b.finish()
}

/// By hand: r1 = [4, 1] (conv1 output channels), r2 = [1, 4] (conv2 input channels);
/// s = r1 / sqrt(r1 r2) = [4 / 2, 1 / 2] = [2, 0.5]. W1 / s = [2, 2], b1 / s = [1, -2],
/// W2 * s = [2, 2]; b2 stays. Both ranges become sqrt(r1 r2) = [2, 2].
#[test]
fn two_convs_equalize_as_computed_by_hand() {
    let original = two_convs();
    let (g, report) = optimize_with(original.clone(), &CLE).unwrap();
    assert_eq!(values_of(&g, "conv1.weight"), [2.0, 2.0]);
    assert_eq!(values_of(&g, "conv1.bias"), [1.0, -2.0]);
    assert_eq!(values_of(&g, "conv2.weight"), [2.0, 2.0]);
    assert_eq!(values_of(&g, "conv2.bias"), [0.5]);
    assert_eq!(g.nodes[1].op, Op::Unary(crate::ops::Unary::Relu), "the Relu6 between equalized convs becomes Relu");
    assert_eq!((report.cle_pairs_equalized, report.cle_relu6_rewritten, report.cle_biases_absorbed), (1, 1, 0));
    // Names, node order and wiring are untouched.
    assert_eq!(g.tensors, original.tensors);
    let wiring =
        |g: &Graph| g.nodes.iter().map(|n| (n.name.clone(), n.inputs.clone(), n.outputs.clone())).collect::<Vec<_>>();
    assert_eq!(wiring(&g), wiring(&original));

    // x = 0.5: h = [4, -0.5] -> [4, 0] -> y = 4 + 0.5 = 4.5; after: h = [2, -1] -> [2, 0] ->
    // y = 4 + 0.5. Below 6 the function is the same.
    let x = Tensor::from_f32(vec![1, 1, 1, 1], vec![0.5]);
    assert_eq!(run(&original, std::slice::from_ref(&x)), [4.5]);
    assert_eq!(run(&g, &[x]), [4.5]);
    // x = 2: h = [10, 1]; Relu6 clips 10 to 6 -> y = 6 + 4 + 0.5 = 10.5. After CLE the Relu
    // does not clip: h = [5, 2] -> y = 10 + 4 + 0.5 = 14.5, what the model gives with Relu in
    // place of Relu6 (the documented cost of the rewrite).
    let x = Tensor::from_f32(vec![1, 1, 1, 1], vec![2.0]);
    assert_eq!(run(&original, std::slice::from_ref(&x)), [10.5]);
    assert_eq!(run(&g, &[x]), [14.5]);
}

#[test]
fn without_cle_nothing_changes_and_optimize_is_optimize_with_default() {
    let (plain, report) = optimize(two_convs()).unwrap();
    assert_eq!(plain, two_convs());
    assert_eq!(report, OptimizeReport::default());
    let (with_default, _) = optimize_with(two_convs(), &OptimizeOptions::default()).unwrap();
    assert_eq!(with_default, plain);
}

/// A dead output channel (all-zero weights) has r1 = 0: s = 0 / 0 would be NaN, so it is 1
/// (AIMET's rule) and the channel's weights stay as they were, with no NaN anywhere.
#[test]
fn dead_channel_gets_scale_one() {
    let mut g = two_convs();
    let w1 = id_of(&g, "conv1.weight");
    g.constants.insert(w1, Tensor::from_f32(vec![2, 1, 1, 1], vec![4.0, 0.0]));
    let (g, report) = optimize_with(g, &CLE).unwrap();
    assert_eq!(report.cle_pairs_equalized, 1);
    // Channel 0 as before (s = 2); channel 1: s = 1.
    assert_eq!(values_of(&g, "conv1.weight"), [2.0, 0.0]);
    assert_eq!(values_of(&g, "conv1.bias"), [1.0, -1.0]);
    assert_eq!(values_of(&g, "conv2.weight"), [2.0, 4.0]);
}

#[test]
fn shared_weight_or_second_reader_leaves_the_pair_alone() {
    // conv2's weight also read by a third conv.
    let mut g = two_convs();
    let (x, w2) = (g.inputs[0], id_of(&g, "conv2.weight"));
    let w1 = id_of(&g, "conv1.weight");
    let out =
        g.add_tensor(crate::ir::TensorInfo { name: "z".into(), dtype: crate::ir::DType::F32, shape: vec![1, 1, 1, 1] });
    let doubled =
        g.add_tensor(crate::ir::TensorInfo { name: "d".into(), dtype: crate::ir::DType::F32, shape: vec![1, 2, 1, 1] });
    g.nodes.push(crate::ir::Node {
        name: "other1".into(),
        op: conv_op(1, 0, 1),
        inputs: vec![x, w1],
        outputs: vec![doubled],
    });
    g.nodes.push(crate::ir::Node {
        name: "other2".into(),
        op: conv_op(1, 0, 1),
        inputs: vec![doubled, w2],
        outputs: vec![out],
    });
    g.outputs.push(out);
    let (after, report) = optimize_with(g.clone(), &CLE).unwrap();
    assert_eq!(report.cle_pairs_equalized, 0);
    assert_eq!(after.constants, g.constants);
    assert!(matches!(after.nodes[1].op, Op::Clip(_)), "a Clip outside an equalized set stays");

    // The activation is also a graph output: the chain ends there.
    let mut g = two_convs();
    let a = id_of(&g, "a");
    g.outputs.push(a);
    let (_, report) = optimize_with(g, &CLE).unwrap();
    assert_eq!(report.cle_pairs_equalized, 0);
}

/// A model encoding (from a QDQ model) on a tensor CLE would change keeps the set as it is.
#[test]
fn tensors_with_model_encodings_are_not_equalized() {
    for name in ["conv1.weight", "conv2.bias", "h", "a"] {
        let mut g = two_convs();
        let enc = crate::ir::ModelEncoding {
            scales: vec![0.5],
            zero_points: vec![0],
            axis: None,
            bitwidth: 8,
            signed: false,
        };
        g.model_encodings.insert(name.into(), enc);
        let (after, report) = optimize_with(g.clone(), &CLE).unwrap();
        assert_eq!(report.cle_pairs_equalized, 0, "{name}");
        assert_eq!(after, g, "{name}");
    }
    // The last layer's output keeps its values: an encoding there does not stop CLE.
    let mut g = two_convs();
    let enc =
        crate::ir::ModelEncoding { scales: vec![0.5], zero_points: vec![0], axis: None, bitwidth: 8, signed: false };
    g.model_encodings.insert("y".into(), enc);
    let (_, report) = optimize_with(g, &CLE).unwrap();
    assert_eq!(report.cle_pairs_equalized, 1);
}

/// A Clip whose lower bound is not 0, or another activation, ends the chain.
#[test]
fn other_activations_end_the_chain() {
    for op in [Op::Clip(crate::ops::Clip { min: -1.0, max: 6.0 }), Op::Unary(crate::ops::Unary::Sigmoid)] {
        let mut g = two_convs();
        g.nodes[1].op = op.clone();
        let (after, report) = optimize_with(g.clone(), &CLE).unwrap();
        assert_eq!(report.cle_pairs_equalized, 0, "{op:?}");
        assert_eq!(after, g);
    }
}

/// x[1,2] -> fc1 Gemm(trans_b, B1 = [[4, 0], [0, 1]], C1 = [2, -1]) -> Relu -> fc2 Gemm(
/// alpha 2, beta 0.5, B2 [2, 1] = [[1], [4]], C2 = [1]) -> y.
fn two_gemms() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 2]);
    let w1 = b.constant("fc1.weight", &[2, 2], vec![4.0, 0.0, 0.0, 1.0]);
    let c1 = b.constant("fc1.bias", &[2], vec![2.0, -1.0]);
    let op1 = Op::Gemm(crate::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true });
    let h = b.node("fc1", op1, &[x, w1, c1], "h", &[1, 2]);
    let a = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[h], "a", &[1, 2]);
    let w2 = b.constant("fc2.weight", &[2, 1], vec![1.0, 4.0]);
    let c2 = b.constant("fc2.bias", &[1], vec![1.0]);
    let op2 = Op::Gemm(crate::ops::Gemm { alpha: 2.0, beta: 0.5, trans_a: false, trans_b: false });
    let y = b.node("fc2", op2, &[a, w2, c2], "y", &[1, 1]);
    b.output(y);
    b.finish()
}

/// By hand: r1 = [4, 1] (rows of B1), r2 = [1, 4] (rows of B2, its input channels when not
/// transposed); s = [2, 0.5]; B1 = [[2, 0], [0, 2]], C1 = [1, -2], B2 = [[2], [2]].
/// High-bias absorption with gamma = [0.1, 0.1], beta = [4, 1] recorded for fc1: beta / s =
/// [2, 2], |gamma| / s = [0.05, 0.2]; c = beta / s - 3 gamma / s = [1.85, 1.4]. C1 -= c / 1 ->
/// [-0.85, -3.4]; C2 += alpha2 / beta2 * (B2^T c) = 4 * (2 * 1.85 + 2 * 1.4) = 26 -> 27.
#[test]
fn gemm_pair_with_high_bias_absorption_by_hand() {
    let mut g = two_gemms();
    let original = g.clone();
    let mut bns = FoldedBatchNorms::new();
    bns.insert("fc1.weight".into(), FoldedBatchNorm { gamma: vec![0.1, -0.1], beta: vec![4.0, 1.0] });
    let counts = equalize(&mut g, &bns);
    assert_eq!(counts, CleCounts { pairs_equalized: 1, relu6_rewritten: 0, biases_absorbed: 1 });
    assert_eq!(values_of(&g, "fc1.weight"), [2.0, 0.0, 0.0, 2.0]);
    assert_eq!(values_of(&g, "fc2.weight"), [2.0, 2.0]);
    assert_close(&values_of(&g, "fc1.bias"), &[-0.85, -3.4], 1e-6);
    assert_close(&values_of(&g, "fc2.bias"), &[27.0], 1e-6);
    // Where the pre-activations stay above c the function is unchanged: x = [1, 5] gives
    // h = [6, 4], h / s = [3, 8] >= c. y = 2 * (6 + 16) + 0.5 = 44.5 both ways.
    let x = Tensor::from_f32(vec![1, 2], vec![1.0, 5.0]);
    assert_close(&run(&g, std::slice::from_ref(&x)), &[44.5], 1e-6);
    assert_close(&run(&original, &[x]), &[44.5], 1e-6);
}

/// A Conv -> depthwise Conv -> Conv triple and a Depthwise -> Conv pair, 3x3 kernels with
/// padding, Relus between, random weights with a 1000x spread of channel ranges and no
/// BatchNorm (so no high-bias absorption): the float function is the same to rounding, and
/// the per-channel ranges are equal across each scaled pair.
#[test]
fn triple_keeps_the_float_function_and_equalizes_ranges() {
    let mut seed = 11u64;
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 3, 6, 6]);
    let spread = [0.001f32, 1.0, 0.03, 1.0];
    let mut wa = lcg_values(&mut seed, 4 * 3 * 9, -1.0, 1.0);
    for (i, v) in wa.iter_mut().enumerate() {
        *v *= spread[i / 27];
    }
    let wa = b.constant("a.weight", &[4, 3, 3, 3], wa);
    let ba = b.constant("a.bias", &[4], lcg_values(&mut seed, 4, -0.1, 0.1));
    let h = b.node("a", conv_op(3, 1, 1), &[x, wa, ba], "a_out", &[1, 4, 6, 6]);
    let h = b.node("relu_a", Op::Unary(crate::ops::Unary::Relu), &[h], "a_act", &[1, 4, 6, 6]);
    let wb = b.constant("b.weight", &[4, 1, 3, 3], lcg_values(&mut seed, 36, -2.0, 2.0));
    let bb = b.constant("b.bias", &[4], lcg_values(&mut seed, 4, -0.1, 0.1));
    let h = b.node("b", conv_op(3, 1, 4), &[h, wb, bb], "b_out", &[1, 4, 6, 6]);
    let h = b.node("relu_b", Op::Clip(crate::ops::Clip { min: 0.0, max: 1e6 }), &[h], "b_act", &[1, 4, 6, 6]);
    let wc = b.constant("c.weight", &[5, 4, 1, 1], lcg_values(&mut seed, 20, -1.0, 1.0));
    let h = b.node("c", conv_op(1, 0, 1), &[h, wc], "c_out", &[1, 5, 6, 6]);
    let wd = b.constant("d.weight", &[5, 1, 3, 3], lcg_values(&mut seed, 45, -1.0, 1.0));
    let h = b.node("d", conv_op(3, 1, 5), &[h, wd], "d_out", &[1, 5, 6, 6]);
    let h = b.node("relu_d", Op::Unary(crate::ops::Unary::Relu), &[h], "d_act", &[1, 5, 6, 6]);
    let we = b.constant("e.weight", &[2, 5, 1, 1], lcg_values(&mut seed, 10, -1.0, 1.0));
    let be = b.constant("e.bias", &[2], lcg_values(&mut seed, 2, -0.1, 0.1));
    let y = b.node("e", conv_op(1, 0, 1), &[h, we, be], "y", &[1, 2, 6, 6]);
    b.output(y);
    let original = b.finish();
    let (g, report) = optimize_with(original.clone(), &CLE).unwrap();
    // Sets: (a, b, c) triple; c -> d is Conv -> Depthwise with nothing after d but e, so
    // AIMET's rule makes (c, d, e) a triple too: 4 pairs. The Clip(0, 1e6) becomes Relu.
    assert_eq!((report.cle_pairs_equalized, report.cle_relu6_rewritten, report.cle_biases_absorbed), (4, 1, 0));
    for k in 0..3 {
        let input = Tensor::from_f32(vec![1, 3, 6, 6], lcg_values(&mut seed, 108, -1.0, 1.0));
        let (want, got) = (run(&original, std::slice::from_ref(&input)), run(&g, &[input]));
        assert_close(&got, &want, 1e-5);
        assert!(k < 3);
    }
    let absmax = |name: &str, channel_of: &dyn Fn(usize) -> usize, channels: usize| {
        let mut m = vec![0f32; channels];
        for (i, v) in values_of(&g, name).iter().enumerate() {
            m[channel_of(i)] = m[channel_of(i)].max(v.abs());
        }
        m
    };
    // After a triple its three layers have range t = cbrt(r1 r2 r3) per channel. (The second
    // triple rescales c's output channels, so c's input ranges no longer equal a's.)
    let ra = absmax("a.weight", &|i| i / 27, 4);
    let rb = absmax("b.weight", &|i| i / 9, 4);
    assert_close(&ra, &rb, 1e-6);
    let rc_out = absmax("c.weight", &|i| i / 4, 5);
    let rd = absmax("d.weight", &|i| i / 9, 5);
    let re_in = absmax("e.weight", &|i| i % 5, 5);
    assert_close(&rc_out, &rd, 1e-6);
    assert_close(&rd, &re_in, 1e-6);
    let spread_after = ra.iter().cloned().fold(0f32, f32::max) / ra.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread_after < 100.0, "channel spread after CLE {spread_after}");
}

/// With no activation between the layers the whole beta is absorbed (`c = beta / s`), and
/// with 1x1 kernels (no padded border) that is exact: Conv -> BN -> Conv keeps its function.
#[test]
fn high_bias_absorption_without_activation_is_exact() {
    let mut seed = 5u64;
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 3, 4, 4]);
    let w1 = b.constant("c1.weight", &[4, 3, 1, 1], lcg_values(&mut seed, 12, -1.0, 1.0));
    let h = b.node("c1", conv_op(1, 0, 1), &[x, w1], "h", &[1, 4, 4, 4]);
    let gamma = b.constant("bn.gamma", &[4], vec![0.5, 2.0, 0.1, 1.0]);
    let beta = b.constant("bn.beta", &[4], vec![3.0, -1.0, 5.0, 0.2]);
    // mean = 0: the folded bias is then all beta, and all of it moves to c2.
    let mean = b.constant("bn.mean", &[4], vec![0.0; 4]);
    let var = b.constant("bn.var", &[4], vec![1.0, 0.5, 2.0, 1.5]);
    let h = b.node(
        "bn",
        Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 1e-5 }),
        &[h, gamma, beta, mean, var],
        "h_bn",
        &[1, 4, 4, 4],
    );
    let w2 = b.constant("c2.weight", &[2, 4, 1, 1], lcg_values(&mut seed, 8, -1.0, 1.0));
    let b2 = b.constant("c2.bias", &[2], vec![0.3, -0.3]);
    let y = b.node("c2", conv_op(1, 0, 1), &[h, w2, b2], "y", &[1, 2, 4, 4]);
    b.output(y);
    let original = b.finish();
    let (g, report) = optimize_with(original.clone(), &CLE).unwrap();
    assert_eq!((report.folded_batchnorms, report.cle_pairs_equalized, report.cle_biases_absorbed), (1, 1, 1));
    // Everything of the BN's shift moved to c2: c1's bias is now ~0.
    let b1 = values_of(&g, "bn.folded_bias");
    assert!(b1.iter().all(|v| v.abs() < 1e-5), "{b1:?}");
    let input = Tensor::from_f32(vec![1, 3, 4, 4], lcg_values(&mut seed, 48, -1.0, 1.0));
    assert_close(&run(&g, std::slice::from_ref(&input)), &run(&original, &[input]), 1e-5);
}

/// The BN statistics of a doubly folded layer (Conv -> BN -> BN) compose: with the first
/// BN's (gamma1, beta1) and the second's (gamma2, beta2, mean2, var2, eps = 0):
/// s2 = gamma2 / sqrt(var2) = 2 / 2 = 1; beta = (beta1 - mean2) * s2 + beta2 = (3 - 1) + 0.5;
/// gamma = gamma1 * s2 = 0.5.
#[test]
fn folded_statistics_compose() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 1, 1, 1]);
    let w = b.constant("c.weight", &[1, 1, 1, 1], vec![1.0]);
    let h = b.node("c", conv_op(1, 0, 1), &[x, w], "h", &[1, 1, 1, 1]);
    let p1: Vec<_> = [("g1", 0.5), ("b1", 3.0), ("m1", 0.0), ("v1", 1.0)]
        .iter()
        .map(|&(n, v)| b.constant(n, &[1], vec![v]))
        .collect();
    let h = b.node(
        "bn1",
        Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 0.0 }),
        &[h, p1[0], p1[1], p1[2], p1[3]],
        "h1",
        &[1, 1, 1, 1],
    );
    let p2: Vec<_> = [("g2", 2.0), ("b2", 0.5), ("m2", 1.0), ("v2", 4.0)]
        .iter()
        .map(|&(n, v)| b.constant(n, &[1], vec![v]))
        .collect();
    let h = b.node(
        "bn2",
        Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 0.0 }),
        &[h, p2[0], p2[1], p2[2], p2[3]],
        "h2",
        &[1, 1, 1, 1],
    );
    let y = b.node("r", Op::Unary(crate::ops::Unary::Relu), &[h], "y", &[1, 1, 1, 1]);
    b.output(y);
    let mut g = b.finish();
    let mut record = FoldedBatchNorms::new();
    assert_eq!(super::super::bn_fold::fold_batchnorms(&mut g, &mut record), 2);
    // Keyed by the weight the Conv reads (updated in place, so its own name).
    let names: Vec<&String> = record.keys().collect();
    assert_eq!(names, ["c.weight"]);
    let stats = &record["c.weight"];
    assert_eq!(stats.gamma, [0.5]);
    assert_eq!(stats.beta, [2.5]);
}

// ------------------------------------------------------------------ against AIMET

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn import(path: &Path) -> Graph {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = crate::onnx::decode_model(&bytes).expect("the model decodes");
    crate::onnx::import(&model, &BTreeMap::new(), &BTreeMap::new()).expect("the model imports")
}

/// Our CLE against AIMET 2.42.0's `equalize_model` (BN fold, Relu6 -> Relu, scaling of the
/// triple conv_a -> depthwise conv_b -> conv_c and the pair conv_c -> conv_d, high-bias
/// absorption), whose results tests/data/cle/reference.json holds (cross-checked there against
/// a numpy transcription of the paper's formulas).
#[test]
fn small_model_matches_aimet_equalize_model() {
    let dir = repo("tests/data/cle");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let original = import(&dir.join("cle_small.onnx"));
    let (plain, _) = optimize(original.clone()).unwrap();
    let (g, report) = optimize_with(original, &CLE).unwrap();
    let counts = &reference["counts"];
    assert_eq!(report.cle_pairs_equalized as u64, counts["pairs_equalized"].as_u64().unwrap());
    assert_eq!(report.cle_relu6_rewritten as u64, counts["relu6_rewritten"].as_u64().unwrap());
    assert_eq!(report.cle_biases_absorbed as u64, counts["biases_absorbed"].as_u64().unwrap());
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    };
    for conv in reference["convs"].as_array().unwrap() {
        let node = g.nodes.iter().find(|n| n.name == conv["node"].as_str().unwrap()).expect("conv node");
        // BN folding kept the Conv's own weight and bias names, as AIMET does.
        assert_eq!(g.name(node.inputs[1]), conv["weight"].as_str().unwrap());
        assert_eq!(g.name(node.inputs[2]), conv["bias"].as_str().unwrap());
        let weight = g.constant(node.inputs[1]).unwrap();
        assert_eq!(
            weight.shape.iter().map(|&d| d as u64).collect::<Vec<_>>(),
            floats(&conv["weight_shape"]).iter().map(|&d| d as u64).collect::<Vec<_>>()
        );
        assert_close(weight.as_f32().unwrap(), &floats(&conv["weight_after"]), 1e-5);
        assert_close(g.constant(node.inputs[2]).unwrap().as_f32().unwrap(), &floats(&conv["bias_after"]), 1e-5);
    }
    // Same tensors (names, shapes) as without CLE; only the Clip became a Relu.
    assert_eq!(g.tensors, plain.tensors);
    let ops = |g: &Graph| g.nodes.iter().map(|n| n.op.type_name()).collect::<Vec<_>>();
    assert_eq!(ops(&plain), ["Conv", "Clip", "Conv", "Relu", "Conv", "Conv"]);
    assert_eq!(ops(&g), ["Conv", "Relu", "Conv", "Relu", "Conv", "Conv"]);
}

// ------------------------------------------------------------------ measured benefit

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn samples(list_dir: &Path) -> Vec<Tensor> {
    let list = std::fs::read_to_string(list_dir.join("input_list.txt")).unwrap();
    list.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Tensor::from_f32(vec![1, 1, 8, 8], read_f32(&list_dir.join(l.trim()))))
        .collect()
}

/// W8A8 (per-tensor or per-channel weights, min-max, 32-bit bias) of `graph`, calibrated on `calib`, compiled for
/// htp and run on `test`: the logits of every sample, concatenated.
fn quantized_logits(graph: &Graph, calib: &[Tensor], test: &[Tensor], per_channel: bool) -> Vec<f32> {
    let mut collector = crate::quant::StatsCollector::new(graph);
    for x in calib {
        interpret(graph, std::slice::from_ref(x), &mut |id, t| collector.observe(id, t)).unwrap();
    }
    let stats = collector.finish();
    let settings = crate::quant::settings::QuantSettings { per_channel, ..Default::default() };
    let q = crate::quant::quantize(graph, &stats, &settings, None).expect("quantizes");
    let rules = crate::compile::standard_rules();
    let backend = rules.get("htp").expect("the htp rules");
    let program = crate::compile::compile(&q, backend).expect("compiles");
    let prepared = crate::runtime::exec::prepare(&program).expect("prepares");
    test.iter()
        .flat_map(|x| {
            let out = crate::runtime::exec::execute(&prepared, std::slice::from_ref(x), &mut |_, _| {}).unwrap();
            out[0].to_f32_vec()
        })
        .collect()
}

/// `10 log10(sum ref^2 / sum (ref - x)^2)`.
fn sqnr_db(x: &[f32], reference: &[f32]) -> f64 {
    let (mut signal, mut noise) = (0f64, 0f64);
    for (&a, &r) in x.iter().zip(reference) {
        signal += f64::from(r).powi(2);
        noise += (f64::from(a) - f64::from(r)).powi(2);
    }
    10.0 * (signal / noise.max(f64::MIN_POSITIVE)).log10()
}

fn top1(logits: &[f32], labels: &[usize]) -> f64 {
    let hits = logits
        .chunks_exact(10)
        .zip(labels)
        .filter(|&(row, &label)| {
            let best = row.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            best.0 == label
        })
        .count();
    hits as f64 / labels.len() as f64
}

/// Max / min of the per-output-channel abs-max of every Conv weight, in node order.
fn channel_spreads(g: &Graph) -> Vec<f64> {
    g.nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv(_)))
        .map(|n| {
            let w = g.constant(n.inputs[1]).unwrap();
            let per = w.len() / w.shape[0];
            let m: Vec<f64> = w
                .as_f32()
                .unwrap()
                .chunks(per)
                .map(|c| c.iter().fold(0f64, |m, v| m.max(f64::from(v.abs()))))
                .collect();
            m.iter().cloned().fold(0.0, f64::max) / m.iter().cloned().fold(f64::MAX, f64::min)
        })
        .collect()
}

/// tests/data/models/cle_digits (scripts/python/make_cle_digits.py): a MobileNet-shaped digits
/// CNN with BN and Relu6 whose stem channels span 100x. Per-tensor W8A8 of the BN-folded model,
/// without and with CLE, against the float model's logits (onnxruntime's, committed) and the
/// labels of the 400 test samples of examples/digits; AIMET's numbers for the same experiment
/// (tests/data/models/cle_digits/aimet_summary.json) are printed alongside.
#[test]
fn cle_improves_per_tensor_w8a8_on_a_model_with_unequal_channels() {
    let dir = repo("tests/data/models/cle_digits");
    let digits = repo("examples/digits");
    let graph = import(&dir.join("model.onnx"));
    let calib = samples(&digits.join("calib"));
    let test = samples(&digits.join("test"));
    let labels: Vec<usize> = std::fs::read_to_string(digits.join("test/labels.txt"))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let float_logits = read_f32(&dir.join("ort_logits.raw"));
    assert_eq!((calib.len(), test.len(), labels.len(), float_logits.len()), (100, 400, 400, 4000));

    let (plain, _) = optimize(graph.clone()).unwrap();
    let (equalized, report) = optimize_with(graph, &CLE).unwrap();
    // stem -> dw1 -> pw1 is a triple, dw2 -> pw2 a pair; three Relu6 between them. No bias is
    // absorbed: in every BN of this trained model beta < 3 |gamma| (max of beta - 3 |gamma|
    // per BN, from the ONNX file with numpy: -0.05, -2.1, -0.88, -1.7, -4.7).
    assert_eq!((report.cle_pairs_equalized, report.cle_relu6_rewritten, report.cle_biases_absorbed), (3, 3, 0));

    let ours_float: Vec<f32> = test.iter().flat_map(|x| run(&plain, std::slice::from_ref(x))).collect();
    let cle_float: Vec<f32> = test.iter().flat_map(|x| run(&equalized, std::slice::from_ref(x))).collect();
    let without = quantized_logits(&plain, &calib, &test, false);
    let with = quantized_logits(&equalized, &calib, &test, false);
    let (s_float, s_cle_float) = (sqnr_db(&ours_float, &float_logits), sqnr_db(&cle_float, &float_logits));
    let (s_without, s_with) = (sqnr_db(&without, &float_logits), sqnr_db(&with, &float_logits));
    let acc = |l: &[f32]| top1(l, &labels);
    println!("cle_digits channel spreads (max/min per-channel |W|) per Conv, BN folded: {:?}", channel_spreads(&plain));
    println!("cle_digits channel spreads after CLE: {:?}", channel_spreads(&equalized));
    println!("cle_digits float (ours vs onnxruntime): SQNR {s_float:.1} dB, top-1 {:.4}", acc(&ours_float));
    println!("cle_digits float after CLE (Relu6 -> Relu, HBA): SQNR {s_cle_float:.1} dB, top-1 {:.4}", acc(&cle_float));
    println!("cle_digits per-tensor W8A8 without CLE: SQNR {s_without:.2} dB, top-1 {:.4}", acc(&without));
    println!("cle_digits per-tensor W8A8 with CLE:    SQNR {s_with:.2} dB, top-1 {:.4}", acc(&with));
    // AIMET's QuantSim on the same model and data (scripts/python/make_cle_aimet.py): its
    // `equalize_model` leaves the same per-channel spreads, and its per-tensor W8A8 numbers.
    let aimet: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("aimet_summary.json")).unwrap()).unwrap();
    for (key, ours) in [("bn_folded", channel_spreads(&plain)), ("cle", channel_spreads(&equalized))] {
        let theirs: Vec<f64> =
            aimet[key]["conv_channel_spreads"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 1e-3 * b, "{key}: spreads {ours:?} vs AIMET {theirs:?}");
        }
        let r = &aimet[key];
        println!(
            "AIMET QuantSim per-tensor W8A8 ({key}): SQNR {} dB, top-1 {}",
            r["w8a8_per_tensor_sqnr_db"], r["w8a8_per_tensor_top1"]
        );
    }
    // For context: per-channel weights mostly fix the same problem without CLE.
    for (label, g) in [("without", &plain), ("with", &equalized)] {
        let l = quantized_logits(g, &calib, &test, true);
        println!(
            "cle_digits per-channel W8A8 {label} CLE: SQNR {:.2} dB, top-1 {:.4}",
            sqnr_db(&l, &float_logits),
            acc(&l)
        );
    }
    assert!(s_float > 80.0, "our float interpreter agrees with onnxruntime");
    assert!(s_with > s_without + 3.0, "CLE: {s_with:.2} dB, without: {s_without:.2} dB");
    assert!(acc(&with) >= acc(&without));
}
