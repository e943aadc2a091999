//! Git write-back against real repositories: bare repos on disk served over
//! smart HTTP by `git http-backend`, with races injected by the server at the
//! exact moment between capstan's fetch and its push.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use capstan::git::{self, Auth, Checkout, RetryPolicy};
use capstan::manifests::{ChosenImage, Options, Wanted};
use capstan::policy::ImagePolicy;
use capstan::update::{self, Choices, Outcome, Settings};
use support::git_http::{GitHttpServer, Trigger};
use support::git_repo::{self, BareRepo, policy_yaml};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinfo\"}
";

const FILES: &[(&str, &str)] = &[
    ("apps/podinfo/deployment.yaml", DEPLOYMENT),
    ("README.md", "# fleet\n"),
];

struct Env {
    dir: tempfile::TempDir,
    repo: BareRepo,
    server: GitHttpServer,
    policies: Vec<ImagePolicy>,
}

fn env_with(credentials: Option<(&str, &str)>) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let repos = dir.path().join("srv");
    let repo = BareRepo::create(&repos, "fleet.git", FILES);
    let server = GitHttpServer::start(&repos, credentials);
    let policy_file = dir.path().join("podinfo.yaml");
    std::fs::write(
        &policy_file,
        policy_yaml("podinfo", "ghcr.io/stefanprodan/podinfo", ">=6.0.0 <7.0.0"),
    )
    .expect("write policy");
    let policies = capstan::policy::load_file(&policy_file).expect("policy loads");
    Env {
        dir,
        repo,
        server,
        policies,
    }
}

fn env() -> Env {
    env_with(None)
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
                attempts: 5,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(200),
            },
            dry_run: false,
        }
    }

    fn wanted(&self, tag: &str) -> Choices {
        let wanted: Vec<Wanted> = self
            .policies
            .iter()
            .map(|p| Wanted {
                policy: p.clone(),
                chosen: Ok(ChosenImage {
                    tag: tag.into(),
                    digest: None,
                }),
            })
            .collect();
        wanted.into()
    }

    fn capstan_commits(&self) -> usize {
        self.repo
            .log()
            .iter()
            .filter(|l| l.starts_with("capstan\t"))
            .count()
    }
}

fn assert_no_conflict_markers(repo: &BareRepo, paths: &[&str]) {
    for p in paths {
        let text = repo.show(p);
        assert!(
            !text.contains("<<<<<<<") && !text.contains(">>>>>>>"),
            "{p}: {text}"
        );
    }
}

#[test]
fn pushes_one_commit_over_http() {
    let env = env();
    let report = update::run_once(&env.settings("co"), &env.wanted("6.5.1")).expect("runs");
    let Outcome::Pushed { commit, attempts } = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert_eq!(*attempts, 1);
    assert_eq!(&env.repo.head(), commit);
    assert_eq!(
        env.repo.show("apps/podinfo/deployment.yaml"),
        DEPLOYMENT.replace("podinfo:6.5.0", "podinfo:6.5.1")
    );
    assert_eq!(
        env.repo.log(),
        vec![
            "capstan\tchore(images): podinfo 6.5.0 → 6.5.1".to_string(),
            "A Human\tinitial manifests".to_string()
        ]
    );
    let body = git_repo::git(&env.repo.path(), &["log", "-1", "--format=%b", "main"]);
    assert_eq!(
        body.trim(),
        "- podinfo: 6.5.0 → 6.5.1 (apps/podinfo/deployment.yaml)"
    );
    assert_eq!(env.server.pushes.load(Ordering::SeqCst), 1);
}

#[test]
fn https_token_is_sent_when_challenged() {
    let env = env_with(Some(("x-access-token", "s3cret")));
    let mut settings = env.settings("co");
    settings.auth = Auth::Token {
        username: "x-access-token".into(),
        token: "s3cret".into(),
    };
    let report = update::run_once(&settings, &env.wanted("6.5.1")).expect("runs");
    assert!(
        matches!(report.outcome, Outcome::Pushed { .. }),
        "{:?}",
        report.outcome
    );
    assert!(
        env.server.unauthorized.load(Ordering::SeqCst) >= 1,
        "the server challenged"
    );
    assert_eq!(env.capstan_commits(), 1);
}

#[test]
fn wrong_token_fails_fast_and_writes_nothing() {
    let env = env_with(Some(("x-access-token", "s3cret")));
    let before = env.repo.head();
    let mut settings = env.settings("co");
    settings.auth = Auth::Token {
        username: "x-access-token".into(),
        token: "wrong".into(),
    };
    let err = update::run_once(&settings, &env.wanted("6.5.1")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("fetch"), "{msg}");
    let refusals = env.server.unauthorized.load(Ordering::SeqCst);
    assert!(
        (1..=10).contains(&refusals),
        "bounded retries, got {refusals}"
    );
    assert_eq!(env.repo.head(), before);

    // No credentials at all: a clear error, not a hang.
    let err = update::run_once(&env.settings("co2"), &env.wanted("6.5.1")).unwrap_err();
    assert!(err.to_string().contains("fetch"), "{err}");
}

#[test]
fn race_a_human_commit_seen_in_the_push_advertisement() {
    let env = env();
    let human_repo = env.repo.clone();
    env.server.on_next(Trigger::PushAdvertisement, move || {
        human_repo.human_commit(
            "docs: explain the fleet",
            &[("README.md", "# fleet\n\nhello\n")],
        );
    });
    let report = update::run_once(&env.settings("co"), &env.wanted("6.5.1")).expect("runs");
    let Outcome::Pushed { attempts, commit } = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert_eq!(*attempts, 2, "first push rejected, second lands");
    let log = env.repo.log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[0].starts_with("capstan\t") && log[1] == "A Human\tdocs: explain the fleet",
        "{log:?}"
    );
    assert_eq!(&env.repo.head(), commit);
    assert_eq!(env.repo.head_parents().len(), 1, "no merge commit");
    assert_eq!(env.repo.show("README.md"), "# fleet\n\nhello\n");
    assert!(
        env.repo
            .show("apps/podinfo/deployment.yaml")
            .contains("podinfo:6.5.1")
    );
    assert_no_conflict_markers(&env.repo, &["README.md", "apps/podinfo/deployment.yaml"]);
}

#[test]
fn race_a_human_commit_to_the_same_file_lands_after_capstan_decided_to_push() {
    let env = env();
    let human_repo = env.repo.clone();
    // Between the advertisement and receive-pack: the server itself must refuse.
    env.server.on_next(Trigger::PushPost, move || {
        human_repo.human_commit(
            "scale podinfo",
            &[(
                "apps/podinfo/deployment.yaml",
                &DEPLOYMENT.replace("replicas: 2", "replicas: 3"),
            )],
        );
    });
    let report = update::run_once(&env.settings("co"), &env.wanted("6.5.1")).expect("runs");
    assert!(
        matches!(report.outcome, Outcome::Pushed { attempts: 2, .. }),
        "{:?}",
        report.outcome
    );
    let text = env.repo.show("apps/podinfo/deployment.yaml");
    assert_eq!(
        text,
        DEPLOYMENT
            .replace("replicas: 2", "replicas: 3")
            .replace("podinfo:6.5.0", "podinfo:6.5.1"),
        "both changes survive, recomputed on the human's version"
    );
    let log = env.repo.log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_no_conflict_markers(&env.repo, &["apps/podinfo/deployment.yaml"]);
}

#[test]
fn race_b_two_writers_make_exactly_one_commit() {
    let env = env();
    let second = env.settings("co-b");
    let wanted = env.wanted("6.5.1");
    let (tx, rx) = std::sync::mpsc::channel();
    // While writer A's push is in flight, writer B runs a whole pass.
    env.server.on_next(Trigger::PushPost, move || {
        let report = update::run_once(&second, &wanted).expect("writer B runs");
        tx.send(report.outcome).expect("send");
    });
    let a = update::run_once(&env.settings("co-a"), &env.wanted("6.5.1")).expect("writer A runs");
    let b = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("writer B finished");
    assert!(matches!(b, Outcome::Pushed { attempts: 1, .. }), "{b:?}");
    assert!(
        matches!(a.outcome, Outcome::Unchanged { attempts: 2, .. }),
        "A recomputed on B's head and found nothing to do: {:?}",
        a.outcome
    );
    assert!(a.plan.files.is_empty());
    assert_eq!(env.capstan_commits(), 1, "{:?}", env.repo.log());
}

/// Two processes configured with the same checkout folder (a daemon and a manual
/// `update --once`): the second waits for the first instead of resetting its clone
/// mid-pass, then finds nothing left to do.
#[test]
fn two_writers_on_one_checkout_folder_take_turns() {
    let env = env();
    let settings = env.settings("shared");
    let second = settings.clone();
    let wanted = env.wanted("6.5.1");
    let (tx, rx) = std::sync::mpsc::channel();
    env.server.on_next(Trigger::PushPost, move || {
        // The first writer holds the folder while its push is in flight.
        std::thread::spawn(move || {
            tx.send(update::run_once(&second, &wanted).map(|r| r.outcome))
                .expect("send");
        });
        std::thread::sleep(Duration::from_millis(500));
    });
    let a = update::run_once(&settings, &env.wanted("6.5.1")).expect("writer A runs");
    let b = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("writer B finished")
        .expect("writer B waited for the folder, then ran");
    assert!(
        matches!(a.outcome, Outcome::Pushed { attempts: 1, .. }),
        "{:?}",
        a.outcome
    );
    assert!(matches!(b, Outcome::Unchanged { .. }), "{b:?}");
    assert_eq!(env.capstan_commits(), 1, "{:?}", env.repo.log());
}

#[test]
fn race_c_branch_already_has_the_tag() {
    let env = env();
    env.repo.human_commit(
        "bump podinfo by hand",
        &[(
            "apps/podinfo/deployment.yaml",
            &DEPLOYMENT.replace("podinfo:6.5.0", "podinfo:6.5.1"),
        )],
    );
    let before = env.repo.head();
    let report = update::run_once(&env.settings("co"), &env.wanted("6.5.1")).expect("runs");
    assert!(
        matches!(&report.outcome, Outcome::Unchanged { head, attempts: 1 } if *head == before),
        "{:?}",
        report.outcome
    );
    assert_eq!(report.plan.up_to_date, 1);
    assert_eq!(env.repo.head(), before);
    assert_eq!(env.server.pushes.load(Ordering::SeqCst), 0);
}

#[test]
fn same_change_pushed_by_someone_else_mid_flight_is_not_duplicated() {
    let env = env();
    let human_repo = env.repo.clone();
    env.server.on_next(Trigger::PushAdvertisement, move || {
        human_repo.human_commit(
            "bump podinfo by hand",
            &[(
                "apps/podinfo/deployment.yaml",
                &DEPLOYMENT.replace("podinfo:6.5.0", "podinfo:6.5.1"),
            )],
        );
    });
    let report = update::run_once(&env.settings("co"), &env.wanted("6.5.1")).expect("runs");
    assert!(
        matches!(report.outcome, Outcome::Unchanged { attempts: 2, .. }),
        "{:?}",
        report.outcome
    );
    assert_eq!(env.capstan_commits(), 0);
    assert_eq!(env.repo.log().len(), 2);
}

#[test]
fn server_side_refusal_is_retried_a_bounded_number_of_times_never_forced() {
    let env = env();
    env.repo
        .set_pre_receive_hook("#!/bin/sh\necho 'branch is frozen' >&2\nexit 1\n");
    let before = env.repo.head();
    let mut settings = env.settings("co");
    settings.retry.attempts = 3;
    let err = update::run_once(&settings, &env.wanted("6.5.1")).unwrap_err();
    match &err {
        update::Error::Exhausted {
            attempts, reason, ..
        } => {
            assert_eq!(*attempts, 3);
            assert!(reason.contains("refs/heads/main"), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(env.server.pushes.load(Ordering::SeqCst), 3);
    assert_eq!(env.repo.head(), before);
}

#[test]
fn local_path_remote_needs_no_credentials() {
    let env = env();
    let mut settings = env.settings("co");
    settings.url = env.repo.path().to_string_lossy().into_owned();
    let report = update::run_once(&settings, &env.wanted("6.6.0")).expect("runs");
    assert!(
        matches!(report.outcome, Outcome::Pushed { .. }),
        "{:?}",
        report.outcome
    );
    assert!(
        env.repo
            .show("apps/podinfo/deployment.yaml")
            .contains("podinfo:6.6.0")
    );
}

#[test]
fn dry_run_plans_on_the_remote_head_and_writes_nothing() {
    let env = env();
    let before = env.repo.head();
    let mut settings = env.settings("co");
    settings.dry_run = true;
    let report = update::run_once(&settings, &env.wanted("6.5.1")).expect("runs");
    assert_eq!(
        report.outcome,
        Outcome::DryRun {
            head: before.clone()
        }
    );
    assert_eq!(report.plan.files.len(), 1);
    assert!(
        report
            .plan
            .diff()
            .contains("+          image: ghcr.io/stefanprodan/podinfo:6.5.1")
    );
    assert_eq!(env.repo.head(), before);
    assert_eq!(env.server.pushes.load(Ordering::SeqCst), 0);
}

#[test]
fn a_dirty_checkout_left_by_a_crash_is_reset() {
    let env = env();
    let settings = env.settings("co");
    update::run_once(&settings, &env.wanted("6.5.1")).expect("first pass");
    // Simulate a crash: junk in the work tree and an unpushed local commit.
    let co = &settings.checkout_dir;
    std::fs::write(
        co.join("junk.yaml"),
        "image: x:1 # {\"$imagepolicy\": \"nope\"}\n",
    )
    .expect("junk");
    std::fs::write(co.join("README.md"), "local edit\n").expect("edit");
    git_repo::git(
        co,
        &[
            "-c",
            "user.name=x",
            "-c",
            "user.email=x@x",
            "commit",
            "-qam",
            "unpushed",
        ],
    );
    let report = update::run_once(&settings, &env.wanted("6.6.0")).expect("second pass");
    assert!(
        matches!(report.outcome, Outcome::Pushed { .. }),
        "{:?}",
        report.outcome
    );
    assert!(
        report.plan.problems.is_empty(),
        "{:?}",
        report.plan.problems
    );
    assert_eq!(env.repo.show("README.md"), "# fleet\n");
    assert_eq!(env.capstan_commits(), 2);
    assert!(!co.join("junk.yaml").exists());
}

#[test]
fn a_folder_capstan_did_not_create_is_never_reset() {
    let env = env();
    let theirs = env.dir.path().join("theirs");
    std::fs::create_dir_all(&theirs).expect("mkdir");
    git_repo::git(&theirs, &["init", "-q"]);
    let err = Checkout::open_or_init(&env.server.url("fleet.git"), "main", &theirs, Auth::None)
        .unwrap_err();
    assert!(matches!(err, git::Error::NotOurs(_)), "{err}");

    let full = env.dir.path().join("full");
    std::fs::create_dir_all(&full).expect("mkdir");
    std::fs::write(full.join("notes.txt"), "mine").expect("write");
    let err = Checkout::open_or_init(&env.server.url("fleet.git"), "main", &full, Auth::None)
        .unwrap_err();
    assert!(matches!(err, git::Error::NotEmpty(_)), "{err}");
    assert_eq!(
        std::fs::read_to_string(full.join("notes.txt")).expect("read"),
        "mine"
    );
}

#[test]
fn missing_branch_is_named() {
    let env = env();
    let mut settings = env.settings("co");
    settings.branch = "production".into();
    let err = update::run_once(&settings, &env.wanted("6.5.1")).unwrap_err();
    assert!(
        err.to_string()
            .contains("branch `production` does not exist"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callers_run_it_on_the_blocking_pool() {
    let env = env();
    let report = update::run_once_async(env.settings("co"), env.wanted("6.5.1"))
        .await
        .expect("runs");
    assert!(
        matches!(report.outcome, Outcome::Pushed { .. }),
        "{:?}",
        report.outcome
    );
}
