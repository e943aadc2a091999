//! SSH host key verification against an OpenSSH `known_hosts` file.
//!
//! Capstan checks the key an SSH server presents itself instead of relying on
//! libgit2's built-in check, so that a refusal says which host, which key
//! (type and `SHA256:` fingerprint, as `ssh-keygen -l` prints it) and which
//! file was consulted. Supported: plain host patterns (`host`, `[host]:port`,
//! comma lists, `*`/`?` wildcards, `!` negation), hashed entries
//! (`|1|salt|hash`, from `ssh-keygen -H`) and `@revoked` keys.
//! `@cert-authority` lines are ignored (no host certificates).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::hmac;

/// One usable line of a known_hosts file.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    revoked: bool,
    patterns: Patterns,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Patterns {
    /// `|1|salt|hash`: HMAC-SHA1 of the host name under the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    /// Comma-separated patterns.
    Plain(Vec<String>),
}

/// The parsed contents of a known_hosts file.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Lines that could not be understood (line number, reason); skipped as
    /// OpenSSH skips them.
    pub skipped: Vec<(usize, String)>,
}

/// What the file says about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An entry for this host lists exactly this key.
    Trusted { line: usize },
    /// The key is marked `@revoked`.
    Revoked { line: usize },
    /// The host is listed with a different key of the same type.
    Mismatch {
        /// Lines listing other keys of this type, with their fingerprints.
        expected: Vec<(usize, String)>,
    },
    /// The host is listed, but only with keys of other types.
    OtherTypes { types: Vec<String> },
    /// The host is not listed at all.
    Unknown,
}

impl KnownHosts {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> std::io::Result<KnownHosts> {
        let text = std::fs::read_to_string(path)?;
        Ok(KnownHosts::parse(path, &text))
    }

    /// An empty list (for a default file that does not exist).
    pub fn empty(path: &Path) -> KnownHosts {
        KnownHosts {
            path: path.to_path_buf(),
            entries: Vec::new(),
            skipped: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn parse(path: &Path, text: &str) -> KnownHosts {
        let mut entries = Vec::new();
        let mut skipped = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match parse_line(trimmed) {
                Ok(Some((revoked, patterns, key_type, key))) => entries.push(Entry {
                    line,
                    revoked,
                    patterns,
                    key_type,
                    key,
                }),
                Ok(None) => {}
                Err(why) => skipped.push((line, why)),
            }
        }
        KnownHosts {
            path: path.to_path_buf(),
            entries,
            skipped,
        }
    }

    /// Checks the key blob (SSH wire format) presented by `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> Verdict {
        let name = host_name(host, port);
        let presented_type = key_type(key).unwrap_or_default();
        let mut expected = Vec::new();
        let mut types = Vec::new();
        let mut trusted = None;
        for entry in self.entries.iter().filter(|e| e.patterns.matches(&name)) {
            if entry.key == key {
                if entry.revoked {
                    return Verdict::Revoked { line: entry.line };
                }
                trusted.get_or_insert(entry.line);
            } else if entry.revoked {
                continue;
            } else if entry.key_type == presented_type {
                expected.push((entry.line, fingerprint(&entry.key)));
            } else if !types.contains(&entry.key_type) {
                types.push(entry.key_type.clone());
            }
        }
        if let Some(line) = trusted {
            Verdict::Trusted { line }
        } else if !expected.is_empty() {
            Verdict::Mismatch { expected }
        } else if !types.is_empty() {
            Verdict::OtherTypes { types }
        } else {
            Verdict::Unknown
        }
    }
}

type Parsed = (bool, Patterns, String, Vec<u8>);

fn parse_line(line: &str) -> Result<Option<Parsed>, String> {
    let mut fields = line.split_whitespace();
    let mut first = fields.next().unwrap_or_default();
    let mut revoked = false;
    if let Some(marker) = first.strip_prefix('@') {
        match marker {
            "revoked" => revoked = true,
            // Host certificates are not supported: such a line trusts nothing here.
            "cert-authority" => return Ok(None),
            other => return Err(format!("unknown marker `@{other}`")),
        }
        first = fields.next().unwrap_or_default();
    }
    let (Some(type_name), Some(key_b64)) = (fields.next(), fields.next()) else {
        return Err("expected `hosts key-type base64-key`".into());
    };
    let key = STANDARD
        .decode(key_b64)
        .map_err(|e| format!("the key is not valid base64 ({e})"))?;
    if key_type(&key).as_deref() != Some(type_name) {
        return Err(format!(
            "the key's encoded type does not match `{type_name}`"
        ));
    }
    let patterns = if let Some(hashed) = first.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return Err("hashed host name must be `|1|salt|hash`".into());
        };
        Patterns::Hashed {
            salt: STANDARD
                .decode(salt)
                .map_err(|e| format!("hashed host salt is not base64 ({e})"))?,
            hash: STANDARD
                .decode(hash)
                .map_err(|e| format!("hashed host hash is not base64 ({e})"))?,
        }
    } else {
        Patterns::Plain(first.split(',').map(str::to_string).collect())
    };
    Ok(Some((revoked, patterns, type_name.to_string(), key)))
}

impl Patterns {
    fn matches(&self, name: &str) -> bool {
        match self {
            Patterns::Hashed { salt, hash } => {
                let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                hmac::verify(&key, name.as_bytes(), hash).is_ok()
            }
            Patterns::Plain(list) => {
                let mut matched = false;
                for pattern in list {
                    if let Some(negated) = pattern.strip_prefix('!') {
                        if wildcard(&negated.to_ascii_lowercase(), name) {
                            return false;
                        }
                    } else if wildcard(&pattern.to_ascii_lowercase(), name) {
                        matched = true;
                    }
                }
                matched
            }
        }
    }
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise.
pub fn host_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// `*` and `?` glob match over bytes.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The key type named inside an SSH public key blob (`ssh-ed25519`, …).
pub fn key_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    String::from_utf8(name.to_vec()).ok()
}

/// `SHA256:<base64>` as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Produced with ssh-keygen (OpenSSH 9.2): a host key for [127.0.0.1]:22999
    // and another key for `gitlab.example.com,10.0.0.1`, then `ssh-keygen -H`.
    const HOST_KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAukxACcyzFRB9OmkWYVbwcR/3TFl8JDUdR+ya9sTIJ9";
    const HOST_FP: &str = "SHA256:gFcbQZoCAl51b3jdK4kadbfAwJJZ6pJENDlVIVgabOc";
    const OTHER_KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAINyR1bqzfe+VkU70Tj3/Cnp3SA09l3nd7FgMK/IqVR1O";
    const HASHED: &str = "\
|1|Q6v2b7pjZJb6UokvdZddmTwhpgo=|Iodls1LSOlJ+At+E8UQIGlr8quk= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAukxACcyzFRB9OmkWYVbwcR/3TFl8JDUdR+ya9sTIJ9
|1|BYFeKJrrU+PqXGjhYYk1uRQjiLs=|PROxPMgD2LxhHn+wABjSruVnZnw= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINyR1bqzfe+VkU70Tj3/Cnp3SA09l3nd7FgMK/IqVR1O
|1|XmHrJfOsC/TwJUhloWQiNQLvlBo=|pjl9Mmx+Wwzfrnh8+1jxw6MTVtM= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINyR1bqzfe+VkU70Tj3/Cnp3SA09l3nd7FgMK/IqVR1O
";

    fn blob(b64: &str) -> Vec<u8> {
        STANDARD.decode(b64).unwrap()
    }

    fn parse(text: &str) -> KnownHosts {
        KnownHosts::parse(Path::new("known_hosts"), text)
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        assert_eq!(fingerprint(&blob(HOST_KEY)), HOST_FP);
        assert_eq!(key_type(&blob(HOST_KEY)).as_deref(), Some("ssh-ed25519"));
    }

    #[test]
    fn hashed_entries_match_host_and_port() {
        let kh = parse(HASHED);
        assert!(kh.skipped.is_empty(), "{:?}", kh.skipped);
        assert_eq!(
            kh.check("127.0.0.1", 22999, &blob(HOST_KEY)),
            Verdict::Trusted { line: 1 }
        );
        assert_eq!(
            kh.check("gitlab.example.com", 22, &blob(OTHER_KEY)),
            Verdict::Trusted { line: 2 }
        );
        assert_eq!(
            kh.check("10.0.0.1", 22, &blob(OTHER_KEY)),
            Verdict::Trusted { line: 3 }
        );
        // Same host, other port: not listed.
        assert_eq!(kh.check("127.0.0.1", 22, &blob(HOST_KEY)), Verdict::Unknown);
        // Listed host, other key of the same type.
        assert_eq!(
            kh.check("127.0.0.1", 22999, &blob(OTHER_KEY)),
            Verdict::Mismatch {
                expected: vec![(1, HOST_FP.to_string())]
            }
        );
    }

    #[test]
    fn plain_patterns_wildcards_negation_and_revoked() {
        let text = format!(
            "# comment\n\n*.example.com,!evil.example.com ssh-ed25519 {HOST_KEY}\n\
             @revoked * ssh-ed25519 {OTHER_KEY}\n\
             [git.example.org]:2222 ssh-ed25519 {OTHER_KEY}\n\
             badline\n@cert-authority *.example.com ssh-ed25519 {HOST_KEY}\n"
        );
        let kh = parse(&text);
        assert_eq!(kh.skipped.len(), 1);
        assert_eq!(kh.skipped[0].0, 6);
        assert_eq!(
            kh.check("Git.Example.com", 22, &blob(HOST_KEY)),
            Verdict::Trusted { line: 3 }
        );
        assert_eq!(
            kh.check("evil.example.com", 22, &blob(HOST_KEY)),
            Verdict::Unknown
        );
        assert_eq!(
            kh.check("git.example.org", 2222, &blob(OTHER_KEY)),
            Verdict::Revoked { line: 4 }
        );
    }

    #[test]
    fn other_key_types_are_reported() {
        let text = format!("host.example ssh-ed25519 {HOST_KEY}\n");
        let kh = parse(&text);
        // A (truncated) RSA blob presented: the host is known only by ed25519.
        let mut rsa = 7u32.to_be_bytes().to_vec();
        rsa.extend_from_slice(b"ssh-rsa");
        assert_eq!(
            kh.check("host.example", 22, &rsa),
            Verdict::OtherTypes {
                types: vec!["ssh-ed25519".into()]
            }
        );
    }

    #[test]
    fn wildcard_glob() {
        assert!(wildcard("*", "anything"));
        assert!(wildcard("a?c", "abc"));
        assert!(wildcard("[*]:2222", "[h]:2222"));
        assert!(!wildcard("*.com", "x.org"));
        assert!(wildcard("*.*.com", "a.b.com"));
    }
}
