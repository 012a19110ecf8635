//! Graph optimizations on the shared IR: constant folding, BatchNorm folding into Conv/Gemm,
//! Identity/Dropout removal and dead-node pruning, run to a fixpoint by [`optimize`]; and, when
//! asked for ([`OptimizeOptions::cle`]), cross-layer equalization after them ([`cle`]).
//!
//! **Invariants** every pass keeps:
//! - tensor names are ONNX names: a pass never renames a surviving tensor, and a graph output
//!   keeps its name (encodings files and `Result_N/<name>.raw` are keyed by it);
//! - a pass either leaves the graph as it was or removes at least one node, so the fixpoint
//!   loop terminates;
//! - the result passes [`Graph::validate`];
//! - fields of the graph a pass does not own (such as model encodings) are kept as they are:
//!   passes mutate the graph in place.

mod bn_fold;
pub mod cle;
mod const_fold;
mod identity;
mod prune;
mod untie;

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
    /// Cross-layer equalization: adjacent layer pairs whose channels were rescaled (a
    /// Conv -> depthwise Conv -> Conv triple counts as two pairs).
    #[serde(default)]
    pub cle_pairs_equalized: usize,
    /// Cross-layer equalization: `Clip(0, max)` activations (Relu6) between equalized layers
    /// that became Relu.
    #[serde(default)]
    pub cle_relu6_rewritten: usize,
    /// Cross-layer equalization: equalized pairs where part of the first layer's bias (above
    /// 3 sigma of its folded BatchNorm statistics, or all of it with no activation between)
    /// moved into the second layer's bias.
    #[serde(default)]
    pub cle_biases_absorbed: usize,
    /// Parameters read by several ops that got a copy per reader (see `untie`).
    #[serde(default)]
    pub untied_parameters: usize,
}

/// Which optional optimizations [`optimize_with`] runs besides the always-on passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct OptimizeOptions {
    /// Cross-layer equalization with high-bias absorption (`algorithms = ["cle"]`).
    pub cle: bool,
    /// Leave every BatchNormalization in the graph (`batchnorm_folding = false`, the SDK
    /// converter's `--disable_batchnorm_folding`): no fold is made or recorded, so encodings
    /// made for the unfolded model apply as they are.
    #[serde(default)]
    pub keep_batchnorms: bool,
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
pub fn optimize(graph: Graph) -> Result<(Graph, OptimizeReport), PassError> {
    optimize_with(graph, &OptimizeOptions::default())
}

/// [`optimize`], then the optional passes `options` ask for.
///
/// Cross-layer equalization runs once, after the fixpoint: by then BatchNorms are folded
/// (their `gamma`/`beta` were recorded for high-bias absorption, as AIMET's `equalize_model`
/// folds first and keeps the BN layers aside), Identities are gone and constants are folded,
/// so the Conv -> activation -> Conv chains it looks for are visible. It removes no node and
/// only rewrites weights, biases and `Clip(0, max)` -> `Relu`, so no second fixpoint is needed.
pub fn optimize_with(mut graph: Graph, options: &OptimizeOptions) -> Result<(Graph, OptimizeReport), PassError> {
    graph.validate().map_err(PassError::InvalidInput)?;
    let mut report = OptimizeReport::default();
    let mut folded_bns = bn_fold::FoldedBatchNorms::new();
    loop {
        let before = report.clone();
        report.removed_identities += identity::remove_identities(&mut graph);
        report.folded_constants += const_fold::fold_constants(&mut graph)?;
        if !options.keep_batchnorms {
            report.folded_batchnorms += bn_fold::fold_batchnorms(&mut graph, &mut folded_bns);
        }
        report.pruned_nodes += prune::prune(&mut graph);
        if report == before {
            break;
        }
    }
    if options.cle {
        let counts = cle::equalize(&mut graph, &folded_bns);
        report.cle_pairs_equalized = counts.pairs_equalized;
        report.cle_relu6_rewritten = counts.relu6_rewritten;
        report.cle_biases_absorbed = counts.biases_absorbed;
    }
    report.untied_parameters = untie::untie_parameters(&mut graph);
    graph.compact();
    graph.validate().map_err(PassError::InvalidOutput)?;
    Ok((graph, report))
}

#[cfg(test)]
mod tests;
