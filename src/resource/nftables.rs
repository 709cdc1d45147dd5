//! `nftables`: one table of the live ruleset, replaced whole in one transaction.
//!
//! The role gives the table's body (its chains, sets, maps...); converge loads
//!
//! ```text
//! table FAMILY NAME {}
//! delete table FAMILY NAME
//! table FAMILY NAME { BODY }
//! ```
//!
//! with one `nft -f`: the kernel applies the three (and, with `purge`, the deletion of the
//! family's other tables) as one transaction, so packets never meet a half-loaded table.
//! The first line makes the second valid when there is no table yet. `delete`, not
//! `flush table`: a flush empties the chains but keeps them and every set with its
//! elements, so a chain or a set element the role dropped would live on (and be drift on
//! every run after).
//! The same text is persisted for boot by a file resource of the plan
//! ([`persisted_path`]).
//!
//! Drift is judged in nft's own printed form on both sides. The desired table is loaded
//! into a scratch network namespace made for the comparison (`unshare --net`) and listed
//! there with the same `nft -s list table` that lists the live one. A hand-written
//! normaliser would have to know every rewrite nft makes (`priority 0` → `priority filter`,
//! `ssh` → `22`, `ip protocol tcp tcp dport 22` → `tcp dport 22`, sets reordered, tabs for
//! spaces) and would fall behind each nft release; nft never disagrees with itself.
//! `-s` leaves counter values out, so traffic is not drift. The cost: check needs root
//! (as apply does), and a statement that names a device the empty namespace lacks
//! (`iif eth0`, a flowtable's `devices`) cannot be compared; that is reported, with the
//! remedy (`iifname`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use super::content::Desired;
use super::{
    Action, Change, ContentChange, FieldChange, Kind, Resource, ResourceError, ResourceId,
};
use super::{Footprint, PlanSlots};
use crate::system::nftables::Refused;
use crate::system::{Host, System};

/// The address families nft knows.
pub(crate) const FAMILIES: &[&str] = &["ip", "ip6", "inet", "arp", "bridge", "netdev"];
/// Where the tables are persisted, one file each.
pub(crate) const PERSIST_DIR: &str = "/etc/nftables.d";
/// What nftables.service loads at boot.
pub const BOOT_CONF: &str = "/etc/nftables.conf";
/// Lines of the loaded script before the body's first line.
const HEADER_LINES: usize = 3;

/// One managed table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NftablesResource {
    /// `inet`, `ip`...
    pub family: String,
    /// The table's name.
    pub table: String,
    /// The table's body, as the role gives it.
    pub content: Desired,
    /// Where the body came from (`content`, `files/fw.nft`, `templates/fw.nft.hbs`), for
    /// nft's messages.
    pub from: String,
    /// With `purge`: the family's tables the run declares. Every other table of the
    /// family is deleted in the same transaction.
    pub purge_keep: Option<BTreeSet<String>>,
}

/// What a table resource finds.
#[derive(Debug)]
pub enum NftablesLive {
    /// Converging a tree under `--root`: the running ruleset is not the tree's.
    NotManaged,
    /// The running ruleset.
    Found {
        /// The live table as nft prints it; `None`: there is none.
        now: Option<String>,
        /// The desired table as nft prints it, or nft's refusal of it.
        desired: Result<String, Refused>,
        /// Tables of the family that a purge deletes.
        strays: Vec<String>,
    },
}

/// `/etc/nftables.d/converge-FAMILY-TABLE.nft`.
pub(crate) fn persisted_path(family: &str, table: &str) -> PathBuf {
    PathBuf::from(format!("{PERSIST_DIR}/converge-{family}-{table}.nft"))
}

/// The script that replaces the table with `body` (see the module's doc).
pub fn script(family: &str, table: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "table {family} {table} {{}}\ndelete table {family} {table}\ntable {family} {table} {{\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    if !body.is_empty() && !body.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(b"}\n");
    out
}

/// The persisted file's text: a header, then the very script apply loads.
pub fn persisted(family: &str, table: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "# Managed by converge: table {family} {table}, replaced whole at each change; local edits are lost.\n"
    )
    .into_bytes();
    out.extend(script(family, table, body));
    out
}

/// Why a table name cannot be managed, if it cannot.
pub(crate) fn check_table(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok
        && name.len() <= 200
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Ok(());
    }
    Err(format!(
        "invalid table name '{}': expected a letter or '_', then letters, digits, '_', '-' or '.'",
        name.escape_debug()
    ))
}

/// Why `body` is not a table's body, if it is not: it must not close the table's block
/// (which would let it declare other tables behind the table's back) nor leave one open.
pub(crate) fn check_body(body: &str) -> Result<(), String> {
    let first = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first.is_some_and(|l| l.starts_with("table ") || l.starts_with("table\t")) {
        return Err(
            "give the table's body only (its chains, sets, maps...), without `table ... {`: \
             converge wraps it in the table the declaration names"
                .into(),
        );
    }
    let mut depth = 0i64;
    for (n, line) in body.lines().enumerate() {
        // A string does not run past its line in nft, nor a comment.
        let (mut in_string, mut comment) = (false, false);
        for c in line.chars() {
            match c {
                _ if comment => {}
                '"' => in_string = !in_string,
                '#' if !in_string => comment = true,
                '{' if !in_string => depth += 1,
                '}' if !in_string => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(format!(
                            "line {}: this '}}' closes the table's own block; the body may only \
                             close what it opens",
                            n + 1
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    if depth > 0 {
        return Err(format!("{depth} '{{' left open at the end of the body"));
    }
    Ok(())
}

/// A listing of one table without what is not drift: trailing blanks, empty lines, and
/// the elements of sets the datapath fills (`flags dynamic` or `timeout`: `update @set`,
/// `add @set` from rules), which change with traffic as counters do.
fn normal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Inside a set or map whose flags say it fills at run time.
    let mut filled_at_run_time = false;
    // Inside such a set's `elements = { ... }`, which nft wraps over several lines.
    let mut skipping = false;
    for line in text.lines().map(str::trim_end) {
        let t = line.trim_start();
        if skipping {
            skipping = !t.ends_with('}');
            continue;
        }
        if (t.starts_with("set ") || t.starts_with("map ")) && t.ends_with('{') {
            filled_at_run_time = false;
        } else if let Some(flags) = t.strip_prefix("flags ") {
            filled_at_run_time = flags
                .split(',')
                .any(|f| matches!(f.trim(), "dynamic" | "timeout"));
        } else if filled_at_run_time && t.starts_with("elements = {") {
            skipping = !t.ends_with('}');
            continue;
        } else if t == "}" {
            filled_at_run_time = false;
        }
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `FILE:LINE:COLS: ...` lines of nft's message pointed at the body's own lines.
fn relocate(message: &str, name: &str, from: &str) -> String {
    message
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix(&format!("{name}:")) else {
                return line.to_owned();
            };
            let (num, tail) = rest.split_once(':').unwrap_or((rest, ""));
            match num.parse::<usize>() {
                Ok(n) if n > HEADER_LINES => format!("{from}:{}:{tail}", n - HEADER_LINES),
                _ => format!("{from} (the table's wrapper):{tail}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether two listings (either maybe absent) are of the same table.
pub(crate) fn same_listing(a: Option<&str>, b: Option<&str>) -> bool {
    a.map(normal) == b.map(normal)
}

/// The sha256 of a listing as [`same_listing`] compares it: two listings of the same table
/// have the same digest.
pub(crate) fn listing_digest(text: &str) -> String {
    crate::resource::Digest::of(normal(text).as_bytes()).sha256
}

/// The script that puts table `family name` back as `was` (a listing of it), or deletes
/// it when `was` is `None`.
pub(crate) fn restore_script(family: &str, name: &str, was: Option<&str>) -> Vec<u8> {
    let mut out = format!("table {family} {name} {{}}\ndelete table {family} {name}\n");
    if let Some(text) = was {
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out.into_bytes()
}

impl NftablesResource {
    /// `inet/filter`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.family, self.table)
    }

    /// The name nft gives the script in its messages.
    fn script_name(&self) -> String {
        format!("converge-{}-{}.nft", self.family, self.table)
    }

    fn body(&self) -> Result<std::sync::Arc<[u8]>, ResourceError> {
        self.content.load().map_err(|e| ResourceError::Desired {
            path: persisted_path(&self.family, &self.table),
            reason: e.to_string(),
        })
    }

    /// The script apply loads for `change`: the table, and the deletion of the tables a
    /// purge removes (named in the change's `removes`, as the backup keeps them).
    fn load_script(&self, change: &Change) -> Result<Vec<u8>, ResourceError> {
        let mut out = script(&self.family, &self.table, &self.body()?);
        for t in &change.removes {
            let t = t.to_string_lossy();
            out.extend(format!("delete table {} {t}\n", self.family).into_bytes());
        }
        Ok(out)
    }

    /// nft's refusal, its lines pointed at the body.
    fn refusal(&self, refused: &Refused, applying: bool) -> ResourceError {
        ResourceError::ValidationFailed {
            command: format!("nft -c -f {}", self.script_name()),
            status: "refused the table".into(),
            output: relocate(&refused.0, &self.script_name(), &self.from),
            applying,
        }
    }
}

impl Resource for NftablesResource {
    type Live = NftablesLive;

    fn id(&self) -> ResourceId {
        ResourceId::new(Kind::Nftables, self.name())
    }

    fn footprint(&self) -> Footprint<'_> {
        // The persisted file is its own file resource, which claims it.
        Footprint::no_path()
    }

    fn plan_slots(&mut self) -> PlanSlots<'_> {
        // `purge_keep` here names tables, not directory entries: planning fills it itself
        // (`Builder::nftables_finish`), once every role's tables are known.
        PlanSlots::none()
    }

    fn observe(&self, sys: &System) -> Result<NftablesLive, ResourceError> {
        if !sys.is_live() {
            return Ok(NftablesLive::NotManaged);
        }
        let now = sys.nft_table(&self.family, &self.table)?;
        let script = script(&self.family, &self.table, &self.body()?);
        let name = self.script_name();
        let desired = sys.nft_canonical(&script, &name, &self.family, &self.table)?;
        if let Err(scratch) = &desired {
            // Refused in the empty namespace: a real error (validate reports it), unless
            // the live ruleset takes it, which only a statement bound to a device does.
            if sys.nft_check(&script, &name)?.is_none() {
                return Err(ResourceError::NftablesNotComparable {
                    table: self.name(),
                    reason: relocate(&scratch.0, &name, &self.from),
                });
            }
        }
        let strays = match &self.purge_keep {
            None => Vec::new(),
            Some(keep) => sys
                .nft_tables(&self.family)?
                .into_iter()
                .filter(|t| *t != self.table && !keep.contains(t))
                .collect(),
        };
        Ok(NftablesLive::Found {
            now,
            desired,
            strays,
        })
    }

    fn diff(&self, live: &NftablesLive) -> Option<Change> {
        let NftablesLive::Found {
            now,
            desired,
            strays,
        } = live
        else {
            return None;
        };
        let want = match desired {
            Ok(text) => normal(text),
            // Not comparable; validation refuses it before anything is loaded.
            Err(_) => {
                String::from_utf8_lossy(&script(&self.family, &self.table, &self.body().ok()?))
                    .into_owned()
            }
        };
        let have = now.as_deref().map(normal);
        let same = have.as_deref() == Some(want.as_str()) && desired.is_ok();
        if same && strays.is_empty() {
            return None;
        }
        let mut change = Change::fields(
            if have.is_none() {
                Action::Create
            } else {
                Action::Update
            },
            strays
                .iter()
                .map(|t| {
                    FieldChange::new(
                        &format!("table {} {t}", self.family),
                        Some("present".into()),
                        Some("deleted (purge)".into()),
                    )
                })
                .collect(),
        );
        if !same {
            let label = format!("table {} {}", self.family, self.table);
            let sides = (format!("{label} (live)"), format!("{label} (desired)"));
            change.content = Some(ContentChange::between_sides(
                &sides,
                have.as_deref().map(str::as_bytes),
                want.as_bytes(),
                false,
            ));
        }
        change.removes = strays.iter().map(OsString::from).collect();
        Some(change)
    }

    fn validates(&self) -> bool {
        true
    }

    fn validate(&self, sys: &System, change: &Change, applying: bool) -> Result<(), ResourceError> {
        if !sys.is_live() {
            return Ok(());
        }
        let script = self.load_script(change)?;
        match sys.nft_check(&script, &self.script_name())? {
            None => Ok(()),
            Some(refused) => Err(self.refusal(&refused, applying)),
        }
    }

    fn apply(
        &self,
        host: &Host,
        _live: &NftablesLive,
        change: &Change,
    ) -> Result<(), ResourceError> {
        let script = self.load_script(change)?;
        host.nft_load(&script, &self.script_name())?;
        Ok(())
    }

    fn notes(&self, sys: &System) -> Vec<String> {
        let mut notes = Vec::new();
        if !sys.is_live() {
            notes.push(format!(
                "the live ruleset is not touched under --root; {} loads the table at boot",
                persisted_path(&self.family, &self.table).display()
            ));
        }
        if let Some(missing) = boot_include_missing(sys, &self.family, &self.table) {
            notes.push(missing);
        }
        notes
    }
}

/// A warning when nftables.service would not load the persisted table at boot: no
/// /etc/nftables.conf, or one without an `include` that names the file (globs count).
pub(crate) fn boot_include_missing(sys: &System, family: &str, table: &str) -> Option<String> {
    let ours = persisted_path(family, table);
    let hint = format!("add `include \"{PERSIST_DIR}/*.nft\"` at its end");
    let text = match sys.read_file(std::path::Path::new(BOOT_CONF)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => {
            return Some(format!(
                "{BOOT_CONF} is missing: nftables.service will not load {} at boot; install nftables and {hint}",
                ours.display()
            ))
        }
    };
    let included = text.lines().any(|line| {
        let Some(rest) = line.trim().strip_prefix("include") else {
            return false;
        };
        let pattern = rest.trim().trim_matches('"');
        globset::Glob::new(pattern)
            .map(|g| g.compile_matcher().is_match(&ours))
            .unwrap_or(false)
    });
    (!included).then(|| {
        format!(
            "{BOOT_CONF} does not include {}: nftables.service will not load this table at boot; {hint}",
            ours.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(purge: bool) -> NftablesResource {
        NftablesResource {
            family: "inet".into(),
            table: "filter".into(),
            content: Desired::bytes(b"chain input {\n}\n".to_vec()),
            from: "content".into(),
            purge_keep: purge.then(BTreeSet::new),
        }
    }

    #[test]
    fn the_script_declares_deletes_and_defines_the_table() {
        assert_eq!(
            String::from_utf8(script("inet", "filter", b"chain input {\n}")).unwrap(),
            "table inet filter {}\ndelete table inet filter\ntable inet filter {\nchain input {\n}\n}\n"
        );
    }

    #[test]
    fn listings_that_differ_only_in_blanks_are_in_sync() {
        let r = resource(false);
        let live = NftablesLive::Found {
            now: Some("table inet filter {\n\tchain input {\n\t}\n}\n".into()),
            desired: Ok("table inet filter {\n\tchain input {   \n\t}\n\n}\n".into()),
            strays: Vec::new(),
        };
        assert_eq!(r.diff(&live), None);
        assert_eq!(r.diff(&NftablesLive::NotManaged), None);
    }

    #[test]
    fn elements_a_rule_adds_to_a_dynamic_set_are_not_drift() {
        let listing = |elements: &str| {
            format!(
                "table inet t {{\n\tset seen {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n{elements}\t}}\n\n\
                 \tset fixed {{\n\t\ttype ipv4_addr\n\t\telements = {{ 10.0.0.1 }}\n\t}}\n}}\n"
            )
        };
        let empty = listing("");
        let filled = listing("\t\telements = { 10.9.9.8, 10.9.9.9,\n\t\t\t     127.0.0.1 }\n");
        assert!(same_listing(Some(&empty), Some(&filled)));
        assert_eq!(normal(&filled), normal(&empty));
        assert!(normal(&empty).contains("\t\telements = { 10.0.0.1 }\n"));
        let other_fixed = empty.replace("10.0.0.1", "10.0.0.2");
        assert!(!same_listing(Some(&empty), Some(&other_fixed)));
    }

    #[test]
    fn a_purge_deletes_strays_and_names_them_for_the_backup() {
        let r = resource(true);
        let same = "table inet filter {\n}\n".to_owned();
        let live = NftablesLive::Found {
            now: Some(same.clone()),
            desired: Ok(same),
            strays: vec!["docker".into()],
        };
        let c = r.diff(&live).unwrap();
        assert_eq!(c.content, None);
        assert_eq!(c.removes, [OsString::from("docker")]);
        assert_eq!(c.fields[0].field, "table inet docker");
        assert_eq!(
            String::from_utf8(r.load_script(&c).unwrap()).unwrap(),
            "table inet filter {}\ndelete table inet filter\ntable inet filter {\nchain input {\n}\n}\ndelete table inet docker\n"
        );
    }

    #[test]
    fn bodies_may_not_close_the_table_nor_be_a_table() {
        assert!(check_body("chain a {\n  ip saddr \"}\" accept # }\n}\n").is_ok());
        assert_eq!(
            check_body("chain a {\n}\n}\ntable ip other {\n"),
            Err("line 3: this '}' closes the table's own block; the body may only close what it opens".into())
        );
        assert!(check_body("# fw\ntable inet filter {\n}\n")
            .unwrap_err()
            .starts_with("give the table's body only"));
        assert_eq!(
            check_body("chain a {\n"),
            Err("1 '{' left open at the end of the body".into())
        );
        assert!(check_table("filter").is_ok());
        assert!(check_table("my_fw-2.v4").is_ok());
        for bad in ["", "2fw", "a b", "a/b", "a;b", "x\n"] {
            assert!(check_table(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nft_messages_point_at_the_body() {
        let m = "converge-inet-filter.nft:5:21-25: Error: syntax error\n  tcp dport 22 acept\n                    ^^^^^";
        assert_eq!(
            relocate(m, "converge-inet-filter.nft", "files/fw.nft"),
            "files/fw.nft:2:21-25: Error: syntax error\n  tcp dport 22 acept\n                    ^^^^^"
        );
    }
}
