//! The one typed change record that check prints, apply performs and reports carry.

use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::Hasher as _;
use std::io::{self, BufRead, Read};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::content::{Fingerprint, CHUNK};

/// Content larger than this (either side) is summarised, not diffed: nobody reads a
/// megabyte of diff, and a line diff costs up to the product of the two line counts.
pub(crate) const MAX_DIFF_INPUT: usize = 1 << 20;
/// A diff longer than this is summarised too: it would drown the rest of the report.
pub(crate) const MAX_DIFF_OUTPUT: usize = 256 << 10;
/// Diff text that one run's report keeps in all: past it, changes carry a summary. A first
/// apply of 10,000 files would otherwise keep (print, record, POST) 10,000 whole-file diffs.
pub(crate) const MAX_RUN_DIFFS: usize = 4 << 20;
/// How long one diff may take before it is summarised instead.
pub(crate) const DIFF_DEADLINE: Duration = Duration::from_secs(2);

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
    /// unless lines moved. Both sides are read a line at a time, in step, and a line seen on
    /// both sides cancels out, so what is held is the lines not matched yet (for a few edits
    /// in a huge file, a handful), never the content. `None` when either side is not text.
    pub fn stream(
        reason: String,
        before: &mut dyn BufRead,
        after: &mut dyn BufRead,
    ) -> io::Result<Option<DiffSummary>> {
        let mut count: HashMap<u64, i64> = HashMap::new();
        let mut bump = |line: u64, by: i64| {
            let n = count.entry(line).or_default();
            *n += by;
            if *n == 0 {
                count.remove(&line);
            }
        };
        let (mut b, mut a) = (Lines::new(before), Lines::new(after));
        let (mut b_open, mut a_open) = (true, true);
        while b_open || a_open {
            if b_open {
                match b.next()? {
                    Some(line) => bump(line, 1),
                    None => b_open = false,
                }
            }
            if a_open {
                match a.next()? {
                    Some(line) => bump(line, -1),
                    None => a_open = false,
                }
            }
            if b.not_text() || a.not_text() {
                return Ok(None);
            }
        }
        if !(b.is_text() && a.is_text()) {
            return Ok(None);
        }
        let removed = count.values().filter(|n| **n > 0).map(|n| *n as u64).sum();
        let added = count
            .values()
            .filter(|n| **n < 0)
            .map(|n| n.unsigned_abs())
            .sum();
        Ok(Some(DiffSummary {
            reason,
            lines_removed: removed,
            lines_added: added,
        }))
    }

    /// [`DiffSummary::stream`] over text already in memory.
    fn of_text(reason: String, before: &str, after: &str) -> DiffSummary {
        Self::stream(reason, &mut before.as_bytes(), &mut after.as_bytes())
            .ok()
            .flatten()
            .expect("in-memory text reads without error")
    }
}

/// The lines of a stream as 64-bit hashes (a line keeps its `\n`, as `split_inclusive`
/// would), checking on the way that the stream is text: UTF-8 without NUL.
struct Lines<'r> {
    r: &'r mut dyn BufRead,
    utf8: Utf8Stream,
    nul: bool,
}

impl<'r> Lines<'r> {
    fn new(r: &'r mut dyn BufRead) -> Lines<'r> {
        Lines {
            r,
            utf8: Utf8Stream::default(),
            nul: false,
        }
    }

    /// The next line's hash; `None` at the end. A line may be longer than any buffer.
    fn next(&mut self) -> io::Result<Option<u64>> {
        // `new` keys every instance alike: the same line hashes alike in check and apply.
        let mut h = std::hash::DefaultHasher::new();
        let mut any = false;
        loop {
            let buf = match self.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(any.then(|| h.finish()));
            }
            let (piece, end) = match memchr::memchr(b'\n', buf) {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            any = true;
            h.write(piece);
            self.nul |= memchr::memchr(0, piece).is_some();
            self.utf8.feed(piece);
            let n = piece.len();
            self.r.consume(n);
            if end {
                return Ok(Some(h.finish()));
            }
        }
    }

    fn not_text(&self) -> bool {
        self.nul || self.utf8.bad
    }

    fn is_text(&self) -> bool {
        !self.not_text() && self.utf8.pending == 0
    }
}

/// UTF-8 validation of a stream that arrives in pieces cut anywhere.
#[derive(Default)]
struct Utf8Stream {
    /// The start of a character cut at the end of the last piece.
    tail: [u8; 4],
    pending: usize,
    bad: bool,
}

impl Utf8Stream {
    fn feed(&mut self, mut bytes: &[u8]) {
        while self.pending > 0 && !bytes.is_empty() && !self.bad {
            self.tail[self.pending] = bytes[0];
            self.pending += 1;
            bytes = &bytes[1..];
            match std::str::from_utf8(&self.tail[..self.pending]) {
                Ok(_) => self.pending = 0,
                Err(e) if e.error_len().is_some() || self.pending == 4 => self.bad = true,
                Err(_) => {}
            }
        }
        if self.bad {
            return;
        }
        if let Err(e) = std::str::from_utf8(bytes) {
            match e.error_len() {
                Some(_) => self.bad = true,
                None => {
                    let rest = &bytes[e.valid_up_to()..];
                    self.tail[..rest.len()].copy_from_slice(rest);
                    self.pending = rest.len();
                }
            }
        }
    }
}

impl ContentChange {
    /// Keeps the diff when `budget` (what the run's report may still hold) has room for it,
    /// and takes it from the budget; otherwise puts the diff's line counts in its place.
    pub fn within(&mut self, budget: &mut usize) {
        keep_within(&mut self.diff, &mut self.summary, budget, "the run's diffs");
    }
}

/// Keeps `diff` when `budget` has room for it, and takes it from the budget; otherwise
/// puts the diff's line counts in `summary` instead (`whose` names what the budget is for).
pub(crate) fn keep_within(
    diff: &mut Option<String>,
    summary: &mut Option<DiffSummary>,
    budget: &mut usize,
    whose: &str,
) {
    let Some(text) = diff else {
        return;
    };
    if text.len() <= *budget {
        *budget -= text.len();
        return;
    }
    // After the `---`/`+++` header, a changed line starts with `-` or `+`.
    let (mut removed, mut added) = (0, 0);
    for line in text.lines().skip(2) {
        match line.as_bytes().first() {
            Some(b'-') => removed += 1,
            Some(b'+') => added += 1,
            _ => {}
        }
    }
    *summary = Some(DiffSummary {
        reason: format!("{whose} passed {MAX_RUN_DIFFS} bytes"),
        lines_removed: removed,
        lines_added: added,
    });
    *diff = None;
}

impl DiffSummary {
    /// `N lines removed, M added`.
    pub fn counts(&self) -> String {
        format!(
            "{} line{} removed, {} added",
            self.lines_removed,
            if self.lines_removed == 1 { "" } else { "s" },
            self.lines_added
        )
    }
}

/// Opens one side of a comparison again, from its start.
pub(crate) type Reopen<'a> = &'a dyn Fn() -> io::Result<Box<dyn Read + 'a>>;

impl ContentChange {
    /// Compares live and desired content for `label` (the path shown in diff headers).
    pub fn between(label: &str, before: Option<&[u8]>, after: &[u8], sensitive: bool) -> Self {
        let sides = (format!("{label} (live)"), format!("{label} (desired)"));
        Self::between_sides(&sides, before, after, sensitive)
    }

    /// Like [`ContentChange::between`], the diff's headers naming the two sides `sides`.
    pub(crate) fn between_sides(
        sides: &(String, String),
        before: Option<&[u8]>,
        after: &[u8],
        sensitive: bool,
    ) -> Self {
        let open_before = || -> io::Result<Box<dyn Read>> { Ok(Box::new(before.unwrap_or(b""))) };
        let open_after = || -> io::Result<Box<dyn Read>> { Ok(Box::new(after)) };
        Self::streamed_sides(
            sides,
            before.map(|b| (Fingerprint::of(b), &open_before as Reopen)),
            (Fingerprint::of(after), &open_after),
            sensitive,
        )
        .expect("in-memory content reads without error")
    }

    /// Compares content that is not held: each side is known by its fingerprint and read
    /// again only as far as the report needs it (whole when small enough to diff, a line at
    /// a time for a summary, not at all when sensitive).
    pub(crate) fn streamed(
        label: &str,
        before: Option<(Fingerprint, Reopen)>,
        after: (Fingerprint, Reopen),
        sensitive: bool,
    ) -> io::Result<Self> {
        let sides = (format!("{label} (live)"), format!("{label} (desired)"));
        Self::streamed_sides(&sides, before, after, sensitive)
    }

    fn streamed_sides(
        sides: &(String, String),
        before: Option<(Fingerprint, Reopen)>,
        after: (Fingerprint, Reopen),
        sensitive: bool,
    ) -> io::Result<Self> {
        let mut change = ContentChange {
            before: before.as_ref().map(|(f, _)| f.digest()),
            after: Some(after.0.digest()),
            diff: None,
            redacted: sensitive,
            summary: None,
        };
        if sensitive {
            return Ok(change);
        }
        let b_size = before.as_ref().map_or(0, |(f, _)| f.size);
        let open_before = || -> io::Result<Box<dyn Read + '_>> {
            match &before {
                Some((_, open)) => open(),
                None => Ok(Box::new(io::empty())),
            }
        };
        let largest = b_size.max(after.0.size);
        if largest > MAX_DIFF_INPUT as u64 {
            let reason = format!("{largest} bytes, more than {MAX_DIFF_INPUT} to diff");
            let mut b = io::BufReader::with_capacity(CHUNK, open_before()?);
            let mut a = io::BufReader::with_capacity(CHUNK, (after.1)()?);
            change.summary = DiffSummary::stream(reason, &mut b, &mut a)?;
            return Ok(change);
        }
        let mut b = Vec::with_capacity(b_size as usize);
        open_before()?.read_to_end(&mut b)?;
        let mut a = Vec::with_capacity(after.0.size as usize);
        (after.1)()?.read_to_end(&mut a)?;
        let (Ok(b), Ok(a)) = (std::str::from_utf8(&b), std::str::from_utf8(&a)) else {
            return Ok(change);
        };
        if b.contains('\0') || a.contains('\0') {
            return Ok(change);
        }
        match text_diff(b, a, (&sides.0, &sides.1)) {
            Ok(text) => change.diff = Some(text),
            Err(summary) => change.summary = Some(summary),
        }
        Ok(change)
    }
}

/// A unified diff of two texts under `headers`, within the caps every diff converge shows
/// keeps ([`MAX_DIFF_INPUT`], [`DIFF_DEADLINE`], [`MAX_DIFF_OUTPUT`]); past one of them,
/// the summary that stands in for it.
pub(crate) fn text_diff(
    before: &str,
    after: &str,
    headers: (&str, &str),
) -> Result<String, DiffSummary> {
    let largest = before.len().max(after.len());
    if largest > MAX_DIFF_INPUT {
        let reason = format!("{largest} bytes, more than {MAX_DIFF_INPUT} to diff");
        return Err(DiffSummary::of_text(reason, before, after));
    }
    let started = Instant::now();
    let diff = similar::TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(before, after);
    if started.elapsed() >= DIFF_DEADLINE {
        // Past the deadline similar gives up on a minimal diff; say so rather than show
        // a diff that check and apply might compute differently.
        let reason = format!("diff took more than {}s", DIFF_DEADLINE.as_secs());
        return Err(DiffSummary::of_text(reason, before, after));
    }
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(headers.0, headers.1)
        .to_string();
    if text.len() > MAX_DIFF_OUTPUT {
        let reason = format!("diff of {} bytes, more than {MAX_DIFF_OUTPUT}", text.len());
        return Err(DiffSummary::of_text(reason, before, after));
    }
    Ok(text)
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
    fn a_summary_reads_lines_and_characters_cut_across_reads() {
        // 7-byte reads cut the two-byte characters and the 200 KB line anywhere.
        let before = "é".repeat(100_000) + "\nsame\n";
        let after = "é".repeat(100_000) + "x\nsame\n";
        let mut b = io::BufReader::with_capacity(7, before.as_bytes());
        let mut a = io::BufReader::with_capacity(7, after.as_bytes());
        let s = DiffSummary::stream("r".into(), &mut b, &mut a)
            .unwrap()
            .unwrap();
        assert_eq!((s.lines_removed, s.lines_added), (1, 1));
        let cut = "é".as_bytes()[..1].to_vec();
        for not_text in [&b"ok\n\xff\n"[..], b"ok\0\n", &cut] {
            let summary = DiffSummary::stream("r".into(), &mut &*not_text, &mut &b"ok\n"[..]);
            assert_eq!(summary.unwrap(), None, "{not_text:?}");
        }
    }

    #[test]
    fn diffs_past_the_run_budget_become_their_line_counts() {
        let mut budget = 200;
        let mut first = ContentChange::between("/x", Some(b"a\nb\n"), b"a\nc\nd\n", false);
        let shown = first.diff.clone().unwrap();
        first.within(&mut budget);
        assert_eq!(
            (first.diff.as_deref(), budget),
            (Some(&shown[..]), 200 - shown.len())
        );
        let mut second = ContentChange::between("/y", Some(b"-a\n+b\n"), b"+b\nc\n", false);
        budget = 10;
        second.within(&mut budget);
        assert_eq!(second.diff, None);
        let s = second.summary.unwrap();
        assert_eq!((s.lines_removed, s.lines_added, budget), (1, 1, 10));
        assert_eq!(s.reason, "the run's diffs passed 4194304 bytes");
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
