//! `[sysctl]` against a real kernel: every run happens in a fresh network namespace (so only
//! that namespace's net.* keys can change) and a private mount namespace with a tmpfs over
//! /etc/sysctl.d (so the drop-in never reaches the machine's /etc). Needs root.

mod support;

use std::path::{Path, PathBuf};

use support::{converge, output_text, Namespaces, Step};

/// A source tree with one role, `k`.
fn source(role: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("roles")).unwrap();
    std::fs::write(dir.path().join("roles/k.toml"), role).unwrap();
    dir
}

/// Runs shell `steps` one after another in one fresh network + mount namespace, where
/// /etc/sysctl.d is an empty tmpfs; `$B` is the binary, `$S` the source tree, `$C` the
/// agent config.
fn in_namespaces(src: &Path, setup: &str, steps: &[&str]) -> Vec<Step> {
    Namespaces::net_and_mount()
        .setup(&format!(
            "mount -t tmpfs tmpfs /etc/sysctl.d || exit 99; {setup}"
        ))
        .run(src, steps)
}

/// `$C` is an agent config of the test's own: an apply on the running system takes the state
/// dir's lock and keeps its journal there, which must not be the machine's.
const RUN: &str = "--source \"$S\" --config \"$C\" --role k --color never";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn check_reports_apply_sets_and_persists_then_nothing_changes() {
    let src = source(
        "[sysctl]\n\
         \"net.ipv4.tcp_fin_timeout\" = 15\n\
         \"net.core.somaxconn\" = 1024\n\
         \"net.ipv4.ip_local_port_range\" = \"1024 65000\"\n",
    );
    let steps = in_namespaces(
        src.path(),
        "",
        &[
            "cat /proc/sys/net/core/somaxconn",
            &format!("\"$B\" check {RUN}"),
            "cat /proc/sys/net/core/somaxconn; ls /etc/sysctl.d",
            &format!("\"$B\" apply {RUN}"),
            "cat /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/ipv4/tcp_fin_timeout",
            "cat /etc/sysctl.d/60-converge.conf; stat -c '%a %u %g' /etc/sysctl.d/60-converge.conf",
            &format!("\"$B\" apply {RUN}"),
            &format!("\"$B\" check {RUN}"),
        ],
    );
    let before = steps[0].out.trim();
    assert_ne!(
        before, "1024",
        "the test needs a namespace default other than 1024"
    );
    let check = &steps[1];
    assert_eq!(check.rc, 2, "{check:?}");
    insta::assert_snapshot!(
        "fresh_check",
        check.out.replace(&format!(": {before} →"), ": DEFAULT →")
    );
    assert!(
        check.out.contains(&format!(
            "~ update sysctl:net.core.somaxconn  (role k)\n    value: {before} → 1024\n"
        )),
        "{check:?}"
    );
    assert!(check
        .out
        .contains("+ create file:/etc/sysctl.d/60-converge.conf"));
    assert!(
        check.out.contains("+net.core.somaxconn = 1024\n"),
        "{check:?}"
    );
    assert_eq!(steps[2].out, format!("{before}\n"), "check must not write");

    let apply = &steps[3];
    assert_eq!(apply.rc, 2, "{apply:?}");
    // Apply reports exactly what check printed, under its own summary.
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.contains(" resources: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&apply.out), body(&check.out));
    assert_eq!(steps[4].out, "1024\n1024\t65000\n15\n");
    assert_eq!(
        steps[5].out,
        "# Managed by converge from the roles' [sysctl] tables; written whole, local edits are lost.\n\
         # Files sorting after this one in sysctl.d, and /etc/sysctl.conf, override it at boot.\n\
         net.core.somaxconn = 1024\n\
         net.ipv4.ip_local_port_range = 1024 65000\n\
         net.ipv4.tcp_fin_timeout = 15\n\
         644 0 0\n"
    );
    // The kernel reads the range back tab-separated; tokens compare equal, so no flapping.
    for again in &steps[6..] {
        assert_eq!(again.rc, 0, "{again:?}");
        assert!(again.out.contains("4 resources: 4 in sync"), "{again:?}");
    }
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_later_file_setting_a_managed_key_is_warned_about() {
    let src = source("[sysctl]\n\"net.core.somaxconn\" = 1024\n");
    let steps = in_namespaces(
        src.path(),
        "echo 'net.core.somaxconn = 77' > /etc/sysctl.d/99-local.conf; \
         echo 'net.core.somaxconn = 5' > /etc/sysctl.d/10-early.conf",
        &[
            &format!("echo \"default=$(cat /proc/sys/net/core/somaxconn)\"; \"$B\" check {RUN}"),
            &format!("\"$B\" apply {RUN} -q"),
            &format!("\"$B\" apply {RUN}"),
        ],
    );
    assert_eq!(steps[0].rc, 2, "{:?}", steps[0]);
    let (default, check) = steps[0].out.split_once('\n').unwrap();
    let default = default.trim_start_matches("default=");
    insta::assert_snapshot!(
        "override_check",
        check.replace(&format!(": {default} →"), ": DEFAULT →")
    );
    assert!(
        steps[0].out.contains(
            "    warning: /etc/sysctl.d/99-local.conf sets net.core.somaxconn = 77 later at boot, overriding this file\n"
        ),
        "{:?}",
        steps[0]
    );
    assert!(!steps[0].out.contains("10-early"), "{:?}", steps[0]);
    assert_eq!(steps[1].rc, 2, "{:?}", steps[1]);
    // In sync now, but the override still matters at boot: a warning on every run.
    assert_eq!(steps[2].rc, 0, "{:?}", steps[2]);
    assert!(
        steps[2]
            .out
            .contains("WARN /etc/sysctl.d/99-local.conf sets net.core.somaxconn = 77"),
        "{:?}",
        steps[2]
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn keys_missing_in_this_kernel_or_namespace_fail_clearly() {
    // netdev_max_backlog is global: a child network namespace has no file for it.
    let src =
        source("[sysctl]\n\"net.core.no_such_key\" = 1\n\"net.core.netdev_max_backlog\" = 5000\n");
    let steps = in_namespaces(
        src.path(),
        "",
        &[
            &format!("\"$B\" check {RUN}"),
            &format!("\"$B\" apply {RUN}"),
            "ls /etc/sysctl.d",
        ],
    );
    for s in &steps[..2] {
        assert_eq!(s.rc, 4, "{s:?}");
        assert!(
            s.out.contains(
                "sysctl key 'net.core.no_such_key' does not exist in this kernel or namespace (no /proc/sys/net/core/no_such_key)"
            ),
            "{s:?}"
        );
        assert!(
            s.out
                .contains("sysctl key 'net.core.netdev_max_backlog' does not exist"),
            "{s:?}"
        );
        assert!(
            s.out
                .contains("skipped: sysctl:net.core.netdev_max_backlog did not converge")
                || s.out
                    .contains("skipped: sysctl:net.core.no_such_key did not converge"),
            "{s:?}"
        );
    }
    assert_eq!(steps[2].out, "", "nothing persisted for keys that failed");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_key_read_only_in_the_namespace_fails_on_apply_and_is_not_persisted() {
    let src = source("[sysctl]\n\"net.core.rmem_max\" = 123456\n");
    let steps = in_namespaces(
        src.path(),
        "",
        &[
            &format!("\"$B\" check {RUN}"),
            &format!("\"$B\" apply {RUN}"),
            "ls /etc/sysctl.d",
        ],
    );
    assert_eq!(steps[0].rc, 2, "{:?}", steps[0]);
    assert!(steps[0].out.contains("~ update sysctl:net.core.rmem_max"));
    let apply = &steps[1];
    assert_eq!(apply.rc, 4, "{apply:?}");
    assert!(
        apply.out.contains("! sysctl:net.core.rmem_max  (role k)\n    sysctl key 'net.core.rmem_max': cannot set '123456': "),
        "{apply:?}"
    );
    assert!(apply.out.contains("read-only"), "{apply:?}");
    assert_eq!(steps[2].out, "");
}

#[test]
fn write_only_trigger_keys_are_refused_with_their_location() {
    // A tree root as well: even if the refusal regressed, nothing live could be written.
    let src = source("# tuning\n[sysctl]\n\"net.core.somaxconn\" = 1024\n\"vm.drop_caches\" = 3\n");
    let root = tempfile::tempdir().unwrap();
    // Exit 1 prints nothing on stdout: the text is stderr alone.
    let (code, err) = support::tools::converge_tree("check", "k", src.path(), root.path(), &[]);
    assert_eq!(code, 1, "{err}");
    insta::assert_snapshot!("trigger_refused", err);
    assert!(
        err.contains(
            "roles/k.toml:4:1: sysctl key 'vm.drop_caches' is a write-only trigger, not a setting"
        ),
        "{err}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn under_a_root_only_the_drop_in_is_managed_and_check_says_so() {
    let src = source("[sysctl]\n\"net.core.somaxconn\" = 1024\n");
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/sysctl.d")).unwrap();
    let r = root.path().display().to_string();
    let steps = in_namespaces(
        src.path(),
        "",
        &[
            "cat /proc/sys/net/core/somaxconn",
            &format!("\"$B\" check {RUN} --root {r}"),
            &format!("\"$B\" apply {RUN} --root {r}; cat /proc/sys/net/core/somaxconn"),
        ],
    );
    assert_eq!(steps[1].rc, 2, "{:?}", steps[1]);
    assert!(
        steps[1].out.contains(
            "    live values: not managed under --root; this file sets them at next boot\n"
        ),
        "{:?}",
        steps[1]
    );
    assert!(
        steps[1]
            .out
            .contains("2 resources: 1 in sync, 1 would change"),
        "{:?}",
        steps[1]
    );
    assert!(steps[2].out.contains("1 changed"), "{:?}", steps[2]);
    assert!(
        steps[2].out.ends_with(&steps[0].out),
        "live value untouched: {:?}",
        steps[2]
    );
    let file: PathBuf = root.path().join("etc/sysctl.d/60-converge.conf");
    assert!(std::fs::read_to_string(file)
        .unwrap()
        .ends_with("\nnet.core.somaxconn = 1024\n"));
}

#[test]
fn two_roles_may_agree_on_a_key_but_not_disagree() {
    let src = source("include = [\"a\", \"b\"]\n");
    let roles = src.path().join("roles");
    std::fs::write(
        roles.join("a.toml"),
        "[sysctl]\n\"net.core.somaxconn\" = 1024\n",
    )
    .unwrap();
    std::fs::write(
        roles.join("b.toml"),
        "[sysctl]\n\"net.core.somaxconn\" = 1024\n",
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/sysctl.d")).unwrap();
    let run = || {
        converge(&["check", "--color", "never", "--role", "k", "--source"])
            .arg(src.path())
            .arg("--root")
            .arg(root.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(role a, b)"), "{text}");
    assert_eq!(
        text.matches("+net.core.somaxconn = 1024").count(),
        1,
        "{text}"
    );

    std::fs::write(
        roles.join("b.toml"),
        "[sysctl]\n\"net.core.somaxconn\" = 2048\n",
    )
    .unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("roles/b.toml:2:1: conflict: sysctl:net.core.somaxconn is managed by role 'a' (roles/a.toml:2:1) and by role 'b'"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn persist_false_sets_the_live_value_and_leaves_it_out_of_the_drop_in() {
    let src = source(
        "[sysctl]\n\
         \"net.ipv4.tcp_fin_timeout\" = { value = 17, persist = false }\n\
         \"net.ipv4.tcp_syn_retries\" = 4\n",
    );
    let steps = in_namespaces(
        src.path(),
        "",
        &[
            &format!("\"$B\" apply {RUN}"),
            "cat /proc/sys/net/ipv4/tcp_fin_timeout /proc/sys/net/ipv4/tcp_syn_retries; grep -c . /etc/sysctl.d/60-converge.conf; grep -c fin_timeout /etc/sysctl.d/60-converge.conf",
            &format!("\"$B\" check {RUN}"),
        ],
    );
    assert_eq!(steps[0].rc, 2, "{:?}", steps[0]);
    // Two header lines and the persisted key; the live-only key is not there.
    assert_eq!(steps[1].out, "17\n4\n3\n0\n");
    assert_eq!(steps[2].rc, 0, "{:?}", steps[2]);

    // Only live-only keys: no drop-in is planned at all.
    let src = source("[sysctl]\n\"net.ipv4.tcp_fin_timeout\" = { value = 17, persist = false }\n");
    let steps = in_namespaces(
        src.path(),
        "",
        &[&format!("\"$B\" apply {RUN}"), "ls /etc/sysctl.d | wc -l"],
    );
    assert_eq!(steps[0].rc, 2, "{:?}", steps[0]);
    assert!(
        steps[0].out.contains("1 resources: 0 in sync, 1 changed")
            || steps[0].out.contains("1 resource: 0 in sync, 1 changed"),
        "{:?}",
        steps[0]
    );
    assert_eq!(steps[1].out, "0\n");

    let src = source("[sysctl]\n\"net.ipv4.tcp_fin_timeout\" = { value = 17, persits = false }\n");
    let steps = in_namespaces(src.path(), "", &[&format!("\"$B\" check {RUN}")]);
    assert_eq!(steps[0].rc, 1, "{:?}", steps[0]);
    assert!(steps[0].out.contains("roles/k.toml:2:"), "{:?}", steps[0]);
    assert!(
        steps[0]
            .out
            .contains("unknown field `persits`, expected `value` or `persist`"),
        "{:?}",
        steps[0]
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_failing_health_check_puts_back_live_values_and_the_drop_in() {
    let src = source(
        "[sysctl]\n\
         \"net.core.somaxconn\" = 1024\n\
         \"net.ipv4.tcp_fin_timeout\" = 15\n\n\
         [[health]]\n\
         name = \"backlog\"\n\
         command = \"test $(cat /proc/sys/net/core/somaxconn) -lt 1000\"\n\
         retries = 0\n",
    );
    let steps = in_namespaces(
        src.path(),
        // As an earlier run left it: a drop-in and the live value it set.
        "echo 'net.core.somaxconn = 999' > /etc/sysctl.d/60-converge.conf; \
         echo 999 > /proc/sys/net/core/somaxconn",
        &[
            "cat /proc/sys/net/ipv4/tcp_fin_timeout",
            &format!("\"$B\" apply {RUN}"),
            "cat /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/tcp_fin_timeout /etc/sysctl.d/60-converge.conf",
        ],
    );
    let fin_before = steps[0].out.trim();
    assert_ne!(
        fin_before, "15",
        "the test needs a namespace default other than 15"
    );
    let apply = &steps[1];
    assert_eq!(apply.rc, 4, "{apply:?}");
    for line in [
        "! health:backlog failed after 1 attempt: `test $(cat /proc/sys/net/core/somaxconn) -lt 1000` exits 0\n",
        "    restored sysctl:net.ipv4.tcp_fin_timeout\n",
        "    restored sysctl:net.core.somaxconn\n",
        "    restored file:/etc/sysctl.d/60-converge.conf\n",
        "♥ health:backlog passed: `test $(cat /proc/sys/net/core/somaxconn) -lt 1000` exits 0\n",
    ] {
        assert!(apply.out.contains(line), "missing {line:?} in {apply:?}");
    }
    assert_eq!(
        steps[2].out,
        format!("999\n{fin_before}\nnet.core.somaxconn = 999\n")
    );
}
