//! Signatures end to end: required when keys are configured, refused when missing or
//! wrong, and interoperable with the stock minisign tool.

use std::fs;
use std::path::Path;

use super::bundle_support::fixture::{fast_opts, tree, Scenario};
use super::bundle_support::{Fault, Request, TestServer};
use super::{
    assert_kept_last_known_good, expect_source_tree, http, refused_reason, SAMPLE_OBJECTS,
};
use converge::bundle::{
    generate_keypair, publish, publish_unsigned, sync, verify_signature, BundleError, Freshness,
    SecretKeyFile, TrustedKey,
};
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
    publish_unsigned(&s.src(), &s.out()).unwrap();
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
    server.take_requests();
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert!(
        refused_reason(&r).contains("Signature verification failed"),
        "{r:?}"
    );
    assert_kept_last_known_good(&s, &o, &good_files, &r);
    let paths: Vec<String> = server.take_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/manifest.json",
            "/manifest.json.minisig",
            "/manifest.json",
            "/manifest.json.minisig"
        ],
        "one re-read before refusing"
    );

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

#[test]
fn a_poll_racing_a_publish_rereads_instead_of_refusing() {
    let s = Scenario::new();
    let keys = generate_keypair(s.tmp.path()).unwrap();
    let signer = SecretKeyFile::load_with_password(&keys.secret, None).unwrap();
    let trusted = vec![TrustedKey::from_file(&keys.public).unwrap()];
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let server = TestServer::serve(&s.out());
    sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    let old_manifest = fs::read(s.out().join("manifest.json")).unwrap();

    s.write("files/motd", "v2\n");
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    // The first read sees the old manifest next to the new signature, as a poll landing
    // between publish's two renames would. A host with no ETag state asks unconditionally.
    fs::remove_file(s.state().join("sync.json")).unwrap();
    server.take_requests();
    server.fault_times("/manifest.json", Fault::Body(old_manifest), 1);
    let o = sync(&http(&server), &s.state(), &fast_opts(trusted)).unwrap();
    assert_eq!(o.freshness, Freshness::Fresh { fetched_objects: 1 });
    expect_source_tree(&s, &o);
    let paths: Vec<String> = server.take_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths.len(),
        5,
        "manifest, sig, manifest, sig, one object: {paths:?}"
    );
}
