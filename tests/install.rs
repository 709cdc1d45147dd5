//! The Debian package, end to end, as an operator meets it: built with cargo-deb, installed
//! with dpkg into a booted Debian, `converge bootstrap` against a signed bundle of the shipped
//! roles served by nginx, an upgrade while a run is in progress, and a cloud instance
//! classified by its tag. One container boot per scenario. Needs root and `scripts/test-deps`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::tools::assert_success;
use support::*;

const V1: &str = concat!(env!("CARGO_PKG_VERSION"), "-1");
const V2: &str = concat!(env!("CARGO_PKG_VERSION"), "-2");

/// The package at two versions, built once per test binary from the binary under test.
fn debs() -> &'static Path {
    static DEBS: OnceLock<PathBuf> = OnceLock::new();
    DEBS.get_or_init(|| {
        sweep_dead_runs();
        let dir = std::env::temp_dir().join(format!("{DEBS_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // cargo-deb packages target/release/converge; stage the test binary there, in a
        // target dir of its own, so the suite builds no release binary.
        let staged = dir.join("target/release");
        std::fs::create_dir_all(&staged).unwrap();
        copy_file(Path::new(BIN), &staged.join("converge"));
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for version in [V1, V2] {
            let revision = version.rsplit_once('-').unwrap().1;
            let out = Command::new(repo.join("packaging/deb/build"))
                .args(["--no-build", "--fast", "--deb-revision", revision])
                .arg("--output")
                .arg(dir.join(format!("converge_{version}.deb")))
                .env("CARGO_TARGET_DIR", dir.join("target"))
                .output()
                .expect("packaging/deb/build (needs cargo-deb: scripts/test-deps)");
            assert_success("packaging/deb/build", &out);
        }
        // Only the packages are needed from here on.
        std::fs::remove_dir_all(dir.join("target")).unwrap();
        dir
    })
}

/// The packages of one test process live in the temp dir until the next run sweeps them:
/// statics are never dropped.
const DEBS_PREFIX: &str = "converge-test-debs-";

fn sweep_dead_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(DEBS_PREFIX) {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A signed bundle of the shipped roles (plus `extra` files), served by nginx inside the
/// container at `/bundle/` (beside whatever else is in the share dir); returns the server's
/// base URL and the trusted key's path, both as seen inside.
fn serve_bundle(ct: &Container, extra: &[(&str, &str)]) -> (String, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = ct.share_dir().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for dir in ["roles", "templates", "files"] {
        let out = Command::new("cp")
            .arg("-r")
            .arg(repo.join(dir))
            .arg(src.join(dir))
            .output()
            .unwrap();
        assert_success("cp -r", &out);
    }
    for (rel, text) in extra {
        std::fs::write(src.join(rel), text).unwrap();
    }
    let keys = ct.share_dir().join("keys");
    let out = converge(&["keygen"]).arg(&keys).output().unwrap();
    assert_success("keygen", &out);
    let out = converge(&["publish"])
        .arg(&src)
        .arg(ct.share_dir().join("bundle"))
        .arg("--key")
        .arg(keys.join("converge.key"))
        .output()
        .unwrap();
    assert_success("publish", &out);
    let url = ct.serve_http("/mnt/share", 8080);
    (url, "/mnt/share/keys/converge.pub".into())
}

/// Boots a container with the package (at `V1`) installed with dpkg.
fn boot_with_package(name: &str) -> Container {
    let ct = Container::boot(name);
    let deb = ct.share(&debs().join(format!("converge_{V1}.deb")));
    ct.exec_ok(&["dpkg", "-i", &deb]);
    ct
}

/// The timer is enabled and scheduled.
fn assert_timer_on(ct: &Container) {
    let state = ct.exec(&["systemctl", "is-enabled", "converge.timer"]);
    let active = ct.exec(&["systemctl", "is-active", "converge.timer"]);
    assert_eq!(
        (text(&state), text(&active)),
        ("enabled".into(), "active".into())
    );
}

/// Every /usr/share/doc path that /etc/converge/agent.toml points its reader to is a file
/// the package installed.
fn assert_docs_shipped(ct: &Container, which: &str) {
    let config = ct.exec_ok(&["cat", "/etc/converge/agent.toml"]);
    let docs: Vec<&str> = config
        .split_whitespace()
        .filter_map(|w| w.find("/usr/share/doc/").map(|at| &w[at..]))
        .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric()))
        .collect();
    assert!(
        !docs.is_empty(),
        "{which} names no documentation:\n{config}"
    );
    for doc in docs {
        assert!(
            ct.exec(&["test", "-f", doc]).status.success(),
            "{which} points to {doc}, which the package does not ship"
        );
    }
}

/// What the installed package holds: docs and man pages gzipped, a Debian changelog, a
/// stripped binary, no conffile (the agent config is created by postinst from the shipped
/// example, so that bootstrap can rewrite it without dpkg ever asking about it).
fn assert_package_contents(ct: &Container) {
    let files = ct.exec_ok(&["dpkg", "-L", "converge"]);
    for shipped in [
        "/usr/bin/converge",
        "/usr/share/converge/agent.toml.example",
        "/usr/share/converge/prometheus/converge.rules.yml",
        "/usr/share/converge/prometheus/converge.rules.test.yml",
        "/usr/share/man/man1/converge.1.gz",
        "/usr/share/man/man1/converge-bootstrap.1.gz",
        "/usr/share/bash-completion/completions/converge",
        "/usr/share/zsh/vendor-completions/_converge",
        "/usr/share/fish/vendor_completions.d/converge.fish",
        "/usr/share/doc/converge/copyright",
        "/usr/share/doc/converge/README.md.gz",
        "/usr/share/doc/converge/changelog.Debian.gz",
    ] {
        assert!(
            files.lines().any(|l| l == shipped),
            "{shipped} not in:\n{files}"
        );
    }
    for unwanted in [
        "/etc/converge/agent.toml",
        "/usr/share/man/man1/converge.1",
        "/usr/share/doc/converge/changelog.gz",
    ] {
        assert!(
            !files.lines().any(|l| l == unwanted),
            "{unwanted} in:\n{files}"
        );
    }
    assert_eq!(
        ct.exec_ok(&["dpkg-query", "-W", "-f", "${Conffiles}", "converge"]),
        ""
    );
    let changelog = ct.exec_ok(&[
        "sh",
        "-c",
        "zcat /usr/share/doc/converge/changelog.Debian.gz",
    ]);
    assert!(
        changelog.starts_with(&format!("converge ({}-1) ", env!("CARGO_PKG_VERSION"))),
        "{changelog}"
    );
    ct.exec_ok(&[
        "sh",
        "-c",
        "zcat /usr/share/man/man1/converge.1.gz | grep -q '^.TH'",
    ]);
    let sections = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(ct.root().join("usr/bin/converge"))
        .output()
        .expect("readelf");
    assert_success("readelf -S", &sections);
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(
        !sections.contains(".debug_info") && !sections.contains(".debug_line"),
        "the packaged binary has debug info:\n{sections}"
    );
    // postinst created the config from the example, readable by root only.
    assert_eq!(
        ct.exec_ok(&["stat", "-c", "%a %U", "/etc/converge/agent.toml"])
            .trim(),
        "600 root"
    );
    assert_eq!(
        ct.exec_ok(&["cat", "/etc/converge/agent.toml"]),
        ct.exec_ok(&["cat", "/usr/share/converge/agent.toml.example"])
    );
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn last_run(ct: &Container) -> serde_json::Value {
    let raw = ct.exec_ok(&["cat", "/var/lib/converge/last-run.json"]);
    serde_json::from_str(&raw).unwrap()
}

fn wait_until(ct: &Container, what: &str, script: &str) {
    support::wait_until(
        &format!("in {}: {what} ({script})", ct.name()),
        Duration::from_secs(30),
        || ct.sh(script).status.success(),
    );
}

/// The gate role: its command runs only while /run/gate exists, and holds the run until
/// the file is removed, so a test can have a run in progress for as long as it needs.
const GATE_ROLE: &str = r#"[[exec]]
name = "gate"
command = "touch /run/gate-entered; while [ -e /run/gate ]; do sleep 0.1; done"
onlyif = "test -e /run/gate"
timeout = "5m"
"#;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_package_bootstraps_a_booted_host_and_upgrades_without_interrupting_a_run() {
    let ct = boot_with_package("deb-bootstrap");

    // Installing starts nothing.
    assert_eq!(
        text(&ct.exec(&["systemctl", "is-enabled", "converge.timer"])),
        "disabled"
    );
    assert_eq!(
        text(&ct.exec(&[
            "systemctl",
            "is-active",
            "converge.timer",
            "converge.service"
        ])),
        "inactive\ninactive"
    );
    assert!(!ct.root().join("var/lib/converge").exists());
    let verify = ct.exec(&[
        "systemd-analyze",
        "verify",
        "--man=no",
        "/usr/lib/systemd/system/converge.service",
        "/usr/lib/systemd/system/converge.timer",
    ]);
    assert_success("systemd-analyze verify", &verify);
    assert_docs_shipped(&ct, "the packaged agent.toml");
    assert_package_contents(&ct);
    ct.exec_ok(&[
        "bash",
        "-c",
        "source /usr/share/bash-completion/completions/converge && complete -p converge",
    ]);

    let (base, key) = serve_bundle(&ct, &[("roles/gate.toml", GATE_ROLE)]);
    let url = format!("{base}bundle/");
    let bootstrap = [
        "converge",
        "bootstrap",
        "--source",
        &url,
        "--role",
        "base",
        "--role",
        "gate",
        "--key",
        &key,
    ];
    let first = ct.exec(&bootstrap);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let stdout = text(&first);
    let marks: Vec<&str> = stdout.lines().take(5).map(|l| &l[..2]).collect();
    assert_eq!(marks, ["+ "; 5], "{stdout}");
    assert!(
        stdout.contains(&format!(
            "bootstrap: done; this host now converges to {url} every 30 minutes"
        )),
        "{stdout}"
    );
    // The shipped base role converged: files, live and persisted sysctls; the timer runs.
    assert!(ct
        .exec_ok(&["cat", "/etc/motd"])
        .contains("managed by converge"));
    assert_eq!(
        ct.exec_ok(&["sysctl", "-n", "net.core.somaxconn"]).trim(),
        "4096"
    );
    assert!(ct
        .exec_ok(&["cat", "/etc/sysctl.d/60-converge.conf"])
        .contains("net.core.somaxconn = 4096\n"));
    assert_timer_on(&ct);
    assert_eq!(last_run(&ct)["exit_code"], 2);

    // A second bootstrap is a no-op and says so.
    let second = ct.exec(&bootstrap);
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    let stdout = text(&second);
    assert!(
        stdout.lines().take(5).all(|l| l.starts_with("= ")),
        "{stdout}"
    );
    assert!(stdout.contains("bootstrap: nothing to change"), "{stdout}");
    assert_docs_shipped(&ct, "the agent.toml bootstrap wrote");

    // An upgrade while a run is in progress: the run carries on, the admin's config stays.
    ct.exec_ok(&[
        "sh",
        "-c",
        "echo '# kept by the admin' >> /etc/converge/agent.toml",
    ]);
    let config = ct.exec_ok(&["cat", "/etc/converge/agent.toml"]);
    ct.exec_ok(&["touch", "/run/gate"]);
    ct.exec_ok(&["systemctl", "start", "--no-block", "converge.service"]);
    wait_until(
        &ct,
        "the run reaching the gate",
        "test -e /run/gate-entered",
    );
    let pid = ct.exec_ok(&[
        "systemctl",
        "show",
        "-p",
        "MainPID",
        "--value",
        "converge.service",
    ]);
    let deb = ct.share(&debs().join(format!("converge_{V2}.deb")));
    ct.exec_ok(&["dpkg", "-i", &deb]);
    assert_eq!(
        ct.exec_ok(&["dpkg-query", "-W", "-f", "${Version}", "converge"]),
        V2
    );
    assert_eq!(
        ct.exec_ok(&[
            "systemctl",
            "show",
            "-p",
            "MainPID",
            "--value",
            "converge.service"
        ]),
        pid,
        "the upgrade restarted the run in progress"
    );
    assert_eq!(
        text(&ct.exec(&["systemctl", "is-active", "converge.service"])),
        "activating"
    );
    assert_eq!(ct.exec_ok(&["cat", "/etc/converge/agent.toml"]), config);
    assert_timer_on(&ct);
    ct.exec_ok(&["rm", "/run/gate"]);
    wait_until(
        &ct,
        "the run finishing",
        "! systemctl is-active --quiet converge.service && [ \"$(systemctl is-active converge.service)\" != activating ]",
    );
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
    let record = last_run(&ct);
    assert_eq!(record["exit_code"], 2, "{record}");
}

/// `version` of the package: `V2` repacked with a changed config template, as a release
/// that edits the shipped template would be.
fn deb_with_changed_template(version: &str) -> PathBuf {
    let dir = debs().join(format!("repack-{version}"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("dpkg-deb")
        .arg("-R")
        .arg(debs().join(format!("converge_{V2}.deb")))
        .arg(&dir)
        .output()
        .unwrap();
    assert_success("dpkg-deb -R", &out);
    let template = [
        "usr/share/converge/agent.toml.example",
        "etc/converge/agent.toml",
    ]
    .iter()
    .map(|rel| dir.join(rel))
    .find(|p| p.exists())
    .expect("a packaged config template");
    let mut text = std::fs::read_to_string(&template).unwrap();
    text.push_str("\n# A setting this release documents.\n#new_setting = true\n");
    std::fs::write(&template, text).unwrap();
    let control = dir.join("DEBIAN/control");
    let fields = std::fs::read_to_string(&control).unwrap().replace(
        &format!("Version: {V2}\n"),
        &format!("Version: {version}\n"),
    );
    std::fs::write(&control, fields).unwrap();
    if dir.join("DEBIAN/md5sums").exists() {
        let out = Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . -path ./DEBIAN -prune -o -type f -printf '%P\\0' | xargs -0 md5sum > DEBIAN/md5sums")
            .arg("sh")
            .arg(&dir)
            .output()
            .unwrap();
        assert_success("md5sums", &out);
    }
    let deb = debs().join(format!("converge_{version}.deb"));
    let out = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&dir)
        .arg(&deb)
        .output()
        .unwrap();
    assert_success("dpkg-deb --build", &out);
    deb
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn an_upgrade_that_changes_the_config_template_keeps_a_bootstrapped_config_without_a_prompt() {
    let ct = boot_with_package("deb-conffile");
    // What bootstrap does to the config: rewrite it with the host's source.
    ct.exec_ok(&[
        "sh",
        "-c",
        "printf 'source = \"https://config.example.com/bundle/\"\\n' > /etc/converge/agent.toml",
    ]);
    let config = ct.exec_ok(&["cat", "/etc/converge/agent.toml"]);
    let v3 = concat!(env!("CARGO_PKG_VERSION"), "-3");
    let deb = ct.share(&deb_with_changed_template(v3));
    // No terminal, as under cloud-init or a fleet's apt runs: a conffile prompt fails here.
    let out = ct.exec(&["sh", "-c", &format!("apt-get install -y {deb} </dev/null")]);
    assert_success("apt-get install -y", &out);
    assert_eq!(
        ct.exec_ok(&["dpkg-query", "-W", "-f", "${Version} ${Status}", "converge"]),
        format!("{v3} install ok installed")
    );
    assert_eq!(ct.exec_ok(&["cat", "/etc/converge/agent.toml"]), config);
    assert!(ct
        .exec_ok(&["cat", "/usr/share/converge/agent.toml.example"])
        .contains("#new_setting = true"));
    assert!(!ct.root().join("etc/converge/agent.toml.dpkg-dist").exists());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn reinstalling_after_a_remove_restores_the_timer_and_purge_removes_keys_and_config() {
    let ct = boot_with_package("deb-remove");
    // The shared rootfs forbids maintainer scripts to start or stop units (it is also used as
    // a plain chroot); a booted host has no such policy.
    ct.exec_ok(&["rm", "/usr/sbin/policy-rc.d"]);
    // A bootstrapped host: its timer on, a trusted key installed.
    ct.exec_ok(&["systemctl", "enable", "--now", "converge.timer"]);
    ct.exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /etc/converge/keys && echo key > /etc/converge/keys/A6835A2538371116.pub",
    ]);
    ct.exec_ok(&["dpkg", "-r", "converge"]);
    assert_ne!(
        text(&ct.exec(&["systemctl", "is-active", "converge.timer"])),
        "active"
    );
    // Remove keeps the configuration, as for every Debian package.
    assert!(ct
        .root()
        .join("etc/converge/keys/A6835A2538371116.pub")
        .exists());
    assert!(ct.root().join("etc/converge/agent.toml").exists());

    let deb = ct.share(&debs().join(format!("converge_{V1}.deb")));
    ct.exec_ok(&["dpkg", "-i", &deb]);
    assert_timer_on(&ct);

    ct.exec_ok(&["dpkg", "-P", "converge"]);
    assert!(
        !ct.root().join("etc/converge").exists(),
        "{}",
        ct.exec_ok(&["find", "/etc/converge"])
    );
    assert_eq!(
        text(&ct.exec(&["systemctl", "is-enabled", "converge.timer"])),
        ""
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_run_missed_while_the_host_was_down_is_caught_up_when_the_timer_starts() {
    let ct = boot_with_package("deb-persistent");
    ct.exec_ok(&["systemctl", "enable", "converge.timer"]);
    start_timer_that_missed_a_run(&ct);
    // The service has no source configured, so it fails; what counts is that it ran.
    wait_until(
        &ct,
        "the missed run",
        "[ \"$(systemctl show -p ExecMainStartTimestampMonotonic --value converge.service)\" != 0 ]",
    );
}

/// The timer last fired two hours ago, and the host was down since: starting it catches
/// the missed run up at once, a run the timer starts.
fn start_timer_that_missed_a_run(ct: &Container) {
    ct.exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /var/lib/systemd/timers && touch -d '2 hours ago' /var/lib/systemd/timers/stamp-converge.timer",
    ]);
    ct.exec_ok(&["systemctl", "start", "converge.timer"]);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_timer_run_waits_the_hosts_offset_inside_the_configured_splay_and_a_run_by_hand_does_not() {
    let ct = boot_with_package("deb-splay");
    ct.exec_ok(&[
        "sh",
        "-c",
        "mkdir -p /srv/src/roles && printf '[[file]]\\npath = \"/etc/splayed\"\\ncontent = \"ran\\\\n\"\\n' > /srv/src/roles/base.toml",
    ]);
    ct.exec_ok(&[
        "sh",
        "-c",
        "printf 'source = \"/srv/src\"\\nroles = [\"base\"]\\ninterval = \"2h\"\\nsplay = \"1h\"\\n' > /etc/converge/agent.toml",
    ]);
    let journal = || {
        ct.exec_ok(&[
            "journalctl",
            "-u",
            "converge.service",
            "--no-pager",
            "-o",
            "cat",
        ])
    };

    // By hand, through the very service the timer starts: at once.
    ct.exec_ok(&["systemctl", "start", "converge.service"]);
    assert_eq!(ct.exec_ok(&["cat", "/etc/splayed"]), "ran\n");
    assert!(!journal().contains("waiting"), "{}", journal());
    ct.exec_ok(&["rm", "/etc/splayed"]);

    // Started by the timer: the run first waits this host's offset inside agent.toml's
    // splay, fixed by its machine id, and holds no lock meanwhile.
    ct.exec_ok(&["systemctl", "enable", "converge.timer"]);
    start_timer_that_missed_a_run(&ct);
    wait_until(
        &ct,
        "the timer's run to wait",
        "journalctl -u converge.service --no-pager -o cat | grep -q 'started by the timer: waiting'",
    );
    let machine_id = ct.exec_ok(&["cat", "/etc/machine-id"]);
    let offset = converge::agent::schedule::offset(
        machine_id.trim(),
        Duration::from_secs(7200),
        Duration::from_secs(3600),
    );
    let shown = humantime::format_duration(Duration::from_millis(offset.as_millis() as u64));
    assert!(
        journal().contains(&format!(
            "started by the timer: waiting {shown} (this host's offset inside the 1h splay) before the run"
        )),
        "{}",
        journal()
    );
    assert_eq!(
        text(&ct.exec(&["systemctl", "is-active", "converge.service"])),
        "activating"
    );
    assert!(!ct.root().join("etc/splayed").exists(), "nothing ran yet");
    let status = ct.exec_ok(&["converge", "status"]);
    assert!(
        status.contains(&format!(
            "next run:  now: a run is in progress (a run the timer starts first waits this host's {shown} splay offset)\n"
        )),
        "{status}"
    );
    let by_hand = ct.exec(&["converge", "apply", "--color", "never"]);
    assert_eq!(by_hand.status.code(), Some(2), "{}", text(&by_hand));
    ct.exec_ok(&["systemctl", "stop", "converge.service"]);
    wait_until(
        &ct,
        "the timer's next time",
        "[ -n \"$(systemctl show -p NextElapseUSecRealtime --value converge.timer)\" ]",
    );
    let status = ct.exec_ok(&["converge", "status"]);
    assert!(
        status.contains(&format!(", then this host's {shown} splay offset\n")),
        "{status}"
    );
}

const INSTANCE_DATA: &str = r#"{
  "v1": {"cloud_name": "aws", "instance_id": "i-0fedcba9876543210", "region": "eu-central-1",
         "availability_zone": "eu-central-1a", "platform": "ec2"},
  "ds": {"meta_data": {"instance-type": "t3.micro", "ami-id": "ami-0123",
                       "tags": {"instance": {"role": "edge"}}}}
}"#;

const NODES: &str = r#"[[node]]
facts = { "cloud.tags.role" = "web" }
roles = ["web"]

[[node]]
facts = { "cloud.tags.role" = "edge" }
roles = ["base"]
"#;

/// The `runcmd` entries of a cloud-config, each a flow sequence on one line.
fn runcmd(user_data: &str) -> Vec<Vec<String>> {
    user_data
        .split("\nruncmd:\n")
        .nth(1)
        .expect("a runcmd section")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- [")?.strip_suffix(']'))
        .map(|items| {
            items
                .split(", ")
                .map(|a| a.trim().trim_matches('"').to_owned())
                .collect()
        })
        .collect()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_shipped_user_data_sets_up_a_cloud_instance_classified_by_its_tag() {
    let ct = Container::boot("deb-cloud");
    ct.exec_ok(&["mkdir", "-p", "/run/cloud-init"]);
    std::fs::write(ct.share_dir().join("instance-data.json"), INSTANCE_DATA).unwrap();
    ct.exec_ok(&[
        "cp",
        "/mnt/share/instance-data.json",
        "/run/cloud-init/instance-data.json",
    ]);
    let (base, _) = serve_bundle(&ct, &[("nodes.toml", NODES)]);
    let pubkey = std::fs::read_to_string(ct.share_dir().join("keys/converge.pub")).unwrap();

    // packaging/cloud-init/user-data.yaml's commands, as cloud-init runs them, with the
    // example server and key replaced by the test's.
    let user_data = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/cloud-init/user-data.yaml"),
    )
    .unwrap();
    let commands = runcmd(&user_data);
    assert_eq!(commands.len(), 3, "{user_data}");
    let example_key = commands[2].last().unwrap().clone();
    let mut out = None;
    for command in commands {
        let command: Vec<String> = command
            .iter()
            .map(|a| {
                a.replace("https://config.example.com/", &base)
                    .replace(&example_key, pubkey.lines().nth(1).unwrap())
            })
            .collect();
        // The package is served where the user data fetches it from.
        if let Some(url) = command
            .iter()
            .find(|a| a.starts_with(&base) && a.ends_with(".deb"))
        {
            let rel = url.strip_prefix(&base).unwrap();
            let served = ct.share_dir().join(rel);
            std::fs::create_dir_all(served.parent().unwrap()).unwrap();
            std::fs::copy(debs().join(format!("converge_{V1}.deb")), served).unwrap();
        }
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let result = ct.exec(&args);
        if args[0] != "converge" {
            assert_success(&command.join(" "), &result);
        }
        out = Some(result);
    }
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out).contains("+ converge run: roles base: "),
        "{}",
        text(&out)
    );
    let config = ct.exec_ok(&["cat", "/etc/converge/agent.toml"]);
    assert!(!config.lines().any(|l| l.starts_with("roles")), "{config}");
    assert_eq!(last_run(&ct)["roles"], serde_json::json!(["base"]));
    assert!(ct
        .exec_ok(&["cat", "/etc/motd"])
        .contains("managed by converge"));
    assert_timer_on(&ct);
    let facts = ct.exec_ok(&["converge", "facts"]);
    assert!(
        facts.contains("facts.cloud.tags.role = \"edge\"\n")
            && facts.contains("facts.cloud.instance_type = \"t3.micro\"\n"),
        "{facts}"
    );
}
