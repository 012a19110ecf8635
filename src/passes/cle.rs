//! Cross-layer equalization (`algorithms = ["cle"]`).
