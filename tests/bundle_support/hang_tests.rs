//! Sources that hang: a body trickled a byte at a time, a server that never answers, a FIFO
//! in a directory source. Each run falls back to the last known good within the fetch
//! deadline, or refuses the special file without reading it.

use std::time::Duration;

use super::bundle_support::fixture::{fast_opts, Scenario};
use super::bundle_support::{Fault, TestServer};
use super::{
    assert_kept_last_known_good, http, refused_reason, stale_reason, synced_then_republished,
};
use converge::bundle::{publish, sync, Source, SyncOptions};

/// Per-request timeouts far beyond the deadline, and retries: only the overall deadline can
/// end these syncs early.
fn patient_opts_with_deadline() -> SyncOptions {
    SyncOptions {
        request_timeout: Duration::from_secs(120),
        retries: 3,
        deadline: Duration::from_millis(1500),
        ..fast_opts(vec![])
    }
}

#[test]
fn a_body_trickled_a_byte_at_a_time_ends_at_the_fetch_deadline() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    server.fault("/manifest.json", Fault::Trickle(Duration::from_millis(200)));
    let o = sync(&http(&server), &s.state(), &patient_opts_with_deadline()).unwrap();
    let reason = stale_reason(&o);
    assert!(
        reason.starts_with(&format!(
            "{}manifest.json: timed out: no complete answer within the 1s 500ms fetch deadline",
            server.url()
        )),
        "{reason}"
    );
    assert_kept_last_known_good(&s, &good, &files, &o);
}

#[test]
fn a_server_that_accepts_and_never_answers_ends_at_the_fetch_deadline() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    server.fault("/manifest.json", Fault::Silent);
    let o = sync(&http(&server), &s.state(), &patient_opts_with_deadline()).unwrap();
    let reason = stale_reason(&o);
    assert!(
        reason.starts_with(&format!(
            "{}manifest.json: timed out: no complete answer within the 1s 500ms fetch deadline",
            server.url()
        )),
        "{reason}"
    );
    assert_kept_last_known_good(&s, &good, &files, &o);
    // The one request that hung; the deadline left no time for another.
    assert_eq!(server.take_requests().len(), 1);
}

#[test]
fn a_fifo_in_a_directory_source_is_refused_without_being_read() {
    let s = Scenario::new();
    publish(&s.src(), &s.out(), None).unwrap();
    let source = Source::Dir(s.out());
    let good = sync(&source, &s.state(), &fast_opts(vec![])).unwrap();
    s.write("files/new", "new object\n");
    publish(&s.src(), &s.out(), None).unwrap();
    // The new object is a FIFO nobody writes to: opening it for reading would block forever.
    let object = s
        .out()
        .join(s.object_url_path("files/new").trim_start_matches('/'));
    std::fs::remove_file(&object).unwrap();
    nix::unistd::mkfifo(&object, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let o = sync(&source, &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(
        refused_reason(&o),
        format!(
            "{}: is a FIFO, not a regular file; refused without reading it",
            object.display()
        )
    );
    assert_eq!(o.id, good.id);

    // The same for the manifest itself.
    let manifest = s.out().join("manifest.json");
    std::fs::remove_file(&manifest).unwrap();
    nix::unistd::mkfifo(&manifest, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let o = sync(&source, &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(
        refused_reason(&o),
        format!(
            "{}: is a FIFO, not a regular file; refused without reading it",
            manifest.display()
        )
    );
}
