//! The sliding window shared by Conv and the pools: its attributes, `auto_pad` resolution at
//! import, output sizes and export.

use serde::{Deserialize, Serialize};

use super::export::{attr_ints, ints};
use super::import::{Attrs, positive_list, shape_error};
use crate::ir::shape::window_output_len;
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;
use crate::onnx::proto::AttributeProto;

/// Spatial attributes shared by Conv and the pools. `pads` holds the ONNX layout:
/// all begin pads, then all end pads (`[top, left, bottom, right]` for 2-D).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilations: Vec<usize>,
}

/// Explicit pads for `auto_pad`, or the `pads` attribute. SAME_* pads so that
/// `out = ceil(in / stride)`: `total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - in)`,
/// the odd cell going to the end (SAME_UPPER) or the beginning (SAME_LOWER).
pub(crate) fn resolve_window(a: &Attrs, kernel: Vec<usize>, spatial_in: &[usize]) -> Result<Window, ImportError> {
    let n = kernel.len();
    let strides = positive_list(a.ints("strides")?, n, "strides")?;
    let dilations = positive_list(a.ints("dilations")?, n, "dilations")?;
    if spatial_in.len() != n {
        return Err(shape_error(format!("the input has {} spatial axes but the kernel has {n}", spatial_in.len())));
    }
    let auto_pad = a.string("auto_pad")?.unwrap_or_default();
    let pads = match auto_pad.as_str() {
        "" | "NOTSET" => match a.ints("pads")? {
            None => vec![0; 2 * n],
            Some(p) if p.len() == 2 * n && p.iter().all(|&v| v >= 0) => p.iter().map(|&v| v as usize).collect(),
            Some(p) => {
                return Err(bad_attribute(format!("pads must be {} non-negative integers, got {p:?}", 2 * n)));
            }
        },
        "VALID" => vec![0; 2 * n],
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            let mut pads = vec![0; 2 * n];
            for i in 0..n {
                let out = spatial_in[i].div_ceil(strides[i]);
                let needed = out
                    .saturating_sub(1)
                    .saturating_mul(strides[i])
                    .saturating_add(kernel[i].saturating_sub(1).saturating_mul(dilations[i]))
                    .saturating_add(1);
                let total = needed.saturating_sub(spatial_in[i]);
                let (small, large) = (total / 2, total - total / 2);
                (pads[i], pads[n + i]) = if mode == "SAME_UPPER" { (small, large) } else { (large, small) };
            }
            pads
        }
        other => {
            return Err(bad_attribute(format!(
                "auto_pad {other:?} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
            )));
        }
    };
    Ok(Window { kernel, strides, pads, dilations })
}

impl Window {
    /// Checks that the window's vectors all cover `spatial` axes.
    pub(crate) fn check(&self, name: &str, spatial: usize) -> Result<(), String> {
        let lens = [
            ("kernel", self.kernel.len(), spatial),
            ("strides", self.strides.len(), spatial),
            ("dilations", self.dilations.len(), spatial),
            ("pads", self.pads.len(), 2 * spatial),
        ];
        for (what, got, want) in lens {
            if got != want {
                return Err(format!("{name}: {what} has {got} entries, expected {want} for {spatial} spatial axes"));
            }
        }
        Ok(())
    }

    /// The output sizes of the spatial axes.
    pub(crate) fn output(&self, name: &str, spatial_in: &[usize], ceil_mode: bool) -> Result<Vec<usize>, String> {
        let n = spatial_in.len();
        (0..n)
            .map(|i| {
                window_output_len(
                    spatial_in[i],
                    self.kernel[i],
                    self.strides[i],
                    self.pads[i],
                    self.pads[n + i],
                    self.dilations[i],
                    ceil_mode,
                )
                .map_err(|e| format!("{name}: spatial axis {i}: {e}"))
            })
            .collect()
    }

    /// `kernel_shape`, `strides`, `pads` and `dilations` attributes.
    pub(crate) fn attrs(&self) -> Vec<AttributeProto> {
        vec![
            attr_ints("kernel_shape", &ints(&self.kernel)),
            attr_ints("strides", &ints(&self.strides)),
            attr_ints("pads", &ints(&self.pads)),
            attr_ints("dilations", &ints(&self.dilations)),
        ]
    }
}
