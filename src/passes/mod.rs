//! Graph optimizations on the shared IR: constant folding, BatchNorm folding into Conv/Gemm,
//! Identity/Dropout removal and dead-node pruning, run to a fixpoint by [`optimize`].
//!
//! **Invariants** every pass keeps:
//! - tensor names are ONNX names: a pass never renames a surviving tensor, and a graph output
//!   keeps its name (encodings files and `Result_N/<name>.raw` are keyed by it);
//! - a pass either leaves the graph as it was or removes at least one node, so the fixpoint
//!   loop terminates;
//! - the result passes [`Graph::validate`].

mod bn_fold;
pub mod cle;
mod const_fold;
mod identity;
mod prune;

use serde::{Deserialize, Serialize};

use crate::ir::{Graph, InvalidGraph};
use crate::runtime::kernels::KernelError;

/// What [`optimize`] did, counted in nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OptimizeReport {
    /// Nodes evaluated at build time; their outputs became constants.
    pub folded_constants: usize,
    /// BatchNormalization nodes merged into the Conv or Gemm before them.
    pub folded_batchnorms: usize,
    /// Identity and Dropout nodes removed.
    pub removed_identities: usize,
    /// Nodes whose outputs reach no graph output.
    pub pruned_nodes: usize,
}

/// Why [`optimize`] could not produce a graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassError {
    #[error("the graph given to optimize is not valid")]
    InvalidInput(#[source] InvalidGraph),
    #[error("constant folding of node {node:?} failed")]
    ConstFold {
        node: String,
        #[source]
        source: KernelError,
    },
    #[error(
        "constant folding of node {node:?}: the kernel returned {got} for tensor {tensor:?}, \
         whose inferred type is {expected}"
    )]
    FoldedMismatch { node: String, tensor: String, expected: String, got: String },
    #[error("optimization produced an invalid graph (a bug in a pass)")]
    InvalidOutput(#[source] InvalidGraph),
}

/// Runs every pass until none changes the graph, then drops unused tensors and constants and
/// checks the result.
///
/// Order inside one round: Identity/Dropout removal first (so a BatchNorm behind an Identity
/// behind a Conv still folds), then constant folding, BatchNorm folding and pruning. Every
/// pass that reports a change removed at least one node, so the loop ends after at most
/// `nodes + 1` rounds.
pub fn optimize(mut graph: Graph) -> Result<(Graph, OptimizeReport), PassError> {
    graph.validate().map_err(PassError::InvalidInput)?;
    let mut report = OptimizeReport::default();
    loop {
        let before = report.clone();
        report.removed_identities += identity::remove_identities(&mut graph);
        report.folded_constants += const_fold::fold_constants(&mut graph)?;
        report.folded_batchnorms += bn_fold::fold_batchnorms(&mut graph);
        report.pruned_nodes += prune::prune(&mut graph);
        if report == before {
            break;
        }
    }
    graph.compact();
    graph.validate().map_err(PassError::InvalidOutput)?;
    Ok((graph, report))
}

#[cfg(test)]
mod tests;
