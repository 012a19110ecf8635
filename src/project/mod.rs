//! `qairt.toml`: schema, defaults and validation with source spans.
