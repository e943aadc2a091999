//! Sending one logical request to a registry: through the concurrency cap and
//! request budget, with the right `Authorization`, retried on 429/5xx/timeouts,
//! with its body read under a size cap.
//!
//! A 401 is answered once: the challenge tells whether the registry wants basic
//! credentials or a bearer token (fetched from the realm, cached per scope), and
//! the request is sent again; a second 401 is an authentication error. When all
//! retries of a request end in an outage (connection refused, timeouts, 5xx) the
//! registry is marked down for a cool-down period, during which requests fail at
//! once: its images go stale quickly instead of each waiting out its retries.
//! The cool-down ends early on any answer from the registry, or when something
//! else proves it is up ([`Transport::mark_up`]: the daemon calls it, through
//! [`Scanner::mark_up`](super::Scanner::mark_up), when the registry sends a
//! push notification).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::auth::{
    Authenticator, CredentialSource, DockerConfig, TokenResponse, TokenService, parse_challenges,
};
use super::error::{Error, ErrorKind};
use super::limits::{BodyLimits, Limiter, RetryPolicy, parse_retry_after};
use super::reference::{endpoint_host, normalize_registry};

/// How to reach and authenticate to one registry.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Canonical registry name (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub registry: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// Extra CA certificates (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    pub credentials: CredentialSource,
    pub requests_per_minute: u32,
    pub concurrency: u32,
}

impl RegistrySettings {
    /// An unconfigured registry: HTTPS, anonymous, default budget.
    pub fn anonymous(registry: &str) -> RegistrySettings {
        RegistrySettings {
            registry: normalize_registry(registry),
            insecure: false,
            ca_file: None,
            credentials: CredentialSource::Anonymous,
            requests_per_minute: 300,
            concurrency: 8,
        }
    }

    /// From the `registries[]` entry of `capstan.yaml`. Reads credential
    /// environment variables and docker config files now.
    pub fn from_config(reg: &crate::config::Registry) -> Result<RegistrySettings, String> {
        let credentials = match reg.credentials.as_ref().map(|c| &c.value) {
            None => CredentialSource::Anonymous,
            Some(c) => {
                if let Some(basic) = &c.basic {
                    CredentialSource::from_env(&basic.username_env, &basic.password_env)?
                } else if let Some(path) = &c.docker_config {
                    CredentialSource::DockerConfig(DockerConfig::load(path)?)
                } else {
                    CredentialSource::Anonymous
                }
            }
        };
        Ok(RegistrySettings {
            registry: normalize_registry(&reg.host.value),
            insecure: reg.insecure,
            ca_file: reg.ca_file.clone(),
            credentials,
            requests_per_minute: reg.requests_per_minute,
            concurrency: reg.concurrency,
        })
    }
}

/// Tunables that are the same for every registry.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole request, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    pub limits: BodyLimits,
    /// `n` asked for on `tags/list`; registries may return fewer per page.
    pub page_size: u32,
    /// The window `requests_per_minute` applies to; one minute except in
    /// tests and benchmarks, which scale it down.
    pub budget_window: Duration,
    /// How long a registry stays marked down after an outage.
    pub down_cooldown: Duration,
    pub user_agent: String,
    /// Platform chosen from multi-arch indexes, as `os/architecture`.
    pub platform: (String, String),
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            limits: BodyLimits::default(),
            page_size: 1000,
            budget_window: Duration::from_secs(60),
            down_cooldown: Duration::from_secs(30),
            user_agent: format!("capstan/{}", env!("CARGO_PKG_VERSION")),
            platform: ("linux".into(), "amd64".into()),
        }
    }
}

/// Counters, for reports and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    /// HTTP requests sent, retries and token requests included.
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub token_requests: AtomicU64,
}

/// A response that was read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    /// The final URL, after redirects.
    pub url: Url,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `application/json` from `application/json; charset=utf-8`.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type")
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|v| !v.is_empty())
    }

    /// The registry's own error message (`{"errors":[{"code","message"}]}`), if any.
    pub fn error_message(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let parsed: Errors = serde_json::from_slice(&self.body).ok()?;
        let text: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{} ({})", e.message, e.code),
                (true, false) => e.message.clone(),
                _ => e.code.clone(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        (!text.is_empty()).then(|| text.join("; "))
    }
}

/// One request as the client layer describes it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub accept: &'a [&'a str],
    /// Token scope, e.g. `repository:acme/app:pull`.
    pub scope: Option<String>,
    /// Body size cap for a successful answer.
    pub limit: usize,
    /// Repository the request is about, for error messages.
    pub image: &'a str,
}

/// The connection to one registry.
#[derive(Debug)]
pub struct Transport {
    registry: String,
    base: Url,
    http: reqwest::Client,
    auth: Authenticator,
    limiter: Limiter,
    options: ClientOptions,
    down_until: Mutex<Option<Instant>>,
    stats: Stats,
}

impl Transport {
    pub fn new(settings: RegistrySettings, options: ClientOptions) -> Result<Transport, Error> {
        let registry = settings.registry.clone();
        let setup = |reason: String| Error {
            registry: registry.clone(),
            image: "-".into(),
            kind: ErrorKind::Setup(reason),
        };
        let scheme = if settings.insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", endpoint_host(&registry)))
            .map_err(|e| setup(format!("cannot build a URL for the registry: {e}")))?;
        let tls = tls_config(settings.ca_file.as_deref()).map_err(setup)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .user_agent(options.user_agent.clone())
            .pool_max_idle_per_host(settings.concurrency.max(1) as usize)
            .build()
            .map_err(|e| setup(format!("cannot build the HTTP client: {}", error_chain(&e))))?;
        Ok(Transport {
            auth: Authenticator::new(&registry, settings.credentials),
            limiter: Limiter::new(
                settings.requests_per_minute,
                options.budget_window,
                settings.concurrency,
            ),
            registry,
            base,
            http,
            options,
            down_until: Mutex::new(None),
            stats: Stats::default(),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    pub fn error(&self, image: &str, kind: ErrorKind) -> Error {
        Error {
            registry: self.registry.clone(),
            image: image.to_string(),
            kind,
        }
    }

    /// Sends `req`, authenticating when asked to. Any status other than 401 is
    /// returned to the caller; 429/5xx/network failures are retried first.
    pub async fn send(&self, req: &Request<'_>) -> Result<Reply, Error> {
        self.check_down(req.image)?;
        let scope = req.scope.as_deref().unwrap_or("");
        let mut authorization = self.authorization(scope, req.image).await?;
        let mut answered_challenge = false;
        loop {
            let reply = self
                .exchange(req, authorization.as_deref())
                .await
                .map_err(|kind| self.error(req.image, kind))?;
            if reply.status != StatusCode::UNAUTHORIZED {
                return Ok(reply);
            }
            let message = reply.error_message();
            if answered_challenge {
                self.auth.invalidate(scope);
                let has_credentials = matches!(self.auth.credentials().await, Ok(Some(_)));
                let why = if has_credentials {
                    "the registry refused the credentials"
                } else {
                    "the registry requires credentials and none are configured"
                };
                return Err(self.error(
                    req.image,
                    ErrorKind::Unauthorized(with_message(why, message)),
                ));
            }
            answered_challenge = true;
            self.auth.invalidate(scope);
            authorization = self.answer_challenge(&reply, scope, req.image).await?;
        }
    }

    /// The `Authorization` to send up front: a cached token, a fresh token once
    /// the registry is known to use tokens, or basic credentials.
    async fn authorization(&self, scope: &str, image: &str) -> Result<Option<String>, Error> {
        if let Some(header) = self.auth.cached_header(scope).await {
            return Ok(Some(header));
        }
        if let Some(service) = self.auth.token_service() {
            return self.fetch_token(&service, scope, image).await.map(Some);
        }
        Ok(None)
    }

    async fn answer_challenge(
        &self,
        reply: &Reply,
        scope: &str,
        image: &str,
    ) -> Result<Option<String>, Error> {
        let header = reply
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if header.is_empty() {
            return Err(self.error(
                image,
                ErrorKind::Unauthorized(with_message(
                    "HTTP 401 without a WWW-Authenticate challenge",
                    reply.error_message(),
                )),
            ));
        }
        let challenges = parse_challenges(&header).map_err(|e| {
            self.error(
                image,
                ErrorKind::InvalidResponse {
                    url: reply.url.to_string(),
                    reason: format!("bad WWW-Authenticate `{header}`: {e}"),
                },
            )
        })?;
        let service = self
            .auth
            .learn(&challenges)
            .map_err(|e| self.error(image, ErrorKind::Unauthorized(e)))?;
        match service {
            Some(service) => {
                // The registry may name the scope it wants; ask for that one but
                // cache under ours, which is what later requests look up.
                let wanted = challenges
                    .iter()
                    .find(|c| c.scheme == "bearer")
                    .and_then(|c| c.param("scope"))
                    .map(str::to_string);
                let token_scope = wanted.unwrap_or_else(|| scope.to_string());
                let header = self.request_token(&service, &token_scope, image).await?;
                self.store(scope, &header, image)
            }
            None => {
                let creds = self
                    .auth
                    .credentials()
                    .await
                    .map_err(|e| self.error(image, ErrorKind::Credentials(e)))?;
                match creds {
                    Some(c) => Ok(Some(c.header_value())),
                    None => Err(self.error(
                        image,
                        ErrorKind::Unauthorized(with_message(
                            "the registry requires credentials (basic auth) and none are configured",
                            reply.error_message(),
                        )),
                    )),
                }
            }
        }
    }

    fn store(
        &self,
        scope: &str,
        response: &TokenResponse,
        image: &str,
    ) -> Result<Option<String>, Error> {
        self.auth
            .store_token(scope, response)
            .map(Some)
            .map_err(|reason| {
                self.error(
                    image,
                    ErrorKind::InvalidResponse {
                        url: "token service".into(),
                        reason,
                    },
                )
            })
    }

    /// A token for `scope`, from the cache or the realm (one fetch at a time).
    async fn fetch_token(
        &self,
        service: &TokenService,
        scope: &str,
        image: &str,
    ) -> Result<String, Error> {
        let _one_at_a_time = self.auth.fetch_lock.lock().await;
        if let Some(header) = self.auth.cached_token(scope) {
            return Ok(header);
        }
        let response = self.request_token(service, scope, image).await?;
        self.store(scope, &response, image)?
            .ok_or_else(|| self.error(image, ErrorKind::Unauthorized("empty token".into())))
    }

    async fn request_token(
        &self,
        service: &TokenService,
        scope: &str,
        image: &str,
    ) -> Result<TokenResponse, Error> {
        let mut url = Url::parse(&service.realm).map_err(|e| {
            self.error(
                image,
                ErrorKind::InvalidResponse {
                    url: service.realm.clone(),
                    reason: format!("bad token realm: {e}"),
                },
            )
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(s) = &service.service {
                query.append_pair("service", s);
            }
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                query.append_pair("scope", s);
            }
        }
        let creds = self
            .auth
            .credentials()
            .await
            .map_err(|e| self.error(image, ErrorKind::Credentials(e)))?;
        let authorization = creds.as_ref().map(|c| c.header_value());
        let req = Request {
            method: Method::GET,
            url,
            accept: &["application/json"],
            scope: None,
            limit: self.options.limits.token,
            image,
        };
        self.stats.token_requests.fetch_add(1, Ordering::Relaxed);
        let reply = self
            .exchange(&req, authorization.as_deref())
            .await
            .map_err(|kind| self.error(image, kind))?;
        match reply.status.as_u16() {
            200 => serde_json::from_slice::<TokenResponse>(&reply.body).map_err(|e| {
                self.error(
                    image,
                    ErrorKind::InvalidResponse {
                        url: reply.url.to_string(),
                        reason: format!("token response is not valid JSON: {e}"),
                    },
                )
            }),
            401 | 403 => {
                let who = if creds.is_some() {
                    "refused the credentials"
                } else {
                    "refused anonymous access"
                };
                Err(self.error(
                    image,
                    ErrorKind::Unauthorized(with_message(
                        &format!(
                            "token service {} {who} (HTTP {})",
                            service.realm,
                            reply.status.as_u16()
                        ),
                        reply.error_message(),
                    )),
                ))
            }
            status => Err(self.error(
                image,
                ErrorKind::Status {
                    url: reply.url.to_string(),
                    status,
                    message: reply.error_message(),
                },
            )),
        }
    }

    /// One request with retries for 429, 5xx and network failures. 401 and
    /// every other status come back as a `Reply`.
    async fn exchange(
        &self,
        req: &Request<'_>,
        authorization: Option<&str>,
    ) -> Result<Reply, ErrorKind> {
        let policy = &self.options.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= policy.max_attempts.max(1);
            let failure = match self.send_once(req, authorization).await {
                Ok(reply) => match reply.status.as_u16() {
                    429 => {
                        let retry_after = reply
                            .header(RETRY_AFTER.as_str())
                            .and_then(parse_retry_after);
                        let kind = ErrorKind::RateLimited {
                            url: reply.url.to_string(),
                            retry_after,
                        };
                        match retry_after {
                            Some(wait) if wait > policy.max_retry_after => return Err(kind),
                            _ if last => return Err(kind),
                            Some(wait) => {
                                tracing::info!(registry = %self.registry, image = req.image, wait_ms = wait.as_millis() as u64, "rate limited; waiting as asked by Retry-After");
                                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                            None => kind,
                        }
                    }
                    500 | 502 | 503 | 504 => ErrorKind::Status {
                        url: reply.url.to_string(),
                        status: reply.status.as_u16(),
                        message: reply.error_message(),
                    },
                    _ => {
                        self.mark_up();
                        return Ok(reply);
                    }
                },
                Err(kind) if kind.is_transient() => kind,
                Err(kind) => return Err(kind),
            };
            if last {
                if failure.is_outage() {
                    self.mark_down(req.image, &failure);
                }
                return Err(failure);
            }
            let wait = policy.backoff(attempt);
            tracing::debug!(registry = %self.registry, image = req.image, attempt, wait_ms = wait.as_millis() as u64, error = %failure, "retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once(
        &self,
        req: &Request<'_>,
        authorization: Option<&str>,
    ) -> Result<Reply, ErrorKind> {
        let _slot = self.limiter.acquire().await;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut builder = self.http.request(req.method.clone(), req.url.clone());
        if !req.accept.is_empty() {
            builder = builder.header(ACCEPT, req.accept.join(", "));
        }
        if let Some(a) = authorization {
            builder = builder.header(AUTHORIZATION, a);
        }
        let url = req.url.to_string();
        let mut response = builder.send().await.map_err(|e| self.classify(&url, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let final_url = response.url().clone();
        if req.method == Method::HEAD {
            return Ok(Reply {
                status,
                headers,
                body: bytes::Bytes::new(),
                url: final_url,
            });
        }
        let limit = if status.is_success() {
            req.limit
        } else {
            self.options.limits.error
        };
        let too_large = || ErrorKind::TooLarge {
            url: final_url.to_string(),
            limit,
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if status.is_success() && declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        if status.is_success() {
                            return Err(too_large());
                        }
                        // An error body only matters for its message: keep the start.
                        let room = limit.saturating_sub(body.len());
                        body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(ErrorKind::Timeout {
                        url,
                        timeout: self.options.timeout,
                    });
                }
                Err(e) => {
                    return Err(ErrorKind::InvalidResponse {
                        url: final_url.to_string(),
                        reason: format!(
                            "body truncated after {} bytes: {}",
                            body.len(),
                            error_chain(&e)
                        ),
                    });
                }
            }
        }
        Ok(Reply {
            status,
            headers,
            body: body.into(),
            url: final_url,
        })
    }

    fn classify(&self, url: &str, e: &reqwest::Error) -> ErrorKind {
        if e.is_timeout() {
            ErrorKind::Timeout {
                url: url.to_string(),
                timeout: self.options.timeout,
            }
        } else {
            ErrorKind::Connect {
                url: url.to_string(),
                reason: error_chain(e),
            }
        }
    }

    fn check_down(&self, image: &str) -> Result<(), Error> {
        let down = self
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|until| *until > Instant::now());
        match down {
            Some(until) => Err(self.error(
                image,
                ErrorKind::Down(until.saturating_duration_since(Instant::now())),
            )),
            None => Ok(()),
        }
    }

    fn mark_down(&self, image: &str, why: &ErrorKind) {
        if self.options.down_cooldown.is_zero() {
            return;
        }
        tracing::warn!(registry = %self.registry, image, error = %why, cooldown_s = self.options.down_cooldown.as_secs(), "registry marked down");
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + self.options.down_cooldown);
    }

    /// How much of the cool-down is left, when the registry is marked down.
    pub fn down_for(&self) -> Option<Duration> {
        self.down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// Ends the cool-down: the registry answered, or proved otherwise that it
    /// is up (it sent a push notification). Returns how much of the cool-down
    /// was left, `None` when the registry was not marked down.
    pub fn mark_up(&self) -> Option<Duration> {
        let left = self
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|until| until.saturating_duration_since(Instant::now()));
        left.filter(|l| !l.is_zero())
    }
}

fn with_message(what: &str, message: Option<String>) -> String {
    match message {
        Some(m) => format!("{what}: {m}"),
        None => what.to_string(),
    }
}

/// `a: b: c` from an error and its sources, without repeats.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// System roots plus the registry's own CA file, on rustls with ring.
pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("CA file {}: invalid PEM: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("CA file {} holds no certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("CA file {}: unusable certificate: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::debug!(error = %e, "skipping a system CA certificate");
        }
        loaded.certs
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback port nothing listens on: every connection is refused.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    fn transport(registry: &str, cooldown: Duration) -> Transport {
        let options = ClientOptions {
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            connect_timeout: Duration::from_secs(2),
            down_cooldown: cooldown,
            ..ClientOptions::default()
        };
        let settings = RegistrySettings {
            insecure: true,
            ..RegistrySettings::anonymous(registry)
        };
        Transport::new(settings, options).expect("transport")
    }

    fn request(t: &Transport) -> Request<'static> {
        Request {
            method: Method::GET,
            url: t.base().join("v2/").expect("url"),
            accept: &[],
            scope: None,
            limit: 1024,
            image: "acme/app",
        }
    }

    #[tokio::test]
    async fn an_outage_marks_down_and_mark_up_ends_the_cool_down() {
        let t = transport(
            &format!("127.0.0.1:{}", closed_port()),
            Duration::from_secs(60),
        );
        assert_eq!(t.down_for(), None);
        assert_eq!(t.mark_up(), None, "not marked down: nothing to end");

        let refused = t.send(&request(&t)).await.expect_err("refused");
        assert!(
            matches!(refused.kind, ErrorKind::Connect { .. }),
            "{refused}"
        );
        let left = t.down_for().expect("marked down after the outage");
        assert!(
            left > Duration::from_secs(55) && left <= Duration::from_secs(60),
            "{left:?}"
        );

        // During the cool-down a request fails at once, without being sent.
        let sent = t.stats().requests.load(Ordering::Relaxed);
        let down = t.send(&request(&t)).await.expect_err("down");
        assert!(matches!(down.kind, ErrorKind::Down(_)), "{down}");
        assert_eq!(t.stats().requests.load(Ordering::Relaxed), sent, "not sent");

        // Proof that the registry is up ends the cool-down: the next request
        // goes out again (and, the port still being closed, marks it down again).
        let left = t.mark_up().expect("the cool-down was in force");
        assert!(left > Duration::from_secs(55), "{left:?}");
        assert_eq!(t.down_for(), None);
        assert_eq!(t.mark_up(), None, "ended once");
        let refused = t.send(&request(&t)).await.expect_err("refused");
        assert!(
            matches!(refused.kind, ErrorKind::Connect { .. }),
            "{refused}"
        );
        assert_eq!(t.stats().requests.load(Ordering::Relaxed), sent + 1, "sent");
        assert!(t.down_for().is_some());
    }

    #[tokio::test]
    async fn a_zero_cool_down_never_marks_down() {
        let t = transport(&format!("127.0.0.1:{}", closed_port()), Duration::ZERO);
        for _ in 0..2 {
            let e = t.send(&request(&t)).await.expect_err("refused");
            assert!(matches!(e.kind, ErrorKind::Connect { .. }), "{e}");
        }
        assert_eq!(t.down_for(), None);
        assert_eq!(t.mark_up(), None);
    }
}
