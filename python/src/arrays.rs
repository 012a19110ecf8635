//! numpy arrays to qairt tensors and back. An input array must have the model input's element
//! type and shape (no silent conversion: a float64 array for a float32 input is an error that
//! says `.astype(numpy.float32)`). A C-contiguous array is read straight from its buffer, any
//! other layout element by element in logical order, into the tensor the executor takes: one
//! copy, made while the GIL is held, because the model then runs with the GIL released and a
//! Python thread could be writing to the array meanwhile (reading the buffer then would be a
//! data race). Outputs become arrays that own the executor's result vectors, moved, not copied.

use half::f16;
use numpy::{Element, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use qairt::ir::{DType, Tensor, TensorData, TensorInfo};

use crate::errors;

/// The numpy name of a qairt element type, when numpy has it.
pub fn numpy_name(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::I64 => "int64",
        DType::I32 => "int32",
        DType::I16 => "int16",
        DType::I8 => "int8",
        DType::U8 => "uint8",
        DType::U16 => "uint16",
        DType::U32 => "uint32",
        DType::U64 => "uint64",
        DType::Bool => "bool",
        _ => return None,
    })
}

/// The tensor `value` gives the model input `info`.
pub fn tensor_from_array(info: &TensorInfo, value: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let name = &info.name;
    let expected = numpy_name(info.dtype).ok_or_else(|| {
        errors::error(
            "qairt::python::input_type",
            format!("input \"{name}\" is {}, which numpy has no type for", info.dtype.name()),
            "run this model from input files (qairt build) instead",
        )
    })?;
    let array = value.cast::<PyUntypedArray>().map_err(|_| {
        errors::error(
            "qairt::python::input_type",
            format!("input \"{name}\" is not a numpy array (got {})", type_name(value)),
            format!("pass numpy.asarray(value, dtype=numpy.{expected})"),
        )
    })?;
    let given = array.dtype().to_string();
    if array.shape() != info.shape.as_slice() || given != expected {
        return Err(errors::error(
            "qairt::python::input_mismatch",
            format!(
                "input \"{name}\" of the model is {expected} {:?}; the array given is {given} {:?}",
                info.shape,
                array.shape()
            ),
            format!(
                "pass an array of shape {:?} and dtype numpy.{expected} (e.g. with .astype and .reshape)",
                info.shape
            ),
        ));
    }
    let data = match info.dtype {
        DType::F32 => TensorData::F32(elements(array)?),
        DType::F64 => TensorData::F64(elements(array)?),
        DType::F16 => TensorData::F16(elements::<f16>(array)?),
        DType::I64 => TensorData::I64(elements(array)?),
        DType::I32 => TensorData::I32(elements(array)?),
        DType::I16 => TensorData::I16(elements(array)?),
        DType::I8 => TensorData::I8(elements(array)?),
        DType::U8 => TensorData::U8(elements(array)?),
        DType::U16 => TensorData::U16(elements(array)?),
        DType::U32 => TensorData::U32(elements(array)?),
        DType::U64 => TensorData::U64(elements(array)?),
        DType::Bool => TensorData::Bool(elements::<bool>(array)?.into_iter().map(u8::from).collect()),
        _ => unreachable!("numpy_name covers exactly these types"),
    };
    Tensor::new(info.shape.clone(), data).map_err(|e| errors::error("qairt::python::input_mismatch", e.to_string(), ""))
}

/// The elements of `array` (already checked to hold `T`) in logical C order: one copy of a
/// C-contiguous buffer, else an element-wise walk.
fn elements<T: Element + Copy>(array: &Bound<'_, PyUntypedArray>) -> PyResult<Vec<T>> {
    let typed: PyReadonlyArrayDyn<'_, T> = array.as_any().extract()?;
    // `as_slice` also takes a Fortran-ordered buffer, whose memory order is not the logical one.
    if array.is_c_contiguous()
        && let Ok(slice) = typed.as_slice()
    {
        return Ok(slice.to_vec());
    }
    Ok(typed.as_array().iter().copied().collect())
}

/// `tensor` as a numpy array of its own element type and shape (float32 for every quantized
/// output: the executor dequantizes them, as `out/<target>/outputs/` holds them).
pub fn array_from_tensor<'py>(py: Python<'py>, tensor: Tensor) -> PyResult<Bound<'py, PyAny>> {
    let Tensor { shape, data } = tensor;
    let array = match data {
        TensorData::F32(v) => shaped(py, v, &shape)?,
        TensorData::F64(v) => shaped(py, v, &shape)?,
        TensorData::F16(v) => shaped(py, v, &shape)?,
        TensorData::I64(v) => shaped(py, v, &shape)?,
        TensorData::I32(v) => shaped(py, v, &shape)?,
        TensorData::I16(v) => shaped(py, v, &shape)?,
        TensorData::I8(v) => shaped(py, v, &shape)?,
        TensorData::U8(v) => shaped(py, v, &shape)?,
        TensorData::U16(v) => shaped(py, v, &shape)?,
        TensorData::U32(v) => shaped(py, v, &shape)?,
        TensorData::U64(v) => shaped(py, v, &shape)?,
        TensorData::Bool(v) => shaped(py, v.into_iter().map(|b| b != 0).collect::<Vec<bool>>(), &shape)?,
        other => {
            // Types numpy lacks (bfloat16, float8, 4- and 2-bit integers): float32 values.
            let tensor = Tensor { shape: shape.clone(), data: other };
            shaped(py, tensor.to_f32_vec(), &shape)?
        }
    };
    Ok(array)
}

/// `values` moved into a numpy array of `shape`.
fn shaped<'py, T: Element>(py: Python<'py>, values: Vec<T>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    let flat = PyArray1::from_vec(py, values);
    let array: Bound<'py, PyArrayDyn<T>> = flat.reshape(shape.to_vec())?;
    Ok(array.into_any())
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "an object".to_string())
}
