//! Who may call the daemon's endpoints: GitHub's `X-Hub-Signature-256` (an
//! HMAC-SHA256 of the raw body under the webhook secret) and shared bearer
//! tokens. Both comparisons take the same time whatever the input, so a caller
//! cannot find a valid signature or token byte by byte.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
pub fn github_signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(signature) = header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .and_then(decode_hex)
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Constant-time comparison of a presented token with the expected one
/// (both hashed first, so not even the length leaks).
pub fn token_ok(expected: &str, presented: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(presented.as_bytes());
    a.ct_eq(&b).into()
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `sha256=<hex>` for `body` under `secret`, as GitHub sends it (for tests
/// and for tools that replay deliveries).
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut out = String::from("sha256=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_example_verifies() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(github_signature_ok(secret, body, Some(header)));
        assert_eq!(github_signature(secret, body), header);
        assert!(!github_signature_ok(secret, b"Hello, World?", Some(header)));
        assert!(!github_signature_ok(b"other", body, Some(header)));
        assert!(!github_signature_ok(secret, body, None));
        assert!(!github_signature_ok(secret, body, Some("sha1=abc")));
        assert!(!github_signature_ok(secret, body, Some("sha256=zz")));
        assert!(!github_signature_ok(secret, body, Some("sha256=757")));
    }

    #[test]
    fn tokens_and_bearer_headers() {
        assert!(token_ok("s3cret", "s3cret"));
        assert!(!token_ok("s3cret", "s3cre"));
        assert!(!token_ok("s3cret", ""));
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
