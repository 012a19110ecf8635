//! Tests of `compile` (legality, lowering, memory planning) and of the `model.bin` format.

use super::test_graphs::{Builder, conv_relu, conv_relu_quantized, enc, per_tensor};
use super::*;
use crate::ir::{DType, Op, TensorInfo};
use crate::quant::encoding::{QuantizedGraph, TensorEncoding};

fn backend(name: &str) -> BackendRules {
    standard_rules().get(name).cloned().expect("standard backend")
}

fn constant_data(program: &Program, id: TensorId) -> &[u8] {
    match &program.tensor(id).unwrap().storage {
        Storage::Constant { data } => data,
        other => panic!("not a constant: {other:?}"),
    }
}

#[test]
fn htp_stores_weights_as_codes_and_biases_as_32_bit() {
    let (q, ids) = conv_relu_quantized();
    let program = compile(&q, &backend("htp")).unwrap();
    assert!(program.quantized);
    assert_eq!(program.backend, "htp");
    // W = [1.5, -0.51], per channel scales [1/64, 1/128], offset -128:
    // 1.5 * 64 = 96 -> 224;  -0.51 * 128 = -65.28 -> -65 -> 63.
    assert_eq!(constant_data(&program, ids.w), [224, 63]);
    // B = [0.1, -0.2], scales [1/1024, 1/2048], offset -2^31:
    // 102.4 -> 102 -> 0x8000_0066;  -409.6 -> -410 -> 0x7FFF_FE66 (u32 little-endian).
    assert_eq!(constant_data(&program, ids.b), [0x66, 0, 0, 0x80, 0x66, 0xFE, 0xFF, 0x7F]);
    let w = program.tensor(ids.w).unwrap();
    assert_eq!(
        w.repr,
        Repr::Quant(QuantParams {
            bitwidth: 8,
            axis: Some(0),
            scales: vec![1.0 / 64.0, 1.0 / 128.0],
            offsets: vec![-128, -128],
            block: None,
        })
    );
    // Activations: x, y, z are 4, 8, 8 bytes (u8 codes).
    for (id, bytes) in [(ids.x, 4), (ids.y, 8), (ids.z, 8)] {
        match program.tensor(id).unwrap().storage {
            Storage::Arena { bytes: b, offset } => {
                assert_eq!(b, bytes);
                assert_eq!(offset % 16, 0);
            }
            ref other => panic!("{other:?}"),
        }
    }
    assert_eq!(program.naive_activation_bytes(), 20);
    // x [0,1] and z [2,3] do not overlap in time and can share; y overlaps both:
    // y (8 bytes, placed first among the largest) @0, z @16, x @16 -> arena 24.
    assert_eq!(program.peak_activation_bytes(), 24);
    assert_eq!(program.steps.iter().map(|s| s.node.as_str()).collect::<Vec<_>>(), ["conv", "relu"]);
    assert_eq!(program.tensor_name(ids.y), Some("y"));
    assert_eq!(program.find_tensor("z"), Some(ids.z));
}

#[test]
fn four_bit_weights_are_packed_two_per_byte() {
    let (q, ids) = conv_relu_quantized();
    let mut q = q;
    // Per-tensor 4-bit, scale 1/4, offset -8: 1.5 -> 6 -> 14; -0.51 -> -2.04 -> -2 -> 6.
    // Packed low nibble first: 14 | 6 << 4 = 0x6E.
    q.encodings.insert(ids.w, per_tensor(4, 0.25, -8));
    let program = compile(&q, &backend("htp")).unwrap();
    assert_eq!(constant_data(&program, ids.w), [0x6E]);
}

#[test]
fn cpu_compiles_a_float_graph_with_float_weights() {
    let (b, ids) = conv_relu();
    let program = compile(&b.finish(), &backend("cpu")).unwrap();
    assert!(!program.quantized);
    let mut expected = Vec::new();
    for v in [1.5f32, -0.51] {
        expected.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(constant_data(&program, ids.w), expected.as_slice());
    assert_eq!(program.naive_activation_bytes(), 16 + 32 + 32);
}

#[test]
fn the_cpu_backend_rejects_encodings() {
    let (q, _) = conv_relu_quantized();
    let err = compile(&q, &backend("cpu")).unwrap_err();
    assert_eq!(err, CompileError::QuantizedOnFloatBackend { tensor: "x".into(), bitwidth: 8, backend: "cpu".into() });
    assert!(err.to_string().contains("runs float tensors only"), "{err}");
    assert!(err.help().unwrap().contains("htp"));
}

#[test]
fn a_quantized_backend_rejects_a_missing_activation_encoding() {
    let (mut q, ids) = conv_relu_quantized();
    q.encodings.remove(&ids.y);
    let err = compile(&q, &backend("htp")).unwrap_err();
    assert_eq!(
        err,
        CompileError::MissingEncoding { tensor: "y".into(), role: TensorRole::Activation, backend: "htp".into() }
    );
    assert_eq!(err.to_string(), "activation tensor \"y\" has no encoding; backend \"htp\" runs quantized tensors only");
    assert!(err.help().is_some());
}

#[test]
fn a_quantized_backend_rejects_a_missing_weight_encoding() {
    let (mut q, ids) = conv_relu_quantized();
    q.encodings.remove(&ids.w);
    let err = compile(&q, &backend("htp")).unwrap_err();
    assert!(
        matches!(err, CompileError::MissingEncoding { ref tensor, role: TensorRole::Weight, .. } if tensor == "conv.weight")
    );
}

#[test]
fn an_unencoded_bias_stays_float_on_a_quantized_backend() {
    let (mut q, ids) = conv_relu_quantized();
    q.encodings.remove(&ids.b);
    let program = compile(&q, &backend("htp")).unwrap();
    assert_eq!(program.tensor(ids.b).unwrap().repr, Repr::F32);
    assert_eq!(constant_data(&program, ids.b).len(), 8);
}

#[test]
fn a_three_bit_weight_is_refused_with_the_allowed_set() {
    let (mut q, ids) = conv_relu_quantized();
    q.encodings.insert(ids.w, per_tensor(3, 0.5, -4));
    let err = compile(&q, &backend("htp")).unwrap_err();
    assert_eq!(
        err,
        CompileError::BitwidthNotAllowed {
            tensor: "conv.weight".into(),
            role: TensorRole::Weight,
            bitwidth: 3,
            allowed: vec![4, 8, 16],
            backend: "htp".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "weight tensor \"conv.weight\" is encoded with 3 bits; backend \"htp\" accepts weight bitwidths [4, 8, 16]"
    );
    assert_eq!(err.help().unwrap(), "set weight_bitwidth to one of [4, 8, 16] for this target, or change the override");
}

#[test]
fn a_backend_without_bias_bitwidths_says_so() {
    let text = r#"
[backend]
name = "nobias"
quantized = true
activation_bitwidths = [8]
weight_bitwidths = [8]
per_channel_ops = ["Conv"]
supported_ops = ["Conv", "Relu"]
"#;
    let rules = parse_rules("rules/nobias.toml", text).unwrap();
    let (q, _) = conv_relu_quantized();
    let err = compile(&q, rules.get("nobias").unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bias tensor \"conv.bias\" is encoded with 32 bits; backend \"nobias\" takes no integer bias tensors"
    );
    assert!(err.help().unwrap().contains("bias_bitwidths"));
}

#[test]
fn a_32_bit_activation_is_refused() {
    let (mut q, ids) = conv_relu_quantized();
    q.encodings.insert(ids.z, per_tensor(32, 0.25, 0));
    let err = compile(&q, &backend("htp")).unwrap_err();
    assert!(matches!(err, CompileError::BitwidthNotAllowed { bitwidth: 32, ref allowed, .. } if allowed == &[8, 16]));
}

#[test]
fn float32_is_refused_by_htp_and_float16_by_cpu() {
    let (mut q, ids) = conv_relu_quantized();
    q.encodings.insert(ids.y, TensorEncoding::Float { bitwidth: 32 });
    let err = compile(&q, &backend("htp")).unwrap_err();
    assert_eq!(
        err,
        CompileError::FloatNotAllowed { tensor: "y".into(), bitwidth: 32, allowed: vec![16], backend: "htp".into() }
    );
    // float16 is what the HTP runs for ops mixed precision keeps in float.
    q.encodings.insert(ids.y, TensorEncoding::Float { bitwidth: 16 });
    let program = compile(&q, &backend("htp")).unwrap();
    assert_eq!(program.tensor(ids.y).unwrap().repr, Repr::Float { bitwidth: 16 });

    let (mut b, ids) = conv_relu();
    b.encode(ids.y, TensorEncoding::Float { bitwidth: 16 });
    let q = b.finish();
    assert!(matches!(compile(&q, &backend("cpu")), Err(CompileError::FloatNotAllowed { bitwidth: 16, .. })));
    // The gpu backend runs float16: its weights are stored as binary16 when encoded so.
    let program = compile(&q, &backend("gpu")).unwrap();
    assert_eq!(program.tensor(ids.y).unwrap().repr, Repr::Float { bitwidth: 16 });
    assert!(matches!(program.tensor(ids.y).unwrap().storage, Storage::Arena { bytes: 16, .. }));
}

#[test]
fn per_channel_encodings_only_for_weights_of_per_channel_ops() {
    let (mut q, ids) = conv_relu_quantized();
    q.encodings.insert(ids.y, TensorEncoding::PerChannel { axis: 1, channels: vec![enc(8, 0.1, -128); 2] });
    let err = compile(&q, &backend("htp")).unwrap_err();
    assert!(matches!(err, CompileError::PerChannelNotAllowed { ref tensor, .. } if tensor == "y"), "{err}");

    // A constant MatMul operand is a weight: per-row (along its output axis) where the
    // backend lists MatMul in per_channel_ops, refused where it does not.
    let matmul_graph = || {
        let mut b = Builder::default();
        let x = b.input("x", &[1, 2]);
        let w = b.constant("mm.rhs", &[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let y = b.node("mm", Op::MatMul(crate::ops::MatMul), &[x, w], "y", &[1, 2]);
        b.output(y);
        b.encode(x, per_tensor(8, 0.1, -128));
        b.encode(y, per_tensor(8, 0.1, -128));
        b.encode(w, TensorEncoding::PerChannel { axis: 1, channels: vec![enc(8, 0.1, -128); 2] });
        b.finish()
    };
    compile(&matmul_graph(), &backend("htp")).unwrap();
    let text = r#"
[backend]
name = "convonly"
quantized = true
activation_bitwidths = [8]
weight_bitwidths = [8]
per_channel_ops = ["Conv"]
"#;
    let rules = parse_rules("rules/convonly.toml", text).unwrap();
    let err = compile(&matmul_graph(), rules.get("convonly").unwrap()).unwrap_err();
    match err {
        CompileError::PerChannelNotAllowed { tensor, reason, .. } => {
            assert_eq!(tensor, "mm.rhs");
            assert!(reason.contains("\"mm\" (MatMul)"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_channel_gemm_weights_need_gemm_in_per_channel_ops() {
    let gemm_graph = || {
        let mut b = Builder::default();
        let x = b.input("x", &[1, 2]);
        let w = b.constant("fc.weight", &[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let op = Op::Gemm(crate::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true });
        let y = b.node("fc", op, &[x, w], "y", &[1, 2]);
        b.output(y);
        b.encode(x, per_tensor(8, 0.1, -128));
        b.encode(y, per_tensor(8, 0.1, -128));
        b.encode(w, TensorEncoding::PerChannel { axis: 0, channels: vec![enc(8, 0.1, -128); 2] });
        b.finish()
    };
    // Standard htp: per-row Gemm weights are accepted.
    compile(&gemm_graph(), &backend("htp")).unwrap();
    // A backend whose per-channel ops are Conv only refuses them, naming the reader.
    let text = r#"
[backend]
name = "convonly"
quantized = true
activation_bitwidths = [8]
weight_bitwidths = [8]
per_channel_ops = ["Conv"]
supported_ops = ["Conv", "Gemm"]
"#;
    let rules = parse_rules("rules/convonly.toml", text).unwrap();
    let err = compile(&gemm_graph(), rules.get("convonly").unwrap()).unwrap_err();
    match err {
        CompileError::PerChannelNotAllowed { tensor, reason, .. } => {
            assert_eq!(tensor, "fc.weight");
            assert!(reason.contains("\"fc\" (Gemm)"), "{reason}");
            assert!(reason.contains("[Conv]"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unencoded_batchnorm_statistics_stay_float_on_htp() {
    let mut b = Builder::default();
    let x = b.input("x", &[1, 2, 1, 1]);
    let stats: Vec<TensorId> = ["bn.scale", "bn.bias", "bn.mean", "bn.var"]
        .iter()
        .map(|name| b.constant(name, &[2], vec![1.0, 0.5]))
        .collect();
    let inputs = [x, stats[0], stats[1], stats[2], stats[3]];
    let y = b.node(
        "bn",
        Op::BatchNormalization(crate::ops::BatchNormalization { epsilon: 1e-5 }),
        &inputs,
        "y",
        &[1, 2, 1, 1],
    );
    b.output(y);
    b.encode(x, per_tensor(8, 0.1, -128));
    b.encode(y, per_tensor(8, 0.1, -128));
    let program = compile(&b.finish(), &backend("htp")).unwrap();
    for id in stats {
        assert_eq!(program.tensor(id).unwrap().repr, Repr::F32);
    }
}

#[test]
fn a_per_channel_encoding_must_match_the_channel_count() {
    let (mut q, ids) = conv_relu_quantized();
    q.encodings.insert(ids.w, TensorEncoding::PerChannel { axis: 0, channels: vec![enc(8, 0.1, -128); 3] });
    let err = compile(&q, &backend("htp")).unwrap_err();
    assert!(matches!(err, CompileError::InvalidEncoding { ref tensor, .. } if tensor == "conv.weight"), "{err}");
}

#[test]
fn unsupported_ops_name_the_node_and_backend() {
    let text = r#"
[backend]
name = "tiny"
quantized = false
float_bitwidths = [32]
supported_ops = ["Conv"]
"#;
    let rules = parse_rules("rules/tiny.toml", text).unwrap();
    let (b, _) = conv_relu();
    let err = compile(&b.finish(), rules.get("tiny").unwrap()).unwrap_err();
    assert_eq!(err, CompileError::UnsupportedOp { node: "relu".into(), op: "Relu".into(), backend: "tiny".into() });
    assert_eq!(err.to_string(), "node \"relu\": op Relu is not supported by backend \"tiny\"");
}

#[test]
fn integer_tensors_run_in_their_own_type_on_every_backend() {
    for name in ["cpu", "htp"] {
        let mut b = Builder::default();
        let x = b.input("x", &[2]);
        let y = b.node("id", Op::Identity(crate::ops::Identity), &[x], "y", &[2]);
        b.output(y);
        b.graph.graph.tensors[x.index()].dtype = DType::I64;
        b.graph.graph.tensors[y.index()].dtype = DType::I64;
        let program = compile(&b.finish(), &backend(name)).unwrap();
        assert_eq!(program.tensor(y).unwrap().repr, Repr::Native(DType::I64), "{name}");
        assert!(matches!(program.tensor(y).unwrap().storage, Storage::Arena { bytes: 16, .. }));
        // Values beyond float32's 24-bit mantissa survive: nothing goes through float.
        let input = crate::ir::Tensor::from_i64(vec![2], vec![(1 << 53) + 1, -7]);
        let out = crate::runtime::exec::execute(&program, std::slice::from_ref(&input), &mut |_, _| {}).unwrap();
        assert_eq!(out, vec![input], "{name}");
        // A float32 value for the int64 input is refused, naming the types.
        let wrong = crate::ir::Tensor::from_f32(vec![2], vec![1.0, 2.0]);
        let err = crate::runtime::exec::execute(&program, &[wrong], &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("int64"), "{err}");
    }
}

#[test]
fn an_invalid_graph_is_an_error_not_a_panic() {
    let (mut b, ids) = conv_relu();
    b.graph.graph.outputs.push(ids.w); // a constant as graph output
    assert!(matches!(compile(&b.finish(), &backend("cpu")), Err(CompileError::InvalidGraph(_))));

    let (mut q, _) = conv_relu_quantized();
    q.encodings.insert(TensorId(99), per_tensor(8, 0.1, 0));
    assert!(matches!(compile(&q, &backend("htp")), Err(CompileError::InvalidGraph(_))));
}

#[test]
fn the_memory_plan_shares_bytes_and_never_overlaps_live_tensors() {
    let q = super::test_graphs::branchy();
    let program = compile(&q, &backend("cpu")).unwrap();
    // Eight activations (x and seven node outputs) of 256 floats = 1024 bytes each.
    assert_eq!(program.naive_activation_bytes(), 8 * 1024);
    // Liveness in graph order (x@0, r1@1, s@2, r2@3, a@4, m@5, t@6, out@7): x lives to the
    // final Add (slot 7), r1 to slot 4; at slot 4 x, r1, r2 and a are live: 4 KiB is the
    // least any plan can use, and greedy-by-size reaches it.
    assert_eq!(program.peak_activation_bytes(), 4 * 1024);
    program.validate().unwrap();
}

// ---- model.bin ----

fn sample_program() -> Program {
    let (q, _) = conv_relu_quantized();
    compile(&q, &backend("htp")).unwrap()
}

#[test]
fn bytes_round_trip_and_are_deterministic() {
    let program = sample_program();
    let bytes = program.to_bytes();
    assert_eq!(&bytes[..8], b"QAIRTBIN");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), FORMAT_VERSION);
    assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 24);
    let body_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    assert_eq!(bytes.len() as u64, 24 + body_len + 32);
    assert_eq!(&bytes[bytes.len() - 32..], blake3::hash(&bytes[..bytes.len() - 32]).as_bytes());
    assert_eq!(Program::from_bytes(&bytes).unwrap(), program);
    // Same program, same bytes; compiling again gives the same program.
    assert_eq!(sample_program().to_bytes(), bytes);
}

#[test]
fn every_truncation_is_refused() {
    let bytes = sample_program().to_bytes();
    for len in 0..bytes.len() {
        let err = Program::from_bytes(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err, ModelBinError::TooShort { .. } | ModelBinError::Truncated { .. }),
            "length {len}: {err:?}"
        );
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let bytes = sample_program().to_bytes();
    for at in 0..bytes.len() {
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x10;
        let err = Program::from_bytes(&corrupt).unwrap_err();
        let expected_kind = match at {
            0..8 => matches!(err, ModelBinError::BadMagic { .. }),
            8..12 => matches!(err, ModelBinError::UnsupportedVersion { .. }),
            12..16 => matches!(err, ModelBinError::BadHeaderLength { .. }),
            16..24 => matches!(err, ModelBinError::Truncated { .. } | ModelBinError::TrailingBytes { .. }),
            _ => matches!(err, ModelBinError::ChecksumMismatch { .. }),
        };
        assert!(expected_kind, "byte {at}: {err:?}");
    }
}

#[test]
fn foreign_files_and_future_versions_are_refused() {
    let bytes = sample_program().to_bytes();
    let mut onnx = bytes.clone();
    onnx[..8].copy_from_slice(b"\x08\x07\x12\x07pyto");
    assert!(matches!(Program::from_bytes(&onnx), Err(ModelBinError::BadMagic { .. })));
    assert!(matches!(Program::from_bytes(b"hello"), Err(ModelBinError::BadMagic { .. })));
    assert!(matches!(Program::from_bytes(b"QAIRT"), Err(ModelBinError::TooShort { got: 5 })));

    let mut future = bytes.clone();
    future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Program::from_bytes(&future).unwrap_err();
    assert_eq!(err, ModelBinError::UnsupportedVersion { found: FORMAT_VERSION + 1, supported: FORMAT_VERSION });
    assert!(err.to_string().contains(&format!("version {}", FORMAT_VERSION + 1)));
    // A file from before per-block encodings (version 2) is refused, not misread.
    let mut older = bytes.clone();
    older[8..12].copy_from_slice(&2u32.to_le_bytes());
    let err = Program::from_bytes(&older).unwrap_err();
    assert_eq!(err, ModelBinError::UnsupportedVersion { found: 2, supported: 3 });
    assert!(err.to_string().contains("rebuild it"), "{err}");

    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Program::from_bytes(&longer), Err(ModelBinError::TrailingBytes { extra: 1 }));
}

/// Re-seals `body` under a valid header and checksum.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"QAIRTBIN");
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&24u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

#[test]
fn a_well_sealed_but_bad_body_is_refused() {
    assert!(matches!(Program::from_bytes(&seal(&[0xFF; 7])), Err(ModelBinError::Decode(_))));
    // Every strict prefix of a real body, sealed properly: a decode error, never a panic.
    let bytes = sample_program().to_bytes();
    let body = &bytes[24..bytes.len() - 32];
    for len in 0..body.len() {
        assert!(Program::from_bytes(&seal(&body[..len])).is_err(), "prefix {len}");
    }
    // Decodes, but its arena is too small for its tensors.
    let mut program = sample_program();
    program.arena_bytes = 4;
    let err = Program::from_bytes(&program.to_bytes()).unwrap_err();
    assert!(matches!(err, ModelBinError::Invalid(_)), "{err:?}");
}

#[test]
fn validate_catches_overlapping_live_tensors() {
    let (q, ids) = conv_relu_quantized();
    let mut program = compile(&q, &backend("htp")).unwrap();
    // Move z onto y's bytes: both are live at the relu step.
    let Storage::Arena { offset: y_offset, .. } = program.tensor(ids.y).unwrap().storage else { panic!() };
    if let Storage::Arena { offset, .. } = &mut program.tensors[ids.z.index()].storage {
        *offset = y_offset;
    }
    let err = program.validate().unwrap_err();
    assert!(err.0.contains("share arena bytes"), "{err}");
    // z starting at y's second or last byte still collides; z right after y is legal again
    // (the address-ordered sweep compares each region with its neighbours only).
    let Storage::Arena { bytes: y_bytes, .. } = program.tensor(ids.y).unwrap().storage else { panic!() };
    for (z_offset, legal) in [(y_offset + 1, false), (y_offset + y_bytes - 1, false), (y_offset + y_bytes, true)] {
        let mut moved = program.clone();
        moved.arena_bytes += y_bytes + 1;
        if let Storage::Arena { offset, .. } = &mut moved.tensors[ids.z.index()].storage {
            *offset = z_offset;
        }
        assert_eq!(moved.validate().is_ok(), legal, "z at {z_offset}, y at {y_offset}+{y_bytes}");
    }
}

#[test]
fn validate_catches_dangling_ids() {
    let mut program = sample_program();
    program.steps[0].inputs.push(TensorId(1000));
    assert!(program.validate().is_err());
    let mut program = sample_program();
    program.tensors.push(ProgramTensor {
        info: TensorInfo { name: "i".into(), dtype: DType::I64, shape: vec![1] },
        repr: Repr::F32,
        storage: Storage::Unused,
    });
    assert!(program.validate().unwrap_err().0.contains("int64"));
}

// ---- memory planning on real models ----

/// Imports and optimizes a model of the repository's test data.
fn real_model(dir: &str, file: &str) -> crate::ir::Graph {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let proto = crate::onnx::decode_model(&std::fs::read(root.join(file)).unwrap()).unwrap();
    let external = crate::onnx::external_data_files(&proto)
        .into_iter()
        .map(|location| {
            let bytes = std::fs::read(root.join(&location)).unwrap();
            (location, bytes)
        })
        .collect();
    let graph = crate::onnx::import(&proto, &external, &Default::default()).unwrap();
    crate::passes::optimize(graph).unwrap().0
}

/// The most activation bytes alive at one time in `program`'s schedule: no plan can do
/// better than this (an independent lower bound for the arena).
fn peak_live_bytes(program: &Program) -> u64 {
    let steps: Vec<(&[TensorId], &[TensorId])> =
        program.steps.iter().map(|s| (s.inputs.as_slice(), s.outputs.as_slice())).collect();
    let live = memory::live_intervals(program.tensors.len(), &program.inputs, &steps, &program.outputs);
    (0..=steps.len() as u32 + 1)
        .map(|t| {
            live.iter()
                .zip(&program.tensors)
                .filter(|(iv, _)| iv.is_some_and(|iv| iv.start <= t && t <= iv.end))
                .map(|(_, tensor)| match tensor.storage {
                    Storage::Arena { bytes, .. } => bytes,
                    _ => 0,
                })
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn real_models_get_valid_plans_close_to_the_live_bound() {
    for (dir, file) in [
        ("examples/digits", "model.onnx"),
        ("tests/data/models/resnet18_mini", "resnet18_mini.onnx"),
        ("tests/data/models/mobilenetv2_mini", "mobilenetv2_mini.onnx"),
        ("tests/data/models/misc_ops", "misc_ops.onnx"),
    ] {
        let graph = real_model(dir, file);
        let q = QuantizedGraph { graph, encodings: Default::default() };
        let program = compile(&q, &backend("cpu")).unwrap();
        program.validate().unwrap();
        let bound = peak_live_bytes(&program);
        let (arena, naive) = (program.peak_activation_bytes(), program.naive_activation_bytes());
        eprintln!(
            "{file}: {} steps, arena {arena} B, live bound {bound} B, naive {naive} B ({:.1}x smaller)",
            program.steps.len(),
            naive as f64 / arena as f64
        );
        assert!(bound <= arena && arena <= naive, "{file}: bound {bound}, arena {arena}, naive {naive}");
        // Greedy-by-size with 16-byte alignment stays within a few percent of the bound here.
        assert!(arena as f64 <= 1.25 * bound as f64, "{file}: arena {arena} vs bound {bound}");
        // Round trip of a real program.
        assert_eq!(Program::from_bytes(&program.to_bytes()).unwrap(), program);
    }
}
