//! Command-line interface: argument parsing and dispatch only; the work happens
//! in the library modules.
//!
//! Exit codes: 0 success, 1 the command ran but found nothing to do or failed at
//! run time (e.g. no tag qualifies), 2 bad input or usage.

mod check;
mod explain;
mod plan;
mod policy_eval;
mod registry;
mod run;
mod sync;
mod update;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "capstan",
    version,
    about = "GitOps reconciler: registry tags -> Git -> Kubernetes"
)]
struct Cli {
    /// Log format: `auto` is human-readable on a terminal, JSON otherwise.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: both loops, webhooks, triggers, probes and metrics.
    Run(run::Args),
    /// Validate the configuration file and every policy it points to.
    Check {
        #[arg(short, long, default_value = capstan::config::DEFAULT_FILE)]
        config: PathBuf,
    },
    /// Make the cluster of each target equal to its folder in the repository.
    Sync(sync::Args),
    /// Show what a sync of one target would change (dry-run; writes nothing).
    Plan(plan::Args),
    /// Explain one object: the target and inventory that track it, the file and
    /// commit that define it, the image-update decision behind that commit.
    Explain(explain::Args),
    /// Work with image policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Ask a container registry.
    Registry {
        #[command(subcommand)]
        command: registry::Command,
    },
    /// Bring image references in the manifests repository up to date: plan
    /// byte-minimal edits, print the diff, commit and push.
    Update(update::Args),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Choose a tag with one policy from a list of tags (or the registry's, with
    /// `--live`); prints the chosen tag last.
    Eval(policy_eval::Args),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Text,
    Json,
}

pub(crate) const EXIT_NOTHING: u8 = 1;
pub(crate) const EXIT_BAD_INPUT: u8 = 2;

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // The daemon reports what it does at info; one-shot commands only warn.
    let default_level = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Check { config } => check::run(&config),
        Command::Sync(args) => sync::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Policy {
            command: PolicyCommand::Eval(args),
        } => policy_eval::run(&args),
        Command::Registry { command } => registry::run(&command),
        Command::Update(args) => update::run(&args),
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    let filter =
        EnvFilter::try_from_env("CAPSTAN_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests calling run twice) is harmless; ignore it.
    let _ = if json {
        // Events carry a `target` field (the sync target); tracing's own `target` (the
        // module path) would be a second `target` key in the same flattened object,
        // which JSON parsers resolve differently. The module path is left out.
        builder
            .json()
            .flatten_event(true)
            .with_target(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Loads the configuration and every policy it points to; on failure prints one
/// `error:` line per problem and gives the bad-input exit code.
pub(crate) fn load_config_and_policies(
    path: &std::path::Path,
) -> Result<(capstan::config::Config, Vec<capstan::policy::ImagePolicy>), ExitCode> {
    let config = capstan::config::Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    })?;
    let policies = capstan::policy::load_dir(config.policies_dir()).map_err(|e| {
        for err in e.errors() {
            eprintln!("error: {err}");
        }
        ExitCode::from(EXIT_BAD_INPUT)
    })?;
    Ok((config, policies))
}
