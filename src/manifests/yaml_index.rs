//! One pass over a YAML file's parser events, keeping what edits need.
//!
//! For every scalar: its document, its JSON pointer, its value, its quoting
//! style and its exact byte span in the source; for every comment that mentions
//! `$imagepolicy`: its text and the scalar that ends on the same line before it.
//! Anchors and aliases are recorded so the verifier knows which other paths an
//! edit of an anchored scalar also changes.
//!
//! Working from parser events rather than from line regexes is what makes flow
//! style, quotes, multi-document files, CRLF, a BOM and anchors safe to edit:
//! the parser says where a value starts and ends, we only splice inside that.

use std::ops::Range;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// How a scalar is written in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` and `>` block scalars: never edited.
    Block,
}

impl Style {
    fn of(style: ScalarStyle) -> Style {
        match style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            _ => Style::Block,
        }
    }
}

/// A scalar node as found in the source.
#[derive(Debug, Clone)]
pub struct Scalar {
    /// Index of the document in the stream, counting every document.
    pub doc: usize,
    /// RFC 6901 pointer inside its document; for a mapping key, the pointer of
    /// the value it introduces.
    pub pointer: String,
    /// True for mapping keys.
    pub is_key: bool,
    pub value: String,
    pub style: Style,
    /// Byte range in the source, quotes included.
    pub span: Range<usize>,
    /// 1-based lines of the first and last byte.
    pub line: usize,
    pub end_line: usize,
    /// Anchor id defined on this scalar (0: none).
    pub anchor: usize,
}

/// A comment that mentions `$imagepolicy`.
#[derive(Debug, Clone)]
pub struct MarkerComment {
    /// The comment text after `#`.
    pub text: String,
    pub line: usize,
    /// The value scalar that ends on the comment's line before it, if any.
    pub scalar: Option<usize>,
}

/// A document of the stream.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// Index among the documents a deserializer returns: null documents
    /// (empty, `~`) are dropped by `serde_saphyr::from_multiple`.
    pub value_index: Option<usize>,
    /// Bytes from the document's first token (or `---`) to its end (the
    /// `...`, or where the next document or the stream begins).
    pub range: Range<usize>,
    /// Top-level `kind` and `apiVersion`, when they are plain strings.
    pub kind: Option<String>,
    pub api_version: Option<String>,
}

/// Where an anchored node sits, and where aliases copy it to.
#[derive(Debug, Clone)]
pub struct AliasUse {
    pub doc: usize,
    /// Pointer of the anchored node.
    pub anchor_pointer: String,
    /// Pointer the node is copied to: the alias itself, or for a merge key
    /// (`<<: *base`) the mapping that receives the merged keys.
    pub target_pointer: String,
}

/// Everything [`index`] learned about a file.
#[derive(Debug, Clone, Default)]
pub struct YamlIndex {
    pub scalars: Vec<Scalar>,
    pub markers: Vec<MarkerComment>,
    pub documents: Vec<Document>,
    pub aliases: Vec<AliasUse>,
}

/// The source does not parse as YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

enum FrameKind {
    /// The document itself: holds one node.
    Root,
    Mapping {
        expecting_key: bool,
        key: String,
    },
    Sequence {
        index: usize,
    },
    /// A complex (collection) mapping key: nothing inside is addressable.
    ComplexKey,
}

struct Frame {
    pointer: String,
    kind: FrameKind,
}

/// Escapes one reference token (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Walks the events of `text` once.
pub fn index(text: &str) -> Result<YamlIndex, SyntaxError> {
    let mut out = YamlIndex::default();
    let mut stack: Vec<Frame> = Vec::new();
    // Anchor id -> pointer of the anchored node, per document.
    let mut anchors: Vec<(usize, String)> = Vec::new();
    let mut doc_index = 0usize;
    let mut values_seen = 0usize;
    let mut doc_root_null = false;
    let mut last_value_scalar: Option<usize> = None;

    for next in Parser::new_from_str(text) {
        let (event, span) = next.map_err(|e| SyntaxError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info(),
        })?;
        let range = span.byte_range().ok_or_else(|| SyntaxError {
            line: span.start.line(),
            column: span.start.col() + 1,
            message: "parser gave no byte offsets".into(),
        })?;
        match event {
            Event::DocumentStart(..) => {
                stack.clear();
                anchors.clear();
                doc_root_null = false;
                out.documents.push(Document {
                    range: range.clone(),
                    ..Document::default()
                });
                stack.push(Frame {
                    pointer: String::new(),
                    kind: FrameKind::Root,
                });
            }
            Event::DocumentEnd => {
                if let Some(doc) = out.documents.last_mut() {
                    doc.range.end = range.end;
                    if !doc_root_null {
                        doc.value_index = Some(values_seen);
                    }
                }
                if !doc_root_null {
                    values_seen += 1;
                }
                stack.clear();
                doc_index += 1;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let (pointer, is_key) = slot(&stack);
                if stack.len() == 1 {
                    // The document's root is a scalar; a null root is dropped.
                    let plain_null = style == ScalarStyle::Plain
                        && matches!(&*value, "" | "~" | "null" | "Null" | "NULL");
                    doc_root_null = tag.is_none() && plain_null;
                }
                advance(&mut stack, Some(&value));
                if let Some(pointer) = pointer {
                    if anchor != 0 {
                        anchors.push((anchor, pointer.clone()));
                    }
                    note_top_level(&mut out, &stack, is_key, &pointer, &value, style);
                    out.scalars.push(Scalar {
                        doc: doc_index,
                        pointer,
                        is_key,
                        value: value.into_owned(),
                        style: Style::of(style),
                        span: range.clone(),
                        line: span.start.line(),
                        end_line: line_of_end(text, &range, span.start.line()),
                        anchor,
                    });
                    if !is_key && !range.is_empty() {
                        last_value_scalar = Some(out.scalars.len() - 1);
                    }
                }
            }
            Event::MappingStart(_, anchor, _) | Event::SequenceStart(_, anchor, _) => {
                let is_mapping = matches!(event, Event::MappingStart(..));
                let (pointer, is_key) = slot(&stack);
                let kind = match (pointer, is_key) {
                    (Some(pointer), false) => {
                        if anchor != 0 {
                            anchors.push((anchor, pointer.clone()));
                        }
                        let kind = if is_mapping {
                            FrameKind::Mapping {
                                expecting_key: true,
                                key: String::new(),
                            }
                        } else {
                            FrameKind::Sequence { index: 0 }
                        };
                        Frame { pointer, kind }
                    }
                    _ => Frame {
                        pointer: String::new(),
                        kind: FrameKind::ComplexKey,
                    },
                };
                stack.push(kind);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                advance(&mut stack, None);
            }
            Event::Alias(id) => {
                let (pointer, is_key) = slot(&stack);
                if let (Some(pointer), false) = (pointer, is_key)
                    && let Some((_, anchor_pointer)) = anchors.iter().rev().find(|(a, _)| *a == id)
                {
                    let target_pointer = merge_target(&stack, &pointer).unwrap_or(pointer);
                    out.aliases.push(AliasUse {
                        doc: doc_index,
                        anchor_pointer: anchor_pointer.clone(),
                        target_pointer,
                    });
                }
                advance(&mut stack, Some("*"));
            }
            Event::Comment(comment, _) if comment.contains("$imagepolicy") => {
                let line = span.start.line();
                let scalar = last_value_scalar.filter(|&i| out.scalars[i].end_line == line);
                out.markers.push(MarkerComment {
                    text: comment.into_owned(),
                    line,
                    scalar,
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The pointer of the node that comes next in the innermost collection, and
/// whether it is a mapping key. `None` inside complex keys.
fn slot(stack: &[Frame]) -> (Option<String>, bool) {
    let Some(top) = stack.last() else {
        return (None, false);
    };
    match &top.kind {
        FrameKind::Mapping {
            expecting_key: true,
            ..
        } => (Some(top.pointer.clone()), true),
        FrameKind::Mapping { key, .. } => (
            Some(format!("{}/{}", top.pointer, escape_token(key))),
            false,
        ),
        FrameKind::Root => (Some(String::new()), false),
        FrameKind::Sequence { index } => (Some(format!("{}/{index}", top.pointer)), false),
        FrameKind::ComplexKey => (None, false),
    }
}

/// After a node completes: a key is remembered, a value flips back to keys, a
/// sequence moves to its next item.
fn advance(stack: &mut [Frame], scalar_value: Option<&str>) {
    let Some(top) = stack.last_mut() else { return };
    match &mut top.kind {
        FrameKind::Mapping { expecting_key, key } => {
            if *expecting_key {
                // A collection used as a key has no usable name.
                *key = scalar_value.unwrap_or("?").to_string();
                *expecting_key = false;
            } else {
                *expecting_key = true;
            }
        }
        FrameKind::Sequence { index } => *index += 1,
        FrameKind::Root | FrameKind::ComplexKey => {}
    }
}

/// For `<<: *base` (or `<<: [*a, *b]`), merged keys land in the mapping that
/// holds the `<<` key.
fn merge_target(stack: &[Frame], pointer: &str) -> Option<String> {
    let top = stack.last()?;
    if let FrameKind::Mapping { key, .. } = &top.kind
        && key == "<<"
    {
        return Some(top.pointer.clone());
    }
    // A sequence of aliases under `<<`.
    if let FrameKind::Sequence { .. } = &top.kind
        && stack.len() >= 2
        && let FrameKind::Mapping { key, .. } = &stack[stack.len() - 2].kind
        && key == "<<"
        && pointer.starts_with(&top.pointer)
    {
        return Some(stack[stack.len() - 2].pointer.clone());
    }
    None
}

/// Remembers top-level `kind:` and `apiVersion:` of the current document.
fn note_top_level(
    out: &mut YamlIndex,
    stack: &[Frame],
    is_key: bool,
    pointer: &str,
    value: &str,
    style: ScalarStyle,
) {
    if is_key
        || stack.len() != 2
        || !matches!(
            style,
            ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
        )
    {
        return;
    }
    let Some(doc) = out.documents.last_mut() else {
        return;
    };
    match pointer {
        "/kind" => doc.kind = Some(value.to_string()),
        "/apiVersion" => doc.api_version = Some(value.to_string()),
        _ => {}
    }
}

/// 1-based line of the last byte of `range`.
fn line_of_end(text: &str, range: &Range<usize>, start_line: usize) -> usize {
    match text.get(range.clone()) {
        Some(s) => {
            // A scalar's span never ends in a line break; count the ones inside.
            start_line + s.bytes().filter(|b| *b == b'\n').count()
        }
        None => start_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(ix: &'a YamlIndex, pointer: &str) -> &'a Scalar {
        ix.scalars
            .iter()
            .find(|s| s.pointer == pointer && !s.is_key)
            .unwrap_or_else(|| panic!("no scalar at {pointer}"))
    }

    #[test]
    fn pointers_styles_and_spans() {
        let text = "a:\n  b: [x, 'y']\n  c:\n    - d: \"q\"\n";
        let ix = index(text).expect("parses");
        let y = find(&ix, "/a/b/1");
        assert_eq!(y.style, Style::SingleQuoted);
        assert_eq!(&text[y.span.clone()], "'y'");
        let q = find(&ix, "/a/c/0/d");
        assert_eq!(&text[q.span.clone()], "\"q\"");
        assert_eq!(q.line, 4);
    }

    #[test]
    fn marker_attaches_to_last_value_on_its_line() {
        let text = "spec:\n  image: a:1 # {\"$imagepolicy\": \"p\"}\n  x: # {\"$imagepolicy\": \"p\"}\n    y: 1\n# {\"$imagepolicy\": \"p\"}\n";
        let ix = index(text).expect("parses");
        assert_eq!(ix.markers.len(), 3);
        let first = ix.markers[0].scalar.expect("attached");
        assert_eq!(ix.scalars[first].value, "a:1");
        assert_eq!(ix.markers[1].scalar, None, "a key is not a value");
        assert_eq!(ix.markers[2].scalar, None, "own-line comment");
    }

    #[test]
    fn documents_kinds_and_null_documents() {
        let text = "---\n~\n---\nkind: Deployment\nspec: {}\n---\n---\nkind: Pod\n";
        let ix = index(text).expect("parses");
        assert_eq!(ix.documents.len(), 4);
        assert_eq!(ix.documents[0].value_index, None);
        assert_eq!(ix.documents[1].value_index, Some(0));
        assert_eq!(ix.documents[1].kind.as_deref(), Some("Deployment"));
        assert_eq!(ix.documents[2].value_index, None);
        assert_eq!(ix.documents[3].value_index, Some(1));
    }

    #[test]
    fn document_ranges() {
        let text = "# c\na: 1\n---\nb: 2\n...\n--- # x\nc: 3\n";
        let ix = index(text).expect("parses");
        let slices: Vec<&str> = ix
            .documents
            .iter()
            .map(|d| &text[d.range.clone()])
            .collect();
        assert_eq!(slices, vec!["a: 1\n", "---\nb: 2\n...", "--- # x\nc: 3\n"]);
    }

    #[test]
    fn aliases_and_merge_keys_are_recorded() {
        let text = "a: &t 1.0\nb: *t\nbase: &base {k: v}\nm:\n  <<: *base\n";
        let ix = index(text).expect("parses");
        let targets: Vec<(&str, &str)> = ix
            .aliases
            .iter()
            .map(|a| (a.anchor_pointer.as_str(), a.target_pointer.as_str()))
            .collect();
        assert_eq!(targets, vec![("/a", "/b"), ("/base", "/m")]);
    }

    #[test]
    fn escaped_keys_in_pointers() {
        let ix = index("a/b:\n  c~d: 1\n").expect("parses");
        assert_eq!(find(&ix, "/a~1b/c~0d").value, "1");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = index("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.line >= 1, "{err}");
    }
}
