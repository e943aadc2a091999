//! A small token issuer for the registry's `auth: token` mode: it answers
//! `GET /token?service=…&scope=…` with a JWT signed (ES256) by a key whose
//! certificate chain (`x5c`) the registry trusts through its `rootcertbundle`.
//! It can require basic credentials, and counts what it was asked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use super::http::{self, Server};
use super::pki::{Ca, Leaf};

pub const SERVICE: &str = "capstan-test-registry";
pub const ISSUER: &str = "capstan-test-issuer";

struct State {
    leaf: Leaf,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// Empty: anyone gets a token.
    users: Vec<(String, String)>,
    expires_in: u64,
    requests: AtomicUsize,
    scopes: Mutex<Vec<String>>,
}

pub struct TokenIssuer {
    state: Arc<State>,
    server: Server,
    /// PEM of the CA that signed the token certificate: the registry's
    /// `rootcertbundle`.
    pub root_pem: String,
}

impl TokenIssuer {
    /// `users`: accepted `(user, password)` pairs; empty for anonymous access.
    /// `expires_in`: lifetime announced to clients, in seconds.
    pub async fn start(users: &[(&str, &str)], expires_in: u64) -> TokenIssuer {
        let ca = Ca::new("capstan test token CA");
        let leaf = ca.issue(&["token-signer"]);
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &leaf.key_der, &rng)
            .expect("token signing key");
        let state = Arc::new(State {
            leaf,
            key,
            rng,
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            expires_in,
            requests: AtomicUsize::new(0),
            scopes: Mutex::new(Vec::new()),
        });
        let handler_state = state.clone();
        let server = http::serve(Arc::new(move |req| {
            let state = handler_state.clone();
            Box::pin(async move { state.answer(&req) })
        }))
        .await;
        TokenIssuer {
            state,
            server,
            root_pem: ca.cert_pem,
        }
    }

    pub fn realm(&self) -> String {
        format!("{}/token", self.server.url())
    }

    /// Token requests answered so far (granted or refused).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every `scope` parameter received.
    pub fn scopes(&self) -> Vec<String> {
        self.state.scopes.lock().expect("lock").clone()
    }

    /// A token granting `actions` on `repository`, without an HTTP round trip
    /// (for pushing test images).
    pub fn mint(&self, repository: &str, actions: &[&str]) -> String {
        self.state.jwt(
            "admin",
            &[serde_json::json!({"type": "repository", "name": repository, "actions": actions})],
        )
    }
}

impl State {
    fn answer(&self, req: &hyper::Request<bytes::Bytes>) -> hyper::Response<http::Body> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let query = http::query_pairs(req);
        let user = basic_user(req);
        if !self.users.is_empty() {
            let ok = user
                .as_ref()
                .is_some_and(|(u, p)| self.users.iter().any(|(uu, pp)| uu == u && pp == p));
            if !ok {
                return http::response(
                    401,
                    "application/json",
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid user name or password"}]}"#,
                );
            }
        }
        let mut access = Vec::new();
        for (k, v) in &query {
            if k != "scope" {
                continue;
            }
            self.scopes.lock().expect("lock").push(v.clone());
            // repository:name:pull,push
            let mut parts = v.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            access.push(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }));
        }
        let subject = user.map(|(u, _)| u).unwrap_or_default();
        let token = self.jwt(&subject, &access);
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": jiff::Timestamp::now().to_string(),
        });
        http::response(200, "application/json", body.to_string())
    }

    fn jwt(&self, subject: &str, access: &[serde_json::Value]) -> String {
        let now = jiff::Timestamp::now().as_second();
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.leaf.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 600,
            "nbf": now - 30,
            "iat": now,
            "jti": format!("{:x}", fastrand::u64(..)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("sign token");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

fn basic_user(req: &hyper::Request<bytes::Bytes>) -> Option<(String, String)> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}
