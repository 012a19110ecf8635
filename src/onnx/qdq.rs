//! QuantizeLinear/DequantizeLinear pairs in an input model: stripped at import, their scales and zero points kept as the model's own encodings.
