//! MaxUnpool (opset 9, 11): the partial inverse of MaxPool. `Y` is zeros except at the
//! positions MaxPool's Indices name, which receive the values of `X`: `Y[I[e]] = X[e]` over the
//! flattened tensors (the indices count batch and channel, as MaxPool's do).
//!
//! Without `output_shape`, `Y` has the shape that inverts the pooling window, per spatial axis
//! `(in - 1) * stride - (pad_begin + pad_end) + kernel`. With it, `Y` has that shape and the
//! unpooled tensor of the inferred shape sits in its leading corner (zeros beyond), indices
//! still counting in the inferred shape: this is what the ONNX reference implementation and the
//! ONNX node tests' expected outputs define (onnxruntime instead reads the indices in the larger
//! shape; the two agree whenever `output_shape` equals the inferred shape). `output_shape` must
//! be known at import (a constant, or a graph input the build specializes on).
//!
//! The op only moves values, and every encoding represents zero exactly, so on quantized
//! backends `Y` keeps `X`'s encoding (pass-through).

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_ints, ints};
use super::import::{Lowered, NodeCx, positive_list, shape_error};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorInfo};
use crate::map_data;
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, element_count, expect_inputs, input, tensor};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::ir("MaxUnpool", import_max_unpool, QuantDefault::PASS_THROUGH)];

/// Inputs `[X, I]`; the window of the MaxPool being inverted (no dilations in ONNX).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MaxUnpool {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    /// All begin pads, then all end pads.
    pub pads: Vec<usize>,
    /// The `output_shape` input, when given.
    pub output_shape: Option<Vec<usize>>,
}

into_op!(MaxUnpool);

fn import_max_unpool(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 3)?;
    let a = cx.attrs(&["kernel_shape", "pads", "strides"])?;
    let kernel = a.ints("kernel_shape")?.ok_or_else(|| bad_attribute("attribute \"kernel_shape\" is required"))?;
    let n = kernel.len();
    let kernel = positive_list(Some(kernel), n, "kernel_shape")?;
    let strides = positive_list(a.ints("strides")?, n, "strides")?;
    let pads = match a.ints("pads")? {
        None => vec![0; 2 * n],
        Some(p) if p.len() == 2 * n && p.iter().all(|&v| v >= 0) => p.iter().map(|&v| v as usize).collect(),
        Some(p) => return Err(bad_attribute(format!("pads must be {} non-negative integers, got {p:?}", 2 * n))),
    };
    let rank = cx.input(0, "X")?.shape.len();
    if rank != n + 2 {
        return Err(shape_error(format!(
            "MaxUnpool: X has rank {rank} but kernel_shape {kernel:?} needs [N, C] and {n} spatial axes"
        )));
    }
    let output_shape = match cx.constant_ints(2, "output_shape")? {
        None => None,
        Some(dims) => Some(
            dims.iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<usize>, _>>()
                .map_err(|_| bad_attribute(format!("MaxUnpool output_shape {dims:?} has a negative entry")))?,
        ),
    };
    Lowered::ir(MaxUnpool { kernel, strides, pads, output_shape }, vec![0, 1])
}

impl MaxUnpool {
    /// The shape that inverts the pooling window for `X` of shape `x`.
    fn inferred(&self, x: &[usize]) -> Result<Vec<usize>, String> {
        let n = self.kernel.len();
        if x.len() != n + 2 || self.strides.len() != n || self.pads.len() != 2 * n {
            return Err(format!("MaxUnpool: X {x:?} does not fit a {n}-D window"));
        }
        let mut shape = x[..2].to_vec();
        for i in 0..n {
            let len = x[2 + i]
                .checked_sub(1)
                .and_then(|v| v.checked_mul(self.strides[i]))
                .and_then(|v| v.checked_add(self.kernel[i]))
                .and_then(|v| v.checked_sub(self.pads[i] + self.pads[n + i]))
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    format!(
                        "MaxUnpool: spatial axis {i} of X {x:?} gives no output with kernel {}, stride {} and pads \
                         {}/{}",
                        self.kernel[i],
                        self.strides[i],
                        self.pads[i],
                        self.pads[n + i]
                    )
                })?;
            shape.push(len);
        }
        Ok(shape)
    }
}

impl OpDef for MaxUnpool {
    fn type_name(&self) -> &'static str {
        "MaxUnpool"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x, i] = exactly("MaxUnpool", inputs)?;
        if !matches!(x.dtype, DType::F32 | DType::F64 | DType::F16) {
            return Err(format!("MaxUnpool: X {:?} is {}, expected a float type", x.name, x.dtype.name()));
        }
        if i.dtype != DType::I64 || i.shape != x.shape {
            return Err(format!(
                "MaxUnpool: I {:?} is {} {:?}, expected int64 of X's shape {:?}",
                i.name,
                i.dtype.name(),
                i.shape,
                x.shape
            ));
        }
        let inferred = self.inferred(&x.shape)?;
        let shape = match &self.output_shape {
            None => inferred,
            Some(out) => {
                let fits = out.len() == inferred.len()
                    && out[..2] == inferred[..2]
                    && out.iter().zip(&inferred).all(|(o, i)| o >= i);
                if !fits {
                    return Err(format!(
                        "MaxUnpool: output_shape {out:?} must keep X's batch and channels and hold the unpooled \
                         shape {inferred:?}"
                    ));
                }
                out.clone()
            }
        };
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![max_unpool(self, inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 1 { InputRole::Index } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let attrs = vec![
            attr_ints("kernel_shape", &ints(&self.kernel)),
            attr_ints("strides", &ints(&self.strides)),
            attr_ints("pads", &ints(&self.pads)),
        ];
        match &self.output_shape {
            Some(shape) => {
                let shape = cx.int64s("output_shape", &ints(shape));
                cx.emit_with("MaxUnpool", vec![shape], attrs);
            }
            None => cx.emit("MaxUnpool", attrs),
        }
    }
}

const NAME: &str = "MaxUnpool";

fn max_unpool(op: &MaxUnpool, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    expect_inputs(NAME, inputs, 2, 2)?;
    let (x, i) = (input(NAME, inputs, 0, "X")?, input(NAME, inputs, 1, "I")?);
    let indices = match &i.data {
        crate::ir::TensorData::I64(v) if i.shape == x.shape => v,
        _ => return Err(KernelError::new(NAME, format!("I must be int64 of X's shape {:?}", x.shape))),
    };
    let inferred = op.inferred(&x.shape).map_err(|e| KernelError::new(NAME, e))?;
    let shape = op.output_shape.clone().unwrap_or_else(|| inferred.clone());
    if shape.len() != inferred.len() || shape.iter().zip(&inferred).any(|(o, i)| o < i) {
        return Err(KernelError::new(NAME, format!("output_shape {shape:?} cannot hold {inferred:?}")));
    }
    let total = element_count(NAME, &inferred)?;
    let size = element_count(NAME, &shape)?;
    // Where each flat index of the inferred shape lands in the output: itself when the shapes
    // agree, else the same coordinates in the larger output.
    let targets: Vec<usize> = indices
        .iter()
        .map(|&index| {
            usize::try_from(index).ok().filter(|&v| v < total).ok_or_else(|| {
                KernelError::new(NAME, format!("index {index} is outside the unpooled tensor {inferred:?}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let targets = if shape == inferred { targets } else { relocate(&targets, &inferred, &shape) };
    let data = map_data!(&x.data, v => scatter(v, &targets, size));
    tensor(NAME, shape, data)
}

/// Flat indices of `from` moved to the same coordinates in the (no smaller) shape `to`.
fn relocate(flat: &[usize], from: &[usize], to: &[usize]) -> Vec<usize> {
    flat.iter()
        .map(|&f| {
            let (mut rest, mut out, mut stride) = (f, 0, 1);
            for (&dim_from, &dim_to) in from.iter().zip(to).rev() {
                out += (rest % dim_from) * stride;
                rest /= dim_from;
                stride *= dim_to;
            }
            out
        })
        .collect()
}

/// `size` zeros with `values[e]` written at `targets[e]`, in order (a repeated target keeps
/// the last value, as the reference's loop does).
fn scatter<T: Copy + Default>(values: &[T], targets: &[usize], size: usize) -> Vec<T> {
    let mut y = vec![T::default(); size];
    for (&v, &t) in values.iter().zip(targets) {
        y[t] = v;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorData;

    fn op(kernel: &[usize], strides: &[usize], pads: &[usize], output_shape: Option<Vec<usize>>) -> MaxUnpool {
        MaxUnpool { kernel: kernel.to_vec(), strides: strides.to_vec(), pads: pads.to_vec(), output_shape }
    }

    fn run(op: &MaxUnpool, x: &Tensor, i: Vec<i64>) -> Result<Tensor, KernelError> {
        let i = Tensor::from_i64(x.shape.clone(), i);
        Op::MaxUnpool(op.clone()).run(&[x, &i], &[]).map(|mut v| v.remove(0))
    }

    #[test]
    fn values_land_at_their_indices_in_the_inferred_shape() {
        // X 2x2 from a 2x2/stride-2 pool of a 4x4: Y 4x4 = (2 - 1) * 2 + 2. Indices 5, 7, 13,
        // 15 are (1,1), (1,3), (3,1), (3,3).
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let y = run(&op(&[2, 2], &[2, 2], &[0; 4], None), &x, vec![5, 7, 13, 15]).unwrap();
        assert_eq!(y.shape, vec![1, 1, 4, 4]);
        let mut want = [0.0; 16];
        (want[5], want[7], want[13], want[15]) = (1.0, 2.0, 3.0, 4.0);
        assert_eq!(y.as_f32().unwrap(), &want[..]);
    }

    #[test]
    fn a_larger_output_shape_keeps_the_inferred_coordinates() {
        // The same unpooling into 5x5: (1,1), (1,3), (3,1), (3,3) of the 4x4 are 6, 8, 16, 18
        // of the 5x5 (the ONNX node test test_maxunpool_export_with_output_shape).
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![5.0, 6.0, 7.0, 8.0]);
        let y = run(&op(&[2, 2], &[2, 2], &[0; 4], Some(vec![1, 1, 5, 5])), &x, vec![5, 7, 13, 15]).unwrap();
        let mut want = [0.0; 25];
        (want[6], want[8], want[16], want[18]) = (5.0, 6.0, 7.0, 8.0);
        assert_eq!(y.as_f32().unwrap(), &want[..]);
    }

    #[test]
    fn indices_count_channels_pads_shrink_and_types_are_kept() {
        // 1-D, two channels of length 2, kernel 3, stride 2, pads 1/1: (2 - 1) * 2 + 3 - 2 = 3
        // per channel; index 4 is channel 1, position 1.
        let x = Tensor { shape: vec![1, 2, 2], data: TensorData::F64(vec![1.5, 2.5, 3.5, 4.5]) };
        let y = run(&op(&[3], &[2], &[1, 1], None), &x, vec![0, 2, 4, 5]).unwrap();
        assert_eq!(y.shape, vec![1, 2, 3]);
        assert_eq!(y.data, TensorData::F64(vec![1.5, 0.0, 2.5, 0.0, 3.5, 4.5]));
    }

    #[test]
    fn bad_indices_and_shapes_are_errors() {
        let x = Tensor::from_f32(vec![1, 1, 2], vec![1.0, 2.0]);
        let unpool = op(&[2], &[2], &[0, 0], None);
        let err = run(&unpool, &x, vec![0, 4]).unwrap_err();
        assert!(err.message.contains("index 4 is outside"), "{err}");
        assert!(run(&unpool, &x, vec![-1, 0]).is_err());
        let small = op(&[2], &[2], &[0, 0], Some(vec![1, 1, 3]));
        let info = |name: &str, dtype, shape: &[usize]| TensorInfo { name: name.into(), dtype, shape: shape.to_vec() };
        let (xi, ii) = (info("x", DType::F32, &[1, 1, 2]), info("i", DType::I64, &[1, 1, 2]));
        let err = small.infer(&[&xi, &ii]).unwrap_err();
        assert!(err.contains("hold the unpooled shape [1, 1, 4]"), "{err}");
        let wrong_i = info("i", DType::I32, &[1, 1, 2]);
        assert!(unpool.infer(&[&xi, &wrong_i]).is_err());
    }
}
