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

const BIN: &str = env!("CARGO_BIN_EXE_converge");
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
        std::fs::copy(BIN, staged.join("converge")).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for version in [V1, V2] {
            let revision = version.rsplit_once('-').unwrap().1;
            let out = Command::new(repo.join("packaging/deb/build"))
                .args([
                    "--no-build",
                    "--fast",
                    "--strip",
                    "--deb-revision",
                    revision,
                ])
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
    let out = Command::new(BIN).arg("keygen").arg(&keys).output().unwrap();
    assert_success("keygen", &out);
    let out = Command::new(BIN)
        .arg("publish")
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

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn last_run(ct: &Container) -> serde_json::Value {
    let raw = ct.exec_ok(&["cat", "/var/lib/converge/last-run.json"]);
    serde_json::from_str(&raw).unwrap()
}

fn wait_until(ct: &Container, what: &str, script: &str) {
    for _ in 0..1200 {
        if ct.sh(script).status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("in {}: {what} did not happen ({script})", ct.name());
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
    let files = ct.exec_ok(&["dpkg", "-L", "converge"]);
    for shipped in [
        "/usr/bin/converge",
        "/etc/converge/agent.toml",
        "/usr/share/man/man1/converge.1",
        "/usr/share/man/man1/converge-bootstrap.1",
        "/usr/share/bash-completion/completions/converge",
        "/usr/share/zsh/vendor-completions/_converge",
        "/usr/share/fish/vendor_completions.d/converge.fish",
        "/usr/share/doc/converge/copyright",
    ] {
        // Man pages may be gzipped (cargo-deb does unless --fast).
        let found = files
            .lines()
            .any(|l| l == shipped || l.strip_suffix(".gz") == Some(shipped));
        assert!(found, "{shipped} not in:\n{files}");
    }
    assert_eq!(
        ct.exec_ok(&["dpkg-query", "-W", "-f", "${Conffiles}", "converge"])
            .split_whitespace()
            .next(),
        Some("/etc/converge/agent.toml")
    );
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
