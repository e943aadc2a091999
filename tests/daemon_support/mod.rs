//! Runs the built `capstan run` binary for daemon tests: a config in a temp
//! folder, JSON logs captured to a file, HTTP calls to its server, SIGTERM.
//! Every wait has a deadline and panics with the daemon's log when it passes.
//!
//! A crate that declares `mod daemon_support;` also declares `mod support;` and
//! `registry_support` (`#[path = "registry_support/mod.rs"]`): the helpers here use both.
#![allow(dead_code)]

pub mod gitea_repo;
pub mod sync_target;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::registry_support::registry::{Options, Registry};

/// The token the tests' registries send with their push notifications; the daemon
/// reads it from `REGISTRY_TOKEN` (`registryWebhookTokenEnv`).
pub const REGISTRY_TOKEN: &str = "registry-token-for-tests";

/// A registry that sends its push notifications to the daemon on `port`, with
/// [`REGISTRY_TOKEN`].
pub fn notifying_registry(port: u16) -> Registry {
    Registry::start(Options {
        notify: Some(format!(
            "http://127.0.0.1:{port}/hooks/registry?token={REGISTRY_TOKEN}"
        )),
        ..Options::default()
    })
}

pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    log: PathBuf,
    pub http: reqwest::Client,
}

impl Daemon {
    /// Starts `capstan run -c <config>` in the config's folder, with `env`, and
    /// waits until it answers `/healthz`.
    pub async fn up(config: &Path, port: u16, env: &[(&str, &str)]) -> Daemon {
        Daemon::up_with(config, port, env, &[]).await
    }

    /// As [`Daemon::up`], with more arguments for `run`.
    pub async fn up_with(
        config: &Path,
        port: u16,
        env: &[(&str, &str)],
        run_args: &[&str],
    ) -> Daemon {
        let mut d = Daemon::start(config, port, env, run_args);
        d.wait_up().await;
        d
    }

    fn start(config: &Path, port: u16, env: &[(&str, &str)], run_args: &[&str]) -> Daemon {
        let dir = config.parent().expect("config folder");
        let log = dir.join(format!("capstan-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("capstan"));
        cmd.args(["--log-format", "json", "run"])
            .args(run_args)
            .arg("-c")
            .arg(config)
            .current_dir(dir)
            .env_remove("CAPSTAN_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("capstan run starts");
        Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            http: crate::registry_support::push::client(None),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `/healthz` answers.
    pub async fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("capstan run exited early ({status}); log:\n{}", self.log());
            }
            if let Ok(r) = self.http.get(format!("{}/healthz", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "capstan run did not answer /healthz; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
        let mut req = self.http.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("POST");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// The value of one sample (`name{labels}` exactly as exposed), if present.
    pub async fn sample(&self, series: &str) -> Option<f64> {
        self.metrics().await.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// `capstan_update_scans_total` for `policy` and `result` (0 when not exposed yet).
    pub async fn update_scans(&self, policy: &str, result: &str) -> f64 {
        self.sample(&format!(
            "capstan_update_scans_total{{policy=\"{policy}\",result=\"{result}\"}}"
        ))
        .await
        .unwrap_or(0.0)
    }

    /// Polls `check` until it is true; panics with `what` and the log after `timeout`.
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for a log event whose `message` is `message` and whose fields
    /// contain every `(key, value)` (as a substring); returns it. Fields are
    /// looked up in the raw line, so that span fields (nested under `spans`)
    /// count too.
    pub async fn wait_event(
        &self,
        message: &str,
        fields: &[(&str, &str)],
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.log().lines().find_map(|line| {
                let event: serde_json::Value = serde_json::from_str(line).ok()?;
                (event["message"] == message
                    && fields
                        .iter()
                        .all(|(k, v)| field_values(line, k).iter().any(|x| x.contains(v))))
                .then_some(event)
            });
            if let Some(event) = found {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for log event {message:?} with {fields:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit.
    /// `kill -9`: no chance to finish anything.
    pub fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "capstan run did not exit within {timeout:?} of SIGTERM; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every string value of `key` in a JSON log line (escapes left as they are).
fn field_values<'a>(line: &'a str, key: &str) -> Vec<&'a str> {
    let needle = format!("\"{key}\":\"");
    let starts: Vec<usize> = line.match_indices(&needle).map(|(i, _)| i).collect();
    starts
        .into_iter()
        .filter_map(|i| {
            let rest = &line[i + needle.len()..];
            let mut escaped = false;
            let end = rest.char_indices().find(|&(_, c)| {
                let stop = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                stop
            })?;
            Some(&rest[..end.0])
        })
        .collect()
}

pub fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// `server:` settings for tests: the port, 5 s shutdown bound, and the given extras.
pub fn server_yaml(port: u16, extra: &str) -> String {
    format!("server:\n  address: 127.0.0.1:{port}\n  shutdownTimeout: 5s\n{extra}")
}
