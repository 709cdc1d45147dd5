//! Cutting a big template into pieces that compile and render on their own.
//!
//! A compiled handlebars template holds its whole parse (pest's token queue during
//! compilation, then a tree of elements): about 4 KiB per line of a typical generated config,
//! 40 times the output. Rendering a big template one piece at a time and dropping each piece
//! keeps memory near the size of the source and the output.
//!
//! A cut is only made at the start of a line where nothing is open: no block, no tag, no
//! comment. Templates whose meaning could depend on the whole (raw blocks, decorators such as
//! inline partials) are never cut. Whitespace control reaching over a line end (`~}}` at the
//! end of the line before, `{{~` on the line after) forbids a cut there. Anything this scanner
//! misjudges leaves a piece with an unclosed construct, which fails to compile; the caller
//! then compiles the template whole, as if it had never been cut.

/// A slice of a template and the number of lines before it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Piece<'a> {
    /// The template text of this piece; ends with a newline unless it is the last.
    pub text: &'a str,
    /// Lines of the template before this piece (add to a position inside the piece).
    pub lines_before: usize,
}

/// What a tag does to the nesting of blocks.
enum Tag {
    Open,
    Close,
    /// A decorator (`{{*...}}`, `{{#*inline}}`): its effect spans the whole template.
    Decorator,
    Other,
}

/// Cut `source` into pieces of at least `target` bytes where that is safe; `None` when the
/// template must stay whole (raw blocks, decorators, unbalanced blocks, unterminated tags).
pub(super) fn split(source: &str, target: usize) -> Option<Vec<Piece<'_>>> {
    if source.contains("{{{{") {
        return None;
    }
    let b = source.as_bytes();
    let mut pieces = Vec::new();
    let (mut start, mut start_line) = (0, 0);
    let (mut line, mut depth, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'\n' => {
                line += 1;
                i += 1;
                if depth == 0 && i - start >= target && i < b.len() && may_cut(source, i) {
                    pieces.push(Piece {
                        text: &source[start..i],
                        lines_before: start_line,
                    });
                    (start, start_line) = (i, line);
                }
            }
            b'\\' => {
                let run = b[i..].iter().take_while(|&&c| c == b'\\').count();
                i += run;
                // `\{{` is literal text; two or more backslashes escape themselves instead.
                if run == 1 && b[i..].starts_with(b"{{") {
                    i += 2;
                }
            }
            b'{' if b[i..].starts_with(b"{{") => {
                let end = tag_end(b, i)?;
                line += b[i..end].iter().filter(|&&c| c == b'\n').count();
                match tag_kind(&source[i + 2..end - 2]) {
                    Tag::Open => depth += 1,
                    Tag::Close => depth = depth.checked_sub(1)?,
                    Tag::Decorator => return None,
                    Tag::Other => {}
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if depth != 0 {
        return None;
    }
    pieces.push(Piece {
        text: &source[start..],
        lines_before: start_line,
    });
    Some(pieces)
}

/// Index just past the `}}` closing the tag that opens at `open`; `None` if unterminated.
fn tag_end(b: &[u8], open: usize) -> Option<usize> {
    let rest = &b[open + 2..];
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    if rest.starts_with(b"!--") {
        return find(&rest[3..], b"--}}").map(|p| open + 2 + 3 + p + 4);
    }
    if rest.starts_with(b"!") {
        return find(rest, b"}}").map(|p| open + 2 + p + 2);
    }
    // Inside a tag, `}}` may appear in a string literal or a `[...]` path segment.
    let mut quote: Option<u8> = None;
    let mut j = 0;
    while j < rest.len() {
        let c = rest[j];
        match quote {
            Some(_) if c == b'\\' => j += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, b'"' | b'\'') => quote = Some(c),
            None if c == b'[' => quote = Some(b']'),
            None if rest[j..].starts_with(b"}}") => return Some(open + 2 + j + 2),
            None => {}
        }
        j += 1;
    }
    None
}

/// How the tag whose text between `{{` and `}}` is `inner` nests.
fn tag_kind(inner: &str) -> Tag {
    let s = inner.trim_start_matches('~').trim_start();
    let Some(first) = s.chars().next() else {
        return Tag::Other;
    };
    let after = s[1..].trim_start();
    match first {
        '#' if after.starts_with('*') => Tag::Decorator,
        '#' => Tag::Open,
        '*' => Tag::Decorator,
        '/' => Tag::Close,
        // `{{^}}` alone is `else`; `{{^name}}` opens an inverted block.
        '^' if after.trim_end_matches('~').trim().is_empty() => Tag::Other,
        '^' => Tag::Open,
        _ => Tag::Other,
    }
}

/// A cut at `at` (a line start) is safe unless whitespace control reaches over it.
fn may_cut(source: &str, at: usize) -> bool {
    let before = &source[source[..at - 1].rfind('\n').map_or(0, |p| p + 1)..at];
    let after = &source[at..source[at..].find('\n').map_or(source.len(), |p| at + p)];
    !before.contains("~}}") && !after.contains("{{~")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str, target: usize) -> Option<Vec<(&str, usize)>> {
        split(source, target).map(|p| p.iter().map(|p| (p.text, p.lines_before)).collect())
    }

    #[test]
    fn cuts_only_at_line_starts_outside_blocks() {
        let src = "a {{x}}\n{{#if y}}\nb\n{{else}}\nc\n{{/if}}\nd\ne";
        assert_eq!(
            texts(src, 1).unwrap(),
            vec![
                ("a {{x}}\n", 0),
                ("{{#if y}}\nb\n{{else}}\nc\n{{/if}}\n", 1),
                ("d\n", 6),
                ("e", 7),
            ]
        );
        let joined: String = split(src, 1).unwrap().iter().map(|p| p.text).collect();
        assert_eq!(joined, src);
    }

    #[test]
    fn pieces_reach_the_target_size() {
        let src = "x\n".repeat(10);
        assert_eq!(
            texts(&src, 6).unwrap(),
            vec![
                ("x\nx\nx\n", 0),
                ("x\nx\nx\n", 3),
                ("x\nx\nx\n", 6),
                ("x\n", 9)
            ]
        );
    }

    #[test]
    fn tags_spanning_lines_strings_and_comments_are_not_cut() {
        let src = "{{join\n vars.l \"}}\n\"}}\n{{!-- a\n}} --}}\n{{! b\n}}\n{{[a}}\n]}}\nz";
        assert_eq!(
            texts(src, 1).unwrap(),
            vec![
                ("{{join\n vars.l \"}}\n\"}}\n", 0),
                ("{{!-- a\n}} --}}\n", 3),
                ("{{! b\n}}\n", 5),
                ("{{[a}}\n]}}\n", 7),
                ("z", 9),
            ]
        );
    }

    #[test]
    fn escaped_braces_are_text() {
        assert_eq!(
            texts("\\{{#if x}}\ny", 1).unwrap(),
            vec![("\\{{#if x}}\n", 0), ("y", 1)]
        );
        assert_eq!(texts("\\\\{{#if x}}\ny", 1), None);
    }

    #[test]
    fn inverted_blocks_nest_and_bare_caret_is_else() {
        assert_eq!(
            texts("{{^x}}\na\n{{^}}\nb\n{{/x}}\nc", 1).unwrap(),
            vec![("{{^x}}\na\n{{^}}\nb\n{{/x}}\n", 0), ("c", 5)]
        );
    }

    #[test]
    fn whitespace_control_across_a_line_end_forbids_the_cut() {
        assert_eq!(
            texts("a {{x~}}\nb\n   {{~y}} c\nd", 1).unwrap(),
            vec![("a {{x~}}\nb\n   {{~y}} c\n", 0), ("d", 3)]
        );
    }

    #[test]
    fn templates_that_must_stay_whole() {
        for src in [
            "{{{{raw}}}}\n{{x}}\n{{{{/raw}}}}\n",
            "{{#*inline \"p\"}}x{{/inline}}\n{{> p}}\n",
            "{{*dec}}\na\n",
            "{{#if x}}\na\n",
            "a\n{{/if}}\n",
            "{{x\n",
        ] {
            assert_eq!(texts(src, 1), None, "{src}");
        }
    }
}
