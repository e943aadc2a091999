//! Reactions to GitHub webhook events, from GitHub's documented example
//! payloads (tests/fixtures/github/webhooks/), with single fields changed in
//! memory for each case; malformed payloads give errors naming the field.

use capstan::forge::{
    CombinedStatus, CommitState, ContextState, Forge, GitHub, PullRequest, PullReview,
};
use capstan::update::pr_events::{self, Event, Merge, PayloadError, Reaction, Rules};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, method, path, query_param};
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
    expect_green_merge(&github, SHA, 2).await;
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
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{SHA}/check-runs")))
        .respond_with(ResponseTemplate::new(200).set_body_json(no_check_runs()))
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

/// A commit without check runs, as GitHub answers it.
/// GitHub's answers for one merge-when-green of pull request `number` at `sha`: a
/// green combined status, no check runs, and the merge at exactly `sha` (each once).
async fn expect_green_merge(github: &MockServer, sha: &str, number: u64) {
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{sha}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(response("combined-status.json")))
        .expect(1)
        .mount(github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{sha}/check-runs")))
        .respond_with(ResponseTemplate::new(200).set_body_json(no_check_runs()))
        .expect(1)
        .mount(github)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("/repos/acme/fleet/pulls/{number}/merge")))
        .and(body_json(json!({ "sha": sha, "merge_method": "merge" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(response("merge-pull-request.json")))
        .expect(1)
        .mount(github)
        .await;
}

fn no_check_runs() -> Value {
    json!({ "total_count": 0, "check_runs": [] })
}

/// GitHub's answer for a commit without commit statuses (GitHub Actions
/// reports check runs only): `pending`, no statuses.
fn no_statuses() -> Value {
    let mut combined = response("combined-status.json");
    combined["state"] = json!("pending");
    combined["statuses"] = json!([]);
    combined["total_count"] = json!(0);
    combined
}

/// Mounts, on a reset server, a commit without statuses whose check runs are
/// `runs`, and a merge of pull request 2 at `sha` expected `merges` times.
async fn check_runs_only(github: &MockServer, sha: &str, runs: Value, merges: u64) {
    github.reset().await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{sha}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(no_statuses()))
        .expect(1)
        .mount(github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{sha}/check-runs")))
        .and(query_param("filter", "latest"))
        .and(query_param("per_page", "100"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(runs))
        .expect(1)
        .mount(github)
        .await;
    Mock::given(method("PUT"))
        .and(path("/repos/acme/fleet/pulls/2/merge"))
        .and(body_json(json!({ "sha": sha, "merge_method": "merge" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(response("merge-pull-request.json")))
        .expect(merges)
        .mount(github)
        .await;
}

/// A repository whose checks are check runs alone (GitHub Actions): the
/// approved commit merges when its runs completed successfully, and waits
/// (naming the run) while one runs or after one failed.
#[tokio::test]
async fn merge_if_green_reads_the_check_runs_of_a_commit_without_statuses() {
    const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let github = MockServer::start().await;
    let forge = GitHub::new(Some(&github.uri()), Some("t0ken".into()), "acme", "fleet").unwrap();

    // Both documented runs completed (neutral, success): merged at SHA.
    check_runs_only(&github, SHA, response("check-runs.json"), 1).await;
    assert_eq!(
        pr_events::merge_if_green(&forge, 2, SHA).await.unwrap(),
        Merge::Merged(SHA.into())
    );
    github.verify().await;

    // `build` still in progress: no merge.
    let mut running = response("check-runs.json");
    running["check_runs"][1]["status"] = json!("in_progress");
    running["check_runs"][1]["conclusion"] = Value::Null;
    running["check_runs"][1]["completed_at"] = Value::Null;
    check_runs_only(&github, SHA, running, 0).await;
    assert_eq!(
        pr_events::merge_if_green(&forge, 2, SHA).await.unwrap(),
        Merge::Waiting("check run build is in_progress".into())
    );
    github.verify().await;

    // `build` failed: no merge.
    let mut failed = response("check-runs.json");
    failed["check_runs"][1]["conclusion"] = json!("failure");
    check_runs_only(&github, SHA, failed, 0).await;
    assert_eq!(
        pr_events::merge_if_green(&forge, 2, SHA).await.unwrap(),
        Merge::Waiting("check run build concluded failure".into())
    );
    github.verify().await;

    // Neither statuses nor runs: nothing is green yet.
    check_runs_only(&github, SHA, no_check_runs(), 0).await;
    assert_eq!(
        pr_events::merge_if_green(&forge, 2, SHA).await.unwrap(),
        Merge::Waiting("no commit status or check run yet".into())
    );
    github.verify().await;
}

/// More check runs than one page holds: the next page is read before deciding,
/// and a failure there keeps the commit from merging.
#[tokio::test]
async fn check_runs_are_read_across_pages() {
    const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let github = MockServer::start().await;
    let success = response("check-runs.json")["check_runs"][1].clone();
    let first: Vec<Value> = (0..100)
        .map(|i| {
            let mut run = success.clone();
            run["name"] = json!(format!("job-{i}"));
            run
        })
        .collect();
    let mut last = success.clone();
    last["name"] = json!("job-100");
    last["conclusion"] = json!("timed_out");
    for (page, runs) in [("1", json!(first)), ("2", json!([last]))] {
        Mock::given(method("GET"))
            .and(path(format!("/repos/acme/fleet/commits/{SHA}/check-runs")))
            .and(query_param("page", page))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "total_count": 101, "check_runs": runs })),
            )
            .expect(1)
            .mount(&github)
            .await;
    }
    let forge = GitHub::new(Some(&github.uri()), Some("t0ken".into()), "acme", "fleet").unwrap();
    let runs = forge.check_runs(SHA).await.unwrap();
    assert_eq!(runs.len(), 101);
    let no_statuses = CombinedStatus {
        state: CommitState::Pending,
        statuses: vec![],
    };
    assert_eq!(
        pr_events::should_merge_checks(&no_statuses, &runs),
        Err("check run job-100 concluded timed_out".into())
    );
    github.verify().await;
}

const HEAD: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

/// A green `status` for the head of a capstan branch asks to merge that
/// branch's pull request at that commit; branches that only contain the commit
/// and branches outside the template are left out.
#[test]
fn a_green_status_on_a_capstan_branch_head_asks_to_merge_it() {
    let status = payload("status-success.json");
    assert_eq!(
        react("status", &status, &rules(true)),
        Reaction::MergeIfApproved {
            sha: HEAD.into(),
            branches: vec![("podinfo".into(), "capstan/podinfo".into())],
        }
    );
    let parsed = pr_events::parse("status", &bytes(&status)).expect("parses");
    let Event::Status(s) = parsed else {
        panic!("{parsed:?}")
    };
    assert_eq!(s.context, "ci/test");
    assert_eq!(s.branches.len(), 4);
    assert_eq!(s.branches[2].name, "capstan/frontend");
    assert_eq!(
        s.branches[2].head,
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    );
}

#[test]
fn statuses_that_must_not_merge() {
    let status = payload("status-success.json");
    for state in ["pending", "failure", "error"] {
        let mut p = status.clone();
        p["state"] = json!(state);
        assert_eq!(
            react("status", &p, &rules(true)),
            Reaction::Nothing(format!("status `ci/test` is {state} on {HEAD}")),
        );
    }
    // The commit is only the head of a non-capstan branch / only contained
    // in a capstan branch whose head is elsewhere.
    let mut p = status.clone();
    p["branches"] = json!([status["branches"][2], status["branches"][3]]);
    assert_eq!(
        react("status", &p, &rules(true)),
        Reaction::Nothing(format!(
            "{HEAD} is not the head of a capstan branch (`capstan/{{policy}}`)"
        )),
    );
    // Without `branches` (Gitea's `status` payload has none): nothing known.
    let mut p = status.clone();
    p.as_object_mut().expect("object").remove("branches");
    assert!(matches!(
        react("status", &p, &rules(true)),
        Reaction::Nothing(_)
    ));
    let mut p = status.clone();
    p["branches"] = json!([]);
    assert!(matches!(
        react("status", &p, &rules(true)),
        Reaction::Nothing(_)
    ));
    assert_eq!(
        react("status", &status, &rules(false)),
        Reaction::Nothing("update.pullRequest.autoMerge is off".into()),
    );
    let mut p = status.clone();
    p["repository"]["full_name"] = json!("someone/else");
    assert_eq!(
        react("status", &p, &rules(true)),
        Reaction::Nothing("event from `someone/else`, not `Codertocat/Hello-World`".into()),
    );
    // Malformed: the field is named.
    let mut p = status.clone();
    p["branches"][1]["commit"] = json!({});
    assert_eq!(
        pr_events::parse("status", &bytes(&p))
            .unwrap_err()
            .to_string(),
        "`status` payload: field `branches.1.commit.sha` is missing"
    );
    let mut p = status.clone();
    p["branches"] = json!("capstan/podinfo");
    assert_eq!(
        pr_events::parse("status", &bytes(&p))
            .unwrap_err()
            .to_string(),
        "`status` payload: field `branches` must be an array"
    );
}

#[test]
fn a_successful_check_suite_on_a_capstan_branch_asks_to_merge_it() {
    let suite = payload("check_suite-completed.json");
    assert_eq!(
        react("check_suite", &suite, &rules(true)),
        Reaction::MergeIfApproved {
            sha: HEAD.into(),
            branches: vec![("podinfo".into(), "capstan/podinfo".into())],
        }
    );
    let mut p = suite.clone();
    p["check_suite"]["conclusion"] = json!("failure");
    assert_eq!(
        react("check_suite", &p, &rules(true)),
        Reaction::Nothing(format!("check suite on {HEAD} concluded failure")),
    );
    let mut p = suite.clone();
    p["check_suite"]["head_branch"] = json!("feature/x");
    assert!(matches!(
        react("check_suite", &p, &rules(true)),
        Reaction::Nothing(_)
    ));
    let mut p = suite.clone();
    p["check_suite"]["head_branch"] = json!(null);
    assert!(matches!(
        react("check_suite", &p, &rules(true)),
        Reaction::Nothing(_)
    ));
    let mut p = suite.clone();
    p["action"] = json!("requested");
    assert_eq!(
        react("check_suite", &p, &rules(true)),
        Reaction::Nothing("check_suite `requested` is not handled".into()),
    );
}

fn open_pr(head_sha: &str) -> PullRequest {
    PullRequest {
        number: 1347,
        node_id: String::new(),
        html_url: String::new(),
        title: String::new(),
        body: String::new(),
        head_branch: "capstan/podinfo".into(),
        head_sha: head_sha.into(),
        base_branch: "master".into(),
        open: true,
        merged: false,
        draft: false,
        author: None,
    }
}

fn review(who: &str, state: &str, commit: &str) -> PullReview {
    PullReview {
        reviewer: who.into(),
        state: state.into(),
        commit: commit.into(),
    }
}

#[test]
fn approval_is_judged_at_the_exact_head() {
    let old = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    let approved = [review("octocat", "APPROVED", HEAD)];
    assert_eq!(
        pr_events::approved_at(&open_pr(HEAD), &approved, HEAD, "master"),
        Ok(())
    );
    // The head moved after the status: never merged.
    assert_eq!(
        pr_events::approved_at(&open_pr(old), &approved, HEAD, "master"),
        Err(format!("pull request #1347 head moved to {old}"))
    );
    // Approved an older commit only.
    assert_eq!(
        pr_events::approved_at(
            &open_pr(HEAD),
            &[review("octocat", "APPROVED", old)],
            HEAD,
            "master"
        ),
        Err(format!("pull request #1347 is not approved at {HEAD}"))
    );
    // Someone's latest review asks for changes; a later comment does not lift it.
    assert_eq!(
        pr_events::approved_at(
            &open_pr(HEAD),
            &[
                review("octocat", "APPROVED", HEAD),
                review("hubot", "CHANGES_REQUESTED", HEAD),
                review("hubot", "COMMENTED", HEAD),
            ],
            HEAD,
            "master"
        ),
        Err("hubot requested changes".into())
    );
    // An approval dismissed later does not count.
    assert!(
        pr_events::approved_at(
            &open_pr(HEAD),
            &[
                review("octocat", "APPROVED", HEAD),
                review("octocat", "DISMISSED", HEAD)
            ],
            HEAD,
            "master"
        )
        .is_err()
    );
    assert!(pr_events::approved_at(&open_pr(HEAD), &[], HEAD, "master").is_err());
    let mut other_base = open_pr(HEAD);
    other_base.base_branch = "release".into();
    assert!(pr_events::approved_at(&other_base, &approved, HEAD, "master").is_err());
}

/// `MergeIfApproved` carried out against GitHub's documented answers: the
/// branch's open pull request, its reviews (changes requested, then approved
/// by the same reviewer at the head), the combined status, then the merge at
/// exactly that commit.
#[tokio::test]
async fn merge_if_approved_finds_the_pull_request_and_merges_its_head() {
    let github = MockServer::start().await;
    let mut pulls = response("pulls-list-open.json");
    pulls[0]["head"]["ref"] = json!("capstan/podinfo");
    Mock::given(method("GET"))
        .and(path("/repos/acme/fleet/pulls"))
        .and(query_param("head", "acme:capstan/podinfo"))
        .and(query_param("base", "master"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pulls))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/fleet/pulls/1347/reviews"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(response("pull-request-reviews.json")),
        )
        .expect(1)
        .mount(&github)
        .await;
    expect_green_merge(&github, HEAD, 1347).await;
    let forge = GitHub::new(Some(&github.uri()), Some("t0ken".into()), "acme", "fleet").unwrap();
    assert_eq!(
        pr_events::merge_if_approved(&forge, "capstan/podinfo", "master", HEAD)
            .await
            .unwrap(),
        Merge::Merged(HEAD.into())
    );
    github.verify().await;
}
