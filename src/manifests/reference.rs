//! Image references as written in manifests: `name[:tag][@digest]`.
//!
//! Only what matching and editing need: split a reference into its parts
//! without rewriting them (edits splice the original bytes), and decide
//! whether two repository names denote the same repository. Normalization and
//! validity (`nginx` is `docker.io/library/nginx`, what a tag may contain) are
//! the registry module's rules, so a manifest matches the image the registry
//! scan looked at.

use crate::registry::reference::{self as registry_ref, ImageRef};

/// The parts of `name[:tag][@digest]`, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageParts<'a> {
    pub name: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Splits a reference. The tag is after the last `:` that follows the last
/// `/`, so a registry port (`localhost:5000/app`) is not a tag.
pub fn split(reference: &str) -> ImageParts<'_> {
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            ImageParts {
                name: &rest[..colon],
                tag: Some(&rest[colon + 1..]),
                digest,
            }
        }
        None => ImageParts {
            name: rest,
            tag: None,
            digest,
        },
    }
}

/// `tag` and `@digest` as they follow a repository name.
pub fn tag_and_digest(tag: &str, digest: Option<&str>) -> String {
    match digest {
        Some(d) => format!("{tag}@{d}"),
        None => tag.to_string(),
    }
}

/// Whether two repository names (no tag, no digest) denote the same
/// repository: Docker Hub's implicit host and `library/` are filled in and the
/// host is compared case-insensitively. Names that do not parse only match
/// themselves.
pub fn same_repository(a: &str, b: &str) -> bool {
    match (ImageRef::parse(a), ImageRef::parse(b)) {
        (Ok(x), Ok(y)) => {
            x.tag.is_none()
                && y.tag.is_none()
                && x.digest.is_none()
                && y.digest.is_none()
                && x.name() == y.name()
        }
        _ => a == b,
    }
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    registry_ref::check_tag(tag).is_ok()
}

/// A digest as registries return them (`sha256:` and 64 hex digits, ...).
pub fn is_valid_digest(digest: &str) -> bool {
    registry_ref::check_digest(digest).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_forms() {
        assert_eq!(
            split("ghcr.io/a/b:1.2@sha256:00"),
            ImageParts {
                name: "ghcr.io/a/b",
                tag: Some("1.2"),
                digest: Some("sha256:00")
            }
        );
        assert_eq!(split("localhost:5000/app").tag, None);
        assert_eq!(split("localhost:5000/app:v1").tag, Some("v1"));
        assert_eq!(split("nginx").name, "nginx");
        assert_eq!(split("nginx@sha256:00").tag, None);
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        assert!(same_repository("nginx", "docker.io/library/nginx"));
        assert!(same_repository("index.docker.io/acme/app", "acme/app"));
        assert!(same_repository("GHCR.io/acme/app", "ghcr.io/acme/app"));
        assert!(!same_repository("ghcr.io/acme/app", "ghcr.io/acme/app2"));
        assert!(!same_repository("localhost:5000/app", "app"));
        assert!(!same_repository("ghcr.io/acme/app:1.0", "ghcr.io/acme/app"));
    }

    #[test]
    fn tag_and_digest_validation() {
        assert!(is_valid_tag("v1.2.3-rc.1_x"));
        assert!(!is_valid_tag(".hidden"));
        assert!(!is_valid_tag("a b"));
        assert!(!is_valid_tag("a: b"));
        assert!(is_valid_digest(&format!("sha256:{}", "ab".repeat(32))));
        assert!(!is_valid_digest("sha256:XYZ"));
    }
}
