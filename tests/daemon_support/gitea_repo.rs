//! A daemon whose manifests live on the test Gitea (tests/support/gitea.rs): the
//! repository seeded over Git HTTP, a signed webhook back to the daemon, and a
//! `capstan.yaml` using Gitea for Git and as the forge.

use std::path::Path;

use super::{Daemon, REGISTRY_TOKEN, server_yaml, write};
use crate::support::git_repo::{commit_all, git};
use crate::support::gitea::RepoGuard;

/// The secret Gitea signs its webhooks with; the daemon reads it from `HOOK_SECRET`
/// (`githubWebhookSecretEnv`: Gitea signs the way GitHub does).
pub const HOOK_SECRET: &str = "gitea-hook-secret-for-tests";

/// A new local repository in `dir` holding `files` in one commit on `main`, pushed
/// to `repo`; returns the commit id. (Gitea records the push asynchronously: see
/// `Gitea::wait_for_branch`.)
pub fn seed(repo: &RepoGuard<'_>, dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    git(dir, &["init", "-q", "-b", "main"]);
    let sha = commit_all(dir, message);
    repo.push(dir, "main", "seeding the repository");
    sha
}

/// A Gitea webhook for `events` to the daemon on `port`, signed with [`HOOK_SECRET`].
pub async fn hook_to_daemon(repo: &RepoGuard<'_>, port: u16, events: &[&str]) {
    repo.add_webhook(
        &format!("http://127.0.0.1:{port}/hooks/github"),
        HOOK_SECRET,
        events,
    )
    .await;
}

/// Writes `dir/capstan.yaml` for the manifests in `repo` (Git over HTTP and the Gitea
/// forge, both with the token from `GITEA_TOKEN`), the plain-HTTP registry at
/// `registry_host`, the policies in `dir/policies/`, `update.mode` `mode` every hour,
/// `extra` YAML (such as `targets:`), and the server on `port` taking registry
/// notifications and Gitea's signed webhooks; starts `capstan run` on it.
pub async fn start_daemon(
    dir: &Path,
    repo: &RepoGuard<'_>,
    registry_host: &str,
    mode: &str,
    extra: &str,
    port: u16,
) -> Daemon {
    write(
        dir,
        "capstan.yaml",
        &format!(
            "repository:
  url: {url}
  branch: main
  auth:
    tokenEnv: GITEA_TOKEN
    username: {owner}
forge:
  kind: gitea
  apiUrl: {api}/api/v1
  owner: {owner}
  repo: {name}
  tokenEnv: GITEA_TOKEN
registries:
  - host: {registry_host}
    insecure: true
policies: policies/
update:
  mode: {mode}
  interval: 1h
{extra}{server}",
            url = repo.clone_url,
            owner = repo.owner,
            api = repo.gitea.url,
            name = repo.name,
            server = server_yaml(
                port,
                "  registryWebhookTokenEnv: REGISTRY_TOKEN\n  githubWebhookSecretEnv: HOOK_SECRET\n"
            ),
        ),
    );
    Daemon::up(
        &dir.join("capstan.yaml"),
        port,
        &[
            ("GITEA_TOKEN", repo.gitea.token.as_str()),
            ("REGISTRY_TOKEN", REGISTRY_TOKEN),
            ("HOOK_SECRET", HOOK_SECRET),
        ],
    )
    .await
}
