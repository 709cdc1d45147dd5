//! The agent config, `/etc/converge/agent.toml`: where roles come from and how runs go.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::diagnostics::Diagnostic;

/// Directory under the state dir for the default textfiles: world-readable, so
/// node_exporter's unprivileged user can read them (point its
/// `--collector.textfile.directory` here), while the rest of the state dir stays private.
pub(crate) const METRICS_DIR: &str = "metrics";

/// Default place of the agent config.
pub const DEFAULT_PATH: &str = "/etc/converge/agent.toml";

/// The agent config as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `https://...`, `http://...`, `file:///...` (a published bundle) or a source tree path.
    pub source: String,
    /// Roles for this host; when empty, `nodes.toml` in the bundle decides.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Host variable overrides (above every role's vars).
    #[serde(default)]
    pub vars: toml::Table,
    /// Where bundles, the lock and run reports live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// minisign public key files; when any is set, bundles must be signed by one of them.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Time between runs of `converge agent`, e.g. "30m".
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Window over which hosts spread their runs; each host's offset is fixed by its identity.
    #[serde(default = "default_splay", with = "humantime_serde")]
    pub splay: Duration,
    /// Prometheus textfile to write after each run (default: `<state_dir>/metrics/converge.prom`).
    pub metrics_file: Option<PathBuf>,
    /// URL to POST each run's JSON report to.
    pub report_url: Option<String>,
    /// How long a second run waits for the lock before giving up.
    #[serde(default = "default_lock_wait", with = "humantime_serde")]
    pub lock_wait: Duration,
    /// How many apply runs that changed something the history keeps (with their backups).
    #[serde(default = "default_keep_runs")]
    pub keep_runs: std::num::NonZeroUsize,
    /// Reuse the plan of an earlier run whose inputs were the same
    /// (`<state_dir>/plan-cache`); `false`: plan from the source every run.
    #[serde(default = "default_plan_cache")]
    pub plan_cache: bool,
    /// How eager this host is to take a rollout's candidate: 0.0 (first, a canary) to 1.0
    /// (last, a database); above `rollout_wariness` of nodes.toml. Unset: the host's bucket
    /// drawn from its machine id decides alone.
    #[serde(default)]
    pub rollout_wariness: Option<crate::bundle::Wariness>,
    /// Fetch limits.
    #[serde(default)]
    pub fetch: FetchConfig,
    /// How long each kind of external command may run before it is killed.
    #[serde(default)]
    pub timeouts: crate::system::Timeouts,
    /// The file this config was read from, so errors found later in a run point at the line.
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// Where a config was read from, and its text.
#[derive(Debug, Clone)]
pub struct Origin {
    path: PathBuf,
    text: std::sync::Arc<str>,
}

/// Network limits for fetching bundles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// Limit for establishing a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Limit for one whole request.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra attempts after a transient failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Limit for the whole fetch, every request and retry included; then the run uses the
    /// last known good bundle.
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connect_timeout: default_connect_timeout(),
            timeout: default_request_timeout(),
            retries: default_retries(),
            deadline: default_deadline(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/converge")
}
fn default_interval() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_splay() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_lock_wait() -> Duration {
    Duration::from_secs(10)
}
fn default_plan_cache() -> bool {
    true
}

fn default_keep_runs() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(crate::history::DEFAULT_KEEP_RUNS).expect("not zero")
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_deadline() -> Duration {
    crate::bundle::DEFAULT_DEADLINE
}
fn default_retries() -> u32 {
    3
}

/// Why the agent config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error("{0}: no agent config (pass --source DIR|URL and --role NAME, or create it)")]
    Missing(PathBuf),
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The config path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error(transparent)]
    Invalid(#[from] Diagnostic),
}

impl AgentConfig {
    /// A config for a source given on the command line, with every default.
    pub fn for_source(source: &str) -> AgentConfig {
        let text = format!("source = {}", toml::Value::String(source.to_owned()));
        toml::from_str(&text).expect("a lone source is a valid config")
    }

    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing(path.to_path_buf()))
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::parse(path, &text)
    }

    /// Parses config text; errors carry `path:line:col`.
    pub fn parse(path: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let mut message = e.message().trim_end().replace('\n', ", ");
            // The packaged config is all comments until a host is bootstrapped.
            if message == "missing field `source`" {
                message = "no `source` set: run `converge bootstrap --source URL` (or set \
                           source = \"...\" here), or pass --source"
                    .into();
            }
            Diagnostic::at_offset(path, text, offset, message)
        })?;
        config.check_values(path, text)?;
        Ok(AgentConfig {
            origin: Some(Origin {
                path: path.to_path_buf(),
                text: text.into(),
            }),
            ..config
        })
    }

    /// `message` located at `value` as this config's file wrote it under `key` (the value
    /// itself, or the item of a list): errors a run finds in a setting (a key file that does
    /// not load, a source that is no bundle, a role the source lacks) then point at their
    /// line. `None` when the config was not read from a file or `key` holds something else
    /// there (a value the command line put in its place).
    pub(crate) fn error_at(&self, key: &str, value: &str, message: String) -> Option<Diagnostic> {
        let origin = self.origin.as_ref()?;
        let doc = toml_edit::ImDocument::parse(&*origin.text).ok()?;
        let item = doc.get(key)?.as_value()?;
        let found = match item {
            toml_edit::Value::Array(items) => items.iter().find(|v| v.as_str() == Some(value))?,
            v if v.as_str() == Some(value) => v,
            _ => return None,
        };
        let offset = found.span()?.start;
        Some(Diagnostic::at_offset(
            &origin.path,
            &origin.text,
            offset,
            message,
        ))
    }

    /// Values that parse but that no run can use, each refused at its key's place.
    fn check_values(&self, path: &Path, text: &str) -> Result<(), Diagnostic> {
        let at = |key: &str, message: String| {
            Diagnostic::at_offset(path, text, offset_of(text, key), message)
        };
        let absolute = |key: &str, p: &Path| -> Result<(), Diagnostic> {
            let shown = p.to_string_lossy();
            let up = p.components().any(|c| c == std::path::Component::ParentDir);
            if !p.is_absolute() || up || shown.chars().any(char::is_control) {
                let what = if shown.is_empty() {
                    "empty"
                } else if up {
                    "not a plain path (it contains '..')"
                } else {
                    "not absolute"
                };
                return Err(at(
                    key,
                    format!("{key} is {what}: expected an absolute path such as /var/lib/converge"),
                ));
            }
            Ok(())
        };
        if self.source.trim().is_empty() {
            let message = "source is empty: expected a URL or a directory".to_owned();
            return Err(at("source", message));
        }
        absolute("state_dir", &self.state_dir)?;
        if let Some(m) = &self.metrics_file {
            absolute("metrics_file", m)?;
        }
        if let Some(bad) = self.roles.iter().find(|r| !crate::role::valid_role_name(r)) {
            let message = format!(
                "invalid role name '{}' in roles: expected letters, digits, '-', '_' and '/' between names",
                bad.escape_debug()
            );
            return Err(at("roles", message));
        }
        if let Some(url) = &self.report_url {
            let scheme = reqwest::Url::parse(url).map(|u| u.scheme().to_owned());
            if !matches!(scheme.as_deref(), Ok("http" | "https")) {
                let message = format!("report_url '{url}' is not an http(s) URL");
                return Err(at("report_url", message));
            }
        }
        if self.trusted_keys.iter().any(|k| k.as_os_str().is_empty()) {
            let message = "trusted_keys holds an empty path: expected key files".to_owned();
            return Err(at("trusted_keys", message));
        }
        if let Some(k) = self
            .trusted_keys
            .iter()
            .find(|k| k.components().any(|c| c == std::path::Component::ParentDir))
        {
            let message = format!(
                "trusted_keys holds {}, which contains '..': expected plain paths of key files",
                k.display()
            );
            return Err(at("trusted_keys", message));
        }
        for (key, value) in [
            ("interval", self.interval),
            ("fetch.connect_timeout", self.fetch.connect_timeout),
            ("fetch.timeout", self.fetch.timeout),
            ("fetch.deadline", self.fetch.deadline),
            ("timeouts.query", self.timeouts.query),
            ("timeouts.package", self.timeouts.package),
            ("timeouts.service", self.timeouts.service),
            ("timeouts.account", self.timeouts.account),
            ("timeouts.validate", self.timeouts.validate),
            ("timeouts.firewall", self.timeouts.firewall),
            ("timeouts.module", self.timeouts.module),
        ] {
            if value.is_zero() {
                return Err(at(key, format!("{key} must be more than 0")));
            }
        }
        Ok(())
    }

    /// Where the Prometheus textfile of an apply (or of a check) goes. A check writes its own
    /// file beside apply's (`converge-check.prom`), so alerts on apply's series never see a
    /// check's numbers and neither run erases the other's series.
    pub fn metrics_path(&self, mode: crate::report::Mode) -> PathBuf {
        let apply = self
            .metrics_file
            .clone()
            .unwrap_or_else(|| self.state_dir.join(METRICS_DIR).join("converge.prom"));
        match mode {
            crate::report::Mode::Apply => apply,
            crate::report::Mode::Check => {
                let stem = apply.file_stem().map_or_else(
                    || "converge".to_owned(),
                    |s| s.to_string_lossy().into_owned(),
                );
                apply.with_file_name(format!("{stem}-check.prom"))
            }
        }
    }
}

/// Byte offset of `key` (`name` or `fetch.name`) in config `text`; the parsed config has
/// the values but not their places, so a second look finds them (0 when not written).
pub(crate) fn offset_of(text: &str, key: &str) -> usize {
    type Table = BTreeMap<String, toml::Spanned<toml::Value>>;
    #[derive(Deserialize)]
    struct Tables {
        fetch: Option<Table>,
        timeouts: Option<Table>,
    }
    let found = match key.split_once('.') {
        Some((table, name)) => toml::from_str::<Tables>(text)
            .ok()
            .and_then(|t| match table {
                "fetch" => t.fetch,
                "timeouts" => t.timeouts,
                _ => None,
            })
            .and_then(|t| t.get(name).map(|v| v.span().start)),
        None => toml::from_str::<Table>(text)
            .ok()
            .and_then(|t| t.get(key).map(|v| v.span().start)),
    };
    found.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGED: &str = include_str!("../../packaging/deb/agent.toml");

    #[test]
    fn the_packaged_config_asks_for_a_source_and_every_setting_it_shows_is_valid() {
        let e = AgentConfig::parse(Path::new("agent.toml"), PACKAGED).unwrap_err();
        assert!(
            e.to_string()
                .contains("no `source` set: run `converge bootstrap --source URL`"),
            "{e}"
        );
        // Uncommenting every setting shown gives a config converge accepts.
        let uncommented: String = PACKAGED
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.starts_with(' ') && !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let c = AgentConfig::parse(Path::new("agent.toml"), &uncommented).unwrap();
        assert_eq!(c.source, "https://config.example.com/bundle/");
        assert_eq!(
            c.trusted_keys,
            [PathBuf::from("/etc/converge/keys/converge.pub")]
        );
    }

    #[test]
    fn a_zero_interval_is_located() {
        let e = AgentConfig::parse(Path::new("a.toml"), "source = \"x\"\ninterval = \"0s\"\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("a.toml:2:12: interval must be more than 0"),
            "{e}"
        );
    }

    #[test]
    fn values_no_run_can_use_are_located() {
        let cases = [
            (
                "source = \"x\"\nstate_dir = \"\"\n",
                "a.toml:2:13: state_dir is empty",
            ),
            (
                "source = \"x\"\nstate_dir = \"var/lib\"\n",
                "a.toml:2:13: state_dir is not absolute",
            ),
            ("source = \" \"\n", "a.toml:1:10: source is empty"),
            (
                "source = \"x\"\nmetrics_file = \"m.prom\"\n",
                "a.toml:2:16: metrics_file is not absolute",
            ),
            (
                "source = \"x\"\nmetrics_file = \"/var/lib/../../tmp/m.prom\"\n",
                "a.toml:2:16: metrics_file is not a plain path (it contains '..')",
            ),
            (
                "source = \"x\"\nstate_dir = \"/var/lib/converge/../../../etc\"\n",
                "a.toml:2:13: state_dir is not a plain path (it contains '..')",
            ),
            (
                "source = \"x\"\ntrusted_keys = [\"/etc/../root/k.pub\"]\n",
                "a.toml:2:16: trusted_keys holds /etc/../root/k.pub, which contains '..'",
            ),
            (
                "source = \"x\"\ntrusted_keys = [\"\"]\n",
                "a.toml:2:16: trusted_keys holds an empty path",
            ),
            (
                "source = \"x\"\nroles = [\"web\", \"\"]\n",
                "a.toml:2:9: invalid role name '' in roles",
            ),
            (
                "source = \"x\"\nreport_url = \"ftp://r\"\n",
                "a.toml:2:14: report_url 'ftp://r' is not an http(s) URL",
            ),
            (
                "source = \"x\"\n[fetch]\nretries = 1\ntimeout = \"0s\"\n",
                "a.toml:4:11: fetch.timeout must be more than 0",
            ),
        ];
        for (text, want) in cases {
            let e = AgentConfig::parse(Path::new("a.toml"), text).unwrap_err();
            assert!(e.to_string().starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn command_timeouts_have_defaults_carry_units_and_zero_is_located() {
        let c = AgentConfig::parse(Path::new("a.toml"), "source = \"x\"\n").unwrap();
        assert_eq!(c.timeouts, crate::system::Timeouts::default());
        assert_eq!(c.timeouts.service, Duration::from_secs(300));
        let c = AgentConfig::parse(
            Path::new("a.toml"),
            "source = \"x\"\n[timeouts]\nservice = \"90s\"\npackage = \"30m\"\n",
        )
        .unwrap();
        assert_eq!(c.timeouts.service, Duration::from_secs(90));
        assert_eq!(c.timeouts.package, Duration::from_secs(1800));
        assert_eq!(c.timeouts.query, Duration::from_secs(60));
        let e = AgentConfig::parse(
            Path::new("a.toml"),
            "source = \"x\"\n[timeouts]\nquery = \"0s\"\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("a.toml:3:9: timeouts.query must be more than 0"),
            "{e}"
        );
        let e = AgentConfig::parse(
            Path::new("a.toml"),
            "source = \"x\"\n[timeouts]\nsystemctl = \"1m\"\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("a.toml:3:1: unknown field `systemctl`"),
            "{e}"
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = AgentConfig::parse(Path::new("a.toml"), "source = \"https://cfg/b\"\n").unwrap();
        assert_eq!(c.state_dir, Path::new("/var/lib/converge"));
        assert_eq!(c.interval, Duration::from_secs(1800));
        assert_eq!(c.splay, Duration::from_secs(300));
        assert_eq!(
            c.metrics_path(crate::report::Mode::Apply),
            Path::new("/var/lib/converge/metrics/converge.prom")
        );
        assert_eq!(
            c.metrics_path(crate::report::Mode::Check),
            Path::new("/var/lib/converge/metrics/converge-check.prom")
        );
    }

    #[test]
    fn durations_carry_units_and_unknown_keys_are_located() {
        let c = AgentConfig::parse(
            Path::new("a.toml"),
            "source = \"x\"\ninterval = \"15m\"\nsplay = \"90s\"\n[fetch]\nretries = 1\n",
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(900));
        assert_eq!(c.splay, Duration::from_secs(90));
        assert_eq!(c.fetch.retries, 1);
        let e = AgentConfig::parse(Path::new("a.toml"), "source = \"x\"\nintervall = \"1m\"\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("a.toml:2:1: unknown field `intervall`"),
            "{e}"
        );
        let e =
            AgentConfig::parse(Path::new("a.toml"), "source = \"x\"\ninterval = 30\n").unwrap_err();
        assert!(e.to_string().starts_with("a.toml:2:12:"), "{e}");
    }
}
