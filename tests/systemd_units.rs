//! The shipped systemd service and timer on a real systemd: the one-shot run succeeds (exit 2
//! "changes made" included), logs go to the journal with their fields, the timer is scheduled.
//! Needs root and `scripts/test-deps`.

mod support;

use std::fs;
use std::path::Path;

use support::tools::assert_success;
use support::*;

/// The binary as /usr/bin/converge and the shipped units in /etc/systemd/system.
fn install_shipped_units(ct: &Container) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    ct.exec_ok(&["install", "-m", "0755", ct.bin(), "/usr/bin/converge"]);
    for unit in ["converge.service", "converge.timer"] {
        let shared = ct.share(&repo.join("packaging/systemd").join(unit));
        ct.exec_ok(&["cp", &shared, &format!("/etc/systemd/system/{unit}")]);
    }
}

/// Publishes a bundle holding role `name` into the share and points agent.toml at it.
fn publish_role(ct: &Container, name: &str, role: &str) {
    let src = ct.share_dir().join("src");
    fs::create_dir_all(src.join("roles")).unwrap();
    fs::write(src.join(format!("roles/{name}.toml")), role).unwrap();
    ct.publish(&src);
    fs::create_dir_all(ct.root().join("etc/converge")).unwrap();
    fs::write(
        ct.root().join("etc/converge/agent.toml"),
        format!("source = \"file:///mnt/share/out\"\nroles = [\"{name}\"]\n"),
    )
    .unwrap();
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_shipped_service_and_timer_run_converge_and_log_to_the_journal() {
    let ct = Container::boot("units");
    install_shipped_units(&ct);
    let verify = ct.exec(&[
        "systemd-analyze",
        "verify",
        "--man=no",
        "/etc/systemd/system/converge.service",
        "/etc/systemd/system/converge.timer",
    ]);
    assert_success("systemd-analyze verify", &verify);

    // A bundle with one file, published on the host and read through the share.
    publish_role(
        &ct,
        "marker",
        "[[file]]\npath = \"/etc/converge-marker\"\ncontent = \"from the timer unit\\n\"\n",
    );
    ct.exec_ok(&["systemctl", "daemon-reload"]);
    // Type=oneshot: start returns when the run is over; exit 2 (changes made) is a success.
    ct.exec_ok(&["systemctl", "start", "converge.service"]);
    assert_eq!(
        ct.exec_ok(&[
            "systemctl",
            "show",
            "-p",
            "Result",
            "--value",
            "converge.service"
        ])
        .trim(),
        "success"
    );
    assert_eq!(
        ct.exec_ok(&[
            "systemctl",
            "show",
            "-p",
            "LimitNOFILESoft,LimitNOFILE",
            "converge.service"
        ]),
        "LimitNOFILE=524288\nLimitNOFILESoft=4096\n"
    );
    assert_eq!(
        fs::read_to_string(ct.root().join("etc/converge-marker")).unwrap(),
        "from the timer unit\n"
    );
    let record = fs::read_to_string(ct.root().join("var/lib/converge/last-run.json")).unwrap();
    assert!(record.contains("\"exit_code\": 2"), "{record}");

    // Logs reached the journal natively, with converge's own identifier and fields.
    ct.exec_ok(&["journalctl", "--sync"]);
    let journal = ct.exec_ok(&["journalctl", "-t", "converge", "-o", "json", "--no-pager"]);
    assert!(
        !journal.trim().is_empty(),
        "no journal entries from converge"
    );
    // With RUST_LOG=info, each changed resource is a structured entry whose message names it
    // (tracing-journald prefixes custom fields with F_).
    let dropin = ct.root().join("etc/systemd/system/converge.service.d");
    fs::create_dir_all(&dropin).unwrap();
    fs::write(
        dropin.join("verbose.conf"),
        "[Service]\nEnvironment=RUST_LOG=info\n",
    )
    .unwrap();
    ct.exec_ok(&["systemctl", "daemon-reload"]);
    fs::write(ct.root().join("etc/converge-marker"), "drifted\n").unwrap();
    ct.exec_ok(&["systemctl", "start", "converge.service"]);
    ct.exec_ok(&["journalctl", "--sync"]);
    let journal = ct.exec_ok(&["journalctl", "-t", "converge", "-o", "json", "--no-pager"]);
    let changed = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| {
            e["F_RESOURCE"] == "file:/etc/converge-marker"
                && e["MESSAGE"] == "changed file:/etc/converge-marker"
        });
    assert!(
        changed.is_some(),
        "no structured 'changed' entry:\n{journal}"
    );

    // The timer is scheduled.
    ct.exec_ok(&["systemctl", "enable", "--now", "converge.timer"]);
    let timers = ct.exec_ok(&["systemctl", "list-timers", "--all", "--no-pager"]);
    assert!(timers.contains("converge.timer"), "{timers}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn converge_never_restarts_its_own_unit_and_the_shipped_unit_survives_quick_restarts() {
    let ct = Container::boot("selfrestart");
    install_shipped_units(&ct);
    // A role that manages a drop-in of converge's own unit and notifies it, as a role that
    // tunes the agent would.
    publish_role(
        &ct,
        "agent",
        "[[file]]\npath = \"/etc/systemd/system/converge.service.d/50-nice.conf\"\ncontent = \"[Service]\\nNice=5\\n\"\nnotify = [\"service:converge\"]\n\n[[directory]]\npath = \"/etc/systemd/system/converge.service.d\"\n\n[[service]]\nname = \"converge\"\n",
    );
    ct.exec_ok(&["systemctl", "daemon-reload"]);
    ct.exec_ok(&["systemctl", "start", "converge.service"]);
    let show = |prop: &str| {
        ct.exec_ok(&[
            "systemctl",
            "show",
            "-p",
            prop,
            "--value",
            "converge.service",
        ])
        .trim()
        .to_owned()
    };
    assert_eq!(show("Result"), "success");
    // The run that wrote the drop-in finished (it was not killed by its own restart), and
    // says why it did not restart.
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(ct.root().join("var/lib/converge/last-run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["exit_code"], 2, "{record}");
    let n = &record["report"]["notifications"][0];
    assert_eq!(n["service"], "service:converge", "{record}");
    assert_eq!(n["status"], "not_needed", "{record}");
    assert!(
        n["note"]
            .as_str()
            .unwrap()
            .starts_with("deferred: converge.service runs this converge"),
        "{record}"
    );
    assert!(
        !ct.root()
            .join("var/lib/converge/pending-notify.json")
            .exists(),
        "the request must not repeat at the next start"
    );
    assert_eq!(show("NRestarts"), "0");

    // Started again and again (an operator, a timer and a package hook in a row), the
    // shipped unit never hits a start limit.
    for _ in 0..8 {
        ct.exec_ok(&["systemctl", "start", "converge.service"]);
    }
    assert_eq!(show("Result"), "success");
    assert_eq!(show("StartLimitIntervalUSec"), "0");
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(ct.root().join("var/lib/converge/last-run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["exit_code"], 0, "{record}");
}
