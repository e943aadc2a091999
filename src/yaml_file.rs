//! Reads YAML files into typed values, with errors a person can act on.
//!
//! Every configuration and policy file goes through here so that every error has
//! the same shape: `file:line:col: field: what is wrong`. The YAML parser
//! (serde-saphyr) gives the position; the dotted field path (`targets[1].name`) is
//! recovered from the source text around that position, because serde's errors do
//! not carry it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::Location;

/// An error that points into a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SourceError {
    pub file: PathBuf,
    /// 1-based; 0 when the error concerns the file as a whole.
    pub line: u64,
    pub column: u64,
    /// Dotted path of the offending field, e.g. `spec.policy.semver.range`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl SourceError {
    /// An error about the whole file (unreadable, not a file, ...).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        SourceError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: None,
            message: message.into(),
        }
    }

    /// An error at a position the parser reported (e.g. from a `Spanned` value).
    pub fn at(
        file: &Path,
        text: &str,
        location: Location,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        let field = match field {
            Some(f) => Some(f.to_string()),
            None => field_path_at(text, location.line()),
        };
        SourceError {
            file: file.to_path_buf(),
            line: location.line(),
            column: location.column(),
            field,
            message: message.into(),
        }
    }
}

/// A value that came from a default, not from the file.
pub fn unspanned<T>(value: T) -> serde_saphyr::Spanned<T> {
    serde_saphyr::Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

/// Reads a file as UTF-8 text, naming the file in every failure.
pub fn read_text(path: &Path) -> Result<String, SourceError> {
    if path.is_dir() {
        return Err(SourceError::whole_file(
            path,
            "is a directory, expected a YAML file",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| SourceError::whole_file(path, e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        SourceError::whole_file(
            path,
            format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Parses one YAML document.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, SourceError> {
    serde_saphyr::from_str(text).map_err(|e| convert_error(file, text, &e))
}

/// Parses a multi-document stream (`---` separated); empty documents are skipped.
pub fn parse_documents<T: DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<Vec<T>, SourceError> {
    serde_saphyr::from_multiple(text).map_err(|e| convert_error(file, text, &e))
}

fn convert_error(file: &Path, text: &str, err: &serde_saphyr::Error) -> SourceError {
    let raw = err.without_snippet().to_string();
    let message = improve_message(strip_position_prefix(&raw));
    match err.location() {
        Some(loc) if loc.line() > 0 => SourceError::at(file, text, loc, None, message),
        _ => SourceError::whole_file(file, message),
    }
}

/// serde-saphyr renders `error: line 4 column 3: <message>`; the position is
/// already in our own prefix, so keep only the message.
fn strip_position_prefix(raw: &str) -> &str {
    let mut s = raw.trim().strip_prefix("error: ").unwrap_or(raw.trim());
    if let Some(idx) = s.rfind(" at line ")
        && s[idx..].contains(", column ")
    {
        s = &s[..idx];
    }
    if let Some(rest) = s.strip_prefix("line ")
        && let Some(idx) = rest.find(": ")
        && rest[..idx]
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c.is_ascii_alphabetic())
    {
        return &rest[idx + 2..];
    }
    s
}

/// Adds a did-you-mean hint to serde's "unknown field `x`, expected one of a, b".
fn improve_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = tail
        .trim_start_matches(", expected one of ")
        .trim_start_matches(", expected ")
        .split(',')
        .map(|s| s.trim().trim_matches('`'))
        .filter(|s| !s.is_empty())
        .collect();
    match did_you_mean(unknown, &expected) {
        Some(best) => format!(
            "unknown field `{unknown}` (did you mean `{best}`?); expected one of: {}",
            expected.join(", ")
        ),
        None if !expected.is_empty() => format!(
            "unknown field `{unknown}`; expected one of: {}",
            expected.join(", ")
        ),
        None => message.to_string(),
    }
}

/// The closest candidate by edit distance, if it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&word_lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbours counts as one typo (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Recovers the dotted path of the key on `line` (1-based) in block-style YAML,
/// e.g. `targets[1].healthTimeout`, by walking up to less-indented parent keys.
/// Returns `None` where the layout does not allow it (flow style, scalars only).
pub fn field_path_at(text: &str, line: u64) -> Option<String> {
    let lines: Vec<LineShape> = text.lines().map(LineShape::of).collect();
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let target = lines.get(idx)?;
    let mut col = target.key_col?;
    let mut segments = vec![target.key.clone()?];
    if let Some(dash) = target.dash_col {
        segments.push(format!("[{}]", item_index(&lines, idx, dash)));
        col = dash;
    }
    // After leaving a sequence item, its parent key may sit at the dash's column.
    let mut after_item = target.dash_col.is_some();
    for i in (0..idx).rev() {
        let shape = &lines[i];
        if col == 0 && !after_item {
            break;
        }
        let Some(indent) = shape.indent else { continue };
        match (shape.key_col, &shape.key) {
            (Some(kc), Some(key))
                if kc < col || (after_item && kc == col && shape.dash_col.is_none()) =>
            {
                segments.push(key.clone());
                col = kc;
                after_item = false;
                if let Some(dash) = shape.dash_col {
                    segments.push(format!("[{}]", item_index(&lines, i, dash)));
                    col = dash;
                    after_item = true;
                }
            }
            (Some(kc), Some(_)) if kc == col && !after_item => {
                // A sibling key: when it opens a sequence item, we are inside that item.
                if let Some(dash) = shape.dash_col {
                    segments.push(format!("[{}]", item_index(&lines, i, dash)));
                    col = dash;
                    after_item = true;
                }
            }
            (None, None) if shape.dash_col.is_some_and(|d| d < col) => {
                let dash = shape.dash_col.unwrap_or(indent);
                segments.push(format!("[{}]", item_index(&lines, i, dash)));
                col = dash;
                after_item = true;
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for seg in segments.iter().rev() {
        if !seg.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(seg);
    }
    Some(out)
}

/// What matters of one line for locating keys.
struct LineShape {
    /// `None` for blank and comment-only lines.
    indent: Option<usize>,
    /// Column of the innermost `- ` that opens a sequence item on this line.
    dash_col: Option<usize>,
    key_col: Option<usize>,
    key: Option<String>,
}

impl LineShape {
    fn of(line: &str) -> LineShape {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
            return LineShape {
                indent: None,
                dash_col: None,
                key_col: None,
                key: None,
            };
        }
        let indent = line.len() - trimmed.len();
        let mut col = indent;
        let mut rest = trimmed;
        let mut dash_col = None;
        while rest == "-" || rest.starts_with("- ") {
            dash_col = Some(col);
            let after = rest[1..].trim_start();
            col += rest.len() - after.len();
            rest = after;
        }
        let key = key_of(rest);
        LineShape {
            indent: Some(indent),
            dash_col,
            key_col: key.as_ref().map(|_| col),
            key,
        }
    }
}

/// The key of `key: value` / `key:`; quoted keys are unquoted.
fn key_of(rest: &str) -> Option<String> {
    if rest.starts_with(['#', '{', '[', '&', '*', '|', '>']) {
        return None;
    }
    let key = if let Some(stripped) = rest.strip_prefix('"') {
        let end = stripped.find('"')?;
        stripped[end + 1..]
            .trim_start()
            .starts_with(':')
            .then(|| &stripped[..end])?
    } else if let Some(stripped) = rest.strip_prefix('\'') {
        let end = stripped.find('\'')?;
        stripped[end + 1..]
            .trim_start()
            .starts_with(':')
            .then(|| &stripped[..end])?
    } else {
        let end = rest
            .find(": ")
            .or_else(|| rest.strip_suffix(':').map(str::len))?;
        rest[..end].trim()
    };
    (!key.is_empty()).then(|| key.to_string())
}

/// Index of the sequence item that starts at line `at` with its dash at column `dash`.
fn item_index(lines: &[LineShape], at: usize, dash: usize) -> usize {
    let mut index = 0;
    for shape in lines[..at].iter().rev() {
        let Some(indent) = shape.indent else { continue };
        if indent < dash {
            break;
        }
        if shape.dash_col == Some(dash) && indent == dash {
            index += 1;
        } else if indent == dash {
            break;
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_path_nested_and_sequences() {
        let text = "repository:\n  url: x\ntargets:\n  - name: a\n    path: p\n  - name: b\n    prune: maybe\n";
        assert_eq!(field_path_at(text, 2).as_deref(), Some("repository.url"));
        assert_eq!(field_path_at(text, 4).as_deref(), Some("targets[0].name"));
        assert_eq!(field_path_at(text, 5).as_deref(), Some("targets[0].path"));
        assert_eq!(field_path_at(text, 7).as_deref(), Some("targets[1].prune"));
    }

    #[test]
    fn field_path_deep_mapping() {
        let text = "spec:\n  policy:\n    semver:\n      range: ''\n";
        assert_eq!(
            field_path_at(text, 4).as_deref(),
            Some("spec.policy.semver.range")
        );
    }

    #[test]
    fn unknown_field_gets_suggestion() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Doc {
            branch: String,
        }
        let err = parse::<Doc>(Path::new("c.yaml"), "brnach: main\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert_eq!(err.field.as_deref(), Some("brnach"));
        assert!(err.message.contains("did you mean `branch`"), "{err}");
        assert!(err.to_string().starts_with("c.yaml:1:1: brnach: "), "{err}");
    }

    #[test]
    fn directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read_text(dir.path()).unwrap_err();
        assert!(err.message.contains("is a directory"));
    }

    #[test]
    fn suggestion_threshold() {
        assert_eq!(did_you_mean("prnue", &["prune", "path"]), Some("prune"));
        assert_eq!(did_you_mean("zzzzzz", &["prune", "path"]), None);
    }
}
