//! Det (opset 11; bfloat16 from opset 22): the determinant of each `M x M` matrix of
//! `X [*, M, M]`, giving `Y [*]` (a scalar for a single matrix).
//!
//! Computed as LAPACK's `getrf` does it, which numpy's `linalg.det` calls: LU factorization
//! with partial pivoting (the row of largest magnitude in each column), the determinant the
//! product of the pivots with a sign flip per row swap. The factorization runs in float64
//! whatever the element type. A zero column gives 0 and the elimination goes on, so a NaN
//! elsewhere still propagates as in LAPACK; an empty matrix's determinant is 1.

use serde::{Deserialize, Serialize};

use super::export::ExportCx;
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::runtime::kernels::elementwise::{Real, real_map, unsupported};
use crate::runtime::kernels::{KernelError, element_count, expect_inputs, tensor};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::ir("Det", import_det, QuantDefault::CALIBRATED)];

/// Input `[X]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Det;

into_op!(Det);

fn import_det(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    cx.attrs(&[])?;
    Lowered::ir(Det, vec![0])
}

impl OpDef for Det {
    fn type_name(&self) -> &'static str {
        "Det"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let [x] = exactly("Det", inputs)?;
        if !x.dtype.is_compute_float() {
            return Err(format!("Det: {:?} is {}, expected a float type", x.name, x.dtype.name()));
        }
        match x.shape[..] {
            [.., m, n] if m == n => Ok(vec![(x.dtype, x.shape[..x.shape.len() - 2].to_vec())]),
            _ => Err(format!("Det: {:?} has shape {:?}, expected [*, M, M] (square matrices)", x.name, x.shape)),
        }
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const NAME: &str = "Det";
        expect_inputs(NAME, inputs, 1, 1)?;
        let x = inputs[0];
        let info = TensorInfo { name: String::new(), dtype: x.dtype(), shape: x.shape.clone() };
        let shape = self.infer(&[&info]).map_err(|e| KernelError::new(NAME, e))?.remove(0).1;
        let m = x.shape[x.shape.len() - 1];
        let count = element_count(NAME, &shape)?;
        let data = real_map!(&x.data, v => determinants(v, m, count), return Err(unsupported(NAME, &x.data)));
        Ok(vec![tensor(NAME, shape, data)?])
    }

    fn input_role(&self, _position: usize, _rank: usize) -> InputRole {
        InputRole::Activation
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        cx.emit("Det", vec![]);
    }
}

/// The determinant of each of the `count` `m x m` matrices of `x` (row-major, one after the
/// other).
fn determinants<T: Real>(x: &[T], m: usize, count: usize) -> Vec<T> {
    if m == 0 {
        return vec![T::ONE; count];
    }
    let mut a = vec![0.0f64; m * m];
    x.chunks_exact(m * m)
        .map(|matrix| {
            for (dst, src) in a.iter_mut().zip(matrix) {
                *dst = src.to_f64();
            }
            T::from_f64(lu_determinant(&mut a, m))
        })
        .collect()
}

/// The determinant of the `m x m` matrix `a` (overwritten by its LU factors).
fn lu_determinant(a: &mut [f64], m: usize) -> f64 {
    let mut det = 1.0;
    for k in 0..m {
        // The pivot: the first row of largest magnitude in column k, from row k down.
        let mut pivot_row = k;
        let mut largest = a[k * m + k].abs();
        for i in k + 1..m {
            let magnitude = a[i * m + k].abs();
            if magnitude > largest {
                (pivot_row, largest) = (i, magnitude);
            }
        }
        if pivot_row != k {
            let (top, bottom) = a.split_at_mut(pivot_row * m);
            top[k * m..(k + 1) * m].swap_with_slice(&mut bottom[..m]);
            det = -det;
        }
        let pivot = a[k * m + k];
        det *= pivot;
        if pivot == 0.0 {
            continue;
        }
        let (done, rest) = a.split_at_mut((k + 1) * m);
        let pivot_tail = &done[k * m + k + 1..(k + 1) * m];
        for row in rest.chunks_exact_mut(m) {
            let factor = row[k] / pivot;
            if factor != 0.0 {
                for (r, &p) in row[k + 1..].iter_mut().zip(pivot_tail) {
                    *r -= factor * p;
                }
            }
        }
    }
    det
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorData;

    fn det(shape: &[usize], values: &[f32]) -> Tensor {
        let x = Tensor::from_f32(shape.to_vec(), values.to_vec());
        Op::Det(Det).run(&[&x], &[]).unwrap().remove(0)
    }

    #[test]
    fn determinants_of_small_matrices() {
        // [[0, 1], [2, 3]]: 0*3 - 1*2 = -2 (a zero first pivot: rows swap).
        let y = det(&[2, 2], &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!((y.shape.as_slice(), y.as_f32().unwrap()), (&[][..], &[-2.0][..]));
        // [[0, 2, 1], [1, 0, 3], [4, 5, 0]] by cofactors along row 0: 0 - 2*(0 - 12) + (5 - 0) = 29;
        // a singular [[1, 2], [2, 4]] gives 0.
        let y = det(
            &[2, 3, 3],
            &[0.0, 2.0, 1.0, 1.0, 0.0, 3.0, 4.0, 5.0, 0.0, 1.0, 2.0, 0.0, 2.0, 4.0, 0.0, 0.0, 0.0, 1.0],
        );
        assert_eq!(y.shape, [2]);
        let v = y.as_f32().unwrap();
        assert!((v[0] - 29.0).abs() < 1e-5 && v[1] == 0.0, "{v:?}");
    }

    #[test]
    fn a_4x4_matches_numpy() {
        // np.linalg.det([[2,-1,0,3],[1,4,-2,0.5],[0,3,1,-1],[5,0,2,1]]) = -115.49999999999996.
        let a = [2.0, -1.0, 0.0, 3.0, 1.0, 4.0, -2.0, 0.5, 0.0, 3.0, 1.0, -1.0, 5.0, 0.0, 2.0, 1.0];
        let x = Tensor::new(vec![1, 4, 4], TensorData::F64(a.to_vec())).unwrap();
        let y = Op::Det(Det).run(&[&x], &[]).unwrap().remove(0);
        assert_eq!(y.shape, [1]);
        assert!((y.data.to_f64_vec()[0] + 115.5).abs() < 1e-12);
    }

    #[test]
    fn non_square_and_integer_inputs_are_refused() {
        let info = |dtype, shape: &[usize]| TensorInfo { name: "x".into(), dtype, shape: shape.to_vec() };
        assert!(Op::Det(Det).infer(&[&info(DType::F32, &[2, 3])]).unwrap_err().contains("square"));
        assert!(Op::Det(Det).infer(&[&info(DType::F32, &[3])]).is_err());
        assert!(Op::Det(Det).infer(&[&info(DType::I64, &[2, 2])]).is_err());
        // An empty batch gives an empty output; empty matrices have determinant 1 (numpy).
        assert_eq!(det(&[0, 3, 3], &[]).shape, [0]);
        assert_eq!(det(&[2, 0, 0], &[]).as_f32().unwrap(), &[1.0, 1.0]);
    }
}
