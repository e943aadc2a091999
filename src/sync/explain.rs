//! `capstan explain`: why an object in a cluster looks the way it does, from Git and
//! cluster state alone (no daemon memory, no log): the live object and the target
//! label it carries, the target's inventory and the commit it last applied, the file
//! in the repository that defines the object and the commit that last changed it,
//! and, when that commit is one of Capstan's image updates, the policy decision it
//! records (parsed back from the `{changes}` lines of the commit message, see
//! [`crate::update::message::change_lines`]).

use std::path::{Path, PathBuf};

use kube::Client;
use kube::discovery::{ApiResource, Discovery, Scope};
use serde::Serialize;
use serde_json::Value;

use super::apply::{api_for, to_value};
use super::inventory::{self, LastApplied};
use super::render::{collect_yaml_files, parse_stream};
use super::{SyncError, TARGET_LABEL};
use crate::config::Target;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("`{0}` is not an object: write <kind>/<name>, e.g. deployment/podinfo")]
    Query(String),
    #[error("the API server serves no kind `{0}`")]
    UnknownKind(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("kubernetes: {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error("repository {path}: {message}")]
    Git { path: PathBuf, message: String },
}

/// `deployment/podinfo`, `Deployment.apps/podinfo`, `deploy/podinfo`, `cm/settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl Query {
    pub fn parse(spec: &str, namespace: Option<&str>) -> Result<Query, ExplainError> {
        let (kind, name) = spec
            .split_once('/')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| ExplainError::Query(spec.to_string()))?;
        Ok(Query {
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
        })
    }
}

/// kubectl's short names for the kinds people ask about most.
const SHORT_NAMES: [(&str, &str); 10] = [
    ("deploy", "deployments"),
    ("cm", "configmaps"),
    ("svc", "services"),
    ("ns", "namespaces"),
    ("sa", "serviceaccounts"),
    ("sts", "statefulsets"),
    ("ds", "daemonsets"),
    ("ing", "ingresses"),
    ("cj", "cronjobs"),
    ("pvc", "persistentvolumeclaims"),
];

/// The served kind `query` names: kind, plural or short name, optionally `.group`.
pub async fn resolve_kind(
    client: &Client,
    query: &str,
) -> Result<(ApiResource, bool), ExplainError> {
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .map_err(|e| ExplainError::Kube {
            context: "discovery".into(),
            source: e,
        })?;
    let lower = query.to_ascii_lowercase();
    let (word, group) = match lower.split_once('.') {
        Some((w, g)) => (w.to_string(), Some(g.to_string())),
        None => (lower.clone(), None),
    };
    let word = SHORT_NAMES
        .iter()
        .find(|(short, _)| *short == word)
        .map_or(word.clone(), |(_, plural)| plural.to_string());
    let mut found: Vec<(ApiResource, bool)> = Vec::new();
    for g in discovery.groups() {
        if group.as_deref().is_some_and(|want| want != g.name()) {
            continue;
        }
        for (ar, caps) in g.recommended_resources() {
            if ar.kind.to_ascii_lowercase() == word || ar.plural == word {
                found.push((ar, caps.scope == Scope::Namespaced));
            }
        }
    }
    // The core group first, then the shortest group name (`apps` before `apps.example.com`).
    found.sort_by_key(|(ar, _)| (!ar.group.is_empty(), ar.group.len()));
    found
        .into_iter()
        .next()
        .ok_or_else(|| ExplainError::UnknownKind(query.to_string()))
}

/// The object in the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub uid: String,
    pub resource_version: String,
    /// `capstan.dev/target`: the target that applied it.
    pub target_label: Option<String>,
    /// Field managers and the time of their last write.
    pub managers: Vec<(String, String)>,
    /// Container images, for workloads.
    pub images: Vec<String>,
}

impl Live {
    pub fn from_value(v: &Value) -> Live {
        let meta = &v["metadata"];
        let text = |x: &Value| x.as_str().unwrap_or_default().to_string();
        let managers = meta["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (text(&m["manager"]), text(&m["time"])))
            .collect();
        let pod = if v["spec"]["template"].is_object() {
            &v["spec"]["template"]["spec"]
        } else if v["spec"]["jobTemplate"].is_object() {
            &v["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &v["spec"]
        };
        let images = ["initContainers", "containers"]
            .iter()
            .flat_map(|k| pod[*k].as_array().into_iter().flatten())
            .filter_map(|c| c["image"].as_str().map(str::to_string))
            .collect();
        Live {
            uid: text(&meta["uid"]),
            resource_version: text(&meta["resourceVersion"]),
            target_label: meta["labels"][TARGET_LABEL].as_str().map(str::to_string),
            managers,
            images,
        }
    }
}

/// The target's inventory as it concerns the object.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryView {
    /// `namespace/capstan-inventory-<target>`.
    pub configmap: String,
    /// Whether the object is listed (only listed objects are ever pruned).
    pub listed: bool,
    pub objects: usize,
    pub last_applied_commit: Option<String>,
    pub last_applied_time: Option<String>,
}

/// A commit, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitView {
    pub id: String,
    pub summary: String,
    pub author: String,
    /// RFC 3339.
    pub time: String,
}

/// One `{changes}` line of an image-update commit message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageUpdate {
    pub policy: String,
    pub from: String,
    pub to: String,
    pub files: Vec<String>,
}

/// Where the object is defined in the repository.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// Relative to the repository root.
    pub file: String,
    /// 1-based position of the document in the file.
    pub document: usize,
}

/// The whole chain for one object.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// `Deployment.apps ns/name`.
    pub object: String,
    pub live: Option<Live>,
    /// The target whose folder defines the object, or whose label it carries.
    pub target: Option<String>,
    pub inventory: Option<InventoryView>,
    pub source: Option<SourceView>,
    /// The commit that last changed `source.file`, as of the last applied commit
    /// (or the checked-out head when nothing is recorded).
    pub last_change: Option<CommitView>,
    /// Image-update lines of that commit's message naming `source.file`.
    pub image_updates: Vec<ImageUpdate>,
    /// Whether `last_change` is known to be applied: true when it was found from the
    /// last applied commit, unknown when the inventory records no commit.
    pub change_applied: Option<bool>,
    /// A newer commit in the checkout that changes the file again, not applied yet.
    pub pending_change: Option<CommitView>,
    /// The checked-out head, when it is ahead of the last applied commit.
    pub head: Option<String>,
    /// The commit status context the sync reports to on the forge.
    pub status_context: Option<String>,
    /// That context's status on the last applied commit, when a forge was asked
    /// ([`read_status`]).
    pub commit_status: Option<StatusView>,
    /// Things a person should know (object missing, not labelled, ...).
    pub notes: Vec<String>,
}

/// Builds the explanation of `query` in `target`'s cluster, with the repository
/// checked out at `repo_root`.
pub async fn explain(
    client: &Client,
    target: &Target,
    repo_root: &Path,
    query: &Query,
) -> Result<Explanation, ExplainError> {
    let (resource, namespaced) = resolve_kind(client, &query.kind).await?;
    let namespace = if namespaced {
        query
            .namespace
            .clone()
            .unwrap_or_else(|| target.namespace.clone())
    } else {
        String::new()
    };
    let object = super::ObjectId {
        group: resource.group.clone(),
        kind: resource.kind.clone(),
        namespace: namespace.clone(),
        name: query.name.clone(),
    };
    let mut notes = Vec::new();

    let live = api_for(client, &resource, &namespace)
        .get_opt(&query.name)
        .await
        .map_err(|e| ExplainError::Kube {
            context: format!("read {object}"),
            source: e,
        })?
        .map(|o| Live::from_value(&to_value(o, &resource)));
    match &live {
        None => notes.push("the object does not exist in the cluster".into()),
        Some(l) if l.target_label.is_none() => notes.push(format!(
            "the object has no `{TARGET_LABEL}` label: Capstan did not apply it"
        )),
        Some(l) if l.target_label.as_deref() != Some(target.name.value.as_str()) => {
            notes.push(format!(
                "the object is labelled for target `{}`, not `{}`",
                l.target_label.as_deref().unwrap_or_default(),
                target.name.value
            ))
        }
        Some(_) => {}
    }

    let record = inventory::load_record(client, &target.namespace, &target.name.value).await?;
    let inventory = Some(InventoryView {
        configmap: format!(
            "{}/{}",
            target.namespace,
            inventory::configmap_name(&target.name.value)
        ),
        listed: record.objects.contains(&object),
        objects: record.objects.len(),
        last_applied_commit: record.last_applied.as_ref().map(|l| l.commit.clone()),
        last_applied_time: record.last_applied.as_ref().map(|l| l.time.clone()),
    });

    let folder = repo_root.join(&target.path.value);
    let source = find_source(repo_root, &folder, &resource.kind, &query.name, &namespace);
    if source.is_none() {
        notes.push(format!(
            "no file under `{}` defines {} {}",
            target.path.value, resource.kind, query.name
        ));
    }

    let history = repo_root.to_path_buf();
    let file = source.as_ref().map(|s| s.file.clone());
    let applied = record.last_applied.clone();
    let git =
        tokio::task::spawn_blocking(move || git_chain(&history, file.as_deref(), applied.as_ref()))
            .await
            .map_err(|e| ExplainError::Git {
                path: repo_root.to_path_buf(),
                message: e.to_string(),
            })?;
    // A plain folder (no Git) still explains the cluster side.
    let git = git.unwrap_or_else(|e| GitChain {
        last_change: None,
        last_change_message: None,
        change_applied: None,
        pending_change: None,
        head: None,
        notes: vec![format!("no history: {e}")],
    });
    notes.extend(git.notes);
    let image_updates = match (&git.last_change_message, &source) {
        (Some(message), Some(source)) => image_updates(message, &source.file),
        _ => Vec::new(),
    };

    Ok(Explanation {
        object: object.to_string(),
        live,
        target: Some(target.name.value.clone()),
        inventory,
        source,
        last_change: git.last_change,
        image_updates,
        change_applied: git.change_applied,
        pending_change: git.pending_change,
        head: git.head,
        status_context: Some(target.status_context()),
        commit_status: None,
        notes,
    })
}

/// A commit status, as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    pub commit: String,
    pub context: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    pub description: String,
}

/// Asks the forge for the status of the target's context on the last applied
/// commit; what cannot be read becomes a note (the rest of the chain stands).
pub async fn read_status(forge: &dyn crate::forge::Forge, e: &mut Explanation) {
    let (Some(context), Some(commit)) = (
        e.status_context.clone(),
        e.inventory
            .as_ref()
            .and_then(|i| i.last_applied_commit.clone()),
    ) else {
        return;
    };
    match forge.combined_status(&commit).await {
        Ok(combined) => match combined.statuses.into_iter().find(|s| s.context == context) {
            Some(s) => {
                e.commit_status = Some(StatusView {
                    commit,
                    context,
                    state: s.state.as_str().to_string(),
                    description: s.description,
                })
            }
            None => e.notes.push(format!(
                "the forge has no status `{context}` on commit {commit}"
            )),
        },
        Err(err) => e
            .notes
            .push(format!("cannot read the commit status of {commit}: {err}")),
    }
}

/// The file (relative to `repo_root`) and document under `folder` that define
/// `kind`/`name`; a namespace match wins when several do. Files that do not parse
/// are skipped: this only looks for the object.
pub fn find_source(
    repo_root: &Path,
    folder: &Path,
    kind: &str,
    name: &str,
    namespace: &str,
) -> Option<SourceView> {
    let mut files = Vec::new();
    collect_yaml_files(folder, &mut files).ok()?;
    files.sort();
    let mut best: Option<(bool, SourceView)> = None;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(manifests) = parse_stream(&file, &text) else {
            continue;
        };
        for m in manifests {
            if m.kind() != kind || m.name() != name {
                continue;
            }
            let same_ns = m.namespace() == Some(namespace);
            if best.as_ref().is_some_and(|(b, _)| *b || !same_ns) {
                continue;
            }
            let rel = file.strip_prefix(repo_root).unwrap_or(&file);
            best = Some((
                same_ns,
                SourceView {
                    file: rel.to_string_lossy().replace('\\', "/"),
                    document: m.source.document,
                },
            ));
        }
    }
    best.map(|(_, s)| s)
}

/// What the repository says.
struct GitChain {
    last_change: Option<CommitView>,
    last_change_message: Option<String>,
    change_applied: Option<bool>,
    pending_change: Option<CommitView>,
    head: Option<String>,
    notes: Vec<String>,
}

fn git_chain(
    root: &Path,
    file: Option<&str>,
    applied: Option<&LastApplied>,
) -> Result<GitChain, ExplainError> {
    let fail = |message: String| ExplainError::Git {
        path: root.to_path_buf(),
        message,
    };
    let repo = git2::Repository::open(root).map_err(|e| fail(e.message().to_string()))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| fail(format!("no commit checked out: {}", e.message())))?
        .id();
    let mut notes = Vec::new();
    // Walk from what the cluster runs, when the repository knows that commit.
    let applied_id = applied.and_then(|a| git2::Oid::from_str(&a.commit).ok());
    let start = match applied_id {
        Some(id) if repo.find_commit(id).is_ok() => id,
        Some(id) => {
            notes.push(format!(
                "the last applied commit {id} is not in the local checkout; history from its head"
            ));
            head
        }
        None => head,
    };
    let mut chain = GitChain {
        last_change: None,
        last_change_message: None,
        change_applied: None,
        pending_change: None,
        head: (Some(head) != applied_id).then(|| head.to_string()),
        notes,
    };
    let Some(file) = file else {
        return Ok(chain);
    };
    let touching = |from| {
        last_commit_touching(&repo, from, Path::new(file))
            .map_err(|e| fail(e.message().to_string()))
    };
    let Some(commit) = touching(start)? else {
        return Ok(chain);
    };
    // Found from the last applied commit: the cluster has it.
    chain.change_applied = (applied_id == Some(start)).then_some(true);
    if start != head
        && let Some(newer) = touching(head)?
        && newer.id() != commit.id()
    {
        chain.pending_change = Some(commit_view(&newer));
    }
    chain.last_change_message = Some(String::from_utf8_lossy(commit.message_bytes()).into_owned());
    chain.last_change = Some(commit_view(&commit));
    Ok(chain)
}

fn commit_view(commit: &git2::Commit) -> CommitView {
    let time = jiff::Timestamp::from_second(commit.time().seconds())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let author = commit.author();
    CommitView {
        id: commit.id().to_string(),
        summary: commit
            .summary_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
        author: format!(
            "{} <{}>",
            String::from_utf8_lossy(author.name_bytes()),
            String::from_utf8_lossy(author.email_bytes())
        ),
        time,
    }
}

/// The newest commit reachable from `start` (first parents) whose tree changes the
/// blob at `path` compared with its first parent (or adds it).
fn last_commit_touching<'r>(
    repo: &'r git2::Repository,
    start: git2::Oid,
    path: &Path,
) -> Result<Option<git2::Commit<'r>>, git2::Error> {
    let blob_at = |c: &git2::Commit| -> Option<git2::Oid> {
        c.tree().ok()?.get_path(path).ok().map(|e| e.id())
    };
    let mut walk = repo.revwalk()?;
    walk.push(start)?;
    walk.simplify_first_parent()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL)?;
    for id in walk {
        let commit = repo.find_commit(id?)?;
        let Some(blob) = blob_at(&commit) else {
            continue;
        };
        let parent_blob = commit.parent(0).ok().and_then(|p| blob_at(&p));
        if parent_blob != Some(blob) {
            return Ok(Some(commit));
        }
    }
    Ok(None)
}

/// The `{changes}` lines of an image-update message (`- policy: from → to (files)`)
/// that name `file`.
pub fn image_updates(message: &str, file: &str) -> Vec<ImageUpdate> {
    message
        .lines()
        .filter_map(parse_change_line)
        .filter(|u| u.files.iter().any(|f| f == file))
        .collect()
}

fn parse_change_line(line: &str) -> Option<ImageUpdate> {
    let rest = line.trim_end().strip_prefix("- ")?;
    let (policy, rest) = rest.split_once(": ")?;
    let (step, files) = rest.strip_suffix(')')?.split_once(" (")?;
    let (from, to) = step.split_once(" → ")?;
    if policy.contains(' ') || from.contains(' ') || to.contains(' ') {
        return None;
    }
    Some(ImageUpdate {
        policy: policy.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        files: files.split(", ").map(str::to_string).collect(),
    })
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The explanation for people: one line per link of the chain.
pub fn render_text(e: &Explanation) -> String {
    let mut out = format!("{}\n", e.object);
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("  {label:<14}{value}\n"));
    };
    match &e.live {
        Some(l) => {
            line(
                "live",
                format!("uid {}, resourceVersion {}", l.uid, l.resource_version),
            );
            if !l.images.is_empty() {
                line("images", l.images.join(", "));
            }
            let managers: Vec<String> = l
                .managers
                .iter()
                .map(|(m, t)| {
                    if t.is_empty() {
                        m.clone()
                    } else {
                        format!("{m} ({t})")
                    }
                })
                .collect();
            if !managers.is_empty() {
                line("managers", managers.join(", "));
            }
            line(
                "label",
                match &l.target_label {
                    Some(t) => format!("{TARGET_LABEL}={t}"),
                    None => format!("no {TARGET_LABEL} label"),
                },
            );
        }
        None => line("live", "not found".into()),
    }
    if let Some(t) = &e.target {
        line("target", t.clone());
    }
    if let Some(inv) = &e.inventory {
        line(
            "inventory",
            format!(
                "{}: {} ({} objects)",
                inv.configmap,
                if inv.listed { "listed" } else { "NOT listed" },
                inv.objects
            ),
        );
        line(
            "last applied",
            match (&inv.last_applied_commit, &inv.last_applied_time) {
                (Some(c), Some(t)) if !t.is_empty() => format!("commit {c} at {t}"),
                (Some(c), _) => format!("commit {c}"),
                _ => "no commit recorded".into(),
            },
        );
    }
    match &e.source {
        Some(s) => line("file", format!("{} (document {})", s.file, s.document)),
        None => line("file", "not found in the target's folder".into()),
    }
    if let Some(c) = &e.last_change {
        line(
            "changed in",
            format!(
                "commit {} {:?} by {} at {}",
                c.id, c.summary, c.author, c.time
            ),
        );
    }
    for u in &e.image_updates {
        line(
            "image update",
            format!(
                "policy {}: {} → {} ({})",
                u.policy,
                u.from,
                u.to,
                u.files.join(", ")
            ),
        );
    }
    match e.change_applied {
        Some(true) => line(
            "sync",
            "the last applied commit contains this change".into(),
        ),
        Some(false) => line("sync", "this change is NOT applied yet".into()),
        None if e.last_change.is_some() => line(
            "sync",
            "unknown: the inventory records no applied commit".into(),
        ),
        None => {}
    }
    if let Some(c) = &e.pending_change {
        line(
            "pending",
            format!(
                "commit {} {:?} by {} at {} changes the file again: NOT applied yet",
                c.id, c.summary, c.author, c.time
            ),
        );
    }
    if let Some(head) = &e.head {
        line(
            "checkout",
            format!("head {} differs from the last applied commit", short(head)),
        );
    }
    match (&e.commit_status, &e.status_context, &e.inventory) {
        (Some(st), _, _) => line(
            "status",
            format!(
                "{} on commit {}: {} ({})",
                st.context,
                short(&st.commit),
                st.state,
                st.description
            ),
        ),
        (None, Some(ctx), Some(inv)) if inv.last_applied_commit.is_some() => line(
            "status",
            format!(
                "context {ctx} on commit {}",
                short(inv.last_applied_commit.as_deref().unwrap_or_default())
            ),
        ),
        _ => {}
    }
    for n in &e.notes {
        line("note", n.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::Plan;
    use crate::update::message::{
        self,
        tests::{change, file},
    };

    #[test]
    fn queries() {
        let q = Query::parse("deploy/podinfo", Some("web")).expect("valid");
        assert_eq!((q.kind.as_str(), q.name.as_str()), ("deploy", "podinfo"));
        assert_eq!(q.namespace.as_deref(), Some("web"));
        for bad in ["podinfo", "/x", "deploy/", "a/b/c"] {
            assert!(Query::parse(bad, None).is_err(), "{bad}");
        }
    }

    /// The parser reads what the updater writes: round trip through the real renderer.
    #[test]
    fn reads_back_the_update_message() {
        let plan = Plan {
            files: vec![
                file("apps/a.yaml", vec![change("app", "1.0.0", "1.1.0")]),
                file(
                    "apps/b.yaml",
                    vec![change("app", "1.0.0", "1.1.0"), change("db", "v2", "v3")],
                ),
            ],
            ..Plan::default()
        };
        let text = message::render("chore(images): {summary}\n\n{changes}\n", &plan);
        assert_eq!(
            image_updates(&text, "apps/b.yaml"),
            [
                ImageUpdate {
                    policy: "app".into(),
                    from: "1.0.0".into(),
                    to: "1.1.0".into(),
                    files: vec!["apps/a.yaml".into(), "apps/b.yaml".into()],
                },
                ImageUpdate {
                    policy: "db".into(),
                    from: "v2".into(),
                    to: "v3".into(),
                    files: vec!["apps/b.yaml".into()],
                }
            ]
        );
        assert_eq!(image_updates(&text, "apps/a.yaml").len(), 1);
        assert!(image_updates(&text, "apps/c.yaml").is_empty());
        assert!(image_updates("fix: a human commit\n\n- note: not → an update", "x").is_empty());
    }

    #[test]
    fn finds_the_defining_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let apps = dir.path().join("apps");
        std::fs::create_dir_all(&apps).expect("mkdir");
        std::fs::write(
            apps.join("all.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: web}\n",
        )
        .expect("write");
        std::fs::write(apps.join("broken.yaml"), "kind: [\n").expect("write");
        let s = find_source(dir.path(), &apps, "ConfigMap", "b", "web").expect("found");
        assert_eq!((s.file.as_str(), s.document), ("apps/all.yaml", 2));
        assert!(find_source(dir.path(), &apps, "Secret", "b", "web").is_none());
    }
}
