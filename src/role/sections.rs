//! A role file read table by table: each `[[file]]` table is parsed on its own, and the rest
//! of the file once with those tables blanked out.
//!
//! A whole-document parse of a role declaring 10,000 files builds a syntax tree of about
//! 38 MB (every key, value, span and piece of whitespace) before one spec exists. Parsed a
//! table at a time, only one table's tree is alive at once. The tables are found with the
//! TOML lexer (so brackets in strings and comments, and arrays that span lines, are not
//! mistaken for headers); anything unusual, and every error, goes to the whole-document parse,
//! so the result and every message are the ones that parse gives.
//!
//! Planning may go one step further ([`parse_deferred`]): the `[[file]]` tables stay text
//! until each is planned, so the 10,000 parsed specs (about 7 MB) are never alive together.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml_parser::lexer::TokenKind;
use toml_parser::Source;

use super::model::{FileSpec, RoleFile};

/// Parses `text` as a role file.
pub fn parse(text: &str) -> Result<RoleFile, toml::de::Error> {
    if let Some(spec) = tables(text).and_then(|files| by_table(text, files)) {
        return Ok(spec);
    }
    toml::from_str(text)
}

/// Parses `text` as a role file but its `[[file]]` tables, which are left in
/// [`RoleFile::file_tables`] for [`parse_table`] (a layout only the whole-document parse
/// reads gives them parsed, in [`RoleFile::file`]). A table that does not parse is found
/// only then: [`parse`] gives its error.
pub(crate) fn parse_deferred(text: &str) -> Result<RoleFile, toml::de::Error> {
    if let Some(spec) = tables(text).and_then(|files| without_files(text, files)) {
        return Ok(spec);
    }
    toml::from_str(text)
}

/// One `[[file]]` table of `text`, at `range`, with the spans it has in the whole file;
/// `None` when it does not parse on its own.
pub(crate) fn parse_table(text: &str, range: Range<usize>) -> Option<Spanned<Box<FileSpec>>> {
    let mut one: OneFile = toml::from_str(text.get(range.clone())?).ok()?;
    let file = one.file.pop().filter(|_| one.file.is_empty())?;
    Some(moved(file, range.start, FileSpec::moved))
}

/// One `[[file]]` table alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneFile {
    file: Vec<Spanned<Box<FileSpec>>>,
}

/// The role parsed a table at a time; `None` when any part does not parse on its own.
fn by_table(text: &str, files: Vec<Range<usize>>) -> Option<RoleFile> {
    let mut spec = without_files(text, files)?;
    spec.file.reserve_exact(spec.file_tables.len());
    for r in std::mem::take(&mut spec.file_tables) {
        spec.file.push(parse_table(text, r)?);
    }
    Some(spec)
}

/// The role but its `[[file]]` tables, whose ranges it keeps; `None` when there are none, or
/// the rest does not parse on its own.
fn without_files(text: &str, files: Vec<Range<usize>>) -> Option<RoleFile> {
    if files.is_empty() {
        return None;
    }
    // Same length and the same lines, so every span of the rest is a span of the file.
    let mut rest = text.as_bytes().to_vec();
    for r in &files {
        for b in &mut rest[r.clone()] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    let rest = String::from_utf8(rest).ok()?;
    let mut spec: RoleFile = toml::from_str(&rest).ok()?;
    if !spec.file.is_empty() {
        return None;
    }
    spec.file_tables = files;
    Some(spec)
}

/// `s` with its span (and the spans inside it, through `inner`) moved `by` bytes on.
pub(super) fn moved<T>(s: Spanned<T>, by: usize, inner: impl Fn(T, usize) -> T) -> Spanned<T> {
    let span = s.span();
    Spanned::new(span.start + by..span.end + by, inner(s.into_inner(), by))
}

/// The byte ranges of the `[[file]]` tables, each with its `[file.*]` sub-tables, in order;
/// `None` when the layout is one this reader leaves to the whole-document parse.
fn tables(text: &str) -> Option<Vec<Range<usize>>> {
    let source = Source::new(text);
    let mut tokens = source.lex().peekable();
    let mut headers: Vec<(usize, bool, Vec<String>)> = Vec::new();
    let mut line_start = true;
    let mut depth = 0usize;
    while let Some(t) = tokens.next() {
        match t.kind() {
            TokenKind::Eof => break,
            TokenKind::Newline => line_start = true,
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::LeftSquareBracket if depth == 0 && line_start => {
                let start = t.span().start();
                let array = match tokens.peek() {
                    Some(n) if n.kind() == TokenKind::LeftSquareBracket => {
                        // `[[` must be written together.
                        (n.span().start() == t.span().end()).then_some(())?;
                        tokens.next();
                        true
                    }
                    _ => false,
                };
                let mut path = Vec::new();
                let mut want_key = true;
                loop {
                    let k = tokens.next()?;
                    match k.kind() {
                        TokenKind::Whitespace => {}
                        TokenKind::Dot if !want_key => want_key = true,
                        TokenKind::Atom | TokenKind::BasicString | TokenKind::LiteralString
                            if want_key =>
                        {
                            let key = decode_key(text, &k)?;
                            path.push(key);
                            want_key = false;
                        }
                        TokenKind::RightSquareBracket if !want_key => {
                            if array {
                                let n = tokens.next()?;
                                let together = n.kind() == TokenKind::RightSquareBracket
                                    && n.span().start() == k.span().end();
                                together.then_some(())?;
                            }
                            break;
                        }
                        _ => return None,
                    }
                }
                headers.push((start, array, path));
                line_start = false;
            }
            TokenKind::Atom | TokenKind::BasicString | TokenKind::LiteralString
                if depth == 0 && line_start && headers.is_empty() =>
            {
                // A top-level key: `file = [...]` or `file.x = ...` next to `[[file]]`
                // tables is for the whole-document parse to judge.
                (decode_key(text, &t)? != "file").then_some(())?;
                line_start = false;
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => {
                depth += 1;
                line_start = false;
            }
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.checked_sub(1)?;
                line_start = false;
            }
            _ => line_start = false,
        }
    }
    let mut files = Vec::new();
    let mut open: Option<usize> = None;
    for (start, array, path) in headers {
        let is_file = path.first().is_some_and(|p| p == "file");
        if is_file && array && path.len() == 1 {
            if let Some(s) = open.replace(start) {
                files.push(s..start);
            }
        } else if is_file {
            // `[file]`, or a sub-table that does not follow its `[[file]]` directly.
            (path.len() > 1 && open.is_some()).then_some(())?;
        } else if let Some(s) = open.take() {
            files.push(s..start);
        }
    }
    if let Some(s) = open {
        files.push(s..text.len());
    }
    Some(files)
}

/// The key that token `t` spells; `None` when it is not a valid key.
fn decode_key(text: &str, t: &toml_parser::lexer::Token) -> Option<String> {
    let span = t.span();
    let raw = text.get(span.start()..span.end())?;
    let mut key = std::borrow::Cow::Borrowed("");
    let mut errors: Vec<toml_parser::ParseError> = Vec::new();
    toml_parser::Raw::new_unchecked(raw, t.kind().encoding(), span)
        .decode_key(&mut key, &mut errors);
    errors.is_empty().then(|| key.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of reading give the same specs, spans included.
    fn same_as_whole(text: &str) -> bool {
        let whole: RoleFile = toml::from_str(text).unwrap();
        let split = tables(text).and_then(|f| by_table(text, f));
        if let Some(split) = &split {
            assert_eq!(format!("{split:?}"), format!("{whole:?}"));
            // Left as text and parsed one at a time, as planning does: the same again.
            let mut deferred = parse_deferred(text).unwrap();
            for r in std::mem::take(&mut deferred.file_tables) {
                deferred.file.push(parse_table(text, r).unwrap());
            }
            assert_eq!(format!("{deferred:?}"), format!("{whole:?}"));
        }
        split.is_some()
    }

    #[test]
    fn file_tables_read_alone_give_what_the_whole_file_gives() {
        let text = r#"include = ["base"] # [[file]] in a comment
[vars]
list = [
  [1, 2],
  "[[file]]",
]
[[file]]
path = "/etc/a"
content = """
[[file]]
[file.vars]
"""
after = ["directory:/etc"]
[file.vars]
x = { y = [1, [2]] }

[[directory]]
path = "/etc"

[[file]]
path = '/etc/b'
template = "b.hbs"
[ file . "vars" ]
z = 'q'
[[ "file" ]]
path = "/etc/c"
source = "c"
"#;
        assert!(same_as_whole(text));
        assert_eq!(tables(text).unwrap().len(), 3);
    }

    #[test]
    fn layouts_only_the_whole_file_can_read_go_to_it() {
        // A sub-table after another table still belongs to the last [[file]].
        let late = "[[file]]\npath = \"/a\"\ncontent = \"\"\n[vars]\n[file.vars]\nx = 1\n";
        assert!(!same_as_whole(late));
        // Dotted keys at the top.
        let dotted = "file = [{ path = \"/a\", content = \"\" }]\n";
        assert!(!same_as_whole(dotted));
        for top in ["file = []", "\"file\" = []", "file.x = 1"] {
            let mixed = format!("{top}\n[[file]]\npath = \"/a\"\ncontent = \"\"\n");
            assert!(tables(&mixed).is_none(), "{mixed}");
            assert_eq!(
                parse(&mixed).unwrap_err().to_string(),
                toml::from_str::<RoleFile>(&mixed).unwrap_err().to_string()
            );
        }
    }

    #[test]
    fn errors_are_the_whole_file_parse_errors() {
        let text = "[[file]]\npath = \"/a\"\nmdoe = \"0644\"\n\n[[file]]\npath = \"/b\"\n";
        let e = parse(text).unwrap_err();
        let whole = toml::from_str::<RoleFile>(text).unwrap_err();
        assert_eq!(e.to_string(), whole.to_string());
        assert_eq!(e.span(), whole.span());
    }
}
