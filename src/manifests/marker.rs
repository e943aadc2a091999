//! Flux setter markers: `# {"$imagepolicy": "[ns:]name[:tag|:name|:digest]"}`.
//!
//! The comment names a policy and which part of the image the scalar on its
//! line holds. The syntax is Flux's, so repositories written for Flux's image
//! automation keep working unchanged.

use crate::policy::ImagePolicy;

/// Which part of an image the marked scalar holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The whole reference: `repository:tag[@digest]`.
    Whole,
    /// The tag (with `@digest` when the policy pins digests).
    Tag,
    /// The repository name.
    Name,
    /// The digest alone (`sha256:…`).
    Digest,
}

impl Field {
    pub fn suffix(self) -> &'static str {
        match self {
            Field::Whole => "",
            Field::Tag => ":tag",
            Field::Name => ":name",
            Field::Digest => ":digest",
        }
    }
}

/// A parsed marker: the policy it names and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub namespace: Option<String>,
    pub name: String,
    pub field: Field,
}

/// Parses the text of a comment (after `#`). `Ok(None)`: not a marker;
/// `Err`: it mentions `$imagepolicy` but is malformed.
pub fn parse(comment: &str) -> Result<Option<Marker>, String> {
    if !comment.contains("$imagepolicy") {
        return Ok(None);
    }
    let Some(start) = comment.find('{') else {
        return Err(malformed(comment));
    };
    let Some(end) = comment.rfind('}') else {
        return Err(malformed(comment));
    };
    if end < start {
        return Err(malformed(comment));
    }
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&comment[start..=end]).map_err(|_| malformed(comment))?;
    let Some(serde_json::Value::String(setter)) = object.get("$imagepolicy") else {
        return Err(malformed(comment));
    };
    parse_setter(setter).map(Some)
}

fn malformed(comment: &str) -> String {
    format!(
        "malformed marker `#{comment}`: expected `# {{\"$imagepolicy\": \"[namespace:]policy[:tag|:name|:digest]\"}}`"
    )
}

/// `name`, `ns:name`, `name:tag`, `ns:name:tag` (and `:name`, `:digest`).
fn parse_setter(setter: &str) -> Result<Marker, String> {
    let parts: Vec<&str> = setter.split(':').collect();
    let field_of = |s: &str| match s {
        "tag" => Some(Field::Tag),
        "name" => Some(Field::Name),
        "digest" => Some(Field::Digest),
        _ => None,
    };
    let (namespace, name, field) = match parts.as_slice() {
        [name] => (None, *name, Field::Whole),
        [a, b] => match field_of(b) {
            Some(field) => (None, *a, field),
            None => (Some(*a), *b, Field::Whole),
        },
        [ns, name, f] => match field_of(f) {
            Some(field) => (Some(*ns), *name, field),
            None => {
                return Err(format!(
                    "marker `{setter}`: unknown field `{f}` (expected `tag`, `name` or `digest`)"
                ));
            }
        },
        _ => return Err(format!("marker `{setter}`: too many `:`")),
    };
    if name.trim().is_empty() || namespace.is_some_and(|n| n.trim().is_empty()) {
        return Err(format!("marker `{setter}`: empty policy name or namespace"));
    }
    Ok(Marker {
        namespace: namespace.map(|s| s.trim().to_string()),
        name: name.trim().to_string(),
        field,
    })
}

/// The index of the policy a marker names. `ns:name` matches a policy with
/// that name in namespace `ns`, else one with that name and no namespace; a
/// bare `name` matches the only policy with that name.
pub fn resolve(marker: &Marker, policies: &[&ImagePolicy]) -> Result<usize, String> {
    let named: Vec<usize> = (0..policies.len())
        .filter(|&i| policies[i].name == marker.name)
        .collect();
    let found = match &marker.namespace {
        Some(ns) => named
            .iter()
            .copied()
            .find(|&i| policies[i].namespace.as_deref() == Some(ns.as_str()))
            .or_else(|| {
                named
                    .iter()
                    .copied()
                    .find(|&i| policies[i].namespace.is_none())
            }),
        None => match named.as_slice() {
            [one] => Some(*one),
            [] => None,
            many => {
                return Err(format!(
                    "marker names policy `{}`, which exists in {} namespaces; write `namespace:{}`",
                    marker.name,
                    many.len(),
                    marker.name
                ));
            }
        },
    };
    found.ok_or_else(|| {
        let shown = match &marker.namespace {
            Some(ns) => format!("{ns}:{}", marker.name),
            None => marker.name.clone(),
        };
        let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
        let hint = crate::yaml_file::did_you_mean(&marker.name, &names)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        format!("marker names unknown policy `{shown}`{hint}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ns: Option<&str>, name: &str, field: Field) -> Marker {
        Marker {
            namespace: ns.map(str::to_string),
            name: name.to_string(),
            field,
        }
    }

    #[test]
    fn marker_forms() {
        let p = |s: &str| parse(&format!(" {{\"$imagepolicy\": \"{s}\"}}"));
        assert_eq!(p("app"), Ok(Some(m(None, "app", Field::Whole))));
        assert_eq!(
            p("flux:app"),
            Ok(Some(m(Some("flux"), "app", Field::Whole)))
        );
        assert_eq!(p("app:tag"), Ok(Some(m(None, "app", Field::Tag))));
        assert_eq!(
            p("flux:app:name"),
            Ok(Some(m(Some("flux"), "app", Field::Name)))
        );
        assert_eq!(
            p("flux:app:digest"),
            Ok(Some(m(Some("flux"), "app", Field::Digest)))
        );
        assert!(p("flux:app:bogus").is_err());
        assert!(p("a:b:c:d").is_err());
        assert_eq!(parse(" just a comment"), Ok(None));
        assert!(parse(" {\"$imagepolicy\": 3}").is_err());
        assert!(parse(" $imagepolicy app").is_err());
    }
}
