//! `summary.json` and `summary.csv`: deterministic text renderings of a [`Summary`].
//!
//! - JSON: the [`Summary`] as serde serializes it, pretty-printed, fields in declaration
//!   order, floats in shortest round-trip form; non-finite floats are the strings `"inf"`,
//!   `"-inf"` and `"nan"` ([`super::json_float`]; an SQNR of `"inf"` is an exact match).
//! - CSV: the accuracy debugger's `summary.csv` layout, one row per layer in graph order:
//!   `Name,LayerType,Size,Tensor_dims,<one column per metric>,golden_min,golden_max,target_min,target_max`.
//!   Metric columns use the SDK's lower-case verifier names (`sqnr`, `cosinesimilarity`, `mse`,
//!   `rtolatol`, ...) with the debugger's definitions (see `docs/verifiers.md`; the default set
//!   is `sqnr,cosinesimilarity,mse,maxerror`).
//!   `Tensor_dims` is printed as the SDK does, `[1, 10]`; non-finite values are `inf`,
//!   `-inf` and `nan` (which Python's `float()` reads); fields are quoted per RFC 4180.

use super::summary::Summary;

/// The CSV columns before the metric columns.
pub const CSV_LEADING_COLUMNS: [&str; 4] = ["Name", "LayerType", "Size", "Tensor_dims"];
/// The CSV columns after the metric columns.
pub const CSV_TRAILING_COLUMNS: [&str; 4] = ["golden_min", "golden_max", "target_min", "target_max"];

/// Pretty JSON, ending with a newline.
pub fn summary_json(s: &Summary) -> String {
    // Serializing plain structs of strings, numbers and options to a String cannot fail.
    let mut json = serde_json::to_string_pretty(s).expect("a Summary always serializes");
    json.push('\n');
    json
}

/// The per-layer table as CSV (`\n` line ends, header first): the leading columns, one column
/// per metric (`Summary::verifier_columns`), then the golden/target ranges.
pub fn summary_csv(s: &Summary) -> String {
    let header: Vec<&str> = CSV_LEADING_COLUMNS
        .iter()
        .copied()
        .chain(s.verifier_columns.iter().map(String::as_str))
        .chain(CSV_TRAILING_COLUMNS)
        .collect();
    let mut out = header.iter().map(|h| field(h)).collect::<Vec<_>>().join(",");
    out.push('\n');
    for layer in &s.layers {
        let mut fields =
            vec![field(&layer.name), field(&layer.layer_type), layer.size.to_string(), field(&dims(&layer.dims))];
        for column in &s.verifier_columns {
            let value = layer.verifiers.iter().find(|v| &v.column == column).map_or(f64::NAN, |v| v.metric);
            fields.push(number(value));
        }
        fields.extend([
            number32(layer.golden_min),
            number32(layer.golden_max),
            number32(layer.target_min),
            number32(layer.target_max),
        ]);
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// `[1, 112, 112, 32]`, as the SDK prints shapes.
fn dims(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(usize::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

fn non_finite(x: f64) -> Option<String> {
    super::json_float::non_finite_name(x).map(str::to_string)
}

/// Shortest round-trip decimal (serde_json's float formatting), or inf/-inf/nan.
fn number(x: f64) -> String {
    non_finite(x).unwrap_or_else(|| serde_json::to_string(&x).unwrap_or_else(|_| x.to_string()))
}

fn number32(x: f32) -> String {
    non_finite(f64::from(x)).unwrap_or_else(|| serde_json::to_string(&x).unwrap_or_else(|_| x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{LayerFold, LayerSpec, OutputSpec, SummaryBuilder, Thresholds};

    fn summary() -> Summary {
        let outputs = vec![OutputSpec { name: "logits".into(), shape: vec![1, 2] }];
        let layers = vec![
            LayerSpec { name: "conv,1".into(), layer_type: "Conv".into(), dims: vec![1, 1, 2] },
            LayerSpec { name: "logits".into(), layer_type: "Gemm".into(), dims: vec![1, 2] },
        ];
        let mut b =
            SummaryBuilder::new(outputs, layers, Thresholds { min_sqnr_db: Some(20.0), ..Default::default() }).unwrap();
        b.begin_sample(None).unwrap();
        // conv: r = [3, 4], a = 1.5 r = [4.5, 6], e = [1.5, 2]: sqnr = 10 log10(25 / 6.25)
        // = 10 log10(4) = 6.020599913279624 (numpy), cosine = 37.5 / (5 * 7.5) = 1,
        // mse = 6.25 / 2 = 3.125, maxerror = 2.
        b.add_tensor("conv,1", &[3.0, 4.0], &[4.5, 6.0]).unwrap();
        b.add_tensor("logits", &[0.5, -0.25], &[0.5, -0.25]).unwrap();
        let mut s = b.finish().unwrap();
        let metrics = crate::verify::default_metrics();
        let conv = LayerFold::over_samples(&metrics, &[3.0, 4.0], &[4.5, 6.0], 1);
        let logits = LayerFold::over_samples(&metrics, &[0.5, -0.25], &[0.5, -0.25], 1);
        s.attach_metrics(&metrics, |name| match name {
            "conv,1" => Some((&conv, None)),
            "logits" => Some((&logits, None)),
            _ => None,
        });
        s
    }

    #[test]
    fn csv_has_the_debugger_columns_and_one_row_per_layer() {
        let csv = summary_csv(&summary());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "Name,LayerType,Size,Tensor_dims,sqnr,cosinesimilarity,mse,maxerror,golden_min,golden_max,target_min,target_max"
        );
        // The sqnr column is the debugger's SQNR, signal from the inference tensor:
        // mean(i^2) = (20.25 + 36) / 2 = 28.125, mse 3.125 -> 10 log10(9) = 9.542425094393248.
        assert_eq!(lines[1], "\"conv,1\",Conv,2,\"[1, 1, 2]\",9.542425094393248,1.0,3.125,2.0,3.0,4.0,4.5,6.0");
        // Identical tensors: cosine = 0.3125 / (sqrt(0.3125) * sqrt(0.3125)) = 0.9999999999999998
        // in float64 (numpy: np.dot(g, g) / (np.linalg.norm(g) * np.linalg.norm(g))).
        assert_eq!(lines[2], "logits,Gemm,2,\"[1, 2]\",inf,0.9999999999999998,0.0,0.0,-0.25,0.5,-0.25,0.5");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn json_is_pretty_stable_and_names_infinity() {
        let s = summary();
        let json = summary_json(&s);
        assert_eq!(json, summary_json(&s.clone()));
        assert!(json.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["passed"], serde_json::json!(true));
        assert_eq!(value["outputs"][0]["metrics"]["sqnr_db"], serde_json::json!("inf"), "identical outputs");
        assert_eq!(value["checks"][0]["measured"], serde_json::json!("inf"));
        assert_eq!(value["checks"][0]["threshold"], serde_json::json!("min_sqnr_db"));
        assert_eq!(value["layers"][0]["metrics"]["mse"], serde_json::json!(3.125));
        assert_eq!(value["thresholds"]["min_cosine"], serde_json::Value::Null);
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 10);
        assert_eq!(value["first_failing"], serde_json::json!("conv,1"), "9.5 dB < the 20 dB threshold");
        assert_eq!(value["layers"][0]["verifiers"][0]["column"], serde_json::json!("sqnr"));
        assert!(json.find("\"passed\"") < json.find("\"layers\""), "declaration order is kept");
    }
}
