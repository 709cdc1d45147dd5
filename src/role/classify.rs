//! `nodes.toml`: which roles a host gets, by host name globs and fact matches.
//!
//! ```toml
//! [[node]]
//! hostname = "web-*"            # glob, matched against the host name and the fqdn
//! roles = ["web"]
//!
//! [[node]]
//! facts = { "os.id" = "debian", "cpus" = 8 }   # dotted fact paths; strings may be globs
//! roles = ["base"]
//! ```
//! Every matching entry contributes its roles, in file order, each role once. An entry may
//! also set `rollout_wariness = 0.0 ... 1.0` for the hosts it matches (the last matching
//! entry that sets it wins; agent.toml's own `rollout_wariness` is above it).
//!
//! This is the one place that reads `nodes.toml`: runs, `render`, `validate` and `publish`
//! all come here.

use std::collections::BTreeMap;
use std::path::Path;

use globset::Glob;
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::SourceTree;
use crate::diagnostics::{Diagnostic, Diagnostics};

/// The file name in a bundle.
pub(crate) const NODES_FILE: &str = "nodes.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesFile {
    #[serde(default)]
    node: Vec<Spanned<NodeSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    hostname: Option<Spanned<String>>,
    #[serde(default)]
    facts: BTreeMap<String, Spanned<toml::Value>>,
    roles: Vec<Spanned<String>>,
    /// How eager matching hosts are to take a rollout's candidate (see
    /// `bundle::rollout::Wariness`); the last matching entry that sets it wins.
    rollout_wariness: Option<Spanned<f64>>,
}

/// The tree's `nodes.toml`, when it has one.
fn read(tree: &SourceTree) -> Option<String> {
    std::fs::read_to_string(tree.root().join(NODES_FILE)).ok()
}

/// Every problem in the tree's `nodes.toml` (none when it has none), as [`check`] finds them.
pub fn check_tree(tree: &SourceTree) -> Diagnostics {
    match read(tree) {
        Some(text) => check(Path::new(NODES_FILE), &text, &tree.role_names()),
        None => Diagnostics::default(),
    }
}

/// The roles of a run: `requested` (the command line) when given, else `configured` (the
/// agent config), else what the tree's `nodes.toml` gives a host with `facts`.
pub fn roles(
    tree: &SourceTree,
    requested: &[String],
    configured: &[String],
    facts: &Value,
) -> Result<Vec<String>, Diagnostics> {
    if !requested.is_empty() {
        return Ok(requested.to_vec());
    }
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    let Some(text) = read(tree) else {
        return Err(Diagnostic::new(format!(
            "no roles: pass --role NAME (repeatable), set roles in the agent config, or add {NODES_FILE} to the source"
        ))
        .into());
    };
    roles_for_checked(Path::new(NODES_FILE), &text, facts, &tree.role_names())
}

fn parse(file: &Path, text: &str) -> Result<NodesFile, Diagnostics> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let message = e.message().trim_end().replace('\n', ", ");
        Diagnostic::at_offset(file, text, offset, message).into()
    })
}

/// Every problem in `nodes.toml` that needs no host to find: syntax, unknown keys, bad
/// globs, and roles that `known` (the source's roles) does not have.
pub fn check(file: &Path, text: &str, known: &[String]) -> Diagnostics {
    let nodes = match parse(file, text) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let mut errors = Diagnostics::default();
    for node in &nodes.node {
        let spec = node.get_ref();
        if let Some(pattern) = &spec.hostname {
            if let Err(e) = Glob::new(pattern.get_ref()) {
                let msg = format!("invalid hostname glob: {e}");
                errors.push(Diagnostic::at_offset(file, text, pattern.span().start, msg));
            }
        }
        for e in fact_glob_errors(file, text, spec) {
            errors.push(e);
        }
        if let Some(w) = spec.rollout_wariness.as_ref().filter(|w| !wariness_ok(w)) {
            let msg = format!(
                "rollout_wariness {} is out of range: expected a number from 0.0 (takes candidates first) to 1.0 (last)",
                w.get_ref()
            );
            errors.push(Diagnostic::at_offset(file, text, w.span().start, msg));
        }
        for role in &spec.roles {
            if !known.iter().any(|k| k == role.get_ref()) {
                let msg = format!(
                    "role '{}' not found: there is no roles/{}.toml",
                    role.get_ref(),
                    role.get_ref()
                );
                errors.push(Diagnostic::at_offset(file, text, role.span().start, msg));
            }
        }
    }
    errors
}

/// [`check`] against the source's roles, then [`roles_for`]: every problem located, then
/// this host's roles.
fn roles_for_checked(
    file: &Path,
    text: &str,
    facts: &Value,
    known: &[String],
) -> Result<Vec<String>, Diagnostics> {
    let errors = check(file, text, known);
    if !errors.is_empty() {
        return Err(errors);
    }
    roles_for(file, text, facts)
}

/// The roles that `nodes.toml` (text `text`, shown as `file`) gives a host with `facts`.
pub(crate) fn roles_for(
    file: &Path,
    text: &str,
    facts: &Value,
) -> Result<Vec<String>, Diagnostics> {
    let nodes = parse(file, text)?;
    let names = host_names(facts);
    let mut roles: Vec<String> = Vec::new();
    for spec in matching(file, text, &nodes, facts)? {
        for r in &spec.roles {
            if !roles.contains(r.get_ref()) {
                roles.push(r.get_ref().clone());
            }
        }
    }
    if roles.is_empty() {
        return Err(Diagnostic::new(format!(
            "{}: no [[node]] entry matches this host ({})",
            file.display(),
            names.join(", ")
        ))
        .into());
    }
    Ok(roles)
}

/// The rollout wariness (0.0 to 1.0) the tree's `nodes.toml` gives a host with `facts`: the
/// last matching entry's that sets one; `None` when none does or the file has errors (which
/// `validate` and the run report on their own).
pub fn rollout_wariness(tree: &SourceTree, facts: &Value) -> Option<f64> {
    let text = read(tree)?;
    let file = Path::new(NODES_FILE);
    let nodes = parse(file, &text).ok()?;
    matching(file, &text, &nodes, facts)
        .ok()?
        .into_iter()
        .filter_map(|spec| spec.rollout_wariness.as_ref())
        .filter(|w| wariness_ok(w))
        .map(|w| *w.get_ref())
        .next_back()
}

fn wariness_ok(w: &Spanned<f64>) -> bool {
    (0.0..=1.0).contains(w.get_ref())
}

fn host_names(facts: &Value) -> Vec<&str> {
    ["hostname", "fqdn"]
        .iter()
        .filter_map(|k| facts.get(k).and_then(Value::as_str))
        .collect()
}

/// The entries of `nodes` that match a host with `facts`, in file order.
fn matching<'n>(
    file: &Path,
    text: &str,
    nodes: &'n NodesFile,
    facts: &Value,
) -> Result<Vec<&'n NodeSpec>, Diagnostics> {
    let names = host_names(facts);
    let mut found = Vec::new();
    let mut errors = Diagnostics::default();
    for node in &nodes.node {
        let spec = node.get_ref();
        let mut matched = true;
        if let Some(pattern) = &spec.hostname {
            match Glob::new(pattern.get_ref()) {
                Ok(g) => {
                    let m = g.compile_matcher();
                    matched &= names.iter().any(|n| m.is_match(n));
                }
                Err(e) => {
                    errors.push(Diagnostic::at_offset(
                        file,
                        text,
                        pattern.span().start,
                        format!("invalid hostname glob: {e}"),
                    ));
                    continue;
                }
            }
        }
        let bad_globs = fact_glob_errors(file, text, spec);
        if !bad_globs.is_empty() {
            // An invalid glob would match nothing and silently drop the entry's roles.
            bad_globs.into_iter().for_each(|e| errors.push(e));
            continue;
        }
        for (path, want) in &spec.facts {
            let live = path.split('.').try_fold(facts, |v, k| v.get(k));
            matched &= live.is_some_and(|live| fact_matches(live, want.get_ref()));
        }
        if matched {
            found.push(spec);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(found)
}

/// The fact patterns of `spec` that are not valid globs, located.
fn fact_glob_errors(file: &Path, text: &str, spec: &NodeSpec) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for (path, want) in &spec.facts {
        if let toml::Value::String(pattern) = want.get_ref() {
            if let Err(e) = Glob::new(pattern) {
                let msg = format!("invalid glob for fact '{path}': {e}");
                errors.push(Diagnostic::at_offset(file, text, want.span().start, msg));
            }
        }
    }
    errors
}

/// Strings compare as globs against the fact's text; other values compare exactly.
fn fact_matches(live: &Value, want: &toml::Value) -> bool {
    let live_text = match live {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match want {
        toml::Value::String(pattern) => Glob::new(pattern)
            .map(|g| g.compile_matcher().is_match(&live_text))
            .unwrap_or(false),
        toml::Value::Integer(i) => live.as_i64() == Some(*i),
        toml::Value::Boolean(b) => live.as_bool() == Some(*b),
        toml::Value::Float(f) => live.as_f64() == Some(*f),
        other => live_text == other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NODES: &str = r#"
[[node]]
hostname = "web-*"
roles = ["web"]

[[node]]
facts = { "os.id" = "debian", cpus = 4 }
roles = ["base", "tuned"]

[[node]]
hostname = "*.example.com"
roles = ["base"]
"#;

    #[test]
    fn every_matching_entry_contributes_roles_once() {
        let facts = json!({"hostname": "web-3", "fqdn": "web-3.example.com", "os": {"id": "debian"}, "cpus": 4});
        let roles = roles_for(Path::new("nodes.toml"), NODES, &facts).unwrap();
        assert_eq!(roles, ["web", "base", "tuned"]);
    }

    #[test]
    fn no_match_is_an_error_naming_the_host() {
        let facts = json!({"hostname": "db-1", "fqdn": "db-1", "os": {"id": "rhel"}, "cpus": 4});
        let e = roles_for(Path::new("nodes.toml"), NODES, &facts).unwrap_err();
        assert_eq!(
            e.0[0].headline(),
            "nodes.toml: no [[node]] entry matches this host (db-1, db-1)"
        );
    }

    #[test]
    fn check_finds_unknown_roles_and_bad_globs_with_their_place() {
        let text = "[[node]]\nhostname = \"web-[\"\nroles = [\"web\", \"nope\"]\n";
        let e = check(Path::new("nodes.toml"), text, &["web".to_owned()]);
        let heads: Vec<String> = e.0.iter().map(|d| d.headline()).collect();
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert!(
            heads[0].starts_with("nodes.toml:2:12: invalid hostname glob"),
            "{heads:?}"
        );
        assert_eq!(
            heads[1],
            "nodes.toml:3:17: role 'nope' not found: there is no roles/nope.toml"
        );
    }

    #[test]
    fn an_invalid_fact_glob_is_located_not_a_silent_mismatch() {
        let text = "[[node]]\nfacts = { \"os.id\" = \"deb[ian\" }\nroles = [\"web\"]\n";
        let e = check(Path::new("nodes.toml"), text, &["web".to_owned()]);
        let heads: Vec<String> = e.0.iter().map(|d| d.headline()).collect();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(
            heads[0].starts_with("nodes.toml:2:21: invalid glob for fact 'os.id': "),
            "{heads:?}"
        );
        let facts = json!({"hostname": "h", "os": {"id": "debian"}});
        let e = roles_for(Path::new("nodes.toml"), text, &facts).unwrap_err();
        assert_eq!(e.0[0].headline(), heads[0]);
    }

    #[test]
    fn unknown_keys_are_located() {
        let e = roles_for(
            Path::new("nodes.toml"),
            "[[node]]\nhost = \"x\"\nroles = []\n",
            &json!({}),
        )
        .unwrap_err();
        assert!(
            e.0[0]
                .headline()
                .starts_with("nodes.toml:2:1: unknown field `host`"),
            "{e}"
        );
    }
}
