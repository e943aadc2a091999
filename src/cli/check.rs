//! `capstan check`: validate configuration and policies without touching anything.

use std::path::Path;
use std::process::ExitCode;

use capstan::config::Config;
use capstan::policy;

use super::EXIT_BAD_INPUT;

pub fn run(config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let policies = match policy::load_dir(config.policies_dir()) {
        Ok(p) => p,
        Err(e) => {
            for err in e.errors() {
                eprintln!("error: {err}");
            }
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    println!(
        "{}: ok: repository {} (branch {}), {} policies, {} registries, {} targets, update mode {}",
        config_path.display(),
        config.repository.url.value,
        config.repository.branch.value,
        policies.len(),
        config.registries.len(),
        config.targets.len(),
        match config.update.mode.value {
            capstan::config::UpdateMode::Push => "push",
            capstan::config::UpdateMode::PullRequest => "pull-request",
        }
    );
    ExitCode::SUCCESS
}
