//! `capstan update --once`: one pass of the image-update loop.
//!
//! Output contract: the unified diff of what changed (or, with `--dry-run`,
//! would change) goes to stdout, so it can be piped to `git apply`; one line
//! per skipped reference, problem and the result go to stderr. Exit 0 when
//! nothing failed (skips are not failures), 1 when a file, a registry scan or
//! the push failed, 2 for bad configuration or usage.
//!
//! Tags come from the registries (`registries:` settings), or with
//! `--tags-dir` from files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use capstan::config::Config;
use capstan::policy::ImagePolicy;
use capstan::registry::transport::ClientOptions;
use capstan::registry::{ScanOptions, Scanner};
use capstan::update::{self, Choices, Outcome, Report, Settings};

use super::{EXIT_BAD_INPUT, EXIT_NOTHING, OutputFormat};

#[derive(clap::Args)]
pub struct Args {
    /// Run one pass and exit (the continuous loop is the daemon's job).
    #[arg(long, required = true)]
    once: bool,
    #[arg(short, long, default_value = capstan::config::DEFAULT_FILE)]
    config: PathBuf,
    /// Plan and print the diff; do not commit or push.
    #[arg(long)]
    dry_run: bool,
    /// Read each policy's tags from `<DIR>/<policy>.txt` (format of
    /// `policy eval --tags-file`) instead of scanning the registries.
    #[arg(long, value_name = "DIR")]
    tags_dir: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub fn run(args: &Args) -> ExitCode {
    debug_assert!(args.once);
    let (config, policies) = match super::load_config_and_policies(&args.config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Some(dir) = &args.tags_dir
        && !dir.is_dir()
    {
        eprintln!("error: --tags-dir {}: not a folder", dir.display());
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let config_dir = args
        .config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let settings = match Settings::from_config(&config, config_dir, args.dry_run) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let choices = match &args.tags_dir {
        Some(dir) => update::tags_dir::choose(dir, &policies),
        None => match scan_registries(&config, &policies) {
            Ok(c) => c,
            Err(msg) => {
                eprintln!("error: {msg}");
                return ExitCode::from(EXIT_NOTHING);
            }
        },
    };
    match update::run_once(&settings, &choices) {
        Ok(report) => print_report(&report, args.output),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_NOTHING)
        }
    }
}

/// Every policy's image, scanned in its registry (settings from `registries:`).
fn scan_registries(config: &Config, policies: &[ImagePolicy]) -> Result<Choices, String> {
    let runtime = super::registry::runtime()?;
    let scanner = Scanner::from_config(
        &config.registries,
        ClientOptions::default(),
        ScanOptions::default(),
    );
    Ok(runtime.block_on(update::from_registry::choose(&scanner, policies)))
}

fn print_report(report: &Report, output: OutputFormat) -> ExitCode {
    let plan = &report.plan;
    match output {
        OutputFormat::Json => match serde_json::to_string_pretty(report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("error: cannot encode report: {e}"),
        },
        OutputFormat::Text => print!("{}", plan.diff()),
    }
    for (policy, error) in &report.source_errors {
        eprintln!("error: policy `{policy}`: {error}");
    }
    for (policy, why) in &report.not_chosen {
        eprintln!("skipped: policy `{policy}`: {why}");
    }
    for policy in &report.unreferenced {
        eprintln!("skipped: policy `{policy}`: no reference to it under update.path");
    }
    for skip in &plan.skipped {
        eprintln!("skipped: {skip}");
    }
    for problem in &plan.problems {
        eprintln!("error: {problem}");
    }
    let changes = plan.changes().count();
    let files = plan.files.len();
    let status = match &report.outcome {
        Outcome::DryRun { head } => format!(
            "dry run on {} at {}: {changes} change(s) in {files} file(s) would be committed",
            report.branch,
            short(head)
        ),
        Outcome::Pushed { commit, attempts } => format!(
            "pushed {} to {}: {changes} change(s) in {files} file(s){}",
            short(commit),
            report.branch,
            if *attempts > 1 {
                format!(" (after {} rejected push(es))", attempts - 1)
            } else {
                String::new()
            }
        ),
        Outcome::Unchanged { head, .. } => format!(
            "nothing to commit: {} at {} is up to date",
            report.branch,
            short(head)
        ),
    };
    eprintln!(
        "{status}; {} file(s) scanned, {} reference(s), {} up to date, {} skipped, {} problem(s)",
        plan.files_scanned,
        plan.references,
        plan.up_to_date,
        plan.skipped.len() + report.not_chosen.len() + report.unreferenced.len(),
        plan.problems.len() + report.source_errors.len()
    );
    if report.failed() {
        ExitCode::from(EXIT_NOTHING)
    } else {
        ExitCode::SUCCESS
    }
}

fn short(oid: &str) -> &str {
    oid.get(..12).unwrap_or(oid)
}
