//! Dense host tensors: element types, shapes and owned data.
//!
//! Every ONNX tensor element type an inference graph can hold has a [`DType`] and a
//! [`TensorData`] variant: float32/64, float16, bfloat16, the signed and unsigned integers of
//! 8 to 64 bits, bool, the four float8 formats and the 4- and 2-bit integers. Float8 values
//! are kept as their 8-bit codes; 4- and 2-bit integers one per byte (sign-extended for the
//! signed ones). [`TensorData::from_le_bytes`] / [`TensorData::to_le_bytes`] are the raw-file
//! layout of the SDK's input and output files: little-endian, bool one byte, float8 one byte,
//! 4- and 2-bit integers one per byte.
//!
//! **Invariant:** `data.len() == shape.iter().product()` for every `Tensor` built through
//! [`Tensor::new`]; the element type is the variant of [`TensorData`].

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// Element types the IR carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DType {
    F32,
    I64,
    I32,
    Bool,
    F64,
    F16,
    BF16,
    I8,
    I16,
    U8,
    U16,
    U32,
    U64,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    I4,
    U4,
    I2,
    U2,
}

impl DType {
    /// Every element type, in declaration order.
    pub const ALL: [DType; 21] = [
        DType::F32,
        DType::I64,
        DType::I32,
        DType::Bool,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I8,
        DType::I16,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::I4,
        DType::U4,
        DType::I2,
        DType::U2,
    ];

    /// Bytes of one element in memory and in raw files.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            _ => 1,
        }
    }

    /// The numpy-style name (`float32`, `int64`, `float8e4m3fn`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::Bool => "bool",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F8E4M3FN => "float8e4m3fn",
            DType::F8E4M3FNUZ => "float8e4m3fnuz",
            DType::F8E5M2 => "float8e5m2",
            DType::F8E5M2FNUZ => "float8e5m2fnuz",
            DType::I4 => "int4",
            DType::U4 => "uint4",
            DType::I2 => "int2",
            DType::U2 => "uint2",
        }
    }

    /// A floating-point type (float8 included).
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F32
                | DType::F64
                | DType::F16
                | DType::BF16
                | DType::F8E4M3FN
                | DType::F8E4M3FNUZ
                | DType::F8E5M2
                | DType::F8E5M2FNUZ
        )
    }

    /// A float type the kernels compute in (float32, float64, float16, bfloat16).
    pub fn is_compute_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// An integer type (bool excluded).
    pub fn is_integer(self) -> bool {
        !self.is_float() && self != DType::Bool
    }

    pub fn is_signed_integer(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::I4 | DType::I2)
    }

    /// The range of an integer type, as i128 (every integer type fits).
    pub fn integer_range(self) -> Option<(i128, i128)> {
        Some(match self {
            DType::I8 => (i8::MIN.into(), i8::MAX.into()),
            DType::I16 => (i16::MIN.into(), i16::MAX.into()),
            DType::I32 => (i32::MIN.into(), i32::MAX.into()),
            DType::I64 => (i64::MIN.into(), i64::MAX.into()),
            DType::U8 => (0, u8::MAX.into()),
            DType::U16 => (0, u16::MAX.into()),
            DType::U32 => (0, u32::MAX.into()),
            DType::U64 => (0, u64::MAX.into()),
            DType::I4 => (-8, 7),
            DType::U4 => (0, 15),
            DType::I2 => (-2, 1),
            DType::U2 => (0, 3),
            DType::Bool => (0, 1),
            _ => return None,
        })
    }
}

/// Owned element storage, one variant per [`DType`]. Bool is one byte (0 or 1) per element;
/// float8 values are their codes; 4- and 2-bit integers one per byte.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorData {
    F32(#[serde(with = "f32_bytes")] Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<u8>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F8E4M3FN(Vec<u8>),
    F8E4M3FNUZ(Vec<u8>),
    F8E5M2(Vec<u8>),
    F8E5M2FNUZ(Vec<u8>),
    I4(Vec<i8>),
    U4(Vec<u8>),
    I2(Vec<i8>),
    U2(Vec<u8>),
}

/// Runs `$body` with `$v` bound to the element vector of `$data`, whatever its variant.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::ir::TensorData::F32($v) => $body,
            $crate::ir::TensorData::I64($v) => $body,
            $crate::ir::TensorData::I32($v) => $body,
            $crate::ir::TensorData::Bool($v) => $body,
            $crate::ir::TensorData::F64($v) => $body,
            $crate::ir::TensorData::F16($v) => $body,
            $crate::ir::TensorData::BF16($v) => $body,
            $crate::ir::TensorData::I8($v) => $body,
            $crate::ir::TensorData::I16($v) => $body,
            $crate::ir::TensorData::U8($v) => $body,
            $crate::ir::TensorData::U16($v) => $body,
            $crate::ir::TensorData::U32($v) => $body,
            $crate::ir::TensorData::U64($v) => $body,
            $crate::ir::TensorData::F8E4M3FN($v) => $body,
            $crate::ir::TensorData::F8E4M3FNUZ($v) => $body,
            $crate::ir::TensorData::F8E5M2($v) => $body,
            $crate::ir::TensorData::F8E5M2FNUZ($v) => $body,
            $crate::ir::TensorData::I4($v) => $body,
            $crate::ir::TensorData::U4($v) => $body,
            $crate::ir::TensorData::I2($v) => $body,
            $crate::ir::TensorData::U2($v) => $body,
        }
    };
}

/// Builds the same variant as `$data` from `$body`, which maps `$v` (the element vector) to a
/// new vector of the same element type (data movement: gather, transpose, slice, ...).
#[macro_export]
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::ir::TensorData::F32($v) => $crate::ir::TensorData::F32($body),
            $crate::ir::TensorData::I64($v) => $crate::ir::TensorData::I64($body),
            $crate::ir::TensorData::I32($v) => $crate::ir::TensorData::I32($body),
            $crate::ir::TensorData::Bool($v) => $crate::ir::TensorData::Bool($body),
            $crate::ir::TensorData::F64($v) => $crate::ir::TensorData::F64($body),
            $crate::ir::TensorData::F16($v) => $crate::ir::TensorData::F16($body),
            $crate::ir::TensorData::BF16($v) => $crate::ir::TensorData::BF16($body),
            $crate::ir::TensorData::I8($v) => $crate::ir::TensorData::I8($body),
            $crate::ir::TensorData::I16($v) => $crate::ir::TensorData::I16($body),
            $crate::ir::TensorData::U8($v) => $crate::ir::TensorData::U8($body),
            $crate::ir::TensorData::U16($v) => $crate::ir::TensorData::U16($body),
            $crate::ir::TensorData::U32($v) => $crate::ir::TensorData::U32($body),
            $crate::ir::TensorData::U64($v) => $crate::ir::TensorData::U64($body),
            $crate::ir::TensorData::F8E4M3FN($v) => $crate::ir::TensorData::F8E4M3FN($body),
            $crate::ir::TensorData::F8E4M3FNUZ($v) => $crate::ir::TensorData::F8E4M3FNUZ($body),
            $crate::ir::TensorData::F8E5M2($v) => $crate::ir::TensorData::F8E5M2($body),
            $crate::ir::TensorData::F8E5M2FNUZ($v) => $crate::ir::TensorData::F8E5M2FNUZ($body),
            $crate::ir::TensorData::I4($v) => $crate::ir::TensorData::I4($body),
            $crate::ir::TensorData::U4($v) => $crate::ir::TensorData::U4($body),
            $crate::ir::TensorData::I2($v) => $crate::ir::TensorData::I2($body),
            $crate::ir::TensorData::U2($v) => $crate::ir::TensorData::U2($body),
        }
    };
}

/// Little-endian element codecs of the plain types.
trait Le: Sized {
    const SIZE: usize;
    fn read(bytes: &[u8]) -> Self;
    fn write(&self, out: &mut Vec<u8>);
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw)
            }
            fn write(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

le!(f32, f64, f16, bf16, i8, i16, i32, i64, u8, u16, u32, u64);

fn read_all<T: Le>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::read).collect()
}

fn write_all<T: Le>(values: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * T::SIZE);
    for v in values {
        v.write(&mut out);
    }
    out
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::Bool(_) => DType::Bool,
            TensorData::F64(_) => DType::F64,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I8(_) => DType::I8,
            TensorData::I16(_) => DType::I16,
            TensorData::U8(_) => DType::U8,
            TensorData::U16(_) => DType::U16,
            TensorData::U32(_) => DType::U32,
            TensorData::U64(_) => DType::U64,
            TensorData::F8E4M3FN(_) => DType::F8E4M3FN,
            TensorData::F8E4M3FNUZ(_) => DType::F8E4M3FNUZ,
            TensorData::F8E5M2(_) => DType::F8E5M2,
            TensorData::F8E5M2FNUZ(_) => DType::F8E5M2FNUZ,
            TensorData::I4(_) => DType::I4,
            TensorData::U4(_) => DType::U4,
            TensorData::I2(_) => DType::I2,
            TensorData::U2(_) => DType::U2,
        }
    }

    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements at `indices` (each must be in range), in the same type.
    pub fn gather(&self, indices: &[usize]) -> TensorData {
        map_data!(self, v => indices.iter().map(|&i| v[i]).collect())
    }

    /// `count` copies of element `index` (ConstantOfShape, Expand of a scalar).
    pub fn repeat(&self, index: usize, count: usize) -> TensorData {
        map_data!(self, v => vec![v[index]; count])
    }

    /// The elements of several tensors of one type, one after the other (`None` when the
    /// parts' types differ).
    pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
        let dtype = parts.first()?.dtype();
        if parts.iter().any(|p| p.dtype() != dtype) {
            return None;
        }
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.to_le_bytes()).collect();
        TensorData::from_le_bytes(dtype, &bytes).ok()
    }

    /// Decodes a raw little-endian buffer of `dtype` elements (the SDK's raw file layout).
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Result<TensorData, String> {
        let size = dtype.size_bytes();
        if !bytes.len().is_multiple_of(size) {
            return Err(format!("{} bytes are not a whole number of {} elements", bytes.len(), dtype.name()));
        }
        Ok(match dtype {
            DType::F32 => TensorData::F32(read_all(bytes)),
            DType::F64 => TensorData::F64(read_all(bytes)),
            DType::F16 => TensorData::F16(read_all(bytes)),
            DType::BF16 => TensorData::BF16(read_all(bytes)),
            DType::I8 => TensorData::I8(read_all(bytes)),
            DType::I16 => TensorData::I16(read_all(bytes)),
            DType::I32 => TensorData::I32(read_all(bytes)),
            DType::I64 => TensorData::I64(read_all(bytes)),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::U16 => TensorData::U16(read_all(bytes)),
            DType::U32 => TensorData::U32(read_all(bytes)),
            DType::U64 => TensorData::U64(read_all(bytes)),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| u8::from(b != 0)).collect()),
            DType::F8E4M3FN => TensorData::F8E4M3FN(bytes.to_vec()),
            DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(bytes.to_vec()),
            DType::F8E5M2 => TensorData::F8E5M2(bytes.to_vec()),
            DType::F8E5M2FNUZ => TensorData::F8E5M2FNUZ(bytes.to_vec()),
            // One element per byte; the signed narrow types sign-extend their low bits.
            DType::I4 => TensorData::I4(bytes.iter().map(|&b| ((b << 4) as i8) >> 4).collect()),
            DType::U4 => TensorData::U4(bytes.iter().map(|&b| b & 0x0F).collect()),
            DType::I2 => TensorData::I2(bytes.iter().map(|&b| ((b << 6) as i8) >> 6).collect()),
            DType::U2 => TensorData::U2(bytes.iter().map(|&b| b & 0x03).collect()),
        })
    }

    /// The raw little-endian bytes (the inverse of [`TensorData::from_le_bytes`]).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::F32(v) => write_all(v),
            TensorData::F64(v) => write_all(v),
            TensorData::F16(v) => write_all(v),
            TensorData::BF16(v) => write_all(v),
            TensorData::I8(v) | TensorData::I4(v) | TensorData::I2(v) => write_all(v),
            TensorData::I16(v) => write_all(v),
            TensorData::I32(v) => write_all(v),
            TensorData::I64(v) => write_all(v),
            TensorData::U16(v) => write_all(v),
            TensorData::U32(v) => write_all(v),
            TensorData::U64(v) => write_all(v),
            TensorData::U8(v)
            | TensorData::Bool(v)
            | TensorData::F8E4M3FN(v)
            | TensorData::F8E4M3FNUZ(v)
            | TensorData::F8E5M2(v)
            | TensorData::F8E5M2FNUZ(v)
            | TensorData::U4(v)
            | TensorData::U2(v) => v.clone(),
        }
    }

    /// Elements of `dtype` packed into one byte of the raw file and ONNX `raw_data` layout:
    /// 2 for the 4-bit integers, 4 for the 2-bit ones, else 1.
    pub fn per_byte(dtype: DType) -> usize {
        match dtype {
            DType::I4 | DType::U4 => 2,
            DType::I2 | DType::U2 => 4,
            _ => 1,
        }
    }

    /// The packed raw bytes (ONNX `raw_data`, the SDK's raw files): [`TensorData::to_le_bytes`]
    /// with 4- and 2-bit integers packed, element `k` of a byte in its bits `k*w..(k+1)*w`.
    pub fn to_packed_bytes(&self) -> Vec<u8> {
        let n = TensorData::per_byte(self.dtype());
        let plain = self.to_le_bytes();
        if n == 1 {
            return plain;
        }
        let width = 8 / n;
        let mask = (1u8 << width) - 1;
        plain
            .chunks(n)
            .map(|c| c.iter().enumerate().fold(0u8, |acc, (k, &v)| acc | ((v & mask) << (k * width))))
            .collect()
    }

    /// Decodes `count` packed elements (the inverse of [`TensorData::to_packed_bytes`]).
    pub fn from_packed_bytes(dtype: DType, bytes: &[u8], count: usize) -> Result<TensorData, String> {
        let n = TensorData::per_byte(dtype);
        let want = if n == 1 { count.checked_mul(dtype.size_bytes()) } else { Some(count.div_ceil(n)) };
        if want != Some(bytes.len()) {
            return Err(format!(
                "{count} {} elements need {} bytes, found {}",
                dtype.name(),
                want.map_or("too many".to_string(), |w| w.to_string()),
                bytes.len()
            ));
        }
        if n == 1 {
            return TensorData::from_le_bytes(dtype, bytes);
        }
        let width = 8 / n;
        let mask = (1u8 << width) - 1;
        let plain: Vec<u8> = (0..count).map(|i| (bytes[i / n] >> ((i % n) * width)) & mask).collect();
        TensorData::from_le_bytes(dtype, &plain)
    }

    /// Every element as f64 (exact for every type but int64/uint64 beyond 2^53; float8 codes
    /// decoded).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::BF16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I8(v) | TensorData::I4(v) | TensorData::I2(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U8(v) | TensorData::Bool(v) | TensorData::U4(v) | TensorData::U2(v) => {
                v.iter().map(|&x| f64::from(x)).collect()
            }
            TensorData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F8E4M3FN(v) => {
                v.iter().map(|&c| f64::from(super::float8::decode(DType::F8E4M3FN, c))).collect()
            }
            TensorData::F8E4M3FNUZ(v) => {
                v.iter().map(|&c| f64::from(super::float8::decode(DType::F8E4M3FNUZ, c))).collect()
            }
            TensorData::F8E5M2(v) => v.iter().map(|&c| f64::from(super::float8::decode(DType::F8E5M2, c))).collect(),
            TensorData::F8E5M2FNUZ(v) => {
                v.iter().map(|&c| f64::from(super::float8::decode(DType::F8E5M2FNUZ, c))).collect()
            }
        }
    }

    /// Integer (and bool) contents widened to i64; `None` for float data. uint64 values above
    /// `i64::MAX` wrap, as a C cast does.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::I8(v) | TensorData::I4(v) | TensorData::I2(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::U8(v) | TensorData::Bool(v) | TensorData::U4(v) | TensorData::U2(v) => {
                v.iter().map(|&x| i64::from(x)).collect()
            }
            TensorData::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// Values of a float type from f64, rounded to nearest even (float8: saturating to the
    /// largest finite value when `saturate`, as ONNX Cast's default does).
    pub fn floats_from_f64(dtype: DType, values: &[f64], saturate: bool) -> Option<TensorData> {
        Some(match dtype {
            DType::F32 => TensorData::F32(values.iter().map(|&x| x as f32).collect()),
            DType::F64 => TensorData::F64(values.to_vec()),
            DType::F16 => TensorData::F16(values.iter().map(|&x| f16::from_f64(x)).collect()),
            DType::BF16 => TensorData::BF16(values.iter().map(|&x| bf16::from_f64(x)).collect()),
            DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ => {
                let codes = values.iter().map(|&x| super::float8::encode(dtype, x as f32, saturate)).collect();
                match dtype {
                    DType::F8E4M3FN => TensorData::F8E4M3FN(codes),
                    DType::F8E4M3FNUZ => TensorData::F8E4M3FNUZ(codes),
                    DType::F8E5M2 => TensorData::F8E5M2(codes),
                    _ => TensorData::F8E5M2FNUZ(codes),
                }
            }
            _ => return None,
        })
    }

    /// Values of an integer (or bool) type from i64, wrapping as a C cast does (bool: non-zero
    /// is true; 4- and 2-bit types keep their low bits, sign-extended for the signed ones).
    pub fn ints_from_i64(dtype: DType, values: &[i64]) -> Option<TensorData> {
        Some(match dtype {
            DType::I64 => TensorData::I64(values.to_vec()),
            DType::I32 => TensorData::I32(values.iter().map(|&x| x as i32).collect()),
            DType::I16 => TensorData::I16(values.iter().map(|&x| x as i16).collect()),
            DType::I8 => TensorData::I8(values.iter().map(|&x| x as i8).collect()),
            DType::U64 => TensorData::U64(values.iter().map(|&x| x as u64).collect()),
            DType::U32 => TensorData::U32(values.iter().map(|&x| x as u32).collect()),
            DType::U16 => TensorData::U16(values.iter().map(|&x| x as u16).collect()),
            DType::U8 => TensorData::U8(values.iter().map(|&x| x as u8).collect()),
            DType::Bool => TensorData::Bool(values.iter().map(|&x| u8::from(x != 0)).collect()),
            DType::I4 => TensorData::I4(values.iter().map(|&x| ((x as i8) << 4) >> 4).collect()),
            DType::U4 => TensorData::U4(values.iter().map(|&x| (x as u8) & 0x0F).collect()),
            DType::I2 => TensorData::I2(values.iter().map(|&x| ((x as i8) << 6) >> 6).collect()),
            DType::U2 => TensorData::U2(values.iter().map(|&x| (x as u8) & 0x03).collect()),
            _ => return None,
        })
    }
}

/// A dense, row-major tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// The element count does not match the shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor of shape {shape:?} needs {expected} elements, got {got}")]
pub struct ShapeMismatch {
    pub shape: Vec<usize>,
    pub expected: usize,
    pub got: usize,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, ShapeMismatch> {
        let expected = shape.iter().product::<usize>();
        if expected != data.len() {
            return Err(ShapeMismatch { shape, expected, got: data.len() });
        }
        Ok(Tensor { shape, data })
    }

    /// A float tensor; panics only on a programming error (shape and data disagree).
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor::new(shape, TensorData::F32(data)).expect("float tensor shape matches its data")
    }

    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Tensor {
        Tensor::new(shape, TensorData::I64(data)).expect("int64 tensor shape matches its data")
    }

    pub fn scalar_f32(value: f32) -> Tensor {
        Tensor::from_f32(vec![], vec![value])
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Integer contents widened to i64 (shape arithmetic); `None` for float data.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        self.data.to_i64_vec()
    }

    /// Contents converted to f32, whatever the element type.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            other => other.to_f64_vec().into_iter().map(|x| x as f32).collect(),
        }
    }
}

/// Row-major strides of `shape`, in elements.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Serde for [`TensorData::F32`]: the values as one byte string of their little-endian bytes.
/// The store's records (graphs and their weights, run outputs, checkpoints) hold millions of
/// float32 values; as a byte string they decode with one pass over the bytes, where a sequence
/// is visited value by value (loading MobileNetV2's two graphs for a verify-only rebuild was
/// half of that rebuild). Formats without byte strings see an array of bytes.
mod f32_bytes {
    use std::fmt;

    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        serializer.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        deserializer.deserialize_bytes(LittleEndianBytes)
    }

    struct LittleEndianBytes;

    impl<'de> de::Visitor<'de> for LittleEndianBytes {
        type Value = Vec<f32>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("float32 values as little-endian bytes (a multiple of 4)")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<f32>, E> {
            if !bytes.len().is_multiple_of(4) {
                return Err(E::invalid_length(bytes.len(), &self));
            }
            Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            self.visit_bytes(&bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_data_round_trips_through_postcard_and_json_as_bytes() {
        let t = Tensor::from_f32(vec![2, 2], vec![1.5, -0.0, f32::MIN_POSITIVE, 3.0e38]);
        let bytes = postcard::to_stdvec(&t).unwrap();
        let back: Tensor = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.to_f32_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            t.to_f32_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Tensor>(&json).unwrap(), t);
        // Sixteen bytes of values, length-prefixed: no per-value encoding.
        assert!(bytes.windows(16).any(|w| {
            w == 1.5f32
                .to_le_bytes()
                .iter()
                .chain(&(-0.0f32).to_le_bytes())
                .chain(&f32::MIN_POSITIVE.to_le_bytes())
                .chain(&3.0e38f32.to_le_bytes())
                .copied()
                .collect::<Vec<u8>>()
        }));
        let truncated = serde_json::json!({"shape": [1], "data": {"F32": [0, 0, 128]}});
        assert!(serde_json::from_value::<Tensor>(truncated).is_err());
    }

    #[test]
    fn new_rejects_a_shape_that_disagrees_with_the_data() {
        let err = Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 5])).unwrap_err();
        assert_eq!((err.expected, err.got), (6, 5));
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides_of(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides_of(&[]), Vec::<usize>::new());
    }

    #[test]
    fn raw_bytes_round_trip_in_every_type() {
        for dtype in DType::ALL {
            // Codes 0 and 1 are valid in every type, bool included.
            let bytes: Vec<u8> = [0u8, 1, 1, 0]
                .into_iter()
                .flat_map(|k| {
                    let mut one = vec![0u8; dtype.size_bytes()];
                    one[0] = k;
                    one
                })
                .collect();
            let data = TensorData::from_le_bytes(dtype, &bytes).unwrap();
            assert_eq!(data.dtype(), dtype);
            assert_eq!(data.len(), 4, "{dtype:?}");
            assert_eq!(data.to_le_bytes(), bytes, "{dtype:?}");
        }
        assert!(TensorData::from_le_bytes(DType::F32, &[0; 6]).is_err());
    }

    #[test]
    fn narrow_integers_sign_extend_and_wrap() {
        // 0x0F is -1 as int4 and 15 as uint4; 0x02 is -2 as int2.
        assert_eq!(TensorData::from_le_bytes(DType::I4, &[0x0F]).unwrap(), TensorData::I4(vec![-1]));
        assert_eq!(TensorData::from_le_bytes(DType::U4, &[0x0F]).unwrap(), TensorData::U4(vec![15]));
        assert_eq!(TensorData::from_le_bytes(DType::I2, &[0x02]).unwrap(), TensorData::I2(vec![-2]));
        // C-cast wrapping: 300 as uint8 is 44; 9 as int4 is -7.
        assert_eq!(TensorData::ints_from_i64(DType::U8, &[300]).unwrap(), TensorData::U8(vec![44]));
        assert_eq!(TensorData::ints_from_i64(DType::I4, &[9]).unwrap(), TensorData::I4(vec![-7]));
    }

    #[test]
    fn gather_and_concat_keep_the_type() {
        let a = TensorData::I16(vec![1, 2, 3]);
        assert_eq!(a.gather(&[2, 0]), TensorData::I16(vec![3, 1]));
        let b = TensorData::I16(vec![4]);
        assert_eq!(TensorData::concat(&[&a, &b]).unwrap(), TensorData::I16(vec![1, 2, 3, 4]));
        assert!(TensorData::concat(&[&a, &TensorData::I8(vec![1])]).is_none());
    }
}
