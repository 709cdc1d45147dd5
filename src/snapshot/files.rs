//! Files under the snapshot's paths: type, owner, group, mode, link target, sha256, the text of
//! small files, and for package conffiles whether they were edited.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::packages::Conffiles;
use super::scope::{below, Selection, MAX_ENTRIES, MAX_READ};
use super::SnapshotError;
use crate::system::walk::{WalkEntry, WalkKind};
use crate::system::{System, SystemError};

/// Text files up to this size are recorded whole, so compare can show a diff and capture can
/// copy them; larger or binary files by hash only.
pub const CONTENT_LIMIT: u64 = 64 * 1024;

/// Paths whose content never enters a snapshot (only their hash does). Globs: `*` stays
/// within one path component, `**` crosses them. Any file holding `PRIVATE KEY` material is
/// treated the same way, whatever its name.
pub const DEFAULT_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/security/opasswd",
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private/**",
    "/etc/krb5.keytab",
    "/etc/ipsec.secrets",
    "/etc/ppp/*-secrets",
    "/etc/NetworkManager/system-connections/**",
    "/etc/wpa_supplicant/*.conf",
    "/etc/letsencrypt/archive/**",
    "/etc/letsencrypt/keys/**",
    "**/*.key",
];

/// Content markers of private keys (PEM, OpenSSH, PGP armour).
const KEY_MARKERS: &[&[u8]] = &[b"PRIVATE KEY-----", b"PRIVATE KEY BLOCK-----"];

/// What kind of entry a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A device, socket or fifo.
    Other,
}

/// One entry under the snapshot's paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// What it is.
    #[serde(rename = "type")]
    pub kind: FileType,
    /// Owner name (the uid when the tree has no name for it).
    pub owner: String,
    /// Group name (the gid when the tree has no name for it).
    pub group: String,
    /// Permission bits in octal, e.g. `0644`.
    pub mode: String,
    /// A link's target as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A file's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A file's sha256 (absent when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The whole text of a small text file that is not a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A secret: recorded by hash only, never by content.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Not world-readable: its text is recorded only with `--include-private`; compare
    /// never shows it, capture marks it `sensitive`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// The package whose file list has this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// For a package conffile: whether it differs from what the package shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conffile_modified: Option<bool>,
}

/// Secret path patterns, compiled once.
pub(super) struct SecretMatcher(globset::GlobSet);

impl SecretMatcher {
    pub(super) fn new(extra: &[String]) -> Result<SecretMatcher, SnapshotError> {
        let mut set = globset::GlobSetBuilder::new();
        for pattern in DEFAULT_SECRETS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
        {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| SnapshotError::Pattern {
                    pattern: pattern.to_owned(),
                    message: e.kind().to_string(),
                })?;
            set.add(glob);
        }
        let set = set.build().map_err(|e| SnapshotError::Pattern {
            pattern: extra.join(", "),
            message: e.to_string(),
        })?;
        Ok(SecretMatcher(set))
    }

    pub(super) fn is_secret(&self, path: &Path) -> bool {
        self.0.is_match(path)
    }
}

/// Files by path, and the md5 of each regular file (for conffiles; not serialised).
pub(super) type Observed = (BTreeMap<String, FileEntry>, HashMap<String, String>);

/// What a walk of the scope found, and the caps it hit (said in `host.capped`).
pub(super) struct Walked {
    pub(super) observed: Observed,
    pub(super) capped: Vec<String>,
}

pub(super) fn observe(
    sys: &System,
    paths: &[PathBuf],
    selected: &BTreeMap<PathBuf, Selection>,
    secrets: &SecretMatcher,
    include_private: bool,
) -> Result<Walked, SnapshotError> {
    let accounts = sys.accounts();
    let mut files = BTreeMap::new();
    let mut md5s = HashMap::new();
    let mut capped = Vec::new();
    for start in paths {
        if !start.is_absolute() {
            return Err(SystemError::BadPath(start.clone()).into());
        }
        let selection = selected.get(start).copied();
        let mut entries = 0usize;
        let mut unread = 0usize;
        let mut full = false;
        sys.walk(start, &mut |e: WalkEntry| {
            let is_dir = matches!(e.kind, WalkKind::Directory);
            let (record, enter) = match selection {
                None => (true, true),
                Some(sel) => match below(&e.path, start) {
                    Some(rel) => sel.admits(&rel, is_dir),
                    None => (false, false),
                },
            };
            if !record || full {
                return enter && !full;
            }
            if selection.is_some() {
                entries += 1;
                if entries > MAX_ENTRIES {
                    full = true;
                    return false;
                }
            }
            let key = e.path.to_string_lossy().into_owned();
            let mut entry = FileEntry {
                kind: FileType::Other,
                owner: accounts.user_name(e.meta.uid),
                group: accounts.group_name(e.meta.gid),
                mode: format!("{:04o}", e.meta.mode),
                target: None,
                size: None,
                sha256: None,
                content: None,
                secret: false,
                private: false,
                package: None,
                conffile_modified: None,
            };
            match e.kind {
                WalkKind::Directory => entry.kind = FileType::Directory,
                WalkKind::Symlink(t) => {
                    entry.kind = FileType::Symlink;
                    entry.target = Some(t.to_string_lossy().into_owned());
                }
                WalkKind::Other => {}
                WalkKind::File(_) if selection.is_some() && e.size > MAX_READ => {
                    entry.kind = FileType::File;
                    entry.size = Some(e.size);
                    entry.private = e.meta.mode & 0o004 == 0;
                    unread += 1;
                }
                WalkKind::File(f) => {
                    entry.kind = FileType::File;
                    entry.size = Some(e.size);
                    entry.private = e.meta.mode & 0o004 == 0;
                    let bytes = f.and_then(|mut f| {
                        let mut buf = Vec::with_capacity(e.size.min(1 << 20) as usize);
                        f.read_to_end(&mut buf).ok().map(|_| buf)
                    });
                    if let Some(bytes) = bytes {
                        entry.sha256 = Some(hex::encode(sha2::Sha256::digest(&bytes)));
                        // dpkg's md5s are only needed for conffiles, which live in /etc.
                        if selection.is_none() {
                            md5s.insert(key.clone(), hex::encode(md5::Md5::digest(&bytes)));
                        }
                        entry.secret = secrets.is_secret(&e.path) || holds_private_key(&bytes);
                        // Not world-readable: its text stays on the host unless asked for.
                        let withheld = entry.secret || (entry.private && !include_private);
                        if !withheld && bytes.len() as u64 <= CONTENT_LIMIT {
                            entry.content = text(bytes);
                        }
                    }
                }
            }
            files.insert(key, entry);
            enter
        })?;
        if full {
            let note = format!(
                "{}: more than {MAX_ENTRIES} entries; the rest is not recorded",
                start.display()
            );
            tracing::warn!("snapshot: {note}");
            capped.push(note);
        }
        if unread > 0 {
            let note = format!(
                "{}: {unread} file{} over {} MiB recorded by size only",
                start.display(),
                if unread == 1 { "" } else { "s" },
                MAX_READ / (1024 * 1024)
            );
            // Said, not kept: each such entry shows it itself (a size and no hash).
            tracing::info!("snapshot: {note}");
        }
    }
    Ok(Walked {
        observed: (files, md5s),
        capped,
    })
}

fn holds_private_key(bytes: &[u8]) -> bool {
    KEY_MARKERS
        .iter()
        .any(|m| bytes.windows(m.len()).any(|w| w == *m))
}

/// The bytes as text when they are UTF-8 without NULs (binary files are hashed only).
fn text(bytes: Vec<u8>) -> Option<String> {
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Notes which package lists each path, and whether each conffile was edited.
pub(super) fn mark_packaged(
    sys: &System,
    observed: &mut Observed,
    conffiles: &Conffiles,
    paths: &[PathBuf],
) -> Result<(), SystemError> {
    let (files, md5s) = observed;
    for start in paths {
        for (path, package) in sys.packages().file_owners(sys, start)? {
            if let Some(entry) = files.get_mut(&*path.to_string_lossy()) {
                entry.package = Some(package);
            }
        }
    }
    for (path, (package, conffile)) in conffiles {
        let key = path.to_string_lossy();
        let Some(entry) = files.get_mut(&*key) else {
            continue;
        };
        entry.package = Some(package.clone());
        // dpkg records md5s, rpm sha256 (md5 for packages built before rpm 4.6); anything
        // else (dpkg's `newconffile` before configuration, a sha512) is not judged.
        let now = match conffile.digest.len() {
            32 => md5s.get(&*key),
            64 => entry.sha256.as_ref(),
            _ => None,
        };
        if let Some(now) = now {
            entry.conffile_modified = Some(*now != conffile.digest);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_by_path_and_by_content() {
        let m = SecretMatcher::new(&["/etc/app/token".into()]).unwrap();
        assert!(m.is_secret(Path::new("/etc/shadow")));
        assert!(m.is_secret(Path::new("/etc/ssh/ssh_host_ed25519_key")));
        assert!(!m.is_secret(Path::new("/etc/ssh/ssh_host_ed25519_key.pub")));
        assert!(m.is_secret(Path::new("/etc/ssl/private/a/b.pem")));
        assert!(m.is_secret(Path::new("/etc/nginx/tls/site.key")));
        assert!(m.is_secret(Path::new("/etc/app/token")));
        assert!(!m.is_secret(Path::new("/etc/app/config")));
        assert!(holds_private_key(
            b"x\n-----BEGIN OPENSSH PRIVATE KEY-----\n"
        ));
        assert!(!holds_private_key(b"-----BEGIN CERTIFICATE-----\n"));
        assert!(SecretMatcher::new(&["/etc/[".into()]).is_err());
    }
}
