//! Bundle layer end to end: publish a tree, serve it over real HTTP (with faults) or from
//! disk, sync a state dir, and check exactly what was fetched and what is current.

mod bundle_support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use bundle_support::fixture::{fast_opts, sample_files, tree, Scenario};
use bundle_support::{closed_port_url, Fault, Request, TestServer};
use converge::bundle::{
    generate_keypair, publish, sync, verify_signature, BundleError, Freshness, SecretKeyFile,
    Source, SyncOutcome, TrustedKey,
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
}

#[test]
fn a_no_op_publish_keeps_the_manifest_so_hosts_keep_getting_304() {
    let s = Scenario::new();
    let a = publish(&s.src(), &s.out(), None).unwrap();
    let before = fs::read(s.out().join("manifest.json")).unwrap();
    let b = publish(&s.src(), &s.out(), None).unwrap();
    assert!(b.unchanged);
    assert_eq!((b.id, b.new_objects), (a.id, 0));
    assert_eq!(fs::read(s.out().join("manifest.json")).unwrap(), before);
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
fn signatures_are_required_and_verified_when_keys_are_configured() {
    let s = Scenario::new();
    let keys = generate_keypair(s.tmp.path()).unwrap();
    let signer = SecretKeyFile::load_with_password(&keys.secret, None).unwrap();
    let trusted = vec![TrustedKey::from_file(&keys.public).unwrap()];
    let published = publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    assert!(published.signed);
    let server = TestServer::serve(&s.out());

    let o = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert_eq!(
        o.freshness,
        Freshness::Fresh {
            fetched_objects: SAMPLE_OBJECTS
        }
    );
    let paths: Vec<String> = server.take_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths[..2], ["/manifest.json", "/manifest.json.minisig"]);
    let good_files = tree(&o.bundle_dir);

    // Republished without a signature: refused, stale signature file removed by publish.
    s.write("files/motd", "unsigned change\n");
    publish(&s.src(), &s.out(), None).unwrap();
    assert!(!s.out().join("manifest.json.minisig").exists());
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert!(refused_reason(&r).contains("signature required"), "{r:?}");
    assert_kept_last_known_good(&s, &o, &good_files, &r);

    // Signed by a key nobody trusts: refused, naming the key id.
    let other_dir = tempfile::tempdir().unwrap();
    let other = generate_keypair(other_dir.path()).unwrap();
    let other_signer = SecretKeyFile::load_with_password(&other.secret, None).unwrap();
    publish(&s.src(), &s.out(), Some(&other_signer)).unwrap();
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    let reason = refused_reason(&r);
    assert!(
        reason.contains(&format!(
            "signed by key {}, which is not trusted",
            other.key_id
        )),
        "{reason}"
    );
    assert_kept_last_known_good(&s, &o, &good_files, &r);

    // Properly signed manifest, but the server alters it: the signature no longer matches.
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let mut tampered = fs::read(s.out().join("manifest.json")).unwrap();
    tampered.extend_from_slice(b" ");
    server.fault("/manifest.json", Fault::Body(tampered));
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert!(
        refused_reason(&r).contains("Signature verification failed"),
        "{r:?}"
    );
    assert_kept_last_known_good(&s, &o, &good_files, &r);

    // Garbage in the signature file.
    server.clear_faults();
    server.fault("/manifest.json.minisig", Fault::Body(b"hello".to_vec()));
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert!(
        refused_reason(&r).contains("not a minisign signature"),
        "{r:?}"
    );

    // With the real signature, the change goes through.
    server.clear_faults();
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert_eq!(r.freshness, Freshness::Fresh { fetched_objects: 1 });
    expect_source_tree(&s, &r);
}

#[test]
fn first_sync_with_a_bad_signature_is_an_error() {
    let s = Scenario::new();
    let keys = generate_keypair(s.tmp.path()).unwrap();
    let trusted = vec![TrustedKey::from_file(&keys.public).unwrap()];
    publish(&s.src(), &s.out(), None).unwrap();
    let server = TestServer::serve(&s.out());
    let err = sync(&http(&server), &s.state(), &fast_opts(trusted)).unwrap_err();
    assert!(
        matches!(err, BundleError::SignatureMissing { .. }),
        "{err:?}"
    );
    assert!(err.is_bad_content());
    assert!(s.current_id().is_none());
    assert!(s.bundle_ids().is_empty());
}

#[test]
fn keys_added_later_force_a_verified_refetch_instead_of_a_304() {
    let s = Scenario::new();
    let keys = generate_keypair(s.tmp.path()).unwrap();
    let signer = SecretKeyFile::load_with_password(&keys.secret, None).unwrap();
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let server = TestServer::serve(&s.out());
    sync(&http(&server), &s.state(), &fast_opts(vec![])).unwrap();
    server.take_requests();

    let trusted = vec![TrustedKey::from_file(&keys.public).unwrap()];
    let o = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert_eq!(o.freshness, Freshness::Unchanged);
    let reqs = server.take_requests();
    assert_eq!(
        reqs.iter()
            .map(|r| (r.path.as_str(), r.status))
            .collect::<Vec<_>>(),
        [("/manifest.json", 200), ("/manifest.json.minisig", 200)]
    );
    // Verified once, later polls are a single 304 again.
    sync(&http(&server), &s.state(), &fast_opts(trusted)).unwrap();
    let reqs: Vec<Request> = server.take_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].status, 304);
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
        &|s| s.write("role/typo.toml", ""),
        "unexpected top-level entry",
    );
    check(&|s| s.write("README.md", ""), "unexpected top-level entry");
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

// Interoperability with the stock minisign tool. The files in bundle_support/stock were
// made by minisign 0.11: `minisign -G -W` (stock.*), `minisign -G` with password
// "stockpass" (stock-enc.*), and `minisign -S -s stock.key -m manifest.json`.

const STOCK_KEY_ID: &str = "4B656126B1F9BB00";

fn stock(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bundle_support/stock")
        .join(name)
}

#[test]
fn a_stock_minisign_signature_verifies_with_the_stock_public_key_file_text() {
    let key = TrustedKey::from_text(&fs::read_to_string(stock("stock.pub")).unwrap()).unwrap();
    assert_eq!(key.key_id(), STOCK_KEY_ID);
    let manifest = fs::read(stock("manifest.json")).unwrap();
    let sig = fs::read_to_string(stock("manifest.json.minisig")).unwrap();
    let signer = verify_signature(&manifest, &sig, std::slice::from_ref(&key), "stock").unwrap();
    assert_eq!(signer, STOCK_KEY_ID);
    // The bare key line, as passed to `minisign -P`, works too.
    let line = fs::read_to_string(stock("stock.pub")).unwrap();
    let bare = TrustedKey::from_text(line.lines().nth(1).unwrap()).unwrap();
    assert_eq!(bare.key_id(), STOCK_KEY_ID);
    let mut altered = manifest.clone();
    altered.push(b'\n');
    let err = verify_signature(&altered, &sig, &[key], "stock").unwrap_err();
    assert!(
        err.to_string().contains("Signature verification failed"),
        "{err}"
    );
}

#[test]
fn bundles_signed_with_a_stock_key_verify_with_the_minisign_crate_and_stock_public_key() {
    let s = Scenario::new();
    let signer = SecretKeyFile::load_with_password(&stock("stock.key"), None).unwrap();
    assert_eq!(signer.key_id(), STOCK_KEY_ID);
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();

    // Exactly what `minisign -Vm manifest.json -p stock.pub` does, through the crate's API.
    let pk_text = fs::read_to_string(stock("stock.pub")).unwrap();
    let pk = minisign::PublicKeyBox::from_string(&pk_text)
        .unwrap()
        .into_public_key()
        .unwrap();
    let sig = minisign::SignatureBox::from_file(s.out().join("manifest.json.minisig")).unwrap();
    assert!(sig.is_prehashed(), "stock minisign >= 0.8 signs prehashed");
    assert!(sig
        .trusted_comment()
        .unwrap()
        .contains("file:manifest.json"));
    let manifest = fs::File::open(s.out().join("manifest.json")).unwrap();
    minisign::verify(&pk, &sig, manifest, true, false, false).unwrap();
}

#[test]
fn an_encrypted_stock_key_needs_its_password() {
    let err = SecretKeyFile::load_with_password(&stock("stock-enc.key"), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("secret key is encrypted: set CONVERGE_SIGNING_PASSWORD"),
        "{err}"
    );
    let err = SecretKeyFile::load_with_password(&stock("stock-enc.key"), Some("nope")).unwrap_err();
    assert!(
        err.to_string().contains("cannot decrypt secret key"),
        "{err}"
    );
    let key =
        SecretKeyFile::load_with_password(&stock("stock-enc.key"), Some("stockpass")).unwrap();
    let pk = TrustedKey::from_file(&stock("stock-enc.pub")).unwrap();
    assert_eq!(key.key_id(), pk.key_id());
    let sig = key.sign(b"data", "x").unwrap();
    assert_eq!(
        verify_signature(b"data", &sig, &[pk], "x").unwrap(),
        key.key_id()
    );
}

#[test]
fn generated_keys_use_the_stock_file_formats_and_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let keys = generate_keypair(dir.path()).unwrap();
    let pk_text = fs::read_to_string(&keys.public).unwrap();
    assert_eq!(
        pk_text.lines().next().unwrap(),
        format!("untrusted comment: minisign public key {}", keys.key_id)
    );
    minisign::PublicKeyBox::from_string(&pk_text)
        .unwrap()
        .into_public_key()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&keys.secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let err = generate_keypair(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("already exists; refusing to overwrite"),
        "{err}"
    );
}
