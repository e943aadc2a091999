//! `capstan policy eval`: run one policy over a list of tags, from a file or
//! (`--live`) from the image's registry.
//!
//! Output contract for scripts: in text mode the chosen tag is the last line of
//! stdout (with `--explain`, one line per tag comes before it; with `--live` and
//! `digest: pin`, the line is `tag@sha256:…`); when no tag qualifies, or the
//! registry cannot be read, exit 1 with a one-line reason on stderr; bad input
//! exits 2.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use capstan::policy::{self, Decision, DigestMode};
use capstan::registry::transport::ClientOptions;
use capstan::registry::{Outcome, ScanOptions, Scanner};

use super::{EXIT_BAD_INPUT, EXIT_NOTHING, OutputFormat};

#[derive(clap::Args)]
pub struct Args {
    /// A policy file holding exactly one ImagePolicy.
    policy_file: PathBuf,
    /// Tags, one per line (`-` for stdin); a registry `tags/list` JSON answer also works.
    #[arg(long, required_unless_present = "live", conflicts_with = "live")]
    tags_file: Option<PathBuf>,
    /// Read the tags from the image's registry instead of a file.
    #[arg(long)]
    live: bool,
    /// With `--live`: configuration file with `registries:` settings (default:
    /// `capstan.yaml` when it exists).
    #[arg(short, long, conflicts_with = "tags_file")]
    config: Option<PathBuf>,
    /// Say for every tag why it was or was not chosen.
    #[arg(long)]
    explain: bool,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub fn run(args: &Args) -> ExitCode {
    let policy = match load_single_policy(&args.policy_file) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let (decision, digest) = match &args.tags_file {
        Some(file) => match read_tags(file) {
            Ok(tags) => (policy::select(&policy, &tags), None),
            Err(msg) => {
                eprintln!("error: {}: {msg}", file.display());
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        },
        None => match live(&policy, args.config.as_deref()) {
            Ok(found) => found,
            Err(code) => return code,
        },
    };
    tracing::debug!(policy = %policy.name, tags = decision.tags.len(), chosen = ?decision.chosen, "policy evaluated");

    match args.output {
        OutputFormat::Json => match serde_json::to_string_pretty(&LiveDecision {
            decision: &decision,
            digest: digest.as_deref(),
        }) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: cannot encode decision: {e}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        },
        OutputFormat::Text => {
            if args.explain {
                let width = decision.tags.iter().map(|t| t.tag.len()).max().unwrap_or(0);
                for t in &decision.tags {
                    match &t.value {
                        Some(v) => println!("{:width$}  {} (value {v})", t.tag, t.verdict),
                        None => println!("{:width$}  {}", t.tag, t.verdict),
                    }
                }
                if policy.digest == DigestMode::Pin && !args.live {
                    eprintln!(
                        "note: policy pins digests; the digest is resolved from the registry, not from a tags file"
                    );
                }
            }
            if let Some(tag) = &decision.chosen {
                match &digest {
                    Some(d) => println!("{tag}@{d}"),
                    None => println!("{tag}"),
                }
            }
        }
    }
    match decision.chosen {
        Some(_) => ExitCode::SUCCESS,
        None => {
            eprintln!("{}", decision.no_choice_summary());
            ExitCode::from(EXIT_NOTHING)
        }
    }
}

/// The decision as JSON, plus the digest of the chosen tag when resolved.
#[derive(serde::Serialize)]
struct LiveDecision<'a> {
    #[serde(flatten)]
    decision: &'a Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
}

/// Scans the policy's image in its registry: the decision, and the chosen
/// tag's digest when the policy pins digests.
fn live(
    policy: &policy::ImagePolicy,
    config: Option<&Path>,
) -> Result<(Decision, Option<String>), ExitCode> {
    let registries = super::registry::load_registries(config).map_err(|msg| {
        eprintln!("error: {msg}");
        ExitCode::from(EXIT_BAD_INPUT)
    })?;
    let runtime = super::registry::runtime().map_err(|msg| {
        eprintln!("error: {msg}");
        ExitCode::from(EXIT_NOTHING)
    })?;
    let scanner = Scanner::from_config(
        &registries,
        ClientOptions::default(),
        ScanOptions::default(),
    );
    let result = runtime.block_on(scanner.scan(policy));
    match result.outcome {
        Outcome::Fresh(scanned) => {
            let digest = scanned.chosen.and_then(|c| c.digest);
            Ok((scanned.decision, digest))
        }
        Outcome::Stale { error, .. } => {
            eprintln!("error: policy `{}`: {error}", policy.name);
            Err(ExitCode::from(EXIT_NOTHING))
        }
    }
}

fn load_single_policy(path: &Path) -> Result<policy::ImagePolicy, String> {
    let mut policies = policy::load_file(path).map_err(|e| e.to_string())?;
    match policies.len() {
        1 => Ok(policies.remove(0)),
        n => Err(format!(
            "{}: holds {n} policies; `policy eval` takes a file with exactly one",
            path.display()
        )),
    }
}

fn read_tags(path: &Path) -> Result<Vec<String>, String> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| e.to_string())?;
        s
    } else {
        if path.is_dir() {
            return Err("is a directory, expected a file of tags".into());
        }
        std::fs::read_to_string(path).map_err(|e| e.to_string())?
    };
    if text.trim_start().starts_with('{') {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let list: TagList =
            serde_json::from_str(&text).map_err(|e| format!("invalid tags/list JSON: {e}"))?;
        return Ok(list.tags.unwrap_or_default());
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}
