//! Integration tests: sweep.
