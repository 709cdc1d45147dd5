//! `[[nftables]]` against the real nft: every test runs in a fresh network namespace (whose
//! ruleset starts empty and is the namespace's own) and a private mount namespace with a
//! copy of /etc bound over /etc, so the persisted tables never reach the machine's /etc.
//! Needs root.

mod support;

use std::path::Path;
use std::process::Command;

use support::{require_tool, Namespaces, Step};

/// The role `fw` with `body` as its `inet filter` table, and `extra` after it.
fn role(body: &str, extra: &str) -> String {
    format!("[[nftables]]\nfamily = \"inet\"\ntable = \"filter\"\ncontent = \"\"\"\n{body}\"\"\"\n{extra}")
}

/// A source tree with one role, `fw`.
fn source(role: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("roles")).unwrap();
    std::fs::write(dir.path().join("roles/fw.toml"), role).unwrap();
    dir
}

/// Another version of the role, kept beside the tree as `NAME.toml` until a step swaps it
/// in with [`swap`].
fn version(src: &Path, name: &str, role: &str) {
    std::fs::write(src.join(format!("{name}.toml")), role).unwrap();
}

/// The step that makes version `name` the role.
fn swap(name: &str) -> String {
    format!("cp \"$S/{name}.toml\" \"$S/roles/fw.toml\"")
}

/// An nftables.conf that loads converge's tables at boot.
const BOOT_CONF: &str = "#!/usr/sbin/nft -f\nflush ruleset\ninclude \"/etc/nftables.d/*.nft\"\n";

/// Runs shell `steps` one after another in one fresh network + mount namespace, with a copy
/// of /etc (holding [`BOOT_CONF`] and no nftables.d) over /etc. `$B` is the binary, `$S` the
/// source tree, `$C` the agent config, `$T` a scratch dir, `$ST` the state dir.
fn in_namespaces(src: &Path, steps: &[&str]) -> Vec<Step> {
    require_tool("nft");
    let scratch = tempfile::tempdir().unwrap();
    let etc = scratch.path().join("etc");
    let copy = Command::new("cp")
        .arg("-a")
        .arg("/etc/.")
        .arg(&etc)
        .status()
        .unwrap();
    assert!(copy.success());
    let _ = std::fs::remove_dir_all(etc.join("nftables.d"));
    std::fs::write(etc.join("nftables.conf"), BOOT_CONF).unwrap();
    Namespaces::net_and_mount()
        .setup("mount --bind \"$T/etc\" /etc || exit 99")
        .env("T", scratch.path())
        .run(src, steps)
}

/// `--state-dir`: a tree converged by hand keeps a run history (for `rollback`) only where
/// it is told to.
const RUN: &str = "--source \"$S\" --config \"$C\" --state-dir \"$ST\" --role fw --color never";

/// Written the way people write rulesets, not the way nft prints them: numeric priority,
/// service names, `iif` by name, a counter, odd spacing, comments and blank lines.
const BODY: &str = "# the host's own firewall
chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related   accept

    ip saddr 127.0.0.0/8 counter accept   # loopback traffic, counted
    iif lo accept
\ttcp dport { ssh, https } accept
}
";

/// [`BODY`] as `nft -s list table inet filter` prints it.
const LISTED: &str = "table inet filter {\n\
\tchain input {\n\
\t\ttype filter hook input priority filter; policy accept;\n\
\t\tct state established,related accept\n\
\t\tip saddr 127.0.0.0/8 counter accept\n\
\t\tiif \"lo\" accept\n\
\t\ttcp dport { 22, 443 } accept\n\
\t}\n\
}\n";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_shows_the_table_apply_loads_and_persists_it_then_nothing_changes() {
    let src = source(&role(BODY, ""));
    let steps = in_namespaces(
        src.path(),
        &[
            &format!("\"$B\" check {RUN}"),
            "nft list ruleset; ls /etc/nftables.d",
            &format!("\"$B\" apply {RUN}"),
            "nft -s list ruleset",
            "cat /etc/nftables.d/converge-inet-filter.nft; stat -c '%a %u %g' /etc/nftables.d/converge-inet-filter.nft /etc/nftables.d",
            // Traffic through the counted rule: its counter moves, which is not drift.
            "ip link set lo up && bash -c 'echo > /dev/tcp/127.0.0.1/9' 2>/dev/null; nft list table inet filter | grep -c 'counter packets [1-9]'",
            &format!("\"$B\" apply {RUN}"),
            &format!("\"$B\" check {RUN}"),
            // The file nftables.service loads at boot brings the same table back.
            "nft flush ruleset && nft -f /etc/nftables.conf && nft -s list ruleset",
        ],
    );
    let check = &steps[0];
    assert_eq!(check.rc, 2, "{check:?}");
    insta::assert_snapshot!("fresh_check", check.out);
    let diff: String = LISTED.lines().map(|l| format!("    +{l}\n")).collect();
    assert!(
        check.out.starts_with(&format!(
            "+ create nftables:inet/filter  (role fw)\n    --- table inet filter (live)\n    +++ table inet filter (desired)\n    @@ -0,0 +1,9 @@\n{diff}"
        )),
        "{check:?}"
    );
    assert_eq!(
        steps[1].out, "ls: cannot access '/etc/nftables.d': No such file or directory\n",
        "check must not write"
    );

    let apply = &steps[2];
    assert_eq!(apply.rc, 2, "{apply:?}");
    assert!(
        apply
            .out
            .contains("apply: 3 resources: 0 in sync, 3 changed, 0 failed"),
        "{apply:?}"
    );
    assert_eq!(steps[3].out, LISTED);
    assert_eq!(
        steps[4].out,
        format!(
            "# Managed by converge: table inet filter, replaced whole at each change; local edits are lost.\n\
             table inet filter {{}}\ndelete table inet filter\ntable inet filter {{\n{BODY}}}\n\
             644 0 0\n755 0 0\n"
        )
    );
    assert_eq!(
        steps[5].out, "1\n",
        "the counter must have counted: {:?}",
        steps[5]
    );
    let again = &steps[6];
    assert_eq!(again.rc, 0, "{again:?}");
    assert_eq!(
        again.out,
        "apply: 3 resources: 3 in sync, 0 changed, 0 failed\n"
    );
    assert_eq!(steps[7].rc, 0, "{:?}", steps[7]);
    assert_eq!(steps[8].out, LISTED, "{:?}", steps[8]);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_rule_added_by_hand_is_shown_as_drift_and_removed() {
    let src = source(&role(BODY, ""));
    let steps = in_namespaces(
        src.path(),
        &[
            &format!("\"$B\" apply {RUN} >/dev/null"),
            "nft add rule inet filter input tcp dport 8080 accept && nft add chain inet filter stray",
            &format!("\"$B\" check {RUN}"),
            &format!("\"$B\" apply {RUN} | head -1"),
            "nft -s list ruleset",
            &format!("\"$B\" check {RUN}"),
        ],
    );
    assert_eq!(steps[0].rc, 2, "{:?}", steps[0]);
    let check = &steps[2];
    assert_eq!(check.rc, 2, "{check:?}");
    assert_eq!(
        check.out,
        "~ update nftables:inet/filter  (role fw)\n\
         \x20   --- table inet filter (live)\n\
         \x20   +++ table inet filter (desired)\n\
         \x20   @@ -5,8 +5,5 @@\n\
         \x20    \t\tip saddr 127.0.0.0/8 counter accept\n\
         \x20    \t\tiif \"lo\" accept\n\
         \x20    \t\ttcp dport { 22, 443 } accept\n\
         \x20   -\t\ttcp dport 8080 accept\n\
         \x20   -\t}\n\
         \x20   -\tchain stray {\n\
         \x20    \t}\n\
         \x20    }\n\
         check: 3 resources: 2 in sync, 1 would change, 0 failed\n"
    );
    assert_eq!(steps[3].out, "~ update nftables:inet/filter  (role fw)\n");
    assert_eq!(steps[4].out, LISTED);
    assert_eq!(steps[5].rc, 0, "{:?}", steps[5]);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_table_nft_refuses_stops_the_run_before_anything_changes() {
    let good = source(&role(BODY, ""));
    let bad_body = BODY.replace("iif lo accept", "iif lo acept");
    assert_ne!(bad_body, BODY);
    let bad = role(
        &bad_body,
        "\n[[file]]\npath = \"/etc/converge-test.conf\"\ncontent = \"x\\n\"\n",
    );
    version(good.path(), "bad", &bad);
    let steps = in_namespaces(
        good.path(),
        &[
            &format!("\"$B\" apply {RUN} >/dev/null"),
            &swap("bad"),
            &format!("\"$B\" check {RUN}"),
            &format!("\"$B\" apply {RUN}"),
            "nft -s list ruleset; ls /etc/converge-test.conf 2>&1; grep -c 'iif lo accept' /etc/nftables.d/converge-inet-filter.nft",
        ],
    );
    assert_eq!(steps[0].rc, 2, "{:?}", steps[0]);
    // nft's own message and excerpt, its line counted in the role's body.
    let nft_says = "content:7:17-17: Error: syntax error, unexpected newline\n        iif lo acept\n                    ^\n";
    let check = &steps[2];
    assert_eq!(check.rc, 6, "{check:?}");
    assert!(
        check.out.contains(&format!(
            "! nftables:inet/filter  (role fw)\n    would fail validation: `nft -c -f converge-inet-filter.nft` refused the table: {nft_says}"
        )),
        "{check:?}"
    );
    let apply = &steps[3];
    assert_eq!(apply.rc, 4, "{apply:?}");
    assert!(apply.out.contains(nft_says), "{apply:?}");
    assert!(
        apply.out.contains("! run refused: nftables:inet/filter failed validation; nothing of this run is applied\n"),
        "{apply:?}"
    );
    assert_eq!(
        steps[4].out,
        format!(
            "{LISTED}ls: cannot access '/etc/converge-test.conf': No such file or directory\n1\n"
        ),
        "the live table, the other file and the persisted table are untouched"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn other_tables_are_left_alone_unless_purge_and_a_rollback_brings_them_back() {
    let src = source(&role(BODY, ""));
    version(src.path(), "purging", &role(BODY, "purge = true\n"));
    let steps = in_namespaces(
        src.path(),
        &[
            "nft add table inet docker && nft add chain inet docker c1 && nft add table ip nat",
            &format!("\"$B\" apply {RUN} | tail -1"),
            "nft list tables",
            &swap("purging"),
            &format!("\"$B\" check {RUN}"),
            &format!("\"$B\" apply {RUN} | tail -1"),
            "nft list tables",
            "\"$B\" rollback --state-dir \"$ST\" --color never",
            "nft list tables; nft list table inet docker",
        ],
    );
    assert_eq!(
        steps[1].out,
        "apply: 3 resources: 0 in sync, 3 changed, 0 failed\n"
    );
    assert_eq!(
        steps[2].out, "table inet docker\ntable ip nat\ntable inet filter\n",
        "without purge other tables stay"
    );
    let check = &steps[4];
    assert_eq!(check.rc, 2, "{check:?}");
    assert_eq!(
        check.out,
        "~ update nftables:inet/filter  (role fw)\n    table inet docker: present → deleted (purge)\ncheck: 3 resources: 2 in sync, 1 would change, 0 failed\n"
    );
    assert_eq!(
        steps[5].out,
        "apply: 3 resources: 2 in sync, 1 changed, 0 failed\n"
    );
    assert_eq!(
        steps[6].out, "table ip nat\ntable inet filter\n",
        "purge deletes the family's undeclared tables only"
    );
    let undo = &steps[7];
    assert_eq!(undo.rc, 2, "{undo:?}");
    assert!(
        undo.out
            .contains("rollback: 1 restored, 0 unchanged, 0 failed"),
        "{undo:?}"
    );
    assert_eq!(
        steps[8].out,
        "table ip nat\ntable inet filter\ntable inet docker\ntable inet docker {\n\tchain c1 {\n\t}\n}\n"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_rollback_restores_the_previous_table_live_and_persisted() {
    let src = source(&role(BODY, ""));
    let v2 = role("chain input {\n  type filter hook input priority 0; policy drop;\n}\nset blocked { type ipv4_addr; }\n", "");
    version(src.path(), "v1", &role(BODY, ""));
    version(src.path(), "v2", &v2);
    let steps = in_namespaces(
        src.path(),
        &[
            &format!("\"$B\" apply {RUN} | tail -1"),
            "cp /etc/nftables.d/converge-inet-filter.nft \"$T/v1.nft\"",
            &swap("v2"),
            &format!("\"$B\" apply {RUN} | tail -1"),
            "nft -s list ruleset | grep -c 'policy drop'",
            "\"$B\" rollback --state-dir \"$ST\" --color never",
            "nft -s list ruleset",
            "cmp /etc/nftables.d/converge-inet-filter.nft \"$T/v1.nft\" && echo same",
            &swap("v1"),
            &format!("\"$B\" check {RUN}"),
        ],
    );
    assert_eq!(
        steps[0].out,
        "apply: 3 resources: 0 in sync, 3 changed, 0 failed\n"
    );
    assert_eq!(
        steps[3].out,
        "apply: 3 resources: 1 in sync, 2 changed, 0 failed\n"
    );
    assert_eq!(steps[4].out, "1\n");
    let undo = &steps[5];
    assert_eq!(undo.rc, 2, "{undo:?}");
    assert!(
        undo.out
            .contains("rollback: 2 restored, 0 unchanged, 0 failed"),
        "{undo:?}"
    );
    assert_eq!(steps[6].out, LISTED);
    assert_eq!(steps[7].out, "same\n");
    assert_eq!(steps[9].rc, 0, "back in sync with v1: {:?}", steps[9]);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_rule_added_by_hand_since_the_run_stops_a_rollback_and_is_kept_by_force() {
    let src = source(&role(BODY, ""));
    let rollback = "\"$B\" rollback --state-dir \"$ST\" --color never";
    let steps = in_namespaces(
        src.path(),
        &[
            &format!("\"$B\" apply {RUN} | tail -1"),
            "nft add rule inet filter input tcp dport 8080 accept",
            &format!("{rollback} --check"),
            rollback,
            "nft -s list ruleset | grep -c 'dport 8080'; ls /etc/nftables.d",
            &format!("{rollback} --force"),
            "nft -s list ruleset; test -e /etc/nftables.d || echo 'no nftables.d'",
            "grep -l 'tcp dport 8080 accept' \"$ST\"/runs/*/blobs/* | wc -l",
        ],
    );
    assert_eq!(
        steps[0].out,
        "apply: 3 resources: 0 in sync, 3 changed, 0 failed\n"
    );
    let refused = "    refused nftables:inet/filter: changed since the run (the live ruleset is not what the run left); --force restores it and keeps what is there now in the run's history\n";
    let preview = &steps[2];
    assert_eq!(preview.rc, 4, "{preview:?}");
    assert!(preview.out.contains(refused), "{preview:?}");
    let undo = &steps[3];
    assert_eq!(undo.rc, 1, "{undo:?}");
    assert!(undo.out.contains(refused), "{undo:?}");
    assert!(
        undo.out.contains(
            "refused: 1 resource changed since the run (listed above); nothing was changed."
        ),
        "{undo:?}"
    );
    // Nothing was changed: the hand-made rule and the persisted file are still there.
    assert_eq!(steps[4].out, "1\nconverge-inet-filter.nft\n");
    let forced = &steps[5];
    assert_eq!(forced.rc, 2, "{forced:?}");
    assert!(
        forced.out.contains("    restored nftables:inet/filter: changed since the run (the live ruleset is not what the run left): what was there is kept in "),
        "{forced:?}"
    );
    assert!(
        forced
            .out
            .contains("rollback: 3 restored, 0 unchanged, 0 failed"),
        "{forced:?}"
    );
    // The table the run made is gone, as before the run, and the hand-made rule is kept.
    assert_eq!(steps[6].out, "no nftables.d\n");
    assert_eq!(steps[7].out, "1\n");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn under_a_root_only_the_persisted_file_is_managed_and_a_missing_include_is_noted() {
    let src = source(&role(BODY, ""));
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/nftables.conf"),
        "#!/usr/sbin/nft -f\nflush ruleset\n",
    )
    .unwrap();
    let r = root.path().display().to_string();
    let steps = in_namespaces(
        src.path(),
        &[
            &format!("\"$B\" apply {RUN} --root {r}"),
            "nft list ruleset | wc -c",
        ],
    );
    let apply = &steps[0];
    assert_eq!(apply.rc, 2, "{apply:?}");
    assert!(apply.out.contains(
        "note: nftables:inet/filter: the live ruleset is not touched under --root; /etc/nftables.d/converge-inet-filter.nft loads the table at boot\n\
         note: nftables:inet/filter: /etc/nftables.conf does not include /etc/nftables.d/converge-inet-filter.nft: nftables.service will not load this table at boot; add `include \"/etc/nftables.d/*.nft\"` at its end\n"
    ), "{apply:?}");
    assert!(
        apply
            .out
            .contains("apply: 3 resources: 1 in sync, 2 changed, 0 failed"),
        "{apply:?}"
    );
    assert_eq!(steps[1].out, "0\n", "the live ruleset is untouched");
    let file = std::fs::read_to_string(root.path().join("etc/nftables.d/converge-inet-filter.nft"))
        .unwrap();
    assert!(
        file.ends_with(&format!("table inet filter {{\n{BODY}}}\n")),
        "{file}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn bad_values_are_refused_with_their_place() {
    let src = source(
        "[[nftables]]\nfamily = \"ipx\"\ntable = \"filter\"\ncontent = \"\"\n\n\
         [[nftables]]\nfamily = \"inet\"\ntable = \"my table\"\ncontent = \"\"\n\n\
         [[nftables]]\nfamily = \"inet\"\ntable = \"a\"\ncontent = \"\"\"\nchain c {\n}\n}\ntable ip sneaky {\n\"\"\"\n\n\
         [[nftables]]\nfamily = \"inet\"\ntable = \"b\"\ncontent = \"table inet b {\\n}\\n\"\n\n\
         [[nftables]]\nfamily = \"inet\"\ntable = \"c\"\n\n\
         [[nftables]]\nfamily = \"inet\"\ntable = \"d\"\nsource = \"fw.nft\"\n",
    );
    let root = tempfile::tempdir().unwrap();
    let (code, err) = support::tools::converge_tree("check", "fw", src.path(), root.path(), &[]);
    assert_eq!(code, 1, "{err}");
    for want in [
        "roles/fw.toml:2:10: invalid nftables family 'ipx': expected one of ip, ip6, inet, arp, bridge, netdev",
        "roles/fw.toml:8:9: invalid table name 'my table': expected a letter or '_', then letters, digits, '_', '-' or '.'",
        "roles/fw.toml:11:1: nftables table 'inet a' (content): line 3: this '}' closes the table's own block; the body may only close what it opens",
        "roles/fw.toml:21:1: nftables table 'inet b' (content): give the table's body only (its chains, sets, maps...), without `table ... {`",
        "roles/fw.toml:26:1: nftables table 'inet c' needs exactly one of content, template or source",
        "roles/fw.toml:33:10: source file 'files/fw.nft' not found in the bundle",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let unknown =
        source("[[nftables]]\nfamily = \"inet\"\ntable = \"t\"\ncontent = \"\"\nflush = true\n");
    let (code, err) =
        support::tools::converge_tree("check", "fw", unknown.path(), root.path(), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("roles/fw.toml:5:1: unknown field `flush`"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_records_in_json_are_the_changes_apply_makes() {
    let src = source(&role(BODY, "purge = true\n"));
    let steps = in_namespaces(
        src.path(),
        &[
            "nft add table inet stray",
            &format!("\"$B\" check {RUN} --format json"),
            &format!("\"$B\" apply {RUN} --format json"),
        ],
    );
    let parse = |s: &Step| -> serde_json::Value {
        assert_eq!(s.rc, 2, "{s:?}");
        serde_json::from_str(&s.out).unwrap()
    };
    let (check, apply) = (parse(&steps[1]), parse(&steps[2]));
    let changes = support::json_changes;
    assert_eq!(changes(&check), changes(&apply));
    let table = &changes(&apply)[0];
    assert_eq!(table.0, "nftables:inet/filter");
    assert_eq!(table.1["action"], "create");
    assert_eq!(
        table.1["fields"][0],
        serde_json::json!({"field": "table inet stray", "before": "present", "after": "deleted (purge)"})
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn elements_the_datapath_adds_to_a_dynamic_set_are_not_drift() {
    let body = "set seen {\n  type ipv4_addr; flags dynamic,timeout; timeout 1h;\n}\n\
                chain input {\n  type filter hook input priority 0;\n  update @seen { ip saddr }\n}\n";
    let src = source(&role(body, ""));
    let steps = in_namespaces(
        src.path(),
        &[
            &format!("\"$B\" apply {RUN} | tail -1"),
            "ip link set lo up && bash -c 'echo > /dev/tcp/127.0.0.1/9' 2>/dev/null; nft -s list set inet filter seen | grep -c 'elements = { 127.0.0.1 }'",
            &format!("\"$B\" check {RUN}"),
        ],
    );
    assert_eq!(
        steps[0].out,
        "apply: 3 resources: 0 in sync, 3 changed, 0 failed\n"
    );
    assert_eq!(
        steps[1].out, "1\n",
        "the rule filled the set: {:?}",
        steps[1]
    );
    assert_eq!(steps[2].rc, 0, "{:?}", steps[2]);
}
