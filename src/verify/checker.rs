//! The quantization checker (work in progress by its owner).
