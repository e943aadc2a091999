//! Image references, parsed the way Docker parses them.
//!
//! `nginx` means `docker.io/library/nginx:latest`-without-the-tag: the first path
//! component is a registry host only if it contains a `.` or a `:`, or is
//! `localhost`; otherwise the image lives on Docker Hub, and a single-component
//! Docker Hub name gets the `library/` prefix. Docker Hub is called `docker.io`
//! everywhere (configuration, messages) but served by `registry-1.docker.io`.
//! Tags and digests are optional; both may be present (`app:1.0@sha256:…`).

use std::fmt;
use std::str::FromStr;

/// The canonical name of Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's Distribution API.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Canonical registry host, with port when given: `docker.io`, `ghcr.io`,
    /// `localhost:5000`.
    pub registry: String,
    /// Repository path inside the registry: `library/nginx`, `acme/app`.
    pub repository: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, e.g. `sha256:…`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl ImageRef {
    /// Parses `[registry/]repository[:tag][@digest]`.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(fail("empty"));
        }
        if input.trim() != input || input.contains(char::is_whitespace) {
            return Err(fail("contains whitespace"));
        }
        if input.contains("://") {
            return Err(fail(
                "write the image without a scheme, e.g. `ghcr.io/acme/app`",
            ));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(|r| fail(&r))?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };

        // A tag is the part after the last `:` that follows the last `/`.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let colon = last_slash + i;
                let tag = &rest[colon + 1..];
                check_tag(tag).map_err(|r| fail(&r))?;
                (&rest[..colon], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(fail("missing repository name"));
        }

        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder)) if is_registry_host(first) => {
                check_host(first).map_err(|r| fail(&r))?;
                (normalize_registry(first), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        check_repository(&repository).map_err(|r| fail(&r))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(fail("name longer than 255 characters"));
        }
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` without tag or digest: `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) that serves the API for this image.
    pub fn endpoint(&self) -> &str {
        endpoint_host(&self.registry)
    }

    /// The same image without tag and digest.
    pub fn without_reference(&self) -> ImageRef {
        ImageRef {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Lowercases the host and folds Docker Hub's aliases into `docker.io`.
pub fn normalize_registry(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// The API host for a canonical registry name.
pub fn endpoint_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_ENDPOINT
    } else {
        registry
    }
}

/// Docker's rule: a first component is a host if it has a dot or a port, is
/// `localhost`, or has uppercase letters (repository names cannot).
fn is_registry_host(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn check_host(host: &str) -> Result<(), String> {
    let bad = || Err(format!("`{host}` is not a valid registry host"));
    // `[::1]:5000`
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return bad();
        };
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return bad();
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => return bad(),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad();
    }
    if let Some(name) = name {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || !name.split('.').all(label_ok) {
            return bad();
        }
    }
    Ok(())
}

/// Path components: lowercase alphanumerics separated by `.`, `_`, `__` or `-`s.
pub fn check_repository(repo: &str) -> Result<(), String> {
    for component in repo.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "`{component}` is not a valid repository path component (lowercase letters, digits, and `.`, `_`, `-` between them)"
            ));
        }
    }
    Ok(())
}

fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        // a separator run: `.`, `_`, `__`, or one or more `-`
        let start = i;
        match b {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !bytes.get(i).copied().is_some_and(is_alnum) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
pub fn check_tag(tag: &str) -> Result<(), String> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok
        || tag.len() > MAX_TAG_LEN
        || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(format!(
            "`{tag}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128, not starting with `.` or `-`)"
        ));
    }
    Ok(())
}

/// `algorithm:encoded`; sha256 and sha512 must have the right hex length.
pub fn check_digest(digest: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{digest}` is not a valid digest: {why}"));
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return bad("expected `algorithm:hex`");
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .split(['+', '.', '_', '-'])
            .all(|p| !p.is_empty() && p.bytes().all(is_alnum));
    if !algorithm_ok {
        return bad("bad algorithm");
    }
    let hex_len = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    match hex_len {
        Some(n) => {
            if encoded.len() != n
                || !encoded
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return bad(&format!("{algorithm} needs {n} lowercase hex digits"));
            }
        }
        None => {
            if encoded.is_empty()
                || !encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
            {
                return bad("bad encoding");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_short_names_get_library() {
        let r = parse("nginx");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/nginx");
        assert_eq!(r.endpoint(), "registry-1.docker.io");
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), "docker.io/library/nginx");
        assert_eq!(
            format!("{}/{}", r.endpoint(), r.repository),
            "registry-1.docker.io/library/nginx"
        );
    }

    #[test]
    fn docker_hub_user_images_keep_their_namespace() {
        let r = parse("bitnami/redis:7.2");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "bitnami/redis")
        );
        assert_eq!(r.tag.as_deref(), Some("7.2"));
    }

    #[test]
    fn docker_hub_aliases_fold_into_docker_io() {
        for s in [
            "index.docker.io/library/nginx",
            "registry-1.docker.io/library/nginx",
            "docker.io/nginx",
        ] {
            let r = parse(s);
            assert_eq!(r.name(), "docker.io/library/nginx", "{s}");
        }
    }

    #[test]
    fn hosts_ports_and_localhost() {
        let r = parse("localhost:5000/team/app:v1");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r = parse("localhost/app");
        assert_eq!(r.registry, "localhost");
        let r = parse("127.0.0.1:5000/app");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag, None, "the port is not a tag");
        let r = parse("[::1]:5000/app:2");
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.tag.as_deref(), Some("2"));
        let r = parse("GHCR.io/acme/app");
        assert_eq!(r.registry, "ghcr.io", "hosts are case-insensitive");
    }

    #[test]
    fn digests_with_and_without_tags() {
        let r = parse(&format!("ghcr.io/acme/app@{SHA}"));
        assert_eq!(r.digest.as_deref(), Some(SHA));
        assert_eq!(r.tag, None);
        let r = parse(&format!("ghcr.io/acme/app:1.2.3@{SHA}"));
        assert_eq!(r.tag.as_deref(), Some("1.2.3"));
        assert_eq!(r.to_string(), format!("ghcr.io/acme/app:1.2.3@{SHA}"));
        assert_eq!(r.without_reference().to_string(), "ghcr.io/acme/app");
    }

    #[test]
    fn separators_in_path_components() {
        for ok in ["a/b.c", "a/b_c", "a/b__c", "a/b---c", "a1/2b"] {
            parse(ok);
        }
        for bad in [
            "a/b..c", "a/b___c", "a/-b", "a/b-", "a//b", "a/B", "a/b_", "a/.b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn bad_references_explain_themselves() {
        let cases = [
            ("", "empty"),
            ("https://ghcr.io/acme/app", "scheme"),
            ("ghcr.io/acme/app:", "not a valid tag"),
            ("ghcr.io/acme/app:-x", "not a valid tag"),
            ("ghcr.io/acme/App", "not a valid repository"),
            ("ghcr.io/acme/app@sha256:abc", "64 lowercase hex"),
            ("ghcr.io/acme/app@nodigest", "algorithm:hex"),
            ("bad_host.io:x/app", "not a valid registry host"),
            ("app name", "whitespace"),
            (":tag", "missing repository"),
        ];
        for (input, want) in cases {
            let err = ImageRef::parse(input).expect_err(input);
            assert!(err.to_string().contains(want), "{input}: {err}");
            assert!(err.to_string().contains(&format!("`{input}`")), "{err}");
        }
        let long = format!("ghcr.io/{}", "a".repeat(300));
        assert!(ImageRef::parse(&long).is_err());
        let long_tag = format!("app:{}", "t".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
    }

    #[test]
    fn digest_rules() {
        assert!(check_digest(SHA).is_ok());
        assert!(check_digest(&SHA.to_uppercase()).is_err());
        assert!(check_digest(&format!("sha512:{}", "a".repeat(128))).is_ok());
        assert!(
            check_digest("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8").is_ok()
        );
        assert!(check_digest(":abc").is_err());
    }
}
