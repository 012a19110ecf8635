//! Lowering a quantized graph to the executable plan: backend rules, scheduling, memory
//! planning and the versioned, checksummed `model.bin` format.
