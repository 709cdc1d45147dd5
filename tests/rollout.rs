//! Progressive rollout from a static source: a simulated fleet (each host its own tree,
//! machine id and state dir, run by the real binary) polling one nginx, and the refusals of
//! rollout files and manifests that are replayed, unsigned or expired.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use converge::bundle::{Manifest, Percent, Rollout, SecretKeyFile};
use serde_json::Value;
use support::{Nginx, BIN};

/// Hosts in the simulated fleet.
const FLEET: usize = 120;
/// Hosts run at once: the machine's cores are shared.
const PARALLEL: usize = 8;

/// A source tree, its published bundle dir and a signing key.
struct Publisher {
    dir: tempfile::TempDir,
}

impl Publisher {
    fn new() -> Publisher {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("src/roles")).unwrap();
        let out = std::process::Command::new(BIN)
            .arg("keygen")
            .arg(dir.path())
            .env_remove("CONVERGE_SIGNING_PASSWORD")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Publisher { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("converge.key")
    }

    fn public_key(&self) -> PathBuf {
        self.dir.path().join("converge.pub")
    }

    /// Writes the app role with `version` in its file.
    fn role(&self, version: &str) {
        fs::write(
            self.dir.path().join("src/roles/app.toml"),
            format!("[[file]]\npath = \"/etc/app.conf\"\ncontent = \"{version}\\n\"\n"),
        )
        .unwrap();
    }

    /// `converge ARGS` with the key, which must succeed; its stdout.
    fn converge(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--key")
            .arg(self.key())
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Publishes `version` as the stable bundle (or the candidate); returns its id.
    fn publish(&self, version: &str, candidate: bool) -> String {
        self.role(version);
        let src = self.dir.path().join("src");
        let out = self.out();
        let mut args = vec!["publish", src.to_str().unwrap(), out.to_str().unwrap()];
        if candidate {
            args.push("--candidate");
        }
        let text = self.converge(&args);
        let id = text
            .split_whitespace()
            .find(|w| w.len() == 64)
            .unwrap_or_else(|| panic!("no id in {text}"));
        id.to_owned()
    }

    fn rollout(&self, args: &[&str]) -> String {
        let out = self.out();
        let mut all = vec!["rollout", out.to_str().unwrap()];
        all.extend_from_slice(args);
        self.converge(&all)
    }
}

/// One simulated host: its own tree (with its machine id), agent config and state dir.
struct Host {
    dir: PathBuf,
}

impl Host {
    fn new(base: &Path, n: usize, source: &str, key: &Path) -> Host {
        let dir = base.join(format!("host-{n:03}"));
        fs::create_dir_all(dir.join("root/etc")).unwrap();
        fs::write(dir.join("root/etc/machine-id"), format!("{n:032x}\n")).unwrap();
        fs::write(
            dir.join("agent.toml"),
            format!(
                "source = {source:?}\nroles = [\"app\"]\nstate_dir = {:?}\ntrusted_keys = [{:?}]\n",
                dir.join("state"),
                key
            ),
        )
        .unwrap();
        Host { dir }
    }

    /// One agent run (`apply` from the agent config on this host's tree); the exit code.
    fn run(&self) -> i32 {
        let out = std::process::Command::new(BIN)
            .arg("apply")
            .arg("--config")
            .arg(self.dir.join("agent.toml"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        out.status.code().unwrap_or(-1)
    }

    fn last_run(&self) -> Value {
        let text = fs::read_to_string(self.dir.join("state/last-run.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The track and bundle of the last run, and what the tree holds.
    fn state(&self) -> (String, String, String) {
        let run = self.last_run();
        let source = &run["source"];
        let app = fs::read_to_string(self.dir.join("root/etc/app.conf")).unwrap_or_default();
        (
            source["track"].as_str().unwrap_or("").to_owned(),
            source["bundle_id"].as_str().unwrap_or("").to_owned(),
            app.trim().to_owned(),
        )
    }
}

/// Runs every host once, `PARALLEL` at a time; each must exit 0 (in sync) or 2 (changed).
fn run_fleet(hosts: &[Host]) {
    let chunk = hosts.len().div_ceil(PARALLEL);
    std::thread::scope(|s| {
        for part in hosts.chunks(chunk) {
            s.spawn(move || {
                for h in part {
                    let code = h.run();
                    assert!(
                        code == 0 || code == 2,
                        "{}: exit {code}: {}",
                        h.dir.display(),
                        h.last_run()
                    );
                }
            });
        }
    });
}

/// Indexes of the hosts whose last run converged the candidate.
fn on_candidate(hosts: &[Host]) -> BTreeSet<usize> {
    hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.state().0 == "candidate")
        .map(|(i, _)| i)
        .collect()
}

/// Every host runs the bundle `id` on `track` and its tree holds `version`.
fn assert_all(hosts: &[Host], track: &str, id: &str, version: &str) {
    for h in hosts {
        assert_eq!(
            h.state(),
            (track.to_owned(), id.to_owned(), version.to_owned()),
            "{}",
            h.dir.display()
        );
    }
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_fleet_follows_the_rollout_share_halt_promote_and_a_new_slice() {
    let publisher = Publisher::new();
    let v1 = publisher.publish("v1", false);
    let nginx = Nginx::serve(&publisher.out());
    let fleet_dir = tempfile::tempdir().unwrap();
    let hosts: Vec<Host> = (0..FLEET)
        .map(|n| Host::new(fleet_dir.path(), n, &nginx.url(), &publisher.public_key()))
        .collect();
    run_fleet(&hosts);
    assert_all(&hosts, "stable", &v1, "v1");

    // A candidate at 10 %: about a tenth of the fleet takes it, the same hosts every run.
    let v2 = publisher.publish("v2", true);
    publisher.rollout(&["start", "--percent", "10"]);
    run_fleet(&hosts);
    let slice = on_candidate(&hosts);
    assert!(
        (FLEET * 10 / 100 - 6..=FLEET * 10 / 100 + 6).contains(&slice.len()),
        "{} of {FLEET} hosts on the candidate at 10 %",
        slice.len()
    );
    for (i, h) in hosts.iter().enumerate() {
        let run = h.last_run();
        let bucket = run["source"]["rollout"]["bucket"].as_f64().unwrap();
        let want = if bucket < 10.0 {
            ("candidate", &v2, "v2")
        } else {
            ("stable", &v1, "v1")
        };
        assert_eq!(
            h.state(),
            (want.0.to_owned(), want.1.clone(), want.2.to_owned()),
            "host {i}, bucket {bucket}"
        );
    }
    let before = nginx.statuses().len();
    run_fleet(&hosts);
    assert_eq!(
        on_candidate(&hosts),
        slice,
        "the slice is stable across runs"
    );
    // Nothing changed at the source: every poll of the rollout file and the manifests is a 304.
    let again: Vec<u16> = nginx.wait_for_requests(before + 2 * FLEET)[before..].to_vec();
    assert!(again.iter().all(|s| *s == 304), "{again:?}");

    // Halt: every host back on the stable bundle at its next run, though it is older.
    publisher.rollout(&["halt"]);
    run_fleet(&hosts);
    assert_all(&hosts, "stable", &v1, "v1");

    // Resumed, the same candidate lands on the same hosts.
    publisher.rollout(&["start", "--percent", "10"]);
    run_fleet(&hosts);
    assert_eq!(on_candidate(&hosts), slice);

    // A new candidate draws a new slice.
    let v3 = publisher.publish("v3", true);
    publisher.rollout(&["start", "--percent", "10"]);
    run_fleet(&hosts);
    let new_slice = on_candidate(&hosts);
    assert_ne!(new_slice, slice);
    for i in &new_slice {
        assert_eq!(
            hosts[*i].state(),
            ("candidate".into(), v3.clone(), "v3".into())
        );
    }

    // Promote: every host on the new stable bundle, with the candidate's content.
    let text = publisher.rollout(&["promote"]);
    let promoted = text
        .split_whitespace()
        .find(|w| w.len() == 64)
        .unwrap()
        .to_owned();
    run_fleet(&hosts);
    assert_all(&hosts, "stable", &promoted, "v3");
}

/// A publisher and one host following its bundle dir (no web server needed).
fn one_host() -> (Publisher, Host, tempfile::TempDir) {
    let publisher = Publisher::new();
    publisher.publish("v1", false);
    let base = tempfile::tempdir().unwrap();
    let source = publisher.out().display().to_string();
    let host = Host::new(base.path(), 7, &source, &publisher.public_key());
    (publisher, host, base)
}

/// The last run's source record: freshness, reason, and the metrics textfile.
fn refused(host: &Host) -> (String, String, String) {
    let run = host.last_run();
    let metrics = fs::read_to_string(host.dir.join("state/metrics/converge.prom")).unwrap();
    (
        run["source"]["freshness"].as_str().unwrap().to_owned(),
        run["source"]["reason"].as_str().unwrap_or("").to_owned(),
        metrics,
    )
}

#[test]
fn halt_sends_a_host_back_and_a_replayed_rollout_file_is_refused() {
    let (publisher, host, _base) = one_host();
    publisher.publish("v2", true);
    publisher.rollout(&["start", "--percent", "100"]);
    let out = publisher.out();
    let old = fs::read(out.join("rollout.json")).unwrap();
    let old_sig = fs::read(out.join("rollout.json.minisig")).unwrap();
    assert_eq!(host.run(), 2);
    assert_eq!(host.state().0, "candidate");
    // Halted: back to the stable bundle, though it was published before the candidate.
    publisher.rollout(&["halt"]);
    assert_eq!(host.run(), 2);
    assert_eq!(host.state().0, "stable");
    // A mirror (or an attacker) serves the signed file from before the halt again.
    fs::write(out.join("rollout.json.minisig"), old_sig).unwrap();
    fs::write(out.join("rollout.json"), old).unwrap();
    assert_eq!(host.run(), 0);
    let (freshness, reason, _) = refused(&host);
    assert_eq!(freshness, "refused");
    assert!(
        reason.contains("rollout.json: rollout file created ")
            && reason.contains("is not newer than the one this host follows"),
        "{reason}"
    );
    assert_eq!(
        fs::read_to_string(host.dir.join("root/etc/app.conf")).unwrap(),
        "v1\n"
    );
}

#[test]
fn an_unsigned_rollout_file_is_refused_when_keys_are_configured() {
    let (publisher, host, _base) = one_host();
    assert_eq!(host.run(), 2);
    publisher.publish("v2", true);
    publisher.rollout(&["start", "--percent", "100"]);
    // The rollout command itself refuses to write an unsigned file into a signed bundle.
    let out = publisher.out();
    let before = fs::read(out.join("rollout.json")).unwrap();
    let unsigned = std::process::Command::new(BIN)
        .args(["rollout", out.to_str().unwrap(), "halt"])
        .output()
        .unwrap();
    assert_eq!(unsigned.status.code(), Some(1));
    let text = String::from_utf8_lossy(&unsigned.stderr);
    assert!(
        text.contains("rollout.json.minisig: the bundle is signed, and a rollout file without a signature would be refused by every host that trusts a key: pass --key SECRET_KEY; nothing was changed"),
        "{text}"
    );
    assert_eq!(fs::read(out.join("rollout.json")).unwrap(), before);
    fs::remove_file(publisher.out().join("rollout.json.minisig")).unwrap();
    assert_eq!(host.run(), 0);
    let (freshness, reason, _) = refused(&host);
    assert_eq!(freshness, "refused");
    assert!(
        reason.ends_with(
            "rollout.json.minisig: signature required (trusted keys are configured) but none is published"
        ),
        "{reason}"
    );
    assert_eq!(host.state().2, "v1");
}

/// Signs `bytes` as `name` into the bundle dir, signature first.
fn write_signed(publisher: &Publisher, name: &str, bytes: &[u8]) {
    let key = SecretKeyFile::load_with_password(&publisher.key(), None).unwrap();
    let sig = key.sign(bytes, name).unwrap();
    let out = publisher.out();
    fs::write(out.join(format!("{name}.minisig")), sig).unwrap();
    fs::write(out.join(name), bytes).unwrap();
}

#[test]
fn an_expired_rollout_file_is_refused_and_reported() {
    let (publisher, host, _base) = one_host();
    assert_eq!(host.run(), 2);
    let candidate = publisher.publish("v2", true);
    let stable = fs::read(publisher.out().join("manifest.json")).unwrap();
    let stable = hex(&stable);
    // Signed two days ago, valid for one: what a mirror that stopped syncing serves.
    let then = SystemTime::now() - Duration::from_secs(2 * 86_400);
    let rollout = Rollout::next(
        None,
        stable,
        Some(candidate),
        Percent::ALL,
        false,
        Some(Duration::from_secs(86_400)),
        then,
    );
    write_signed(&publisher, "rollout.json", &rollout.to_bytes());
    assert_eq!(host.run(), 0);
    let (freshness, reason, metrics) = refused(&host);
    assert_eq!(freshness, "refused");
    let expires = rollout.expires.unwrap();
    assert!(
        reason.contains(&format!(
            "rollout.json: refused: expired at {expires} (now "
        )),
        "{reason}"
    );
    assert!(
        metrics.contains("converge_source_expired{mode=\"apply\"} 1"),
        "{metrics}"
    );
    assert_eq!(host.state().2, "v1");
}

#[test]
fn an_expired_manifest_is_refused_and_the_last_known_good_kept() {
    let (publisher, host, _base) = one_host();
    assert_eq!(host.run(), 2);
    let out = publisher.out();
    let current = Manifest::parse(&fs::read(out.join("manifest.json")).unwrap(), "m").unwrap();
    // New content, but signed with an expiry that has passed.
    publisher.role("v2");
    let then = SystemTime::now() - Duration::from_secs(60);
    let mut stale = Manifest {
        created: converge::bundle::manifest::rfc3339_micros(then),
        ..current
    };
    stale.set_validity(Some(Duration::from_secs(30)));
    write_signed(&publisher, "manifest.json", &stale.to_bytes());
    assert_eq!(host.run(), 0);
    let (freshness, reason, metrics) = refused(&host);
    assert_eq!(freshness, "refused");
    assert!(
        reason.contains(&format!(
            "manifest.json: refused: expired at {} (now ",
            stale.expires.as_deref().unwrap()
        )),
        "{reason}"
    );
    assert!(
        metrics.contains("converge_source_expired{mode=\"apply\"} 1"),
        "{metrics}"
    );
    assert_eq!(host.state().2, "v1");

    // Publishing again (with a fresh expiry) moves the host on.
    publisher.converge(&[
        "publish",
        publisher.dir.path().join("src").to_str().unwrap(),
        out.to_str().unwrap(),
        "--expires",
        "7d",
    ]);
    assert_eq!(host.run(), 2);
    let (freshness, _, metrics) = refused(&host);
    assert_eq!(freshness, "fresh");
    assert!(
        metrics.contains("converge_source_expired{mode=\"apply\"} 0"),
        "{metrics}"
    );
    assert_eq!(host.state().2, "v2");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_forbidden_rollout_file_is_no_rollout_until_the_host_has_followed_one() {
    let publisher = Publisher::new();
    let v1 = publisher.publish("v1", false);
    let nginx = Nginx::serve(&publisher.out());
    let base = tempfile::tempdir().unwrap();
    let host = Host::new(base.path(), 7, &nginx.url(), &publisher.public_key());
    let rollout_requests = |status: u16| {
        nginx
            .access_log()
            .lines()
            .filter(|l| l.contains("GET /rollout.json") && l.contains(&format!("\" {status} ")))
            .count()
    };
    // nginx answers 403 for a directory it may not list: as an object store without list
    // permission answers for a key it does not hold. No rollout was ever followed here, so
    // the host follows manifest.json.
    let rollout = publisher.out().join("rollout.json");
    fs::create_dir(&rollout).unwrap();
    assert_eq!(host.run(), 2);
    assert_eq!(host.state(), ("stable".into(), v1.clone(), "v1".into()));
    assert_eq!(rollout_requests(403), 1, "{}", nginx.access_log());
    assert_eq!(host.last_run()["source"]["freshness"], "fresh");
    // A 404 is no rollout too.
    fs::remove_dir(&rollout).unwrap();
    assert_eq!(host.run(), 0);
    assert_eq!(rollout_requests(404), 1, "{}", nginx.access_log());

    // The host follows a rollout to its candidate.
    let v2 = publisher.publish("v2", true);
    publisher.rollout(&["start", "--percent", "100"]);
    assert_eq!(host.run(), 2);
    assert_eq!(host.state(), ("candidate".into(), v2, "v2".into()));

    // The rollout is halted, but the server refuses the file: the host must not take that
    // for "no rollout" and guess; it keeps its bundle and says why.
    publisher.rollout(&["halt"]);
    let kept = fs::read(&rollout).unwrap();
    fs::remove_file(&rollout).unwrap();
    fs::create_dir(&rollout).unwrap();
    let code = host.run();
    let (freshness, reason, _) = refused(&host);
    assert_eq!(rollout_requests(403), 2, "{}", nginx.access_log());
    assert_eq!(
        reason,
        format!(
            "{}/rollout.json: HTTP status 403: the source refuses to serve the rollout file this host follows, so which bundle it should follow is unknown; make the file readable by the web server, or end a rollout with `converge rollout OUT promote` or `halt` rather than by deleting its file",
            nginx.url()
        ),
        "exit {code}, {freshness}"
    );
    assert_eq!((code, freshness.as_str()), (0, "stale"));
    assert_eq!(host.state().2, "v2");

    // Readable again: the halt takes the host back to the stable bundle.
    fs::remove_dir(&rollout).unwrap();
    fs::write(&rollout, kept).unwrap();
    assert_eq!(host.run(), 2);
    assert_eq!(host.state().2, "v1");
}

#[test]
fn agents_that_know_no_rollout_file_follow_the_stable_manifest() {
    let publisher = Publisher::new();
    let stable = publisher.publish("v1", false);
    publisher.publish("v2", true);
    publisher.rollout(&["start", "--percent", "100"]);
    let state = tempfile::tempdir().unwrap();
    let source = converge::bundle::Source::parse(publisher.out().to_str().unwrap()).unwrap();
    // Default options read no rollout file, as agents before it.
    let got = converge::bundle::sync(&source, state.path(), &Default::default()).unwrap();
    assert_eq!(got.id, stable);
}

fn hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn wariness_from_nodes_toml_or_agent_toml_moves_a_host_to_the_back_or_the_front() {
    let publisher = Publisher::new();
    let nodes = publisher.dir.path().join("src/nodes.toml");
    fs::write(
        &nodes,
        "[[node]]\nroles = [\"app\"]\nrollout_wariness = 1.5\n",
    )
    .unwrap();
    publisher.role("v1");
    let src = publisher.dir.path().join("src");
    let out = publisher.out();
    let refused = std::process::Command::new(BIN)
        .args(["publish", src.to_str().unwrap(), out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        text.contains("nodes.toml:3:20: rollout_wariness 1.5 is out of range: expected a number from 0.0 (takes candidates first) to 1.0 (last)"),
        "{text}"
    );
    // A database-like host: every entry matching it says "last".
    fs::write(
        &nodes,
        "[[node]]\nroles = [\"app\"]\nrollout_wariness = 1.0\n",
    )
    .unwrap();
    let stable = publisher.publish("v1", false);
    let base = tempfile::tempdir().unwrap();
    let host = Host::new(
        base.path(),
        3,
        out.to_str().unwrap(),
        &publisher.public_key(),
    );
    // Classified by nodes.toml, not by agent.toml's roles.
    let config = host.dir.join("agent.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replace("roles = [\"app\"]\n", "")).unwrap();
    assert_eq!(host.run(), 2);
    publisher.publish("v2", true);
    publisher.rollout(&["start", "--percent", "99.99"]);
    assert_eq!(host.run(), 0);
    let run = host.last_run();
    assert_eq!(run["source"]["rollout"]["bucket"].as_f64(), Some(99.99));
    assert_eq!(run["source"]["rollout"]["wariness"].as_f64(), Some(1.0));
    assert_eq!(host.state(), ("stable".into(), stable, "v1".into()));

    // agent.toml's own wariness is above nodes.toml's: this host is a canary.
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("rollout_wariness = 0.0\n{text}")).unwrap();
    publisher.rollout(&["set", "0.01"]);
    assert_eq!(host.run(), 2);
    let run = host.last_run();
    assert_eq!(run["source"]["rollout"]["bucket"].as_f64(), Some(0.0));
    assert_eq!(host.state().0, "candidate");
    assert_eq!(host.state().2, "v2");
}
