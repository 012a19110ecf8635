//! Writing per-block entries (`PER_BLOCK`, `LPBQ`) as AIMET writes them.
//!
//! - 1.0.0: `PER_BLOCK` gives `block_size`, `bw` and the block scales and offsets flattened;
//!   `LPBQ` gives `bw` (the decompressed bitwidth: codes plus integer-scale bits),
//!   `compressed_bw` (the codes'), the per-channel float scales as `scale` with offsets
//!   `-2^(bw-1)`, and `per_block_int_scale` flattened.
//! - 2.0.0: `axis` (the block axis), `block_size`, `output_dtype` (the codes' type) and either
//!   `y_scale` nested like the weight (its scale tensor's shape, [`Overrides::scale_shapes`])
//!   or LPBQ's `per_block_int_scale` nested the same way and `per_channel_float_scale` nested
//!   with the block axis 1.

use serde_json::{Value, json};

use super::{FormatError, number};
use crate::quant::aimet::{BlockEncoding, Overrides};
use crate::quant::math::symmetric_offset_magnitude;

pub(super) fn list_entry(name: &str, b: &BlockEncoding) -> Result<Value, FormatError> {
    let symmetric = b.symmetric();
    let mut e = json!({
        "block_size": b.block_size,
        "dtype": "INT",
        "enc_type": b.enc_type(),
        "is_sym": symmetric,
        "name": name,
    });
    match &b.lpbq {
        None => {
            let scales = b.blocks.iter().map(|c| number(c.scale, name, "scale")).collect::<Result<Vec<_>, _>>()?;
            e["bw"] = json!(b.bitwidth);
            e["scale"] = Value::Array(scales);
            e["offset"] = json!(b.blocks.iter().map(|c| c.offset).collect::<Vec<_>>());
        }
        Some(lpbq) => {
            let decompressed = b.bitwidth + lpbq.scale_bits();
            e["bw"] = json!(decompressed);
            e["compressed_bw"] = json!(b.bitwidth);
            e["scale"] = floats(&lpbq.channel_scales, name)?;
            let offset = -symmetric_offset_magnitude(decompressed);
            e["offset"] = json!(vec![offset; lpbq.channel_scales.len()]);
            e["per_block_int_scale"] = json!(lpbq.int_scales);
        }
    }
    Ok(e)
}

pub(super) fn v2_entry(o: &Overrides, name: &str, b: &BlockEncoding) -> Result<Value, FormatError> {
    let needs_model = |what| FormatError::NeedsModel { name: name.to_string(), what, version: "2.0.0" };
    let (Some(&axis), Some(shape)) = (o.axes.get(name), o.scale_shapes.get(name)) else {
        return Err(needs_model("the block axis and the nesting of its scales come from the model"));
    };
    let symmetric = b.symmetric();
    let half = symmetric_offset_magnitude(b.bitwidth);
    let output_dtype = if symmetric { format!("int{}", b.bitwidth) } else { format!("uint{}", b.bitwidth) };
    let mut e = json!({"axis": axis, "block_size": b.block_size, "name": name, "output_dtype": output_dtype});
    match &b.lpbq {
        None => {
            let scales = b.blocks.iter().map(|c| number(c.scale, name, "scale")).collect::<Result<Vec<_>, _>>()?;
            e["y_scale"] = nest(&scales, shape);
            let shift = if symmetric { half } else { 0 };
            let zero_points: Vec<Value> = b.blocks.iter().map(|c| json!(-i64::from(c.offset) - shift)).collect();
            if zero_points.iter().any(|z| z.as_i64() != Some(0)) {
                e["y_zero_point"] = nest(&zero_points, shape);
            }
        }
        Some(lpbq) => {
            let ints: Vec<Value> = lpbq.int_scales.iter().map(|&i| json!(i)).collect();
            e["per_block_int_scale"] = nest(&ints, shape);
            let mut channel_shape = shape.clone();
            if let Some(d) = channel_shape.get_mut(axis) {
                *d = 1;
            }
            let Value::Array(channel_scales) = floats(&lpbq.channel_scales, name)? else { unreachable!() };
            e["per_channel_float_scale"] = nest(&channel_scales, &channel_shape);
        }
    }
    Ok(e)
}

fn floats(values: &[f64], name: &str) -> Result<Value, FormatError> {
    values
        .iter()
        .map(|&x| {
            serde_json::Number::from_f64(x)
                .map(Value::Number)
                .ok_or_else(|| FormatError::NonFinite { name: name.to_string(), field: "scale" })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// `items` (row-major) as lists nested to `shape`.
fn nest(items: &[Value], shape: &[usize]) -> Value {
    match shape.split_first() {
        None => items.first().cloned().unwrap_or(Value::Null),
        Some((_, [])) => Value::Array(items.to_vec()),
        Some((&n, rest)) => {
            let inner: usize = rest.iter().product::<usize>().max(1);
            Value::Array(
                (0..n)
                    .map(|i| nest(&items[(i * inner).min(items.len())..((i + 1) * inner).min(items.len())], rest))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::aimet::{AimetVersion, OverrideEncoding, parse_overrides, write_overrides_json};

    const BW_V1: &str = include_str!("../../../../examples/digits/aimet/blockwise/encodings_v1.0.0.json");
    const BW_V2: &str = include_str!("../../../../examples/digits/aimet/blockwise/encodings_v2.0.0.json");
    const LPBQ_V1: &str = include_str!("../../../../examples/digits/aimet/lpbq/encodings_v1.0.0.json");
    const LPBQ_V2: &str = include_str!("../../../../examples/digits/aimet/lpbq/encodings_v2.0.0.json");

    /// Every non-integer number of `v` rounded to float32.
    fn to_f32(v: Value) -> Value {
        match v {
            Value::Number(n) if n.is_f64() => json!(n.as_f64().unwrap() as f32),
            Value::Array(items) => Value::Array(items.into_iter().map(to_f32).collect()),
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, to_f32(v))).collect()),
            other => other,
        }
    }

    /// AIMET's 1.0.0 and 2.0.0 exports of one QuantSim read to the same blocks (LPBQ: the same
    /// integer and float scales and effective block scales).
    #[test]
    fn aimets_two_forms_of_blocks_read_alike() {
        for (v1, v2) in [(BW_V1, BW_V2), (LPBQ_V1, LPBQ_V2)] {
            let (v1, v2) = (parse_overrides(v1).unwrap(), parse_overrides(v2).unwrap());
            assert!(v1.source.warnings.is_empty() && v2.source.warnings.is_empty(), "{:?}", v1.source.warnings);
            let (old, new) = (v1.by_name(), v2.by_name());
            for weight in ["conv2.weight", "fc1.weight", "fc2.weight"] {
                let OverrideEncoding::PerBlock(b) = old[weight] else { panic!("{weight} is per-block") };
                assert_eq!((b.bitwidth, b.block_size), (4, 4), "{weight}");
                assert_eq!(old[weight], new[weight], "{weight}");
            }
            assert_eq!(v2.scale_shapes["conv2.weight"], [16, 2, 1, 1]);
            assert_eq!(v2.scale_shapes["fc1.weight"], [32, 64]);
        }
    }

    /// Written back, AIMET's files give AIMET's own JSON for every per-block entry (2.0.0: the
    /// same nesting, axis, dtype and values; 1.0.0: the same fields and values), and read back
    /// to what they were read from.
    #[test]
    fn aimets_block_entries_are_written_as_aimet_wrote_them() {
        for (text, version) in [(BW_V2, AimetVersion::V2_0_0), (LPBQ_V2, AimetVersion::V2_0_0)] {
            let o = parse_overrides(text).unwrap();
            let ours = write_overrides_json(&o, version, None).unwrap();
            assert_eq!(parse_overrides(&ours).unwrap(), o);
            let (ours, theirs): (Value, Value) =
                (serde_json::from_str(&ours).unwrap(), serde_json::from_str(text).unwrap());
            let find =
                |v: &Value, name: &str| v["encodings"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned();
            for weight in ["conv2.weight", "fc1.weight", "fc2.weight"] {
                // AIMET prints float64 scales; qairt keeps a PER_BLOCK entry's as float32
                // (LPBQ's float scales as given).
                assert_eq!(find(&ours, weight).map(to_f32), find(&theirs, weight).map(to_f32), "{weight}");
            }
            if text == LPBQ_V2 {
                assert_eq!(find(&ours, "fc1.weight"), find(&theirs, "fc1.weight"), "LPBQ is written exactly");
            }
        }
        for text in [BW_V1, LPBQ_V1] {
            let o = parse_overrides(text).unwrap();
            let ours = write_overrides_json(&o, AimetVersion::V1_0_0, None).unwrap();
            assert_eq!(parse_overrides(&ours).unwrap(), o);
            let (ours, theirs): (Value, Value) =
                (serde_json::from_str(&ours).unwrap(), serde_json::from_str(text).unwrap());
            let find = |v: &Value, name: &str| {
                v["param_encodings"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap()
            };
            for weight in ["conv2.weight", "fc1.weight", "fc2.weight"] {
                let (a, b) = (find(&ours, weight), find(&theirs, weight));
                for field in ["block_size", "bw", "compressed_bw", "enc_type", "is_sym", "per_block_int_scale"] {
                    assert_eq!(a[field], b[field], "{weight} {field}");
                }
                let numbers = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
                assert_eq!(numbers(&a["offset"]), numbers(&b["offset"]), "{weight}");
                // AIMET prints float64 scales; a PER_BLOCK entry keeps them as float32.
                let close =
                    numbers(&a["scale"]).iter().zip(numbers(&b["scale"])).all(|(x, y)| ((x - y) / y).abs() < 1e-7);
                assert!(close, "{weight}");
            }
        }
    }

    #[test]
    fn nests_row_major() {
        let items: Vec<Value> = (1..=4).map(|i| json!(i)).collect();
        assert_eq!(nest(&items, &[2, 2, 1, 1]), json!([[[[1]], [[2]]], [[[3]], [[4]]]]));
        assert_eq!(nest(&items, &[2, 2]), json!([[1, 2], [3, 4]]));
        assert_eq!(nest(&items[..2], &[2, 1, 1, 1]), json!([[[[1]]], [[[2]]]]));
    }
}
