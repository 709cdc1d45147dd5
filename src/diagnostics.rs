//! Errors that point at a place in a role or template: `file:line:col: message` plus an excerpt.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A position in a source file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    /// The file, as the user would type it (relative to the source tree when possible);
    /// shared by every location in it, as a role's thousands of resources each hold one.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

impl Location {
    /// Locates a byte offset inside `text`, the contents of `file`.
    pub(crate) fn at_offset(file: &Path, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Location {
            file: file.into(),
            line,
            col,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Line starts of a text, so many offsets can be located without rescanning it.
///
/// Starts are 32-bit, 4 bytes a line (a 10,000-file role has ~100,000 lines); a text past
/// 4 GiB is not indexed and its offsets are located by a scan instead.
#[derive(Debug, Clone, Default)]
pub(crate) struct LineIndex {
    starts: Vec<u32>,
}

impl LineIndex {
    /// Indexes `text`.
    pub fn new(text: &str) -> LineIndex {
        if u32::try_from(text.len()).is_err() {
            return LineIndex { starts: Vec::new() };
        }
        let mut starts = Vec::with_capacity(text.bytes().filter(|&b| b == b'\n').count() + 1);
        starts.push(0);
        // Every offset fits: the text is shorter than u32::MAX.
        starts.extend(text.match_indices('\n').map(|(i, _)| (i + 1) as u32));
        LineIndex { starts }
    }

    /// Locates a byte offset of the indexed `text` (the contents of `file`).
    pub(crate) fn locate(&self, file: &Arc<Path>, text: &str, offset: usize) -> Location {
        if self.starts.is_empty() {
            return Location::at_offset(file, text, offset);
        }
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let line = self.starts.partition_point(|&s| s as usize <= offset);
        let start = self.starts[line - 1] as usize;
        Location {
            file: file.clone(),
            line,
            col: text[start..offset].chars().count() + 1,
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One error with an optional location and the offending source line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the error is, when it has a place.
    pub location: Option<Location>,
    /// What is wrong and, where useful, what was expected.
    pub message: String,
    /// The source line at `location` (a window of it around the column when the line is
    /// long), shown with a caret under the column.
    pub excerpt: Option<String>,
    /// Other places that belong to this error (the first declaration of a conflict), each
    /// shown as `note:` with its own line and caret.
    pub notes: Vec<Diagnostic>,
    /// The caret's 1-based column in `excerpt`.
    pub excerpt_col: usize,
}

/// Characters an excerpt shows on each side of the caret: an error on a line of megabytes
/// must not print megabytes.
const EXCERPT_SIDE: usize = 60;

/// A window of `line` around 1-based `col`, and the caret's column in it.
fn excerpt_window(line: &str, col: usize) -> (String, usize) {
    let len = line.chars().count();
    if len <= 2 * EXCERPT_SIDE {
        return (line.to_owned(), col);
    }
    let at = col.saturating_sub(1).min(len);
    let start = at.saturating_sub(EXCERPT_SIDE);
    let end = (at + EXCERPT_SIDE).min(len);
    let mut shown: String = line.chars().skip(start).take(end - start).collect();
    let mut caret = at - start + 1;
    if start > 0 {
        shown.insert(0, '…');
        caret += 1;
    }
    if end < len {
        shown.push('…');
    }
    (shown, caret)
}

impl Diagnostic {
    /// An error without a place in a file.
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: None,
            message: message.into(),
            excerpt: None,
            notes: Vec::new(),
            excerpt_col: 0,
        }
    }

    /// An error at a byte offset of `text` (the contents of `file`).
    pub(crate) fn at_offset(
        file: &Path,
        text: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let location = Location::at_offset(file, text, offset);
        Self::at(location, text, message)
    }

    /// An error at a known line and column of `text`.
    pub fn at(mut location: Location, text: &str, message: impl Into<String>) -> Diagnostic {
        let lines = text.lines().count();
        if lines > 0 && location.line > lines {
            // Parsers report "end of input" one line past the last: point at the end instead.
            let last = text.lines().last().unwrap_or("");
            location.line = lines;
            location.col = last.chars().count() + 1;
        }
        let (excerpt, excerpt_col) = match text.lines().nth(location.line.saturating_sub(1)) {
            Some(line) => {
                let (shown, col) = excerpt_window(line, location.col);
                (Some(shown), col)
            }
            None => (None, 0),
        };
        Diagnostic {
            location: Some(location),
            message: message.into(),
            excerpt,
            notes: Vec::new(),
            excerpt_col,
        }
    }

    /// This error with `note` attached.
    pub(crate) fn with_note(mut self, note: Diagnostic) -> Diagnostic {
        self.notes.push(note);
        self
    }

    /// The first line alone: `file:line:col: message`.
    pub(crate) fn headline(&self) -> String {
        match &self.location {
            Some(loc) => format!("{loc}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let (Some(loc), Some(line)) = (&self.location, &self.excerpt) {
            let number = loc.line.to_string();
            let pad = " ".repeat(number.len());
            // Tabs would shift the caret; show them as single spaces.
            let shown = line.replace('\t', " ");
            let caret_pad = " ".repeat(self.excerpt_col.saturating_sub(1));
            write!(f, "\n{pad} |\n{number} | {shown}\n{pad} | {caret_pad}^")?;
        }
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Every error found by one pass (a `validate` run reports them all, not just the first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one error.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// True when nothing went wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok(value) when empty, else the collected errors.
    pub(crate) fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_offsets_by_line_and_column() {
        let text = "a = 1\nbé = 2\n";
        let loc = Location::at_offset(Path::new("r.toml"), text, text.find('=').unwrap());
        assert_eq!((loc.line, loc.col), (1, 3));
        let loc = Location::at_offset(Path::new("r.toml"), text, text.rfind('=').unwrap());
        assert_eq!((loc.line, loc.col), (2, 4));
    }

    #[test]
    fn line_index_agrees_with_scanning() {
        let text = "a = 1\nbé = 2\n\nc";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() {
            if text.is_char_boundary(offset) {
                let f: Arc<Path> = Path::new("f").into();
                assert_eq!(
                    index.locate(&f, text, offset),
                    Location::at_offset(&f, text, offset)
                );
            }
        }
    }

    #[test]
    fn a_position_past_the_end_points_at_the_end() {
        let loc = Location {
            file: Path::new("t.hbs").into(),
            line: 3,
            col: 1,
        };
        let d = Diagnostic::at(loc, "ok\n{{#if a}}\n", "unclosed block");
        assert_eq!(d.headline(), "t.hbs:2:10: unclosed block");
        assert_eq!(d.excerpt.as_deref(), Some("{{#if a}}"));
    }

    #[test]
    fn a_note_shows_its_own_place() {
        let text = "[[file]]\npath = \"/x\"\n";
        let d = Diagnostic::at_offset(Path::new("roles/a.toml"), text, 0, "conflict").with_note(
            Diagnostic::at_offset(Path::new("roles/b.toml"), text, 9, "first here"),
        );
        assert_eq!(
            d.to_string(),
            "roles/a.toml:1:1: conflict\n  |\n1 | [[file]]\n  | ^\n\
             note: roles/b.toml:2:1: first here\n  |\n2 | path = \"/x\"\n  | ^"
        );
    }

    #[test]
    fn an_error_on_a_huge_line_shows_a_window_around_the_caret() {
        let text = format!("a = \"{}\" b{}", "x".repeat(2_000_000), "y".repeat(1000));
        let offset = text.find(" b").unwrap() + 1;
        let d = Diagnostic::at_offset(Path::new("r.toml"), &text, offset, "unexpected b");
        assert_eq!(d.headline(), "r.toml:1:2000008: unexpected b");
        let shown = d.to_string();
        assert!(shown.len() < 400, "{}", shown.len());
        let lines: Vec<&str> = shown.lines().collect();
        let excerpt = lines[2].strip_prefix("1 | ").unwrap();
        let caret = lines[3].strip_prefix("  | ").unwrap();
        assert_eq!(excerpt.chars().nth(caret.chars().count() - 1), Some('b'));
        assert!(
            excerpt.starts_with('…') && excerpt.ends_with('…'),
            "{excerpt}"
        );
        let short = Diagnostic::at_offset(Path::new("r.toml"), "a = 1 b", 6, "unexpected b");
        assert_eq!(
            short.to_string(),
            "r.toml:1:7: unexpected b\n  |\n1 | a = 1 b\n  |       ^"
        );
    }

    #[test]
    fn renders_excerpt_with_caret() {
        let text = "[[file]]\nmdoe = 1\n";
        let d = Diagnostic::at_offset(Path::new("roles/x.toml"), text, 9, "unknown key");
        assert_eq!(
            d.to_string(),
            "roles/x.toml:2:1: unknown key\n  |\n2 | mdoe = 1\n  | ^"
        );
    }
}
