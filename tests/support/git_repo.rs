//! Real Git for tests: bare repositories on disk, seeded and inspected with
//! the `git` command line (an independent implementation from libgit2, which
//! capstan uses); [`super::git_http`] serves them over smart HTTP.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `git` in `dir` and returns its stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "A Human")
        .env("GIT_AUTHOR_EMAIL", "human@example.com")
        .env("GIT_COMMITTER_NAME", "A Human")
        .env("GIT_COMMITTER_EMAIL", "human@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare repository `<root>/<name>` with one commit holding `files`.
#[derive(Clone)]
pub struct BareRepo {
    pub root: PathBuf,
    pub name: String,
    /// A scratch clone for "human" commits.
    human: PathBuf,
}

impl BareRepo {
    pub fn create(root: &Path, name: &str, files: &[(&str, &str)]) -> BareRepo {
        let bare = root.join(name);
        std::fs::create_dir_all(&bare).expect("mkdir bare");
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        git(&bare, &["config", "http.receivepack", "true"]);
        let human = root.join(format!("{name}.human"));
        std::fs::create_dir_all(&human).expect("mkdir human");
        git(&human, &["init", "-q", "-b", "main"]);
        for (path, text) in files {
            let p = human.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        }
        git(&human, &["add", "-A"]);
        git(&human, &["commit", "-q", "-m", "initial manifests"]);
        git(
            &human,
            &["remote", "add", "origin", bare.to_str().expect("utf8 path")],
        );
        git(&human, &["push", "-q", "origin", "main"]);
        BareRepo {
            root: root.to_path_buf(),
            name: name.to_string(),
            human,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// A person commits and pushes `files` (on top of the current remote head).
    pub fn human_commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        git(&self.human, &["fetch", "-q", "origin"]);
        git(&self.human, &["reset", "-q", "--hard", "origin/main"]);
        for (path, text) in files {
            let p = self.human.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        }
        git(&self.human, &["add", "-A"]);
        git(&self.human, &["commit", "-q", "-m", message]);
        git(&self.human, &["push", "-q", "origin", "main"]);
        self.head()
    }

    /// The branch head in the bare repository.
    pub fn head(&self) -> String {
        git(&self.path(), &["rev-parse", "main"]).trim().to_string()
    }

    /// `<author name>\t<subject>` per commit, newest first.
    pub fn log(&self) -> Vec<String> {
        git(&self.path(), &["log", "--format=%an\t%s", "main"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A file at the branch head.
    pub fn show(&self, path: &str) -> String {
        git(&self.path(), &["show", &format!("main:{path}")])
    }

    /// Parents of the head commit.
    pub fn head_parents(&self) -> Vec<String> {
        git(&self.path(), &["log", "-1", "--format=%P", "main"])
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Installs a `pre-receive` hook (refuses every push when it exits non-zero).
    pub fn set_pre_receive_hook(&self, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let hook = self.path().join("hooks").join("pre-receive");
        std::fs::write(&hook, script).expect("write hook");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// Commits everything in the work tree `dir` as `message`; returns the commit id.
pub fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_owned()
}

/// An ImagePolicy file.
pub fn policy_yaml(name: &str, image: &str, range: &str) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  policy:\n    semver:\n      range: '{range}'\n"
    )
}
