//! ConvTranspose over 1-D, 2-D and 3-D inputs, with groups, strides, dilations, pads or
//! `auto_pad`, `output_padding` and `output_shape`, all resolved at import into explicit begin
//! pads and output sizes.

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_int, attr_ints, ints};
use super::import::{Lowered, NodeCx, positive_list, shape_error};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::runtime::kernels::{KernelError, conv_transpose as kernel};

/// Calibrated, with per-output-channel weight encodings allowed.
pub(super) const ONNX: &[OnnxOp] =
    &[OnnxOp::ir("ConvTranspose", import, QuantDefault { per_channel: true, ..QuantDefault::CALIBRATED })];

/// ConvTranspose: inputs `[X, W]` or `[X, W, B]`, `W` of shape `[C, M/group, k...]`.
/// Output position `o` of a spatial axis receives input `i` through tap `t` when
/// `o = i * stride + t * dilation - pads_begin`; `output` holds the spatial output sizes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvTranspose {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// All begin pads, then all end pads.
    pub pads: Vec<usize>,
    pub output: Vec<usize>,
    pub group: usize,
}

impl From<ConvTranspose> for Op {
    fn from(op: ConvTranspose) -> Op {
        Op::ConvTranspose(op)
    }
}

fn import(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 3)?;
    let a = cx.attrs(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "output_padding",
        "output_shape",
        "pads",
        "strides",
    ])?;
    let (x, w) = (cx.input(0, "X")?, cx.input(1, "W")?);
    if w.shape.len() < 3 || x.shape.len() != w.shape.len() {
        return Err(shape_error(format!(
            "weight {:?} has shape {:?} and input {:?} shape {:?}, expected [C, M/group, kernel...] and [N, C, spatial...]",
            w.name, w.shape, x.name, x.shape
        )));
    }
    let n = w.shape.len() - 2;
    let kernel = match a.ints("kernel_shape")? {
        None => w.shape[2..].to_vec(),
        Some(k) => positive_list(Some(k), n, "kernel_shape")?,
    };
    let strides = positive_list(a.ints("strides")?, n, "strides")?;
    let dilations = positive_list(a.ints("dilations")?, n, "dilations")?;
    let group = a.int_or("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| bad_attribute(format!("group must be positive, got {group}")))?;
    let output_padding = match a.ints("output_padding")? {
        None => vec![0; n],
        Some(p) if p.len() == n && p.iter().all(|&v| v >= 0) => p.iter().map(|&v| v as usize).collect(),
        Some(p) => return Err(bad_attribute(format!("output_padding must be {n} non-negative integers, got {p:?}"))),
    };
    let spatial_in = &x.shape[2..];
    // The output with no padding at all.
    let full: Vec<usize> = (0..n)
        .map(|i| spatial_in[i].saturating_sub(1) * strides[i] + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1)
        .collect();
    let auto_pad = a.string("auto_pad")?.unwrap_or_default();
    if !matches!(auto_pad.as_str(), "" | "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER") {
        return Err(bad_attribute(format!(
            "auto_pad {auto_pad:?} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
        )));
    }
    // onnxruntime: with a target output size, pads split `max(0, full - output)`, the odd
    // cell at the end (SAME_UPPER) or the beginning (NOTSET, SAME_LOWER).
    let target: Option<Vec<usize>> = match a.ints("output_shape")? {
        Some(shape) => {
            let spatial = &shape[shape.len().saturating_sub(n)..];
            if spatial.len() != n || spatial.iter().any(|&v| v < 0) {
                return Err(bad_attribute(format!("output_shape {shape:?} does not give {n} spatial sizes")));
            }
            Some(spatial.iter().map(|&v| v as usize).collect())
        }
        None if auto_pad.starts_with("SAME") => Some((0..n).map(|i| spatial_in[i] * strides[i]).collect()),
        None => None,
    };
    let mut pads = vec![0; 2 * n];
    let output = match target {
        Some(out) => {
            for i in 0..n {
                let total = full[i].saturating_sub(out[i]);
                let begin = if auto_pad == "SAME_UPPER" { total / 2 } else { total - total / 2 };
                (pads[i], pads[n + i]) = (begin, total - begin);
            }
            out
        }
        None => {
            if auto_pad != "VALID"
                && let Some(p) = a.ints("pads")?
            {
                if p.len() != 2 * n || p.iter().any(|&v| v < 0) {
                    return Err(bad_attribute(format!("pads must be {} non-negative integers, got {p:?}", 2 * n)));
                }
                pads = p.iter().map(|&v| v as usize).collect();
            }
            (0..n)
                .map(|i| {
                    full[i].checked_sub(pads[i] + pads[n + i]).ok_or_else(|| {
                        bad_attribute(format!("pads {pads:?} are larger than the output of spatial axis {i}"))
                    })
                })
                .collect::<Result<_, _>>()?
        }
    };
    Lowered::ir(ConvTranspose { kernel, strides, dilations, pads, output, group }, cx.present(&[0, 1, 2]))
}

impl OpDef for ConvTranspose {
    fn type_name(&self) -> &'static str {
        "ConvTranspose"
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let (x, w, bias) = match inputs {
            [x, w] => (*x, *w, None),
            [x, w, b] => (*x, *w, Some(*b)),
            _ => return Err(format!("ConvTranspose: expects 2 or 3 inputs, got {}", inputs.len())),
        };
        if !matches!(x.dtype, DType::F32 | DType::F16) {
            return Err(format!("ConvTranspose: {:?} is {}, expected float32 or float16", x.name, x.dtype.name()));
        }
        for t in [Some(w), bias].into_iter().flatten() {
            if t.dtype != x.dtype {
                return Err(format!(
                    "ConvTranspose: {:?} is {} but {:?} is {}",
                    t.name,
                    t.dtype.name(),
                    x.name,
                    x.dtype.name()
                ));
            }
        }
        let n = self.kernel.len();
        if x.shape.len() != n + 2 || w.shape.len() != n + 2 || !(1..=3).contains(&n) {
            return Err(format!(
                "ConvTranspose: input {:?} {:?} and weight {:?} {:?} must have rank {} (1 to 3 spatial axes)",
                x.name,
                x.shape,
                w.name,
                w.shape,
                n + 2
            ));
        }
        if w.shape[2..] != self.kernel[..] {
            return Err(format!("ConvTranspose: kernel_shape {:?} disagrees with weight {:?}", self.kernel, w.shape));
        }
        let g = self.group;
        if w.shape[0] != x.shape[1] || g == 0 || !x.shape[1].is_multiple_of(g) {
            return Err(format!(
                "ConvTranspose: input has {} channels but weight {:?} expects {} (group {g})",
                x.shape[1], w.shape, w.shape[0]
            ));
        }
        let m = w.shape[1] * g;
        if let Some(b) = bias
            && b.shape != [m]
        {
            return Err(format!("ConvTranspose: bias {:?} has shape {:?}, expected [{m}]", b.name, b.shape));
        }
        let mut shape = vec![x.shape[0], m];
        shape.extend(&self.output);
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![kernel::conv_transpose(self, inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        match position {
            // W is [C, M/group, k...]: axis 1 holds every output channel only without groups.
            1 => InputRole::Weight { channel_axis: (self.group == 1).then_some(1) },
            2 => InputRole::Bias,
            _ => InputRole::Activation,
        }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let n = self.kernel.len();
        let spatial_in = cx.input_shapes.first().map(|s| s[s.len().saturating_sub(n)..].to_vec()).unwrap_or_default();
        // output_padding makes ONNX's output size `full - pads` equal the resolved one.
        let output_padding: Vec<i64> = (0..n)
            .map(|i| {
                let natural = spatial_in.get(i).map_or(0, |&d| d.saturating_sub(1)) * self.strides[i]
                    + (self.kernel[i] - 1) * self.dilations[i]
                    + 1;
                self.output[i] as i64 - (natural as i64 - (self.pads[i] + self.pads[n + i]) as i64)
            })
            .collect();
        let attrs = vec![
            attr_ints("kernel_shape", &ints(&self.kernel)),
            attr_ints("strides", &ints(&self.strides)),
            attr_ints("pads", &ints(&self.pads)),
            attr_ints("dilations", &ints(&self.dilations)),
            attr_ints("output_padding", &output_padding),
            attr_int("group", self.group as i64),
        ];
        cx.emit("ConvTranspose", attrs);
    }
}
