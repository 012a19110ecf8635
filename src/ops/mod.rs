//! The operator registry: everything qairt knows about each ONNX operator, one op (or one
//! family of alike ops) per module.
//!
//! A module owns, for its ops: the IR variant and its attributes, the ONNX import (attributes,
//! constant inputs, opset differences), type and shape inference, the kernel call, the
//! quantization role of every input, the QDQ export and the op's default quantization
//! behaviour (the rule entry a backend gets unless its `rules/*.toml` says otherwise). The
//! [`ops!`] invocation below registers each module once: it declares the module, the variants
//! of [`Op`] and the module's ONNX table ([`OnnxOp`]). Every central list derives from it:
//! the importer's dispatch ([`onnx_op`]), the op types the rules know ([`model_op_types`]), the
//! default quantization policy, `docs/operators.md`.
//!
//! Dispatch over [`Op`] goes through the [`OpDef`] trait, which every op type implements with
//! no default methods: an op that forgets one does not compile.
//!
//! **Invariant:** an op's attributes are fully resolved at import (negative axes normalized,
//! constant inputs such as Reshape's shape folded into the variant); `Op` values are plain data.

/// `From<T> for Op` for op types whose `Op` variant has the type's name (declared before the
/// op modules, so every one of them can use it).
macro_rules! into_op {
    ($($ty:ident),+) => {
        $(impl From<$ty> for Op {
            fn from(op: $ty) -> Op {
                Op::$ty(op)
            }
        })+
    };
}

mod attention;
mod attrs;
mod col2im;
mod control;
mod conv_transpose;
mod det;
mod einsum;
mod elementwise;
mod excluded;
mod export;
mod grid_sample;
mod import;
mod index;
mod layout;
mod linear;
mod lp_pool;
mod max_unpool;
mod nms;
mod norm;
mod normalize;
mod pool;
mod qlinear;
mod quantize;
mod recurrent;
mod reduce;
mod resize;
mod roi_align;
mod rotary;
mod signal;
mod tensor;
mod unary;
mod values;
mod window;

use serde::{Deserialize, Serialize};

use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::runtime::kernels::KernelError;

pub use attention::{Attention, QkOutput};
pub use col2im::Col2Im;
pub use conv_transpose::ConvTranspose;
pub use det::Det;
pub use einsum::Einsum;
pub use elementwise::{Binary, Clip, ClipBounds, Variadic, Where};
pub use excluded::stays_out;
pub use export::{ExportCx, ExportHost};
pub use grid_sample::{AffineGrid, GridSample, SampleMode, SamplePadding};
pub(crate) use import::{InputView, Lowered, NodeCx};
pub use index::{
    Compress, GatherElements, GatherND, OneHot, Reduction as ScatterReduction, ReverseSequence, Scatter, TensorScatter,
};
pub use layout::{Concat, Flatten, Pad, PadMode, Reshape, Squeeze, Transpose, Unsqueeze};
pub use linear::{Conv, Gemm, MatMul};
pub use lp_pool::LpPool;
pub use max_unpool::MaxUnpool;
pub use norm::{BatchNormalization, Softmax};
pub use normalize::{
    GroupNormalization, LayerNormalization, LpNormalization, Lrn, MeanVarianceNormalization, SoftmaxLike,
};
pub use pool::{GlobalPool, Pool, PoolKind, StorageOrder};
pub use qlinear::{ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul};
pub use quantize::{DequantizeLinear, DynamicQuantizeLinear, QuantizeLinear};
pub use recurrent::{Activation, Cell, Direction, Recurrent};
pub use reduce::{ArgReduce, Cumulative, Reduce, Reduction, TopK};
pub use resize::{CoordMode, NearestMode, Resize, ResizeMode};
pub use roi_align::{RoiAlign, RoiPooling};
pub use rotary::RotaryEmbedding;
pub use signal::{Dft, Stft};
pub use tensor::{BitCast, BlockRearrange, Cast, CenterCropPad, Expand, EyeLike, Gather, Slice, Split, Tile, Trilu};
pub use unary::Unary;
pub use values::{Convert, Dropout, Identity};
pub use window::Window;

/// What an op input is to quantization: whether it gets an encoding, and which kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InputRole {
    /// Data flowing through the network: quantized with an activation encoding (a constant
    /// read here, such as the operand of an Add, is quantized like a parameter).
    Activation,
    /// A weight: a parameter encoding; `channel_axis` is the axis per-channel (Conv) or
    /// per-row (Gemm, MatMul) encodings run along, when the op allows them.
    Weight { channel_axis: Option<usize> },
    /// A bias, quantized at `input scale × weight scale` (int32) or its own bitwidth.
    Bias,
    /// A parameter the quantizer leaves in float (BatchNormalization statistics).
    FloatParam,
    /// Integer data that selects or counts (indices, shapes, axes): never quantized.
    Index,
}

/// How an op's output gets its encoding on a quantized backend (`[ops.X] output_encoding`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OutputEncoding {
    /// From the calibration statistics of the output (the default).
    Calibrated,
    /// The output reuses the encoding of the op's first input (data movement ops).
    PassThrough,
    /// A fixed encoding range, whatever the data (Sigmoid, Softmax, Tanh on the HTP).
    FixedRange { min: f32, max: f32 },
    /// The op runs in float; its output is not quantized.
    Float,
}

// Sound: `FixedRange` bounds are finite (validated when parsed, constants in the registry).
impl Eq for OutputEncoding {}

/// An op's default quantization behaviour: the rule entry every backend starts from.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantDefault {
    pub output: OutputEncoding,
    /// `float_fallback` carries an encoding from the op's input to its output.
    pub propagate: bool,
    /// The op's input takes its output encoding (the SDK's Relu squashing).
    pub squash: bool,
    /// The op's weights may carry per-channel (per-row) encodings.
    pub per_channel: bool,
}

impl QuantDefault {
    /// Calibrated output, no propagation, no squashing, per-tensor weights.
    pub const CALIBRATED: QuantDefault =
        QuantDefault { output: OutputEncoding::Calibrated, propagate: false, squash: false, per_channel: false };
    /// Data movement: the output keeps the input's encoding.
    pub const PASS_THROUGH: QuantDefault =
        QuantDefault { output: OutputEncoding::PassThrough, propagate: true, squash: false, per_channel: false };

    pub const fn fixed(min: f32, max: f32) -> QuantDefault {
        QuantDefault { output: OutputEncoding::FixedRange { min, max }, ..QuantDefault::CALIBRATED }
    }
}

/// How one ONNX op type is imported.
pub(crate) type ImportFn = fn(&NodeCx) -> Result<Lowered, ImportError>;

/// One row of the registry: an ONNX op type (or an IR-only op, with no import).
pub struct OnnxOp {
    /// The ONNX op type, which is also the IR op's [`OpDef::type_name`].
    pub name: &'static str,
    /// `None` for ops that exist only in the IR (Convert).
    pub(crate) import: Option<ImportFn>,
    /// The default quantization behaviour of the IR op of this name.
    pub quant: QuantDefault,
    /// Import only: the op leaves no node (its value is computed at import).
    pub folded: bool,
}

impl OnnxOp {
    /// Whether models can contain this op (IR-only ops such as Convert cannot).
    pub fn is_imported(&self) -> bool {
        self.import.is_some()
    }

    /// An op imported into an IR node.
    pub(crate) const fn ir(name: &'static str, import: ImportFn, quant: QuantDefault) -> OnnxOp {
        OnnxOp { name, import: Some(import), quant, folded: false }
    }

    /// An op evaluated at import.
    pub(crate) const fn folded(name: &'static str, import: ImportFn) -> OnnxOp {
        OnnxOp { name, import: Some(import), quant: QuantDefault::CALIBRATED, folded: true }
    }
}

/// The behaviour every op type implements (see the module docs).
pub trait OpDef {
    /// The ONNX op type (diagnostics, rules, reports); registered in its module's table.
    fn type_name(&self) -> &'static str;
    /// Output `(dtype, shape)` of every output from the infos of its inputs. Errors are plain
    /// strings that start with the op type and name what disagrees.
    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String>;
    /// Computes the outputs. `outputs` are the declared output infos (empty when unknown):
    /// an op with optional outputs produces as many as are declared. Input data lengths have
    /// been checked against their shapes.
    fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError>;
    /// Whether [`OpDef::run_group`] may do better than one [`OpDef::run`] per sample.
    fn has_group_kernel(&self) -> bool {
        false
    }
    /// Computes the outputs of several samples at once (`samples[s]` are sample `s`'s inputs),
    /// where that gains something (a layer's weights read from memory once for all of them):
    /// each sample's outputs must be the very bits [`OpDef::run`] gives it alone. `None` where
    /// these inputs have no such path; the caller then runs each sample.
    fn run_group(&self, _samples: &[Vec<&Tensor>]) -> Option<Result<Vec<Vec<Tensor>>, KernelError>> {
        None
    }
    /// For an op of one input whose one output has that input's type and shape: the output
    /// computed over the input's own values, bit for bit what [`OpDef::run`] gives. The
    /// executor hands over a value no later step reads, which saves allocating the output and
    /// a pass through fresh memory (a Clip after each of MobileNetV2's convolutions). `None`
    /// where the op has no such path for this input, which is then left as it was.
    fn run_in_place(&self, _x: &mut Tensor) -> Option<Result<(), KernelError>> {
        None
    }
    /// For an op of one float input and one output of its shape: whether it keeps the order
    /// of values, `f(x) <= f(y)` whenever `x <= y` (neither NaN), exactly as its kernel
    /// computes them (Relu's and Clip's max and min, not an approximation that may wobble by
    /// an ulp). Its output's values in ascending order are then its kernel applied to its
    /// input's in ascending order, but for the signs of zeros: what the checker's profiles
    /// take instead of sorting an activation's values again.
    fn keeps_order(&self) -> bool {
        false
    }
    /// What input `position` (of rank `rank`) is to quantization.
    fn input_role(&self, position: usize, rank: usize) -> InputRole;
    /// Whether the kernel computes in float32 only: [`Op::run`] then widens float16, bfloat16
    /// and float64 inputs to float32 and rounds the float outputs back to their declared type,
    /// as onnxruntime's CPU provider does around its float-only kernels (exact for float16 and
    /// bfloat16 inputs up to the final rounding; float64 gets float32 precision).
    fn float32_kernel(&self) -> bool {
        false
    }
    /// Writes the op as ONNX node(s) of the exported QDQ model.
    fn export(&self, cx: &mut ExportCx<'_>);
}

/// Declares the op modules' variants of [`Op`] and their ONNX tables, once; `@import_only`
/// modules have a table of folded ops and no variant.
macro_rules! ops {
    ($($module:ident: $($variant:ident($ty:ty)),+;)+ $(@import_only $($extra:ident),+;)?) => {
        /// The closed set of operations the IR carries, with their attributes resolved.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub enum Op {
            $($($variant($ty),)+)+
        }

        impl Op {
            fn def(&self) -> &dyn OpDef {
                match self {
                    $($(Op::$variant(op) => op,)+)+
                }
            }
        }

        /// Every module's name and ONNX table, in registration order.
        const TABLES: &[(&str, &[OnnxOp])] =
            &[$((stringify!($module), $module::ONNX),)+ $($((stringify!($extra), $extra::ONNX),)+)?];
    };
}

ops! {
    linear: Conv(Conv), Gemm(Gemm), MatMul(MatMul);
    einsum: Einsum(Einsum);
    det: Det(Det);
    elementwise: Binary(Binary), Clip(Clip), ClipBounds(ClipBounds), Variadic(Variadic), Where(Where);
    unary: Unary(Unary);
    pool: Pool(Pool), GlobalPool(GlobalPool);
    lp_pool: LpPool(LpPool);
    max_unpool: MaxUnpool(MaxUnpool);
    col2im: Col2Im(Col2Im);
    norm: BatchNormalization(BatchNormalization), Softmax(Softmax);
    layout: Flatten(Flatten), Reshape(Reshape), Transpose(Transpose), Concat(Concat), Squeeze(Squeeze),
        Unsqueeze(Unsqueeze), Pad(Pad);
    values: Identity(Identity), Dropout(Dropout), Convert(Convert);
    reduce: Reduce(Reduce), ArgReduce(ArgReduce), Cumulative(Cumulative), TopK(TopK);
    normalize: LayerNormalization(LayerNormalization), GroupNormalization(GroupNormalization),
        LpNormalization(LpNormalization), MeanVarianceNormalization(MeanVarianceNormalization), Lrn(Lrn),
        SoftmaxLike(SoftmaxLike);
    tensor: Gather(Gather), Slice(Slice), Split(Split), Expand(Expand), Tile(Tile), Trilu(Trilu),
        BlockRearrange(BlockRearrange), CenterCropPad(CenterCropPad), Cast(Cast), BitCast(BitCast), EyeLike(EyeLike);
    index: GatherElements(GatherElements), GatherND(GatherND), Scatter(Scatter), OneHot(OneHot), Compress(Compress),
        ReverseSequence(ReverseSequence), TensorScatter(TensorScatter);
    resize: Resize(Resize);
    grid_sample: GridSample(GridSample), AffineGrid(AffineGrid);
    roi_align: RoiAlign(RoiAlign);
    conv_transpose: ConvTranspose(ConvTranspose);
    attention: Attention(Attention);
    rotary: RotaryEmbedding(RotaryEmbedding);
    recurrent: Recurrent(Recurrent);
    quantize: QuantizeLinear(QuantizeLinear), DequantizeLinear(DequantizeLinear),
        DynamicQuantizeLinear(DynamicQuantizeLinear);
    qlinear: MatMulInteger(MatMulInteger), QLinearMatMul(QLinearMatMul), ConvInteger(ConvInteger),
        QLinearConv(QLinearConv);
    signal: Dft(Dft), Stft(Stft);
    @import_only nms, control;
}

impl Op {
    /// The ONNX op type this op corresponds to (used in diagnostics, rules and reports).
    pub fn type_name(&self) -> &'static str {
        self.def().type_name()
    }

    /// Output dtypes and shapes; see [`OpDef::infer`].
    pub fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        self.def().infer(inputs)
    }

    /// What input `position` (of rank `rank`) is to quantization.
    pub fn input_role(&self, position: usize, rank: usize) -> InputRole {
        self.def().input_role(position, rank)
    }

    /// Whether the op, with these attributes, only moves its input's values (a nearest-
    /// neighbour Resize), so that its output keeps the input's encoding although its op type
    /// in general computes new values.
    pub fn moves_data_only(&self) -> bool {
        match self {
            Op::Resize(resize) => resize.moves_data_only(),
            _ => false,
        }
    }

    /// Whether input `position` is a parameter (weight, bias, statistics) rather than an
    /// activation: parameters live in `param_encodings`.
    pub fn is_param_input(&self, position: usize) -> bool {
        matches!(self.input_role(position, 0), InputRole::Weight { .. } | InputRole::Bias | InputRole::FloatParam)
    }

    /// Whether input `position` is a scale of a quantized compute op (QuantizeLinear,
    /// DequantizeLinear, QLinearMatMul, QLinearConv): a float parameter that stays float32 and
    /// unquantized on every backend, whether constant or computed.
    pub fn reads_quant_scale(&self, position: usize) -> bool {
        matches!(self, Op::QuantizeLinear(_) | Op::DequantizeLinear(_) | Op::QLinearMatMul(_) | Op::QLinearConv(_))
            && self.input_role(position, 0) == InputRole::FloatParam
    }

    /// Writes the op as ONNX node(s); see [`OpDef::export`].
    pub fn export(&self, cx: &mut ExportCx<'_>) {
        self.def().export(cx)
    }

    /// Runs the op: checks every input's data against its shape, runs the kernel and checks
    /// the outputs against the declared infos (when `outputs` is not empty), so that a
    /// disagreement between shape inference and a kernel is an error, never wrong data.
    pub fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let name = self.type_name();
        check_inputs(name, inputs)?;
        let def = self.def();
        let results = if def.float32_kernel() && inputs.iter().any(|t| widens(t)) {
            run_in_f32(def, inputs, outputs)?
        } else {
            def.run(inputs, outputs)?
        };
        check_outputs(name, &results, outputs)?;
        Ok(results)
    }

    /// [`Op::run`] of a one-input op over its input's own values ([`OpDef::run_in_place`]),
    /// with the same checks; `None` where the op has no such path for this input (it is then
    /// unchanged), inputs it would widen to float32 included.
    pub fn run_in_place(&self, x: &mut Tensor) -> Option<Result<(), KernelError>> {
        let (def, name) = (self.def(), self.type_name());
        if check_inputs(name, &[&*x]).is_err() || (def.float32_kernel() && widens(x)) {
            return None;
        }
        def.run_in_place(x)
    }

    /// See [`OpDef::keeps_order`].
    pub fn keeps_order(&self) -> bool {
        self.def().keeps_order()
    }

    /// Whether [`Op::run_group`] may run samples together; see [`OpDef::has_group_kernel`].
    pub fn may_run_grouped(&self) -> bool {
        self.def().has_group_kernel()
    }

    /// [`Op::run`] for several samples at once, through the op's grouped kernel
    /// ([`OpDef::run_group`]), each sample's outputs checked as [`Op::run`] checks them. `None`
    /// where the op has no grouped path for these inputs, inputs it would widen to float32 or
    /// whose data disagree with their shapes included ([`Op::run`] reports those).
    pub fn run_group(
        &self,
        samples: &[Vec<&Tensor>],
        outputs: &[TensorInfo],
    ) -> Option<Result<Vec<Vec<Tensor>>, KernelError>> {
        let (def, name) = (self.def(), self.type_name());
        let plain = |t: &Tensor| !(def.float32_kernel() && widens(t));
        let usable = |inputs: &Vec<&Tensor>| check_inputs(name, inputs).is_ok() && inputs.iter().all(|t| plain(t));
        if !samples.iter().all(usable) {
            return None;
        }
        let checked = def.run_group(samples)?.and_then(|results| {
            if results.len() != samples.len() {
                let message = format!("internal: {} results for {} samples", results.len(), samples.len());
                return Err(KernelError::new(name, message));
            }
            results.iter().try_for_each(|sample| check_outputs(name, sample, outputs))?;
            Ok(results)
        });
        Some(checked)
    }
}

/// Refuses an input whose data disagree with its shape.
fn check_inputs(name: &'static str, inputs: &[&Tensor]) -> Result<(), KernelError> {
    for (i, input) in inputs.iter().enumerate() {
        if crate::runtime::kernels::checked_product(&input.shape) != Some(input.len()) {
            let message = format!("input {i} has shape {:?} but {} elements", input.shape, input.len());
            return Err(KernelError::new(name, message));
        }
    }
    Ok(())
}

/// Whether a float32 kernel reads `t` through float32 (a float tensor of another type).
fn widens(t: &Tensor) -> bool {
    t.dtype().is_float() && t.dtype() != DType::F32
}

/// Runs a float32 kernel on other float types: float inputs widened to float32, float outputs
/// rounded to their declared type (or, undeclared, to the type of the first float input).
fn run_in_f32(def: &dyn OpDef, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
    let widened: Vec<Tensor> = inputs
        .iter()
        .map(|t| if widens(t) { Tensor::from_f32(t.shape.clone(), t.to_f32_vec()) } else { (*t).clone() })
        .collect();
    let refs: Vec<&Tensor> = widened.iter().collect();
    let as_f32: Vec<TensorInfo> = outputs
        .iter()
        .map(|info| {
            let mut info = info.clone();
            if info.dtype.is_float() {
                info.dtype = DType::F32;
            }
            info
        })
        .collect();
    let fallback = inputs.iter().map(|t| t.dtype()).find(|d| d.is_float()).unwrap_or(DType::F32);
    let results = def.run(&refs, &as_f32)?;
    results
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            let target = outputs.get(k).map_or(fallback, |info| info.dtype);
            if t.dtype() != DType::F32 || target == DType::F32 || !target.is_float() {
                return Ok(t);
            }
            let values: Vec<f64> = t.to_f32_vec().into_iter().map(f64::from).collect();
            let data = TensorData::floats_from_f64(target, &values, false).ok_or_else(|| {
                KernelError::new(def.type_name(), format!("cannot round float32 results to {}", target.name()))
            })?;
            Ok(Tensor { shape: t.shape, data })
        })
        .collect()
}

/// Checks the produced tensors against the declared infos (when there are any).
fn check_outputs(op: &'static str, results: &[Tensor], outputs: &[TensorInfo]) -> Result<(), KernelError> {
    if outputs.is_empty() {
        return Ok(());
    }
    if outputs.len() != results.len() {
        return Err(KernelError::new(
            op,
            format!("produces {} outputs but {} are declared", results.len(), outputs.len()),
        ));
    }
    for (result, info) in results.iter().zip(outputs) {
        if result.shape != info.shape || result.dtype() != info.dtype {
            return Err(KernelError::new(
                op,
                format!(
                    "output {:?} is declared {} {:?} but the kernel computes {} {:?}",
                    info.name,
                    info.dtype.name(),
                    info.shape,
                    result.dtype().name(),
                    result.shape
                ),
            ));
        }
    }
    Ok(())
}

/// Every registry row, in registration order.
pub fn registry() -> impl Iterator<Item = &'static OnnxOp> {
    TABLES.iter().flat_map(|(_, table)| table.iter())
}

/// Every registry row with the name of the module (`src/ops/<module>.rs`) that owns it.
pub fn registry_by_module() -> impl Iterator<Item = (&'static str, &'static OnnxOp)> {
    TABLES.iter().flat_map(|&(module, table)| table.iter().map(move |op| (module, op)))
}

/// The registry row of an ONNX op type.
pub fn onnx_op(op_type: &str) -> Option<&'static OnnxOp> {
    registry().find(|op| op.name == op_type)
}

/// Every op type an IR node of an imported model can have, as [`Op::type_name`] spells it
/// (IR-only ops such as Convert excluded).
pub fn model_op_types() -> impl Iterator<Item = &'static str> {
    registry().filter(|op| !op.folded && op.is_imported()).map(|op| op.name)
}

/// Imports one node through its registry row. The caller has checked the domain and that no
/// input failed.
pub(crate) fn lower(cx: &NodeCx) -> Result<Lowered, ImportError> {
    match onnx_op(cx.op_type()).and_then(|op| op.import) {
        Some(import) => import(cx),
        None => Err(ImportError::new(
            crate::onnx::ErrorKind::UnsupportedOp,
            format!("op type {:?} is not supported", cx.op_type()),
        )),
    }
}

/// The default quantization behaviour of an IR op type (calibrated if unknown).
pub fn quant_default(op_type: &str) -> &'static QuantDefault {
    static CALIBRATED: QuantDefault = QuantDefault::CALIBRATED;
    onnx_op(op_type).filter(|op| !op.folded).map_or(&CALIBRATED, |op| &op.quant)
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod import_tests;
#[cfg(test)]
#[path = "infer_tests.rs"]
mod infer_tests;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_registered_name_is_unique() {
        let mut seen = BTreeSet::new();
        for op in registry() {
            assert!(seen.insert(op.name), "{} is registered twice", op.name);
        }
    }

    fn info(shape: &[usize]) -> TensorInfo {
        TensorInfo { name: "y".into(), dtype: DType::F32, shape: shape.to_vec() }
    }

    #[test]
    fn an_input_whose_data_disagrees_with_its_shape_is_an_error() {
        let bad = Tensor { shape: vec![2, 2], data: crate::ir::TensorData::F32(vec![1.0; 3]) };
        let err = Op::Unary(Unary::Relu).run(&[&bad], &[]).unwrap_err();
        assert!(err.message.contains("3 elements"), "{err}");
    }

    #[test]
    fn an_output_that_disagrees_with_the_declared_info_is_an_error() {
        let x = Tensor::from_f32(vec![2], vec![-1.0, 1.0]);
        let relu = Op::Unary(Unary::Relu);
        let err = relu.run(&[&x], &[info(&[3])]).unwrap_err();
        assert!(err.message.contains("declared"), "{err}");
        // The matching declaration passes: relu([-1, 1]) = [0, 1].
        let y = relu.run(&[&x], &[info(&[2])]).unwrap();
        assert_eq!(y[0].as_f32().unwrap(), &[0.0, 1.0]);
    }

    #[test]
    fn dropout_emits_its_mask_only_when_declared() {
        let x = Tensor::from_f32(vec![2], vec![3.0, 4.0]);
        let mask = TensorInfo { name: "m".into(), dtype: DType::Bool, shape: vec![2] };
        let both = Op::Dropout(Dropout).run(&[&x], &[info(&[2]), mask]).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].data, crate::ir::TensorData::Bool(vec![1, 1]));
        assert_eq!(Op::Dropout(Dropout).run(&[&x], &[info(&[2])]).unwrap().len(), 1);
    }

    #[test]
    fn ir_only_ops_have_no_import_and_imported_ones_do() {
        for op in registry() {
            assert_eq!(op.import.is_none(), op.name == "Convert", "{}", op.name);
        }
    }
}
