//! Byte-minimal edits: replace a range of a file's bytes, nothing else.
//!
//! An [`Edit`] is computed from a scalar's span and its new value. Only the
//! bytes that differ change, snapped to the separators of an image reference
//! (`/`, `:`, `@`) so a tag is replaced whole (`1.2.3` → `1.10.0`, not
//! `2.3` → `10.0`); quotes, comments and everything around stay as they were.
//! One exception keeps meaning intact: a plain scalar whose new text would
//! read as a number or a boolean (`tag: 1.2.3` → `2.0`) gets double quotes,
//! because `tag: 2.0` would silently turn the string into a float.

use std::ops::Range;

use super::yaml_index::{Scalar, Style};

/// Replace `range` of a file (which holds `old`) by `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub old: String,
    pub new: String,
}

/// Why a scalar cannot be edited in place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("block scalars (`|`, `>`) are not edited")]
    BlockScalar,
    #[error("the scalar spans several lines or uses escapes; edit it by hand once")]
    NotVerbatim,
    #[error("`{0}` cannot be written in this scalar's quoting style")]
    NotRepresentable(String),
}

/// How the new value resolves when parsed back: needed by the verifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub edit: Edit,
    /// The scalar's new value as a YAML parser will read it.
    pub new_json: serde_json::Value,
    /// True when double quotes were added to keep the value a string.
    pub quoted: bool,
}

const SEPARATORS: &[u8] = b"/:@\"'";

/// The edit that turns `scalar` (found in `text`) into `new_value`.
/// `old_json` is the scalar's current value as a parser resolves it.
pub fn plan_edit(
    text: &str,
    scalar: &Scalar,
    new_value: &str,
    old_json: &serde_json::Value,
) -> Result<Planned, EditError> {
    let raw = text
        .get(scalar.span.clone())
        .ok_or(EditError::NotVerbatim)?;
    let (new_raw, new_json, quoted) = match scalar.style {
        Style::Block => return Err(EditError::BlockScalar),
        Style::Plain => {
            if raw != scalar.value {
                return Err(EditError::NotVerbatim);
            }
            match resolve_plain(new_value) {
                Some(v @ serde_json::Value::String(_)) => (new_value.to_string(), v, false),
                Some(v) if !old_json.is_string() => (new_value.to_string(), v, false),
                Some(_) => {
                    check_double_quotable(new_value)?;
                    (
                        format!("\"{new_value}\""),
                        serde_json::Value::String(new_value.to_string()),
                        true,
                    )
                }
                None => return Err(EditError::NotRepresentable(new_value.to_string())),
            }
        }
        Style::SingleQuoted => {
            if raw.len() < 2 || raw[1..raw.len() - 1] != scalar.value {
                return Err(EditError::NotVerbatim);
            }
            if new_value.contains('\'') || new_value.chars().any(char::is_control) {
                return Err(EditError::NotRepresentable(new_value.to_string()));
            }
            (
                format!("'{new_value}'"),
                serde_json::Value::String(new_value.to_string()),
                false,
            )
        }
        Style::DoubleQuoted => {
            if raw.len() < 2 || raw[1..raw.len() - 1] != scalar.value {
                return Err(EditError::NotVerbatim);
            }
            check_double_quotable(new_value)?;
            (
                format!("\"{new_value}\""),
                serde_json::Value::String(new_value.to_string()),
                false,
            )
        }
    };
    let (prefix, suffix) = common_affixes(raw, &new_raw);
    let range = scalar.span.start + prefix..scalar.span.end - suffix;
    Ok(Planned {
        edit: Edit {
            old: raw[prefix..raw.len() - suffix].to_string(),
            new: new_raw[prefix..new_raw.len() - suffix].to_string(),
            range,
        },
        new_json,
        quoted,
    })
}

fn check_double_quotable(value: &str) -> Result<(), EditError> {
    if value.contains(['"', '\\']) || value.chars().any(char::is_control) {
        return Err(EditError::NotRepresentable(value.to_string()));
    }
    Ok(())
}

/// What a plain scalar with this text resolves to, if it is a single plain
/// scalar at all (no `: `, ` #`, leading indicators...).
pub fn resolve_plain(text: &str) -> Option<serde_json::Value> {
    if text.is_empty() || text.trim() != text || text.contains(['\n', '\r', '\t']) {
        return None;
    }
    let doc = format!("k: {text}\n");
    let value: serde_json::Value = serde_saphyr::from_str(&doc).ok()?;
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let v = map.get("k")?.clone();
    // A plain scalar that reads back as a different string was not verbatim.
    match &v {
        serde_json::Value::String(s) if s != text => None,
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
        _ => Some(v),
    }
}

/// Lengths of the common prefix and suffix of `old` and `new`, cut back to
/// just after (prefix) or just before (suffix) a separator, so that whole
/// reference components are replaced.
fn common_affixes(old: &str, new: &str) -> (usize, usize) {
    let (a, b) = (old.as_bytes(), new.as_bytes());
    let mut prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    while prefix > 0 && !SEPARATORS.contains(&a[prefix - 1]) {
        prefix -= 1;
    }
    let max_suffix = a.len().min(b.len()) - prefix;
    let mut suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    while suffix > 0 && !SEPARATORS.contains(&a[a.len() - suffix]) {
        suffix -= 1;
    }
    (prefix, suffix)
}

/// Applies non-overlapping edits (any order) to `text`.
pub fn apply(text: &str, edits: &[Edit]) -> Result<String, String> {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for e in sorted {
        if e.range.start < at {
            return Err(format!("overlapping edits at byte {}", e.range.start));
        }
        match text.get(e.range.clone()) {
            Some(current) if current == e.old => {}
            _ => {
                return Err(format!(
                    "bytes {}..{} no longer hold `{}`",
                    e.range.start, e.range.end, e.old
                ));
            }
        }
        out.push_str(&text[at..e.range.start]);
        out.push_str(&e.new);
        at = e.range.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// The edits that undo `edits` on the text they produced.
pub fn inverse(edits: &[Edit]) -> Vec<Edit> {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| (e.range.start, e.range.end));
    let mut shift: isize = 0;
    let mut out = Vec::with_capacity(edits.len());
    for e in sorted {
        let start = e.range.start.saturating_add_signed(shift);
        out.push(Edit {
            range: start..start + e.new.len(),
            old: e.new.clone(),
            new: e.old.clone(),
        });
        shift += e.new.len() as isize - e.old.len() as isize;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::yaml_index;

    fn edit_of(text: &str, pointer: &str, new_value: &str) -> Result<Planned, EditError> {
        let ix = yaml_index::index(text).expect("parses");
        let s = ix
            .scalars
            .iter()
            .find(|s| s.pointer == pointer && !s.is_key)
            .expect("scalar");
        let old = resolve_plain(&s.value).unwrap_or(serde_json::Value::String(s.value.clone()));
        plan_edit(text, s, new_value, &old)
    }

    #[test]
    fn only_the_tag_changes() {
        let text = "image: ghcr.io/a/b:1.2.3 # c\n";
        let p = edit_of(text, "/image", "ghcr.io/a/b:1.10.0").expect("edit");
        assert_eq!(
            (p.edit.old.as_str(), p.edit.new.as_str()),
            ("1.2.3", "1.10.0")
        );
        assert_eq!(
            apply(text, &[p.edit]).expect("applies"),
            "image: ghcr.io/a/b:1.10.0 # c\n"
        );
    }

    #[test]
    fn quotes_are_kept() {
        let text = "a: '1.0'\nb: \"x/y:1.0\"\n";
        let a = edit_of(text, "/a", "1.1").expect("a");
        let b = edit_of(text, "/b", "x/y:2.0").expect("b");
        assert_eq!(a.edit.new, "1.1");
        assert_eq!(
            apply(text, &[a.edit, b.edit]).expect("applies"),
            "a: '1.1'\nb: \"x/y:2.0\"\n"
        );
    }

    #[test]
    fn a_string_that_would_turn_into_a_number_gets_quotes() {
        let p = edit_of("tag: 1.2.3\n", "/tag", "2.0").expect("edit");
        assert!(p.quoted);
        assert_eq!(p.edit.new, "\"2.0\"");
        // A number stays a number.
        let p = edit_of("tag: 1.2\n", "/tag", "1.3").expect("edit");
        assert!(!p.quoted);
        assert_eq!(p.new_json, serde_json::json!(1.3));
    }

    #[test]
    fn digest_is_added_after_the_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        let p = edit_of("i: r/a:1\n", "/i", &format!("r/a:1@{d}")).expect("edit");
        assert_eq!(p.edit.old, "1");
        assert_eq!(p.edit.new, format!("1@{d}"));
    }

    #[test]
    fn escapes_and_blocks_are_refused() {
        assert_eq!(
            edit_of("a: \"x\\u0041:1\"\n", "/a", "xA:2").unwrap_err(),
            EditError::NotVerbatim
        );
        assert_eq!(
            edit_of("a: |\n  x:1\n", "/a", "x:2").unwrap_err(),
            EditError::BlockScalar
        );
    }

    #[test]
    fn inverse_restores_the_text() {
        let text = "a: x:1\nb: y:22\n";
        let e1 = edit_of(text, "/a", "x:100").expect("a").edit;
        let e2 = edit_of(text, "/b", "y:3").expect("b").edit;
        let edits = vec![e2, e1];
        let changed = apply(text, &edits).expect("applies");
        assert_eq!(changed, "a: x:100\nb: y:3\n");
        assert_eq!(apply(&changed, &inverse(&edits)).expect("undo"), text);
    }

    #[test]
    fn stale_edits_are_refused() {
        let e = Edit {
            range: 3..4,
            old: "z".into(),
            new: "q".into(),
        };
        assert!(apply("a: b\n", &[e]).is_err());
    }
}
