//! The distribution a tree is, from its os-release: which package backend serves it, and the
//! `os.*` facts templates see.

use std::path::Path;

use super::tree_file::read_text_or_empty;

/// The fields of os-release that converge uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`, `rocky`.
    pub id: String,
    /// `ID_LIKE`, the distributions this one derives from, e.g. `rhel centos fedora`.
    pub id_like: Vec<String>,
    /// `VERSION_ID`, e.g. `12`, `9.3`.
    pub version_id: String,
    /// `VERSION_CODENAME`, e.g. `bookworm`.
    pub codename: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

/// The family of distributions a tree belongs to, which decides its package tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Debian, Ubuntu and their derivatives: apt and dpkg.
    Debian,
    /// RHEL, Fedora, CentOS, Rocky, AlmaLinux and their derivatives: dnf and rpm.
    Redhat,
}

impl Family {
    /// The name of the `os.family` fact.
    pub fn name(self) -> &'static str {
        match self {
            Family::Debian => "debian",
            Family::Redhat => "redhat",
        }
    }
}

const DEBIAN: &[&str] = &["debian", "ubuntu"];
const REDHAT: &[&str] = &["rhel", "fedora", "centos", "rocky", "almalinux"];

impl OsRelease {
    /// The os-release of the tree at `root` (`/etc/os-release`, else
    /// `/usr/lib/os-release`, resolved inside the tree); empty when it has neither.
    pub fn of_tree(root: &Path) -> OsRelease {
        let mut text = read_text_or_empty(root, Path::new("/etc/os-release"));
        if text.is_empty() {
            text = read_text_or_empty(root, Path::new("/usr/lib/os-release"));
        }
        OsRelease::parse(&text)
    }

    /// Parses os-release text (`KEY=value`, values optionally quoted).
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').trim_matches('\'').to_owned();
            match key.trim() {
                "ID" => os.id = value,
                "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_owned).collect(),
                "VERSION_ID" => os.version_id = value,
                "VERSION_CODENAME" => os.codename = value,
                "PRETTY_NAME" => os.pretty_name = value,
                _ => {}
            }
        }
        os
    }

    /// The `os.family` fact: the family's name, else the `ID` of a distribution of no
    /// family converge knows (as Ansible's `os_family` does).
    pub fn family_name(&self) -> String {
        self.family()
            .map_or_else(|| self.id.clone(), |f| f.name().to_owned())
    }

    /// The family, from `ID` first, then `ID_LIKE` in its order; `None` for any other
    /// distribution, or a tree without os-release.
    pub fn family(&self) -> Option<Family> {
        std::iter::once(&self.id)
            .chain(&self.id_like)
            .find_map(|id| {
                if DEBIAN.contains(&id.as_str()) {
                    Some(Family::Debian)
                } else if REDHAT.contains(&id.as_str()) {
                    Some(Family::Redhat)
                } else {
                    None
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_os_release() {
        let os = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        );
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.codename, "bookworm");
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os.family(), Some(Family::Debian));
    }

    #[test]
    fn the_family_comes_from_id_then_id_like() {
        let family = |text: &str| OsRelease::parse(text).family();
        assert_eq!(
            family("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n"),
            Some(Family::Redhat)
        );
        assert_eq!(family("ID=almalinux\n"), Some(Family::Redhat));
        assert_eq!(family("ID=fedora\n"), Some(Family::Redhat));
        assert_eq!(family("ID=ol\nID_LIKE=\"fedora\"\n"), Some(Family::Redhat));
        assert_eq!(
            family("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
            Some(Family::Debian)
        );
        assert_eq!(family("ID=alpine\n"), None);
        assert_eq!(family(""), None);
    }
}
