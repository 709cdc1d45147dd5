//! Hostile snapshots through the snapshot reader and capture: a seeded generator of
//! snapshots built from the strings that break writers (`..`, NUL, newlines, quotes, TOML
//! syntax, long names), byte-level mutations of their JSON, and the hand-written corpus in
//! `tests/hostile_snapshots/`. For every case: no panic; nothing written outside SRC;
//! every role capture writes parses back, as TOML, to exactly the values it captured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use converge::capture::{self, CapturedRole, Request};
use converge::compare::IgnoreList;
use converge::role::SourceTree;
use converge::snapshot::Snapshot;
use serde_json::{json, Value};

/// Cases per run: bounded, and the same ones every run (the seed is fixed).
const CASES: u64 = 150;

/// xorshift64*: small, seeded, and enough to pick among hostile pieces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const PIECES: &[&str] = &[
    "etc",
    "app",
    "..",
    ".",
    "",
    "a b",
    "x\"y",
    "\n[[exec]]\ncommand = \"touch /tmp/owned\"",
    "\r",
    "\u{0}",
    "\u{1b}[2J",
    "#",
    "'''",
    "\"\"\"",
    "é",
    "🦀",
    "[sysctl]",
    "= 1",
    "\\",
    "name = \"x\"",
    "nginx.conf",
];

fn hostile(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    (0..n)
        .map(|_| rng.pick(PIECES))
        .collect::<Vec<_>>()
        .join("")
}

fn path(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => format!("/etc/{}", "x".repeat(200 + rng.below(100))),
        1 => hostile(rng),
        _ => {
            let depth = 1 + rng.below(4);
            let parts: Vec<String> = (0..depth)
                .map(|_| {
                    if rng.below(12) == 0 {
                        hostile(rng)
                    } else {
                        rng.pick(&["etc", "app", "a b", "a.conf", "x\"y", "é", "sub"])
                            .to_owned()
                    }
                })
                .collect();
            format!("/{}", parts.join("/"))
        }
    }
}

fn mode(rng: &mut Rng) -> String {
    if rng.below(6) == 0 {
        return rng.pick(&["9999", "644", "", "07777", "0o644"]).to_owned();
    }
    rng.pick(&["0644", "0600", "0755", "0640"]).to_owned()
}

fn file_entry(rng: &mut Rng) -> Value {
    let kind = rng.pick(&["file", "file", "directory", "symlink", "other"]);
    let mut e = json!({"type": kind, "owner": "root", "group": "root", "mode": mode(rng)});
    if rng.below(8) == 0 {
        e["owner"] = hostile(rng).into();
    }
    match kind {
        "file" => {
            let content = hostile(rng);
            e["size"] = content.len().into();
            e["sha256"] = format!("{:x}", rng.next()).into();
            if rng.below(4) > 0 {
                e["content"] = content.into();
            }
            if rng.below(4) == 0 {
                e["private"] = true.into();
            }
            if rng.below(6) == 0 {
                e["secret"] = true.into();
            }
        }
        "symlink" if rng.below(3) == 0 => e["target"] = hostile(rng).into(),
        "symlink" => e["target"] = rng.pick(&["../x", "/etc/a b", "é"]).into(),
        _ => {}
    }
    e
}

fn snapshot(rng: &mut Rng) -> Value {
    let mut files = serde_json::Map::new();
    for _ in 0..1 + rng.below(4) {
        files.insert(path(rng), file_entry(rng));
    }
    let mut sysctl = serde_json::Map::new();
    let mut users = serde_json::Map::new();
    let mut groups = serde_json::Map::new();
    let mut packages = serde_json::Map::new();
    let mut units = serde_json::Map::new();
    // Most cases hold files only: one bad account or key makes the whole role fail to plan.
    let others = if rng.below(4) == 0 {
        1 + rng.below(2)
    } else {
        0
    };
    for _ in 0..others {
        sysctl.insert(
            format!("net.core.{}", hostile(rng)),
            json!({"value": hostile(rng), "access": "read-write"}),
        );
        users.insert(
            hostile(rng),
            json!({"uid": 1000 + rng.below(100), "gid": 1000, "group": hostile(rng),
                   "comment": hostile(rng), "home": path(rng), "shell": "/bin/sh"}),
        );
        groups.insert(
            hostile(rng),
            json!({"gid": 1000 + rng.below(100), "members": [hostile(rng)]}),
        );
        packages.insert(
            hostile(rng),
            json!({"version": hostile(rng), "arch": "all", "held": rng.below(2) == 0, "manual": true}),
        );
        units.insert(
            format!("{}.service", hostile(rng)),
            json!({"state": rng.pick(&["enabled", "disabled", "masked"]), "preset": "disabled"}),
        );
    }
    let mut snap = json!({
        "format": "converge-snapshot", "version": 1,
        "host": {"hostname": hostile(rng), "root": "/", "kernel": "6.1", "taken": rng.below(1 << 31),
                 "paths": ["/etc"]},
        "sysctl": sysctl, "packages": packages, "units": units, "users": users, "groups": groups,
        "files": files,
    });
    if rng.below(4) == 0 {
        runtime(rng, &mut snap);
    }
    snap
}

/// The surfaces snapshots grew later: modules, /sys, nftables, crontabs, home-dir files,
/// the selective scope, timers (two unit files and a unit), packages no source offers with
/// their cached .deb. Every name and text among them can be hostile.
fn runtime(rng: &mut Rng, snap: &mut Value) {
    let module = || ["br_netfilter", "../x", "a b", "nf_tables"];
    snap["kernel_modules"] = json!([hostile(rng), rng.pick(&module())]);
    let sysfs_key = |rng: &mut Rng| -> String {
        match rng.below(5) {
            0 => hostile(rng),
            1 => format!("block/@root/queue/{}", hostile(rng)),
            2 => "block/@disk1/../../../etc/queue/x".to_owned(),
            3 => format!("kernel/mm/{}/enabled", hostile(rng)),
            _ => "kernel/mm/transparent_hugepage/enabled".to_owned(),
        }
    };
    snap["sysfs"] = json!({ sysfs_key(rng): hostile(rng), sysfs_key(rng): "madvise" });
    snap["disks"] = json!({"root": hostile(rng), "disk1": rng.pick(&["sda", "../sda", "sd\nb"])});
    let body = |rng: &mut Rng| {
        format!(
            "chain input {{\n type filter hook input priority 0;\n {} accept\n}}\n",
            hostile(rng)
        )
    };
    let table = format!("{}/{}", rng.pick(&["inet", "ip", "x\"y", ""]), hostile(rng));
    snap["nftables"] = json!({"inet/filter": body(rng), table: body(rng)});
    // A timer job: both unit files and the timer unit.
    let job = if rng.below(2) == 0 {
        hostile(rng)
    } else {
        "nightly".to_owned()
    };
    let unit = |text: String| {
        json!({"type": "file", "owner": "root", "group": "root", "mode": "0644",
               "size": text.len(), "sha256": "00", "content": text})
    };
    let files = snap["files"].as_object_mut().unwrap();
    files.insert(
        format!("/etc/systemd/system/{job}.timer"),
        unit(format!(
            "[Timer]\nOnCalendar={}\n[Install]\nWantedBy=timers.target\n",
            hostile(rng)
        )),
    );
    files.insert(
        format!("/etc/systemd/system/{job}.service"),
        unit(format!(
            "[Service]\nExecStart=/usr/local/bin/{}\n",
            hostile(rng)
        )),
    );
    let user = rng.pick(&["root", "app", "..", "a b"]);
    files.insert(
        format!("/var/spool/cron/crontabs/{user}"),
        unit(format!("# DO NOT EDIT\n0 2 * * * {}\n", hostile(rng))),
    );
    files.insert(format!("/home/{user}/.bashrc"), unit(hostile(rng)));
    snap["units"][format!("{job}.timer")] = json!({"state": "enabled", "preset": "disabled"});
    snap["host"]["paths"] = json!(["/etc", "/var/spool/cron", "/home", "/srv"]);
    snap["host"]["selected"] =
        json!({"/home": "homes", "/srv": rng.pick(&["configuration", "bogus"])});
    snap["host"]["capped"] = json!([hostile(rng)]);
    let deb = rng.pick(&[
        "/var/cache/apt/archives/tool_1.0-1_all.deb",
        "/var/cache/apt/archives/../../../../etc/shadow",
        "/var/cache/apt/archives/.hidden.deb",
        "/etc/passwd",
    ]);
    snap["packages"][hostile(rng)] = json!({"version": hostile(rng), "arch": "all", "held": false,
        "manual": true, "offered": false, "cached": {"path": deb, "sha256": "00"}});
}

/// Flips, cuts or duplicates bytes of a snapshot's text: what the reader must survive.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(4) {
            0 => bytes[at] = rng.next() as u8,
            1 => bytes.truncate(at),
            2 => {
                let piece = bytes[at..].iter().take(16).copied().collect::<Vec<_>>();
                bytes.splice(at..at, piece);
            }
            _ => {
                bytes.remove(at);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every entry under `dir`, with its content for files: to see that nothing changed.
fn listing(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = p.symlink_metadata().unwrap();
            let content = meta.is_file().then(|| std::fs::read(&p).unwrap());
            if meta.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p, content);
        }
    }
    out
}

fn str_at<'a>(t: &'a toml::Value, key: &str) -> Option<&'a str> {
    t.get(key).and_then(toml::Value::as_str)
}

/// The role's TOML holds exactly the captured values, and no table the role did not have.
fn parses_back(role: &CapturedRole, text: &str) {
    let doc: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let list = |kind: &str| -> Vec<toml::Value> {
        doc.get(kind)
            .and_then(toml::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut kinds: Vec<&str> = doc.keys().map(String::as_str).collect();
    kinds.sort_unstable();
    let mut expected = Vec::new();
    for (kind, n) in [
        ("absent", role.absent.len()),
        ("directory", role.directories.len()),
        ("exec", role.execs.len()),
        ("file", role.files.len()),
        ("group", role.groups.len()),
        ("kernel_module", role.kernel_modules.len()),
        ("nftables", role.nftables.len()),
        ("package", role.packages.len()),
        ("service", role.services.len()),
        ("symlink", role.symlinks.len()),
        ("sysctl", role.sysctl.len()),
        ("sysfs", role.sysfs.len()),
        ("timer", role.timers.len()),
        ("user", role.users.len()),
    ] {
        if n > 0 {
            expected.push(kind);
        }
        if kind != "sysctl" && kind != "sysfs" {
            assert_eq!(list(kind).len(), n, "{kind}\n{text}");
        }
    }
    assert_eq!(kinds, expected, "{text}");
    for (f, t) in role.files.iter().zip(list("file")) {
        assert_eq!(str_at(&t, "path"), Some(f.path.as_str()), "{text}");
        assert_eq!(str_at(&t, "owner"), Some(f.owner.as_str()), "{text}");
        assert_eq!(str_at(&t, "group"), Some(f.group.as_str()), "{text}");
        assert_eq!(str_at(&t, "mode"), Some(f.mode.as_str()), "{text}");
        assert_eq!(
            str_at(&t, "source"),
            Some(role.source_path(&f.path).as_str())
        );
        assert_eq!(t.get("sensitive").is_some(), f.sensitive, "{text}");
    }
    for (d, t) in role.directories.iter().zip(list("directory")) {
        assert_eq!(str_at(&t, "path"), Some(d.path.as_str()), "{text}");
        assert_eq!(str_at(&t, "owner"), Some(d.owner.as_str()), "{text}");
        assert_eq!(str_at(&t, "mode"), Some(d.mode.as_str()), "{text}");
    }
    for (s, t) in role.symlinks.iter().zip(list("symlink")) {
        assert_eq!(str_at(&t, "path"), Some(s.path.as_str()), "{text}");
        assert_eq!(str_at(&t, "target"), Some(s.target.as_str()), "{text}");
    }
    for (u, t) in role.users.iter().zip(list("user")) {
        assert_eq!(str_at(&t, "name"), Some(u.name.as_str()), "{text}");
        assert_eq!(str_at(&t, "comment"), Some(u.gecos.as_str()), "{text}");
        assert_eq!(str_at(&t, "home"), Some(u.home.as_str()), "{text}");
    }
    for (g, t) in role.groups.iter().zip(list("group")) {
        assert_eq!(str_at(&t, "name"), Some(g.name.as_str()), "{text}");
    }
    for (p, t) in role.packages.iter().zip(list("package")) {
        assert_eq!(str_at(&t, "name"), Some(p.name.as_str()), "{text}");
        if p.deb.is_none() {
            assert_eq!(str_at(&t, "version"), p.version.as_deref(), "{text}");
        }
    }
    for (s, t) in role.services.iter().zip(list("service")) {
        assert_eq!(str_at(&t, "name"), Some(s.name.as_str()), "{text}");
    }
    for (name, items) in [("sysctl", &role.sysctl), ("sysfs", &role.sysfs)] {
        let Some(table) = doc.get(name).and_then(toml::Value::as_table) else {
            continue;
        };
        assert_eq!(table.len(), items.len(), "{text}");
        for s in items {
            let v = &table[&s.key]["value"];
            let shown = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            assert_eq!(shown, s.value, "{text}");
        }
    }
    for (m, t) in role.kernel_modules.iter().zip(list("kernel_module")) {
        assert_eq!(str_at(&t, "name"), Some(m.name.as_str()), "{text}");
        assert_eq!(t.as_table().map(toml::Table::len), Some(1), "{text}");
    }
    for (n, t) in role.nftables.iter().zip(list("nftables")) {
        assert_eq!(str_at(&t, "family"), Some(n.family.as_str()), "{text}");
        assert_eq!(str_at(&t, "table"), Some(n.table.as_str()), "{text}");
        assert_eq!(str_at(&t, "content"), Some(n.content.as_str()), "{text}");
    }
    for (e, t) in role.execs.iter().zip(list("exec")) {
        assert_eq!(str_at(&t, "name"), Some(e.name.as_str()), "{text}");
        assert_eq!(str_at(&t, "command"), Some(e.command.as_str()), "{text}");
    }
    for (j, t) in role.timers.iter().zip(list("timer")) {
        assert_eq!(str_at(&t, "name"), Some(j.name.as_str()), "{text}");
        assert_eq!(t.get("sensitive").is_some(), j.service.sensitive, "{text}");
        for (key, unit) in [("timer", &j.timer), ("service", &j.service)] {
            assert_eq!(
                t.get(key).and_then(|u| str_at(u, "source")),
                Some(role.source_path(&unit.path).as_str()),
                "{text}"
            );
        }
    }
    for (p, t) in role.packages.iter().zip(list("package")) {
        let shipped = p.deb.as_ref().map(|d| role.source_path(&d.path));
        assert_eq!(str_at(&t, "source"), shipped.as_deref(), "{text}");
    }
}

/// One case: read `old` (and `new`), capture, write into SRC, plan, commit if it plans.
/// Whether a role with files was committed.
fn case(name: &str, old: &str, new: Option<&str>) -> bool {
    let Ok(old) = Snapshot::from_json(Path::new("old.json"), old) else {
        return false;
    };
    let new = match new.map(|t| Snapshot::from_json(Path::new("new.json"), t)) {
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return false,
        None => None,
    };
    let ignore = IgnoreList::defaults();
    let Ok(role) = capture::capture(&Request {
        role: "r",
        from: (&old, "old.json"),
        against: new.as_ref().map(|s| (s, "new.json")),
        remove_extra: true,
        ignore: &ignore,
    }) else {
        return false;
    };
    let text = role.to_toml();
    parses_back(&role, &text);
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("etc")).unwrap();
    std::fs::write(outside.join("etc/a.conf"), "mine\n").unwrap();
    std::fs::create_dir(tmp.path().join("box")).unwrap();
    let src = tmp.path().join("box/src");
    let before = listing(tmp.path());
    let output = src.join("roles/r.toml");
    let mut committed = false;
    if let Ok(staged) = capture::stage(&role, &output, false) {
        let tree = SourceTree::open(staged.tree()).unwrap();
        let plans = converge::pipeline::plan(
            &tree,
            &["r".to_owned()],
            &Default::default(),
            &json!({}),
            Default::default(),
        )
        .is_ok();
        if plans {
            staged.commit().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(std::fs::read_to_string(&output).unwrap(), text, "{name}");
            committed = !role.files.is_empty();
        }
    }
    // Nothing outside SRC changed: the listing without SRC is the one from before.
    let after: BTreeMap<_, _> = listing(tmp.path())
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&src))
        .collect();
    assert_eq!(after, before, "{name}: written outside SRC");
    committed
}

#[test]
fn generated_hostile_snapshots_never_panic_write_outside_src_or_change_values() {
    let mut rng = Rng(0x5eed_c0de_2026_0001);
    let mut committed = 0;
    for i in 0..CASES {
        let old = serde_json::to_string_pretty(&snapshot(&mut rng)).unwrap();
        let new =
            (rng.below(2) == 0).then(|| serde_json::to_string_pretty(&snapshot(&mut rng)).unwrap());
        committed += u64::from(case(&format!("case {i}"), &old, new.as_deref()));
        // The reader alone on damaged text: an error, never a panic.
        let damaged = mutate(&mut rng, &old);
        let _ = Snapshot::from_json(Path::new("damaged.json"), &damaged);
        committed += u64::from(case(&format!("case {i} damaged"), &damaged, None));
    }
    // The generator is worth its cases only if many get past the reader and planning.
    assert!(
        committed >= CASES / 10,
        "only {committed} roles with files written"
    );
}

#[test]
fn the_hand_written_hostile_corpus_is_refused_or_captured_safely() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile_snapshots");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        let _ = case(&name, &text, None);
        // Modules, /sys, nftables and packages are captured only against NEW: a host with
        // the same scope and nothing else.
        if let Ok(mut plain) = serde_json::from_str::<Value>(&text) {
            for key in [
                "files", "sysctl", "packages", "units", "users", "groups", "sysfs",
            ] {
                plain[key] = json!({});
            }
            plain["nftables"] = json!({});
            plain["kernel_modules"] = json!([]);
            plain["host"]["hostname"] = "new".into();
            let _ = case(
                &format!("{name} against NEW"),
                &text,
                Some(&plain.to_string()),
            );
        }
        seen += 1;
    }
    assert!(seen >= 5, "the corpus is in {}", dir.display());
}
