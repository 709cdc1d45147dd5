//! Package declarations: names and versions checked against the host family's rules
//! (Debian policy with apt's `:arch`, or rpm's with dnf's `.arch`), and package files read
//! at planning.

use toml::Spanned;

use super::{Builder, Common};
use crate::resource::package::{Ensure, PackageFile, PackageResource};
use crate::role::model::{PackageEnsure, PackageSpec};
use crate::role::Role;
use crate::system::packages::FileHeader;
use crate::system::rpm_evr::split_name_arch;
use crate::system::Timeouts;

impl Builder<'_> {
    pub(super) fn packages(&mut self, role: &Role) {
        for spec in &role.spec.package {
            let s = spec.get_ref();
            let name = s.name.get_ref();
            if !valid_package_name(name) {
                self.errors.push(role.error_at(
                    s.name.span().start,
                    format!("invalid package name '{name}': expected a Debian package name (lowercase letters, digits and + - ., optionally :ARCH) or an RPM one (letters, digits and + - . _, optionally .ARCH)"),
                ));
                continue;
            }
            if let Some(source) = &s.source {
                let Some(file) = self.package_file(role, s, source) else {
                    continue;
                };
                let Ok(timeout) = self.timeout(role, s.timeout.as_ref()) else {
                    continue;
                };
                let r = PackageResource {
                    name: name.clone(),
                    ensure: Ensure::FromFile(Box::new(file)),
                    timeout,
                };
                self.push(role, Common::new(spec.span().start, &s.after), r);
                self.notify_last(role, &s.notify);
                continue;
            }
            let ensure = match (s.ensure, &s.version) {
                (PackageEnsure::Installed, version) => {
                    if let Some(v) = version {
                        if !valid_version(v.get_ref()) {
                            self.errors.push(role.error_at(
                                v.span().start,
                                format!(
                                    "invalid version '{}' for package '{name}': expected a Debian version such as \"1.22.1-9\" or an RPM one such as \"1.20.1-14.el9_2.1\"",
                                    v.get_ref()
                                ),
                            ));
                            continue;
                        }
                    }
                    Ensure::Installed(version.as_ref().map(|v| v.get_ref().clone()))
                }
                (PackageEnsure::Absent, None) => Ensure::Absent,
                (PackageEnsure::Latest, None) => Ensure::Latest,
                (other, Some(v)) => {
                    self.errors.push(role.error_at(
                        v.span().start,
                        format!(
                            "package '{name}': version only goes with ensure = \"installed\", not \"{}\"",
                            if other == PackageEnsure::Absent { "absent" } else { "latest" }
                        ),
                    ));
                    continue;
                }
            };
            let Ok(timeout) = self.timeout(role, s.timeout.as_ref()) else {
                continue;
            };
            let r = PackageResource {
                name: name.clone(),
                ensure,
                timeout,
            };
            let common = Common::new(spec.span().start, &s.after);
            self.push(role, common, r);
            self.notify_last(role, &s.notify);
        }
    }

    /// The package file of a `source` declaration, checked against the declaration: a file
    /// of the bundle, a .deb or an .rpm whose package is the declared name (with the
    /// declared architecture, when the name gives one), at the declared version when one
    /// is given, and only with `ensure = "installed"`. Whether this host can install it is
    /// the host's to say, at check. `None` after a located error.
    fn package_file(
        &mut self,
        role: &Role,
        s: &PackageSpec,
        source: &Spanned<String>,
    ) -> Option<PackageFile> {
        let name = s.name.get_ref();
        if s.ensure != PackageEnsure::Installed {
            self.errors.push(role.error_at(
                source.span().start,
                format!("package '{name}': source only goes with ensure = \"installed\""),
            ));
            return None;
        }
        let (shown, content) = self.bundle_file(role, source)?;
        let path = content
            .path()
            .expect("a bundle file is read from its path")
            .to_path_buf();
        let header = match FileHeader::read(&path, Timeouts::default().query) {
            Ok(h) => h,
            Err(e) => {
                self.errors.push(role.error_at(
                    source.span().start,
                    format!("package '{name}': {shown} is not a readable package file: {e}"),
                ));
                return None;
            }
        };
        if !header.is_named(name) {
            self.errors.push(role.error_at(
                s.name.span().start,
                format!(
                    "package '{name}': {shown} is package '{}' ({}), not '{name}'",
                    header.name, header.arch
                ),
            ));
            return None;
        }
        if let Some(v) = &s.version {
            if !header.has_version(v.get_ref()) {
                self.errors.push(role.error_at(
                    v.span().start,
                    format!(
                        "package '{name}': version '{}' is not the version of {shown} ('{}'); give the file's version or none",
                        v.get_ref(),
                        header.version
                    ),
                ));
                return None;
            }
        }
        Some(PackageFile {
            shown,
            content,
            header,
        })
    }
}

/// A name either family's tools take: a role is planned (and validated, on an admin's
/// machine or in CI) without knowing which family will run it, so a role for the RHEL family
/// validated on Debian must pass; the package tool has the last word on the host.
fn valid_package_name(name: &str) -> bool {
    valid_deb_name(name) || valid_rpm_name(name)
}

/// A version either family's tools take.
fn valid_version(v: &str) -> bool {
    valid_deb_version(v) || valid_rpm_version(v)
}

/// Debian policy: lowercase letters, digits, `+ - .`, at least two characters, starting
/// alphanumeric; apt also accepts an `:arch` qualifier.
fn valid_deb_name(name: &str) -> bool {
    let (pkg, arch) = match name.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (name, None),
    };
    let pkg_ok = pkg.len() >= 2
        && pkg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && pkg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let arch_ok = arch
        .is_none_or(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    pkg_ok && arch_ok
}

/// rpm names: letters of either case, digits, `+ - . _` (NetworkManager, perl-Data-Dumper,
/// python3-dateutil), starting alphanumeric; dnf also accepts a `.arch` suffix (glibc.i686).
fn valid_rpm_name(name: &str) -> bool {
    let pkg = split_name_arch(name).0;
    !pkg.is_empty()
        && pkg.starts_with(|c: char| c.is_ascii_alphanumeric())
        && pkg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
}

/// Debian version characters: `[epoch:]upstream[-revision]`.
fn valid_deb_version(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
}

/// rpm version characters: `[epoch:]version[-release][.arch]`, where both may carry `_`
/// (el9_2), `~` and `^` (pre- and post-release markers); starting with a digit, so that
/// `version = "latest"` is caught as the `ensure` it means.
fn valid_rpm_version(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+~^:-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_and_versions_are_either_familys() {
        assert!(valid_package_name("nginx-common"));
        assert!(valid_package_name("libc6:amd64"));
        assert!(valid_package_name("g++"));
        assert!(valid_package_name("NetworkManager"));
        assert!(valid_package_name("perl-Data-Dumper"));
        assert!(valid_package_name("glibc.i686"));
        assert!(!valid_package_name("-oops"));
        assert!(!valid_package_name("_oops"));
        assert!(!valid_package_name("a b"));
        assert!(!valid_package_name("a;b"));
        assert!(!valid_package_name("libc6:"));
        assert!(valid_deb_name("libc6:amd64") && !valid_rpm_name("libc6:amd64"));
        assert!(valid_rpm_name("NetworkManager") && !valid_deb_name("NetworkManager"));
        assert!(valid_version("1:1.22.1-9+deb12u1"));
        assert!(valid_version("1.20.1-14.el9_2.1"));
        assert!(valid_version("2:1.0~rc1^git1-1.fc39"));
        assert!(!valid_deb_version("1.20.1-14.el9_2.1"));
        assert!(!valid_version("latest"));
        assert!(!valid_version("1.0 -1"));
        assert!(!valid_version("-1"));
    }
}
