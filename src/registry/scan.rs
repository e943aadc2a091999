//! Scanning: for each policy, the image's tags from its registry, the policy's
//! [`Decision`] over them, and — only where needed — the chosen tag's digest
//! (policies with `digest: pin`) and config (created time, OCI labels).
//!
//! Scans run concurrently; each registry has its own client, budget and
//! concurrency cap, so a slow or dead registry only delays its own images. A
//! scan that fails, or does not finish within the deadline, yields a *stale*
//! result: the error, plus the last good result for that policy if there was
//! one, so a caller can keep what it had. Config blobs are cached by manifest
//! digest (manifests are immutable by digest), so a tag that did not move costs
//! one `HEAD` on the next scan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{ImageInfo, RegistryClient};
use super::error::{Error, ErrorKind};
use super::reference::{ImageRef, normalize_registry};
use super::transport::{ClientOptions, RegistrySettings};
use super::webhook::PushEvent;
use crate::policy::{self, Decision, DigestMode, ImagePolicy};

/// What a scan fetches beyond the tag list.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Resolve the chosen tag's digest even when the policy does not pin.
    pub always_resolve_digest: bool,
    /// Read the chosen image's config blob (created time, labels).
    pub fetch_info: bool,
    /// A scan that takes longer is abandoned and reported stale.
    pub deadline: Duration,
    /// Config entries kept in the by-digest cache.
    pub info_cache_entries: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            always_resolve_digest: false,
            fetch_info: false,
            deadline: Duration::from_secs(300),
            info_cache_entries: 4096,
        }
    }
}

/// The chosen tag, with what was fetched about it.
#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    pub tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ImageInfo>,
}

impl Chosen {
    /// `tag@sha256:…` when the digest is known, else `tag`.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.tag),
            None => self.tag.clone(),
        }
    }
}

/// A successful scan.
#[derive(Debug, Clone, Serialize)]
pub struct Scanned {
    /// Tags in the registry's order.
    pub tags: Vec<String>,
    pub decision: Decision,
    pub chosen: Option<Chosen>,
}

#[derive(Debug)]
pub enum Outcome {
    Fresh(Scanned),
    /// The scan failed; `last_good` is the previous successful result, if any.
    Stale {
        error: Error,
        last_good: Option<Scanned>,
    },
}

#[derive(Debug)]
pub struct ScanResult {
    pub policy: String,
    /// The image as written in the policy.
    pub image: String,
    pub registry: String,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

impl ScanResult {
    pub fn is_stale(&self) -> bool {
        matches!(self.outcome, Outcome::Stale { .. })
    }
    pub fn fresh(&self) -> Option<&Scanned> {
        match &self.outcome {
            Outcome::Fresh(s) => Some(s),
            Outcome::Stale { .. } => None,
        }
    }
    pub fn error(&self) -> Option<&Error> {
        match &self.outcome {
            Outcome::Stale { error, .. } => Some(error),
            Outcome::Fresh(_) => None,
        }
    }
}

/// Scans policies against their registries. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Scanner {
    configured: HashMap<String, Result<RegistrySettings, String>>,
    clients: Mutex<HashMap<String, Arc<RegistryClient>>>,
    options: ClientOptions,
    scan: ScanOptions,
    info_cache: Mutex<HashMap<String, ImageInfo>>,
    last_good: Mutex<HashMap<String, Scanned>>,
}

impl Scanner {
    /// `registries`: the configured ones; a registry that fails to configure
    /// (`Err(reason)`) makes its images stale with that reason. Registries not
    /// listed are used anonymously over HTTPS.
    pub fn new(
        registries: Vec<(String, Result<RegistrySettings, String>)>,
        options: ClientOptions,
        scan: ScanOptions,
    ) -> Scanner {
        Scanner {
            configured: registries
                .into_iter()
                .map(|(host, s)| (normalize_registry(&host), s))
                .collect(),
            clients: Mutex::new(HashMap::new()),
            options,
            scan,
            info_cache: Mutex::new(HashMap::new()),
            last_good: Mutex::new(HashMap::new()),
        }
    }

    /// From the `registries[]` of `capstan.yaml`.
    pub fn from_config(
        registries: &[crate::config::Registry],
        options: ClientOptions,
        scan: ScanOptions,
    ) -> Scanner {
        let entries = registries
            .iter()
            .map(|r| (r.host.value.clone(), RegistrySettings::from_config(r)))
            .collect();
        Scanner::new(entries, options, scan)
    }

    /// The client for a registry, built on first use.
    pub fn client(&self, registry: &str) -> Result<Arc<RegistryClient>, Error> {
        let registry = normalize_registry(registry);
        let mut clients = lock(&self.clients);
        if let Some(c) = clients.get(&registry) {
            return Ok(c.clone());
        }
        let settings = match self.configured.get(&registry) {
            Some(Ok(s)) => s.clone(),
            Some(Err(reason)) => {
                return Err(Error {
                    registry,
                    image: "-".into(),
                    kind: ErrorKind::Credentials(reason.clone()),
                });
            }
            None => RegistrySettings::anonymous(&registry),
        };
        let client = Arc::new(RegistryClient::new(settings, self.options.clone())?);
        clients.insert(registry, client.clone());
        Ok(client)
    }

    /// `host` proved it is up (it sent a push notification): its cool-down
    /// after an outage ends now, so the scans the notification triggers reach
    /// it instead of failing at once. Returns how much of the cool-down was
    /// left; `None` when `host` was not marked down (or has no client yet).
    /// Logs once when a cool-down ends.
    pub fn mark_up(&self, host: &str, why: &str) -> Option<Duration> {
        let registry = normalize_registry(host);
        let client = lock(&self.clients).get(&registry).cloned()?;
        let left = client.transport().mark_up()?;
        tracing::info!(registry = %registry, reason = why, cooldown_left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX), "registry marked up");
        Some(left)
    }

    /// How much of `host`'s cool-down is left, when it is marked down.
    pub fn down_for(&self, host: &str) -> Option<Duration> {
        let registry = normalize_registry(host);
        let client = lock(&self.clients).get(&registry).cloned()?;
        client.transport().down_for()
    }

    /// Scans every policy at once; results come back in the same order.
    pub async fn scan_all(&self, policies: &[ImagePolicy]) -> Vec<ScanResult> {
        futures::future::join_all(policies.iter().map(|p| self.scan(p))).await
    }

    /// Rescans the policies a push notification concerns.
    pub async fn scan_event(&self, event: &PushEvent, policies: &[ImagePolicy]) -> Vec<ScanResult> {
        let affected: Vec<ImagePolicy> = super::webhook::affected(event, policies)
            .into_iter()
            .cloned()
            .collect();
        self.scan_all(&affected).await
    }

    /// Scans one policy. Never fails: failures come back as stale results.
    pub async fn scan(&self, policy: &ImagePolicy) -> ScanResult {
        let started = Instant::now();
        let (registry, result) = match ImageRef::parse(&policy.image) {
            Ok(image) => {
                let registry = image.registry.clone();
                let result =
                    match tokio::time::timeout(self.scan.deadline, self.scan_image(policy, &image))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(Error {
                            registry: image.registry.clone(),
                            image: image.repository.clone(),
                            kind: ErrorKind::Deadline(self.scan.deadline),
                        }),
                    };
                (registry, result)
            }
            Err(e) => (
                "-".to_string(),
                Err(Error {
                    registry: "-".into(),
                    image: policy.image.clone(),
                    kind: ErrorKind::Setup(e.to_string()),
                }),
            ),
        };
        let outcome = match result {
            Ok(scanned) => {
                tracing::info!(policy = %policy.name, image = %policy.image, registry = %registry, tags = scanned.tags.len(), chosen = ?scanned.chosen.as_ref().map(Chosen::reference), "scanned");
                lock(&self.last_good).insert(policy.name.clone(), scanned.clone());
                Outcome::Fresh(scanned)
            }
            Err(error) => {
                tracing::warn!(policy = %policy.name, image = %policy.image, registry = %registry, error = %error, "image is stale");
                Outcome::Stale {
                    error,
                    last_good: lock(&self.last_good).get(&policy.name).cloned(),
                }
            }
        };
        ScanResult {
            policy: policy.name.clone(),
            image: policy.image.clone(),
            registry,
            outcome,
            elapsed: started.elapsed(),
        }
    }

    async fn scan_image(&self, policy: &ImagePolicy, image: &ImageRef) -> Result<Scanned, Error> {
        let client = self.client(&image.registry)?;
        let repo = image.repository.as_str();
        let tags = client.list_tags(repo).await?;
        let decision = policy::select(policy, &tags);
        let chosen = match decision.chosen.clone() {
            None => None,
            Some(tag) => {
                let want_digest =
                    policy.digest == DigestMode::Pin || self.scan.always_resolve_digest;
                let mref = if want_digest || self.scan.fetch_info {
                    Some(client.resolve(repo, &tag).await?)
                } else {
                    None
                };
                let info = match (&mref, self.scan.fetch_info) {
                    (Some(m), true) => Some(self.info(&client, repo, &m.digest).await?),
                    _ => None,
                };
                Some(Chosen {
                    tag,
                    digest: mref.filter(|_| want_digest).map(|m| m.digest),
                    info,
                })
            }
        };
        Ok(Scanned {
            tags,
            decision,
            chosen,
        })
    }

    /// Config of a manifest, from the cache or the registry.
    async fn info(
        &self,
        client: &RegistryClient,
        repo: &str,
        digest: &str,
    ) -> Result<ImageInfo, Error> {
        let key = format!("{}/{repo}@{digest}", client.registry());
        if let Some(hit) = lock(&self.info_cache).get(&key) {
            return Ok(hit.clone());
        }
        let info = client.image_info(repo, digest).await?;
        let mut cache = lock(&self.info_cache);
        if cache.len() >= self.scan.info_cache_entries {
            cache.clear();
        }
        cache.insert(key, info.clone());
        Ok(info)
    }

    /// Number of configs in the cache.
    pub fn cached_configs(&self) -> usize {
        lock(&self.info_cache).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DigestMode, Order, Strategy};
    use crate::registry::limits::RetryPolicy;

    fn policy(image: &str) -> ImagePolicy {
        ImagePolicy {
            name: "app".into(),
            namespace: None,
            image: image.into(),
            filter: None,
            exclude: vec![],
            strategy: Strategy::Alphabetical(Order::Asc),
            digest: DigestMode::Tag,
            source: "p.yaml".into(),
        }
    }

    /// A scanner for one plain-HTTP registry on a loopback port nothing
    /// listens on, with a one-minute cool-down and no retries.
    fn scanner() -> (Scanner, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        drop(listener);
        let settings = RegistrySettings {
            insecure: true,
            ..RegistrySettings::anonymous(&host)
        };
        let options = ClientOptions {
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            down_cooldown: Duration::from_secs(60),
            ..ClientOptions::default()
        };
        let scanner = Scanner::new(
            vec![(host.clone(), Ok(settings))],
            options,
            ScanOptions::default(),
        );
        (scanner, host)
    }

    fn kind(result: &ScanResult) -> &ErrorKind {
        &result.error().expect("stale").kind
    }

    #[tokio::test]
    async fn mark_up_by_host_lets_the_next_scan_reach_the_registry() {
        let (scanner, host) = scanner();
        let p = policy(&format!("{host}/acme/app"));
        assert_eq!(scanner.mark_up(&host, "test"), None, "no client yet");
        assert!(
            lock(&scanner.clients).is_empty(),
            "mark_up builds no client"
        );

        let first = scanner.scan(&p).await;
        assert!(
            matches!(kind(&first), ErrorKind::Connect { .. }),
            "{first:?}"
        );
        assert!(scanner.down_for(&host).is_some(), "marked down");
        let second = scanner.scan(&p).await;
        assert!(matches!(kind(&second), ErrorKind::Down(_)), "{second:?}");

        // Another host's notification changes nothing here.
        assert_eq!(scanner.mark_up("127.0.0.1:1", "test"), None);
        assert!(scanner.down_for(&host).is_some());

        let left = scanner.mark_up(&host, "test").expect("was marked down");
        assert!(left <= Duration::from_secs(60), "{left:?}");
        assert_eq!(scanner.down_for(&host), None);
        assert_eq!(scanner.mark_up(&host, "test"), None, "ended once");
        let sent = scanner
            .client(&host)
            .expect("client")
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        let third = scanner.scan(&p).await;
        assert!(
            matches!(kind(&third), ErrorKind::Connect { .. }),
            "the scan went to the registry again: {third:?}"
        );
        assert_eq!(
            scanner
                .client(&host)
                .expect("client")
                .stats()
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
            sent + 1
        );
    }
}
