//! `[sysfs]` through the real code path (find the attribute files, read the kernel's
//! formats, write, read back) without writing the machine's kernel: every live run happens
//! in a private mount namespace where /sys/kernel/mm, /sys/block and /sys/dev/block are
//! tmpfs stand-ins holding attribute files shaped as the kernel's (choice lists such as
//! `always [madvise] never`, device directories linked from /sys/block, a read-only report),
//! and /etc is an overlay, so the tmpfiles.d file and udev rule never reach the machine's
//! /etc. A stand-in keeps what is written as it is; a step that rewrites a file as a choice
//! list again plays the kernel's part. Needs root.
//!
//! The one test against the real kernel only reads it: `check` never writes.

mod support;

use support::{Namespaces, Step};

/// Puts the stand-ins in place in a fresh mount namespace. `$DISKS` are the disks, the
/// first of them holding `/`.
const SETUP: &str = r#"set -u
fail() { echo "setup: $*"; exit 99; }
mm=/sys/kernel/mm
mount -t tmpfs tmpfs $mm || fail mm
mkdir -p $mm/transparent_hugepage $mm/ksm
echo 'always [madvise] never' > $mm/transparent_hugepage/enabled
echo 'always defer defer+madvise [madvise] never' > $mm/transparent_hugepage/defrag
echo 0 > $mm/ksm/run
echo 100 > $mm/ksm/pages_to_scan
echo 3 > $mm/ksm/full_scans
chmod 444 $mm/ksm/full_scans
mount -t tmpfs tmpfs /sys/block || fail block
mkdir -p $W/devices
for d in $DISKS; do
  mkdir -p $W/devices/$d/queue $W/devices/$d/device
  echo '[none] mq-deadline kyber' > $W/devices/$d/queue/scheduler
  echo 128 > $W/devices/$d/queue/read_ahead_kb
  echo 256 > $W/devices/$d/queue/nr_requests
  ln -s $W/devices/$d /sys/block/$d
done
mount -t tmpfs tmpfs /sys/dev/block || fail dev
set -- $DISKS
ln -s /sys/block/$1 /sys/dev/block/$(mountpoint -d /)
mkdir -p $W/etc.up $W/etc.work
mount -t overlay overlay -o lowerdir=/etc,upperdir=$W/etc.up,workdir=$W/etc.work /etc || fail etc
mkdir -p /etc/tmpfiles.d /etc/udev/rules.d
"#;

/// Runs shell `steps` one after another in one private mount namespace with the stand-ins
/// of `disks`; `$B` is the binary, `$S` the source tree, `$C` the agent config, `$W` a
/// scratch directory.
fn in_namespace(role: &str, disks: &str, steps: &[&str]) -> Vec<Step> {
    let w = tempfile::tempdir().unwrap();
    let wp = w.path();
    std::fs::create_dir_all(wp.join("src/roles")).unwrap();
    std::fs::write(wp.join("src/roles/s.toml"), role).unwrap();
    Namespaces::mount()
        .setup(SETUP)
        .env("W", wp)
        .env("DISKS", disks)
        .run(&wp.join("src"), steps)
}

const RUN: &str = "--source \"$S\" --config \"$C\" --role s --color never";

fn check() -> String {
    format!("\"$B\" check {RUN}")
}

fn apply() -> String {
    format!("\"$B\" apply {RUN}")
}

/// What the stand-ins and the boot files hold.
const SHOW: &str = "cd /sys; for f in kernel/mm/transparent_hugepage/* block/*/queue/*; do \
     echo \"$f: $(cat $f)\"; done; for f in /etc/tmpfiles.d/* /etc/udev/rules.d/*; do \
     [ -e \"$f\" ] && echo \"== $f\" && cat \"$f\"; done; true";

/// What the kernel shows after the writes: a choice list with the choice in brackets.
const KERNEL_FORMATS: &str = "cd /sys; \
     echo 'always madvise [never]' > kernel/mm/transparent_hugepage/enabled; \
     for f in block/nvme*/queue/scheduler; do echo 'none [mq-deadline] kyber' > $f; done";

const ROLE: &str = r#"[sysfs]
"kernel/mm/transparent_hugepage/enabled" = "never"
"kernel/mm/transparent_hugepage/defrag" = { value = "defer", persist = false }
"block/nvme*/queue/scheduler" = "mq-deadline"
"block/nvme0n1/queue/read_ahead_kb" = 4096
"block/sd*/queue/nr_requests" = 64
"#;

/// The report without its summary line, which says "would" in check only.
fn body(s: &str) -> String {
    s.lines()
        .filter(|l| !l.contains(" resources: "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_shows_apply_writes_and_persists_then_nothing_changes() {
    let s = in_namespace(
        ROLE,
        "nvme0n1 nvme1n1",
        &[
            &check(),
            SHOW,
            &apply(),
            SHOW,
            KERNEL_FORMATS,
            &apply(),
            &check(),
        ],
    );
    assert_eq!(s[0].rc, 2, "{:?}", s[0]);
    insta::assert_snapshot!("check", s[0].out);
    assert_eq!(
        s[1].out,
        "kernel/mm/transparent_hugepage/defrag: always defer defer+madvise [madvise] never\n\
         kernel/mm/transparent_hugepage/enabled: always [madvise] never\n\
         block/nvme0n1/queue/nr_requests: 256\n\
         block/nvme0n1/queue/read_ahead_kb: 128\n\
         block/nvme0n1/queue/scheduler: [none] mq-deadline kyber\n\
         block/nvme1n1/queue/nr_requests: 256\n\
         block/nvme1n1/queue/read_ahead_kb: 128\n\
         block/nvme1n1/queue/scheduler: [none] mq-deadline kyber\n",
        "check must not write"
    );
    assert_eq!(s[2].rc, 2, "{:?}", s[2]);
    assert_eq!(
        body(&s[2].out),
        body(&s[0].out),
        "apply does what check showed"
    );
    assert_eq!(
        s[3].out,
        "kernel/mm/transparent_hugepage/defrag: defer\n\
         kernel/mm/transparent_hugepage/enabled: never\n\
         block/nvme0n1/queue/nr_requests: 256\n\
         block/nvme0n1/queue/read_ahead_kb: 4096\n\
         block/nvme0n1/queue/scheduler: mq-deadline\n\
         block/nvme1n1/queue/nr_requests: 256\n\
         block/nvme1n1/queue/read_ahead_kb: 128\n\
         block/nvme1n1/queue/scheduler: mq-deadline\n\
         == /etc/tmpfiles.d/00-converge-sysfs.conf\n\
         # Managed by converge from the roles' [sysfs] tables; written whole, local edits are lost.\n\
         # systemd-tmpfiles writes them at boot; of two files writing one path, the one sorting first wins.\n\
         w /sys/kernel/mm/transparent_hugepage/enabled - - - - never\n\
         == /etc/udev/rules.d/90-converge-sysfs.rules\n\
         # Managed by converge from the roles' [sysfs] tables; written whole, local edits are lost.\n\
         # udev applies them at boot and to each matching device that appears; a later rule setting the same attribute wins.\n\
         ACTION==\"add|change\", SUBSYSTEM==\"block\", ENV{DEVTYPE}==\"disk\", KERNEL==\"nvme*\", ATTR{queue/scheduler}=\"mq-deadline\"\n\
         ACTION==\"add|change\", SUBSYSTEM==\"block\", ENV{DEVTYPE}==\"disk\", KERNEL==\"nvme0n1\", ATTR{queue/read_ahead_kb}=\"4096\"\n\
         ACTION==\"add|change\", SUBSYSTEM==\"block\", ENV{DEVTYPE}==\"disk\", KERNEL==\"sd*\", ATTR{queue/nr_requests}=\"64\"\n"
    );
    for again in &s[5..] {
        assert_eq!(again.rc, 0, "{again:?}");
        assert!(again.out.contains("7 resources: 7 in sync"), "{again:?}");
        assert!(
            again.out.contains(
                "note: sysfs:block/sd*/queue/nr_requests: no device matches /sys/block/sd*/queue/nr_requests now; /etc/udev/rules.d/90-converge-sysfs.rules sets it at boot and on every matching device that appears"
            ),
            "{again:?}"
        );
    }
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_and_apply_json_records_are_the_same() {
    let s = in_namespace(
        ROLE,
        "nvme0n1",
        &[
            &format!("{} --format json", check()),
            &format!("{} --format json", apply()),
        ],
    );
    let changes =
        |out: &str| support::json_changes(&serde_json::from_str(out).expect("a JSON report"));
    let (check, apply) = (changes(&s[0].out), changes(&s[1].out));
    assert_eq!(check, apply);
    assert!(
        check.contains(&(
            "sysfs:block/nvme*/queue/scheduler".to_owned(),
            serde_json::json!({"action": "update", "fields": [{"field": "block/nvme0n1/queue/scheduler", "before": "none", "after": "mq-deadline"}]})
        )),
        "{check:?}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn drift_is_repaired_and_rollback_puts_the_old_values_back() {
    let history = "--state-dir \"$W/state\"";
    let s = in_namespace(
        ROLE,
        "nvme0n1",
        &[
            &format!("{} {history}", apply()),
            "echo always > /sys/kernel/mm/transparent_hugepage/enabled",
            &check(),
            &format!("{} {history}", apply()),
            &format!("\"$B\" rollback --check {history} --color never"),
            &format!("\"$B\" rollback {history} --color never"),
            SHOW,
        ],
    );
    assert_eq!(s[0].rc, 2, "{:?}", s[0]);
    assert_eq!(s[2].rc, 2, "{:?}", s[2]);
    assert!(
        s[2].out.contains(
            "~ update sysfs:kernel/mm/transparent_hugepage/enabled  (role s)\n    value: always → never\n"
        ),
        "{:?}",
        s[2]
    );
    assert!(s[2].out.contains("1 would change"), "{:?}", s[2]);
    assert_eq!(s[3].rc, 2, "{:?}", s[3]);
    // The last run repaired the drift: rolling it back puts the drift back.
    assert_eq!(s[4].rc, 2, "{:?}", s[4]);
    assert!(
        s[4].out.contains(
            "    restore sysfs:kernel/mm/transparent_hugepage/enabled: kernel/mm/transparent_hugepage/enabled: never → always\n"
        ),
        "{:?}",
        s[4]
    );
    assert_eq!(s[5].rc, 2, "{:?}", s[5]);
    assert!(
        s[6].out
            .starts_with("kernel/mm/transparent_hugepage/defrag: defer\nkernel/mm/transparent_hugepage/enabled: always\n"),
        "{:?}",
        s[6]
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_value_set_by_hand_since_the_run_stops_a_rollback_unless_forced() {
    let history = "--state-dir \"$W/state\"";
    let enabled = "/sys/kernel/mm/transparent_hugepage/enabled";
    let s = in_namespace(
        ROLE,
        "nvme0n1",
        &[
            &format!("{} {history}", apply()),
            &format!("echo always > {enabled}"),
            &format!("\"$B\" rollback --check {history} --color never"),
            &format!("\"$B\" rollback {history} --color never"),
            &format!("cat {enabled}"),
            &format!("\"$B\" rollback --force {history} --color never"),
            &format!("cat {enabled}"),
        ],
    );
    assert_eq!(s[0].rc, 2, "{:?}", s[0]);
    let refused = "    refused sysfs:kernel/mm/transparent_hugepage/enabled: changed since the run (now kernel/mm/transparent_hugepage/enabled: always; the run left kernel/mm/transparent_hugepage/enabled: never); --force restores it and keeps what is there now in the run's history\n";
    assert_eq!(s[2].rc, 4, "{:?}", s[2]);
    assert!(s[2].out.contains(refused), "{:?}", s[2]);
    assert_eq!(s[3].rc, 1, "{:?}", s[3]);
    assert!(s[3].out.contains(refused), "{:?}", s[3]);
    assert_eq!(s[4].out, "always\n", "refused: nothing changed");
    assert_eq!(s[5].rc, 2, "{:?}", s[5]);
    assert!(
        s[5].out.contains(
            "    restored sysfs:kernel/mm/transparent_hugepage/enabled: changed since the run (now kernel/mm/transparent_hugepage/enabled: always; the run left kernel/mm/transparent_hugepage/enabled: never): restored over it\n"
        ),
        "{:?}",
        s[5]
    );
    // The value before the run, as the stand-in first held it.
    assert_eq!(s[6].out, "madvise\n");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn rollback_of_the_first_run_restores_every_device() {
    let history = "--state-dir \"$W/state\"";
    let s = in_namespace(
        ROLE,
        "nvme0n1 nvme1n1",
        &[
            &format!("{} {history}", apply()),
            &format!("\"$B\" rollback {history} --color never"),
            SHOW,
        ],
    );
    assert_eq!(s[0].rc, 2, "{:?}", s[0]);
    assert_eq!(s[1].rc, 2, "{:?}", s[1]);
    assert!(
        s[1].out
            .contains("    restored sysfs:block/nvme*/queue/scheduler\n"),
        "{:?}",
        s[1]
    );
    assert_eq!(
        s[2].out,
        "kernel/mm/transparent_hugepage/defrag: madvise\n\
         kernel/mm/transparent_hugepage/enabled: madvise\n\
         block/nvme0n1/queue/nr_requests: 256\n\
         block/nvme0n1/queue/read_ahead_kb: 128\n\
         block/nvme0n1/queue/scheduler: none\n\
         block/nvme1n1/queue/nr_requests: 256\n\
         block/nvme1n1/queue/read_ahead_kb: 128\n\
         block/nvme1n1/queue/scheduler: none\n",
        "the boot files are gone again, the values are the old ones"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_tmpfiles_or_udev_file_that_wins_over_ours_is_a_warning() {
    // systemd-tmpfiles keeps the first line of a path in file-name order, udev runs every
    // rule and the last assignment stays: an earlier tmpfiles.d file, a later udev rule.
    let later = "echo 'w /sys/kernel/mm/transparent_hugepage/enabled - - - - always' > /etc/tmpfiles.d/00-admin-thp.conf; \
         echo 'w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise' > /etc/tmpfiles.d/thp.conf; \
         echo 'ACTION==\"add\", SUBSYSTEM==\"block\", KERNEL==\"nvme0n1\", ATTR{queue/scheduler}=\"kyber\"' > /etc/udev/rules.d/95-local.rules";
    let s = in_namespace(ROLE, "nvme0n1", &[later, &check(), &apply(), &apply()]);
    assert_eq!(s[1].rc, 2, "{:?}", s[1]);
    for warning in [
        "    warning: /etc/tmpfiles.d/00-admin-thp.conf sets kernel/mm/transparent_hugepage/enabled to always at boot, overriding this file\n",
        "    warning: /etc/udev/rules.d/95-local.rules sets block/nvme*/queue/scheduler to kyber at boot, overriding this file\n",
    ] {
        assert!(s[1].out.contains(warning), "{warning}: {:?}", s[1]);
        assert!(s[2].out.contains(warning), "{warning}: {:?}", s[2]);
    }
    // thp.conf sorts after ours: systemd-tmpfiles ignores its line as a duplicate.
    assert!(
        !s[1].out.contains("/etc/tmpfiles.d/thp.conf sets"),
        "{:?}",
        s[1]
    );
    // Once written, the files are in sync; the log still warns on every run.
    assert_eq!(s[3].rc, 0, "{:?}", s[3]);
    assert!(
        s[3].out.contains("/etc/tmpfiles.d/00-admin-thp.conf sets kernel/mm/transparent_hugepage/enabled to always besides /etc/tmpfiles.d/00-converge-sysfs.conf; that value wins at boot"),
        "{:?}",
        s[3]
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn what_the_host_cannot_take_is_a_located_error_and_nothing_changes() {
    let role = r#"[sysfs]
"kernel/mm/ksm/full_scans" = 1
"kernel/mm/nosuch/knob" = 1
"block/nvme*/queue/scheduler" = "bfq"
"kernel/mm/transparent_hugepage/enabled" = "never"
"#;
    let s = in_namespace(role, "nvme0n1", &[&check(), &apply(), SHOW]);
    for step in &s[..2] {
        // The good key changes (or would), the others fail.
        assert_eq!(step.rc, 6, "{step:?}");
        for error in [
            "roles/s.toml:2:1: sysfs 'kernel/mm/ksm/full_scans': /sys/kernel/mm/ksm/full_scans is read-only, not a writable attribute",
            "roles/s.toml:3:1: sysfs 'kernel/mm/nosuch/knob': /sys/kernel/mm/nosuch/knob does not exist on this host (not in this kernel, or its module is not loaded)",
            "roles/s.toml:4:1: sysfs 'block/nvme*/queue/scheduler': /sys/block/nvme0n1/queue/scheduler offers none, mq-deadline, kyber, not 'bfq'",
            "skipped: sysfs:block/nvme*/queue/scheduler did not converge",
        ] {
            assert!(step.out.contains(error), "{error}: {step:?}");
        }
    }
    // The good key was written; the boot files wait for every key.
    assert_eq!(
        s[2].out,
        "kernel/mm/transparent_hugepage/defrag: always defer defer+madvise [madvise] never\n\
         kernel/mm/transparent_hugepage/enabled: never\n\
         block/nvme0n1/queue/nr_requests: 256\n\
         block/nvme0n1/queue/read_ahead_kb: 128\n\
         block/nvme0n1/queue/scheduler: [none] mq-deadline kyber\n"
    );
}

#[test]
fn bad_keys_and_values_are_refused_at_load_with_their_place() {
    let p = support::Project::new();
    p.file(
        "roles/s.toml",
        "[sysfs]\n\"/sys/kernel/mm/ksm/run\" = 1\n\"kernel/mm/../../power/state\" = \"mem\"\n\
         \"power/state\" = \"mem\"\n\"block/sda/queue/*\" = 1\n\"block/sda/uevent\" = \"add\"\n\
         \"kernel/mm/ksm/pages_to_scan\" = \"100%\"\n",
    );
    let r = p.check(&["s"]);
    assert_eq!(r.code, 1, "{r:?}");
    insta::assert_snapshot!("bad_keys", r.stderr);
    assert!(p.tree().keys().all(|k| k == "etc"), "{:?}", p.tree());

    p.file(
        "roles/a.toml",
        "[sysfs]\n\"block/nvme*/queue/scheduler\" = \"mq-deadline\"\n",
    );
    p.file(
        "roles/b.toml",
        "include = [\"a\"]\n[sysfs]\n\"block/nvme0n1/queue/scheduler\" = \"none\"\n\"block/nvme1n1/queue/scheduler\" = \"mq-deadline\"\n",
    );
    let r = p.check(&["b"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.starts_with(
            "error: roles/b.toml:3:1: conflict: sysfs 'block/nvme0n1/queue/scheduler' = none and 'block/nvme*/queue/scheduler' = mq-deadline (roles/a.toml:2:1) can name the same attribute with different values; each run would undo the other\n"
        ),
        "{r:?}"
    );
    assert_eq!(r.stderr.matches("error:").count(), 1, "{r:?}");
}

#[test]
fn two_globs_that_can_name_one_attribute_with_different_values_are_a_conflict_at_load() {
    let p = support::Project::new();
    // Neither glob matches the other as text, yet both name block/sda/queue/read_ahead_kb.
    p.file(
        "roles/s.toml",
        "[sysfs]\n\"block/sd*/queue/read_ahead_kb\" = 128\n\"block/*a/queue/read_ahead_kb\" = 256\n\
         \"block/*/queue/scheduler\" = \"none\"\n\"block/sd*/queue/scheduler\" = \"none\"\n\
         \"block/nvme*/queue/nr_requests\" = 64\n\"block/sd*/queue/nr_requests\" = 128\n",
    );
    let r = p.check(&["s"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("error:")).collect::<Vec<_>>(),
        ["error: roles/s.toml:2:1: conflict: sysfs 'block/sd*/queue/read_ahead_kb' = 128 and 'block/*a/queue/read_ahead_kb' = 256 (roles/s.toml:3:1) can name the same attribute with different values; each run would undo the other"],
        "{r:?}"
    );
    assert!(p.tree().keys().all(|k| k == "etc"), "{:?}", p.tree());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn under_root_the_boot_files_are_managed_and_the_live_values_are_noted() {
    let p = support::Project::new();
    std::fs::create_dir_all(p.at("/etc/tmpfiles.d")).unwrap();
    std::fs::create_dir_all(p.at("/etc/udev/rules.d")).unwrap();
    p.file("roles/s.toml", ROLE);
    let state = tempfile::tempdir().unwrap();
    let state = state.path().display().to_string();
    let first = p.converge("apply", &["s"], &["--state-dir", &state]);
    assert_eq!(first.code, 2, "{first:?}");
    insta::assert_snapshot!("root_apply", first.stdout);
    let again = p.converge("apply", &["s"], &["--state-dir", &state]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("7 resources: 7 in sync"), "{again:?}");
    let root = p.root().display().to_string();
    let rb = p.run(&["rollback", "--root", &root, "--state-dir", &state]);
    assert_eq!(rb.code, 2, "{rb:?}");
    assert!(!p.at("/etc/tmpfiles.d/00-converge-sysfs.conf").exists());
    assert!(!p.at("/etc/udev/rules.d/90-converge-sysfs.rules").exists());
}

/// Against the machine's own kernel, read only: the value it has now is in sync, another
/// choice is a pending change, and check writes nothing.
#[test]
fn check_reads_the_real_kernels_transparent_hugepages() {
    let path = "/sys/kernel/mm/transparent_hugepage/enabled";
    let Ok(before) = std::fs::read_to_string(path) else {
        eprintln!("no {path} on this kernel: nothing to read");
        return;
    };
    let now = before
        .split_whitespace()
        .find_map(|t| t.strip_prefix('[')?.strip_suffix(']'))
        .expect("a choice list")
        .to_owned();
    let other = ["always", "madvise", "never"]
        .into_iter()
        .find(|c| *c != now)
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("roles")).unwrap();
    let check = |value: &str| {
        let role = format!(
            "[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = {{ value = \"{value}\", persist = false }}\n"
        );
        std::fs::write(src.path().join("roles/t.toml"), role).unwrap();
        support::converge(&[
            "check",
            "--source",
            &src.path().display().to_string(),
            "--role",
            "t",
            "--color",
            "never",
        ])
        .run()
    };
    let same = check(&now);
    assert_eq!(same.code, 0, "{same:?}");
    assert!(same.stdout.contains("1 resource: 1 in sync"), "{same:?}");
    let change = check(other);
    assert_eq!(change.code, 2, "{change:?}");
    assert!(
        change
            .stdout
            .contains(&format!("    value: {now} → {other}\n")),
        "{change:?}"
    );
    assert_eq!(std::fs::read_to_string(path).unwrap(), before);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn snapshots_compare_disks_by_role_and_capture_sets_the_other_hosts_disk() {
    // One namespace plays OLD (root disk vda, tuned by hand), then NEW (root disk nvme0n1).
    let snap = "\"$B\" snapshot --path /etc/hostname --color never -o";
    let old_tuning = "echo never > /sys/kernel/mm/transparent_hugepage/enabled; \
         echo mq-deadline > /sys/block/vda/queue/scheduler; echo 1 > /sys/kernel/mm/ksm/run";
    let to_new = "rm /sys/block/vda /sys/dev/block/*; \
         mkdir -p $W/devices/nvme0n1/queue $W/devices/nvme0n1/device; \
         echo '[none] mq-deadline kyber' > $W/devices/nvme0n1/queue/scheduler; \
         echo 128 > $W/devices/nvme0n1/queue/read_ahead_kb; echo 256 > $W/devices/nvme0n1/queue/nr_requests; \
         ln -s $W/devices/nvme0n1 /sys/block/nvme0n1; ln -s /sys/block/nvme0n1 /sys/dev/block/$(mountpoint -d /); \
         echo 'always [madvise] never' > /sys/kernel/mm/transparent_hugepage/enabled; echo 0 > /sys/kernel/mm/ksm/run";
    let compare = "\"$B\" compare $W/old.json $W/new.json --color never | sed \"s|$W/||g\"";
    let capture =
        "\"$B\" capture --from $W/old.json --against $W/new.json --role c -o $S/roles/c.toml \
         && grep -v '^# .*(host\\|^#   - ' $S/roles/c.toml | sed -n '/^\\[sysfs\\]/,$p'";
    let apply_captured = "\"$B\" apply --source \"$S\" --config \"$C\" --role c --color never";
    let s = in_namespace(
        "",
        "vda",
        &[
            old_tuning,
            &format!("{snap} $W/old.json"),
            to_new,
            &format!("{snap} $W/new.json"),
            compare,
            capture,
            apply_captured,
            &format!("{snap} $W/new.json"),
            compare,
        ],
    );
    for i in [1, 3, 5, 6, 7] {
        assert_eq!(s[i].rc, if i == 6 { 2 } else { 0 }, "{:?}", s[i]);
    }
    assert_eq!(
        s[4].out,
        "sysfs\n  ~ block/@root/queue/scheduler\n      value: mq-deadline → none\n      disk: vda → nvme0n1\n\
         \x20 ~ kernel/mm/ksm/run\n      value: 1 → 0\n\
         \x20 ~ kernel/mm/transparent_hugepage/enabled\n      value: never → madvise\n\
         compare: 3 differences between old.json and new.json (sysfs 3)\n"
    );
    insta::assert_snapshot!("captured", s[5].out);
    assert_eq!(
        s[8].out,
        "compare: no differences between old.json and new.json\n"
    );
}
