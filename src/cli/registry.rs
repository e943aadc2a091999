//! `capstan registry tags`: an image's tags, straight from its registry, one per
//! line in the registry's order (`-o json` adds registry, repository and the
//! number of HTTP requests it took). Registry settings (credentials, CA file,
//! plain HTTP, budget) come from `capstan.yaml` when there is one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use capstan::config::{self, Config};
use capstan::registry::transport::ClientOptions;
use capstan::registry::{ImageRef, ScanOptions, Scanner};

use super::{EXIT_BAD_INPUT, EXIT_NOTHING, OutputFormat};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List an image's tags, one per line, in the registry's order.
    Tags(TagsArgs),
}

#[derive(clap::Args)]
pub struct TagsArgs {
    /// Image reference, e.g. `nginx`, `ghcr.io/acme/app`, `localhost:5000/app`.
    image: String,
    /// Configuration file with `registries:` settings (default: `capstan.yaml`
    /// when it exists).
    #[arg(short, long)]
    config: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub fn run(command: &Command) -> ExitCode {
    match command {
        Command::Tags(args) => tags(args),
    }
}

fn tags(args: &TagsArgs) -> ExitCode {
    let image = match ImageRef::parse(&args.image) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let registries = match load_registries(args.config.as_deref()) {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_NOTHING);
        }
    };
    let scanner = Scanner::from_config(
        &registries,
        ClientOptions::default(),
        ScanOptions::default(),
    );
    let result = runtime.block_on(async {
        let client = scanner.client(&image.registry)?;
        let tags = client.list_tags(&image.repository).await?;
        let requests = client
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok::<_, capstan::registry::Error>((tags, requests))
    });
    let (tags, requests) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_NOTHING);
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = match args.output {
        OutputFormat::Text => tags.iter().try_for_each(|t| writeln!(out, "{t}")),
        OutputFormat::Json => {
            let doc = serde_json::json!({
                "registry": image.registry,
                "repository": image.repository,
                "tags": tags,
                "requests": requests,
            });
            serde_json::to_writer_pretty(&mut out, &doc)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        }
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write output: {e}");
            ExitCode::from(EXIT_NOTHING)
        }
    }
}

/// `registries:` from the given config file, or from `capstan.yaml` in the
/// current folder when it exists; none otherwise.
pub(crate) fn load_registries(path: Option<&Path>) -> Result<Vec<config::Registry>, String> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => {
            let default = PathBuf::from(config::DEFAULT_FILE);
            if !default.exists() {
                return Ok(Vec::new());
            }
            default
        }
    };
    Config::load(&path)
        .map(|c| c.registries)
        .map_err(|e| e.to_string())
}

/// A small runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
