//! The OCI Distribution API, the parts the watcher needs: list tags (following
//! `Link` headers page by page), resolve a tag to its digest (`HEAD`, the
//! `Docker-Content-Digest` header), read manifests — OCI and Docker v2 images,
//! OCI indexes and Docker manifest lists — and read an image's config blob for
//! its creation time and labels.
//!
//! Every body is checked: content type, size cap, JSON shape, and digests are
//! recomputed (SHA-256) and compared with what the registry claimed.

use std::collections::{BTreeMap, HashSet};

use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::error::{Error, ErrorKind};
use super::reference::{check_digest, check_repository, check_tag};
use super::transport::{ClientOptions, RegistrySettings, Reply, Request, Stats, Transport};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What we ask for on manifest requests, in order of preference.
pub const MANIFEST_TYPES: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
pub const LABEL_VERSION: &str = "org.opencontainers.image.version";

/// Pagination stops with an error past this many pages (a registry that
/// keeps sending `Link: rel="next"`).
const MAX_PAGES: usize = 10_000;

/// A content descriptor inside a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An image manifest (OCI or Docker v2): one config, some layers.
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An OCI index or Docker manifest list: one manifest per platform.
    Index {
        media_type: String,
        manifests: Vec<Descriptor>,
    },
}

/// What a tag points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestRef {
    pub digest: String,
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// What an image says about itself in its config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    /// Digest of what the tag points at (the index, for multi-arch images).
    pub digest: String,
    pub media_type: String,
    /// `os/architecture` of the image read from an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<jiff::Timestamp>,
    pub labels: BTreeMap<String, String>,
}

impl ImageInfo {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
    /// `org.opencontainers.image.source`
    pub fn source(&self) -> Option<&str> {
        self.label(LABEL_SOURCE)
    }
    /// `org.opencontainers.image.revision`
    pub fn revision(&self) -> Option<&str> {
        self.label(LABEL_REVISION)
    }
    /// `org.opencontainers.image.version`
    pub fn version(&self) -> Option<&str> {
        self.label(LABEL_VERSION)
    }
}

/// A client for one registry.
#[derive(Debug)]
pub struct RegistryClient {
    transport: Transport,
}

impl RegistryClient {
    pub fn new(
        settings: RegistrySettings,
        options: ClientOptions,
    ) -> Result<RegistryClient, Error> {
        Ok(RegistryClient {
            transport: Transport::new(settings, options)?,
        })
    }

    /// Canonical registry name.
    pub fn registry(&self) -> &str {
        self.transport.registry()
    }

    pub fn stats(&self) -> &Stats {
        self.transport.stats()
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    fn err(&self, repository: &str, kind: ErrorKind) -> Error {
        self.transport.error(repository, kind)
    }

    fn url(&self, repository: &str, path: &str) -> Result<Url, Error> {
        check_repository(repository).map_err(|e| self.err(repository, ErrorKind::Setup(e)))?;
        self.transport
            .base()
            .join(&format!("v2/{repository}/{path}"))
            .map_err(|e| self.err(repository, ErrorKind::Setup(format!("bad URL: {e}"))))
    }

    fn check_reference(&self, repository: &str, reference: &str) -> Result<(), Error> {
        let ok = if reference.contains(':') {
            check_digest(reference)
        } else {
            check_tag(reference)
        };
        ok.map_err(|e| self.err(repository, ErrorKind::Setup(e)))
    }

    fn scope(repository: &str) -> Option<String> {
        Some(format!("repository:{repository}:pull"))
    }

    /// Every tag of a repository, in the registry's order, all pages.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        let mut url = self.url(repository, "tags/list")?;
        url.query_pairs_mut()
            .append_pair("n", &self.transport.options().page_size.to_string());
        let mut tags: Vec<String> = Vec::new();
        let mut visited: HashSet<String> = HashSet::new();
        let mut dropped = 0usize;
        for page in 1..=MAX_PAGES {
            visited.insert(url.to_string());
            let reply = self
                .transport
                .send(&Request {
                    method: Method::GET,
                    url: url.clone(),
                    accept: &["application/json"],
                    scope: Self::scope(repository),
                    limit: self.transport.options().limits.tags_page,
                    image: repository,
                })
                .await?;
            self.expect_ok(&reply, repository, || format!("repository `{repository}`"))?;
            self.expect_json(&reply, repository)?;
            #[derive(Deserialize)]
            struct TagList {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let list: TagList = serde_json::from_slice(&reply.body).map_err(|e| {
                self.err(
                    repository,
                    ErrorKind::InvalidResponse {
                        url: reply.url.to_string(),
                        reason: format!("malformed tags/list JSON: {e}"),
                    },
                )
            })?;
            for tag in list.tags.unwrap_or_default() {
                if check_tag(&tag).is_ok() {
                    tags.push(tag);
                } else {
                    dropped += 1;
                }
            }
            let Some(link) = reply.header("link") else {
                break;
            };
            let next = parse_next_link(link).map_err(|reason| {
                self.err(
                    repository,
                    ErrorKind::InvalidLink {
                        header: link.to_string(),
                        reason,
                    },
                )
            })?;
            let Some(next) = next else {
                break;
            };
            let next_url = reply.url.join(&next).map_err(|e| {
                self.err(
                    repository,
                    ErrorKind::InvalidLink {
                        header: link.to_string(),
                        reason: format!("bad URL: {e}"),
                    },
                )
            })?;
            if next_url.origin() != reply.url.origin() {
                return Err(self.err(
                    repository,
                    ErrorKind::InvalidLink {
                        header: link.to_string(),
                        reason: "next page is on another host".into(),
                    },
                ));
            }
            if visited.contains(next_url.as_str()) {
                return Err(self.err(
                    repository,
                    ErrorKind::InvalidLink {
                        header: link.to_string(),
                        reason: "pagination loops back to a page already read".into(),
                    },
                ));
            }
            if page == MAX_PAGES {
                return Err(self.err(
                    repository,
                    ErrorKind::InvalidResponse {
                        url: reply.url.to_string(),
                        reason: format!("more than {MAX_PAGES} pages of tags"),
                    },
                ));
            }
            url = next_url;
        }
        if dropped > 0 {
            tracing::warn!(registry = %self.registry(), image = repository, dropped, "ignored tags that are not valid tag names");
        }
        tracing::debug!(registry = %self.registry(), image = repository, tags = tags.len(), "listed tags");
        Ok(tags)
    }

    /// What `reference` (a tag or digest) points at, with one `HEAD`.
    pub async fn resolve(&self, repository: &str, reference: &str) -> Result<ManifestRef, Error> {
        self.check_reference(repository, reference)?;
        let url = self.url(repository, &format!("manifests/{reference}"))?;
        let reply = self
            .transport
            .send(&Request {
                method: Method::HEAD,
                url,
                accept: &MANIFEST_TYPES,
                scope: Self::scope(repository),
                limit: 0,
                image: repository,
            })
            .await?;
        self.expect_ok(&reply, repository, || {
            format!("manifest `{reference}` in `{repository}`")
        })?;
        let media_type = reply.media_type().unwrap_or_default();
        let Some(digest) = reply.header("docker-content-digest").map(str::to_string) else {
            // Some registries omit the header on HEAD: read the manifest.
            let (mref, _) = self.manifest(repository, reference).await?;
            return Ok(mref);
        };
        check_digest(&digest).map_err(|reason| {
            self.err(
                repository,
                ErrorKind::InvalidResponse {
                    url: reply.url.to_string(),
                    reason: format!("bad Docker-Content-Digest: {reason}"),
                },
            )
        })?;
        if !MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(self.err(repository, ErrorKind::UnsupportedMediaType(media_type)));
        }
        let size = reply
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        Ok(ManifestRef {
            digest,
            media_type,
            size,
        })
    }

    /// Reads and parses the manifest `reference` points at.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(ManifestRef, Manifest), Error> {
        self.check_reference(repository, reference)?;
        let url = self.url(repository, &format!("manifests/{reference}"))?;
        let reply = self
            .transport
            .send(&Request {
                method: Method::GET,
                url,
                accept: &MANIFEST_TYPES,
                scope: Self::scope(repository),
                limit: self.transport.options().limits.manifest,
                image: repository,
            })
            .await?;
        self.expect_ok(&reply, repository, || {
            format!("manifest `{reference}` in `{repository}`")
        })?;
        let digest = sha256_digest(&reply.body);
        let claimed = reply.header("docker-content-digest").map(str::to_string);
        for expected in claimed
            .iter()
            .map(String::as_str)
            .chain(reference.contains(':').then_some(reference))
        {
            if expected.starts_with("sha256:") && expected != digest {
                return Err(self.err(
                    repository,
                    ErrorKind::DigestMismatch {
                        url: reply.url.to_string(),
                        expected: expected.to_string(),
                        actual: digest,
                    },
                ));
            }
        }
        let manifest = parse_manifest(reply.media_type().as_deref(), &reply.body)
            .map_err(|kind| self.err(repository, with_url(kind, &reply.url)))?;
        let media_type = match &manifest {
            Manifest::Image { media_type, .. } | Manifest::Index { media_type, .. } => {
                media_type.clone()
            }
        };
        Ok((
            ManifestRef {
                digest,
                media_type,
                size: Some(reply.body.len() as u64),
            },
            manifest,
        ))
    }

    /// Creation time and labels of the image `reference` points at. For a
    /// multi-arch index, of the image for the configured platform.
    pub async fn image_info(&self, repository: &str, reference: &str) -> Result<ImageInfo, Error> {
        let (top, manifest) = self.manifest(repository, reference).await?;
        let (config, platform) = match manifest {
            Manifest::Image { config, .. } => (config, None),
            Manifest::Index { manifests, .. } => {
                let (os, arch) = &self.transport.options().platform;
                let child = pick_platform(&manifests, os, arch).ok_or_else(|| {
                    self.err(
                        repository,
                        ErrorKind::InvalidResponse {
                            url: format!("manifest {}", top.digest),
                            reason: "the index lists no image manifest".into(),
                        },
                    )
                })?;
                let platform = child
                    .platform
                    .as_ref()
                    .map(|p| format!("{}/{}", p.os, p.architecture));
                let (_, inner) = self.manifest(repository, &child.digest).await?;
                match inner {
                    Manifest::Image { config, .. } => (config, platform),
                    Manifest::Index { .. } => {
                        return Err(self.err(
                            repository,
                            ErrorKind::InvalidResponse {
                                url: format!("manifest {}", child.digest),
                                reason: "an index inside an index is not supported".into(),
                            },
                        ));
                    }
                }
            }
        };
        let mut info = ImageInfo {
            digest: top.digest,
            media_type: top.media_type,
            platform,
            created: None,
            labels: BTreeMap::new(),
        };
        if config.media_type != OCI_CONFIG && config.media_type != DOCKER_CONFIG {
            // An artifact (Helm chart, signature, …): no image config to read.
            tracing::debug!(registry = %self.registry(), image = repository, config_type = %config.media_type, "not an image config; no created time or labels");
            return Ok(info);
        }
        let blob = self.config_blob(repository, &config).await?;
        info.created = blob.0;
        info.labels = blob.1;
        Ok(info)
    }

    async fn config_blob(
        &self,
        repository: &str,
        config: &Descriptor,
    ) -> Result<(Option<jiff::Timestamp>, BTreeMap<String, String>), Error> {
        check_digest(&config.digest).map_err(|reason| {
            self.err(
                repository,
                ErrorKind::InvalidResponse {
                    url: "manifest".into(),
                    reason: format!("config descriptor: {reason}"),
                },
            )
        })?;
        let url = self.url(repository, &format!("blobs/{}", config.digest))?;
        let reply = self
            .transport
            .send(&Request {
                method: Method::GET,
                url,
                accept: &[OCI_CONFIG, DOCKER_CONFIG, "application/json", "*/*"],
                scope: Self::scope(repository),
                limit: self.transport.options().limits.config_blob,
                image: repository,
            })
            .await?;
        self.expect_ok(&reply, repository, || {
            format!("config blob {} in `{repository}`", config.digest)
        })?;
        let actual = sha256_digest(&reply.body);
        if config.digest.starts_with("sha256:") && actual != config.digest {
            return Err(self.err(
                repository,
                ErrorKind::DigestMismatch {
                    url: reply.url.to_string(),
                    expected: config.digest.clone(),
                    actual,
                },
            ));
        }
        parse_config(&reply.body).map_err(|reason| {
            self.err(
                repository,
                ErrorKind::InvalidResponse {
                    url: reply.url.to_string(),
                    reason,
                },
            )
        })
    }

    fn expect_ok(
        &self,
        reply: &Reply,
        repository: &str,
        what: impl Fn() -> String,
    ) -> Result<(), Error> {
        let kind = match reply.status {
            StatusCode::OK => return Ok(()),
            StatusCode::NOT_FOUND => ErrorKind::NotFound(match reply.error_message() {
                Some(m) => format!("{} ({m})", what()),
                None => what(),
            }),
            StatusCode::FORBIDDEN => ErrorKind::Forbidden(reply.error_message()),
            status => ErrorKind::Status {
                url: reply.url.to_string(),
                status: status.as_u16(),
                message: reply.error_message(),
            },
        };
        Err(self.err(repository, kind))
    }

    fn expect_json(&self, reply: &Reply, repository: &str) -> Result<(), Error> {
        match reply.media_type() {
            Some(t) if t != "application/json" && !t.ends_with("+json") => Err(self.err(
                repository,
                ErrorKind::InvalidResponse {
                    url: reply.url.to_string(),
                    reason: format!("expected JSON, got content type `{t}`"),
                },
            )),
            _ => Ok(()),
        }
    }
}

fn with_url(kind: ErrorKind, url: &Url) -> ErrorKind {
    match kind {
        ErrorKind::InvalidResponse { reason, .. } => ErrorKind::InvalidResponse {
            url: url.to_string(),
            reason,
        },
        other => other,
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Parses a manifest body. The content type decides; a generic or missing one
/// (`application/json`) defers to the body's `mediaType`.
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, ErrorKind> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Option<Vec<Descriptor>>,
        #[serde(default)]
        manifests: Option<Vec<Descriptor>>,
    }
    let invalid = |reason: String| ErrorKind::InvalidResponse {
        url: String::new(),
        reason,
    };
    let generic = |t: &str| t.is_empty() || t == "application/json";
    let declared = content_type.filter(|t| !generic(t));
    if let Some(t) = declared
        && !MANIFEST_TYPES.contains(&t)
    {
        return Err(ErrorKind::UnsupportedMediaType(t.to_string()));
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("malformed manifest JSON: {e}")))?;
    let media_type = match (declared, raw.media_type.as_deref()) {
        (Some(t), _) => t.to_string(),
        (None, Some(t)) if MANIFEST_TYPES.contains(&t) => t.to_string(),
        (None, Some(t)) => return Err(ErrorKind::UnsupportedMediaType(t.to_string())),
        // Untyped OCI content: an index has `manifests`, an image `config`.
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if raw.config.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => {
            return Err(ErrorKind::UnsupportedMediaType(
                content_type.unwrap_or("(none)").to_string(),
            ));
        }
    };
    if raw.schema_version != Some(2) {
        return Err(invalid(format!(
            "schemaVersion {} is not supported (want 2)",
            raw.schema_version
                .map_or_else(|| "missing".to_string(), |v| v.to_string())
        )));
    }
    if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST {
        let manifests = raw
            .manifests
            .ok_or_else(|| invalid(format!("{media_type} without `manifests`")))?;
        Ok(Manifest::Index {
            media_type,
            manifests,
        })
    } else {
        let config = raw
            .config
            .ok_or_else(|| invalid(format!("{media_type} without `config`")))?;
        Ok(Manifest::Image {
            media_type,
            config,
            layers: raw.layers.unwrap_or_default(),
        })
    }
}

/// The entry for `os/arch`; else the first real image (attestation entries are
/// marked `unknown/unknown`).
fn pick_platform<'a>(manifests: &'a [Descriptor], os: &str, arch: &str) -> Option<&'a Descriptor> {
    let is_image = |d: &&Descriptor| {
        d.media_type != OCI_INDEX
            && d.media_type != DOCKER_MANIFEST_LIST
            && d.platform
                .as_ref()
                .is_none_or(|p| p.os != "unknown" && p.architecture != "unknown")
    };
    manifests
        .iter()
        .filter(is_image)
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .or_else(|| manifests.iter().find(is_image))
}

/// `created` and `config.Labels` from an image config blob.
fn parse_config(
    body: &[u8],
) -> Result<(Option<jiff::Timestamp>, BTreeMap<String, String>), String> {
    #[derive(Deserialize)]
    struct ConfigBlob {
        #[serde(default)]
        created: Option<String>,
        #[serde(default)]
        config: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "Labels", default)]
        labels: Option<BTreeMap<String, String>>,
    }
    let blob: ConfigBlob =
        serde_json::from_slice(body).map_err(|e| format!("malformed image config JSON: {e}"))?;
    let created = match blob.created.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<jiff::Timestamp>()
                .map_err(|e| format!("image config `created` is not an RFC 3339 time: {e}"))?,
        ),
    };
    let labels = blob.config.and_then(|c| c.labels).unwrap_or_default();
    Ok((created, labels))
}

/// The target of `rel="next"` in a `Link` header, if any.
///
/// `<url>; rel="next"`, several links separated by commas, parameters in any
/// order, `rel` possibly listing several relations.
pub fn parse_next_link(header: &str) -> Result<Option<String>, String> {
    let s = header.trim();
    let mut rest = s;
    let mut next = None;
    while !rest.is_empty() {
        let r = rest.trim_start_matches([' ', '\t', ',']);
        if r.is_empty() {
            break;
        }
        let Some(r) = r.strip_prefix('<') else {
            return Err("expected `<` at the start of a link".into());
        };
        let Some(end) = r.find('>') else {
            return Err("unterminated `<…>`".into());
        };
        let target = &r[..end];
        if target.is_empty() || target.contains(char::is_whitespace) {
            return Err("empty or malformed link target".into());
        }
        let mut params = &r[end + 1..];
        let mut rel: Option<String> = None;
        loop {
            params = params.trim_start_matches([' ', '\t']);
            let Some(p) = params.strip_prefix(';') else {
                break;
            };
            let p = p.trim_start_matches([' ', '\t']);
            let name_end = p.find(['=', ';', ',']).unwrap_or(p.len());
            let name = p[..name_end].trim().to_ascii_lowercase();
            if name.is_empty() {
                return Err("empty link parameter".into());
            }
            let mut after = &p[name_end..];
            let mut value = String::new();
            if let Some(v) = after.strip_prefix('=') {
                let v = v.trim_start_matches([' ', '\t']);
                if let Some(q) = v.strip_prefix('"') {
                    let Some(close) = q.find('"') else {
                        return Err("unterminated quoted parameter".into());
                    };
                    value = q[..close].to_string();
                    after = &q[close + 1..];
                } else {
                    let end = v.find([';', ',']).unwrap_or(v.len());
                    value = v[..end].trim().to_string();
                    after = &v[end..];
                }
            }
            if name == "rel" {
                rel = Some(value);
            }
            params = after;
        }
        let params = params.trim_start_matches([' ', '\t']);
        if !(params.is_empty() || params.starts_with(',')) {
            return Err(format!("unexpected `{params}` after a link"));
        }
        if rel
            .as_deref()
            .is_some_and(|r| r.split_whitespace().any(|v| v.eq_ignore_ascii_case("next")))
        {
            next = Some(target.to_string());
        }
        rest = params;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            parse_next_link(r#"</v2/library/nginx/tags/list?last=1.21&n=100>; rel="next""#),
            Ok(Some("/v2/library/nginx/tags/list?last=1.21&n=100".into()))
        );
        assert_eq!(
            parse_next_link(
                r#"<https://quay.io/v2/a/b/tags/list?n=50&next_page=gAAAAABk>;rel=next"#
            ),
            Ok(Some(
                "https://quay.io/v2/a/b/tags/list?n=50&next_page=gAAAAABk".into()
            ))
        );
        assert_eq!(
            parse_next_link(r#"</p?1>; rel="prev", </p?3>; title="x"; rel="next""#),
            Ok(Some("/p?3".into()))
        );
        assert_eq!(parse_next_link(r#"</p?1>; rel="prev""#), Ok(None));
        assert_eq!(
            parse_next_link(r#"</p?1>; rel="first next""#),
            Ok(Some("/p?1".into()))
        );
        // Parameters without a value are allowed (RFC 8288).
        assert_eq!(
            parse_next_link(r#"</a>; rel="next"; crossorigin"#),
            Ok(Some("/a".into()))
        );
        for bad in [
            r#"/v2/x/tags/list?n=1; rel="next""#,
            r#"</v2/x/tags/list?n=1; rel="next""#,
            r#"<>; rel="next""#,
            r#"</a> junk"#,
            r#"</a>; rel="next"#,
        ] {
            assert!(parse_next_link(bad).is_err(), "{bad} should be rejected");
        }
    }

    const DIGEST_A: &str =
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn image_body(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType": "{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion": 2, {mt} "config": {{"mediaType": "{OCI_CONFIG}", "digest": "{DIGEST_A}", "size": 10}}, "layers": []}}"#
        )
    }

    #[test]
    fn manifests_by_content_type_or_body() {
        let m = parse_manifest(Some(DOCKER_MANIFEST), image_body(None).as_bytes()).expect("parses");
        assert!(
            matches!(m, Manifest::Image { ref media_type, .. } if media_type == DOCKER_MANIFEST)
        );
        let m = parse_manifest(
            Some("application/json"),
            image_body(Some(OCI_MANIFEST)).as_bytes(),
        )
        .expect("parses");
        assert!(matches!(m, Manifest::Image { ref media_type, .. } if media_type == OCI_MANIFEST));
        let m = parse_manifest(None, image_body(None).as_bytes()).expect("untyped OCI");
        assert!(matches!(m, Manifest::Image { .. }));
        let index = format!(
            r#"{{"schemaVersion": 2, "mediaType": "{OCI_INDEX}", "manifests": [{{"mediaType": "{OCI_MANIFEST}", "digest": "{DIGEST_A}", "size": 1, "platform": {{"os": "linux", "architecture": "arm64"}}}}]}}"#
        );
        let m = parse_manifest(Some(OCI_INDEX), index.as_bytes()).expect("index");
        let Manifest::Index { manifests, .. } = m else {
            panic!("index")
        };
        assert_eq!(
            manifests[0]
                .platform
                .as_ref()
                .map(|p| p.architecture.as_str()),
            Some("arm64")
        );
    }

    #[test]
    fn bad_manifests_are_clear_errors() {
        let e = parse_manifest(Some("application/vnd.example.unknown+json"), b"{}").unwrap_err();
        assert!(
            e.to_string()
                .contains("unsupported manifest media type `application/vnd.example.unknown+json`"),
            "{e}"
        );
        let e = parse_manifest(Some("text/html"), b"<html>").unwrap_err();
        assert!(e.to_string().contains("`text/html`"), "{e}");
        let e = parse_manifest(Some(OCI_MANIFEST), b"{not json").unwrap_err();
        assert!(e.to_string().contains("malformed manifest JSON"), "{e}");
        let e = parse_manifest(
            Some(OCI_MANIFEST),
            br#"{"schemaVersion": 1, "config": null}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("schemaVersion 1"), "{e}");
        let e = parse_manifest(Some(OCI_INDEX), br#"{"schemaVersion": 2}"#).unwrap_err();
        assert!(e.to_string().contains("without `manifests`"), "{e}");
        let e = parse_manifest(None, br#"{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"}"#).unwrap_err();
        assert!(matches!(e, ErrorKind::UnsupportedMediaType(_)), "{e}");
    }

    #[test]
    fn platform_choice_skips_attestations() {
        let d = |os: &str, arch: &str| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{os}{arch}"),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
        };
        let list = vec![
            d("unknown", "unknown"),
            d("linux", "arm64"),
            d("linux", "amd64"),
        ];
        assert_eq!(
            pick_platform(&list, "linux", "amd64").map(|d| d.digest.as_str()),
            Some("sha256:linuxamd64")
        );
        assert_eq!(
            pick_platform(&list, "linux", "s390x").map(|d| d.digest.as_str()),
            Some("sha256:linuxarm64")
        );
        assert_eq!(pick_platform(&list[..1], "linux", "amd64"), None);
    }

    #[test]
    fn config_blobs() {
        let (created, labels) = parse_config(
            br#"{"created": "2024-05-01T12:30:00.123456789Z", "architecture": "amd64",
                 "config": {"Labels": {"org.opencontainers.image.source": "https://github.com/acme/app"}}}"#,
        )
        .expect("parses");
        assert_eq!(created.map(|t| t.as_second()), Some(1714566600));
        assert_eq!(
            labels.get(LABEL_SOURCE).map(String::as_str),
            Some("https://github.com/acme/app")
        );
        let (created, labels) = parse_config(br#"{"config": {"Labels": null}}"#).expect("parses");
        assert!(created.is_none() && labels.is_empty());
        assert!(
            parse_config(br#"{"created": "yesterday"}"#)
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(parse_config(b"[").unwrap_err().contains("malformed"));
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
