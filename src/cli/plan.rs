//! `capstan plan --target NAME`: what a sync would change, field by field; dry-runs
//! only, nothing is written.

use std::path::PathBuf;
use std::process::ExitCode;

use capstan::config::Config;
use capstan::sync::engine::plan_target;
use capstan::sync::plan::render_text;
use capstan::sync::{SyncError, SyncOptions, client::client_for};

use super::{EXIT_BAD_INPUT, EXIT_NOTHING, OutputFormat};

#[derive(clap::Args)]
pub struct Args {
    #[arg(short, long, default_value = capstan::config::DEFAULT_FILE)]
    pub config: PathBuf,
    #[arg(long)]
    pub target: String,
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
    let (source, targets) = match super::sync::prepare(&config, &args.config, Some(&args.target)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let target = targets[0];
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_NOTHING);
        }
    };
    let result = runtime.block_on(async {
        let revision = source.fetch_async().await.map_err(SyncError::Fetch)?;
        eprintln!("planning {} at {}", args.target, revision.short());
        let client = client_for(target).await?;
        plan_target(&client, &SyncOptions::from_target(target, &revision.root)).await
    });
    match result {
        Ok(entries) => {
            match args.output {
                OutputFormat::Text => print!("{}", render_text(&entries)),
                OutputFormat::Json => match serde_json::to_string_pretty(&entries) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_NOTHING);
                    }
                },
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", args.target);
            ExitCode::from(if e.is_bad_input() {
                EXIT_BAD_INPUT
            } else {
                EXIT_NOTHING
            })
        }
    }
}
