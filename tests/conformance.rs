//! Conformance of the import + reference-interpreter path against outside references:
//!
//! - `tests/data/onnx-node/`: ONNX's own backend node tests (model, input and expected output
//!   TensorProtos). Every test in the manifest must pass within its op's [`Tolerance`], except
//!   the ones in [`EXCLUDED`], each with its reason; an excluded test that starts passing
//!   fails this test too, so the list only shrinks.
//! - `tests/data/models/*/`: small whole models with onnxruntime's outputs on fixed inputs.
//!   An output matches when every element is within 1e-4 relative error, or when the largest
//!   absolute error is within 1e-5 of the largest reference magnitude.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use qairt::ir::{Graph, Tensor, TensorData};
use qairt::onnx::proto::{ModelProto, TensorProto};
use qairt::runtime::interpret;

const NODE_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/onnx-node");
const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/models");

/// Node tests left out of the conformance run, and why. None of these is a kernel defect.
const EXCLUDED: &[(&str, &str)] = &[];

/// Node tests whose expected outputs are less precise than the op's tolerance, with the
/// tolerance their data supports.
const PRECISION_OF_EXPECTED: &[(&str, Tolerance, &str)] = &[(
    "test_averagepool_2d_ceil_last_window_starts_on_pad",
    Tolerance::Close { rtol: 0.0, atol: 1e-4 },
    "ONNX wrote the expected values by hand to 4 decimals, not always rounded to nearest: \
     channel 1 is (0.8816 + 0.4353 + 0.5772 + 0.6623) / 9 = 0.284044 (onnxruntime: 0.2840444), \
     written 0.2841",
)];

/// Op inputs that the IR holds as attributes: the importer needs them constant. Node tests
/// feed them as graph inputs, so the harness turns their test data into initializers (what
/// a real model would carry) before importing.
const ATTRIBUTE_INPUTS: &[(&str, &[usize])] = &[
    ("CenterCropPad", &[1]),
    ("Compress", &[1]),
    ("CumProd", &[1]),
    ("CumSum", &[1]),
    ("Expand", &[1]),
    ("OneHot", &[1]),
    ("Pad", &[1, 2, 3]),
    ("Range", &[0, 1, 2]),
    ("ReduceL1", &[1]),
    ("ReduceL2", &[1]),
    ("ReduceLogSum", &[1]),
    ("ReduceLogSumExp", &[1]),
    ("ReduceMax", &[1]),
    ("ReduceMean", &[1]),
    ("ReduceMin", &[1]),
    ("ReduceProd", &[1]),
    ("ReduceSum", &[1]),
    ("ReduceSumSquare", &[1]),
    ("Reshape", &[1]),
    ("Resize", &[1, 2, 3]),
    ("Slice", &[1, 2, 3, 4]),
    ("Split", &[1]),
    ("Squeeze", &[1]),
    ("Tile", &[1]),
    ("TopK", &[1]),
    ("Trilu", &[1]),
    ("Unsqueeze", &[1]),
    ("Upsample", &[1]),
];

/// How closely a node test's outputs must match ONNX's expected outputs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tolerance {
    /// Bit-identical: data movement, and IEEE arithmetic done in the same order as numpy.
    Exact,
    /// Per element, `|got - expected| <= atol + rtol * |expected|`.
    Close { rtol: f32, atol: f32 },
}

impl Tolerance {
    /// The tolerance for one op type.
    fn of_op(op: &str) -> Tolerance {
        match op {
            "Add" | "Sub" | "Mul" | "Div" | "Relu" | "Clip" | "Abs" | "Neg" | "Sign" | "Ceil" | "Floor" | "Round"
            | "Not" | "BitwiseNot" | "IsNaN" | "IsInf" | "And" | "Or" | "Xor" | "BitwiseAnd" | "BitwiseOr"
            | "BitwiseXor" | "BitShift" | "Equal" | "Greater" | "GreaterOrEqual" | "Less" | "LessOrEqual" | "Min"
            | "Max" | "Where" | "Mod" | "PRelu" | "LeakyRelu" | "ThresholdedRelu" | "Shrink" | "MaxPool"
            | "GlobalMaxPool" | "Flatten" | "Reshape" | "Transpose" | "Concat" | "Squeeze" | "Unsqueeze"
            | "Identity" | "Dropout" | "Pad" | "Gather" | "GatherElements" | "GatherND" | "Slice" | "Split"
            | "Expand" | "Tile" | "Trilu" | "DepthToSpace" | "SpaceToDepth" | "CenterCropPad" | "Cast" | "EyeLike"
            | "OneHot" | "Compress" | "ReverseSequence" | "ScatterElements" | "ScatterND" => Tolerance::Exact,
            // exp / multiply-add against numpy's float32: a few ulp.
            "Sigmoid" | "HardSigmoid" | "HardSwish" => Tolerance::Close { rtol: 1e-6, atol: 1e-7 },
            // Sums accumulated in a different order than the reference (sgemm blocking,
            // fused BatchNormalization, f64 softmax sums).
            _ => Tolerance::Close { rtol: 1e-5, atol: 1e-6 },
        }
    }

    /// The looser of two tolerances.
    fn loosest(self, other: Tolerance) -> Tolerance {
        match (self, other) {
            (Tolerance::Exact, t) | (t, Tolerance::Exact) => t,
            (Tolerance::Close { rtol: r1, atol: a1 }, Tolerance::Close { rtol: r2, atol: a2 }) => {
                Tolerance::Close { rtol: r1.max(r2), atol: a1.max(a2) }
            }
        }
    }

    /// The tolerance of a graph: the loosest of its nodes' ops.
    fn of_graph(graph: &Graph) -> Tolerance {
        graph.nodes.iter().map(|n| Tolerance::of_op(n.op.type_name())).fold(Tolerance::Exact, Tolerance::loosest)
    }

    fn accepts(self, got: f32, expected: f32) -> bool {
        match self {
            Tolerance::Exact => got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan()),
            Tolerance::Close { rtol, atol } => {
                got == expected || (got - expected).abs() <= atol + rtol * expected.abs()
            }
        }
    }
}

/// Decodes a TensorProto (raw_data or the typed repeated fields, any element type).
fn tensor_from_proto(proto: &TensorProto) -> Result<Tensor, String> {
    qairt::onnx::decode_tensor(proto, &BTreeMap::new()).map_err(|e| e.to_string())
}

fn read_tensor_proto(path: &Path) -> Result<TensorProto, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    TensorProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))
}

fn import_model(model: &ModelProto, external: &BTreeMap<String, Vec<u8>>) -> Result<Graph, String> {
    qairt::onnx::import(model, external, &BTreeMap::new()).map_err(|errors| {
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        format!("import failed: {}", messages.join("; "))
    })
}

/// The first few elements of a slice, for messages.
fn preview(values: &[f32]) -> String {
    let shown: Vec<String> = values.iter().take(8).map(|v| format!("{v:e}")).collect();
    let more = if values.len() > 8 { format!(", ... ({} in all)", values.len()) } else { String::new() };
    format!("[{}{more}]", shown.join(", "))
}

/// Compares one output; the error names the test, the output index and got vs expected.
fn compare(test: &str, index: usize, got: &Tensor, expected: &Tensor, tolerance: Tolerance) -> Result<(), String> {
    if got.shape != expected.shape || got.dtype() != expected.dtype() {
        return Err(format!(
            "{test}: output {index}: got {} {:?}, expected {} {:?}",
            got.dtype().name(),
            got.shape,
            expected.dtype().name(),
            expected.shape
        ));
    }
    let (g, e): (Vec<f32>, Vec<f32>) = match (&got.data, &expected.data) {
        (TensorData::F32(g), TensorData::F32(e)) => (g.clone(), e.clone()),
        // Other float types compare as floats, within the same tolerance.
        _ if got.dtype().is_float() => (got.to_f32_vec(), expected.to_f32_vec()),
        _ if got.data == expected.data => return Ok(()),
        _ => return Err(format!("{test}: output {index}: got {:?}, expected {:?}", got.data, expected.data)),
    };
    let (g, e) = (g.as_slice(), e.as_slice());
    let bad: Vec<usize> = (0..g.len()).filter(|&i| !tolerance.accepts(g[i], e[i])).collect();
    if let Some(&first) = bad.first() {
        return Err(format!(
            "{test}: output {index}: {} of {} elements outside {tolerance:?}; first at flat index {first}: \
             got {:e}, expected {:e}\n  got      {}\n  expected {}",
            bad.len(),
            g.len(),
            g[first],
            e[first],
            preview(g),
            preview(e)
        ));
    }
    Ok(())
}

fn node_test_names() -> Vec<String> {
    let manifest = std::fs::read_to_string(Path::new(NODE_TESTS).join("manifest.txt")).expect("node test manifest");
    manifest.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// Runs one node test: import, feed `input_<i>.pb` to the graph inputs by name, compare
/// `output_<j>.pb` with the graph output of the same name.
fn run_node_test(name: &str) -> Result<(), String> {
    let dir = Path::new(NODE_TESTS).join(name);
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| format!("{name}: model.onnx: {e}"))?;
    let mut model = qairt::onnx::decode_model(&bytes).map_err(|e| format!("{name}: {e}"))?;
    let data = dir.join("test_data_set_0");

    // Test data by graph-input name.
    let mut protos: BTreeMap<String, TensorProto> = BTreeMap::new();
    let onnx_graph = model.graph.as_mut().ok_or_else(|| format!("{name}: no graph"))?;
    for (i, input) in onnx_graph.input.iter().enumerate() {
        let path = data.join(format!("input_{i}.pb"));
        if path.exists() {
            // (A missing file is an initializer listed as a graph input, the IR 3 habit.)
            protos.insert(input.name.clone().unwrap_or_default(), read_tensor_proto(&path)?);
        }
    }
    bake_attribute_inputs(onnx_graph, &mut protos);
    let onnx_graph = model.graph.as_ref().ok_or_else(|| format!("{name}: no graph"))?;
    let graph = import_model(&model, &BTreeMap::new()).map_err(|e| format!("{name}: {e}"))?;

    let mut given: BTreeMap<String, Tensor> = BTreeMap::new();
    for (input_name, proto) in &protos {
        let tensor = tensor_from_proto(proto).map_err(|e| format!("{name}: input {input_name:?}: {e}"))?;
        given.insert(input_name.clone(), tensor);
    }
    let inputs = graph
        .inputs
        .iter()
        .map(|&id| {
            given
                .remove(graph.name(id))
                .ok_or_else(|| format!("{name}: no test data for graph input {:?}", graph.name(id)))
        })
        .collect::<Result<Vec<Tensor>, String>>()?;
    let outputs = interpret(&graph, &inputs, &mut |_, _| {}).map_err(|e| format!("{name}: {e}"))?;

    let tolerance = PRECISION_OF_EXPECTED
        .iter()
        .find(|(test, _, _)| *test == name)
        .map_or_else(|| Tolerance::of_graph(&graph), |&(_, tolerance, _)| tolerance);
    for (j, output) in onnx_graph.output.iter().enumerate() {
        let output_name = output.name.as_deref().unwrap_or_default();
        let expected = tensor_from_proto(&read_tensor_proto(&data.join(format!("output_{j}.pb")))?)
            .map_err(|e| format!("{name}: output {j}: {e}"))?;
        let k = graph
            .outputs
            .iter()
            .position(|&id| graph.name(id) == output_name)
            .ok_or_else(|| format!("{name}: graph output {output_name:?} missing after import"))?;
        compare(name, j, &outputs[k], &expected, tolerance)?;
    }
    Ok(())
}

/// Moves the graph inputs listed in [`ATTRIBUTE_INPUTS`] (with their test data) into the
/// initializers.
fn bake_attribute_inputs(graph: &mut qairt::onnx::proto::GraphProto, protos: &mut BTreeMap<String, TensorProto>) {
    let mut baked = Vec::new();
    for node in &graph.node {
        let op = node.op_type.as_deref().unwrap_or_default();
        let Some((_, positions)) = ATTRIBUTE_INPUTS.iter().find(|(o, _)| *o == op) else { continue };
        for &p in *positions {
            if let Some(input) = node.input.get(p).filter(|i| !i.is_empty())
                && let Some(mut proto) = protos.remove(input)
            {
                proto.name = Some(input.clone());
                graph.initializer.push(proto);
                baked.push(input.clone());
            }
        }
    }
    graph.input.retain(|i| !baked.iter().any(|b| Some(b) == i.name.as_ref()));
}

#[test]
fn onnx_backend_node_tests() {
    let names = node_test_names();
    assert!(names.len() > 100, "the node test manifest lists only {} tests", names.len());
    for (excluded, _) in EXCLUDED {
        assert!(names.iter().any(|n| n == excluded), "excluded test {excluded} is not in the manifest");
    }
    let mut failures = Vec::new();
    let mut now_passing = Vec::new();
    for name in &names {
        let reason = EXCLUDED.iter().find(|(n, _)| n == name).map(|(_, r)| *r);
        match (run_node_test(name), reason) {
            (Err(e), None) => failures.push(e),
            (Ok(()), Some(reason)) => now_passing.push(format!("{name} (excluded because: {reason})")),
            _ => {}
        }
    }
    assert!(
        failures.is_empty() && now_passing.is_empty(),
        "{} of {} node tests failed:\n{}\n\nexcluded tests that now pass (remove them from EXCLUDED):\n{}",
        failures.len(),
        names.len(),
        failures.join("\n"),
        now_passing.join("\n")
    );
}

/// The fixture models: `<dir>/manifest.json` and their directories.
fn model_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(MODELS)
        .expect("tests/data/models")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        // Float-model fixtures (made by scripts/python/make_models.py) name their model under
        // "model"; other fixture directories (QDQ models, CLE) have manifests of their own.
        .filter(|p| {
            std::fs::read_to_string(p.join("manifest.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|manifest| manifest.get("model").is_some())
        })
        .collect();
    dirs.sort();
    dirs
}

fn read_raw(path: &Path, shape: &[usize], dtype: &str) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let data = match dtype {
        "float32" => {
            TensorData::F32(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
        "int64" => TensorData::I64(
            bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
        other => return Err(format!("{}: unsupported dtype {other}", path.display())),
    };
    Tensor::new(shape.to_vec(), data).map_err(|e| format!("{}: {e}", path.display()))
}

/// Errors of one output against onnxruntime's: (max per-element relative error, max absolute
/// error / max |reference|).
fn errors_against(got: &[f32], reference: &[f32]) -> (f64, f64) {
    let max_ref = reference.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let (mut max_rel, mut max_abs) = (0f64, 0f64);
    for (&g, &r) in got.iter().zip(reference) {
        let abs = (g as f64 - r as f64).abs();
        let rel = if abs == 0.0 { 0.0 } else { abs / (r as f64).abs() };
        if rel.is_nan() || rel > max_rel {
            max_rel = rel;
        }
        if abs.is_nan() || abs > max_abs {
            max_abs = abs;
        }
    }
    (max_rel, if max_ref > 0.0 { max_abs / max_ref } else { max_abs })
}

fn run_model(dir: &Path) -> Result<Vec<String>, String> {
    let label = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).map_err(|e| format!("{label}: {e}"))?)
            .map_err(|e| format!("{label}: manifest.json: {e}"))?;
    let field = |v: &serde_json::Value, key: &str| v.get(key).cloned().ok_or_else(|| format!("{label}: no {key}"));
    let model_file = field(&manifest, "model")?.as_str().map(String::from).ok_or("model is not a string")?;
    let bytes = std::fs::read(dir.join(&model_file)).map_err(|e| format!("{label}: {model_file}: {e}"))?;
    let model = qairt::onnx::decode_model(&bytes).map_err(|e| format!("{label}: {e}"))?;
    let mut external = BTreeMap::new();
    for location in qairt::onnx::external_data_files(&model) {
        let data = std::fs::read(dir.join(&location)).map_err(|e| format!("{label}: {location}: {e}"))?;
        external.insert(location, data);
    }
    let graph = import_model(&model, &external).map_err(|e| format!("{label}: {e}"))?;
    // (name, shape, dtype, file name of its raw data)
    type Spec = (String, Vec<usize>, String, String);
    let specs = |key: &str| -> Result<Vec<Spec>, String> {
        let list = field(&manifest, key)?;
        let list = list.as_array().ok_or_else(|| format!("{label}: {key} is not a list"))?;
        list.iter()
            .map(|spec| {
                let name = spec["name"].as_str().unwrap_or_default().to_string();
                let shape =
                    spec["shape"].as_array().map(|d| d.iter().filter_map(|v| v.as_u64()).map(|v| v as usize).collect());
                let dtype = spec["dtype"].as_str().unwrap_or("float32").to_string();
                // A name that is no file name (`a/b`) has its file given as `reference`.
                let file = spec["reference"].as_str().map_or_else(|| format!("{name}.raw"), str::to_string);
                Ok((name, shape.unwrap_or_default(), dtype, file))
            })
            .collect()
    };
    let (input_specs, output_specs) = (specs("inputs")?, specs("outputs")?);
    let samples = field(&manifest, "samples")?.as_u64().unwrap_or(0);
    if samples == 0 {
        return Err(format!("{label}: no samples"));
    }
    let mut lines = Vec::new();
    let mut worst: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for sample in 0..samples {
        let mut given = BTreeMap::new();
        for (name, shape, dtype, file) in &input_specs {
            let path = dir.join("inputs").join(sample.to_string()).join(file);
            given.insert(name.clone(), read_raw(&path, shape, dtype)?);
        }
        let inputs = graph
            .inputs
            .iter()
            .map(|&id| given.remove(graph.name(id)).ok_or_else(|| format!("{label}: no data for {:?}", graph.name(id))))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = interpret(&graph, &inputs, &mut |_, _| {}).map_err(|e| format!("{label}: {e}"))?;
        for (name, shape, dtype, file) in &output_specs {
            let path = dir.join("outputs").join(sample.to_string()).join(file);
            let reference = read_raw(&path, shape, dtype)?;
            let k = graph
                .outputs
                .iter()
                .position(|&id| graph.name(id) == name)
                .ok_or_else(|| format!("{label}: no graph output {name:?}"))?;
            let got = &outputs[k];
            if got.shape != reference.shape {
                return Err(format!("{label}: {name}: shape {:?}, onnxruntime {:?}", got.shape, reference.shape));
            }
            let (g, r) = match (got.as_f32(), reference.as_f32()) {
                (Some(g), Some(r)) => (g, r),
                _ if got.data == reference.data => continue,
                _ => return Err(format!("{label}: {name}: integer output differs from onnxruntime")),
            };
            let (rel, abs) = errors_against(g, r);
            if !(rel < 1e-4 || abs < 1e-5) {
                return Err(format!(
                    "{label}: sample {sample} output {name}: max relative error {rel:e}, max abs error / max |ref| \
                     {abs:e}\n  got          {}\n  onnxruntime  {}",
                    preview(g),
                    preview(r)
                ));
            }
            let entry = worst.entry(name.clone()).or_default();
            *entry = (entry.0.max(rel), entry.1.max(abs));
        }
    }
    for (name, (rel, abs)) in worst {
        lines.push(format!("{label}/{name}: max relative error {rel:.3e}, max abs error / max |ref| {abs:.3e}"));
    }
    Ok(lines)
}

#[test]
fn fixture_models_match_onnxruntime() {
    let dirs = model_dirs();
    assert!(!dirs.is_empty(), "no fixture models under {MODELS}");
    let mut failures = Vec::new();
    for dir in &dirs {
        match run_model(dir) {
            // Measured errors, shown with `cargo test --test conformance -- --nocapture`.
            Ok(lines) => lines.iter().for_each(|l| eprintln!("{l}")),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} of {} models failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}

#[test]
fn tolerances_reject_what_they_should() {
    let exact = Tolerance::Exact;
    assert!(exact.accepts(1.0, 1.0) && !exact.accepts(1.0, f32::from_bits(1.0f32.to_bits() + 1)));
    let close = Tolerance::Close { rtol: 1e-5, atol: 1e-6 };
    // 1e-6 + 1e-5 * 100 = 1.001e-3 around 100.
    assert!(close.accepts(100.001, 100.0) && !close.accepts(100.002, 100.0));
    assert!(!close.accepts(f32::NAN, 1.0));
    assert_eq!(Tolerance::Exact.loosest(close), close);
    // errors_against: |1.1 - 1| / 1 = 0.1 relative; abs 0.1 over max |ref| 2 = 0.05.
    let (rel, abs) = errors_against(&[1.1, 2.0], &[1.0, 2.0]);
    assert!((rel - 0.1).abs() < 1e-6 && (abs - 0.05).abs() < 1e-6, "{rel} {abs}");
}
