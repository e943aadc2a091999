//! Who we are to a registry, and proving it.
//!
//! Credentials come from one place per registry: none (anonymous), a user name
//! and password from environment variables, or a docker `config.json` — its
//! `credHelpers` entry for the registry, else its `credsStore`, else its `auths`
//! entry, the order Docker uses. Helpers (`docker-credential-<name> get`) run
//! lazily, once, with a timeout.
//!
//! Registries ask for credentials with `WWW-Authenticate`. `Basic` means: send
//! the user name and password with every request. `Bearer realm=…,service=…,
//! scope=…` means: trade them (or nothing, for public images) at the realm for a
//! short-lived token, per scope. Tokens are cached until `expires_in` runs out
//! (60 s when the realm does not say), and once the scheme is known, later
//! requests fetch their token up front instead of collecting a 401 first.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use super::reference::{DOCKER_HUB, normalize_registry};

/// A secret string that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub username: String,
    pub password: Secret,
}

impl BasicCredentials {
    pub fn header_value(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Where a registry's credentials come from.
#[derive(Debug, Clone, Default)]
pub enum CredentialSource {
    #[default]
    Anonymous,
    Basic(BasicCredentials),
    DockerConfig(DockerConfig),
}

impl CredentialSource {
    /// `basic: {usernameEnv, passwordEnv}`: read the variables now, so a missing
    /// one is reported when the client is built.
    pub fn from_env(username_env: &str, password_env: &str) -> Result<CredentialSource, String> {
        let get = |name: &str| {
            std::env::var(name)
                .map_err(|_| format!("environment variable `{name}` is not set (or not UTF-8)"))
        };
        Ok(CredentialSource::Basic(BasicCredentials {
            username: get(username_env)?,
            password: Secret::new(get(password_env)?),
        }))
    }
}

// ---- docker config.json ----

/// The parts of a docker `config.json` that hold registry credentials.
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    pub path: PathBuf,
    /// Normalized registry -> (key as written, entry)
    auths: HashMap<String, (String, AuthEntry)>,
    /// Normalized registry -> (key as written, helper name)
    cred_helpers: HashMap<String, (String, String)>,
    creds_store: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

/// How to get the credentials for one registry out of a docker config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    None,
    Basic(BasicCredentials),
    /// Run `docker-credential-<helper> get` with `server` on stdin.
    Helper {
        helper: String,
        server: String,
    },
}

impl DockerConfig {
    pub fn load(path: &Path) -> Result<DockerConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read docker config {}: {e}", path.display()))?;
        DockerConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<DockerConfig, String> {
        let file: DockerConfigFile = serde_json::from_str(text)
            .map_err(|e| format!("{}: invalid docker config: {e}", path.display()))?;
        let mut config = DockerConfig {
            path: path.to_path_buf(),
            creds_store: file.creds_store.filter(|s| !s.is_empty()),
            ..DockerConfig::default()
        };
        for (key, entry) in file.auths {
            config.auths.insert(config_key(&key), (key, entry));
        }
        for (key, helper) in file.cred_helpers {
            config.cred_helpers.insert(config_key(&key), (key, helper));
        }
        if let Some(store) = &config.creds_store {
            check_helper_name(store).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        for (_, helper) in config.cred_helpers.values() {
            check_helper_name(helper).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(config)
    }

    /// Credentials for a canonical registry name (`docker.io`, `ghcr.io`).
    pub fn lookup(&self, registry: &str) -> Result<Lookup, String> {
        let registry = normalize_registry(registry);
        if let Some((key, helper)) = self.cred_helpers.get(&registry) {
            return Ok(Lookup::Helper {
                helper: helper.clone(),
                server: key.clone(),
            });
        }
        if let Some(store) = &self.creds_store {
            let server = match self.auths.get(&registry) {
                Some((key, _)) => key.clone(),
                None if registry == DOCKER_HUB => "https://index.docker.io/v1/".to_string(),
                None => registry.clone(),
            };
            return Ok(Lookup::Helper {
                helper: store.clone(),
                server,
            });
        }
        let Some((key, entry)) = self.auths.get(&registry) else {
            return Ok(Lookup::None);
        };
        let where_ = || format!("{}: auths[\"{key}\"]", self.path.display());
        if entry
            .identitytoken
            .as_deref()
            .is_some_and(|t| !t.is_empty())
        {
            return Err(format!(
                "{}: identity tokens (OAuth `docker login`) are not supported; use a user name and password or a credential helper",
                where_()
            ));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("{}: `auth` is not base64: {e}", where_()))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| format!("{}: `auth` is not UTF-8", where_()))?;
            let Some((user, pass)) = decoded.split_once(':') else {
                return Err(format!("{}: `auth` must encode `user:password`", where_()));
            };
            return Ok(Lookup::Basic(BasicCredentials {
                username: user.to_string(),
                password: Secret::new(pass),
            }));
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Lookup::Basic(BasicCredentials {
                username: u.clone(),
                password: Secret::new(p.clone()),
            })),
            _ => Ok(Lookup::None),
        }
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://host:5000/v2/` -> `host:5000`.
fn config_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    normalize_registry(host)
}

fn check_helper_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!("`{name}` is not a valid credential helper name"));
    }
    Ok(())
}

/// Runs `docker-credential-<helper> get`. `Ok(None)` when the helper has no
/// credentials for the server.
pub async fn run_helper(
    helper: &str,
    server: &str,
    timeout: Duration,
) -> Result<Option<BasicCredentials>, String> {
    use tokio::io::AsyncWriteExt;
    check_helper_name(helper)?;
    let program = format!("docker-credential-{helper}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin is judged by its exit
        // status below, not by the broken pipe.
        match stdin.write_all(server.as_bytes()).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(format!("`{program}`: cannot write to stdin: {e}")),
        }
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("`{program} get` did not finish within {timeout:?}"))?
        .map_err(|e| format!("`{program} get` failed: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = format!("{} {}", stdout.trim(), stderr.trim());
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!(
            "`{program} get` exited with {}: {}",
            output.status,
            said.trim()
        ));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct HelperOutput {
        username: String,
        secret: String,
    }
    let out: HelperOutput = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("`{program} get` printed invalid JSON: {e}"))?;
    if out.username == "<token>" {
        return Err(format!(
            "`{program}` returned an identity token; identity tokens are not supported"
        ));
    }
    Ok(Some(BasicCredentials {
        username: out.username,
        password: Secret::new(out.secret),
    }))
}

// ---- WWW-Authenticate ----

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `basic`, `bearer`.
    pub scheme: String,
    /// Parameter names lowercased.
    pub params: HashMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"` (one or more challenges).
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>, String> {
    let mut out: Vec<Challenge> = Vec::new();
    let s = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && !matches!(s[*i], b' ' | b'\t' | b',' | b'=' | b'"') {
            *i += 1;
        }
        header[start..*i].to_string()
    };
    loop {
        skip_ws(&mut i);
        while i < s.len() && s[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= s.len() {
            break;
        }
        // Either a new scheme or another param of the current challenge.
        let word = token(&mut i);
        if word.is_empty() {
            return Err(format!("unexpected character at byte {i}"));
        }
        skip_ws(&mut i);
        if i < s.len() && s[i] == b'=' {
            // name=value
            let Some(current) = out.last_mut() else {
                return Err("parameter before any scheme".into());
            };
            i += 1;
            skip_ws(&mut i);
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = String::new();
                let mut closed = false;
                let mut chars = header[i..].char_indices();
                while let Some((off, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                v.push(escaped);
                            }
                        }
                        '"' => {
                            i += off + 1;
                            closed = true;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                if !closed {
                    return Err("unterminated quoted string".into());
                }
                v
            } else {
                token(&mut i)
            };
            current.params.insert(word.to_ascii_lowercase(), value);
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: HashMap::new(),
            });
        }
    }
    if out.is_empty() {
        return Err("no challenge".into());
    }
    Ok(out)
}

// ---- state: what we know about a registry's auth, and cached tokens ----

/// Where to get bearer tokens for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenService {
    pub realm: String,
    pub service: Option<String>,
}

#[derive(Debug, Clone)]
enum Scheme {
    Unknown,
    Basic,
    Bearer(TokenService),
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: Secret,
    valid_until: Instant,
}

/// Auth state for one registry: the scheme it asked for, credentials once
/// resolved, and bearer tokens per scope.
#[derive(Debug)]
pub struct Authenticator {
    registry: String,
    source: CredentialSource,
    helper_timeout: Duration,
    resolved: tokio::sync::OnceCell<Result<Option<BasicCredentials>, String>>,
    scheme: Mutex<Scheme>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// Serializes token fetches so a burst of requests fetches one token.
    pub(crate) fetch_lock: tokio::sync::Mutex<()>,
}

/// A token answer from a realm.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Lifetime assumed when a realm does not say (the token spec's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl Authenticator {
    pub fn new(registry: &str, source: CredentialSource) -> Authenticator {
        Authenticator {
            registry: registry.to_string(),
            source,
            helper_timeout: Duration::from_secs(15),
            resolved: tokio::sync::OnceCell::new(),
            scheme: Mutex::new(Scheme::Unknown),
            tokens: Mutex::new(HashMap::new()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The credentials to present, resolving a docker config (and running a
    /// helper) the first time.
    pub async fn credentials(&self) -> Result<Option<BasicCredentials>, String> {
        self.resolved
            .get_or_init(|| async {
                match &self.source {
                    CredentialSource::Anonymous => Ok(None),
                    CredentialSource::Basic(c) => Ok(Some(c.clone())),
                    CredentialSource::DockerConfig(cfg) => match cfg.lookup(&self.registry)? {
                        Lookup::None => Ok(None),
                        Lookup::Basic(c) => Ok(Some(c)),
                        Lookup::Helper { helper, server } => {
                            run_helper(&helper, &server, self.helper_timeout).await
                        }
                    },
                }
            })
            .await
            .clone()
    }

    /// An `Authorization` value we can send without asking anyone: a cached,
    /// unexpired token for `scope`, or basic credentials for a basic registry.
    pub async fn cached_header(&self, scope: &str) -> Option<String> {
        let scheme = lock(&self.scheme).clone();
        match scheme {
            Scheme::Unknown => None,
            Scheme::Basic => self
                .credentials()
                .await
                .ok()
                .flatten()
                .map(|c| c.header_value()),
            Scheme::Bearer(_) => self.cached_token(scope),
        }
    }

    pub fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = lock(&self.tokens);
        tokens
            .get(scope)
            .filter(|t| t.valid_until > Instant::now())
            .map(|t| format!("Bearer {}", t.token.expose()))
    }

    /// The token service, once a bearer challenge has been seen.
    pub fn token_service(&self) -> Option<TokenService> {
        match &*lock(&self.scheme) {
            Scheme::Bearer(service) => Some(service.clone()),
            _ => None,
        }
    }

    pub fn is_basic(&self) -> bool {
        matches!(&*lock(&self.scheme), Scheme::Basic)
    }

    /// Remembers the scheme a challenge asked for. Returns the token service
    /// for bearer challenges.
    pub fn learn(&self, challenges: &[Challenge]) -> Result<Option<TokenService>, String> {
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let mut scheme = lock(&self.scheme);
        if let Some(b) = bearer {
            let realm = b
                .param("realm")
                .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
                .ok_or_else(|| "bearer challenge without an http(s) `realm`".to_string())?;
            let service = TokenService {
                realm: realm.to_string(),
                service: b.param("service").map(str::to_string),
            };
            *scheme = Scheme::Bearer(service.clone());
            return Ok(Some(service));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            *scheme = Scheme::Basic;
            return Ok(None);
        }
        Err(format!(
            "unsupported authentication scheme(s): {}",
            challenges
                .iter()
                .map(|c| c.scheme.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    pub fn store_token(&self, scope: &str, response: &TokenResponse) -> Result<String, String> {
        let token = response
            .token
            .as_deref()
            .or(response.access_token.as_deref())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "token response has neither `token` nor `access_token`".to_string())?;
        let lifetime = response
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Renew a little early so a token does not expire in flight.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        lock(&self.tokens).insert(
            scope.to_string(),
            CachedToken {
                token: Secret::new(token),
                valid_until: Instant::now() + lifetime - margin,
            },
        );
        Ok(format!("Bearer {token}"))
    }

    /// Forgets a token the registry refused.
    pub fn invalidate(&self, scope: &str) {
        lock(&self.tokens).remove(scope);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .expect("parses");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/nginx:pull"));
    }

    #[test]
    fn parses_basic_and_multiple_challenges() {
        let c = parse_challenges(r#"Basic realm="Registry Realm""#).expect("parses");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        let c = parse_challenges(
            r#"Basic realm="x", Bearer realm="https://r/t", error="insufficient_scope", scope="a:b:pull,push""#,
        )
        .expect("parses");
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].param("scope"), Some("a:b:pull,push"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        let c = parse_challenges(r#"Bearer realm="https://r/t\"q""#).expect("escapes");
        assert_eq!(c[0].param("realm"), Some("https://r/t\"q"));
    }

    #[test]
    fn bad_challenges_are_errors() {
        assert!(parse_challenges("").is_err());
        assert!(parse_challenges(r#"realm="x""#).is_err());
        assert!(parse_challenges(r#"Bearer realm="x"#).is_err());
    }

    #[test]
    fn learn_rejects_realm_without_scheme() {
        let a = Authenticator::new("r", CredentialSource::Anonymous);
        let c = parse_challenges(r#"Bearer realm="/token""#).expect("parses");
        assert!(a.learn(&c).is_err());
        let c = parse_challenges(r#"Negotiate"#).expect("parses");
        assert!(a.learn(&c).unwrap_err().contains("negotiate"));
    }

    fn config(text: &str) -> DockerConfig {
        DockerConfig::parse(text, Path::new("config.json")).expect("valid")
    }

    #[test]
    fn docker_config_auths_forms() {
        let cfg = config(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzOndvcmQ="},
                "http://localhost:5000/v2/": {"username": "u", "password": "p"},
                "ghcr.io": {}
            }}"#,
        );
        let Lookup::Basic(hub) = cfg.lookup("docker.io").expect("ok") else {
            panic!("docker hub entry")
        };
        assert_eq!(hub.username, "user");
        assert_eq!(
            hub.password.expose(),
            "pass:word",
            "only the first colon splits"
        );
        let Lookup::Basic(local) = cfg.lookup("localhost:5000").expect("ok") else {
            panic!("localhost entry")
        };
        assert_eq!(
            (local.username.as_str(), local.password.expose()),
            ("u", "p")
        );
        assert_eq!(cfg.lookup("ghcr.io").expect("ok"), Lookup::None);
        assert_eq!(cfg.lookup("quay.io").expect("ok"), Lookup::None);
    }

    #[test]
    fn docker_config_helpers_take_precedence() {
        let cfg = config(
            r#"{"auths": {"ghcr.io": {"auth": "dTpw"}, "quay.io": {}},
                "credHelpers": {"ghcr.io": "gh"},
                "credsStore": "pass"}"#,
        );
        assert_eq!(
            cfg.lookup("ghcr.io").expect("ok"),
            Lookup::Helper {
                helper: "gh".into(),
                server: "ghcr.io".into()
            }
        );
        assert_eq!(
            cfg.lookup("docker.io").expect("ok"),
            Lookup::Helper {
                helper: "pass".into(),
                server: "https://index.docker.io/v1/".into()
            }
        );
    }

    #[test]
    fn docker_config_errors_name_the_file() {
        let err = DockerConfig::parse("{", Path::new("/x/config.json")).unwrap_err();
        assert!(err.contains("/x/config.json"), "{err}");
        let err = DockerConfig::parse(r#"{"credHelpers": {"a": "../evil"}}"#, Path::new("c"))
            .unwrap_err();
        assert!(err.contains("not a valid credential helper"), "{err}");
        let cfg = config(r#"{"auths": {"a.io": {"auth": "%%%"}}}"#);
        assert!(cfg.lookup("a.io").unwrap_err().contains("base64"));
        let cfg = config(r#"{"auths": {"a.io": {"auth": "bm9jb2xvbg=="}}}"#);
        assert!(cfg.lookup("a.io").unwrap_err().contains("user:password"));
        let cfg = config(r#"{"auths": {"a.io": {"identitytoken": "t"}}}"#);
        assert!(cfg.lookup("a.io").unwrap_err().contains("identity tokens"));
    }

    #[test]
    fn secrets_do_not_leak_in_debug() {
        let c = BasicCredentials {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.header_value(), "Basic dTpodW50ZXIy");
    }

    #[tokio::test]
    async fn tokens_are_cached_per_scope_until_expiry() {
        let a = Authenticator::new("r", CredentialSource::Anonymous);
        a.learn(&parse_challenges(r#"Bearer realm="https://r/token""#).expect("parses"))
            .expect("learns");
        let resp = TokenResponse {
            token: Some("t1".into()),
            access_token: None,
            expires_in: Some(1),
        };
        a.store_token("repository:a:pull", &resp).expect("stores");
        assert_eq!(
            a.cached_header("repository:a:pull").await.as_deref(),
            Some("Bearer t1")
        );
        assert_eq!(a.cached_header("repository:b:pull").await, None);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(a.cached_header("repository:a:pull").await, None, "expired");
        let none = TokenResponse {
            token: None,
            access_token: Some(String::new()),
            expires_in: None,
        };
        assert!(a.store_token("s", &none).is_err());
    }
}
