//! `[[kernel_module]]` through the real code path (read /proc/modules and modules.builtin,
//! run `modprobe`, read back) without loading anything into the machine's kernel: every live
//! run happens in a private mount namespace where /proc/modules is a stand-in file, the
//! running release's modules.builtin is a stand-in list, /etc is an overlay (the persisted
//! files never reach the machine's /etc), and `modprobe` on the default PATH is a shim that
//! records its calls and loads or unloads in the stand-in /proc/modules. Needs root.

mod support;

use std::process::Command;

use support::{output_text, require_root, require_tool, OwnState, Step, BIN};

/// Stands in for modprobe: records each call (with the options modprobe.d gives the module,
/// which shows the options file was there first), refuses what modprobe.d's `install NAME
/// /bin/false` refuses and what `$W/available` does not list, as modprobe does, and loads or
/// unloads in the stand-in /proc/modules.
const SHIM: &str = r#"#!/bin/sh
W=@W@
if [ "$1" = -r ]; then
  echo "modprobe -r $2" >> $W/calls
  grep -v "^$2 " /proc/modules > $W/modules.new
  cat $W/modules.new > /proc/modules
  exit 0
fi
name=$1
opts=$(sed -n "s/^options $name //p" /etc/modprobe.d/*.conf 2>/dev/null)
echo "modprobe $name (options: $opts)" >> $W/calls
if grep -q "^install $name /bin/false" /etc/modprobe.d/*.conf 2>/dev/null; then
  echo "modprobe: ERROR: ../libkmod/libkmod-module.c:1054 command_do() Error running install command '/bin/false' for module $name: retcode 1" >&2
  echo "modprobe: ERROR: could not insert '$name': Invalid argument" >&2
  exit 1
fi
if ! grep -qx "$name" $W/available; then
  echo "modprobe: FATAL: Module $name not found in directory /lib/modules/$(uname -r)" >&2
  exit 1
fi
echo "$name 16384 0 - Live 0x0000000000000000" >> /proc/modules
"#;

/// Sets up the stand-ins in a fresh mount namespace. /proc/modules is bound over when the
/// kernel has one; a kernel built without modules has none to bind over, so /proc becomes a
/// tmpfs of links into the real proc (mounted aside), with the stand-in as its `modules`.
const SETUP: &str = r#"set -u
fail() { echo "setup: $*"; exit 99; }
if [ -e /proc/modules ]; then
  mount --bind $W/modules /proc/modules || fail bind
else
  mkdir $W/realproc && mount --rbind /proc $W/realproc || fail rbind
  mount -t tmpfs tmpfs /proc || fail tmpfs
  for e in $W/realproc/*; do ln -s "$e" /proc/; done
  ln -s $W/realproc/self /proc/self; ln -s $W/realproc/thread-self /proc/thread-self
  ln -sf $W/modules /proc/modules
fi
mkdir -p $W/etc.up $W/etc.work $W/lib.up $W/lib.work
mount -t overlay overlay -o lowerdir=/etc,upperdir=$W/etc.up,workdir=$W/etc.work /etc || fail etc
mount -t overlay overlay -o lowerdir=/usr/lib,upperdir=$W/lib.up,workdir=$W/lib.work /usr/lib || fail lib
mkdir -p /etc/modprobe.d /etc/modules-load.d /lib/modules/$(uname -r)
cp $W/builtin /lib/modules/$(uname -r)/modules.builtin
mount --bind $W/sbin /usr/local/sbin || fail sbin
"#;

/// A host as the tests see it: what the kernel has loaded, built in, and can load.
struct Kernel<'a> {
    loaded: &'a str,
    builtin: &'a str,
    available: &'a str,
}

const PLAIN: Kernel = Kernel {
    loaded: "dm_mod 184320 0 - Live 0x0000000000000000\n",
    builtin: "kernel/net/ipv4/tcp_bbr.ko\nkernel/drivers/md/dm-crypt.ko\n",
    available: "br_netfilter\nwireguard\ndm_mod\n",
};

/// What a run of steps did, and the modprobe calls it made.
struct Ran {
    steps: Vec<Step>,
    calls: String,
}

/// Runs shell `steps` one after another in one private mount namespace with the stand-ins
/// of `kernel`; `$B` is the binary, `$S` the source tree, `$C` the agent config.
fn in_namespace(role: &str, kernel: &Kernel, steps: &[&str]) -> Ran {
    require_root();
    let unshare = require_tool("unshare");
    let w = tempfile::tempdir().unwrap();
    let wp = w.path();
    std::fs::create_dir_all(wp.join("src/roles")).unwrap();
    std::fs::write(wp.join("src/roles/k.toml"), role).unwrap();
    std::fs::write(wp.join("modules"), kernel.loaded).unwrap();
    std::fs::write(wp.join("builtin"), kernel.builtin).unwrap();
    std::fs::write(wp.join("available"), kernel.available).unwrap();
    std::fs::write(wp.join("calls"), "").unwrap();
    std::fs::create_dir(wp.join("sbin")).unwrap();
    let shim = wp.join("sbin/modprobe");
    std::fs::write(&shim, SHIM.replace("@W@", &wp.display().to_string())).unwrap();
    let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&shim, exec).unwrap();
    let script = support::steps::script(SETUP, steps);
    let own = OwnState::new();
    let out = Command::new(unshare)
        .args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(&script)
        .env("W", wp)
        .env("B", BIN)
        .env("S", wp.join("src"))
        .env("C", own.config())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let steps = support::steps::split(&out.stdout);
    let calls = std::fs::read_to_string(wp.join("calls")).unwrap();
    Ran { steps, calls }
}

const RUN: &str = "--source \"$S\" --config \"$C\" --role k --color never";

fn check() -> String {
    format!("\"$B\" check {RUN}")
}

fn apply() -> String {
    format!("\"$B\" apply {RUN}")
}

/// What the stand-ins and the persisted files hold.
const SHOW: &str = "cat /proc/modules; for f in /etc/modprobe.d/* /etc/modules-load.d/*; do \
     [ -e \"$f\" ] && echo \"== $f $(stat -c '%a %u %g' $f)\" && cat \"$f\"; done; true";

/// The report without its summary line, which says "would" in check only.
fn body(s: &str) -> String {
    s.lines()
        .filter(|l| !l.contains(" resources: "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_shows_apply_loads_unloads_and_persists_then_nothing_changes() {
    let role =
        "[[kernel_module]]\nname = \"br-netfilter\"\noptions = \"hashsize=65536  debug\"\n\n\
                [[kernel_module]]\nname = \"dm_mod\"\nensure = \"absent\"\n";
    let ran = in_namespace(
        role,
        &PLAIN,
        &[&check(), SHOW, &apply(), SHOW, &apply(), &check()],
    );
    let s = &ran.steps;
    assert_eq!(s[0].rc, 2, "{:?}", s[0]);
    insta::assert_snapshot!("check", s[0].out);
    assert_eq!(
        s[1].out, "dm_mod 184320 0 - Live 0x0000000000000000\n",
        "check must not write"
    );
    assert_eq!(s[2].rc, 2, "{:?}", s[2]);
    assert_eq!(
        body(&s[2].out),
        body(&s[0].out),
        "apply does what check showed"
    );
    // The options were in modprobe.d when the module loaded.
    assert_eq!(
        ran.calls,
        "modprobe br_netfilter (options: hashsize=65536 debug)\nmodprobe -r dm_mod\n"
    );
    assert_eq!(
        s[3].out,
        "br_netfilter 16384 0 - Live 0x0000000000000000\n\
         == /etc/modprobe.d/converge-br_netfilter.conf 644 0 0\n\
         # Managed by converge from the roles' [[kernel_module]]; local edits are lost.\n\
         options br_netfilter hashsize=65536 debug\n\
         == /etc/modprobe.d/converge-dm_mod.conf 644 0 0\n\
         # Managed by converge from the roles' [[kernel_module]]; local edits are lost.\n\
         blacklist dm_mod\n\
         install dm_mod /bin/false\n\
         == /etc/modules-load.d/converge-br_netfilter.conf 644 0 0\n\
         # Managed by converge from the roles' [[kernel_module]]; local edits are lost.\n\
         br_netfilter\n"
    );
    for again in &s[4..] {
        assert_eq!(again.rc, 0, "{again:?}");
        assert!(again.out.contains("6 resources: 6 in sync"), "{again:?}");
    }
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_and_apply_json_records_are_the_same() {
    let role = "[[kernel_module]]\nname = \"wireguard\"\noptions = \"x=1\"\n\n\
                [[kernel_module]]\nname = \"dm_mod\"\nensure = \"absent\"\n";
    let ran = in_namespace(
        role,
        &PLAIN,
        &[
            &format!("{} --format json", check()),
            &format!("{} --format json", apply()),
        ],
    );
    let changes = |out: &str| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| serde_json::json!([o["id"], o["change"]]))
            .collect()
    };
    let (check, apply) = (changes(&ran.steps[0].out), changes(&ran.steps[1].out));
    assert_eq!(check, apply);
    assert_eq!(
        check[1],
        serde_json::json!(["kernel_module:wireguard", {"action": "create", "fields": [{"field": "state", "before": "not loaded", "after": "loaded"}]}])
    );
    assert_eq!(check[3][0], "kernel_module:dm_mod");
    assert_eq!(check[3][1]["action"], "remove");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn switching_a_blacklisted_module_to_loaded_rewrites_modprobe_d_before_loading() {
    let absent = "[[kernel_module]]\nname = \"wireguard\"\nensure = \"absent\"\n";
    let loaded = "[[kernel_module]]\nname = \"wireguard\"\n";
    let set = "printf '%s' \"$ROLE\" > \"$S/roles/k.toml\"";
    let ran = in_namespace(
        absent,
        &PLAIN,
        &[
            &apply(),
            &format!("ROLE='{loaded}'; {set}; \"$B\" check {RUN}"),
            &apply(),
            SHOW,
        ],
    );
    let s = &ran.steps;
    assert_eq!(s[0].rc, 2, "{:?}", s[0]);
    assert_eq!(s[1].rc, 2, "{:?}", s[1]);
    insta::assert_snapshot!("absent_to_loaded", s[1].out);
    assert_eq!(s[2].rc, 2, "{:?}", s[2]);
    // The blacklist's install rule was gone before modprobe ran.
    assert_eq!(ran.calls, "modprobe wireguard (options: )\n");
    assert_eq!(
        s[3].out,
        "dm_mod 184320 0 - Live 0x0000000000000000\n\
         wireguard 16384 0 - Live 0x0000000000000000\n\
         == /etc/modules-load.d/converge-wireguard.conf 644 0 0\n\
         # Managed by converge from the roles' [[kernel_module]]; local edits are lost.\n\
         wireguard\n"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn rollback_unloads_what_the_run_loaded_and_loads_what_it_unloaded() {
    let role = "[[kernel_module]]\nname = \"br_netfilter\"\noptions = \"debug=1\"\n\n\
                [[kernel_module]]\nname = \"dm_mod\"\nensure = \"absent\"\n";
    let history = "--state-dir \"$W/state\"";
    let ran = in_namespace(
        role,
        &PLAIN,
        &[
            &format!("{} {history}", apply()),
            &format!("\"$B\" rollback --check {history} --color never"),
            &format!("\"$B\" rollback {history} --color never"),
            SHOW,
        ],
    );
    let s = &ran.steps;
    assert_eq!(s[0].rc, 2, "{:?}", s[0]);
    assert_eq!(s[1].rc, 2, "{:?}", s[1]);
    assert!(
        s[1].out
            .contains("    restore kernel_module:dm_mod: state: not loaded → loaded\n"),
        "{:?}",
        s[1]
    );
    assert!(
        s[1].out
            .contains("    restore kernel_module:br_netfilter: state: loaded → not loaded\n"),
        "{:?}",
        s[1]
    );
    assert_eq!(s[2].rc, 2, "{:?}", s[2]);
    assert!(
        s[2].out
            .contains("    restored kernel_module:br_netfilter\n"),
        "{:?}",
        s[2]
    );
    // Undone newest first: dm_mod's blacklist goes before modprobe loads it again.
    assert_eq!(
        ran.calls,
        "modprobe br_netfilter (options: debug=1)\nmodprobe -r dm_mod\n\
         modprobe dm_mod (options: )\nmodprobe -r br_netfilter\n"
    );
    assert_eq!(s[3].out, "dm_mod 16384 0 - Live 0x0000000000000000\n");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn snapshot_records_loaded_modules_and_compare_shows_the_difference() {
    let snap = "\"$B\" snapshot --path /etc/modprobe.d --color never -o";
    let ran = in_namespace(
        "",
        &PLAIN,
        &[
            &format!("{snap} $W/a.json"),
            "echo 'wireguard 16384 0 - Live 0x0' >> /proc/modules",
            &format!("{snap} $W/b.json"),
            "\"$B\" compare $W/a.json $W/b.json --color never | sed \"s|$W/||g\"",
        ],
    );
    let s = &ran.steps;
    assert_eq!(s[0].rc, 0, "{:?}", s[0]);
    assert_eq!(s[2].rc, 0, "{:?}", s[2]);
    assert_eq!(
        s[3].out,
        "kernel_module\n  + wireguard  (only in b.json)\n      state: loaded\n\
         compare: 1 difference between a.json and b.json (kernel_module 1)\n"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_module_in_use_is_refused_with_its_users_and_nothing_changes() {
    let kernel = Kernel {
        loaded: "bridge 311296 1 br_netfilter, Live 0x0000000000000000\n\
                 br_netfilter 32768 0 - Live 0x0000000000000000\n\
                 loop 32768 2 - Live 0x0000000000000000\n\
                 ipv6 540672 0 [permanent], Live 0x0000000000000000\n",
        ..PLAIN
    };
    let role = "[[kernel_module]]\nname = \"bridge\"\nensure = \"absent\"\n\n\
                [[kernel_module]]\nname = \"loop\"\nensure = \"absent\"\n\n\
                [[kernel_module]]\nname = \"ipv6\"\nensure = \"absent\"\n";
    let ran = in_namespace(role, &kernel, &[&check(), &apply(), SHOW]);
    let s = &ran.steps;
    for step in &s[..2] {
        assert_eq!(step.rc, 4, "{step:?}");
        assert!(
            step.out.contains(
                "kernel module 'bridge' is in use (used by br_netfilter, refcount 1): unload those first, or declare them absent too; nothing was changed"
            ),
            "{step:?}"
        );
        assert!(
            step.out.contains(
                "kernel module 'loop' is in use (by no module: a device, mount or process holds it, refcount 2): unload what holds it first, or declare it absent too; nothing was changed"
            ),
            "{step:?}"
        );
    }
    for step in &s[..2] {
        assert!(
            step.out.contains(
                "kernel module 'ipv6' is permanent (it has no exit function): it cannot be unloaded until reboot; nothing was changed"
            ),
            "{step:?}"
        );
    }
    assert_eq!(ran.calls, "");
    assert_eq!(
        s[2].out, kernel.loaded,
        "no blacklist written, nothing unloaded"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_module_missing_for_this_kernel_fails_with_modprobes_reason() {
    let role = "[[kernel_module]]\nname = \"nosuch\"\n";
    let ran = in_namespace(role, &PLAIN, &[&apply(), SHOW, "uname -r"]);
    let s = &ran.steps;
    assert_eq!(s[0].rc, 4, "{:?}", s[0]);
    let release = s[2].out.trim();
    assert!(
        s[0].out.contains(&format!(
            "kernel module 'nosuch' cannot be loaded: modprobe: FATAL: Module nosuch not found in directory /lib/modules/{release}"
        )),
        "{:?}",
        s[0]
    );
    assert!(
        s[0].out
            .contains("skipped: kernel_module:nosuch did not converge"),
        "{:?}",
        s[0]
    );
    assert_eq!(ran.calls, "modprobe nosuch (options: )\n");
    // Not set to load at every boot.
    assert_eq!(s[1].out, PLAIN.loaded);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_builtin_module_is_in_sync_with_a_note_and_cannot_be_absent() {
    let ran = in_namespace(
        "[[kernel_module]]\nname = \"tcp_bbr\"\noptions = \"x=1\"\n",
        &PLAIN,
        &[&apply(), &apply()],
    );
    let s = &ran.steps;
    assert_eq!(s[0].rc, 2, "{:?}", s[0]);
    assert_eq!(s[1].rc, 0, "{:?}", s[1]);
    assert!(
        s[1].out.contains(
            "tcp_bbr is built into the kernel (modules.builtin): always loaded; modprobe.d options do not reach a built-in module, set them on the kernel command line (tcp_bbr.PARAM=VALUE)"
        ),
        "{:?}",
        s[1]
    );
    assert!(s[1].out.contains("3 resources: 3 in sync"), "{:?}", s[1]);
    assert_eq!(ran.calls, "");

    let ran = in_namespace(
        "[[kernel_module]]\nname = \"dm-crypt\"\nensure = \"absent\"\n",
        &PLAIN,
        &[&check()],
    );
    assert_eq!(ran.steps[0].rc, 4, "{:?}", ran.steps[0]);
    assert!(
        ran.steps[0].out.contains(
            "kernel module 'dm_crypt' is built into this kernel (modules.builtin): it cannot be unloaded or blacklisted"
        ),
        "{:?}",
        ran.steps[0]
    );
    assert_eq!(ran.calls, "");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn bad_values_are_located_errors() {
    let p = support::Project::new();
    p.file(
        "roles/k.toml",
        "[[kernel_module]]\nname = \"../evil\"\n\n\
         [[kernel_module]]\nname = \"ok\"\nensure = \"present\"\n\n\
         [[kernel_module]]\nname = \"ok2\"\noptions = \"a=\\\"b c\\\"\"\n\n\
         [[kernel_module]]\nname = \"ok3\"\nensure = \"absent\"\noptions = \"a=1\"\n",
    );
    let r = p.check(&["k"]);
    assert_eq!(r.code, 1, "{r:?}");
    insta::assert_snapshot!("bad_values", r.stderr);
    p.file(
        "roles/k.toml",
        "[[kernel_module]]\nname = \"ok4\"\nstate = \"loaded\"\n",
    );
    let r = p.check(&["k"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with(
            "error: roles/k.toml:3:1: unknown field `state`, expected one of `name`, `ensure`, `options`, `after`\n"
        ),
        "{r:?}"
    );
    assert!(p.tree().keys().all(|k| k == "etc"), "{:?}", p.tree());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn under_root_the_files_are_managed_and_the_live_module_is_noted() {
    let p = support::Project::new();
    std::fs::create_dir_all(p.at("/etc/modprobe.d")).unwrap();
    std::fs::create_dir_all(p.at("/etc/modules-load.d")).unwrap();
    p.file(
        "roles/k.toml",
        "[[kernel_module]]\nname = \"br_netfilter\"\n\n\
         [[kernel_module]]\nname = \"floppy\"\nensure = \"absent\"\n",
    );
    let state = tempfile::tempdir().unwrap();
    let state = state.path().display().to_string();
    let first = p.converge("apply", &["k"], &["--state-dir", &state]);
    assert_eq!(first.code, 2, "{first:?}");
    insta::assert_snapshot!("root_apply", first.stdout);
    let read = |f: &str| std::fs::read_to_string(p.at(f)).unwrap();
    assert_eq!(
        read("/etc/modules-load.d/converge-br_netfilter.conf"),
        "# Managed by converge from the roles' [[kernel_module]]; local edits are lost.\nbr_netfilter\n"
    );
    assert_eq!(
        read("/etc/modprobe.d/converge-floppy.conf"),
        "# Managed by converge from the roles' [[kernel_module]]; local edits are lost.\nblacklist floppy\ninstall floppy /bin/false\n"
    );
    let again = p.converge("apply", &["k"], &["--state-dir", &state]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again
            .stdout
            .contains("converge cannot load a module into a tree"),
        "{again:?}"
    );
    // Rolling the run back takes the files away again.
    let root = p.root().display().to_string();
    let rb = p.run(&["rollback", "--root", &root, "--state-dir", &state]);
    assert_eq!(rb.code, 2, "{rb:?}");
    assert!(!p
        .at("/etc/modules-load.d/converge-br_netfilter.conf")
        .exists());
    assert!(!p.at("/etc/modprobe.d/converge-floppy.conf").exists());
}
