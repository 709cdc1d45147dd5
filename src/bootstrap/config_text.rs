//! The agent config as bootstrap edits it: what the command line names is set, everything
//! else an admin (or an earlier bootstrap) wrote stays, comments and unknown keys included.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::agent::config::offset_of;
use crate::diagnostics::Diagnostic;

/// An agent config as bootstrap writes it.
#[derive(Debug)]
pub(super) struct Edited {
    /// The new text.
    pub text: String,
    /// Whether it edits a config that had settings (else it replaces what was there whole).
    pub edits: bool,
}

/// The agent config bootstrap wants: the existing file with `source` set, and `roles`,
/// `trusted_keys` and the `[vars]` keys set where the command line gives them (comments and
/// every other setting kept), or a fresh one where there is none or only the package's
/// commented template. `path` is where the existing text was read, for its errors.
pub(super) fn config_text(
    path: &Path,
    existing: Option<&str>,
    source: &str,
    roles: &[String],
    keys: &[PathBuf],
    overrides: &Map<String, Value>,
) -> Result<Edited, Diagnostic> {
    let mut doc = match existing {
        Some(text) => text.parse::<toml_edit::DocumentMut>().map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            Diagnostic::at_offset(path, text, offset, e.message().trim_end())
        })?,
        None => toml_edit::DocumentMut::new(),
    };
    let fresh = !doc.contains_key("source");
    if fresh {
        // Nothing set yet: the package's commented template, or no file at all.
        doc = toml_edit::DocumentMut::new();
    }
    doc["source"] = toml_edit::value(source);
    let list = |items: Vec<&str>| {
        let mut a = toml_edit::Array::new();
        a.extend(items);
        toml_edit::value(a)
    };
    if !roles.is_empty() {
        doc["roles"] = list(roles.iter().map(String::as_str).collect());
    }
    if !keys.is_empty() {
        let paths: Vec<String> = keys.iter().map(|p| p.display().to_string()).collect();
        doc["trusted_keys"] = list(paths.iter().map(String::as_str).collect());
    }
    if !overrides.is_empty() {
        if !doc.contains_key("vars") {
            doc["vars"] = toml_edit::Item::Table(toml_edit::Table::new());
        }
        let Some(vars) = doc["vars"].as_table_like_mut() else {
            let text = existing.unwrap_or_default();
            return Err(Diagnostic::at_offset(
                path,
                text,
                offset_of(text, "vars"),
                "vars is not a table: expected [vars] with KEY = VALUE lines",
            ));
        };
        set_vars(vars, overrides);
    }
    Ok(Edited {
        text: if fresh {
            format!("{FRESH_HEADER}{doc}")
        } else {
            doc.to_string()
        },
        edits: !fresh,
    })
}

/// Heads a config bootstrap wrote from nothing.
pub(super) const FRESH_HEADER: &str = "\
# Written by `converge bootstrap`. Running it again sets source, and roles, trusted_keys
# and [vars] keys where its command line names them, and keeps every other setting (see
# man converge and /usr/share/doc/converge/README.md.gz, \"The pull agent\").
";

/// Sets each of `overrides` in `table`, merging into tables already there, so a nested
/// `--var nginx.user=www` keeps the other keys of `nginx`.
fn set_vars(table: &mut dyn toml_edit::TableLike, overrides: &Map<String, Value>) {
    for (k, v) in overrides {
        if let (Value::Object(inner), Some(existing)) =
            (v, table.get_mut(k).and_then(|i| i.as_table_like_mut()))
        {
            set_vars(existing, inner);
            continue;
        }
        match edit_value(v) {
            Some(value) => {
                table.insert(k, toml_edit::Item::Value(value));
            }
            None => {
                table.remove(k);
            }
        }
    }
}

/// A `--var` value as TOML (null has no TOML form and is left out).
fn edit_value(v: &Value) -> Option<toml_edit::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or_default().into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut a = toml_edit::Array::new();
            a.extend(items.iter().filter_map(edit_value));
            toml_edit::Value::Array(a)
        }
        Value::Object(map) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, v) in map {
                if let Some(v) = edit_value(v) {
                    t.insert(k, v);
                }
            }
            toml_edit::Value::InlineTable(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::config::AgentConfig;
    use crate::role::vars;

    const URL: &str = "https://config.example.com/bundle/";

    fn edit(existing: Option<&str>, roles: &[&str], vars: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let mut overrides = Map::new();
        for a in vars {
            vars::merge(&mut overrides, &vars::parse_assignment(a).unwrap());
        }
        config_text(Path::new("a.toml"), existing, URL, &roles, &[], &overrides)
            .unwrap()
            .text
    }

    #[test]
    fn a_fresh_config_names_exactly_what_was_asked() {
        let mut vars = Map::new();
        vars::merge(&mut vars, &vars::parse_assignment("workers=8").unwrap());
        vars::merge(
            &mut vars,
            &vars::parse_assignment("nginx.user=www").unwrap(),
        );
        let keys = [PathBuf::from("/etc/converge/keys/ABC.pub")];
        let roles = ["web".to_owned()];
        let edited = config_text(Path::new("a.toml"), None, URL, &roles, &keys, &vars).unwrap();
        assert!(!edited.edits);
        let text = edited.text;
        assert_eq!(
            text,
            format!(
                "{FRESH_HEADER}source = \"https://config.example.com/bundle/\"\n\
                 roles = [\"web\"]\ntrusted_keys = [\"/etc/converge/keys/ABC.pub\"]\n\n\
                 [vars]\nnginx = {{ user = \"www\" }}\nworkers = 8\n"
            )
        );
        assert!(AgentConfig::parse(Path::new("agent.toml"), &text).is_ok());
    }

    #[test]
    fn an_admins_config_keeps_what_the_command_line_does_not_name() {
        let existing = "# ours\nsource = \"https://old/\"\ninterval = \"10m\" # fast\n\
                        roles = [\"db\"]\nunknown_later = 1\n\n[vars]\n# the NOC\n\
                        admin = \"noc@example.com\"\nnginx = { user = \"www\", workers = 4 }\n";
        let text = edit(Some(existing), &[], &["nginx.workers=8", "tier=gold"]);
        assert_eq!(
            text,
            "# ours\nsource = \"https://config.example.com/bundle/\"\ninterval = \"10m\" # fast\n\
             roles = [\"db\"]\nunknown_later = 1\n\n[vars]\n# the NOC\n\
             admin = \"noc@example.com\"\nnginx = { user = \"www\", workers = 8 }\n\
             tier = \"gold\"\n"
        );
        // The same request again changes nothing.
        assert_eq!(
            edit(Some(&text), &[], &["nginx.workers=8", "tier=gold"]),
            text
        );
        // Roles named on the command line replace the configured ones.
        let text = edit(Some(&text), &["web"], &[]);
        assert!(text.contains("\nroles = [\"web\"]\n"), "{text}");
        assert!(text.contains("admin = \"noc@example.com\""), "{text}");
    }

    #[test]
    fn the_packaged_template_is_replaced_whole() {
        let template = "# converge agent config\n#source = \"https://x/\"\n#roles = [\"web\"]\n";
        let roles = ["web".to_owned()];
        let edited = config_text(
            Path::new("a.toml"),
            Some(template),
            URL,
            &roles,
            &[],
            &Map::new(),
        )
        .unwrap();
        assert!(!edited.edits);
        let text = edited.text;
        assert!(text.starts_with(FRESH_HEADER), "{text}");
        assert!(!text.contains("#source"), "{text}");
    }

    #[test]
    fn vars_that_are_not_a_table_are_located() {
        let e = config_text(
            Path::new("a.toml"),
            Some("source = \"x\"\nvars = 3\n"),
            URL,
            &[],
            &[],
            &vars::parse_assignment("a=1").unwrap(),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("a.toml:2:8: vars is not a table"),
            "{e}"
        );
    }
}
