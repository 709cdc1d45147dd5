//! Bundle layer end to end: publish a tree, serve it over real HTTP (with faults) or from
//! disk, sync a state dir, and check exactly what was fetched and what is current.

mod bundle_support;
#[path = "bundle_support/crash_tests.rs"]
mod crash_tests;
#[path = "bundle_support/hang_tests.rs"]
mod hang_tests;
#[path = "bundle_support/ordering_tests.rs"]
mod ordering_tests;
#[path = "bundle_support/signing_tests.rs"]
mod signing_tests;
mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use bundle_support::fixture::{fast_opts, sample_files, tree, Scenario};
use bundle_support::{closed_port_url, Fault, TestServer};
use converge::bundle::{
    generate_keypair, publish, publish_unsigned, sync, BundleError, Freshness, Manifest,
    SecretKeyFile, Source, SyncOutcome, TrustedKey,
};

/// Distinct objects in the sample tree (motd and issue share one).
const SAMPLE_OBJECTS: usize = 5;

fn http(server: &TestServer) -> Source {
    Source::parse(&server.url()).unwrap()
}

fn expect_source_tree(s: &Scenario, outcome: &SyncOutcome) {
    let want: std::collections::BTreeMap<String, Vec<u8>> = tree(&s.src());
    assert_eq!(
        tree(&outcome.bundle_dir),
        want,
        "bundle differs from source"
    );
}

/// Sync once successfully, then change the tree and republish, so a fault on the next sync
/// has a last known good to fall back to. Returns the good outcome and its files.
fn synced_then_republished(
    s: &Scenario,
    server: &TestServer,
) -> (SyncOutcome, std::collections::BTreeMap<String, Vec<u8>>) {
    publish(&s.src(), &s.out(), None).unwrap();
    let good = sync(&http(server), &s.state(), &fast_opts(vec![])).unwrap();
    assert!(matches!(good.freshness, Freshness::Fresh { .. }));
    let files = tree(&good.bundle_dir);
    s.write("roles/web.toml", "# changed\n");
    s.write("files/new", "new object\n");
    publish(&s.src(), &s.out(), None).unwrap();
    server.take_requests();
    (good, files)
}

/// After a failed sync: same id returned, `current` untouched, files byte-identical,
/// and the bad bundle never materialised.
fn assert_kept_last_known_good(
    s: &Scenario,
    good: &SyncOutcome,
    files: &std::collections::BTreeMap<String, Vec<u8>>,
    got: &SyncOutcome,
) {
    assert_eq!(got.id, good.id);
    assert_eq!(got.bundle_dir, good.bundle_dir);
    assert_eq!(got.fetched_at, good.fetched_at);
    assert_eq!(s.current_id().as_deref(), Some(good.id.as_str()));
    assert_eq!(&tree(&got.bundle_dir), files);
    assert_eq!(
        s.bundle_ids(),
        vec![good.id.clone()],
        "no other bundle materialised"
    );
}

fn stale_reason(o: &SyncOutcome) -> &str {
    match &o.freshness {
        Freshness::Stale { reason } => reason,
        other => panic!("expected Stale, got {other:?}"),
    }
}

fn refused_reason(o: &SyncOutcome) -> &str {
    match &o.freshness {
        Freshness::Refused { reason } => reason,
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn first_sync_fetches_everything_and_an_unchanged_poll_is_one_304() {
    let s = Scenario::new();
    let published = publish(&s.src(), &s.out(), None).unwrap();
    assert_eq!(published.files, sample_files().len());
    assert_eq!(published.new_objects, SAMPLE_OBJECTS);
    let server = TestServer::serve(&s.out());

    let first = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(
        first.freshness,
        Freshness::Fresh {
            fetched_objects: SAMPLE_OBJECTS
        }
    );
    assert_eq!(first.id, published.id);
    assert_eq!(
        first.bundle_dir,
        s.state().join("bundles").join(&published.id)
    );
    assert_eq!(s.current_id(), Some(published.id.clone()));
    expect_source_tree(&s, &first);
    assert!(first.bundle_age() < Duration::from_secs(5));
    let reqs = server.take_requests();
    assert_eq!(reqs.len(), 1 + SAMPLE_OBJECTS);
    assert_eq!(reqs[0].path, "/manifest.json");
    assert!(reqs.iter().all(|r| r.status == 200));
    assert!(reqs.iter().skip(1).all(|r| r.path.starts_with("/objects/")));
    // One kept-alive connection for the whole sync, and an agent that says who it is.
    assert!(
        reqs.iter().all(|r| r.connection == reqs[0].connection),
        "{reqs:?}"
    );
    let ua = reqs[0].user_agent.as_deref().unwrap();
    assert!(ua.starts_with("converge/"), "{ua}");

    let second = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(second.freshness, Freshness::Unchanged);
    assert_eq!(second.id, first.id);
    assert_eq!(
        second.fetched_at, first.fetched_at,
        "age counts from the fetch"
    );
    let reqs = server.take_requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/manifest.json");
    assert_eq!(reqs[0].status, 304);
    assert!(reqs[0].if_none_match.is_some());
}

#[test]
fn republishing_a_changed_file_downloads_only_that_object() {
    let s = Scenario::new();
    let first_pub = publish(&s.src(), &s.out(), None).unwrap();
    let server = TestServer::serve(&s.out());
    sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    server.take_requests();

    s.write("roles/web.toml", "include = [\"base\"]\n# tuned\n");
    let second_pub = publish(&s.src(), &s.out(), None).unwrap();
    assert_eq!(second_pub.new_objects, 1);
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(o.freshness, Freshness::Fresh { fetched_objects: 1 });
    assert_eq!(o.id, second_pub.id);
    expect_source_tree(&s, &o);
    let reqs = server.take_requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/manifest.json",
            s.object_url_path("roles/web.toml").as_str()
        ]
    );

    // The previous bundle is kept as last known good; a third bundle evicts the first.
    assert_eq!(s.bundle_ids().len(), 2);
    s.write("files/motd", "third\n");
    let third_pub = publish(&s.src(), &s.out(), None).unwrap();
    sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    let mut expected = vec![second_pub.id.clone(), third_pub.id.clone()];
    expected.sort();
    assert_eq!(s.bundle_ids(), expected);
    assert!(!s.bundle_ids().contains(&first_pub.id));
    let prev = fs::read_link(s.state().join("previous")).unwrap();
    assert_eq!(prev, Path::new("bundles").join(&second_pub.id));
    // Objects only the evicted bundle used are gone; the rest are exactly what the two
    // kept bundles reference.
    let referenced: std::collections::BTreeSet<String> = s
        .bundle_ids()
        .iter()
        .flat_map(|id| {
            let m = fs::read(s.state().join("bundles").join(id).join(".manifest.json")).unwrap();
            converge::bundle::Manifest::parse(&m, "t")
                .unwrap()
                .files
                .into_values()
                .map(|e| e.sha256)
        })
        .collect();
    let stored: std::collections::BTreeSet<String> = fs::read_dir(s.state().join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stored, referenced);
    // Old web.toml is gone; the new motd is added (issue keeps the old shared content).
    assert_eq!(stored.len(), SAMPLE_OBJECTS + 1);
}

#[test]
fn a_no_op_publish_writes_no_objects_but_a_newer_manifest() {
    let s = Scenario::new();
    let a = publish(&s.src(), &s.out(), None).unwrap();
    let before = Manifest::parse(&fs::read(s.out().join("manifest.json")).unwrap(), "a").unwrap();
    let b = publish(&s.src(), &s.out(), None).unwrap();
    assert!(b.unchanged);
    assert_eq!(b.new_objects, 0);
    assert_ne!(b.id, a.id);
    let after = Manifest::parse(&fs::read(s.out().join("manifest.json")).unwrap(), "b").unwrap();
    assert_eq!(after.files, before.files);
    assert!(after.created_at().unwrap() > before.created_at().unwrap());
}

#[test]
fn server_error_leaves_the_last_known_good_current() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    server.fault("/manifest.json", Fault::Status(500));
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert!(
        stale_reason(&o).contains("manifest.json: HTTP status 500"),
        "{o:?}"
    );
    assert_kept_last_known_good(&s, &good, &files, &o);
    // One attempt plus the one configured retry.
    assert_eq!(server.take_requests().len(), 2);
}

#[test]
fn a_server_slower_than_the_timeout_is_stale() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    server.fault("/manifest.json", Fault::Delay(Duration::from_millis(1500)));
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert!(stale_reason(&o).contains("timed out"), "{o:?}");
    assert_kept_last_known_good(&s, &good, &files, &o);
}

#[test]
fn a_truncated_object_is_stale_and_never_stored() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    let obj = s.object_url_path("files/new");
    server.fault(&obj, Fault::Truncate);
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert!(stale_reason(&o).contains("body truncated"), "{o:?}");
    assert!(stale_reason(&o).contains(obj.as_str()), "{o:?}");
    assert_kept_last_known_good(&s, &good, &files, &o);
    let name = obj.trim_start_matches("/objects/");
    assert!(!s.state().join("objects").join(name).exists());
    let leftovers: Vec<_> = fs::read_dir(s.state().join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Once the server behaves, the same sync completes.
    server.clear_faults();
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(o.freshness, Freshness::Fresh { fetched_objects: 2 });
    expect_source_tree(&s, &o);
}

#[test]
fn an_object_with_wrong_bytes_is_refused() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    let obj = s.object_url_path("files/new");
    // Same length, different content: only the hash can tell.
    server.fault(&obj, Fault::Body(b"NEW OBJECT\n".to_vec()));
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    let reason = refused_reason(&o);
    assert!(
        reason.contains("(files/new): content mismatch: expected sha256"),
        "{reason}"
    );
    assert_kept_last_known_good(&s, &good, &files, &o);
    let name = obj.trim_start_matches("/objects/");
    assert!(!s.state().join("objects").join(name).exists());
}

#[test]
fn an_oversized_object_is_refused_without_reading_it_all() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    server.fault(
        &s.object_url_path("files/new"),
        Fault::Body(vec![b'x'; 1 << 20]),
    );
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert!(refused_reason(&o).contains("more than 11 bytes"), "{o:?}");
    assert_kept_last_known_good(&s, &good, &files, &o);
}

#[test]
fn an_endless_manifest_is_refused_at_the_size_limit() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    server.fault("/manifest.json", Fault::Body(vec![b' '; 17 << 20]));
    // 16 MiB must arrive before the size limit can speak: a 400 ms request timeout would
    // turn a busy machine's slow transfer into "stale".
    let opts = converge::bundle::SyncOptions {
        request_timeout: Duration::from_secs(30),
        ..fast_opts(vec![])
    };
    let o = sync(&http(&server), &s.state(), &opts).unwrap();
    assert!(
        refused_reason(&o).contains("larger than the 16777216-byte limit"),
        "{o:?}"
    );
    assert_kept_last_known_good(&s, &good, &files, &o);
}

#[test]
fn a_missing_object_is_stale() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    server.fault(&s.object_url_path("files/new"), Fault::Status(404));
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert!(stale_reason(&o).contains("HTTP status 404"), "{o:?}");
    assert_kept_last_known_good(&s, &good, &files, &o);
}

#[test]
fn a_malformed_manifest_is_refused() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    let evil = br#"{"format":1,"created":"x","files":{"../../etc/cron.d/x":{"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}}}"#;
    server.fault("/manifest.json", Fault::Body(evil.to_vec()));
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert!(
        refused_reason(&o).contains("malformed manifest: file \"../../etc/cron.d/x\""),
        "{o:?}"
    );
    assert_kept_last_known_good(&s, &good, &files, &o);
    assert!(!s.tmp.path().join("etc").exists());
}

#[test]
fn a_source_that_is_down_is_stale_and_without_last_known_good_an_error() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, files) = synced_then_republished(&s, &server);
    let down = Source::parse(&closed_port_url()).unwrap();
    let o = sync(&down, &s.state(), &fast_opts(vec![])).unwrap();
    assert!(stale_reason(&o).contains("manifest.json"), "{o:?}");
    assert_kept_last_known_good(&s, &good, &files, &o);

    let fresh = Scenario::new();
    let err = sync(&down, &fresh.state(), &fast_opts(vec![])).unwrap_err();
    assert!(matches!(err, BundleError::Unreachable { .. }), "{err:?}");
    assert!(!err.is_bad_content());
}

#[test]
fn file_sources_get_the_same_verification() {
    let s = Scenario::new();
    let keys = generate_keypair(s.tmp.path()).unwrap();
    let signer = SecretKeyFile::load_with_password(&keys.secret, None).unwrap();
    let trusted = vec![TrustedKey::from_file(&keys.public).unwrap()];
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let url = Source::parse(&format!("file://{}", s.out().display())).unwrap();
    let o = sync(&url, &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert_eq!(
        o.freshness,
        Freshness::Fresh {
            fetched_objects: SAMPLE_OBJECTS
        }
    );
    expect_source_tree(&s, &o);
    let plain = Source::parse(s.out().to_str().unwrap()).unwrap();
    let again = sync(&plain, &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert_eq!(again.freshness, Freshness::Unchanged);

    // Corrupt the published object of a changed file.
    let good_files = tree(&o.bundle_dir);
    s.write("files/motd", "changed\n");
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let obj = s
        .out()
        .join(s.object_url_path("files/motd").trim_start_matches('/'));
    fs::write(&obj, "CHANGED\n").unwrap();
    let r = sync(&plain, &s.state(), &fast_opts(trusted)).unwrap();
    assert!(refused_reason(&r).contains("content mismatch"), "{r:?}");
    assert_kept_last_known_good(&s, &o, &good_files, &r);

    // A directory that is not a published bundle is unreachable, not bad content.
    let r = sync(&Source::Dir(s.src()), &s.state(), &fast_opts(vec![])).unwrap();
    assert!(stale_reason(&r).contains("no manifest.json"), "{r:?}");
}

#[test]
fn leftovers_of_a_killed_sync_are_swept_and_current_stays_complete() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    let (good, _) = synced_then_republished(&s, &server);
    let state = s.state();
    // What a kill -9 at various points leaves behind: a half-written object, a
    // half-built bundle, a half-made link, and sync.json still naming the old bundle.
    fs::write(state.join("objects/.tmp-abc"), "half").unwrap();
    fs::create_dir_all(state.join("bundles/.tmp-def/roles")).unwrap();
    std::os::unix::fs::symlink("bundles/nowhere", state.join(".tmp-current-1")).unwrap();
    fs::write(state.join("sync.json"), "{ truncated").unwrap();

    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(o.freshness, Freshness::Fresh { fetched_objects: 2 });
    expect_source_tree(&s, &o);
    let reqs = server.take_requests();
    assert_eq!(
        reqs[0].if_none_match, None,
        "unreadable state means no conditional GET"
    );
    assert!(!state.join("objects/.tmp-abc").exists());
    assert!(!state.join("bundles/.tmp-def").exists());
    assert!(!state.join(".tmp-current-1").exists());
    let mut expected = vec![good.id.clone(), o.id.clone()];
    expected.sort();
    assert_eq!(s.bundle_ids(), expected);
}

#[test]
fn publish_leaves_out_what_is_not_part_of_a_bundle() {
    let s = Scenario::new();
    s.write("README.md", "# config repo\n");
    s.write("ci/pipeline.yml", "steps: []\n");
    publish(&s.src(), &s.out(), None).unwrap();
    let manifest = fs::read_to_string(s.out().join("manifest.json")).unwrap();
    assert!(manifest.contains("roles/web.toml"), "{manifest}");
    assert!(
        !manifest.contains("README") && !manifest.contains("ci/"),
        "{manifest}"
    );
}

#[test]
fn publish_refuses_what_it_cannot_ship_safely() {
    let check = |setup: &dyn Fn(&Scenario), why: &str| {
        let s = Scenario::new();
        setup(&s);
        let err = publish(&s.src(), &s.out(), None).unwrap_err();
        assert!(matches!(err, BundleError::SourceTree { .. }), "{err:?}");
        assert!(err.to_string().contains(why), "{err}");
        assert!(!s.out().join("manifest.json").exists());
    };
    check(
        &|s| fs::rename(s.src().join("roles"), s.src().join("role")).unwrap(),
        "has no roles/ directory",
    );
    check(
        &|s| {
            fs::rename(s.src().join("files"), s.tmp.path().join("elsewhere")).unwrap();
            std::os::unix::fs::symlink("../elsewhere", s.src().join("files")).unwrap()
        },
        "must be a real directory",
    );
    check(
        &|s| std::os::unix::fs::symlink("/etc/passwd", s.src().join("files/passwd")).unwrap(),
        "symlink to absolute path /etc/passwd",
    );
    check(
        &|s| {
            fs::write(s.tmp.path().join("outside"), "x").unwrap();
            std::os::unix::fs::symlink("../../outside", s.src().join("files/o")).unwrap()
        },
        "symlink escapes the source tree",
    );
    check(
        &|s| std::os::unix::fs::symlink("../roles", s.src().join("files/dir")).unwrap(),
        "symlink to something other than a regular file",
    );
    check(
        &|s| {
            nix::unistd::mkfifo(&s.src().join("files/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap()
        },
        "not a regular file",
    );
}

#[test]
fn publish_follows_inner_relative_symlinks_and_skips_hidden_top_level_entries() {
    let s = Scenario::new();
    s.write(".git/config", "[core]\n");
    s.write("files/skel/.bashrc", "alias ll='ls -l'\n");
    std::os::unix::fs::symlink("motd", s.src().join("files/motd.link")).unwrap();
    publish(&s.src(), &s.out(), None).unwrap();
    let server = TestServer::serve(&s.out());
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    let files = tree(&o.bundle_dir);
    assert_eq!(files["files/motd.link"], b"managed by converge\n");
    assert_eq!(files["files/skel/.bashrc"], b"alias ll='ls -l'\n");
    assert!(!files.keys().any(|k| k.starts_with(".git")));
}

#[test]
fn concurrent_syncs_of_one_state_dir_serialise_on_the_lock() {
    let s = Scenario::new();
    let published = publish(&s.src(), &s.out(), None).unwrap();
    let server = TestServer::serve(&s.out());
    let source = http(&server);
    let outcomes: Vec<SyncOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| sync(&source, &s.state(), &fast_opts(vec![])).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(outcomes.iter().all(|o| o.id == published.id));
    let fresh = outcomes
        .iter()
        .filter(|o| matches!(o.freshness, Freshness::Fresh { .. }))
        .count();
    assert_eq!(fresh, 1, "{outcomes:?}");
    assert_eq!(
        server
            .take_requests()
            .iter()
            .filter(|r| r.path.starts_with("/objects/"))
            .count(),
        SAMPLE_OBJECTS,
        "each object downloaded once"
    );
    expect_source_tree(&s, &outcomes[0]);
}

#[test]
fn with_keys_configured_a_fallback_only_uses_a_bundle_signed_by_a_trusted_key() {
    let s = Scenario::new();
    let keys = generate_keypair(s.tmp.path()).unwrap();
    let key_id = keys.key_id.clone();
    let signer = SecretKeyFile::load_with_password(&keys.secret, None).unwrap();
    let trusted = vec![TrustedKey::from_file(&keys.public).unwrap()];

    // Before keys are configured, an unsigned bundle becomes current.
    let unsigned = publish(&s.src(), &s.out(), None).unwrap();
    let server = TestServer::serve(&s.out());
    sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();

    // Keys configured while the source still serves it unsigned: that bundle is not a last
    // known good, so there is nothing to apply.
    let err = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap_err();
    assert!(
        matches!(err, BundleError::NoTrustedBundle { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "no bundle signed by a trusted key is available (current bundle {} is unsigned); sync failed: ",
            unsigned.id
        )),
        "{msg}"
    );
    assert!(msg.contains("signature required"), "{msg}");
    assert_eq!(s.current_id(), Some(unsigned.id.clone()), "state untouched");
    // The same when the source is down rather than serving bad content.
    let down = Source::parse(&closed_port_url()).unwrap();
    let err = sync(&down, &s.state(), &fast_opts(trusted.clone())).unwrap_err();
    assert!(
        matches!(err, BundleError::NoTrustedBundle { .. }),
        "{err:?}"
    );

    // A signed publish is accepted, its signer recorded, and it is a valid fallback.
    s.write("files/motd", "signed\n");
    let signed = publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let good = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert!(
        matches!(good.freshness, Freshness::Fresh { .. }),
        "{good:?}"
    );
    assert_eq!(good.id, signed.id);
    let good_files = tree(&good.bundle_dir);
    server.fault("/manifest.json", Fault::Status(500));
    let o = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert!(stale_reason(&o).contains("HTTP status 500"), "{o:?}");
    assert_eq!(o.id, signed.id);
    server.clear_faults();

    // An unsigned bundle synced without keys (say, a config rollout that dropped them)
    // becomes current; the signed one moves to previous with its signer.
    s.write("files/motd", "unsigned again\n");
    let unsigned2 = publish_unsigned(&s.src(), &s.out()).unwrap();
    let o = sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(o.id, unsigned2.id);
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(s.state().join("sync.json")).unwrap()).unwrap();
    assert_eq!(state["signer"], serde_json::Value::Null);
    assert_eq!(state["previous"]["id"], signed.id.as_str());
    assert_eq!(state["previous"]["signer"], key_id.as_str());

    // Keys back while the source serves the unsigned bundle: the signed previous bundle is
    // used, never the unsigned current, and the reason says so.
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    let reason = refused_reason(&r);
    assert!(reason.contains("signature required"), "{reason}");
    assert!(
        reason.contains(&format!(
            "; using previous bundle {} signed by {key_id}: current bundle {} is unsigned",
            signed.id, unsigned2.id
        )),
        "{reason}"
    );
    assert_eq!(r.id, signed.id);
    assert_eq!(r.bundle_dir, good.bundle_dir);
    assert_eq!(r.fetched_at, good.fetched_at);
    assert_eq!(tree(&r.bundle_dir), good_files);
    assert_eq!(s.current_id(), Some(unsigned2.id.clone()));

    // After a key rotation that drops that key, neither kept bundle qualifies.
    let other_dir = tempfile::tempdir().unwrap();
    let other = generate_keypair(other_dir.path()).unwrap();
    let rotated = vec![TrustedKey::from_file(&other.public).unwrap()];
    let err = sync(&down, &s.state(), &fast_opts(rotated)).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "(current bundle {} is unsigned; previous bundle {} is signed by {key_id}, which is not trusted)",
            unsigned2.id, signed.id
        )),
        "{err}"
    );
}

/// The binary on the shipped roles, as an operator runs it.
fn converge(args: &[&std::ffi::OsStr]) -> std::process::Output {
    support::converge(args)
        .env_remove(converge::bundle::PASSWORD_ENV)
        .output()
        .unwrap()
}

#[test]
fn publishing_a_signed_bundle_without_a_key_is_refused_unless_asked_for() {
    let s = Scenario::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).as_os_str();
    let keys = s.tmp.path().join("keys");
    let out = s.out();
    assert!(converge(&["keygen".as_ref(), keys.as_os_str()])
        .status
        .success());
    let key = keys.join("converge.key");
    let signed = converge(&[
        "publish".as_ref(),
        repo,
        out.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(signed.status.success(), "{signed:?}");
    let before = tree(&out);

    let unsigned = converge(&["publish".as_ref(), repo, out.as_os_str()]);
    assert_eq!(unsigned.status.code(), Some(1), "{unsigned:?}");
    assert!(unsigned.stdout.is_empty(), "{unsigned:?}");
    assert_eq!(
        String::from_utf8_lossy(&unsigned.stderr),
        format!(
            "converge: error: {}: the bundle is signed, and publishing without --key would leave \
             it unsigned, so every host that trusts a key would refuse it; pass --key \
             SECRET_KEY, or --unsigned to drop the signature on purpose; nothing was changed\n",
            out.join("manifest.json.minisig").display()
        )
    );
    assert_eq!(tree(&out), before, "a refused publish changed the bundle");

    let asked = converge(&[
        "publish".as_ref(),
        repo,
        out.as_os_str(),
        "--unsigned".as_ref(),
    ]);
    assert!(asked.status.success(), "{asked:?}");
    assert!(!out.join("manifest.json.minisig").exists());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn render_fetches_and_verifies_a_bundle_into_scratch_space_and_leaves_the_state_dir_alone() {
    let p = support::Project::new();
    p.file(
        "roles/web.toml",
        "[vars]\nport = 8080\n\n[[file]]\npath = \"/etc/app.conf\"\ntemplate = \"app.conf.hbs\"\n",
    )
    .file(
        "templates/app.conf.hbs",
        "listen {{vars.port}} on {{facts.hostname}}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let (keys, out, state) = (
        dir.path().join("keys"),
        dir.path().join("out"),
        dir.path().join("state"),
    );
    assert!(converge(&["keygen".as_ref(), keys.as_os_str()])
        .status
        .success());
    let published = converge(&[
        "publish".as_ref(),
        p.src().as_os_str(),
        out.as_os_str(),
        "--key".as_ref(),
        keys.join("converge.key").as_os_str(),
        "--facts".as_ref(),
        p.facts_path().as_os_str(),
    ]);
    assert!(published.status.success(), "{published:?}");
    let nginx = support::Nginx::serve(&out);
    let config = dir.path().join("agent.toml");
    let render = |source: &str, config_text: &str| {
        fs::write(&config, config_text).unwrap();
        converge(&[
            "render".as_ref(),
            "--source".as_ref(),
            source.as_ref(),
            "--role".as_ref(),
            "web".as_ref(),
            "--var".as_ref(),
            "port=9090".as_ref(),
            "--facts".as_ref(),
            p.facts_path().as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ])
    };
    let trusting = |key: &Path| {
        format!(
            "source = \"https://unused.example.com/\"\nstate_dir = \"{}\"\ntrusted_keys = [\"{}\"]\n",
            state.display(),
            key.display()
        )
    };
    let want = "==> /etc/app.conf (templates/app.conf.hbs, role web) <==\nlisten 9090 on web1\n";

    // Over HTTP, signed by the key the agent config trusts.
    let r = render(&nginx.url(), &trusting(&keys.join("converge.pub")));
    assert_eq!(String::from_utf8_lossy(&r.stdout), want, "{r:?}");
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert!(!state.exists(), "render wrote the state dir");

    // A bundle directory, with no agent config at all: read unverified, and said so.
    fs::remove_file(&config).unwrap();
    let r2 = converge(&[
        "render".as_ref(),
        "--source".as_ref(),
        out.as_os_str(),
        "--role".as_ref(),
        "web".as_ref(),
        "--facts".as_ref(),
        p.facts_path().as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(r2.status.code(), Some(0), "{r2:?}");
    assert_eq!(
        String::from_utf8_lossy(&r2.stdout),
        want.replace("9090", "8080")
    );
    assert!(
        String::from_utf8_lossy(&r2.stderr).contains("UNVERIFIED"),
        "{r2:?}"
    );

    // Signed by a key the config does not trust: refused, and no advice to apply.
    let other = dir.path().join("other");
    assert!(converge(&["keygen".as_ref(), other.as_os_str()])
        .status
        .success());
    let r = render(&nginx.url(), &trusting(&other.join("converge.pub")));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(stderr.contains("which is not trusted"), "{stderr}");
    assert!(!stderr.contains("apply"), "{stderr}");
    assert!(!state.exists(), "render wrote the state dir");
}

#[test]
fn keygen_says_whether_the_secret_key_is_encrypted_and_asks_for_a_passphrase_on_a_terminal() {
    let s = Scenario::new();
    let dir = s.tmp.path();
    let secret_comment = |d: &str| {
        let text = fs::read_to_string(dir.join(d).join("converge.key")).unwrap();
        text.lines().next().unwrap().to_owned()
    };
    // A script (no terminal): unencrypted, and the output says so.
    let plain = converge(&["keygen".as_ref(), dir.join("plain").as_os_str()]);
    assert!(plain.status.success(), "{plain:?}");
    assert!(
        String::from_utf8_lossy(&plain.stdout).contains(
            "/plain/converge.key (NOT encrypted: whoever can read it can sign bundles; \
             keygen --encrypt protects it with a passphrase; keep it on the publishing machine)"
        ),
        "{plain:?}"
    );
    assert_eq!(
        secret_comment("plain"),
        "untrusted comment: minisign secret key"
    );
    // --encrypt without a terminal to ask on: refused, nothing written.
    let no_tty = converge(&[
        "keygen".as_ref(),
        dir.join("nope").as_os_str(),
        "--encrypt".as_ref(),
    ]);
    assert_eq!(no_tty.status.code(), Some(1), "{no_tty:?}");
    assert!(!dir.join("nope").exists());

    // From a file, then signing with it takes the passphrase.
    fs::write(dir.join("pass"), "correct horse\n").unwrap();
    let filed = converge(&[
        "keygen".as_ref(),
        dir.join("filed").as_os_str(),
        "--passphrase-file".as_ref(),
        dir.join("pass").as_os_str(),
    ]);
    assert!(
        String::from_utf8_lossy(&filed.stdout).contains(
            "/filed/converge.key (encrypted; publish reads its passphrase from CONVERGE_SIGNING_PASSWORD;"
        ),
        "{filed:?}"
    );
    assert_eq!(
        secret_comment("filed"),
        "untrusted comment: minisign encrypted secret key"
    );
    let key = dir.join("filed/converge.key");
    assert!(SecretKeyFile::load_with_password(&key, None).is_err());
    assert!(SecretKeyFile::load_with_password(&key, Some("wrong")).is_err());
    SecretKeyFile::load_with_password(&key, Some("correct horse")).unwrap();

    // On a terminal (a pty from script(1)), keygen asks twice and encrypts.
    let typed = std::process::Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} keygen {}",
            support::BIN,
            dir.join("typed").display()
        ))
        .arg("/dev/null")
        .env_remove(converge::bundle::PASSWORD_ENV)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"s3cret\ns3cret\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let shown = String::from_utf8_lossy(&typed.stdout);
    assert!(typed.status.success(), "{shown}");
    assert!(
        shown.contains("Passphrase for the secret key (empty: leave it unencrypted): "),
        "{shown}"
    );
    assert!(shown.contains("The same passphrase again: "), "{shown}");
    let key = dir.join("typed/converge.key");
    assert!(SecretKeyFile::load_with_password(&key, Some("s3cret")).is_ok());
    assert!(SecretKeyFile::load_with_password(&key, None).is_err());
}
