//! `[[kernel_module]]` through the real code path (read /proc/modules and modules.builtin,
//! run `modprobe`, read back) without loading anything into the machine's kernel: every live
//! run happens in a private mount namespace where /proc/modules is a stand-in file, the
//! running release's modules.builtin and modules.alias are stand-in lists, /sys/devices a
//! stand-in tree of devices when a test gives some, /etc is an overlay (the persisted
//! files never reach the machine's /etc), and `modprobe` on the default PATH is a shim that
//! records its calls and loads or unloads in the stand-in /proc/modules. Needs root.

mod support;

use support::kernel::Kernel;
use support::{Namespaces, Step};

/// The stand-ins in a fresh mount namespace, with an overlay on /etc (the persisted files
/// never reach the machine's) and the shim first on the default PATH.
const SETUP: &str = r#"mkdir -p $W/etc.up $W/etc.work
mount -t overlay overlay -o lowerdir=/etc,upperdir=$W/etc.up,workdir=$W/etc.work /etc || fail etc
mkdir -p /etc/modprobe.d /etc/modules-load.d
mount --bind $W/sbin /usr/local/sbin || fail sbin
"#;

const PLAIN: Kernel = Kernel {
    loaded: "dm_mod 184320 0 - Live 0x0000000000000000\n",
    builtin: "kernel/net/ipv4/tcp_bbr.ko\nkernel/drivers/md/dm-crypt.ko\n",
    available: "br_netfilter\nwireguard\ndm_mod\n",
    aliases: "",
    devices: &[],
};

/// What a run of steps did, and the modprobe calls it made.
struct Ran {
    steps: Vec<Step>,
    calls: String,
}

/// Runs shell `steps` one after another in one private mount namespace with the stand-ins
/// of `kernel`; `$B` is the binary, `$S` the source tree, `$C` the agent config.
fn in_namespace(role: &str, kernel: &Kernel, steps: &[&str]) -> Ran {
    let w = tempfile::tempdir().unwrap();
    let wp = w.path();
    std::fs::create_dir_all(wp.join("src/roles")).unwrap();
    std::fs::write(wp.join("src/roles/k.toml"), role).unwrap();
    support::kernel::write(wp, kernel, &wp.display().to_string());
    let setup = format!(
        "{}{}{SETUP}",
        support::kernel::PROC_MODULES,
        support::kernel::MODULE_FILES
    );
    let steps = Namespaces::mount()
        .setup(&setup)
        .env("W", wp)
        .env("R", "")
        .env("V", wp)
        .run(&wp.join("src"), steps);
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

/// Snapshots `kernel` (as a.json), runs `change`, snapshots it again (b.json) and
/// compares them, file names for paths, then runs `after`: steps 0 to 3, and on.
fn compared_around(kernel: &Kernel, change: &str, after: &[&str]) -> Ran {
    let snap = "\"$B\" snapshot --path /etc/modprobe.d --color never -o";
    let mut steps = vec![
        format!("{snap} $W/a.json"),
        change.to_owned(),
        format!("{snap} $W/b.json"),
        "\"$B\" compare $W/a.json $W/b.json --color never | sed \"s|$W/||g\"".to_owned(),
    ];
    steps.extend(after.iter().map(|s| s.to_string()));
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let ran = in_namespace("", kernel, &steps);
    for snapshot in [&ran.steps[0], &ran.steps[2]] {
        assert_eq!(snapshot.rc, 0, "{snapshot:?}");
    }
    ran
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
    let ran = compared_around(
        &PLAIN,
        "echo 'wireguard 16384 0 - Live 0x0' >> /proc/modules",
        &[],
    );
    let s = &ran.steps;
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

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_driver_of_a_device_here_is_hardware_even_unbound_and_is_neither_compared_nor_captured() {
    // e1000e claims the NIC (another driver holds it, so it has no driver bound), r8169
    // claims a device this machine does not have, wireguard claims no device at all.
    let kernel = Kernel {
        loaded: "dm_mod 184320 0 - Live 0x0000000000000000\n\
                 e1000e 356352 0 - Live 0x0000000000000000\n\
                 r8169 110592 0 - Live 0x0000000000000000\n\
                 wireguard 114688 0 - Live 0x0000000000000000\n",
        aliases: "# Aliases extracted from modules themselves.\n\
                  alias pci:v00008086d000015B7sv*sd*bc*sc*i* e1000e\n\
                  alias pci:v00008086d000015[B-D]8sv*sd*bc*sc*i* e1000e\n\
                  alias pci:v000010ECd00008168sv*sd*bc*sc*i* r8169\n\
                  alias net-pf-16-proto-16-family-wireguard wireguard\n",
        devices: &[
            (
                "pci0000:00/0000:00:1f.6",
                "pci:v00008086d000015B8sv000017AAsd00002251bc02sc00i00",
            ),
            (
                "pci0000:00/0000:00:02.0",
                "pci:v00008086d00003EA0sv000017AAsd00002251bc03sc00i00",
            ),
        ],
        ..PLAIN
    };
    let ran = compared_around(
        &kernel,
        "grep '^dm_mod ' /proc/modules > $W/m && cat $W/m > /proc/modules",
        &[
            "\"$B\" capture --from $W/a.json --against $W/b.json --role hw -o $W/cap/roles/hw.toml --color never >/dev/null && cat $W/cap/roles/hw.toml",
            "cat $W/a.json",
        ],
    );
    let s = &ran.steps;
    assert_eq!(
        s[3].out,
        "kernel_module\n  - r8169  (only in a.json)\n      state: loaded\n\
         \x20 - wireguard  (only in a.json)\n      state: loaded\n\
         compare: 2 differences between a.json and b.json (kernel_module 2)\n"
    );
    assert_eq!(s[4].rc, 0, "{:?}", s[4]);
    assert!(
        s[4].out
            .contains("[[kernel_module]]\nname = \"wireguard\"\n"),
        "{}",
        s[4].out
    );
    assert!(!s[4].out.contains("e1000e"), "{}", s[4].out);
    // The verdict is the old host's, made where the device is, and travels in its snapshot.
    let old: serde_json::Value = serde_json::from_str(&s[5].out).unwrap();
    assert_eq!(
        old["kernel_modules_implied"],
        serde_json::json!({
            "e1000e": "a driver of this machine's hardware (its alias matches /sys/devices/pci0000:00/0000:00:1f.6)"
        })
    );
}
