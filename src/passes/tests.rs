//! End-to-end checks of [`optimize`]: the float interpreter gives the same outputs before and
//! after, on a hand-built graph that exercises every pass and on the digits example model.

use std::collections::BTreeMap;

use super::optimize;
use crate::ir::test_graph::{GraphBuilder, node_names};
use crate::ir::{Conv, Graph, Op, Pool, Tensor, Window};
use crate::runtime::interpret;

/// Deterministic values in `[lo, hi)` (a 64-bit LCG; the top bits are well mixed enough for
/// test data).
struct Lcg(u64);

impl Lcg {
    fn values(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let unit = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
                lo + unit * (hi - lo)
            })
            .collect()
    }
}

/// `max |a - b| / max |b|` over all outputs (error relative to the reference's scale).
fn relative_error(actual: &[Tensor], reference: &[Tensor]) -> f64 {
    assert_eq!(actual.len(), reference.len());
    let (mut diff, mut scale) = (0f64, 0f64);
    for (a, r) in actual.iter().zip(reference) {
        assert_eq!(a.shape, r.shape);
        for (x, y) in a.to_f32_vec().iter().zip(r.to_f32_vec()) {
            diff = diff.max((f64::from(*x) - f64::from(y)).abs());
            scale = scale.max(f64::from(y).abs());
        }
    }
    diff / scale.max(f64::MIN_POSITIVE)
}

fn run(graph: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    interpret(graph, inputs, &mut |_, _| {}).expect("the interpreter runs the graph")
}

/// x[1,2,4,4] -> Conv(3x3, pad 1, bias) -> BN -> Identity -> Relu -> MaxPool(2) -> Flatten
/// -> Gemm(trans_b, alpha 0.5, beta 2) -> BN -> Dropout -> Add(c) -> "out", where
/// c = Mul(a, b) of two constants; the Relu output also leaves through an Identity ("out2");
/// a Sigmoid of x leads nowhere.
fn every_pass_graph() -> Graph {
    let mut rng = Lcg(7);
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 2, 4, 4]);
    let w = b.constant("conv.weight", &[3, 2, 3, 3], rng.values(54, -1.0, 1.0));
    let cb = b.constant("conv.bias", &[3], rng.values(3, -0.5, 0.5));
    let conv = Op::Conv(Conv {
        window: Window { kernel: vec![3, 3], strides: vec![1, 1], pads: vec![1, 1, 1, 1], dilations: vec![1, 1] },
        group: 1,
    });
    let c = b.node("conv", conv, &[x, w, cb], "conv_out", &[1, 3, 4, 4]);
    let bn1: Vec<_> = [("g", 0.5, 1.5), ("b", -0.5, 0.5), ("m", -0.5, 0.5), ("v", 0.5, 1.5)]
        .iter()
        .map(|&(n, lo, hi)| b.constant(&format!("bn1.{n}"), &[3], rng.values(3, lo, hi)))
        .collect();
    let bn1_out = b.node(
        "bn1",
        Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 1e-5 }),
        &[c, bn1[0], bn1[1], bn1[2], bn1[3]],
        "bn1_out",
        &[1, 3, 4, 4],
    );
    let i = b.node("id", Op::Identity(crate::ops::Identity), &[bn1_out], "id_out", &[1, 3, 4, 4]);
    let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[i], "relu_out", &[1, 3, 4, 4]);
    let pool = Op::Pool(Pool {
        kind: crate::ops::PoolKind::Max,
        window: Window { kernel: vec![2, 2], strides: vec![2, 2], pads: vec![0; 4], dilations: vec![1, 1] },
        ceil_mode: false,
        count_include_pad: false,
        indices: None,
    });
    let p = b.node("pool", pool, &[r], "pool_out", &[1, 3, 2, 2]);
    let f = b.node("flatten", Op::Flatten(crate::ops::Flatten { axis: 1 }), &[p], "flat", &[1, 12]);
    let fw = b.constant("fc.weight", &[5, 12], rng.values(60, -1.0, 1.0));
    let fb = b.constant("fc.bias", &[5], rng.values(5, -0.5, 0.5));
    let gemm = Op::Gemm(crate::ops::Gemm { alpha: 0.5, beta: 2.0, trans_a: false, trans_b: true });
    let g = b.node("fc", gemm, &[f, fw, fb], "fc_out", &[1, 5]);
    let bn2: Vec<_> = [("g", 0.5, 1.5), ("b", -0.5, 0.5), ("m", -0.5, 0.5), ("v", 0.5, 1.5)]
        .iter()
        .map(|&(n, lo, hi)| b.constant(&format!("bn2.{n}"), &[5], rng.values(5, lo, hi)))
        .collect();
    let bn2_out = b.node(
        "bn2",
        Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 1e-3 }),
        &[g, bn2[0], bn2[1], bn2[2], bn2[3]],
        "bn2_out",
        &[1, 5],
    );
    let d = b.node("drop", Op::Dropout(crate::ops::Dropout), &[bn2_out], "drop_out", &[1, 5]);
    let ca = b.constant("a", &[5], rng.values(5, -1.0, 1.0));
    let cc = b.constant("b", &[5], rng.values(5, -1.0, 1.0));
    let m = b.node("mul", Op::Binary(crate::ops::Binary::Mul), &[ca, cc], "c", &[5]);
    let out = b.node("add", Op::Binary(crate::ops::Binary::Add), &[d, m], "out", &[1, 5]);
    let out2 = b.node("id2", Op::Identity(crate::ops::Identity), &[r], "out2", &[1, 3, 4, 4]);
    let _dead = b.node("dead", Op::Unary(crate::ops::Unary::Sigmoid), &[x], "dead_out", &[1, 2, 4, 4]);
    b.output(out);
    b.output(out2);
    b.finish()
}

#[test]
fn every_pass_preserves_the_outputs() {
    let graph = every_pass_graph();
    let (optimized, report) = optimize(graph.clone()).expect("optimize succeeds");
    assert_eq!(
        report,
        super::OptimizeReport {
            folded_constants: 1,
            folded_batchnorms: 2,
            removed_identities: 2,
            pruned_nodes: 1,
            ..Default::default()
        }
    );
    assert_eq!(node_names(&optimized), ["conv", "relu", "pool", "flatten", "fc", "add", "id2"]);
    let names = optimized.names();
    // A folded Conv/Gemm keeps its output name (AIMET's convention); the BN outputs go.
    for gone in ["bn1_out", "bn2_out", "id_out", "drop_out", "dead_out", "a", "bn1.g"] {
        assert!(!names.contains_key(gone), "{gone} should be gone");
    }
    for kept in ["conv_out", "fc_out", "c", "out", "out2", "conv.weight", "fc.bias"] {
        assert!(names.contains_key(kept), "{kept} should stay");
    }
    let outputs: Vec<&str> = optimized.outputs.iter().map(|&id| optimized.name(id)).collect();
    assert_eq!(outputs, ["out", "out2"]);

    let mut rng = Lcg(42);
    for _ in 0..4 {
        let x = Tensor::from_f32(vec![1, 2, 4, 4], rng.values(32, -2.0, 2.0));
        let before = run(&graph, std::slice::from_ref(&x));
        let after = run(&optimized, std::slice::from_ref(&x));
        let error = relative_error(&after, &before);
        assert!(error < 1e-5, "relative error {error}");
    }
}

#[test]
fn optimize_is_deterministic_and_idempotent() {
    let (once, _) = optimize(every_pass_graph()).unwrap();
    let (again, _) = optimize(every_pass_graph()).unwrap();
    assert_eq!(once, again);
    let (twice, report) = optimize(once.clone()).unwrap();
    assert_eq!(twice, once);
    assert_eq!(report, super::OptimizeReport::default());
}

fn digits_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digits")
}

fn read_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The digits model's 400 test inputs through the model before and after optimization.
#[test]
fn digits_model_is_unchanged_by_optimization() {
    let dir = digits_dir();
    let bytes = std::fs::read(dir.join("model.onnx")).expect("examples/digits/model.onnx");
    let model = crate::onnx::decode_model(&bytes).expect("the digits model decodes");
    let graph = crate::onnx::import(&model, &BTreeMap::new(), &BTreeMap::new()).expect("the digits model imports");
    let (optimized, report) = optimize(graph.clone()).expect("optimize succeeds");
    assert_eq!(report.folded_batchnorms, 2);
    let types: Vec<&str> = optimized.nodes.iter().map(|n| n.op.type_name()).collect();
    assert_eq!(types, ["Conv", "Relu", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm"]);
    let names = optimized.names();
    // The names AIMET's BN-folded export keeps (examples/digits/aimet/digits_bnfolded.onnx).
    assert!(names.contains_key("/conv1/Conv_output_0"));
    assert!(!names.contains_key("/bn1/BatchNormalization_output_0"));

    let list = std::fs::read_to_string(dir.join("test/input_list.txt")).expect("test/input_list.txt");
    let mut worst = 0f64;
    let mut samples = 0;
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let input = Tensor::from_f32(vec![1, 1, 8, 8], read_f32(&dir.join("test").join(line.trim())));
        let before = run(&graph, std::slice::from_ref(&input));
        let after = run(&optimized, std::slice::from_ref(&input));
        worst = worst.max(relative_error(&after, &before));
        samples += 1;
    }
    assert_eq!(samples, 400);
    println!("digits: max relative error (max|after - before| / max|before|) over {samples} samples: {worst:e}");
    assert!(worst < 1e-5, "max relative error {worst}");
}

/// Our folded Conv weights and biases against the ones AIMET 2.42.0's
/// `fold_all_batch_norms_to_weight` wrote (`examples/digits/aimet/digits_bnfolded.onnx`, an
/// independent implementation of the same formulas). Same tensor names on both sides.
#[test]
fn digits_folded_parameters_match_aimet() {
    let dir = digits_dir();
    let load = |path: &str| {
        let path = dir.join(path);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let model = crate::onnx::decode_model(&bytes).expect("decodes");
        let external: BTreeMap<String, Vec<u8>> = crate::onnx::external_data_files(&model)
            .into_iter()
            .map(|location| {
                let data = std::fs::read(path.with_file_name(&location)).expect("external data");
                (location, data)
            })
            .collect();
        crate::onnx::import(&model, &external, &BTreeMap::new()).expect("imports")
    };
    let (ours, _) = optimize(load("model.onnx")).expect("optimize succeeds");
    let aimet = load("aimet/digits_bnfolded.onnx");
    let constant = |g: &Graph, name: &str| -> Vec<f32> {
        let id = *g.names().get(name).unwrap_or_else(|| panic!("no tensor {name}"));
        g.constant(id).and_then(Tensor::as_f32).expect("float constant").to_vec()
    };
    // Same node outputs, in the same order, as AIMET's folded export.
    let outputs = |g: &Graph| -> Vec<String> {
        g.nodes.iter().flat_map(|n| n.outputs.iter().map(|&id| g.name(id).to_string())).collect()
    };
    assert_eq!(outputs(&ours), outputs(&aimet));
    let mut worst = 0f64;
    for name in ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"] {
        let (a, b) = (constant(&ours, name), constant(&aimet, name));
        assert_eq!(a.len(), b.len(), "{name}");
        let scale = b.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
        let diff = a.iter().zip(&b).fold(0f64, |m, (&x, &y)| m.max((f64::from(x) - f64::from(y)).abs()));
        worst = worst.max(diff / scale);
    }
    println!("digits: folded parameters vs AIMET, max relative difference {worst:e}");
    assert!(worst < 1e-5, "max relative difference {worst}");
}

/// `keep_batchnorms` (`batchnorm_folding = false`): every other pass still runs, the
/// BatchNormalizations and their parameters stay under their names, and no fold is recorded,
/// so an encodings file made for the unfolded model has nothing to carry.
#[test]
fn keeping_batchnorms_runs_every_other_pass() {
    let graph = every_pass_graph();
    let options = super::OptimizeOptions { keep_batchnorms: true, ..Default::default() };
    let (optimized, report) = super::optimize_with(graph.clone(), &options).expect("optimize succeeds");
    assert_eq!(report.folded_batchnorms, 0);
    assert_eq!((report.removed_identities, report.folded_constants, report.pruned_nodes), (2, 1, 1));
    assert_eq!(node_names(&optimized), ["conv", "bn1", "relu", "pool", "flatten", "fc", "bn2", "add", "id2"]);
    assert!(optimized.batchnorm_folds.is_empty());
    let names = optimized.names();
    for kept in ["conv_out", "bn1_out", "bn1.g", "bn2.v", "fc_out", "bn2_out"] {
        assert!(names.contains_key(kept), "{kept} should stay");
    }
    let x = Tensor::from_f32(vec![1, 2, 4, 4], Lcg(3).values(32, -2.0, 2.0));
    let error = relative_error(&run(&optimized, std::slice::from_ref(&x)), &run(&graph, std::slice::from_ref(&x)));
    assert!(error < 1e-6, "relative error {error}");
}
