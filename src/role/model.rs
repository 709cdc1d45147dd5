//! The role file format: plain serde types, unknown keys rejected.

use serde::Deserialize;
use toml::Spanned;

/// One role file, `roles/NAME.toml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFile {
    /// Roles whose resources and vars this role builds on.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// Variables for templates; overridden by including roles and host overrides.
    #[serde(default)]
    pub vars: toml::Table,
    /// Managed regular files.
    #[serde(default)]
    /// (Boxed: a role may declare thousands, and planning frees each as it goes.)
    pub file: Vec<Spanned<Box<FileSpec>>>,
    /// Byte ranges of `[[file]]` tables not parsed yet: planning reads each when it plans it.
    #[serde(skip)]
    pub file_tables: Vec<std::ops::Range<usize>>,
    /// Managed directories.
    #[serde(default)]
    pub directory: Vec<Spanned<DirectorySpec>>,
    /// Managed symbolic links.
    #[serde(default)]
    pub symlink: Vec<Spanned<SymlinkSpec>>,
    /// Paths that must not exist.
    #[serde(default)]
    pub absent: Vec<Spanned<AbsentSpec>>,
    /// Groups.
    #[serde(default)]
    pub group: Vec<Spanned<GroupSpec>>,
    /// Users.
    #[serde(default)]
    pub user: Vec<Spanned<UserSpec>>,
    /// Guarded commands.
    #[serde(default)]
    pub exec: Vec<Spanned<ExecSpec>>,
    /// Kernel parameters, `"net.core.somaxconn" = 4096`.
    #[serde(default)]
    pub sysctl: std::collections::BTreeMap<Spanned<String>, Spanned<SysctlValue>>,
    /// systemd services.
    #[serde(default)]
    pub service: Vec<Spanned<ServiceSpec>>,
    /// Debian packages.
    #[serde(default)]
    pub package: Vec<Spanned<PackageSpec>>,
    /// Kernel modules, loaded or absent.
    #[serde(default)]
    pub kernel_module: Vec<Spanned<KernelModuleSpec>>,
    /// Checks that the host still works after a run (rollback when one fails).
    #[serde(default)]
    pub health: Vec<Spanned<HealthSpec>>,
    /// Tables of the live nftables ruleset.
    #[serde(default)]
    pub nftables: Vec<Spanned<NftablesSpec>>,
    /// Kernel attributes under /sys, `"kernel/mm/transparent_hugepage/enabled" = "never"`.
    #[serde(default)]
    pub sysfs: std::collections::BTreeMap<Spanned<String>, Spanned<SysctlValue>>,
    /// Scheduled jobs: a systemd timer with its service.
    #[serde(default)]
    pub timer: Vec<Spanned<TimerSpec>>,
}

impl RoleFile {
    /// How many resources it declares, about: one per table, one per sysctl key.
    pub fn declarations(&self) -> usize {
        self.file.len()
            + self.file_tables.len()
            + self.directory.len()
            + self.symlink.len()
            + self.absent.len()
            + self.group.len()
            + self.user.len()
            + self.exec.len()
            + self.sysctl.len()
            + self.service.len()
            + self.package.len()
            + self.nftables.len()
            + self.kernel_module.len()
            + self.sysfs.len()
            + self.timer.len()
    }
}

/// `[[health]]`: a probe run at the end of apply, after restarts and reloads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Its id in reports: `health:NAME`.
    pub name: Spanned<String>,
    /// An http:// or https:// URL to GET.
    pub http: Option<Spanned<String>>,
    /// The status the URL must answer (default 200).
    pub expect_status: Option<Spanned<u16>>,
    /// A substring the response body must contain.
    pub expect_body: Option<String>,
    /// `host:port` that must accept a TCP connection.
    pub tcp: Option<Spanned<String>>,
    /// A shell command that must exit 0.
    pub command: Option<Spanned<String>>,
    /// Time limit of one attempt, with a unit (default "5s").
    pub timeout: Option<Spanned<String>>,
    /// Attempts after a failed first one (default 3).
    pub retries: Option<Spanned<u32>>,
    /// Pause between attempts, with a unit (default "1s").
    pub interval: Option<Spanned<String>>,
    /// Wait after the run's restarts and reloads before the first attempt (default "2s").
    pub settle: Option<Spanned<String>>,
    /// Passes in a row needed after a change (default 3).
    pub passes: Option<Spanned<u32>>,
    /// The services this check watches, e.g. `["nginx"]`.
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
}

/// `[[nftables]]`: one table of the live ruleset, its body from exactly one of content,
/// template or source, replaced whole in one transaction and persisted for boot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftablesSpec {
    /// Address family: ip, ip6, inet, arp, bridge or netdev.
    pub family: Spanned<String>,
    /// The table's name.
    pub table: Spanned<String>,
    /// The table's body (chains, sets, maps...), literally.
    pub content: Option<String>,
    /// Handlebars template of the body, relative to the bundle's `templates/`.
    pub template: Option<Spanned<String>>,
    /// File holding the body, relative to the bundle's `files/`.
    pub source: Option<Spanned<String>>,
    /// Template variables for this table only, merged over the role vars.
    #[serde(default)]
    pub vars: OwnVars,
    /// Delete the family's tables that no declaration of the run names.
    #[serde(default)]
    pub purge: bool,
    /// Resources to converge before this one.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    /// Services to restart (or reload) at the end of the run when the table changes.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
}

/// `[[file]]`: a regular file with content from exactly one of content, template or source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path on the host.
    pub path: Spanned<String>,
    /// Literal content.
    pub content: Option<String>,
    /// Handlebars template, relative to the bundle's `templates/`.
    pub template: Option<Spanned<String>>,
    /// File copied verbatim, relative to the bundle's `files/`.
    pub source: Option<Spanned<String>>,
    /// Owner: user name or numeric uid.
    pub owner: Option<Spanned<String>>,
    /// Group: group name or numeric gid.
    pub group: Option<Spanned<String>>,
    /// Permission bits, an octal string such as "0644".
    pub mode: Option<Spanned<String>>,
    /// Hide content from diffs, logs and reports.
    #[serde(default)]
    pub sensitive: bool,
    /// Command that must accept the new content before it replaces the old, e.g.
    /// `nginx -t -c {path}` (`{path}`: a temp file holding the new content).
    pub validate: Option<Spanned<String>>,
    /// Template variables for this file only, merged over the role vars.
    #[serde(default)]
    pub vars: OwnVars,
    /// Resources to converge before this one, e.g. `["user:app", "file:/etc/app.conf"]`.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    /// Services to restart (or reload) at the end of the run when this changes.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
}

impl FileSpec {
    /// The spec read from a piece of its role file that starts `by` bytes in: every span
    /// moved to where it is in the whole file.
    pub(super) fn moved(self: Box<Self>, by: usize) -> Box<FileSpec> {
        let one = |s: Spanned<String>| super::sections::moved(s, by, |v, _| v);
        let opt = |s: Option<Spanned<String>>| s.map(one);
        let all = |v: Vec<Spanned<String>>| v.into_iter().map(one).collect();
        Box::new(FileSpec {
            path: one(self.path),
            content: self.content,
            template: opt(self.template),
            source: opt(self.source),
            owner: opt(self.owner),
            group: opt(self.group),
            mode: opt(self.mode),
            sensitive: self.sensitive,
            validate: opt(self.validate),
            vars: self.vars,
            after: all(self.after),
            notify: all(self.notify),
        })
    }
}

/// One declaration's own template vars, in key order. A list, not a map: a role may declare
/// thousands of files with two or three vars each, and a map's smallest node holds eleven.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OwnVars(pub Vec<(String, toml::Value)>);

impl OwnVars {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for OwnVars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read as a table (duplicate keys refused, keys sorted), kept as a list.
        Ok(OwnVars(toml::Table::deserialize(d)?.into_iter().collect()))
    }
}

/// `[[directory]]`: a directory; its entries are left alone unless `purge` is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    /// Absolute path on the host.
    pub path: Spanned<String>,
    /// Owner: user name or numeric uid.
    pub owner: Option<Spanned<String>>,
    /// Group: group name or numeric gid.
    pub group: Option<Spanned<String>>,
    /// Permission bits, an octal string such as "0755".
    pub mode: Option<Spanned<String>>,
    /// Remove entries that no resource of this run manages.
    #[serde(default)]
    pub purge: bool,
    /// Resources to converge before this one, e.g. `["user:app", "file:/etc/app.conf"]`.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    /// Services to restart (or reload) at the end of the run when this changes.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
}

/// `[[symlink]]`: a symbolic link pointing at `target`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkSpec {
    /// Absolute path of the link on the host.
    pub path: Spanned<String>,
    /// What the link points at, stored as written (relative targets stay relative).
    pub target: Spanned<String>,
    /// Replace a directory found at `path` (files and links are always replaced).
    #[serde(default)]
    pub force: bool,
    /// Resources to converge before this one, e.g. `["user:app", "file:/etc/app.conf"]`.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    /// Services to restart (or reload) at the end of the run when this changes.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
}

/// `[[absent]]`: a path that must not exist.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbsentSpec {
    /// Absolute path on the host.
    pub path: Spanned<String>,
    /// Also remove a non-empty directory and everything in it.
    #[serde(default)]
    pub force: bool,
    /// Resources to converge before this one, e.g. `["user:app", "file:/etc/app.conf"]`.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    /// Services to restart (or reload) at the end of the run when this changes.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
}

/// `[[service]]`: a systemd service; every setting left out is left alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unit name without `.service`, e.g. `nginx`.
    pub name: Spanned<String>,
    /// Start at boot (`systemctl enable`) or not.
    pub enabled: Option<bool>,
    /// Masked (linked to /dev/null, cannot start) or not.
    pub masked: Option<bool>,
    /// Running or stopped now.
    pub state: Option<ServiceState>,
    /// A unit file written to /etc/systemd/system/NAME.service.
    pub unit: Option<Spanned<UnitSpec>>,
    /// Reload instead of restart when notified.
    #[serde(default)]
    pub reload_on_notify: bool,
    /// How long each of its `systemctl` changes (start, restart...) may take, e.g. "10m";
    /// default: agent.toml's `[timeouts] service`.
    pub timeout: Option<Spanned<String>>,
    /// Resources to converge before this one, e.g. `["user:app", "file:/etc/app.conf"]`.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
}

/// Whether a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Started.
    Running,
    /// Stopped.
    Stopped,
}

/// `[[timer]]`: a scheduled job, the timer unit and the service it starts as one declaration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSpec {
    /// The job's name: units NAME.timer and NAME.service.
    pub name: Spanned<String>,
    /// `present` (default) or `absent` (timer stopped and disabled, both unit files removed).
    #[serde(default)]
    pub ensure: TimerEnsure,
    /// Start the timer at boot (default true).
    pub enabled: Option<bool>,
    /// The timer running or stopped now (default running).
    pub state: Option<ServiceState>,
    /// Masked: the timer cannot start (default false).
    pub masked: Option<bool>,
    /// `Description=` of both units.
    pub description: Option<Spanned<String>>,
    /// `OnCalendar=`: one calendar expression or a list, e.g. "*-*-* 02:30:00".
    pub on_calendar: Option<Spanned<Strings>>,
    /// `OnBootSec=`, a duration with a unit.
    pub on_boot: Option<Spanned<String>>,
    /// `OnActiveSec=`: after the timer starts.
    pub on_active: Option<Spanned<String>>,
    /// `OnUnitActiveSec=`: after the job last started.
    pub on_unit_active: Option<Spanned<String>>,
    /// `Persistent=`: catch up on a run missed while the host was off.
    pub persistent: Option<bool>,
    /// `RandomizedDelaySec=`.
    pub randomized_delay: Option<Spanned<String>>,
    /// `AccuracySec=`.
    pub accuracy: Option<Spanned<String>>,
    /// The job's command line (`ExecStart=` of a oneshot service).
    pub command: Option<Spanned<String>>,
    /// `User=` the command runs as.
    pub user: Option<Spanned<String>>,
    /// Keep the service unit (which holds the command) out of diffs, logs and reports, and
    /// readable by root only.
    #[serde(default)]
    pub sensitive: bool,
    /// The service unit's text instead of `command`.
    pub service: Option<Spanned<UnitSpec>>,
    /// The timer unit's text instead of the schedule keys.
    pub timer: Option<Spanned<UnitSpec>>,
    /// How long each `systemctl` change to the timer may take.
    pub timeout: Option<Spanned<String>>,
    /// Resources to converge before this one, e.g. `["file:/usr/local/bin/backup"]`.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
}

/// Whether a timer's job exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimerEnsure {
    /// Its units written, the timer as `enabled`/`state`/`masked` say.
    #[default]
    Present,
    /// Stopped, disabled and its unit files removed.
    Absent,
}

/// One string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strings(pub Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Strings;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Strings, E> {
                Ok(Strings(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Strings, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Strings(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `unit = { ... }`: a service's unit file from exactly one of content, template or source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSpec {
    /// Literal unit file text.
    pub content: Option<String>,
    /// Handlebars template, relative to the bundle's `templates/`.
    pub template: Option<Spanned<String>>,
    /// File copied verbatim, relative to the bundle's `files/`.
    pub source: Option<Spanned<String>>,
    /// Command that must accept the new unit file first, e.g.
    /// `systemd-analyze verify {path}`.
    pub validate: Option<Spanned<String>>,
    /// Template variables for this unit only, merged over the role vars.
    #[serde(default)]
    pub vars: OwnVars,
}

/// `[[package]]`: a Debian package, optionally pinned (and then held) at one version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    /// Package name, e.g. `nginx`.
    pub name: Spanned<String>,
    /// Exact version, e.g. "1.22.1-9"; the package is then held there.
    pub version: Option<Spanned<String>>,
    /// A .deb relative to the bundle's `files/`, installed as it is (then held at its
    /// version), its dependencies from the archives.
    pub source: Option<Spanned<String>>,
    /// Installed (default), absent, or latest.
    #[serde(default)]
    pub ensure: PackageEnsure,
    /// How long its `apt-get install`/`remove` may take, e.g. "30m"; default: agent.toml's
    /// `[timeouts] package`.
    pub timeout: Option<Spanned<String>>,
    /// Resources to converge before this one, e.g. `["user:app", "file:/etc/app.conf"]`.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    /// Services to restart (or reload) at the end of the run when this changes.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
}

/// `[[kernel_module]]`: a module loaded (now and at boot) or absent (unloaded, blacklisted).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelModuleSpec {
    /// The module, e.g. `br_netfilter` (`-` and `_` are the same).
    pub name: Spanned<String>,
    /// `loaded` (default) or `absent`.
    pub ensure: Option<Spanned<String>>,
    /// Options for its modprobe.d file, e.g. `"hashsize=65536"`.
    pub options: Option<Spanned<String>>,
    /// Resources to converge before this one, e.g. `["package:wireguard-tools"]`.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
}

/// What a package declaration wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageEnsure {
    /// Installed at any version (or exactly `version`).
    #[default]
    Installed,
    /// Not installed.
    Absent,
    /// Installed at the archive's candidate version.
    Latest,
}

/// A `[sysctl]` (or `[sysfs]`) value: an integer or a string (multi-value keys such as
/// "1024 65000"), or a table `{ value = ..., persist = false }` for a live value that the
/// boot files leave out (the
/// way Puppet's `persist => false` works: the host keeps it across reboots some other way,
/// or not at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlValue {
    /// The value, exactly as it is written to the kernel.
    pub value: String,
    /// Whether converge's drop-in in /etc/sysctl.d carries it (default true).
    pub persist: bool,
}

/// An integer or a string, as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for SysctlValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SysctlValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer, a string or a table { value = ..., persist = false }")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SysctlValue, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SysctlValue, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SysctlValue, E> {
                Ok(SysctlValue {
                    value: v.to_owned(),
                    persist: true,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SysctlValue, A::Error> {
                use serde::de::Error;
                let (mut value, mut persist) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "value" => value = Some(map.next_value::<Scalar>()?.0),
                        "persist" => persist = Some(map.next_value::<bool>()?),
                        other => return Err(A::Error::unknown_field(other, &["value", "persist"])),
                    }
                }
                Ok(SysctlValue {
                    value: value.ok_or_else(|| A::Error::missing_field("value"))?,
                    persist: persist.unwrap_or(true),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether an account should exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    /// Create or keep it.
    #[default]
    Present,
    /// Remove it (the only way converge deletes an account).
    Absent,
}

/// `[[user]]`: a login account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Login name.
    pub name: Spanned<String>,
    /// `present` (default) or `absent`.
    #[serde(default)]
    pub ensure: Ensure,
    /// User id.
    pub uid: Option<Spanned<u32>>,
    /// Primary group by id (or use `group`).
    pub gid: Option<Spanned<u32>>,
    /// Primary group by name.
    pub group: Option<Spanned<String>>,
    /// Supplementary groups, the exact list.
    pub groups: Option<Vec<Spanned<String>>>,
    /// Home directory.
    pub home: Option<Spanned<String>>,
    /// Login shell.
    pub shell: Option<Spanned<String>>,
    /// The GECOS comment.
    pub comment: Option<Spanned<String>>,
    /// Create as a system account.
    #[serde(default)]
    pub system: bool,
    /// Create, move and remove the home directory with the account.
    pub manage_home: Option<bool>,
    /// Resources to converge before this one.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
}

/// `[[group]]`: a group account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name.
    pub name: Spanned<String>,
    /// `present` (default) or `absent`.
    #[serde(default)]
    pub ensure: Ensure,
    /// Group id.
    pub gid: Option<Spanned<u32>>,
    /// Create as a system group.
    #[serde(default)]
    pub system: bool,
    /// Resources to converge before this one.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
}

/// `[[exec]]`: a guarded shell command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// Identity in reports and `after` (default: the command itself).
    pub name: Option<Spanned<String>>,
    /// Run with `sh -c`.
    pub command: Spanned<String>,
    /// Run only when this guard exits non-zero.
    pub unless: Option<String>,
    /// Run only when this guard exits zero.
    pub onlyif: Option<String>,
    /// Run only when this path does not exist.
    pub creates: Option<Spanned<String>>,
    /// Working directory.
    pub cwd: Option<Spanned<String>>,
    /// Run as this user.
    pub user: Option<Spanned<String>>,
    /// Extra environment variables.
    #[serde(default)]
    pub environment: std::collections::BTreeMap<String, String>,
    /// Time limit with a unit, e.g. "30s", "5m".
    pub timeout: Option<Spanned<String>>,
    /// Keep the command and its output out of reports and logs.
    #[serde(default)]
    pub sensitive: bool,
    /// Resources to converge before this one.
    #[serde(default)]
    pub after: Vec<Spanned<String>>,
    /// Services to restart (or reload) at the end of the run when the command ran.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
}

/// A hint for a schema error of `key` (written as `raw`) where the schema's own message
/// leaves the fix unclear.
pub(super) fn hint(key: &str, message: &str, raw: &str) -> Option<String> {
    if key == "mode" && message.starts_with("invalid type: integer") {
        // `mode = 644` reads as decimal six hundred and forty-four; quoted, it is octal.
        let digits = raw.trim();
        let octal = if digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()) {
            format!("0{digits}")
        } else {
            "0644".to_owned()
        };
        return Some(format!(
            "mode is a string of octal digits: write mode = \"{octal}\""
        ));
    }
    None
}
