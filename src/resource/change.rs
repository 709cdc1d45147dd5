//! The one typed change record that check prints, apply performs and reports carry.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// Content larger than this (either side) is summarised, not diffed: nobody reads a
/// megabyte of diff, and a line diff costs up to the product of the two line counts.
pub const MAX_DIFF_INPUT: usize = 1 << 20;
/// A diff longer than this is summarised too: it would drown the rest of the report.
pub const MAX_DIFF_OUTPUT: usize = 256 << 10;
/// How long one diff may take before it is summarised instead.
pub const DIFF_DEADLINE: Duration = Duration::from_secs(2);

/// What happens to a resource as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It does not exist yet.
    Create,
    /// It exists and some of its properties change.
    Update,
    /// Something of another kind is replaced by it.
    Replace,
    /// It is removed.
    Remove,
    /// A command runs (`exec`).
    Run,
}

impl Action {
    /// The verb for human output.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Remove => "remove",
            Action::Run => "run",
        }
    }
}

/// One property that changes, shown as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The property, e.g. `mode`.
    pub field: String,
    /// Its live value (`None`: absent).
    pub before: Option<String>,
    /// Its desired value (`None`: absent).
    pub after: Option<String>,
}

impl FieldChange {
    /// Builds a field change.
    pub fn new(field: &str, before: Option<String>, after: Option<String>) -> FieldChange {
        FieldChange {
            field: field.to_owned(),
            before,
            after,
        }
    }
}

/// Size and hash of some content, what reports show instead of sensitive bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Hex sha256.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
}

impl Digest {
    /// Digests `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }
}

/// A content change: digests always; a unified diff only for text that is not sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentChange {
    /// The live content (`None`: no file).
    pub before: Option<Digest>,
    /// The desired content.
    pub after: Option<Digest>,
    /// Unified diff, live → desired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// True when the content is sensitive and was left out on purpose.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
    /// Text too large or too slow to diff: why, and how many lines differ instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<DiffSummary>,
}

/// What stands in for a text diff that is too large or too slow to compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    /// Why the diff is left out.
    pub reason: String,
    /// Lines of the live content that the desired content does not have.
    pub lines_removed: u64,
    /// Lines of the desired content that the live content does not have.
    pub lines_added: u64,
}

impl DiffSummary {
    /// Counts changed lines as multisets: linear, deterministic, and equal to a diff's counts
    /// unless lines moved.
    fn new(reason: String, before: &str, after: &str) -> DiffSummary {
        let mut count: HashMap<&str, i64> = HashMap::new();
        for line in before.split_inclusive('\n') {
            *count.entry(line).or_default() += 1;
        }
        for line in after.split_inclusive('\n') {
            *count.entry(line).or_default() -= 1;
        }
        let removed = count.values().filter(|n| **n > 0).map(|n| *n as u64).sum();
        let added = count
            .values()
            .filter(|n| **n < 0)
            .map(|n| n.unsigned_abs())
            .sum();
        DiffSummary {
            reason,
            lines_removed: removed,
            lines_added: added,
        }
    }
}

impl ContentChange {
    /// Compares live and desired content for `label` (the path shown in diff headers).
    pub fn between(label: &str, before: Option<&[u8]>, after: &[u8], sensitive: bool) -> Self {
        let mut change = ContentChange {
            before: before.map(Digest::of),
            after: Some(Digest::of(after)),
            diff: None,
            redacted: sensitive,
            summary: None,
        };
        if sensitive {
            return change;
        }
        let (Ok(b), Ok(a)) = (
            std::str::from_utf8(before.unwrap_or(b"")),
            std::str::from_utf8(after),
        ) else {
            return change;
        };
        if b.contains('\0') || a.contains('\0') {
            return change;
        }
        let largest = b.len().max(a.len());
        if largest > MAX_DIFF_INPUT {
            let reason = format!("{largest} bytes, more than {MAX_DIFF_INPUT} to diff");
            change.summary = Some(DiffSummary::new(reason, b, a));
            return change;
        }
        let started = Instant::now();
        let diff = similar::TextDiff::configure()
            .timeout(DIFF_DEADLINE)
            .diff_lines(b, a);
        if started.elapsed() >= DIFF_DEADLINE {
            // Past the deadline similar gives up on a minimal diff; say so rather than show
            // a diff that check and apply might compute differently.
            let reason = format!("diff took more than {}s", DIFF_DEADLINE.as_secs());
            change.summary = Some(DiffSummary::new(reason, b, a));
            return change;
        }
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(&format!("{label} (live)"), &format!("{label} (desired)"))
            .to_string();
        if text.len() > MAX_DIFF_OUTPUT {
            let reason = format!("diff of {} bytes, more than {MAX_DIFF_OUTPUT}", text.len());
            change.summary = Some(DiffSummary::new(reason, b, a));
        } else {
            change.diff = Some(text);
        }
        change
    }
}

/// Everything that changes about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Create, update, replace or remove.
    pub action: Action,
    /// Properties that change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Content that changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentChange>,
    /// Entries under the resource's path that the change removes (a purge), named as the
    /// OS spells them, for the backup that keeps them. The record shows them as fields.
    #[serde(skip)]
    pub removes: Vec<OsString>,
    /// The change starts a service, which then runs with the new configuration: a restart
    /// notified in the same run is moot.
    #[serde(skip)]
    pub starts: bool,
}

impl Change {
    /// A change with only property changes.
    pub fn fields(action: Action, fields: Vec<FieldChange>) -> Change {
        Change {
            action,
            fields,
            content: None,
            removes: Vec::new(),
            starts: false,
        }
    }

    /// Whether `field` is among the changed properties.
    pub fn touches(&self, field: &str) -> bool {
        self.fields.iter().any(|f| f.field == field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_whose_every_line_differs_is_summarised() {
        let before: String = (0..500_000).map(|i| format!("old {i}\n")).collect();
        let after: String = (0..500_000).map(|i| format!("new {i}\n")).collect();
        assert!(before.len() > 5_000_000);
        let c = ContentChange::between("/x", Some(before.as_bytes()), after.as_bytes(), false);
        assert_eq!(c.diff, None);
        let s = c.summary.unwrap();
        assert_eq!((s.lines_removed, s.lines_added), (500_000, 500_000));
        assert_eq!(
            s.reason,
            format!("{} bytes, more than 1048576 to diff", after.len())
        );
        assert_eq!(c.after, Some(Digest::of(after.as_bytes())));
    }

    #[test]
    fn a_diff_too_long_to_read_is_summarised() {
        // All insertions: quick to diff, but the diff is longer than anyone reads.
        let after: String = (0..30_000).map(|i| format!("new line {i}\n")).collect();
        let c = ContentChange::between("/x", None, after.as_bytes(), false);
        assert_eq!(c.diff, None);
        let s = c.summary.unwrap();
        assert!(s.reason.starts_with("diff of "), "{}", s.reason);
        assert_eq!((s.lines_removed, s.lines_added), (0, 30_000));
    }

    #[test]
    fn small_changes_keep_their_diff_and_sensitive_ones_say_nothing() {
        let c = ContentChange::between("/x", Some(b"a\nb\n"), b"a\nc\n", false);
        assert_eq!(
            c.diff.as_deref(),
            Some("--- /x (live)\n+++ /x (desired)\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n")
        );
        assert_eq!(c.summary, None);
        let big = "x\n".repeat(MAX_DIFF_INPUT);
        let c = ContentChange::between("/x", None, big.as_bytes(), true);
        assert_eq!((c.diff, c.summary, c.redacted), (None, None, true));
    }
}
