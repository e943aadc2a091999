//! Reactions to GitHub webhook events, from GitHub's documented example
//! payloads (tests/fixtures/github/webhooks/), with single fields changed in
//! memory for each case; malformed payloads give errors naming the field.

use capstan::forge::{CombinedStatus, CommitState, ContextState, GitHub};
use capstan::update::pr_events::{self, Event, Merge, PayloadError, Reaction, Rules};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn response(name: &str) -> Value {
    let p = format!(
        "{}/tests/fixtures/github/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
}

fn payload(name: &str) -> Value {
    let p = format!(
        "{}/tests/fixtures/github/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("encodes")
}

/// The fixtures' repository and base branch.
fn rules(auto_merge: bool) -> Rules<'static> {
    Rules {
        repository: "Codertocat/Hello-World",
        base_branch: "master",
        branch_template: "capstan/{policy}",
        auto_merge,
    }
}

fn approved_review() -> Value {
    let mut p = payload("pull_request_review-submitted.json");
    p["review"]["state"] = json!("approved");
    p["pull_request"]["head"]["ref"] = json!("capstan/podinfo");
    p
}

fn react(event: &str, body: &Value, rules: &Rules<'_>) -> Reaction {
    let event = pr_events::parse(event, &bytes(body)).expect("parses");
    pr_events::react(&event, rules)
}

#[test]
fn an_approval_of_a_capstan_pull_request_merges_the_reviewed_commit_when_green() {
    let reaction = react("pull_request_review", &approved_review(), &rules(true));
    assert_eq!(
        reaction,
        Reaction::MergeIfGreen {
            number: 2,
            sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
            policy: "podinfo".into(),
        }
    );
    let green = CombinedStatus {
        state: CommitState::Success,
        statuses: vec![ContextState {
            context: "ci/test".into(),
            state: CommitState::Success,
            description: "passed".into(),
        }],
    };
    assert_eq!(pr_events::should_merge(&green), Ok(()));
    let pending = CombinedStatus {
        state: CommitState::Pending,
        statuses: vec![
            green.statuses[0].clone(),
            ContextState {
                context: "capstan/prod".into(),
                state: CommitState::Pending,
                description: "syncing".into(),
            },
        ],
    };
    assert_eq!(
        pr_events::should_merge(&pending),
        Err("capstan/prod is pending".into())
    );
    let none = CombinedStatus {
        state: CommitState::Pending,
        statuses: vec![],
    };
    assert!(pr_events::should_merge(&none).is_err());
}

#[test]
fn reviews_that_must_not_merge() {
    // As documented: a `commented` review.
    let documented = payload("pull_request_review-submitted.json");
    assert!(matches!(
        react("pull_request_review", &documented, &rules(true)),
        Reaction::Nothing(why) if why.contains("commented")
    ));
    // Approved, but auto-merge is off.
    assert!(matches!(
        react("pull_request_review", &approved_review(), &rules(false)),
        Reaction::Nothing(why) if why.contains("autoMerge")
    ));
    // Approved, but a person's branch.
    let mut p = approved_review();
    p["pull_request"]["head"]["ref"] = json!("changes");
    assert!(matches!(
        react("pull_request_review", &p, &rules(true)),
        Reaction::Nothing(why) if why.contains("not a capstan branch")
    ));
    // Approved, into another base.
    let mut p = approved_review();
    p["pull_request"]["base"]["ref"] = json!("release");
    assert!(matches!(
        react("pull_request_review", &p, &rules(true)),
        Reaction::Nothing(_)
    ));
    // Another repository.
    let mut p = approved_review();
    p["repository"]["full_name"] = json!("someone/else");
    assert!(matches!(
        react("pull_request_review", &p, &rules(true)),
        Reaction::Nothing(why) if why.contains("someone/else")
    ));
    // A dismissed review is another action.
    let mut p = approved_review();
    p["action"] = json!("dismissed");
    assert!(matches!(
        react("pull_request_review", &p, &rules(true)),
        Reaction::Nothing(_)
    ));
}

#[test]
fn a_merged_pull_request_into_the_base_triggers_a_sync() {
    // As documented: closed without merge.
    let documented = payload("pull_request-closed.json");
    assert!(matches!(
        react("pull_request", &documented, &rules(true)),
        Reaction::Nothing(why) if why.contains("without merge")
    ));
    let mut merged = documented.clone();
    merged["pull_request"]["merged"] = json!(true);
    assert_eq!(
        react("pull_request", &merged, &rules(true)),
        Reaction::TriggerSync {
            commit: documented["pull_request"]["merge_commit_sha"]
                .as_str()
                .expect("sha")
                .into(),
            reason: "pull request #2 merged into `master`".into(),
        }
    );
    let mut elsewhere = merged.clone();
    elsewhere["pull_request"]["base"]["ref"] = json!("develop");
    assert!(matches!(
        react("pull_request", &elsewhere, &rules(true)),
        Reaction::Nothing(_)
    ));
}

#[test]
fn a_push_to_the_base_triggers_a_sync_and_other_pushes_do_not() {
    let branch = payload("push-branch.json");
    assert_eq!(
        react("push", &branch, &rules(false)),
        Reaction::TriggerSync {
            commit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            reason: "push to `master`".into(),
        }
    );
    // As documented: a deleted tag.
    assert!(matches!(
        react("push", &payload("push-tag-deleted.json"), &rules(false)),
        Reaction::Nothing(why) if why.contains("refs/tags/simple-tag")
    ));
    let mut deleted = branch.clone();
    deleted["deleted"] = json!(true);
    assert!(matches!(
        react("push", &deleted, &rules(false)),
        Reaction::Nothing(why) if why.contains("deleted")
    ));
    let mut feature = branch;
    feature["ref"] = json!("refs/heads/capstan/podinfo");
    assert!(matches!(
        react("push", &feature, &rules(false)),
        Reaction::Nothing(_)
    ));
}

#[test]
fn malformed_payloads_name_the_field() {
    let mut p = approved_review();
    p["pull_request"]
        .as_object_mut()
        .expect("object")
        .remove("base");
    assert_eq!(
        pr_events::parse("pull_request_review", &bytes(&p)),
        Err(PayloadError::Missing {
            event: "pull_request_review".into(),
            field: "pull_request.base.ref".into(),
        })
    );
    let mut p = payload("pull_request-closed.json");
    p["pull_request"]["merged"] = json!("yes");
    let err = pr_events::parse("pull_request", &bytes(&p)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`pull_request` payload: field `pull_request.merged` must be true or false"
    );
    let mut p = payload("push-branch.json");
    p.as_object_mut().expect("object").remove("after");
    let err = pr_events::parse("push", &bytes(&p)).unwrap_err();
    assert_eq!(err.to_string(), "`push` payload: field `after` is missing");
    assert!(matches!(
        pr_events::parse("push", b"{not json"),
        Err(PayloadError::NotJson { .. })
    ));
    // Unknown events are not errors.
    assert!(matches!(
        pr_events::parse("issues", b"{}"),
        Ok(Event::Other(_))
    ));
}

/// `MergeIfGreen` carried out against GitHub's documented answers: the
/// combined status is read for the reviewed commit, and the merge names it.
#[tokio::test]
async fn merge_if_green_reads_the_status_then_merges_that_commit() {
    const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{SHA}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(response("combined-status.json")))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("PUT"))
        .and(path("/repos/acme/fleet/pulls/2/merge"))
        .and(body_json(json!({ "sha": SHA, "merge_method": "merge" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(response("merge-pull-request.json")))
        .expect(1)
        .mount(&github)
        .await;
    let forge = GitHub::new(Some(&github.uri()), Some("t0ken".into()), "acme", "fleet").unwrap();
    assert_eq!(
        pr_events::merge_if_green(&forge, 2, SHA).await.unwrap(),
        Merge::Merged(SHA.into())
    );
    github.verify().await;

    // A pending context: no merge request at all.
    github.reset().await;
    let mut pending = response("combined-status.json");
    pending["state"] = json!("pending");
    pending["statuses"][1]["state"] = json!("pending");
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{SHA}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(pending))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&github)
        .await;
    assert_eq!(
        pr_events::merge_if_green(&forge, 2, SHA).await.unwrap(),
        Merge::Waiting("security/brakeman is pending".into())
    );
    github.verify().await;
}
