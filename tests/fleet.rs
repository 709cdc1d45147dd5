//! `converge fleet`: the fleet as a real Prometheus sees it, and the errors when it cannot
//! be read.

mod support;

use support::converge;

#[test]
fn prometheus_down_is_a_clear_error() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = converge(&["fleet", "--prometheus", &url]).run();
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(&format!(
            "converge: error: cannot reach Prometheus at {url}: "
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    assert!(
        run.stderr
            .trim_end()
            .ends_with("(is it running, and is this its base URL?)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_url_that_is_not_http_is_refused() {
    let run = converge(&["fleet", "--prometheus", "prometheus:9090"]).run();
    assert_eq!(run.code, 1, "{}", run.text());
    assert_eq!(
        run.stderr,
        "converge: error: --prometheus \"prometheus:9090\" is not usable: the scheme is \"prometheus\", expected http or https\n"
    );
}

/// The app every simulated host runs: a config under /srv whose health check passes while
/// it does not say `broken`.
fn app(version: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "roles/app.toml",
            "[[file]]\npath = \"/srv/app.conf\"\ntemplate = \"app.conf.hbs\"\n\n[[health]]\nname = \"app\"\ncommand = \"grep -q ^version /srv/app.conf && ! grep -q broken /srv/app.conf\"\nretries = 0\npasses = 1\nsettle = \"0s\"\n".to_owned(),
        ),
        ("templates/app.conf.hbs", format!("version = {version}\nhost = {{{{facts.hostname}}}}\n")),
    ]
}

fn files<'a>(tree: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    tree.iter().map(|(p, t)| (*p, t.as_str())).collect()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn fleet_lists_every_host_by_its_metrics() {
    let fleet = sim::Fleet::new(3);
    let v1 = fleet.publish(&files(&app("1")), "v1");
    for run in fleet.run_all() {
        assert_eq!(run.code, 2, "{}", run.text());
    }
    let json = fleet.view_json();
    let hosts: Vec<(&str, &str, i64)> = json["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap(),
                h["bundle"].as_str().unwrap(),
                h["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            ("host-01", v1.as_str(), 2),
            ("host-02", v1.as_str(), 2),
            ("host-03", v1.as_str(), 2)
        ]
    );
    assert_eq!(json["counts"]["hosts"], 3);
    assert_eq!(json["counts"]["changed_last_day"], 3);
    assert_eq!(json["counts"]["failing"], 0);
}

/// The app at `version`, whose template fails on `host-03` only: a variable no role sets,
/// asked for on that host name.
fn app_failing_on_host_03(version: &str) -> Vec<(&'static str, String)> {
    let mut tree = app(version);
    tree[1].1 = format!(
        "version = {version}\nhost = {{{{facts.hostname}}}}\n{{{{#if (eq facts.hostname \"host-03\")}}}}port = {{{{vars.port}}}}\n{{{{/if}}}}"
    );
    tree
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn preview_shows_where_a_candidate_would_fail_before_any_host_changes() {
    let fleet = sim::Fleet::new(4);
    let v1 = fleet.publish(&files(&app("1")), "v1");
    for run in fleet.run_all() {
        assert_eq!(run.code, 2, "{}", run.text());
    }
    let candidate = fleet.publish_candidate(&files(&app_failing_on_host_03("2")), "v2");
    fleet.rollout(&["start", "--percent", "0"]);
    let before: Vec<_> = fleet.hosts.iter().map(|h| fleet.tree(h)).collect();
    let states: Vec<_> = fleet.hosts.iter().map(|h| fleet.state_files(h)).collect();

    for run in fleet.run_all() {
        assert_eq!(run.code, 0, "{}", run.text());
    }

    // Read-only: every host's tree is byte for byte as it was, modes included, and the
    // state dir holds no scratch space left over.
    let after: Vec<_> = fleet.hosts.iter().map(|h| fleet.tree(h)).collect();
    assert_eq!(before, after);
    for (host, mut files) in fleet.hosts.iter().zip(states) {
        // The host's own run keeps the rollout file it followed; nothing else is new.
        files.push("rollout.json".to_owned());
        files.sort();
        assert_eq!(fleet.state_files(host), files, "{host}: state dir entries");
        assert_eq!(
            fleet.record(host)["source"]["bundle_id"],
            v1.as_str(),
            "{host}"
        );
    }
    for host in &fleet.hosts {
        let preview = &fleet.record(host)["candidate"];
        assert_eq!(
            preview["candidate"],
            candidate.as_str(),
            "{host}: {preview}"
        );
        if host == "host-03" {
            assert_eq!(preview["failed"], 1, "{preview}");
            assert_eq!(preview["pending"], 0, "{preview}");
            assert_eq!(preview["error_kind"], "invalid_input", "{preview}");
            let error = preview["error"].as_str().unwrap();
            assert!(error.contains("templates/app.conf.hbs:3:"), "{error}");
            assert!(error.contains("vars.port"), "{error}");
        } else {
            assert_eq!(preview["failed"], 0, "{host}: {preview}");
            assert_eq!(preview["pending"], 1, "{host}: {preview}");
            assert_eq!(
                preview["resources"],
                serde_json::json!([{"id": "file:/srv/app.conf", "status": "pending"}]),
                "{host}"
            );
        }
    }

    // Prometheus has it, per host, under the candidate's id.
    let failed = fleet.prometheus.query(&format!(
        "converge_candidate_failed{{candidate=\"{candidate}\"}} > 0"
    ));
    let failing: Vec<&str> = failed.iter().map(|s| s.label("instance")).collect();
    assert_eq!(
        failing,
        ["host-03"],
        "{}",
        std::fs::read_to_string(support::prometheus::metrics_path(
            &fleet.served(),
            "host-03"
        ))
        .unwrap()
    );

    let run = converge(&["fleet", "--prometheus", &fleet.prometheus.url()]).run();
    assert_eq!(run.code, 0, "{}", run.text());
    let short = &candidate[..12];
    assert!(
        run.stdout.contains(&format!(
            "  candidate  {short}  0 hosts; preview on 4 hosts, failing on 1\n"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("candidate would fail on: host-03\n"),
        "{}",
        run.stdout
    );
    let json = fleet.view_json();
    assert_eq!(json["candidate"], candidate.as_str());
    assert_eq!(json["stable"], v1.as_str());
    assert_eq!(json["counts"]["stable"], 4);
    assert_eq!(json["counts"]["preview_failed"], 1);

    // The gate at 0 % judges the preview: it halts, naming the host.
    let gate = fleet.advance(&["--steps", "25,100", "--min-reported", "4"]);
    assert_eq!(gate.code, 4, "{}", gate.text());
    assert_eq!(
        gate.stdout,
        format!(
            "halt: 1 of 4 hosts that previewed candidate {short} would fail (at most 0 allowed)\n\
             halted: every host goes back to the stable bundle at its next run (was at 0 %); `rollout start` resumes\n  \
             host-03: the candidate would fail here (1 resource(s); its last-run.json says why)\n"
        )
    );
}

/// The app with a health check that fails: the config says `broken`.
fn app_broken(version: &str) -> Vec<(&'static str, String)> {
    let mut tree = app(version);
    tree[1].1 = format!("version = {version}\nbroken\n");
    tree
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn advance_moves_on_with_healthy_canaries_and_halts_when_a_canary_fails() {
    let fleet = sim::Fleet::new(6);
    // Canaries first: host-01 and host-02 take any candidate out to more than 0 %, the
    // others only at 100 %.
    for (i, host) in fleet.hosts.iter().enumerate() {
        fleet.set_wariness(host, if i < 2 { "0.0" } else { "1.0" });
    }
    fleet.publish(&files(&app("1")), "v1");
    fleet.run_all();
    let v2 = fleet.publish_candidate(&files(&app("2")), "v2");
    let short = &v2[..12];
    fleet.rollout(&["start", "--percent", "0"]);
    fleet.run_all();
    let steps = ["--steps", "25,100", "--min-reported", "2"];

    // 0 %: the preview is clean on all six hosts.
    let gate = fleet.advance(&steps);
    assert_eq!(gate.code, 0, "{}", gate.text());
    assert_eq!(
        gate.stdout,
        format!("advance: 6 hosts previewed candidate {short}, 0 would fail (at most 0 allowed)\nadvanced: 0 % → 25 % of hosts on the candidate\n")
    );
    // 25 %: the two canaries run it, healthy.
    for (host, run) in fleet.hosts.iter().zip(fleet.run_all()) {
        let on_it = host == "host-01" || host == "host-02";
        assert_eq!(
            run.code,
            if on_it { 2 } else { 0 },
            "{host}: {}",
            run.text()
        );
    }
    let view = fleet.view_json();
    assert_eq!(
        (
            view["counts"]["candidate"].as_u64(),
            view["counts"]["stable"].as_u64()
        ),
        (Some(2), Some(4)),
        "{view}"
    );
    let gate = fleet.advance(&steps);
    assert_eq!(gate.code, 0, "{}", gate.text());
    assert_eq!(
        gate.stdout,
        format!("advance: 2 hosts ran candidate {short}, 0 failed (at most 0 allowed)\nadvanced: 25 % → 100 % of hosts on the candidate\n")
    );
    // 100 %: everyone runs it; past the last step the gate promotes.
    fleet.run_all();
    let gate = fleet.advance(&steps);
    assert_eq!(gate.code, 0, "{}", gate.text());
    assert_eq!(
        gate.stdout,
        format!("advance: 6 hosts ran candidate {short}, 0 failed (at most 0 allowed)\npromoted: the candidate is the stable bundle for every host\n")
    );

    // A candidate whose health check fails on the canaries: the preview cannot see that
    // (health is judged after a change), the canaries' runs do, and the gate halts.
    let v3 = fleet.publish_candidate(&files(&app_broken("3")), "v3");
    let short = &v3[..12];
    fleet.rollout(&["start", "--percent", "0"]);
    fleet.run_all();
    assert_eq!(fleet.advance(&steps).code, 0);
    for (host, run) in fleet.hosts.iter().zip(fleet.run_all()) {
        let on_it = host == "host-01" || host == "host-02";
        assert_eq!(
            run.code,
            if on_it { 4 } else { 0 },
            "{host}: {}",
            run.text()
        );
    }
    let gate = fleet.advance(&steps);
    assert_eq!(gate.code, 4, "{}", gate.text());
    assert_eq!(
        gate.stdout,
        format!(
            "halt: 2 of 2 hosts that ran candidate {short} failed (at most 0 allowed)\n\
             halted: every host goes back to the stable bundle at its next run (was at 25 %); `rollout start` resumes\n  \
             host-01: its last run failed (exit 4); 1 health check(s) failed; the run was rolled back\n  \
             host-02: its last run failed (exit 4); 1 health check(s) failed; the run was rolled back\n"
        )
    );
    let view = converge(&["fleet", "--prometheus", &fleet.prometheus.url()]).run();
    assert!(
        view.stdout
            .contains("rolled back or held:     host-01 host-02\n"),
        "{}",
        view.stdout
    );
    assert!(
        view.stdout
            .contains("failing runs:            host-01 host-02\n"),
        "{}",
        view.stdout
    );
    // Halted: at their next run every host is on the stable bundle (v2, promoted).
    fleet.run_all();
    let view = fleet.view_json();
    assert_eq!(view["counts"]["stable"], 6, "{view}");
    for host in &fleet.hosts {
        assert_eq!(
            fleet.tree(host)[0].2,
            format!("version = 2\nhost = {host}\n").into_bytes(),
            "{host}"
        );
    }
}

/// A small simulated fleet on this machine: each host has a state dir, a machine id, facts
/// and a tree of its own, polls one nginx for its bundle, and writes its metrics textfile
/// where that nginx serves it to Prometheus (`/hosts/NAME/metrics`).
///
/// A host runs live (`--root /`, so its health checks run) inside a private mount
/// namespace: its own `/srv` (where the roles write) and `/etc/machine-id` are bound over
/// the machine's there, and the machine's own are never written.
mod sim {
    use std::path::{Path, PathBuf};
    use std::time::SystemTime;

    use crate::support::{self, converge, Nginx, Prometheus, Run};

    /// The fleet.
    pub struct Fleet {
        pub tmp: tempfile::TempDir,
        pub hosts: Vec<String>,
        pub nginx: Nginx,
        pub prometheus: Prometheus,
    }

    impl Fleet {
        /// `n` hosts named `host-01`..., none run yet, a key pair in `keys/`.
        pub fn new(n: usize) -> Fleet {
            let tmp = tempfile::tempdir().unwrap();
            let served = tmp.path().join("served");
            let hosts: Vec<String> = (1..=n).map(|i| format!("host-{i:02}")).collect();
            for (i, name) in hosts.iter().enumerate() {
                let dir = tmp.path().join("hosts").join(name);
                std::fs::create_dir_all(dir.join("srv")).unwrap();
                std::fs::create_dir_all(served.join("hosts").join(name)).unwrap();
                // Distinct, fixed machine ids: the bucket of each host is the same every time.
                std::fs::write(
                    dir.join("machine-id"),
                    format!("{:032x}\n", 0xc0de_0000 + i),
                )
                .unwrap();
                let facts = support::FACTS
                    .replace("\"web1\"", &format!("{name:?}"))
                    .replace("web1.example.com", &format!("{name}.example.com"));
                std::fs::write(dir.join("facts.json"), facts).unwrap();
            }
            let run = converge(&["keygen"]).arg(tmp.path().join("keys")).run();
            assert_eq!(run.code, 0, "{}", run.text());
            let nginx = Nginx::serve(&served);
            let prometheus = Prometheus::scrape(&nginx.url(), &hosts);
            let fleet = Fleet {
                tmp,
                hosts,
                nginx,
                prometheus,
            };
            for name in &fleet.hosts {
                fleet.write_config(name);
            }
            fleet
        }

        pub fn served(&self) -> PathBuf {
            self.tmp.path().join("served")
        }

        pub fn host_dir(&self, name: &str) -> PathBuf {
            self.tmp.path().join("hosts").join(name)
        }

        pub fn key(&self) -> PathBuf {
            self.tmp.path().join("keys/converge.key")
        }

        fn write_config(&self, name: &str) {
            let dir = self.host_dir(name);
            let text = format!(
                "source = \"{url}/bundle/\"\nroles = [\"app\"]\nstate_dir = {state:?}\nmetrics_file = {metrics:?}\ntrusted_keys = [{key:?}]\n",
                url = self.nginx.url(),
                state = dir.join("state").display().to_string(),
                metrics = support::prometheus::metrics_path(&self.served(), name)
                    .display()
                    .to_string(),
                key = self.tmp.path().join("keys/converge.pub").display().to_string(),
            );
            std::fs::write(dir.join("agent.toml"), text).unwrap();
        }

        /// Publishes the source tree `files` into the served `bundle/`, signed; its id.
        pub fn publish(&self, files: &[(&str, &str)], message: &str) -> String {
            self.publish_as(files, message, &[])
        }

        /// Publishes `files` as the rollout's candidate (`publish --candidate`); its id.
        pub fn publish_candidate(&self, files: &[(&str, &str)], message: &str) -> String {
            self.publish_as(files, message, &["--candidate"])
        }

        fn publish_as(&self, files: &[(&str, &str)], message: &str, extra: &[&str]) -> String {
            let src = self.tmp.path().join("src");
            support::write_tree(&src, files);
            let out = self.served().join("bundle");
            let run = converge(&["publish"])
                .arg(&src)
                .arg(&out)
                .args(extra)
                .arg("--key")
                .arg(self.key())
                .args(["--message", message])
                .run();
            assert_eq!(run.code, 0, "{}", run.text());
            match extra {
                [] => bundle_id(&out),
                _ => bundle_id(&out.join("candidate")),
            }
        }

        /// `converge rollout OUT ARGS --key KEY`, which must succeed.
        pub fn rollout(&self, args: &[&str]) -> Run {
            let run = converge(&["rollout"])
                .arg(self.served().join("bundle"))
                .args(args)
                .arg("--key")
                .arg(self.key())
                .run();
            assert_eq!(run.code, 0, "{}", run.text());
            run
        }

        /// `converge rollout OUT advance --prometheus URL ARGS --key KEY`.
        pub fn advance(&self, args: &[&str]) -> Run {
            converge(&["rollout"])
                .arg(self.served().join("bundle"))
                .args(["advance", "--prometheus", &self.prometheus.url()])
                .args(args)
                .arg("--key")
                .arg(self.key())
                .run()
        }

        /// One agent run of `name`: `converge apply` from its agent config.
        pub fn run(&self, name: &str) -> Run {
            let dir = self.host_dir(name);
            let d = dir.display();
            let script = format!(
                "mount --bind {d}/srv /srv && mount --bind {d}/machine-id /etc/machine-id && exec \"$0\" \"$@\""
            );
            let config = dir.join("agent.toml");
            let config = config.to_str().unwrap();
            support::converge_via(
                &[
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    &script,
                ],
                &["apply", "--color", "never", "--config", config],
            )
            .arg("--facts")
            .arg(dir.join("facts.json"))
            .run()
        }

        /// Runs every host once, then waits until Prometheus has scraped what they wrote.
        pub fn run_all(&self) -> Vec<Run> {
            let runs = self.hosts.iter().map(|h| self.run(h)).collect();
            self.prometheus.wait_scraped(SystemTime::now());
            runs
        }

        /// `converge fleet --format json` against this fleet's Prometheus, which must succeed.
        pub fn view_json(&self) -> serde_json::Value {
            let url = self.prometheus.url();
            let run = converge(&["fleet", "--prometheus", &url, "--format", "json"]).run();
            assert_eq!(run.code, 0, "{}", run.text());
            serde_json::from_str(&run.stdout).unwrap()
        }

        /// Sets the host's `rollout_wariness` in its agent.toml.
        pub fn set_wariness(&self, name: &str, wariness: &str) {
            let path = self.host_dir(name).join("agent.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{text}rollout_wariness = {wariness}\n")).unwrap();
        }

        /// What a host's last apply recorded.
        pub fn record(&self, name: &str) -> serde_json::Value {
            let path = self.host_dir(name).join("state/last-run.json");
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        }

        /// Every entry under a host's `/srv`: path, mode and content.
        pub fn tree(&self, name: &str) -> Vec<(PathBuf, u32, Vec<u8>)> {
            let mut out = Vec::new();
            walk(&self.host_dir(name).join("srv"), &mut out);
            out.sort();
            out
        }

        /// The names of the entries of a host's state dir and its bundles dir (scratch space
        /// shows there while it lives).
        pub fn state_files(&self, name: &str) -> Vec<String> {
            let state = self.host_dir(name).join("state");
            let mut out: Vec<String> = ["", "bundles"]
                .iter()
                .flat_map(|d| std::fs::read_dir(state.join(d)).unwrap())
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            out.sort();
            out
        }
    }

    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u32, Vec<u8>)>) {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_dir() {
                walk(&path, out);
                Vec::new()
            } else {
                std::fs::read(&path).unwrap()
            };
            out.push((path, meta.permissions().mode(), content));
        }
    }

    /// The id of the bundle published in `out`: the sha256 of its manifest.
    pub fn bundle_id(out: &Path) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(out.join("manifest.json")).unwrap(),
        ))
    }
}
