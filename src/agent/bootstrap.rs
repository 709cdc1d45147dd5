//! `converge bootstrap`: from a fresh host to a managed one in one idempotent step.
//!
//! It installs the trusted keys, writes the agent config, runs the first converge through the
//! agent's own run (lock, fetch, signature check, last-run.json, metrics), and enables the
//! timer. Each step compares before it writes, so a second bootstrap with the same arguments
//! changes nothing and says so. Under `--root` every path is inside the tree, and the timer
//! is enabled offline, so an image built that way boots managed.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::config::{AgentConfig, ConfigError, DEFAULT_PATH};
use crate::bundle::{self, RedactedUrl, TrustedKey};
use crate::engine::Applying;
use crate::pipeline::{self, Finished, Request, RunError, Source};
use crate::report::Mode;
use crate::role::vars::{self, AssignmentError};
use crate::system::fs::Attrs;
use crate::system::services::UnitVerb;
use crate::system::{System, SystemError};

/// Where bootstrap installs trusted public keys, inside the root.
pub const KEYS_DIR: &str = "/etc/converge/keys";
/// The unit that schedules runs.
pub const TIMER: &str = "converge.timer";

/// What bootstrap was asked to set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bundle's URL (or a directory / `file://` bundle).
    pub source: String,
    /// Roles for this host; none: `nodes.toml` in the bundle decides.
    pub roles: Vec<String>,
    /// Trusted public keys: key files, or a key's base64 line itself.
    pub keys: Vec<String>,
    /// Host variables, `KEY=VALUE`.
    pub vars: Vec<String>,
}

/// One thing bootstrap looked after, and whether it had to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it is about: a path, the source, a unit.
    pub subject: String,
    /// Whether this bootstrap changed it.
    pub changed: bool,
    /// What happened, in a few words.
    pub detail: String,
}

/// A finished bootstrap.
#[derive(Debug)]
pub struct Outcome {
    /// The first converge.
    pub run: Finished,
    /// The agent config as it now is.
    pub config: AgentConfig,
    /// Whether anything changed: config, keys, the host, the timer.
    pub changed: bool,
}

/// Why bootstrap stopped. Steps reported before the error stay done.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A `--key` is neither a readable key file nor a key.
    #[error("--key {arg}: {reason}")]
    Key {
        /// The argument as given.
        arg: String,
        /// Why it is not a key.
        reason: String,
    },
    /// A `--var` is not `KEY=VALUE`.
    #[error(transparent)]
    Var(#[from] AssignmentError),
    /// The source is not a URL or bundle converge can read.
    #[error("--source {}: {reason}", RedactedUrl(.url))]
    Source {
        /// The source as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// With `--key`: the bundle is not signed by a given key (or cannot be fetched at all);
    /// nothing was written.
    #[error("refusing {}: {reason}; nothing was changed", RedactedUrl(.url))]
    Refused {
        /// The source.
        url: String,
        /// What failed: the signature check, the fetch.
        reason: String,
    },
    /// The existing agent config cannot be edited.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Writing a file or talking to systemd failed.
    #[error(transparent)]
    System(#[from] SystemError),
    /// The first run could not run at all (no verified bundle, bad roles, lock held).
    #[error(transparent)]
    Run(#[from] RunError),
    /// The bundle was refused (not signed by a trusted key, tampered) or the source was down,
    /// and an older kept bundle was converged instead: the host is not on what was asked for.
    #[error("the bundle at {} was not used ({freshness}): {reason}; the host converged its kept bundle instead, and bootstrap stopped before the timer", RedactedUrl(.url))]
    NotCurrent {
        /// The source.
        url: String,
        /// `refused` or `stale`.
        freshness: String,
        /// Why.
        reason: String,
    },
    /// The timer unit is not installed in the root.
    #[error(
        "{TIMER} is not installed{where_}: install the converge package first (it ships the unit)"
    )]
    NoTimer {
        /// ` in DIR` under `--root`.
        where_: String,
    },
}

/// Runs bootstrap on `sys` (the live host, or a tree under `--root`), reporting each step
/// to `on_step` as it is done.
pub fn run(
    opts: &Options,
    sys: &System,
    facts: Value,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Outcome, BootstrapError> {
    // Everything is checked before anything is written.
    let keys = opts
        .keys
        .iter()
        .map(|arg| read_key(arg))
        .collect::<Result<Vec<_>, _>>()?;
    let mut overrides = Map::new();
    for a in &opts.vars {
        vars::merge(&mut overrides, &vars::parse_assignment(a)?);
    }
    let local = Path::new(&opts.source);
    if !local.join("roles").is_dir() {
        bundle::Source::parse(&opts.source).map_err(|e| BootstrapError::Source {
            url: opts.source.clone(),
            reason: e.to_string(),
        })?;
    }
    if !keys.is_empty() && local.join("roles").is_dir() {
        return Err(BootstrapError::Source {
            url: opts.source.clone(),
            reason: "a source tree cannot be signed; publish it (`converge publish`) and serve the bundle".into(),
        });
    }

    if !keys.is_empty() {
        verify_first(&opts.source, &keys)?;
    }

    let mut changed = false;
    let mut step = |subject: String, did: bool, detail: String| {
        changed |= did;
        on_step(&Step {
            subject,
            changed: did,
            detail,
        });
    };

    let mut key_paths = Vec::new();
    for key in &keys {
        let path = PathBuf::from(format!("{KEYS_DIR}/{}.pub", key.key_id()));
        let text = format!(
            "untrusted comment: minisign public key {}\n{}\n",
            key.key_id(),
            key.to_base64()
        );
        let did = ensure_file(sys, &path, text.as_bytes(), 0o644)?;
        let detail = if did { "installed" } else { "unchanged" };
        step(
            path.display().to_string(),
            did,
            format!("trusted key {}: {detail}", key.key_id()),
        );
        key_paths.push(path);
    }

    let config_path = Path::new(DEFAULT_PATH);
    let existing = match sys.entry(config_path)? {
        crate::system::fs::Entry::Missing => None,
        _ => Some(String::from_utf8_lossy(&sys.read_file(config_path)?).into_owned()),
    };
    let text = config_text(existing.as_deref(), opts, &key_paths, &overrides)?;
    let mut config = AgentConfig::parse(config_path, &text)?;
    let did = ensure_file(sys, config_path, text.as_bytes(), 0o600)?;
    let detail = match (did, existing.is_some()) {
        (false, _) => "agent config unchanged".to_owned(),
        (true, false) => "agent config written".to_owned(),
        (true, true) => "agent config updated (source, roles, trusted_keys, [vars])".to_owned(),
    };
    step(config_path.display().to_string(), did, detail);

    // The run's own files belong to the tree under --root, so the image boots with its
    // last known good bundle in place.
    if !sys.is_live() {
        config.state_dir = inside(sys.root(), &config.state_dir);
        config.metrics_file = config.metrics_file.take().map(|m| inside(sys.root(), &m));
        for key in &mut config.trusted_keys {
            *key = inside(sys.root(), key);
        }
    }
    let request = Request {
        mode: Mode::Apply,
        root: sys.root().to_path_buf(),
        source: Source::detect(&config.source, !config.trusted_keys.is_empty()),
        roles: Vec::new(),
        vars: Map::new(),
        facts,
        settings: config.clone(),
        record: true,
        history: true,
        force: false,
        plan_cache: config.plan_cache,
    };
    let finished = pipeline::run(&request)?;
    if let Some(source) = &finished.record.source {
        match source.freshness.as_str() {
            "refused" | "stale" => {
                return Err(BootstrapError::NotCurrent {
                    url: source.url.clone(),
                    freshness: source.freshness.clone(),
                    reason: source.reason.clone().unwrap_or_default(),
                })
            }
            freshness => {
                let id: String = source.bundle_id.chars().take(12).collect();
                let how = match (freshness, keys.is_empty()) {
                    ("local", _) => "a source tree, read in place (not verified)".to_owned(),
                    ("fresh", false) => format!("bundle {id} fetched, signed by a trusted key"),
                    ("fresh", true) => format!("bundle {id} fetched, NOT verified: no --key given"),
                    (_, false) => format!("bundle {id} unchanged, signed by a trusted key"),
                    (_, true) => format!("bundle {id} unchanged, NOT verified: no --key given"),
                };
                step(source.url.clone(), freshness == "fresh", how);
            }
        }
    }
    let s = &finished.report.summary;
    step(
        "converge run".into(),
        s.changed > 0,
        format!(
            "roles {}: {} resources, {} changed, {} failed",
            finished.record.roles.join(", "),
            s.total,
            s.changed,
            s.failed
        ),
    );

    let (did, detail) = enable_timer(sys)?;
    step(TIMER.into(), did, detail);
    Ok(Outcome {
        run: finished,
        config,
        changed,
    })
}

/// Fetches and verifies the bundle into scratch space before anything is written, so a
/// bundle not signed by the given keys changes nothing on the host (not even the config the
/// timer would then run with).
fn verify_first(source: &str, keys: &[TrustedKey]) -> Result<(), BootstrapError> {
    let refused = |reason: String| BootstrapError::Refused {
        url: source.to_owned(),
        reason,
    };
    let parsed = bundle::Source::parse(source).map_err(|e| refused(e.to_string()))?;
    let scratch = tempfile::tempdir().map_err(|e| refused(format!("scratch dir: {e}")))?;
    let opts = bundle::SyncOptions {
        trusted_keys: keys.to_vec(),
        ..bundle::SyncOptions::default()
    };
    bundle::sync(&parsed, scratch.path(), &opts)
        .map(drop)
        .map_err(|e| refused(e.to_string()))
}

/// A `--key` argument: a public key file, or the key's base64 line itself (handy in
/// cloud-init user data, where there is no file yet).
fn read_key(arg: &str) -> Result<TrustedKey, BootstrapError> {
    let bad = |reason: String| BootstrapError::Key {
        arg: arg.to_owned(),
        reason,
    };
    let path = Path::new(arg);
    if path.exists() {
        return TrustedKey::from_file(path).map_err(|e| bad(e.to_string()));
    }
    TrustedKey::from_text(arg).map_err(|e| {
        bad(format!(
            "no such file, and not a minisign public key line either ({e})"
        ))
    })
}

/// Writes `content` at `path` (inside the root) unless it is there already; returns whether
/// it wrote. Parent directories are created 0755.
fn ensure_file(sys: &System, path: &Path, content: &[u8], mode: u32) -> Result<bool, SystemError> {
    use crate::system::fs::Entry;
    if let Entry::File(meta) = sys.entry(path)? {
        if meta.mode == mode && sys.read_file(path)? == content {
            return Ok(false);
        }
    }
    let applying = Applying::outside_a_plan();
    let host = sys.host(&applying);
    let mut missing = Vec::new();
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == Path::new("/") || !matches!(sys.entry(d)?, Entry::Missing) {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    for d in missing.iter().rev() {
        let attrs = Attrs {
            mode: Some(0o755),
            ..Attrs::default()
        };
        host.create_dir(d, attrs)?;
    }
    let attrs = Attrs {
        uid: Some(0),
        gid: Some(0),
        mode: Some(mode),
    };
    host.write_file(path, content, attrs, mode)?;
    Ok(true)
}

/// The agent config bootstrap wants: the existing file with `source`, `roles`,
/// `trusted_keys` and `[vars]` set as asked (comments and every other setting kept), or a
/// fresh one where there is none or only the package's commented template.
fn config_text(
    existing: Option<&str>,
    opts: &Options,
    keys: &[PathBuf],
    overrides: &Map<String, Value>,
) -> Result<String, ConfigError> {
    let path = Path::new(DEFAULT_PATH);
    let mut doc = match existing {
        Some(text) => text.parse::<toml_edit::DocumentMut>().map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            crate::diagnostics::Diagnostic::at_offset(path, text, offset, e.message().trim_end())
        })?,
        None => toml_edit::DocumentMut::new(),
    };
    let fresh = !doc.contains_key("source");
    if fresh {
        doc = toml_edit::DocumentMut::new();
    }
    doc["source"] = toml_edit::value(opts.source.as_str());
    let list = |items: Vec<&str>| {
        let mut a = toml_edit::Array::new();
        a.extend(items);
        toml_edit::value(a)
    };
    if opts.roles.is_empty() {
        doc.remove("roles");
    } else {
        doc["roles"] = list(opts.roles.iter().map(String::as_str).collect());
    }
    if keys.is_empty() {
        doc.remove("trusted_keys");
    } else {
        let paths: Vec<String> = keys.iter().map(|p| p.display().to_string()).collect();
        doc["trusted_keys"] = list(paths.iter().map(String::as_str).collect());
    }
    if overrides.is_empty() {
        doc.remove("vars");
    } else {
        let mut table = toml_edit::Table::new();
        for (k, v) in overrides {
            if let Some(v) = edit_value(v) {
                table[k.as_str()] = toml_edit::Item::Value(v);
            }
        }
        doc["vars"] = toml_edit::Item::Table(table);
    }
    Ok(if fresh {
        format!("{FRESH_HEADER}{doc}")
    } else {
        doc.to_string()
    })
}

const FRESH_HEADER: &str = "\
# Written by `converge bootstrap`. Running it again sets source, roles, trusted_keys and
# [vars] as it is told and keeps every other setting (see man converge and
# /usr/share/doc/converge/README.md.gz, \"The pull agent\").
";

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

/// `path` (absolute, as the host will see it) inside the tree at `root`.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Enables the timer (and starts it on a live host); returns whether that changed anything.
fn enable_timer(sys: &System) -> Result<(bool, String), BootstrapError> {
    let services = sys.services();
    let status = services.status(sys, TIMER)?;
    if status.not_found() {
        let where_ = if sys.is_live() {
            String::new()
        } else {
            format!(" in {}", sys.root().display())
        };
        return Err(BootstrapError::NoTimer { where_ });
    }
    let applying = Applying::outside_a_plan();
    let host = sys.host(&applying);
    let mut did = Vec::new();
    if status.file_state != "enabled" {
        services.act(&host, UnitVerb::Enable, TIMER)?;
        did.push("enabled");
    }
    // A tree, or a live host without a running systemd (a chroot baking an image): the
    // timer is enabled in the unit files and starts when the system boots.
    if !services.runs_units(sys) {
        let detail = if did.is_empty() {
            "already enabled (offline: it starts when the image boots)"
        } else {
            "enabled offline: it starts when the image boots"
        };
        return Ok((!did.is_empty(), detail.to_owned()));
    }
    if status.active.as_deref() != Some("active") {
        services.act(&host, UnitVerb::Start, TIMER)?;
        did.push("started");
    }
    Ok(if did.is_empty() {
        (false, "already enabled and active".to_owned())
    } else {
        (
            true,
            format!("{}: converges every 30 minutes", did.join(" and ")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(roles: &[&str]) -> Options {
        Options {
            source: "https://config.example.com/bundle/".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            keys: Vec::new(),
            vars: Vec::new(),
        }
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
        let text = config_text(None, &opts(&["web"]), &keys, &vars).unwrap();
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
    fn an_admins_config_keeps_its_comments_and_other_settings() {
        let existing =
            "# ours\nsource = \"https://old/\"\ninterval = \"10m\" # fast\nroles = [\"db\"]\n";
        let text = config_text(Some(existing), &opts(&[]), &[], &Map::new()).unwrap();
        assert_eq!(
            text,
            "# ours\nsource = \"https://config.example.com/bundle/\"\ninterval = \"10m\" # fast\n"
        );
        // The same request again changes nothing.
        assert_eq!(
            config_text(Some(&text), &opts(&[]), &[], &Map::new()).unwrap(),
            text
        );
    }

    #[test]
    fn the_packaged_template_is_replaced_whole() {
        let template = "# converge agent config\n#source = \"https://x/\"\n#roles = [\"web\"]\n";
        let text = config_text(Some(template), &opts(&["web"]), &[], &Map::new()).unwrap();
        assert!(text.starts_with(FRESH_HEADER), "{text}");
        assert!(!text.contains("#source"), "{text}");
    }

    #[test]
    fn a_key_is_a_file_or_the_key_itself() {
        let line = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
        assert_eq!(read_key(line).unwrap().to_base64(), line);
        let e = read_key("/nonexistent/converge.pub").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--key /nonexistent/converge.pub: no such file, and not a minisign public key line either"),
            "{e}"
        );
    }
}
