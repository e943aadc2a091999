//! Choosing one tag out of many, with a reason for every tag.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde::Serialize;

use super::file::{ImagePolicy, Order, Strategy};
use super::semver_range::parse_tag_version;

/// The outcome of [`select`]: the chosen tag, if any, and one verdict per input tag,
/// in input order.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub policy: String,
    pub image: String,
    pub strategy: String,
    pub chosen: Option<String>,
    pub tags: Vec<TagVerdict>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagVerdict {
    pub tag: String,
    /// The value that was ordered when `filterTags.extract` rewrote the tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Why a tag was or was not chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "kebab-case")]
pub enum Verdict {
    Chosen,
    /// A candidate that ranked below the chosen tag.
    Outranked {
        by: String,
    },
    /// Ranked equal to the chosen tag, which came first in the input.
    Tied {
        with: String,
    },
    OutsideRange {
        range: String,
    },
    Excluded {
        pattern: String,
    },
    FilteredOut {
        pattern: String,
    },
    NotSemver,
    NotNumber,
    /// The same tag appeared earlier in the input.
    Duplicate,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Chosen => f.write_str("chosen"),
            Verdict::Outranked { by } => write!(f, "ranked below {by}"),
            Verdict::Tied { with } => write!(f, "ranks equal to {with}, which came first"),
            Verdict::OutsideRange { range } => write!(f, "outside range `{range}`"),
            Verdict::Excluded { pattern } => write!(f, "excluded by pattern `{pattern}`"),
            Verdict::FilteredOut { pattern } => {
                write!(f, "filtered out: does not match `{pattern}`")
            }
            Verdict::NotSemver => f.write_str("not semver"),
            Verdict::NotNumber => f.write_str("not a number"),
            Verdict::Duplicate => f.write_str("duplicate of an earlier tag"),
        }
    }
}

impl Decision {
    /// One line saying why nothing was chosen, e.g. for a non-zero exit.
    pub fn no_choice_summary(&self) -> String {
        if self.tags.is_empty() {
            return format!("policy `{}`: no tags to choose from", self.policy);
        }
        let mut counts: Vec<(String, usize)> = Vec::new();
        for t in &self.tags {
            let kind = match &t.verdict {
                Verdict::OutsideRange { range } => format!("outside range `{range}`"),
                Verdict::Excluded { .. } => "excluded".into(),
                Verdict::FilteredOut { .. } => "filtered out".into(),
                other => other.to_string(),
            };
            match counts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((kind, 1)),
            }
        }
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        format!(
            "policy `{}` ({}): no tag qualifies among {} tags: {}",
            self.policy,
            self.strategy,
            self.tags.len(),
            parts.join(", ")
        )
    }
}

/// The value a candidate is ranked by.
enum Key {
    Semver(semver::Version),
    Number(f64),
    Text(String),
}

fn compare(a: &Key, b: &Key) -> Ordering {
    match (a, b) {
        (Key::Semver(x), Key::Semver(y)) => x.cmp_precedence(y),
        (Key::Number(x), Key::Number(y)) => x.total_cmp(y),
        (Key::Text(x), Key::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        // One policy yields one kind of key.
        _ => Ordering::Equal,
    }
}

/// Chooses the tag a policy asks for. Pure: same inputs, same decision.
///
/// Order of checks per tag: duplicate, `exclude`, `filterTags` (+ `extract`), then
/// the strategy. Among candidates the highest wins (`asc`, semver) or the lowest
/// (`desc`); on a tie the tag listed first wins, as in Flux.
pub fn select(policy: &ImagePolicy, tags: &[impl AsRef<str>]) -> Decision {
    let mut verdicts: Vec<TagVerdict> = Vec::with_capacity(tags.len());
    let mut seen: HashSet<&str> = HashSet::with_capacity(tags.len());
    // (index into verdicts, key) of every candidate, and the best so far.
    let mut candidates: Vec<(usize, Key)> = Vec::new();
    let mut best: Option<usize> = None; // index into `candidates`
    let descending = matches!(
        policy.strategy,
        Strategy::Alphabetical(Order::Desc) | Strategy::Numerical(Order::Desc)
    );

    for tag in tags {
        let tag = tag.as_ref();
        let (value, verdict) = judge(policy, tag, &mut seen);
        let index = verdicts.len();
        verdicts.push(TagVerdict {
            tag: tag.to_string(),
            value: value.filter(|v| v != tag),
            verdict: Verdict::Chosen, // replaced below unless this tag wins
        });
        match verdict {
            Err(v) => verdicts[index].verdict = v,
            Ok(key) => {
                let better = match best {
                    None => true,
                    Some(b) => {
                        let ord = compare(&key, &candidates[b].1);
                        if descending {
                            ord == Ordering::Less
                        } else {
                            ord == Ordering::Greater
                        }
                    }
                };
                candidates.push((index, key));
                if better {
                    best = Some(candidates.len() - 1);
                }
            }
        }
    }

    let chosen = best.map(|b| {
        let (winner_index, winner_key) = &candidates[b];
        let winner_tag = verdicts[*winner_index].tag.clone();
        for (index, key) in &candidates {
            if index == winner_index {
                continue;
            }
            verdicts[*index].verdict = if compare(key, winner_key) == Ordering::Equal {
                Verdict::Tied {
                    with: winner_tag.clone(),
                }
            } else {
                Verdict::Outranked {
                    by: winner_tag.clone(),
                }
            };
        }
        winner_tag
    });

    Decision {
        policy: policy.name.clone(),
        image: policy.image.clone(),
        strategy: policy.strategy.to_string(),
        chosen,
        tags: verdicts,
    }
}

/// Classifies one tag: `Ok(key)` for a candidate, `Err(verdict)` otherwise. Also
/// returns the extracted value when a filter rewrote the tag.
fn judge<'t>(
    policy: &ImagePolicy,
    tag: &'t str,
    seen: &mut HashSet<&'t str>,
) -> (Option<String>, Result<Key, Verdict>) {
    if !seen.insert(tag) {
        return (None, Err(Verdict::Duplicate));
    }
    if let Some(re) = policy.exclude.iter().find(|re| re.is_match(tag)) {
        return (
            None,
            Err(Verdict::Excluded {
                pattern: re.as_str().to_string(),
            }),
        );
    }
    let value: String = match &policy.filter {
        None => tag.to_string(),
        Some(filter) => match filter.pattern.captures(tag) {
            None => {
                return (
                    None,
                    Err(Verdict::FilteredOut {
                        pattern: filter.pattern.as_str().to_string(),
                    }),
                );
            }
            Some(caps) => match &filter.extract {
                None => tag.to_string(),
                Some(template) => {
                    let mut out = String::new();
                    caps.expand(template, &mut out);
                    out
                }
            },
        },
    };
    let key = match &policy.strategy {
        Strategy::Semver(range) => match parse_tag_version(&value) {
            None => Err(Verdict::NotSemver),
            Some(v) if range.matches(&v) => Ok(Key::Semver(v)),
            Some(_) => Err(Verdict::OutsideRange {
                range: range.to_string(),
            }),
        },
        Strategy::Numerical(_) => match value.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Key::Number(n)),
            _ => Err(Verdict::NotNumber),
        },
        Strategy::Alphabetical(_) => Ok(Key::Text(value.clone())),
    };
    (Some(value), key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::file::{DigestMode, TagFilter};
    use crate::policy::semver_range::SemverRange;
    use proptest::prelude::{
        Just, TestCaseError, prop_assert, prop_assert_eq, prop_oneof, proptest,
    };
    use proptest::strategy::Strategy as _;
    use regex::Regex;

    fn policy(strategy: Strategy) -> ImagePolicy {
        ImagePolicy {
            name: "app".into(),
            namespace: None,
            image: "ghcr.io/acme/app".into(),
            filter: None,
            exclude: vec![],
            strategy,
            digest: DigestMode::Tag,
            source: "test.yaml".into(),
        }
    }

    fn semver(range: &str) -> ImagePolicy {
        policy(Strategy::Semver(
            SemverRange::parse(range).expect("valid range"),
        ))
    }

    #[test]
    fn semver_picks_highest_in_range_and_explains_each_tag() {
        let p = semver(">=1.0.0 <2.0.0");
        let d = select(
            &p,
            &["1.0.0", "latest", "1.4.2", "2.0.0", "v1.3.0", "1.4.2"],
        );
        assert_eq!(d.chosen.as_deref(), Some("1.4.2"));
        let verdicts: Vec<&Verdict> = d.tags.iter().map(|t| &t.verdict).collect();
        assert_eq!(
            verdicts,
            [
                &Verdict::Outranked { by: "1.4.2".into() },
                &Verdict::NotSemver,
                &Verdict::Chosen,
                &Verdict::OutsideRange {
                    range: ">=1.0.0 <2.0.0".into()
                },
                &Verdict::Outranked { by: "1.4.2".into() },
                &Verdict::Duplicate,
            ]
        );
    }

    #[test]
    fn v_prefixed_tag_is_printed_back_unchanged() {
        let d = select(&semver("^1"), &["v1.2.3", "v1.10.0", "v1.9.9"]);
        assert_eq!(d.chosen.as_deref(), Some("v1.10.0"));
    }

    #[test]
    fn tie_goes_to_the_first_listed() {
        let d = select(&semver("*"), &["1.2.3", "v1.2.3"]);
        assert_eq!(d.chosen.as_deref(), Some("1.2.3"));
        assert_eq!(
            d.tags[1].verdict,
            Verdict::Tied {
                with: "1.2.3".into()
            }
        );
    }

    #[test]
    fn numerical_with_extract_orders_by_the_extracted_value() {
        let mut p = policy(Strategy::Numerical(Order::Asc));
        p.filter = Some(TagFilter {
            pattern: Regex::new(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$").expect("regex"),
            extract: Some("$ts".into()),
        });
        let tags = [
            "main-abc123-1700000000",
            "main-def456-1700000900",
            "main-0aa000-999",
            "feature-x-1800000000",
        ];
        let d = select(&p, &tags);
        assert_eq!(d.chosen.as_deref(), Some("main-def456-1700000900"));
        assert_eq!(d.tags[0].value.as_deref(), Some("1700000000"));
        assert!(matches!(d.tags[3].verdict, Verdict::FilteredOut { .. }));
    }

    #[test]
    fn numerical_desc_and_not_numbers() {
        let p = policy(Strategy::Numerical(Order::Desc));
        let d = select(&p, &["10", "9", "x", "100"]);
        assert_eq!(d.chosen.as_deref(), Some("9"));
        assert_eq!(d.tags[2].verdict, Verdict::NotNumber);
    }

    #[test]
    fn alphabetical_both_orders() {
        let tags = [
            "RELEASE.2024-01-05",
            "RELEASE.2024-11-30",
            "RELEASE.2023-12-31",
        ];
        let asc = select(&policy(Strategy::Alphabetical(Order::Asc)), &tags);
        assert_eq!(asc.chosen.as_deref(), Some("RELEASE.2024-11-30"));
        let desc = select(&policy(Strategy::Alphabetical(Order::Desc)), &tags);
        assert_eq!(desc.chosen.as_deref(), Some("RELEASE.2023-12-31"));
    }

    #[test]
    fn exclude_wins_over_everything() {
        let mut p = semver(">=1.0.0-0");
        p.exclude = vec![Regex::new(r"-rc\d*$").expect("regex")];
        let d = select(&p, &["1.1.0-rc1", "1.0.0"]);
        assert_eq!(d.chosen.as_deref(), Some("1.0.0"));
        assert!(matches!(d.tags[0].verdict, Verdict::Excluded { .. }));
    }

    #[test]
    fn nothing_qualifies_gives_a_summary() {
        let d = select(&semver("^5"), &["latest", "4.0.0", "4.1.0"]);
        assert!(d.chosen.is_none());
        let s = d.no_choice_summary();
        assert!(s.contains("1 not semver"), "{s}");
        assert!(s.contains("2 outside range `^5`"), "{s}");
    }

    fn tag_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        prop_oneof![
            (0u64..4, 0u64..12, 0u64..12).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
            (0u64..4, 0u64..12, 0u64..12).prop_map(|(a, b, c)| format!("v{a}.{b}.{c}")),
            (0u64..4, 0u64..5, 0u64..3).prop_map(|(a, b, c)| format!("{a}.{b}.{c}-rc.{c}")),
            "[a-z0-9.-]{1,12}",
            (0u32..5000).prop_map(|n| n.to_string()),
        ]
    }

    fn strategy_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
        prop_oneof![
            Just(Strategy::Semver(
                SemverRange::parse(">=1.2.0 <3.0.0").expect("range")
            )),
            Just(Strategy::Semver(
                SemverRange::parse("^1 || ~2.3").expect("range")
            )),
            Just(Strategy::Semver(
                SemverRange::parse(">=0.0.0-0").expect("range")
            )),
            Just(Strategy::Numerical(Order::Asc)),
            Just(Strategy::Numerical(Order::Desc)),
            Just(Strategy::Alphabetical(Order::Asc)),
            Just(Strategy::Alphabetical(Order::Desc)),
        ]
    }

    proptest! {
        /// The chosen tag satisfies the policy, no accepted tag ranks above it, and
        /// every input tag gets exactly one verdict.
        #[test]
        fn chosen_is_maximal_and_every_tag_is_explained(
            strategy in strategy_strategy(),
            tags in proptest::collection::vec(tag_strategy(), 0..60),
        ) {
            let p = policy(strategy);
            let d = select(&p, &tags);
            prop_assert_eq!(d.tags.len(), tags.len());
            for (verdict, tag) in d.tags.iter().zip(&tags) {
                prop_assert_eq!(&verdict.tag, tag);
            }
            let chosen_count = d.tags.iter().filter(|t| t.verdict == Verdict::Chosen).count();
            prop_assert_eq!(chosen_count, usize::from(d.chosen.is_some()));
            let accepted: Vec<&TagVerdict> = d.tags.iter().filter(|t| matches!(
                t.verdict, Verdict::Chosen | Verdict::Outranked { .. } | Verdict::Tied { .. })).collect();
            prop_assert_eq!(d.chosen.is_some(), !accepted.is_empty());
            if let Some(chosen) = &d.chosen {
                let Ok(best) = judge(&p, chosen, &mut HashSet::new()).1 else {
                    return Err(TestCaseError::fail("chosen tag is not a candidate"));
                };
                for t in &accepted {
                    let Ok(k) = judge(&p, &t.tag, &mut HashSet::new()).1 else {
                        return Err(TestCaseError::fail("accepted tag is not a candidate"));
                    };
                    let ord = compare(&k, &best);
                    let desc = matches!(p.strategy,
                        Strategy::Alphabetical(Order::Desc) | Strategy::Numerical(Order::Desc));
                    prop_assert!(if desc { ord != Ordering::Less } else { ord != Ordering::Greater },
                        "{} ranks above chosen {}", t.tag, chosen);
                }
            }
        }
    }
}
