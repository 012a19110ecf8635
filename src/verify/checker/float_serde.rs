//! Serde for the checker's `Option<f64>` numbers that may be infinite (an exact
//! quantization has `sqnr = +inf`). JSON has no infinity and serde_json would write `null`,
//! which reads back as "no number"; so in human-readable formats a non-finite value is the
//! string `"inf"`, `"-inf"` or `"nan"`. Binary formats (postcard, the engine's cache) store
//! the f64 as is.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        None => serializer.serialize_none(),
        Some(x) if !serializer.is_human_readable() || x.is_finite() => serializer.serialize_some(x),
        Some(x) => serializer.serialize_some(non_finite_name(*x)),
    }
}

fn non_finite_name(x: f64) -> &'static str {
    if x.is_nan() {
        "nan"
    } else if x > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
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
