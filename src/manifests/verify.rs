//! Proof that an edited file means what was intended, before it is written.
//!
//! The original and the edited text are both parsed by the YAML deserializer
//! (independently of the event walk that planned the edits). The intended
//! change is an RFC 6902 JSON Patch: a `test` of the old value and a `replace`
//! with the new one for every edited scalar, and for every place an alias
//! copies it to. The patch applied to the original must give exactly the
//! edited file's value; anything else (a broken structure, a changed
//! neighbour, a number that became a string) refuses the file.
//!
//! Loading is the slow part of a fleet-wide pass, so an edited document is first
//! compared event by event with its original: same events except the edited
//! scalars, which read as the intended values, is already the proof. Only when
//! that fails are both loaded and compared, to refuse with the exact place.

use std::collections::{BTreeMap, HashMap};

use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch, PatchOperation, ReplaceOperation, TestOperation};
use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use super::edit::Edit;
use super::yaml_index::YamlIndex;

/// One intended change: the scalar (index into the file's [`YamlIndex`]) and
/// its value before and after, as a parser reads them.
#[derive(Debug, Clone)]
pub struct Intended {
    pub scalar: usize,
    pub old: Value,
    pub new: Value,
}

/// The edited file would not mean what was intended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VerifyError {
    /// Line of the first edit involved (1-based).
    pub line: usize,
    pub message: String,
}

/// Checks `updated` against `original` + the intended changes; returns the
/// patch (`replace` operations only, paths prefixed with the document index)
/// for logs and commit bodies. `edits[i]` is the byte edit of `changes[i]`.
///
/// Only the documents that hold an edit are loaded: outside the edit ranges
/// the bytes are identical, and a document that loads on its own to exactly
/// one value (so no quote or bracket was left open) ends where it ended
/// before, so the documents around it read as they did. Files with `%`
/// directives, which apply across documents, are loaded whole.
pub fn verify(
    original: &str,
    updated: &str,
    index: &YamlIndex,
    changes: &[Intended],
    edits: &[Edit],
) -> Result<Patch, VerifyError> {
    let first_line = changes
        .iter()
        .filter_map(|c| index.scalars.get(c.scalar).map(|s| s.line))
        .min()
        .unwrap_or(0);
    let fail = |message: String| VerifyError {
        line: first_line,
        message,
    };
    let pointer = |p: String| {
        PointerBuf::parse(p.clone()).map_err(|e| fail(format!("internal: bad pointer `{p}`: {e}")))
    };

    // Per edited document: test + replace operations with paths inside it.
    let mut per_doc: BTreeMap<usize, (Vec<PatchOperation>, Vec<PatchOperation>)> = BTreeMap::new();
    let mut logged: Vec<PatchOperation> = Vec::new();
    for change in changes {
        let scalar = index
            .scalars
            .get(change.scalar)
            .ok_or_else(|| fail("internal: unknown scalar".into()))?;
        let value_index = index
            .documents
            .get(scalar.doc)
            .and_then(|d| d.value_index)
            .ok_or_else(|| fail("edit inside an empty document".into()))?;
        let (tests, replaces) = per_doc.entry(scalar.doc).or_default();
        for p in copies_of(index, scalar.doc, &scalar.pointer) {
            tests.push(PatchOperation::Test(TestOperation {
                path: pointer(p.clone())?,
                value: change.old.clone(),
            }));
            replaces.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer(p.clone())?,
                value: change.new.clone(),
            }));
            logged.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer(format!("/{value_index}{p}"))?,
                value: change.new.clone(),
            }));
        }
    }

    // Edited scalars by their first byte in the original, with the values the
    // parser must read there before and after.
    let mut edited: HashMap<usize, (&Value, &Value)> = HashMap::new();
    for change in changes {
        if let Some(scalar) = index.scalars.get(change.scalar) {
            edited.insert(scalar.span.start, (&change.old, &change.new));
        }
    }

    if original.starts_with('%') || original.contains("\n%") {
        if same_events_except(original, updated, 0, &edited) {
            return Ok(Patch(logged));
        }
        // Directives: load and compare the whole stream.
        let mut ops: Vec<PatchOperation> = Vec::new();
        for (doc, (tests, _)) in &per_doc {
            let vi = index.documents[*doc].value_index.unwrap_or_default();
            ops.extend(tests.iter().map(|op| prefixed(op, vi)));
        }
        for (doc, (_, replaces)) in &per_doc {
            let vi = index.documents[*doc].value_index.unwrap_or_default();
            ops.extend(replaces.iter().map(|op| prefixed(op, vi)));
        }
        let expected = Value::Array(
            load_all(original)
                .map_err(|e| fail(format!("the original does not load as data: {e}")))?,
        );
        let actual = Value::Array(
            load_all(updated).map_err(|e| fail(format!("the edited file would not parse: {e}")))?,
        );
        compare(expected, actual, &ops, String::new()).map_err(fail)?;
        return Ok(Patch(logged));
    }

    for (doc, (tests, replaces)) in per_doc {
        let range = index.documents[doc].range.clone();
        let shift = |at: usize, inclusive_end: bool| -> isize {
            edits
                .iter()
                .filter(|e| {
                    if inclusive_end {
                        e.range.start < at
                    } else {
                        e.range.end <= at
                    }
                })
                .map(|e| e.new.len() as isize - e.old.len() as isize)
                .sum()
        };
        let new_start = range.start.saturating_add_signed(shift(range.start, false));
        let new_end = range.end.saturating_add_signed(shift(range.end, true));
        let (Some(before), Some(after)) =
            (original.get(range.clone()), updated.get(new_start..new_end))
        else {
            return Err(fail("internal: document range out of bounds".into()));
        };
        if same_events_except(before, after, range.start, &edited) {
            continue;
        }
        let expected: Value =
            serde_saphyr::from_str_with_options(before, load_options()).map_err(|e| {
                fail(format!(
                    "the original does not load as data: {}",
                    first_line_of(&e)
                ))
            })?;
        let actual: Value =
            serde_saphyr::from_str_with_options(after, load_options()).map_err(|e| {
                fail(format!(
                    "the edited file would not parse: {}",
                    first_line_of(&e)
                ))
            })?;
        let vi = index.documents[doc].value_index.unwrap_or_default();
        let mut ops = tests;
        ops.extend(replaces);
        compare(expected, actual, &ops, format!("/{vi}")).map_err(fail)?;
    }
    Ok(Patch(logged))
}

/// The fast proof: `before` and `after` give the same parser events (structure,
/// keys, every other scalar with its style, anchors, tags, comments), except at
/// the edited scalars (keyed by their first byte, `before` starting at byte
/// `offset` of the file), which read as the intended old and new values. Then
/// the loaded data differs exactly by the intended changes, without building
/// it. `false` proves nothing: the caller loads both and compares, which also
/// says where they differ.
fn same_events_except(
    before: &str,
    after: &str,
    offset: usize,
    edited: &HashMap<usize, (&Value, &Value)>,
) -> bool {
    let mut old_events = Parser::new_from_str(before);
    let mut new_events = Parser::new_from_str(after);
    loop {
        match (old_events.next(), new_events.next()) {
            (None, None) => return true,
            (Some(Ok((old, span))), Some(Ok((new, _)))) => {
                let at = span.byte_range().map(|r| r.start + offset);
                let intended = at.and_then(|at| edited.get(&at));
                match (old, new, intended) {
                    (
                        Event::Scalar(old_text, old_style, old_anchor, old_tag),
                        Event::Scalar(new_text, new_style, new_anchor, new_tag),
                        Some((old_value, new_value)),
                    ) => {
                        let same_node =
                            old_anchor == new_anchor && old_tag.is_none() && new_tag.is_none();
                        if !same_node
                            || read_as(&old_text, old_style).as_ref() != Some(*old_value)
                            || read_as(&new_text, new_style).as_ref() != Some(*new_value)
                        {
                            return false;
                        }
                    }
                    (old, new, _) => {
                        if old != new {
                            return false;
                        }
                    }
                }
            }
            _ => return false,
        }
    }
}

/// The value a scalar without a tag loads as (`None`: not decided here).
fn read_as(text: &str, style: ScalarStyle) -> Option<Value> {
    match style {
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            Some(Value::String(text.to_string()))
        }
        ScalarStyle::Plain => super::edit::resolve_plain(text),
        _ => None,
    }
}

fn load_all(text: &str) -> Result<Vec<Value>, String> {
    serde_saphyr::from_multiple_with_options::<Value>(text, load_options())
        .map_err(|e| first_line_of(&e))
}

/// Default YAML semantics and limits; comments are not kept (only data is
/// compared).
fn load_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.emit_comments = false;
    options
}

/// The same operation with `/<doc>` in front of its path.
fn prefixed(op: &PatchOperation, doc: usize) -> PatchOperation {
    let re = |p: &PointerBuf| PointerBuf::parse(format!("/{doc}{p}")).unwrap_or_else(|_| p.clone());
    match op {
        PatchOperation::Test(t) => PatchOperation::Test(TestOperation {
            path: re(&t.path),
            value: t.value.clone(),
        }),
        PatchOperation::Replace(r) => PatchOperation::Replace(ReplaceOperation {
            path: re(&r.path),
            value: r.value.clone(),
        }),
        other => other.clone(),
    }
}

/// Applies `ops` to `expected` and requires the result to equal `actual`.
fn compare(
    mut expected: Value,
    actual: Value,
    ops: &[PatchOperation],
    prefix: String,
) -> Result<(), String> {
    json_patch::patch(&mut expected, ops).map_err(|e| {
        format!(
            "the planned change does not match the file's data at {prefix}{}: {}",
            e.path, e.kind
        )
    })?;
    if expected != actual {
        let at = first_difference(&expected, &actual, prefix.clone())
            .unwrap_or_else(|| format!("{prefix}/"));
        return Err(format!(
            "the edit would change more than the image (first difference at {at}); file left unchanged"
        ));
    }
    Ok(())
}

/// `pointer` and every pointer an alias (or merge key) copies it to.
fn copies_of(index: &YamlIndex, doc: usize, pointer: &str) -> Vec<String> {
    let mut out = vec![pointer.to_string()];
    let mut i = 0;
    // Bounded: each round can only add alias targets, and aliases are finite.
    while i < out.len() && out.len() <= index.aliases.len() + 1 {
        let current = out[i].clone();
        for alias in index.aliases.iter().filter(|a| a.doc == doc) {
            let inside = current == alias.anchor_pointer
                || current
                    .strip_prefix(&alias.anchor_pointer)
                    .is_some_and(|rest| rest.starts_with('/'));
            if inside {
                let copy = format!(
                    "{}{}",
                    alias.target_pointer,
                    &current[alias.anchor_pointer.len()..]
                );
                if !out.contains(&copy) {
                    out.push(copy);
                }
            }
        }
        i += 1;
    }
    out
}

fn first_line_of(e: &serde_saphyr::Error) -> String {
    e.without_snippet()
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The pointer of the first place two values differ.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let here = format!("{at}/{}", super::yaml_index::escape_token(k));
                match y.get(k) {
                    Some(vb) => {
                        if let Some(d) = first_difference(va, vb, here) {
                            return Some(d);
                        }
                    }
                    None => return Some(here),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{at}/{}", super::yaml_index::escape_token(k)))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(va, vb, format!("{at}/{i}")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{at}/{}", x.len().min(y.len())))
        }
        _ => (a != b).then_some(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::yaml_index::index;
    use serde_json::json;

    fn scalar_at(ix: &YamlIndex, pointer: &str) -> usize {
        ix.scalars
            .iter()
            .position(|s| s.pointer == pointer && !s.is_key)
            .expect("scalar")
    }

    /// The edit replacing the first `old` after byte `from`.
    fn edit(text: &str, from: usize, old: &str, new: &str) -> Edit {
        let start = from + text[from..].find(old).expect("needle");
        Edit {
            range: start..start + old.len(),
            old: old.into(),
            new: new.into(),
        }
    }

    fn check(
        original: &str,
        edits: &[Edit],
        intended: &[(&str, Value, Value)],
        updated: Option<&str>,
    ) -> Result<Patch, VerifyError> {
        let ix = index(original).expect("parses");
        let applied = crate::manifests::edit::apply(original, edits).expect("applies");
        let changes: Vec<Intended> = intended
            .iter()
            .map(|(p, old, new)| Intended {
                scalar: scalar_at(&ix, p),
                old: old.clone(),
                new: new.clone(),
            })
            .collect();
        verify(original, updated.unwrap_or(&applied), &ix, &changes, edits)
    }

    #[test]
    fn intended_change_passes_and_yields_a_patch() {
        let original = "---\n~\n---\na: x:1\nb: 2\n";
        let patch = check(
            original,
            &[edit(original, 0, "1", "22")],
            &[("/a", json!("x:1"), json!("x:22"))],
            None,
        )
        .expect("verified");
        assert_eq!(
            serde_json::to_value(&patch).expect("json"),
            json!([{"op": "replace", "path": "/0/a", "value": "x:22"}])
        );
    }

    #[test]
    fn a_changed_neighbour_is_refused() {
        let original = "a: x:1\nb: 2\n";
        let err = check(
            original,
            &[edit(original, 0, "1", "2")],
            &[("/a", json!("x:1"), json!("x:2"))],
            Some("a: x:2\nb: 3\n"),
        )
        .unwrap_err();
        assert!(err.message.contains("/0/b"), "{err}");
        assert_eq!(err.line, 1);
    }

    #[test]
    fn only_edited_documents_are_loaded_and_positions_shift() {
        let original = "a: x:1\n---\nb: y:1\n---\nc: z:1\n";
        let edits = [edit(original, 0, "1", "100"), edit(original, 12, "1", "2")];
        let patch = check(
            original,
            &edits,
            &[
                ("/a", json!("x:1"), json!("x:100")),
                ("/b", json!("y:1"), json!("y:2")),
            ],
            None,
        )
        .expect("verified");
        assert_eq!(patch.0.len(), 2);
        // A broken, unrelated document after the edits would be caught by
        // the document that holds the edit only if it leaks into it.
        let err = check(
            original,
            &edits[..1],
            &[("/a", json!("x:1"), json!("x:100"))],
            Some("a: \"x:100\nb: 1\n---\nb: y:1\n---\nc: z:1\n"),
        )
        .unwrap_err();
        assert!(err.message.contains("would not parse"), "{err}");
    }

    #[test]
    fn directives_make_it_load_the_whole_stream() {
        let original = "%YAML 1.2\n---\na: x:1\n";
        check(
            original,
            &[edit(original, 0, "x:1", "x:2")],
            &[("/a", json!("x:1"), json!("x:2"))],
            None,
        )
        .expect("verified");
    }

    #[test]
    fn aliases_of_an_edited_anchor_are_expected_to_change() {
        let original = "a: &t x:1\nb: *t\nbase: &base {img: y:1}\nm:\n  <<: *base\n";
        let patch = check(
            original,
            &[
                edit(original, 0, "x:1", "x:2"),
                edit(original, 0, "y:1", "y:2"),
            ],
            &[
                ("/a", json!("x:1"), json!("x:2")),
                ("/base/img", json!("y:1"), json!("y:2")),
            ],
            None,
        )
        .expect("verified");
        assert_eq!(patch.0.len(), 4);
    }

    #[test]
    fn the_event_comparison_proves_only_the_intended_change() {
        let original = "a: x:1 # note\nb: [2, 'q']\n";
        let old = json!("x:1");
        let new = json!("x:2");
        let edited: HashMap<usize, (&Value, &Value)> = [(3, (&old, &new))].into();
        let same = |after: &str| same_events_except(original, after, 0, &edited);
        assert!(same("a: x:2 # note\nb: [2, 'q']\n"));
        assert!(
            same("a: 'x:2' # note\nb: [2, 'q']\n"),
            "quoting keeps a string"
        );
        assert!(
            !same("a: x:3 # note\nb: [2, 'q']\n"),
            "not the intended value"
        );
        assert!(!same("a: x:2 # note\nb: [2, q]\n"), "a neighbour's style");
        assert!(!same("a: x:2 # note\nb: [2, 'q', 3]\n"), "structure");
        assert!(!same("a: x:2 # changed\nb: [2, 'q']\n"), "a comment");
        assert!(!same("a: x:2\nb: [2, 'q'\n"), "does not parse");
        let one = json!(1);
        let two = json!("2");
        let number: HashMap<usize, (&Value, &Value)> = [(3, (&one, &two))].into();
        assert!(
            !same_events_except("a: 1\n", "a: 2\n", 0, &number),
            "a number is not the intended string"
        );
        assert!(same_events_except("a: 1\n", "a: '2'\n", 0, &number));
    }

    #[test]
    fn a_wrong_idea_of_the_old_value_is_refused() {
        let original = "a: 1.0\n";
        let err = check(
            original,
            &[edit(original, 0, "1.0", "1.1")],
            &[("/a", json!("1.0"), json!(1.1))],
            None,
        )
        .unwrap_err();
        assert!(err.message.contains("does not match"), "{err}");
    }
}
