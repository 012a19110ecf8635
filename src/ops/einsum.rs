//! Einsum (opset 12): `equation` of comma-separated input terms and an optional `->` output
//! term, letters naming axes and `...` the broadcast axes. A letter repeated within a term
//! takes a diagonal; letters missing from the output are summed. Without `->` the output is
//! the broadcast axes, then the letters used exactly once, in alphabetical order.
//!
//! The equation is resolved at import against the input ranks: every axis of every input
//! gets a label number, the output's labels first (in output order), then the summed ones.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_string};
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, element_count, tensor};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::ir("Einsum", import_einsum, QuantDefault::CALIBRATED)];

/// Inputs `[x0, x1, ...]`, one label per axis each.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Einsum {
    /// The ONNX equation, as written (for export).
    pub equation: String,
    /// Per input, the label of each axis.
    pub labels: Vec<Vec<usize>>,
    /// The output's labels are `0..output_rank`, in output axis order.
    pub output_rank: usize,
}

impl From<Einsum> for Op {
    fn from(op: Einsum) -> Op {
        Op::Einsum(op)
    }
}

/// One symbol of a term: a letter, or one axis of the broadcast (ellipsis) axes, counted
/// from the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Symbol {
    /// The ellipsis axis `k` of `E` broadcast axes is `Broadcast(E - 1 - k)`.
    Broadcast(usize),
    Letter(char),
}

/// A term's letters, with the position of its ellipsis (if any) in letters.
fn parse_term(term: &str) -> Result<(Vec<char>, Option<usize>), String> {
    let mut letters = Vec::new();
    let mut ellipsis = None;
    let mut rest = term;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("...") {
            if ellipsis.replace(letters.len()).is_some() {
                return Err(format!("term {term:?} has two ellipses"));
            }
            rest = after;
        } else if c.is_ascii_alphabetic() {
            letters.push(c);
            rest = &rest[1..];
        } else {
            return Err(format!("term {term:?} has {c:?}, expected letters and \"...\""));
        }
    }
    Ok((letters, ellipsis))
}

/// Expands a term to one symbol per axis for an input of `rank` (or, for the output, with
/// `broadcast` ellipsis axes).
fn expand(letters: &[char], ellipsis: Option<usize>, broadcast: usize) -> Vec<Symbol> {
    let mut symbols: Vec<Symbol> = letters.iter().map(|&c| Symbol::Letter(c)).collect();
    if let Some(at) = ellipsis {
        let axes = (0..broadcast).map(|k| Symbol::Broadcast(broadcast - 1 - k));
        symbols.splice(at..at, axes);
    }
    symbols
}

/// Resolves `equation` for inputs of `ranks` into per-input labels and the output rank.
fn resolve(equation: &str, ranks: &[usize]) -> Result<(Vec<Vec<usize>>, usize), String> {
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(format!("the equation has {} input terms but the node has {} inputs", terms.len(), ranks.len()));
    }
    let mut inputs = Vec::new();
    let mut max_broadcast = 0;
    for (term, &rank) in terms.iter().zip(ranks) {
        let (letters, ellipsis) = parse_term(term)?;
        let broadcast = match ellipsis {
            Some(_) if rank >= letters.len() => rank - letters.len(),
            None if rank == letters.len() => 0,
            _ => return Err(format!("term {term:?} does not fit an input of rank {rank}")),
        };
        max_broadcast = max_broadcast.max(broadcast);
        inputs.push(expand(&letters, ellipsis, broadcast));
    }
    let output = match rhs {
        Some(rhs) => {
            let (letters, ellipsis) = parse_term(rhs)?;
            if ellipsis.is_none() && max_broadcast > 0 {
                return Err(format!("the output term {rhs:?} has no \"...\" but the inputs have broadcast axes"));
            }
            let output = expand(&letters, ellipsis, max_broadcast);
            for (i, s) in output.iter().enumerate() {
                if output[..i].contains(s) {
                    return Err(format!("the output term {rhs:?} repeats {s:?}"));
                }
                if let Symbol::Letter(c) = s
                    && !inputs.iter().flatten().any(|t| t == s)
                {
                    return Err(format!("the output letter {c:?} is in no input term"));
                }
            }
            output
        }
        None => {
            // Broadcast axes first, then the letters used once, alphabetically.
            let mut output: Vec<Symbol> = (0..max_broadcast).rev().map(Symbol::Broadcast).collect();
            let mut once: Vec<char> = Vec::new();
            for s in inputs.iter().flatten() {
                if let Symbol::Letter(c) = *s
                    && inputs.iter().flatten().filter(|t| **t == *s).count() == 1
                {
                    once.push(c);
                }
            }
            once.sort_unstable();
            output.extend(once.into_iter().map(Symbol::Letter));
            output
        }
    };
    // Label numbers: the output's in order, then the summed ones in order of appearance.
    let mut order = output.clone();
    for s in inputs.iter().flatten() {
        if !order.contains(s) {
            order.push(*s);
        }
    }
    let number = |s: &Symbol| order.iter().position(|t| t == s).expect("every symbol is numbered");
    Ok((inputs.iter().map(|term| term.iter().map(number).collect()).collect(), output.len()))
}

fn import_einsum(cx: &NodeCx) -> Result<Lowered, ImportError> {
    if cx.inputs.is_empty() {
        return Err(bad_attribute("Einsum needs at least one input"));
    }
    let a = cx.attrs(&["equation"])?;
    let equation = a.string("equation")?.ok_or_else(|| bad_attribute("attribute \"equation\" is required"))?;
    let mut ranks = Vec::new();
    for i in 0..cx.inputs.len() {
        ranks.push(cx.input(i, "operand")?.shape.len());
    }
    let (labels, output_rank) =
        resolve(&equation, &ranks).map_err(|e| bad_attribute(format!("Einsum equation {equation:?}: {e}")))?;
    Lowered::ir(Einsum { equation, labels, output_rank }, (0..ranks.len()).collect())
}

impl Einsum {
    /// The size of every label, checking the inputs agree (broadcast axes may be 1).
    fn sizes(&self, shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
        if shapes.len() != self.labels.len() {
            return Err(format!("Einsum: expects {} inputs, got {}", self.labels.len(), shapes.len()));
        }
        let count = self.labels.iter().flatten().max().map_or(0, |&m| m + 1).max(self.output_rank);
        let mut sizes: Vec<Option<usize>> = vec![None; count];
        for (i, (labels, shape)) in self.labels.iter().zip(shapes).enumerate() {
            if labels.len() != shape.len() {
                return Err(format!("Einsum: input {i} has shape {shape:?}, expected rank {}", labels.len()));
            }
            for (&l, &d) in labels.iter().zip(shape.iter()) {
                sizes[l] = match sizes[l] {
                    None => Some(d),
                    Some(s) if s == d || d == 1 => Some(s),
                    Some(1) => Some(d),
                    Some(s) => {
                        return Err(format!("Einsum: input {i} has size {d} on an axis that is {s} elsewhere"));
                    }
                };
            }
        }
        Ok(sizes.into_iter().map(|s| s.unwrap_or(1)).collect())
    }
}

impl OpDef for Einsum {
    fn type_name(&self) -> &'static str {
        "Einsum"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let Some(first) = inputs.first() else {
            return Err("Einsum: expects at least one input".into());
        };
        if !matches!(first.dtype, DType::F32 | DType::F64 | DType::I32 | DType::I64) {
            return Err(format!(
                "Einsum: {:?} is {}, expected float32, float64, int32 or int64",
                first.name,
                first.dtype.name()
            ));
        }
        if let Some(other) = inputs.iter().find(|x| x.dtype != first.dtype) {
            return Err(format!(
                "Einsum: {:?} is {} but {:?} is {}",
                other.name,
                other.dtype.name(),
                first.name,
                first.dtype.name()
            ));
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|x| x.shape.as_slice()).collect();
        let sizes = self.sizes(&shapes)?;
        Ok(vec![(first.dtype, sizes[..self.output_rank].to_vec())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const NAME: &str = "Einsum";
        let shapes: Vec<&[usize]> = inputs.iter().map(|x| x.shape.as_slice()).collect();
        let sizes = self.sizes(&shapes).map_err(|e| KernelError::new(NAME, e))?;
        let out_shape = sizes[..self.output_rank].to_vec();
        element_count(NAME, &out_shape)?;
        // Per input, the stride of every label (summed over repeats: diagonals; 0 where the
        // label is absent or broadcast from size 1).
        let strides: Vec<Vec<usize>> = self
            .labels
            .iter()
            .zip(&shapes)
            .map(|(labels, shape)| {
                let mut per_label = vec![0usize; sizes.len()];
                let mut stride = 1;
                for (&l, &d) in labels.iter().zip(shape.iter()).rev() {
                    if d != 1 || sizes[l] == 1 {
                        per_label[l] += stride;
                    }
                    stride *= d;
                }
                per_label
            })
            .collect();
        let plan = Plan { sizes: &sizes, output_rank: self.output_rank, strides: &strides };
        macro_rules! typed {
            ($variant:ident) => {{
                let data: Vec<_> = inputs
                    .iter()
                    .map(|t| match &t.data {
                        TensorData::$variant(v) => Ok(v.as_slice()),
                        other => Err(KernelError::new(NAME, format!("mixed input types ({})", other.dtype().name()))),
                    })
                    .collect::<Result<_, _>>()?;
                TensorData::$variant(plan.run(&data))
            }};
        }
        let data = match inputs.first().map(|t| &t.data) {
            Some(TensorData::F32(_)) => typed!(F32),
            Some(TensorData::F64(_)) => typed!(F64),
            Some(TensorData::I32(_)) => typed!(I32),
            Some(TensorData::I64(_)) => typed!(I64),
            Some(other) => return Err(KernelError::new(NAME, format!("unsupported type {}", other.dtype().name()))),
            None => return Err(KernelError::new(NAME, "no inputs")),
        };
        Ok(vec![tensor(NAME, out_shape, data)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Einsum", vec![attr_string("equation", &self.equation)]);
    }
}

/// The element arithmetic of the kernel (wrapping for integers, as ONNX runtimes do).
trait Element: Copy {
    const ZERO: Self;
    const ONE: Self;
    fn add(self, other: Self) -> Self;
    fn mul(self, other: Self) -> Self;
}

macro_rules! float_element {
    ($($t:ty),+) => {$(
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn add(self, other: Self) -> Self { self + other }
            fn mul(self, other: Self) -> Self { self * other }
        }
    )+};
}

macro_rules! int_element {
    ($($t:ty),+) => {$(
        impl Element for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            fn add(self, other: Self) -> Self { self.wrapping_add(other) }
            fn mul(self, other: Self) -> Self { self.wrapping_mul(other) }
        }
    )+};
}

float_element!(f32, f64);
int_element!(i32, i64);

struct Plan<'a> {
    sizes: &'a [usize],
    output_rank: usize,
    strides: &'a [Vec<usize>],
}

impl Plan<'_> {
    /// Every output element is the sum, over the summed labels, of the product of the
    /// inputs; the last summed label (or the last output label when nothing is summed) is
    /// the tight inner loop.
    fn run<T: Element>(&self, data: &[&[T]]) -> Vec<T> {
        let out_sizes = &self.sizes[..self.output_rank];
        let sum_sizes = &self.sizes[self.output_rank..];
        let out_count: usize = out_sizes.iter().product();
        let sum_count: usize = sum_sizes.iter().product();
        let mut y = vec![T::ZERO; out_count];
        if out_count == 0 || sum_count == 0 {
            return y;
        }
        let n = data.len();
        let offset = |index: &[usize], labels: std::ops::Range<usize>, i: usize| -> usize {
            labels.zip(index).map(|(l, &k)| k * self.strides[i][l]).sum()
        };
        let mut out_index = vec![0usize; out_sizes.len()];
        let mut base = vec![0usize; n];
        let mut at = vec![0usize; n];
        for out in y.iter_mut() {
            for (i, b) in base.iter_mut().enumerate() {
                *b = offset(&out_index, 0..self.output_rank, i);
            }
            let mut acc = T::ZERO;
            if let Some(&inner) = sum_sizes.last() {
                let last = self.sizes.len() - 1;
                let outer = &sum_sizes[..sum_sizes.len() - 1];
                let mut sum_index = vec![0usize; outer.len()];
                for _ in 0..sum_count / inner {
                    for i in 0..n {
                        at[i] = base[i] + offset(&sum_index, self.output_rank..last, i);
                    }
                    acc = acc.add(match n {
                        1 => inner_sum(data[0], at[0], self.strides[0][last], inner),
                        2 => inner_dot(
                            data[0],
                            at[0],
                            self.strides[0][last],
                            data[1],
                            at[1],
                            self.strides[1][last],
                            inner,
                        ),
                        _ => inner_product(data, &at, self.strides, last, inner),
                    });
                    step(&mut sum_index, outer);
                }
            } else {
                acc = data.iter().zip(&base).fold(T::ONE, |p, (x, &b)| p.mul(x[b]));
            }
            *out = acc;
            step(&mut out_index, out_sizes);
        }
        y
    }
}

fn inner_sum<T: Element>(x: &[T], at: usize, stride: usize, len: usize) -> T {
    (0..len).fold(T::ZERO, |acc, k| acc.add(x[at + k * stride]))
}

fn inner_dot<T: Element>(a: &[T], at_a: usize, sa: usize, b: &[T], at_b: usize, sb: usize, len: usize) -> T {
    (0..len).fold(T::ZERO, |acc, k| acc.add(a[at_a + k * sa].mul(b[at_b + k * sb])))
}

fn inner_product<T: Element>(data: &[&[T]], at: &[usize], strides: &[Vec<usize>], last: usize, len: usize) -> T {
    (0..len).fold(T::ZERO, |acc, k| {
        acc.add(data.iter().enumerate().fold(T::ONE, |p, (i, x)| p.mul(x[at[i] + k * strides[i][last]])))
    })
}

/// Advances a row-major multi-index over `sizes` (wrapping to all zeros at the end).
fn step(index: &mut [usize], sizes: &[usize]) {
    for d in (0..index.len()).rev() {
        index[d] += 1;
        if index[d] < sizes[d] {
            return;
        }
        index[d] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn einsum(equation: &str, inputs: &[&Tensor]) -> Tensor {
        let ranks: Vec<usize> = inputs.iter().map(|t| t.shape.len()).collect();
        let (labels, output_rank) = resolve(equation, &ranks).unwrap();
        let op = Einsum { equation: equation.into(), labels, output_rank };
        op.run(inputs, &[]).unwrap().remove(0)
    }

    fn f32s(t: &Tensor) -> Vec<f32> {
        t.as_f32().unwrap().to_vec()
    }

    #[test]
    fn matmul_transpose_trace_and_implicit_output() {
        // A = [[1,2],[3,4]], B = [[5,6],[7,8]]: A·B = [[19,22],[43,50]].
        let a = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = Tensor::from_f32(vec![2, 2], vec![5.0, 6.0, 7.0, 8.0]);
        assert_eq!(f32s(&einsum("ij,jk->ik", &[&a, &b])), [19.0, 22.0, 43.0, 50.0]);
        // Implicit output of "ij,jk" is "ik" (j is repeated, so summed).
        assert_eq!(f32s(&einsum("ij,jk", &[&a, &b])), [19.0, 22.0, 43.0, 50.0]);
        // Implicit "ji" is alphabetical "ij" of axes named (j, i): the transpose.
        assert_eq!(f32s(&einsum("ji", &[&a])), [1.0, 3.0, 2.0, 4.0]);
        // Trace: 1 + 4; diagonal: [1, 4]; total sum: 10.
        let trace = einsum("ii", &[&a]);
        assert_eq!((trace.shape.clone(), f32s(&trace)), (vec![], vec![5.0]));
        assert_eq!(f32s(&einsum("ii->i", &[&a])), [1.0, 4.0]);
        assert_eq!(f32s(&einsum("ij->", &[&a])), [10.0]);
        // Outer product of [1, 2] and [3, 4, 5].
        let u = Tensor::from_f32(vec![2], vec![1.0, 2.0]);
        let v = Tensor::from_f32(vec![3], vec![3.0, 4.0, 5.0]);
        assert_eq!(f32s(&einsum("i,j->ij", &[&u, &v])), [3.0, 4.0, 5.0, 6.0, 8.0, 10.0]);
    }

    #[test]
    fn ellipsis_batches_broadcast_and_three_operands() {
        // Batch matmul with a broadcast batch: x [2,1,2] (rows [1,2] and [3,4]) times
        // y [1,2,1] = [[1],[1]] (summing the row): [[3]], [[7]].
        let x = Tensor::from_f32(vec![2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let y = Tensor::from_f32(vec![1, 2, 1], vec![1.0, 1.0]);
        let z = einsum("...ij,...jk->...ik", &[&x, &y]);
        assert_eq!((z.shape.clone(), f32s(&z)), (vec![2, 1, 1], vec![3.0, 7.0]));
        // Batch diagonal: [2,2,2] of 0..8: diagonals [0,3] and [4,7].
        let t = Tensor::from_f32(vec![2, 2, 2], (0..8).map(|v| v as f32).collect());
        assert_eq!(f32s(&einsum("...ii->...i", &[&t])), [0.0, 3.0, 4.0, 7.0]);
        // Three operands: sum_i a_i b_i c_i = 1·3·5 + 2·4·6 = 63.
        let a = Tensor::from_f32(vec![2], vec![1.0, 2.0]);
        let b = Tensor::from_f32(vec![2], vec![3.0, 4.0]);
        let c = Tensor::from_f32(vec![2], vec![5.0, 6.0]);
        assert_eq!(f32s(&einsum("i,i,i->", &[&a, &b, &c])), [63.0]);
    }

    #[test]
    fn float64_and_int64_operands() {
        let a = Tensor { shape: vec![3], data: TensorData::F64(vec![1.0, 2.0, 3.0]) };
        assert_eq!(einsum("i,i", &[&a, &a]).data, TensorData::F64(vec![14.0]));
        let n = Tensor::from_i64(vec![2, 2], vec![1, 2, 3, 4]);
        assert_eq!(einsum("ij->j", &[&n]).data, TensorData::I64(vec![4, 6]));
    }

    #[test]
    fn bad_equations_are_errors() {
        assert!(resolve("ij,jk->ik", &[2]).unwrap_err().contains("input terms"));
        assert!(resolve("ijk->i", &[2]).unwrap_err().contains("rank"));
        assert!(resolve("ij->ii", &[2]).unwrap_err().contains("repeats"));
        assert!(resolve("ij->q", &[2]).unwrap_err().contains("no input"));
        assert!(resolve("...i->i", &[3]).unwrap_err().contains("broadcast"));
        assert!(resolve("i1->i", &[2]).unwrap_err().contains("expected letters"));
    }
}
