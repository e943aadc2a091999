//! `capstan explain <kind>/<name> [-n ns]`: the chain policy decision → commit →
//! sync → status for one object, from Git and cluster state alone.

use std::path::{Path, PathBuf};

use std::process::ExitCode;

use capstan::config::{Config, Target};
use capstan::sync::client::client_for;
use capstan::sync::explain::{Explanation, Query, explain, read_status, render_text};
use capstan::sync::{Revision, Source};

use super::{EXIT_BAD_INPUT, EXIT_NOTHING, OutputFormat};

#[derive(clap::Args)]
pub struct Args {
    /// The object: `<kind>/<name>`, e.g. `deployment/podinfo`, `cm/settings`,
    /// `Deployment.apps/podinfo`.
    pub object: String,
    /// Namespace of the object (default: the target's namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    #[arg(short, long, default_value = capstan::config::DEFAULT_FILE)]
    pub config: PathBuf,
    /// Only look in this target (default: the target whose label the object
    /// carries, else the first target whose folder defines it, else the first).
    #[arg(long)]
    pub target: Option<String>,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(args: &Args) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let query = match Query::parse(&args.object, args.namespace.as_deref()) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let config_dir = capstan::config::folder_of(&args.config);
    let source = match Source::from_config(&config, config_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let targets: Vec<&Target> = config
        .targets
        .iter()
        .filter(|t| args.target.as_deref().is_none_or(|n| t.name.value == n))
        .collect();
    if targets.is_empty() {
        eprintln!(
            "error: {}",
            match &args.target {
                Some(n) => format!("no target named {n:?} in the configuration"),
                None => "the configuration has no targets".into(),
            }
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_NOTHING);
        }
    };
    let result = runtime.block_on(async {
        // The branch as the sync loop sees it: fetched into its clone.
        let revision: Revision = source.fetch_async().await?;
        let mut e = best_explanation(&targets, &revision.root, &query).await?;
        // With a forge: the status the sync reported on the commit it applied.
        match capstan::forge::from_config(&config) {
            Ok(Some(forge)) => read_status(forge.as_ref(), &mut e).await,
            Ok(None) => {}
            Err(err) => e.notes.push(format!("commit status not read: {err}")),
        }
        anyhow::Ok(e)
    });
    match result {
        Ok(e) => {
            match args.output {
                OutputFormat::Text => print!("{}", render_text(&e)),
                OutputFormat::Json => match serde_json::to_string_pretty(&e) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_NOTHING);
                    }
                },
            }
            if e.live.is_none() && e.source.is_none() {
                return ExitCode::from(EXIT_NOTHING);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_NOTHING)
        }
    }
}

/// Asks each target in turn; the first whose label the live object carries wins,
/// then the first whose folder defines it, then the first answer.
async fn best_explanation(
    targets: &[&Target],
    root: &Path,
    query: &Query,
) -> anyhow::Result<Explanation> {
    let mut answers = Vec::new();
    for target in targets {
        let client = client_for(target).await?;
        let e = explain(&client, target, root, query).await?;
        let labelled = e
            .live
            .as_ref()
            .is_some_and(|l| l.target_label.as_deref() == Some(target.name.value.as_str()));
        if labelled || targets.len() == 1 {
            return Ok(e);
        }
        answers.push(e);
    }
    let defined = answers.iter().position(|e| e.source.is_some()).unwrap_or(0);
    Ok(answers.swap_remove(defined))
}
