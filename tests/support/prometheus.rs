//! A throwaway Prometheus (the Debian package) on 127.0.0.1 scraping the textfiles of a
//! simulated fleet, for tests of what converge reads back from a fleet's metrics.
//!
//! Each host's textfile is served by nginx as a static file (`/hosts/NAME/metrics`), one
//! scrape target per host whose `instance` label is the host's name, as node_exporter
//! behind a real fleet's service discovery would give it. Nothing here sleeps for a
//! scrape: `wait_scraped` waits until every target has been scraped after a given moment.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use super::stale::{reap_once, PROMETHEUS_PREFIX};
use super::tools::{free_port, require_root, require_tool, run_ok, stop_child};
pub use converge::fleet::Sample;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 8;
/// The job every target is in.
pub const JOB: &str = "converge";

/// A running Prometheus; killed on Drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: TempDir,
    targets: usize,
}

/// Installs the `prometheus` package (which brings `promtool`) when either is missing,
/// through scripts/test-deps, the one list of what the tests install.
pub fn ensure_installed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let present = |tool: &str| {
            ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(tool).exists())
        };
        if present("prometheus") && present("promtool") {
            return;
        }
        require_root();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test-deps");
        run_ok(&mut Command::new(script));
    });
}

impl Prometheus {
    /// Scrapes every host of `hosts` (its name) at `{base}/hosts/{name}/metrics`, each
    /// second. `base` is an HTTP server such as `Nginx::url()`.
    pub fn scrape(base: &str, hosts: &[String]) -> Prometheus {
        require_root();
        reap_once();
        ensure_installed();
        let prometheus = require_tool("prometheus");
        let address = base
            .strip_prefix("http://")
            .expect("Prometheus scrapes plain HTTP here")
            .trim_end_matches('/');
        let mut dir = fresh_dir(&config(address, hosts));
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let log = File::create(dir.path().join("prometheus.log")).expect("create log");
            let child = Command::new(&prometheus)
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup fd"))
                .stderr(log)
                .spawn()
                .expect("spawn prometheus");
            fs::write(dir.path().join("prometheus.pid"), child.id().to_string())
                .expect("write prometheus.pid");
            let mut prom = Prometheus {
                child,
                port,
                dir,
                targets: hosts.len(),
            };
            match prom.wait_ready() {
                Ok(()) => return prom,
                Err(e) if e.contains("address already in use") => {
                    last_error = e;
                    dir = prom.stop();
                }
                Err(e) => panic!("prometheus failed to start: {e}"),
            }
        }
        panic!("prometheus could not bind a port after {PORT_ATTEMPTS} attempts: {last_error}");
    }

    /// Base URL of its HTTP API, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The samples of the instant query `expr`, evaluated now (through the client
    /// `converge fleet` uses).
    pub fn query(&self, expr: &str) -> Vec<Sample> {
        converge::fleet::Prometheus::new(&self.url())
            .and_then(|p| p.query(expr))
            .unwrap_or_else(|e| panic!("query {expr:?}: {e}\n{}", self.log()))
    }

    /// Waits until every target has been scraped (successfully) after `since`: what the
    /// hosts' textfiles held at `since` is then what queries see.
    pub fn wait_scraped(&self, since: SystemTime) {
        let since = since.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        // timestamp() of a plain selector is the scrape's time; of anything computed (`up
        // == 1`) it would be the query's, which is always new.
        let expr = format!(
            "(timestamp(up{{job=\"{JOB}\"}}) > {since}) and on (instance) (up{{job=\"{JOB}\"}} == 1)"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.query(&expr).len() != self.targets {
            assert!(
                Instant::now() < deadline,
                "gave up waiting until prometheus scraped all {} hosts; targets: {}\n{}",
                self.targets,
                self.get("api/v1/targets"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The body of GET `path` (relative to the base URL), for messages.
    fn get(&self, path: &str) -> String {
        reqwest::blocking::get(format!("{}/{path}", self.url()))
            .and_then(|r| r.text())
            .unwrap_or_else(|e| e.to_string())
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let ready = format!("{}/-/ready", self.url());
        let client = reqwest::blocking::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited {status}\n{}", self.log()));
            }
            if client
                .get(&ready)
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {START_TIMEOUT:?}\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process; a fresh dir with the same config is for another attempt.
    fn stop(mut self) -> TempDir {
        self.kill();
        let config = fs::read_to_string(self.dir.path().join("prometheus.yml"))
            .expect("read prometheus.yml");
        fresh_dir(&config)
    }

    fn kill(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A dir of its own (named for the stale-process reaper) holding `config` and a data dir.
fn fresh_dir(config: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{PROMETHEUS_PREFIX}{}-", std::process::id()))
        .tempdir()
        .expect("create prometheus dir");
    fs::create_dir(dir.path().join("data")).expect("create prometheus data dir");
    fs::write(dir.path().join("prometheus.yml"), config).expect("write prometheus.yml");
    dir
}

/// The scrape config: one static target per host, its name as `instance`.
fn config(address: &str, hosts: &[String]) -> String {
    let mut out = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
    );
    for host in hosts {
        out.push_str(&format!(
            "      - targets: ['{address}']\n        labels: {{instance: '{host}', __metrics_path__: '/hosts/{host}/metrics'}}\n"
        ));
    }
    out
}

/// Where the textfile of host `name` must be for Prometheus to scrape it, under the
/// directory nginx serves.
pub fn metrics_path(served: &Path, name: &str) -> PathBuf {
    served.join("hosts").join(name).join("metrics")
}
