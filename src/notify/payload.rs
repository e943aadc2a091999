//! Request bodies, one per sink kind, rendered from an [`Event`] (pure).
//!
//! - Generic webhook: the event itself (see [`super::event`]).
//! - Slack incoming webhook: `{"text": ..., "blocks": [...]}`; `text` is the
//!   fallback shown in notifications, the blocks carry the details. Slack's
//!   mrkdwn treats `&`, `<` and `>` as control characters, so values are
//!   escaped.

use serde_json::{Value, json};

use super::event::{Event, EventKind};

/// The generic webhook body.
pub fn webhook(event: &Event) -> Value {
    serde_json::to_value(event).unwrap_or_else(|e| {
        // Serializing plain strings and a timestamp cannot fail; keep a body anyway.
        json!({ "schemaVersion": event.schema_version, "event": event.event, "message": format!("unserializable event: {e}") })
    })
}

/// The Slack incoming-webhook body.
pub fn slack(event: &Event) -> Value {
    let headline = format!("{} {}", icon(event.event), escape(&event.message));
    let field = |name: &str, value: &Option<String>| {
        value.as_ref().map(|v| format!("*{name}:* {}", escape(v)))
    };
    let tag = match (&event.old_tag, &event.new_tag) {
        (Some(old), Some(new)) => Some(format!("*Tag:* `{}` → `{}`", escape(old), escape(new))),
        _ => None,
    };
    let mut fields: Vec<String> = [
        field("Policy", &event.policy),
        field("Target", &event.target),
        field("Image", &event.image),
        tag,
        field("Commit", &event.commit),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(url) = &event.pull_request_url {
        fields.push(format!("*Pull request:* <{}>", escape(url)));
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": headline },
    })];
    if !fields.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": fields.join("\n") },
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("capstan · {} · {}", event.event, event.timestamp) }],
    }));
    json!({ "text": headline, "blocks": blocks })
}

fn icon(kind: EventKind) -> &'static str {
    match kind {
        EventKind::TagChosen => ":label:",
        EventKind::CommitPushed => ":arrow_up:",
        EventKind::PullRequestOpened | EventKind::PullRequestUpdated => {
            ":twisted_rightwards_arrows:"
        }
        EventKind::SyncStarted => ":arrows_counterclockwise:",
        EventKind::SyncSucceeded => ":white_check_mark:",
        EventKind::SyncFailed => ":x:",
    }
}

/// Slack's three mrkdwn control characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event::new(EventKind::CommitPushed, "app 1.0 → 1.1 <pushed> & done")
            .policy("app")
            .image("ghcr.io/acme/app", "1.0", "1.1")
            .commit("abc123")
            .at(jiff::Timestamp::from_second(1_700_000_000).expect("ts"))
    }

    #[test]
    fn slack_escapes_control_characters_and_lists_fields() {
        let body = slack(&event());
        assert_eq!(
            body["text"],
            ":arrow_up: app 1.0 → 1.1 &lt;pushed&gt; &amp; done"
        );
        assert_eq!(
            body["blocks"][1]["text"]["text"],
            "*Policy:* app\n*Image:* ghcr.io/acme/app\n*Tag:* `1.0` → `1.1`\n*Commit:* abc123"
        );
        assert_eq!(
            body["blocks"][2]["elements"][0]["text"],
            "capstan · commit-pushed · 2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn webhook_is_the_event() {
        let body = webhook(&event());
        assert_eq!(body["event"], "commit-pushed");
        assert_eq!(body["oldTag"], "1.0");
        assert_eq!(body["target"], Value::Null);
    }
}
