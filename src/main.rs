//! The `capstan` binary: parse the command line, set up logging, dispatch.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
