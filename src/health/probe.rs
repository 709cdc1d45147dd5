//! The three probes: an HTTP GET, a TCP connect, a command. Each only looks.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::system::process::{tail, Shell};
use crate::system::System;

/// How much of a response body is read to look for `expect_body`.
const BODY_LIMIT: u64 = 1 << 20;

/// How many characters of a failing response body a reason quotes.
const BODY_EXCERPT_CHARS: usize = 200;

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// GET a URL; it must answer `status` and, when given, contain `body`.
    Http {
        /// http:// or https:// URL.
        url: String,
        /// Expected status code.
        status: u16,
        /// Substring the body must contain.
        body: Option<String>,
    },
    /// `host:port` must accept a connection.
    Tcp(String),
    /// `sh -c COMMAND` must exit 0.
    Command(String),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Http { url, status, body } => {
                write!(f, "GET {url} → {status}")?;
                if let Some(b) = body {
                    write!(f, " with {b:?} in the body")?;
                }
                Ok(())
            }
            Probe::Tcp(addr) => write!(f, "connect to {addr}"),
            Probe::Command(c) => write!(f, "`{c}` exits 0"),
        }
    }
}

/// Why one attempt failed, and what kind of failure that is (for the JSON report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `http_status`, `http_body`, `http_request`, `connect`, `resolve`, `timeout`,
    /// `command_failed`...
    pub kind: &'static str,
    /// What the attempt saw.
    pub why: String,
}

fn fail(kind: &'static str, why: String) -> Failure {
    Failure { kind, why }
}

impl Probe {
    /// One attempt: what it saw when it passed, or why it failed.
    pub fn attempt(&self, sys: &System, timeout: Duration) -> Result<String, Failure> {
        match self {
            Probe::Http { url, status, body } => http(url, *status, body.as_deref(), timeout),
            Probe::Tcp(addr) => tcp(addr, timeout),
            Probe::Command(script) => command(sys, script, timeout),
        }
    }
}

fn http(url: &str, want: u16, body: Option<&str>, timeout: Duration) -> Result<String, Failure> {
    // A health endpoint is asked directly: no proxy from the environment, no redirects
    // (a 301 to a login page is not "healthy").
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| fail("http_client", format!("cannot make an HTTP client: {e}")))?;
    let response = client.get(url).send().map_err(|e| {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "http_request"
        };
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        fail(kind, why)
    })?;
    let got = response.status().as_u16();
    let mut text = String::new();
    let _ = response.take(BODY_LIMIT).read_to_string(&mut text);
    if got != want {
        // The reason ends up in the rollback record, history and report: an error page's
        // whole HTML there buries the point, so keep only its start, on one line.
        let excerpt = body_excerpt(&text);
        let why = if excerpt.is_empty() {
            format!("HTTP {got}, expected {want}")
        } else {
            format!("HTTP {got}, expected {want}: {excerpt}")
        };
        return Err(fail("http_status", why));
    }
    if let Some(b) = body {
        if !text.contains(b) {
            let why = format!("HTTP {got}, but the body does not contain {b:?}");
            return Err(fail("http_body", why));
        }
    }
    Ok(format!("HTTP {got}"))
}

/// The start of a response body as one line: control characters escaped, "…" when cut.
fn body_excerpt(text: &str) -> String {
    let text = text.trim();
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(BODY_EXCERPT_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

fn tcp(addr: &str, timeout: Duration) -> Result<String, Failure> {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| fail("resolve", format!("cannot resolve {addr}: {e}")))?
        .collect();
    let (mut kind, mut last) = ("resolve", String::from("no address"));
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(format!("connected to {a}")),
            Err(e) => {
                kind = match e.kind() {
                    std::io::ErrorKind::TimedOut => "timeout",
                    _ => "connect",
                };
                last = e.to_string();
            }
        }
    }
    Err(fail(kind, format!("cannot connect to {addr}: {last}")))
}

fn command(sys: &System, script: &str, timeout: Duration) -> Result<String, Failure> {
    let env = BTreeMap::new();
    let shell = Shell {
        label: script,
        script,
        cwd: None,
        user: None,
        env: &env,
        timeout,
    };
    let done = sys
        .run_guard(&shell)
        .map_err(|e| fail(e.kind(), e.to_string()))?;
    let mut both = done.stdout;
    both.extend_from_slice(&done.stderr);
    let output = tail(&both);
    if done.status.success() {
        return Ok(if output.is_empty() {
            "exited 0".into()
        } else {
            format!("exited 0: {output}")
        });
    }
    let status = match done.status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("was killed ({})", done.status),
    };
    let why = if output.is_empty() {
        status
    } else {
        format!("{status}: {output}")
    };
    Err(fail("command_failed", why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// Serves one request with `status` and `body` on a loopback port; returns the URL.
    fn serve_once(status: &str, body: String) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let status = status.to_owned();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).unwrap();
            conn.write_all(body.as_bytes()).unwrap();
        });
        url
    }

    #[test]
    fn a_failing_status_quotes_only_the_start_of_the_body_on_one_line() {
        let page = format!(
            "<!DOCTYPE html>\n<html>\n\t<head><title>502 Bad Gateway</title></head>\n<body>{}</body></html>\n",
            "<p>upstream gone</p>\n".repeat(500)
        );
        let url = serve_once("502 Bad Gateway", page.clone());
        let err = http(&url, 200, None, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind, "http_status");
        assert!(!err.why.contains('\n'), "{:?}", err.why);
        assert!(!err.why.contains('\t'), "{:?}", err.why);
        let excerpt = err.why.strip_prefix("HTTP 502, expected 200: ").unwrap();
        let start: String = page.chars().take(BODY_EXCERPT_CHARS).collect();
        let want = format!("{}…", start.replace('\n', "\\n").replace('\t', "\\t"));
        assert_eq!(excerpt, want);
    }

    #[test]
    fn a_short_body_is_quoted_whole() {
        assert_eq!(
            body_excerpt("down for maintenance\n"),
            "down for maintenance"
        );
        assert_eq!(body_excerpt("a\rb\u{1b}[31m"), "a\\rb\\u{1b}[31m");
        let exact = "x".repeat(BODY_EXCERPT_CHARS);
        assert_eq!(body_excerpt(&exact), exact);
    }
}
