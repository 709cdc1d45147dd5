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
    let run = converge(&[
        "fleet",
        "--prometheus",
        &fleet.prometheus.url(),
        "--format",
        "json",
    ])
    .run();
    assert_eq!(run.code, 0, "{}", run.text());
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
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
            let src = self.tmp.path().join("src");
            support::write_tree(&src, files);
            let out = self.served().join("bundle");
            let run = converge(&["publish"])
                .arg(&src)
                .arg(&out)
                .arg("--key")
                .arg(self.key())
                .args(["--message", message])
                .run();
            assert_eq!(run.code, 0, "{}", run.text());
            bundle_id(&out)
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
    }

    /// The id of the bundle published in `out`: the sha256 of its manifest.
    pub fn bundle_id(out: &Path) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(
            std::fs::read(out.join("manifest.json")).unwrap(),
        ))
    }
}
