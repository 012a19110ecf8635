//! If with a condition known at import (a constant, a value computed from constants and
//! static shapes, or a graph input the build is specialized on): the node is replaced by the
//! branch it takes, whose nodes the importer imports in place (`onnx::inline`). qairt
//! compiles straight-line graphs, so an If whose condition is only known when the model runs
//! is a diagnostic ([`super::stays_out`] says why); Loop and Scan stay out altogether.

use super::OnnxOp;
use super::import::{Lowered, NodeCx};
use crate::ir::TensorData;
use crate::onnx::ImportError;
use crate::onnx::error::bad_attribute;

pub(super) const ONNX: &[OnnxOp] = &[OnnxOp::folded("If", import_if)];

fn import_if(cx: &NodeCx) -> Result<Lowered, ImportError> {
    cx.arity(1, 1)?;
    let a = cx.attrs(&["then_branch", "else_branch"])?;
    for branch in ["then_branch", "else_branch"] {
        if a.graph(branch)?.is_none() {
            return Err(bad_attribute(format!("If needs the graph attribute {branch:?}")));
        }
    }
    let view = cx.input(0, "cond")?;
    let Some(cond) = view.value else {
        let why = super::stays_out("If").unwrap_or_default();
        return Err(ImportError::needs_value(
            view.name,
            format!(
                "If's condition {:?} is computed at run time, but the condition must be known at import (qairt \
                 imports the branch it takes)",
                view.name
            ),
        )
        .with_hint(format!(
            "If is {why}. A condition that is a small graph input (a flag) is specialized on the value the input \
             lists give, like an input that decides shapes; one computed from the data cannot be"
        )));
    };
    // The spec: a bool tensor of a single element (a scalar or any shape of one element).
    let taken = match &cond.data {
        TensorData::Bool(v) if v.len() == 1 => v[0] != 0,
        _ => {
            return Err(bad_attribute(format!(
                "If's condition {:?} must be one bool, got {} of shape {:?}",
                view.name,
                cond.dtype().name(),
                cond.shape
            )));
        }
    };
    Ok(Lowered::Branch(if taken { "then_branch" } else { "else_branch" }))
}
