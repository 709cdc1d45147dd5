//! Every schema error of a role file, not only the first. Deserializing stops at the first
//! value that does not fit the schema, so after each error the statement that holds it
//! (`key = value`) is blanked out, newlines kept so that every later span still points into
//! the file as written, and the file is read again for the next one.

use std::ops::Range;

use super::model::{self, RoleFile};

/// Most errors one file reports; past that the rest is noise.
const MAX_ERRORS: usize = 50;

/// One schema error: its byte offset in the file and its message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SchemaError {
    /// Where it is.
    pub offset: usize,
    /// What is wrong (one line), with a hint where one helps.
    pub message: String,
}

/// `first` (the error reading `text` gave) and every schema error after it, in the order
/// the file is read. A syntax error is the only one: nothing after it can be read.
pub(super) fn all(text: &str, first: &toml::de::Error) -> Vec<SchemaError> {
    let mut layout = Layout::default();
    if let Ok(doc) = toml_edit::ImDocument::parse(text) {
        layout.table(doc.as_table(), None);
    }
    let mut errors = Vec::new();
    let mut blanked = text.as_bytes().to_vec();
    let mut removed: Vec<usize> = Vec::new();
    let mut error = Some(first.clone());
    let mut rounds = 0;
    while let Some(e) = error.take() {
        rounds += 1;
        if errors.len() >= MAX_ERRORS || rounds > 2 * MAX_ERRORS {
            break;
        }
        let offset = e.span().map_or(0, |s| s.start);
        let message = e.message().trim_end().replace('\n', ", ");
        // A required key blanked after its own error is now missing: that was said
        // already, so its whole table goes, and the reading goes on after it.
        let gone = removed
            .iter()
            .rev()
            .find(|&&i| message == format!("missing field `{}`", layout.statements[i].key));
        let ranges: Vec<Range<usize>> = match gone {
            Some(&i) => {
                let Some(table) = layout.statements[i].table else {
                    break;
                };
                layout.tables[table].clone()
            }
            None => {
                let statement = layout
                    .statements
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.range.contains(&offset))
                    .min_by_key(|(_, s)| s.range.len());
                let hint = statement
                    .and_then(|(_, s)| model::hint(&s.key, &message, &text[s.value.clone()]));
                errors.push(SchemaError {
                    offset,
                    message: match hint {
                        Some(hint) => format!("{message}: {hint}"),
                        None => message,
                    },
                });
                let Some((i, statement)) = statement else {
                    break;
                };
                removed.push(i);
                vec![statement.range.clone()]
            }
        };
        for r in ranges {
            for b in &mut blanked[r] {
                if *b != b'\n' {
                    *b = b' ';
                }
            }
        }
        let Ok(rest) = std::str::from_utf8(&blanked) else {
            break;
        };
        error = toml::from_str::<RoleFile>(rest).err();
    }
    errors
}

/// One `key = value` of a table, wherever it is.
struct Statement {
    key: String,
    /// From the key to the end of the value.
    range: Range<usize>,
    /// The value alone.
    value: Range<usize>,
    /// The table it is in (an index into [`Layout::tables`]); `None` at the top.
    table: Option<usize>,
}

/// Where the statements and tables of a file are.
#[derive(Default)]
struct Layout {
    statements: Vec<Statement>,
    /// Each table's header and statements, its sub-tables' included: what removes it whole.
    tables: Vec<Vec<Range<usize>>>,
}

impl Layout {
    /// Records `table` (the one at index `this`, `None` for the document) and everything
    /// in it; returns the ranges that remove it whole.
    fn table(&mut self, table: &toml_edit::Table, this: Option<usize>) -> Vec<Range<usize>> {
        let mut ranges: Vec<Range<usize>> = table.span().into_iter().collect();
        for (key, item) in table.iter() {
            let mut sub = |layout: &mut Layout, t: &toml_edit::Table| {
                let index = layout.tables.len();
                layout.tables.push(Vec::new());
                let whole = layout.table(t, Some(index));
                layout.tables[index] = whole.clone();
                ranges.extend(whole);
            };
            match item {
                toml_edit::Item::Value(v) => {
                    let span = table.key(key).and_then(toml_edit::Key::span);
                    if let (Some(k), Some(v)) = (span, v.span()) {
                        ranges.push(k.start..v.end);
                        self.statements.push(Statement {
                            key: key.to_owned(),
                            range: k.start..v.end,
                            value: v,
                            table: this,
                        });
                    }
                }
                toml_edit::Item::Table(t) => sub(self, t),
                toml_edit::Item::ArrayOfTables(ts) => {
                    for t in ts.iter() {
                        sub(self, t);
                    }
                }
                toml_edit::Item::None => {}
            }
        }
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<(usize, String)> {
        let first = toml::from_str::<RoleFile>(text).unwrap_err();
        all(text, &first)
            .into_iter()
            .map(|e| (e.offset, e.message))
            .collect()
    }

    #[test]
    fn each_bad_statement_is_reported_once_and_a_blanked_required_key_is_not_missing() {
        let text =
            "[[file]]\npath = 1\nmdoe = 2\ncontent = \"\"\n[[user]]\nname = \"u\"\nshell = 3\n";
        let got = errors(text);
        let at = |needle: &str| text.find(needle).unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].0, at("1\n"));
        assert!(got[0].1.starts_with("invalid type: integer `1`"), "{got:?}");
        assert_eq!(got[1].0, at("mdoe"));
        assert!(got[1].1.starts_with("unknown field `mdoe`"), "{got:?}");
        assert_eq!(got[2].0, at("3\n"));
    }

    #[test]
    fn a_syntax_error_is_the_only_one() {
        assert_eq!(errors("[vars\nx = 1\n").len(), 1);
    }

    #[test]
    fn a_numeric_mode_gets_a_hint() {
        let got = errors("[[file]]\npath = \"/a\"\ncontent = \"\"\nmode = 755\n");
        assert_eq!(
            got[0].1,
            "invalid type: integer `755`, expected a string: mode is a string of octal \
             digits: write mode = \"0755\""
        );
    }
}
