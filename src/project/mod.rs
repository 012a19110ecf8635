//! The project's own input files: `qairt.toml` (schema, defaults, validation with source
//! spans), project discovery, and the SDK's input-list format.
//!
//! **Invariant:** pure text -> value functions; reading files is the engine's job.

mod config;
mod input_list;
pub mod io;
pub mod paths;
pub mod remote;

pub use config::{
    CacheConfig, CalibrationConfig, ModelConfig, OutputFiles, ProjectConfig, SimulateConfig, TargetConfig, Thresholds,
    VerifyConfig, parse_config,
};
pub use input_list::{Entry, InputList, Sample, parse_input_list};

/// The name of the project file `qairt` looks for.
pub const PROJECT_FILE: &str = "qairt.toml";
