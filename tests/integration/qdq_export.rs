//! Integration tests: qdq_export.
