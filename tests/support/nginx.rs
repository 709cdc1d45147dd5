//! A throwaway nginx on 127.0.0.1 serving a directory, for HTTP(S) source
//! tests that need real conditional requests and an access log.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::stale::{reap_once, NGINX_PREFIX};
use super::tools::{free_port, require_root, require_tool, run_ok, stop_child};

const START_TIMEOUT: Duration = Duration::from_secs(5);
const PORT_ATTEMPTS: usize = 8;

/// A running nginx; killed on Drop.
pub struct Nginx {
    child: Child,
    port: u16,
    cert: Option<PathBuf>,
    dir: TempDir,
}

impl Nginx {
    /// Serves `root` over plain HTTP on 127.0.0.1 and a free port.
    pub fn serve(root: &Path) -> Nginx {
        Self::start(root, false, false)
    }

    /// Serves `root` over plain HTTP with gzip on for every type, as a CDN would.
    pub fn serve_gzip(root: &Path) -> Nginx {
        Self::start(root, false, true)
    }

    /// Serves `root` over HTTPS with a fresh self-signed cert for
    /// localhost/127.0.0.1 (see `cert_path`).
    pub fn serve_tls(root: &Path) -> Nginx {
        Self::start(root, true, false)
    }

    fn start(root: &Path, tls: bool, gzip: bool) -> Nginx {
        require_root();
        reap_once();
        let nginx = require_tool("nginx");
        let dir = tempfile::Builder::new()
            .prefix(&format!("{NGINX_PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("create nginx dir");
        for d in ["logs", "tmp"] {
            fs::create_dir(dir.path().join(d)).expect("create nginx subdir");
        }
        let cert = tls.then(|| make_cert(dir.path()));
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            write_config(dir.path(), root, port, tls, gzip);
            let _ = fs::remove_file(dir.path().join("nginx.pid"));
            let out = File::create(dir.path().join("logs/stderr.log")).expect("create stderr log");
            let mut child = Command::new(&nginx)
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("logs/error.log"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup fd"))
                .stderr(out)
                .spawn()
                .expect("spawn nginx");
            match wait_ready(&mut child, dir.path(), port) {
                Ok(()) => {
                    return Nginx {
                        child,
                        port,
                        cert,
                        dir,
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Another test grabbed the port between our probe and
                    // nginx's bind: pick another one.
                    if e.contains("Address already in use") {
                        last_error = e;
                        continue;
                    }
                    panic!("nginx failed to start: {e}");
                }
            }
        }
        panic!("nginx could not bind a port after {PORT_ATTEMPTS} attempts: {last_error}");
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT` (https for `serve_tls`).
    pub fn url(&self) -> String {
        let scheme = if self.cert.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The TCP port nginx listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The self-signed certificate (PEM) of a TLS server, to trust in clients.
    pub fn cert_path(&self) -> Option<&Path> {
        self.cert.as_deref()
    }

    /// The access log so far (combined format; status is the 9th field).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default()
    }

    /// Per request, oldest first: the path, the body bytes sent and the Content-Encoding
    /// (`-` when none), from the fields appended to the combined log format.
    pub fn transfers(&self) -> Vec<(String, u64, String)> {
        self.access_log()
            .lines()
            .filter_map(|l| {
                let path = l.split('"').nth(1)?.split_whitespace().nth(1)?.to_owned();
                let mut tail = l.rsplit(' ');
                let encoding = tail.next()?.to_owned();
                let bytes = tail.next()?.parse().ok()?;
                Some((path, bytes, encoding))
            })
            .collect()
    }

    /// HTTP statuses from the access log, oldest first.
    pub fn statuses(&self) -> Vec<u16> {
        self.access_log()
            .lines()
            .filter_map(|l| {
                // The request line is quoted; the status follows it.
                let after = l.splitn(3, '"').nth(2)?;
                after.split_whitespace().next()?.parse().ok()
            })
            .collect()
    }

    /// Waits until at least `n` requests are logged (nginx logs after
    /// sending, so a client can finish first); returns the statuses.
    pub fn wait_for_requests(&self, n: usize) -> Vec<u16> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.statuses();
            if s.len() >= n || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(2));
    }
}

fn write_config(dir: &Path, root: &Path, port: u16, tls: bool, gzip: bool) {
    let d = dir.display();
    let tls_lines = if tls {
        format!("ssl_certificate {d}/cert.pem;\n        ssl_certificate_key {d}/key.pem;")
    } else {
        String::new()
    };
    let ssl = if tls { " ssl" } else { "" };
    let gzip = if gzip {
        "gzip on; gzip_types *; gzip_min_length 0;"
    } else {
        ""
    };
    // master_process off: one process, so killing it leaves no orphaned
    // workers holding the port; it also runs as root and can read 0700
    // temp dirs.
    let conf = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    log_format transfers '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $body_bytes_sent $sent_http_content_encoding';
    access_log {d}/logs/access.log transfers;
    {gzip}
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port}{ssl};
        server_name localhost;
        root {root};
        {tls_lines}
    }}
}}
"#,
        root = root.display()
    );
    fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
}

fn wait_ready(child: &mut Child, dir: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default();
            let err = fs::read_to_string(dir.join("logs/stderr.log")).unwrap_or_default();
            return Err(format!("exited {status}\n{log}{err}"));
        }
        // The pid file is written after the listen socket is bound, so a
        // successful connect then is to our nginx, not a squatter.
        if dir.join("nginx.pid").exists() && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not listening on {port} after {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn make_cert(dir: &Path) -> PathBuf {
    let openssl = require_tool("openssl");
    run_ok(
        Command::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
            ])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")),
    );
    dir.join("cert.pem")
}
