//! Scaled dot-product attention (ONNX Attention, opset 23/24): 3-D (`[batch, seq, heads *
//! head_size]`) or 4-D (`[batch, heads, seq, head_size]`) Q/K/V, grouped-query attention
//! (`kv_num_heads` < `q_num_heads`), float or bool `attn_mask` (broadcast, its last axis padded
//! to the total sequence), `is_causal`, `scale`, `softcap`, a key/value cache (`past_key`,
//! `past_value` -> `present_key`, `present_value`), `nonpad_kv_seqlen` and the optional
//! `qk_matmul_output` in its four modes.
//!
//! The products run on sgemm per (batch, head); float16/bfloat16/float64 data is computed in
//! float32 and written back in its own type.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_float, attr_int};
use super::import::{Lowered, NodeCx};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::{DType, Tensor, TensorData, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, element_count, gemm::sgemm, tensor};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::ir("Attention", import_attention, QuantDefault::CALIBRATED)];

/// What `qk_matmul_output` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QkOutput {
    /// The scaled Q·Kᵀ product (after softcap when one is set, as ONNX's reference computes it).
    MatMul,
    /// After the softcap.
    Softcap,
    /// After adding the mask (attention bias).
    Masked,
    /// After the softmax.
    Softmax,
}

/// ONNX Attention; the optional inputs present are recorded so the IR inputs are
/// `[Q, K, V, (attn_mask), (past_key, past_value), (nonpad_kv_seqlen)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attention {
    pub is_causal: bool,
    /// Required for 3-D inputs.
    pub q_num_heads: Option<usize>,
    pub kv_num_heads: Option<usize>,
    /// `None`: `1 / sqrt(head_size)`.
    pub scale: Option<f32>,
    /// `0`: none; else `softcap * tanh(x / softcap)`.
    pub softcap: f32,
    pub qk_output: QkOutput,
    /// The ONNX `softmax_precision` attribute (a float type code), kept for export: qairt's
    /// softmax runs in float32 at least.
    pub softmax_precision: Option<i64>,
    pub mask: bool,
    pub past: bool,
    pub nonpad: bool,
}

impl From<Attention> for Op {
    fn from(op: Attention) -> Op {
        Op::Attention(op)
    }
}

fn positive(value: Option<i64>, what: &str) -> Result<Option<usize>, ImportError> {
    value
        .map(|v| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| bad_attribute(format!("{what} must be positive, got {v}")))
        })
        .transpose()
}

fn import_attention(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(3, 7)?;
    let a = cx.attrs(&[
        "is_causal",
        "kv_num_heads",
        "q_num_heads",
        "qk_matmul_output_mode",
        "scale",
        "softcap",
        "softmax_precision",
    ])?;
    let qk_output = match a.int_or("qk_matmul_output_mode", 0)? {
        0 => QkOutput::MatMul,
        1 => QkOutput::Softcap,
        2 => QkOutput::Masked,
        3 => QkOutput::Softmax,
        m => return Err(bad_attribute(format!("qk_matmul_output_mode must be 0 to 3, got {m}"))),
    };
    let softcap = a.float_or("softcap", 0.0)?;
    if !(softcap >= 0.0 && softcap.is_finite()) {
        return Err(bad_attribute(format!("softcap must be finite and >= 0, got {softcap}")));
    }
    if cx.opt(6).is_some() && cx.opset < 24 {
        return Err(bad_attribute("input nonpad_kv_seqlen exists from opset 24 on"));
    }
    let past = match (cx.opt(4).is_some(), cx.opt(5).is_some()) {
        (a, b) if a == b => a,
        _ => return Err(bad_attribute("past_key and past_value must be given together")),
    };
    let op = Attention {
        is_causal: a.flag("is_causal")?,
        q_num_heads: positive(a.int("q_num_heads")?, "q_num_heads")?,
        kv_num_heads: positive(a.int("kv_num_heads")?, "kv_num_heads")?,
        scale: a.float("scale")?,
        softcap,
        qk_output,
        softmax_precision: a.int("softmax_precision")?,
        mask: cx.opt(3).is_some(),
        past,
        nonpad: cx.opt(6).is_some(),
    };
    Lowered::ir(op, cx.present(&[0, 1, 2, 3, 4, 5, 6]))
}

/// Q, K, V, attn_mask, (past_key, past_value), nonpad_kv_seqlen.
type Roles<'t, T> = (&'t T, &'t T, &'t T, Option<&'t T>, Option<(&'t T, &'t T)>, Option<&'t T>);

/// The past key and value caches as f32.
type Cache<'a> = (Cow<'a, [f32]>, Cow<'a, [f32]>);

/// The sizes of one Attention call.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    rank3: bool,
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    q_seq: usize,
    kv_seq: usize,
    past: usize,
    head: usize,
    v_head: usize,
}

impl Geometry {
    fn total(&self) -> usize {
        self.past + self.kv_seq
    }
}

/// Shapes of the inputs, by role.
struct Shapes<'a> {
    q: &'a [usize],
    k: &'a [usize],
    v: &'a [usize],
    mask: Option<&'a [usize]>,
    past_k: Option<&'a [usize]>,
    past_v: Option<&'a [usize]>,
    nonpad: Option<&'a [usize]>,
}

impl Attention {
    /// Splits the inputs (of any element type) by role.
    fn roles<'t, T>(&self, inputs: &'t [T]) -> Result<Roles<'t, T>, String> {
        let expected = 3 + usize::from(self.mask) + 2 * usize::from(self.past) + usize::from(self.nonpad);
        if inputs.len() != expected {
            return Err(format!("Attention: expects {expected} inputs, got {}", inputs.len()));
        }
        let mut i = 3;
        let mut next = || {
            i += 1;
            &inputs[i - 1]
        };
        let mask = self.mask.then(&mut next);
        let past = if self.past { Some((next(), next())) } else { None };
        let nonpad = self.nonpad.then(&mut next);
        Ok((&inputs[0], &inputs[1], &inputs[2], mask, past, nonpad))
    }

    fn geometry(&self, s: &Shapes) -> Result<Geometry, String> {
        let err = |m: String| Err(format!("Attention: {m}"));
        let (rank3, batch, q_heads, kv_heads, q_seq, kv_seq, head, kv_head, v_head);
        match (s.q, s.k, s.v) {
            (&[b, sq, hq_size], &[bk, skv, hk_size], &[bv, sv, hv_size]) => {
                let (Some(qh), Some(kvh)) = (self.q_num_heads, self.kv_num_heads) else {
                    return err("3-D inputs need the q_num_heads and kv_num_heads attributes".into());
                };
                if hq_size % qh != 0 || hk_size % kvh != 0 || hv_size % kvh != 0 {
                    return err(format!(
                        "hidden sizes {hq_size}, {hk_size}, {hv_size} do not divide into {qh} query and {kvh} key/value heads"
                    ));
                }
                if bk != b || bv != b || sv != skv {
                    return err(format!("K {:?} and V {:?} disagree with Q {:?}", s.k, s.v, s.q));
                }
                (rank3, batch, q_heads, kv_heads, q_seq, kv_seq) = (true, b, qh, kvh, sq, skv);
                (head, kv_head, v_head) = (hq_size / qh, hk_size / kvh, hv_size / kvh);
            }
            (&[b, hq, sq, d], &[bk, hk, skv, dk], &[bv, hv, sv, dv]) => {
                if bk != b || bv != b || hv != hk || sv != skv {
                    return err(format!("K {:?} and V {:?} disagree with Q {:?}", s.k, s.v, s.q));
                }
                if self.q_num_heads.is_some_and(|h| h != hq) || self.kv_num_heads.is_some_and(|h| h != hk) {
                    return err(format!("the head attributes disagree with Q {:?} and K {:?}", s.q, s.k));
                }
                (rank3, batch, q_heads, kv_heads, q_seq, kv_seq) = (false, b, hq, hk, sq, skv);
                (head, kv_head, v_head) = (d, dk, dv);
            }
            _ => return err(format!("Q {:?}, K {:?} and V {:?} must all be 3-D or all 4-D", s.q, s.k, s.v)),
        }
        if kv_head != head {
            return err(format!("Q has head size {head} but K {kv_head}"));
        }
        if kv_heads == 0 || q_heads % kv_heads != 0 {
            return err(format!("{q_heads} query heads are not a multiple of {kv_heads} key/value heads"));
        }
        let mut past = 0;
        if let (Some(pk), Some(pv)) = (s.past_k, s.past_v) {
            let (&[b1, h1, p1, d1], &[b2, h2, p2, d2]) = (pk, pv) else {
                return err(format!("past_key {pk:?} and past_value {pv:?} must be 4-D"));
            };
            if (b1, h1, d1) != (batch, kv_heads, head) || (b2, h2, p2, d2) != (batch, kv_heads, p1, v_head) {
                return err(format!(
                    "past_key {pk:?} and past_value {pv:?} disagree with [{batch}, {kv_heads}, past, {head}/{v_head}]"
                ));
            }
            past = p1;
        }
        let g = Geometry { rank3, batch, q_heads, kv_heads, q_seq, kv_seq, past, head, v_head };
        if let Some(m) = s.mask {
            let target = [batch, q_heads, q_seq, g.total()];
            let fits = (2..=4).contains(&m.len())
                && m.iter()
                    .rev()
                    .zip(target.iter().rev())
                    .enumerate()
                    .all(|(i, (&have, &want))| if i == 0 { have <= want } else { have == want || have == 1 });
            if !fits {
                return err(format!("attn_mask {m:?} does not broadcast to {target:?}"));
            }
        }
        if let Some(n) = s.nonpad
            && n != [batch]
        {
            return err(format!("nonpad_kv_seqlen has shape {n:?}, expected [{batch}]"));
        }
        Ok(g)
    }

    fn output_shapes(&self, g: &Geometry) -> Vec<Vec<usize>> {
        let y = if g.rank3 {
            vec![g.batch, g.q_seq, g.q_heads * g.v_head]
        } else {
            vec![g.batch, g.q_heads, g.q_seq, g.v_head]
        };
        vec![
            y,
            vec![g.batch, g.kv_heads, g.total(), g.head],
            vec![g.batch, g.kv_heads, g.total(), g.v_head],
            vec![g.batch, g.q_heads, g.q_seq, g.total()],
        ]
    }
}

/// Float data as f32 (borrowed when it is f32 already).
pub(super) fn f32_data(t: &Tensor) -> Cow<'_, [f32]> {
    match &t.data {
        TensorData::F32(v) => Cow::Borrowed(v),
        other => Cow::Owned(other.to_f64_vec().into_iter().map(|x| x as f32).collect()),
    }
}

/// f32 results in `dtype` (a compute float type).
pub(super) fn f32_result(
    op: &'static str,
    dtype: DType,
    shape: Vec<usize>,
    values: Vec<f32>,
) -> Result<Tensor, KernelError> {
    let data = match dtype {
        DType::F32 => TensorData::F32(values),
        _ => {
            let wide: Vec<f64> = values.iter().map(|&x| f64::from(x)).collect();
            TensorData::floats_from_f64(dtype, &wide, true)
                .ok_or_else(|| KernelError::new(op, format!("cannot produce {}", dtype.name())))?
        }
    };
    tensor(op, shape, data)
}

impl OpDef for Attention {
    fn type_name(&self) -> &'static str {
        "Attention"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let (q, k, v, mask, past, nonpad) = self.roles(inputs)?;
        if !q.dtype.is_compute_float() {
            return Err(format!("Attention: Q {:?} is {}, expected a float type", q.name, q.dtype.name()));
        }
        let floats = [Some(k), Some(v), past.map(|p| p.0), past.map(|p| p.1)];
        for t in floats.into_iter().flatten() {
            if t.dtype != q.dtype {
                return Err(format!("Attention: {:?} is {} but Q is {}", t.name, t.dtype.name(), q.dtype.name()));
            }
        }
        if let Some(m) = mask
            && m.dtype != DType::Bool
            && m.dtype != q.dtype
        {
            return Err(format!(
                "Attention: attn_mask {:?} is {}, expected bool or {}",
                m.name,
                m.dtype.name(),
                q.dtype.name()
            ));
        }
        if let Some(n) = nonpad
            && n.dtype != DType::I64
        {
            return Err(format!("Attention: nonpad_kv_seqlen {:?} is {}, expected int64", n.name, n.dtype.name()));
        }
        let shapes = Shapes {
            q: &q.shape,
            k: &k.shape,
            v: &v.shape,
            mask: mask.map(|m| &m.shape[..]),
            past_k: past.map(|p| &p.0.shape[..]),
            past_v: past.map(|p| &p.1.shape[..]),
            nonpad: nonpad.map(|n| &n.shape[..]),
        };
        let g = self.geometry(&shapes)?;
        Ok(self.output_shapes(&g).into_iter().map(|s| (q.dtype, s)).collect())
    }

    fn run(&self, inputs: &[&Tensor], outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        const OP: &str = "Attention";
        let (q, k, v, mask, past, nonpad) = self.roles(inputs).map_err(|e| KernelError::new(OP, e))?;
        let shapes = Shapes {
            q: &q.shape,
            k: &k.shape,
            v: &v.shape,
            mask: mask.map(|m| &m.shape[..]),
            past_k: past.map(|p| &p.0.shape[..]),
            past_v: past.map(|p| &p.1.shape[..]),
            nonpad: nonpad.map(|n| &n.shape[..]),
        };
        let g = self.geometry(&shapes).map_err(|e| KernelError::new(OP, e))?;
        let wanted = if outputs.is_empty() { 4 } else { outputs.len().min(4) };
        let nonpad_lens = match nonpad {
            Some(n) => Some(n.to_i64_vec().ok_or_else(|| KernelError::new(OP, "nonpad_kv_seqlen must be int64"))?),
            None => None,
        };
        let results = attention(
            self,
            &g,
            AttentionData {
                q: &f32_data(q),
                k: &f32_data(k),
                v: &f32_data(v),
                mask: mask.map(|m| (*m, f32_mask(m))),
                past: past.map(|(pk, pv)| (f32_data(pk), f32_data(pv))),
                nonpad: nonpad_lens.as_deref(),
                qk_wanted: wanted == 4,
            },
        )?;
        let dtype = q.dtype();
        let shapes = self.output_shapes(&g);
        results
            .into_iter()
            .zip(shapes)
            .take(wanted)
            .map(|(values, shape)| f32_result(OP, dtype, shape, values))
            .collect()
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        let nonpad_at = 3 + usize::from(self.mask) + 2 * usize::from(self.past);
        if self.nonpad && position == nonpad_at { InputRole::Index } else { InputRole::Activation }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = vec![attr_int("is_causal", i64::from(self.is_causal))];
        if let Some(h) = self.q_num_heads {
            attrs.push(attr_int("q_num_heads", h as i64));
        }
        if let Some(h) = self.kv_num_heads {
            attrs.push(attr_int("kv_num_heads", h as i64));
        }
        if let Some(s) = self.scale {
            attrs.push(attr_float("scale", s));
        }
        if self.softcap != 0.0 {
            attrs.push(attr_float("softcap", self.softcap));
        }
        if let Some(p) = self.softmax_precision {
            attrs.push(attr_int("softmax_precision", p));
        }
        let mode = match self.qk_output {
            QkOutput::MatMul => 0,
            QkOutput::Softcap => 1,
            QkOutput::Masked => 2,
            QkOutput::Softmax => 3,
        };
        attrs.push(attr_int("qk_matmul_output_mode", mode));
        // The IR drops absent optional inputs; ONNX wants them by position.
        let mut inputs = std::mem::take(&mut cx.inputs).into_iter();
        let mut named: Vec<String> = inputs.by_ref().take(3).collect();
        named.push(if self.mask { inputs.next().unwrap_or_default() } else { String::new() });
        if self.past {
            named.extend(inputs.by_ref().take(2));
        } else if self.nonpad {
            named.extend([String::new(), String::new()]);
        }
        named.extend(inputs);
        while named.last().is_some_and(String::is_empty) {
            named.pop();
        }
        cx.inputs = named;
        cx.emit("Attention", attrs);
    }
}

/// The additive mask: bool true -> 0, false -> -inf; floats as they are.
fn f32_mask(m: &Tensor) -> Vec<f32> {
    match &m.data {
        TensorData::Bool(v) => v.iter().map(|&b| if b != 0 { 0.0 } else { f32::NEG_INFINITY }).collect(),
        _ => f32_data(m).into_owned(),
    }
}

struct AttentionData<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: Option<(&'a Tensor, Vec<f32>)>,
    past: Option<Cache<'a>>,
    nonpad: Option<&'a [i64]>,
    qk_wanted: bool,
}

/// Appends the 4-D cache `past` (`[B, H, P, d]`) and the new keys or values `x` (3-D or 4-D)
/// along the sequence axis.
fn present(g: &Geometry, past: Option<&[f32]>, x: &[f32], d: usize) -> Vec<f32> {
    let (h, s, p, t) = (g.kv_heads, g.kv_seq, g.past, g.total());
    let mut out = Vec::with_capacity(g.batch * h * t * d);
    for b in 0..g.batch {
        for head in 0..h {
            if let Some(past) = past {
                let base = (b * h + head) * p * d;
                out.extend_from_slice(&past[base..base + p * d]);
            }
            for j in 0..s {
                let base = if g.rank3 { ((b * s + j) * h + head) * d } else { ((b * h + head) * s + j) * d };
                out.extend_from_slice(&x[base..base + d]);
            }
        }
    }
    out
}

/// `[Y, present_key, present_value, qk_matmul_output]` as f32.
fn attention(op: &Attention, g: &Geometry, data: AttentionData) -> Result<[Vec<f32>; 4], KernelError> {
    const OP: &str = "Attention";
    let (hq, sq, t, d, dv) = (g.q_heads, g.q_seq, g.total(), g.head, g.v_head);
    let pk = present(g, data.past.as_ref().map(|p| &p.0[..]), data.k, d);
    let pv = present(g, data.past.as_ref().map(|p| &p.1[..]), data.v, dv);
    let scale = op.scale.unwrap_or(1.0 / (d as f32).sqrt());
    let group = hq / g.kv_heads;
    let y_len = element_count(OP, &[g.batch, hq, sq, dv])?;
    let mut y = vec![0.0f32; y_len];
    let mut qk_out = if data.qk_wanted { vec![0.0f32; element_count(OP, &[g.batch, hq, sq, t])?] } else { vec![] };
    // Broadcast strides of the mask over [B, H, Sq, T'].
    let mask = data.mask.as_ref().map(|(m, values)| {
        let shape = &m.shape;
        let full: Vec<usize> = std::iter::repeat_n(1, 4 - shape.len()).chain(shape.iter().copied()).collect();
        let strides = crate::ir::strides_of(&full);
        let step: Vec<usize> = full.iter().zip(&strides).map(|(&dim, &s)| if dim == 1 { 0 } else { s }).collect();
        (values, step, full[3])
    });
    let mut scores = vec![0.0f32; sq * t];
    let mut head_y = vec![0.0f32; sq * dv];
    for b in 0..g.batch {
        let offset: i64 = if g.past > 0 || data.nonpad.is_none() {
            g.past as i64
        } else {
            data.nonpad.map_or(0, |n| n[b] - sq as i64)
        };
        let valid = data.nonpad.map(|n| n[b]);
        for h in 0..hq {
            let kvh = h / group;
            let (q_base, q_strides) =
                if g.rank3 { (b * sq * hq * d + h * d, (hq * d, 1)) } else { ((b * hq + h) * sq * d, (d, 1)) };
            let k_base = (b * g.kv_heads + kvh) * t * d;
            sgemm(
                OP,
                (sq, d, t),
                scale,
                &data.q[q_base..],
                q_strides,
                &pk[k_base..k_base + t * d],
                (1, d),
                0.0,
                &mut scores,
            )?;
            if op.softcap > 0.0 {
                let c = op.softcap;
                scores.iter_mut().for_each(|x| *x = (*x / c).tanh() * c);
            }
            let qk_base = ((b * hq + h) * sq) * t;
            if data.qk_wanted && matches!(op.qk_output, QkOutput::MatMul | QkOutput::Softcap) {
                qk_out[qk_base..qk_base + sq * t].copy_from_slice(&scores);
            }
            for i in 0..sq {
                let row = &mut scores[i * t..(i + 1) * t];
                if let Some((values, step, width)) = &mask {
                    let base = b * step[0] + h * step[1] + i * step[2];
                    for (j, x) in row.iter_mut().enumerate() {
                        *x += if j < *width { values[base + j * step[3]] } else { f32::NEG_INFINITY };
                    }
                }
                if op.is_causal {
                    for (j, x) in row.iter_mut().enumerate() {
                        if j as i64 > i as i64 + offset {
                            *x += f32::NEG_INFINITY;
                        }
                    }
                }
                if let Some(valid) = valid {
                    for (j, x) in row.iter_mut().enumerate() {
                        if j as i64 >= valid {
                            *x += f32::NEG_INFINITY;
                        }
                    }
                }
            }
            if data.qk_wanted && op.qk_output == QkOutput::Masked {
                qk_out[qk_base..qk_base + sq * t].copy_from_slice(&scores);
            }
            for row in scores.chunks_exact_mut(t.max(1)) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for x in row.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                row.iter_mut().for_each(|x| *x /= sum);
            }
            if data.qk_wanted && op.qk_output == QkOutput::Softmax {
                qk_out[qk_base..qk_base + sq * t].copy_from_slice(&scores);
            }
            let v_base = (b * g.kv_heads + kvh) * t * dv;
            sgemm(OP, (sq, t, dv), 1.0, &scores, (t, 1), &pv[v_base..v_base + t * dv], (dv, 1), 0.0, &mut head_y)?;
            for i in 0..sq {
                let dst = if g.rank3 { ((b * sq + i) * hq + h) * dv } else { ((b * hq + h) * sq + i) * dv };
                y[dst..dst + dv].copy_from_slice(&head_y[i * dv..(i + 1) * dv]);
            }
        }
    }
    Ok([y, pk, pv, qk_out])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Attention {
        Attention {
            is_causal: false,
            q_num_heads: None,
            kv_num_heads: None,
            scale: None,
            softcap: 0.0,
            qk_output: QkOutput::MatMul,
            softmax_precision: None,
            mask: false,
            past: false,
            nonpad: false,
        }
    }

    #[test]
    fn one_key_gives_its_value_and_causal_masks_the_future() {
        // One head, two positions, head size 1: with causal masking position 0 sees only key 0.
        let q = Tensor::from_f32(vec![1, 1, 2, 1], vec![1.0, 1.0]);
        let k = Tensor::from_f32(vec![1, 1, 2, 1], vec![1.0, 2.0]);
        let v = Tensor::from_f32(vec![1, 1, 2, 1], vec![10.0, 20.0]);
        let causal = Attention { is_causal: true, ..op() };
        let y = causal.run(&[&q, &k, &v], &[]).unwrap();
        assert_eq!(y.len(), 4);
        let y0 = y[0].as_f32().unwrap();
        assert_eq!(y0[0], 10.0);
        // Position 1: softmax([1, 2]) weights.
        let (a, b) = (1.0f32.exp(), 2.0f32.exp());
        assert!((y0[1] - (10.0 * a + 20.0 * b) / (a + b)).abs() < 1e-4);
    }

    #[test]
    fn grouped_query_heads_share_key_value_heads() {
        let info = |shape: &[usize]| TensorInfo { name: "x".into(), dtype: DType::F32, shape: shape.to_vec() };
        let gqa = Attention { q_num_heads: Some(4), kv_num_heads: Some(2), ..op() };
        let out = gqa.infer(&[&info(&[2, 3, 32]), &info(&[2, 5, 16]), &info(&[2, 5, 12])]).unwrap();
        assert_eq!(out[0].1, vec![2, 3, 24]);
        assert_eq!(out[1].1, vec![2, 2, 5, 8]);
        assert!(gqa.infer(&[&info(&[2, 3, 32]), &info(&[2, 5, 24]), &info(&[2, 5, 12])]).is_err());
    }
}
