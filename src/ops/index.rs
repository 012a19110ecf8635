//! Ops that select or place elements by run-time indices: GatherElements, GatherND,
//! ScatterElements, ScatterND (with their reductions), OneHot, Compress (constant condition),
//! ReverseSequence and TensorScatter (a KV-cache update). Indices may be computed at run time; negative ones wrap as the spec
//! says and out-of-range ones are [`KernelError`]s.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int, attr_string};
use super::import::{Lowered, NodeCx, axis};
use super::tensor::{fold_or_ir, index_values, require_index, take_rows, wrap};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorData, TensorInfo, strides_of};
use crate::onnx::ImportError;
use crate::onnx::error::{bad_attribute, malformed};
use crate::runtime::kernels::{KernelError, element_count, tensor};

pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("GatherElements", import_gather_elements, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("GatherND", import_gather_nd, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("ScatterElements", import_scatter_elements, QuantDefault::CALIBRATED),
    OnnxOp::ir("ScatterND", import_scatter_nd, QuantDefault::CALIBRATED),
    OnnxOp::ir("Scatter", import_scatter, QuantDefault::CALIBRATED),
    OnnxOp::ir("OneHot", import_one_hot, QuantDefault::CALIBRATED),
    OnnxOp::ir("Compress", import_compress, QuantDefault::PASS_THROUGH),
    OnnxOp::ir("ReverseSequence", import_reverse_sequence, QuantDefault::PASS_THROUGH),
    // The cache and its update are one stream of keys or values: the output is calibrated
    // like ScatterND's, so both fit its grid.
    OnnxOp::ir("TensorScatter", import_tensor_scatter, QuantDefault::CALIBRATED),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl Reduction {
    fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Add => "add",
            Reduction::Mul => "mul",
            Reduction::Max => "max",
            Reduction::Min => "min",
        }
    }
}

/// `out[i][j][k] = data[index[i][j][k]][j][k]` (for axis 0); inputs `[data, indices]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GatherElements {
    pub axis: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GatherND {
    pub batch_dims: usize,
}

/// ScatterElements (`axis`) or ScatterND (`axis: None`): inputs `[data, indices, updates]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scatter {
    pub axis: Option<usize>,
    pub reduction: Reduction,
    /// The ONNX op was Scatter (opsets 9 to 10, deprecated in 11): ScatterElements with no
    /// reduction under its old name, exported as ScatterElements.
    #[serde(default)]
    pub legacy: bool,
}

/// Inputs `[indices, values]`; `depth` classes inserted at `axis` of the output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OneHot {
    pub axis: usize,
    pub depth: usize,
}

/// The positions `selected` along `axis` (of the flattened input when `None`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Compress {
    pub axis: Option<usize>,
    pub selected: Vec<usize>,
}

/// Inputs `[input, sequence_lens]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReverseSequence {
    pub batch_axis: usize,
    pub time_axis: usize,
}

/// `present = past` with `update` written along `axis` from each batch's write index (zero
/// without `write_indices`), wrapping modulo the cache length in circular mode; inputs
/// `[past_cache, update]` or `[past_cache, update, write_indices]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorScatter {
    pub axis: usize,
    pub circular: bool,
}

into_op!(GatherElements, GatherND, Scatter, OneHot, Compress, ReverseSequence, TensorScatter);

/// Calls `f` with every multi-index of `shape`, in row-major order.
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize]) -> Result<(), KernelError>) -> Result<(), KernelError> {
    if shape.contains(&0) {
        return Ok(());
    }
    let mut index = vec![0usize; shape.len()];
    loop {
        f(&index)?;
        let mut axis = shape.len();
        loop {
            if axis == 0 {
                return Ok(());
            }
            axis -= 1;
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}

fn reduction(cx: &NodeCx, since: i64) -> Result<Reduction, ImportError> {
    if cx.opset < since {
        return Ok(Reduction::None);
    }
    let a = cx.attrs(&["axis", "reduction"])?;
    Ok(match a.string("reduction")?.as_deref().unwrap_or("none") {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" if cx.opset >= 18 => Reduction::Max,
        "min" if cx.opset >= 18 => Reduction::Min,
        other => return Err(bad_attribute(format!("reduction {other:?} is not supported at opset {}", cx.opset))),
    })
}

fn import_gather_elements(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["axis"])?;
    let rank = cx.input(0, "data")?.shape.len();
    let axis = axis(a.int_or("axis", 0)?, rank, false, "axis")?;
    fold_or_ir(cx, GatherElements { axis }, vec![0, 1])
}

fn import_gather_nd(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["batch_dims"])?;
    let b = a.int_or("batch_dims", 0)?;
    let batch_dims = usize::try_from(b).map_err(|_| bad_attribute(format!("batch_dims {b} is negative")))?;
    fold_or_ir(cx, GatherND { batch_dims }, vec![0, 1])
}

fn import_scatter_elements(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    let reduction = reduction(cx, 16)?;
    let a = cx.attrs(&["axis", "reduction"])?;
    let rank = cx.input(0, "data")?.shape.len();
    let axis = axis(a.int_or("axis", 0)?, rank, false, "axis")?;
    fold_or_ir(cx, Scatter { axis: Some(axis), reduction, legacy: false }, vec![0, 1, 2])
}

/// Scatter-9/11: ScatterElements' meaning (negative indices from 11), no reduction.
fn import_scatter(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    let a = cx.attrs(&["axis"])?;
    let rank = cx.input(0, "data")?.shape.len();
    let axis = axis(a.int_or("axis", 0)?, rank, false, "axis")?;
    fold_or_ir(cx, Scatter { axis: Some(axis), reduction: Reduction::None, legacy: true }, vec![0, 1, 2])
}

fn import_scatter_nd(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    let reduction = reduction(cx, 16)?;
    cx.attrs(&["reduction"])?;
    fold_or_ir(cx, Scatter { axis: None, reduction, legacy: false }, vec![0, 1, 2])
}

fn import_one_hot(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    let a = cx.attrs(&["axis"])?;
    let rank = cx.input(0, "indices")?.shape.len();
    let depth = cx.constant(1, "depth")?.ok_or_else(|| malformed("OneHot needs input #1 (depth)"))?;
    let depth = match depth.data.to_f64_vec()[..] {
        [d] if d >= 1.0 && d <= u32::MAX as f64 => d as usize,
        _ => return Err(bad_attribute("OneHot: depth must be one positive number")),
    };
    let axis = axis(a.int_or("axis", -1)?, rank + 1, false, "axis")?;
    fold_or_ir(cx, OneHot { axis, depth }, vec![0, 2])
}

fn import_compress(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["axis"])?;
    let x = cx.input(0, "input")?;
    let condition = cx.constant(1, "condition")?.ok_or_else(|| malformed("Compress needs input #1 (condition)"))?;
    if condition.shape.len() != 1 {
        return Err(bad_attribute("Compress: condition must be 1-D"));
    }
    let axis = a.int("axis")?.map(|v| axis(v, x.shape.len(), false, "axis")).transpose()?;
    let dim = axis.map_or(x.shape.iter().product(), |a| x.shape[a]);
    let selected: Vec<usize> =
        condition.data.to_f64_vec().iter().enumerate().filter(|&(_, &c)| c != 0.0).map(|(i, _)| i).collect();
    if selected.iter().any(|&i| i >= dim) {
        return Err(bad_attribute(format!("Compress: condition selects beyond the {dim} elements of the axis")));
    }
    fold_or_ir(cx, Compress { axis, selected }, vec![0])
}

fn import_reverse_sequence(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 2)?;
    let a = cx.attrs(&["batch_axis", "time_axis"])?;
    let rank = cx.input(0, "input")?.shape.len();
    let batch_axis = axis(a.int_or("batch_axis", 1)?, rank, false, "batch_axis")?;
    let time_axis = axis(a.int_or("time_axis", 0)?, rank, false, "time_axis")?;
    if batch_axis > 1 || time_axis > 1 || batch_axis == time_axis {
        return Err(bad_attribute("ReverseSequence: batch_axis and time_axis must be 0 and 1"));
    }
    fold_or_ir(cx, ReverseSequence { batch_axis, time_axis }, vec![0, 1])
}

impl OpDef for GatherElements {
    fn type_name(&self) -> &'static str {
        "GatherElements"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [data, indices] = exactly("GatherElements", inputs)?;
        require_index("GatherElements", indices)?;
        if data.shape.len() != indices.shape.len() || self.axis >= data.shape.len() {
            return Err(format!(
                "GatherElements: {:?} {:?} and indices {:?} need one rank",
                data.name, data.shape, indices.shape
            ));
        }
        Ok(vec![(data.dtype, indices.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "GatherElements";
        let [data, indices] = inputs else { return Err(KernelError::new(OP, "expects 2 inputs")) };
        let idx = index_values(OP, indices, "indices")?;
        let rank = data.shape.len();
        if indices.shape.len() != rank
            || self.axis >= rank
            || (0..rank).any(|a| a != self.axis && indices.shape[a] > data.shape[a])
        {
            return Err(KernelError::new(OP, format!("indices {:?} do not fit data {:?}", indices.shape, data.shape)));
        }
        let strides = strides_of(&data.shape);
        let dim = data.shape[self.axis];
        let mut sources = Vec::with_capacity(idx.len());
        let mut k = 0;
        for_each_index(&indices.shape, |j| {
            let mut at = 0;
            for (a, &i) in j.iter().enumerate() {
                let i = if a == self.axis { wrap(OP, idx[k], dim)? } else { i };
                at += i * strides[a];
            }
            sources.push(at);
            k += 1;
            Ok(())
        })?;
        Ok(vec![tensor(OP, indices.shape.clone(), data.data.gather(&sources))?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 0 { InputRole::Activation } else { InputRole::Index }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("GatherElements", vec![attr_int("axis", self.axis as i64)]);
    }
}

/// The flat start (in `data`) of the slice each index tuple of `indices` (last axis `k`)
/// addresses, after `batch_dims` leading batch axes; and the slice length.
fn nd_starts(
    op: &'static str,
    data: &[usize],
    indices: &Tensor,
    batch_dims: usize,
) -> Result<(Vec<usize>, usize), KernelError> {
    let q = indices.shape.len();
    let k = *indices.shape.last().ok_or_else(|| KernelError::new(op, "indices must have rank at least 1"))?;
    if batch_dims >= q || batch_dims + k > data.len() || indices.shape[..batch_dims] != data[..batch_dims] {
        return Err(KernelError::new(
            op,
            format!("indices {:?} do not fit data {data:?} with {batch_dims} batch dims", indices.shape),
        ));
    }
    let idx = index_values(op, indices, "indices")?;
    let strides = strides_of(data);
    let inner: usize = data[batch_dims + k..].iter().product();
    let batches: usize = data[..batch_dims].iter().product();
    let block: usize = data[batch_dims..].iter().product();
    let tuples_per_batch: usize = indices.shape[batch_dims..q - 1].iter().product();
    let mut starts = Vec::with_capacity(batches * tuples_per_batch);
    for b in 0..batches {
        for t in 0..tuples_per_batch {
            let tuple = &idx[(b * tuples_per_batch + t) * k..][..k];
            let mut at = b * block;
            for (i, &v) in tuple.iter().enumerate() {
                at += wrap(op, v, data[batch_dims + i])? * strides[batch_dims + i];
            }
            starts.push(at);
        }
    }
    Ok((starts, inner))
}

impl OpDef for GatherND {
    fn type_name(&self) -> &'static str {
        "GatherND"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [data, indices] = exactly("GatherND", inputs)?;
        require_index("GatherND", indices)?;
        let b = self.batch_dims;
        let Some((&k, lead)) = indices.shape.split_last() else {
            return Err("GatherND: indices must have rank at least 1".into());
        };
        if b >= indices.shape.len() || b + k > data.shape.len() || indices.shape[..b] != data.shape[..b] {
            return Err(format!(
                "GatherND: indices {:?} do not fit {:?} {:?} with batch_dims {b}",
                indices.shape, data.name, data.shape
            ));
        }
        let mut shape = lead.to_vec();
        shape.extend(&data.shape[b + k..]);
        Ok(vec![(data.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "GatherND";
        let [data, indices] = inputs else { return Err(KernelError::new(OP, "expects 2 inputs")) };
        let (starts, inner) = nd_starts(OP, &data.shape, indices, self.batch_dims)?;
        let k = indices.shape[indices.shape.len() - 1];
        let mut shape = indices.shape[..indices.shape.len() - 1].to_vec();
        shape.extend(&data.shape[self.batch_dims + k..]);
        let _ = outputs;
        let count = element_count(OP, &shape)?;
        let out = crate::map_data!(&data.data, v => {
            let mut out = Vec::with_capacity(count);
            for &s in &starts {
                out.extend_from_slice(&v[s..s + inner]);
            }
            out
        });
        Ok(vec![tensor(OP, shape, out)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 0 { InputRole::Activation } else { InputRole::Index }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("GatherND", vec![attr_int("batch_dims", self.batch_dims as i64)]);
    }
}

/// Applies `updates` at the flat positions `targets` of `data` (one per update element).
fn scatter_apply(
    op: &'static str,
    data: &Tensor,
    updates: &Tensor,
    targets: &[usize],
    reduction: Reduction,
) -> Result<Tensor, KernelError> {
    if updates.dtype() != data.dtype() {
        return Err(KernelError::new(
            op,
            format!("updates are {} but data is {}", updates.dtype().name(), data.dtype().name()),
        ));
    }
    let n = data.len();
    let dtype = data.dtype();
    let out = match reduction {
        Reduction::None => {
            // Every element reads data, or the last update written there.
            let mut sources: Vec<usize> = (0..n).collect();
            for (u, &t) in targets.iter().enumerate() {
                sources[t] = n + u;
            }
            let joined = TensorData::concat(&[&data.data, &updates.data])
                .ok_or_else(|| KernelError::new(op, "updates and data differ in type"))?;
            joined.gather(&sources)
        }
        _ if dtype.is_float() => {
            let mut v = data.data.to_f64_vec();
            let u = updates.data.to_f64_vec();
            for (&t, &x) in targets.iter().zip(&u) {
                v[t] = match reduction {
                    Reduction::Add => v[t] + x,
                    Reduction::Mul => v[t] * x,
                    Reduction::Max => v[t].max(x),
                    _ => v[t].min(x),
                };
            }
            TensorData::floats_from_f64(dtype, &v, true).ok_or_else(|| KernelError::new(op, "unsupported type"))?
        }
        _ => {
            let (Some(mut v), Some(u)) = (data.data.to_i64_vec(), updates.data.to_i64_vec()) else {
                return Err(KernelError::new(op, "unsupported type"));
            };
            for (&t, &x) in targets.iter().zip(&u) {
                v[t] = match reduction {
                    Reduction::Add => v[t].wrapping_add(x),
                    Reduction::Mul => v[t].wrapping_mul(x),
                    Reduction::Max => v[t].max(x),
                    _ => v[t].min(x),
                };
            }
            TensorData::ints_from_i64(dtype, &v).ok_or_else(|| KernelError::new(op, "unsupported type"))?
        }
    };
    tensor(op, data.shape.clone(), out)
}

impl Scatter {
    fn name(&self) -> &'static str {
        if self.axis.is_some() { "ScatterElements" } else { "ScatterND" }
    }
}

impl OpDef for Scatter {
    fn type_name(&self) -> &'static str {
        if self.legacy { "Scatter" } else { self.name() }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.name();
        let [data, indices, updates] = exactly(name, inputs)?;
        require_index(name, indices)?;
        if updates.dtype != data.dtype {
            return Err(format!(
                "{name}: updates {:?} are {} but data {:?} is {}",
                updates.name,
                updates.dtype.name(),
                data.name,
                data.dtype.name()
            ));
        }
        let fits = match self.axis {
            Some(axis) => {
                indices.shape == updates.shape && indices.shape.len() == data.shape.len() && axis < data.shape.len()
            }
            None => indices.shape.last().is_some_and(|&k| {
                let q = indices.shape.len();
                k <= data.shape.len() && updates.shape[..] == [&indices.shape[..q - 1], &data.shape[k..]].concat()[..]
            }),
        };
        if !fits {
            return Err(format!(
                "{name}: indices {:?} and updates {:?} do not fit data {:?}",
                indices.shape, updates.shape, data.shape
            ));
        }
        Ok(vec![(data.dtype, data.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        let op = self.name();
        let [data, indices, updates] = inputs else { return Err(KernelError::new(op, "expects 3 inputs")) };
        let targets = match self.axis {
            Some(axis) => {
                let rank = data.shape.len();
                if indices.shape != updates.shape
                    || indices.shape.len() != rank
                    || axis >= rank
                    || (0..rank).any(|a| a != axis && indices.shape[a] > data.shape[a])
                {
                    return Err(KernelError::new(
                        op,
                        format!("indices {:?} do not fit data {:?}", indices.shape, data.shape),
                    ));
                }
                let idx = index_values(op, indices, "indices")?;
                let strides = strides_of(&data.shape);
                let mut targets = Vec::with_capacity(idx.len());
                let mut k = 0;
                for_each_index(&indices.shape, |j| {
                    let mut at = 0;
                    for (a, &i) in j.iter().enumerate() {
                        let i = if a == axis { wrap(op, idx[k], data.shape[axis])? } else { i };
                        at += i * strides[a];
                    }
                    targets.push(at);
                    k += 1;
                    Ok(())
                })?;
                targets
            }
            None => {
                let (starts, inner) = nd_starts(op, &data.shape, indices, 0)?;
                if updates.len() != starts.len() * inner {
                    return Err(KernelError::new(op, format!("updates {:?} do not fit", updates.shape)));
                }
                starts.iter().flat_map(|&s| s..s + inner).collect()
            }
        };
        if targets.len() != updates.len() {
            return Err(KernelError::new(op, "updates and indices disagree"));
        }
        Ok(vec![scatter_apply(op, data, updates, &targets, self.reduction)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 1 { InputRole::Index } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = vec![attr_string("reduction", self.reduction.name())];
        if let Some(axis) = self.axis {
            attrs.push(attr_int("axis", axis as i64));
        }
        cx.emit(self.name(), attrs);
    }
}

impl OpDef for OneHot {
    fn type_name(&self) -> &'static str {
        "OneHot"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [indices, values] = exactly("OneHot", inputs)?;
        if values.shape.iter().product::<usize>() != 2 || values.shape.len() != 1 {
            return Err(format!("OneHot: values {:?} must hold [off, on], got shape {:?}", values.name, values.shape));
        }
        if self.axis > indices.shape.len() {
            return Err(format!("OneHot: axis {} is out of range", self.axis));
        }
        let mut shape = indices.shape.clone();
        shape.insert(self.axis, self.depth);
        Ok(vec![(values.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "OneHot";
        let [indices, values] = inputs else { return Err(KernelError::new(OP, "expects 2 inputs")) };
        if values.len() != 2 || self.axis > indices.shape.len() {
            return Err(KernelError::new(OP, "values must hold [off, on]"));
        }
        let mut shape = indices.shape.clone();
        shape.insert(self.axis, self.depth);
        element_count(OP, &shape)?;
        let depth = self.depth as i64;
        // Indices of any numeric type, truncated; negative ones count from depth.
        let idx: Vec<i64> = match indices.data.to_i64_vec() {
            Some(v) => v,
            None => indices.data.to_f64_vec().iter().map(|&x| x as i64).collect(),
        };
        let outer: usize = indices.shape[..self.axis].iter().product();
        let inner: usize = indices.shape[self.axis..].iter().product();
        let mut sources = Vec::with_capacity(outer * self.depth * inner);
        for o in 0..outer {
            for d in 0..depth {
                for i in 0..inner {
                    let k = idx[o * inner + i];
                    let k = if k < 0 { k + depth } else { k };
                    sources.push(usize::from(k == d));
                }
            }
        }
        Ok(vec![tensor(OP, shape, values.data.gather(&sources))?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 0 { InputRole::Index } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let depth = cx.int64s("depth", &[self.depth as i64]);
        // The IR reads [indices, values]; ONNX wants [indices, depth, values].
        let values = cx.inputs.pop().unwrap_or_default();
        cx.emit_with("OneHot", vec![depth, values], vec![attr_int("axis", self.axis as i64)]);
    }
}

impl OpDef for Compress {
    fn type_name(&self) -> &'static str {
        "Compress"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Compress", inputs)?;
        let shape = match self.axis {
            None => vec![self.selected.len()],
            Some(a) if a < x.shape.len() => {
                let mut s = x.shape.clone();
                s[a] = self.selected.len();
                s
            }
            Some(a) => return Err(format!("Compress: axis {a} is out of range for {:?}", x.shape)),
        };
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "Compress";
        let [x] = inputs else { return Err(KernelError::new(OP, "expects 1 input")) };
        match self.axis {
            Some(axis) => Ok(vec![take_rows(OP, x, axis, &self.selected, &[self.selected.len()])?]),
            None => {
                let flat = Tensor { shape: vec![x.len()], data: x.data.clone() };
                Ok(vec![take_rows(OP, &flat, 0, &self.selected, &[self.selected.len()])?])
            }
        }
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        // A Gather of the selected positions (of the flattened input without an axis).
        let selected: Vec<i64> = self.selected.iter().map(|&s| s as i64).collect();
        let indices = cx.int64s("indices", &selected);
        if self.axis.is_none() {
            let shape = cx.int64s("flat", &[-1]);
            let input = cx.inputs.pop().unwrap_or_default();
            let flat = cx.host.fresh(format!("{}_flat", cx.name));
            cx.host.push_node(
                "Reshape",
                format!("{}_flatten", cx.name),
                vec![input, shape],
                vec![flat.clone()],
                vec![],
            );
            cx.inputs.push(flat);
        }
        cx.emit_with("Gather", vec![indices], vec![attr_int("axis", self.axis.unwrap_or(0) as i64)]);
    }
}

fn import_tensor_scatter(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 3)?;
    let a = cx.attrs(&["axis", "mode"])?;
    let rank = cx.input(0, "past_cache")?.shape.len();
    let axis = axis(a.int_or("axis", -2)?, rank, false, "axis")?;
    if axis == 0 {
        return Err(bad_attribute("TensorScatter: axis must not be 0, the batch axis"));
    }
    let circular = match a.string("mode")?.as_deref().unwrap_or("linear") {
        "linear" => false,
        "circular" => true,
        other => return Err(bad_attribute(format!("TensorScatter: mode {other:?} is not \"linear\" or \"circular\""))),
    };
    fold_or_ir(cx, TensorScatter { axis, circular }, cx.present(&[0, 1, 2]))
}

impl OpDef for TensorScatter {
    fn type_name(&self) -> &'static str {
        "TensorScatter"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        const OP: &str = "TensorScatter";
        let (past, update, indices) = match inputs {
            [p, u] => (*p, *u, None),
            [p, u, i] => (*p, *u, Some(*i)),
            _ => return Err(format!("{OP}: expects 2 or 3 inputs, got {}", inputs.len())),
        };
        if update.dtype != past.dtype {
            return Err(format!(
                "{OP}: update {:?} is {}, past_cache is {}",
                update.name,
                update.dtype.name(),
                past.dtype.name()
            ));
        }
        let same_but_axis = update.shape.len() == past.shape.len()
            && update.shape.iter().zip(&past.shape).enumerate().all(|(a, (u, p))| a == self.axis || u == p);
        if self.axis >= past.shape.len() || !same_but_axis || update.shape[self.axis] > past.shape[self.axis] {
            return Err(format!(
                "{OP}: update {:?} of shape {:?} must match past_cache {:?} of shape {:?} except on axis {}, \
                 where it may not be longer",
                update.name, update.shape, past.name, past.shape, self.axis
            ));
        }
        if let Some(i) = indices
            && (i.dtype != DType::I64 || i.shape != [past.shape[0]])
        {
            return Err(format!(
                "{OP}: write_indices {:?} is {} {:?}, expected int64 [{}] (one per batch)",
                i.name,
                i.dtype.name(),
                i.shape,
                past.shape[0]
            ));
        }
        Ok(vec![(past.dtype, past.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "TensorScatter";
        let (past, update, writes) = match inputs {
            [p, u] => (*p, *u, None),
            [p, u, i] => (*p, *u, Some(index_values(OP, i, "write_indices")?)),
            _ => return Err(KernelError::new(OP, "expects 2 or 3 inputs")),
        };
        let axis = self.axis;
        let (max_len, len) = (past.shape[axis], update.shape[axis]);
        let batch = past.shape[0];
        if writes.as_ref().is_some_and(|w| w.len() != batch) {
            return Err(KernelError::new(OP, "write_indices must have one entry per batch"));
        }
        // The output gathers from [past, update] back to back: past elements keep their
        // place, each update element lands at its write position.
        let mut sources: Vec<usize> = (0..past.len()).collect();
        let past_strides = strides_of(&past.shape);
        let update_strides = strides_of(&update.shape);
        for_each_index(&update.shape, |j| {
            let start = writes.as_ref().map_or(0, |w| w[j[0]]);
            let mut at = start + j[axis] as i64;
            if self.circular {
                at = at.rem_euclid(max_len.max(1) as i64);
            } else if start < 0 || at >= max_len as i64 {
                return Err(KernelError::new(
                    OP,
                    format!("linear mode: write index {start} + {len} updates overruns the cache length {max_len}"),
                ));
            }
            let dest: usize =
                j.iter().enumerate().map(|(a, &i)| if a == axis { at as usize } else { i } * past_strides[a]).sum();
            let src: usize = j.iter().zip(&update_strides).map(|(i, s)| i * s).sum();
            sources[dest] = past.len() + src;
            Ok(())
        })?;
        let both = TensorData::concat(&[&past.data, &update.data])
            .ok_or_else(|| KernelError::new(OP, "past_cache and update differ in element type"))?;
        Ok(vec![tensor(OP, past.shape.clone(), both.gather(&sources))?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 2 { InputRole::Index } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mode = if self.circular { "circular" } else { "linear" };
        cx.emit("TensorScatter", vec![attr_int("axis", self.axis as i64), attr_string("mode", mode)]);
    }
}

impl OpDef for ReverseSequence {
    fn type_name(&self) -> &'static str {
        "ReverseSequence"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x, lens] = exactly("ReverseSequence", inputs)?;
        require_index("ReverseSequence", lens)?;
        if x.shape.len() < 2 || lens.shape != [x.shape[self.batch_axis]] {
            return Err(format!(
                "ReverseSequence: sequence_lens {:?} must have one entry per batch of {:?}",
                lens.shape, x.shape
            ));
        }
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "ReverseSequence";
        let [x, lens] = inputs else { return Err(KernelError::new(OP, "expects 2 inputs")) };
        let lens = index_values(OP, lens, "sequence_lens")?;
        let (b_axis, t_axis) = (self.batch_axis, self.time_axis);
        if x.shape.len() < 2 || lens.len() != x.shape[b_axis] {
            return Err(KernelError::new(OP, "sequence_lens must have one entry per batch"));
        }
        let steps = x.shape[t_axis];
        if let Some(&bad) = lens.iter().find(|&&l| l < 0 || l as usize > steps) {
            return Err(KernelError::new(OP, format!("sequence length {bad} is out of range [0, {steps}]")));
        }
        let strides = strides_of(&x.shape);
        let mut sources = Vec::with_capacity(x.len());
        for_each_index(&x.shape, |j| {
            let (b, t) = (j[b_axis], j[t_axis]);
            let len = lens[b] as usize;
            let src_t = if t < len { len - 1 - t } else { t };
            let at: usize = j.iter().enumerate().map(|(a, &i)| if a == t_axis { src_t } else { i } * strides[a]).sum();
            sources.push(at);
            Ok(())
        })?;
        Ok(vec![tensor(OP, x.shape.clone(), x.data.gather(&sources))?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 0 { InputRole::Activation } else { InputRole::Index }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit(
            "ReverseSequence",
            vec![attr_int("batch_axis", self.batch_axis as i64), attr_int("time_axis", self.time_axis as i64)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_i64(shape.to_vec(), v.to_vec())
    }

    fn run1(op: impl Into<Op>, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
        Ok(op.into().run(inputs, &[])?.remove(0))
    }

    #[test]
    fn gathers_by_element_and_by_tuple() {
        // ONNX's GatherElements example: [[1,2],[3,4]], axis 1, [[0,0],[1,0]] -> [[1,1],[4,3]].
        let d = i64s(&[2, 2], &[1, 2, 3, 4]);
        assert_eq!(
            run1(GatherElements { axis: 1 }, &[&d, &i64s(&[2, 2], &[0, 0, -1, 0])]).unwrap(),
            i64s(&[2, 2], &[1, 1, 4, 3])
        );
        assert!(run1(GatherElements { axis: 1 }, &[&d, &i64s(&[2, 2], &[0, 0, 2, 0])]).is_err());
        // GatherND: [[0,1],[2,3]] with [[1],[0]] -> rows 1 and 0; with [[0,0],[1,1]] -> [0, 3].
        let d = i64s(&[2, 2], &[0, 1, 2, 3]);
        assert_eq!(
            run1(GatherND { batch_dims: 0 }, &[&d, &i64s(&[2, 1], &[1, 0])]).unwrap(),
            i64s(&[2, 2], &[2, 3, 0, 1])
        );
        assert_eq!(
            run1(GatherND { batch_dims: 0 }, &[&d, &i64s(&[2, 2], &[0, 0, 1, 1])]).unwrap(),
            i64s(&[2], &[0, 3])
        );
        // batch_dims 1: per row, [[1],[0]] -> [1, 2].
        assert_eq!(run1(GatherND { batch_dims: 1 }, &[&d, &i64s(&[2, 1], &[1, 0])]).unwrap(), i64s(&[2], &[1, 2]));
    }

    #[test]
    fn scatters_with_reductions() {
        let d = i64s(&[1, 5], &[1, 2, 3, 4, 5]);
        let idx = i64s(&[1, 2], &[1, 1]);
        let upd = i64s(&[1, 2], &[10, 20]);
        let add = Scatter { axis: Some(1), reduction: Reduction::Add, legacy: false };
        assert_eq!(run1(add, &[&d, &idx, &upd]).unwrap(), i64s(&[1, 5], &[1, 32, 3, 4, 5]));
        let none = Scatter { axis: Some(1), reduction: Reduction::None, legacy: false };
        assert_eq!(run1(none, &[&d, &i64s(&[1, 2], &[-1, 0]), &upd]).unwrap(), i64s(&[1, 5], &[20, 2, 3, 4, 10]));
        let nd = Scatter { axis: None, reduction: Reduction::Mul, legacy: false };
        let f = Tensor::from_f32(vec![4], vec![1., 2., 3., 4.]);
        let got = run1(nd, &[&f, &i64s(&[2, 1], &[3, 1]), &Tensor::from_f32(vec![2], vec![2., 3.])]).unwrap();
        assert_eq!(got, Tensor::from_f32(vec![4], vec![1., 6., 3., 8.]));
    }

    #[test]
    fn one_hot_compress_and_reverse_sequence() {
        let values = Tensor::from_f32(vec![2], vec![0., 1.]);
        let got = run1(OneHot { axis: 1, depth: 3 }, &[&i64s(&[2], &[2, -1]), &values]).unwrap();
        assert_eq!(got, Tensor::from_f32(vec![2, 3], vec![0., 0., 1., 0., 0., 1.]));
        let x = i64s(&[2, 2], &[1, 2, 3, 4]);
        assert_eq!(run1(Compress { axis: Some(1), selected: vec![1] }, &[&x]).unwrap(), i64s(&[2, 1], &[2, 4]));
        assert_eq!(run1(Compress { axis: None, selected: vec![0, 3] }, &[&x]).unwrap(), i64s(&[2], &[1, 4]));
        // time axis 0, batch axis 1: column 0 reversed over 2 steps, column 1 over 1.
        let rs = ReverseSequence { batch_axis: 1, time_axis: 0 };
        assert_eq!(run1(rs, &[&x, &i64s(&[2], &[2, 1])]).unwrap(), i64s(&[2, 2], &[3, 2, 1, 4]));
    }

    /// By hand: a cache of 2 batches x 4 positions x 1 value, two updates per batch written at
    /// each batch's own index; circular mode wraps past the end, linear mode refuses to.
    #[test]
    fn tensor_scatter_writes_each_batch_at_its_index() {
        let past = Tensor::from_f32(vec![2, 4, 1], vec![0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]);
        let update = Tensor::from_f32(vec![2, 2, 1], vec![-1.0, -2.0, -3.0, -4.0]);
        let writes = i64s(&[2], &[1, 3]);
        let circular = TensorScatter { axis: 1, circular: true };
        let out = run1(circular, &[&past, &update, &writes]).unwrap();
        assert_eq!(out.as_f32().unwrap(), [0.0, -1.0, -2.0, 3.0, -4.0, 11.0, 12.0, -3.0]);
        let linear = TensorScatter { axis: 1, circular: false };
        let err = run1(linear.clone(), &[&past, &update, &writes]).unwrap_err();
        assert!(err.message.contains("overruns the cache length 4"), "{err}");
        // Without write_indices every batch writes from position 0.
        let out = run1(linear, &[&past, &update]).unwrap();
        assert_eq!(out.as_f32().unwrap(), [-1.0, -2.0, 2.0, 3.0, -3.0, -4.0, 12.0, 13.0]);
    }
}
