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
//!
//! In `pull-request` mode (without `--dry-run`) the pass opens or updates one
//! pull request per policy through the forge; stdout then carries one line
//! per pull request: `<policy> <action> <url>`. Configured notifications are
//! sent before the command exits (waiting at most 30 seconds for them).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use capstan::config::{Config, UpdateMode};
use capstan::manifests::Plan;
use capstan::notify::{Event, EventKind, Notifier};
use capstan::policy::ImagePolicy;
use capstan::registry::transport::ClientOptions;
use capstan::registry::{ScanOptions, Scanner};
use capstan::update::pull_request::{self, ImageSource, NoImageSource, PrReport, PrSettings};
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
    let config_dir = capstan::config::folder_of(&args.config);
    let settings = match Settings::from_config(&config, config_dir, args.dry_run) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let runtime = match super::registry::runtime() {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_NOTHING);
        }
    };
    let _entered = runtime.enter();
    let notifier = match Notifier::from_config(&config.notifications) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let scanner = args.tags_dir.is_none().then(|| scanner(&config));
    let choices = match (&args.tags_dir, &scanner) {
        (Some(dir), _) => update::tags_dir::choose(dir, &policies),
        (None, Some(scanner)) => {
            runtime.block_on(update::from_registry::choose(scanner, &policies))
        }
        (None, None) => Choices::default(),
    };
    let code = if config.update.mode.value == UpdateMode::PullRequest && !args.dry_run {
        let images: &dyn ImageSource = match &scanner {
            Some(s) => s,
            None => &NoImageSource,
        };
        run_pull_requests(
            &config,
            config_dir,
            &runtime,
            &choices,
            images,
            &notifier,
            args.output,
        )
    } else {
        match update::run_once(&settings, &choices) {
            Ok(report) => {
                if let Outcome::Pushed { commit, .. } = &report.outcome {
                    for event in tag_events(&report.plan, &policies) {
                        notifier.notify(event.clone().at(jiff::Timestamp::now()));
                        let mut pushed = event;
                        pushed.event = EventKind::CommitPushed;
                        notifier.notify(pushed.commit(commit));
                    }
                }
                print_report(&report, args.output)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_NOTHING)
            }
        }
    };
    runtime.block_on(notifier.shutdown(Duration::from_secs(30)));
    code
}

/// Every policy's image is scanned in its registry (settings from `registries:`).
fn scanner(config: &Config) -> Scanner {
    Scanner::from_config(
        &config.registries,
        ClientOptions::default(),
        ScanOptions::default(),
    )
}

/// `tag-chosen` per policy whose references change in the plan.
fn tag_events(plan: &Plan, policies: &[ImagePolicy]) -> Vec<Event> {
    let mut seen = std::collections::BTreeSet::new();
    plan.changes()
        .filter(|(_, c)| seen.insert(c.policy.clone()))
        .map(|(_, c)| {
            let image = policies
                .iter()
                .find(|p| p.name == c.policy)
                .map_or("", |p| p.image.as_str());
            Event::new(
                EventKind::TagChosen,
                format!("{} {} → {}", c.policy, c.from, c.to),
            )
            .policy(&c.policy)
            .image(image, &c.from, &c.to)
        })
        .collect()
}

fn run_pull_requests(
    config: &Config,
    config_dir: &Path,
    runtime: &tokio::runtime::Runtime,
    choices: &Choices,
    images: &dyn ImageSource,
    notifier: &Notifier,
    output: OutputFormat,
) -> ExitCode {
    let settings = match PrSettings::from_config(config, config_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let forge = match capstan::forge::from_config(config) {
        Ok(Some(f)) => f,
        Ok(None) => {
            eprintln!("error: update.mode `pull-request` needs `forge.kind`");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let report = runtime.block_on(pull_request::run_once(
        &settings,
        choices,
        forge.as_ref(),
        images,
        notifier,
    ));
    match report {
        Ok(report) => print_pr_report(&report, output),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_NOTHING)
        }
    }
}

fn print_pr_report(report: &PrReport, output: OutputFormat) -> ExitCode {
    match output {
        OutputFormat::Json => match serde_json::to_string_pretty(report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("error: cannot encode report: {e}"),
        },
        OutputFormat::Text => {
            for r in &report.results {
                if let Some(url) = &r.url {
                    let action = serde_json::to_value(r.action)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    println!("{} {action} {url}", r.policy);
                }
            }
        }
    }
    for (policy, error) in &report.source_errors {
        eprintln!("error: policy `{policy}`: {error}");
    }
    for (policy, why) in &report.not_chosen {
        eprintln!("skipped: policy `{policy}`: {why}");
    }
    for r in &report.results {
        for problem in &r.problems {
            eprintln!("error: {problem}");
        }
        if let Some(e) = &r.error {
            eprintln!("error: policy `{}` ({}): {e}", r.policy, r.branch);
        }
    }
    let count = |a: pull_request::Action| report.results.iter().filter(|r| r.action == a).count();
    eprintln!(
        "pull requests into {}: {} opened, {} updated, {} unchanged, {} closed, {} failed",
        report.base,
        count(pull_request::Action::Opened),
        count(pull_request::Action::Updated),
        count(pull_request::Action::Unchanged),
        count(pull_request::Action::Closed),
        report.results.iter().filter(|r| r.error.is_some()).count(),
    );
    if report.failed() {
        ExitCode::from(EXIT_NOTHING)
    } else {
        ExitCode::SUCCESS
    }
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
