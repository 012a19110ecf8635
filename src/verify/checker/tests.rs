//! Tests of the checker: configuration, verdicts, the graph walk, and the numpy reference
//! (`scripts/python/checker_reference.py` -> `tests/data/checker/reference.json`).

use super::*;
use crate::ir::test_graph::GraphBuilder;
use crate::ir::{Conv, Tensor, Window};
use serde_json::Value;

fn all_enabled(class: TensorClass) -> CheckerConfig {
    let mut config = CheckerConfig::default();
    for a in Algorithm::COLUMNS {
        if class.supports(a) {
            config.enable(class, a).unwrap();
        }
    }
    config
}

#[test]
fn defaults_are_the_sdks() {
    let c = CheckerConfig::default();
    let expect = [
        (Algorithm::MinMax, 10.0),
        (Algorithm::MaxDiff, 10.0),
        (Algorithm::Sqnr, 26.0),
        (Algorithm::Stats, 2.0),
        (Algorithm::DataDistribution, 0.6),
    ];
    for class in [&c.weight, &c.bias] {
        assert_eq!(class.thresholds, expect.into_iter().collect::<BTreeMap<_, _>>());
        assert!(class.data_range_analyzer);
    }
    assert_eq!(c.activation.thresholds, [(Algorithm::MinMax, 10.0)].into_iter().collect::<BTreeMap<_, _>>());
    assert!(!c.activation.data_range_analyzer);
    assert_eq!(c.input.thresholds, [(Algorithm::Stats, 2.0)].into_iter().collect::<BTreeMap<_, _>>());
    c.validate().unwrap();
    assert_eq!(data_range_threshold(8), 256.0);
    assert_eq!(data_range_threshold(16), 65536.0);
    assert_eq!(data_range_threshold(32), 4294967296.0);
}

#[test]
fn names_parse_and_titles() {
    for a in Algorithm::COLUMNS {
        assert_eq!(Algorithm::parse(a.name()), Some(a));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{}\"", a.name()));
    }
    assert_eq!(Algorithm::parse("data_range"), Some(Algorithm::DataRange));
    assert_eq!(Algorithm::parse("act_minmax"), None);
    assert_eq!(Algorithm::Sqnr.column_title(), "Signal to Quantization Noise Ratio");
    assert_eq!(Algorithm::DataDistribution.column_title(), "Clustering of Unquantized Data");
    assert_eq!(serde_json::to_string(&TensorClass::Activation).unwrap(), "\"activation\"");
}

#[test]
fn overrides_reject_nonsense() {
    let mut c = CheckerConfig::default();
    c.set_threshold(TensorClass::Weight, Algorithm::Sqnr, 30.0).unwrap();
    assert_eq!(c.weight.thresholds[&Algorithm::Sqnr], 30.0);
    c.set_threshold(TensorClass::Activation, Algorithm::Stats, 1.5).unwrap();
    assert!(c.activation.enabled(Algorithm::Stats));
    assert!(matches!(
        c.set_threshold(TensorClass::Activation, Algorithm::Sqnr, 20.0),
        Err(CheckerConfigError::NotApplicable { .. })
    ));
    assert!(matches!(
        c.set_threshold(TensorClass::Input, Algorithm::MinMax, 1.0),
        Err(CheckerConfigError::NotApplicable { .. })
    ));
    assert_eq!(
        c.set_threshold(TensorClass::Weight, Algorithm::DataRange, 3.0),
        Err(CheckerConfigError::DerivedThreshold)
    );
    assert!(matches!(
        c.set_threshold(TensorClass::Weight, Algorithm::MaxDiff, -1.0),
        Err(CheckerConfigError::BadThreshold { .. })
    ));
    assert!(matches!(
        c.set_threshold(TensorClass::Weight, Algorithm::Sqnr, f64::NAN),
        Err(CheckerConfigError::BadThreshold { .. })
    ));
    c.disable(TensorClass::Weight, Algorithm::DataRange);
    assert!(!c.weight.enabled(Algorithm::DataRange));
    // A deserialized config is checked the same way.
    let bad: CheckerConfig = serde_json::from_str(r#"{"activation": {"thresholds": {"maxdiff": 1.0}}}"#).unwrap();
    assert!(bad.validate().is_err());
    let round: CheckerConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(round, c);
}

/// u = [0, 1, 2, 3], d = [0, 1, 2, 2.5] (by hand, see algorithms.rs): minmax 0 / 0.5,
/// maxdiff 0.5, sqnr 17.48 dB < 26 -> Fail; skew of [0, 1, 2, 3] is 0; 4 unique ints,
/// range 3 -> max 4 <= 256; no fractional values -> ratio 0.
#[test]
fn param_verdicts_by_hand() {
    let results = check_param(
        TensorClass::Weight,
        &[0.0, 1.0, 2.0, 3.0],
        Some(&[0.0, 1.0, 2.0, 2.5]),
        Some(8),
        &CheckerConfig::default(),
    );
    let names: Vec<Algorithm> = results.iter().map(|r| r.algorithm).collect();
    assert_eq!(names, Algorithm::COLUMNS.to_vec(), "HTML column order");
    let by = |a: Algorithm| results.iter().find(|r| r.algorithm == a).unwrap();
    assert_eq!(by(Algorithm::MinMax).detail, "min: 0.0 max: 0.5");
    assert_eq!(by(Algorithm::MinMax).verdict, Verdict::Pass);
    assert_eq!(by(Algorithm::MaxDiff).detail, "largest absolute difference: 0.5");
    assert_eq!(by(Algorithm::Sqnr).verdict, Verdict::Fail);
    assert!((by(Algorithm::Sqnr).measured.unwrap() - 17.481880270062).abs() < 1e-9);
    assert_eq!(by(Algorithm::Stats).measured, Some(0.0));
    assert_eq!(by(Algorithm::DataRange).measured, Some(4.0));
    assert_eq!(by(Algorithm::DataRange).threshold, Some(256.0));
    assert_eq!(by(Algorithm::DataRange).detail, "unique dec places: 4 data range: 3.0");
    assert_eq!(by(Algorithm::DataDistribution).measured, Some(0.0));
}

#[test]
fn float_tensors_get_na_comparisons_and_empty_tensors_na_everything() {
    let results = check_param(TensorClass::Bias, &[0.5, -1.0], None, None, &CheckerConfig::default());
    for r in &results {
        let expected = if r.algorithm.needs_quantized() || r.algorithm == Algorithm::DataRange {
            Verdict::NotApplicable
        } else {
            Verdict::Pass
        };
        assert_eq!(r.verdict, expected, "{r:?}");
    }
    let results = check_param(TensorClass::Weight, &[], Some(&[]), Some(8), &CheckerConfig::default());
    assert!(results.iter().all(|r| r.verdict == Verdict::NotApplicable && r.measured.is_none()));
    // Different sizes: comparisons N/A, float analyses still run.
    let results = check_param(TensorClass::Weight, &[1.0, 2.0], Some(&[1.0]), Some(8), &CheckerConfig::default());
    assert_eq!(results.iter().filter(|r| r.verdict == Verdict::NotApplicable).count(), 3);
}

/// Encoding scale 0.01, offset -100, 8 bit: range [-1.0, 1.55]. Values [-0.5, 2.0]:
/// |-0.5 - -1.0| = 0.5, |2.0 - 1.55| = 0.45 -> measured 0.5, Pass at 10, Fail at 0.4.
#[test]
fn activation_minmax_is_against_the_encoding_range() {
    let e = Encoding::from_scale_offset(8, 0.01, -100, false);
    let (lo, hi) = encoding_range(&e);
    assert!((lo + 1.0).abs() < 1e-7 && (hi - 1.55).abs() < 1e-7, "{lo} {hi}");
    let r = &check_activation(&FloatProfile::of(&[-0.5, 2.0]), Some(&e), &CheckerConfig::default())[0];
    assert_eq!((r.algorithm, r.verdict), (Algorithm::MinMax, Verdict::Pass));
    assert!((r.measured.unwrap() - 0.5).abs() < 1e-7);
    let mut strict = CheckerConfig::default();
    strict.set_threshold(TensorClass::Activation, Algorithm::MinMax, 0.4).unwrap();
    assert_eq!(check_activation(&FloatProfile::of(&[-0.5, 2.0]), Some(&e), &strict)[0].verdict, Verdict::Fail);
    assert_eq!(check_activation(&FloatProfile::of(&[-0.5, 2.0]), None, &strict)[0].verdict, Verdict::NotApplicable);
}

fn tensor_check(results: Vec<CheckResult>) -> TensorCheck {
    TensorCheck {
        op_name: "op".into(),
        op_type: "Conv".into(),
        tensor: "t".into(),
        class: TensorClass::Weight,
        bitwidth: Some(8),
        results,
    }
}

/// Only data_distribution fails: the SDK does not fail the node, but still advises.
#[test]
fn data_distribution_alone_never_fails_a_node() {
    let values: Vec<f32> = (0..10).map(|_| 0.25).collect();
    let mut config = CheckerConfig::default();
    config.disable(TensorClass::Weight, Algorithm::Sqnr);
    // Ten 0.25s: one bin holds all ten -> (10 - 1) / 10 = 0.9 > 0.6.
    let check = tensor_check(check_param(TensorClass::Weight, &values, Some(&values), Some(8), &config));
    assert_eq!(check.verdict(Algorithm::DataDistribution), Verdict::Fail);
    assert_eq!(check.verdict(Algorithm::Sqnr), Verdict::NotApplicable, "not configured -> N/A cell");
    assert!(!check.failed());
    assert_eq!(recommendations(&check), vec![Algorithm::DataDistribution.recommendation()]);
    let report = CheckerReport::from_tensors(vec![check]);
    assert_eq!((report.analyzed, report.failed, report.failed_tensors().count()), (1, 0, 0));
}

/// measured/threshold may be infinite: JSON round trip keeps them ("inf"), and so does a
/// binary format.
#[test]
fn reports_round_trip_with_infinite_sqnr() {
    let values = [0.5f32, -1.0];
    let check =
        tensor_check(check_param(TensorClass::Weight, &values, Some(&values), Some(8), &CheckerConfig::default()));
    assert_eq!(check.result(Algorithm::Sqnr).unwrap().measured, Some(f64::INFINITY));
    let report = CheckerReport::from_tensors(vec![check]);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""measured":"inf""#), "{json}");
    assert_eq!(serde_json::from_str::<CheckerReport>(&json).unwrap(), report);
    let bytes = postcard::to_allocvec(&report).unwrap();
    assert_eq!(postcard::from_bytes::<CheckerReport>(&bytes).unwrap(), report);
}

#[test]
fn python_style_numbers() {
    assert_eq!(py(0.5), "0.5");
    assert_eq!(py(3.0), "3.0");
    assert_eq!(py(1e-7), "1e-07");
    assert_eq!(py(3.4028234663852886e38), "3.4028234663852886e+38");
    assert_eq!(py(f64::INFINITY), "inf");
    assert_eq!(py(-0.0001), "-0.0001");
}

/// x -> Conv(w, b) -> y -> Convert -> z -> Relu -> r. w [2, 1, 1, 1] per-channel; b kept
/// float; y per-tensor; z has no recorded data; r float.
#[test]
fn graph_walk_orders_and_classifies() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 1, 1, 1]);
    let w = b.constant("w", &[2, 1, 1, 1], vec![0.3, -2.0]);
    let bias = b.constant("b", &[2], vec![0.1, 0.2]);
    let window = Window { kernel: vec![1, 1], strides: vec![1, 1], pads: vec![0; 4], dilations: vec![1, 1] };
    let y = b.node("conv", Op::Conv(Conv { window, group: 1 }), &[x, w, bias], "y", &[1, 2, 1, 1]);
    let z = b.node("cvt", Op::Convert(crate::ops::Convert), &[y], "z", &[1, 2, 1, 1]);
    let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[z], "r", &[1, 2, 1, 1]);
    b.output(r);
    let g = b.finish();
    let sym = |s: f32| Encoding::from_scale_offset(8, s, -128, true);
    let mut encodings = BTreeMap::new();
    encodings.insert(w, TensorEncoding::PerChannel { axis: 0, channels: vec![sym(0.1), sym(0.5)] });
    encodings.insert(bias, TensorEncoding::Float { bitwidth: 32 });
    encodings.insert(y, TensorEncoding::PerTensor(Encoding::from_scale_offset(8, 0.01, 0, false)));
    encodings.insert(x, TensorEncoding::PerTensor(Encoding::from_scale_offset(8, 0.01, 0, false)));
    let q = QuantizedGraph { graph: g, encodings };
    let values = |name: &str| match name {
        "x" | "y" | "r" => Some(FloatProfile::of(&[0.5, 1.0, 3.0])),
        _ => None,
    };
    let report = check_graph(&q, &values, &CheckerConfig::default());
    let rows: Vec<(&str, &str, TensorClass, Option<u32>)> =
        report.tensors.iter().map(|t| (t.op_name.as_str(), t.tensor.as_str(), t.class, t.bitwidth)).collect();
    assert_eq!(
        rows,
        vec![
            ("x", "x", TensorClass::Input, Some(8)),
            ("conv", "w", TensorClass::Weight, Some(8)),
            ("conv", "b", TensorClass::Bias, None),
            ("conv", "y", TensorClass::Activation, Some(8)),
            ("relu", "r", TensorClass::Activation, None),
        ]
    );
    // w: 0.3 / 0.1 = 3 -> 0.3 (f32 0.3 vs 3 * 0.1f32: tiny), -2.0 / 0.5 = -4 -> -2.0: exact-ish.
    let weight = &report.tensors[1];
    assert_eq!(weight.verdict(Algorithm::MaxDiff), Verdict::Pass);
    assert!(weight.result(Algorithm::MaxDiff).unwrap().measured.unwrap() < 1e-7);
    // b kept in float: comparisons N/A.
    assert_eq!(report.tensors[2].verdict(Algorithm::Sqnr), Verdict::NotApplicable);
    // y: encoding range [0, 2.55]; values [0.5, 3.0]: |0.5 - 0| = 0.5, |3 - 2.55| = 0.45.
    let act = report.tensors[3].result(Algorithm::MinMax).unwrap();
    assert!((act.measured.unwrap() - 0.5).abs() < 1e-6, "{act:?}");
    // r float: minmax N/A, so not analyzed.
    assert!(!report.tensors[4].analyzed());
    assert_eq!((report.analyzed, report.failed), (4, 0));
}

// ---- the numpy reference ----

const REFERENCE: &str = include_str!("../../../tests/data/checker/reference.json");

fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        other => other.as_f64().unwrap_or_else(|| panic!("not a number: {other}")),
    }
}

fn close(got: f64, want: f64) -> bool {
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= 1e-6 * got.abs().max(want.abs()) + 1e-12
}

/// The numbers of a data string, by label (`"min: 0.1 max: 0.2"` -> {min: 0.1, max: 0.2}).
fn detail_numbers(detail: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let words: Vec<&str> = detail.split_whitespace().collect();
    for pair in words.windows(2) {
        if let Some(label) = pair[0].strip_suffix(':')
            && let Ok(x) = pair[1].parse::<f64>()
        {
            out.insert(label.to_string(), x);
        }
    }
    out
}

#[test]
fn matches_the_numpy_reference() {
    let doc: Value = serde_json::from_str(REFERENCE).expect("reference.json parses");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 12);
    let mut compared = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let class: TensorClass = serde_json::from_value(case["class"].clone()).unwrap();
        let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
        let values: Vec<f32> = case["values"].as_array().unwrap().iter().map(|v| number(v) as f32).collect();
        let encodings: Vec<Encoding> = case["encodings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let bw = e["bitwidth"].as_u64().unwrap() as u32;
                Encoding::from_scale_offset(bw, number(&e["scale"]) as f32, e["offset"].as_i64().unwrap(), false)
            })
            .collect();
        let bitwidth = Some(encodings[0].bitwidth);
        let config = all_enabled(class);
        let results = match class {
            TensorClass::Weight | TensorClass::Bias => {
                let encoding = match case["axis"].as_u64() {
                    Some(axis) => TensorEncoding::PerChannel { axis: axis as usize, channels: encodings.clone() },
                    None => TensorEncoding::PerTensor(encodings[0].clone()),
                };
                let tensor = Tensor::from_f32(shape, values.clone());
                let deq = fake_quant_tensor(&tensor, &encoding).unwrap();
                let deq = deq.as_f32().unwrap();
                let want: Vec<f32> = case["dequantized"].as_array().unwrap().iter().map(|v| number(v) as f32).collect();
                assert_eq!(deq, want.as_slice(), "{name}: dequantized values (quant::apply vs numpy)");
                check_param(class, &values, Some(deq), bitwidth, &config)
            }
            _ => check_activation(&FloatProfile::of(&values), Some(&encodings[0]), &config),
        };
        let expected = case["expected"].as_array().unwrap();
        assert_eq!(results.len(), expected.len(), "{name}: {results:?}");
        for want in expected {
            let algorithm = Algorithm::parse(want["algorithm"].as_str().unwrap()).unwrap();
            let got = results.iter().find(|r| r.algorithm == algorithm).unwrap();
            let ctx = format!("{name} / {}: {got:?} vs {want}", algorithm.name());
            let passes = want["pass"].as_bool().unwrap();
            assert_eq!(got.verdict, if passes { Verdict::Pass } else { Verdict::Fail }, "{ctx}");
            assert!(close(got.measured.unwrap(), number(&want["measured"])), "{ctx}");
            assert!(close(got.threshold.unwrap(), number(&want["threshold"])), "{ctx}");
            let numbers = detail_numbers(&got.detail);
            let labels: &[(&str, &str)] = match algorithm {
                Algorithm::MinMax => &[("min", "min"), ("max", "max")],
                Algorithm::Stats => &[
                    ("skew", "skew"),
                    ("min", "min"),
                    ("max", "max"),
                    ("median", "median"),
                    ("variance", "variance"),
                    ("stdDev", "std_dev"),
                    ("mode", "mode"),
                ],
                Algorithm::DataRange => &[("places", "uniques"), ("range", "range")],
                _ => &[],
            };
            for (ours, theirs) in labels {
                let got = numbers.get(*ours).unwrap_or_else(|| panic!("{ctx}: no {ours} in detail"));
                let want = number(&want["detail"][theirs]);
                // Sums in numpy's order: the variance and its root are numpy's own bits (the
                // detail prints the shortest text that reads back as the same f64).
                if matches!(*ours, "variance" | "stdDev") {
                    assert_eq!(got.to_bits(), want.to_bits(), "{ctx}: {ours} {got} vs numpy's {want}");
                } else {
                    assert!(close(*got, want), "{ctx}: {ours}");
                }
                compared += 1;
            }
            if algorithm == Algorithm::Stats {
                let mean = FloatProfile::of(&values).stats.mean;
                let want = number(&want["detail"]["mean"]);
                assert_eq!(mean.to_bits(), want.to_bits(), "{ctx}: mean {mean} vs numpy's {want}");
            }
            compared += 3;
        }
    }
    assert!(compared > 150, "{compared} numbers compared");
}
