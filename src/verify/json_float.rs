//! Floats in qairt's JSON files as JSON cannot hold them: infinities and NaN are the strings
//! `"inf"`, `"-inf"` and `"nan"` (as on the JSON message stream, and as Python's `float()`
//! reads them), never `null`, which would not say whether the SQNR of a layer is perfect or
//! could not be measured.
//!
//! Used with `#[serde(serialize_with = ...)]` (and [`deserialize_option_f64`] where qairt reads
//! such a file back, as the checker's configuration). Only human-readable formats get the strings:
//! the same structs go to the cache as postcard, where floats stay floats bit for bit.

use std::collections::BTreeMap;

use serde::de::{self, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serializer};

/// The string a non-finite float is written as, `None` for a finite one.
pub fn non_finite_name(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some("nan")
    } else if x.is_infinite() {
        Some(if x > 0.0 { "inf" } else { "-inf" })
    } else {
        None
    }
}

pub fn f64<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    match non_finite_name(*x) {
        Some(name) if s.is_human_readable() => s.serialize_str(name),
        _ => s.serialize_f64(*x),
    }
}

pub fn f32<S: Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    match non_finite_name(f64::from(*x)) {
        Some(name) if s.is_human_readable() => s.serialize_str(name),
        _ => s.serialize_f32(*x),
    }
}

pub fn option_f64<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.serialize_some(&Float(*x)),
        None => s.serialize_none(),
    }
}

pub fn option_map_f64<S: Serializer>(map: &Option<BTreeMap<String, f64>>, s: S) -> Result<S::Ok, S::Error> {
    let Some(map) = map else { return s.serialize_none() };
    s.serialize_some(&FloatMap(map))
}

/// Reads what [`option_f64`] writes: a number, `null`, or one of the non-finite names (in
/// binary formats, the float as stored).
pub fn deserialize_option_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    if !deserializer.is_human_readable() {
        return Option::<f64>::deserialize(deserializer);
    }
    deserializer.deserialize_any(NumberOrName)
}

struct NumberOrName;

impl<'de> Visitor<'de> for NumberOrName {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number, null, or one of \"inf\", \"-inf\", \"nan\"")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v {
            "inf" => Ok(Some(f64::INFINITY)),
            "-inf" => Ok(Some(f64::NEG_INFINITY)),
            "nan" => Ok(Some(f64::NAN)),
            other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
        }
    }
}

/// A float serialized by [`f64`], for nesting inside options and maps.
struct Float(f64);

impl serde::Serialize for Float {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        f64(&self.0, s)
    }
}

struct FloatMap<'a>(&'a BTreeMap<String, f64>);

impl serde::Serialize for FloatMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, &Float(*value))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        #[serde(serialize_with = "super::f64")]
        a: f64,
        #[serde(serialize_with = "super::f32")]
        b: f32,
        #[serde(serialize_with = "super::option_f64", deserialize_with = "super::deserialize_option_f64")]
        c: Option<f64>,
    }

    #[test]
    fn json_names_non_finite_floats_and_keeps_finite_ones() {
        let row = Row { a: f64::INFINITY, b: f32::NAN, c: Some(f64::NEG_INFINITY) };
        assert_eq!(serde_json::to_string(&row).unwrap(), r#"{"a":"inf","b":"nan","c":"-inf"}"#);
        let row = Row { a: 1.5, b: -0.25, c: None };
        assert_eq!(serde_json::to_string(&row).unwrap(), r#"{"a":1.5,"b":-0.25,"c":null}"#);
        let back: Row = serde_json::from_str(r#"{"a":1.5,"b":-0.25,"c":"-inf"}"#).unwrap();
        assert_eq!(back.c, Some(f64::NEG_INFINITY));
    }

    #[test]
    fn the_cache_format_keeps_floats_bit_for_bit() {
        let row = Row { a: f64::INFINITY, b: f32::NEG_INFINITY, c: Some(f64::NAN) };
        let back: Row = postcard::from_bytes(&postcard::to_stdvec(&row).unwrap()).unwrap();
        assert_eq!((back.a, back.b), (f64::INFINITY, f32::NEG_INFINITY));
        assert!(back.c.unwrap().is_nan());
    }
}
