//! Loading roles from a source tree: parsing, includes (with cycle detection) and vars precedence.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::model::RoleFile;
use super::vars;
use crate::diagnostics::{Diagnostic, Diagnostics, LineIndex, Location};

/// How deep includes may nest; real role hierarchies are a few levels.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 64;

/// A source tree as admins edit it: `roles/`, `templates/`, `files/`, optional `nodes.toml`.
#[derive(Debug, Clone)]
pub struct SourceTree {
    root: PathBuf,
}

impl SourceTree {
    /// Opens a source tree; it must hold a `roles/` directory.
    pub fn open(root: &Path) -> Result<SourceTree, Diagnostic> {
        if !root.join("roles").is_dir() {
            return Err(Diagnostic::new(format!(
                "{} is not a converge source: it has no roles/ directory",
                root.display()
            )));
        }
        Ok(SourceTree {
            root: root.to_path_buf(),
        })
    }

    /// The tree's top directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where templates live.
    pub(crate) fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    /// Where verbatim files live.
    pub(crate) fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }

    /// The path of a role, relative to the tree (how errors name it).
    pub fn role_file(name: &str) -> PathBuf {
        Path::new("roles").join(format!("{name}.toml"))
    }

    /// Names of every role in `roles/`, sorted (nested directories give `dir/name`).
    pub fn role_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        collect_role_names(&self.root.join("roles"), "", &mut names);
        names.sort();
        names
    }
}

fn collect_role_names(dir: &Path, prefix: &str, names: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            collect_role_names(&path, &format!("{prefix}{name}/"), names);
        } else if let Some(stem) = name.strip_suffix(".toml") {
            names.push(format!("{prefix}{stem}"));
        }
    }
}

/// Reads a role, template or partial of a source tree as text. Anything but a regular file
/// (a FIFO, a device, a socket) is refused before a byte is read: opening a FIFO for reading
/// blocks until a writer comes, so one planted in a source would hang every run.
pub(crate) fn read_source_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let Ok(mut file) = crate::system::tree_file::open_if_regular(path)? else {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, device or socket is refused, not read)",
        ));
    };
    // Sized from the file: a role text is kept for the whole run, a doubling buffer with it.
    let size = file.metadata().map_or(0, |m| m.len() as usize);
    let mut text = String::with_capacity(size);
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// A parsed role with the text it came from (kept for error excerpts).
#[derive(Debug)]
pub struct Role {
    /// The role's name, e.g. `web`.
    pub name: String,
    /// The role file relative to the source tree, e.g. `roles/web.toml`.
    pub file: Arc<Path>,
    /// The file's text.
    pub text: String,
    /// The parsed contents.
    pub spec: RoleFile,
    /// Line starts of `text`: a role with thousands of resources is located in O(log n) each.
    lines: LineIndex,
}

impl Role {
    /// An error at a byte offset of this role file.
    pub(crate) fn error_at(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.location(offset), &self.text, message)
    }

    /// `roles/web.toml:LINE:COL` of a byte offset.
    pub fn location(&self, offset: usize) -> Location {
        self.lines.locate(&self.file, &self.text, offset)
    }
}

/// The roles a host gets, includes first, each once, and the variables they add up to.
#[derive(Debug)]
pub struct RoleSet {
    /// Roles in precedence order: an included role comes before the role including it.
    pub roles: Vec<Role>,
    /// Role vars merged by precedence, then host overrides on top.
    pub vars: Map<String, Value>,
    /// The roles asked for, which the set was loaded from.
    pub names: Vec<String>,
}

/// Loads `names` and everything they include, every table of every role parsed and checked.
/// Errors from every role are collected.
pub fn load(
    tree: &SourceTree,
    names: &[String],
    overrides: &Map<String, Value>,
) -> Result<RoleSet, Diagnostics> {
    load_with(tree, names, overrides, false)
}

/// [`load`] for planning: each role's `[[file]]` tables are left as text (see
/// [`super::sections::parse_deferred`]), to be parsed one at a time as they are planned. On
/// any error, the errors are [`load`]'s.
pub fn load_deferred(
    tree: &SourceTree,
    names: &[String],
    overrides: &Map<String, Value>,
) -> Result<RoleSet, Diagnostics> {
    // Read whole, a broken [[file]] table may hide errors the deferred read would give
    // (the includes of its role are not read): only the whole read's errors are exact.
    load_with(tree, names, overrides, true).or_else(|_| load(tree, names, overrides))
}

fn load_with(
    tree: &SourceTree,
    names: &[String],
    overrides: &Map<String, Value>,
    deferred: bool,
) -> Result<RoleSet, Diagnostics> {
    let mut loader = Loader {
        tree,
        deferred,
        roles: Vec::new(),
        done: BTreeSet::new(),
        stack: Vec::new(),
        errors: Diagnostics::default(),
    };
    for name in names {
        loader.visit(name, None);
    }
    let Loader { roles, errors, .. } = loader;
    let mut merged = Map::new();
    for role in &roles {
        vars::merge(&mut merged, &vars::table_to_json(&role.spec.vars));
    }
    vars::merge(&mut merged, overrides);
    errors.into_result(RoleSet {
        roles,
        vars: merged,
        names: names.to_vec(),
    })
}

struct Loader<'a> {
    tree: &'a SourceTree,
    /// Leave `[[file]]` tables unparsed.
    deferred: bool,
    roles: Vec<Role>,
    done: BTreeSet<String>,
    stack: Vec<String>,
    errors: Diagnostics,
}

impl Loader<'_> {
    /// Depth-first: includes are loaded (and so take lower precedence) before the includer.
    /// `from` is the role and byte offset of the include that asked for this one.
    fn visit(&mut self, name: &str, from: Option<(&Role, usize)>) {
        if self.done.contains(name) {
            return;
        }
        let located = |message: String| match from {
            Some((role, offset)) => role.error_at(offset, message),
            None => Diagnostic::new(message),
        };
        if let Some(pos) = self.stack.iter().position(|n| n == name) {
            let mut cycle = self.stack[pos..].to_vec();
            cycle.push(name.to_owned());
            let msg = format!("include cycle: {}", cycle.join(" -> "));
            self.errors.push(located(msg));
            return;
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            // Loading recurses per level: a chain of thousands would overflow the stack.
            let mut chain: Vec<&str> = self.stack.iter().map(String::as_str).collect();
            chain.push(name);
            let shown = if chain.len() > 6 {
                let (head, tail) = (&chain[..3], &chain[chain.len() - 2..]);
                format!("{} -> ... -> {}", head.join(" -> "), tail.join(" -> "))
            } else {
                chain.join(" -> ")
            };
            self.errors.push(located(format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH} roles: {shown}"
            )));
            return;
        }
        if !valid_role_name(name) {
            self.errors.push(located(format!(
                "invalid role name '{name}': expected letters, digits, '-', '_' and '/' between names"
            )));
            return;
        }
        let file = SourceTree::role_file(name);
        let text = match read_source_text(&self.tree.root.join(&file)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let msg = format!("role '{name}' not found: there is no {}", file.display());
                self.errors.push(located(msg));
                return;
            }
            Err(e) => {
                self.errors
                    .push(located(format!("cannot read {}: {e}", file.display())));
                return;
            }
        };
        let parsed = if self.deferred {
            super::sections::parse_deferred(&text)
        } else {
            super::sections::parse(&text)
        };
        let spec = match parsed {
            Ok(spec) => spec,
            Err(e) => {
                let sensitive = declares_sensitive(&text);
                for found in super::schema_errors::all(&text, &e) {
                    let mut d = Diagnostic::at_offset(&file, &text, found.offset, found.message);
                    if sensitive {
                        d.excerpt = None;
                        d.message
                            .push_str(" (line not shown: the file declares sensitive content)");
                    }
                    self.errors.push(d);
                }
                self.done.insert(name.to_owned());
                return;
            }
        };
        let role = Role {
            name: name.to_owned(),
            file: file.into(),
            lines: LineIndex::new(&text),
            text,
            spec,
        };
        self.stack.push(name.to_owned());
        for include in &role.spec.include {
            self.visit(include.get_ref(), Some((&role, include.span().start)));
        }
        self.stack.pop();
        self.done.insert(name.to_owned());
        self.roles.push(role);
    }
}

/// Whether a role that does not parse may hold a secret near its error. A broken file
/// cannot say which table a line belongs to (an unclosed string runs on), so any
/// `sensitive = true` in it hides every syntax error's line.
fn declares_sensitive(text: &str) -> bool {
    text.lines().any(|line| {
        line.split_once("sensitive").is_some_and(|(_, rest)| {
            rest.trim_start()
                .strip_prefix('=')
                .is_some_and(|v| v.trim_start().starts_with("true"))
        })
    })
}

/// Whether `name` can name a role file: `/`-separated parts of letters, digits, `-`, `_`, `.`.
pub fn valid_role_name(name: &str) -> bool {
    name.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, SourceTree) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("roles")).unwrap();
        let t = SourceTree::open(dir.path()).unwrap();
        (dir, t)
    }

    #[test]
    fn includes_load_first_and_vars_follow_precedence() {
        let (_d, t) = tree(&[
            (
                "roles/base.toml",
                "[vars]\na = 1\nb = 1\n[vars.t]\nx = 1\ny = 1\n",
            ),
            (
                "roles/web.toml",
                "include = [\"base\"]\n[vars]\nb = 2\n[vars.t]\ny = 2\n",
            ),
        ]);
        let over = json!({"t": {"x": 3}});
        let set = load(&t, &["web".into()], over.as_object().unwrap()).unwrap();
        let names: Vec<_> = set.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["base", "web"]);
        assert_eq!(
            Value::Object(set.vars),
            json!({"a": 1, "b": 2, "t": {"x": 3, "y": 2}})
        );
    }

    #[test]
    fn include_cycle_names_the_cycle_at_the_include() {
        let (_d, t) = tree(&[
            ("roles/a.toml", "include = [\"b\"]\n"),
            ("roles/b.toml", "\ninclude = [\"a\"]\n"),
        ]);
        let err = load(&t, &["a".into()], &Map::new()).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(
            err.0[0].headline(),
            "roles/b.toml:2:12: include cycle: a -> b -> a"
        );
    }

    #[test]
    fn a_chain_of_ten_thousand_includes_is_an_error_not_a_crash() {
        let files: Vec<(String, String)> = (0..10_000)
            .map(|i| {
                (
                    format!("roles/r{i:05}.toml"),
                    format!("include = [\"r{:05}\"]\n", i + 1),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (_d, t) = tree(&refs);
        let err = load(&t, &["r00000".into()], &Map::new()).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(
            err.0[0].headline(),
            "roles/r00063.toml:1:12: includes nest deeper than 64 roles: \
             r00000 -> r00001 -> r00002 -> ... -> r00063 -> r00064"
        );
    }

    #[test]
    fn unknown_key_and_missing_role_are_both_reported() {
        let (_d, t) = tree(&[(
            "roles/a.toml",
            "include = [\"nope\"]\n[[file]]\npath = \"/x\"\nmdoe = \"0644\"\n",
        )]);
        let err = load(&t, &["a".into()], &Map::new()).unwrap_err();
        let heads: Vec<_> = err.0.iter().map(|d| d.headline()).collect();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(
            heads[0].starts_with("roles/a.toml:4:1: unknown field `mdoe`"),
            "{heads:?}"
        );
    }
}
