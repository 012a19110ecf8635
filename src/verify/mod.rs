//! Accuracy metrics between a simulated run and its reference, per output and per layer.
