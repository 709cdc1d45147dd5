//! Reading manifest, signature and objects from a source, with bounded retries for HTTP.
//!
//! HTTP requests accept gzip, which every static server and CDN can send: the manifest is
//! mostly file names and hashes and shrinks about threefold. Size limits, hashes and the
//! bundle id all apply to the decoded bytes, so compression changes nothing verified.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::blocking::{Client, Response};
use reqwest::header::{ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::error::BundleError;
use super::manifest::MAX_MANIFEST_BYTES;
use super::rollout::{MAX_ROLLOUT_BYTES, ROLLOUT_FILE};
use super::source::{RedactedUrl, Source};
use super::sync::SyncOptions;
use super::OBJECTS_DIR;

/// Largest signature file accepted; real ones are ~300 bytes.
const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;
/// Upper bound on one backoff sleep, whatever the attempt number.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Result of asking for the manifest.
pub(crate) enum ManifestFetch {
    /// 304: the ETag we sent still matches.
    NotModified,
    /// The manifest bytes, and the ETag to send next time.
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

/// What arrived for one object: its real hash and length (at most `size + 1`).
pub(crate) struct Received {
    pub sha256: String,
    pub len: u64,
}

/// One sync's access to a source; HTTP shares one kept-alive client across requests.
pub(crate) enum Fetcher<'a> {
    Dir(&'a Path),
    Http {
        client: Client,
        source: &'a Source,
        opts: &'a SyncOptions,
        /// When the whole sync gives up: every request, retry and backoff fits before it,
        /// so a source that trickles its body or never answers cannot hold a run.
        deadline: Instant,
    },
}

impl<'a> Fetcher<'a> {
    /// Build the fetcher (and, for HTTP, the one client) for a sync.
    pub fn new(source: &'a Source, opts: &'a SyncOptions) -> Result<Fetcher<'a>, BundleError> {
        match source {
            Source::Dir(dir) => Ok(Fetcher::Dir(dir)),
            Source::Http(_) => {
                let client = Client::builder()
                    .connect_timeout(opts.connect_timeout)
                    .timeout(opts.request_timeout)
                    .user_agent(opts.user_agent.clone())
                    .build()
                    .map_err(|e| BundleError::InvalidSource {
                        source_str: source.to_string(),
                        reason: format!("cannot build HTTP client: {}", chain(&e)),
                    })?;
                tracing::info!(
                    source = %source,
                    deadline = %humantime::format_duration(opts.deadline),
                    "fetching the bundle (falls back to the last known good after the deadline)"
                );
                Ok(Fetcher::Http {
                    client,
                    source,
                    opts,
                    deadline: Instant::now() + opts.deadline,
                })
            }
        }
    }

    /// Fetch the manifest at `name` (`manifest.json`, `candidate/manifest.json`),
    /// conditionally when `etag` is given.
    pub fn manifest_at(
        &self,
        name: &str,
        etag: Option<&str>,
    ) -> Result<ManifestFetch, BundleError> {
        match self.conditional(name, etag, MAX_MANIFEST_BYTES)? {
            Some(fetched) => Ok(fetched),
            None => match self {
                Fetcher::Dir(dir) => Err(unreachable_local(
                    &dir.join(name),
                    &format!("no {name} (not a published bundle dir?)"),
                )),
                Fetcher::Http { .. } => Err(BundleError::HttpStatus {
                    url: self.url(name),
                    status: 404,
                }),
            },
        }
    }

    /// Fetch `rollout.json`, conditionally when `etag` is given; `None` when the source has
    /// none (404/410, or no file): no rollout, every host follows `manifest.json`. A 403 is
    /// [`BundleError::RolloutForbidden`], which the host reads as "none" only when it never
    /// followed a rollout from this source (an object store without list permission answers
    /// 403 for a missing key); after one, taking it for none would quietly put every host of
    /// a rollout (or of a halt) on the stable bundle.
    pub fn rollout(&self, etag: Option<&str>) -> Result<Option<ManifestFetch>, BundleError> {
        match self.conditional(ROLLOUT_FILE, etag, MAX_ROLLOUT_BYTES) {
            Err(BundleError::HttpStatus { status: 403, url }) => {
                Err(BundleError::RolloutForbidden { url })
            }
            other => other,
        }
    }

    /// GET `name` (conditionally when `etag` is given), at most `limit` bytes; `None` when
    /// the source has no such file.
    fn conditional(
        &self,
        name: &str,
        etag: Option<&str>,
        limit: u64,
    ) -> Result<Option<ManifestFetch>, BundleError> {
        match self {
            Fetcher::Dir(dir) => Ok(read_local(&dir.join(name), limit)?
                .map(|bytes| ManifestFetch::Body { bytes, etag: None })),
            Fetcher::Http { .. } => {
                let url = self.url(name);
                self.retrying(&url, || {
                    let mut req = self.get(&url)?;
                    if let Some(etag) = etag {
                        req = req.header(IF_NONE_MATCH, etag);
                    }
                    let resp = send(req, &url)?;
                    if resp.status() == StatusCode::NOT_MODIFIED && etag.is_some() {
                        return Ok(Some(ManifestFetch::NotModified));
                    }
                    if matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::GONE) {
                        return Ok(None);
                    }
                    let resp = expect_ok(resp, &url)?;
                    let new_etag = resp
                        .headers()
                        .get(ETAG)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let bytes = read_body(resp, &url, limit)?;
                    Ok(Some(ManifestFetch::Body {
                        bytes,
                        etag: new_etag,
                    }))
                })
            }
        }
    }

    /// Fetch the detached signature `name`; `None` when the source has none.
    pub fn signature_at(&self, name: &str) -> Result<Option<Vec<u8>>, BundleError> {
        match self {
            Fetcher::Dir(dir) => read_local(&dir.join(name), MAX_SIGNATURE_BYTES),
            Fetcher::Http { .. } => {
                let url = self.url(name);
                self.retrying(&url, || {
                    let resp = send(self.get(&url)?, &url)?;
                    if matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::GONE) {
                        return Ok(None);
                    }
                    let resp = expect_ok(resp, &url)?;
                    read_body(resp, &url, MAX_SIGNATURE_BYTES).map(Some)
                })
            }
        }
    }

    /// Stream object `sha256` into `dest` (rewound on each attempt), hashing as it goes.
    ///
    /// At most `size + 1` bytes are read, so a lying server cannot fill the disk and an
    /// oversized object is still detected.
    pub fn object(
        &self,
        sha256: &str,
        size: u64,
        dest: &mut File,
    ) -> Result<Received, BundleError> {
        let name = format!("{OBJECTS_DIR}/{sha256}");
        let url = self.url(&name);
        let attempt = |dest: &mut File, reader: &mut dyn Read| -> Result<Received, io::Error> {
            dest.set_len(0)?;
            dest.rewind()?;
            let mut hasher = Sha256::new();
            let mut buf = [0u8; 64 * 1024];
            let mut len = 0u64;
            let mut limited = reader.take(size + 1);
            loop {
                let n = limited.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                dest.write_all(&buf[..n])?;
                len += n as u64;
            }
            Ok(Received {
                sha256: hex::encode(hasher.finalize()),
                len,
            })
        };
        match self {
            Fetcher::Dir(dir) => {
                let path = dir.join(OBJECTS_DIR).join(sha256);
                let mut file = open_regular(&path)?
                    .ok_or_else(|| unreachable_local(&path, "No such file or directory"))?;
                attempt(dest, &mut file).map_err(|e| unreachable_local(&path, &e.to_string()))
            }
            Fetcher::Http { .. } => self.retrying(&url, || {
                let mut resp = expect_ok(send(self.get(&url)?, &url)?, &url)?;
                let announced = resp.content_length();
                let got = attempt(dest, &mut resp).map_err(|e| body_error(&url, &e))?;
                match announced {
                    Some(n) if got.len < n && got.len <= size => Err(BundleError::Truncated {
                        url: url.clone(),
                        reason: format!("Content-Length {n}, received {}", got.len),
                    }),
                    _ => Ok(got),
                }
            }),
        }
    }

    /// Location of `name` for messages and requests.
    pub fn url(&self, name: &str) -> String {
        match self {
            Fetcher::Dir(dir) => dir.join(name).display().to_string(),
            Fetcher::Http { source, .. } => source.locate(name),
        }
    }

    /// A GET of `url` whose timeout ends no later than the sync's deadline.
    fn get(&self, url: &str) -> Result<reqwest::blocking::RequestBuilder, BundleError> {
        let Fetcher::Http {
            client,
            opts,
            deadline,
            ..
        } = self
        else {
            unreachable!("HTTP request on a directory source")
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(past_deadline(url, opts.deadline));
        }
        tracing::debug!(url = %RedactedUrl(url), left = ?left, "waiting for");
        // reqwest's request timeout covers connecting, the headers and the whole body.
        Ok(client.get(url).timeout(opts.request_timeout.min(left)))
    }

    /// Run `op`, retrying transport failures with exponential backoff and jitter.
    fn retrying<T>(
        &self,
        url: &str,
        mut op: impl FnMut() -> Result<T, BundleError>,
    ) -> Result<T, BundleError> {
        let Fetcher::Http { opts, deadline, .. } = self else {
            return op();
        };
        let mut attempt = 0u32;
        loop {
            tracing::debug!(url = %RedactedUrl(url), attempt, "GET");
            match op() {
                Err(e) if is_transient(&e) && Instant::now() >= *deadline => {
                    return Err(past_deadline(url, opts.deadline));
                }
                Err(e) if attempt < opts.retries && is_transient(&e) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let delay = backoff(opts.backoff, attempt);
                    if delay >= left {
                        // No time for another try: say what was waited for, and why it ended.
                        return Err(BundleError::Unreachable {
                            url: url.to_string(),
                            reason: format!(
                                "{}; no time left to retry within the {} fetch deadline",
                                error_reason(&e),
                                humantime::format_duration(opts.deadline)
                            ),
                        });
                    }
                    tracing::info!(url = %RedactedUrl(url), error = %e, ?delay, "retrying");
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Failures worth another try: the network or an overloaded server, never bad content.
fn is_transient(e: &BundleError) -> bool {
    match e {
        BundleError::Unreachable { .. } | BundleError::Truncated { .. } => true,
        BundleError::HttpStatus { status, .. } => {
            *status >= 500 || *status == 429 || *status == 408
        }
        _ => false,
    }
}

/// `base * 2^attempt`, capped, plus up to 25% jitter so a fleet does not retry in lockstep.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    // Sub-second clock noise is plenty of randomness for spreading retries.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = exp.mul_f64(f64::from(nanos % 1000) / 4000.0);
    exp + jitter
}

fn send(req: reqwest::blocking::RequestBuilder, url: &str) -> Result<Response, BundleError> {
    req.send().map_err(|e| BundleError::Unreachable {
        url: url.to_string(),
        // The error's own copy of the URL may carry credentials; the message names it anyway.
        reason: if e.is_timeout() {
            format!("timed out: {}", chain(&e.without_url()))
        } else {
            chain(&e.without_url())
        },
    })
}

/// The whole fetch ran out of time while waiting for `url`.
fn past_deadline(url: &str, deadline: Duration) -> BundleError {
    BundleError::Unreachable {
        url: url.to_string(),
        reason: format!(
            "timed out: no complete answer within the {} fetch deadline (fetch.deadline)",
            humantime::format_duration(deadline)
        ),
    }
}

/// The reason part of an error, without the URL it would repeat.
fn error_reason(e: &BundleError) -> String {
    match e {
        BundleError::Unreachable { reason, .. } | BundleError::Truncated { reason, .. } => {
            reason.clone()
        }
        other => other.to_string(),
    }
}

fn expect_ok(resp: Response, url: &str) -> Result<Response, BundleError> {
    if resp.status() == StatusCode::OK {
        Ok(resp)
    } else {
        Err(BundleError::HttpStatus {
            url: url.to_string(),
            status: resp.status().as_u16(),
        })
    }
}

fn read_body(resp: Response, url: &str, limit: u64) -> Result<Vec<u8>, BundleError> {
    let announced = resp.content_length();
    let mut bytes = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| body_error(url, &e))?;
    if bytes.len() as u64 > limit {
        return Err(BundleError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    if let Some(n) = announced {
        if (bytes.len() as u64) < n {
            return Err(BundleError::Truncated {
                url: url.to_string(),
                reason: format!("Content-Length {n}, received {}", bytes.len()),
            });
        }
    }
    Ok(bytes)
}

fn body_error(url: &str, e: &io::Error) -> BundleError {
    if timed_out(e) {
        BundleError::Unreachable {
            url: url.to_string(),
            reason: format!("timed out reading body: {}", chain(e)),
        }
    } else {
        BundleError::Truncated {
            url: url.to_string(),
            reason: chain(e),
        }
    }
}

/// Whether a body read ended on a timeout. reqwest hands its own timeout over as an
/// `io::Error` of kind `Other` that wraps a `reqwest::Error`; the wrapped error is looked at,
/// never its message.
fn timed_out(e: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
            // An io::Error's `source` skips the error it wraps; look at that one itself.
            if let Some(inner) = io.get_ref() {
                cur = Some(inner);
                continue;
            }
        }
        if err
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Read a local file, `None` if missing, bounded by `limit`.
fn read_local(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, BundleError> {
    let Some(file) = open_regular(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreachable_local(path, &e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(BundleError::TooLarge {
            url: path.display().to_string(),
            limit,
        });
    }
    Ok(Some(bytes))
}

/// Opens a file of a directory source, `None` if missing. Anything but a regular file (a
/// FIFO, a device, a socket, a directory) is refused before a byte is read: opening a FIFO
/// blocks until a writer comes, and reading a device has no end.
fn open_regular(path: &Path) -> Result<Option<File>, BundleError> {
    match crate::system::tree_file::open_if_regular(path) {
        Ok(Ok(file)) => Ok(Some(file)),
        Ok(Err(what)) => Err(BundleError::SpecialFile {
            path: path.to_path_buf(),
            what,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreachable_local(path, &e.to_string())),
    }
}

fn unreachable_local(path: &Path, reason: &str) -> BundleError {
    BundleError::Unreachable {
        url: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// An error and its causes on one line; reqwest's top-level message alone hides the cause.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_read_is_a_timeout_by_its_error_kind_not_its_words() {
        let said_timed_out = io::Error::other("upstream closed: proxy said timed out");
        assert!(matches!(
            body_error("u", &said_timed_out),
            BundleError::Truncated { .. }
        ));
        let wrapped = io::Error::other(io::Error::from(io::ErrorKind::TimedOut));
        assert!(matches!(
            body_error("u", &wrapped),
            BundleError::Unreachable { .. }
        ));
    }

    /// A server that answers with headers announcing a body it never sends: reqwest's own
    /// timeout ends the read.
    #[test]
    fn a_stalled_body_is_a_timeout() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .unwrap();
            // Hold the connection open until the client gave up.
            let _ = done_rx.recv();
        });
        let client = Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let resp = client.get(format!("http://{addr}/m")).send().unwrap();
        let err = read_body(resp, "u", 100).unwrap_err();
        done_tx.send(()).unwrap();
        server.join().unwrap();
        match err {
            BundleError::Unreachable { reason, .. } => {
                assert!(reason.starts_with("timed out reading body: "), "{reason}")
            }
            other => panic!("not a timeout: {other:?}"),
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_a_quarter() {
        let base = Duration::from_millis(100);
        for attempt in 0..20 {
            let d = backoff(base, attempt);
            let exp = base.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
            assert!(d >= exp && d <= exp + exp / 4, "attempt {attempt}: {d:?}");
        }
    }
}
