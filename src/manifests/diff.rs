//! Unified diffs of planned files, for `--dry-run` and logs.

use similar::TextDiff;

/// A `git apply`-compatible unified diff of one file (3 lines of context).
pub fn unified(path: &str, old: &str, new: &str) -> String {
    let diff = TextDiff::from_lines(old, new);
    let mut out = format!("diff --git a/{path} b/{path}\n");
    out.push_str(
        &diff
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{path}"), &format!("b/{path}"))
            .to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_the_file_and_the_line() {
        let d = unified(
            "apps/x.yaml",
            "a: 1\nb: x:1\nc: 3\n",
            "a: 1\nb: x:2\nc: 3\n",
        );
        assert!(
            d.starts_with(
                "diff --git a/apps/x.yaml b/apps/x.yaml\n--- a/apps/x.yaml\n+++ b/apps/x.yaml\n"
            ),
            "{d}"
        );
        assert!(d.contains("-b: x:1\n+b: x:2\n"), "{d}");
    }
}
