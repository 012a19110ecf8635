//! A compiled model loaded to run: the program read from `model.bin` (header, format version
//! and checksum checked) and its executor, prepared once (constants decoded), as the SDK's
//! `Session.setup()` loads a network once for every later `run`.

use qairt::compile::Program;
use qairt::ir::{Tensor, TensorInfo};
use qairt::runtime::exec::{ExecError, Prepared, prepare};

self_cell::self_cell!(
    /// The program and the executor that borrows it.
    pub struct Loaded {
        owner: Program,
        #[covariant]
        dependent: Prepared,
    }
);

impl Loaded {
    /// Reads `bytes` (a `model.bin`) and prepares its program.
    pub fn from_model_bin(bytes: &[u8]) -> Result<Loaded, String> {
        let program = Program::from_bytes(bytes).map_err(|e| e.to_string())?;
        Loaded::try_new(program, prepare).map_err(|e| e.to_string())
    }

    pub fn program(&self) -> &Program {
        self.borrow_owner()
    }

    /// The program's inputs, in its order.
    pub fn inputs(&self) -> Vec<&TensorInfo> {
        let program = self.program();
        program.inputs.iter().filter_map(|&id| program.tensor(id)).map(|t| &t.info).collect()
    }

    /// The program's outputs, in its order.
    pub fn outputs(&self) -> Vec<&TensorInfo> {
        let program = self.program();
        program.outputs.iter().filter_map(|&id| program.tensor(id)).map(|t| &t.info).collect()
    }

    /// One inference: exactly what the `simulate` stage computes for a sample with these
    /// inputs (the same executor; its grouped runs give each sample what a lone run gives).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
        self.borrow_dependent().run(inputs, &mut |_, _| {})
    }
}
