//! Graph optimizations: constant folding, BatchNorm folding, Identity/Dropout removal,
//! dead-node pruning.
