//! The `qairt` binary: everything lives in the library; this only hands over the exit code.

fn main() -> std::process::ExitCode {
    // A reader that stops early (`qairt build | head -n 1`) ends qairt quietly, as it ends
    // cargo: killed by SIGPIPE rather than a panic on the failed write. Every file qairt writes
    // is renamed into place complete, and the next build removes the temporaries.
    sigpipe::reset();
    qairt::cli::main()
}
