//! Export of the optimized, quantized graph as an ONNX QDQ model (`out/<target>/model.qdq.onnx`).
