//! GitHub App authentication: a JWT signed with the App's private key is
//! exchanged for an installation access token, which is cached per installation.
//!
//! GitHub's tokens live one hour. The provider refreshes one at the latest 30
//! minutes after it was issued or 5 minutes before its `expires_at`, whichever
//! comes first, so a token handed to a long Git push or to another workload is
//! never about to expire. The JWT follows GitHub's rules: RS256, `iss` = App id,
//! `iat` 60 seconds in the past (clock drift), `exp` 9 minutes ahead (GitHub
//! refuses more than 10). Time comes from a `Clock`, so tests move it by hand.
//!
//! The set of installations changes with `installation` webhook events:
//! `apply_installation_event` adds one on `created`/`unsuspend` and drops it
//! (and its token) on `deleted`/`suspend`. Parsing the payload is here; the
//! HTTP endpoint that receives it belongs to the daemon.
//!
//! Git over HTTPS can use the same token (`x-access-token` as user name):
//! `installation_token` refreshes and returns it, `cached_token` returns it
//! without I/O for code that cannot await. Tokens are never logged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::info;

use super::ForgeFuture;
use super::clock::Clock;
use super::error::{ForgeError, RetryPolicy};
use super::github::{Api, Call, decode};

/// A token is used at most this long after it was issued.
pub const REFRESH_AFTER: Duration = Duration::from_secs(30 * 60);
/// … and never closer than this to its expiry.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// JWT lifetime (GitHub allows at most 10 minutes).
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// JWT `iat` backdating against clock drift.
const JWT_BACKDATE: Duration = Duration::from_secs(60);

/// Where new installation tokens are published besides the cache (e.g. a
/// Kubernetes Secret, `token_secret::SecretSink`).
pub trait TokenSink: Send + Sync + fmt::Debug {
    fn store<'a>(
        &'a self,
        installation: u64,
        token: &'a str,
        expires_at: SystemTime,
    ) -> ForgeFuture<'a, ()>;

    /// The installation is gone: withdraw what was published.
    fn remove(&self, installation: u64) -> ForgeFuture<'_, ()>;
}

struct CachedToken {
    token: String,
    refresh_at: SystemTime,
    expires_at: SystemTime,
}

/// Installation tokens of one GitHub App.
pub struct AppTokenProvider {
    app_id: u64,
    key: EncodingKey,
    api: Api,
    /// Known installations and their current token.
    installations: Mutex<BTreeMap<u64, Option<CachedToken>>>,
    /// One exchange at a time, so concurrent callers share a fresh token.
    exchange: tokio::sync::Mutex<()>,
    slug: OnceCell<String>,
    sink: Option<Arc<dyn TokenSink>>,
}

impl fmt::Debug for AppTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppTokenProvider")
            .field("app_id", &self.app_id)
            .field("installations", &self.installations())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

#[derive(Deserialize)]
struct WireToken {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct WireApp {
    slug: String,
}

impl AppTokenProvider {
    /// `private_key_pem`: the PEM GitHub generated for the App (PKCS#1 or PKCS#8).
    /// Inside a Tokio runtime only (octocrab's client starts a task).
    pub fn new(
        app_id: u64,
        private_key_pem: &[u8],
        api_url: Option<&str>,
        clock: Arc<dyn Clock>,
    ) -> Result<AppTokenProvider, ForgeError> {
        let key = EncodingKey::from_rsa_pem(private_key_pem).map_err(|e| {
            ForgeError::Config(format!(
                "GitHub App {app_id}: the private key is not an RSA PEM key: {e}"
            ))
        })?;
        let mut api = Api::new(api_url)?;
        api.clock = clock;
        Ok(AppTokenProvider {
            app_id,
            key,
            api,
            installations: Mutex::new(BTreeMap::new()),
            exchange: tokio::sync::Mutex::new(()),
            slug: OnceCell::new(),
            sink: None,
        })
    }

    pub fn from_key_file(
        app_id: u64,
        path: &Path,
        api_url: Option<&str>,
        clock: Arc<dyn Clock>,
    ) -> Result<AppTokenProvider, ForgeError> {
        let pem = super::read_key_file(path)?;
        AppTokenProvider::new(app_id, &pem, api_url, clock).map_err(|e| match e {
            ForgeError::Config(m) => ForgeError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Replaces the retry rule for the token exchange.
    pub fn with_retry(mut self, retry: RetryPolicy) -> AppTokenProvider {
        self.api.retry = retry;
        self
    }

    /// Publishes every new token to `sink` too.
    pub fn with_sink(mut self, sink: Arc<dyn TokenSink>) -> AppTokenProvider {
        self.sink = Some(sink);
        self
    }

    /// Refreshes the tokens that are due, so published tokens stay fresh even
    /// when nothing else asks for them; the daemon calls this every minute or so.
    /// Returns the installations that failed, with why.
    pub async fn refresh_due(&self) -> Vec<(u64, ForgeError)> {
        let mut failed = Vec::new();
        for id in self.installations() {
            if let Err(e) = self.installation_token(id).await {
                failed.push((id, e));
            }
        }
        failed
    }

    /// Withdraws what the sink published for a removed installation (after
    /// `apply_installation_event` answered `Removed`).
    pub async fn unpublish(&self, installation: u64) -> Result<(), ForgeError> {
        match &self.sink {
            Some(sink) => sink.remove(installation).await,
            None => Ok(()),
        }
    }

    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Option<CachedToken>>> {
        self.installations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add_installation(&self, id: u64) -> bool {
        let mut table = self.table();
        if table.contains_key(&id) {
            return false;
        }
        table.insert(id, None);
        true
    }

    /// Forgets an installation and its token.
    pub fn remove_installation(&self, id: u64) -> bool {
        self.table().remove(&id).is_some()
    }

    pub fn installations(&self) -> Vec<u64> {
        self.table().keys().copied().collect()
    }

    /// A JWT for the App itself (`/app/...` endpoints).
    pub fn app_jwt(&self) -> Result<String, ForgeError> {
        let now = self
            .api
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ForgeError::Config("the clock is before 1970".into()))?;
        let claims = Claims {
            iat: (now - JWT_BACKDATE.min(now)).as_secs(),
            exp: (now + JWT_LIFETIME).as_secs(),
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key).map_err(|e| {
            ForgeError::Config(format!(
                "GitHub App {}: cannot sign a JWT: {e}",
                self.app_id
            ))
        })
    }

    /// The current token of an installation without I/O, if one is still valid.
    pub fn cached_token(&self, installation: u64) -> Option<String> {
        let now = self.api.clock.now();
        self.table()
            .get(&installation)?
            .as_ref()
            .filter(|t| now < t.expires_at)
            .map(|t| t.token.clone())
    }

    fn fresh_token(&self, installation: u64) -> Result<Option<String>, ForgeError> {
        let now = self.api.clock.now();
        match self.table().get(&installation) {
            None => Err(ForgeError::Config(format!(
                "GitHub App {}: installation {installation} is not known (not configured, or removed by an `installation` event)",
                self.app_id
            ))),
            Some(Some(t)) if now < t.refresh_at => Ok(Some(t.token.clone())),
            Some(_) => Ok(None),
        }
    }

    /// A valid installation token, exchanged for a new one when due.
    pub async fn installation_token(&self, installation: u64) -> Result<String, ForgeError> {
        if let Some(token) = self.fresh_token(installation)? {
            return Ok(token);
        }
        let _one_at_a_time = self.exchange.lock().await;
        if let Some(token) = self.fresh_token(installation)? {
            return Ok(token);
        }
        let operation = format!(
            "exchange a JWT of GitHub App {} for an installation {installation} token",
            self.app_id
        );
        let jwt = format!("Bearer {}", self.app_jwt()?);
        let (_, body) = self
            .api
            .send(
                &Call {
                    operation: &operation,
                    not_found: &format!("installation {installation} of App {}", self.app_id),
                    method: Method::POST,
                    path: &format!("/app/installations/{installation}/access_tokens"),
                    body: None,
                },
                Some(&jwt),
            )
            .await?;
        let wire: WireToken = decode(&operation, &body)?;
        let expires_at: jiff::Timestamp = wire.expires_at.parse().map_err(|e| {
            ForgeError::api(
                &operation,
                format!("unreadable expires_at {:?}: {e}", wire.expires_at),
            )
        })?;
        let expires_at = SystemTime::from(expires_at);
        let issued = self.api.clock.now();
        let refresh_at =
            (issued + REFRESH_AFTER).min(expires_at.checked_sub(EXPIRY_MARGIN).unwrap_or(issued));
        let token = wire.token;
        {
            let mut table = self.table();
            // An `installation deleted` event may have removed it meanwhile.
            if let Some(slot) = table.get_mut(&installation) {
                *slot = Some(CachedToken {
                    token: token.clone(),
                    refresh_at,
                    expires_at,
                });
            }
        }
        info!(
            app = self.app_id,
            installation,
            expires_at = %wire.expires_at,
            "GitHub App installation token refreshed"
        );
        if let Some(sink) = &self.sink
            && let Err(e) = sink.store(installation, &token, expires_at).await
        {
            // The forge keeps working with the cached token; readers of the
            // published copy get it on the next refresh.
            tracing::warn!(app = self.app_id, installation, error = %e, "cannot publish the installation token");
        }
        Ok(token)
    }

    /// The App's bot login, `<slug>[bot]` (from `GET /app`).
    pub async fn bot_login(&self) -> Result<String, ForgeError> {
        let slug = self
            .slug
            .get_or_try_init(|| async {
                let operation = format!("read GitHub App {} (GET /app)", self.app_id);
                let jwt = format!("Bearer {}", self.app_jwt()?);
                let (_, body) = self
                    .api
                    .send(
                        &Call {
                            operation: &operation,
                            not_found: &format!("GitHub App {}", self.app_id),
                            method: Method::GET,
                            path: "/app",
                            body: None,
                        },
                        Some(&jwt),
                    )
                    .await?;
                let app: WireApp = decode(&operation, &body)?;
                Ok::<_, ForgeError>(app.slug)
            })
            .await?;
        Ok(format!("{slug}[bot]"))
    }
}

/// The parts of an `installation` webhook payload capstan reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationEvent {
    pub action: String,
    pub installation: EventInstallation,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventInstallation {
    pub id: u64,
    #[serde(default)]
    pub account: Option<EventAccount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventAccount {
    pub login: String,
}

/// What an event changed in the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallationChange {
    Added(u64),
    Removed(u64),
    /// Another action (e.g. `new_permissions_accepted`) or nothing to do.
    Unchanged,
}

impl InstallationEvent {
    /// Parses the raw body of an `installation` event (after the HMAC check).
    pub fn parse(body: &[u8]) -> Result<InstallationEvent, ForgeError> {
        serde_json::from_slice(body).map_err(|e| {
            ForgeError::api(
                "read an `installation` webhook payload",
                format!("malformed payload: {e}"),
            )
        })
    }
}

/// Adds or removes the event's installation.
pub fn apply_installation_event(
    provider: &AppTokenProvider,
    event: &InstallationEvent,
) -> InstallationChange {
    let id = event.installation.id;
    let account = event
        .installation
        .account
        .as_ref()
        .map(|a| a.login.as_str())
        .unwrap_or("");
    let change = match event.action.as_str() {
        "created" | "unsuspend" if provider.add_installation(id) => InstallationChange::Added(id),
        "deleted" | "suspend" if provider.remove_installation(id) => {
            InstallationChange::Removed(id)
        }
        _ => InstallationChange::Unchanged,
    };
    info!(app = provider.app_id, installation = id, account, action = %event.action, change = ?change, "installation event");
    change
}
