//! Col2Im (opset 18): the inverse of im2col. The input `[N, C · Π block, L]` holds, for every
//! one of the `L` sliding blocks of a `block_shape` window over the (padded) image, the block's
//! `C · Π block` cells; Col2Im adds every cell back into its image position, giving
//! `[N, C, image_shape...]` (cells that fall in the padding are dropped; overlapping blocks
//! sum). Per spatial axis the window has `dilations`, `pads` (all begins, then all ends) and
//! `strides`, and `L` must equal the product of the block counts
//! `(image + pad_begin + pad_end - dilation · (block - 1) - 1) / stride + 1`.
//!
//! `image_shape` and `block_shape` decide the output shape, so they must be known at import
//! (constants, or graph inputs the build specializes on).

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_ints, ints};
use super::import::{Lowered, NodeCx, positive_list, shape_error};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, element_count, expect_inputs, input, tensor};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::ir("Col2Im", import_col2im, QuantDefault::CALIBRATED)];

/// Input `[input]`; every shape resolved at import.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Col2Im {
    pub image: Vec<usize>,
    pub block: Vec<usize>,
    pub dilations: Vec<usize>,
    /// All begin pads, then all end pads.
    pub pads: Vec<usize>,
    pub strides: Vec<usize>,
}

into_op!(Col2Im);

fn import_col2im(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 3)?;
    let a = cx.attrs(&["dilations", "pads", "strides"])?;
    cx.input(0, "input")?;
    let image = cx.constant_ints(1, "image_shape")?.ok_or_else(|| shape_error("Col2Im needs image_shape"))?;
    let block = cx.constant_ints(2, "block_shape")?.ok_or_else(|| shape_error("Col2Im needs block_shape"))?;
    let n = image.len();
    if n == 0 || block.len() != n {
        return Err(bad_attribute(format!(
            "Col2Im image_shape {image:?} and block_shape {block:?} must list the same (non-zero) number of axes"
        )));
    }
    let image = positive_list(Some(image), n, "Col2Im image_shape")?;
    let block = positive_list(Some(block), n, "Col2Im block_shape")?;
    let dilations = positive_list(a.ints("dilations")?, n, "dilations")?;
    let strides = positive_list(a.ints("strides")?, n, "strides")?;
    let pads = match a.ints("pads")? {
        None => vec![0; 2 * n],
        Some(p) if p.len() == 2 * n && p.iter().all(|&v| v >= 0) => p.iter().map(|&v| v as usize).collect(),
        Some(p) => return Err(bad_attribute(format!("pads must be {} non-negative integers, got {p:?}", 2 * n))),
    };
    Lowered::ir(Col2Im { image, block, dilations, pads, strides }, vec![0])
}

impl Col2Im {
    /// The number of sliding blocks along each axis.
    fn blocks(&self) -> Result<Vec<usize>, String> {
        let n = self.image.len();
        if [self.block.len(), self.dilations.len(), self.strides.len()] != [n; 3] || self.pads.len() != 2 * n {
            return Err(format!("Col2Im: the window's attributes do not all cover {n} axes"));
        }
        (0..n)
            .map(|i| {
                let span = (self.block[i] - 1).checked_mul(self.dilations[i]).and_then(|s| s.checked_add(1));
                let padded = self.image[i].checked_add(self.pads[i]).and_then(|p| p.checked_add(self.pads[n + i]));
                match (span, padded) {
                    (Some(span), Some(padded)) if padded >= span => Ok((padded - span) / self.strides[i] + 1),
                    _ => Err(format!(
                        "Col2Im: on axis {i} the block {} (dilation {}) does not fit the image {} padded by {}/{}",
                        self.block[i],
                        self.dilations[i],
                        self.image[i],
                        self.pads[i],
                        self.pads[n + i]
                    )),
                }
            })
            .collect()
    }
}

impl OpDef for Col2Im {
    fn type_name(&self) -> &'static str {
        "Col2Im"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Col2Im", inputs)?;
        if !summable(x.dtype) {
            return Err(format!("Col2Im: input {:?} is {}, which Col2Im cannot sum", x.name, x.dtype.name()));
        }
        let &[batch, cells, count] = &x.shape[..] else {
            return Err(format!("Col2Im: input {:?} has shape {:?}, expected [N, C * block, L]", x.name, x.shape));
        };
        let block: usize = self.block.iter().product();
        let blocks = self.blocks()?;
        let expected: usize = blocks.iter().product();
        if block == 0 || !cells.is_multiple_of(block) || count != expected {
            return Err(format!(
                "Col2Im: input {:?} has shape {:?}, expected [N, C * {block}, {expected}] for blocks {:?} sliding \
                 {blocks:?} times over image {:?}",
                x.name, x.shape, self.block, self.image
            ));
        }
        let mut shape = vec![batch, cells / block];
        shape.extend_from_slice(&self.image);
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![col2im(self, inputs)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let image = cx.int64s("image_shape", &ints(&self.image));
        let block = cx.int64s("block_shape", &ints(&self.block));
        let attrs = vec![
            attr_ints("dilations", &ints(&self.dilations)),
            attr_ints("pads", &ints(&self.pads)),
            attr_ints("strides", &ints(&self.strides)),
        ];
        cx.emit_with("Col2Im", vec![image, block], attrs);
    }
}

/// Element types whose cells Col2Im adds.
fn summable(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F32
            | DType::F64
            | DType::F16
            | DType::BF16
            | DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64
    )
}

/// Adding one cell into an image position: floats in their own type (as the reference does),
/// integers wrapping.
trait Accumulate: Copy + Default {
    fn accumulate(&mut self, v: Self);
}

macro_rules! float_accumulate {
    ($($t:ty),*) => {$(
        impl Accumulate for $t {
            #[inline]
            fn accumulate(&mut self, v: $t) {
                *self += v;
            }
        }
    )*};
}

macro_rules! int_accumulate {
    ($($t:ty),*) => {$(
        impl Accumulate for $t {
            #[inline]
            fn accumulate(&mut self, v: $t) {
                *self = self.wrapping_add(v);
            }
        }
    )*};
}

float_accumulate!(f32, f64, half::f16, half::bf16);
int_accumulate!(i8, i16, i32, i64, u8, u16, u32, u64);

const NAME: &str = "Col2Im";

/// For one `(n, c)` plane: the `(cell, image position)` pairs of every block cell that lands
/// inside the image, cell-major (the reference's summation order), shared by all planes.
fn cell_targets(op: &Col2Im, blocks: &[usize]) -> Vec<(usize, usize)> {
    let n = op.image.len();
    // Per axis, per (block offset, block index): the image coordinate, if inside.
    let coords: Vec<Vec<Option<usize>>> = (0..n)
        .map(|i| {
            (0..op.block[i])
                .flat_map(|k| {
                    (0..blocks[i]).map(move |b| {
                        let c = (b * op.strides[i] + k * op.dilations[i]) as i64 - op.pads[i] as i64;
                        (c >= 0 && (c as usize) < op.image[i]).then_some(c as usize)
                    })
                })
                .collect()
        })
        .collect();
    let block_cells: usize = op.block.iter().product();
    let count: usize = blocks.iter().product();
    let mut pairs = Vec::new();
    let mut offset = vec![0usize; n];
    for k in 0..block_cells {
        let mut index = vec![0usize; n];
        for l in 0..count {
            let mut target = Some(0usize);
            for i in 0..n {
                target = match (target, coords[i][offset[i] * blocks[i] + index[i]]) {
                    (Some(t), Some(c)) => Some(t * op.image[i] + c),
                    _ => None,
                };
            }
            if let Some(t) = target {
                pairs.push((k * count + l, t));
            }
            odometer(&mut index, blocks);
        }
        odometer(&mut offset, &op.block);
    }
    pairs
}

/// Steps the row-major multi-index `index` over `dims`.
fn odometer(index: &mut [usize], dims: &[usize]) {
    for d in (0..index.len()).rev() {
        index[d] += 1;
        if index[d] < dims[d] {
            return;
        }
        index[d] = 0;
    }
}

fn col2im(op: &Col2Im, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    expect_inputs(NAME, inputs, 1, 1)?;
    let x = input(NAME, inputs, 0, "input")?;
    let info = TensorInfo { name: "input".into(), dtype: x.dtype(), shape: x.shape.clone() };
    let shape = op.infer(&[&info]).map_err(|e| KernelError::new(NAME, e))?.remove(0).1;
    let image: usize = element_count(NAME, &op.image)?;
    let planes = shape[0] * shape[1];
    let plane_in = x.len().checked_div(planes).unwrap_or(0);
    let blocks = op.blocks().map_err(|e| KernelError::new(NAME, e))?;
    let pairs = cell_targets(op, &blocks);
    let size = element_count(NAME, &shape)?;
    fn sum<T: Accumulate>(x: &[T], pairs: &[(usize, usize)], plane_in: usize, image: usize, size: usize) -> Vec<T> {
        let mut y = vec![T::default(); size];
        if plane_in == 0 || image == 0 {
            return y;
        }
        for (cells, out) in x.chunks_exact(plane_in).zip(y.chunks_exact_mut(image)) {
            for &(cell, target) in pairs {
                out[target].accumulate(cells[cell]);
            }
        }
        y
    }
    let data = match &x.data {
        TensorData::F32(v) => TensorData::F32(sum(v, &pairs, plane_in, image, size)),
        TensorData::F64(v) => TensorData::F64(sum(v, &pairs, plane_in, image, size)),
        TensorData::F16(v) => TensorData::F16(sum(v, &pairs, plane_in, image, size)),
        TensorData::BF16(v) => TensorData::BF16(sum(v, &pairs, plane_in, image, size)),
        TensorData::I8(v) => TensorData::I8(sum(v, &pairs, plane_in, image, size)),
        TensorData::I16(v) => TensorData::I16(sum(v, &pairs, plane_in, image, size)),
        TensorData::I32(v) => TensorData::I32(sum(v, &pairs, plane_in, image, size)),
        TensorData::I64(v) => TensorData::I64(sum(v, &pairs, plane_in, image, size)),
        TensorData::U8(v) => TensorData::U8(sum(v, &pairs, plane_in, image, size)),
        TensorData::U16(v) => TensorData::U16(sum(v, &pairs, plane_in, image, size)),
        TensorData::U32(v) => TensorData::U32(sum(v, &pairs, plane_in, image, size)),
        TensorData::U64(v) => TensorData::U64(sum(v, &pairs, plane_in, image, size)),
        other => return Err(KernelError::new(NAME, format!("cannot sum {} values", other.dtype().name()))),
    };
    tensor(NAME, shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(image: &[usize], block: &[usize], dilations: &[usize], pads: &[usize], strides: &[usize]) -> Col2Im {
        let n = image.len();
        let or = |v: &[usize], d: usize, len: usize| if v.is_empty() { vec![d; len] } else { v.to_vec() };
        Col2Im {
            image: image.to_vec(),
            block: block.to_vec(),
            dilations: or(dilations, 1, n),
            pads: or(pads, 0, 2 * n),
            strides: or(strides, 1, n),
        }
    }

    fn run(op: &Col2Im, shape: &[usize], x: Vec<f32>) -> Tensor {
        let x = Tensor::from_f32(shape.to_vec(), x);
        Op::Col2Im(op.clone()).run(&[&x], &[]).unwrap().remove(0)
    }

    #[test]
    fn overlapping_blocks_sum_in_1d() {
        // Image 4, block 2, stride 1: 3 blocks; cells [k=0: a0 a1 a2 | k=1: b0 b1 b2] land at
        // block + k: y = [a0, a1 + b0, a2 + b1, b2].
        let y = run(&op(&[4], &[2], &[], &[], &[]), &[1, 2, 3], vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
        assert_eq!(y.shape, vec![1, 1, 4]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 12.0, 23.0, 30.0]);
    }

    #[test]
    fn pads_drop_cells_and_strides_and_dilations_place_them() {
        // Image 3, block 2, pad 1 each side, stride 2: padded 5, blocks (5 - 2) / 2 + 1 = 2
        // starting at -1 and 1. k=0 lands at -1 (dropped) and 1; k=1 at 0 and 2:
        // cells [a0 a1 | b0 b1] -> y = [b0, a1, b1].
        let y = run(&op(&[3], &[2], &[], &[1, 1], &[2]), &[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(y.as_f32().unwrap(), &[3.0, 2.0, 4.0]);
        // Image 5, block 2, dilation 3: span 4, 2 blocks at 0, 1; k=1 adds 3: positions
        // a: 0, 1; b: 3, 4 -> [a0, a1, 0, b0, b1].
        let y = run(&op(&[5], &[2], &[3], &[], &[]), &[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 2.0, 0.0, 3.0, 4.0]);
    }

    #[test]
    fn two_dimensional_blocks_and_channels() {
        // Image 2x2, block 1x2 (two cells per block), 2 channels: input [1, 2 * 2, 2 blocks]
        // (one block per row). Channel 0 cells k=0 [1, 2], k=1 [3, 4] -> rows [1, 3], [2, 4];
        // channel 1 cells [5, 6], [7, 8] -> [5, 7], [6, 8].
        let y = run(&op(&[2, 2], &[1, 2], &[], &[], &[]), &[1, 4, 2], (1..=8).map(|v| v as f32).collect());
        assert_eq!(y.shape, vec![1, 2, 2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 3.0, 2.0, 4.0, 5.0, 7.0, 6.0, 8.0]);
    }

    #[test]
    fn integers_sum_and_bad_shapes_are_errors() {
        let x = Tensor { shape: vec![1, 2, 3], data: TensorData::I32(vec![1, 2, 3, 10, 20, 30]) };
        let y = Op::Col2Im(op(&[4], &[2], &[], &[], &[])).run(&[&x], &[]).unwrap();
        assert_eq!(y[0].data, TensorData::I32(vec![1, 12, 23, 30]));
        let info = |shape: &[usize]| TensorInfo { name: "x".into(), dtype: DType::F32, shape: shape.to_vec() };
        // 3 blocks expected, 4 given; 3 cells are not a multiple of the block's 2.
        let c = op(&[4], &[2], &[], &[], &[]);
        assert!(c.infer(&[&info(&[1, 2, 4])]).unwrap_err().contains("expected [N, C * 2, 3]"));
        assert!(c.infer(&[&info(&[1, 3, 3])]).is_err());
        assert!(c.infer(&[&info(&[2, 3])]).is_err());
        // A block wider than the padded image.
        let err = op(&[2], &[2], &[2], &[], &[]).infer(&[&info(&[1, 2, 1])]).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
    }
}
