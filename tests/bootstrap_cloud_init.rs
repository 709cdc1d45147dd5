//! `converge bootstrap` as cloud-init runs it: the last command of the user data, whose
//! non-zero exit marks the instance failed. On a booted systemd: exit 0 once the host is set
//! up and converging (first run changed things or not), also when the source is down at
//! first boot (the timer heals it) or the first run was rolled back; the shipped nodes.toml
//! classifies by the cloud tag; the bundle the check before the first write verified is the
//! one the first run uses, and a re-run asks the source with a conditional GET.
//! Needs root, systemctl and `scripts/test-deps`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::container::Container;
use support::converge;
use support::nginx::Nginx;
use support::tools::assert_success;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The shipped source tree (roles, templates, files, nodes.toml) copied into `dir/src` with
/// `extra` files, published and signed into `dir/bundle`; the key's base64 line.
fn publish(dir: &Path, extra: &[(&str, &str)]) -> String {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for entry in ["roles", "templates", "files", "nodes.toml"] {
        let out = Command::new("cp")
            .arg("-r")
            .arg(repo().join(entry))
            .arg(src.join(entry))
            .output()
            .unwrap();
        assert_success("cp -r", &out);
    }
    for (rel, text) in extra {
        std::fs::write(src.join(rel), text).unwrap();
    }
    let keys = dir.join("keys");
    let out = converge(&["keygen"]).arg(&keys).output().unwrap();
    assert_success("keygen", &out);
    let out = converge(&["publish"])
        .arg(&src)
        .arg(dir.join("bundle"))
        .arg("--key")
        .arg(keys.join("converge.key"))
        .output()
        .unwrap();
    assert_success("publish", &out);
    let pubkey = std::fs::read_to_string(keys.join("converge.pub")).unwrap();
    pubkey.lines().nth(1).unwrap().to_owned()
}

/// A booted container with the binary under test as /usr/bin/converge and the packaged units
/// installed, as the package leaves a host: nothing enabled.
fn boot(name: &str) -> Container {
    let ct = Container::boot(name);
    ct.exec_ok(&["install", "-m", "0755", ct.bin(), "/usr/bin/converge"]);
    for unit in ["converge.service", "converge.timer"] {
        let shared = ct.share(&repo().join("packaging/systemd").join(unit));
        ct.exec_ok(&["cp", &shared, &format!("/usr/lib/systemd/system/{unit}")]);
    }
    ct.exec_ok(&["systemctl", "daemon-reload"]);
    ct
}

/// The bootstrap line of the shipped user data, with the test's source and key.
fn bootstrap(ct: &Container, source: &str, key: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "converge",
        "bootstrap",
        "--source",
        source,
        "--key",
        key,
        "--color",
        "never",
    ];
    args.extend_from_slice(extra);
    ct.exec(&args)
}

fn timer_state(ct: &Container) -> (String, String) {
    let text = |o: Output| stdout(&o).trim().to_owned();
    (
        text(ct.exec(&["systemctl", "is-enabled", "converge.timer"])),
        text(ct.exec(&["systemctl", "is-active", "converge.timer"])),
    )
}

fn on() -> (String, String) {
    ("enabled".into(), "active".into())
}

fn last_run(ct: &Container) -> serde_json::Value {
    serde_json::from_str(&ct.exec_ok(&["cat", "/var/lib/converge/last-run.json"])).unwrap()
}

fn last_line(out: &Output) -> String {
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.starts_with("bootstrap: "))
        .unwrap_or_else(|| panic!("no closing line: {text}"));
    lines[at].to_owned()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_first_boot_that_changes_the_host_exits_0_and_so_does_a_rerun() {
    let ct = boot("ci-exit");
    let key = publish(ct.share_dir(), &[]);
    let url = ct.serve_http("/mnt/share/bundle", 8080);

    let first = bootstrap(&ct, &url, &key, &[]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    assert_eq!(
        last_line(&first),
        format!("bootstrap: done; this host now converges to {url} every 30 minutes")
    );
    assert!(
        stdout(&first).contains("+ converge run: roles base: "),
        "{first:?}"
    );
    assert_eq!(timer_state(&ct), on());
    assert_eq!(last_run(&ct)["exit_code"], 2);

    let again = bootstrap(&ct, &url, &key, &[]);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(
        last_line(&again),
        "bootstrap: nothing to change; this host was already set up like this"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_source_down_at_first_boot_still_sets_the_host_up_and_the_timer_heals_it() {
    let ct = boot("ci-down");
    let key = publish(ct.share_dir(), &[]);
    // Nothing answers there yet.
    let url = "http://127.0.0.1:8081/bundle/";

    let out = bootstrap(&ct, url, &key, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("converge: warning: set up; first run failed: source unreachable (")
            && err.contains("the timer will retry"),
        "{err}"
    );
    assert_eq!(
        last_line(&out),
        format!(
            "bootstrap: set up, but the first run could not reach the source; this host now \
             converges to {url} every 30 minutes, starting with the next run"
        )
    );
    let config = ct.exec_ok(&["cat", "/etc/converge/agent.toml"]);
    assert!(config.contains(&format!("source = \"{url}\"")), "{config}");
    assert_eq!(timer_state(&ct), on());
    // The failed run is on record, as every run is.
    assert_eq!(last_run(&ct)["exit_code"], 1);

    // The source comes up; the timer's next run (started here by hand) converges the host.
    ct.serve_http("/mnt/share", 8081);
    ct.exec_ok(&["systemctl", "start", "converge.service"]);
    let record = last_run(&ct);
    assert_eq!(record["roles"], serde_json::json!(["base"]), "{record}");
    assert_eq!(record["source"]["freshness"], "fresh", "{record}");
    assert!(ct
        .exec_ok(&["cat", "/etc/motd"])
        .contains("managed by converge"));
}

/// A role whose health check fails, so its first run is rolled back.
const FAILING: &str = r#"include = ["base"]

[[file]]
path = "/etc/failing.conf"
content = "v1\n"
mode = "0644"

[[health]]
name = "app"
command = "false"
retries = 0
"#;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_first_run_rolled_back_says_so_and_the_host_is_still_managed() {
    let ct = boot("ci-rollback");
    let key = publish(ct.share_dir(), &[("roles/failing.toml", FAILING)]);
    let url = ct.serve_http("/mnt/share/bundle", 8080);

    let out = bootstrap(&ct, &url, &key, &["--role", "failing"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let line = last_line(&out);
    assert!(
        line.starts_with("bootstrap: set up, but the first run was rolled back: health:app failed")
            && line.ends_with(&format!(
                "the host is held on its last good state and bundle {} is not applied again; \
                 this host now converges to {url} every 30 minutes, and takes the next bundle you publish",
                &last_run(&ct)["source"]["bundle_id"].as_str().unwrap()[..12]
            )),
        "{line}"
    );
    assert!(!stdout(&out).contains("bootstrap: done"), "{out:?}");
    assert!(!ct
        .exec(&["test", "-e", "/etc/failing.conf"])
        .status
        .success());
    assert_eq!(timer_state(&ct), on());
}

/// `converge validate --source .` at the top of the repository, and the roles `render` picks
/// for a host with `facts`.
fn rendered_roles(facts: &serde_json::Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("facts.json");
    std::fs::write(&file, facts.to_string()).unwrap();
    let out = converge(&["render", "--source", ".", "--color", "never", "--config"])
        .arg(dir.path().join("no-agent.toml"))
        .arg("--facts")
        .arg(&file)
        .current_dir(repo())
        .output()
        .unwrap();
    assert_success("render", &out);
    let mut roles: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("==> ")?.split(", role ").nth(1))
        .map(|r| r.trim_end_matches(") <==").to_owned())
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

#[test]
fn the_shipped_tree_validates_and_classifies_hosts_by_their_cloud_tag() {
    let out = converge(&["validate", "--source", "."])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_success("validate --source .", &out);

    let facts = converge(&["facts", "--json"]).output().unwrap();
    assert_success("facts", &facts);
    let mut facts: serde_json::Value = serde_json::from_slice(&facts.stdout).unwrap();
    facts["cloud"] = serde_json::json!({"tags": {"role": "web"}});
    assert_eq!(rendered_roles(&facts), ["base", "web"]);
    facts["cloud"] = serde_json::json!({"tags": {"role": "edge"}});
    assert_eq!(rendered_roles(&facts), ["base"]);
    facts.as_object_mut().unwrap().remove("cloud");
    assert_eq!(rendered_roles(&facts), ["base"]);
}

/// The requests nginx logged after the first `from`: path and status.
fn requests(nginx: &Nginx, from: usize) -> Vec<(String, u16)> {
    let log = nginx.access_log();
    log.lines()
        .skip(from)
        .filter_map(|l| {
            let path = l.split('"').nth(1)?.split_whitespace().nth(1)?.to_owned();
            let status = l
                .splitn(3, '"')
                .nth(2)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((path, status))
        })
        .collect()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_checked_bundle_is_fetched_once_and_a_rerun_asks_with_a_conditional_get() {
    let dir = tempfile::tempdir().unwrap();
    let key = publish(dir.path(), &[]);
    let objects = std::fs::read_dir(dir.path().join("bundle/objects"))
        .unwrap()
        .count();
    let root: PathBuf = dir.path().join("root");
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for unit in ["converge.service", "converge.timer"] {
        std::fs::copy(
            repo().join("packaging/systemd").join(unit),
            units.join(unit),
        )
        .unwrap();
    }
    std::fs::create_dir_all(root.join("etc/sysctl.d")).unwrap();
    let nginx = Nginx::serve(dir.path());
    let url = format!("{}/bundle/", nginx.url());
    let run = || {
        let out = converge(&[
            "bootstrap",
            "--source",
            &url,
            "--key",
            &key,
            "--role",
            "base",
        ])
        .arg("--root")
        .arg(&root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        out
    };

    run();
    let first = requests(&nginx, 0);
    let object_gets: Vec<_> = first
        .iter()
        .filter(|(p, _)| p.starts_with("/bundle/objects/"))
        .collect();
    assert_eq!(object_gets.len(), objects, "{first:?}");
    let manifest_gets = first
        .iter()
        .filter(|(p, _)| p == "/bundle/manifest.json")
        .count();
    assert_eq!(manifest_gets, 2, "{first:?}");

    run();
    let second = requests(&nginx, first.len());
    assert!(
        second
            .iter()
            .all(|(p, _)| !p.starts_with("/bundle/objects/")),
        "{second:?}"
    );
    assert_eq!(
        second
            .iter()
            .filter(|(p, _)| p == "/bundle/manifest.json")
            .map(|(_, s)| *s)
            .collect::<Vec<_>>(),
        [304, 304],
        "{second:?}"
    );

    // A new bundle: the re-run's check fetches its new object, and the run uses that one.
    std::fs::write(dir.path().join("src/files/added-later.txt"), "new\n").unwrap();
    let out = converge(&["publish"])
        .arg(dir.path().join("src"))
        .arg(dir.path().join("bundle"))
        .arg("--key")
        .arg(dir.path().join("keys/converge.key"))
        .output()
        .unwrap();
    assert_success("publish", &out);
    run();
    let third = requests(&nginx, first.len() + second.len());
    let object_gets: Vec<_> = third
        .iter()
        .filter(|(p, _)| p.starts_with("/bundle/objects/"))
        .collect();
    assert_eq!(object_gets.len(), 1, "{third:?}");
}
