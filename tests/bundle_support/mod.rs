//! A tiny HTTP/1.1 static file server for bundle tests, with injectable faults.
//!
//! It serves a published OUT dir with ETags and 304s, keeps connections alive like a
//! real server, logs every request, and stops after a bounded number of requests or
//! when dropped.

#![allow(dead_code)]

pub mod fixture;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Requests served before the server stops by itself, so a runaway client cannot hang a test.
const MAX_REQUESTS: usize = 5000;

/// A misbehaviour to apply to one path.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Sleep this long before answering normally.
    Delay(Duration),
    /// Announce the full Content-Length, send only half the body, then close.
    Truncate,
    /// Serve these bytes instead of the file (with a matching Content-Length).
    Body(Vec<u8>),
    /// Announce the full Content-Length, then send one byte of the body per interval.
    Trickle(Duration),
    /// Read the request and never answer (until the server stops, at most a minute).
    Silent,
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub if_none_match: Option<String>,
    pub user_agent: Option<String>,
    /// Which TCP connection carried it (numbered in accept order), to check keep-alive.
    pub connection: usize,
    pub status: u16,
}

struct Shared {
    root: PathBuf,
    faults: Mutex<Vec<(String, Fault, Option<usize>)>>,
    log: Mutex<Vec<Request>>,
    served: AtomicUsize,
    stop: AtomicBool,
}

/// A running server; stops on drop.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serve `root` on 127.0.0.1 on a free port.
    pub fn serve(root: &Path) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            served: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                if s.stop.load(Ordering::SeqCst) || s.served.load(Ordering::SeqCst) >= MAX_REQUESTS
                {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || handle(conn, n, &s));
            }
        });
        TestServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Base URL of the served bundle.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Apply `fault` to requests for `path` (e.g. `/manifest.json`, or `/objects/*` for a
    /// prefix) until cleared.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.add_fault(path, fault, None);
    }

    /// Apply `fault` to the next `times` requests for `path` only.
    pub fn fault_times(&self, path: &str, fault: Fault, times: usize) {
        self.add_fault(path, fault, Some(times));
    }

    fn add_fault(&self, path: &str, fault: Fault, times: Option<usize>) {
        self.shared
            .faults
            .lock()
            .unwrap()
            .push((path.to_string(), fault, times));
    }

    /// Remove all faults.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Requests served since the last `take_requests`.
    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut *self.shared.log.lock().unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// A URL on which nothing listens: bind a port, then free it.
pub fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/")
}

fn handle(conn: TcpStream, connection: usize, s: &Shared) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    // Head and body go out in separate writes; without this, Nagle plus the client's
    // delayed ACK adds 40 ms to every response.
    conn.set_nodelay(true).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut req = Request {
            path: line.split_whitespace().nth(1).unwrap_or("/").to_string(),
            if_none_match: None,
            user_agent: None,
            connection,
            status: 0,
        };
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("if-none-match") {
                    req.if_none_match = Some(v.trim().to_string());
                } else if k.eq_ignore_ascii_case("user-agent") {
                    req.user_agent = Some(v.trim().to_string());
                }
            }
        }
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        s.served.fetch_add(1, Ordering::SeqCst);
        let fault = take_fault(s, &req.path);
        let keep_going = respond(&mut out, s, req, fault);
        if !keep_going {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// The fault for `path`, if any, using up one of a counted fault's requests.
fn take_fault(s: &Shared, path: &str) -> Option<Fault> {
    let mut faults = s.faults.lock().unwrap();
    let i = faults
        .iter()
        .position(|(p, _, _)| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => p == path,
        })?;
    let fault = faults[i].1.clone();
    if let Some(n) = &mut faults[i].2 {
        *n -= 1;
        if *n == 0 {
            faults.remove(i);
        }
    }
    Some(fault)
}

/// Write one response; false when the connection must be closed.
fn respond(out: &mut TcpStream, s: &Shared, req: Request, fault: Option<Fault>) -> bool {
    let path = req.path.as_str();
    let if_none_match = req.if_none_match.clone();
    let log = |status: u16| {
        s.log.lock().unwrap().push(Request {
            status,
            ..req.clone()
        })
    };
    if let Some(Fault::Delay(d)) = &fault {
        thread::sleep(*d);
    }
    if let Some(Fault::Silent) = fault {
        log(0);
        for _ in 0..600 {
            if s.stop.load(Ordering::SeqCst) {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        return false;
    }
    if let Some(Fault::Status(code)) = fault {
        log(code);
        return write_head(out, code, 0, None).is_ok();
    }
    let body = match (&fault, read_file(&s.root, path)) {
        (Some(Fault::Body(b)), _) => b.clone(),
        (_, Some(b)) => b,
        (_, None) => {
            log(404);
            return write_head(out, 404, 0, None).is_ok();
        }
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..16]);
    if if_none_match.as_deref() == Some(etag.as_str()) {
        log(304);
        return write_head(out, 304, 0, Some(&etag)).is_ok();
    }
    log(200);
    if write_head(out, 200, body.len(), Some(&etag)).is_err() {
        return false;
    }
    if let Some(Fault::Trickle(every)) = fault {
        // Stops when the client hangs up (a write fails) or the server stops.
        for byte in body.chunks(1) {
            if s.stop.load(Ordering::SeqCst)
                || out.write_all(byte).and_then(|()| out.flush()).is_err()
            {
                return false;
            }
            thread::sleep(every);
        }
        return true;
    }
    if let Some(Fault::Truncate) = fault {
        let _ = out.write_all(&body[..body.len() / 2]);
        let _ = out.flush();
        return false;
    }
    out.write_all(&body).is_ok() && out.flush().is_ok()
}

fn write_head(
    out: &mut TcpStream,
    status: u16,
    len: usize,
    etag: Option<&str>,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    if status != 304 {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    if let Some(e) = etag {
        head.push_str(&format!("ETag: {e}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

fn read_file(root: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    let mut f = std::fs::File::open(root.join(rel)).ok()?;
    let mut b = Vec::new();
    f.read_to_end(&mut b).ok()?;
    Some(b)
}
