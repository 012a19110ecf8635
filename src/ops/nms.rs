//! NonMaxSuppression (opsets 10, 11): per batch and class, greedily selects the boxes of
//! highest score (ties: the lower box index first) whose IoU with every box selected before
//! is at most `iou_threshold`, among those scoring above `score_threshold` (all boxes when it
//! is absent), at most `max_output_boxes_per_class` of them (none when absent). Output
//! `selected_indices` int64 `[num_selected, 3]` of `(batch, class, box)`, batch-major.
//! Boxes are `[y1, x1, y2, x2]` corners in either order (`center_point_box = 0`) or
//! `[x_center, y_center, width, height]` (`center_point_box = 1`).
//!
//! The number of selected boxes depends on the data, and qairt graphs have static shapes: the
//! op is evaluated at import, when its inputs are known, and is a diagnostic otherwise.

use super::OnnxOp;
use super::import::{Lowered, NodeCx};
use crate::ir::{Tensor, TensorData};
use crate::onnx::ImportError;
use crate::onnx::error::{ErrorKind, bad_attribute};

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::folded("NonMaxSuppression", import_nms)];

/// The thresholds and box format of one evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Params {
    center_point_box: bool,
    max_per_class: usize,
    iou_threshold: f32,
    score_threshold: Option<f32>,
}

fn import_nms(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(2, 5)?;
    let a = cx.attrs(&["center_point_box"])?;
    let center_point_box = a.flag("center_point_box")?;
    for (i, role) in [(0, "boxes"), (1, "scores")] {
        let view = cx.input(i, role)?;
        if view.value.is_none() {
            return Err(ImportError::new(
                ErrorKind::UnsupportedFeature,
                format!(
                    "NonMaxSuppression's output size depends on the values of its {role} {:?}, which are only \
                     known when the model runs: qairt graphs have static shapes (data-dependent output size)",
                    view.name
                ),
            )
            .with_hint(
                "qairt evaluates NonMaxSuppression only at import (constant boxes and scores); run it on the \
                 model's outputs in post-processing",
            ));
        }
    }
    let boxes = cx.folded_input(0, "boxes")?;
    let scores = cx.folded_input(1, "scores")?;
    let max_per_class = match cx.constant_ints(2, "max_output_boxes_per_class")? {
        None => 0,
        Some(v) if v.is_empty() => 0,
        Some(v) if v.len() == 1 => usize::try_from(v[0].max(0)).unwrap_or(usize::MAX),
        Some(v) => return Err(bad_attribute(format!("max_output_boxes_per_class must hold one value, got {v:?}"))),
    };
    let iou_threshold = cx.constant_scalar(3, "iou_threshold")?.unwrap_or(0.0);
    let score_threshold = cx.constant_scalar(4, "score_threshold")?;
    let params = Params { center_point_box, max_per_class, iou_threshold, score_threshold };
    Ok(Lowered::Known(vec![nms(&params, boxes, scores)?]))
}

/// `(x_min, y_min, x_max, y_max)` of a box.
fn corners(b: &[f32], center_point_box: bool) -> [f32; 4] {
    if center_point_box {
        let (hw, hh) = (b[2] / 2.0, b[3] / 2.0);
        [b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh]
    } else {
        [b[1].min(b[3]), b[0].min(b[2]), b[1].max(b[3]), b[0].max(b[2])]
    }
}

/// Whether IoU(a, b) exceeds `threshold` (boxes that do not overlap, or of no area, never do).
fn suppresses(a: &[f32; 4], b: &[f32; 4], threshold: f32) -> bool {
    let (ix0, ix1) = (a[0].max(b[0]), a[2].min(b[2]));
    let (iy0, iy1) = (a[1].max(b[1]), a[3].min(b[3]));
    if ix1 <= ix0 || iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let union = area_a + area_b - inter;
    if inter <= 0.0 || area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > threshold
}

fn nms(p: &Params, boxes: &Tensor, scores: &Tensor) -> Result<Tensor, ImportError> {
    let (&[batches, n, 4], &[score_batches, classes, score_boxes]) = (boxes.shape.as_slice(), scores.shape.as_slice())
    else {
        return Err(bad_attribute(format!(
            "NonMaxSuppression: boxes {:?} and scores {:?} must be [batch, boxes, 4] and [batch, classes, boxes]",
            boxes.shape, scores.shape
        )));
    };
    if score_batches != batches || score_boxes != n {
        return Err(bad_attribute(format!(
            "NonMaxSuppression: scores {:?} do not match boxes {:?}",
            scores.shape, boxes.shape
        )));
    }
    if !(boxes.dtype().is_float() && scores.dtype().is_float()) {
        return Err(bad_attribute("NonMaxSuppression: boxes and scores must be float"));
    }
    let (box_data, score_data) = (boxes.to_f32_vec(), scores.to_f32_vec());
    let mut selected: Vec<i64> = Vec::new();
    for b in 0..batches {
        let corners: Vec<[f32; 4]> =
            (0..n).map(|i| corners(&box_data[(b * n + i) * 4..(b * n + i + 1) * 4], p.center_point_box)).collect();
        for c in 0..classes {
            let s = &score_data[(b * classes + c) * n..(b * classes + c + 1) * n];
            let mut candidates: Vec<usize> = (0..n).filter(|&i| p.score_threshold.is_none_or(|t| s[i] > t)).collect();
            // Highest score first; equal scores by box index (a stable sort keeps it).
            candidates.sort_by(|&i, &j| s[j].total_cmp(&s[i]));
            let mut kept: Vec<usize> = Vec::new();
            for i in candidates {
                if kept.len() >= p.max_per_class {
                    break;
                }
                if kept.iter().all(|&k| !suppresses(&corners[i], &corners[k], p.iou_threshold)) {
                    kept.push(i);
                    selected.extend([b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    let count = selected.len() / 3;
    Tensor::new(vec![count, 3], TensorData::I64(selected))
        .map_err(|e| bad_attribute(format!("NonMaxSuppression: internal: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max_per_class: usize, iou_threshold: f32, score_threshold: Option<f32>) -> Params {
        Params { center_point_box: false, max_per_class, iou_threshold, score_threshold }
    }

    /// The six unit boxes of the ONNX spec examples, stacked along y: 0 and 1 and 2 overlap
    /// by 0.9 of their height (IoU 0.9 / 1.1), 3 and 4 likewise, 5 stands alone.
    fn spec_boxes() -> Tensor {
        let ys = [0.0, 0.1, -0.1, 10.0, 10.1, 100.0];
        let data = ys.iter().flat_map(|&y| [y, 0.0, y + 1.0, 1.0]).collect();
        Tensor::from_f32(vec![1, 6, 4], data)
    }

    fn scores(values: &[f32]) -> Tensor {
        Tensor::from_f32(vec![1, values.len() / 6, 6], values.to_vec())
    }

    fn indices(t: &Tensor) -> Vec<i64> {
        t.to_i64_vec().unwrap()
    }

    #[test]
    fn suppress_by_iou_keeps_the_best_of_each_cluster() {
        // Scores .9 .75 .6 .95 .5 .3: 3 (0.95) wins, 0 (0.9) is far from it, 1 and 2 overlap
        // 0 (IoU 0.82 > 0.5), 4 overlaps 3, 5 is alone: [3, 0, 5].
        let s = scores(&[0.9, 0.75, 0.6, 0.95, 0.5, 0.3]);
        let y = nms(&params(3, 0.5, Some(0.0)), &spec_boxes(), &s).unwrap();
        assert_eq!(y.shape, vec![3, 3]);
        assert_eq!(indices(&y), [0, 0, 3, 0, 0, 0, 0, 0, 5]);
        // At most two per class; a score threshold of 0.4 drops box 5 (0.3).
        assert_eq!(indices(&nms(&params(2, 0.5, Some(0.0)), &spec_boxes(), &s).unwrap()), [0, 0, 3, 0, 0, 0]);
        assert_eq!(indices(&nms(&params(3, 0.5, Some(0.4)), &spec_boxes(), &s).unwrap()), [0, 0, 3, 0, 0, 0]);
        // No max_output_boxes_per_class: nothing is selected.
        assert_eq!(nms(&params(0, 0.5, None), &spec_boxes(), &s).unwrap().shape, vec![0, 3]);
    }

    #[test]
    fn classes_center_boxes_and_flipped_corners() {
        // Two classes: class 0 as above; class 1 scores the boxes in reverse
        // [.3 .5 .95 .6 .75 .9]: 2 (0.95), then 5 (0.9), then 4 (0.75, far from both): the
        // limit of 3 is reached before 3, 1 and 0 are considered.
        let s = scores(&[0.9, 0.75, 0.6, 0.95, 0.5, 0.3, 0.3, 0.5, 0.95, 0.6, 0.75, 0.9]);
        let y = nms(&params(3, 0.5, None), &spec_boxes(), &s).unwrap();
        assert_eq!(indices(&y), [0, 0, 3, 0, 0, 0, 0, 0, 5, 0, 1, 2, 0, 1, 5, 0, 1, 4]);
        // The same boxes as centres [x_c, y_c, w, h] = [0.5, y + 0.5, 1, 1] select the same.
        let ys = [0.0, 0.1, -0.1, 10.0, 10.1, 100.0];
        let centers = Tensor::from_f32(vec![1, 6, 4], ys.iter().flat_map(|&y| [0.5, y + 0.5, 1.0, 1.0]).collect());
        let p = Params { center_point_box: true, ..params(3, 0.5, None) };
        assert_eq!(indices(&nms(&p, &centers, &s).unwrap()), indices(&y));
        // Corners given as [y2, x2, y1, x1] are the same boxes.
        let flipped = Tensor::from_f32(vec![1, 6, 4], ys.iter().flat_map(|&y| [y + 1.0, 1.0, y, 0.0]).collect());
        assert_eq!(indices(&nms(&params(3, 0.5, None), &flipped, &s).unwrap()), indices(&y));
    }

    #[test]
    fn identical_boxes_keep_the_lowest_index_and_iou_is_strict() {
        // Two identical boxes of equal score: box 0 is kept, box 1 suppressed (IoU 1 > 0.5).
        let boxes = Tensor::from_f32(vec![1, 2, 4], vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        let s = Tensor::from_f32(vec![1, 1, 2], vec![0.5, 0.5]);
        assert_eq!(indices(&nms(&params(5, 0.5, None), &boxes, &s).unwrap()), [0, 0, 0]);
        // Boxes [0,0,1,1] and [0,0,1,2]: IoU exactly 0.5 is not above a 0.5 threshold.
        let boxes = Tensor::from_f32(vec![1, 2, 4], vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 2.0]);
        assert_eq!(indices(&nms(&params(5, 0.5, None), &boxes, &s).unwrap()), [0, 0, 0, 0, 0, 1]);
    }
}
