//! RotaryEmbedding (opset 23): rotates the first `rotary_embedding_dim` features of every head
//! by the angles of `cos_cache`/`sin_cache`. Inputs `[X, cos_cache, sin_cache, position_ids?]`:
//! X is `[batch, heads, seq, head_size]` or `[batch, seq, heads · head_size]` (with
//! `num_heads`); the caches are `[max_position, rot / 2]` indexed by `position_ids
//! [batch, seq]`, or `[batch, seq, rot / 2]` when there are no position ids.
//!
//! With `x1`, `x2` the two halves of the rotated features (or the even and odd ones when
//! `interleaved`): `x1' = cos · x1 - sin · x2`, `x2' = sin · x1 + cos · x2`; the remaining
//! features pass unchanged.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int};
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::require_float;
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, f32_input, input, tensor};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::ir("RotaryEmbedding", import_rotary, QuantDefault::CALIBRATED)];

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RotaryEmbedding {
    pub interleaved: bool,
    /// Heads of a 3-D input (0 for a 4-D one).
    pub num_heads: usize,
    /// Rotated features per head; 0 means all of them.
    pub rotary_dim: usize,
}

impl From<RotaryEmbedding> for Op {
    fn from(op: RotaryEmbedding) -> Op {
        Op::RotaryEmbedding(op)
    }
}

fn import_rotary(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 4)?;
    let a = cx.attrs(&["interleaved", "num_heads", "rotary_embedding_dim"])?;
    let non_negative = |name: &str| -> Result<usize, ImportError> {
        let v = a.int_or(name, 0)?;
        usize::try_from(v).map_err(|_| bad_attribute(format!("{name} must be >= 0, got {v}")))
    };
    let op = RotaryEmbedding {
        interleaved: a.flag("interleaved")?,
        num_heads: non_negative("num_heads")?,
        rotary_dim: non_negative("rotary_embedding_dim")?,
    };
    cx.input(1, "cos_cache")?;
    cx.input(2, "sin_cache")?;
    Lowered::ir(op, cx.present(&[0, 1, 2, 3]))
}

/// The resolved geometry of one call.
#[derive(Debug, PartialEq)]
struct Geometry {
    batch: usize,
    seq: usize,
    heads: usize,
    head_size: usize,
    /// Rotated features per head (even).
    rot: usize,
    /// X is `[batch, heads, seq, head]` (else `[batch, seq, heads · head]`).
    heads_first: bool,
}

impl RotaryEmbedding {
    fn geometry(&self, x: &[usize], cos: &[usize], sin: &[usize], ids: Option<&[usize]>) -> Result<Geometry, String> {
        let (batch, seq, heads, head_size, heads_first) = match *x {
            [b, h, s, d] => (b, h, s, d, true),
            [b, s, hidden] => {
                let h = self.num_heads;
                if h == 0 || hidden % h != 0 {
                    return Err(format!(
                        "RotaryEmbedding: a 3-D input needs num_heads dividing its hidden size {hidden}, got {h}"
                    ));
                }
                (b, s, h, hidden / h, false)
            }
            _ => return Err(format!("RotaryEmbedding: input has shape {x:?}, expected rank 3 or 4")),
        };
        let (batch, seq, heads) = if heads_first { (batch, heads, seq) } else { (batch, seq, heads) };
        let rot = if self.rotary_dim == 0 { head_size } else { self.rotary_dim };
        if rot > head_size || rot % 2 != 0 {
            return Err(format!(
                "RotaryEmbedding: rotary_embedding_dim {rot} must be even and at most the head size {head_size}"
            ));
        }
        let want_cache = match ids {
            Some(ids) => {
                if ids != [batch, seq] {
                    return Err(format!("RotaryEmbedding: position_ids have shape {ids:?}, expected [{batch}, {seq}]"));
                }
                None
            }
            None => Some(vec![batch, seq, rot / 2]),
        };
        for (what, cache) in [("cos_cache", cos), ("sin_cache", sin)] {
            let ok = match &want_cache {
                Some(want) => cache == want.as_slice(),
                None => cache.len() == 2 && cache[1] == rot / 2,
            };
            if !ok {
                let want = want_cache.as_ref().map_or(format!("[max_position, {}]", rot / 2), |w| format!("{w:?}"));
                return Err(format!("RotaryEmbedding: {what} has shape {cache:?}, expected {want}"));
            }
        }
        Ok(Geometry { batch, seq, heads, head_size, rot, heads_first })
    }
}

impl OpDef for RotaryEmbedding {
    fn float32_kernel(&self) -> bool {
        true
    }

    fn type_name(&self) -> &'static str {
        "RotaryEmbedding"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let (x, cos, sin, ids) = match *inputs {
            [x, cos, sin] => (x, cos, sin, None),
            [x, cos, sin, ids] => (x, cos, sin, Some(ids)),
            _ => return Err(format!("RotaryEmbedding: expects 3 or 4 inputs, got {}", inputs.len())),
        };
        require_float("RotaryEmbedding", x)?;
        for cache in [cos, sin] {
            if cache.dtype != x.dtype {
                return Err(format!(
                    "RotaryEmbedding: {:?} is {} but the input is {}",
                    cache.name,
                    cache.dtype.name(),
                    x.dtype.name()
                ));
            }
        }
        if let Some(ids) = ids
            && ids.dtype != DType::I64
        {
            return Err(format!(
                "RotaryEmbedding: position_ids {:?} must be int64, got {}",
                ids.name,
                ids.dtype.name()
            ));
        }
        self.geometry(&x.shape, &cos.shape, &sin.shape, ids.map(|i| i.shape.as_slice()))?;
        Ok(vec![(x.dtype, x.shape.clone())])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![rotary(self, inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 3 { InputRole::Index } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = vec![attr_int("interleaved", i64::from(self.interleaved))];
        if self.num_heads != 0 {
            attrs.push(attr_int("num_heads", self.num_heads as i64));
        }
        if self.rotary_dim != 0 {
            attrs.push(attr_int("rotary_embedding_dim", self.rotary_dim as i64));
        }
        cx.emit("RotaryEmbedding", attrs);
    }
}

fn rotary(op: &RotaryEmbedding, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    const NAME: &str = "RotaryEmbedding";
    let x_t = input(NAME, inputs, 0, "input")?;
    let x = f32_input(NAME, inputs, 0, "input")?;
    let cos_t = input(NAME, inputs, 1, "cos_cache")?;
    let cos = f32_input(NAME, inputs, 1, "cos_cache")?;
    let sin = f32_input(NAME, inputs, 2, "sin_cache")?;
    let ids = match inputs.get(3) {
        Some(t) => Some((
            t.shape.as_slice(),
            t.to_i64_vec().ok_or_else(|| KernelError::new(NAME, "position_ids must be int64"))?,
        )),
        None => None,
    };
    let g = op
        .geometry(&x_t.shape, &cos_t.shape, &inputs[2].shape, ids.as_ref().map(|(s, _)| *s))
        .map_err(|e| KernelError::new(NAME, e))?;
    let half = g.rot / 2;
    let max_position = cos_t.shape[0];
    let mut y = x.to_vec();
    for b in 0..g.batch {
        for s in 0..g.seq {
            // The cache row of this token.
            let row = match &ids {
                Some((_, ids)) => {
                    let p = ids[b * g.seq + s];
                    usize::try_from(p).ok().filter(|&p| p < max_position).ok_or_else(|| {
                        KernelError::new(NAME, format!("position id {p} is outside the cache [0, {max_position})"))
                    })?
                }
                None => b * g.seq + s,
            };
            let (c, sn) = (&cos[row * half..(row + 1) * half], &sin[row * half..(row + 1) * half]);
            for h in 0..g.heads {
                let base = if g.heads_first {
                    ((b * g.heads + h) * g.seq + s) * g.head_size
                } else {
                    ((b * g.seq + s) * g.heads + h) * g.head_size
                };
                let v = &mut y[base..base + g.rot];
                if op.interleaved {
                    for (pair, (&c, &sn)) in v.chunks_exact_mut(2).zip(c.iter().zip(sn)) {
                        let (x1, x2) = (pair[0], pair[1]);
                        pair[0] = c * x1 - sn * x2;
                        pair[1] = sn * x1 + c * x2;
                    }
                } else {
                    let (first, second) = v.split_at_mut(half);
                    for ((x1, x2), (&c, &sn)) in first.iter_mut().zip(second.iter_mut()).zip(c.iter().zip(sn)) {
                        let (a, b) = (*x1, *x2);
                        *x1 = c * a - sn * b;
                        *x2 = sn * a + c * b;
                    }
                }
            }
        }
    }
    tensor(NAME, x_t.shape.clone(), TensorData::F32(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(interleaved: bool, num_heads: usize, rotary_dim: usize) -> RotaryEmbedding {
        RotaryEmbedding { interleaved, num_heads, rotary_dim }
    }

    fn run(op: &RotaryEmbedding, inputs: &[&Tensor]) -> Vec<f32> {
        op.run(inputs, &[]).unwrap().remove(0).as_f32().unwrap().to_vec()
    }

    #[test]
    fn a_quarter_turn_by_position_id() {
        // One head of 4 features [1, 2, 3, 4]; halves x1 = [1, 2], x2 = [3, 4]. Position 1 of
        // the cache has cos = 0, sin = 1 (a quarter turn): x1' = -x2 = [-3, -4], x2' = x1.
        // Position 0 (cos 1, sin 0) is the identity.
        let x = Tensor::from_f32(vec![1, 1, 2, 4], vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
        let cos = Tensor::from_f32(vec![2, 2], vec![1.0, 1.0, 0.0, 0.0]);
        let sin = Tensor::from_f32(vec![2, 2], vec![0.0, 0.0, 1.0, 1.0]);
        let ids = Tensor::from_i64(vec![1, 2], vec![1, 0]);
        let y = run(&op(false, 0, 0), &[&x, &cos, &sin, &ids]);
        assert_eq!(y, [-3.0, -4.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0]);
        // Interleaved pairs (1, 2) and (3, 4): a quarter turn maps (a, b) to (-b, a).
        let y = run(&op(true, 0, 0), &[&x, &cos, &sin, &ids]);
        assert_eq!(y, [-2.0, 1.0, -4.0, 3.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn partial_rotation_of_a_3d_input_without_position_ids() {
        // [batch 1, seq 1, 2 heads x 4]: rotary_dim 2 rotates features 0 and 1 of each head
        // by the angle with cos = 0.6, sin = 0.8: (a, b) -> (0.6a - 0.8b, 0.8a + 0.6b).
        // Head 0 (1, 2) -> (-1, 2); head 1 (5, 0) -> (3, 4); features 2, 3 unchanged.
        let x = Tensor::from_f32(vec![1, 1, 8], vec![1.0, 2.0, 9.0, 9.0, 5.0, 0.0, 7.0, 7.0]);
        let cos = Tensor::from_f32(vec![1, 1, 1], vec![0.6]);
        let sin = Tensor::from_f32(vec![1, 1, 1], vec![0.8]);
        let y = run(&op(false, 2, 2), &[&x, &cos, &sin]);
        let want = [-1.0, 2.0, 9.0, 9.0, 3.0, 4.0, 7.0, 7.0];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn bad_geometry_and_position_ids_are_errors() {
        let x = TensorInfo { name: "x".into(), dtype: DType::F32, shape: vec![1, 1, 8] };
        let cache = TensorInfo { name: "c".into(), dtype: DType::F32, shape: vec![4, 4] };
        let ids = TensorInfo { name: "p".into(), dtype: DType::I64, shape: vec![1, 1] };
        assert!(op(false, 0, 0).infer(&[&x, &cache, &cache, &ids]).unwrap_err().contains("num_heads"));
        assert!(op(false, 2, 0).infer(&[&x, &cache, &cache, &ids]).unwrap_err().contains("cos_cache"));
        assert!(op(false, 1, 0).infer(&[&x, &cache, &cache, &ids]).is_ok());
        let x = Tensor::from_f32(vec![1, 1, 2], vec![1.0, 2.0]);
        let cache = Tensor::from_f32(vec![1, 1], vec![1.0]);
        let far = Tensor::from_i64(vec![1, 1], vec![1]);
        let err = op(false, 1, 0).run(&[&x, &cache, &cache, &far], &[]).unwrap_err();
        assert!(err.message.contains("outside the cache"), "{err}");
    }
}
