//! What a backend's rules tell `quantize`: how each op's output gets its encoding, which ops'
//! weights may be per channel, and the float bitwidth of ops kept in float. The engine builds a
//! [`QuantPolicy`] from `rules/<backend>.toml` (`compile::rules::BackendRules::quant_policy`);
//! `quant` itself knows nothing of rule files.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ir::Op;

/// How an op's output gets its encoding on a quantized backend (`[ops.X] output_encoding`).
pub use crate::ops::OutputEncoding as OpQuantization;

/// The quantization-relevant part of one backend's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantPolicy {
    /// Per op type; ops absent here are [`OpQuantization::Calibrated`].
    pub ops: BTreeMap<String, OpQuantization>,
    /// Op types through which `float_fallback` carries an encoding from input to output
    /// (`[ops.X] propagate = true`, and every pass-through op).
    pub propagating_ops: BTreeSet<String>,
    /// Op types squashed into their producer (`[ops.X] squash = true`): Relu, and Clip with a
    /// non-negative lower bound.
    pub squashing_ops: BTreeSet<String>,
    /// Op types whose weights may be per channel (Conv) or per row (Gemm, MatMul).
    pub per_channel_ops: BTreeSet<String>,
    /// The bitwidth of tensors kept in float by an op rule or by `float_fallback` (the
    /// smallest float bitwidth the backend runs; 32 when it runs none).
    pub float_bitwidth: u32,
}

impl Default for QuantPolicy {
    /// Every op's registry default (`crate::ops`), for callers without rules (tests, tools);
    /// weights of Conv, Gemm and MatMul may be per channel.
    fn default() -> Self {
        let ops: Vec<&'static str> = crate::ops::model_op_types().collect();
        let default = |op: &str| crate::ops::quant_default(op);
        QuantPolicy {
            ops: ops.iter().map(|&op| (op.to_string(), default(op).output.clone())).collect(),
            propagating_ops: ops.iter().filter(|&&op| default(op).propagate).map(|op| op.to_string()).collect(),
            squashing_ops: ops.iter().filter(|&&op| default(op).squash).map(|op| op.to_string()).collect(),
            per_channel_ops: ops.iter().filter(|&&op| default(op).per_channel).map(|op| op.to_string()).collect(),
            float_bitwidth: 32,
        }
    }
}

impl QuantPolicy {
    pub fn op(&self, op: &Op) -> &OpQuantization {
        const DEFAULT: OpQuantization = OpQuantization::Calibrated;
        const PASS_THROUGH: OpQuantization = OpQuantization::PassThrough;
        let rule = self.ops.get(op.type_name()).unwrap_or(&DEFAULT);
        // A calibrated op type whose attributes make this node a pure data move (nearest
        // Resize) keeps its input's encoding; a fixed range or float rule still wins.
        if *rule == OpQuantization::Calibrated && op.moves_data_only() { &PASS_THROUGH } else { rule }
    }

    pub fn propagates(&self, op: &Op) -> bool {
        self.propagating_ops.contains(op.type_name()) || *self.op(op) == OpQuantization::PassThrough
    }

    /// Whether `op` lends its output encoding to its input (a Clip only when it clips at a
    /// non-negative bound: squashing a Clip that lets negatives through would be wrong).
    pub fn squashes(&self, op: &Op) -> bool {
        let clips_negatives = match op {
            Op::Unary(crate::ops::Unary::Relu) => true,
            Op::Clip(crate::ops::Clip { min, .. }) => *min >= 0.0,
            _ => false,
        };
        clips_negatives && self.squashing_ops.contains(op.type_name())
    }

    pub fn allows_per_channel(&self, op: &Op) -> bool {
        self.per_channel_ops.contains(op.type_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{CoordMode, NearestMode, Resize, ResizeMode};

    fn resize(mode: ResizeMode, coord: CoordMode) -> Op {
        Op::Resize(Resize {
            mode,
            coord,
            exclude_outside: false,
            antialias: false,
            extrapolation_value: 0.0,
            scales: vec![1.0, 1.0, 2.0, 2.0],
            sizes: vec![1, 1, 4, 4],
            roi: vec![],
            from_scales: true,
            upsample: false,
        })
    }

    #[test]
    fn a_nearest_resize_passes_its_encoding_through_and_a_linear_one_is_calibrated() {
        let policy = QuantPolicy::default();
        let nearest = resize(ResizeMode::Nearest(NearestMode::Floor), CoordMode::Asymmetric);
        assert_eq!(*policy.op(&nearest), OpQuantization::PassThrough);
        assert!(policy.propagates(&nearest));
        assert_eq!(*policy.op(&resize(ResizeMode::Linear, CoordMode::HalfPixel)), OpQuantization::Calibrated);
        // Sampling outside the crop writes extrapolation_value, a value of its own.
        let cropping = resize(ResizeMode::Nearest(NearestMode::Floor), CoordMode::TfCropAndResize);
        assert_eq!(*policy.op(&cropping), OpQuantization::Calibrated);
        // A backend rule other than "calibrated" still wins.
        let mut fixed = QuantPolicy::default();
        fixed.ops.insert("Resize".into(), OpQuantization::Float);
        assert_eq!(*fixed.op(&nearest), OpQuantization::Float);
    }
}
