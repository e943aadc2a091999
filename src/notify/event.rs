//! What happened, as a notification: the event kinds a sink can subscribe to,
//! and the one record every sink renders from.
//!
//! The JSON webhook body is this record, serialized with every key present
//! (absent values are `null`) so that receivers can rely on a fixed schema;
//! `schemaVersion` changes only when a key changes meaning or disappears.

use serde::{Deserialize, Serialize};

/// Version of the generic webhook body (see the README's notification schema).
pub const SCHEMA_VERSION: u32 = 1;

/// The kinds of events, as written in `notifications[].events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A policy chose a tag different from the one in Git.
    TagChosen,
    /// A tag bump was committed and pushed to the branch (`push` mode).
    CommitPushed,
    /// A pull request was opened for a policy (`pull-request` mode).
    PullRequestOpened,
    /// An existing pull request was updated to a newer tag.
    PullRequestUpdated,
    /// A sync of a target started.
    SyncStarted,
    SyncSucceeded,
    SyncFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::TagChosen,
        EventKind::CommitPushed,
        EventKind::PullRequestOpened,
        EventKind::PullRequestUpdated,
        EventKind::SyncStarted,
        EventKind::SyncSucceeded,
        EventKind::SyncFailed,
    ];

    /// The name used in configuration and in the webhook body.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TagChosen => "tag-chosen",
            EventKind::CommitPushed => "commit-pushed",
            EventKind::PullRequestOpened => "pull-request-opened",
            EventKind::PullRequestUpdated => "pull-request-updated",
            EventKind::SyncStarted => "sync-started",
            EventKind::SyncSucceeded => "sync-succeeded",
            EventKind::SyncFailed => "sync-failed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event. Image-update events carry `policy`, `image` and the tags; sync
/// events carry `target` and `commit`. `message` is a one-line summary for
/// people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub schema_version: u32,
    pub event: EventKind,
    pub policy: Option<String>,
    pub target: Option<String>,
    /// Image repository, without tag (`ghcr.io/acme/app`).
    pub image: Option<String>,
    pub old_tag: Option<String>,
    pub new_tag: Option<String>,
    pub commit: Option<String>,
    pub pull_request_url: Option<String>,
    pub message: String,
    /// RFC 3339, UTC.
    pub timestamp: jiff::Timestamp,
}

impl Event {
    /// An event happening now, with every optional field empty.
    pub fn new(kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            schema_version: SCHEMA_VERSION,
            event: kind,
            policy: None,
            target: None,
            image: None,
            old_tag: None,
            new_tag: None,
            commit: None,
            pull_request_url: None,
            message: message.into(),
            timestamp: jiff::Timestamp::now(),
        }
    }

    pub fn policy(mut self, policy: &str) -> Event {
        self.policy = Some(policy.to_string());
        self
    }

    pub fn target(mut self, target: &str) -> Event {
        self.target = Some(target.to_string());
        self
    }

    /// Image repository and the tag step.
    pub fn image(mut self, image: &str, old_tag: &str, new_tag: &str) -> Event {
        self.image = Some(image.to_string());
        self.old_tag = Some(old_tag.to_string());
        self.new_tag = Some(new_tag.to_string());
        self
    }

    pub fn commit(mut self, commit: &str) -> Event {
        self.commit = Some(commit.to_string());
        self
    }

    pub fn pull_request_url(mut self, url: &str) -> Event {
        self.pull_request_url = Some(url.to_string());
        self
    }

    pub fn at(mut self, timestamp: jiff::Timestamp) -> Event {
        self.timestamp = timestamp;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_as_their_config_names() {
        for kind in EventKind::ALL {
            let json = serde_json::to_value(kind).expect("serializes");
            assert_eq!(json, serde_json::Value::String(kind.as_str().into()));
        }
    }

    #[test]
    fn every_key_is_present() {
        let event = Event::new(EventKind::SyncStarted, "syncing")
            .at(jiff::Timestamp::from_second(1_700_000_000).expect("ts"));
        let json = serde_json::to_value(&event).expect("serializes");
        let keys: Vec<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 11, "{keys:?}");
        assert_eq!(json["policy"], serde_json::Value::Null);
        assert_eq!(json["timestamp"], "2023-11-14T22:13:20Z");
    }
}
