//! `capstan run`: the daemon (both loops, the HTTP server, live reload) until
//! SIGTERM or SIGINT. Exit 0 after a stop, 2 for a bad configuration, 1 when
//! the daemon cannot start (address in use, no signal handlers).

use std::path::PathBuf;
use std::process::ExitCode;

use capstan::daemon::{self, DaemonError};

use super::{EXIT_BAD_INPUT, EXIT_NOTHING};

#[derive(clap::Args)]
pub struct Args {
    #[arg(short, long, default_value = capstan::config::DEFAULT_FILE)]
    config: PathBuf,
    /// Campaign for a Kubernetes Lease before writing, so that of several
    /// replicas only one writes (default: `leaderElection.enabled`, else on
    /// in a cluster).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    leader_elect: Option<bool>,
}

pub fn run(args: &Args) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_NOTHING);
        }
    };
    let options = daemon::Options {
        leader_elect: args.leader_elect,
        ..daemon::Options::new(args.config.clone())
    };
    let result = runtime.block_on(daemon::run(options));
    // Blocking steps (a Git push) that outlived the shutdown bound are not waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(DaemonError::Config(errors)) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_NOTHING)
        }
    }
}
