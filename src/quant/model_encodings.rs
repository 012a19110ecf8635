//! The model's own encodings (from stripped QDQ pairs) as overrides, layered under the overrides file.
