//! Replay protection: hosts take only manifests newer than their current one, ordered by a
//! `created` that publish keeps strictly increasing and that is bounded by the host's clock.

use std::fs;
use std::time::{Duration, SystemTime};

use super::bundle_support::fixture::{fast_opts, tree, Scenario};
use super::bundle_support::TestServer;
use super::{http, refused_reason};
use converge::bundle::manifest::rfc3339_micros;
use converge::bundle::{
    generate_keypair, publish, sync, Freshness, Manifest, SecretKeyFile, TrustedKey,
};
use sha2::{Digest, Sha256};

/// Rewrite the published manifest through `edit` and sign it again, as a publish at
/// another time would have; returns the new bundle id.
fn resign(s: &Scenario, signer: &SecretKeyFile, edit: impl FnOnce(&mut Manifest)) -> String {
    let path = s.out().join("manifest.json");
    let mut m = Manifest::parse(&fs::read(&path).unwrap(), "out").unwrap();
    edit(&mut m);
    let bytes = m.to_bytes();
    let sig = signer.sign(&bytes, "manifest.json").unwrap();
    fs::write(s.out().join("manifest.json.minisig"), sig).unwrap();
    fs::write(&path, &bytes).unwrap();
    hex::encode(Sha256::digest(&bytes))
}

fn published_created(s: &Scenario) -> String {
    Manifest::parse(&fs::read(s.out().join("manifest.json")).unwrap(), "out")
        .unwrap()
        .created
}

#[test]
fn a_replayed_older_signed_manifest_is_refused_and_a_republish_rolls_back() {
    let s = Scenario::new();
    let keys = generate_keypair(s.tmp.path()).unwrap();
    let signer = SecretKeyFile::load_with_password(&keys.secret, None).unwrap();
    let trusted = vec![TrustedKey::from_file(&keys.public).unwrap()];
    s.write("files/motd", "v1\n");
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    // Dated in the past, so v2 is strictly newer without sleeping across a second.
    let v1_created = "2026-01-01T00:00:00Z";
    let v1 = resign(&s, &signer, |m| m.created = v1_created.into());
    let server = TestServer::serve(&s.out());
    let o = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert_eq!(o.id, v1);
    let v1_manifest = fs::read(s.out().join("manifest.json")).unwrap();
    let v1_sig = fs::read(s.out().join("manifest.json.minisig")).unwrap();

    s.write("files/motd", "v2\n");
    let v2 = publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let v2_created = published_created(&s);
    let good = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert_eq!(good.id, v2.id);
    let good_files = tree(&good.bundle_dir);

    // The attacker (or a stale mirror) serves the old, validly signed v1 again.
    fs::write(s.out().join("manifest.json.minisig"), &v1_sig).unwrap();
    fs::write(s.out().join("manifest.json"), &v1_manifest).unwrap();
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    let reason = refused_reason(&r);
    assert!(
        reason.contains(&format!(
            "manifest created {v1_created} is not newer than the current bundle (created {v2_created}): possible replay or rollback"
        )),
        "{reason}"
    );
    assert_eq!(r.id, v2.id);
    assert_eq!(r.fetched_at, good.fetched_at);
    assert_eq!(s.current_id(), Some(v2.id.clone()));
    assert_eq!(tree(&r.bundle_dir), good_files);

    // Two publishes made back to back (within one second) are strictly ordered: the first
    // served again after the second is a replay, not news.
    s.write("files/motd", "v3\n");
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let v3_manifest = fs::read(s.out().join("manifest.json")).unwrap();
    let v3_sig = fs::read(s.out().join("manifest.json.minisig")).unwrap();
    s.write("files/motd", "v4\n");
    let v4 = publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let o = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert_eq!(o.freshness, Freshness::Fresh { fetched_objects: 1 });
    assert_eq!(o.id, v4.id);
    fs::write(s.out().join("manifest.json.minisig"), &v3_sig).unwrap();
    fs::write(s.out().join("manifest.json"), &v3_manifest).unwrap();
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    assert!(
        refused_reason(&r).contains("is not newer than the current bundle"),
        "{r:?}"
    );
    assert_eq!(s.current_id(), Some(v4.id.clone()));

    // A deliberate rollback republishes the old content, which gets a new `created`.
    s.write("files/motd", "v1\n");
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let o = sync(&http(&server), &s.state(), &fast_opts(trusted)).unwrap();
    assert!(matches!(o.freshness, Freshness::Fresh { .. }), "{o:?}");
    assert_eq!(tree(&o.bundle_dir)["files/motd"], b"v1\n");
}

#[test]
fn republishing_unchanged_content_moves_a_host_back_from_another_bundle() {
    // prod and staging publish the same tree layout from different sources; the host is
    // sent to staging (newer), then prod is republished without changes.
    let s = Scenario::new();
    let prod = s.tmp.path().join("prod");
    publish(&s.src(), &prod, None).unwrap();
    s.write("files/motd", "staging\n");
    let staging = s.tmp.path().join("staging");
    let staged = publish(&s.src(), &staging, None).unwrap();
    s.write("files/motd", "managed by converge\n");
    let prod_source = converge::bundle::Source::Dir(prod.clone());
    let staging_source = converge::bundle::Source::Dir(staging);
    let o = sync(&staging_source, &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(o.id, staged.id);
    let r = sync(&prod_source, &s.state(), &fast_opts(vec![])).unwrap();
    assert!(
        refused_reason(&r).contains("is not newer than the current bundle"),
        "{r:?}"
    );
    let again = publish(&s.src(), &prod, None).unwrap();
    assert!(again.unchanged, "{again:?}");
    let o = sync(&prod_source, &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(o.freshness, Freshness::Fresh { fetched_objects: 0 });
    assert_eq!(o.id, again.id);
    assert_eq!(tree(&o.bundle_dir)["files/motd"], b"managed by converge\n");
}

#[test]
fn a_manifest_from_a_clock_in_the_future_is_refused_and_does_not_lock_hosts_out() {
    let s = Scenario::new();
    let keys = generate_keypair(s.tmp.path()).unwrap();
    let signer = SecretKeyFile::load_with_password(&keys.secret, None).unwrap();
    let trusted = vec![TrustedKey::from_file(&keys.public).unwrap()];
    let good = publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let server = TestServer::serve(&s.out());
    sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();

    // A publisher whose clock runs a day ahead.
    s.write("files/motd", "from the future\n");
    publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let tomorrow = rfc3339_micros(SystemTime::now() + Duration::from_secs(86_400));
    resign(&s, &signer, |m| m.created = tomorrow.clone());
    let r = sync(&http(&server), &s.state(), &fast_opts(trusted.clone())).unwrap();
    let reason = refused_reason(&r);
    assert!(
        reason.contains(&format!("manifest created {tomorrow} lies in the future")),
        "{reason}"
    );
    assert!(reason.contains("fix it and publish again"), "{reason}");
    assert_eq!(r.id, good.id);

    // The clock is fixed and the next publish goes through, although the manifest it
    // replaces in the publish dir is dated tomorrow.
    s.write("files/motd", "fixed\n");
    let fixed = publish(&s.src(), &s.out(), Some(&signer)).unwrap();
    let o = sync(&http(&server), &s.state(), &fast_opts(trusted)).unwrap();
    assert_eq!(o.id, fixed.id);
    assert_eq!(tree(&o.bundle_dir)["files/motd"], b"fixed\n");
}

#[test]
fn a_current_bundle_dated_in_the_future_is_bounded_by_when_it_was_fetched() {
    // Say an older agent accepted a manifest dated a year ahead an hour ago.
    let s = Scenario::new();
    publish(&s.src(), &s.out(), None).unwrap();
    let path = s.out().join("manifest.json");
    let mut m = Manifest::parse(&fs::read(&path).unwrap(), "out").unwrap();
    m.created = rfc3339_micros(SystemTime::now() + Duration::from_secs(4 * 60));
    fs::write(&path, m.to_bytes()).unwrap();
    let src = converge::bundle::Source::Dir(s.out());
    sync(&src, &s.state(), &fast_opts(vec![])).unwrap();
    let state_file = s.state().join("sync.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&fs::read(&state_file).unwrap()).unwrap();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let secs = hour_ago
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    state["fetched_at"] = secs.into();
    let fake_future = rfc3339_micros(SystemTime::now() + Duration::from_secs(365 * 86_400));
    let current = s.current_id().unwrap();
    let kept = s
        .state()
        .join("bundles")
        .join(&current)
        .join(".manifest.json");
    let mut kept_m = Manifest::parse(&fs::read(&kept).unwrap(), "kept").unwrap();
    kept_m.created = fake_future.clone();
    fs::write(&kept, kept_m.to_bytes()).unwrap();
    fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();

    s.write("files/motd", "genuine\n");
    let genuine = publish(&s.src(), &s.out(), None).unwrap();
    let o = sync(&src, &s.state(), &fast_opts(vec![])).unwrap();
    assert_eq!(o.id, genuine.id, "{o:?}");

    // A replay of something older than that fetch is still refused.
    let current_m = Manifest::parse(&fs::read(&path).unwrap(), "out").unwrap();
    let mut old = current_m.clone();
    old.created = rfc3339_micros(hour_ago - Duration::from_secs(60));
    s.write("files/motd", "old\n");
    fs::write(&path, old.to_bytes()).unwrap();
    let r = sync(&src, &s.state(), &fast_opts(vec![])).unwrap();
    assert!(
        refused_reason(&r).contains("is not newer than the current bundle"),
        "{r:?}"
    );
}
