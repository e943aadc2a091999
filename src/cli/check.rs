//! `capstan check`: validate configuration and policies without touching anything.

use std::path::Path;
use std::process::ExitCode;

pub fn run(config_path: &Path) -> ExitCode {
    let (config, policies) = match super::load_config_and_policies(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
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
