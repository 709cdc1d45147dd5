//! Units beyond services against a real systemd: a `[[timer]]` job that fires, is masked and
//! removed; a socket unit restarted by a notifying file; a path unit that starts its
//! service; the same timer offline under `--root`; and bad values as located errors.
//! The container tests need root and `scripts/test-deps`.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::*;

/// A bound on a hang while waiting for systemd to act, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(30);

/// Asserts the exit code; returns stdout (also echoed, for `--nocapture` readers).
fn expect(out: &Output, want: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(want),
        "unexpected exit code\n{}",
        output_text(out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    text
}

/// What `systemctl VERB UNIT` prints (is-active, is-enabled), trimmed.
fn systemctl(ct: &Container, verb: &str, unit: &str) -> String {
    let out = ct.exec(&["systemctl", verb, unit]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn show(ct: &Container, property: &str, unit: &str) -> String {
    ct.exec_ok(&["systemctl", "show", "-p", property, "--value", unit])
        .trim()
        .to_owned()
}

/// Where the container's runs keep their history, so a run can be rolled back.
const STATE: [&str; 2] = ["--state-dir", "/var/lib/units-test"];

const JOB_SCRIPT: &str = "#!/bin/sh\ndate +%s >> /run/tick.fired\n";

/// The job: its script, and a `[[timer]]` with `keys`.
fn job_role(keys: &str) -> String {
    format!(
        r#"
[[file]]
path = "/usr/local/bin/tick"
mode = "0755"
content = """{JOB_SCRIPT}"""

[[timer]]
name = "tick"
description = "tick job"
command = "/usr/local/bin/tick"
{keys}
"#
    )
}

/// A nightly job with a catch-up, plus `extra` schedule keys.
fn tick_role(extra: &str) -> String {
    job_role(&format!(
        "on_calendar = \"*-*-* 03:00:00\"\npersistent = true\n{extra}"
    ))
}

/// Whether `path` exists inside the container (its /run is its own tmpfs).
fn exists(ct: &Container, path: &str) -> bool {
    ct.exec(&["test", "-e", path]).status.success()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_timer_job_is_written_enabled_started_fires_and_then_is_masked_and_removed() {
    let ct = Container::boot("timer");
    let unit_dir = ct.root().join("etc/systemd/system");
    // systemd may put a timer off by up to its accuracy (1 min by default) to batch
    // wake-ups: the test's timer is exact, so it fires a second after it starts.
    let firing = "on_active = \"1s\"\naccuracy = \"1ms\"";
    ct.write_source(&[("roles/job.toml", &tick_role(firing))]);

    // Check: both unit files and the timer's state, nothing written.
    let out = expect(&ct.converge("check", "job", &STATE), 2);
    assert!(
        out.contains("+ create file:/etc/systemd/system/tick.service"),
        "{out}"
    );
    assert!(
        out.contains("+ create file:/etc/systemd/system/tick.timer"),
        "{out}"
    );
    assert!(out.contains("+OnCalendar=*-*-* 03:00:00"), "{out}");
    assert!(out.contains("+ExecStart=/usr/local/bin/tick"), "{out}");
    assert!(out.contains("~ update service:tick.timer"), "{out}");
    assert!(out.contains("enabled: disabled → enabled"), "{out}");
    assert!(out.contains("state: inactive → running"), "{out}");
    assert!(!unit_dir.join("tick.timer").exists());
    assert_eq!(systemctl(&ct, "is-active", "tick.timer"), "inactive");

    // Apply: written, daemon-reloaded, the timer (not the service) enabled and started.
    let out = expect(&ct.converge("apply", "job", &STATE), 2);
    assert!(out.contains("4 changed"), "{out}");
    assert_eq!(systemctl(&ct, "is-enabled", "tick.timer"), "enabled");
    assert_eq!(systemctl(&ct, "is-active", "tick.timer"), "active");
    assert_eq!(systemctl(&ct, "is-enabled", "tick.service"), "static");
    assert_eq!(
        fs::read_to_string(unit_dir.join("tick.timer")).unwrap(),
        "[Unit]\nDescription=tick job\n\n[Timer]\nOnCalendar=*-*-* 03:00:00\nOnActiveSec=1s\n\
         Persistent=true\nAccuracySec=1ms\n\n[Install]\nWantedBy=timers.target\n"
    );
    // It fires: the job's own effect, a second after the timer started.
    wait_until("the timer ran the job", LIMIT, || {
        exists(&ct, "/run/tick.fired")
    });
    assert_eq!(show(&ct, "Result", "tick.service"), "success");

    // In sync: a second apply changes nothing.
    let out = expect(&ct.converge("apply", "job", &STATE), 0);
    assert!(out.contains("0 changed"), "{out}");

    // A new schedule: the unit diff, and a restart of the timer so it holds.
    ct.write_source(&[("roles/job.toml", &tick_role("on_active = \"1h\""))]);
    let out = expect(&ct.converge("check", "job", &STATE), 2);
    assert!(out.contains("-OnActiveSec=1s"), "{out}");
    assert!(out.contains("+OnActiveSec=1h"), "{out}");
    assert!(
        out.contains(
            "would restart service:tick.timer (notified by file:/etc/systemd/system/tick.timer)"
        ),
        "{out}"
    );
    let before = show(&ct, "ActiveEnterTimestampMonotonic", "tick.timer");
    let out = expect(&ct.converge("apply", "job", &STATE), 2);
    assert!(out.contains("restarted service:tick.timer"), "{out}");
    assert_ne!(
        show(&ct, "ActiveEnterTimestampMonotonic", "tick.timer"),
        before
    );
    expect(&ct.converge("apply", "job", &STATE), 0);

    // Rolled back by hand: the old schedule again, and the timer restarted to hold it.
    let restarted = show(&ct, "ActiveEnterTimestampMonotonic", "tick.timer");
    let out = expect(
        &ct.run_converge(&["rollback", "--color", "never", STATE[0], STATE[1]]),
        2,
    );
    assert!(
        out.contains("rollback: 1 restored, 0 unchanged, 0 failed"),
        "{out}"
    );
    assert!(fs::read_to_string(unit_dir.join("tick.timer"))
        .unwrap()
        .contains("OnActiveSec=1s\n"));
    assert_ne!(
        show(&ct, "ActiveEnterTimestampMonotonic", "tick.timer"),
        restarted
    );
    assert_eq!(systemctl(&ct, "is-active", "tick.timer"), "active");

    // Masked: stopped, the mask where the timer's file was (kept in the backup), the job's
    // service still there to run by hand.
    ct.write_source(&[("roles/job.toml", &job_role("masked = true"))]);
    let check = expect(&ct.converge("check", "job", &STATE), 2);
    assert!(check.contains("enabled: enabled → disabled"), "{check}");
    assert!(check.contains("state: active → stopped"), "{check}");
    assert!(
        check.contains("± replace symlink:/etc/systemd/system/tick.timer"),
        "{check}"
    );
    let apply = expect(&ct.converge("apply", "job", &STATE), 2);
    assert_eq!(
        check
            .replace("check: ", "")
            .replace("would change", "changed"),
        apply.replace("apply: ", ""),
    );
    assert_eq!(systemctl(&ct, "is-enabled", "tick.timer"), "masked");
    assert_eq!(systemctl(&ct, "is-active", "tick.timer"), "inactive");
    assert_eq!(
        fs::read_link(unit_dir.join("tick.timer")).unwrap(),
        Path::new("/dev/null")
    );
    assert!(unit_dir.join("tick.service").is_file());
    let out = expect(&ct.converge("apply", "job", &STATE), 0);
    assert!(out.contains("0 changed"), "{out}");

    // Unmasked and present again, then absent: stopped, disabled, both files gone.
    ct.write_source(&[("roles/job.toml", &tick_role("on_active = \"1h\""))]);
    expect(&ct.converge("apply", "job", &STATE), 2);
    assert_eq!(systemctl(&ct, "is-enabled", "tick.timer"), "enabled");
    assert_eq!(systemctl(&ct, "is-active", "tick.timer"), "active");
    ct.write_source(&[(
        "roles/job.toml",
        "[[timer]]\nname = \"tick\"\nensure = \"absent\"\n",
    )]);
    let out = expect(&ct.converge("apply", "job", &STATE), 2);
    assert!(out.contains("state: active → stopped"), "{out}");
    assert!(!unit_dir.join("tick.timer").exists());
    assert!(!unit_dir.join("tick.service").exists());
    assert!(!unit_dir.join("timers.target.wants/tick.timer").exists());
    assert_eq!(systemctl(&ct, "is-active", "tick.timer"), "inactive");
    let out = expect(&ct.converge("apply", "job", &STATE), 0);
    assert!(out.contains("0 changed"), "{out}");
}

const ECHO_ROLE: &str = r#"
[[file]]
path = "/etc/systemd/system/echo@.service"
content = "[Service]\nExecStart=/bin/cat\nStandardInput=socket\n"

[[file]]
path = "/etc/echo.conf"
template = "echo.conf.hbs"
notify = ["service:echo.socket"]

[[service]]
name = "echo.socket"
enabled = true
state = "running"
unit = { template = "echo.socket.hbs" }
"#;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_socket_unit_is_enabled_started_and_restarted_by_a_file_that_notifies_it() {
    let ct = Container::boot("socket");
    ct.write_source(&[
        ("roles/sock.toml", ECHO_ROLE),
        (
            "templates/echo.socket.hbs",
            "[Socket]\nListenStream=127.0.0.1:{{vars.port}}\nAccept=yes\n\n[Install]\nWantedBy=sockets.target\n",
        ),
        ("templates/echo.conf.hbs", "greeting={{vars.greeting}}\n"),
    ]);
    let vars = |greeting: &str, port: &str| {
        vec![
            "--var".to_owned(),
            format!("greeting={greeting}"),
            "--var".to_owned(),
            format!("port={port}"),
        ]
    };
    let run = |mode: &str, vars: &[String]| {
        let v: Vec<&str> = vars.iter().map(String::as_str).collect();
        ct.converge(mode, "sock", &v)
    };
    let listening = |port: &str| {
        let out = ct.exec_ok(&["ss", "-Htln"]);
        out.contains(&format!("127.0.0.1:{port} "))
    };

    let out = expect(&run("apply", &vars("hi", "7001")), 2);
    assert!(out.contains("~ update service:echo.socket"), "{out}");
    assert_eq!(systemctl(&ct, "is-enabled", "echo.socket"), "enabled");
    assert_eq!(systemctl(&ct, "is-active", "echo.socket"), "active");
    assert!(listening("7001"));
    let out = expect(&run("apply", &vars("hi", "7001")), 0);
    assert!(out.contains("0 changed"), "{out}");

    // The notifying file changes: check announces the restart, apply does it once.
    let started = show(&ct, "ActiveEnterTimestampMonotonic", "echo.socket");
    let out = expect(&run("check", &vars("bye", "7001")), 2);
    assert!(
        out.contains("would restart service:echo.socket (notified by file:/etc/echo.conf)"),
        "{out}"
    );
    assert_eq!(
        show(&ct, "ActiveEnterTimestampMonotonic", "echo.socket"),
        started
    );
    let out = expect(&run("apply", &vars("bye", "7001")), 2);
    assert!(
        out.contains("restarted service:echo.socket (notified by file:/etc/echo.conf)"),
        "{out}"
    );
    assert_ne!(
        show(&ct, "ActiveEnterTimestampMonotonic", "echo.socket"),
        started
    );
    assert_eq!(systemctl(&ct, "is-active", "echo.socket"), "active");

    // Its own unit changes: daemon-reload and a restart, so it listens where it now says.
    expect(&run("apply", &vars("bye", "7002")), 2);
    assert!(listening("7002"));
    assert!(!listening("7001"));
    let out = expect(&run("apply", &vars("bye", "7002")), 0);
    assert!(out.contains("0 changed"), "{out}");
}

const SPOOL_ROLE: &str = r#"
[[directory]]
path = "/srv/spool"

[[service]]
name = "spool"
unit = { content = "[Service]\nType=oneshot\nExecStart=/bin/mv /srv/spool/go /run/spool.done\n" }

[[service]]
name = "spool.path"
enabled = true
state = "running"
after = ["directory:/srv/spool"]
unit = { content = "[Path]\nPathExists=/srv/spool/go\n\n[Install]\nWantedBy=paths.target\n" }
"#;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_path_unit_is_enabled_started_and_starts_its_service_when_the_path_appears() {
    let ct = Container::boot("pathunit");
    ct.write_source(&[("roles/spool.toml", SPOOL_ROLE)]);
    let out = expect(&ct.converge("check", "spool", &[]), 2);
    assert!(out.contains("~ update service:spool.path"), "{out}");
    expect(&ct.converge("apply", "spool", &[]), 2);
    assert_eq!(systemctl(&ct, "is-enabled", "spool.path"), "enabled");
    assert_eq!(systemctl(&ct, "is-active", "spool.path"), "active");
    let out = expect(&ct.converge("apply", "spool", &[]), 0);
    assert!(out.contains("0 changed"), "{out}");

    ct.exec_ok(&["touch", "/srv/spool/go"]);
    wait_until("the path unit started its service", LIMIT, || {
        exists(&ct, "/run/spool.done")
    });
    assert!(!exists(&ct, "/srv/spool/go"));
}

/// A schedule that waits after boot, with a random delay.
const OFFLINE_KEYS: &str = "on_boot = \"15min\"\nrandomized_delay = \"10m\"";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn offline_root_writes_a_timers_units_and_enables_it_with_a_link() {
    let ch = Chroot::new();
    let src = tempfile::tempdir().unwrap();
    write_tree(src.path(), &[("roles/job.toml", &tick_role(OFFLINE_KEYS))]);
    let run = |mode: &str| {
        converge(&[mode, "--color", "never", "--role", "job"])
            .arg("--source")
            .arg(src.path())
            .arg("--root")
            .arg(ch.path())
            .output()
            .unwrap()
    };
    let out = expect(&run("check"), 2);
    assert!(out.contains("enabled: disabled → enabled"), "{out}");
    assert!(!ch.path().join("etc/systemd/system/tick.timer").exists());
    let out = expect(&run("apply"), 2);
    assert!(
        out.contains(r#"note: service:tick.timer: state = "running" is not managed under --root"#),
        "{out}"
    );
    let etc = ch.path().join("etc/systemd/system");
    assert_eq!(
        fs::read_link(etc.join("timers.target.wants/tick.timer")).unwrap(),
        Path::new("/etc/systemd/system/tick.timer")
    );
    assert!(fs::read_to_string(etc.join("tick.timer"))
        .unwrap()
        .contains("OnBootSec=15m\nPersistent=true\nRandomizedDelaySec=10m\n"));
    assert!(etc.join("tick.service").is_file());
    let out = expect(&run("apply"), 0);
    assert!(out.contains("0 changed"), "{out}");

    // A calendar expression systemd cannot parse is refused before anything changes.
    write_tree(
        src.path(),
        &[(
            "roles/job.toml",
            &tick_role(OFFLINE_KEYS).replace("*-*-* 03:00:00", "nightly-ish"),
        )],
    );
    let out = expect(&run("apply"), 4);
    assert!(
        out.contains("Failed to parse calendar specification"),
        "{out}"
    );
    assert!(fs::read_to_string(etc.join("tick.timer"))
        .unwrap()
        .contains("OnCalendar=*-*-* 03:00:00\n"));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_sensitive_timer_keeps_its_command_out_of_every_output_and_its_unit_private() {
    use std::os::unix::fs::PermissionsExt;
    let ch = Chroot::new();
    let src = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let role = |secret: &str, sensitive: bool| {
        job_role(&format!("on_boot = \"15min\"\nsensitive = {sensitive}")).replace(
            "command = \"/usr/local/bin/tick\"",
            &format!("command = \"/usr/local/bin/tick --token={secret}\""),
        )
    };
    let run = |mode: &str, format: &str| {
        converge(&[
            mode, "--color", "never", "--role", "job", "--format", format,
        ])
        .arg("--source")
        .arg(src.path())
        .arg("--root")
        .arg(ch.path())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap()
    };
    // Without `sensitive`, the diff shows the command: what the key is for.
    write_tree(src.path(), &[("roles/job.toml", &role("s3cr3t-0", false))]);
    assert!(expect(&run("check", "human"), 2).contains("--token=s3cr3t-0"));
    for (secret, want) in [("s3cr3t-1", 2), ("s3cr3t-2", 2)] {
        write_tree(src.path(), &[("roles/job.toml", &role(secret, true))]);
        for (mode, format) in [("check", "human"), ("check", "json"), ("apply", "human")] {
            let out = run(mode, format);
            assert_eq!(out.status.code(), Some(want), "{}", output_text(&out));
            let text = output_text(&out);
            assert!(
                !text.contains(secret) && !text.contains("s3cr3t"),
                "{mode} {format}: {text}"
            );
        }
    }
    let unit = ch.path().join("etc/systemd/system/tick.service");
    assert!(fs::read_to_string(&unit)
        .unwrap()
        .contains("ExecStart=/usr/local/bin/tick --token=s3cr3t-2\n"));
    assert_eq!(
        fs::metadata(&unit).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let history = converge(&["history", "--format", "json", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let text = output_text(&history);
    assert!(!text.contains("s3cr3t"), "{text}");
}

#[test]
fn check_leaves_a_unit_that_comes_after_a_pending_change_to_apply_and_writes_nothing() {
    let p = Project::new();
    p.file("roles/job.toml", &tick_role("on_boot = \"15min\""));
    p.root_file("usr/local/bin/other", "")
        .root_file("etc/systemd/system/other.conf", "");
    let before = p.tree();
    let run = p.check(&["job"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    for unit in ["tick.service", "tick.timer"] {
        let note = format!(
            "note: file:/etc/systemd/system/{unit}: validated by apply in its place, after the changes it comes after\n"
        );
        assert!(run.stdout.contains(&note), "{}", run.stdout);
    }
    assert!(
        run.stdout
            .contains("check: 4 resources: 0 in sync, 4 would change, 0 failed"),
        "{}",
        run.stdout
    );
    assert_eq!(p.tree(), before);
}

#[test]
fn bad_timer_and_unit_values_are_located_errors_and_change_nothing() {
    let cases: &[(&str, &str)] = &[
        (
            "[[timer]]\nname = \"a\"\non_active = \"soon\"\ncommand = \"/bin/true\"\n",
            "roles/bad.toml:3:13: timer 'a': invalid on_active 'soon': expected a duration with a unit",
        ),
        (
            "[[timer]]\nname = \"a\"\non_boot = \"1m\"\n",
            "roles/bad.toml:2:8: timer 'a' needs the job: command = \"...\" or service = { content | template | source }",
        ),
        (
            "[[timer]]\nname = \"a\"\ncommand = \"/bin/true\"\n",
            "roles/bad.toml:2:8: timer 'a' needs a schedule: on_calendar, on_boot, on_active or on_unit_active",
        ),
        (
            "[[timer]]\nname = \"a\"\non_boot = \"1m\"\ncommand = \"/bin/true\"\nservice = { content = \"x\" }\n",
            "roles/bad.toml:5:11: timer 'a': command and service exclude each other",
        ),
        (
            "[[timer]]\nname = \"a.service\"\non_boot = \"1m\"\ncommand = \"/bin/true\"\n",
            "roles/bad.toml:2:8: invalid timer name 'a.service'",
        ),
        (
            "[[timer]]\nname = \"a\"\non_boot = \"1m\"\ncommand = \"/bin/true\\nExecStartPost=/bin/false\"\n",
            "roles/bad.toml:4:11: timer 'a': invalid command:",
        ),
        (
            "[[timer]]\nname = \"a\"\nensure = \"absent\"\ncommand = \"/bin/true\"\n",
            "roles/bad.toml:1:1: timer 'a': command only goes with ensure = \"present\"",
        ),
        (
            "[[timer]]\nname = \"a\"\nmasked = true\nstate = \"running\"\n",
            "roles/bad.toml:1:1: timer 'a': masked = true contradicts enabled = true or state = \"running\"",
        ),
        (
            "[[timer]]\nname = \"a\"\nensure = \"absent\"\nsensitive = true\n",
            "roles/bad.toml:1:1: timer 'a': sensitive only goes with ensure = \"present\"",
        ),
        // A name is shown escaped: no terminal control or line of its own in an error.
        (
            "[[service]]\nname = \"x\\u001b[2J\\n[[exec]]\"\n",
            "roles/bad.toml:2:8: invalid service name 'x\\u{1b}[2J\\n[[exec]]': expected a systemd unit name",
        ),
        (
            "[[service]]\nname = \"srv.mount\"\n",
            "roles/bad.toml:2:8: 'srv.mount' is a mount unit; [[service]] manages .service, .timer, .socket and .path units",
        ),
    ];
    for (role, want) in cases {
        let p = Project::new();
        p.file("roles/bad.toml", role);
        let before = p.tree();
        let run = p.apply(&["bad"]);
        assert_eq!(run.code, 1, "{role}\n{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(want),
            "{role}\nwanted {want}\n{}",
            run.stderr
        );
        assert_eq!(p.tree(), before, "{role}");
    }
}
