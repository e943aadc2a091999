//! From files and chosen images to verified new file contents.
//!
//! [`plan_text`] is pure (text in, plan out) so it can be tested byte for byte;
//! [`plan_dir`] walks a folder and calls it for every `.yaml`/`.yml` file;
//! [`Plan::write`] writes the verified results. A problem in one file never
//! stops the others.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::edit::{self, Edit};
use super::find::{self, RefKind};
use super::marker::Field;
use super::reference;
use super::verify::{self, Intended};
use super::write;
use super::yaml_index;
use crate::policy::ImagePolicy;

/// The image a policy chose: a tag, and a digest when the policy pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChosenImage {
    pub tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl ChosenImage {
    /// `tag` or `tag@digest`.
    pub fn suffix(&self) -> String {
        reference::tag_and_digest(&self.tag, self.digest.as_deref())
    }
}

/// A policy and what it chose, or why it chose nothing (then references to it
/// are skipped, with that reason).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub policy: ImagePolicy,
    pub chosen: Result<ChosenImage, String>,
}

/// Options of a scan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `update.matchImageFields`: also update unmarked `image:` fields of Pod templates.
    pub match_image_fields: bool,
}

/// A problem that needs a person: names file and line (0: the whole file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// Something deliberately left alone, and why.
pub type Skip = Problem;

/// One scalar that changes.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub policy: String,
    pub line: usize,
    /// `marker`, `marker:tag`, `kustomization newTag`, `image field`, ...
    pub kind: String,
    /// Document index among the file's documents, and the pointer inside it.
    pub document: usize,
    pub pointer: String,
    /// The part that changes, for people: usually the old and new tag.
    pub from: String,
    pub to: String,
    #[serde(skip)]
    pub edit: Edit,
}

/// A file whose new content passed verification.
#[derive(Debug, Clone, Serialize)]
pub struct FilePlan {
    /// Path relative to the scanned root (the repository), `/`-separated.
    pub path: String,
    #[serde(skip)]
    pub absolute: PathBuf,
    #[serde(skip)]
    pub original: String,
    #[serde(skip)]
    pub updated: String,
    pub changes: Vec<Change>,
    /// The semantic change, RFC 6902, paths prefixed with the document index.
    pub patch: json_patch::Patch,
}

/// What [`plan_text`] found in one file.
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub plan: Option<FilePlan>,
    pub problems: Vec<Problem>,
    pub skipped: Vec<Skip>,
    /// References found (whether or not they change).
    pub references: usize,
    /// References that already hold the chosen image.
    pub up_to_date: usize,
    /// Names of the policies referenced in the file.
    pub policies: std::collections::BTreeSet<String>,
}

/// Plans the edits of one file. `path` is used for messages and kustomization
/// detection; `absolute` is where the file will be written.
pub fn plan_text(
    path: &str,
    absolute: &Path,
    text: &str,
    wanted: &[Wanted],
    options: Options,
) -> FileOutcome {
    let mut out = FileOutcome::default();
    if !may_hold_references(path, text, options) {
        return out;
    }
    let file = PathBuf::from(path);
    let problem = |line: usize, message: String| Problem {
        file: file.clone(),
        line,
        message,
    };
    let index = match yaml_index::index(text) {
        Ok(ix) => ix,
        Err(e) => {
            if text.contains("{{") {
                out.skipped.push(problem(
                    e.line,
                    "not YAML (a Go/Helm template?); not scanned".into(),
                ));
            } else {
                out.problems.push(problem(
                    e.line,
                    format!("does not parse as YAML: {}", e.message),
                ));
            }
            return out;
        }
    };
    let policies: Vec<&ImagePolicy> = wanted.iter().map(|w| &w.policy).collect();
    let found = find::find(
        &index,
        &policies,
        is_kustomization_file(path),
        options.match_image_fields,
    );
    for f in found.findings {
        if f.is_error {
            out.problems.push(problem(f.line, f.message));
        } else {
            out.skipped.push(problem(f.line, f.message));
        }
    }

    let mut seen = vec![false; index.scalars.len()];
    let mut changes: Vec<Change> = Vec::new();
    let mut intended: Vec<Intended> = Vec::new();
    for occ in found.occurrences {
        if std::mem::replace(&mut seen[occ.scalar], true) {
            continue; // a marker already governs this scalar
        }
        out.references += 1;
        let scalar = &index.scalars[occ.scalar];
        let w = &wanted[occ.policy];
        out.policies.insert(w.policy.name.clone());
        let chosen = match &w.chosen {
            Ok(c) => c,
            Err(reason) => {
                out.skipped.push(problem(
                    scalar.line,
                    format!("policy `{}`: {reason}", w.policy.name),
                ));
                continue;
            }
        };
        let new_value = match desired(occ.kind, &scalar.value, &w.policy, chosen) {
            Ok(v) => v,
            Err(why) => {
                out.skipped.push(problem(
                    scalar.line,
                    format!("policy `{}`: {why}", w.policy.name),
                ));
                continue;
            }
        };
        if new_value == scalar.value {
            out.up_to_date += 1;
            continue;
        }
        let old_json = match scalar.style {
            yaml_index::Style::Plain => edit::resolve_plain(&scalar.value)
                .unwrap_or_else(|| serde_json::Value::String(scalar.value.clone())),
            _ => serde_json::Value::String(scalar.value.clone()),
        };
        let planned = match edit::plan_edit(text, scalar, &new_value, &old_json) {
            Ok(p) => p,
            Err(e) => {
                out.problems.push(problem(
                    scalar.line,
                    format!("policy `{}`: {e}", w.policy.name),
                ));
                continue;
            }
        };
        if planned.quoted {
            tracing::info!(file = path, line = scalar.line, value = %new_value,
                "quoted the new value so that it stays a string");
        }
        let (from, to) = short_change(occ.kind, &scalar.value, &new_value);
        changes.push(Change {
            policy: w.policy.name.clone(),
            line: scalar.line,
            kind: occ.kind.describe(),
            document: scalar.doc,
            pointer: scalar.pointer.clone(),
            from,
            to,
            edit: planned.edit,
        });
        intended.push(Intended {
            scalar: occ.scalar,
            old: old_json,
            new: planned.new_json,
        });
    }
    if changes.is_empty() {
        return out;
    }
    let edits: Vec<Edit> = changes.iter().map(|c| c.edit.clone()).collect();
    let updated = match edit::apply(text, &edits) {
        Ok(u) => u,
        Err(e) => {
            out.problems.push(problem(changes[0].line, e));
            return out;
        }
    };
    match verify::verify(text, &updated, &index, &intended, &edits) {
        Ok(patch) => {
            out.plan = Some(FilePlan {
                path: path.to_string(),
                absolute: absolute.to_path_buf(),
                original: text.to_string(),
                updated,
                changes,
                patch,
            });
        }
        Err(e) => out.problems.push(problem(e.line, e.message)),
    }
    out
}

/// The value a governed scalar should hold. `Err`: nothing to write, and why.
fn desired(
    kind: RefKind,
    current: &str,
    policy: &ImagePolicy,
    chosen: &ChosenImage,
) -> Result<String, String> {
    match kind {
        RefKind::Marker(Field::Whole) | RefKind::ImageField => {
            let parts = reference::split(current);
            let name = if reference::same_repository(parts.name, &policy.image) {
                parts.name
            } else {
                policy.image.as_str()
            };
            Ok(format!("{name}:{}", chosen.suffix()))
        }
        RefKind::Marker(Field::Tag) => Ok(chosen.suffix()),
        RefKind::Marker(Field::Name) => Ok(if reference::same_repository(current, &policy.image) {
            current.to_string()
        } else {
            policy.image.clone()
        }),
        RefKind::Marker(Field::Digest) | RefKind::KustomizeDigest => chosen
            .digest
            .clone()
            .ok_or_else(|| "a digest field needs a policy with `digest: pin`".to_string()),
        RefKind::KustomizeTag => Ok(chosen.tag.clone()),
    }
}

/// The old and new text people want to read: the tag part of a reference
/// when the repository stays, otherwise the whole values.
fn short_change(kind: RefKind, old: &str, new: &str) -> (String, String) {
    if matches!(kind, RefKind::Marker(Field::Whole) | RefKind::ImageField) {
        let (a, b) = (reference::split(old), reference::split(new));
        if a.name == b.name {
            let suffix = |p: reference::ImageParts<'_>| match (p.tag, p.digest) {
                (Some(t), d) => reference::tag_and_digest(t, d),
                (None, Some(d)) => format!("@{d}"),
                (None, None) => "(no tag)".to_string(),
            };
            return (suffix(a), suffix(b));
        }
    }
    (old.to_string(), new.to_string())
}

/// Whether a file can hold anything to update; files that cannot are not
/// parsed at all (most files of a fleet repository).
fn may_hold_references(path: &str, text: &str, options: Options) -> bool {
    text.contains("$imagepolicy")
        || is_kustomization_file(path)
        || (options.match_image_fields && text.contains("image"))
}

/// `kustomization.yaml`, `kustomization.yml` or `Kustomization`.
fn is_kustomization_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    )
}

/// The result of scanning a folder.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub files: Vec<FilePlan>,
    pub problems: Vec<Problem>,
    pub skipped: Vec<Skip>,
    pub files_scanned: usize,
    pub references: usize,
    pub up_to_date: usize,
    /// Names of the policies referenced anywhere under the folder.
    pub referenced: std::collections::BTreeSet<String>,
}

/// Files larger than this are not scanned (a note says so).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Scans every `.yaml`/`.yml` file under `dir` (recursively, not following
/// symlinks, skipping `.git`); paths in the plan are relative to `root`.
pub fn plan_dir(root: &Path, dir: &Path, wanted: &[Wanted], options: Options) -> Plan {
    let mut plan = Plan::default();
    let (valid, problems) = validate_wanted(wanted);
    plan.problems.extend(problems);
    let mut files = Vec::new();
    if let Err(e) = collect_files(dir, &mut files, &mut plan.skipped, root) {
        plan.problems.push(Problem {
            file: rel(root, dir).into(),
            line: 0,
            message: format!("cannot read folder: {e}"),
        });
    }
    files.sort();
    plan.files_scanned = files.len();
    for outcome in plan_files(root, &files, &valid, options) {
        plan.references += outcome.references;
        plan.referenced.extend(outcome.policies);
        plan.up_to_date += outcome.up_to_date;
        plan.problems.extend(outcome.problems);
        plan.skipped.extend(outcome.skipped);
        plan.files.extend(outcome.plan);
    }
    plan
}

/// Plans every file, on as many threads as there are cores (files are
/// independent); outcomes come back in the order of `files`.
fn plan_files(
    root: &Path,
    files: &[PathBuf],
    wanted: &[Wanted],
    options: Options,
) -> Vec<FileOutcome> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len().div_ceil(16))
        .max(1);
    if threads == 1 {
        return files
            .iter()
            .map(|f| plan_file(root, f, wanted, options))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, FileOutcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(i) else { break };
                        done.push((i, plan_file(root, file, wanted, options)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(done) => done,
                // A panic is a bug: surface it rather than lose files.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, o)| o).collect()
}

/// Reads and plans one file.
fn plan_file(root: &Path, file: &Path, wanted: &[Wanted], options: Options) -> FileOutcome {
    let shown = rel(root, file);
    let whole_file = |message: String| Problem {
        file: shown.clone().into(),
        line: 0,
        message,
    };
    match read_small(file) {
        Ok(Some(text)) => plan_text(&shown, file, &text, wanted, options),
        Ok(None) => FileOutcome {
            skipped: vec![whole_file(format!(
                "larger than {MAX_FILE_BYTES} bytes; not scanned"
            ))],
            ..FileOutcome::default()
        },
        Err(message) => FileOutcome {
            problems: vec![whole_file(message)],
            ..FileOutcome::default()
        },
    }
}

/// Tags and digests end up in YAML: refuse ones that are not valid OCI tags
/// and digests rather than write them.
fn validate_wanted(wanted: &[Wanted]) -> (Vec<Wanted>, Vec<Problem>) {
    let mut problems = Vec::new();
    let valid = wanted
        .iter()
        .map(|w| {
            let mut w = w.clone();
            if let Ok(c) = &w.chosen {
                let bad = if !reference::is_valid_tag(&c.tag) {
                    Some(format!("chose `{}`, which is not a valid image tag", c.tag))
                } else if c
                    .digest
                    .as_deref()
                    .is_some_and(|d| !reference::is_valid_digest(d))
                {
                    Some(format!(
                        "got digest `{}`, which is not a valid digest",
                        c.digest.as_deref().unwrap_or_default()
                    ))
                } else {
                    None
                };
                if let Some(message) = bad {
                    problems.push(Problem {
                        file: w.policy.source.clone(),
                        line: 0,
                        message: format!(
                            "policy `{}` {message}; its references are not updated",
                            w.policy.name
                        ),
                    });
                    w.chosen = Err("its chosen tag is invalid".into());
                }
            }
            w
        })
        .collect();
    (valid, problems)
}

fn read_small(path: &Path) -> Result<Option<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map(Some).map_err(|e| {
        format!(
            "not valid UTF-8 (first bad byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn collect_files(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<Skip>,
    root: &Path,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            || path.file_name().is_some_and(|n| n == "Kustomization");
        if kind.is_symlink() {
            if is_yaml {
                skipped.push(Problem {
                    file: rel(root, &path).into(),
                    line: 0,
                    message: "symbolic link; not followed".into(),
                });
            }
        } else if kind.is_dir() {
            if entry.file_name() != ".git" {
                collect_files(&path, out, skipped, root)?;
            }
        } else if kind.is_file() && is_yaml {
            out.push(path);
        }
    }
    Ok(())
}

/// `path` relative to `root`, `/`-separated.
fn rel(root: &Path, path: &Path) -> String {
    let p = path.strip_prefix(root).unwrap_or(path);
    let s = p
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    if s.is_empty() { ".".into() } else { s }
}

impl Plan {
    /// Writes every planned file. A file that cannot be written is dropped
    /// from the plan and reported; the others are written.
    pub fn write(&mut self) {
        let files = std::mem::take(&mut self.files);
        for file in files {
            match write::replace_file(&file.absolute, file.updated.as_bytes()) {
                Ok(()) => {
                    for c in &file.changes {
                        tracing::info!(file = %file.path, line = c.line, policy = %c.policy,
                            from = %c.from, to = %c.to, "image reference updated");
                    }
                    tracing::debug!(file = %file.path,
                        patch = %serde_json::to_string(&file.patch).unwrap_or_default(),
                        "file written");
                    self.files.push(file);
                }
                Err(e) => {
                    tracing::warn!(file = %file.path, error = %e, "file not written");
                    self.problems.push(Problem {
                        file: file.path.clone().into(),
                        line: file.changes.first().map_or(0, |c| c.line),
                        message: format!("cannot write: {e}; file left unchanged"),
                    });
                }
            }
        }
    }

    /// Every change, in file order.
    pub fn changes(&self) -> impl Iterator<Item = (&FilePlan, &Change)> {
        self.files
            .iter()
            .flat_map(|f| f.changes.iter().map(move |c| (f, c)))
    }

    /// A unified diff of every planned file (`a/` and `b/` prefixes, as
    /// `git apply` expects).
    pub fn diff(&self) -> String {
        self.files
            .iter()
            .map(|f| super::diff::unified(&f.path, &f.original, &f.updated))
            .collect()
    }
}
