//! `TensorProto` -> IR [`Tensor`]: element types, the `raw_data` and typed storage fields,
//! and external data (weights kept in side files, resolved through the caller's byte map).

use std::collections::BTreeMap;

use super::error::{ErrorKind, ImportError, malformed};
use super::proto::TensorProto;
use super::proto::tensor_proto::{DataLocation, DataType};
use crate::ir::{DType, Tensor, TensorData};

/// The IR element type and the ONNX code of each, in one table.
const TYPES: &[(DType, DataType)] = &[
    (DType::F32, DataType::Float),
    (DType::I64, DataType::Int64),
    (DType::I32, DataType::Int32),
    (DType::Bool, DataType::Bool),
    (DType::F64, DataType::Double),
    (DType::F16, DataType::Float16),
    (DType::BF16, DataType::Bfloat16),
    (DType::I8, DataType::Int8),
    (DType::I16, DataType::Int16),
    (DType::U8, DataType::Uint8),
    (DType::U16, DataType::Uint16),
    (DType::U32, DataType::Uint32),
    (DType::U64, DataType::Uint64),
    (DType::F8E4M3FN, DataType::Float8e4m3fn),
    (DType::F8E4M3FNUZ, DataType::Float8e4m3fnuz),
    (DType::F8E5M2, DataType::Float8e5m2),
    (DType::F8E5M2FNUZ, DataType::Float8e5m2fnuz),
    (DType::I4, DataType::Int4),
    (DType::U4, DataType::Uint4),
    (DType::I2, DataType::Int2),
    (DType::U2, DataType::Uint2),
];

/// The IR element type for an ONNX `TensorProto.DataType` code.
pub(crate) fn dtype_from_onnx(code: i32, what: &str) -> Result<DType, ImportError> {
    if let Some(&(dtype, _)) = TYPES.iter().find(|(_, t)| *t as i32 == code) {
        return Ok(dtype);
    }
    match DataType::try_from(code) {
        Ok(DataType::Undefined) => Err(malformed(format!("{what} has no element type"))),
        _ => Err(ImportError::new(
            ErrorKind::UnsupportedDtype,
            format!("{what} has element type {}", onnx_dtype_name(code)),
        )
        .with_hint(
            "qairt runs numeric and bool tensors; strings, complex numbers, float4 and float8e8m0 are not supported",
        )),
    }
}

/// The ONNX spelling of an element type code, e.g. `FLOAT16`, for messages.
pub(crate) fn onnx_dtype_name(code: i32) -> String {
    match DataType::try_from(code) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("<unknown code {code}>"),
    }
}

/// The ONNX code of an IR element type.
pub(crate) fn onnx_code(dtype: DType) -> i32 {
    TYPES.iter().find(|(d, _)| *d == dtype).map_or(DataType::Undefined, |&(_, t)| t) as i32
}

/// ONNX `raw_data` bytes of `data` (4- and 2-bit integers packed).
pub(crate) fn onnx_raw_bytes(data: &TensorData) -> Vec<u8> {
    data.to_packed_bytes()
}

/// Whether an external-data `location` stays inside the model's directory: relative, with no
/// `..` component. ONNX requires this; anything else is never read.
pub(crate) fn is_safe_location(location: &str) -> bool {
    let bytes = location.as_bytes();
    let absolute = location.starts_with('/')
        || location.starts_with('\\')
        || (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic());
    !location.is_empty() && !absolute && !location.split(['/', '\\']).any(|part| part == "..")
}

/// Where an external tensor's bytes live.
pub(crate) struct ExternalRef {
    pub location: String,
    pub offset: Option<u64>,
    pub length: Option<u64>,
}

/// Reads the `external_data` key/value pairs of a tensor stored outside the model.
pub(crate) fn external_ref(t: &TensorProto) -> Result<ExternalRef, ImportError> {
    let what = format!("tensor {:?}", t.name());
    let mut location = None;
    let mut offset = None;
    let mut length = None;
    for entry in &t.external_data {
        let value = entry.value();
        let number = || {
            value.parse::<u64>().map_err(|_| {
                malformed(format!("{what}: external_data {:?} = {value:?} is not a byte count", entry.key()))
            })
        };
        match entry.key() {
            "location" => location = Some(value.to_string()),
            "offset" => offset = Some(number()?),
            "length" => length = Some(number()?),
            _ => {} // "checksum" and future keys do not change where the bytes are.
        }
    }
    let location = location.ok_or_else(|| malformed(format!("{what} is stored externally but names no location")))?;
    if !is_safe_location(&location) {
        return Err(malformed(format!(
            "{what}: external data location {location:?} is not a relative path inside the model's directory"
        )));
    }
    Ok(ExternalRef { location, offset, length })
}

/// Decodes a tensor, taking external bytes from `external` (location -> file contents).
pub(crate) fn decode_tensor(t: &TensorProto, external: &BTreeMap<String, Vec<u8>>) -> Result<Tensor, ImportError> {
    let what = format!("tensor {:?}", t.name());
    let dtype = dtype_from_onnx(t.data_type(), &what)?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| malformed(format!("{what} has negative dimension {d}")))?;
        shape.push(d);
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| malformed(format!("{what}: shape {shape:?} is too large")))?;
    if t.segment.is_some() {
        return Err(ImportError::new(
            ErrorKind::UnsupportedFeature,
            format!("{what} is a segment of a larger tensor, which qairt does not import"),
        ));
    }
    let data = if t.data_location() == DataLocation::External {
        let bytes = external_bytes(t, external)?;
        from_le_bytes(dtype, bytes, count, &what)?
    } else if let Some(raw) = &t.raw_data {
        from_le_bytes(dtype, raw, count, &what)?
    } else {
        from_typed_fields(t, dtype, count, &what)?
    };
    Tensor::new(shape, data).map_err(|e| malformed(format!("{what}: {e}")))
}

/// The slice of an external file that holds `t`'s bytes.
pub(crate) fn external_bytes<'a>(
    t: &TensorProto,
    external: &'a BTreeMap<String, Vec<u8>>,
) -> Result<&'a [u8], ImportError> {
    let what = format!("tensor {:?}", t.name());
    let r = external_ref(t)?;
    let file = external.get(&r.location).ok_or_else(|| {
        ImportError::new(
            ErrorKind::MissingExternalData,
            format!("{what} is stored in external file {:?}, which was not found", r.location),
        )
        .with_hint("external data files are looked up relative to the model file; keep them next to it")
    })?;
    let size = file.len() as u64;
    let offset = r.offset.unwrap_or(0);
    let end = match r.length {
        Some(length) => offset.checked_add(length),
        None => Some(size),
    };
    match end {
        Some(end) if offset <= end && end <= size => {
            // Both fit in the file's length, which is a usize.
            Ok(&file[offset as usize..end as usize])
        }
        _ => Err(ImportError::new(
            ErrorKind::Truncated,
            format!(
                "{what} needs bytes {offset}..{} of external file {:?}, which has only {size} bytes",
                end.map_or("<overflow>".to_string(), |e| e.to_string()),
                r.location
            ),
        )),
    }
}

/// Decodes ONNX `raw_data` (or external bytes): the raw-file layout, with 4- and 2-bit
/// integers packed several to a byte.
fn from_le_bytes(dtype: DType, bytes: &[u8], count: usize, what: &str) -> Result<TensorData, ImportError> {
    TensorData::from_packed_bytes(dtype, bytes, count).map_err(|e| malformed(format!("{what}: {e}")))
}

/// The typed repeated fields: `float_data`, `double_data`, `int64_data`, `uint64_data`
/// (uint32, uint64) and `int32_data` for every narrower type (the 16-bit floats as their bit
/// patterns, float8 as codes, 4- and 2-bit integers packed as in `raw_data`).
fn from_typed_fields(t: &TensorProto, dtype: DType, count: usize, what: &str) -> Result<TensorData, ImportError> {
    let check = |field: &str, found: usize, expected: usize| {
        if found == expected {
            Ok(())
        } else {
            Err(malformed(format!("{what}: shape {:?} needs {expected} values in {field}, it holds {found}", t.dims)))
        }
    };
    match dtype {
        DType::F32 => {
            check("float_data", t.float_data.len(), count)?;
            Ok(TensorData::F32(t.float_data.clone()))
        }
        DType::F64 => {
            check("double_data", t.double_data.len(), count)?;
            Ok(TensorData::F64(t.double_data.clone()))
        }
        DType::I64 => {
            check("int64_data", t.int64_data.len(), count)?;
            Ok(TensorData::I64(t.int64_data.clone()))
        }
        DType::U32 => {
            check("uint64_data", t.uint64_data.len(), count)?;
            Ok(TensorData::U32(t.uint64_data.iter().map(|&v| v as u32).collect()))
        }
        DType::U64 => {
            check("uint64_data", t.uint64_data.len(), count)?;
            Ok(TensorData::U64(t.uint64_data.clone()))
        }
        DType::I32 => {
            check("int32_data", t.int32_data.len(), count)?;
            Ok(TensorData::I32(t.int32_data.clone()))
        }
        _ => {
            // Each int32 holds one element's bits (one packed byte for 4- and 2-bit types).
            let n = TensorData::per_byte(dtype);
            check("int32_data", t.int32_data.len(), if n == 1 { count } else { count.div_ceil(n) })?;
            let size = if n == 1 { dtype.size_bytes() } else { 1 };
            let bytes: Vec<u8> = t.int32_data.iter().flat_map(|&v| v.to_le_bytes()[..size].to_vec()).collect();
            from_le_bytes(dtype, &bytes, count, what)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::StringStringEntryProto;

    fn entry(key: &str, value: &str) -> StringStringEntryProto {
        StringStringEntryProto { key: Some(key.into()), value: Some(value.into()) }
    }

    #[test]
    fn raw_data_is_little_endian() {
        let mut raw = Vec::new();
        for v in [1.5f32, -2.0] {
            raw.extend(v.to_le_bytes());
        }
        let t = TensorProto {
            name: Some("w".into()),
            dims: vec![2],
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        };
        let got = decode_tensor(&t, &BTreeMap::new()).unwrap();
        assert_eq!(got, Tensor::from_f32(vec![2], vec![1.5, -2.0]));
    }

    #[test]
    fn typed_fields_and_bool() {
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(DataType::Bool as i32),
            int32_data: vec![0, 1, 7],
            ..Default::default()
        };
        let got = decode_tensor(&t, &BTreeMap::new()).unwrap();
        assert_eq!(got.data, TensorData::Bool(vec![0, 1, 1]));
        let short = TensorProto { int32_data: vec![1], ..t };
        let err = decode_tensor(&short, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert!(err.message.contains("needs 3 values in int32_data, it holds 1"), "{}", err.message);
    }

    #[test]
    fn external_data_honours_offset_and_length() {
        let mut file = vec![0xAAu8; 3];
        file.extend(7i64.to_le_bytes());
        file.extend(9i64.to_le_bytes());
        let t = TensorProto {
            name: Some("shape".into()),
            dims: vec![1],
            data_type: Some(DataType::Int64 as i32),
            data_location: Some(DataLocation::External as i32),
            external_data: vec![entry("location", "w.bin"), entry("offset", "11"), entry("length", "8")],
            ..Default::default()
        };
        let files = BTreeMap::from([("w.bin".to_string(), file)]);
        assert_eq!(decode_tensor(&t, &files).unwrap(), Tensor::from_i64(vec![1], vec![9]));
        let err = decode_tensor(&t, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MissingExternalData);
        let far = TensorProto {
            external_data: vec![entry("location", "w.bin"), entry("offset", "12"), entry("length", "8")],
            ..t.clone()
        };
        assert_eq!(decode_tensor(&far, &files).unwrap_err().kind, ErrorKind::Truncated);
    }

    #[test]
    fn unsafe_locations_are_rejected() {
        assert!(is_safe_location("weights/model.data"));
        assert!(!is_safe_location("../secret"));
        assert!(!is_safe_location("a/../../b"));
        assert!(!is_safe_location("/etc/passwd"));
        assert!(!is_safe_location("C:\\w.bin"));
        assert!(!is_safe_location(""));
    }

    #[test]
    fn unsupported_element_types_are_named() {
        let t = TensorProto {
            name: Some("h".into()),
            dims: vec![1],
            data_type: Some(DataType::Complex64 as i32),
            raw_data: Some(vec![0; 8]),
            ..Default::default()
        };
        let err = decode_tensor(&t, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnsupportedDtype);
        assert!(err.message.contains("COMPLEX64"), "{}", err.message);
    }
}
