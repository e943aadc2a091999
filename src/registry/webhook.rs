//! Registry push notifications, reduced to "repository X has a new tag Y".
//!
//! Four payload formats are understood: CNCF Distribution notification
//! envelopes (`{"events": [...]}`), Docker Hub webhooks, Harbor `PUSH_ARTIFACT`
//! (default and CloudEvents formats) and GitHub `package` / `registry_package`
//! events for container packages. Everything else in those payloads — pulls,
//! deletions, layer pushes, npm packages — is ignored, not an error: a webhook
//! endpoint should accept what it does not care about. The HTTP endpoint lives
//! in the daemon; here are the parsers and the mapping from an event to the
//! policies it affects ([`affected`]), which [`Scanner::scan_event`] rescans.
//!
//! [`Scanner::scan_event`]: super::Scanner::scan_event

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::MANIFEST_TYPES;
use super::reference::{DOCKER_HUB, ImageRef, check_digest, check_tag, normalize_registry};
use crate::policy::ImagePolicy;

/// Which service sent an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sender {
    Distribution,
    DockerHub,
    Harbor,
    GitHub,
}

/// Something was pushed to a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PushEvent {
    pub sender: Sender,
    /// Registry host, when the payload says (Distribution: from the event URL).
    pub registry: Option<String>,
    /// Repository path inside the registry: `acme/app`, `library/nginx`.
    pub repository: String,
    /// The tag pushed; `None` for pushes by digest.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl PushEvent {
    /// Whether this event concerns `image` (tag and digest of `image` ignored).
    pub fn concerns(&self, image: &ImageRef) -> bool {
        self.repository == image.repository
            && self
                .registry
                .as_deref()
                .is_none_or(|r| normalize_registry(r) == image.registry)
    }
}

impl PushEvent {
    /// The host of the registry that sent this event itself, which proves it
    /// is up: Distribution, Docker Hub and Harbor notify from the registry; a
    /// GitHub `package` event comes from github.com, not from ghcr.io, so it
    /// proves nothing about the registry.
    pub fn sent_by_registry(&self) -> Option<String> {
        match self.sender {
            Sender::GitHub => None,
            Sender::Distribution | Sender::DockerHub | Sender::Harbor => self
                .registry
                .as_deref()
                .map(normalize_registry)
                .filter(|r| !r.is_empty()),
        }
    }
}

impl std::fmt::Display for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sender::Distribution => "distribution",
            Sender::DockerHub => "docker-hub",
            Sender::Harbor => "harbor",
            Sender::GitHub => "github",
        })
    }
}

impl std::fmt::Display for PushEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        write!(f, "{}", self.repository)?;
        match (&self.tag, &self.digest) {
            (Some(t), _) => write!(f, " has new tag {t}"),
            (None, Some(d)) => write!(f, " has new content {d}"),
            (None, None) => write!(f, " changed"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("webhook body is not JSON: {0}")]
    NotJson(String),
    #[error("webhook payload of an unknown kind (not Distribution, Docker Hub, Harbor or GitHub)")]
    Unrecognized,
    #[error("{sender} webhook payload: {reason}")]
    Invalid { sender: Sender, reason: String },
}

/// Parses a payload of any supported kind. `github_event` is the
/// `X-GitHub-Event` header, when present.
pub fn parse(github_event: Option<&str>, body: &[u8]) -> Result<Vec<PushEvent>, WebhookError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    if let Some(event) = github_event {
        return github(event, value);
    }
    let has = |k: &str| value.get(k).is_some();
    if has("events") {
        distribution(value)
    } else if has("push_data") {
        docker_hub(value)
    } else if has("event_data")
        || (has("specversion") && str_at(&value, "type").is_some_and(|t| t.starts_with("harbor.")))
    {
        harbor(value)
    } else if has("registry_package") {
        github("registry_package", value)
    } else if has("package") && has("action") {
        github("package", value)
    } else {
        Err(WebhookError::Unrecognized)
    }
}

/// CNCF Distribution notification envelope.
pub fn parse_distribution(body: &[u8]) -> Result<Vec<PushEvent>, WebhookError> {
    distribution(json(body)?)
}

/// Docker Hub repository webhook.
pub fn parse_docker_hub(body: &[u8]) -> Result<Vec<PushEvent>, WebhookError> {
    docker_hub(json(body)?)
}

/// Harbor webhook (default or CloudEvents format).
pub fn parse_harbor(body: &[u8]) -> Result<Vec<PushEvent>, WebhookError> {
    harbor(json(body)?)
}

/// GitHub `package` or `registry_package` event (`X-GitHub-Event`).
pub fn parse_github(event: &str, body: &[u8]) -> Result<Vec<PushEvent>, WebhookError> {
    github(event, json(body)?)
}

/// The policies an event concerns.
pub fn affected<'a>(event: &PushEvent, policies: &'a [ImagePolicy]) -> Vec<&'a ImagePolicy> {
    policies
        .iter()
        .filter(|p| ImageRef::parse(&p.image).is_ok_and(|image| event.concerns(&image)))
        .collect()
}

fn json(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn valid_tag(tag: Option<&str>) -> Option<String> {
    tag.filter(|t| check_tag(t).is_ok()).map(str::to_string)
}

fn valid_digest(digest: Option<&str>) -> Option<String> {
    digest
        .filter(|d| check_digest(d).is_ok())
        .map(str::to_string)
}

fn dedup(events: Vec<PushEvent>) -> Vec<PushEvent> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect()
}

fn distribution(value: Value) -> Result<Vec<PushEvent>, WebhookError> {
    #[derive(Deserialize)]
    struct Envelope {
        events: Vec<Event>,
    }
    #[derive(Deserialize)]
    struct Event {
        #[serde(default)]
        action: String,
        #[serde(default)]
        target: Target,
        #[serde(default)]
        request: Option<RequestRecord>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Target {
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        digest: Option<String>,
        #[serde(default)]
        repository: String,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        tag: Option<String>,
    }
    #[derive(Deserialize)]
    struct RequestRecord {
        #[serde(default)]
        host: Option<String>,
    }
    let envelope: Envelope = serde_json::from_value(value).map_err(|e| WebhookError::Invalid {
        sender: Sender::Distribution,
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for event in envelope.events {
        let t = event.target;
        let is_manifest = MANIFEST_TYPES.contains(&t.media_type.as_str()) || t.tag.is_some();
        if event.action != "push" || !is_manifest || t.repository.is_empty() {
            continue;
        }
        // The registry as its clients address it: the host of the event URL.
        let registry = t
            .url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            })
            .or_else(|| event.request.and_then(|r| r.host))
            .map(|h| normalize_registry(&h));
        out.push(PushEvent {
            sender: Sender::Distribution,
            registry,
            repository: t.repository,
            tag: valid_tag(t.tag.as_deref()),
            digest: valid_digest(t.digest.as_deref()),
        });
    }
    Ok(dedup(out))
}

fn docker_hub(value: Value) -> Result<Vec<PushEvent>, WebhookError> {
    let invalid = |reason: &str| WebhookError::Invalid {
        sender: Sender::DockerHub,
        reason: reason.to_string(),
    };
    let repo_name = value
        .get("repository")
        .and_then(|r| str_at(r, "repo_name"))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("missing `repository.repo_name`"))?;
    let repository = if repo_name.contains('/') {
        repo_name.to_string()
    } else {
        format!("library/{repo_name}")
    };
    let tag = value.get("push_data").and_then(|p| str_at(p, "tag"));
    Ok(vec![PushEvent {
        sender: Sender::DockerHub,
        registry: Some(DOCKER_HUB.to_string()),
        repository,
        tag: valid_tag(tag),
        digest: None,
    }])
}

fn harbor(value: Value) -> Result<Vec<PushEvent>, WebhookError> {
    let invalid = |reason: &str| WebhookError::Invalid {
        sender: Sender::Harbor,
        reason: reason.to_string(),
    };
    // Default format: {type: PUSH_ARTIFACT, event_data}; CloudEvents: {type:
    // harbor.artifact.pushed, data}.
    let kind = str_at(&value, "type").unwrap_or_default();
    let data = match kind {
        "PUSH_ARTIFACT" => value.get("event_data"),
        "harbor.artifact.pushed" => value.get("data"),
        _ => return Ok(Vec::new()),
    }
    .ok_or_else(|| invalid("push event without data"))?;
    let repository = data
        .get("repository")
        .and_then(|r| str_at(r, "repo_full_name"))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("missing `repository.repo_full_name`"))?;
    let resources = data
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("missing `resources`"))?;
    let mut out = Vec::new();
    for r in resources {
        // `resource_url` is `host/project/repo:tag` or `…@sha256:…`.
        let registry = str_at(r, "resource_url")
            .and_then(|u| u.split_once('/'))
            .map(|(host, _)| normalize_registry(host));
        out.push(PushEvent {
            sender: Sender::Harbor,
            registry,
            repository: repository.to_string(),
            // Pushed by digest: Harbor puts the digest in `tag`.
            tag: valid_tag(str_at(r, "tag")),
            digest: valid_digest(str_at(r, "digest")),
        });
    }
    Ok(dedup(out))
}

fn github(event: &str, value: Value) -> Result<Vec<PushEvent>, WebhookError> {
    let invalid = |reason: String| WebhookError::Invalid {
        sender: Sender::GitHub,
        reason,
    };
    let key = match event {
        "package" => "package",
        "registry_package" => "registry_package",
        _ => return Ok(Vec::new()),
    };
    let action = str_at(&value, "action").unwrap_or_default();
    if action != "published" && action != "updated" {
        return Ok(Vec::new());
    }
    let package = value
        .get(key)
        .ok_or_else(|| invalid(format!("`{event}` event without `{key}`")))?;
    let version = package.get("package_version");
    let container_metadata = version.and_then(|v| v.get("container_metadata"));
    let registry_type = package
        .get("registry")
        .and_then(|r| str_at(r, "type"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let package_type = str_at(package, "package_type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let is_container = container_metadata.is_some()
        || matches!(registry_type.as_str(), "container" | "docker")
        || matches!(package_type.as_str(), "container" | "docker");
    if !is_container {
        return Ok(Vec::new());
    }
    // `package_url` is `ghcr.io/owner/name:tag` (the tag may be empty).
    let from_url = version
        .and_then(|v| str_at(v, "package_url"))
        .filter(|u| !u.is_empty())
        .map(|u| {
            let last_slash = u.rfind('/').map_or(0, |i| i + 1);
            match u[last_slash..].find([':', '@']) {
                Some(i) => &u[..last_slash + i],
                None => u,
            }
        });
    let name = match from_url {
        Some(n) => n.to_ascii_lowercase(),
        None => {
            let owner = package
                .get("owner")
                .and_then(|o| str_at(o, "login"))
                .ok_or_else(|| invalid("no `package_url` and no owner".into()))?;
            let pkg =
                str_at(package, "name").ok_or_else(|| invalid("package without `name`".into()))?;
            format!("ghcr.io/{owner}/{pkg}").to_ascii_lowercase()
        }
    };
    let image = ImageRef::parse(&name).map_err(|e| invalid(e.to_string()))?;
    let tag_meta = container_metadata.and_then(|m| m.get("tag"));
    Ok(vec![PushEvent {
        sender: Sender::GitHub,
        registry: Some(image.registry),
        repository: image.repository,
        tag: valid_tag(tag_meta.and_then(|t| str_at(t, "name"))),
        digest: valid_digest(tag_meta.and_then(|t| str_at(t, "digest")))
            .or_else(|| valid_digest(version.and_then(|v| str_at(v, "version")))),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/registry")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn distribution_envelope_keeps_manifest_pushes_only() {
        let events = parse_distribution(&fixture("distribution-push.json")).expect("parses");
        assert_eq!(
            events,
            vec![PushEvent {
                sender: Sender::Distribution,
                registry: Some("example.com".into()),
                repository: "library/test".into(),
                tag: None,
                digest: Some(
                    "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf"
                        .into()
                ),
            }],
            "the two layer pushes are not tags"
        );
        assert_eq!(parse(None, &fixture("distribution-push.json")), Ok(events));
        assert!(
            parse_distribution(&fixture("distribution-pull.json"))
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn docker_hub_push() {
        let events = parse(None, &fixture("dockerhub-push.json")).expect("parses");
        assert_eq!(
            events,
            vec![PushEvent {
                sender: Sender::DockerHub,
                registry: Some("docker.io".into()),
                repository: "svendowideit/testhook".into(),
                tag: Some("latest".into()),
                digest: None,
            }]
        );
        let image = ImageRef::parse("svendowideit/testhook:1.0").expect("valid");
        assert!(events[0].concerns(&image));
        assert_eq!(
            events[0].to_string(),
            "docker.io/svendowideit/testhook has new tag latest"
        );
    }

    #[test]
    fn harbor_push_by_tag_and_by_digest() {
        let events = parse(None, &fixture("harbor-push.json")).expect("parses");
        assert_eq!(
            events,
            vec![PushEvent {
                sender: Sender::Harbor,
                registry: Some("hub.harbor.com".into()),
                repository: "test-webhook/debian".into(),
                tag: Some("latest".into()),
                digest: Some(
                    "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
                        .into()
                ),
            }]
        );
        let events = parse_harbor(&fixture("harbor-push-by-digest.json")).expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].tag, None, "a digest in `tag` is not a tag");
        assert_eq!(events[0].registry.as_deref(), Some("localhost"));
        assert_eq!(events[0].repository, "harbor/alpine");
        assert!(
            parse(None, &fixture("harbor-delete-cloudevents.json"))
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn harbor_cloudevents_push() {
        // The CloudEvents push carries the same `data` as the deletion sample.
        let mut v: Value =
            serde_json::from_slice(&fixture("harbor-delete-cloudevents.json")).expect("json");
        v["type"] = Value::from("harbor.artifact.pushed");
        let events = parse(None, v.to_string().as_bytes()).expect("parses");
        assert_eq!(events[0].tag.as_deref(), Some("3.8"));
        assert_eq!(events[0].repository, "harbor/alpine");
    }

    #[test]
    fn github_container_packages() {
        for (event, file) in [
            ("registry_package", "github-registry-package-published.json"),
            ("package", "github-package-published.json"),
        ] {
            let events = parse(Some(event), &fixture(file)).expect("parses");
            assert_eq!(
                events,
                vec![PushEvent {
                    sender: Sender::GitHub,
                    registry: Some("ghcr.io".into()),
                    repository: "codertocat/hello-world".into(),
                    // The samples carry an empty tag name and a truncated
                    // `container_metadata` digest; the version is the digest.
                    tag: None,
                    digest: Some(
                        "sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498"
                            .into()
                    ),
                }],
                "{file}"
            );
            // Without the header, the payload shape tells the kind.
            assert_eq!(parse(None, &fixture(file)), Ok(events));
        }
        assert!(
            parse_github("package", &fixture("github-package-published-npm.json"))
                .expect("parses")
                .is_empty()
        );
        assert!(
            parse_github("push", &fixture("github-package-published.json"))
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn github_tag_from_container_metadata() {
        let mut v: Value =
            serde_json::from_slice(&fixture("github-registry-package-published.json"))
                .expect("json");
        let meta = &mut v["registry_package"]["package_version"]["container_metadata"]["tag"];
        meta["name"] = Value::from("1.4.2");
        meta["digest"] = Value::from(format!("sha256:{}", "b".repeat(64)));
        let events = parse_github("registry_package", v.to_string().as_bytes()).expect("parses");
        assert_eq!(events[0].tag.as_deref(), Some("1.4.2"));
        assert_eq!(
            events[0].digest.as_deref(),
            Some(format!("sha256:{}", "b".repeat(64)).as_str())
        );
    }

    #[test]
    fn registry_senders_prove_their_registry_is_up_github_does_not() {
        let host = |file: &str| -> Vec<Option<String>> {
            parse(None, &fixture(file))
                .expect("parses")
                .iter()
                .map(PushEvent::sent_by_registry)
                .collect()
        };
        assert_eq!(host("distribution-push.json"), [Some("example.com".into())]);
        assert_eq!(host("dockerhub-push.json"), [Some("docker.io".into())]);
        assert_eq!(host("harbor-push.json"), [Some("hub.harbor.com".into())]);
        // GitHub's events name ghcr.io but are sent by github.com, also when
        // posted to the registry endpoint (no `X-GitHub-Event` header).
        assert_eq!(host("github-registry-package-published.json"), [None]);
        assert_eq!(host("github-package-published.json"), [None]);
        // A Distribution event without a URL or request host names no registry.
        let anonymous = PushEvent {
            sender: Sender::Distribution,
            registry: None,
            repository: "acme/app".into(),
            tag: Some("1.0.0".into()),
            digest: None,
        };
        assert_eq!(anonymous.sent_by_registry(), None);
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        assert!(matches!(
            parse(None, b"{not json"),
            Err(WebhookError::NotJson(_))
        ));
        assert_eq!(
            parse(None, b"{\"hello\": 1}"),
            Err(WebhookError::Unrecognized)
        );
        assert!(matches!(
            parse(None, br#"{"events": 3}"#),
            Err(WebhookError::Invalid {
                sender: Sender::Distribution,
                ..
            })
        ));
        assert!(matches!(
            parse(None, br#"{"push_data": {}}"#),
            Err(WebhookError::Invalid {
                sender: Sender::DockerHub,
                ..
            })
        ));
        assert!(matches!(
            parse(
                None,
                br#"{"type": "PUSH_ARTIFACT", "event_data": {"resources": []}}"#
            ),
            Err(WebhookError::Invalid {
                sender: Sender::Harbor,
                ..
            })
        ));
        assert!(matches!(
            parse(
                Some("package"),
                br#"{"action": "published", "package": {"package_type": "CONTAINER"}}"#
            ),
            Err(WebhookError::Invalid {
                sender: Sender::GitHub,
                ..
            })
        ));
        // Truncated real payloads.
        for file in [
            "harbor-push.json",
            "dockerhub-push.json",
            "distribution-push.json",
        ] {
            let body = fixture(file);
            assert!(parse(None, &body[..body.len() / 2]).is_err(), "{file}");
        }
    }

    #[test]
    fn affected_policies_match_registry_and_repository() {
        let policy = |name: &str, image: &str| ImagePolicy {
            name: name.into(),
            namespace: None,
            image: image.into(),
            filter: None,
            exclude: vec![],
            strategy: crate::policy::Strategy::Alphabetical(crate::policy::Order::Asc),
            digest: crate::policy::DigestMode::Tag,
            source: "p.yaml".into(),
        };
        let policies = vec![
            policy("a", "hub.harbor.com/test-webhook/debian"),
            policy("b", "other.io/test-webhook/debian"),
            policy("c", "hub.harbor.com/test-webhook/ubuntu"),
        ];
        let events = parse(None, &fixture("harbor-push.json")).expect("parses");
        let names: Vec<&str> = affected(&events[0], &policies)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, vec!["a"]);
    }
}
