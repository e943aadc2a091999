//! The Git side of `pull-request` mode against real repositories: a bare
//! repository served over smart HTTP by `git http-backend`, inspected with
//! the `git` command line. The base branch carries a `pre-receive` hook that
//! refuses any update of `main`, so a test fails if Capstan ever pushes (let
//! alone force-pushes) the base.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use capstan::git::{Auth, Checkout, RetryPolicy};
use capstan::manifests::{ChosenImage, Options, Wanted};
use capstan::policy::ImagePolicy;
use capstan::update::Settings;
use capstan::update::pr_branch::{self, BranchState, PreparedBranch};
use support::git_http::GitHttpServer;
use support::git_repo::{BareRepo, git, policy_yaml};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
spec:
  template:
    spec:
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinfo\"}
        - name: redis
          image: docker.io/library/redis:7.0.0 # {\"$imagepolicy\": \"redis\"}
";

const PATH: &str = "apps/podinfo/deployment.yaml";

/// Refuses every update of `refs/heads/main` (the base).
const PROTECT_MAIN: &str = "#!/bin/sh
while read old new ref; do
  if [ \"$ref\" = refs/heads/main ]; then echo \"main is protected\" >&2; exit 1; fi
done
exit 0
";

struct Env {
    dir: tempfile::TempDir,
    repo: BareRepo,
    server: GitHttpServer,
    policies: Vec<ImagePolicy>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let repos = dir.path().join("srv");
    let repo = BareRepo::create(&repos, "fleet.git", &[(PATH, DEPLOYMENT)]);
    let server = GitHttpServer::start(&repos, None);
    let mut policies = Vec::new();
    for (name, image) in [
        ("podinfo", "ghcr.io/stefanprodan/podinfo"),
        ("redis", "docker.io/library/redis"),
    ] {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, policy_yaml(name, image, ">=0.0.0")).expect("write policy");
        policies.extend(capstan::policy::load_file(&file).expect("policy loads"));
    }
    Env {
        dir,
        repo,
        server,
        policies,
    }
}

impl Env {
    fn settings(&self, checkout: &str) -> Settings {
        Settings {
            url: self.server.url("fleet.git"),
            branch: "main".into(),
            checkout_dir: self.dir.path().join(checkout),
            path: ".".into(),
            auth: Auth::None,
            author_name: "capstan".into(),
            author_email: "capstan@noreply.invalid".into(),
            message_template: "chore(images): {summary}\n\n{changes}\n".into(),
            options: Options::default(),
            retry: RetryPolicy {
                attempts: 3,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(100),
            },
            dry_run: false,
        }
    }

    /// podinfo chooses `tag`, redis chooses 7.2.0.
    fn wanted(&self, tag: &str) -> Vec<Wanted> {
        self.policies
            .iter()
            .map(|p| Wanted {
                policy: p.clone(),
                chosen: Ok(ChosenImage {
                    tag: if p.name == "podinfo" { tag } else { "7.2.0" }.into(),
                    digest: None,
                }),
            })
            .collect()
    }

    fn prepare(&self, checkout: &str, tag: &str) -> Vec<PreparedBranch> {
        pr_branch::prepare_all(
            &self.settings(checkout),
            "capstan/{policy}",
            &self.wanted(tag),
        )
        .expect("prepares")
    }

    fn rev(&self, rev: &str) -> String {
        git(&self.repo.path(), &["rev-parse", rev])
            .trim()
            .to_string()
    }

    fn show(&self, rev: &str) -> String {
        git(&self.repo.path(), &["show", &format!("{rev}:{PATH}")])
    }

    /// Commits on `branch` that are not on main.
    fn commits_on_top(&self, branch: &str) -> Vec<String> {
        git(
            &self.repo.path(),
            &["log", "--format=%an\t%s", &format!("main..{branch}")],
        )
        .lines()
        .map(str::to_string)
        .collect()
    }
}

fn proposed(b: &PreparedBranch) -> (String, String, bool, Option<String>) {
    match &b.state {
        BranchState::Proposed {
            commit,
            base_head,
            pushed,
            replaced,
        } => (commit.clone(), base_head.clone(), *pushed, replaced.clone()),
        other => panic!("{}: {other:?}", b.policy),
    }
}

#[test]
fn each_policy_gets_a_branch_with_exactly_its_tag_bump_on_the_base_head() {
    let env = env();
    env.repo.set_pre_receive_hook(PROTECT_MAIN);
    let base = env.repo.head();
    let branches = env.prepare("co", "6.5.1");
    assert_eq!(branches.len(), 2);
    let (commit, base_head, pushed, replaced) = proposed(&branches[0]);
    assert_eq!(branches[0].branch, "capstan/podinfo");
    assert_eq!(
        (base_head.as_str(), pushed, replaced),
        (base.as_str(), true, None)
    );
    assert_eq!(env.rev("capstan/podinfo"), commit);
    assert_eq!(env.rev("capstan/podinfo^"), base);
    assert_eq!(
        env.commits_on_top("capstan/podinfo"),
        vec!["capstan\tchore(images): podinfo 6.5.0 → 6.5.1"]
    );
    // Only podinfo's tag moved on its branch; redis has its own.
    assert_eq!(
        env.show("capstan/podinfo"),
        DEPLOYMENT.replace("podinfo:6.5.0", "podinfo:6.5.1")
    );
    assert_eq!(
        env.show("capstan/redis"),
        DEPLOYMENT.replace("redis:7.0.0", "redis:7.2.0")
    );
    assert_eq!(
        git(
            &env.repo.path(),
            &["diff", "--name-only", "main", "capstan/podinfo"]
        )
        .trim(),
        PATH
    );
    assert_eq!(env.repo.head(), base, "the base never moves");
    assert!(
        branches[0].plan.skipped.is_empty(),
        "{:?}",
        branches[0].plan.skipped
    );
}

#[test]
fn a_newer_tag_rewrites_the_branch_from_the_base_head() {
    let env = env();
    env.repo.set_pre_receive_hook(PROTECT_MAIN);
    let base = env.repo.head();
    let first = proposed(&env.prepare("co", "6.5.1")[0]).0;
    let branches = env.prepare("co", "6.6.0");
    let (commit, base_head, pushed, replaced) = proposed(&branches[0]);
    assert!(pushed);
    assert_eq!(replaced.as_deref(), Some(first.as_str()));
    assert_eq!(base_head, base);
    assert_eq!(env.rev("capstan/podinfo"), commit);
    assert_eq!(
        env.rev("capstan/podinfo^"),
        base,
        "not stacked on the old commit"
    );
    assert_eq!(
        env.commits_on_top("capstan/podinfo"),
        vec!["capstan\tchore(images): podinfo 6.5.0 → 6.6.0"]
    );
    assert_eq!(
        env.show("capstan/podinfo"),
        DEPLOYMENT.replace("podinfo:6.5.0", "podinfo:6.6.0")
    );
    assert_eq!(env.repo.head(), base);
}

#[test]
fn a_human_commit_on_the_base_between_runs_moves_the_branch_onto_it() {
    let env = env();
    let first = proposed(&env.prepare("co", "6.5.1")[0]).0;
    let human = env
        .repo
        .human_commit("docs: a readme", &[("README.md", "# fleet\n")]);
    env.repo.set_pre_receive_hook(PROTECT_MAIN);
    let branches = env.prepare("co", "6.5.1");
    let (commit, base_head, pushed, replaced) = proposed(&branches[0]);
    assert_eq!(base_head, human);
    assert!(pushed);
    assert_eq!(replaced, Some(first));
    assert_eq!(env.rev("capstan/podinfo^"), human);
    assert_eq!(env.rev("capstan/podinfo"), commit);
    assert_eq!(env.commits_on_top("capstan/podinfo").len(), 1);
    assert_eq!(env.repo.head(), human, "the base is untouched");
}

#[test]
fn the_same_change_is_not_pushed_again_even_from_a_fresh_checkout() {
    let env = env();
    env.repo.set_pre_receive_hook(PROTECT_MAIN);
    let first = env.prepare("co", "6.5.1");
    let pushes = env.server.pushes.load(Ordering::SeqCst);
    assert_eq!(pushes, 2, "one per policy");
    // A restart: a new checkout folder, nothing remembered locally.
    let again = env.prepare("co-restarted", "6.5.1");
    for (a, b) in first.iter().zip(&again) {
        let (c1, _, _, _) = proposed(a);
        let (c2, _, pushed, _) = proposed(b);
        assert_eq!(c1, c2);
        assert!(!pushed);
    }
    assert_eq!(env.server.pushes.load(Ordering::SeqCst), pushes);
}

#[test]
fn a_change_already_on_the_base_is_reported_with_the_base_head() {
    let env = env();
    env.prepare("co", "6.5.1");
    let merged = env.repo.human_commit(
        "merge the bump",
        &[(PATH, &DEPLOYMENT.replace("podinfo:6.5.0", "podinfo:6.5.1"))],
    );
    let branches = env.prepare("co", "6.5.1");
    assert_eq!(
        branches[0].state,
        BranchState::OnBase {
            base_head: merged.clone()
        }
    );
    assert!(branches[0].plan.files.is_empty());
    // redis still needs its pull request.
    assert!(matches!(branches[1].state, BranchState::Proposed { .. }));
}

#[test]
fn force_pushing_the_base_branch_is_refused() {
    let env = env();
    let checkout = Checkout::open_or_init(
        &env.server.url("fleet.git"),
        "main",
        &env.dir.path().join("co"),
        Auth::None,
    )
    .expect("opens");
    let head = checkout.fetch().expect("fetches");
    let err = checkout.push_head_branch(head, "main").unwrap_err();
    assert!(err.to_string().contains("base branch"), "{err}");
    let err = checkout.push_head_branch(head, "bad..name").unwrap_err();
    assert!(err.to_string().contains("not a valid branch name"), "{err}");
    assert_eq!(env.server.pushes.load(Ordering::SeqCst), 0);
}

#[test]
fn a_head_branch_that_vanished_is_pushed_again() {
    let env = env();
    env.prepare("co", "6.5.1");
    git(&env.repo.path(), &["branch", "-D", "capstan/podinfo"]);
    let branches = env.prepare("co", "6.5.1");
    let (commit, _, pushed, replaced) = proposed(&branches[0]);
    assert!(pushed);
    assert_eq!(replaced, None);
    assert_eq!(env.rev("capstan/podinfo"), commit);
}

#[test]
fn a_refused_head_branch_fails_its_policy_and_not_the_others() {
    let env = env();
    env.repo.set_pre_receive_hook(
        "#!/bin/sh
while read old new ref; do
  if [ \"$ref\" = refs/heads/main ] || [ \"$ref\" = refs/heads/capstan/podinfo ]; then echo \"protected\" >&2; exit 1; fi
done
exit 0
",
    );
    let branches = env.prepare("co", "6.5.1");
    match &branches[0].state {
        BranchState::Failed { base_head, reason } => {
            assert_eq!(base_head, &None);
            assert!(reason.contains("capstan/podinfo"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        branches[1].state,
        BranchState::Proposed { pushed: true, .. }
    ));
    assert_eq!(
        env.show("capstan/redis"),
        DEPLOYMENT.replace("redis:7.0.0", "redis:7.2.0")
    );
}
