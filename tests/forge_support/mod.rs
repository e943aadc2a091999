//! Shared by the forge tests: fixtures replaying the forges' documented answers,
//! and clients pointed at a wiremock server with short retry waits.
#![allow(dead_code)] // not every test crate uses every helper

use std::sync::OnceLock;
use std::time::Duration;

use capstan::forge::{GitHub, Gitea, RetryPolicy};

/// A documented response body from `tests/fixtures/{forge}/{name}`.
pub fn fixture(forge: &str, name: &str) -> serde_json::Value {
    let p = format!(
        "{}/tests/fixtures/{forge}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
}

pub fn github_fixture(name: &str) -> serde_json::Value {
    fixture("github", name)
}

pub fn gitea_fixture(name: &str) -> serde_json::Value {
    fixture("gitea", name)
}

/// Retries with pauses of milliseconds, so tests never wait long.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_wait: Duration::from_secs(2),
    }
}

/// `octocat/Hello-World` (the repository of GitHub's examples) on the mock.
pub fn github(uri: &str) -> GitHub {
    GitHub::new(Some(uri), Some("t0ken".into()), "octocat", "Hello-World")
        .expect("client")
        .with_retry(quick_retry())
}

pub fn gitea(uri: &str) -> Gitea {
    Gitea::new(
        &format!("{uri}/api/v1"),
        Some("g1tea".into()),
        "octocat",
        "Hello-World",
    )
    .expect("client")
    .with_retry(quick_retry())
}

pub struct KeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

/// An RSA key pair for a test GitHub App, made once per test process (never committed).
pub fn keys() -> &'static KeyPair {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    static KEYS: OnceLock<KeyPair> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("keygen");
        KeyPair {
            private_pem: key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
            public_pem: key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem"),
        }
    })
}
