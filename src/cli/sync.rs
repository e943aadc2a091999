//! `capstan sync --once`: one sync pass per target, commit statuses around it.
//!
//! The branch is fetched into the sync loop's own clone first
//! ([`capstan::sync::Source`]); statuses go to the commit that was fetched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use capstan::config::{Config, Target};
use capstan::forge::{self, SyncReporter};
use capstan::notify::Notifier;
use capstan::sync::{Revision, Source, SyncOptions, client::client_for, sync_target};

use tracing::Instrument;

use super::{EXIT_BAD_INPUT, EXIT_NOTHING};

/// How long a pass waits at the end for its notifications to be delivered.
const NOTIFY_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(clap::Args)]
pub struct Args {
    /// Run one pass and exit (the only mode until the daemon lands).
    #[arg(long, required = true)]
    pub once: bool,
    #[arg(short, long, default_value = capstan::config::DEFAULT_FILE)]
    pub config: PathBuf,
    /// Only this target (default: every target).
    #[arg(long)]
    pub target: Option<String>,
}

pub fn run(args: &Args) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let (source, targets) = match prepare(&config, &args.config, args.target.as_deref()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_NOTHING);
        }
    };
    runtime.block_on(async {
        let revision = match source.fetch_async().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_NOTHING);
            }
        };
        run_targets(&config, &revision, &targets).await
    })
}

/// The repository as the sync loop reads it, and the selected targets.
pub(crate) fn prepare<'a>(
    config: &'a Config,
    config_path: &Path,
    only: Option<&str>,
) -> Result<(Source, Vec<&'a Target>), String> {
    let config_dir = capstan::config::folder_of(config_path);
    let source = Source::from_config(config, config_dir).map_err(|e| e.to_string())?;
    let targets: Vec<&Target> = config
        .targets
        .iter()
        .filter(|t| only.is_none_or(|n| t.name.value == n))
        .collect();
    if targets.is_empty() {
        return Err(match only {
            Some(n) => format!("no target named {n:?} in the configuration"),
            None => "the configuration has no targets".into(),
        });
    }
    Ok((source, targets))
}

async fn run_targets(config: &Config, revision: &Revision, targets: &[&Target]) -> ExitCode {
    let root = revision.root.as_path();
    let forge = match forge::from_config(config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let notifier = match Notifier::from_config(&config.notifications) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: notifications: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut code = ExitCode::SUCCESS;
    for target in targets {
        let name = &target.name.value;
        let reporter = SyncReporter::new(forge.clone(), target).with_notifier(notifier.clone());
        let announced = reporter.started(revision.commit.as_deref()).await;
        let span = tracing::info_span!("sync_once", target = %name, commit = %revision.short());
        let result = async {
            let client = client_for(target).await?;
            sync_target(&client, &SyncOptions::from_target(target, root)).await
        }
        .instrument(span)
        .await;
        reporter.finished(&announced, result.as_ref(), root).await;
        match result {
            Ok(report) => println!(
                "{name}: {} ({} writes, {:.1}s)",
                report.summary(),
                report.writes,
                report.elapsed.as_secs_f64()
            ),
            Err(e) => {
                eprintln!("error: {name}: {e}");
                code = ExitCode::from(if e.is_bad_input() {
                    EXIT_BAD_INPUT
                } else {
                    EXIT_NOTHING
                });
            }
        }
    }
    notifier.shutdown(NOTIFY_GRACE).await;
    code
}
