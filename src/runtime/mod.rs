//! Kernels and executors: the float reference interpreter over the IR and the executor of a
//! compiled `model.bin` (float or quantized emulation).

pub mod buffers;
pub mod exec;
pub mod interpret;
pub mod kernels;
mod liveness;
pub mod profile;

pub use interpret::{RuntimeError, interpret, interpret_group};
