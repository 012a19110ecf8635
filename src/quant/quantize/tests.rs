//! Tests of the quantize stage on a small hand-built graph; expected encodings are computed
//! by hand from the SDK rules (arithmetic in the comments).
//!
//! Graph: x [1,2,1,1] -> Conv(w [2,2,1,1], b [2]) -> y -> Relu -> r -> Reshape [1,2] -> f
//!        -> Gemm(B [3,2], C [3], trans_b) -> z -> Mul(k [3]) -> out.

use super::*;
use crate::ir::{Conv, TensorInfo, Window};
use crate::quant::aimet::{OverrideErrorKind, parse_overrides};
use crate::quant::policy::{OpQuantization, QuantPolicy};

struct Ids {
    x: TensorId,
    w: TensorId,
    b: TensorId,
    y: TensorId,
    r: TensorId,
    f: TensorId,
    gb: TensorId,
    gc: TensorId,
    z: TensorId,
    k: TensorId,
    out: TensorId,
}

fn graph() -> (Graph, Ids) {
    let mut g = Graph::default();
    let mut add =
        |name: &str, shape: Vec<usize>| g.add_tensor(TensorInfo { name: name.into(), dtype: DType::F32, shape });
    let ids = Ids {
        x: add("x", vec![1, 2, 1, 1]),
        w: add("conv.weight", vec![2, 2, 1, 1]),
        b: add("conv.bias", vec![2]),
        y: add("y", vec![1, 2, 1, 1]),
        r: add("r", vec![1, 2, 1, 1]),
        f: add("f", vec![1, 2]),
        gb: add("fc.weight", vec![3, 2]),
        gc: add("fc.bias", vec![3]),
        z: add("z", vec![1, 3]),
        k: add("k", vec![3]),
        out: add("out", vec![1, 3]),
    };
    let c = |shape: Vec<usize>, v: Vec<f32>| Tensor::from_f32(shape, v);
    // Channel 0 of w: max |w| = 0.5; channel 1: 0.254.
    g.constants.insert(ids.w, c(vec![2, 2, 1, 1], vec![0.5, -0.127, -0.254, 0.1]));
    g.constants.insert(ids.b, c(vec![2], vec![0.1, -0.2]));
    g.constants.insert(ids.gb, c(vec![3, 2], vec![0.4, -0.8, 0.1, 0.2, 0.3, -0.3]));
    g.constants.insert(ids.gc, c(vec![3], vec![0.01, 0.02, 0.03]));
    g.constants.insert(ids.k, c(vec![3], vec![2.0, -1.0, 0.5]));
    g.inputs = vec![ids.x];
    g.outputs = vec![ids.out];
    let window = Window { kernel: vec![1, 1], strides: vec![1, 1], pads: vec![0; 4], dilations: vec![1, 1] };
    let node = |name: &str, op: Op, inputs: Vec<TensorId>, out: TensorId| Node {
        name: name.into(),
        op,
        inputs,
        outputs: vec![out],
    };
    g.nodes = vec![
        node("conv", Op::Conv(Conv { window, group: 1 }), vec![ids.x, ids.w, ids.b], ids.y),
        node("relu", Op::Unary(crate::ops::Unary::Relu), vec![ids.y], ids.r),
        node("reshape", Op::Reshape(crate::ops::Reshape { shape: vec![1, 2] }), vec![ids.r], ids.f),
        node(
            "fc",
            Op::Gemm(crate::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true }),
            vec![ids.f, ids.gb, ids.gc],
            ids.z,
        ),
        node("mul", Op::Binary(crate::ops::Binary::Mul), vec![ids.z, ids.k], ids.out),
    ];
    g.validate().unwrap();
    (g, ids)
}

fn observed(values: &[f32]) -> TensorStats {
    let mut s = TensorStats::default();
    s.observe(values);
    s
}

/// Stats for every activation except f (the Reshape output must reuse r's encoding).
fn stats(ids: &Ids) -> CalibrationStats {
    let mut s = CalibrationStats::default();
    s.tensors.insert(ids.x, observed(&[-1.8, -1.0, 0.0, 0.5]));
    s.tensors.insert(ids.y, observed(&[-5.1, 5.1]));
    s.tensors.insert(ids.r, observed(&[0.0, 10.0]));
    s.tensors.insert(ids.z, observed(&[-20.0, -6.0]));
    s.tensors.insert(ids.out, observed(&[-1.0, 1.0]));
    s
}

fn per_tensor(q: &QuantizedGraph, id: TensorId) -> &Encoding {
    match &q.encodings[&id] {
        TensorEncoding::PerTensor(e) => e,
        other => panic!("expected per-tensor, got {other:?}"),
    }
}

fn per_channel(q: &QuantizedGraph, id: TensorId) -> &[Encoding] {
    match &q.encodings[&id] {
        TensorEncoding::PerChannel { axis: 0, channels } => channels,
        other => panic!("expected per-channel on axis 0, got {other:?}"),
    }
}

fn close(a: f32, b: f64) -> bool {
    (a as f64 - b).abs() <= 1e-6 * b.abs().max(1e-3)
}

#[test]
fn default_settings_follow_the_sdk_rules() {
    let (g, ids) = graph();
    let q = quantize(&g, &stats(&ids), &QuantSettings::default(), None).unwrap();
    // x: the guide's worked example: offset -200, scale 2.3/255.
    let x = per_tensor(&q, ids.x);
    assert_eq!(x.offset, -200);
    assert!(close(x.scale, 2.3 / 255.0));
    // r: [0, 10] -> offset 0, scale 10/255; f reuses it (no stats of its own).
    assert_eq!(per_tensor(&q, ids.r).offset, 0);
    assert!(close(per_tensor(&q, ids.r).scale, 10.0 / 255.0));
    assert_eq!(q.encodings[&ids.f], q.encodings[&ids.r]);
    // y, read only by the Relu, is squashed into it: r's grid, not its own [-5.1, 5.1].
    assert_eq!(q.encodings[&ids.y], q.encodings[&ids.r]);
    // z: [-20, -6] -> [-20, 0]: offset -255.
    assert_eq!(per_tensor(&q, ids.z).offset, -255);
    // out: [-1, 1]: scale 2/255, -min/scale = 127.5 -> 128.
    assert_eq!(per_tensor(&q, ids.out).offset, -128);
    // Conv weight per channel, symmetric: 0.5/127 and 0.254/127 = 0.002, offset -128.
    let w = per_channel(&q, ids.w);
    assert!(w.iter().all(|e| e.offset == -128 && e.symmetric && e.bitwidth == 8));
    assert!(close(w[0].scale, 0.5 / 127.0));
    assert!(close(w[1].scale, 0.002));
    // Conv bias int32 per channel: in_scale * w_scale[c] = (2.3/255) * (0.5/127), (2.3/255) * 0.002.
    let b = per_channel(&q, ids.b);
    assert!(b.iter().all(|e| e.bitwidth == 32 && e.offset == i32::MIN && e.symmetric));
    assert!(close(b[0].scale, 2.3 / 255.0 * 0.5 / 127.0));
    assert!(close(b[1].scale, 2.3 / 255.0 * 0.002));
    assert_eq!(b[0].scale, x.scale * w[0].scale, "the product of the stored f32 scales");
    // Gemm B per tensor, symmetric: max |B| = 0.8 -> 0.8/127; C: (10/255) * (0.8/127).
    let gb = per_tensor(&q, ids.gb);
    assert_eq!((gb.offset, gb.symmetric), (-128, true));
    assert!(close(gb.scale, 0.8 / 127.0));
    let gc = per_tensor(&q, ids.gc);
    assert_eq!((gc.bitwidth, gc.offset), (32, i32::MIN));
    assert!(close(gc.scale, 10.0 / 255.0 * 0.8 / 127.0));
    // The Mul constant [2, -1, 0.5] joins the activations: per tensor at the activation
    // bitwidth and schema (asymmetric 8 bits): scale 3/255, offset -1 / (3/255) = -85.
    let k = per_tensor(&q, ids.k);
    assert_eq!((k.bitwidth, k.offset, k.symmetric), (8, -85, false));
    assert!(close(k.scale, 3.0 / 255.0));
    assert_eq!(q.encodings.len(), 11);
}

#[test]
fn settings_change_the_rules() {
    let (g, ids) = graph();
    let settings = QuantSettings {
        act_bitwidth: 16,
        weight_bitwidth: 4,
        bias_bitwidth: 8,
        per_channel: false,
        act_schema: Schema::Symmetric,
        ..QuantSettings::default()
    };
    let q = quantize(&g, &stats(&ids), &settings, None).unwrap();
    // x symmetric 16-bit: 1.8 / 32767, offset -32768.
    let x = per_tensor(&q, ids.x);
    assert_eq!(x.offset, -32768);
    assert!(close(x.scale, 1.8 / 32767.0));
    // w per tensor, 4-bit symmetric: 0.5 / 7, offset -8.
    let w = per_tensor(&q, ids.w);
    assert_eq!(w.offset, -8);
    assert!(close(w.scale, 0.5 / 7.0));
    // 8-bit bias from its values, symmetric (param_schema): max |b| = 0.2 -> 0.2/127.
    let b = per_tensor(&q, ids.b);
    assert_eq!((b.bitwidth, b.offset), (8, -128));
    assert!(close(b.scale, 0.2 / 127.0));
}

#[test]
fn missing_stats_are_all_reported() {
    let (g, ids) = graph();
    let mut s = stats(&ids);
    s.tensors.remove(&ids.y);
    s.tensors.remove(&ids.z);
    let errors = quantize(&g, &s, &QuantSettings::default(), None).unwrap_err();
    assert_eq!(
        errors,
        vec![QuantError::MissingStats { tensor: "y".into() }, QuantError::MissingStats { tensor: "z".into() }]
    );
    assert_eq!(errors[0].to_string(), "no calibration statistics for activation \"y\"");
}

#[test]
fn tensors_without_finite_values_are_reported() {
    let (g, ids) = graph();
    let mut s = stats(&ids);
    s.tensors.insert(ids.y, observed(&[f32::NAN, f32::INFINITY]));
    let errors = quantize(&g, &s, &QuantSettings::default(), None).unwrap_err();
    assert_eq!(errors, vec![QuantError::NoFiniteValues { tensor: "y".into(), nonfinite: 2 }]);
}

#[test]
fn overrides_take_precedence_tensor_by_tensor() {
    let (g, ids) = graph();
    let o = parse_overrides(
        r#"{"activation_encodings": {
              "y": [{"bitwidth": 8, "dtype": "int", "is_symmetric": "False", "scale": 0.05, "offset": -100}],
              "r": [{"bitwidth": 16, "dtype": "int"}]},
            "param_encodings": {
              "fc.weight": [{"bitwidth": 8, "is_symmetric": "True", "scale": 0.01, "offset": -128},
                            {"bitwidth": 8, "is_symmetric": "True", "scale": 0.02, "offset": -128},
                            {"bitwidth": 8, "is_symmetric": "True", "scale": 0.03, "offset": -128}]}}"#,
    )
    .unwrap();
    let q = quantize(&g, &stats(&ids), &QuantSettings::default(), Some(&o)).unwrap();
    let y = per_tensor(&q, ids.y);
    assert_eq!((y.offset, y.scale), (-100, 0.05));
    // r: bitwidth-only override: 16 bits from its stats [0, 10]: 10 / 65535; f follows r.
    let r = per_tensor(&q, ids.r);
    assert_eq!((r.bitwidth, r.offset), (16, 0));
    assert!(close(r.scale, 10.0 / 65535.0));
    assert_eq!(q.encodings[&ids.f], q.encodings[&ids.r]);
    // Gemm B per channel from the file; the bias follows it per channel: r.scale * 0.01 ...
    let gb = per_channel(&q, ids.gb);
    assert_eq!(gb.iter().map(|e| e.scale).collect::<Vec<_>>(), vec![0.01, 0.02, 0.03]);
    let gc = per_channel(&q, ids.gc);
    assert_eq!(gc[2].scale, r.scale * 0.03);
    // Untouched tensors keep the default rules.
    assert_eq!(per_tensor(&q, ids.x).offset, -200);
}

/// SDK partial-override rule: a float Conv weight makes the conv's output and bias float.
#[test]
fn a_float_weight_makes_its_op_float() {
    let (g, ids) = graph();
    let o = parse_overrides(
        r#"{"activation_encodings": {}, "param_encodings": {"conv.weight": [{"bitwidth": 16, "dtype": "float"}]}}"#,
    )
    .unwrap();
    let q = quantize(&g, &stats(&ids), &QuantSettings::default(), Some(&o)).unwrap();
    for id in [ids.w, ids.b, ids.y] {
        assert_eq!(q.encodings[&id], TensorEncoding::Float { bitwidth: 16 }, "{}", g.name(id));
    }
    assert_eq!(per_tensor(&q, ids.x).offset, -200, "the conv input is not part of the rule");
    assert_eq!(per_tensor(&q, ids.r).offset, 0);
}

#[test]
fn override_problems_are_errors() {
    let (g, ids) = graph();
    let o = parse_overrides(r#"{"activation_encodings": {"conv.weight": [{"bitwidth": 8}]}, "param_encodings": {}}"#)
        .unwrap();
    let errors = quantize(&g, &stats(&ids), &QuantSettings::default(), Some(&o)).unwrap_err();
    assert!(matches!(&errors[..], [QuantError::Override(e)] if e.kind == OverrideErrorKind::WrongSection));
}

/// mse calibration through the stage: x gets 1.6e6 values in [0, 1) and one at 100 (bins of
/// 1/16: 100 / 2^-4 = 1600 < 2048). Candidate [0, k] costs `1.6e6 k^2 / (12 * 255^2) + (100 -
/// k)^2 = 2.050493 k^2 + (100 - k)^2`, least at k = 33 (see `calibration::tests`), so x's
/// scale is 33 / 255 where min-max gives 100 / 255. The weights go through the same search
/// over their own values (k = 100 down to 1 in steps of 1%): at most one step below min-max.
#[test]
fn mse_calibration_clips_the_outlier_and_keeps_small_weights() {
    let (g, ids) = graph();
    let mut s = stats(&ids);
    let mut v: Vec<f32> = (0..1_600_000).map(|i| (i % 1000) as f32 * 0.001).collect();
    v.push(100.0);
    s.tensors.insert(ids.x, observed(&v));
    let mse = QuantSettings {
        act_calibration: CalibrationMethod::Mse,
        param_calibration: CalibrationMethod::Mse,
        ..QuantSettings::default()
    };
    let q = quantize(&g, &s, &mse, None).unwrap();
    let x = per_tensor(&q, ids.x);
    assert_eq!(x.offset, 0);
    assert!(close(x.scale, 33.0 / 255.0), "{}", x.scale);
    let minmax = quantize(&g, &s, &QuantSettings::default(), None).unwrap();
    assert!(close(per_tensor(&minmax, ids.x).scale, 100.0 / 255.0));
    let scales = |q: &QuantizedGraph, id: TensorId| -> Vec<f32> {
        q.encodings[&id].integer_encodings().iter().map(|e| e.scale).collect()
    };
    for id in [ids.w, ids.gb, ids.k] {
        let (ours, reference) = (scales(&q, id), scales(&minmax, id));
        assert_eq!(ours.len(), reference.len());
        for (a, b) in ours.iter().zip(&reference) {
            assert!(*a <= *b && *a >= 0.99 * *b - 1e-9, "{}: {a} vs {b}", g.name(id));
        }
    }
}

#[test]
fn bad_settings_are_errors() {
    let (g, ids) = graph();
    let settings = QuantSettings { act_bitwidth: 4, bias_bitwidth: 16, ..QuantSettings::default() };
    let errors = quantize(&g, &stats(&ids), &settings, None).unwrap_err();
    assert_eq!(errors.len(), 2);
    assert!(errors[0].to_string().contains("act_bitwidth = 4"));
}

/// Percentile calibration: x gets 1000 values in [0, 0.999] plus an outlier at 100; the
/// 99.9% range drops the outlier, leaving a max within one histogram bin (0.0625) of 1.0.
#[test]
fn percentile_calibration_clips_outliers() {
    let (g, ids) = graph();
    let mut s = stats(&ids);
    let mut v: Vec<f32> = (0..1000).map(|i| i as f32 * 0.001).collect();
    v.push(100.0);
    s.tensors.insert(ids.x, observed(&v));
    let settings =
        QuantSettings { act_calibration: CalibrationMethod::Percentile, percentile: 99.9, ..QuantSettings::default() };
    let q = quantize(&g, &s, &settings, None).unwrap();
    let x = per_tensor(&q, ids.x);
    assert_eq!(x.offset, 0);
    assert!((0.9375..=1.0001).contains(&x.max), "{}", x.max);
}

/// numpy's percentile (linear) of [0, 1, ..., 10] at 90% is 9.0 and at 10% is 1.0.
#[test]
fn parameter_percentiles_interpolate_like_numpy() {
    let v: Vec<f32> = (0..=10).map(|i| i as f32).collect();
    assert_eq!(percentile_range(&v, 90.0), (1.0, 9.0));
    // [0, 10] at 95%: position 9.5 -> 9.5; 5% -> 0.5.
    assert_eq!(percentile_range(&v, 95.0), (0.5, 9.5));
}

#[test]
fn results_are_deterministic() {
    let (g, ids) = graph();
    let a = quantize(&g, &stats(&ids), &QuantSettings::default(), None).unwrap();
    let b = quantize(&g, &stats(&ids), &QuantSettings::default(), None).unwrap();
    assert_eq!(postcard::to_allocvec(&a).unwrap(), postcard::to_allocvec(&b).unwrap());
    assert_eq!(crate::quant::write_encodings_json(&a), crate::quant::write_encodings_json(&b));
}

#[test]
fn a_relu_input_that_is_also_a_graph_output_keeps_its_own_encoding() {
    let (mut g, ids) = graph();
    g.outputs.push(ids.y);
    let q = quantize(&g, &stats(&ids), &QuantSettings::default(), None).unwrap();
    // y: [-5.1, 5.1] -> the guide's example: scale 10.2/255 = 0.04, offset -128.
    assert_eq!(per_tensor(&q, ids.y).offset, -128);
    assert!(close(per_tensor(&q, ids.y).scale, 0.04));
}

fn htp_policy() -> QuantPolicy {
    let mut policy = QuantPolicy { float_bitwidth: 16, ..QuantPolicy::default() };
    policy.ops.insert("Sigmoid".into(), OpQuantization::FixedRange { min: 0.0, max: 1.0 });
    policy.ops.insert("Tanh".into(), OpQuantization::FixedRange { min: -1.0, max: 1.0 });
    policy
}

#[test]
fn per_row_quantizes_each_output_column_of_a_gemm() {
    let (g, ids) = graph();
    let settings = QuantSettings { per_row: true, ..QuantSettings::default() };
    let q = quantize_with(&g, Some(&stats(&ids)), &settings, None, &htp_policy()).unwrap();
    // fc.weight [3, 2] with trans_b: output rows on axis 0; max |row| = 0.8, 0.2, 0.3 -> /127.
    let rows = per_channel(&q, ids.gb);
    for (row, max) in rows.iter().zip([0.8, 0.2, 0.3]) {
        assert_eq!(row.offset, -128);
        assert!(close(row.scale, max / 127.0), "{row:?}");
    }
    // The int32 bias follows per row: in_scale (f = r's encoding: [0, 10] -> 10/255) * w_scale.
    match &q.encodings[&ids.gc] {
        TensorEncoding::PerChannel { axis: 0, channels } => {
            assert!(close(channels[0].scale, 10.0 / 255.0 * 0.8 / 127.0), "{:?}", channels[0]);
        }
        other => panic!("expected a per-row bias, got {other:?}"),
    }
    // A backend that does not list Gemm keeps it per tensor.
    let mut policy = htp_policy();
    policy.per_channel_ops.remove("Gemm");
    let q = quantize_with(&g, Some(&stats(&ids)), &settings, None, &policy).unwrap();
    assert!(matches!(q.encodings[&ids.gb], TensorEncoding::PerTensor(_)));
}

#[test]
fn fixed_range_rules_ignore_the_data() {
    let mut b = crate::ir::test_graph::GraphBuilder::new();
    let x = b.input("x", &[1, 4]);
    let s = b.node("sig", Op::Unary(crate::ops::Unary::Sigmoid), &[x], "s", &[1, 4]);
    let t = b.node("tanh", Op::Unary(crate::ops::Unary::Tanh), &[s], "t", &[1, 4]);
    b.output(t);
    let g = b.finish();
    let mut st = CalibrationStats::default();
    st.tensors.insert(x, observed(&[-3.0, 3.0]));
    // Observed ranges that a calibrated encoding would follow; the rules must not.
    st.tensors.insert(s, observed(&[0.2, 0.4]));
    st.tensors.insert(t, observed(&[0.1, 0.3]));
    let q = quantize_with(&g, Some(&st), &QuantSettings::default(), None, &htp_policy()).unwrap();
    // Sigmoid [0, 1] asymmetric 8-bit: scale 1/255, offset 0.
    let e = per_tensor(&q, s);
    assert_eq!(e.offset, 0);
    assert!(close(e.scale, 1.0 / 255.0));
    // Tanh [-1, 1] symmetric: scale 1/127, offset -128.
    let e = per_tensor(&q, t);
    assert_eq!(e.offset, -128);
    assert!(close(e.scale, 1.0 / 127.0));
}

#[test]
fn a_float_op_gets_convert_ops_on_both_sides() {
    let (g, ids) = graph();
    // The Gemm's output is float16: its weight and bias follow (coupling), and it reads the
    // integer f through a convert to float16; Mul (integer) reads z through a convert back.
    let o = parse_overrides(
        r#"{"activation_encodings": {"z": [{"bitwidth": 16, "dtype": "float"}]}, "param_encodings": {}}"#,
    )
    .unwrap();
    let q = quantize_with(&g, Some(&stats(&ids)), &QuantSettings::default(), Some(&o), &htp_policy()).unwrap();
    assert_eq!(q.encodings[&ids.z], TensorEncoding::Float { bitwidth: 16 });
    assert_eq!(q.encodings[&ids.gb], TensorEncoding::Float { bitwidth: 16 });
    let converts: Vec<&Node> = q.graph.nodes.iter().filter(|n| n.op == Op::Convert(crate::ops::Convert)).collect();
    assert_eq!(converts.len(), 2, "{:?}", q.graph.nodes);
    let fc = q.graph.nodes.iter().find(|n| n.name == "fc").unwrap();
    let fc_in = fc.inputs[0];
    assert_eq!(q.graph.name(fc_in), "f.convert_fp16");
    assert_eq!(q.encodings[&fc_in], TensorEncoding::Float { bitwidth: 16 });
    let mul = q.graph.nodes.iter().find(|n| n.name == "mul").unwrap();
    let mul_in = mul.inputs[0];
    assert_eq!(q.graph.name(mul_in), "z.convert_q8");
    // Calibrated on z's statistics [-20, -6]: all negative -> max 0, scale 20/255, offset -255.
    let e = per_tensor(&q, mul_in);
    assert_eq!(e.offset, -255);
    assert!(close(e.scale, 20.0 / 255.0));
    q.graph.validate().unwrap();
    // Each convert sits right before its reader.
    let pos = |name: &str| q.graph.nodes.iter().position(|n| n.name == name).unwrap();
    assert_eq!(pos("f.convert_fp16") + 1, pos("fc"));
    assert_eq!(pos("z.convert_q8") + 1, pos("mul"));
}

#[test]
fn float_fallback_propagates_and_keeps_the_rest_float() {
    let (g, ids) = graph();
    // Only r has an encoding: it flows forward through the Reshape to f, and to y by Relu
    // squashing; x, z and out have none and stay float.
    let o = parse_overrides(
        r#"{"activation_encodings": {"r": [{"bitwidth": 8, "min": 0.0, "max": 10.0}]}, "param_encodings": {}}"#,
    )
    .unwrap();
    let settings = QuantSettings { float_fallback: true, ..QuantSettings::default() };
    let q = quantize_with(&g, None, &settings, Some(&o), &htp_policy()).unwrap();
    // r's override: [0, 10] at 8 bits.
    let r = Encoding::from_range(0.0, 10.0, 8, Schema::Asymmetric);
    assert_eq!(per_tensor(&q, ids.r), &r);
    assert_eq!(per_tensor(&q, ids.f), &r, "propagated through the Reshape");
    for id in [ids.x, ids.z, ids.out] {
        assert_eq!(q.encodings[&id], TensorEncoding::Float { bitwidth: 16 }, "{}", g.name(id));
    }
    // The Conv would read the float x through a convert to integer, which needs statistics it
    // does not have: it runs float (weight and bias too), and its output y, squashed to r's
    // encoding, reaches the integer Relu through a convert carrying that encoding.
    assert_eq!(q.encodings[&ids.y], TensorEncoding::Float { bitwidth: 16 });
    assert_eq!(q.encodings[&ids.w], TensorEncoding::Float { bitwidth: 16 });
    let relu = q.graph.nodes.iter().find(|n| n.name == "relu").unwrap();
    let reads = relu.inputs[0];
    assert_eq!(q.graph.name(reads), "y.convert_q8");
    assert_eq!(per_tensor(&q, reads), &r);
    // Without statistics nothing asks for calibration data.
    assert!(quantize_with(&g, None, &QuantSettings::default(), None, &htp_policy()).is_err());
}

#[test]
fn float_fallback_propagates_forward_through_relu_and_concat() {
    let mut b = crate::ir::test_graph::GraphBuilder::new();
    let x = b.input("x", &[1, 2]);
    let a = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[x], "a", &[1, 2]);
    let c = b.node("cat", Op::Concat(crate::ops::Concat { axis: 1 }), &[x, a], "c", &[1, 4]);
    let r = b.node("reshape", Op::Reshape(crate::ops::Reshape { shape: vec![4] }), &[c], "r", &[4]);
    b.output(r);
    let g = b.finish();
    let o = parse_overrides(
        r#"{"activation_encodings": {"x": [{"bitwidth": 8, "min": -1.0, "max": 2.0}]}, "param_encodings": {}}"#,
    )
    .unwrap();
    let settings = QuantSettings { float_fallback: true, ..QuantSettings::default() };
    let q = quantize_with(&g, None, &settings, Some(&o), &htp_policy()).unwrap();
    let xe = per_tensor(&q, x).clone();
    assert_eq!(per_tensor(&q, a), &xe);
    assert_eq!(per_tensor(&q, c), &xe, "identical inputs give their own encoding");
    assert_eq!(per_tensor(&q, r), &xe);
    assert!(q.graph.nodes.iter().all(|n| n.op != Op::Convert(crate::ops::Convert)));
}

#[test]
fn restricted_steps_apply_to_matmul_inputs() {
    let mut b = crate::ir::test_graph::GraphBuilder::new();
    let x = b.input("x", &[1, 2]);
    let w = b.constant("w", &[2, 2], vec![0.5, -1.0, 0.25, 0.75]);
    let y = b.node("mm", Op::MatMul(crate::ops::MatMul), &[x, w], "y", &[1, 2]);
    b.output(y);
    let g = b.finish();
    let mut st = CalibrationStats::default();
    st.tensors.insert(x, observed(&[-0.5, 2.0]));
    st.tensors.insert(y, observed(&[-1.0, 1.0]));
    let settings = QuantSettings { restrict_steps: Some((-0x80, 0x7F)), ..QuantSettings::default() };
    let q = quantize_with(&g, Some(&st), &settings, None, &htp_policy()).unwrap();
    // x: asymmetric [-0.5, 2.0] first (nudged: zero at 51 -> min -0.5, max 2.0), then the
    // restricted grid: new_max 2.0, scale 4/255, offset -128.
    let e = per_tensor(&q, x);
    assert_eq!(e.offset, -128);
    assert!(close(e.scale, 4.0 / 255.0), "{e:?}");
    // w: max |w| = 1.0 -> scale 2/255 (not the default 1/127).
    let e = per_tensor(&q, w);
    assert_eq!(e.offset, -128);
    assert!(close(e.scale, 2.0 / 255.0), "{e:?}");
    // The output is not a MatMul input: calibrated as usual.
    assert!(!per_tensor(&q, y).symmetric);
}

#[test]
fn adjusted_weights_widen_to_keep_zero_exact() {
    let (g, ids) = graph();
    let settings = QuantSettings {
        param_calibration: CalibrationMethod::Adjusted,
        param_schema: Schema::Asymmetric,
        per_channel: false,
        ..QuantSettings::default()
    };
    let q = quantize(&g, &stats(&ids), &settings, None).unwrap();
    // k = [2, -1, 0.5]: range [-1, 2], scale 3/255, -min/scale = 85 exactly -> offset -85.
    let e = per_tensor(&q, ids.k);
    assert_eq!(e.offset, -85);
    assert!(close(e.scale, 3.0 / 255.0));
    let bad = QuantSettings { weight_bitwidth: 4, ..settings };
    assert!(quantize(&g, &stats(&ids), &bad, None).is_err());
}

#[test]
fn a_bias_that_would_overflow_int32_gets_its_own_grid() {
    let mut b = crate::ir::test_graph::GraphBuilder::new();
    let x = b.input("x", &[1, 1]);
    let w = b.constant("w", &[1, 1], vec![0.5]);
    let c = b.constant("c", &[1], vec![5.0]);
    let gemm = Op::Gemm(crate::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false });
    let y = b.node("fc", gemm, &[x, w, c], "y", &[1, 1]);
    b.output(y);
    let g = b.finish();
    let mut st = CalibrationStats::default();
    st.tensors.insert(x, observed(&[-1.0, 1.0]));
    st.tensors.insert(y, observed(&[4.0, 6.0]));
    let settings = QuantSettings { act_bitwidth: 16, weight_bitwidth: 16, ..QuantSettings::default() };
    let q = quantize(&g, &st, &settings, None).unwrap();
    // in_scale ~ 2/65535 = 3.05e-5, w_scale = 0.5/32767 = 1.53e-5: 5.0 / 4.66e-10 = 1.07e10 codes,
    // beyond int32; the bias takes scale 5 / (2^31 - 1) instead.
    let e = per_tensor(&q, c);
    assert_eq!((e.bitwidth, e.offset), (32, i32::MIN));
    assert!(close(e.scale, 5.0 / 2147483647.0), "{e:?}");
    // At 8 bits the product scale fits: QNN's in_scale * w_scale.
    let q = quantize(&g, &st, &QuantSettings::default(), None).unwrap();
    let (xs, ws) = (per_tensor(&q, x).scale, per_tensor(&q, w).scale);
    assert_eq!(per_tensor(&q, c).scale, xs * ws);
}

#[test]
fn relu_squashing_follows_the_rules() {
    let (g, ids) = graph();
    // With the rule (the htp default) the Conv output y shares the Relu output's encoding:
    // r observed [0, 10] -> scale 10/255, offset 0.
    let q = quantize_with(&g, Some(&stats(&ids)), &QuantSettings::default(), None, &htp_policy()).unwrap();
    assert_eq!(per_tensor(&q, ids.y), per_tensor(&q, ids.r));
    // ... and verify finds that pair from the encodings alone.
    let pairs: Vec<(String, String)> = super::squashed_producers(&q).into_iter().collect();
    assert_eq!(pairs, [(g.name(ids.y).to_string(), g.name(ids.r).to_string())]);
    // One grid reaching below 0 on both (AIMET's encodings for a kept BatchNorm and its Relu):
    // y keeps its negative values, so it is no squashed producer.
    let mut below = q.clone();
    let grid = TensorEncoding::PerTensor(Encoding::from_range(-5.0, 10.0, 8, Schema::Asymmetric));
    below.encodings.insert(ids.y, grid.clone());
    below.encodings.insert(ids.r, grid);
    assert!(super::squashed_producers(&below).is_empty());
    // A backend whose rules do not squash keeps y's own range [-5.1, 5.1].
    let mut policy = htp_policy();
    policy.squashing_ops.clear();
    let q = quantize_with(&g, Some(&stats(&ids)), &QuantSettings::default(), None, &policy).unwrap();
    let y = per_tensor(&q, ids.y);
    assert!(y.offset < 0 && close(y.scale, 10.2 / 255.0), "{y:?}");
    assert!(super::squashed_producers(&q).is_empty());
}

/// A DequantizeLinear of an integer graph input with a run-time scale, and a QuantizeLinear
/// with a constant scale, on the HTP: the scales are parameters, never encoded or converted
/// (they stay float32), the integer codes are native, DQ's output is float (float16 on the HTP).
#[test]
fn scales_of_quantized_compute_ops_stay_float32_on_htp() {
    let mut g = Graph::default();
    let mut add =
        |name: &str, dtype: DType, shape: Vec<usize>| g.add_tensor(TensorInfo { name: name.into(), dtype, shape });
    let codes = add("codes", DType::U8, vec![4]);
    let rs = add("rs", DType::F32, vec![]);
    let d = add("d", DType::F32, vec![4]);
    let s = add("s", DType::F32, vec![]);
    let q = add("q", DType::U8, vec![4]);
    g.constants.insert(s, Tensor::scalar_f32(0.5));
    g.inputs = vec![codes, rs];
    g.outputs = vec![q];
    let dq = crate::ops::DequantizeLinear { axis: 0, block_size: 0, to: None };
    let qz = crate::ops::QuantizeLinear { axis: 0, block_size: 0, to: DType::U8, saturate: true, precision: None };
    g.nodes = vec![
        Node { name: "dq".into(), op: Op::DequantizeLinear(dq), inputs: vec![codes, rs], outputs: vec![d] },
        Node { name: "q".into(), op: Op::QuantizeLinear(qz), inputs: vec![d, s], outputs: vec![q] },
    ];
    g.validate().unwrap();
    let mut st = CalibrationStats::default();
    st.tensors.insert(rs, observed(&[0.25]));
    st.tensors.insert(d, observed(&[-1.0, 1.0]));
    let quantized = quantize_with(&g, Some(&st), &QuantSettings::default(), None, &htp_policy()).unwrap();
    assert!(!quantized.encodings.contains_key(&rs), "{:?}", quantized.encodings.get(&rs));
    assert!(!quantized.encodings.contains_key(&s), "{:?}", quantized.encodings.get(&s));
    assert_eq!(quantized.encodings[&d], TensorEncoding::Float { bitwidth: 16 });
    // Only d is converted (float16 -> float16 needs none): the scales are read as they are.
    assert!(
        quantized.graph.nodes.iter().all(|n| n.op != Op::Convert(crate::ops::Convert)),
        "{:?}",
        quantized.graph.nodes
    );
    let htp = crate::compile::standard_rules().get("htp").cloned().unwrap();
    let program = crate::compile::compile(&quantized, &htp).unwrap();
    for id in [rs, s] {
        assert_eq!(program.tensor(id).unwrap().repr, crate::compile::Repr::F32, "{}", g.name(id));
    }
    assert_eq!(program.tensor(q).unwrap().repr, crate::compile::Repr::Native(DType::U8));
}

#[test]
fn a_masking_tensor_and_its_reader_stay_float() {
    // y holds scores plus a float32.lowest mask: an integer grid over [lowest, 1] would give
    // every score one code, so y (float32.lowest seen next to finite values) and r, the output
    // of the op reading it (relu), run in the backend's float bitwidth.
    let (g, ids) = graph();
    let mut s = stats(&ids);
    s.tensors.insert(ids.y, observed(&[f32::MIN, -0.5, 0.25]));
    let q = quantize(&g, &s, &QuantSettings::default(), None).unwrap();
    assert!(matches!(q.encodings.get(&ids.y), Some(TensorEncoding::Float { .. })), "{:?}", q.encodings.get(&ids.y));
    assert!(matches!(q.encodings.get(&ids.r), Some(TensorEncoding::Float { .. })), "{:?}", q.encodings.get(&ids.r));
    // Without the sentinel y is an ordinary calibrated activation.
    let q = quantize(&g, &stats(&ids), &QuantSettings::default(), None).unwrap();
    assert!(matches!(q.encodings.get(&ids.y), Some(TensorEncoding::PerTensor(_))));
}

#[test]
fn overrides_of_every_weight_make_weight_bitwidth_a_no_op_and_partial_ones_do_not() {
    use crate::quant::pinned::{PinnedSetting, pinned_settings};
    let (g, ids) = graph();
    let weights = ["conv.weight", "fc.weight", "k"];
    let entry = r#"[{"bitwidth": 8, "dtype": "int", "is_symmetric": "True", "min": -1.0, "max": 1.0}]"#;
    let file = |names: &[&str]| {
        let params: Vec<String> = names.iter().map(|n| format!("{n:?}: {entry}")).collect();
        let text = format!(r#"{{"activation_encodings": {{}}, "param_encodings": {{{}}}}}"#, params.join(", "));
        parse_overrides(&text).unwrap()
    };
    let asks_16 = QuantSettings { weight_bitwidth: 16, per_channel: false, ..QuantSettings::default() };

    let all = file(&weights);
    let q = quantize(&g, &stats(&ids), &asks_16, Some(&all)).unwrap();
    assert_eq!(
        pinned_settings(&q, &all, &asks_16),
        [PinnedSetting { key: "weight_bitwidth", asked: 16, given: vec![8], tensors: 3 }],
        "the biases (conv.bias, fc.bias) are not weights"
    );

    let some = file(&weights[..2]);
    let q = quantize(&g, &stats(&ids), &asks_16, Some(&some)).unwrap();
    assert_eq!(pinned_settings(&q, &some, &asks_16), [], "k still follows the setting");

    let asks_8 = QuantSettings { weight_bitwidth: 8, ..asks_16 };
    let q = quantize(&g, &stats(&ids), &asks_8, Some(&all)).unwrap();
    assert_eq!(pinned_settings(&q, &all, &asks_8), [], "the setting agrees with the overrides");
}

/// The digits model optimized with its BatchNorms kept (`batchnorm_folding = false`), and its
/// statistics over one calibration sample.
fn digits_with_batchnorms() -> (Graph, CalibrationStats) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digits");
    let model = crate::onnx::decode_model(&std::fs::read(dir.join("model.onnx")).unwrap()).unwrap();
    let graph = crate::onnx::import(&model, &Default::default(), &Default::default()).unwrap();
    let options = crate::passes::OptimizeOptions { keep_batchnorms: true, ..Default::default() };
    let (graph, _) = crate::passes::optimize_with(graph, &options).unwrap();
    let bytes = std::fs::read(dir.join("calib/raw/calib_000.raw")).unwrap();
    let x: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let mut collector = crate::quant::StatsCollector::new(&graph);
    crate::runtime::interpret(&graph, &[Tensor::from_f32(vec![1, 1, 8, 8], x)], &mut |id, t| collector.observe(id, t))
        .unwrap();
    (graph, collector.finish())
}

/// A kept BatchNorm's gamma is quantized per tensor, asymmetric at 8 bits, as AIMET's QuantSim
/// quantizes it on the unfolded model: the digits model's `bn1.weight` gets the encoding AIMET
/// exported (examples/digits/aimet/unfolded/encodings_v1.0.0.json: scale 0.004352470005259794,
/// offset 0, `is_sym` false); beta, mean and var stay float. A target folding its BatchNorms
/// leaves a BatchNorm the fold could not take all float, as before.
#[test]
fn a_kept_batchnorms_gamma_is_quantized_as_aimet_does() {
    let (g, stats) = digits_with_batchnorms();
    let name = |n: &str| g.names()[n];
    let settings = QuantSettings { batchnorm_folding: false, ..QuantSettings::default() };
    let q = quantize_with(&g, Some(&stats), &settings, None, &htp_policy()).unwrap();
    let gamma = per_tensor(&q, name("bn1.weight"));
    assert_eq!((gamma.bitwidth, gamma.offset, gamma.symmetric), (8, 0, false));
    assert!((f64::from(gamma.scale) / 0.004352470005259794 - 1.0).abs() < 1e-6, "{gamma:?}");
    for statistic in ["bn1.bias", "bn1.running_mean", "bn1.running_var"] {
        assert!(!q.encodings.contains_key(&name(statistic)), "{statistic} stays float");
    }
    let folding = quantize_with(&g, Some(&stats), &QuantSettings::default(), None, &htp_policy()).unwrap();
    assert!(!folding.encodings.contains_key(&name("bn1.weight")));
}
