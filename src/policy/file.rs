//! Loading and validating `ImagePolicy` files.

use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::semver_range::SemverRange;
use crate::yaml_file::{self, SourceError};

pub const API_VERSION: &str = "capstan.dev/v1alpha1";
pub const KIND: &str = "ImagePolicy";

/// A validated image policy.
#[derive(Debug, Clone)]
pub struct ImagePolicy {
    pub name: String,
    /// Only used to match Flux-style markers written as `namespace:name`.
    pub namespace: Option<String>,
    /// Image repository without tag, e.g. `ghcr.io/stefanprodan/podinfo`.
    pub image: String,
    pub filter: Option<TagFilter>,
    pub exclude: Vec<Regex>,
    pub strategy: Strategy,
    pub digest: DigestMode,
    /// The file the policy was read from, for error messages and `explain`.
    pub source: PathBuf,
}

/// `filterTags`: only tags matching `pattern` are candidates; `extract` (a
/// replacement template such as `$ts`) gives the value that is ordered.
#[derive(Debug, Clone)]
pub struct TagFilter {
    pub pattern: Regex,
    pub extract: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Strategy {
    Semver(SemverRange),
    Alphabetical(Order),
    Numerical(Order),
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Semver(range) => write!(f, "semver `{range}`"),
            Strategy::Alphabetical(order) => write!(f, "alphabetical {order}"),
            Strategy::Numerical(order) => write!(f, "numerical {order}"),
        }
    }
}

/// `asc` chooses the last tag in ascending order (the highest), `desc` the lowest,
/// as in Flux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        })
    }
}

/// Whether manifests get `tag` or `tag@sha256:…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestMode {
    #[default]
    Tag,
    Pin,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{}: {} policies have errors", .0.display(), .1.len())]
    Many(PathBuf, Vec<SourceError>),
}

impl PolicyError {
    /// Every individual error, one per line when printed.
    pub fn errors(&self) -> Vec<&SourceError> {
        match self {
            PolicyError::Source(e) => vec![e],
            PolicyError::Many(_, errors) => errors.iter().collect(),
        }
    }
}

// ---- the file's shape, as written by users ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyDoc {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    metadata: MetadataDoc,
    spec: SpecDoc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MetadataDoc {
    name: Spanned<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // accepted so Kubernetes-style metadata does not fail
    labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpecDoc {
    image: Spanned<String>,
    #[serde(default)]
    filter_tags: Option<FilterTagsDoc>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    policy: Spanned<StrategyDoc>,
    #[serde(default)]
    digest: DigestMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilterTagsDoc {
    pattern: Spanned<String>,
    #[serde(default)]
    extract: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StrategyDoc {
    #[serde(default)]
    semver: Option<SemverDoc>,
    #[serde(default)]
    alphabetical: Option<OrderDoc>,
    #[serde(default)]
    numerical: Option<OrderDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SemverDoc {
    range: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OrderDoc {
    #[serde(default)]
    order: Order,
}

/// Reads every policy in one file (`---` separated documents are allowed).
pub fn load_file(path: &Path) -> Result<Vec<ImagePolicy>, SourceError> {
    let text = yaml_file::read_text(path)?;
    let docs: Vec<PolicyDoc> = yaml_file::parse_documents(path, &text)?;
    if docs.is_empty() {
        return Err(SourceError::whole_file(path, "holds no ImagePolicy"));
    }
    docs.into_iter()
        .map(|doc| validate(path, &text, doc))
        .collect()
}

/// Reads `*.yaml`/`*.yml` in a folder (not recursive), sorted by file name.
/// Every bad file is reported, not just the first; names must be unique.
pub fn load_dir(dir: &Path) -> Result<Vec<ImagePolicy>, PolicyError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SourceError::whole_file(dir, format!("cannot read policies folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    let mut policies: Vec<ImagePolicy> = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match load_file(file) {
            Ok(found) => {
                for policy in found {
                    if let Some(other) = policies
                        .iter()
                        .find(|p| p.name == policy.name && p.namespace == policy.namespace)
                    {
                        errors.push(SourceError::whole_file(
                            file,
                            format!(
                                "policy `{}` is also defined in {}",
                                policy.name,
                                other.source.display()
                            ),
                        ));
                    } else {
                        policies.push(policy);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(policies),
        1 => Err(PolicyError::Source(errors.remove(0))),
        _ => Err(PolicyError::Many(dir.to_path_buf(), errors)),
    }
}

fn validate(path: &Path, text: &str, doc: PolicyDoc) -> Result<ImagePolicy, SourceError> {
    let at = |spanned_loc, field: &str, msg: String| {
        SourceError::at(path, text, spanned_loc, Some(field), msg)
    };
    if doc.api_version.value != API_VERSION {
        return Err(at(
            doc.api_version.referenced,
            "apiVersion",
            format!(
                "unsupported apiVersion `{}`, expected `{API_VERSION}`",
                doc.api_version.value
            ),
        ));
    }
    if doc.kind.value != KIND {
        return Err(at(
            doc.kind.referenced,
            "kind",
            format!("unsupported kind `{}`, expected `{KIND}`", doc.kind.value),
        ));
    }
    let name = doc.metadata.name.value.trim().to_string();
    if !is_dns_subdomain(&name) {
        return Err(at(
            doc.metadata.name.referenced,
            "metadata.name",
            format!(
                "`{name}` is not a valid name (lowercase letters, digits, `-` and `.`, at most 253 characters)"
            ),
        ));
    }
    let image = doc.spec.image.value.trim().to_string();
    if let Err(why) = check_image_repository(&image) {
        return Err(at(doc.spec.image.referenced, "spec.image", why));
    }

    let filter = match doc.spec.filter_tags {
        None => None,
        Some(f) => {
            let pattern = Regex::new(&f.pattern.value).map_err(|e| {
                at(
                    f.pattern.referenced,
                    "spec.filterTags.pattern",
                    format!("invalid regular expression: {}", one_line(&e.to_string())),
                )
            })?;
            let extract = match f.extract {
                Some(t) if !t.value.is_empty() => {
                    check_extract_template(&pattern, &t.value)
                        .map_err(|why| at(t.referenced, "spec.filterTags.extract", why))?;
                    Some(t.value)
                }
                _ => None,
            };
            Some(TagFilter { pattern, extract })
        }
    };

    let mut exclude = Vec::new();
    for (i, pat) in doc.spec.exclude.iter().enumerate() {
        let re = Regex::new(&pat.value).map_err(|e| {
            at(
                pat.referenced,
                &format!("spec.exclude[{i}]"),
                format!("invalid regular expression: {}", one_line(&e.to_string())),
            )
        })?;
        exclude.push(re);
    }

    let strategy_loc = doc.spec.policy.referenced;
    let s = doc.spec.policy.value;
    let strategy = match (s.semver, s.alphabetical, s.numerical) {
        (Some(semver), None, None) => {
            let range = SemverRange::parse(&semver.range.value).map_err(|e| {
                at(
                    semver.range.referenced,
                    "spec.policy.semver.range",
                    e.to_string(),
                )
            })?;
            Strategy::Semver(range)
        }
        (None, Some(a), None) => Strategy::Alphabetical(a.order),
        (None, None, Some(n)) => Strategy::Numerical(n.order),
        (None, None, None) => {
            return Err(at(
                strategy_loc,
                "spec.policy",
                "choose one of `semver`, `alphabetical`, `numerical`".into(),
            ));
        }
        _ => {
            return Err(at(
                strategy_loc,
                "spec.policy",
                "set only one of `semver`, `alphabetical`, `numerical`".into(),
            ));
        }
    };

    Ok(ImagePolicy {
        name,
        namespace: doc.metadata.namespace.filter(|n| !n.is_empty()),
        image,
        filter,
        exclude,
        strategy,
        digest: doc.spec.digest,
        source: path.to_path_buf(),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// RFC 1123 subdomain, as Kubernetes object names.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A repository reference without tag or digest (`host[:port]/path`, or Docker Hub short forms).
fn check_image_repository(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("image is empty".into());
    }
    if image.contains('@') {
        return Err(format!(
            "`{image}` carries a digest; give the repository only (e.g. `ghcr.io/acme/app`)"
        ));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        return Err(format!(
            "`{image}` carries a tag; give the repository only (e.g. `ghcr.io/acme/app`)"
        ));
    }
    let valid_path_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    let path = match image.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => image,
    };
    if path.is_empty() || !path.chars().all(valid_path_char) || path.contains("//") {
        return Err(format!(
            "`{image}` is not a valid image repository (lowercase path components separated by `/`)"
        ));
    }
    Ok(())
}

/// `extract` may only name capture groups that the pattern has.
fn check_extract_template(pattern: &Regex, template: &str) -> Result<(), String> {
    let names: Vec<&str> = pattern.capture_names().flatten().collect();
    let groups = pattern.captures_len();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        rest = &rest[pos + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
            continue;
        }
        let (reference, tail) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(end) => (&r[..end], &r[end + 1..]),
                None => return Err("unclosed `${` in extract template".into()),
            }
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..len], &rest[len..])
        };
        rest = tail;
        if reference.is_empty() {
            return Err(
                "`$` must be followed by a group name or number (write `$$` for a literal `$`)"
                    .into(),
            );
        }
        let known = match reference.parse::<usize>() {
            Ok(n) => n < groups,
            Err(_) => names.contains(&reference),
        };
        if !known {
            return Err(format!(
                "`${reference}` names no capture group of the pattern (groups: {})",
                if names.is_empty() {
                    format!("0..{}", groups - 1)
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write policy");
        p
    }

    const GOOD: &str = "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/acme/app\n  policy:\n    semver:\n      range: '>=1.0.0'\n";

    #[test]
    fn loads_a_good_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "a.yaml", GOOD);
        let policies = load_file(&p).expect("valid");
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].name, "app");
        assert_eq!(policies[0].image, "ghcr.io/acme/app");
    }

    #[test]
    fn bad_regex_names_file_line_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace(
            "  policy:",
            "  filterTags:\n    pattern: '^main-(['\n  policy:",
        );
        let p = write(dir.path(), "bad.yaml", &text);
        let err = load_file(&p).unwrap_err();
        assert_eq!(err.line, 8);
        assert_eq!(err.field.as_deref(), Some("spec.filterTags.pattern"));
        assert!(err.message.contains("invalid regular expression"), "{err}");
    }

    #[test]
    fn extract_must_name_a_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace(
            "  policy:",
            "  filterTags:\n    pattern: '^main-(?P<ts>[0-9]+)$'\n    extract: '$tss'\n  policy:",
        );
        let p = write(dir.path(), "bad.yaml", &text);
        let err = load_file(&p).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("spec.filterTags.extract"));
        assert!(err.message.contains("`$tss`"), "{err}");
    }

    #[test]
    fn two_strategies_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("    semver:", "    numerical: {}\n    semver:");
        let p = write(dir.path(), "bad.yaml", &text);
        let err = load_file(&p).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("spec.policy"));
    }

    #[test]
    fn image_with_tag_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("ghcr.io/acme/app", "ghcr.io/acme/app:1.0");
        let p = write(dir.path(), "bad.yaml", &text);
        let err = load_file(&p).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("spec.image"));
        assert!(check_image_repository("localhost:5000/app").is_ok());
        assert!(check_image_repository("nginx").is_ok());
    }

    #[test]
    fn dir_reports_every_bad_file_and_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a.yaml", GOOD);
        write(dir.path(), "b.yaml", GOOD);
        write(dir.path(), "c.yml", "apiVersion: [\n");
        write(dir.path(), "notes.txt", "ignored");
        let err = load_dir(dir.path()).unwrap_err();
        let errors = err.errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].message.contains("also defined in"));
        assert!(errors[1].file.ends_with("c.yml"));
    }
}
