//! The `stack` binary: parses flags, runs the command, prints errors once.

use std::process::ExitCode;

fn main() -> ExitCode {
    stack::cli::main()
}
