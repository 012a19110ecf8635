//! `qairt._qairt.Session`: one compiled model (`model.bin`, given or built from an `.onnx` by
//! the session's project) run on numpy arrays on the host CPU by qairt's executor, the one
//! `qairt build`'s `simulate` stage runs, so a sample gives the bytes of its `Result_N` files.
//! The GIL is released while the model runs; every inference's time is kept for the metrics.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;
use qairt::engine::Workspace;
use qairt::ir::{DType, Tensor, TensorData, TensorInfo};

use crate::arrays::{array_from_tensor, numpy_name, tensor_from_array};
use crate::errors;
use crate::loaded::Loaded;
use crate::session_project;

#[pyclass(module = "qairt._qairt")]
pub struct Session {
    /// The compiled model this session runs.
    model_bin: PathBuf,
    /// The project that built it, for a session on an `.onnx` file.
    project: Option<PathBuf>,
    /// That build's verify event (docs/json.md), as JSON text.
    verify: Option<String>,
    /// The loaded network (`setup`), dropped by `reset`.
    loaded: Mutex<Option<Arc<Loaded>>>,
    /// Seconds per inference, in order, since the session was made.
    latencies: Mutex<Vec<f64>>,
}

#[pymethods]
impl Session {
    /// A session on `model_path`: an `.onnx` model, built with `options` (the keys of
    /// `qairt.toml`) by the session's project, or a compiled `model.bin` as it is.
    #[new]
    #[pyo3(signature = (model_path, options = None))]
    fn new(py: Python<'_>, model_path: PathBuf, options: Option<Bound<'_, PyDict>>) -> PyResult<Session> {
        let is_onnx = model_path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
        let (model_bin, project, verify) = if is_onnx {
            let options = options.unwrap_or_else(|| PyDict::new(py));
            let config = session_project::write(&model_path, &options)?;
            let (model_bin, verify) = py.detach(|| build(&config))?;
            (model_bin, Some(config), verify)
        } else {
            if let Some(options) = options.filter(|o| !o.is_empty()) {
                let keys: Vec<String> = options.keys().iter().map(|k| k.to_string()).collect();
                return Err(errors::error(
                    "qairt::python::option",
                    format!(
                        "{} is compiled already: build options ({}) do not apply to it",
                        model_path.display(),
                        keys.join(", ")
                    ),
                    "pass the .onnx model to build it with options, or leave them out",
                ));
            }
            (model_path, None, None)
        };
        let session =
            Session { model_bin, project, verify, loaded: Mutex::new(None), latencies: Mutex::new(Vec::new()) };
        session.setup(py)?;
        Ok(session)
    }

    /// Loads the network (reads and checks `model.bin`, prepares the executor); `run` does it
    /// when needed.
    fn setup(&self, py: Python<'_>) -> PyResult<()> {
        self.ensure_loaded(py).map(|_| ())
    }

    /// Releases the loaded network (its constants and plans); the next `run` loads it again.
    fn reset(&self) {
        *lock(&self.loaded) = None;
    }

    /// The compiled model this session runs.
    #[getter]
    fn model_bin(&self) -> PathBuf {
        self.model_bin.clone()
    }

    /// The `qairt.toml` of the project that built the model (`None` for a `model.bin`).
    #[getter]
    fn project(&self) -> Option<PathBuf> {
        self.project.clone()
    }

    /// The verify event of the build that made the model (JSON text; `None` for a
    /// `model.bin`).
    #[getter]
    fn _verify_json(&self) -> Option<String> {
        self.verify.clone()
    }

    /// One inference: `input_dict` maps every model input's name to an array of its shape
    /// and type; returns each output's name and array, in the model's output order.
    fn run<'py>(&self, py: Python<'py>, input_dict: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyDict>> {
        let loaded = self.ensure_loaded(py)?;
        let inputs = inputs_from_dict(&loaded, input_dict)?;
        let (outputs, seconds) = py.detach(|| {
            let start = Instant::now();
            let outputs = loaded.run(&inputs);
            (outputs, start.elapsed().as_secs_f64())
        });
        let outputs = outputs.map_err(|e| errors::error("qairt::python::run", e.to_string(), ""))?;
        lock(&self.latencies).push(seconds);
        let dict = PyDict::new(py);
        for (info, tensor) in loaded.outputs().into_iter().zip(outputs) {
            dict.set_item(&info.name, array_from_tensor(py, tensor)?)?;
        }
        Ok(dict)
    }

    /// Each input's name with its shape and numpy type name.
    fn model_input_shape_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let loaded = self.ensure_loaded(py)?;
        shape_dict(py, &loaded.inputs())
    }

    /// Each output's name with its shape and numpy type name (float32 for every quantized
    /// output: `run` gives them dequantized).
    fn model_output_shape_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let loaded = self.ensure_loaded(py)?;
        shape_dict(py, &loaded.outputs())
    }

    /// Runs `num_inferences` inferences, or as many as fit in `inf_time` seconds, on
    /// `input_dict` (else fixed pseudo-random inputs), the GIL released throughout. Returns
    /// (inferences completed, inferences per second, seconds spent in inference, batch size),
    /// timing only the model's runs, not Python's.
    #[pyo3(signature = (num_inferences = None, inf_time = None, input_dict = None))]
    fn _run_benchmark(
        &self,
        py: Python<'_>,
        num_inferences: Option<u64>,
        inf_time: Option<f64>,
        input_dict: Option<Bound<'_, PyDict>>,
    ) -> PyResult<(u64, f64, f64, usize)> {
        let loaded = self.ensure_loaded(py)?;
        let inputs = match &input_dict {
            Some(dict) => inputs_from_dict(&loaded, dict)?,
            None => loaded.inputs().into_iter().map(benchmark_input).collect(),
        };
        let batch_size = inputs.first().and_then(|t| t.shape.first().copied()).unwrap_or(1);
        let limit = inf_time.map(Duration::from_secs_f64);
        let count = num_inferences.unwrap_or(if limit.is_some() { u64::MAX } else { 40 });
        let latencies = py.detach(|| -> Result<Vec<f64>, String> {
            let started = Instant::now();
            let mut latencies = Vec::new();
            while (latencies.len() as u64) < count && limit.is_none_or(|limit| started.elapsed() < limit) {
                let start = Instant::now();
                loaded.run(&inputs).map_err(|e| e.to_string())?;
                latencies.push(start.elapsed().as_secs_f64());
            }
            Ok(latencies)
        });
        let latencies = latencies.map_err(|e| errors::error("qairt::python::run", e, ""))?;
        let total: f64 = latencies.iter().sum();
        let completed = latencies.len() as u64;
        lock(&self.latencies).extend(&latencies);
        let rate = if total > 0.0 { completed as f64 / total } else { 0.0 };
        Ok((completed, rate, total, batch_size))
    }

    /// Seconds per inference of every run so far, in order.
    fn _latencies(&self) -> Vec<f64> {
        lock(&self.latencies).clone()
    }

    fn __repr__(&self) -> String {
        format!("qairt.Session({:?})", self.model_bin.display().to_string())
    }
}

impl Session {
    fn ensure_loaded(&self, py: Python<'_>) -> PyResult<Arc<Loaded>> {
        if let Some(loaded) = lock(&self.loaded).as_ref() {
            return Ok(loaded.clone());
        }
        let path = self.model_bin.clone();
        let loaded = py.detach(|| load(&path))?;
        let loaded = Arc::new(loaded);
        *lock(&self.loaded) = Some(loaded.clone());
        Ok(loaded)
    }
}

/// A mutex that a panicking holder poisoned still holds valid data here (plain values).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn load(path: &Path) -> PyResult<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| {
        errors::error(
            "qairt::io::read",
            format!("cannot read {}: {e}", path.display()),
            "give an .onnx model or a model.bin that qairt build wrote",
        )
    })?;
    Loaded::from_model_bin(&bytes).map_err(|e| {
        errors::error(
            "qairt::python::model_bin",
            format!("{}: {e}", path.display()),
            "a Session runs an .onnx model or a model.bin from qairt build's out/<target>/",
        )
    })
}

/// Builds the session's project (its one target): the path of its `model.bin` and the
/// build's verify event as JSON text.
fn build(config: &Path) -> PyResult<(PathBuf, Option<String>)> {
    let mut ws = Workspace::open(config, None).map_err(|diags| errors::from_diags(&diags))?;
    let report = ws.build(&[session_project::TARGET.to_string()]);
    if !report.errors.is_empty() {
        return Err(errors::from_diags(&report.errors));
    }
    let verify = report.events.iter().find_map(qairt::cli::verify_json).map(|v| v.to_string());
    Ok((ws.config.out_dir.join(session_project::TARGET).join("model.bin"), verify))
}

/// The executor's inputs from `dict`: every model input, in the model's order; a missing or
/// unknown name is an error naming the model's inputs.
fn inputs_from_dict(loaded: &Loaded, dict: &Bound<'_, PyDict>) -> PyResult<Vec<Tensor>> {
    let infos = loaded.inputs();
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    for key in dict.keys() {
        let key: String = key.extract()?;
        if !names.contains(&key.as_str()) {
            let mut help = format!("the model's inputs: {}", names.join(", "));
            if let Some(near) = qairt::diag::closest(&key, names.iter().copied()) {
                help = format!("did you mean \"{near}\"? ({help})");
            }
            return Err(errors::error("qairt::python::input_name", format!("the model has no input \"{key}\""), help));
        }
    }
    infos
        .iter()
        .map(|info| {
            let value = dict.get_item(&info.name)?.ok_or_else(|| {
                errors::error(
                    "qairt::python::input_name",
                    format!("input \"{}\" is missing", info.name),
                    format!("the model's inputs: {}", names.join(", ")),
                )
            })?;
            tensor_from_array(info, &value)
        })
        .collect()
}

fn shape_dict<'py>(py: Python<'py>, infos: &[&TensorInfo]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for info in infos {
        let dtype = numpy_name(info.dtype).unwrap_or(info.dtype.name());
        dict.set_item(&info.name, (info.shape.clone(), dtype))?;
    }
    Ok(dict)
}

/// A benchmark input for `info`: floats from a fixed pseudo-random sequence in [0, 1) (the
/// same on every call, so runs compare), integers and booleans zero.
fn benchmark_input(info: &TensorInfo) -> Tensor {
    let n = info.elements();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let floats: Vec<f32> = (0..n).map(|_| if info.dtype.is_float() { next() } else { 0.0 }).collect();
    let data = match info.dtype {
        DType::F32 => TensorData::F32(floats),
        dtype => TensorData::floats_from_f64(dtype, &floats.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), false)
            .or_else(|| TensorData::from_le_bytes(dtype, &vec![0; n * dtype.size_bytes()]).ok())
            .unwrap_or(TensorData::F32(floats)),
    };
    Tensor { shape: info.shape.clone(), data }
}
