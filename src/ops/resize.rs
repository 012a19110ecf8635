//! Resize (opsets 10 to 19) and Upsample (opsets 7 to 9): nearest, linear and cubic
//! interpolation over any axes, with every coordinate transformation, antialiasing and
//! `tf_crop_and_resize`'s region of interest.
//!
//! The output shape is static: `scales`, `sizes` and `roi` must be known at import, where
//! they are resolved (axes, `keep_aspect_ratio_policy`) into one scale factor and one output
//! size per input axis. The kernel (`runtime::kernels::resize`) follows ONNX's reference
//! implementation axis by axis (interpolation is separable).

use serde::{Deserialize, Serialize};

use super::export::{ExportCx, attr_float, attr_int, attr_string};
use super::import::{Lowered, NodeCx, axes};
use super::{InputRole, OnnxOp, Op, OpDef, QuantDefault};
use crate::ir::shape::exactly;
use crate::ir::{DType, Tensor, TensorInfo};
use crate::onnx::ImportError;
use crate::onnx::error::{bad_attribute, malformed};
use crate::runtime::kernels::{KernelError, resize as kernel};

/// Resize and Upsample are calibrated: linear and cubic modes compute new values (the
/// registry row cannot depend on the mode, so nearest resizes are calibrated too).
pub(super) const ONNX: &[OnnxOp] = &[
    OnnxOp::ir("Resize", import_resize, QuantDefault::CALIBRATED),
    OnnxOp::ir("Upsample", import_upsample, QuantDefault::CALIBRATED),
];

/// How a source coordinate rounds to a pixel in `nearest` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Upsample and Resize-10 (onnxruntime's legacy rule): floor when upsampling an axis,
    /// ceil when downsampling it.
    Legacy,
}

/// The interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ResizeMode {
    Nearest(NearestMode),
    Linear,
    /// Cubic convolution with coefficient `a` (`cubic_coeff_a`).
    Cubic {
        a: f32,
    },
}

/// `coordinate_transformation_mode`: how an output coordinate maps to an input one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CoordMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    /// Opsets 11 and 12 only.
    TfHalfPixelForNn,
    TfCropAndResize,
}

/// Resize (or Upsample) with every parameter resolved per input axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub exclude_outside: bool,
    pub antialias: bool,
    pub extrapolation_value: f32,
    /// The scale factor of every input axis (`output / input` when sizes were given).
    pub scales: Vec<f64>,
    /// The output shape.
    pub sizes: Vec<usize>,
    /// `tf_crop_and_resize` only: the region of interest, all starts then all ends (one per
    /// input axis, normalized coordinates); empty otherwise.
    pub roi: Vec<f64>,
    /// The op came from scales (exported as scales; otherwise as sizes).
    pub from_scales: bool,
    /// The ONNX op was Upsample (opsets 7 to 9).
    pub upsample: bool,
}

impl From<Resize> for Op {
    fn from(op: Resize) -> Op {
        Op::Resize(op)
    }
}

impl Resize {
    /// Whether every output value is one of the input's (nearest-neighbour sampling, no
    /// extrapolation value): the output then keeps its input's encoding, as the other
    /// data-movement ops do, whatever the registry row (which cannot see attributes) says.
    pub fn moves_data_only(&self) -> bool {
        matches!(self.mode, ResizeMode::Nearest(_)) && self.coord != CoordMode::TfCropAndResize
    }

    /// Whether axis `i` maps every output coordinate to the same input one (scale 1 and no
    /// region of interest): its size follows the input's.
    pub fn is_identity_axis(&self, i: usize) -> bool {
        let roi_trivial = self.coord != CoordMode::TfCropAndResize
            || (self.roi.get(i) == Some(&0.0) && self.roi.get(self.scales.len() + i) == Some(&1.0));
        self.scales.get(i) == Some(&1.0) && roi_trivial
    }
}

fn nearest_mode(name: &str) -> Result<NearestMode, ImportError> {
    Ok(match name {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        other => {
            return Err(bad_attribute(format!(
                "nearest_mode {other:?} is not one of round_prefer_floor, round_prefer_ceil, floor, ceil"
            )));
        }
    })
}

fn coord_mode(name: &str, opset: i64) -> Result<CoordMode, ImportError> {
    Ok(match name {
        "half_pixel" => CoordMode::HalfPixel,
        "half_pixel_symmetric" if opset >= 19 => CoordMode::HalfPixelSymmetric,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "asymmetric" => CoordMode::Asymmetric,
        "tf_half_pixel_for_nn" if opset < 13 => CoordMode::TfHalfPixelForNn,
        "tf_crop_and_resize" => CoordMode::TfCropAndResize,
        other => {
            return Err(bad_attribute(format!(
                "coordinate_transformation_mode {other:?} is not supported at opset {opset}"
            )));
        }
    })
}

/// Float values of a constant input (scales, roi), or `None` when omitted or empty.
fn constant_floats(cx: &NodeCx, i: usize, role: &str) -> Result<Option<Vec<f64>>, ImportError> {
    let Some(t) = cx.constant(i, role)? else { return Ok(None) };
    if t.shape.len() > 1 || !t.dtype().is_float() {
        return Err(bad_attribute(format!(
            "{} input #{i} ({role}) must be a 1-D float tensor, got {} of shape {:?}",
            cx.op_type(),
            t.dtype().name(),
            t.shape
        )));
    }
    Ok(Some(t.data.to_f64_vec()).filter(|v| !v.is_empty()))
}

/// Output sizes `floor(input * scale)` for scales given per axis.
fn sizes_of_scales(input: &[usize], scales: &[f64]) -> Result<Vec<usize>, ImportError> {
    input
        .iter()
        .zip(scales)
        .map(|(&d, &s)| {
            if !(s > 0.0 && s.is_finite()) {
                return Err(bad_attribute(format!("scales must be positive and finite, got {scales:?}")));
            }
            let out = (d as f64 * s).floor();
            if out > (u32::MAX as f64) {
                return Err(bad_attribute(format!("scale {s} makes axis of size {d} too large")));
            }
            Ok(out as usize)
        })
        .collect()
}

fn import_resize(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let opset = cx.opset;
    let x = cx.input(0, "X")?;
    let rank = x.shape.len();
    if opset < 11 {
        cx.arity(2, 2)?;
        let a = cx.attrs(&["mode"])?;
        let scales = constant_floats(cx, 1, "scales")?.ok_or_else(|| malformed("Resize needs scales"))?;
        return legacy(x.shape, a.string("mode")?.as_deref().unwrap_or("nearest"), scales, false);
    }
    cx.arity(1, 4)?;
    let mut known = vec![
        "coordinate_transformation_mode",
        "cubic_coeff_a",
        "exclude_outside",
        "extrapolation_value",
        "mode",
        "nearest_mode",
    ];
    if opset >= 18 {
        known.extend(["antialias", "axes", "keep_aspect_ratio_policy"]);
    }
    let a = cx.attrs(&known)?;
    let coord = coord_mode(a.string("coordinate_transformation_mode")?.as_deref().unwrap_or("half_pixel"), opset)?;
    let mode = match a.string("mode")?.as_deref().unwrap_or("nearest") {
        "nearest" => {
            ResizeMode::Nearest(nearest_mode(a.string("nearest_mode")?.as_deref().unwrap_or("round_prefer_floor"))?)
        }
        "linear" => ResizeMode::Linear,
        "cubic" => ResizeMode::Cubic { a: a.float_or("cubic_coeff_a", -0.75)? },
        other => return Err(bad_attribute(format!("mode {other:?} is not one of nearest, linear, cubic"))),
    };
    let axes_list = match a.ints("axes")? {
        None => (0..rank).collect(),
        Some(list) => {
            let list = axes(&list, rank, "axes")?;
            if (1..list.len()).any(|i| list[..i].contains(&list[i])) {
                return Err(bad_attribute(format!("axes {list:?} repeat an axis")));
            }
            list
        }
    };
    let n = axes_list.len();
    let scales = constant_floats(cx, 2, "scales")?;
    let sizes = cx.constant_ints(3, "sizes")?.filter(|s| !s.is_empty());
    let policy = a.string("keep_aspect_ratio_policy")?.unwrap_or_else(|| "stretch".into());
    let (scales, sizes, from_scales) = match (scales, sizes) {
        (Some(_), Some(_)) => return Err(malformed("Resize takes scales or sizes, not both")),
        (None, None) => return Err(malformed("Resize needs scales or sizes")),
        (Some(given), None) => {
            if given.len() != n {
                return Err(bad_attribute(format!("scales has {} values for {n} axes", given.len())));
            }
            let mut scales = vec![1.0; rank];
            for (&axis, &s) in axes_list.iter().zip(&given) {
                scales[axis] = s;
            }
            let sizes = sizes_of_scales(x.shape, &scales)?;
            (scales, sizes, true)
        }
        (None, Some(given)) => {
            if given.len() != n || given.iter().any(|&s| s < 0) {
                return Err(bad_attribute(format!("sizes must be {n} non-negative integers, got {given:?}")));
            }
            let mut sizes = x.shape.to_vec();
            for (&axis, &s) in axes_list.iter().zip(&given) {
                sizes[axis] = s as usize;
            }
            if axes_list.iter().any(|&axis| x.shape[axis] == 0) {
                return Err(bad_attribute(format!("cannot resize an empty axis of shape {:?}", x.shape)));
            }
            let ratio = |axis: usize| sizes[axis] as f64 / x.shape[axis] as f64;
            let mut scales = vec![1.0; rank];
            match policy.as_str() {
                "stretch" => {
                    for &axis in &axes_list {
                        scales[axis] = ratio(axis);
                    }
                }
                "not_larger" | "not_smaller" => {
                    let ratios = axes_list.iter().map(|&axis| ratio(axis));
                    let scale = if policy == "not_larger" {
                        ratios.fold(f64::INFINITY, f64::min)
                    } else {
                        ratios.fold(f64::NEG_INFINITY, f64::max)
                    };
                    for &axis in &axes_list {
                        scales[axis] = scale;
                        sizes[axis] = (scale * x.shape[axis] as f64 + 0.5).floor() as usize;
                    }
                }
                other => {
                    return Err(bad_attribute(format!(
                        "keep_aspect_ratio_policy {other:?} is not one of stretch, not_larger, not_smaller"
                    )));
                }
            }
            (scales, sizes, false)
        }
    };
    let roi = if coord == CoordMode::TfCropAndResize {
        let given = constant_floats(cx, 1, "roi")?.ok_or_else(|| malformed("tf_crop_and_resize needs roi"))?;
        if given.len() != 2 * n {
            return Err(bad_attribute(format!("roi has {} values, expected {} for {n} axes", given.len(), 2 * n)));
        }
        let mut roi = vec![0.0; rank];
        roi.extend(vec![1.0; rank]);
        for (k, &axis) in axes_list.iter().enumerate() {
            roi[axis] = given[k];
            roi[rank + axis] = given[n + k];
        }
        roi
    } else {
        Vec::new()
    };
    let op = Resize {
        mode,
        coord,
        exclude_outside: a.flag("exclude_outside")?,
        antialias: a.flag("antialias")?,
        extrapolation_value: a.float_or("extrapolation_value", 0.0)?,
        scales,
        sizes,
        roi,
        from_scales,
        upsample: false,
    };
    Lowered::ir(op, vec![0])
}

/// Upsample and Resize-10: asymmetric coordinates, nearest (legacy rounding) or linear.
fn legacy(shape: &[usize], mode: &str, scales: Vec<f64>, upsample: bool) -> Result<Lowered, ImportError> {
    let mode = match mode {
        "nearest" => ResizeMode::Nearest(NearestMode::Legacy),
        "linear" | "bilinear" => ResizeMode::Linear,
        other => return Err(bad_attribute(format!("mode {other:?} is not one of nearest, linear"))),
    };
    if scales.len() != shape.len() {
        return Err(bad_attribute(format!("scales has {} values for an input of rank {}", scales.len(), shape.len())));
    }
    let sizes = sizes_of_scales(shape, &scales)?;
    let op = Resize {
        mode,
        coord: CoordMode::Asymmetric,
        exclude_outside: false,
        antialias: false,
        extrapolation_value: 0.0,
        scales,
        sizes,
        roi: Vec::new(),
        from_scales: true,
        upsample,
    };
    Lowered::ir(op, vec![0])
}

fn import_upsample(cx: &NodeCx) -> Result<Lowered, ImportError> {
    let x = cx.input(0, "X")?;
    let (a, scales) = if cx.opset < 9 {
        cx.arity(1, 1)?;
        let a = cx.attrs(&["mode", "scales"])?;
        let scales = a.floats("scales")?.ok_or_else(|| bad_attribute("attribute \"scales\" is required"))?;
        (a, scales.iter().map(|&s| f64::from(s)).collect())
    } else {
        cx.arity(2, 2)?;
        let a = cx.attrs(&["mode"])?;
        (a, constant_floats(cx, 1, "scales")?.ok_or_else(|| malformed("Upsample needs scales"))?)
    };
    if scales.iter().any(|&s| s < 1.0) {
        return Err(bad_attribute(format!("Upsample scales must be >= 1, got {scales:?}")));
    }
    legacy(x.shape, a.string("mode")?.as_deref().unwrap_or("nearest"), scales, true)
}

impl OpDef for Resize {
    fn type_name(&self) -> &'static str {
        if self.upsample { "Upsample" } else { "Resize" }
    }

    fn infer(&self, inputs: &[&TensorInfo]) -> Result<Vec<(DType, Vec<usize>)>, String> {
        let name = self.type_name();
        let [x] = exactly(name, inputs)?;
        let rank = x.shape.len();
        if self.scales.len() != rank || self.sizes.len() != rank {
            return Err(format!(
                "{name}: resolved for rank {} but {:?} has shape {:?}",
                self.sizes.len(),
                x.name,
                x.shape
            ));
        }
        // Nearest moves data (any type); linear and cubic compute in float.
        let interpolates = !matches!(self.mode, ResizeMode::Nearest(_));
        if interpolates && !x.dtype.is_compute_float() {
            return Err(format!("{name}: {:?} is {}, which this mode does not support", x.name, x.dtype.name()));
        }
        let shape = (0..rank).map(|i| if self.is_identity_axis(i) { x.shape[i] } else { self.sizes[i] }).collect();
        Ok(vec![(x.dtype, shape)])
    }

    fn run(&self, inputs: &[&Tensor], _outputs: &[TensorInfo]) -> Result<Vec<Tensor>, KernelError> {
        Ok(vec![kernel::resize(self, inputs)?])
    }

    fn input_role(&self, position: usize, _rank: usize) -> InputRole {
        if position == 0 { InputRole::Activation } else { InputRole::Index }
    }

    fn export(&self, cx: &mut ExportCx<'_>) {
        let mut attrs = vec![];
        let legacy_floor = |scales: &[f64]| if scales.iter().all(|&s| s >= 1.0) { "floor" } else { "ceil" };
        match self.mode {
            ResizeMode::Nearest(nearest) => {
                attrs.push(attr_string("mode", "nearest"));
                let name = match nearest {
                    NearestMode::RoundPreferFloor => "round_prefer_floor",
                    NearestMode::RoundPreferCeil => "round_prefer_ceil",
                    NearestMode::Floor => "floor",
                    NearestMode::Ceil => "ceil",
                    NearestMode::Legacy => legacy_floor(&self.scales),
                };
                attrs.push(attr_string("nearest_mode", name));
            }
            ResizeMode::Linear => attrs.push(attr_string("mode", "linear")),
            ResizeMode::Cubic { a } => {
                attrs.push(attr_string("mode", "cubic"));
                attrs.push(attr_float("cubic_coeff_a", a));
            }
        }
        let coord = match self.coord {
            CoordMode::HalfPixel => "half_pixel",
            CoordMode::HalfPixelSymmetric => "half_pixel_symmetric",
            CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
            CoordMode::AlignCorners => "align_corners",
            CoordMode::Asymmetric => "asymmetric",
            CoordMode::TfHalfPixelForNn => "tf_half_pixel_for_nn",
            CoordMode::TfCropAndResize => "tf_crop_and_resize",
        };
        attrs.push(attr_string("coordinate_transformation_mode", coord));
        attrs.push(attr_int("exclude_outside", i64::from(self.exclude_outside)));
        attrs.push(attr_int("antialias", i64::from(self.antialias)));
        attrs.push(attr_float("extrapolation_value", self.extrapolation_value));
        let roi = if self.roi.is_empty() {
            String::new()
        } else {
            let roi: Vec<f32> = self.roi.iter().map(|&v| v as f32).collect();
            cx.floats("roi", &roi)
        };
        let extra = if self.from_scales {
            let scales: Vec<f32> = self.scales.iter().map(|&v| v as f32).collect();
            vec![roi, cx.floats("scales", &scales)]
        } else {
            let sizes = cx.output_shapes.first().cloned().unwrap_or_else(|| self.sizes.clone());
            let sizes: Vec<i64> = sizes.iter().map(|&v| v as i64).collect();
            vec![roi, String::new(), cx.int64s("sizes", &sizes)]
        };
        cx.emit_with("Resize", extra, attrs);
    }
}
