//! The layers of `src/` run one way: every import of another top-level module names one on
//! a lower row of ARCHITECTURE.md's layer table, so the table is the one place the layers
//! are written down and the code cannot drift from it. The writing token is minted only by
//! the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The rows of the layer table, top first: each row's module names (`render.rs` and
/// `render/` both name `render`).
fn layer_table(architecture: &str) -> Vec<Vec<String>> {
    let section = architecture
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Layers section holds the table in a ``` block");
    let mut rows = Vec::new();
    for line in block.lines() {
        // A line that starts with a space carries on the description of the row above.
        if line.is_empty() || line.starts_with(' ') {
            continue;
        }
        let modules: Vec<String> = line
            .split_whitespace()
            .map_while(module_name)
            .map(str::to_owned)
            .collect();
        assert!(
            !modules.is_empty(),
            "ARCHITECTURE.md layer table: row `{line}` names no module (`name/` or `name.rs`)"
        );
        rows.push(modules);
    }
    rows
}

/// `engine/` or `engine.rs` → `engine`; `None` for a word of a description.
fn module_name(token: &str) -> Option<&str> {
    let name = token
        .strip_suffix('/')
        .or_else(|| token.strip_suffix(".rs"))?;
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to: `src/engine/notify.rs` → `engine`.
fn top_module(relative: &Path) -> String {
    let first = relative.components().next().unwrap().as_os_str();
    let first = first.to_str().unwrap();
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

/// One use of another module: the file's line, the module named, and the line's text.
struct Use {
    line: usize,
    module: String,
    text: String,
}

/// The code of `source` with every comment line blanked (line numbers kept): a doc link
/// is not an import.
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module that `code` names through `root::` (`crate`, or `converge` in
/// the binary): `use crate::a::b`, `crate::a::f()`, `use crate::{a, b::{c, d}}`.
fn uses(code: &str, root: &str) -> Vec<Use> {
    let needle = format!("{root}::");
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let text_of = |line: usize| code.lines().nth(line - 1).unwrap_or("").trim().to_owned();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(hit) = code[from..].find(&needle) {
        let start = from + hit;
        from = start + needle.len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group's top-level paths, each with its own line.
            let mut depth = 0;
            let mut segment_start = 0;
            let mut segments = Vec::new();
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        segments.push((segment_start, &group[segment_start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        segments.push((segment_start, &group[segment_start..i]));
                        segment_start = i + 1;
                    }
                    _ => {}
                }
            }
            for (offset, segment) in segments {
                let trimmed = segment.trim_start();
                let name = identifier(trimmed);
                if name.is_empty() || name == "self" {
                    continue;
                }
                let at = from + 1 + offset + (segment.len() - trimmed.len());
                let line = line_of(at);
                found.push(Use {
                    line,
                    module: name.to_owned(),
                    text: text_of(line),
                });
            }
        } else {
            let name = identifier(rest);
            if !name.is_empty() {
                let line = line_of(start);
                found.push(Use {
                    line,
                    module: name.to_owned(),
                    text: text_of(line),
                });
            }
        }
    }
    found
}

fn identifier(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// What is wrong with `src/` against the table in `architecture`: one line per offence.
fn offences(root: &Path, architecture: &str) -> Vec<String> {
    let rows = layer_table(architecture);
    let mut row_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for m in row {
            if row_of.insert(m.clone(), r).is_some() {
                wrong.push(format!("ARCHITECTURE.md: module `{m}` stands on two rows"));
            }
        }
    }
    let src = root.join("src");
    let main = fs::read_to_string(src.join("main.rs")).unwrap();
    // The binary's own modules reach the library as `converge::`.
    let mut binary: BTreeSet<String> = BTreeSet::from(["main".to_owned()]);
    for line in main.lines() {
        if let Some(name) = line.trim().strip_prefix("mod ") {
            binary.insert(name.trim_end_matches(';').to_owned());
        }
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut seen = BTreeSet::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let shown = Path::new("src").join(relative);
        let from = top_module(relative);
        if from == "lib" {
            continue;
        }
        seen.insert(from.clone());
        let Some(&from_row) = row_of.get(&from) else {
            wrong.push(format!(
                "{}: module `{from}` stands on no row of ARCHITECTURE.md's layer table",
                shown.display()
            ));
            continue;
        };
        let code = code_of(&fs::read_to_string(path).unwrap());
        let mut all = uses(&code, "crate");
        if binary.contains(&from) {
            all.extend(uses(&code, "converge"));
        }
        for u in all {
            if u.module == from {
                continue;
            }
            let verdict = match row_of.get(&u.module) {
                None => format!("`{}` is on no row of the layer table", u.module),
                Some(&to_row) if to_row > from_row => continue,
                Some(&to_row) if to_row == from_row => format!(
                    "`{from}` uses `{}` on its own row (row {})",
                    u.module,
                    from_row + 1
                ),
                Some(&to_row) => format!(
                    "`{from}` (row {}) uses `{}` (row {}), which is above it",
                    from_row + 1,
                    u.module,
                    to_row + 1
                ),
            };
            wrong.push(format!(
                "{}:{}: `{}`: {verdict}",
                shown.display(),
                u.line,
                u.text
            ));
        }
        // Rust cannot keep a sibling module from a `pub(crate)` constructor: this does.
        for (n, line) in code.lines().enumerate() {
            for (at, _) in line.match_indices("Applying::") {
                let called = identifier(&line[at + "Applying::".len()..]);
                let allowed = match called {
                    "by_the_engine" => from == "engine",
                    "for_tests" => from == "system",
                    _ => from == "system",
                };
                if !allowed {
                    wrong.push(format!(
                        "{}:{}: `{}`: only the engine mints the writing token",
                        shown.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    for m in row_of.keys() {
        if !seen.contains(m) {
            wrong.push(format!(
                "ARCHITECTURE.md: the layer table names `{m}`, which src/ does not have"
            ));
        }
    }
    wrong
}

#[test]
fn imports_run_down_the_layer_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let wrong = offences(root, &architecture);
    assert!(
        wrong.is_empty(),
        "imports against ARCHITECTURE.md's layer table:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_table_is_read_as_written() {
    let table = "# x\n\n## Layers\n\nWords.\n\n```\ntop.rs  cmds/   what it does\n               \
                 more words\nlow/            ground\n```\n\n## Next\n";
    assert_eq!(
        layer_table(table),
        vec![
            vec!["top".to_owned(), "cmds".to_owned()],
            vec!["low".to_owned()]
        ]
    );
}

#[test]
fn a_grouped_import_names_each_module_on_its_line() {
    let code = "use crate::{\n    engine::Applying,\n    system::{Host, System},\n};\nfn f() { crate::report::x(); my_crate::no(); }\n";
    let found: Vec<(usize, String)> = uses(code, "crate")
        .into_iter()
        .map(|u| (u.line, u.module))
        .collect();
    assert_eq!(
        found,
        vec![
            (2, "engine".to_owned()),
            (3, "system".to_owned()),
            (5, "report".to_owned())
        ]
    );
}
