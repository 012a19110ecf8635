//! Integration tests: qdq_input.
