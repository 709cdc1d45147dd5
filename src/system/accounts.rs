//! User and group lookups in the tree's own /etc/passwd and /etc/group.

use std::path::Path;

/// Name ↔ id lookups for one root.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    users: Vec<(String, u32)>,
    groups: Vec<(String, u32)>,
}

impl Accounts {
    /// Reads the account databases under `root`. Only files are consulted, not NSS, so a
    /// tree and the live host answer the same way.
    pub fn new(root: &Path) -> Accounts {
        Accounts {
            users: parse(root, "/etc/passwd"),
            groups: parse(root, "/etc/group"),
        }
    }

    /// The uid for a user name or a numeric string.
    pub fn uid(&self, user: &str) -> Option<u32> {
        lookup_id(&self.users, user)
    }

    /// The gid for a group name or a numeric string.
    pub fn gid(&self, group: &str) -> Option<u32> {
        lookup_id(&self.groups, group)
    }

    /// The name of a uid, or the number itself when it has none.
    pub(crate) fn user_name(&self, uid: u32) -> String {
        lookup_name(&self.users, uid)
    }

    /// The name of a gid, or the number itself when it has none.
    pub(crate) fn group_name(&self, gid: u32) -> String {
        lookup_name(&self.groups, gid)
    }
}

/// Name and id of each entry, read as in a chroot (a link in the tree never leads to the
/// host's database, and a fifo there is refused rather than waited on).
fn parse(root: &Path, path: &str) -> Vec<(String, u32)> {
    super::tree_file::read_text_or_empty(root, Path::new(path))
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((name.to_owned(), id))
        })
        .collect()
}

fn lookup_id(table: &[(String, u32)], key: &str) -> Option<u32> {
    if let Ok(id) = key.parse::<u32>() {
        // (uid_t)-1 means "leave unchanged" to chown(2): it can never be an owner.
        return (id != u32::MAX).then_some(id);
    }
    let found = table.iter().find(|(n, _)| n == key).map(|(_, id)| *id);
    // root is 0 on every Linux system, even in a tree that has no /etc/passwd yet.
    found.or_else(|| (key == "root").then_some(0))
}

fn lookup_name(table: &[(String, u32)], id: u32) -> String {
    match table.iter().find(|(_, i)| *i == id) {
        Some((n, _)) => n.clone(),
        None if id == 0 => "root".to_owned(),
        None => id.to_string(),
    }
}
