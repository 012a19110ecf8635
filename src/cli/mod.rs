//! Argument parsing, human and JSON output, diagnostics rendering.

pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
