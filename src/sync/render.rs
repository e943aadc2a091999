//! Render: turn a target's folder into Kubernetes objects, each with the place it
//! came from.
//!
//! A folder holding a `kustomization.yaml` (or `.yml`, or `Kustomization`) is built
//! with `kustomize build` under a timeout; otherwise every `*.yaml`/`*.yml` file below
//! it is read, in path order, as a multi-document stream. Empty documents are skipped;
//! anything else must look like a Kubernetes object (`apiVersion`, `kind`,
//! `metadata.name`), and an error names the file and document. Nothing here talks to
//! the cluster: namespaces and kinds are resolved later (`resolve`), because that needs
//! discovery.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::SyncError;
use crate::yaml_file;

/// How long `kustomize build` may run.
pub const KUSTOMIZE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a rendered object came from: a file and the 1-based document in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.file.display(), self.document)
    }
}

/// One object as written in Git, not yet resolved against the cluster.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub source: Source,
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
    }
}

/// The kustomization file of a folder, if it has one.
pub fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// Renders the folder `dir`: kustomize when it holds a kustomization, else plain YAML.
pub async fn render(dir: &Path) -> Result<Vec<Manifest>, SyncError> {
    if !dir.is_dir() {
        return Err(SyncError::Render {
            file: dir.to_path_buf(),
            message: "the target path is not a folder".into(),
        });
    }
    match kustomization_file(dir) {
        Some(file) => kustomize_build(dir, &file).await,
        None => read_folder_in_parallel(dir).await,
    }
}

/// [`read_folder`], with the files parsed on blocking threads at once: parsing is
/// CPU work (a 10,000-object folder is most of a no-op resync's own time), files are
/// independent, and the order of the result stays the sorted file order.
async fn read_folder_in_parallel(dir: &Path) -> Result<Vec<Manifest>, SyncError> {
    let mut files = Vec::new();
    collect_yaml_files(dir, &mut files)?;
    files.sort();
    let parses: Vec<_> = files
        .into_iter()
        .map(|file| tokio::task::spawn_blocking(move || read_file(&file)))
        .collect();
    let mut out = Vec::new();
    for parse in parses {
        let manifests = parse.await.map_err(|e| SyncError::Render {
            file: dir.to_path_buf(),
            message: format!("reading the folder stopped: {e}"),
        })??;
        out.extend(manifests);
    }
    Ok(out)
}

fn read_file(file: &Path) -> Result<Vec<Manifest>, SyncError> {
    let text = yaml_file::read_text(file).map_err(|e| SyncError::Render {
        file: file.to_path_buf(),
        message: e.message,
    })?;
    parse_stream(file, &text)
}

/// Reads every YAML file below `dir`, recursively, in a stable (sorted) order.
pub fn read_folder(dir: &Path) -> Result<Vec<Manifest>, SyncError> {
    let mut files = Vec::new();
    collect_yaml_files(dir, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for file in files {
        out.extend(read_file(&file)?);
    }
    Ok(out)
}

pub(crate) fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SyncError> {
    let io_err = |e: std::io::Error| SyncError::Render {
        file: dir.to_path_buf(),
        message: format!("cannot read folder: {e}"),
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses a multi-document YAML stream into manifests; `file` names it in errors.
pub fn parse_stream(file: &Path, text: &str) -> Result<Vec<Manifest>, SyncError> {
    let docs: Vec<Value> = yaml_file::parse_documents(file, text).map_err(SyncError::Source)?;
    let numbers = document_numbers(text);
    let mut out = Vec::new();
    for (i, object) in docs.into_iter().enumerate() {
        if object.is_null() || object.as_object().is_some_and(|m| m.is_empty()) {
            continue;
        }
        // The parser drops empty documents; count them back from the text when the
        // sections line up, else fall back to the position among non-empty ones.
        let document = numbers.get(i).copied().unwrap_or(i + 1);
        let source = Source {
            file: file.to_path_buf(),
            document,
        };
        // A `List` (what `kubectl get -o yaml` writes) holds its objects in `items`.
        if object["kind"].as_str().is_some_and(|k| k.ends_with("List"))
            && object["apiVersion"] == "v1"
            && object["items"].is_array()
        {
            for item in object["items"].as_array().into_iter().flatten() {
                out.push(validate(source.clone(), item.clone())?);
            }
            continue;
        }
        out.push(validate(source, object)?);
    }
    Ok(out)
}

/// The 1-based number of each non-empty document in a stream, counting every
/// `---`-separated section (text before the first `---` counts only when it has
/// content), so `document N` means what a reader counts in the file.
fn document_numbers(text: &str) -> Vec<usize> {
    let mut numbers = Vec::new();
    let mut number = 1;
    let mut content = false;
    let mut seen_marker = false;
    for line in text.lines() {
        if line == "---" || line.starts_with("--- ") {
            if content {
                numbers.push(number);
            }
            if content || seen_marker {
                number += 1;
            }
            seen_marker = true;
            content = false;
            continue;
        }
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') && t != "..." {
            content = true;
        }
    }
    if content {
        numbers.push(number);
    }
    numbers
}

fn validate(source: Source, object: Value) -> Result<Manifest, SyncError> {
    let invalid = |message: String| SyncError::Invalid {
        origin: source.to_string(),
        message,
    };
    if !object.is_object() {
        return Err(invalid(
            "not a Kubernetes object (expected a mapping with apiVersion, kind and metadata.name)"
                .into(),
        ));
    }
    for (field, value) in [
        ("apiVersion", &object["apiVersion"]),
        ("kind", &object["kind"]),
        ("metadata.name", &object["metadata"]["name"]),
    ] {
        match value {
            Value::String(s) if !s.trim().is_empty() => {}
            Value::Null => {
                return Err(invalid(format!(
                    "not a Kubernetes object: `{field}` is missing"
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "`{field}` must be a non-empty string, found {value}"
                )));
            }
        }
    }
    let namespace = &object["metadata"]["namespace"];
    if !namespace.is_null() && !namespace.is_string() {
        return Err(invalid(format!(
            "`metadata.namespace` must be a string, found {namespace} (quote it: YAML reads y/n/yes/no/on/off as booleans)"
        )));
    }
    if object["metadata"].get("generateName").is_some() {
        return Err(invalid(
            "`metadata.generateName` cannot be used: objects need a stable name to be tracked"
                .into(),
        ));
    }
    Ok(Manifest { source, object })
}

/// Runs `kustomize build <dir>` with a timeout and parses its output.
async fn kustomize_build(dir: &Path, kustomization: &Path) -> Result<Vec<Manifest>, SyncError> {
    let binary = kustomize_binary().ok_or_else(|| SyncError::Render {
        file: kustomization.to_path_buf(),
        message: "`kustomize` is needed to build this folder but was not found: set \
                  CAPSTAN_KUSTOMIZE, put it on PATH, or run `scripts/k8s-env build`"
            .into(),
    })?;
    let child = tokio::process::Command::new(&binary)
        .arg("build")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SyncError::Render {
            file: kustomization.to_path_buf(),
            message: format!("cannot run {}: {e}", binary.display()),
        })?;
    let output = tokio::time::timeout(KUSTOMIZE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| SyncError::Render {
            file: kustomization.to_path_buf(),
            message: format!("`kustomize build` did not finish in {KUSTOMIZE_TIMEOUT:?}"),
        })?
        .map_err(|e| SyncError::Render {
            file: kustomization.to_path_buf(),
            message: format!("`kustomize build` failed: {e}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(SyncError::Render {
            file: kustomization.to_path_buf(),
            message: format!(
                "`kustomize build` failed ({}): {}",
                output.status,
                stderr.trim()
            ),
        });
    }
    let text = String::from_utf8(output.stdout).map_err(|_| SyncError::Render {
        file: kustomization.to_path_buf(),
        message: "`kustomize build` printed invalid UTF-8".into(),
    })?;
    let label = dir.join("(kustomize build)");
    parse_stream(&label, &text)
}

/// `CAPSTAN_KUSTOMIZE`, then `kustomize` on PATH, then the test environment's cache
/// (`scripts/k8s-env build`).
pub fn kustomize_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CAPSTAN_KUSTOMIZE") {
        return Some(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("kustomize");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let cache = std::env::var_os("CAPSTAN_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("capstan")))
        .or_else(|| std::env::var_os("HOME").map(|p| PathBuf::from(p).join(".cache/capstan")))?;
    let k8s = std::fs::read_dir(cache.join("k8s")).ok()?;
    let mut found: Vec<PathBuf> = k8s
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/kustomize"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Manifest>, SyncError> {
        parse_stream(Path::new("x/app.yaml"), text)
    }

    #[test]
    fn multi_document_streams_skip_empty_documents() {
        let got = parse(
            "---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: team}\n",
        )
        .unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|m| (m.kind(), m.name(), m.namespace()))
            .collect();
        assert_eq!(
            names,
            [("ConfigMap", "a", None), ("Secret", "b", Some("team"))]
        );
        assert_eq!(got[0].source.document, 2);
        assert_eq!(got[1].source.document, 4);
    }

    #[test]
    fn non_kubernetes_yaml_names_the_file_and_the_missing_field() {
        let err = parse("name: not-a-manifest\nvalues: [1, 2]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x/app.yaml (document 1)"), "{err}");
        assert!(err.contains("`apiVersion` is missing"), "{err}");
        let err = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`metadata.name` is missing"), "{err}");
        let err = parse("- a\n- b\n").unwrap_err().to_string();
        assert!(err.contains("not a Kubernetes object"), "{err}");
        let err = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: no}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`metadata.namespace` must be a string"),
            "{err}"
        );
        let err = parse("apiVersion: v1\nkind: 3\nmetadata: {name: a}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`kind` must be a non-empty string"), "{err}");
    }

    #[test]
    fn invalid_yaml_names_the_file() {
        let err = parse("apiVersion: v1\nkind: [unclosed\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x/app.yaml"), "{err}");
    }

    #[test]
    fn lists_are_flattened() {
        let got = parse(
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn folders_are_read_recursively_in_path_order_ignoring_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(
            dir.path().join("b/c/z.yml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: z}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "# not yaml").unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/x.yaml"), "bad: [").unwrap();
        let got = read_folder(dir.path()).unwrap();
        let names: Vec<_> = got.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["a", "z"]);
    }
}
