//! The dnf/rpm backend of [`PackageManager`], for the RHEL family (RHEL, Rocky, AlmaLinux,
//! CentOS Stream, Fedora): rpm for what is installed, dnf for repositories and changes.
//!
//! Under `--root` both run from the host against the tree, the way images of this family
//! are built (`dnf --installroot`, `rpm --root`): the tree's rpm database, its
//! `/etc/yum.repos.d` and its `dnf.conf` are used (dnf falls back to the host's when the
//! tree has none), and rpm runs scriptlets chrooted into the tree. dnf's plugins are the
//! host's Python code and read the host's files, so under `--root` none is loaded.
//!
//! A hold is an entry in dnf's versionlock list, written by converge itself in the format
//! `dnf versionlock add` writes (`NAME-EPOCH:VERSION-RELEASE.*`): the plugin applies the
//! lock to every later dnf run on the host, and the list stays inside the tree under
//! `--root` (the plugin, given `--installroot`, would edit the host's list instead).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::command::{self, tool};
use super::fs::Attrs;
use super::packages::{
    Conffile, FileFormat, FileHeader, InstalledPackage, PackageManager, PackageStatus, Vocabulary,
};
use super::rpm_evr::{self, Evr};
use super::tree_file::read_text_or_empty;
use super::{Host, System, SystemError};

/// The versionlock plugin's configuration; its presence says the plugin is installed.
const VERSIONLOCK_CONF: &str = "/etc/dnf/plugins/versionlock.conf";

/// Where the plugin keeps its list unless its configuration says otherwise.
const VERSIONLOCK_LIST: &str = "/etc/dnf/plugins/versionlock.list";

/// rpm's file flag for a `%config` file (RPMFILE_CONFIG).
const RPMFILE_CONFIG: u32 = 1;

/// dnf and rpm of the live host, or of a tree through `--installroot` and `--root`.
#[derive(Debug, Default)]
pub(crate) struct Dnf;

fn rpm(sys: &System) -> Command {
    let mut cmd = tool("rpm");
    if !sys.is_live() {
        cmd.arg("--root").arg(sys.root());
    }
    cmd
}

/// dnf, answering yes and printing no progress. `plugins`: whether the host's plugins may
/// run (changes on the live host); queries never load them, so a versionlock does not hide
/// the versions converge must see to pin one.
fn dnf(sys: &System, plugins: bool) -> Command {
    let mut cmd = tool("dnf");
    cmd.args(["-y", "-q"]);
    if !sys.is_live() {
        let mut root = std::ffi::OsString::from("--installroot=");
        root.push(sys.root());
        cmd.arg(root);
    }
    if !plugins || !sys.is_live() {
        cmd.arg("--noplugins");
    }
    cmd
}

/// The versions of `name` a repository offers, newest first, each `[E:]V-R.ARCH`.
fn repository_versions(sys: &System, name: &str) -> Result<Vec<String>, SystemError> {
    // Every line dnf answers is `name`'s, whatever form the name was given in.
    let offers = repository_offers(sys, &[name])?;
    let mut versions: Vec<String> = Vec::new();
    for version in offers.into_values().flatten() {
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    versions.sort_by(|a, b| Evr::parse(b).cmp_version(&Evr::parse(a)));
    Ok(versions)
}

/// One `dnf repoquery --available --showduplicates` for `names`: each package name dnf
/// answers with, and the versions (`[E:]V-R.ARCH`) a repository offers of it.
fn repository_offers(
    sys: &System,
    names: &[&str],
) -> Result<BTreeMap<String, Vec<String>>, SystemError> {
    let mut cmd = dnf(sys, false);
    cmd.args([
        "repoquery",
        "--available",
        "--showduplicates",
        "--qf",
        "%{name}\t%{epoch}\t%{version}\t%{release}\t%{arch}",
        "--",
    ]);
    cmd.args(names);
    let text = command::run(&mut cmd, sys.timeouts().query)?;
    let mut offers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, evra)) = line.split_once('\t') else {
            continue;
        };
        if let Some(version) = parse_evra(evra) {
            offers.entry(name.to_owned()).or_default().push(version);
        }
    }
    Ok(offers)
}

/// Reads the name, epoch, version, release and arch of the .rpm at `path` (a file of the
/// source tree, not of the root) with `rpm -qp`; the version as [`Dnf::status`] shows it.
pub(super) fn read_rpm(
    path: &Path,
    deadline: std::time::Duration,
) -> Result<FileHeader, SystemError> {
    let mut cmd = tool("rpm");
    cmd.args([
        "-qp",
        "--qf",
        "%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n",
        "--",
    ])
    .arg(path);
    let text = command::run(&mut cmd, deadline)?;
    let header = text.lines().next().and_then(|line| {
        let (name, evra) = line.split_once('\t')?;
        let arch = evra.rsplit('\t').next()?.trim().to_owned();
        Some(FileHeader {
            format: FileFormat::Rpm,
            name: name.to_owned(),
            version: parse_evra(evra)?,
            arch,
        })
    });
    header.ok_or_else(|| {
        SystemError::io(
            path,
            std::io::Error::other("rpm gave no name, epoch, version, release and arch for it"),
        )
    })
}

/// `EPOCH\tVERSION\tRELEASE\tARCH` (rpm's `(none)` or dnf's `0` for no epoch) as converge
/// writes it.
fn parse_evra(line: &str) -> Option<String> {
    let [epoch, version, release, arch] = line.split('\t').collect::<Vec<_>>()[..] else {
        return None;
    };
    let epoch = epoch.parse().unwrap_or(0);
    Some(rpm_evr::display(epoch, version, release, arch.trim()))
}

/// The versionlock list of this tree and whether the plugin that reads it is installed
/// and enabled.
fn versionlock(sys: &System) -> (PathBuf, bool) {
    let conf = read_text_or_empty(sys.root(), Path::new(VERSIONLOCK_CONF));
    let value = |key: &str| {
        conf.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    let list = value("locklist").unwrap_or_else(|| VERSIONLOCK_LIST.to_owned());
    let enabled = !conf.is_empty()
        && !matches!(
            value("enabled").as_deref(),
            Some("0" | "false" | "False" | "no")
        );
    (PathBuf::from(list), enabled)
}

/// Whether a versionlock entry locks package `name` (an exclude, `!...`, does not). The
/// plugin locks a name in every arch, so `glibc.i686` is locked by glibc's entry.
fn locks(entry: &str, name: &str) -> bool {
    let name = rpm_evr::split_name_arch(name).0;
    let entry = entry.trim();
    if entry.starts_with('#') || entry.starts_with('!') {
        return false;
    }
    // NAME, or NAME-[EPOCH:]VERSION...: versions start with a digit, names may hold dashes.
    entry == name
        || entry
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// Where this tree's versionlock list is, and its text (empty when there is none).
fn versionlock_text(sys: &System) -> Result<(PathBuf, String), SystemError> {
    let (list, _) = versionlock(sys);
    let text = match sys.read_file(&list) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(SystemError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            String::new()
        }
        Err(e) => return Err(e),
    };
    Ok((list, text))
}

impl PackageManager for Dnf {
    fn vocabulary(&self) -> Vocabulary {
        Vocabulary {
            sources: "any enabled repository",
            refresh_hint: "is its repository configured and enabled?",
            holds_hint: "dnf versionlock list",
        }
    }

    /// `rpm -q`; held when the versionlock list locks the name.
    fn status(&self, sys: &System, name: &str) -> Result<PackageStatus, SystemError> {
        let mut cmd = rpm(sys);
        cmd.args([
            "-q",
            "--qf",
            "%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n",
            "--",
            name,
        ]);
        let out = command::output(&mut cmd, sys.timeouts().query)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let installed = if out.status.success() {
            // Several lines for a multilib pair or install-only kernels: the newest speaks.
            let mut versions: Vec<String> = stdout.lines().filter_map(parse_evra).collect();
            versions.sort_by(|a, b| Evr::parse(b).cmp_version(&Evr::parse(a)));
            versions.into_iter().next()
        } else if stdout.contains("is not installed") {
            None
        } else {
            return Err(command::failed(&cmd, &out));
        };
        let (_, list) = versionlock_text(sys)?;
        Ok(PackageStatus {
            installed,
            held: list.lines().any(|l| locks(l, name)),
        })
    }

    /// `dnf repoquery --available --showduplicates`.
    fn available(&self, sys: &System, name: &str) -> Result<Vec<String>, SystemError> {
        repository_versions(sys, name)
    }

    /// The newest version a repository offers, in the installed arch when there is one,
    /// else in the machine's or `noarch`: what `dnf install NAME` picks.
    fn candidate(&self, sys: &System, name: &str) -> Result<Option<String>, SystemError> {
        let versions = repository_versions(sys, name)?;
        let installed = self.status(sys, name)?.installed;
        let machine = nix::sys::utsname::uname()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_default();
        let arch_of = |v: &String| Evr::parse(v).arch.map(str::to_owned);
        let preferred = installed.as_ref().and_then(arch_of);
        let fits = |v: &&String| match (&preferred, arch_of(v).as_deref()) {
            (Some(p), Some(a)) => a == p || a == "noarch",
            (None, Some(a)) => a == machine || a == "noarch",
            (_, None) => true,
        };
        Ok(versions.iter().find(fits).cloned())
    }

    /// rpm's version order (rpmvercmp on epoch, version, release).
    fn is_newer(&self, _sys: &System, a: &str, b: &str) -> Result<bool, SystemError> {
        Ok(Evr::parse(a).cmp_version(&Evr::parse(b)).is_gt())
    }

    /// What a role writes (`1.0-1`, `2:1.0-1.el9`, `1.0-1.el9.x86_64`) names a full version
    /// when the parts it gives agree.
    fn same_version(&self, full: &str, wanted: &str) -> bool {
        Evr::parse(full).satisfies(&Evr::parse(wanted))
    }

    /// `dnf install NAME-[E:]V-R.ARCH`, which also downgrades.
    fn install(&self, host: &Host, name: &str, version: Option<&str>) -> Result<(), SystemError> {
        let mut cmd = dnf(host.system(), true);
        cmd.args(["install", "--"]);
        // dnf reads `NAME-[E:]V-R[.ARCH]`: the arch of `glibc.i686` goes at the end.
        let (base, arch) = rpm_evr::split_name_arch(name);
        match (version, arch) {
            (Some(v), Some(a)) if Evr::parse(v).arch.is_none() => {
                cmd.arg(format!("{base}-{v}.{a}"))
            }
            (Some(v), _) => cmd.arg(format!("{base}-{v}")),
            (None, _) => cmd.arg(name),
        };
        tracing::info!(package = name, version, "dnf install");
        command::run(&mut cmd, host.timeouts().package).map(drop)
    }

    /// An .rpm for rpm's own architecture (`rpm --eval %_arch`) or `noarch`. rpm would
    /// also take some older arches on some machines (i686 on x86_64): those are refused
    /// here rather than guessed.
    fn file_unfit(&self, sys: &System, file: &FileHeader) -> Result<Option<String>, SystemError> {
        let whose = "rpm's (dnf)";
        super::packages::unfit(file, FileFormat::Rpm, whose, "noarch", "rpm", || {
            let mut cmd = rpm(sys);
            cmd.args(["--eval", "%_arch"]);
            let arch = command::run(&mut cmd, sys.timeouts().query)?;
            Ok(vec![arch.trim().to_owned()])
        })
    }

    /// A directory of converge's own, not apt's archives (which an rpm host lacks); under
    /// the root, so that under `--root` nothing is written outside the tree. dnf itself
    /// does not chroot: it reads the file from wherever this machine sees it.
    fn staging_dir(&self) -> &'static Path {
        Path::new("/var/cache/converge/packages")
    }

    /// `dnf install /PATH.rpm`, which also downgrades; dnf reads the file itself, so it is
    /// given the path as this machine sees it, inside the root.
    fn install_file(
        &self,
        host: &Host,
        name: &str,
        version: &str,
        file: &Path,
    ) -> Result<(), SystemError> {
        let sys = host.system();
        let seen = sys.root().join(file.strip_prefix("/").unwrap_or(file));
        let mut cmd = dnf(sys, true);
        cmd.args(["install", "--"]).arg(&seen);
        tracing::info!(package = name, version, file = %seen.display(), "dnf install");
        command::run(&mut cmd, host.timeouts().package).map(drop)
    }

    /// `dnf remove`; rpm keeps an edited `%config` file as `.rpmsave`.
    fn remove(&self, host: &Host, name: &str) -> Result<(), SystemError> {
        let mut cmd = dnf(host.system(), true);
        cmd.args(["remove", "--", name]);
        tracing::info!(package = name, "dnf remove");
        command::run(&mut cmd, host.timeouts().package).map(drop)
    }

    /// Adds or drops the versionlock entry of `name` at its installed version.
    fn hold(&self, host: &Host, name: &str, hold: bool) -> Result<(), SystemError> {
        let sys = host.system();
        let (list, enabled) = versionlock(sys);
        if hold && !enabled {
            return Err(SystemError::Unsupported(format!(
                "cannot hold package {name}: dnf's versionlock plugin is not installed or not enabled on this host ({VERSIONLOCK_CONF}; install python3-dnf-plugin-versionlock)"
            )));
        }
        let (_, text) = versionlock_text(sys)?;
        let entry = match hold {
            false => None,
            true => {
                let Some(version) = self.status(sys, name)?.installed else {
                    return Err(SystemError::Unsupported(format!(
                        "cannot hold package {name}: it is not installed"
                    )));
                };
                let evr = Evr::parse(&version);
                // What `dnf versionlock add` writes, for a name with an arch too: the
                // plugin locks a name in every arch, as multilib pairs move together.
                Some(format!(
                    "{}-{}:{}-{}.*",
                    rpm_evr::split_name_arch(name).0,
                    evr.epoch.unwrap_or(0),
                    evr.version,
                    evr.release.unwrap_or_default()
                ))
            }
        };
        let out = relock(&text, name, entry.as_deref());
        if out == text {
            return Ok(());
        }
        tracing::info!(package = name, hold, list = %list.display(), "dnf versionlock");
        host.write_file(&list, out.as_bytes(), Attrs::default(), 0o644)
    }

    /// One `dnf repoquery --available --showduplicates` for all of them: a version is
    /// offered when an enabled repository has it.
    fn offered(
        &self,
        sys: &System,
        packages: &[(&str, &str)],
    ) -> Result<BTreeMap<String, bool>, SystemError> {
        if packages.is_empty() {
            return Ok(BTreeMap::new());
        }
        let names: Vec<&str> = packages.iter().map(|(name, _)| *name).collect();
        let offers = repository_offers(sys, &names)?;
        Ok(packages
            .iter()
            .map(|&(name, version)| {
                let offered = offers
                    .get(name)
                    .is_some_and(|vs| vs.iter().any(|v| self.same_version(v, version)));
                (name.to_owned(), offered)
            })
            .collect())
    }

    /// `rpm -qa` with each package's `%config` files and their digests; the manual mark from
    /// dnf's history (`repoquery --userinstalled`).
    fn installed(&self, sys: &System) -> Result<Vec<InstalledPackage>, SystemError> {
        let mut cmd = rpm(sys);
        cmd.args([
            "-qa",
            "--qf",
            "%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n[ %{FILEFLAGS}\t%{FILEDIGESTS}\t%{FILENAMES}\n]",
        ]);
        let mut out = parse_installed(&command::run(&mut cmd, sys.timeouts().query)?);
        let (_, list) = versionlock_text(sys)?;
        let user = user_installed(sys)?;
        for p in &mut out {
            p.held = list.lines().any(|l| locks(l, &p.name));
            p.manual = user.as_ref().is_none_or(|u| u.contains(&p.name));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.arch.cmp(&b.arch)));
        Ok(out)
    }

    /// From `rpm -qa`'s file lists.
    fn file_owners(
        &self,
        sys: &System,
        prefix: &Path,
    ) -> Result<BTreeMap<PathBuf, String>, SystemError> {
        let mut cmd = rpm(sys);
        cmd.args(["-qa", "--qf", "[%{FILENAMES}\t%{NAME}\n]"]);
        let text = command::run(&mut cmd, sys.timeouts().query)?;
        let mut owners = BTreeMap::new();
        let mut names: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.rsplit_once('\t'))
            .filter(|(path, _)| Path::new(path).starts_with(prefix))
            .collect();
        // A directory several packages own goes to the first in name order, as with dpkg.
        names.sort_by(|a, b| a.1.cmp(b.1));
        for (path, name) in names {
            owners
                .entry(PathBuf::from(path))
                .or_insert_with(|| name.to_owned());
        }
        Ok(owners)
    }
}

/// `text`, a versionlock list, without the entries that lock `name` (nor converge's
/// comment above one), and with `entry` added under that comment when given; every other
/// line, the admin's included, stays as it was.
fn relock(text: &str, name: &str, entry: Option<&str>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let comment_of_dropped =
            *line == LOCK_COMMENT && lines.get(i + 1).is_some_and(|next| locks(next, name));
        if locks(line, name) || comment_of_dropped {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(entry) = entry {
        out.push_str(&format!("{LOCK_COMMENT}\n{entry}\n"));
    }
    out
}

/// The comment converge writes above each of its versionlock entries.
const LOCK_COMMENT: &str = "# held by converge: a role pins this version";

/// Names dnf's history marks as installed by a user; `None` without a history (packages
/// put there by rpm alone, or a tree never touched by dnf), where every package counts
/// as asked for.
fn user_installed(sys: &System) -> Result<Option<BTreeSet<String>>, SystemError> {
    if !matches!(
        sys.entry(Path::new("/var/lib/dnf/history.sqlite")),
        Ok(super::fs::Entry::File(_))
    ) {
        return Ok(None);
    }
    let mut cmd = dnf(sys, false);
    cmd.args(["repoquery", "--userinstalled", "--qf", "%{name}"]);
    let text = command::run(&mut cmd, sys.timeouts().query)?;
    Ok(Some(text.lines().map(str::to_owned).collect()))
}

fn parse_installed(text: &str) -> Vec<InstalledPackage> {
    let mut out: Vec<InstalledPackage> = Vec::new();
    for line in text.lines() {
        if let Some(file) = line.strip_prefix(' ') {
            let Some(pkg) = out.last_mut() else { continue };
            let mut f = file.splitn(3, '\t');
            let (Some(flags), Some(digest), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let config = flags.parse::<u32>().is_ok_and(|f| f & RPMFILE_CONFIG != 0);
            // A %config directory or link has no digest: nothing to compare.
            if config && !digest.is_empty() {
                pkg.conffiles.push(Conffile {
                    path: PathBuf::from(path),
                    digest: digest.to_owned(),
                    obsolete: false,
                });
            }
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, arch] = f[..] else {
            continue;
        };
        // The keys rpm --import adds are pseudo-packages, not software.
        if name == "gpg-pubkey" {
            continue;
        }
        out.push(InstalledPackage {
            name: name.to_owned(),
            arch: arch.to_owned(),
            version: rpm_evr::display(epoch.parse().unwrap_or(0), version, release, arch)
                .trim_end_matches(&format!(".{arch}"))
                .to_owned(),
            held: false,
            manual: true,
            conffiles: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versionlock_entries_lock_their_name_only() {
        assert!(locks("cfgtest-0:1.0-1.*", "cfgtest"));
        assert!(locks("cfgtest", "cfgtest"));
        assert!(locks("cfg-test-2:1.0-1.el9.*", "cfg-test"));
        assert!(!locks("cfg-test-2:1.0-1.el9.*", "cfg"));
        assert!(!locks("!cfgtest-0:2.0-1.*", "cfgtest"));
        assert!(!locks("# cfgtest-0:1.0-1.*", "cfgtest"));
        assert!(!locks("cfgtest-devel-0:1.0-1.*", "cfgtest"));
        assert!(locks("glibc-0:2.34-1.el9.*", "glibc.i686"));
        assert!(locks("python3.11-0:3.11.5-1.el9.*", "python3.11"));
        assert!(!locks("python3.11-0:3.11.5-1.el9.*", "python3"));
    }

    #[test]
    fn relocking_replaces_only_the_entry_of_that_package() {
        let admin = "# Added lock on Mon Dec  7\nbash-0:5.1.8-9.el9.*\n";
        let held = relock(admin, "cfgtest", Some("cfgtest-0:1.0-1.*"));
        assert_eq!(held, format!("{admin}{LOCK_COMMENT}\ncfgtest-0:1.0-1.*\n"));
        let moved = relock(&held, "cfgtest", Some("cfgtest-0:2.0-1.*"));
        assert_eq!(moved, format!("{admin}{LOCK_COMMENT}\ncfgtest-0:2.0-1.*\n"));
        let middle = format!("{held}zsh-0:5.8-9.el9.*\n");
        assert_eq!(
            relock(&middle, "cfgtest", None),
            format!("{admin}zsh-0:5.8-9.el9.*\n")
        );
        assert_eq!(relock(admin, "cfgtest", None), admin);
    }

    #[test]
    fn rpm_query_output_parses_with_config_files() {
        let text = "bash\t0\t5.1.8\t9.el9\tx86_64\n 0\tabc\t/usr/bin/bash\n 17\tdef\t/etc/skel/.bashrc\n 1\t\t/etc/profile.d\ngpg-pubkey\t0\tfd431d51\t4ae0493b\t(none)\nopenssl\t1\t3.0.7\t27.el9\tx86_64\n";
        let got = parse_installed(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "bash");
        assert_eq!(got[0].version, "5.1.8-9.el9");
        assert_eq!(got[0].conffiles.len(), 1);
        assert_eq!(got[0].conffiles[0].path, Path::new("/etc/skel/.bashrc"));
        assert_eq!(got[1].version, "1:3.0.7-27.el9");
    }

    #[test]
    fn repository_lines_read_with_or_without_epoch() {
        assert_eq!(
            parse_evra("0\t1.0\t1\tnoarch").as_deref(),
            Some("1.0-1.noarch")
        );
        assert_eq!(
            parse_evra("(none)\t1.0\t1\tnoarch").as_deref(),
            Some("1.0-1.noarch")
        );
        assert_eq!(
            parse_evra("2\t1.0\t1.el9\tx86_64").as_deref(),
            Some("2:1.0-1.el9.x86_64")
        );
        assert_eq!(parse_evra("Unable to detect release version"), None);
    }
}
