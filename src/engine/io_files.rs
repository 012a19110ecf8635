//! The one place raw files and model tensors meet, as `[io]` says (the SDK's custom I/O):
//! an input's files in another layout or element type become the model's tensor here, for
//! calibration, the float reference, simulate and every other run alike; an output's tensor
//! becomes the file `out/<target>/outputs/` holds here.
//!
//! Quantized input files are dequantized into the model's float input (`x = (q + offset) *
//! scale`, with [`Encoding::dequantize`], the same arithmetic as every encoding of the
//! build), so a uint8 file and the float file of the values it stands for give the same run.

use crate::diag::{Diag, closest};
use crate::ir::{DType, Graph, Tensor, TensorData, TensorInfo};
use crate::project::io::{
    FileGrid, InputDtype, InputFormat, IoConfig, LAYOUT_PAIRS_HELP, Layout, OutputDtype, OutputFormat, Side,
};
use crate::quant::{Encoding, TensorEncoding};
use crate::runtime::kernels::shape_ops::transpose;

/// How the raw files of one model input are read.
#[derive(Clone, Debug)]
pub struct InputForm {
    pub model: TensorInfo,
    /// `None`: the model's own form (its element type, its layout).
    file: Option<FileForm>,
}

#[derive(Clone, Debug)]
struct FileForm {
    dtype: InputDtype,
    layout: Option<Layout>,
    shape: Vec<usize>,
    /// Model axis `i` is file axis `to_model[i]`; `None`: the model's order.
    to_model: Option<Vec<usize>>,
    grid: Option<FileGrid>,
}

impl InputForm {
    /// Files in the model's own form.
    pub fn model_form(model: TensorInfo) -> InputForm {
        InputForm { model, file: None }
    }

    /// The size of one raw file.
    pub fn file_bytes(&self) -> usize {
        match &self.file {
            Some(file) => file.shape.iter().product::<usize>() * file_dtype_size(file.dtype),
            None => {
                let info = &self.model;
                let per_byte = TensorData::per_byte(info.dtype);
                if per_byte == 1 {
                    info.elements() * info.dtype.size_bytes()
                } else {
                    info.elements().div_ceil(per_byte)
                }
            }
        }
    }

    /// What a raw file holds, for diagnostics: `uint8 NHWC [1, 8, 8, 1]`.
    pub fn describe(&self) -> String {
        match &self.file {
            Some(file) => {
                let layout = file.layout.map(|l| format!(" {}", l.name())).unwrap_or_default();
                format!("{}{layout} {:?}", file.dtype.name(), file.shape)
            }
            None => format!("{} {:?}", self.model.dtype.name(), self.model.shape),
        }
    }

    /// Whether the files are in the model's own form.
    pub fn is_model_form(&self) -> bool {
        self.file.is_none()
    }

    /// The model's tensor from the bytes of one raw file (of [`InputForm::file_bytes`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<Tensor, String> {
        let Some(file) = &self.file else {
            let data = TensorData::from_packed_bytes(self.model.dtype, bytes, self.model.elements())?;
            return Ok(Tensor { shape: self.model.shape.clone(), data });
        };
        let expected = self.file_bytes();
        if bytes.len() != expected {
            return Err(format!("{} bytes, expected {expected}", bytes.len()));
        }
        let data = match (file.dtype, file.grid) {
            (InputDtype::Float32, _) => {
                TensorData::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            (InputDtype::Float16, _) => TensorData::F32(
                bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            ),
            (InputDtype::Uint8, Some(grid)) => {
                let encoding = uint8_encoding(grid);
                TensorData::F32(bytes.iter().map(|&q| encoding.dequantize(q as u32)).collect())
            }
            (InputDtype::Int8, Some(grid)) => {
                let encoding = int8_encoding(grid);
                TensorData::F32(bytes.iter().map(|&q| encoding.dequantize(int8_to_grid(q as i8))).collect())
            }
            // Codes for an input of the same integer type (checked when the form was made).
            (InputDtype::Uint8, None) => TensorData::U8(bytes.to_vec()),
            (InputDtype::Int8, None) => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
        };
        let mut tensor = Tensor { shape: file.shape.clone(), data };
        if let Some(perm) = &file.to_model {
            tensor = transpose(perm, &[&tensor]).map_err(|e| e.to_string())?;
        }
        if tensor.dtype() != self.model.dtype {
            let values: Vec<f64> = tensor.data.to_f64_vec();
            tensor.data = TensorData::floats_from_f64(self.model.dtype, &values, false)
                .ok_or_else(|| format!("cannot convert to {}", self.model.dtype.name()))?;
        }
        Ok(tensor)
    }
}

fn file_dtype_size(dtype: InputDtype) -> usize {
    match dtype {
        InputDtype::Float32 => 4,
        InputDtype::Float16 => 2,
        InputDtype::Uint8 | InputDtype::Int8 => 1,
    }
}

/// The unsigned 8-bit grid of `x = (q + offset) * scale`.
fn uint8_encoding(grid: FileGrid) -> Encoding {
    Encoding::from_scale_offset(8, grid.scale, grid.offset as i64, false)
}

/// int8 codes `s` on the unsigned grid as `s + 128`, whose offset is then `offset - 128`:
/// `(s + offset) * scale = ((s + 128) + (offset - 128)) * scale`, the same arithmetic.
fn int8_encoding(grid: FileGrid) -> Encoding {
    Encoding::from_scale_offset(8, grid.scale, grid.offset as i64 - 128, grid.offset == 0)
}

/// The encodings `[io]` gives a quantized model's inputs and outputs: the grid of each one
/// whose files are uint8 or int8 codes. The SDK's custom I/O gives "custom scale and offset on
/// the I/O of a quantized model", which "override the quantizer's values": the tensor is then
/// quantized on the files' own grid, and its codes go in and out unchanged.
pub fn quantized_io_encodings(io: &IoConfig) -> std::collections::BTreeMap<String, Encoding> {
    let inputs = io.inputs.iter().filter_map(|(name, format)| match (format.dtype, format.grid) {
        (Some(InputDtype::Uint8), Some(grid)) => Some((name.clone(), uint8_encoding(grid))),
        (Some(InputDtype::Int8), Some(grid)) => Some((name.clone(), int8_encoding(grid))),
        _ => None,
    });
    let outputs = io.outputs.iter().filter_map(|(name, format)| match (format.dtype, format.grid) {
        (Some(OutputDtype::Uint8), Some(grid)) => Some((name.clone(), uint8_encoding(grid))),
        (Some(OutputDtype::Int8), Some(grid)) => Some((name.clone(), int8_encoding(grid))),
        _ => None,
    });
    inputs.chain(outputs).collect()
}

fn int8_to_grid(code: i8) -> u32 {
    (code as i32 + 128) as u32
}

fn grid_to_int8(q: u32) -> i8 {
    (q as i32 - 128) as i8
}

/// A layout conversion between the files and the model's tensor of `shape`: the file's axes
/// as indices of the model's (`None` when both orders are the same).
struct LayoutProblem {
    message: String,
    help: String,
}

fn file_axes(
    layout: Option<Layout>,
    model_layout: Option<Layout>,
    shape: &[usize],
) -> Result<Option<Vec<usize>>, LayoutProblem> {
    let Some(file) = layout else { return Ok(None) };
    let Some(model) = model_layout.or(Layout::onnx_default_for(file)) else {
        return Err(LayoutProblem {
            message: format!("the model's layout of a {} tensor cannot be inferred", file.name()),
            help: "add model_layout = \"TNF\" or \"NTF\"".into(),
        });
    };
    for layout in [file, model] {
        if let Some(axes) = layout.axes()
            && axes.len() != shape.len()
        {
            return Err(LayoutProblem {
                message: format!(
                    "{} describes a tensor of rank {}, but this one is {shape:?} (rank {})",
                    layout.name(),
                    axes.len(),
                    shape.len()
                ),
                help: format!("give the layout of a rank-{} tensor, or remove it; {LAYOUT_PAIRS_HELP}", shape.len()),
            });
        }
    }
    if file == model {
        return Ok(None);
    }
    match (file.axes(), model.axes()) {
        (Some(file_axes), Some(model_axes)) if file.partner() == Some(model) => {
            Ok(Some(file_axes.chars().map(|c| model_axes.find(c).unwrap_or(0)).collect()))
        }
        _ => Err(LayoutProblem {
            message: format!("files in {} cannot feed a {} tensor", file.name(), model.name()),
            help: LAYOUT_PAIRS_HELP.into(),
        }),
    }
}

/// The inverse permutation: `inverse[perm[j]] = j`.
fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; perm.len()];
    for (j, &p) in perm.iter().enumerate() {
        inverse[p] = j;
    }
    inverse
}

/// Which key of an `[io]` entry a diagnostic points at.
#[derive(Clone, Copy)]
enum Key {
    Name,
    Layout,
    Dtype,
}

fn diag_at(io: &IoConfig, side: Side, name: &str, key: Key, message: String, help: String) -> Diag {
    let spans = io.spans(side, name);
    let span = match key {
        Key::Name => Some(spans.name),
        Key::Layout => spans.layout.or(Some(spans.name)),
        Key::Dtype => spans.dtype.or(Some(spans.name)),
    };
    let mut diag = Diag::error("qairt::config::io", message.clone()).in_file(&io.file).with_help(help);
    if let Some((start, len)) = span {
        diag = diag.at(start, len, message);
    }
    diag
}

fn unknown_name(io: &IoConfig, side: Side, name: &str, known: &[&str]) -> Diag {
    let (what, table) = match side {
        Side::Input => ("input", "inputs"),
        Side::Output => ("output", "outputs"),
    };
    let mut help = format!("the model's {table} are: {}", known.join(", "));
    if let Some(near) = closest(name, known.iter().copied()) {
        help = format!("did you mean \"{near}\"? ({help}); quote names with / or : as [io.{table}.\"{near}\"]");
    }
    diag_at(io, side, name, Key::Name, format!("the model has no {what} named \"{name}\""), help)
}

/// The form of each of `graph.inputs`' files, as `[io.inputs]` says; every problem (a name
/// the model lacks, a rank the layout does not fit, a type the input cannot take) is a
/// diagnostic at its key in `qairt.toml`.
pub fn input_forms(graph: &Graph, io: &IoConfig) -> Result<Vec<InputForm>, Vec<Diag>> {
    let mut diags = Vec::new();
    let names: Vec<&str> = graph
        .inputs
        .iter()
        .map(|&id| graph.name(id))
        .chain(graph.bound_inputs.iter().map(|b| b.name.as_str()))
        .collect();
    for name in io.inputs.keys() {
        if !names.contains(&name.as_str()) {
            diags.push(unknown_name(io, Side::Input, name, &names));
        } else if graph.bound_inputs.iter().any(|b| b.name == *name) {
            diags.push(diag_at(
                io,
                Side::Input,
                name,
                Key::Name,
                format!("input \"{name}\" decides shapes in the model: its files are read as the model declares it"),
                format!("remove [io.inputs.\"{name}\"]: qairt compiles the model for the one value this input holds"),
            ));
        }
    }
    let mut forms = Vec::with_capacity(graph.inputs.len());
    for &id in &graph.inputs {
        let info = graph.info(id).clone();
        let form = match io.inputs.get(&info.name) {
            None => Ok(InputForm::model_form(info)),
            Some(format) => input_form(io, info, format),
        };
        match form {
            Ok(form) => forms.push(form),
            Err(diag) => diags.push(diag),
        }
    }
    if diags.is_empty() { Ok(forms) } else { Err(diags) }
}

fn input_form(io: &IoConfig, model: TensorInfo, format: &InputFormat) -> Result<InputForm, Diag> {
    let name = model.name.clone();
    let at = |key: Key, message: String, help: String| diag_at(io, Side::Input, &name, key, message, help);
    let to_file = file_axes(format.layout, format.model_layout, &model.shape)
        .map_err(|p| at(Key::Layout, format!("input \"{name}\": {}", p.message), p.help))?;
    let own = match model.dtype {
        DType::F32 => Some(InputDtype::Float32),
        DType::F16 => Some(InputDtype::Float16),
        DType::U8 => Some(InputDtype::Uint8),
        DType::I8 => Some(InputDtype::Int8),
        _ => None,
    };
    let dtype = match (format.dtype, own) {
        (Some(dtype), _) => dtype,
        // No type given: the input's own, which a layout conversion then moves as it is.
        (None, Some(own)) => own,
        (None, None) if to_file.is_none() => return Ok(InputForm::model_form(model)),
        (None, None) => {
            return Err(at(
                Key::Layout,
                format!(
                    "input \"{name}\" is {}: qairt converts the layout of float32, float16, uint8 and int8 inputs",
                    model.dtype.name()
                ),
                format!("give \"{name}\"'s files in the model's layout, or give their dtype"),
            ));
        }
    };
    if !model.dtype.is_float() {
        // The custom I/O limitations: only a float input takes files of another type.
        if own != Some(dtype) || format.grid.is_some() {
            return Err(at(
                Key::Dtype,
                format!("input \"{name}\" is {}: its files hold that type", model.dtype.name()),
                "only a float input (float32, float16) takes files of another type; remove dtype, scale and offset"
                    .into(),
            ));
        }
    } else if dtype.is_quantized() && format.grid.is_none() {
        return Err(at(
            Key::Dtype,
            format!("{} files into the float input \"{name}\" need a scale and an offset", dtype.name()),
            "add scale and offset: the files' codes q stand for x = (q + offset) * scale (mandatory, as in the \
             SDK's custom I/O)"
                .into(),
        ));
    }
    if to_file.is_none() && own == Some(dtype) && format.grid.is_none() {
        return Ok(InputForm::model_form(model));
    }
    let shape = match &to_file {
        Some(axes) => axes.iter().map(|&a| model.shape[a]).collect(),
        None => model.shape.clone(),
    };
    let to_model = to_file.as_deref().map(inverse);
    let file = FileForm { dtype, layout: format.layout, shape, to_model, grid: format.grid };
    Ok(InputForm { model, file: Some(file) })
}

/// How one output's tensors are written.
#[derive(Clone, Debug, Default)]
pub struct OutputForm {
    /// File axis `j` is model axis `to_file[j]`.
    to_file: Option<Vec<usize>>,
    dtype: Option<OutputDtype>,
    grid: Option<FileGrid>,
    /// The target's representation of the output, for native files.
    encoding: Option<TensorEncoding>,
}

impl OutputForm {
    /// The bytes of `out/<target>/outputs/`: in the form `[io]` gives, else `own`'s.
    pub fn output_bytes(&self, tensor: &Tensor, own: impl Fn(&Tensor) -> Vec<u8>) -> Result<Vec<u8>, String> {
        let tensor = self.in_file_layout(tensor)?;
        let values = || tensor.to_f32_vec();
        Ok(match self.dtype {
            None => own(&tensor),
            Some(OutputDtype::Float32) => values().iter().flat_map(|v| v.to_le_bytes()).collect(),
            Some(OutputDtype::Float16) => float16_bytes(&values()),
            Some(OutputDtype::Uint8 | OutputDtype::Int8) => {
                let grid = self.grid.ok_or("uint8 and int8 output files need a scale and an offset")?;
                if self.dtype == Some(OutputDtype::Uint8) {
                    let encoding = uint8_encoding(grid);
                    values().iter().map(|&x| encoding.quantize(x) as u8).collect()
                } else {
                    let encoding = int8_encoding(grid);
                    values().iter().map(|&x| grid_to_int8(encoding.quantize(x)) as u8).collect()
                }
            }
            Some(OutputDtype::Native) => match &self.encoding {
                Some(TensorEncoding::PerTensor(encoding)) => codes(encoding, &values()),
                Some(TensorEncoding::Float { bitwidth: 16 }) => float16_bytes(&values()),
                _ => own(&tensor),
            },
        })
    }

    /// The bytes of `reference/`: the layout of the output files, the element type of `own`
    /// (the reference is the float model's, whatever the target writes).
    pub fn reference_bytes(&self, tensor: &Tensor, own: impl Fn(&Tensor) -> Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(own(&self.in_file_layout(tensor)?))
    }

    fn in_file_layout(&self, tensor: &Tensor) -> Result<Tensor, String> {
        match &self.to_file {
            Some(perm) => transpose(perm, &[tensor]).map_err(|e| e.to_string()),
            None => Ok(tensor.clone()),
        }
    }
}

fn float16_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()
}

/// The codes of `values` on `encoding`'s grid, little-endian in the narrowest unsigned type
/// that holds them (uint8 up to 8 bits, uint16 up to 16, else uint32), as the SDK's native
/// output files hold them.
fn codes(encoding: &Encoding, values: &[f32]) -> Vec<u8> {
    let codes = values.iter().map(|&x| encoding.quantize(x));
    match encoding.bitwidth {
        0..=8 => codes.map(|q| q as u8).collect(),
        9..=16 => codes.flat_map(|q| (q as u16).to_le_bytes()).collect(),
        _ => codes.flat_map(|q| q.to_le_bytes()).collect(),
    }
}

/// The form of each output in `names` (of the shapes in `shapes`), as `[io.outputs]` and
/// `[io] native_outputs` say; `encoding` gives the target's representation of an output
/// (`None` on a float target).
pub fn output_forms(
    io: &IoConfig,
    names: &[String],
    shapes: &[Vec<usize>],
    encoding: impl Fn(&str) -> Option<TensorEncoding>,
) -> Result<Vec<OutputForm>, Vec<Diag>> {
    let mut diags = Vec::new();
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    for name in io.outputs.keys() {
        if !known.contains(&name.as_str()) {
            diags.push(unknown_name(io, Side::Output, name, &known));
        }
    }
    let mut forms = Vec::with_capacity(names.len());
    for (name, shape) in names.iter().zip(shapes) {
        let format = io.outputs.get(name).cloned().unwrap_or(OutputFormat {
            layout: None,
            model_layout: None,
            dtype: None,
            grid: None,
        });
        let to_file = match file_axes(format.layout, format.model_layout, shape) {
            Ok(axes) => axes,
            Err(p) => {
                let message = format!("output \"{name}\": {}", p.message);
                diags.push(diag_at(io, Side::Output, name, Key::Layout, message, p.help));
                continue;
            }
        };
        let dtype = io.output_dtype(name);
        let encoding = if dtype == Some(OutputDtype::Native) { encoding(name) } else { None };
        forms.push(OutputForm { to_file, dtype, grid: format.grid, encoding });
    }
    if diags.is_empty() { Ok(forms) } else { Err(diags) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn info(dtype: DType, shape: &[usize]) -> TensorInfo {
        TensorInfo { name: "x".into(), dtype, shape: shape.to_vec() }
    }

    fn form(dtype: DType, shape: &[usize], format: InputFormat) -> InputForm {
        let io = IoConfig { file: PathBuf::from("qairt.toml"), ..IoConfig::default() };
        input_form(&io, info(dtype, shape), &format).unwrap()
    }

    fn format(layout: Option<Layout>, dtype: Option<InputDtype>, grid: Option<(f32, i32)>) -> InputFormat {
        InputFormat { layout, model_layout: None, dtype, grid: grid.map(|(scale, offset)| FileGrid { scale, offset }) }
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn nhwc_files_are_transposed_into_an_nchw_input() {
        // N=1, C=2, H=2, W=3: the NCHW value at (c, h, w) is 100c + 10h + w.
        let nchw: Vec<f32> =
            (0..2).flat_map(|c| (0..2).flat_map(move |h| (0..3).map(move |w| (100 * c + 10 * h + w) as f32))).collect();
        // The same values in NHWC order: (h, w, c).
        let nhwc: Vec<f32> =
            (0..2).flat_map(|h| (0..3).flat_map(move |w| (0..2).map(move |c| (100 * c + 10 * h + w) as f32))).collect();
        let form = form(DType::F32, &[1, 2, 2, 3], format(Some(Layout::Nhwc), None, None));
        assert_eq!(form.describe(), "float32 NHWC [1, 2, 3, 2]");
        assert_eq!(form.file_bytes(), 48);
        let tensor = form.decode(&f32_bytes(&nhwc)).unwrap();
        assert_eq!(tensor.shape, [1, 2, 2, 3]);
        assert_eq!(tensor.as_f32().unwrap(), nchw.as_slice());
        // An NCHW file into an NCHW input is the model's own form.
        assert!(self::form(DType::F32, &[1, 2, 2, 3], format(Some(Layout::Nchw), None, None)).is_model_form());
    }

    #[test]
    fn ndhwc_ncf_and_time_series_layouts_move_the_right_axes() {
        // NFC [N=1, F=3, C=2] file into an NCF [1, 2, 3] input.
        let nfc = [0., 10., 1., 11., 2., 12.];
        let form1 = form(DType::F32, &[1, 2, 3], format(Some(Layout::Nfc), None, None));
        assert_eq!(form1.decode(&f32_bytes(&nfc)).unwrap().as_f32().unwrap(), &[0., 1., 2., 10., 11., 12.]);
        // NTF [N=2, T=3, F=1] file into a TNF [3, 2, 1] input (the model's layout given).
        let ntf = [0., 1., 2., 10., 11., 12.];
        let tnf = InputFormat { model_layout: Some(Layout::Tnf), ..format(Some(Layout::Ntf), None, None) };
        let form2 = form(DType::F32, &[3, 2, 1], tnf);
        assert_eq!(form2.decode(&f32_bytes(&ntf)).unwrap().as_f32().unwrap(), &[0., 10., 1., 11., 2., 12.]);
        // NDHWC [1, D=1, H=1, W=2, C=2] into NCDHW [1, 2, 1, 1, 2].
        let form3 = form(DType::F32, &[1, 2, 1, 1, 2], format(Some(Layout::Ndhwc), None, None));
        assert_eq!(form3.decode(&f32_bytes(&[0., 10., 1., 11.])).unwrap().as_f32().unwrap(), &[0., 1., 10., 11.]);
    }

    #[test]
    fn uint8_codes_dequantize_with_their_offset() {
        // x = (q + offset) * scale with offset -128: q = 128 is 0.
        let form = form(DType::F32, &[4], format(None, Some(InputDtype::Uint8), Some((0.5, -128))));
        assert_eq!(form.file_bytes(), 4);
        let tensor = form.decode(&[0, 127, 128, 255]).unwrap();
        assert_eq!(tensor.as_f32().unwrap(), &[-64.0, -0.5, 0.0, 63.5]);
    }

    #[test]
    fn int8_codes_dequantize_signed() {
        let form = form(DType::F32, &[4], format(None, Some(InputDtype::Int8), Some((0.25, 2))));
        let bytes = [(-128i8) as u8, (-2i8) as u8, 0, 127];
        assert_eq!(form.decode(&bytes).unwrap().as_f32().unwrap(), &[-31.5, 0.0, 0.5, 32.25]);
    }

    #[test]
    fn float16_files_widen_exactly_and_narrow_into_a_float16_input() {
        let halves = [1.5f32, -0.099975586, 65504.0];
        let bytes: Vec<u8> = halves.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let form1 = form(DType::F32, &[3], format(None, Some(InputDtype::Float16), None));
        assert_eq!(form1.file_bytes(), 6);
        assert_eq!(form1.decode(&bytes).unwrap().as_f32().unwrap(), &halves);
        // float32 files into a float16 input: rounded to nearest even once.
        let form2 = form(DType::F16, &[1], format(None, Some(InputDtype::Float32), None));
        let tensor = form2.decode(&f32_bytes(&[0.1])).unwrap();
        assert_eq!(tensor.data, TensorData::F16(vec![half::f16::from_f32(0.1)]));
    }

    #[test]
    fn uint8_nhwc_files_give_the_nchw_float_tensor_they_stand_for() {
        // Codes (h, w, c) = 16h + 4w + c on a 1/16 grid, NHWC [1, 2, 2, 3] -> NCHW [1, 3, 2, 2].
        let codes: Vec<u8> =
            (0..2u8).flat_map(|h| (0..2u8).flat_map(move |w| (0..3u8).map(move |c| 16 * h + 4 * w + c))).collect();
        let expected: Vec<f32> = (0..3u8)
            .flat_map(|c| (0..2u8).flat_map(move |h| (0..2u8).map(move |w| (16 * h + 4 * w + c) as f32 / 16.0)))
            .collect();
        let form =
            form(DType::F32, &[1, 3, 2, 2], format(Some(Layout::Nhwc), Some(InputDtype::Uint8), Some((0.0625, 0))));
        assert_eq!(form.decode(&codes).unwrap().as_f32().unwrap(), expected.as_slice());
    }

    fn io() -> IoConfig {
        IoConfig { file: PathBuf::from("qairt.toml"), ..IoConfig::default() }
    }

    #[test]
    fn a_layout_of_another_rank_or_pair_and_missing_grids_are_refused() {
        let refuse =
            |dtype: DType, shape: &[usize], f: InputFormat| input_form(&io(), info(dtype, shape), &f).unwrap_err();
        let d = refuse(DType::F32, &[1, 3, 5], format(Some(Layout::Nhwc), None, None));
        assert!(d.message.contains("rank 4") && d.message.contains("rank 3"), "{}", d.message);
        let d = refuse(DType::F32, &[1, 3], format(None, Some(InputDtype::Uint8), None));
        assert!(d.message.contains("need a scale and an offset"), "{}", d.message);
        let d = refuse(DType::I64, &[1, 3], format(None, Some(InputDtype::Float32), None));
        assert!(d.message.contains("int64"), "{}", d.message);
        let pair = InputFormat { model_layout: Some(Layout::Ncf), ..format(Some(Layout::Nhwc), None, None) };
        let d = refuse(DType::F32, &[1, 3, 5], pair);
        assert!(d.help.unwrap().contains("NCHW<->NHWC"));
    }

    #[test]
    fn outputs_are_written_transposed_quantized_or_as_the_targets_codes() {
        let tensor = Tensor::from_f32(vec![1, 2, 1, 2], vec![0.0, 1.0, 0.5, -0.25]);
        let own = |t: &Tensor| f32_bytes(&t.to_f32_vec());
        let nhwc = OutputForm { to_file: Some(vec![0, 2, 3, 1]), ..OutputForm::default() };
        assert_eq!(nhwc.output_bytes(&tensor, own).unwrap(), f32_bytes(&[0.0, 0.5, 1.0, -0.25]));
        let grid = Some(FileGrid { scale: 0.25, offset: -2 });
        let uint8 = OutputForm { dtype: Some(OutputDtype::Uint8), grid, ..OutputForm::default() };
        assert_eq!(uint8.output_bytes(&tensor, own).unwrap(), [2, 6, 4, 1]);
        let int8 = OutputForm { dtype: Some(OutputDtype::Int8), grid, ..OutputForm::default() };
        assert_eq!(int8.output_bytes(&tensor, own).unwrap(), [2, 6, 4, 1]);
        let encoding = Encoding::from_scale_offset(16, 0.25, -4, false);
        let native = OutputForm {
            dtype: Some(OutputDtype::Native),
            encoding: Some(TensorEncoding::PerTensor(encoding.clone())),
            ..OutputForm::default()
        };
        let bytes = native.output_bytes(&tensor, own).unwrap();
        let codes: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        assert_eq!(codes, [4, 8, 6, 3]);
        let back: Vec<f32> = codes.iter().map(|&q| encoding.dequantize(q as u32)).collect();
        assert_eq!(back, tensor.to_f32_vec());
        // A float target's native output is its own type; the reference keeps it too.
        let float = OutputForm { dtype: Some(OutputDtype::Native), ..nhwc.clone() };
        assert_eq!(float.output_bytes(&tensor, own).unwrap(), nhwc.reference_bytes(&tensor, own).unwrap());
    }
}
