//! The one sysctl drop-in converge owns: every `[sysctl]` key of the run, written whole.
//!
//! It is a file resource underneath (atomic write, unified diff), plus what only sysctl needs:
//! a warning when a file read later at boot sets a managed key to something else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::{FileLive, FileResource};
use super::sysctl::tokens;
use super::{Change, FieldChange, Resource, ResourceError, ResourceId};
use super::{Footprint, PlanSlots};
use crate::system::procfs::{dotted_key, SysctlFile, SYSCTL_CONF};
use crate::system::{Host, System};

/// Where converge persists kernel parameters.
pub(crate) const DROP_IN: &str = "/etc/sysctl.d/60-converge.conf";

/// The drop-in holding every managed key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SysctlConfResource {
    /// Key → value, sorted by key.
    pub entries: BTreeMap<String, String>,
    file: FileResource,
}

/// A later configuration file that sets a managed key to another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The managed key.
    pub key: String,
    /// The value the later file sets.
    pub value: String,
    /// The later file.
    pub file: PathBuf,
}

/// What a file that sets kernel state at boot finds (the sysctl drop-in, the sysfs boot
/// files): the file, the other files that override it, and whether the kernel is the tree's.
#[derive(Debug)]
pub struct BootFileLive {
    file: FileLive,
    warnings: Vec<String>,
    live_root: bool,
}

impl BootFileLive {
    /// `file` as observed; each override is logged as `logged` words it, and shown in a
    /// change as `shown` does.
    pub(super) fn new(
        sys: &System,
        file: FileLive,
        overrides: &[Override],
        logged: impl Fn(&Override) -> String,
        shown: impl Fn(&Override) -> String,
    ) -> BootFileLive {
        for o in overrides {
            tracing::warn!(key = %o.key, file = %o.file.display(), "{}", logged(o));
        }
        BootFileLive {
            file,
            warnings: overrides.iter().map(shown).collect(),
            live_root: sys.is_live(),
        }
    }

    /// `file`'s change, saying what `--root` leaves out and what overrides the file.
    pub(super) fn diff(&self, file: &FileResource) -> Option<Change> {
        let mut change = file.diff(&self.file)?;
        if !self.live_root {
            change.fields.push(FieldChange::new(
                "live values",
                None,
                Some("not managed under --root; this file sets them at next boot".into()),
            ));
        }
        for w in &self.warnings {
            change
                .fields
                .push(FieldChange::new("warning", None, Some(w.clone())));
        }
        Some(change)
    }

    /// Writes `change` to `file`.
    pub(super) fn apply(
        &self,
        file: &FileResource,
        host: &Host,
        change: &Change,
    ) -> Result<(), ResourceError> {
        file.apply(host, &self.file, change)
    }
}

impl SysctlConfResource {
    /// The drop-in for `entries`.
    pub fn new(entries: BTreeMap<String, String>) -> SysctlConfResource {
        let file = FileResource::system(PathBuf::from(DROP_IN), render(&entries));
        SysctlConfResource { entries, file }
    }

    /// The drop-in's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

/// The drop-in's text: a header, then `key = value` lines in key order.
pub fn render(entries: &BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# Managed by converge from the roles' [sysctl] tables; written whole, local edits are lost.\n\
         # Files sorting after this one in sysctl.d, and /etc/sysctl.conf, override it at boot.\n",
    );
    for (k, v) in entries {
        out.push_str(&format!("{k} = {v}\n"));
    }
    out
}

/// `key = value` settings of one sysctl.d file, keys in dotted form. A leading `-` (ignore
/// errors) is dropped; comments start with `#` or `;`.
pub(crate) fn parse_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with(['#', ';']) {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let k = k.trim().trim_start_matches('-');
            Some((dotted_key(k), v.trim().to_owned()))
        })
        .collect()
}

/// Settings in files applied after `ours` at boot that give a managed key another value.
/// Files are in boot order; those sorting before `ours` (by name) lose to it.
pub fn overrides(
    files: &[SysctlFile],
    ours: &Path,
    entries: &BTreeMap<String, String>,
) -> Vec<Override> {
    let our_name = ours.file_name().unwrap_or_default();
    let managed: Vec<(String, &String)> = entries.iter().map(|(k, v)| (dotted_key(k), v)).collect();
    let mut out = Vec::new();
    for f in files {
        let later =
            f.path == Path::new(SYSCTL_CONF) || f.path.file_name().is_some_and(|n| n > our_name);
        if !later {
            continue;
        }
        for (key, value) in parse_settings(&f.text) {
            // systemd-sysctl accepts globs such as net.ipv4.conf.*.rp_filter.
            let matcher = globset::Glob::new(&key).map(|g| g.compile_matcher()).ok();
            for (mk, want) in &managed {
                let hit = match &matcher {
                    Some(m) => m.is_match(mk),
                    None => &key == mk,
                };
                if hit && tokens(&value) != tokens(want) {
                    out.push(Override {
                        key: mk.clone(),
                        value: value.clone(),
                        file: f.path.clone(),
                    });
                }
            }
        }
    }
    out
}

impl Resource for SysctlConfResource {
    type Live = BootFileLive;

    fn id(&self) -> ResourceId {
        Resource::id(&self.file)
    }

    fn footprint(&self) -> Footprint<'_> {
        Footprint::keeps(&self.file.path, &self.file.managed_ancestor)
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<BootFileLive, ResourceError> {
        let file = self.file.observe(sys)?;
        let files = sys.sysctl_files()?;
        let overrides = overrides(&files, &self.file.path, &self.entries);
        Ok(BootFileLive::new(
            sys,
            file,
            &overrides,
            |o| {
                format!(
                    "{} sets {} = {} after {DROP_IN}; that value wins at boot",
                    o.file.display(),
                    o.key,
                    o.value
                )
            },
            |o| {
                format!(
                    "{} sets {} = {} later at boot, overriding this file",
                    o.file.display(),
                    o.key,
                    o.value
                )
            },
        ))
    }

    fn diff(&self, live: &BootFileLive) -> Option<Change> {
        live.diff(&self.file)
    }

    fn apply(
        &self,
        host: &Host,
        live: &BootFileLive,
        change: &Change,
    ) -> Result<(), ResourceError> {
        live.apply(&self.file, host, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_sorted_with_a_header() {
        let text = render(&entries(&[
            ("net.ipv4.tcp_fin_timeout", "15"),
            ("net.core.somaxconn", "4096"),
        ]));
        let body: Vec<_> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            ["net.core.somaxconn = 4096", "net.ipv4.tcp_fin_timeout = 15"]
        );
        assert!(text.starts_with("# Managed by converge"));
    }

    #[test]
    fn parses_sysctl_d_syntax() {
        let got = parse_settings(
            "# c\n; c\n\n-net/core/somaxconn=1\n kernel.pid_max = 4194304 \nnot a setting\n",
        );
        assert_eq!(
            got,
            [
                ("net.core.somaxconn".to_owned(), "1".to_owned()),
                ("kernel.pid_max".to_owned(), "4194304".to_owned())
            ]
        );
    }

    #[test]
    fn only_later_files_with_other_values_override() {
        let file = |path: &str, text: &str| SysctlFile {
            path: PathBuf::from(path),
            text: text.into(),
        };
        let files = [
            file("/usr/lib/sysctl.d/50-a.conf", "net.core.somaxconn = 1\n"),
            file("/etc/sysctl.d/70-b.conf", "net.core.somaxconn = 4096\n"),
            file(
                "/etc/sysctl.d/80-c.conf",
                "net.ipv4.ip_local_port_range = 1024\t65000\nnet.core.*conn = 7\n",
            ),
            file("/etc/sysctl.conf", "net.core.somaxconn=9\n"),
        ];
        let want = entries(&[
            ("net.core.somaxconn", "4096"),
            ("net.ipv4.ip_local_port_range", "1024 65000"),
        ]);
        let got: Vec<_> = overrides(&files, Path::new(DROP_IN), &want)
            .into_iter()
            .map(|o| format!("{}:{}={}", o.file.display(), o.key, o.value))
            .collect();
        assert_eq!(
            got,
            [
                "/etc/sysctl.d/80-c.conf:net.core.somaxconn=7",
                "/etc/sysctl.conf:net.core.somaxconn=9"
            ]
        );
    }
}
